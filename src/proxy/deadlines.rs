//! Deadlines: the sweep every `SWEEP_MS` (timed-out sessions, the body
//! rate, idle pooled connections, spare buffers, backend and certificate
//! refreshes) and what a timeout does to a session in each phase.
#![forbid(unsafe_code)]

use super::session::Phase;
use super::upstream::UpstreamFailure;
use super::worker::{Worker, BODY_POOL_MAX, PIPES_KEEP, TRIM_MS};
use crate::config::BODY_RATE_WINDOW_MS;
use crate::log;
use crate::log::Kind;
use crate::sys;
use std::sync::atomic::Ordering::Relaxed;

impl Worker {
    pub(super) fn sweep(&mut self) {
        crate::log::report_suppressed();
        if let Some(log) = self.access.as_mut() {
            let gen = sys::reopen_generation();
            if gen != self.reopen_seen {
                self.reopen_seen = gen;
                if let Err(e) = log.reopen() {
                    crate::log!(Err, "main", "access log: reopening: {e}");
                }
            }
            if let Err(e) = log.flush_if_due(self.now) {
                crate::log_limited!(crate::log::Kind::AccessLogWrite, Err, "access log: {e}");
            }
        }
        // A worker with no requests still drops connections to removed backends.
        self.refresh_backends();
        self.refresh_certificates();
        if self.now >= self.next_trim {
            self.next_trim = self.now + TRIM_MS;
            self.bufs.trim();
            self.pipes.truncate(PIPES_KEEP);
            self.body_pool.truncate(BODY_POOL_MAX / 4);
        }
        self.resume_accepting();
        let mut idx = std::mem::take(&mut self.scratch);
        idx.clear();
        idx.extend(self.sessions.indices());
        for &ci in &idx {
            if self
                .sessions
                .get(ci)
                .is_some_and(|c| c.deadline <= self.now)
            {
                self.timeout(ci);
            } else if self.body_too_slow(ci) {
                let c = self.sessions.get(ci).expect("checked");
                crate::log_limited!(
                    Kind::SlowClient,
                    Info,
                    "{}: request body slower than client_body_min_rate (408)",
                    c.peer()
                );
                self.shared.metrics.slow_bodies.fetch_add(1, Relaxed);
                self.fail_exchange(ci, 408, "request body too slow");
                self.drive(ci);
            }
        }
        idx.clear();
        // The pool keeps what recent concurrency needed: a connection idle
        // longer than `upstream_idle_ms` goes (HAProxy's pool-purge-delay).
        let idle_ms = self.shared.config.timeouts.upstream_idle.as_millis() as u64;
        let mut idle = 0;
        for pool in &self.pools {
            idle += pool.len();
            idx.extend(pool.iter().copied().filter(|&ui| {
                self.ups
                    .get(ui)
                    .is_some_and(|u| self.now.saturating_sub(u.idle_since) > idle_ms)
            }));
        }
        self.shared
            .metrics
            .upstream_idle
            .store((idle - idx.len()) as u64, Relaxed);
        for &ui in &idx {
            self.close_upstream(ui);
        }
        self.scratch = idx;
    }

    /// `client_body_min_rate`: whether a request body the worker is waiting
    /// for (buffering it, or streaming it to a connected backend) came
    /// slower than the rate over the last window; starts a new window when
    /// one is over and the rate was met.
    fn body_too_slow(&mut self, ci: u32) -> bool {
        let rate = self.shared.config.timeouts.client_body_min_rate;
        let Some(c) = self.sessions.get_mut(ci) else {
            return false;
        };
        let connected =
            c.up.and_then(|ui| self.ups.get(ui))
                .is_some_and(|u| u.connected);
        if rate == 0 || !c.awaits_client_body(connected) {
            // Time spent waiting on the backend is not the client's: the
            // window starts again when the worker waits on the client.
            c.req.rate_since = self.now;
            c.req.rate_bytes = 0;
            return false;
        }
        let elapsed = self.now.saturating_sub(c.req.rate_since);
        if elapsed < BODY_RATE_WINDOW_MS {
            return false;
        }
        if c.req.rate_bytes.saturating_mul(1000) < rate.saturating_mul(elapsed) {
            return true;
        }
        c.req.rate_since = self.now;
        c.req.rate_bytes = 0;
        false
    }

    pub(super) fn timeout(&mut self, ci: u32) {
        let c = self.sessions.get_mut(ci).expect("client");
        if c.stream.io.listener_handshaking() {
            if let Some(t) = &self.listener_tls {
                t.handshake_timed_out();
            }
        }
        match c.phase {
            Phase::Head if c.rbuf.as_ref().is_some_and(|b| !b.is_empty()) => {
                crate::log_limited!(
                    Kind::SlowClient,
                    Info,
                    "{}: request head timed out (408)",
                    c.peer()
                );
                self.local_error(ci, 408, "request head not received in time");
            }
            Phase::Body => {
                crate::log_limited!(
                    Kind::SlowClient,
                    Info,
                    "{}: request body not received within client_body_ms (408)",
                    c.peer()
                );
                self.local_error(ci, 408, "request body not received in time");
            }
            Phase::Head | Phase::Local | Phase::Drain | Phase::Tunnel => {
                return self.close_client(ci)
            }
            Phase::Proxy => {
                let connected =
                    c.up.and_then(|ui| self.ups.get(ui))
                        .is_some_and(|u| u.connected);
                let client_owes_body = c.awaits_client_body(connected);
                if !connected {
                    self.upstream_failed(ci, UpstreamFailure::ConnectTimeout);
                } else if !c.resp.head_done && client_owes_body {
                    // The client stopped sending its body: its fault, not the
                    // backend's. The half-sent request makes the backend
                    // connection unusable.
                    crate::log_limited!(
                        Kind::SlowClient,
                        Info,
                        "{}: request body stalled (408)",
                        c.peer()
                    );
                    self.fail_exchange(ci, 408, "request body not received in time");
                } else if !c.resp.head_done {
                    let b = c.backend;
                    crate::log_limited!(
                        Kind::UpstreamFailed(b),
                        Warn,
                        "backend {}: no response in time (504)",
                        self.backends.name(b)
                    );
                    self.backend_failed(b, crate::metrics::ErrorKind::Timeout);
                    self.fail_exchange(ci, 504, "the backend did not answer in time");
                } else {
                    log!(Warn, "proxy", "{}: body stalled; closing", c.peer());
                    self.fail_exchange(ci, 504, "response body stalled");
                }
            }
        }
        self.drive(ci);
    }
}
