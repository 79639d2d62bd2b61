//! End-to-end: the real binary on loopback in front of in-test backends.

mod common;
use common::*;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn names(lb: &Lb, n: usize) -> Vec<String> {
    (0..n).map(|_| get(lb.port, "/").text()).collect()
}

#[test]
fn round_robin_alternates_exactly_over_two_and_three_backends() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let lb = Lb::start(&["-b", &a.addr(), "-b", &b.addr()]);
    assert_eq!(names(&lb, 6).join(""), "ababab");
    drop(lb);
    let lb = Lb::start(&[
        "-b",
        &a.addr(),
        "-b",
        &b.addr(),
        "-b",
        &c.addr(),
        "-s",
        "round_robin",
    ]);
    assert_eq!(names(&lb, 9).join(""), "abcabcabc");
    // The same on one kept-alive client connection.
    let mut conn = lb.conn();
    let seq: String = (0..6).map(|_| conn.get("/").text()).collect();
    assert_eq!(seq, "abcabc");
}

#[test]
fn smooth_weighted_round_robin_follows_nginx_sequence() {
    let (a, b, c) = (
        Backend::named("a"),
        Backend::named("b"),
        Backend::named("c"),
    );
    let cfg = format!(
        r#"{{"backends": [
            {{"host": "127.0.0.1", "port": {}, "weight": 5}},
            {{"host": "127.0.0.1", "port": {}}},
            {{"host": "127.0.0.1", "port": {}, "weight": 1}}
        ]}}"#,
        a.port, b.port, c.port
    );
    let path = temp_file("weights.json", &cfg);
    // Smooth WRR keeps its state per worker (as nginx's does): the exact
    // sequence is one worker's.
    let lb = Lb::start(&[
        "-w",
        "1",
        "-c",
        path.to_str().unwrap(),
        "-s",
        "weighted_round_robin",
    ]);
    assert_eq!(names(&lb, 14).join(""), "aabacaaaabacaa");
}

#[test]
fn random_strategy_reaches_every_backend() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let lb = Lb::start(&["-b", &a.addr(), "-b", &b.addr(), "-s", "random"]);
    let seen = names(&lb, 40);
    assert!(
        seen.iter().any(|n| n == "a") && seen.iter().any(|n| n == "b"),
        "{seen:?}"
    );
}

#[test]
fn keep_alive_is_reused_on_both_sides() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    // Pools are per worker: one worker, so the second client finds the first
    // client's pooled connections.
    let lb = Lb::start(&["-w", "1", "-b", &a.addr(), "-b", &b.addr()]);
    let mut conn = lb.conn();
    for i in 0..50 {
        let r = conn.get(&format!("/{i}"));
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.header("connection"),
            None,
            "no Connection: close on a kept-alive exchange"
        );
    }
    // Fifty requests on one client connection reached the backends over one
    // pooled connection each.
    assert_eq!(a.connections.load(Ordering::Relaxed), 1);
    assert_eq!(b.connections.load(Ordering::Relaxed), 1);
    assert_eq!(a.received().len() + b.received().len(), 50);
    // A second client reuses the same pooled connections.
    let mut other = lb.conn();
    for _ in 0..4 {
        assert_eq!(other.get("/").status(), 200);
    }
    assert_eq!(
        a.connections.load(Ordering::Relaxed) + b.connections.load(Ordering::Relaxed),
        2
    );
}

/// A backend that answers with the body it received.
fn echo() -> Backend {
    Backend::spawn(|m| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            m.body.len()
        )
        .into_bytes();
        r.extend_from_slice(&m.body);
        r
    })
}

fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn post_bodies_arrive_byte_exact_with_content_length_and_chunked() {
    let be = echo();
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut conn = lb.conn();
    let body = pattern(300_000, 7);
    let mut req = format!(
        "POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = conn.roundtrip(&req);
    assert_eq!(r.status(), 200);
    assert!(r.body == body, "content-length body changed on the way");

    // Chunked, with an extension and a trailer, in uneven chunks.
    let mut req =
        b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(77_777) {
        req.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let r = conn.roundtrip(&req);
    assert_eq!(r.status(), 200);
    assert!(r.body == body, "chunked body changed on the way");

    let got = be.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("content-length"), Some("300000"));
    assert_eq!(got[0].header("transfer-encoding"), None);
    assert!(got[1].chunked, "chunked request forwarded chunked");
    assert_eq!(got[1].header_all("transfer-encoding"), vec!["chunked"]);
    assert_eq!(got[1].header("content-length"), None);
}

#[test]
fn large_bodies_stream_both_ways_in_flat_memory() {
    const SIZE: u64 = 256 << 20;
    // Download: a backend that sends SIZE bytes.
    let down = Backend::raw(|s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        if read_head(&mut r).is_none() {
            return;
        }
        let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
        let block = vec![b'x'; 1 << 16];
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if w.write_all(&block[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
    });
    let lb = Lb::start(&["-b", &down.addr()]);
    let before = lb.rss_kib();
    let mut c = lb.conn();
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    let (_, start, headers) = c.read_head();
    assert_eq!(start[1], "200");
    assert_eq!(
        headers
            .iter()
            .find(|(n, _)| n == "Content-Length")
            .unwrap()
            .1,
        SIZE.to_string()
    );
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut peak = before;
    while got < SIZE {
        let n = c.r.read(&mut buf).unwrap();
        assert!(n > 0, "download cut short at {got}");
        got += n as u64;
        if got % (16 << 20) < n as u64 {
            peak = peak.max(lb.rss_kib());
        }
    }
    assert!(
        peak < before + 8 * 1024,
        "worker memory grew from {before} KiB to {peak} KiB during a download"
    );
    drop(lb);

    // Upload: SIZE bytes to a backend that counts them.
    let up = Backend::spawn(|m| ok(&m.body.len().to_string()));
    let lb = Lb::start(&["-b", &up.addr()]);
    let before = lb.rss_kib();
    let mut c = lb.conn();
    c.send(format!("PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes());
    let block = vec![b'y'; 1 << 16];
    let mut sent = 0u64;
    let mut peak = before;
    while sent < SIZE {
        c.w.write_all(&block).unwrap();
        sent += block.len() as u64;
        if sent % (16 << 20) == 0 {
            peak = peak.max(lb.rss_kib());
        }
    }
    let r = c.read_response(false);
    assert_eq!(r.text(), SIZE.to_string());
    assert!(
        peak < before + 8 * 1024,
        "worker memory grew from {before} KiB to {peak} KiB during an upload"
    );
}

#[test]
fn head_204_and_304_responses_have_no_body() {
    let be = Backend::spawn(|m| match m.target() {
        "/204" => b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n".to_vec(),
        "/304" => {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n".to_vec()
        }
        _ if m.method() == "HEAD" => b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(),
        _ => ok("after"),
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    let r = c.roundtrip(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status(), r.header("content-length")),
        (200, Some("1234"))
    );
    assert_eq!(c.get("/204").status(), 204);
    let r = c.get("/304");
    assert_eq!((r.status(), r.header("etag")), (304, Some("\"x\"")));
    // Had any of those been given a body, this response would be misread.
    assert_eq!(c.get("/next").text(), "after");
}

#[test]
fn a_refusing_backend_is_skipped_without_a_client_error() {
    let live = Backend::named("live");
    let dead = format!("127.0.0.1:{}", refused_port());
    let lb = Lb::start(&["-b", &dead, "-b", &live.addr()]);
    for _ in 0..10 {
        let r = get(lb.port, "/");
        assert_eq!((r.status(), r.text().as_str()), (200, "live"));
    }
    let m = get(lb.port, "/metrics").text();
    assert!(m.contains("lb_backends_unhealthy 1"), "{m}");
}

#[test]
fn all_backends_down_gives_502() {
    let lb = Lb::start(&[
        "-b",
        &format!("127.0.0.1:{}", refused_port()),
        "-b",
        &format!("127.0.0.1:{}", refused_port()),
    ]);
    let r = get(lb.port, "/");
    assert_eq!(r.status(), 502);
    assert!(
        !r.body.is_empty() && r.body.len() < 200,
        "short body: {:?}",
        r.text()
    );
}

#[test]
fn metrics_are_prometheus_text() {
    let be = Backend::named("a");
    let lb = Lb::start(&["-b", &be.addr()]);
    for _ in 0..3 {
        get(lb.port, "/");
    }
    let r = get(lb.port, "/metrics");
    assert_eq!(r.status(), 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name {name:?}"
        );
        if name.contains('{') {
            assert!(
                name.ends_with('}') && name.contains("=\""),
                "bad labels {name:?}"
            );
        }
        samples.insert(name.to_string(), v);
    }
    assert_eq!(samples["lb_requests_total"], 3.0);
    assert_eq!(samples["lb_backends_healthy"], 1.0);
    assert_eq!(samples["lb_backends_unhealthy"], 0.0);
    assert_eq!(
        samples[&format!("lb_backend_requests_total{{backend=\"{}\"}}", be.addr())],
        3.0
    );
}

#[test]
fn hop_by_hop_headers_are_stripped_and_the_rest_pass_in_order() {
    let be = Backend::spawn(|_| {
        b"HTTP/1.1 200 OK\r\nServer: test-backend/1.0\r\nContent-Type: text/html; charset=ISO-8859-4\r\nKeep-Alive: timeout=5\r\nX-B: 1\r\nConnection: X-Hop\r\nX-Hop: secret\r\nX-A: 2\r\nContent-Length: 2\r\n\r\nok".to_vec()
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    let r = c.roundtrip(
        b"GET /p?q=1 HTTP/1.1\r\nHost: example\r\nX-Z: z\r\nConnection: keep-alive, X-Private\r\nX-Private: p\r\nKeep-Alive: 300\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Forwarded-For: 10.9.9.9\r\nX-A: a\r\n\r\n",
    );
    assert_eq!(r.status(), 200);
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Server", "Content-Type", "X-B", "X-A", "Content-Length"]
    );
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=ISO-8859-4")
    );
    let got = &be.received()[0];
    assert_eq!(got.start, ["GET", "/p?q=1", "HTTP/1.1"]);
    let names: Vec<&str> = got.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Host", "X-Z", "X-A", "X-Forwarded-For", "X-Forwarded-Proto"]
    );
    // Client-sent forwarding headers are not trusted by default.
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
}

/// Reads one chunked body exactly as the proxy must frame it (RFC 9112
/// section 7.1): chunks of a hex size line (no extensions), the data and
/// CRLF; then the last chunk `0` and the empty line that ends the message
/// (no trailers). Panics at any other byte; reads nothing past the message.
/// Returns the data and the size of each non-empty chunk.
fn read_chunked_strictly(r: &mut impl BufRead) -> (Vec<u8>, Vec<usize>) {
    let mut data = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).unwrap();
        let hex = line.strip_suffix(b"\r\n").unwrap_or_else(|| {
            panic!(
                "chunk-size line without CRLF after {sizes:?}: {}",
                show(&line)
            )
        });
        assert!(
            !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit),
            "bad chunk-size line after {sizes:?}: {}",
            show(&line)
        );
        let size = usize::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        if size == 0 {
            let mut end = [0u8; 2];
            r.read_exact(&mut end).unwrap();
            assert!(
                &end == b"\r\n",
                "the last chunk must end the message (no trailers): {}",
                show(&end)
            );
            return (data, sizes);
        }
        sizes.push(size);
        let at = data.len();
        data.resize(at + size, 0);
        r.read_exact(&mut data[at..]).unwrap();
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).unwrap();
        assert!(
            &crlf == b"\r\n",
            "chunk of {size} bytes not followed by CRLF: {}",
            show(&crlf)
        );
    }
}

#[test]
fn close_delimited_responses_are_rechunked_for_keep_alive_clients() {
    let be = Backend::raw(|s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        if read_head(&mut r).is_some() {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nX-Kind: close-delimited\r\n\r\nhello ");
            std::thread::sleep(Duration::from_millis(50));
            let _ = w.write_all(b"world");
        }
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    // Twice on one connection: the first message must end exactly at its
    // last chunk for the second response to be read right.
    for round in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        let (raw_head, start, headers) = c.read_head();
        let m = Message {
            start,
            headers,
            raw_head,
            ..Message::default()
        };
        assert_eq!(m.status(), 200, "round {round}");
        assert_eq!(
            (
                m.header_all("transfer-encoding"),
                m.header("content-length")
            ),
            (vec!["chunked"], None),
            "round {round}: re-framed as chunked: {}",
            show(&m.raw_head)
        );
        assert_eq!(m.header("x-kind"), Some("close-delimited"));
        let (body, sizes) = read_chunked_strictly(&mut c.r);
        assert_eq!(
            body, b"hello world",
            "round {round}: de-chunked body ({sizes:?})"
        );
    }
    // Nothing after the last chunk, and the connection is kept open.
    let (extra, end) = c.read_until_end(Duration::from_millis(300));
    assert!(
        extra.is_empty() && matches!(end, End::StillOpen { .. }),
        "after the last chunk: {end}, {}",
        show(&extra)
    );
    // An HTTP/1.0 client gets the body delimited by close instead.
    let mut c = lb.conn();
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let raw = String::from_utf8(c.read_to_close()).unwrap();
    assert!(raw.ends_with("\r\n\r\nhello world"), "{raw:?}");
    assert!(!raw.contains("chunked"));
}

#[test]
fn a_truncated_response_body_closes_the_client_connection() {
    let be = Backend::raw(|s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        if read_head(&mut r).is_some() {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part");
        }
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let all = c.read_to_close();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("only-part"),
        "{text:?}"
    );
}

/// A body delimited by the backend's close, cut by the backend's reset: a
/// client reading until close (HTTP/1.0, `Connection: close`) gets a reset
/// too, never a clean end it would take for the whole body.
#[test]
fn a_close_delimited_body_cut_by_a_reset_ends_in_a_reset() {
    // The request is only peeked at, never read: closing a socket with
    // unread bytes sends a reset (RFC 2525 2.17), not a FIN.
    let be = Backend::raw(|mut s| {
        let mut first = [0u8; 1];
        if s.peek(&mut first).is_ok_and(|n| n == 1) {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nonly-part");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    for req in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        let mut c = lb.conn();
        c.send(req);
        let (got, end) = c.read_until_end(IO_TIMEOUT);
        assert!(
            String::from_utf8_lossy(&got).ends_with("only-part"),
            "{}",
            show(&got)
        );
        assert!(
            matches!(end, End::Reset(_)),
            "{}: a cut body ended {end}",
            String::from_utf8_lossy(req)
        );
    }
    assert!(lb.log_has("response body truncated"), "{}", lb.log_text());
}

#[test]
fn malformed_requests_get_a_status_and_never_reach_a_backend() {
    let be = Backend::named("a");
    let lb = Lb::start(&["-b", &be.addr()]);
    let cases: &[(&[u8], u16)] = &[
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        // RFC 9112 3.2: Host, exactly one, host[:port].
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: evil@good\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: x/y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET http://a/x HTTP/1.1\r\n\r\n", 400),
        (b"GET http://user@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ];
    for (raw, want) in cases {
        let mut c = lb.conn();
        c.send(raw);
        let r = c.read_response(false);
        assert_eq!(r.status(), *want, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("connection"), Some("close"));
        c.expect_closed_for(&String::from_utf8_lossy(raw));
    }
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 9000));
    long.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut c = lb.conn();
    c.send(&long);
    assert_eq!(c.read_response(false).status(), 414);
    c.expect_closed_for("after a 414");
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..300 {
        big.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let mut c = lb.conn();
    c.send(&big);
    assert_eq!(c.read_response(false).status(), 431);
    c.expect_closed_for("after a 431");
    assert_eq!(
        be.received().len(),
        0,
        "a rejected request reached the backend"
    );
    assert!(lb.log_has("rejected request"), "a log line per rejection");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let be = Backend::spawn(|m| ok(m.target()));
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    c.send(&batch);
    for i in 0..10 {
        assert_eq!(c.read_response(false).text(), format!("/{i}"));
    }
}

#[test]
fn a_backend_closing_its_pooled_connection_is_not_a_client_error() {
    // Each backend connection answers one request (kept alive, so the proxy
    // pools it), then closes without answering when the next request comes
    // on it: a backend's idle timeout firing just as the proxy reuses the
    // connection, a race the proxy loses here every time. So every request
    // after the first goes out on a pooled connection that turns out stale,
    // and must be retried on a fresh one without the client noticing.
    let met_stale = Arc::new(AtomicUsize::new(0));
    let seen = met_stale.clone();
    let be = Backend::raw(move |s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        if read_head(&mut r).is_none() {
            return;
        }
        let _ = w.write_all(&ok("once"));
        if read_head(&mut r).is_some() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        // Dropped: a close (FIN) with the request unanswered.
    });
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let mut c = lb.conn();
    const N: usize = 5;
    for i in 0..N {
        let r = c.get(&format!("/{i}"));
        assert_eq!(
            (r.status(), r.text()),
            (200, "once".to_string()),
            "request {i}"
        );
    }
    // Requests 2..N each reached the backend on the pooled connection
    // first (which then closed), then on a new one.
    assert_eq!(
        met_stale.load(Ordering::SeqCst),
        N - 1,
        "requests sent on a pooled connection that the backend then closed"
    );
    assert_eq!(be.connections.load(Ordering::SeqCst), N);
    let m = scrape(lb.port);
    assert_eq!(
        metric(&m, "lb_upstream_reuses_total"),
        Some(N as u64 - 1),
        "{m}"
    );
    assert_eq!(metric(&m, "lb_retries_total"), Some(N as u64 - 1), "{m}");
    let failures = format!("lb_backend_failures_total{{backend=\"{}\"}}", be.addr());
    assert_eq!(
        metric(&m, &failures),
        Some(0),
        "a stale pooled connection is not a backend failure:\n{m}"
    );
}

#[test]
fn raw_stream_close_from_client_mid_head_is_quiet() {
    let be = Backend::named("a");
    let lb = Lb::start(&["-b", &be.addr()]);
    {
        let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    }
    assert_eq!(get(lb.port, "/").text(), "a");
    assert_eq!(be.received().len(), 1);
}

#[test]
fn a_get_with_a_body_is_forwarded_framed_then_the_connection_closes() {
    let be = Backend::spawn(|m| ok(&format!("{} bytes", m.body.len())));
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.text(), "3 bytes");
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed();
}

#[test]
fn forwarding_headers_follow_their_configured_mode() {
    let be = Backend::named("a");
    let cfg = |fwd: &str| {
        let text = format!(
            r#"{{"backends":[{{"host":"127.0.0.1","port":{}}}],"forwarded":{{{fwd}}}}}"#,
            be.port
        );
        temp_file("fwd.json", &text)
    };
    let req = b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=10.9.9.9\r\n\r\n";
    let path = cfg(r#""x_forwarded_for":"append","x_forwarded_proto":"off","forwarded":"append""#);
    let lb = Lb::start(&["-c", path.to_str().unwrap()]);
    assert_eq!(lb.conn().roundtrip(req).status(), 200);
    let got = be.received().pop().unwrap();
    assert_eq!(got.header_all("x-forwarded-for"), ["10.9.9.9, 127.0.0.1"]);
    // Off: the proxy writes none, and the client's is not passed on either
    // (an identity header, not in trusted_client_headers).
    assert!(got.header_all("x-forwarded-proto").is_empty());
    assert_eq!(
        got.header_all("forwarded"),
        ["for=10.9.9.9, for=127.0.0.1;proto=http"]
    );
    drop(lb);
    let path = cfg(r#""x_forwarded_for":"off","forwarded":"replace""#);
    let lb = Lb::start(&["-c", path.to_str().unwrap()]);
    assert_eq!(lb.conn().roundtrip(req).status(), 200);
    let got = be.received().pop().unwrap();
    assert!(got.header_all("x-forwarded-for").is_empty());
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_all("forwarded"), ["for=127.0.0.1;proto=http"]);
}

#[test]
fn chunked_request_bodies_are_held_to_the_head_rules() {
    let be = Backend::named("a");
    let lb = Lb::start(&["-b", &be.addr()]);
    let head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut zeros = vec![b'0'; 5000];
    zeros.extend_from_slice(b"\r\n\r\n");
    let cases: &[(&[u8], u16)] = &[
        (b"5;a=b\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", 200),
        (b"0005\r\nhello\r\n0;z\r\n\r\n", 200),
        (b"5\r\nhello\r\n0\r\nfoo\r\n\r\n", 400),
        (b"5\r\nhello\r\n0\r\nA : b\r\n\r\n", 400),
        (b"5\r\nhello\r\n0\r\n\xbeA: b\r\n\r\n", 400),
        (b"5\r\nhello\r\n0\r\nA: b\r\n c\r\n\r\n", 400),
        (b"5;a \r\nhello\r\n0\r\n\r\n", 400),
        (&zeros, 400),
    ];
    for (body, want) in cases {
        let mut c = lb.conn();
        let r = c.roundtrip(&[&head[..], body].concat());
        assert_eq!(r.status(), *want, "{:?}", String::from_utf8_lossy(body));
        if *want == 400 {
            assert!(c.is_closed());
        }
    }
    assert!(lb.log_has("rejected request body"));
}

#[test]
fn bad_framing_from_a_backend_becomes_502_and_the_connection_is_not_reused() {
    let be = Backend::spawn(|m| {
        match m.target() {
        "/cl-te" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
        "/two-cl" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        "/bad-chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2x\r\nok\r\n0\r\n\r\n".to_vec(),
        _ => ok("fine"),
    }
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    for path in ["/cl-te", "/two-cl"] {
        let mut c = lb.conn();
        let r = c.get(path);
        assert_eq!(r.status(), 502, "{path}");
        c.expect_closed_for(&format!("{path}: client connection after a 502"));
    }
    // A body that goes bad after the head was sent: the client is cut off.
    let mut c = lb.conn();
    c.send(b"GET /bad-chunk HTTP/1.1\r\nHost: t\r\n\r\n");
    let all = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    assert!(!all.contains("0\r\n\r\n"), "{all:?}");
    // Each bad response cost its backend connection.
    let before = be.connections.load(Ordering::Relaxed);
    assert_eq!(get(lb.port, "/").text(), "fine");
    assert_eq!(be.connections.load(Ordering::Relaxed), before + 1);
    assert!(lb.log_has("invalid response"));
}

/// With request buffering off (`request_buffer_bytes: 0`) bodies stream and
/// `Expect: 100-continue` is the backend's to answer; with it on, the proxy
/// answers (tests/trust.rs).
#[test]
fn expect_100_continue_is_passed_through_when_bodies_stream() {
    let be = Backend::raw(|s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let Some((_, _, headers)) = read_head(&mut r) else {
            return;
        };
        assert!(headers
            .iter()
            .any(|(n, v)| n == "Expect" && v == "100-continue"));
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        let mut body = [0u8; 5];
        r.read_exact(&mut body).unwrap();
        w.write_all(&ok(std::str::from_utf8(&body).unwrap()))
            .unwrap();
    });
    let cfg = temp_file(
        "lb.json",
        &format!(
            r#"{{"backends":[{{"host":"127.0.0.1","port":{}}}],"request_buffer_bytes":0}}"#,
            be.port
        ),
    );
    let lb = Lb::start(&["-c", cfg.to_str().unwrap()]);
    let mut c = lb.conn();
    c.send(b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response(false);
    assert_eq!(interim.status(), 100);
    c.send(b"hello");
    let r = c.read_response(false);
    assert_eq!((r.status(), r.text().as_str()), (200, "hello"));
}

#[test]
fn upgrade_opens_a_tunnel_only_after_the_101() {
    let be = Backend::raw(|s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let Some((_, start, headers)) = read_head(&mut r) else {
            return;
        };
        assert_eq!(start[1], "/chat");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "Upgrade" && v == "websocket"),
            "{headers:?}"
        );
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "Connection" && v == "upgrade"),
            "{headers:?}"
        );
        // Nothing the client sent after its request may arrive before the
        // 101: not in what the reader buffered with the head, and not on
        // the socket (a read that times out; EOF or a reset is a failure).
        assert!(
            r.buffer().is_empty(),
            "bytes arrived before the 101: {:?}",
            String::from_utf8_lossy(r.buffer())
        );
        w.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut early = [0u8; 1];
        match r.get_mut().read(&mut early) {
            Err(e) if is_timeout(&e) => {}
            other => panic!("before the 101: expected silence, got {other:?}"),
        }
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n").unwrap();
        // Echo, byte for byte, until the client's close comes through (a
        // read timeout is not one: closing then would end the tunnel for
        // the load balancer).
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf) {
                Err(e) if is_timeout(&e) => {}
                Ok(0) | Err(_) => return,
                Ok(n) => w.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    c.send(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nEARLY",
    );
    let r = c.read_response(true);
    assert_eq!(r.status(), 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(r.header("connection"), Some("upgrade"));
    let mut got = [0u8; 5];
    c.r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"EARLY");
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    c.send(&payload);
    let mut back = vec![0u8; payload.len()];
    c.r.read_exact(&mut back).unwrap();
    assert!(back == payload, "tunnel changed bytes");
    shutdown_write(&c);
    c.expect_closed_for("the tunnel after both ends closed");
}

#[test]
fn failed_requests_are_retried_only_when_safe() {
    // Reads a request and hangs up without a word.
    let rude = Backend::raw(|s| {
        let mut r = std::io::BufReader::new(s);
        let _ = read_head(&mut r);
    });
    let good = Backend::spawn(|m| ok(m.method()));
    let lb = Lb::start(&["-b", &rude.addr(), "-b", &good.addr()]);
    // Round robin sends the first request of each pair to the rude backend.
    let r = get(lb.port, "/");
    assert_eq!(
        (r.status(), r.text().as_str()),
        (200, "GET"),
        "an idempotent request goes to the next backend"
    );
    let _ = get(lb.port, "/"); // lands on the good backend, realigning round robin
    let mut c = lb.conn();
    let r = c.roundtrip(b"POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(
        r.status(),
        502,
        "a POST that may have been processed is not sent again"
    );
    assert!(
        good.received().iter().all(|m| m.method() != "POST"),
        "the POST was retried"
    );
}

#[test]
fn bodies_over_max_body_bytes_get_413_before_reaching_a_backend() {
    let be = Backend::spawn(|m| ok(&m.body.len().to_string()));
    let cfg = format!(
        r#"{{"backends":[{{"host":"127.0.0.1","port":{}}}],"max_body_bytes":1000}}"#,
        be.port
    );
    let path = temp_file("limit.json", &cfg);
    let lb = Lb::start(&["-c", path.to_str().unwrap()]);
    let mut c = lb.conn();
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'x', 1000));
    assert_eq!(c.roundtrip(&req).text(), "1000");
    let r = c.roundtrip(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
    assert_eq!(r.status(), 413);
    c.expect_closed_for("after a 413 (Content-Length)");
    let mut c = lb.conn();
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"190\r\n");
        req.extend(std::iter::repeat_n(b'y', 400));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(c.roundtrip(&req).status(), 413);
    c.expect_closed_for("after a 413 (chunked)");
    assert_eq!(
        be.received().len(),
        1,
        "only the request within the limit reached the backend"
    );
}

#[test]
fn a_large_body_cut_short_by_the_backend_closes_the_client_connection() {
    // Large enough to take the splice path.
    const SIZE: usize = 4 << 20;
    let be = Backend::raw(|s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        if read_head(&mut r).is_some() {
            let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
            let _ = w.write_all(&vec![b'z'; SIZE / 2]);
        }
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let (_, start, _) = c.read_head();
    assert_eq!(start[1], "200");
    let got = c.read_to_close().len();
    assert_eq!(
        got,
        SIZE / 2,
        "the client saw the connection close after the bytes that came"
    );
}

#[test]
fn trace_dumps_bytes_to_and_from_backends_as_hexdump() {
    let be = Backend::named("traced");
    let lb = Lb::start(&["-b", &be.addr(), "-t"]);
    assert_eq!(get(lb.port, "/ip").text(), "traced");
    assert!(
        lb.log_has("info(trace): === REQUEST TO BACKEND ("),
        "{}",
        lb.log_text()
    );
    assert!(lb.log_has("info(trace): 00000000  47 45 54 20 2f 69 70 20  48 54 54 50 2f 31 2e 31  |GET /ip HTTP/1.1|"), "{}", lb.log_text());
    assert!(
        lb.log_has("info(trace): === RESPONSE FROM BACKEND ("),
        "{}",
        lb.log_text()
    );
}

#[test]
fn a_response_whose_first_body_bytes_are_bad_becomes_a_whole_502() {
    // Head and a bad chunk size in one write: nothing has gone to the client
    // yet, so it gets a 502 it can read, not a silent close.
    let be = Backend::raw(|s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        while let Some((_, start, _)) = read_head(&mut r) {
            let resp: &[u8] = if start.get(1).is_some_and(|t| t == "/late") {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n"
            };
            let _ = w.write_all(resp);
            if start.get(1).is_some_and(|t| t == "/late") {
                std::thread::sleep(Duration::from_millis(300));
                let _ = w.write_all(b"zz\r\nbad\r\n");
            }
        }
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    let r = c.get("/early");
    assert_eq!(r.status(), 502, "{}", String::from_utf8_lossy(&r.raw_head));
    assert!(r.text().contains("invalid response"), "{}", r.text());
    c.expect_closed_for("client connection after the 502");
    // Once part of the response is out, all that is left is to cut it short.
    let mut c = lb.conn();
    c.send(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
    let all = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all:?}");
    assert!(
        all.contains("first") && !all.contains("0\r\n\r\n"),
        "{all:?}"
    );
}

#[test]
fn a_large_close_delimited_body_is_rechunked_intact_for_a_slow_reader() {
    // 16 MiB without framing (more than loopback socket buffers absorb); the
    // client starts reading 0.5 s late, so the
    // proxy's writes to it go short and the re-chunking must resume exactly.
    const LEN: usize = 16 * 1024 * 1024;
    let body = pattern(LEN, 7);
    let sent = body.clone();
    let be = Backend::raw(move |s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        if read_head(&mut r).is_some() {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            for piece in sent.chunks(100_000) {
                if w.write_all(piece).is_err() {
                    return;
                }
            }
        }
    });
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(500));
    let (_, start, headers) = c.read_head();
    assert_eq!(start[1], "200");
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked"),
        "re-framed as chunked: {headers:?}"
    );
    let (got, sizes) = read_chunked_strictly(&mut c.r);
    assert_eq!(got.len(), LEN, "{} chunks", sizes.len());
    assert!(got == body, "body bytes differ");
    // The same connection is still usable: the re-chunked body ended
    // exactly with its last chunk.
    let again = c.get("/again");
    assert_eq!(again.status(), 200);
    assert!(again.body == body, "second body bytes differ");
}

#[test]
fn an_absolute_form_target_goes_upstream_in_origin_form_with_its_host() {
    let be = Backend::spawn(|_| ok("seen"));
    let lb = Lb::start(&["-b", &be.addr()]);
    let mut c = lb.conn();
    let r =
        c.roundtrip(b"GET http://example.com:8080/x?y=1 HTTP/1.1\r\nHost: other.example\r\n\r\n");
    assert_eq!(r.status(), 200);
    let got = be.received();
    let m = got.last().unwrap();
    assert_eq!(m.target(), "/x?y=1");
    assert_eq!(m.header_all("host"), ["example.com:8080"]);
    let r = c.roundtrip(b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(r.status(), 200);
    assert_eq!(be.received().last().unwrap().target(), "/");
}

#[test]
fn an_early_answer_to_an_upload_stands_when_the_backend_then_resets() {
    // A backend answers an upload it never reads (413) and closes: with the
    // body unread, the close is a reset, and the answer and the reset reach
    // the worker in one event. The answer is read; the next write of body
    // bytes then fails. The answer stands: the client gets the 413, not a
    // 502 made of a write to a backend that had already said no.
    let (tx, rx) = std::sync::mpsc::channel::<TcpStream>();
    let be = Backend::raw(move |s| {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        if read_head(&mut r).is_some() {
            let _ = tx.send(s);
        }
    });
    let lb = Lb::start(&["-w", "1", "-b", &be.addr()]);
    let worker = workers_of(lb.pid(), 1)[0].0;
    let mut c = lb.conn();
    let mut w = c.w.try_clone().unwrap();
    let uploader = std::thread::spawn(move || {
        let chunk = vec![b'u'; 64 * 1024];
        let head = format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            1024 * chunk.len()
        );
        if w.write_all(head.as_bytes()).is_ok() {
            // Until the buffers on the way are full and the worker waits
            // for the backend to take more; the write fails once it closes.
            for _ in 0..1024 {
                if w.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    });
    let mut s = rx.recv_timeout(IO_TIMEOUT).expect("the request head");
    std::thread::sleep(Duration::from_millis(500));
    // Answer and reset while the worker is stopped: one event when it runs.
    signal(worker, 19); // SIGSTOP
    s.write_all(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope",
    )
    .unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    signal(worker, 18); // SIGCONT
    let r = c.read_response(false);
    assert_eq!(
        (r.status(), r.text().as_str()),
        (413, "nope"),
        "{}",
        lb.log_text()
    );
    drop(c);
    uploader.join().unwrap();
}
