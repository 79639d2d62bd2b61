//! Fuzz target `dns`: the checks of `lb_fuzz::dns` (tests/fuzz/checks.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::dns(data));
