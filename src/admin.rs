//! The status page: what the load balancer is doing, for a person (HTML)
//! and for a script (JSON), from the same [`StatusView`].
//!
//! Pure functions: the caller reads the region into a [`StatusView`]
//! ([`StatusView::from_view`]), these render it. No I/O here, and no
//! JavaScript: the HTML page refreshes itself every two seconds with a
//! `<meta http-equiv="refresh">`, so it works with scripts off and in a
//! text browser. Everything that came from configuration (backend names)
//! is escaped, for HTML and for JSON.
#![forbid(unsafe_code)]

use crate::config::Strategy;
use crate::metrics::{ErrorKind, View};
use crate::shm::Settings;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

/// Everything the status page shows, read from the region at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusView {
    /// The load balancer's version (`CARGO_PKG_VERSION`).
    pub version: String,
    pub generation: u64,
    /// The live set's balancing strategy.
    pub strategy: Strategy,
    /// Active probes: `GET health_path` every `probe_interval_ms`; 0 when
    /// probing is off (health then follows request results only).
    pub probe_interval_ms: u64,
    pub health_path: String,
    pub uptime_s: u64,
    pub workers_live: u32,
    pub workers_configured: u32,
    pub worker_restarts: u64,
    pub requests: u64,
    /// Responses to clients by class: 1xx at index 0 .. 5xx at index 4.
    pub responses: [u64; 5],
    pub connections_active: u64,
    /// Whole-request latency over all backends, seconds.
    pub request_p50: Option<f64>,
    pub request_p99: Option<f64>,
    /// The live backend set, in configuration order.
    pub backends: Vec<BackendStatus>,
    /// Backend names followed through DNS: addresses, last answer.
    pub dns: Vec<crate::dns_shared::DnsName>,
}

/// One backend's row.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendStatus {
    /// Its stable id (the index of its counters and health).
    pub id: u32,
    /// `host:port` as configured: the `backend` label of `/metrics`.
    pub name: String,
    /// The address it resolved to.
    pub addr: SocketAddr,
    pub tls: bool,
    pub up: bool,
    pub weight: u16,
    /// Requests sent to it (total since it got its id).
    pub requests: u64,
    /// Requests in flight to it now, all workers (`lb_backend_inflight`).
    pub inflight: u64,
    /// Failed connects or exchanges (`lb_backend_failures_total`).
    pub failures: u64,
    /// By [`ErrorKind`], in [`ErrorKind::ALL`] order.
    pub errors: [u64; ErrorKind::COUNT],
    /// Response heads received (the upstream histogram's count).
    pub responses: u64,
    /// Upstream response time, seconds.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl StatusView {
    /// Reads `view` (the same sums `/metrics` shows) and the settings
    /// published with its backend set (`Region::read_backends` returns both).
    /// `now_ms` is `sys::now_ms()`, the clock of `Process::started_ms`.
    pub fn from_view(
        view: &View<'_>,
        settings: &Settings,
        version: &str,
        now_ms: u64,
    ) -> StatusView {
        let p = view.process;
        let health = settings.health();
        let request = view.request_histogram();
        let backends = view
            .backends
            .iter()
            .map(|b| {
                let id = b.id as usize;
                let upstream = view.upstream_histogram(id);
                BackendStatus {
                    id: b.id,
                    name: format!("{}:{}", b.host(), b.port),
                    addr: b.addr(),
                    tls: b.tls != 0,
                    up: view.health.is_healthy(id),
                    weight: b.weight,
                    requests: view.backend_requests(id),
                    inflight: view.backend_inflight(id),
                    failures: view.backend_failures(id),
                    errors: ErrorKind::ALL.map(|k| view.backend_errors(id, k)),
                    responses: upstream.count(),
                    p50: upstream.quantile(0.5),
                    p99: upstream.quantile(0.99),
                }
            })
            .collect();
        StatusView {
            version: version.to_string(),
            generation: view.generation,
            strategy: settings.strategy(),
            probe_interval_ms: health.probe_interval_ms,
            health_path: health.health_path,
            uptime_s: now_ms.saturating_sub(p.started_ms.load(Relaxed)) / 1000,
            workers_live: p.workers_live.load(Relaxed),
            workers_configured: p.workers_configured.load(Relaxed),
            worker_restarts: p.worker_restarts.load(Relaxed),
            requests: view.requests(),
            responses: std::array::from_fn(|i| view.responses(i + 1)),
            connections_active: view.connections_active(),
            request_p50: request.quantile(0.5),
            request_p99: request.quantile(0.99),
            backends,
            dns: crate::dns_shared::DnsShared::current().map_or(Vec::new(), |d| d.names()),
        }
    }
}

/// The HTML status page (a whole document, UTF-8).
pub fn status_html(s: &StatusView) -> String {
    let mut o = String::with_capacity(2048 + s.backends.len() * 512);
    o.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta http-equiv=\"refresh\" content=\"2\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>load balancer status</title>\n<style>\n",
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\n",
        "h1{font-size:1.3em;margin:0 0 .5em}\n",
        "dl{display:flex;flex-wrap:wrap;gap:.4em 1.6em;margin:0 0 1.2em}\n",
        "dt{color:#666;font-size:.85em}dd{margin:0;font-weight:600}\n",
        "table{border-collapse:collapse;font-size:.95em}th,td{padding:.3em .5em;border-bottom:1px solid #ddd;white-space:nowrap}\n",
        "th{text-align:left;font-size:.85em;color:#555}td.n{text-align:right;font-variant-numeric:tabular-nums}\n",
        "td.up{color:#176a21;font-weight:600}td.down{color:#b3261e;font-weight:600}\n",
        "tr.backend-down td{background:#fdecea}\n",
        "</style>\n</head>\n<body>\n",
    ));
    let _ = writeln!(o, "<h1>load_balancer {}</h1>", html(&s.version));
    let up = s.backends.iter().filter(|b| b.up).count();
    let r = &s.responses;
    let checks = if s.probe_interval_ms > 0 {
        format!(
            "GET {} every {}",
            s.health_path,
            duration_ms(s.probe_interval_ms)
        )
    } else {
        "passive (request results)".to_string()
    };
    let fields: [(&str, String); 12] = [
        (
            "workers",
            format!("{} / {}", s.workers_live, s.workers_configured),
        ),
        ("worker restarts", s.worker_restarts.to_string()),
        ("config generation", s.generation.to_string()),
        ("strategy", s.strategy.to_string()),
        ("health checks", checks),
        ("uptime", uptime(s.uptime_s)),
        ("backends up", format!("{up} / {}", s.backends.len())),
        ("requests", s.requests.to_string()),
        ("active connections", s.connections_active.to_string()),
        (
            "responses 2xx / 3xx / 4xx / 5xx",
            format!("{} / {} / {} / {}", r[1], r[2], r[3], r[4]),
        ),
        ("request p50", latency(s.request_p50)),
        ("request p99", latency(s.request_p99)),
    ];
    o.push_str("<dl>\n");
    for (name, value) in &fields {
        let _ = writeln!(o, "<div><dt>{name}</dt><dd>{}</dd></div>", html(value));
    }
    o.push_str("</dl>\n<table>\n<thead><tr><th>backend</th><th>address</th><th>health</th>");
    o.push_str("<th>weight</th><th>in flight</th><th>requests</th><th>failures</th>");
    for k in ErrorKind::ALL {
        let _ = write!(o, "<th>{}</th>", k.as_str());
    }
    o.push_str("<th>p50</th><th>p99</th></tr></thead>\n<tbody>\n");
    for b in &s.backends {
        let health = if b.up { "up" } else { "down" };
        let scheme = if b.tls { "https" } else { "http" };
        let _ = write!(
            o,
            "<tr class=\"backend-{health}\" id=\"backend-{}\"><td>{}</td><td>{scheme} {}</td><td class=\"{health}\">{health}</td>",
            b.id,
            html(&b.name),
            b.addr
        );
        for n in [u64::from(b.weight), b.inflight, b.requests, b.failures] {
            let _ = write!(o, "<td class=\"n\">{n}</td>");
        }
        for n in b.errors {
            let _ = write!(o, "<td class=\"n\">{n}</td>");
        }
        let _ = writeln!(
            o,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            latency(b.p50),
            latency(b.p99)
        );
    }
    if s.backends.is_empty() {
        o.push_str("<tr><td colspan=\"13\">no backends</td></tr>\n");
    }
    o.push_str("</tbody>\n</table>\n");
    if !s.dns.is_empty() {
        o.push_str(
            "<h2>DNS</h2>\n<table id=\"dns\">\n<thead><tr><th>name</th><th>addresses</th>\
             <th>last answer (UTC)</th><th>failing</th></tr></thead>\n<tbody>\n",
        );
        for n in &s.dns {
            let when = |t: Option<u64>| t.map_or("never".to_string(), crate::log::utc_text);
            let failing = match &n.failing {
                Some((why, since)) => format!("{} (since {})", why, when(Some(*since))),
                None => "-".to_string(),
            };
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html(&n.name),
                html(&if n.addresses.is_empty() {
                    "none".to_string()
                } else {
                    n.addresses.join(", ")
                }),
                html(&when(n.answered_unix)),
                html(&failing)
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }
    o.push_str("</body>\n</html>\n");
    o
}

/// The same data as JSON (one object; latencies in seconds, `null` before
/// the first observation).
pub fn status_json(s: &StatusView) -> String {
    let mut o = String::with_capacity(512 + s.backends.len() * 384);
    o.push_str("{\"version\":");
    json_str(&mut o, &s.version);
    let _ = write!(
        o,
        ",\"strategy\":\"{}\",\"probe_interval_ms\":{},\"health_path\":",
        s.strategy, s.probe_interval_ms
    );
    json_str(&mut o, &s.health_path);
    let _ = write!(
        o,
        ",\"generation\":{},\"uptime_seconds\":{},\"workers\":{{\"live\":{},\"configured\":{},\"restarts\":{}}}",
        s.generation, s.uptime_s, s.workers_live, s.workers_configured, s.worker_restarts
    );
    let _ = write!(
        o,
        ",\"requests\":{},\"connections_active\":{},\"responses\":{{",
        s.requests, s.connections_active
    );
    for (i, n) in s.responses.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(o, "{comma}\"{}xx\":{n}", i + 1);
    }
    o.push_str("},\"request_seconds\":{\"p50\":");
    json_f64(&mut o, s.request_p50);
    o.push_str(",\"p99\":");
    json_f64(&mut o, s.request_p99);
    o.push_str("},\"backends\":[");
    for (i, b) in s.backends.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "{{\"id\":{},\"name\":", b.id);
        json_str(&mut o, &b.name);
        o.push_str(",\"address\":");
        json_str(&mut o, &b.addr.to_string());
        let _ = write!(
            o,
            ",\"tls\":{},\"up\":{},\"weight\":{},\"inflight\":{},\"requests\":{},\"failures\":{},\"errors\":{{",
            b.tls, b.up, b.weight, b.inflight, b.requests, b.failures
        );
        for (j, k) in ErrorKind::ALL.iter().enumerate() {
            let comma = if j == 0 { "" } else { "," };
            let _ = write!(o, "{comma}\"{}\":{}", k.as_str(), b.errors[j]);
        }
        let _ = write!(o, "}},\"responses\":{},\"p50_seconds\":", b.responses);
        json_f64(&mut o, b.p50);
        o.push_str(",\"p99_seconds\":");
        json_f64(&mut o, b.p99);
        o.push('}');
    }
    o.push_str("],\"dns\":[");
    for (i, n) in s.dns.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"name\":");
        json_str(&mut o, &n.name);
        o.push_str(",\"addresses\":[");
        for (j, a) in n.addresses.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            json_str(&mut o, a);
        }
        o.push_str("],\"last_answer_unix\":");
        match n.answered_unix {
            Some(t) => {
                let _ = write!(o, "{t}");
            }
            None => o.push_str("null"),
        }
        o.push_str(",\"failing\":");
        match &n.failing {
            Some((why, since)) => {
                o.push_str("{\"reason\":");
                json_str(&mut o, why);
                let _ = write!(o, ",\"since_unix\":{since}}}");
            }
            None => o.push_str("null"),
        }
        o.push('}');
    }
    o.push_str("]}\n");
    o
}

/// Text for HTML element content and attribute values.
fn html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A JSON string literal (RFC 8259: `"`, `\` and control characters escaped).
fn json_str(o: &mut String, s: &str) {
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
}

/// A finite number, or `null`. (Rust prints `f64` without an exponent, so
/// the text is a JSON number.)
fn json_f64(o: &mut String, v: Option<f64>) {
    match v {
        Some(v) if v.is_finite() => {
            let _ = write!(o, "{v}");
        }
        _ => o.push_str("null"),
    }
}

/// `0.42 ms`, `12.5 ms`, `250 ms`, `1.50 s`, or `–` before any observation.
fn latency(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(s) if s >= 1.0 => format!("{s:.2} s"),
        Some(s) => {
            let ms = s * 1000.0;
            if ms >= 100.0 {
                format!("{ms:.0} ms")
            } else if ms >= 10.0 {
                format!("{ms:.1} ms")
            } else {
                format!("{ms:.2} ms")
            }
        }
    }
}

/// `500 ms`, `2 s`, `1.5 s`.
fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} s", ms as f64 / 1000.0)
    }
}

/// `45s`, `3m 07s`, `2h 03m 07s`, `4d 02h 03m 07s`.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h:02}h {m:02}m {s:02}s")
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::json;
    use crate::config::{HealthSettings, Strategy};
    use crate::shm::{BackendEntry, Region, Settings};

    /// A region with three backends (one down, one with a name that needs
    /// escaping) and some traffic, read as a StatusView.
    fn sample() -> StatusView {
        let (r, fd) = Region::create().unwrap();
        std::mem::forget(fd);
        let backends = [
            BackendEntry::new("app1", "10.0.0.1:8080".parse().unwrap(), 3, false, 0),
            BackendEntry::new("<b>&\"x'\\", "10.0.0.2:443".parse().unwrap(), 1, true, 4),
            BackendEntry::new("::1", "[::1]:9000".parse().unwrap(), 2, false, 2),
        ];
        let health = HealthSettings {
            probe_interval_ms: 2000,
            health_path: "/healthz?<x>".to_string(),
            ..HealthSettings::default()
        };
        let st = Settings::new(Strategy::WeightedRoundRobin, &health);
        let generation = r.publish(&backends, &st).unwrap();
        r.health.reset(5);
        for _ in 0..3 {
            r.health.record_failure(2, 0, &HealthSettings::default());
        }
        let p = &r.process;
        p.workers_configured.store(2, Relaxed);
        p.workers_live.store(2, Relaxed);
        p.worker_restarts.store(1, Relaxed);
        let (w0, w1) = (&r.workers[0], &r.workers[1]);
        w0.requests.fetch_add(10, Relaxed);
        w1.requests.fetch_add(5, Relaxed);
        w0.response(200);
        w1.response(503);
        w0.backend_requests[0].fetch_add(9, Relaxed);
        w1.backend_requests[0].fetch_add(1, Relaxed);
        w1.backend_requests[4].fetch_add(5, Relaxed);
        w1.backend_failures[2].fetch_add(3, Relaxed);
        w0.backend_error(2, ErrorKind::Connect);
        w1.backend_error(2, ErrorKind::Connect);
        w1.backend_error(2, ErrorKind::Timeout);
        w1.backend_error(4, ErrorKind::Tls);
        for _ in 0..10 {
            w0.observe_upstream(0, 700); // (0.5, 1] ms
            w0.observe_request(900);
        }
        w1.observe_upstream(4, 30_000); // (25, 50] ms
        let view = View {
            slots: &r.workers,
            backends: &backends,
            health: &r.health,
            process: &r.process,
            generation,
        };
        let (_, settings) = r.read_backends(&mut Vec::new());
        StatusView::from_view(
            &view,
            &settings,
            "0.1.0",
            p.started_ms.load(Relaxed) + 3_723_000,
        )
    }

    #[test]
    fn the_view_has_the_region_s_numbers() {
        let s = sample();
        assert_eq!(
            (s.generation, s.uptime_s, s.workers_live, s.worker_restarts),
            (1, 3723, 2, 1)
        );
        assert_eq!((s.requests, s.responses), (15, [0, 1, 0, 0, 1]));
        assert_eq!(s.strategy, Strategy::WeightedRoundRobin);
        assert_eq!(
            (s.probe_interval_ms, &*s.health_path),
            (2000, "/healthz?<x>")
        );
        let names: Vec<&str> = s.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["app1:8080", "<b>&\"x'\\:443", "::1:9000"]);
        let ups: Vec<bool> = s.backends.iter().map(|b| b.up).collect();
        assert_eq!(ups, [true, true, false]);
        let b = &s.backends[2];
        assert_eq!(
            (b.id, b.weight, b.failures, b.errors),
            (2, 2, 3, [2, 1, 0, 0, 0])
        );
        let b = &s.backends[0];
        assert_eq!((b.requests, b.responses), (10, 10));
        assert!((b.p50.unwrap() - 0.00075).abs() < 1e-12);
        assert!((b.p99.unwrap() - 0.000_995).abs() < 1e-12);
        assert_eq!(s.backends[2].p50, None);
        assert!(s.backends[1].tls);
    }

    #[test]
    fn the_page_shows_every_backend_escaped_with_its_health() {
        let s = sample();
        let page = status_html(&s);
        // (must contain, why)
        let table: &[(&str, &str)] = &[
            ("<meta http-equiv=\"refresh\" content=\"2\">", "reloads itself"),
            ("<h1>load_balancer 0.1.0</h1>", "version"),
            ("<dd>2 / 2</dd>", "workers"),
            ("<dd>1h 02m 03s</dd>", "uptime"),
            ("<dt>config generation</dt><dd>1</dd>", "generation"),
            ("<dt>strategy</dt><dd>weighted_round_robin</dd>", "strategy"),
            ("<dd>GET /healthz?&lt;x&gt; every 2 s</dd>", "probes, escaped"),
            ("<dd>2 / 3</dd>", "backends up"),
            (
                "<tr class=\"backend-up\" id=\"backend-0\"><td>app1:8080</td><td>http 10.0.0.1:8080</td><td class=\"up\">up</td>",
                "backend 0 up",
            ),
            ("<td>&lt;b&gt;&amp;&quot;x&#39;\\:443</td><td>https 10.0.0.2:443</td>", "escaped name"),
            (
                "<tr class=\"backend-down\" id=\"backend-2\"><td>::1:9000</td><td>http [::1]:9000</td><td class=\"down\">down</td>",
                "backend 2 down",
            ),
            (
                "<td class=\"n\">2</td><td class=\"n\">0</td><td class=\"n\">0</td><td class=\"n\">3</td><td class=\"n\">2</td><td class=\"n\">1</td>",
                "weight, in flight, requests, failures, connect, timeout of backend 2",
            ),
            ("<td class=\"n\">0.75 ms</td>", "p50 of backend 0"),
            ("<td class=\"n\">–</td><td class=\"n\">–</td></tr>", "no latency yet"),
            ("<th>bad_response</th><th>tls</th>", "error kinds"),
        ];
        for (want, why) in table {
            assert!(page.contains(want), "{why}: {want:?} not in\n{page}");
        }
        assert!(!page.contains("<b>"), "raw name leaked");
        assert_eq!(page.matches("<tr class=").count(), 3);
        assert!(!page.contains("<script"));
    }

    #[test]
    fn json_parses_with_the_project_parser_and_has_the_numbers() {
        let s = sample();
        let text = status_json(&s);
        let doc = json::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        let u = |path: &[&str]| {
            let mut v = &doc;
            for k in path {
                v = v.get(k).unwrap_or_else(|| panic!("{path:?}"));
            }
            v.as_u64().unwrap_or_else(|| panic!("{path:?} not a u64"))
        };
        // (path, value)
        let table: &[(&[&str], u64)] = &[
            (&["generation"], 1),
            (&["uptime_seconds"], 3723),
            (&["workers", "live"], 2),
            (&["workers", "configured"], 2),
            (&["workers", "restarts"], 1),
            (&["requests"], 15),
            (&["responses", "2xx"], 1),
            (&["responses", "5xx"], 1),
            (&["responses", "4xx"], 0),
        ];
        for &(path, want) in table {
            assert_eq!(u(path), want, "{path:?}");
        }
        assert_eq!(doc.get("version").unwrap().as_str(), Some("0.1.0"));
        assert_eq!(
            doc.get("strategy").unwrap().as_str(),
            Some("weighted_round_robin")
        );
        assert_eq!(u(&["probe_interval_ms"]), 2000);
        assert_eq!(
            doc.get("health_path").unwrap().as_str(),
            Some("/healthz?<x>")
        );
        let p50 = doc.get("request_seconds").unwrap().get("p50").unwrap();
        assert!((p50.as_f64().unwrap() - 0.00075).abs() < 1e-12);
        let backends = doc.get("backends").unwrap().as_array().unwrap();
        assert_eq!(backends.len(), 3);
        for (b, want) in backends.iter().zip(&s.backends) {
            assert_eq!(b.get("name").unwrap().as_str(), Some(want.name.as_str()));
            assert_eq!(
                b.get("address").unwrap().as_str(),
                Some(&*want.addr.to_string())
            );
            assert_eq!(b.get("up").unwrap().as_bool(), Some(want.up));
            assert_eq!(b.get("tls").unwrap().as_bool(), Some(want.tls));
            assert_eq!(b.get("id").unwrap().as_u64(), Some(u64::from(want.id)));
            assert_eq!(
                b.get("weight").unwrap().as_u64(),
                Some(u64::from(want.weight))
            );
            assert_eq!(b.get("requests").unwrap().as_u64(), Some(want.requests));
            assert_eq!(b.get("failures").unwrap().as_u64(), Some(want.failures));
            assert_eq!(b.get("responses").unwrap().as_u64(), Some(want.responses));
            let errors = b.get("errors").unwrap();
            for (k, n) in ErrorKind::ALL.iter().zip(want.errors) {
                assert_eq!(errors.get(k.as_str()).unwrap().as_u64(), Some(n), "{k:?}");
            }
            for (key, v) in [("p50_seconds", want.p50), ("p99_seconds", want.p99)] {
                let j = b.get(key).unwrap();
                match v {
                    None => assert!(j.is_null(), "{key}"),
                    Some(v) => assert_eq!(j.as_f64(), Some(v), "{key}"),
                }
            }
        }
    }

    #[test]
    fn json_strings_survive_any_name() {
        let mut s = sample();
        for name in ["a\"b\\c", "tab\there", "nl\n\r", "\u{1}\u{1f}", "ünï €", ""] {
            s.backends[0].name = name.to_string();
            let doc = json::parse(&status_json(&s)).unwrap();
            let b = &doc.get("backends").unwrap().as_array().unwrap()[0];
            assert_eq!(b.get("name").unwrap().as_str(), Some(name));
        }
    }

    #[test]
    fn an_empty_set_renders() {
        let mut s = sample();
        s.backends.clear();
        s.request_p50 = None;
        assert!(status_html(&s).contains("no backends"));
        let doc = json::parse(&status_json(&s)).unwrap();
        assert_eq!(doc.get("backends").unwrap().as_array().unwrap().len(), 0);
        assert!(doc
            .get("request_seconds")
            .unwrap()
            .get("p50")
            .unwrap()
            .is_null());
    }

    #[test]
    fn numbers_read_well() {
        // (seconds, text)
        let table: &[(Option<f64>, &str)] = &[
            (None, "–"),
            (Some(0.0), "0.00 ms"),
            (Some(0.000_42), "0.42 ms"),
            (Some(0.012_5), "12.5 ms"),
            (Some(0.25), "250 ms"),
            (Some(1.5), "1.50 s"),
            (Some(10.0), "10.00 s"),
        ];
        for &(v, want) in table {
            assert_eq!(latency(v), want, "{v:?}");
        }
        let table: &[(u64, &str)] = &[
            (0, "0s"),
            (45, "45s"),
            (187, "3m 07s"),
            (7387, "2h 03m 07s"),
            (352_987, "4d 02h 03m 07s"),
        ];
        for &(secs, want) in table {
            assert_eq!(uptime(secs), want);
        }
        let table: &[(u64, &str)] = &[(250, "250 ms"), (2000, "2 s"), (1500, "1.5 s")];
        for &(ms, want) in table {
            assert_eq!(duration_ms(ms), want);
        }
    }
}
