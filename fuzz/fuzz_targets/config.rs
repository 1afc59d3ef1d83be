//! The configuration file, as `serve --config` reads it: see `portal_gateway::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    portal_gateway::fuzzing::config(text);
});
