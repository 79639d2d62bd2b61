//! sp: one process, `-w` worker threads and a prober thread; a thread that
//! panics is logged and its loop started again. What it shares with mp is in
//! the parent module (`Supervisor::tick`).
#![forbid(unsafe_code)]

use super::*;

impl Supervisor {
    pub(super) fn run_threads(self) -> i32 {
        let sup = Arc::new(self);
        // The config watch first: a change made while the workers start is
        // seen.
        let discovery = sup.discovery.lock().ok().and_then(|mut d| d.take());
        let mut ctl = Control::new(&sup.cfg, discovery);
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
        let s = Arc::clone(&sup);
        let prober = std::thread::Builder::new()
            .name("lb-prober".into())
            .spawn(move || {
                s.prober_up.store(true, Relaxed);
                s.run_prober(|| s.owns())
            });
        if let Err(e) = &prober {
            log!(
                Err,
                "main",
                "cannot start the prober thread: {e}; no active health checks"
            );
        }
        let mut code = 0;
        loop {
            sys::wait_for_signal(100);
            // A successor that failed is our child: reap it (it is signalled
            // through its pidfd, never by a pid that may be reused).
            while sys::reap_child().is_some() {}
            let live = sup.running.load(Relaxed);
            if sup.tick(&mut ctl, live) && ctl.handed_over {
                // The threads drain on the process-wide shutdown flag.
                sys::raise_flag(Signal::Shutdown);
            }
            if handles.iter().all(|h| h.is_finished()) {
                for h in handles {
                    if h.join().unwrap_or(1) != 0 {
                        code = 1;
                    }
                }
                if let Ok(p) = prober {
                    sys::raise_flag(Signal::Shutdown);
                    let _ = p.join();
                }
                if ctl.draining {
                    log!(Info, "main", "all workers finished; exiting");
                }
                ctl.kill_stopping();
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
            self.running.fetch_add(1, Relaxed);
            if self.owns() {
                region.process.workers_live.fetch_add(1, Relaxed);
            }
            let started = sys::now_ms();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let l = match self.dup_listeners() {
                    Ok(Some(l)) => l,
                    Ok(None) => return 0, // draining already
                    Err(e) => {
                        log!(Err, "main", "worker {i}: cannot duplicate a listener: {e}");
                        return 1;
                    }
                };
                self.run_worker(i, l, &|| {
                    self.started.fetch_or(1 << i, Relaxed);
                })
            }));
            self.running.fetch_sub(1, Relaxed);
            // The gauges are the region owner's: after a hand-over the
            // successor's threads count (this is defect "sp upgrade breaks
            // the gauges": the old threads' exit zeroed `lb_workers`).
            if self.owns() {
                region.process.workers_live.fetch_sub(1, Relaxed);
                region.workers[i].reset_gauges();
            }
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
            if self.owns() {
                region.process.worker_restarts.fetch_add(1, Relaxed);
            }
            std::thread::sleep(Duration::from_millis(delay));
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}
