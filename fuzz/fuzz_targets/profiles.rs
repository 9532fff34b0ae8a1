//! libFuzzer entry of the `profiles` target (x2gobroker_fuzz_targets::profiles).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x2gobroker_fuzz_targets::profiles(data));
