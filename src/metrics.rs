//! Counters behind `/metrics`, rendered in the Prometheus text format.
//!
//! Each worker adds to its own [`Metrics`] slot in the shared region
//! (cache-line aligned, so no two workers write the same line); a scrape sums
//! every slot, so whichever worker serves it, it sees the same totals.
//!
//! Latency histograms ([`Histogram`]) are counters too: one counter per
//! bucket (not cumulative: an observation is one `fetch_add` on the bucket it
//! falls in, plus one on the sum), made cumulative when rendered. Their
//! `_count` is not stored but summed from the buckets at render, so it always
//! equals the `+Inf` bucket, even while workers are adding.
//!
//! Recording never allocates, locks or loops over more than the bucket
//! bounds: a worker calls [`Metrics::observe_request`],
//! [`Metrics::observe_upstream`] and [`Metrics::backend_error`] on its own
//! slot.
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
    /// `lb_request_duration_seconds`: a request as its client sees it, from
    /// the first byte of its head read to the last byte of its response
    /// written (nginx's `$request_time`).
    pub request_duration: Histogram,
    /// `lb_upstream_response_seconds`, by backend id: from the request (head)
    /// sent to the backend to its response head received and parsed.
    pub upstream_response: [Histogram; MAX_BACKENDS],
    /// `lb_backend_errors_total`, by backend id and [`ErrorKind`].
    pub backend_errors: [[AtomicU64; ErrorKind::COUNT]; MAX_BACKENDS],
    // Added in what was padding (zero in a region made by an older build).
    /// Upstream connections closed instead of pooled: bytes were waiting
    /// past the response (`lb_upstream_unread_closes_total`).
    pub upstream_unread: AtomicU64,
    /// Times accepting paused: `max_connections` reached, or out of
    /// descriptors (`lb_accept_pauses_total`).
    pub accept_pauses: AtomicU64,
    /// Upstream attempts that failed for a local reason (no descriptor, no
    /// memory): not counted against the backend (`lb_local_errors_total`).
    pub local_errors: AtomicU64,
    /// Request bodies refused for arriving below `client_body_min_rate`.
    pub slow_bodies: AtomicU64,
    /// Requests this worker has in flight to each backend id (a gauge;
    /// `least_connections` and `p2c` sum it over the workers).
    pub inflight: [AtomicU64; MAX_BACKENDS],
    /// Idle pooled backend connections this worker holds (a gauge, set at
    /// each sweep: `lb_upstream_idle_connections`).
    pub upstream_idle: AtomicU64,
}

/// Takes one from a gauge, never below zero: a slot's gauges may have been
/// zeroed under a worker still counting down (an upgrade's old worker
/// draining while the successor's worker of the same slot died and the
/// master reset it). Uncontended, as a `fetch_sub` (one CAS on the worker's
/// own cache line).
#[inline]
pub fn gauge_down(g: &AtomicU64) {
    let _ = g.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
}

/// Upper bounds of the latency buckets, in microseconds (the `le` labels are
/// [`LATENCY_BOUNDS_LE`]).
///
/// Why these: a 1-2.5-5 ladder (the Prometheus client default's shape) from
/// 0.5 ms, a proxied request on a LAN or loopback, to 10 s, past which a
/// request is broken rather than slow (the connect timeout is 3 s; longer
/// waits end at the response timeout, and show as `+Inf`). Three buckets a
/// decade keep a p99 estimate within a factor of 2.5 while a histogram stays
/// 128 bytes (14 buckets + `+Inf` + sum: two cache lines).
///
/// The per-backend histogram uses the same bounds. Fewer (10 buckets, 96
/// bytes) would save 128 KiB of the region, but the two histograms could no
/// longer be compared bucket by bucket (client-seen time against backend
/// time, same `le`), and the status page's p99 would lose its tail.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// The `le` label of each bound of [`LATENCY_BOUNDS_US`], in seconds, as
/// written (no float formatting at render).
pub const LATENCY_BOUNDS_LE: [&str; 14] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10",
];

/// Buckets of a [`Histogram`]: one per bound and the `+Inf` one.
pub const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// One latency histogram in the region: a counter per bucket and the sum.
#[repr(C)]
pub struct Histogram {
    /// `buckets[i]`: observations in (`bound[i-1]`, `bound[i]`]; the last
    /// one those above every bound. Not cumulative.
    pub buckets: [AtomicU64; BUCKETS],
    /// Sum of the observations, in microseconds (584,000 years before it
    /// wraps).
    pub sum_us: AtomicU64,
}
const _: () = assert!(std::mem::size_of::<Histogram>() == 128);

/// The bucket an observation of `us` microseconds falls in: the first bound
/// it does not exceed (`le` is "less than or equal").
#[inline]
pub fn bucket_of(us: u64) -> usize {
    LATENCY_BOUNDS_US.partition_point(|&b| b < us)
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation: two `Relaxed` adds to this worker's slot.
    #[inline]
    pub fn observe(&self, us: u64) {
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.sum_us.store(0, Relaxed);
    }
}

/// Histogram counts read out of (and summed over) worker slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per bucket, not cumulative (see [`Histogram::buckets`]).
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
}

impl HistogramSnapshot {
    /// Adds one slot's histogram.
    pub fn add(&mut self, h: &Histogram) {
        for (s, b) in self.buckets.iter_mut().zip(&h.buckets) {
            *s += b.load(Relaxed);
        }
        self.sum_us += h.sum_us.load(Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `q`-quantile (0..=1) in seconds, estimated the way Prometheus's
    /// `histogram_quantile` does: linear within the bucket the rank falls in
    /// (from 0 for the first); the highest finite bound for the `+Inf`
    /// bucket. `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 || q.is_nan() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&hi) = LATENCY_BOUNDS_US.get(i) else {
                    break;
                };
                let lo = if i == 0 { 0 } else { LATENCY_BOUNDS_US[i - 1] };
                let frac = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some((lo as f64 + (hi - lo) as f64 * frac) / 1e6);
            }
            below += n;
        }
        Some(LATENCY_BOUNDS_US[LATENCY_BOUNDS_US.len() - 1] as f64 / 1e6)
    }
}

/// Why an exchange with a backend failed: the `kind` label of
/// `lb_backend_errors_total`. One failed attempt counts once; a retried
/// request may count several (one per backend tried).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connect failed (refused, unreachable, no route...).
    Connect,
    /// No connection within the connect timeout, or no response head within
    /// the response timeout, or a body that stopped moving.
    Timeout,
    /// The backend reset or closed the connection before its response was
    /// complete (`ECONNRESET`, `EPIPE`, EOF before the head or the body's end).
    Reset,
    /// A response the parser refused: bad head, ambiguous framing, bad chunks.
    BadResponse,
    /// The TLS handshake failed (also in `lb_tls_handshake_failures_total`,
    /// by reason).
    Tls,
}

impl ErrorKind {
    pub const COUNT: usize = 5;
    pub const ALL: [ErrorKind; ErrorKind::COUNT] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::BadResponse,
        ErrorKind::Tls,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::Tls => "tls",
        }
    }

    /// The kind of a failed socket operation with a backend: timeouts and
    /// resets by their error, anything else as a connect failure when
    /// `connecting`, else a reset (the connection is unusable either way).
    pub fn of_io(e: &std::io::Error, connecting: bool) -> ErrorKind {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::TimedOut => ErrorKind::Timeout,
            K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::NotConnected => ErrorKind::Reset,
            _ if connecting => ErrorKind::Connect,
            _ => ErrorKind::Reset,
        }
    }
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
            request_duration: Histogram::default(),
            upstream_response: std::array::from_fn(|_| Histogram::default()),
            backend_errors: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            upstream_unread: AtomicU64::new(0),
            accept_pauses: AtomicU64::new(0),
            local_errors: AtomicU64::new(0),
            slow_bodies: AtomicU64::new(0),
            inflight: std::array::from_fn(|_| AtomicU64::new(0)),
            upstream_idle: AtomicU64::new(0),
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

    /// A response to a client is complete (or the connection ended with
    /// it): `duration_us` from the first byte of its request read.
    #[inline]
    pub fn observe_request(&self, duration_us: u64) {
        self.request_duration.observe(duration_us);
    }

    /// A backend's response head was received and parsed, `us` after the
    /// request head was sent. Ids out of range are ignored.
    #[inline]
    pub fn observe_upstream(&self, backend_id: usize, us: u64) {
        if let Some(h) = self.upstream_response.get(backend_id) {
            h.observe(us);
        }
    }

    /// One failed attempt with a backend. Ids out of range are ignored.
    #[inline]
    pub fn backend_error(&self, backend_id: usize, kind: ErrorKind) {
        if let Some(e) = self.backend_errors.get(backend_id) {
            e[kind as usize].fetch_add(1, Relaxed);
        }
    }

    /// Zeroes everything counted for `backend_id` (the id was taken into use
    /// by another backend: its counts start from zero).
    pub fn reset_backend(&self, backend_id: usize) {
        if backend_id >= MAX_BACKENDS {
            return;
        }
        self.backend_requests[backend_id].store(0, Relaxed);
        self.backend_failures[backend_id].store(0, Relaxed);
        self.upstream_response[backend_id].reset();
        for e in &self.backend_errors[backend_id] {
            e.store(0, Relaxed);
        }
    }

    /// Zeroes the gauges of a slot whose worker died (its connections are gone).
    pub fn reset_gauges(&self) {
        self.connections_active.store(0, Relaxed);
        for g in &self.inflight {
            g.store(0, Relaxed);
        }
        self.upstream_idle.store(0, Relaxed);
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

    /// `lb_request_duration_seconds`, summed over the worker slots.
    pub fn request_histogram(&self) -> HistogramSnapshot {
        let mut h = HistogramSnapshot::default();
        for m in self.slots {
            h.add(&m.request_duration);
        }
        h
    }

    /// `lb_upstream_response_seconds` of one backend id, summed over the
    /// worker slots (empty for an id out of range).
    pub fn upstream_histogram(&self, backend_id: usize) -> HistogramSnapshot {
        let mut h = HistogramSnapshot::default();
        if backend_id < MAX_BACKENDS {
            for m in self.slots {
                h.add(&m.upstream_response[backend_id]);
            }
        }
        h
    }

    /// `lb_backend_errors_total` of one backend id and kind.
    pub fn backend_errors(&self, backend_id: usize, kind: ErrorKind) -> u64 {
        if backend_id >= MAX_BACKENDS {
            return 0;
        }
        self.sum(|m| &m.backend_errors[backend_id][kind as usize])
    }

    /// `lb_backend_requests_total` of one backend id.
    pub fn backend_requests(&self, backend_id: usize) -> u64 {
        if backend_id >= MAX_BACKENDS {
            return 0;
        }
        self.sum(|m| &m.backend_requests[backend_id])
    }

    /// `lb_backend_inflight` of one backend id.
    pub fn backend_inflight(&self, backend_id: usize) -> u64 {
        if backend_id >= MAX_BACKENDS {
            return 0;
        }
        self.sum(|m| &m.inflight[backend_id])
    }

    /// `lb_backend_failures_total` of one backend id.
    pub fn backend_failures(&self, backend_id: usize) -> u64 {
        if backend_id >= MAX_BACKENDS {
            return 0;
        }
        self.sum(|m| &m.backend_failures[backend_id])
    }

    /// Requests accepted, over all workers.
    pub fn requests(&self) -> u64 {
        self.sum(|m| &m.requests)
    }

    /// Client connections open, over all workers.
    pub fn connections_active(&self) -> u64 {
        self.sum(|m| &m.connections_active)
    }

    /// Responses sent by status class (1 for 1xx .. 5 for 5xx).
    pub fn responses(&self, class: usize) -> u64 {
        if class >= 6 {
            return 0;
        }
        self.sum(|m| &m.responses[class])
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
        // A counter with `result="success"` and `result="failure"` series.
        let by_result = |o: &mut String, name: &str, help: &str, ok: u64, failed: u64| {
            let _ = write!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n\
                 {name}{{result=\"success\"}} {ok}\n{name}{{result=\"failure\"}} {failed}\n"
            );
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
        gauge(
            &mut o,
            "lb_upstream_idle_connections",
            "Idle pooled backend connections, over all workers (as of each worker's last sweep).",
            self.sum(|m| &m.upstream_idle),
        );
        counter(
            &mut o,
            "lb_upstream_unread_closes_total",
            "Backend connections closed instead of pooled: bytes waited past the response.",
            self.sum(|m| &m.upstream_unread),
        );
        counter(
            &mut o,
            "lb_accept_pauses_total",
            "Times a worker stopped accepting: max_connections reached or out of descriptors.",
            self.sum(|m| &m.accept_pauses),
        );
        counter(
            &mut o,
            "lb_local_errors_total",
            "Backend attempts that failed for a local reason (descriptors, memory); not held against the backend.",
            self.sum(|m| &m.local_errors),
        );
        counter(
            &mut o,
            "lb_slow_request_bodies_total",
            "Request bodies refused (408) for arriving below client_body_min_rate.",
            self.sum(|m| &m.slow_bodies),
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
        by_result(
            &mut o,
            "lb_config_reloads_total",
            "Configuration reloads, by result.",
            p.reloads_ok.load(Relaxed),
            p.reloads_failed.load(Relaxed),
        );
        by_result(
            &mut o,
            "lb_upgrades_total",
            "Binary upgrades (SIGUSR2), by result: handed over to a ready successor, or not (it failed, was not ready in time, or a stop signal cancelled it).",
            p.upgrades.load(Relaxed),
            p.upgrades_failed.load(Relaxed),
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
        // `backend` is the configured `host:port`; a backend given by name
        // also has its `address`, since one name can stand for several
        // (a name followed through DNS): each series stays unique.
        let labels: Vec<String> = self
            .backends
            .iter()
            .map(|b| {
                let l = escape(&format!("{}:{}", b.host(), b.port));
                if b.is_named() {
                    format!("backend=\"{l}\",address=\"{}\"", b.addr())
                } else {
                    format!("backend=\"{l}\"")
                }
            })
            .collect();
        let _ = write!(o, "# HELP lb_backend_up Whether a backend is healthy (1) or not (0).\n# TYPE lb_backend_up gauge\n");
        for (l, &i) in labels.iter().zip(&ids) {
            let up = u8::from(self.health.is_healthy(i));
            let _ = writeln!(o, "lb_backend_up{{{l}}} {up}");
        }
        let _ = write!(o, "# HELP lb_backend_requests_total Requests sent to a backend.\n# TYPE lb_backend_requests_total counter\n");
        for (l, &i) in labels.iter().zip(&ids) {
            let v = self.sum(|m| &m.backend_requests[i]);
            let _ = writeln!(o, "lb_backend_requests_total{{{l}}} {v}");
        }
        let _ = write!(o, "# HELP lb_backend_inflight Requests in flight to a backend, over all workers.\n# TYPE lb_backend_inflight gauge\n");
        for (l, &i) in labels.iter().zip(&ids) {
            let v = self.sum(|m| &m.inflight[i]);
            let _ = writeln!(o, "lb_backend_inflight{{{l}}} {v}");
        }
        let _ = write!(o, "# HELP lb_backend_failures_total Failed connects or exchanges with a backend.\n# TYPE lb_backend_failures_total counter\n");
        for (l, &i) in labels.iter().zip(&ids) {
            let v = self.sum(|m| &m.backend_failures[i]);
            let _ = writeln!(o, "lb_backend_failures_total{{{l}}} {v}");
        }
        let _ = write!(o, "# HELP lb_backend_errors_total Failed attempts with a backend, by kind.\n# TYPE lb_backend_errors_total counter\n");
        for (l, &i) in labels.iter().zip(&ids) {
            for kind in ErrorKind::ALL {
                let v = self.backend_errors(i, kind);
                let k = kind.as_str();
                let _ = writeln!(o, "lb_backend_errors_total{{{l},kind=\"{k}\"}} {v}");
            }
        }
        let name = "lb_request_duration_seconds";
        let _ = write!(o, "# HELP {name} Requests from their first byte read to their response's last byte written.\n# TYPE {name} histogram\n");
        histogram(&mut o, name, "", &self.request_histogram());
        let name = "lb_upstream_response_seconds";
        let _ = write!(o, "# HELP {name} Backend response time, from the request sent to the response head received.\n# TYPE {name} histogram\n");
        for (l, &i) in labels.iter().zip(&ids) {
            histogram(&mut o, name, l, &self.upstream_histogram(i));
        }
        crate::net::tls_listener::render_metrics(&mut o);
        crate::dns_shared::render_metrics(&mut o);
        o
    }
}

/// The `p`th percentile (0..=100) of a backend's upstream response time, in
/// seconds, estimated from the buckets (see [`HistogramSnapshot::quantile`]):
/// `percentile(&view, id, 99.0)`. `None` before its first response.
pub fn percentile(view: &View<'_>, backend_id: usize, p: f64) -> Option<f64> {
    view.upstream_histogram(backend_id).quantile(p / 100.0)
}

/// Writes one histogram's series: cumulative `_bucket`s, `_sum` in seconds
/// and `_count`. `labels` (escaped, without braces) go before `le`.
fn histogram(o: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le = LATENCY_BOUNDS_LE.get(i).copied().unwrap_or("+Inf");
        let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let (s, us) = (h.sum_us / 1_000_000, h.sum_us % 1_000_000);
    let _ = writeln!(o, "{name}_sum{braces} {s}.{us:06}");
    let _ = writeln!(o, "{name}_count{braces} {cumulative}");
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

    /// What a scrape of `r` shows, with `backends` live at `generation`.
    fn view<'a>(
        r: &'a crate::shm::Region,
        backends: &'a [BackendEntry],
        generation: u64,
    ) -> View<'a> {
        View {
            slots: &r.workers,
            backends,
            health: &r.health,
            process: &r.process,
            generation,
        }
    }

    /// Two backends behind one name (a name followed through DNS, two
    /// addresses) are two series each, told apart by `address`; a backend
    /// given as an IP literal has no `address` label. No series repeats:
    /// Prometheus rejects a whole scrape with a duplicate sample.
    #[test]
    fn members_of_one_name_are_told_apart_by_address() {
        let (r, _fd) = crate::shm::Region::create().unwrap();
        let one = BackendEntry::new("app.test", "127.0.0.2:80".parse().unwrap(), 1, false, 0);
        let two = BackendEntry::new("app.test", "127.0.0.3:80".parse().unwrap(), 1, false, 1);
        let ip = BackendEntry::new("10.0.0.9", "10.0.0.9:80".parse().unwrap(), 1, false, 2);
        let v6 = BackendEntry::new("::1", "[::1]:80".parse().unwrap(), 1, false, 3);
        // An SRV target whose name reads like another IP.
        let odd = BackendEntry::new("1.2.3.4", "127.0.0.5:80".parse().unwrap(), 1, false, 4);
        let st = crate::shm::Settings::new(
            crate::config::Strategy::RoundRobin,
            &crate::config::HealthSettings::default(),
        );
        let backends = [one, two, ip, v6, odd];
        let generation = r.publish(&backends, &st).unwrap();
        r.health.reset(5);
        r.workers[0].backend_requests[1].fetch_add(3, Relaxed);
        let text = view(r, &backends, generation).render();
        for want in [
            "lb_backend_requests_total{backend=\"app.test:80\",address=\"127.0.0.2:80\"} 0\n",
            "lb_backend_requests_total{backend=\"app.test:80\",address=\"127.0.0.3:80\"} 3\n",
            "lb_backend_requests_total{backend=\"10.0.0.9:80\"} 0\n",
            "lb_backend_requests_total{backend=\"::1:80\"} 0\n",
            "lb_backend_requests_total{backend=\"1.2.3.4:80\",address=\"127.0.0.5:80\"} 0\n",
            "lb_upstream_response_seconds_count{backend=\"app.test:80\",address=\"127.0.0.3:80\"} 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let mut series: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(k, _)| k))
            .collect();
        let n = series.len();
        series.sort_unstable();
        series.dedup();
        assert_eq!(series.len(), n, "a series repeats in\n{text}");
    }

    #[test]
    fn renders_the_sum_of_all_worker_slots() {
        let (r, _fd) = crate::shm::Region::create().unwrap();
        let a = BackendEntry::new("a", "127.0.0.1:1".parse().unwrap(), 1, false, 0);
        let b = BackendEntry::new("b", "127.0.0.1:2".parse().unwrap(), 1, false, 1);
        let st = crate::shm::Settings::new(
            crate::config::Strategy::RoundRobin,
            &crate::config::HealthSettings::default(),
        );
        let generation = r.publish(&[a, b], &st).unwrap();
        r.health.reset(2);
        r.process.workers_configured.store(2, Relaxed);
        r.process.workers_live.store(2, Relaxed);
        r.workers[0].requests.fetch_add(3, Relaxed);
        r.workers[1].requests.fetch_add(4, Relaxed);
        r.workers[1].response(204);
        r.workers[0].backend_requests[1].fetch_add(2, Relaxed);
        r.workers[1].backend_requests[1].fetch_add(5, Relaxed);
        let backends = [a, b];
        let text = view(r, &backends, generation).render();
        assert!(text.contains("\nlb_requests_total 7\n"), "{text}");
        assert!(text.contains("lb_worker_requests_total{worker=\"0\"} 3\n"));
        assert!(text.contains("lb_worker_requests_total{worker=\"1\"} 4\n"));
        assert!(!text.contains("worker=\"2\""));
        assert!(text.contains("lb_responses_total{code=\"2xx\"} 1\n"));
        assert!(text.contains("\nlb_backends_healthy 2\n"));
        assert!(text.contains("\nlb_workers 2\n"));
        assert!(text.contains("\nlb_config_generation 1\n"));
        assert!(
            text.contains("lb_backend_requests_total{backend=\"b:2\",address=\"127.0.0.1:2\"} 7\n")
        );
        assert!(text.contains("lb_backend_up{backend=\"a:1\",address=\"127.0.0.1:1\"} 1\n"));
        for line in text.lines() {
            assert!(
                line.starts_with('#') || line.split(' ').count() == 2,
                "{line}"
            );
        }
    }

    #[test]
    fn observations_fall_in_the_first_bucket_they_do_not_exceed() {
        // (microseconds, bucket)
        let table: &[(u64, usize)] = &[
            (0, 0),
            (1, 0),
            (500, 0),
            (501, 1),
            (1_000, 1),
            (1_001, 2),
            (99_999, 7),
            (100_000, 7),
            (100_001, 8),
            (9_999_999, 13),
            (10_000_000, 13),
            (10_000_001, 14),
            (u64::MAX, 14),
        ];
        for &(us, want) in table {
            assert_eq!(bucket_of(us), want, "{us} us");
        }
        for (i, &b) in LATENCY_BOUNDS_US.iter().enumerate() {
            let le: f64 = LATENCY_BOUNDS_LE[i].parse().unwrap();
            assert_eq!(
                (le * 1e6).round() as u64,
                b,
                "le label {i} matches its bound"
            );
        }
    }

    #[test]
    fn recording_api_counts_in_the_right_place() {
        let m = Metrics::default();
        m.observe_request(700);
        m.observe_request(3_000_000);
        m.observe_upstream(3, 200);
        m.observe_upstream(MAX_BACKENDS, 200); // ignored, no panic
        m.backend_error(3, ErrorKind::Tls);
        m.backend_error(3, ErrorKind::Tls);
        m.backend_error(MAX_BACKENDS + 7, ErrorKind::Connect); // ignored
        assert_eq!(m.request_duration.buckets[1].load(Relaxed), 1);
        assert_eq!(m.request_duration.buckets[12].load(Relaxed), 1);
        assert_eq!(m.request_duration.sum_us.load(Relaxed), 3_000_700);
        assert_eq!(m.upstream_response[3].buckets[0].load(Relaxed), 1);
        assert_eq!(
            m.backend_errors[3][ErrorKind::Tls as usize].load(Relaxed),
            2
        );
        m.reset_backend(3);
        assert_eq!(m.upstream_response[3].buckets[0].load(Relaxed), 0);
        assert_eq!(
            m.backend_errors[3][ErrorKind::Tls as usize].load(Relaxed),
            0
        );
        assert_eq!(
            m.request_duration.sum_us.load(Relaxed),
            3_000_700,
            "not per backend"
        );
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let snap = |pairs: &[(usize, u64)]| {
            let mut h = HistogramSnapshot::default();
            for &(i, n) in pairs {
                h.buckets[i] = n;
            }
            h
        };
        // (non-empty buckets as (index, count), q, expected seconds)
        type Case = (&'static [(usize, u64)], f64, Option<f64>);
        let table: &[Case] = &[
            (&[], 0.5, None),
            (&[(0, 10)], 0.5, Some(0.000_25)),
            (&[(0, 10)], 1.0, Some(0.000_5)),
            (&[(0, 10)], 0.0, Some(0.0)),
            // 0.5..1 ms holds everything: p50 is its middle.
            (&[(1, 4)], 0.5, Some(0.000_75)),
            // 90 fast, 10 in (100, 250] ms: p99 is 90% into that bucket.
            (&[(0, 90), (8, 10)], 0.99, Some(0.235)),
            (&[(0, 90), (8, 10)], 0.5, Some(0.000_5 * 50.0 / 90.0)),
            // Above every bound: the highest finite bound.
            (&[(14, 3)], 0.99, Some(10.0)),
            (&[(0, 1), (14, 99)], 0.5, Some(10.0)),
            // Empty buckets before the rank are skipped, not interpolated into.
            (&[(0, 1), (5, 1)], 1.0, Some(0.025)),
        ];
        for (i, &(pairs, q, want)) in table.iter().enumerate() {
            let got = snap(pairs).quantile(q);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "case {i}: {g} != {w}"),
                _ => panic!("case {i}: {got:?} != {want:?}"),
            }
        }
    }

    #[test]
    fn renders_histograms_and_error_kinds() {
        let (r, _fd) = crate::shm::Region::create().unwrap();
        let a = BackendEntry::new("a\"x", "127.0.0.1:1".parse().unwrap(), 1, false, 0);
        let b = BackendEntry::new("b", "127.0.0.1:2".parse().unwrap(), 1, false, 5);
        let st = crate::shm::Settings::new(
            crate::config::Strategy::RoundRobin,
            &crate::config::HealthSettings::default(),
        );
        let generation = r.publish(&[a, b], &st).unwrap();
        r.health.reset(6);
        r.workers[0].observe_request(400);
        r.workers[1].observe_request(2_000);
        r.workers[1].observe_request(20_000_000);
        r.workers[0].observe_upstream(5, 1_500);
        r.workers[1].observe_upstream(5, 1_500);
        r.workers[1].backend_error(5, ErrorKind::BadResponse);
        r.workers[0].backend_error(0, ErrorKind::Connect);
        let backends = [a, b];
        let view = view(r, &backends, generation);
        let text = view.render();
        let want = [
            "# TYPE lb_request_duration_seconds histogram\n",
            "\nlb_request_duration_seconds_bucket{le=\"0.0005\"} 1\n",
            "\nlb_request_duration_seconds_bucket{le=\"0.001\"} 1\n",
            "\nlb_request_duration_seconds_bucket{le=\"0.0025\"} 2\n",
            "\nlb_request_duration_seconds_bucket{le=\"10\"} 2\n",
            "\nlb_request_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "\nlb_request_duration_seconds_sum 20.002400\n",
            "\nlb_request_duration_seconds_count 3\n",
            "# TYPE lb_upstream_response_seconds histogram\n",
            "\nlb_upstream_response_seconds_bucket{backend=\"b:2\",address=\"127.0.0.1:2\",le=\"0.001\"} 0\n",
            "\nlb_upstream_response_seconds_bucket{backend=\"b:2\",address=\"127.0.0.1:2\",le=\"0.0025\"} 2\n",
            "\nlb_upstream_response_seconds_bucket{backend=\"b:2\",address=\"127.0.0.1:2\",le=\"+Inf\"} 2\n",
            "\nlb_upstream_response_seconds_sum{backend=\"b:2\",address=\"127.0.0.1:2\"} 0.003000\n",
            "\nlb_upstream_response_seconds_count{backend=\"b:2\",address=\"127.0.0.1:2\"} 2\n",
            "\nlb_upstream_response_seconds_count{backend=\"a\\\"x:1\",address=\"127.0.0.1:1\"} 0\n",
            "\nlb_backend_errors_total{backend=\"b:2\",address=\"127.0.0.1:2\",kind=\"bad_response\"} 1\n",
            "\nlb_backend_errors_total{backend=\"b:2\",address=\"127.0.0.1:2\",kind=\"connect\"} 0\n",
            "\nlb_backend_errors_total{backend=\"a\\\"x:1\",address=\"127.0.0.1:1\",kind=\"connect\"} 1\n",
        ];
        for w in want {
            assert!(text.contains(w), "missing {w:?} in\n{text}");
        }
        assert_eq!(
            text.matches(
                "lb_upstream_response_seconds_bucket{backend=\"b:2\",address=\"127.0.0.1:2\""
            )
            .count(),
            BUCKETS
        );
        assert_eq!(percentile(&view, 5, 50.0), Some(0.001_75));
        assert_eq!(percentile(&view, 0, 50.0), None);
        assert_eq!(view.request_histogram().count(), 3);
    }
}
