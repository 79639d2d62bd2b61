//! Legacy name: `load_balancer_sp` is `load_balancer -m sp` (the spec keeps
//! both names working for scripts written against the original).
#![forbid(unsafe_code)]
fn main() {
    lb::cli::main_with_mode(Some(lb::config::Mode::Sp));
}
