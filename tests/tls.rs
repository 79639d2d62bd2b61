//! TLS to HTTPS backends, end to end: real TLS backends on loopback with
//! certificates from a private CA made here (rcgen), the real binary in
//! front. What an operator checks: a verified backend with `--ca-file` (and
//! `"tls": true` + `"ca_file"` in the config), HTTP and HTTPS backends mixed,
//! large bodies byte-exact both ways, pooled and resumed connections, every
//! certificate failure a 502 with its reason logged, `-k`, `--tls-trace`,
//! probes over TLS, and a cut-off TLS response never passed off as complete.

mod common;

use common::tls::{Ca, Serve, TlsBackend};
use common::*;
use std::io::{BufReader, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn big(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A load balancer trusting exactly `ca` for its HTTPS backends
/// (`--ca-file`, then `args`); the CA file lives as long as the second value.
fn lb_trusting(ca: &Ca, args: &[&str]) -> (Lb, TempFile) {
    let ca_file = ca.pem_file("ca.pem");
    let mut all = vec!["--ca-file", ca_file.to_str().unwrap()];
    all.extend_from_slice(args);
    (Lb::start(&all), ca_file)
}

#[test]
fn a_verified_https_backend_with_ca_file_and_mixed_with_plain_http() {
    let ca = Ca::new("lb test CA");
    let be = TlsBackend::http(ca.leaf(&["localhost"], false), |_| ok("over tls"));
    let plain = Backend::named("plain");
    let ca_file = ca.pem_file("ca.pem");
    let lb = Lb::start(&[
        "-w",
        "1",
        "--ca-file",
        ca_file.to_str().unwrap(),
        "-b",
        &be.https(),
        "-b",
        &plain.addr(),
    ]);
    let bodies: Vec<String> = (0..6).map(|_| get(lb.port, "/").text()).collect();
    assert_eq!(
        bodies.iter().filter(|b| *b == "over tls").count(),
        3,
        "{bodies:?}"
    );
    assert_eq!(
        bodies.iter().filter(|b| *b == "plain").count(),
        3,
        "{bodies:?}"
    );
    assert!(
        lb.log_has("trusting 1 CA certificates from"),
        "{}",
        lb.log_text()
    );
}

#[test]
fn large_bodies_cross_tls_byte_exact_both_ways() {
    let ca = Ca::new("lb test CA");
    let download = big(5_000_000, 7);
    let d = download.clone();
    let be = TlsBackend::http(ca.leaf(&["localhost"], false), move |m| {
        if m.target() == "/download" {
            // 5 MB, chunked, in uneven chunks.
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for piece in d.chunks(70_001) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        } else {
            // Echo the upload.
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                m.body.len()
            )
            .into_bytes();
            out.extend_from_slice(&m.body);
            out
        }
    });
    let (lb, _ca_file) = lb_trusting(&ca, &["-b", &be.https()]);
    let mut c = lb.conn();
    let upload = big(3 * 1024 * 1024, 3);
    let mut req = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    )
    .into_bytes();
    req.extend_from_slice(&upload);
    c.send(&req);
    let r = c.read_response(false);
    assert_eq!(r.status(), 200);
    assert!(
        r.body == upload,
        "3 MiB upload came back different ({} bytes)",
        r.body.len()
    );
    let r = c.get("/download");
    assert_eq!(r.status(), 200);
    assert!(r.chunked);
    assert!(
        r.body == download,
        "5 MB download differs ({} bytes)",
        r.body.len()
    );
}

#[test]
fn an_upload_over_64_kib_on_a_pooled_tls_connection_goes_out_without_waiting_for_an_event() {
    // rustls takes at most 64 KiB of plaintext per write: a request head
    // with a buffered body (64 KiB by default) and streamed bytes behind it
    // is taken in part although the socket has room. Taken for a full
    // socket, the rest waited for a writable edge that never came on a
    // pooled connection (on a new one the backend's session tickets happened
    // to wake it): the upload hung until the response timeout, then 504.
    let ca = Ca::new("lb test CA");
    let be = TlsBackend::http(ca.leaf(&["localhost"], false), |m| {
        ok(&format!("got {}", m.body.len()))
    });
    let (lb, _ca_file) = lb_trusting(&ca, &["-w", "1", "-b", &be.https()]);
    let mut c = lb.conn();
    assert_eq!(c.get("/warm").text(), "got 0");
    // The session tickets are in and read: the connection is idle in the pool.
    thread::sleep(Duration::from_millis(300));
    for n in [65_536, 65_537, 100_000, 300_000] {
        let mut req =
            format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n").into_bytes();
        req.extend_from_slice(&big(n, 5));
        c.send(&req);
        let r = c.read_response(false);
        assert_eq!(r.text(), format!("got {n}"), "{}", lb.log_text());
    }
    assert_eq!(
        be.connections.load(Ordering::Relaxed),
        1,
        "the pooled connection carried every upload"
    );
}

#[test]
fn two_hundred_requests_on_one_client_connection_cost_a_handful_of_tls_connections() {
    let ca = Ca::new("lb test CA");
    let be = TlsBackend::http(ca.leaf(&["localhost"], false), |_| ok("x"));
    let (lb, _ca_file) = lb_trusting(&ca, &["-w", "2", "-b", &be.https()]);
    let mut c = lb.conn();
    for _ in 0..200 {
        assert_eq!(c.get("/").text(), "x");
    }
    let n = be.connections.load(Ordering::Relaxed);
    eprintln!("200 requests over TLS: {n} TLS connections at the backend");
    assert!(n <= 3, "{n} TLS connections for 200 requests");
    let m = scrape(lb.port);
    assert!(metric(&m, "lb_tls_handshakes_total").unwrap() >= 1, "{m}");
}

#[test]
fn new_connections_to_a_backend_resume_their_tls_session() {
    let ca = Ca::new("lb test CA");
    // The backend closes after every response: each request needs a new
    // connection, and so a handshake, which should resume.
    let be = TlsBackend::http(ca.leaf(&["localhost"], false), |_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nr".to_vec()
    });
    let (lb, _ca_file) = lb_trusting(&ca, &["-w", "1", "-b", &be.https()]);
    for _ in 0..10 {
        assert_eq!(get(lb.port, "/").text(), "r");
    }
    let m = scrape(lb.port);
    let handshakes = metric(&m, "lb_tls_handshakes_total").unwrap();
    let resumed = metric(&m, "lb_tls_resumed_total").unwrap();
    eprintln!("{handshakes} handshakes, {resumed} resumed");
    assert_eq!(handshakes, 10, "{m}");
    assert!(resumed >= 8, "{m}");
}

#[test]
fn certificate_failures_give_502_with_the_reason_logged() {
    let ca = Ca::new("lb test CA");
    let other_ca = Ca::new("someone else's CA");
    let cases = [
        (
            "name mismatch",
            ca.leaf(&["other.example"], false),
            "name_mismatch",
        ),
        (
            "unknown issuer",
            other_ca.leaf(&["localhost"], false),
            "unknown_issuer",
        ),
        ("expired", ca.leaf(&["localhost"], true), "expired"),
    ];
    let ca_file = ca.pem_file("ca.pem");
    for (why, cert, kind) in cases {
        let be = TlsBackend::http(cert, |_| ok("must not be seen"));
        let lb = Lb::start(&["--ca-file", ca_file.to_str().unwrap(), "-b", &be.https()]);
        let r = get(lb.port, "/");
        assert_eq!(r.status(), 502, "{why}");
        assert!(lb.log_has(why), "{why}: {}", lb.log_text());
        assert_eq!(
            be.requests.load(Ordering::Relaxed),
            0,
            "{why}: a request got through"
        );
        let m = scrape(lb.port);
        let series = format!("lb_tls_handshake_failures_total{{reason=\"{kind}\"}}");
        assert!(metric(&m, &series).unwrap() >= 1, "{why}: {m}");
    }
}

#[test]
fn a_failed_handshake_moves_on_to_the_next_backend() {
    let ca = Ca::new("lb test CA");
    let bad = TlsBackend::http(ca.leaf(&["other.example"], false), |_| ok("bad"));
    let good = TlsBackend::http(ca.leaf(&["localhost"], false), |_| ok("good"));
    let ca_file = ca.pem_file("ca.pem");
    let lb = Lb::start(&[
        "-w",
        "1",
        "--ca-file",
        ca_file.to_str().unwrap(),
        "-b",
        &bad.https(),
        "-b",
        &good.https(),
    ]);
    for _ in 0..4 {
        let mut c = lb.conn();
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
        let r = c.read_response(false);
        assert_eq!(
            (r.status(), r.text()),
            (200, "good".to_string()),
            "even a POST: nothing was sent"
        );
    }
}

#[test]
fn insecure_accepts_a_self_signed_backend() {
    let self_signed = Ca::new("self");
    let be = TlsBackend::http(self_signed.leaf(&["localhost"], false), |_| {
        ok("trusted blindly")
    });
    let lb = Lb::start(&["-k", "-b", &be.https()]);
    assert_eq!(get(lb.port, "/").text(), "trusted blindly");
    assert!(lb.log_has("NOT verified"), "{}", lb.log_text());
    // Without -k the same backend is refused.
    let strict = Lb::start(&["-b", &be.https()]);
    assert_eq!(get(strict.port, "/").status(), 502);
}

#[test]
fn tls_true_and_ca_file_in_the_config_and_probes_over_tls() {
    let ca = Ca::new("lb test CA");
    let probes = Arc::new(AtomicUsize::new(0));
    let p = probes.clone();
    let be = TlsBackend::http(ca.leaf(&["127.0.0.1"], false), move |m| {
        if m.target() == "/health" {
            p.fetch_add(1, Ordering::Relaxed);
        }
        ok("configured")
    });
    let dir = std::env::temp_dir().join(format!("lb-tls-cfg-{}-{}", std::process::id(), be.port));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.issuer.pem()).unwrap();
    let cfg = format!(
        r#"{{"backends": [{{"host": "127.0.0.1", "port": {}, "tls": true}}],
            "ca_file": "ca.pem", "probe_interval_ms": 200, "health_path": "/health"}}"#,
        be.port
    );
    std::fs::write(dir.join("lb.json"), cfg).unwrap();
    let lb = Lb::start(&["-c", dir.join("lb.json").to_str().unwrap()]);
    assert_eq!(get(lb.port, "/").text(), "configured");
    assert!(
        eventually(Duration::from_secs(5), || probes.load(Ordering::Relaxed)
            >= 2),
        "no probes over TLS: {}",
        lb.log_text()
    );
    assert_eq!(
        metric(
            &scrape(lb.port),
            &format!("lb_backend_up{{backend=\"127.0.0.1:{}\"}}", be.port)
        ),
        Some(1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_trace_prints_the_handshake_summary() {
    let ca = Ca::new("lb test CA");
    let be = TlsBackend::http(ca.leaf(&["localhost"], false), |_| ok("t"));
    let ca_file = ca.pem_file("ca.pem");
    let lb = Lb::start(&[
        "--tls-trace",
        "--ca-file",
        ca_file.to_str().unwrap(),
        "-b",
        &be.https(),
    ]);
    assert_eq!(get(lb.port, "/").text(), "t");
    assert!(
        lb.log_has("=== TLS Handshake Complete ==="),
        "{}",
        lb.log_text()
    );
    let log = lb.log_text();
    // The spec's spelling ("TLS Tracing" in the original README), a log
    // line each: `info(tls_trace):   Version: TLS 1.3`.
    for field in [
        &format!("info(tls_trace):   Host: localhost:{}", be.port)[..],
        "info(tls_trace):   Version: TLS 1.3",
        "info(tls_trace):   Cipher Suite: AES_",
        "info(tls_trace):   CA Verification: custom",
        "info(tls_trace):   Host Verification: enabled",
        "info(tls_trace):   CA Certificates: 1 loaded",
        "info(tls_trace):   ALPN: http/1.1",
    ] {
        assert!(log.contains(field), "missing {field:?} in\n{log}");
    }
    assert!(
        !log.contains("TLSv1_3") && !log.contains("TLS13_"),
        "Rust names in\n{log}"
    );
}

/// What the backend sends of a 100-byte Content-Length body before its cut.
const CUT_LENGTH_BODY: &[u8] = &[b'x'; 90];
/// What the backend sends of a close-delimited body before its cut.
const CUT_CLOSE_BODY: &[u8] = b"some bytes, then a cut";

/// A chunked body as the proxy writes it (hex size lines without
/// extensions), read strictly from bytes that may stop anywhere: the data
/// of the chunks, and whether a last chunk (size 0) began. Panics on bad
/// framing.
fn dechunk(mut b: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            assert!(
                b.iter().all(u8::is_ascii_hexdigit),
                "bad chunk size line: {}",
                show(b)
            );
            return (data, false);
        };
        let line = &b[..eol];
        assert!(
            !line.is_empty() && line.iter().all(u8::is_ascii_hexdigit),
            "bad chunk size line: {}",
            show(line)
        );
        let size = usize::from_str_radix(std::str::from_utf8(line).unwrap(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            return (data, true);
        }
        if b.len() < size + 2 {
            data.extend_from_slice(&b[..b.len().min(size)]);
            return (data, false);
        }
        data.extend_from_slice(&b[..size]);
        assert_eq!(
            &b[size..size + 2],
            b"\r\n",
            "chunk data not followed by CRLF"
        );
        b = &b[size + 2..];
    }
}

#[test]
fn a_tls_response_cut_without_close_notify_is_never_a_clean_short_body() {
    let ca = Ca::new("lb test CA");
    let serve: Arc<Serve> = Arc::new(|tls| {
        let mut reader = BufReader::new(&mut *tls);
        let Some((_, start, _)) = read_head(&mut reader) else {
            return;
        };
        drop(reader);
        let mut resp = Vec::new();
        if start.get(1).is_some_and(|t| t == "/length") {
            // 90 of the 100 declared bytes.
            resp.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
            resp.extend_from_slice(CUT_LENGTH_BODY);
        } else {
            // Close-delimited: only a close_notify would end it cleanly.
            resp.extend_from_slice(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            resp.extend_from_slice(CUT_CLOSE_BODY);
        }
        let _ = tls.write_all(&resp);
        let _ = tls.flush();
        thread::sleep(Duration::from_millis(100));
        // A TCP close with no close_notify.
        let _ = tls.sock.shutdown(Shutdown::Both);
    });
    let be = TlsBackend::start(ca.leaf(&["localhost"], false), serve);
    let ca_file = ca.pem_file("ca.pem");
    let lb = Lb::start(&[
        "--ca-file",
        ca_file.to_str().unwrap(),
        "-b",
        &format!("https://localhost:{}", be.port),
    ]);
    for path in ["/length", "/until-close"] {
        let mut c = lb.conn();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        // The response started, so it cannot become a 502: the client
        // connection must be closed with the body short by its own framing.
        let all = c.read_to_close();
        let at = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("{path}: no complete head: {}", show(&all)))
            + 4;
        let (head, body) = all.split_at(at);
        let head = String::from_utf8_lossy(head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{path}: {head:?}");
        if path == "/length" {
            // Forwarded with the length the backend declared, and fewer body
            // bytes than that: the client sees a short body, never a whole one.
            assert!(
                head.contains("\r\ncontent-length: 100\r\n") && !head.contains("transfer-encoding"),
                "{path}: the declared length must reach the client: {head:?}"
            );
            assert!(
                body.len() < 100 && CUT_LENGTH_BODY.starts_with(body),
                "{path}: {} body bytes, not a prefix of the {} sent: {}",
                body.len(),
                CUT_LENGTH_BODY.len(),
                show(body)
            );
        } else {
            // Re-chunked for the HTTP/1.1 client: the bytes that came are
            // passed on, and no last chunk says the body is whole.
            assert!(
                head.contains("\r\ntransfer-encoding: chunked\r\n")
                    && !head.contains("content-length"),
                "{path}: expected a re-chunked response: {head:?}"
            );
            let (data, last_chunk) = dechunk(body);
            assert!(
                !last_chunk,
                "{path}: presented as complete with a last chunk: {}",
                show(body)
            );
            assert!(
                CUT_CLOSE_BODY.starts_with(&data),
                "{path}: data {} is not a prefix of what was sent",
                show(&data)
            );
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            let log = lb.log_text();
            log.contains("close_notify") || log.contains("truncated")
        }),
        "{}",
        lb.log_text()
    );
}

#[test]
fn a_bad_ca_file_is_a_configuration_error_naming_the_flag_and_the_file() {
    let (code, _, err) = run_lb(&[
        "--check",
        "-b",
        "https://127.0.0.1:8443",
        "--ca-file",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--ca-file") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
    let not_pem = temp_file("not-a-ca.pem", "hello\n");
    let (code, _, err) = run_lb(&[
        "-b",
        "https://127.0.0.1:8443",
        "--ca-file",
        not_pem.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no PEM certificates"), "{err}");
}

#[test]
fn a_response_followed_at_once_by_close_notify_is_served_and_nothing_spins() {
    // The last bytes of a response and the backend's close_notify in one
    // flight (nginx closing a connection after keepalive_requests): the
    // data is delivered, then the end of the stream. Probes (which ask for
    // Connection: close) meet the same.
    let ca = Ca::new("lb test CA");
    let serve: Arc<Serve> = Arc::new(|tls| {
        let mut reader = BufReader::new(&mut *tls);
        if read_head(&mut reader).is_none() {
            return;
        }
        drop(reader);
        tls.conn
            .writer()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone")
            .unwrap();
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    let be = TlsBackend::start(ca.leaf(&["localhost"], false), serve);
    let ca_file = ca.pem_file("ca.pem");
    let cfg = temp_file(
        "closing.json",
        &format!(
            r#"{{"backends": [{{"host": "localhost", "port": {}, "tls": true}}],
                "ca_file": "{}", "probe_interval_ms": 100}}"#,
            be.port,
            ca_file.to_str().unwrap()
        ),
    );
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    for _ in 0..20 {
        assert_eq!(get(lb.port, "/").text(), "done");
    }
    // One more on a client connection that stays open through the idle
    // interval, so a session left spinning by that close would still be there.
    let mut held = lb.conn();
    assert_eq!(held.get("/").text(), "done");
    // Idle but for the probes (each one a connection that ends the same
    // way): the load balancer's processes (the master, its worker and its
    // prober; or the one process in sp mode) must sleep. A loop that spins
    // burns a whole core (~100% of the interval); idle they use ~1%.
    let probes_before = be.connections.load(Ordering::Relaxed);
    let (ticks_before, t0) = (lb_cpu_ticks(lb.pid()), Instant::now());
    thread::sleep(Duration::from_secs(2));
    let (ticks_after, wall) = (lb_cpu_ticks(lb.pid()), t0.elapsed());
    let used = ticks_after
        .iter()
        .map(|(pid, t)| t.saturating_sub(ticks_before.get(pid).copied().unwrap_or(0)))
        .sum::<u64>();
    let cpu = Duration::from_secs_f64(used as f64 / clock_ticks_per_second() as f64);
    assert!(
        cpu < wall / 5,
        "the load balancer used {cpu:?} of CPU in {wall:?} idle (a spin?): \
         per pid before {ticks_before:?}, after {ticks_after:?}"
    );
    // Probes went on (each one a connection): the prober is not stuck.
    assert!(
        eventually(Duration::from_secs(5), || be
            .connections
            .load(Ordering::Relaxed)
            >= probes_before + 5),
        "probes stopped: {} connections before the idle interval, {} now",
        probes_before,
        be.connections.load(Ordering::Relaxed)
    );
    // And the held client connection still works.
    assert_eq!(held.get("/").text(), "done");
}

/// User + system CPU time, in clock ticks, of the load balancer `master`
/// and each of its child processes (workers, prober), by pid, from
/// /proc/PID/stat (a process's figures include all of its threads).
fn lb_cpu_ticks(master: u32) -> std::collections::BTreeMap<u32, u64> {
    let mut pids = vec![master];
    pids.extend(children(master).into_iter().map(|(pid, _)| pid));
    pids.into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": utime and stime are fields 14 and
            // 15, the 12th and 13th after the ')' that ends comm.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((pid, utime + stime))
        })
        .collect()
}

/// `sysconf(_SC_CLK_TCK)`, the unit of /proc's CPU times (100 on Linux).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A burst of new TLS connections after an earlier one resumes: the
/// client keeps as many TLS 1.3 tickets per backend as its pool needs
/// (rustls's own store keeps 8, so 30 new connections made 22 full
/// handshakes).
#[test]
fn a_burst_of_new_tls_connections_resumes() {
    const BURST: usize = 30;
    let ca = Ca::new("lb test CA");
    let be = TlsBackend::http(ca.leaf(&["localhost"], false), |_| {
        thread::sleep(Duration::from_millis(300));
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec()
    });
    let (lb, _ca_file) = lb_trusting(&ca, &["-w", "1", "-b", &be.https()]);
    let burst = || assert!(concurrent_gets(lb.port, BURST).iter().all(|&s| s == 200));
    burst();
    let m = scrape(lb.port);
    let resumed0 = metric(&m, "lb_tls_resumed_total").unwrap();
    let hs0 = metric(&m, "lb_tls_handshakes_total").unwrap();
    burst();
    let m = scrape(lb.port);
    let resumed = metric(&m, "lb_tls_resumed_total").unwrap() - resumed0;
    let handshakes = metric(&m, "lb_tls_handshakes_total").unwrap() - hs0;
    eprintln!("second burst: {handshakes} handshakes, {resumed} resumed");
    assert!(
        handshakes >= BURST as u64 - 2,
        "{handshakes} handshakes for {BURST} connections"
    );
    assert!(
        resumed >= handshakes - 2,
        "only {resumed} of {handshakes} new TLS connections resumed"
    );
}
