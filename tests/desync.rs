//! AWS http-desync-guardian's smuggling cases (tests/conformance/)
//! through the running load balancer to a backend that records every byte
//! it receives.
//!
//! Rules (tests/conformance/README.md): Severe never reaches a backend (400,
//! or 501 for an unknown transfer coding, and the connection closed);
//! Ambiguous is rejected the same way or forwarded with exactly one framing
//! header; Compliant is forwarded, except where listed in
//! `COMPLIANT_REJECTED` with the reason; Acceptable may go either way.
//!
//! Nearly none of the corpus's HTTP/1.1 requests carries a Host, which RFC
//! 9112 3.2 requires (a server MUST answer 400 without one). So the corpus
//! runs twice. As recorded: every HTTP/1.1 case without Host must be refused
//! and nothing reach a backend (400, or the status of a framing error, which
//! is reported first); a Compliant case so refused counts apart (`NO_HOST`).
//! With a `Host: test` line added after the request line of each case that
//! has none: the tier rules hold the proxy's framing as the corpus intends.

mod common;
use common::*;
use lb::http::ParseError;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Compliant cases this proxy answers with an error instead, and why (with
/// or without a Host).
const COMPLIANT_REJECTED: &[(&str, &str)] = &[
    (
        "rfc-compliant:8",
        "501: transfer codings other than chunked are not implemented (RFC 9112 6.1 allows 501)",
    ),
    (
        "rfc-compliant:9",
        "501: transfer codings other than chunked are not implemented (RFC 9112 6.1 allows 501)",
    ),
    (
        "rfc-compliant:10",
        "501: codings with parameters are not ones this proxy implements (RFC 9112 6.1 allows 501)",
    ),
    (
        "more-compliant-tests:5",
        "501: gzip before chunked: codings other than chunked are not implemented (RFC 9112 6.1)",
    ),
    (
        "more-compliant-tests:7",
        "501: deflate, identity before chunked: not implemented (RFC 9112 6.1)",
    ),
    (
        "more-compliant-tests:8",
        "501: several codings over several headers: not implemented (RFC 9112 6.1)",
    ),
    (
        "more-compliant-tests:9",
        "501: chunked with parameters is not a coding this proxy implements (RFC 9112 6.1)",
    ),
    (
        "rfc-compliant:13",
        "400: `GET  HTTP/1.1` has an empty request-target, which RFC 9112 3.2 does not allow",
    ),
];

/// Why a Compliant case without Host is refused when sent as recorded.
const NO_HOST: &str =
    "rejected: 400, an HTTP/1.1 request without Host (RFC 9112 3.2: a server MUST answer 400)";

/// What happened to one case.
#[derive(Debug)]
struct Seen {
    /// Status line code the client got, if any.
    status: Option<u16>,
    /// The response body names the missing Host as the reason.
    for_no_host: bool,
    /// Bytes the backend received for this case.
    upstream: Vec<u8>,
}

/// The header lines of a raw head (after the request line, before the
/// empty line).
fn header_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    raw[..end].split(|&b| b == b'\n').skip(1)
}

fn has_host(raw: &[u8]) -> bool {
    header_lines(raw).any(|l| l.len() >= 5 && l[..5].eq_ignore_ascii_case(b"host:"))
}

/// An HTTP/1.1 request line (as far as a reader of its last word can tell).
fn is_http11(raw: &[u8]) -> bool {
    let line_end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    raw[..line_end].ends_with(b" HTTP/1.1")
}

/// `raw` with `Host: test` after its request line, unless it has a Host.
fn with_host(raw: &[u8]) -> Vec<u8> {
    if has_host(raw) {
        return raw.to_vec();
    }
    let at = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(raw.len(), |p| p + 2);
    [&raw[..at], b"Host: test\r\n", &raw[at..]].concat()
}

#[test]
fn desync_guardian_cases_through_the_proxy() {
    run_corpus(true);
}

#[test]
fn desync_guardian_cases_as_recorded() {
    run_corpus(false);
}

/// Sends every case (with a Host added when `add_host`) through a proxy to a
/// recording backend and holds the outcome to the tier rules.
fn run_corpus(add_host: bool) {
    // The recording backend: keeps every byte per connection, answers one
    // 200 as soon as it has a head.
    let log: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let be = Backend::raw(move |mut s| {
        let idx = {
            let mut l = sink.lock().unwrap();
            l.push(Vec::new());
            l.len() - 1
        };
        // Reads until the load balancer closes (or 30 s pass): giving up
        // sooner would close the connection for it, and the client side
        // would then see a close that the load balancer never made.
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let mut answered = false;
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Err(e) if is_timeout(&e) && Instant::now() < until => {}
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut l = sink.lock().unwrap();
                    l[idx].extend_from_slice(&buf[..n]);
                    if !answered && l[idx].windows(4).any(|w| w == b"\r\n\r\n") {
                        answered = true;
                        drop(l);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                }
            }
        }
    });
    // The corpus has heads only: a declared body never comes. Bodies are
    // streamed (request_buffer_bytes 0) so the backend sees what the framing
    // rules let through, which is what this test is about; with buffering,
    // such a request ends in a 400 before any backend (tests/operator.rs).
    let cfg = temp_file(
        "desync.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "request_buffer_bytes": 0}}"#,
            be.port
        ),
    );
    let lb = Lb::start(&["-c", cfg.to_str().unwrap()]);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for case in corpus("desync-guardian") {
        let id = case.get("id").unwrap().as_str().unwrap().to_string();
        let tier = case.get("tier").unwrap().as_str().unwrap().to_string();
        let recorded = unhex(case.get("raw_hex").unwrap().as_str().unwrap());
        let hostless_11 = is_http11(&recorded) && !has_host(&recorded);
        let raw = if add_host {
            with_host(&recorded)
        } else {
            recorded
        };
        let before = log.lock().unwrap().len();
        let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&raw).unwrap();
        // Heads only: no body follows, so end the request stream here.
        let _ = s.shutdown(Shutdown::Write);
        // Every case ends in a close: the client has finished sending.
        let (resp, end) = stream_until_end(&s, Duration::from_secs(10));
        if !end.closed() {
            problems.push(format!(
                "{id} ({tier}): connection {end} after the client finished; got {}",
                show(&resp)
            ));
        }
        let status = std::str::from_utf8(resp.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|t| t.parse().ok());
        // Give a forwarded request a moment to land at the backend.
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut upstream = Vec::new();
        while Instant::now() < deadline {
            let l = log.lock().unwrap();
            if l.len() > before {
                upstream = l[before..].concat();
                if upstream.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            } else if status.is_some_and(|c| c >= 400) {
                break; // rejected: nothing was connected
            }
            drop(l);
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = Seen {
            status,
            for_no_host: String::from_utf8_lossy(&resp)
                .contains(&ParseError::MissingHost.to_string()),
            upstream,
        };
        let rejected =
            matches!(seen.status, Some(400 | 501 | 505 | 414 | 431)) && seen.upstream.is_empty();
        let forwarded = !seen.upstream.is_empty();
        // Refused whatever its tier: 400 for the Host, or the status of a
        // framing error, which is reported first.
        if !add_host && hostless_11 && !rejected {
            problems.push(format!(
                "{id} ({tier}): HTTP/1.1 without Host not refused: {seen:?}"
            ));
        }
        let verdict = match tier.as_str() {
            "Severe" if rejected => "rejected",
            "Severe" => {
                problems.push(format!("{id} (Severe): {seen:?}"));
                "SEVERE FORWARDED"
            }
            "Ambiguous" if rejected => "rejected",
            "Ambiguous" if forwarded => {
                let head_end = seen
                    .upstream
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap()
                    + 4;
                let head = String::from_utf8_lossy(&seen.upstream[..head_end]).to_lowercase();
                let framing = head
                    .lines()
                    .filter(|l| {
                        l.starts_with("content-length:") || l.starts_with("transfer-encoding:")
                    })
                    .count();
                if framing > 1 {
                    problems.push(format!(
                        "{id} (Ambiguous): forwarded with {framing} framing headers"
                    ));
                }
                println!(
                    "  ambiguous, forwarded: {id}: {:?}",
                    String::from_utf8_lossy(&raw)
                );
                "forwarded, one framing header"
            }
            // Forwarded: the head reached the backend. (Cases that announce
            // a body get no response: the client ends the stream before it.)
            "Compliant" if forwarded => "forwarded",
            "Compliant" if COMPLIANT_REJECTED.iter().any(|(c, _)| *c == id) && rejected => {
                "rejected (documented)"
            }
            "Compliant" if !add_host && hostless_11 && rejected && seen.for_no_host => NO_HOST,
            "Compliant" => {
                problems.push(format!("{id} (Compliant): {seen:?}"));
                "COMPLIANT NOT FORWARDED"
            }
            "Acceptable" if rejected => "rejected",
            "Acceptable" if forwarded => "forwarded",
            _ => {
                problems.push(format!(
                    "{id} ({tier}): neither rejected nor forwarded: {seen:?}"
                ));
                "NEITHER"
            }
        };
        *counts.entry(format!("{tier}: {verdict}")).or_default() += 1;
    }
    println!(
        "desync-guardian cases, {}:",
        if add_host {
            "with a Host added"
        } else {
            "as recorded"
        }
    );
    for (k, v) in &counts {
        println!("  {k}: {v}");
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
