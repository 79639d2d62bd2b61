//! Starting and running the load balancer: bind the listening socket, create
//! the shared region, run the workers (forked processes in mp mode, threads
//! in sp mode), restart the ones that die, act on signals, and map failures to
//! exit codes (2: bad configuration, 1: could not start).
//!
//! The supervisor never touches a client connection: it holds the listening
//! socket (so a worker's death loses no queued connection) and the region,
//! and it is the only writer of the region's backend arrays.
#![forbid(unsafe_code)]

use crate::config::{Config, Mode};
use crate::log;
use crate::proxy::backends::resolve_all;
use crate::proxy::worker::Worker;
use crate::proxy::Shared;
use crate::shm::{Region, MAX_WORKERS};
use crate::sys::{self, Signal};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Longest the supervisor waits for workers to drain after a shutdown signal
/// (the workers' own limit is 10 s) before it kills what is left.
const SHUTDOWN_GRACE_MS: u64 = 12_000;
/// A worker that dies sooner than this after starting counts as a failed start.
const QUICK_DEATH_MS: u64 = 1_000;
/// Restart back-off for workers that keep dying at start: doubles up to this.
const MAX_BACKOFF_MS: u64 = 10_000;

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
    let res = listen_addr(cfg).and_then(|_| resolve_all(&cfg.backends).map(|_| ()));
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

/// How many workers `-w` asks for: 0 means one per CPU this process may use.
pub fn worker_count(cfg: &Config) -> usize {
    let n = if cfg.workers == 0 {
        sys::cpu_count()
    } else {
        cfg.workers
    };
    n.clamp(1, MAX_WORKERS)
}

pub fn run(cfg: Config) -> i32 {
    log::set_level(cfg.log_level);
    sys::ignore_sigpipe();
    sys::raise_fd_limit();
    if let Err(e) = sys::install_signals() {
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
    let entries = match resolve_all(&cfg.backends) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("load_balancer: {e}");
            return 2;
        }
    };
    let listener = match sys::listen(addr, 4096) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!(
                "load_balancer: cannot listen on {addr}: address in use (is another load balancer running?)"
            );
            return 1;
        }
        Err(e) => {
            eprintln!("load_balancer: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    sys::set_defer_accept(listener.as_fd(), 1);
    let region = match Region::create() {
        Ok((r, _memfd)) => r,
        Err(e) => {
            eprintln!("load_balancer: cannot create the shared region: {e}");
            return 1;
        }
    };
    region.publish(&entries);
    region.health.reset(entries.len());
    let workers = worker_count(&cfg);
    region
        .process
        .workers_configured
        .store(workers as u32, Relaxed);
    let names: Vec<String> = entries
        .iter()
        .map(|e| format!("{}:{}", e.host(), e.port))
        .collect();
    let mode = match cfg.mode {
        Mode::Mp => "mp",
        Mode::Sp => "sp",
    };
    crate::log!(
        Info,
        "main",
        "listening on {addr}, mode {mode}, {workers} workers, backends: {}, strategy: {}",
        names.join(", "),
        cfg.strategy
    );
    let sup = Supervisor {
        cfg,
        region,
        listener,
        workers,
    };
    match sup.cfg.mode {
        Mode::Mp => sup.run_processes(),
        Mode::Sp => sup.run_threads(),
    }
}

struct Supervisor {
    cfg: Config,
    region: &'static Region,
    listener: OwnedFd,
    workers: usize,
}

/// One worker slot: the process or thread running in it, and its restarts.
#[derive(Default)]
struct Slot {
    pid: Option<libc::pid_t>,
    started_ms: u64,
    /// Deaths in a row soon after starting (for the back-off).
    quick_deaths: u32,
    /// When a dead worker is due to be started again.
    respawn_at: Option<u64>,
}

impl Supervisor {
    /// Runs one worker loop in the calling thread or process, in slot `i`.
    fn run_worker(&self, i: usize) -> i32 {
        let shared = Arc::new(Shared::new(self.cfg.clone(), self.region, i));
        let listener = match sys::dup(self.listener.as_fd()) {
            Ok(l) => l,
            Err(e) => {
                log!(
                    Err,
                    "main",
                    "worker {i}: cannot duplicate the listener: {e}"
                );
                return 1;
            }
        };
        let seed = sys::now_ms() ^ (u64::from(sys::getpid().unsigned_abs()) << 16) ^ i as u64;
        let stop = Arc::new(AtomicBool::new(false));
        match Worker::new(shared, listener, stop, seed).and_then(|mut w| w.run()) {
            Ok(()) => 0,
            Err(e) => {
                log!(Err, "main", "worker {i} failed: {e}");
                1
            }
        }
    }

    /// Signals that the supervisor answers itself (the workers' loops act on
    /// shutdown on their own).
    fn handle_other_signals(&self) {
        if sys::take_signal(Signal::Reload) {
            log!(
                Info,
                "main",
                "SIGHUP: configuration reload is not available yet; nothing changed"
            );
        }
        if sys::take_signal(Signal::Reopen) {
            log!(Info, "main", "SIGUSR1: no log files to reopen");
        }
        if sys::take_signal(Signal::Upgrade) {
            log!(
                Info,
                "main",
                "SIGUSR2: binary upgrade is not available yet; nothing changed"
            );
        }
    }

    // ---- mp: worker processes ------------------------------------------------

    fn run_processes(self) -> i32 {
        sys::set_process_name("lb: master");
        let master = sys::getpid();
        let mut slots: Vec<Slot> = (0..self.workers).map(|_| Slot::default()).collect();
        for (i, slot) in slots.iter_mut().enumerate() {
            self.spawn_process(i, master, slot);
        }
        let mut shutdown_deadline: Option<u64> = None;
        loop {
            sys::wait_for_signal(100);
            let now = sys::now_ms();
            let _ = sys::take_signal(Signal::Child);
            while let Some((pid, status)) = sys::reap_child() {
                let Some(i) = slots.iter().position(|s| s.pid == Some(pid)) else {
                    continue;
                };
                let slot = &mut slots[i];
                slot.pid = None;
                self.region.process.workers_live.fetch_sub(1, Relaxed);
                self.region.workers[i].reset_gauges();
                if shutdown_deadline.is_some() {
                    log!(
                        Info,
                        "main",
                        "worker {i} (pid {pid}) finished: {}",
                        sys::describe_exit(status)
                    );
                    continue;
                }
                let lived = now.saturating_sub(slot.started_ms);
                slot.quick_deaths = if lived < QUICK_DEATH_MS {
                    slot.quick_deaths + 1
                } else {
                    0
                };
                let delay = backoff_ms(slot.quick_deaths);
                slot.respawn_at = Some(now + delay);
                log!(
                    Err,
                    "main",
                    "worker {i} (pid {pid}) died: {}; restarting{}",
                    sys::describe_exit(status),
                    if delay > 0 {
                        format!(
                            " in {delay} ms (it died {} times in a row at start)",
                            slot.quick_deaths
                        )
                    } else {
                        String::new()
                    }
                );
            }
            if shutdown_deadline.is_none() && sys::shutdown_requested() {
                log!(
                    Info,
                    "main",
                    "shutting down: draining {} workers",
                    self.workers
                );
                sys::stop_listening(self.listener.as_fd());
                for s in &slots {
                    if let Some(pid) = s.pid {
                        sys::kill(pid, libc::SIGTERM);
                    }
                }
                shutdown_deadline = Some(now + SHUTDOWN_GRACE_MS);
            }
            self.handle_other_signals();
            if let Some(deadline) = shutdown_deadline {
                if slots.iter().all(|s| s.pid.is_none()) {
                    log!(Info, "main", "all workers finished; exiting");
                    return 0;
                }
                if now >= deadline {
                    for s in &slots {
                        if let Some(pid) = s.pid {
                            log!(
                                Err,
                                "main",
                                "worker pid {pid} did not finish in time; killing it"
                            );
                            sys::kill(pid, libc::SIGKILL);
                        }
                    }
                    return 1;
                }
                continue;
            }
            for (i, slot) in slots.iter_mut().enumerate() {
                if slot.respawn_at.is_some_and(|t| now >= t) {
                    self.region.process.worker_restarts.fetch_add(1, Relaxed);
                    self.spawn_process(i, master, slot);
                }
            }
        }
    }

    fn spawn_process(&self, i: usize, master: libc::pid_t, slot: &mut Slot) {
        slot.respawn_at = None;
        match sys::fork() {
            Ok(0) => {
                // The worker process. It never returns into the master's code.
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    sys::set_process_name(&format!("lb: worker {i}"));
                    if !sys::die_with_parent(libc::SIGTERM, master) {
                        return 0;
                    }
                    if let Err(e) = sys::renew_wake_pipe() {
                        log!(Err, "main", "worker {i}: wake pipe: {e}");
                        return 1;
                    }
                    // Flags inherited from the master are the master's business.
                    for s in [
                        Signal::Reload,
                        Signal::Reopen,
                        Signal::Upgrade,
                        Signal::Child,
                    ] {
                        let _ = sys::take_signal(s);
                    }
                    self.run_worker(i)
                }))
                .unwrap_or(101);
                sys::exit_now(code);
            }
            Ok(pid) => {
                slot.pid = Some(pid);
                slot.started_ms = sys::now_ms();
                self.region.process.workers_live.fetch_add(1, Relaxed);
                log!(Debug, "main", "worker {i} started, pid {pid}");
            }
            Err(e) => {
                log!(Err, "main", "worker {i}: fork failed: {e}; retrying");
                slot.respawn_at = Some(sys::now_ms() + MAX_BACKOFF_MS / 10);
            }
        }
    }

    // ---- sp: worker threads ---------------------------------------------------

    fn run_threads(self) -> i32 {
        let sup = Arc::new(self);
        let mut handles = Vec::with_capacity(sup.workers);
        for i in 0..sup.workers {
            let s = Arc::clone(&sup);
            let h = std::thread::Builder::new()
                .name(format!("lb-worker-{i}"))
                .spawn(move || s.thread_loop(i));
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    eprintln!("load_balancer: cannot start worker thread {i}: {e}");
                    sys::raise_flag(Signal::Shutdown);
                    break;
                }
            }
        }
        let mut stopping = false;
        let mut code = 0;
        loop {
            sys::wait_for_signal(100);
            if !stopping && sys::shutdown_requested() {
                stopping = true;
                log!(
                    Info,
                    "main",
                    "shutting down: draining {} workers",
                    sup.workers
                );
                sys::stop_listening(sup.listener.as_fd());
            }
            sup.handle_other_signals();
            if handles.iter().all(|h| h.is_finished()) {
                for h in handles {
                    if h.join().unwrap_or(1) != 0 {
                        code = 1;
                    }
                }
                if stopping {
                    log!(Info, "main", "all workers finished; exiting");
                }
                return code;
            }
        }
    }

    /// One worker thread: runs the loop; a panic is logged and the loop
    /// started again (its connections are lost, the others' are not).
    fn thread_loop(&self, i: usize) -> i32 {
        let region = self.region;
        let mut quick_deaths = 0;
        loop {
            region.process.workers_live.fetch_add(1, Relaxed);
            let started = sys::now_ms();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_worker(i)));
            region.process.workers_live.fetch_sub(1, Relaxed);
            region.workers[i].reset_gauges();
            let why = match r {
                Ok(code) => return code,
                Err(p) => panic_message(&p),
            };
            if sys::shutdown_requested() {
                return 1;
            }
            quick_deaths = if sys::now_ms() - started < QUICK_DEATH_MS {
                quick_deaths + 1
            } else {
                0
            };
            let delay = backoff_ms(quick_deaths);
            log!(
                Err,
                "main",
                "worker {i} panicked: {why}; restarting in {delay} ms"
            );
            region.process.worker_restarts.fetch_add(1, Relaxed);
            std::thread::sleep(Duration::from_millis(delay));
        }
    }
}

/// No delay for a worker that ran a while; for one that keeps dying at
/// start, 100 ms doubling up to `MAX_BACKOFF_MS`.
fn backoff_ms(quick_deaths: u32) -> u64 {
    match quick_deaths {
        0 | 1 => 0,
        n => (100u64 << (n - 2).min(10)).min(MAX_BACKOFF_MS),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff_ms(0), 0);
        assert_eq!(backoff_ms(1), 0);
        assert_eq!(backoff_ms(2), 100);
        assert_eq!(backoff_ms(3), 200);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }
}
