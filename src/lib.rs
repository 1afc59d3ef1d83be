//! portal-gateway: one place for internal services to mint WorkOS Admin Portal links and manage
//! WorkOS Organizations over gRPC, without each of them holding the WorkOS API key.

pub mod emulator;
