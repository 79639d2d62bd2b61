//! Counters behind `/metrics`, rendered in the Prometheus text format.
//!
//! Each worker adds to its own [`Metrics`] slot in the shared region
//! (cache-line aligned, so no two workers write the same line); a scrape sums
//! every slot, so whichever worker serves it, it sees the same totals.
#![forbid(unsafe_code)]

use crate::config::MAX_BACKENDS;
use crate::health::HealthState;
use crate::shm::{BackendEntry, Process};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[repr(C, align(64))]
pub struct Metrics {
    /// Requests whose head was read and accepted.
    pub requests: AtomicU64,
    /// Responses sent to clients by status class: 1xx..5xx at index 1..5.
    pub responses: [AtomicU64; 6],
    /// Requests rejected as malformed before any backend saw them.
    pub bad_requests: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicU64,
    pub backend_requests: [AtomicU64; MAX_BACKENDS],
    pub backend_failures: [AtomicU64; MAX_BACKENDS],
    /// Requests sent again to another backend after a failure.
    pub retries: AtomicU64,
    pub upstream_connects: AtomicU64,
    /// Requests that found an idle pooled upstream connection.
    pub upstream_reuses: AtomicU64,
    /// TLS handshakes completed with backends, and how many resumed a session.
    pub tls_handshakes: AtomicU64,
    pub tls_resumed: AtomicU64,
    /// TLS handshakes that failed, by [`TLS_FAILURE_KINDS`].
    pub tls_failures: [AtomicU64; TLS_FAILURE_KINDS.len()],
}

/// The `reason` label values of `lb_tls_handshake_failures_total`.
pub const TLS_FAILURE_KINDS: [&str; 10] = [
    "unknown_issuer",
    "name_mismatch",
    "expired",
    "not_yet_valid",
    "revoked",
    "bad_certificate",
    "alert",
    "incompatible",
    "protocol",
    "truncated",
];

thread_local! {
    /// The counter slot of the worker running on this thread (set by the
    /// worker), for code below the session that has no handle on it (TLS).
    static CURRENT: std::cell::Cell<Option<&'static Metrics>> = const { std::cell::Cell::new(None) };
}

/// Makes `m` the slot [`tls_handshake_done`] counts into on this thread.
pub fn set_current(m: &'static Metrics) {
    CURRENT.with(|c| c.set(Some(m)));
}

/// A TLS handshake with a backend finished (on this thread's worker).
pub fn tls_handshake_done(resumed: bool) {
    CURRENT.with(|c| {
        if let Some(m) = c.get() {
            m.tls_handshakes.fetch_add(1, Relaxed);
            if resumed {
                m.tls_resumed.fetch_add(1, Relaxed);
            }
        }
    });
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: AtomicU64::new(0),
            responses: std::array::from_fn(|_| AtomicU64::new(0)),
            bad_requests: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_active: AtomicU64::new(0),
            backend_requests: std::array::from_fn(|_| AtomicU64::new(0)),
            backend_failures: std::array::from_fn(|_| AtomicU64::new(0)),
            retries: AtomicU64::new(0),
            upstream_connects: AtomicU64::new(0),
            upstream_reuses: AtomicU64::new(0),
            tls_handshakes: AtomicU64::new(0),
            tls_resumed: AtomicU64::new(0),
            tls_failures: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Metrics {
    #[inline]
    pub fn response(&self, status: u16) {
        let class = (status / 100).min(5) as usize;
        self.responses[class].fetch_add(1, Relaxed);
    }

    /// Counts a failed TLS handshake by its kind (see [`TLS_FAILURE_KINDS`]).
    pub fn tls_failure(&self, kind: &str) {
        let i = TLS_FAILURE_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(TLS_FAILURE_KINDS.len() - 2);
        self.tls_failures[i].fetch_add(1, Relaxed);
    }

    /// Zeroes the gauges of a slot whose worker died (its connections are gone).
    pub fn reset_gauges(&self) {
        self.connections_active.store(0, Relaxed);
    }
}

/// Everything a scrape reads.
pub struct View<'a> {
    /// Every worker slot (unused ones are zero).
    pub slots: &'a [Metrics],
    /// The live backend set.
    pub backends: &'a [BackendEntry],
    pub health: &'a HealthState,
    pub process: &'a Process,
    pub generation: u64,
}

impl View<'_> {
    fn sum(&self, f: impl Fn(&Metrics) -> &AtomicU64) -> u64 {
        self.slots.iter().map(|m| f(m).load(Relaxed)).sum()
    }

    /// The `/metrics` page.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096 + self.backends.len() * 256);
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        };
        counter(
            &mut o,
            "lb_requests_total",
            "Requests received and accepted.",
            self.sum(|m| &m.requests),
        );
        let _ = write!(o, "# HELP lb_responses_total Responses sent to clients, by status class.\n# TYPE lb_responses_total counter\n");
        for class in 1..6 {
            let _ = writeln!(
                o,
                "lb_responses_total{{code=\"{class}xx\"}} {}",
                self.sum(|m| &m.responses[class])
            );
        }
        counter(
            &mut o,
            "lb_bad_requests_total",
            "Requests rejected as malformed.",
            self.sum(|m| &m.bad_requests),
        );
        counter(
            &mut o,
            "lb_retries_total",
            "Requests retried on another backend.",
            self.sum(|m| &m.retries),
        );
        counter(
            &mut o,
            "lb_connections_accepted_total",
            "Client connections accepted.",
            self.sum(|m| &m.connections_accepted),
        );
        gauge(
            &mut o,
            "lb_connections_active",
            "Client connections open.",
            self.sum(|m| &m.connections_active),
        );
        counter(
            &mut o,
            "lb_upstream_connects_total",
            "New connections opened to backends.",
            self.sum(|m| &m.upstream_connects),
        );
        counter(
            &mut o,
            "lb_upstream_reuses_total",
            "Requests sent on a pooled backend connection.",
            self.sum(|m| &m.upstream_reuses),
        );
        counter(
            &mut o,
            "lb_tls_handshakes_total",
            "TLS handshakes completed with backends.",
            self.sum(|m| &m.tls_handshakes),
        );
        counter(
            &mut o,
            "lb_tls_resumed_total",
            "TLS handshakes with backends that resumed a session.",
            self.sum(|m| &m.tls_resumed),
        );
        let _ = write!(o, "# HELP lb_tls_handshake_failures_total TLS handshakes with backends that failed, by reason.\n# TYPE lb_tls_handshake_failures_total counter\n");
        for (i, kind) in TLS_FAILURE_KINDS.iter().enumerate() {
            let _ = writeln!(
                o,
                "lb_tls_handshake_failures_total{{reason=\"{kind}\"}} {}",
                self.sum(|m| &m.tls_failures[i])
            );
        }
        let p = self.process;
        let configured = p.workers_configured.load(Relaxed) as usize;
        gauge(
            &mut o,
            "lb_workers",
            "Worker processes or threads running.",
            u64::from(p.workers_live.load(Relaxed)),
        );
        counter(
            &mut o,
            "lb_worker_restarts_total",
            "Workers restarted after dying.",
            p.worker_restarts.load(Relaxed),
        );
        let _ = write!(o, "# HELP lb_worker_requests_total Requests accepted, by worker.\n# TYPE lb_worker_requests_total counter\n");
        for (w, m) in self.slots.iter().enumerate().take(configured) {
            let _ = writeln!(
                o,
                "lb_worker_requests_total{{worker=\"{w}\"}} {}",
                m.requests.load(Relaxed)
            );
        }
        let _ = write!(o, "# HELP lb_config_reloads_total Configuration reloads, by result.\n# TYPE lb_config_reloads_total counter\n");
        let _ = writeln!(
            o,
            "lb_config_reloads_total{{result=\"success\"}} {}",
            p.reloads_ok.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "lb_config_reloads_total{{result=\"failure\"}} {}",
            p.reloads_failed.load(Relaxed)
        );
        counter(
            &mut o,
            "lb_upgrades_total",
            "Binary upgrades (SIGUSR2) this process took over from.",
            p.upgrades.load(Relaxed),
        );
        gauge(
            &mut o,
            "lb_config_generation",
            "Generation of the live backend set.",
            self.generation,
        );
        gauge(
            &mut o,
            "lb_uptime_seconds",
            "Seconds since the load balancer started.",
            crate::sys::now_ms().saturating_sub(p.started_ms.load(Relaxed)) / 1000,
        );
        let ids: Vec<usize> = self.backends.iter().map(|b| b.id as usize).collect();
        let healthy = ids.iter().filter(|&&i| self.health.is_healthy(i)).count();
        gauge(
            &mut o,
            "lb_backends_healthy",
            "Backends currently healthy.",
            healthy as u64,
        );
        gauge(
            &mut o,
            "lb_backends_unhealthy",
            "Backends currently unhealthy.",
            (ids.len() - healthy) as u64,
        );
        let labels: Vec<String> = self
            .backends
            .iter()
            .map(|b| escape(&format!("{}:{}", b.host(), b.port)))
            .collect();
        let _ = write!(o, "# HELP lb_backend_up Whether a backend is healthy (1) or not (0).\n# TYPE lb_backend_up gauge\n");
        for (l, &i) in labels.iter().zip(&ids) {
            let up = u8::from(self.health.is_healthy(i));
            let _ = writeln!(o, "lb_backend_up{{backend=\"{l}\"}} {up}");
        }
        let _ = write!(o, "# HELP lb_backend_requests_total Requests sent to a backend.\n# TYPE lb_backend_requests_total counter\n");
        for (l, &i) in labels.iter().zip(&ids) {
            let v = self.sum(|m| &m.backend_requests[i]);
            let _ = writeln!(o, "lb_backend_requests_total{{backend=\"{l}\"}} {v}");
        }
        let _ = write!(o, "# HELP lb_backend_failures_total Failed connects or exchanges with a backend.\n# TYPE lb_backend_failures_total counter\n");
        for (l, &i) in labels.iter().zip(&ids) {
            let v = self.sum(|m| &m.backend_failures[i]);
            let _ = writeln!(o, "lb_backend_failures_total{{backend=\"{l}\"}} {v}");
        }
        o
    }
}

/// Label values escape backslash, quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_sum_of_all_worker_slots() {
        let (r, _fd) = crate::shm::Region::create().unwrap();
        let a = BackendEntry::new("a", "127.0.0.1:1".parse().unwrap(), 1, false, 0);
        let b = BackendEntry::new("b", "127.0.0.1:2".parse().unwrap(), 1, false, 1);
        let st = crate::shm::Settings::new(
            crate::config::Strategy::RoundRobin,
            &crate::config::HealthSettings::default(),
        );
        let generation = r.publish(&[a, b], &st);
        r.health.reset(2);
        r.process.workers_configured.store(2, Relaxed);
        r.process.workers_live.store(2, Relaxed);
        r.workers[0].requests.fetch_add(3, Relaxed);
        r.workers[1].requests.fetch_add(4, Relaxed);
        r.workers[1].response(204);
        r.workers[0].backend_requests[1].fetch_add(2, Relaxed);
        r.workers[1].backend_requests[1].fetch_add(5, Relaxed);
        let backends = [a, b];
        let text = View {
            slots: &r.workers,
            backends: &backends,
            health: &r.health,
            process: &r.process,
            generation,
        }
        .render();
        assert!(text.contains("\nlb_requests_total 7\n"), "{text}");
        assert!(text.contains("lb_worker_requests_total{worker=\"0\"} 3\n"));
        assert!(text.contains("lb_worker_requests_total{worker=\"1\"} 4\n"));
        assert!(!text.contains("worker=\"2\""));
        assert!(text.contains("lb_responses_total{code=\"2xx\"} 1\n"));
        assert!(text.contains("\nlb_backends_healthy 2\n"));
        assert!(text.contains("\nlb_workers 2\n"));
        assert!(text.contains("\nlb_config_generation 1\n"));
        assert!(text.contains("lb_backend_requests_total{backend=\"b:2\"} 7\n"));
        assert!(text.contains("lb_backend_up{backend=\"a:1\"} 1\n"));
        for line in text.lines() {
            assert!(
                line.starts_with('#') || line.split(' ').count() == 2,
                "{line}"
            );
        }
    }
}
