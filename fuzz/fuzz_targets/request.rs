//! Every request message as protobuf bytes (the first byte picks the message) through its
//! conversion to domain types: see `portal_gateway::fuzzing::request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portal_gateway::fuzzing::request(data);
});
