//! Demo backend on port 9001: answers `Hello from backend1`.
#![forbid(unsafe_code)]
fn main() {
    std::process::exit(lb::demo::main_for("backend1", 9001));
}
