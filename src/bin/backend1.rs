//! Demo backend on port 9001: answers `Hello from backend1`.
fn main() {
    std::process::exit(lb::demo::main_for("backend1", 9001));
}
