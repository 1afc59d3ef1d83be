//! A dedicated policy file: see `portal_gateway::fuzzing::policy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    portal_gateway::fuzzing::policy(text);
});
