//! `ListOrganizations` page tokens and `WatchSetup` resume cursors: see
//! `portal_gateway::fuzzing::page_token` and `resume_cursor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|token: &str| {
    portal_gateway::fuzzing::page_token(token);
    portal_gateway::fuzzing::resume_cursor(token);
});
