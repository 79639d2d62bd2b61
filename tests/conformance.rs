//! External HTTP/1.1 corpora (tests/conformance/): llhttp's parser tests
//! through the parser, on every SIMD level and the scalar twin.
//!
//! Rules (from tests/conformance/README.md): where llhttp rejects, this
//! parser must reject too; where llhttp parses, this parser parses the same
//! messages or rejects by a rule listed in `STRICTER` with its RFC 9112
//! reason; where llhttp needs more bytes or switches to a tunnel, this parser
//! says the same.
//! Lenient types (llhttp run with a relaxation flag) are informational.
//!
//! Most of llhttp's HTTP/1.1 requests carry no Host, which RFC 9112 3.2
//! requires and this parser refuses (400). Such a case counts as stricter,
//! and is then read on as if it had a Host, so that its framing and
//! messages are still held to llhttp's.

mod common;
use common::{corpus, unhex};
use lb::config::json::Json;
use lb::http::framing::{request_meta, response_meta};
use lb::http::simd::{self, Level};
use lb::http::{
    parse_request, parse_response, BodyMode, ChunkedDecoder, HeaderRef, ParseError, RequestHead,
    RequestMeta, Status,
};
use std::collections::BTreeMap;

#[derive(Debug, PartialEq, Clone)]
struct Msg {
    start: (String, String),
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Debug, PartialEq, Clone)]
enum End {
    Complete,
    Error(String),
    Incomplete,
    Upgrade,
}

/// Bytes as Latin-1 text, as llhttp's corpus records them.
fn text(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// The framing of a request head refused for want of a Host, read as if a
/// `Host: test` line followed its request line.
fn meta_with_host(
    buf: &[u8],
    h: &RequestHead,
    hdrs: &[HeaderRef],
) -> Result<RequestMeta, ParseError> {
    let line_end = if h.header_count > 0 {
        hdrs[0].line.start as usize
    } else {
        h.len - 2
    };
    let patched = [&buf[..line_end], b"Host: test\r\n", &buf[line_end..h.len]].concat();
    let mut hdrs = vec![HeaderRef::default(); 256];
    match parse_request(&patched, &mut hdrs)? {
        Status::Complete(h) => request_meta(&patched, &h, &hdrs),
        Status::Partial => unreachable!("a complete head with one more line"),
    }
}

/// Parses a whole input as this project would read a connection. The flag
/// says that a request was refused only for want of a Host, and read on.
fn run(input: &[u8], request: bool) -> (Vec<Msg>, End, bool) {
    let mut hdrs = vec![HeaderRef::default(); 256];
    let mut msgs = Vec::new();
    let mut pos = 0;
    let mut no_host = false;
    loop {
        if pos == input.len() {
            return (msgs, End::Complete, no_host);
        }
        let buf = &input[pos..];
        let (msg, head_len, body, persistent, upgrade) = if request {
            let h = match parse_request(buf, &mut hdrs) {
                Ok(Status::Complete(h)) => h,
                Ok(Status::Partial) => return (msgs, End::Incomplete, no_host),
                Err(e) => return (msgs, End::Error(e.to_string()), no_host),
            };
            let m = match request_meta(buf, &h, &hdrs) {
                Ok(m) => m,
                Err(ParseError::MissingHost) => {
                    no_host = true;
                    match meta_with_host(buf, &h, &hdrs) {
                        Ok(m) => m,
                        Err(e) => return (msgs, End::Error(e.to_string()), no_host),
                    }
                }
                Err(e) => return (msgs, End::Error(e.to_string()), no_host),
            };
            let headers: Vec<(String, String)> = hdrs[..h.header_count]
                .iter()
                .map(|x| (text(x.name.of(buf)), text(x.value.of(buf))))
                .collect();
            let has_upgrade = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("upgrade"));
            let msg = Msg {
                start: (text(h.method.of(buf)), text(h.target.of(buf))),
                version: format!("1.{}", h.minor),
                headers,
                body: Vec::new(),
            };
            (
                msg,
                h.len,
                m.body,
                m.conn.persistent(h.minor),
                m.is_connect || (m.conn.upgrade && has_upgrade),
            )
        } else {
            let h = match parse_response(buf, &mut hdrs) {
                Ok(Status::Complete(h)) => h,
                Ok(Status::Partial) => return (msgs, End::Incomplete, no_host),
                Err(e) => return (msgs, End::Error(e.to_string()), no_host),
            };
            let m = match response_meta(buf, &h, &hdrs, false) {
                Ok(m) => m,
                Err(e) => return (msgs, End::Error(e.to_string()), no_host),
            };
            let msg = Msg {
                start: (text(h.reason.of(buf)), String::new()),
                version: format!("1.{}", h.minor),
                headers: hdrs[..h.header_count]
                    .iter()
                    .map(|x| (text(x.name.of(buf)), text(x.value.of(buf))))
                    .collect(),
                body: Vec::new(),
            };
            (
                msg,
                h.len,
                m.body,
                m.conn.persistent(h.minor),
                h.status == 101,
            )
        };
        let mut msg = msg;
        pos += head_len;
        if upgrade {
            msgs.push(msg);
            return (msgs, End::Upgrade, no_host);
        }
        match body {
            BodyMode::None => {}
            BodyMode::ContentLength(n) => {
                let have = (input.len() - pos) as u64;
                if have < n {
                    msg.body = input[pos..].to_vec();
                    msgs.push(msg);
                    return (msgs, End::Incomplete, no_host);
                }
                msg.body = input[pos..pos + n as usize].to_vec();
                pos += n as usize;
            }
            BodyMode::Chunked => {
                let mut d = ChunkedDecoder::new();
                let rest = &input[pos..];
                let mut body = Vec::new();
                match d.feed_with(rest, |s, e| body.extend_from_slice(&rest[s..e])) {
                    Err(e) => return (msgs, End::Error(e.to_string()), no_host),
                    Ok(p) if !p.done => {
                        msg.body = body;
                        msgs.push(msg);
                        return (msgs, End::Incomplete, no_host);
                    }
                    Ok(p) => pos += p.consumed,
                }
                msg.body = body;
            }
            BodyMode::UntilClose => {
                msg.body = input[pos..].to_vec();
                msgs.push(msg);
                return (msgs, End::Incomplete, no_host);
            }
        }
        msgs.push(msg);
        if !persistent && pos < input.len() {
            return (
                msgs,
                End::Error("data after the connection closes".into()),
                no_host,
            );
        }
    }
}

fn expected_msgs(case: &Json, request: bool) -> Vec<Msg> {
    let Some(list) = case.get("messages").and_then(|m| m.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .map(|m| {
            let s = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let start = if request {
                (s("method"), s("url"))
            } else {
                (s("status"), String::new())
            };
            let headers = m
                .get("headers")
                .and_then(|h| h.as_array())
                .map(|hs| {
                    hs.iter()
                        .map(|p| {
                            let p = p.as_array().unwrap();
                            // RFC 9110 5.5: whitespace around a value is not part of it.
                            let v = p[1].as_str().unwrap().trim_matches([' ', '\t']);
                            (p[0].as_str().unwrap().to_string(), v.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            Msg {
                start,
                version: s("version"),
                headers,
                body: s("body").into_bytes(),
            }
        })
        .collect()
}

/// Cases where this parser rejects what llhttp accepts, with the reason.
/// The test fails if this list is not exactly the set of such cases.
const STRICTER: &[(&str, &str)] = &[
    ("request/method:375:request", NOT_HTTP),
    ("request/method:405:request", NOT_HTTP),
    ("request/method:433:request", NOT_HTTP),
    ("request/sample:317:request", HTTP09),
    ("request/transfer-encoding:754:request", CODING),
    ("request/transfer-encoding:796:request", CODING),
    ("request/uri:225:request", USERINFO),
    ("response/connection:495:response", EMPTY_LINE),
    ("response/connection:589:response", EMPTY_LINE),
    ("response/pipelining:7:response", EMPTY_LINE),
    ("response/sample:43:response", NOT_HTTP),
    ("response/sample:63:response", NOT_HTTP),
    ("response/sample:648:response", HTTP09),
    ("response/sample:698:response", EMPTY_LINE),
    ("response/transfer-encoding:46:response", CODING),
    ("response/transfer-encoding:77:response", CODING),
    ("response/transfer-encoding:115:response", CODING),
];

const NOT_HTTP: &str =
    "RFC 9112 2.3: only HTTP/1.0 and HTTP/1.1 are spoken here; RTSP and ICE are other protocols";
const HTTP09: &str = "RFC 9112 2.3 / appendix C.1: HTTP/0.9 messages are not supported";
const EMPTY_LINE: &str = "RFC 9112 2.2: empty lines may be skipped only before a request-line; a backend that sends them before a status line gets 502";
const USERINFO: &str = "RFC 9110 4.2.4: userinfo (`user:pass@`) in an http(s) target is treated as an error; the authority must be host[:port] as in Host (RFC 9112 3.2.2)";
const CODING: &str = "RFC 9112 6.1: chunked must be the only transfer coding; one the proxy does not understand gets 501 (request) or 502 (response)";

/// Cases where this parser reads different messages than the corpus
/// records, and is right to.
const DIFFERENT: &[(&str, &str)] = &[
    (
        "response/sample:199:response",
        "the single chunk holds one LF byte; the corpus records the body as empty, this parser returns the LF",
    ),
    (
        "request/transfer-encoding:189:request",
        "RFC 9110 6.5.1: trailer fields stay apart from the header section; they are validated and forwarded after the body, not listed as headers",
    ),
];

#[test]
fn llhttp_corpus_on_every_parser_path() {
    let cases = corpus("llhttp");
    let mut report = String::new();
    for level in simd::available() {
        simd::set_level(level);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut failures = Vec::new();
        let mut stricter = Vec::new();
        for case in &cases {
            let id = case.get("id").unwrap().as_str().unwrap();
            let ty = case.get("type").unwrap().as_str().unwrap();
            let outcome = case.get("outcome").unwrap().as_str().unwrap();
            let request = ty.starts_with("request");
            let input = unhex(case.get("raw_hex").unwrap().as_str().unwrap());
            let (msgs, end, no_host) = run(&input, request);
            let lenient = !(ty == "request" || ty == "response");
            if lenient {
                *counts.entry("lenient (informational)").or_default() += 1;
                continue;
            }
            let want = expected_msgs(case, request);
            let verdict = match (outcome, &end) {
                ("error", End::Error(_)) => "rejected, as llhttp",
                ("error", _) if no_host => {
                    failures.push(format!(
                        "{id}: llhttp rejects, we reject only for want of a Host and then gave {end:?}"
                    ));
                    "MORE LENIENT"
                }
                ("error", _) => {
                    failures.push(format!("{id}: llhttp rejects, we gave {end:?}"));
                    "MORE LENIENT"
                }
                (_, End::Error(e)) => {
                    stricter.push((id.to_string(), e.clone()));
                    "stricter (documented)"
                }
                // llhttp calls "complete" an input whose last message was only
                // begun (its corpus lists it); this parser says it needs more.
                ("complete", End::Complete | End::Incomplete)
                | ("incomplete", End::Incomplete)
                | ("upgrade", End::Upgrade) => {
                    let n = want.len().min(msgs.len());
                    let finished = if end == End::Complete {
                        n
                    } else {
                        n.saturating_sub(1)
                    };
                    let same = msgs[..n]
                        .iter()
                        .zip(&want[..n])
                        .enumerate()
                        .all(|(i, (a, b))| {
                            a.start == b.start
                                && a.version == b.version
                                && a.headers == b.headers
                                && (i >= finished || a.body == b.body)
                        })
                        && (end != End::Complete || msgs.len() == want.len())
                        && msgs.len() + 1 >= want.len();
                    // Refused for want of a Host exactly when one of the
                    // HTTP/1.1 requests it read has none.
                    let hostless = request
                        && msgs.iter().any(|m| {
                            m.version == "1.1"
                                && !m
                                    .headers
                                    .iter()
                                    .any(|(n, _)| n.eq_ignore_ascii_case("host"))
                        });
                    if no_host != hostless {
                        failures.push(format!(
                            "{id}: refused for want of a Host: {no_host}, an HTTP/1.1 message without Host: {hostless}"
                        ));
                    }
                    if same && no_host {
                        "stricter: no Host (RFC 9112 3.2), otherwise the same result"
                    } else if same {
                        "same result"
                    } else if DIFFERENT.iter().any(|(d, _)| *d == id) {
                        "different, documented"
                    } else {
                        failures.push(format!(
                            "{id}: messages differ:\n  ours   {msgs:?}\n  llhttp {want:?}"
                        ));
                        "DIFFERENT"
                    }
                }
                _ => {
                    failures.push(format!("{id}: llhttp says {outcome}, we say {end:?}"));
                    "DIFFERENT"
                }
            };
            *counts.entry(verdict).or_default() += 1;
        }
        report.push_str(&format!("{level:?}: {counts:?}\n"));
        let documented: Vec<&str> = STRICTER.iter().map(|(id, _)| *id).collect();
        for (id, why) in &stricter {
            if !documented.contains(&id.as_str()) {
                failures.push(format!("{id}: rejected ({why}) but not listed in STRICTER"));
            }
        }
        for id in documented {
            if !stricter.iter().any(|(s, _)| s == id) {
                failures.push(format!("{id}: listed in STRICTER but no longer rejected"));
            }
        }
        assert!(
            failures.is_empty(),
            "{level:?}: {} problems:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    simd::set_level(Level::Scalar);
    println!("llhttp corpus, {} cases:\n{report}", cases.len());
}
