//! `x-forwarded-client-cert` and `l5d-client-id` through the authenticator, from trusted and
//! untrusted peers: see `portal_gateway::fuzzing::mesh_identity`.
#![no_main]

libfuzzer_sys::fuzz_target!(|value: &[u8]| {
    portal_gateway::fuzzing::mesh_identity(value);
});
