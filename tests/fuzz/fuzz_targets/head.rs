//! Fuzz target `head`: the checks of `lb_fuzz::head_parser` (tests/fuzz/checks.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::head_parser(data));
