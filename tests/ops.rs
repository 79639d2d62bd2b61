//! Operator-facing output checked by the tools operators use on it:
//! `/metrics` by `promtool check metrics` (Prometheus's own parser and
//! linter), the status page by headless Chromium (the DOM it builds, and a
//! screenshot at `target/status.png`). A missing tool fails the test with
//! the command that installs it: a check that was not run never passes.

use lb::admin::{status_html, StatusView};
use lb::config::{HealthSettings, Strategy};
use lb::metrics::{ErrorKind, View};
use lb::shm::{BackendEntry, Region, Settings};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

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

/// A region as a busy load balancer leaves it: four backends (two behind
/// one name, one with a label that needs escaping, one down), two workers, every histogram and
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
        // A second member of the same name (followed through DNS).
        BackendEntry::new(
            "app1.internal",
            "10.0.0.3:8080".parse().unwrap(),
            3,
            false,
            2,
        ),
        BackendEntry::new("we\"ird\\host", "10.0.0.2:443".parse().unwrap(), 1, true, 1),
        BackendEntry::new("::1", "[::1]:9000".parse().unwrap(), 2, false, 7),
    ];
    let st = Settings::new(Strategy::WeightedRoundRobin, &HealthSettings::default());
    r.publish(&backends, &st).unwrap();
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
                m.backend_failures[7].fetch_add(1, Relaxed);
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
    assert!(text.contains("lb_upstream_response_seconds_bucket{backend=\"we\\\"ird\\\\host:443\",address=\"10.0.0.2:443\",le=\"+Inf\"} 134\n"), "{text}");
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

const CHROMIUM_INSTALL: &str = "apt-get update && apt-get install -y chromium";

/// Runs headless Chromium with `args` on `url`, at most 90 s; returns stdout.
fn chromium(extra: &[&str], url: &str, profile: &Path) -> String {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("chromium is not installed; install it with: {CHROMIUM_INSTALL}")
        }
        Err(e) => panic!("running chromium: {e}"),
    };
    // Read both pipes while waiting, so a chatty browser cannot block.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("chromium {extra:?} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "chromium {extra:?} failed: {status}\n{err}"
    );
    out
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn chromium_renders_the_status_page() {
    let (r, backends) = sample_region();
    let view = View {
        slots: &r.workers,
        backends: &backends,
        health: &r.health,
        process: &r.process,
        generation: r.generation(),
    };
    let (_, settings) = r.read_backends(&mut Vec::new());
    let status = StatusView::from_view(
        &view,
        &settings,
        env!("CARGO_PKG_VERSION"),
        lb::sys::now_ms(),
    );
    let page = status_html(&status);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("status-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("status.html");
    std::fs::write(&file, &page).unwrap();
    let url = format!("file://{}", file.display());

    let dom = chromium(&["--dump-dom"], &url, &dir.join("profile-dom"));
    // The DOM as the browser built it: every backend's row, its name as
    // text (escaped in the source, decoded in the DOM), its health.
    for (b, want) in backends.iter().zip(&status.backends) {
        let row_start = dom
            .find(&format!("id=\"backend-{}\"", b.id))
            .unwrap_or_else(|| panic!("no row for backend {} in\n{dom}", want.name));
        let row = &dom[row_start..row_start + dom[row_start..].find("</tr>").unwrap()];
        let name = want
            .name
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            row.contains(&format!("<td>{name}</td>")),
            "{} not in {row}",
            want.name
        );
        let health = if want.up { "up" } else { "down" };
        assert!(
            row.contains(&format!(">{health}</td>")),
            "{health} not in {row}"
        );
    }
    assert!(dom.contains("we\"ird\\host:443"), "{dom}");
    assert!(dom.contains(">down</td>") && dom.contains(">up</td>"));
    assert!(dom.contains("<title>load balancer status</title>"));

    let png = target_dir().join("status.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,800",
        ],
        &url,
        &dir.join("profile-shot"),
    );
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 10_000, "a blank page? {} bytes", bytes.len());
    let _ = std::fs::remove_dir_all(&dir);
}
