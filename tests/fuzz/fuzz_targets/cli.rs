//! Fuzz target `cli`: the checks of `lb_fuzz::cli` (tests/fuzz/checks.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::cli(data));
