//! Return and success URLs (`GenerateLink`, `CheckAccess`, policy origins): see
//! `portal_gateway::fuzzing::redirect_url` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &str| {
    portal_gateway::fuzzing::redirect_url(input);
});
