//! libFuzzer entry of the `legacy_command` target (x2gobroker_fuzz_targets::legacy_command).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x2gobroker_fuzz_targets::legacy_command(data));
