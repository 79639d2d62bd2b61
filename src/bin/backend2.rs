//! Demo backend on port 9002: answers `Hello from backend2`.
#![forbid(unsafe_code)]
fn main() {
    std::process::exit(lb::demo::main_for("backend2", 9002));
}
