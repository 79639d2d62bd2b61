//! What one client sends never reaches a backend as somebody else's request,
//! and nothing a client does takes the service down (issue: no desync, no
//! cross-talk, limits). Each test is one defect found from outside; each
//! fails on the build before its fix (run with `LB_BIN=/path/to/old/build`).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// An unfinished request line: a backend that reads it as a request
/// swallows the next request on that connection into it.
const SMUGGLED: &[u8] = b"GET /SMUGGLED HTTP/1.1\r\nX-Swallow: ";

/// A backend answering each request with its own target as the body.
fn echo_backend() -> Backend {
    Backend::spawn(|m| ok(m.target()))
}

/// `Connection: Content-Length` (any case, alone or in a list) must not strip
/// the framing: the body arrives as the body, the next client's request as
/// its own, and each client gets its own response.
#[test]
fn connection_naming_content_length_does_not_smuggle() {
    let be = echo_backend();
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let variants = [
        "Content-Length",
        "content-length",
        "keep-alive, CONTENT-LENGTH",
    ];
    for (i, conn) in variants.iter().enumerate() {
        let mut attacker = lb.conn();
        let mut req = format!(
            "POST /a{i} HTTP/1.1\r\nHost: t\r\nConnection: {conn}\r\nContent-Length: {}\r\n\r\n",
            SMUGGLED.len()
        )
        .into_bytes();
        req.extend_from_slice(SMUGGLED);
        let m = attacker.roundtrip(&req);
        assert_eq!((m.status(), m.text()), (200, format!("/a{i}")), "{conn}");
        // Another client, on the pooled backend connection.
        let m = get(lb.port, &format!("/victim{i}"));
        assert_eq!(
            (m.status(), m.text()),
            (200, format!("/victim{i}")),
            "Connection: {conn}: the next client got another request's response"
        );
    }
    let got: Vec<(String, Vec<u8>)> = be
        .received()
        .iter()
        .map(|m| (m.target().to_string(), m.body.clone()))
        .collect();
    assert!(
        got.iter().all(|(t, _)| !t.contains("SMUGGLED")),
        "a smuggled request reached the backend: {got:?}"
    );
    for (i, _) in variants.iter().enumerate() {
        assert!(
            got.contains(&(format!("/a{i}"), SMUGGLED.to_vec())),
            "POST /a{i} did not arrive with its body: {got:?}"
        );
    }
}

/// `Connection: Transfer-Encoding` and `Connection: Host` are the same
/// class: the chunked body arrives framed, the Host header arrives.
#[test]
fn connection_naming_transfer_encoding_or_host_is_not_honoured() {
    let be = echo_backend();
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let mut c = lb.conn();
    let m = c.roundtrip(b"POST /te HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!((m.status(), m.text().as_str()), (200, "/te"));
    let m = c.roundtrip(b"GET /host HTTP/1.1\r\nConnection: Host\r\nHost: example.test\r\n\r\n");
    assert_eq!((m.status(), m.text().as_str()), (200, "/host"));
    let got = be.received();
    let te = got.iter().find(|m| m.target() == "/te").expect("POST /te");
    assert_eq!(te.body, b"hello");
    assert!(
        te.chunked,
        "the body went upstream without its chunked framing"
    );
    let host = got
        .iter()
        .find(|m| m.target() == "/host")
        .expect("GET /host");
    assert_eq!(host.header("host"), Some("example.test"));
}

/// A backend's `Connection: Content-Length` must not strip the response's
/// framing: a kept-alive client must be able to tell where it ends.
#[test]
fn response_connection_naming_content_length_keeps_framing() {
    let be = Backend::raw(|s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        while read_head(&mut r).is_some() {
            let resp =
                b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello";
            if w.write_all(resp).is_err() {
                return;
            }
        }
    });
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let mut c = lb.conn();
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let (_, start, headers) = c.read_head();
        assert_eq!(start[1], "200");
        let framing: Vec<_> = headers
            .iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case("content-length")
                    || n.eq_ignore_ascii_case("transfer-encoding")
            })
            .collect();
        assert_eq!(
            framing,
            [&("Content-Length".to_string(), "5".to_string())],
            "response sent without its framing: {headers:?}"
        );
        let mut body = [0u8; 5];
        c.r.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"hello");
    }
}

/// Bytes a backend sends past a response body (here past a spliced 300 KiB
/// body) stay with that connection: it is closed, never pooled, and the
/// next client gets its own response.
#[test]
fn bytes_past_a_response_never_reach_the_next_client() {
    const BIG: usize = 300 * 1024;
    let be = Backend::raw(|s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        while let Some((_, start, _)) = read_head(&mut r) {
            let target = &start[1];
            let mut resp = Vec::new();
            if target.starts_with("/big") {
                resp.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").as_bytes(),
                );
                resp.resize(resp.len() + BIG, b'a');
                resp.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED");
            } else {
                resp = ok(target);
            }
            if w.write_all(&resp).is_err() {
                return;
            }
        }
    });
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    for i in 0..3 {
        let m = get(lb.port, &format!("/big{i}"));
        assert_eq!((m.status(), m.body.len()), (200, BIG));
        assert!(m.body.iter().all(|&b| b == b'a'));
        let m = get(lb.port, &format!("/next{i}"));
        assert_eq!(
            (m.status(), m.text()),
            (200, format!("/next{i}")),
            "the next client got the bytes left after another response"
        );
    }
    let closes = metric(&scrape(lb.port), "lb_upstream_unread_closes_total").unwrap();
    assert!(closes >= 3, "lb_upstream_unread_closes_total {closes}");
}

/// A response head over the limit (a backend echoing a long target into a
/// header) is a 502 for that request, counted, and not a reason to take the
/// backend out: other clients keep getting answers.
#[test]
fn malformed_responses_do_not_mark_the_backend_down() {
    let be = Backend::raw(|s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        while let Some((_, start, _)) = read_head(&mut r) {
            let resp = if start[1].starts_with("/long") {
                format!(
                    "HTTP/1.1 200 OK\r\nX-Echo: {}\r\nContent-Length: 0\r\n\r\n",
                    "a".repeat(9000)
                )
                .into_bytes()
            } else {
                ok("fine")
            };
            if w.write_all(&resp).is_err() {
                return;
            }
        }
    });
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    for _ in 0..10 {
        assert_eq!(get(lb.port, "/long").status(), 502);
    }
    let m = get(lb.port, "/ok");
    assert_eq!(
        (m.status(), m.text().as_str()),
        (200, "fine"),
        "malformed responses to one client's requests took the backend out"
    );
    let text = scrape(lb.port);
    let series = format!(
        "lb_backend_errors_total{{backend=\"{}\",kind=\"bad_response\"}}",
        be.addr()
    );
    assert_eq!(metric(&text, &series), Some(10), "{text}");
    assert_eq!(
        metric(
            &text,
            &format!("lb_backend_up{{backend=\"{}\"}}", be.addr())
        ),
        Some(1)
    );
}

/// Sets the load balancer's soft descriptor limit while it runs.
#[allow(unsafe_code)]
fn set_nofile(pid: u32, n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to fill; a null new limit only reads.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut lim) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    // The soft limit only: raising a hard limit back needs a privilege.
    lim.rlim_cur = n.min(lim.rlim_max);
    // SAFETY: lim is a valid rlimit; a null old-limit pointer is allowed.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Out of descriptors is the proxy's problem: a flood that exhausts them
/// does not mark a healthy backend down, and once it ends clients are
/// served at once (no 503 while the backend "recovers").
#[test]
fn running_out_of_descriptors_is_not_a_backend_failure() {
    let be = Backend::spawn(|_| {
        thread::sleep(Duration::from_millis(200));
        ok("slow")
    });
    let lb = Lb::start(&["-m", "sp", "-w", "1", "-b", &be.addr()]);
    assert_eq!(get(lb.port, "/warm").status(), 200);
    set_nofile(lb.pid(), 40);
    // 80 clients: each is accepted with half a head (until accept runs out
    // of descriptors), then all finish their heads at once, so that the
    // backend connections they need run out of descriptors too.
    let go = Arc::new(std::sync::Barrier::new(81));
    let flood: Vec<_> = (0..80)
        .map(|i| {
            let port = lb.port;
            let go = go.clone();
            thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port));
                let mut w = s.as_ref().ok().and_then(|s| s.try_clone().ok());
                if let Some(w) = w.as_mut() {
                    let _ = w.write_all(format!("GET /f{i} HTTP/1.1\r\n").as_bytes());
                }
                go.wait();
                let (Ok(s), Some(mut w)) = (s, w) else {
                    return 0u16;
                };
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                if w.write_all(b"Host: t\r\nConnection: close\r\n\r\n")
                    .is_err()
                {
                    return 0;
                }
                let mut line = String::new();
                let _ = BufReader::new(s).read_line(&mut line);
                line.split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    go.wait();
    let statuses: Vec<u16> = flood.into_iter().map(|t| t.join().unwrap()).collect();
    set_nofile(lb.pid(), 4096);
    let log = lb.log_text();
    // Right after the flood: served, not 503.
    let m = get(lb.port, "/after");
    assert_eq!(
        m.status(),
        200,
        "after the flood: {} (flood statuses {statuses:?}); log:\n{log}",
        m.text()
    );
    let text = scrape(lb.port);
    assert_eq!(
        metric(
            &text,
            &format!("lb_backend_up{{backend=\"{}\"}}", be.addr())
        ),
        Some(1),
        "{text}"
    );
    assert!(
        !log.contains("marked unhealthy"),
        "a local shortage marked the backend down:\n{log}"
    );
}

/// `--max-connections`: at the limit the worker stops accepting; the next
/// connection waits in the listen queue and is served once one closes.
#[test]
fn max_connections_pauses_accepting_until_one_closes() {
    let be = echo_backend();
    let lb = Lb::start(&["-w", "1", "--max-connections", "2", "-b", &be.addr()]);
    // Two connections with half a head each (TCP_DEFER_ACCEPT: a connection
    // is accepted once it has sent something).
    let mut held: Vec<Client> = (0..2).map(|_| lb.conn()).collect();
    for c in &mut held {
        c.send(b"GET /held HTTP/1.1\r\n");
    }
    thread::sleep(Duration::from_millis(300));
    let mut third = lb.conn();
    third.send(b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n");
    third
        .w
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.r.read(&mut byte);
    assert!(
        early.as_ref().is_err_and(is_timeout),
        "a third connection was served over --max-connections 2: {early:?}"
    );
    drop(held.pop());
    third.w.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let m = third.read_response(false);
    assert_eq!((m.status(), m.text().as_str()), (200, "/third"));
    let pauses = metric(&scrape_until(lb.port, &mut held), "lb_accept_pauses_total").unwrap();
    assert!(pauses >= 1);
}

/// With several workers, one at `max_connections` does not strand a new
/// connection: the kernel wakes a single waiting worker per connection
/// (`EPOLLEXCLUSIVE`), so a full worker still listening would be woken for
/// a connection it cannot take while the one with room sleeps. A worker
/// takes its listener out as it reaches its limit (ARCHITECTURE.md,
/// invariants); this is what an operator would see if it did not.
#[test]
fn a_full_worker_does_not_strand_a_connection_another_worker_has_room_for() {
    let be = echo_backend();
    let cfg = temp_file(
        "lb.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "timeouts": {{"client_header_ms": 60000}}}}"#,
            be.port
        ),
    );
    for mode in ["mp", "sp"] {
        let lb = Lb::start(&[
            "-m",
            mode,
            "-w",
            "2",
            "--max-connections",
            "1",
            "-c",
            cfg.to_str().unwrap(),
        ]);
        // Both workers settled in their loops first: the worker that heads
        // the kernel's queue takes `held`, and is the one woken next.
        for _ in 0..3 {
            assert_eq!(get(lb.port, "/warm").status(), 200);
        }
        thread::sleep(Duration::from_millis(300));
        // Half a head: accepted, never idle, held for the test.
        let mut held = lb.conn();
        held.send(b"GET /held HTTP/1.1\r\n");
        thread::sleep(Duration::from_millis(300));
        // The worker that took `held` is the one the kernel wakes first
        // again (the same idle worker heads the queue).
        for i in 0..3 {
            let mut next = lb.conn();
            next.send(
                format!("GET /next{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            let m = next.read_response(false);
            assert_eq!(
                (m.status(), m.text()),
                (200, format!("/next{i}")),
                "{mode}: served by the worker with room while the other is full"
            );
        }
        held.send(b"Host: t\r\n\r\n");
        let m = held.read_response(false);
        assert_eq!((m.status(), m.text().as_str()), (200, "/held"), "{mode}");
    }
}

/// Scrapes `/metrics` once a connection slot is free (closing `held`).
fn scrape_until(port: u16, held: &mut Vec<Client>) -> String {
    held.clear();
    scrape(port)
}

/// A body larger than `request_buffer_bytes`, trickled: no backend sees the
/// request until `request_buffer_bytes` of it are here.
#[test]
fn slow_large_upload_holds_no_backend() {
    let heads = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = heads.clone();
    let be = Backend::raw(move |s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        while let Some((_, start, headers)) = read_head(&mut r) {
            seen.lock()
                .unwrap()
                .push(format!("{} {}", start[0], start[1]));
            let (_body, _) = read_body(&mut r, &headers, false);
            if w.write_all(&ok("done")).is_err() {
                return;
            }
        }
    });
    let cfg = temp_file(
        "lb.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "request_buffer_bytes": 4096}}"#,
            be.port
        ),
    );
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    let mut c = lb.conn();
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    c.send(&[b'x'; 1000]);
    thread::sleep(Duration::from_millis(500));
    assert!(
        !heads.lock().unwrap().iter().any(|h| h.starts_with("POST")),
        "a backend saw the upload before request_buffer_bytes of it arrived: {:?}",
        heads.lock().unwrap()
    );
    c.send(&vec![b'x'; 99_000]);
    let m = c.read_response(false);
    assert_eq!((m.status(), m.text().as_str()), (200, "done"));
}

/// `Expect: 100-continue` is answered by the proxy (it reads the body before
/// choosing a backend), and the header is not sent on.
#[test]
fn expect_continue_is_answered_by_the_proxy() {
    let be = echo_backend();
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let mut c = lb.conn();
    c.send(b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let (_, start, _) = c.read_head();
    assert_eq!(start[1], "100", "no 100 Continue before the body");
    c.send(b"hello");
    let m = c.read_response(false);
    assert_eq!((m.status(), m.text().as_str()), (200, "/e"));
    let got = be.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"hello");
    assert_eq!(got[0].header("expect"), None);
}

/// `timeouts.client_body_min_rate`: a body trickled below it gets 408.
#[test]
fn body_below_min_rate_gets_408() {
    let be = echo_backend();
    let cfg = temp_file(
        "lb.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}],
                 "timeouts": {{"client_body_min_rate": 1000, "client_body_ms": 60000}}}}"#,
            be.port
        ),
    );
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    let mut c = lb.conn();
    c.send(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    let start = Instant::now();
    let mut status = None;
    c.w.set_nonblocking(false).unwrap();
    c.w.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // ~100 bytes a second, for at most 20 s.
    while start.elapsed() < Duration::from_secs(20) {
        if c.w.write_all(&[b'x'; 50]).is_err() {
            break;
        }
        let mut line = String::new();
        match c.r.read_line(&mut line) {
            Ok(n) if n > 0 => {
                status = line.split(' ').nth(1).map(str::to_string);
                break;
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    assert_eq!(
        status.as_deref(),
        Some("408"),
        "no 408 for a body at ~100 B/s"
    );
    assert!(!be.received().iter().any(|m| m.method() == "POST"));
    let text = scrape(lb.port);
    assert_eq!(metric(&text, "lb_slow_request_bodies_total"), Some(1));
}

/// Identity headers a client writes (`X-Real-IP`, `True-Client-IP`,
/// `X-Forwarded-Host`, `X-Forwarded-Port`, `Forwarded`) do not reach the
/// backend unless configured as trusted.
#[test]
fn client_identity_headers_are_removed_unless_trusted() {
    let be = echo_backend();
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let mut c = lb.conn();
    let req = b"GET /id HTTP/1.1\r\nHost: t\r\nX-Real-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Ssl: on\r\nX_Real_IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\nX-Forwarded-Anything: 1\r\n\r\n";
    assert_eq!(c.roundtrip(req).status(), 200);
    let m = &be.received()[0];
    for h in [
        "x-real-ip",
        "true-client-ip",
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
        "x-forwarded-ssl",
        "x_real_ip",
        "cf-connecting-ip",
        "x-forwarded-anything",
    ] {
        assert_eq!(m.header(h), None, "{h} passed through: {:?}", m.headers);
    }
    assert_eq!(m.header_all("x-forwarded-for"), ["127.0.0.1"]);

    let cfg = temp_file(
        "lb.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "trusted_client_headers": ["X-Real-IP"]}}"#,
            be.port
        ),
    );
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    assert_eq!(lb.conn().roundtrip(req).status(), 200);
    let m = be.received().pop().unwrap();
    assert_eq!(m.header("x-real-ip"), Some("6.6.6.6"));
    assert_eq!(m.header("true-client-ip"), None);
}

/// With an admin listener, `/metrics` on the traffic port is the backends'
/// (forwarded like any path), and the start-up log says where it is.
#[test]
fn metrics_move_to_the_admin_listener() {
    let be = echo_backend();
    let admin = format!("127.0.0.1:{}", free_port());
    let lb = Lb::start(&["-w", "1", "--admin", &admin, "-b", &be.addr()]);
    let m = get(lb.port, "/metrics");
    assert_eq!(
        (m.status(), m.text().as_str()),
        (200, "/metrics"),
        "/metrics answered on the traffic port although --admin is set"
    );
    let port: u16 = admin.rsplit(':').next().unwrap().parse().unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    assert!(scrape(port).contains("lb_requests_total"));
    assert!(lb.log_has("/metrics on the traffic port: off"));
    // Without --admin the spec's `curl :8080/metrics` still works.
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    assert!(scrape(lb.port).contains("lb_requests_total"));
}

/// The README says `"probe_interval_ms": 0` turns probing off; the config
/// accepts it.
#[test]
fn probe_interval_zero_turns_probing_off() {
    let be = echo_backend();
    let cfg = temp_file(
        "lb.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "probe_interval_ms": 0}}"#,
            be.port
        ),
    );
    let (code, out, err) = run_lb(&["--check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    assert_eq!(get(lb.port, "/x").status(), 200);
    thread::sleep(Duration::from_millis(300));
    assert!(
        be.received().iter().all(|m| m.target() == "/x"),
        "probes were sent with probing off: {:?}",
        be.received()
            .iter()
            .map(|m| m.target().to_string())
            .collect::<Vec<_>>()
    );
}

/// A refused HEAD request gets a bodiless answer (RFC 9110 9.3.2), like
/// every answer to HEAD (found by the desync search).
#[test]
fn a_refused_head_request_gets_no_body() {
    let be = echo_backend();
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let mut c = lb.conn();
    c.send(b"HEAD /x HTTP/1.1\r\nHost: x\r\ncontent-length : 5\r\n\r\n");
    let (_, start, headers) = c.read_head();
    assert_eq!(start[1], "400");
    assert!(headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length")));
    let (rest, end) = c.read_until_end(Duration::from_secs(5));
    assert!(end.closed(), "{end}");
    assert!(
        rest.is_empty(),
        "a body after the HEAD answer: {}",
        show(&rest)
    );
}

/// At `max_connections`, kept-alive connections idle between requests are
/// closed to make room for a new one (nginx does the same), and admin
/// connections do not count against the traffic limit.
#[test]
fn at_max_connections_idle_keep_alive_connections_make_room() {
    let be = echo_backend();
    let admin = format!("127.0.0.1:{}", free_port());
    let lb = Lb::start(&[
        "-w",
        "1",
        "--max-connections",
        "2",
        "--admin",
        &admin,
        "-b",
        &be.addr(),
    ]);
    let aport: u16 = admin.rsplit(':').next().unwrap().parse().unwrap();
    assert!(eventually(Duration::from_secs(5), || TcpStream::connect((
        "127.0.0.1",
        aport
    ))
    .is_ok()));
    // Two admin connections: not traffic.
    let mut admins: Vec<Client> = (0..2).map(|_| Client::connect(aport)).collect();
    for a in &mut admins {
        assert_eq!(a.get("/status.json").status(), 200);
    }
    let mut idle: Vec<Client> = (0..2).map(|_| lb.conn()).collect();
    for c in &mut idle {
        assert_eq!(c.get("/one").status(), 200);
    }
    let mut third = lb.conn();
    third
        .w
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let m = third.get("/third");
    assert_eq!((m.status(), m.text().as_str()), (200, "/third"));
    // One of the idle ones was closed to make room.
    let closed = idle
        .iter_mut()
        .map(|c| c.is_closed())
        .filter(|&x| x)
        .count();
    assert!(closed >= 1, "no idle connection was reclaimed");
}

/// `client_body_min_rate` blames only the client: a body that waits on a
/// backend slow to read it is no 408 (found by review). The buffered start
/// of the body (8 MiB here) is more than loopback buffers hold, so the
/// worker waits on the backend while the client's last bytes wait in the
/// kernel, for longer than two rate windows.
#[test]
fn a_backend_slow_to_read_a_body_is_not_a_slow_client() {
    const CAP: usize = 8 << 20;
    const BODY: usize = CAP + 1000;
    let be = Backend::raw(|s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let Some((_, _, headers)) = read_head(&mut r) else {
            return;
        };
        thread::sleep(Duration::from_secs(12));
        let (body, _) = read_body(&mut r, &headers, false);
        let _ = w.write_all(&ok(&body.len().to_string()));
    });
    let cfg = temp_file(
        "lb.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "probe_interval_ms": 0,
                 "request_buffer_bytes": {CAP},
                 "timeouts": {{"client_body_min_rate": 1000}}}}"#,
            be.port
        ),
    );
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    let mut c = lb.conn();
    c.w.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    c.send(format!("POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n").as_bytes());
    c.send(&vec![b'x'; CAP]);
    thread::sleep(Duration::from_secs(1));
    c.send(&[b'y'; 1000]);
    c.w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let m = c.read_response(false);
    assert_eq!(
        (m.status(), m.text()),
        (200, BODY.to_string()),
        "{}",
        lb.log_text()
    );
}

/// Interim responses are held to the response rules and passed on without
/// framing or hop-by-hop headers; one with two framings is a 502.
#[test]
fn interim_responses_go_out_without_framing_headers() {
    let be = Backend::raw(|s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        while let Some((_, start, _)) = read_head(&mut r) {
            let interim: &[u8] = if start[1] == "/bad" {
                b"HTTP/1.1 103 Early Hints\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            } else {
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nContent-Length: 40\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n"
            };
            let mut resp = interim.to_vec();
            resp.extend_from_slice(&ok("final"));
            if w.write_all(&resp).is_err() {
                return;
            }
        }
    });
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let mut c = lb.conn();
    c.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n");
    let (raw, start, _) = c.read_head();
    assert_eq!(start[1], "103");
    assert_eq!(
        String::from_utf8_lossy(&raw),
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    );
    let m = c.read_response(false);
    assert_eq!((m.status(), m.text().as_str()), (200, "final"));
    assert_eq!(lb.conn().get("/bad").status(), 502);
}

/// A response that fails after its head was composed is counted once, in
/// the class the client saw (502), not also as the backend's 200.
#[test]
fn a_failed_response_is_counted_once() {
    let be = Backend::spawn(|m| match m.target() {
        "/bad" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n".to_vec(),
        _ => ok("fine"),
    });
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let before = scrape(lb.port);
    let mut c = lb.conn();
    c.send(b"GET /bad HTTP/1.1\r\nHost: t\r\n\r\n");
    let _ = c.read_until_end(Duration::from_secs(5));
    let after = scrape(lb.port);
    let class =
        |t: &str, k: &str| metric(t, &format!("lb_responses_total{{code=\"{k}\"}}")).unwrap_or(0);
    assert_eq!(
        class(&after, "2xx") - class(&before, "2xx"),
        1,
        "only the first /metrics scrape is a 2xx"
    );
    assert_eq!(class(&after, "5xx") - class(&before, "5xx"), 1, "{after}");
}
