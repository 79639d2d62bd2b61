//! Legacy name: `load_balancer_mp` is `load_balancer -m mp` (the spec keeps
//! both names working for scripts written against the original).
#![forbid(unsafe_code)]
fn main() {
    lb::cli::main_with_mode(Some(lb::config::Mode::Mp));
}
