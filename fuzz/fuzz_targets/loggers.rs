//! libFuzzer entry of the `loggers` target (x2gobroker_fuzz_targets::loggers).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x2gobroker_fuzz_targets::loggers(data));
