//! The load balancer binary: parse arguments, hand over to the supervisor,
//! map the outcome to an exit code (all in `cli::main_with_mode`, shared with
//! the legacy `load_balancer_mp` / `load_balancer_sp` names).
#![forbid(unsafe_code)]
fn main() {
    lb::cli::main_with_mode(None);
}
