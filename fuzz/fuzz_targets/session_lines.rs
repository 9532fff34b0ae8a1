//! libFuzzer entry of the `session_lines` target (x2gobroker_fuzz_targets::session_lines).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x2gobroker_fuzz_targets::session_lines(data));
