//! mp: the master forks `-w` worker processes and one prober, reaps them,
//! restarts what dies (with back-off), and on shutdown or hand-over waits
//! for them to drain. What it shares with sp is in the parent module
//! (`Supervisor::tick`: signals, reload, upgrade, readiness, ownership).
#![forbid(unsafe_code)]

use super::*;

/// One worker slot: the process running in it, and its restarts.
#[derive(Default)]
struct Slot {
    pid: Option<libc::pid_t>,
    started_ms: u64,
    /// Deaths in a row soon after starting (for the back-off).
    quick_deaths: u32,
    /// When a dead worker is due to be started again.
    respawn_at: Option<u64>,
}

/// What a forked child of the master runs.
#[derive(Clone, Copy, Debug)]
enum Role {
    Worker(usize),
    Prober,
}

impl Supervisor {
    pub(super) fn run_processes(self) -> i32 {
        sys::set_process_name("lb: master");
        let master = sys::getpid();
        // Children say they run by writing their slot number (255: the
        // prober) here; the master reads it each turn (readiness).
        let (started_r, started_w) = match sys::pipe_pair() {
            Ok(p) => p,
            Err(e) => {
                log!(Err, "main", "cannot create the start pipe: {e}");
                return 1;
            }
        };
        // The config watch first: a change made while the workers start is
        // seen.
        let discovery = self.discovery.lock().ok().and_then(|mut d| d.take());
        let mut ctl = Control::new(&self.cfg, discovery);
        let mut slots: Vec<Slot> = (0..self.workers).map(|_| Slot::default()).collect();
        for (i, slot) in slots.iter_mut().enumerate() {
            self.spawn_process(Role::Worker(i), master, slot, started_w.as_fd());
        }
        let mut prober = Slot::default();
        self.spawn_process(Role::Prober, master, &mut prober, started_w.as_fd());
        let mut deadline: Option<u64> = None;
        loop {
            sys::wait_for_signal(100);
            let now = sys::now_ms();
            let _ = sys::take_signal(Signal::Child);
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = sys::read(started_r.as_fd(), &mut buf) {
                for &b in &buf[..n] {
                    if b == PROBER_BYTE {
                        self.prober_up.store(true, Relaxed);
                    } else {
                        self.started.fetch_or(1 << (b & 63), Relaxed);
                    }
                }
            }
            while let Some((pid, status)) = sys::reap_child() {
                let how = sys::describe_exit(status);
                if prober.pid == Some(pid) {
                    prober.pid = None;
                    if deadline.is_none() {
                        log!(Err, "main", "prober (pid {pid}) died: {how}; restarting");
                        prober.respawn_at = Some(now + 1000);
                    }
                    continue;
                }
                let Some(i) = slots.iter().position(|s| s.pid == Some(pid)) else {
                    continue; // a successor that failed: its pipe tells
                };
                let slot = &mut slots[i];
                slot.pid = None;
                if self.owns() {
                    // Gauges are the owner's: after a hand-over the
                    // successor's workers count (and use slot i) now.
                    self.region.process.workers_live.fetch_sub(1, Relaxed);
                    self.region.workers[i].reset_gauges();
                }
                if deadline.is_some() {
                    log!(Info, "main", "worker {i} (pid {pid}) finished: {how}");
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
                let backoff = if delay > 0 {
                    format!(
                        " in {delay} ms (it died {} times in a row at start)",
                        slot.quick_deaths
                    )
                } else {
                    String::new()
                };
                log!(
                    Err,
                    "main",
                    "worker {i} (pid {pid}) died: {how}; restarting{backoff}"
                );
            }
            ctl.worker_pids.clear();
            ctl.worker_pids.extend(slots.iter().filter_map(|s| s.pid));
            let live = ctl.worker_pids.len();
            if self.tick(&mut ctl, live) {
                for s in slots.iter().chain([&prober]) {
                    if let Some(pid) = s.pid {
                        sys::kill(pid, libc::SIGTERM);
                    }
                }
                deadline = Some(now + SHUTDOWN_GRACE_MS);
            }
            if let Some(d) = deadline {
                if slots.iter().chain([&prober]).all(|s| s.pid.is_none()) {
                    log!(Info, "main", "all workers finished; exiting");
                    ctl.kill_stopping();
                    return 0;
                }
                if now >= d {
                    for s in slots.iter().chain([&prober]) {
                        if let Some(pid) = s.pid {
                            log!(Err, "main", "pid {pid} did not finish in time; killing it");
                            sys::kill(pid, libc::SIGKILL);
                        }
                    }
                    ctl.kill_stopping();
                    return 1;
                }
                continue;
            }
            for (i, slot) in slots.iter_mut().enumerate() {
                if slot.respawn_at.is_some_and(|t| now >= t) {
                    if self.owns() {
                        self.region.process.worker_restarts.fetch_add(1, Relaxed);
                    }
                    self.spawn_process(Role::Worker(i), master, slot, started_w.as_fd());
                }
            }
            if prober.respawn_at.is_some_and(|t| now >= t) {
                self.spawn_process(Role::Prober, master, &mut prober, started_w.as_fd());
            }
        }
    }

    fn spawn_process(
        &self,
        role: Role,
        master: libc::pid_t,
        slot: &mut Slot,
        started: std::os::fd::BorrowedFd<'_>,
    ) {
        slot.respawn_at = None;
        match sys::fork() {
            Ok(0) => {
                // The child. It never returns into the master's code.
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    sys::set_process_name(&match role {
                        Role::Worker(i) => format!("lb: worker {i}"),
                        Role::Prober => "lb: prober".to_string(),
                    });
                    if !sys::die_with_parent(libc::SIGTERM, master) {
                        return 0;
                    }
                    if let Err(e) = sys::renew_wake_pipe() {
                        log!(Err, "main", "{role:?}: wake pipe: {e}");
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
                    drop(self.ready.lock().ok().and_then(|mut r| r.take()));
                    // The child's own copies of the listeners (fork gave it
                    // the master's): a worker serves with them, the prober
                    // closes them, so none stays open behind a drain.
                    let listeners = self.listeners.lock().ok().and_then(|mut l| l.take());
                    let say = |b: u8| {
                        let _ = sys::write(started, &[b]);
                    };
                    match role {
                        Role::Worker(i) => match listeners {
                            Some(l) => self.run_worker(i, l, &|| say(i as u8)),
                            None => 0, // draining already: nothing to serve
                        },
                        Role::Prober => {
                            drop(listeners);
                            say(PROBER_BYTE);
                            let master = master as u32;
                            self.run_prober(|| self.region.owned_by(master));
                            0
                        }
                    }
                }))
                .unwrap_or(101);
                sys::exit_now(code);
            }
            Ok(pid) => {
                slot.pid = Some(pid);
                slot.started_ms = sys::now_ms();
                if let Role::Worker(i) = role {
                    if self.owns() {
                        self.region.process.workers_live.fetch_add(1, Relaxed);
                    }
                    log!(Debug, "main", "worker {i} started, pid {pid}");
                }
            }
            Err(e) => {
                log!(Err, "main", "{role:?}: fork failed: {e}; retrying");
                slot.respawn_at = Some(sys::now_ms() + MAX_BACKOFF_MS / 10);
            }
        }
    }
}
