//! libFuzzer entry of the `http_params` target (x2gobroker_fuzz_targets::http_params).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x2gobroker_fuzz_targets::http_params(data));
