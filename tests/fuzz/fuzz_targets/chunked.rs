//! Fuzz target `chunked`: the checks of `lb_fuzz::chunked` (tests/fuzz/checks.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::chunked(data));
