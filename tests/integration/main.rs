//! One integration binary: the emulator over HTTP, the gateway over gRPC, the binary and the real
//! client tools (grpcurl, the official WorkOS Python SDK).

mod browser;
mod buf;
mod clients;
mod cluster;
mod cluster_watch;
mod creates;
mod emulator;
mod emulator_invites;
mod emulator_setup;
mod gateway;
mod helpers;
mod identities;
mod invitations;
mod limits;
mod manifests;
mod observability;
mod resilience;
mod security;
mod setup;
mod tools;
