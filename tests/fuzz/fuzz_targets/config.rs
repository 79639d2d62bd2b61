//! Fuzz target `config`: the checks of `lb_fuzz::config` (tests/fuzz/checks.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::config(data));
