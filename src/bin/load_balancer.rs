//! The load balancer binary: parse arguments, hand over to the supervisor,
//! map the outcome to an exit code.
use lb::cli::{self, Command};

fn main() {
    let code = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::usage());
            0
        }
        Ok(Command::Version) => {
            println!("load_balancer {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::Check(cfg)) => lb::supervisor::check(&cfg),
        Ok(Command::Run(cfg)) => lb::supervisor::run(cfg),
        Err(e) => {
            eprintln!("load_balancer: {e}");
            eprintln!("try 'load_balancer --help'");
            cli::EXIT_USAGE
        }
    };
    std::process::exit(code);
}
