//! Counters behind `/metrics`, rendered in the Prometheus text format.
//!
//! Plain atomics in a `#[repr(C)]` block, no pointers: every worker adds to
//! the same counters, so one scrape sees the whole process (and the block
//! can move into the shared-memory region as it is).
#![forbid(unsafe_code)]

use crate::config::MAX_BACKENDS;
use crate::health::HealthState;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[repr(C)]
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
        }
    }
}

impl Metrics {
    #[inline]
    pub fn response(&self, status: u16) {
        let class = (status / 100).min(5) as usize;
        self.responses[class].fetch_add(1, Relaxed);
    }

    /// The `/metrics` page. `names` are the backends' `host:port`.
    pub fn render(&self, names: &[String], health: &HealthState) -> String {
        let mut o = String::with_capacity(2048 + names.len() * 256);
        let healthy = health.healthy_count(names.len());
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
            self.requests.load(Relaxed),
        );
        let _ = write!(o, "# HELP lb_responses_total Responses sent to clients, by status class.\n# TYPE lb_responses_total counter\n");
        for (class, c) in self.responses.iter().enumerate().skip(1) {
            let _ = writeln!(
                o,
                "lb_responses_total{{code=\"{class}xx\"}} {}",
                c.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "lb_bad_requests_total",
            "Requests rejected as malformed.",
            self.bad_requests.load(Relaxed),
        );
        counter(
            &mut o,
            "lb_retries_total",
            "Requests retried on another backend.",
            self.retries.load(Relaxed),
        );
        counter(
            &mut o,
            "lb_connections_accepted_total",
            "Client connections accepted.",
            self.connections_accepted.load(Relaxed),
        );
        gauge(
            &mut o,
            "lb_connections_active",
            "Client connections open.",
            self.connections_active.load(Relaxed),
        );
        counter(
            &mut o,
            "lb_upstream_connects_total",
            "New connections opened to backends.",
            self.upstream_connects.load(Relaxed),
        );
        counter(
            &mut o,
            "lb_upstream_reuses_total",
            "Requests sent on a pooled backend connection.",
            self.upstream_reuses.load(Relaxed),
        );
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
            (names.len() - healthy) as u64,
        );
        let _ = write!(o, "# HELP lb_backend_up Whether a backend is healthy (1) or not (0).\n# TYPE lb_backend_up gauge\n");
        for (i, n) in names.iter().enumerate() {
            let _ = writeln!(
                o,
                "lb_backend_up{{backend=\"{}\"}} {}",
                escape(n),
                u8::from(health.is_healthy(i))
            );
        }
        let _ = write!(o, "# HELP lb_backend_requests_total Requests sent to a backend.\n# TYPE lb_backend_requests_total counter\n");
        for (i, n) in names.iter().enumerate() {
            let _ = writeln!(
                o,
                "lb_backend_requests_total{{backend=\"{}\"}} {}",
                escape(n),
                self.backend_requests[i].load(Relaxed)
            );
        }
        let _ = write!(o, "# HELP lb_backend_failures_total Failed connects or exchanges with a backend.\n# TYPE lb_backend_failures_total counter\n");
        for (i, n) in names.iter().enumerate() {
            let _ = writeln!(
                o,
                "lb_backend_failures_total{{backend=\"{}\"}} {}",
                escape(n),
                self.backend_failures[i].load(Relaxed)
            );
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
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.requests.fetch_add(3, Relaxed);
        m.response(204);
        let h = HealthState::new(2);
        let text = m.render(&["a:1".to_string(), "b:2".to_string()], &h);
        assert!(text.contains("\nlb_requests_total 3\n"));
        assert!(text.contains("lb_responses_total{code=\"2xx\"} 1\n"));
        assert!(text.contains("\nlb_backends_healthy 2\n"));
        assert!(text.contains("lb_backend_up{backend=\"b:2\"} 1\n"));
        for line in text.lines() {
            assert!(
                line.starts_with('#') || line.split(' ').count() == 2,
                "{line}"
            );
        }
    }
}
