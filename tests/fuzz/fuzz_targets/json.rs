//! Fuzz target `json`: the checks of `lb_fuzz::json` (tests/fuzz/checks.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::json(data));
