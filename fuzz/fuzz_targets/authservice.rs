//! libFuzzer entry of the `authservice` target (x2gobroker_fuzz_targets::authservice).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x2gobroker_fuzz_targets::authservice(data));
