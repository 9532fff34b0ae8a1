//! libFuzzer entry of the `agent_answer` target (x2gobroker_fuzz_targets::agent_answer).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| x2gobroker_fuzz_targets::agent_answer(data));
