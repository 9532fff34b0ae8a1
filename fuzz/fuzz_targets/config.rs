//! libFuzzer entry of the `config` target (x2gobroker_fuzz_targets::config).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x2gobroker_fuzz_targets::config(data));
