//! Hostile clients kept off the backends, as an operator would check it:
//! slow request bodies are read whole before a backend is chosen (a slow
//! upload holds no backend connection), a body over `request_buffer_bytes`
//! streams as before, and a buffered body that does not arrive within
//! `client_body_ms` gets 408.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

fn lb_with(backends: &[String], extra: &str) -> (Lb, TempFile) {
    let list: Vec<String> = backends
        .iter()
        .map(|a| {
            let (h, p) = a.rsplit_once(':').unwrap();
            format!(r#"{{"host": "{h}", "port": {p}}}"#)
        })
        .collect();
    let cfg = format!(r#"{{"backends": [{}]{extra}}}"#, list.join(", "));
    let file = temp_file("operator.json", &cfg);
    let lb = Lb::start(&["-w", "2", "-c", file.to_str().unwrap()]);
    (lb, file)
}

#[test]
fn two_hundred_slow_body_clients_hold_no_backend_connection() {
    let be = Backend::spawn(|m| ok(&format!("got {}", m.body.len())));
    let (lb, _f) = lb_with(&[be.addr()], "");
    // 200 clients each announce a 100-byte body and send a byte a second.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
            s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nx")
                .unwrap();
            s
        })
        .collect();
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1000));
        for s in &mut slow {
            let _ = s.write_all(b"x");
        }
        // Meanwhile a normal client is served at once.
        let mut c = lb.conn();
        c.send(b"POST /quick HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
        let r = c.read_response(false);
        assert_eq!((r.status(), r.text()), (200, "got 5".to_string()));
    }
    let conns = be.connections.load(Ordering::Relaxed);
    let seen = be.received().len();
    eprintln!("200 slow-body clients: {conns} backend connections, {seen} requests at the backend");
    // Only the normal client's requests reached the backend, over at most
    // one pooled connection per worker.
    assert_eq!(seen, 3, "a slow body reached the backend");
    assert!(conns <= 2, "{conns} backend connections");
    drop(slow);
}

#[test]
fn a_body_over_request_buffer_bytes_streams_to_the_backend_as_it_comes() {
    let be = Backend::spawn(|m| ok(&format!("got {}", m.body.len())));
    let (lb, _f) = lb_with(&[be.addr()], r#", "request_buffer_bytes": 1024"#);
    let mut c = lb.conn();
    c.send(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    c.send(&vec![b'a'; 50_000]);
    // Half the body is in: the backend already has the request streaming in.
    assert!(
        eventually(Duration::from_secs(5), || be
            .connections
            .load(Ordering::Relaxed)
            == 1),
        "a body over the buffer did not stream"
    );
    c.send(&vec![b'b'; 50_000]);
    let r = c.read_response(false);
    assert_eq!((r.status(), r.text()), (200, "got 100000".to_string()));
}

#[test]
fn a_buffered_body_not_in_within_client_body_ms_gets_408_and_no_backend_sees_it() {
    let be = Backend::named("a");
    let (lb, _f) = lb_with(&[be.addr()], r#", "timeouts": {"client_body_ms": 300}"#);
    let mut c = lb.conn();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten!!");
    let rest = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    assert!(rest.starts_with("HTTP/1.1 408 "), "{rest:?}");
    assert_eq!(be.connections.load(Ordering::Relaxed), 0);
    assert!(lb.log_has("client_body_ms"), "{}", lb.log_text());
}

#[test]
fn a_body_cut_short_by_the_client_gets_400_and_never_reaches_a_backend() {
    let be = Backend::named("a");
    let (lb, _f) = lb_with(&[be.addr()], "");
    let mut c = lb.conn();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten!!");
    shutdown_write(&c);
    let rest = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    assert!(rest.starts_with("HTTP/1.1 400 "), "{rest:?}");
    assert_eq!(be.connections.load(Ordering::Relaxed), 0);
}

#[test]
fn the_access_log_has_one_correct_line_per_request_and_reopens_on_sigusr1() {
    let be = Backend::spawn(|m| ok(&"x".repeat(m.target().len())));
    let dir = std::env::temp_dir().join(format!("lb-alog-{}-{}", std::process::id(), be.port));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let lb = Lb::start(&[
        "-m",
        "mp",
        "-w",
        "2",
        "--access-log",
        path.to_str().unwrap(),
        "-b",
        &be.addr(),
    ]);
    let mut c = lb.conn();
    c.send(b"GET /first?q=\"1\" HTTP/1.1\r\nHost: t\r\nReferer: http://ref.example/\r\nUser-Agent: tester/1.0\r\n\r\n");
    assert_eq!(c.read_response(false).status(), 200);
    c.send(b"POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.read_response(false).status(), 200);
    assert_eq!(c.get("/metrics").status(), 200);
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    // Flushed within a second (and a sweep).
    assert!(
        eventually(Duration::from_secs(5), || lines().len() == 3),
        "{:?}",
        lines()
    );
    let all = lines();
    let first = &all[0];
    let be_addr = be.addr();
    // combined: addr - - [time] "request" status bytes "referer" "ua", then timings.
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.contains(r#"] "GET /first?q=\x221\x22 HTTP/1.1" 200 "#),
        "{first}"
    );
    let after_status: Vec<&str> = first.split("\" 200 ").nth(1).unwrap().split(' ').collect();
    assert_eq!(
        after_status[0], "12",
        "body bytes (the target's length): {first}"
    );
    let rt: f64 = first
        .split(" rt=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rt < 5.0, "request time {rt} s: {first}");
    assert!(
        first.contains(r#" "http://ref.example/" "tester/1.0" "#),
        "{first}"
    );
    assert!(first.contains(&format!(" upstream={be_addr} ")), "{first}");
    assert!(first.contains(" retries=0"), "{first}");
    for key in [" rt=", " uct=", " urt="] {
        assert!(first.contains(key), "{key} in {first}");
    }
    assert!(
        all[1].contains(r#""POST /second HTTP/1.1" 200 7 "-" "-""#),
        "{}",
        all[1]
    );
    // /metrics is answered by the proxy itself: no upstream.
    assert!(
        all[2].contains(r#""GET /metrics HTTP/1.1" 200 "#),
        "{}",
        all[2]
    );
    assert!(all[2].contains(" upstream=- "), "{}", all[2]);
    // Rotation: rename, SIGUSR1, and the next lines go to a new file.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    signal(lb.pid(), 10);
    assert!(lb.log_has("reopening the access log"), "{}", lb.log_text());
    thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        assert_eq!(get(lb.port, "/after").status(), 200);
    }
    assert!(
        eventually(Duration::from_secs(5), || lines().len() == 3
            && lines().iter().all(|l| l.contains("/after"))),
        "new file: {:?}",
        lines()
    );
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        3
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_admin_listener_serves_metrics_and_status_and_metrics_can_leave_the_traffic_port() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let admin_port = free_port();
    let (lb, _f) = lb_with(
        &[a.addr(), b.addr()],
        &format!(r#", "admin": "127.0.0.1:{admin_port}", "metrics_on_traffic_port": false"#),
    );
    for _ in 0..4 {
        assert_eq!(get(lb.port, "/").status(), 200);
    }
    let m = get(admin_port, "/metrics");
    assert_eq!(m.status(), 200);
    assert!(
        m.text().contains("lb_request_duration_seconds_bucket"),
        "{}",
        m.text()
    );
    assert_eq!(metric(&m.text(), "lb_requests_total"), Some(4));
    let page = get(admin_port, "/status");
    assert_eq!(page.status(), 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    for be in [&a, &b] {
        assert!(page.text().contains(&be.addr()), "{}", page.text());
    }
    let json = get(admin_port, "/status.json");
    assert_eq!(json.status(), 200);
    assert!(
        lb::config::json::parse(&json.text()).is_ok(),
        "{}",
        json.text()
    );
    assert!(json.text().contains(&a.addr()) && json.text().contains(&b.addr()));
    assert_eq!(get(admin_port, "/nope").status(), 404);
    // On the traffic port /metrics is now just a path: it goes to a backend.
    let r = get(lb.port, "/metrics");
    assert_eq!(r.status(), 200);
    assert!(!r.text().contains("lb_requests_total"), "{}", r.text());
    assert!(r.text() == "a" || r.text() == "b");
}

#[test]
fn three_hundred_slowloris_connections_write_few_log_lines_and_each_gets_its_408() {
    let be = Backend::named("a");
    let (lb, _f) = lb_with(&[be.addr()], r#", "timeouts": {"client_header_ms": 500}"#);
    let before = lb.log_text().lines().count();
    let mut conns: Vec<Client> = (0..300)
        .map(|_| {
            let mut c = lb.conn();
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
            c
        })
        .collect();
    let mut got_408 = 0;
    for c in &mut conns {
        let rest = String::from_utf8_lossy(&c.read_to_close()).into_owned();
        if rest.starts_with("HTTP/1.1 408 ") {
            got_408 += 1;
        }
    }
    thread::sleep(Duration::from_millis(1200)); // a sweep reports what was suppressed
    let text = lb.log_text();
    let lines = text.lines().count() - before;
    eprintln!("300 slowloris connections: {got_408} answered 408, {lines} log lines");
    assert_eq!(got_408, 300);
    assert!(lines < 20, "{lines} log lines:\n{text}");
    assert!(text.contains("suppressed"), "{text}");
}
