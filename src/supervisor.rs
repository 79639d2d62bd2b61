//! Starting and running the load balancer: bind the listening socket,
//! build what workers share, run the worker(s), map failures to exit codes
//! (2: bad configuration, 1: could not start).
//!
//! Today one worker runs in the main thread. Multi-process mode (a master
//! forking workers that share the port with SO_REUSEPORT), signal handling
//! and binary upgrade will live here.
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::proxy::worker::Worker;
use crate::proxy::Shared;
use crate::{log, sys};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The listen address from `--host` and `--port`.
pub fn listen_addr(cfg: &Config) -> Result<SocketAddr, String> {
    let ip: IpAddr = match cfg.host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("--host: invalid listen address {h:?}"))?,
    };
    Ok(SocketAddr::new(ip, cfg.port))
}

/// `--check`: everything `run` validates before serving, then exit.
pub fn check(cfg: &Config) -> i32 {
    let res = listen_addr(cfg)
        .and_then(|_| crate::proxy::backends::BackendTable::build(&cfg.backends).map(|_| ()));
    match res {
        Ok(()) => {
            println!(
                "load_balancer: configuration ok ({} backends)",
                cfg.backends.len()
            );
            0
        }
        Err(e) => {
            eprintln!("load_balancer: {e}");
            2
        }
    }
}

pub fn run(cfg: Config) -> i32 {
    log::set_level(cfg.log_level);
    sys::ignore_sigpipe();
    sys::raise_fd_limit();
    if let Err(e) = sys::install_shutdown_signals() {
        eprintln!("load_balancer: cannot install signal handlers: {e}");
        return 1;
    }
    let addr = match listen_addr(&cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load_balancer: {e}");
            return 2;
        }
    };
    let shared = match Shared::new(cfg) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("load_balancer: {e}");
            return 2;
        }
    };
    let listener = match sys::listen(addr, 4096) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("load_balancer: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    sys::set_defer_accept(std::os::fd::AsFd::as_fd(&listener), 1);
    let names = shared.table.names().join(", ");
    crate::log!(
        Info,
        "main",
        "listening on {addr}, backends: {names}, strategy: {}",
        shared.config.strategy
    );
    let stop = Arc::new(AtomicBool::new(false));
    let seed = sys::now_ms() ^ u64::from(std::process::id());
    let mut worker = match Worker::new(shared, listener, stop, seed) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("load_balancer: cannot start worker: {e}");
            return 1;
        }
    };
    match worker.run() {
        Ok(()) => 0,
        Err(e) => {
            crate::log!(Err, "main", "worker failed: {e}");
            1
        }
    }
}
