//! Operator-facing output checked by the tools operators use on it:
//! `/metrics` by `promtool check metrics` (Prometheus's own parser and
//! linter). A missing tool fails the test with the command that installs it:
//! a check that was not run never passes.

use lb::config::{HealthSettings, Strategy};
use lb::metrics::{ErrorKind, View};
use lb::shm::{BackendEntry, Region, Settings};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;

/// Runs `tool args` with `input` on stdin; fails with `install` when the
/// tool is not there. Returns (exit ok, stdout + stderr).
fn run_tool(tool: &str, args: &[&str], input: &[u8], install: &str) -> (bool, String) {
    let mut child = match Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{tool} is not installed; install it with: {install}")
        }
        Err(e) => panic!("running {tool}: {e}"),
    };
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

const PROMTOOL_INSTALL: &str = "apt-get update && apt-get install -y prometheus";

/// A region as a busy load balancer leaves it: three backends (one with a
/// label that needs escaping, one down), two workers, every histogram and
/// error kind used.
fn sample_region() -> (&'static Region, Vec<BackendEntry>) {
    let (r, fd) = Region::create().unwrap();
    std::mem::forget(fd);
    let backends = vec![
        BackendEntry::new(
            "app1.internal",
            "10.0.0.1:8080".parse().unwrap(),
            3,
            false,
            0,
        ),
        BackendEntry::new("we\"ird\\host", "10.0.0.2:443".parse().unwrap(), 1, true, 1),
        BackendEntry::new("::1", "[::1]:9000".parse().unwrap(), 2, false, 7),
    ];
    let st = Settings::new(Strategy::WeightedRoundRobin, &HealthSettings::default());
    r.publish(&backends, &st);
    r.health.reset(8);
    for _ in 0..5 {
        r.health.record_failure(7, 0, &HealthSettings::default());
    }
    r.process.workers_configured.store(2, Relaxed);
    r.process.workers_live.store(2, Relaxed);
    for (w, m) in r.workers.iter().take(2).enumerate() {
        for i in 0..200u64 {
            let us = (i * 7919 + w as u64 * 104_729) % 3_000_000 + i * 50;
            m.requests.fetch_add(1, Relaxed);
            m.response(if i % 17 == 0 { 502 } else { 200 });
            m.observe_request(us + 300);
            let b = [0usize, 1, 7][i as usize % 3];
            m.backend_requests[b].fetch_add(1, Relaxed);
            m.observe_upstream(b, us);
        }
        m.observe_request(60_000_000);
        for (k, kind) in ErrorKind::ALL.into_iter().enumerate() {
            for _ in 0..=k {
                m.backend_error(7, kind);
            }
        }
        m.backend_error(1, ErrorKind::Tls);
        m.tls_failure("unknown_issuer");
    }
    (r, backends)
}

fn render(r: &'static Region, backends: &[BackendEntry]) -> String {
    View {
        slots: &r.workers,
        backends,
        health: &r.health,
        process: &r.process,
        generation: r.generation(),
    }
    .render()
}

#[test]
fn promtool_accepts_the_metrics_page() {
    let (r, backends) = sample_region();
    let text = render(r, &backends);
    assert!(text.contains("lb_upstream_response_seconds_bucket{backend=\"we\\\"ird\\\\host:443\",le=\"+Inf\"} 134\n"), "{text}");
    let (ok, out) = run_tool(
        "promtool",
        &["check", "metrics"],
        text.as_bytes(),
        PROMTOOL_INSTALL,
    );
    assert!(
        ok,
        "promtool check metrics rejected /metrics:\n{out}\n--- page ---\n{text}"
    );
    assert!(out.trim().is_empty(), "promtool had remarks:\n{out}");
    // The check can fail: a bucket series out of order and a bad label are
    // refused, so an accepted page means something.
    let broken = text.replacen("le=\"+Inf\"} 134", "le=+Inf} 134", 1);
    let (ok, out) = run_tool(
        "promtool",
        &["check", "metrics"],
        broken.as_bytes(),
        PROMTOOL_INSTALL,
    );
    assert!(!ok, "promtool accepted a broken page:\n{out}");
}
