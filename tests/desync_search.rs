//! A differential search for request smuggling and response desync through
//! the running load balancer: generated traffic, a reference reader, and
//! in-test peers that record exactly what the proxy sends them.
//!
//! # What is generated
//!
//! **Requests** (`request_smuggling_search`): a seeded generator (splitmix64,
//! no crates) writes request streams from a grammar: methods GET, POST, PUT,
//! HEAD, OPTIONS, DELETE; HTTP/1.0 and 1.1; header order shuffled, names in
//! any case, OWS variants around values; `Connection` lines with any tokens
//! (close, keep-alive, upgrade, and header names: Content-Length,
//! Transfer-Encoding, Host, X-Forwarded-For, Forwarded, TE, random names),
//! in lists, in any case; Content-Length variants (leading zeros, lists,
//! duplicates, signs, garbage); Transfer-Encoding variants (chunked, Chunked,
//! ` chunked`, `chunked, chunked`, `gzip, chunked`, identity, two lines,
//! look-alike names, with a decoy Content-Length); `Expect: 100-continue`,
//! `Upgrade: websocket`, `TE: trailers`; chunked bodies with chunk extensions,
//! trailers and (rarely) broken chunk syntax; missing, doubled or invalid
//! Host. Every body carries a marked request line (`GET /SMUGGLED-<case>-<k>
//! HTTP/1.1 ...`), often unfinished (`...\r\nX: `) so that a backend reading
//! the body as a request would swallow the next one. A case is 1-3 client
//! connections, used one after the other, each with 1-4 requests written in
//! one go (pipelined). Each request's target is unique: `/r/<case>/<k>`.
//!
//! How the body of a generated request is laid out follows a reference
//! reader (RFC 9112, below): the body is where a correct reader of the head
//! looks for it, so a proxy that agrees with RFC 9112 never sees a marked
//! line as a request. The same reader gives each request its verdict:
//! `Forward(body)` (a correct reader gets exactly this body), `MustRefuse`
//! (RFC 9112 leaves no valid reading: forwarding it at all is a defect), or
//! `Unclear` (only a SHOULD/MAY applies: no verdict on the body).
//!
//! **Responses** (`response_desync_search`): a backend answers each GET with
//! a generated response: 200/201/404/500, 204, 304, a 1xx before the final
//! one, HTTP/1.0 or 1.1; Content-Length (variants as above), chunked, or
//! close-delimited; `Connection` naming Content-Length, Transfer-Encoding or
//! other headers; duplicated headers; bodies of 256-768 KiB (the proxy
//! splices those); extra bytes after the body (a second, marked response
//! `... X-Echo-Target: /SMUGGLED-...`); now and then a body cut short.
//!
//! The proxies run with one worker (`-w 1`, so pooled upstream connections
//! are reused across cases), probes a day apart and a high unhealthy
//! threshold (a bad response must not take the only backend out). Each
//! request case goes through one of two proxies, as its generator chose: one
//! that buffers request bodies (the default) and one that streams them
//! (`request_buffer_bytes: 0`). At the end each test prints cases run,
//! requests sent, rejections by status, counters of what happened (notes),
//! and the time and case of the first failure.
//!
//! # Invariants
//!
//! Requests, checked per case at the recording backend (a strict reader that
//! keeps connections alive, so pooled reuse is exercised) and at the client:
//! - (a) every request the backend parses is one the client sent (its
//!   target is one of the case's ids), in order, never twice, with the same
//!   method and, for a `Forward` verdict, the same body bytes (de-chunked);
//!   a `MustRefuse` request never arrives;
//! - (b) no `/SMUGGLED` target ever arrives at the backend;
//! - (c) every response the client reads belongs to its own request (the
//!   echoed target, in order); a rejection (4xx/5xx from the proxy) may end
//!   the connection, and requests after it may go unanswered; a response
//!   expected on an open connection that does not come within a few seconds
//!   is a failure ("no response");
//! - (d) the head the backend receives has at most one framing header, and
//!   exactly one (Content-Length: digits, or Transfer-Encoding: chunked) when
//!   the request has a body; responses to the client have at most one;
//! - (e) a forwarded HTTP/1.1 request has exactly one Host;
//! - (f) the backend can parse everything the proxy sends it, and after a
//!   case no open backend connection holds unparsed bytes (a half-delivered
//!   request left there would complete with the next one).
//!
//! Responses, checked by the client: every response it reads is framed
//! (Content-Length, chunked, or the connection closes after it); it carries
//! the status and exactly the body the backend sent for THAT request (or is
//! a 5xx made by the proxy; a response RFC 9112 gives no valid reading must
//! be a 5xx); no SMUGGLED marker is ever presented; a response cut short by
//! the backend is never presented as a whole one.
//!
//! # Seeds, replay, longer runs
//!
//! The issue's own vectors run first as fixed cases (`f0`, `f1`, ...): a POST
//! whose `Connection` names Content-Length (also lowercase, and after
//! keep-alive) with a body that is an unfinished `GET /SMUGGLED HTTP/1.1\r\nX: `,
//! followed by a normal request on the same or another connection; the same
//! with `Connection: Transfer-Encoding` and a chunked body, and with
//! `Connection: Host`; on the response side `Connection: Content-Length`
//! with `Content-Length: 5`, and a 300 KiB Content-Length body followed by
//! extra bytes. Then generated cases `0, 1, 2, ...`, each from its own
//! generator seeded by (seed, case number).
//!
//! Environment:
//! - `DESYNC_SEARCH_SEED=N` (decimal or 0x hex): another seed.
//! - `DESYNC_SEARCH_SECONDS=S`: time budget per direction (the two tests run
//!   in parallel), with no case cap. Without it: a fixed number of cases or
//!   a time cap, whichever comes first (`make test`).
//! - `DESYNC_SEARCH_CASE=17` (or `f2`): run that one case only (replay).
//! - `DESYNC_SEARCH_NO_FIXED=1`: skip the fixed cases.
//! - `DESYNC_SEARCH_MAX_FAILURES=N`: stop after N failing cases (default 3;
//!   the proxy and backend are restarted after each so one defect does not
//!   poison the cases after it).
//! - `LB_BIN=/path/to/load_balancer`: test another binary.
//!
//! A failure prints the case's exact bytes (escaped), what the backend and
//! client saw, and the command that replays it. `make fuzz` runs both
//! directions for `FUZZ_SECONDS`.

mod common;

use common::{is_timeout, temp_file, Backend, Lb, TempFile};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---- settings -------------------------------------------------------------

const DEFAULT_SEED: u64 = 0x5EED_DE5C_0000_0001;
/// Time cap per direction in `make test` (a case cap usually ends it first).
const DEFAULT_SECONDS: u64 = 20;
const DEFAULT_REQUEST_CASES: u64 = 8000;
const DEFAULT_RESPONSE_CASES: u64 = 1500;
/// How long the client waits for a response it is owed.
const READ_LIMIT: Duration = Duration::from_secs(3);
/// How long it waits for more after a rejection (the connection may close).
const AFTER_REJECTION_LIMIT: Duration = Duration::from_millis(1000);
/// How long an open backend connection may hold unparsed bytes after a case
/// (a proxy aborting a streamed request closes it, a moment later).
const LEFTOVER_LIMIT: Duration = Duration::from_millis(1000);

struct Settings {
    seed: u64,
    budget: Duration,
    max_cases: u64,
    /// Run only this case: `f<i>` (fixed) or a number.
    only: Option<String>,
    fixed: bool,
    max_failures: usize,
    bin: String,
    bin_from_env: bool,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

impl Settings {
    fn from_env(default_cases: u64) -> Settings {
        let seconds = env_u64("DESYNC_SEARCH_SECONDS");
        let bin = std::env::var("LB_BIN").ok().filter(|b| !b.is_empty());
        Settings {
            seed: env_u64("DESYNC_SEARCH_SEED").unwrap_or(DEFAULT_SEED),
            budget: Duration::from_secs(seconds.unwrap_or(DEFAULT_SECONDS)),
            max_cases: if seconds.is_some() {
                u64::MAX
            } else {
                default_cases
            },
            only: std::env::var("DESYNC_SEARCH_CASE")
                .ok()
                .filter(|c| !c.is_empty()),
            fixed: std::env::var("DESYNC_SEARCH_NO_FIXED")
                .map_or(true, |v| v.is_empty() || v == "0"),
            max_failures: env_u64("DESYNC_SEARCH_MAX_FAILURES").unwrap_or(3).max(1) as usize,
            bin_from_env: bin.is_some(),
            bin: bin.unwrap_or_else(|| common::LB.to_string()),
        }
    }

    /// The cases to run, in order: the fixed ones, then generated ones.
    fn schedule(&self, fixed: usize) -> Vec<CaseId> {
        if let Some(only) = &self.only {
            let id = match only.strip_prefix('f') {
                Some(i) => CaseId::Fixed(i.parse().expect("DESYNC_SEARCH_CASE=f<number>")),
                None => CaseId::Gen(only.parse().expect("DESYNC_SEARCH_CASE=<number>")),
            };
            return vec![id];
        }
        let mut ids: Vec<CaseId> = Vec::new();
        if self.fixed {
            ids.extend((0..fixed).map(CaseId::Fixed));
        }
        ids
    }

    fn replay(&self, test: &str, case: &str) -> String {
        let bin = if self.bin_from_env {
            format!("LB_BIN={} ", self.bin)
        } else {
            String::new()
        };
        format!(
            "{bin}DESYNC_SEARCH_SEED={:#x} DESYNC_SEARCH_CASE={case} cargo test --profile ci --test desync_search {test} -- --nocapture",
            self.seed
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum CaseId {
    Fixed(usize),
    Gen(u64),
}

impl CaseId {
    fn tag(self) -> String {
        match self {
            CaseId::Fixed(i) => format!("f{i}"),
            CaseId::Gen(n) => n.to_string(),
        }
    }
}

// ---- a small PRNG ---------------------------------------------------------

/// splitmix64: tiny, fast, and every seed gives a full-period stream.
struct Rng(u64);

impl Rng {
    /// The generator of one case: independent of every other case, so a
    /// case replays alone.
    fn for_case(seed: u64, case: u64, direction: u64) -> Rng {
        let mut r = Rng(seed ^ direction.wrapping_mul(0xA076_1D64_78BD_642F));
        r.0 ^= r
            .next()
            .wrapping_add(case.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
}

// ---- printing bytes -------------------------------------------------------

/// `b` escaped like a Rust byte string (`\r\n`, `\x00`), on one line.
fn esc(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

/// `esc`, cut after `max` bytes.
fn esc_cut(b: &[u8], max: usize) -> String {
    if b.len() <= max {
        esc(b)
    } else {
        format!("{}... ({} more bytes)", esc(&b[..max]), b.len() - max)
    }
}

/// `esc_cut`, broken after each `\n` for reading, indented.
fn esc_block(b: &[u8], max: usize) -> String {
    format!("    b\"{}\"", esc_cut(b, max).replace("\\n", "\\n\n      "))
}

// ---- the reference reader (RFC 9112) --------------------------------------
//
// One strict, incremental reader for both directions: the backends parse
// what the proxy sends with it, the clients parse the proxy's responses with
// it, and the generators ask it how a correct recipient reads what they
// wrote. It never allocates beyond the message and never panics on input.

const MAX_HEAD: usize = 64 * 1024;
const MAX_CHUNK_LINE: usize = 4096;

/// Why a message has no reading: `must` when RFC 9112 requires a recipient
/// to refuse it; otherwise only a SHOULD or a MAY applies.
#[derive(Clone, Debug)]
struct Refuse {
    why: String,
    must: bool,
}

fn must(why: impl Into<String>) -> Refuse {
    Refuse {
        why: why.into(),
        must: true,
    }
}

fn unclear(why: impl Into<String>) -> Refuse {
    Refuse {
        why: why.into(),
        must: false,
    }
}

enum Step<T> {
    /// The item and the bytes it took.
    Done(T, usize),
    More,
    Bad(Refuse),
}

#[derive(Clone, Debug, Default)]
struct Head {
    /// Request: method, target, version. Response: version, status, reason.
    start: Vec<String>,
    fields: Vec<(String, String)>,
    raw: Vec<u8>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.values(name).count()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The list elements of every `name` line, lowercased.
    fn tokens(&self, name: &str) -> Vec<String> {
        self.values(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim_matches([' ', '\t']).to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    fn minor(&self, request: bool) -> u8 {
        let v = if request {
            &self.start[2]
        } else {
            &self.start[0]
        };
        u8::from(v != "HTTP/1.0")
    }

    fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }

    fn target(&self) -> &str {
        &self.start[1]
    }
}

/// Whether the connection stays open after this message (RFC 9112 9.3).
fn persistent(h: &Head, request: bool) -> bool {
    let t = h.tokens("connection");
    !t.iter().any(|t| t == "close")
        && (h.minor(request) == 1 || t.iter().any(|t| t == "keep-alive"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses).
    Close,
}

#[derive(Clone, Debug)]
struct Msg {
    head: Head,
    framing: Framing,
    /// De-chunked.
    body: Vec<u8>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [f, rest @ ..] = s {
        if !is_ows(*f) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., l] = s {
        if !is_ows(*l) {
            break;
        }
        s = rest;
    }
    s
}

/// The CRLF-terminated line at `pos` (without the CRLF).
fn next_line(buf: &[u8], pos: usize, limit: usize) -> Step<&[u8]> {
    let rest = &buf[pos..];
    match rest.iter().position(|&b| b == b'\n') {
        None => {
            if let Some(cr) = rest.iter().position(|&b| b == b'\r') {
                if cr + 1 < rest.len() {
                    return Step::Bad(must("CR not followed by LF"));
                }
            }
            if rest.len() > limit {
                Step::Bad(must("line too long"))
            } else {
                Step::More
            }
        }
        Some(nl) if nl > limit => Step::Bad(must("line too long")),
        Some(nl) if nl == 0 || rest[nl - 1] != b'\r' => Step::Bad(unclear("bare LF")),
        Some(nl) => {
            let line = &rest[..nl - 1];
            if line.contains(&b'\r') {
                Step::Bad(must("CR not followed by LF"))
            } else {
                Step::Done(line, pos + nl + 1)
            }
        }
    }
}

fn parse_field(line: &[u8]) -> Result<(String, String), Refuse> {
    if line.first().is_some_and(|&b| is_ows(b)) {
        return Err(unclear("obs-fold (a field line starting with whitespace)"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| must("a field line without a colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(must(format!(
            "invalid field name {:?} (whitespace before the colon?)",
            esc(name)
        )));
    }
    let value = trim_ows(&line[colon + 1..]);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(must("a control character in a field value"));
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

fn request_line(l: &[u8]) -> Result<Vec<String>, Refuse> {
    let parts: Vec<&[u8]> = l.split(|&b| b == b' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(must("the request line is not METHOD SP TARGET SP VERSION"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(must("invalid method"));
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(must("invalid request-target"));
    }
    if *version != b"HTTP/1.1" && *version != b"HTTP/1.0" {
        return Err(unclear("not HTTP/1.0 or HTTP/1.1"));
    }
    Ok(parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

fn status_line(l: &[u8]) -> Result<Vec<String>, Refuse> {
    let mut parts = l.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default();
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(must("status line: not HTTP/1.0 or HTTP/1.1"));
    }
    if status.len() != 3 || !status.iter().all(u8::is_ascii_digit) {
        return Err(must("status line: no 3-digit status"));
    }
    if reason
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(must("status line: a control character in the reason"));
    }
    Ok([version, status, reason]
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

fn parse_head(buf: &[u8], request: bool) -> Step<Head> {
    let mut pos = 0;
    // RFC 9112 2.2: a server SHOULD ignore at least one empty line first.
    while request && pos < 16 && buf[pos..].starts_with(b"\r\n") {
        pos += 2;
    }
    let begin = pos;
    let mut lines = Vec::new();
    loop {
        match next_line(buf, pos, MAX_HEAD) {
            Step::Done(line, next) => {
                pos = next;
                if line.is_empty() {
                    break;
                }
                lines.push(line);
                if pos - begin > MAX_HEAD {
                    return Step::Bad(must("head too long"));
                }
            }
            Step::More if buf.len() - begin > MAX_HEAD => return Step::Bad(must("head too long")),
            Step::More => return Step::More,
            Step::Bad(r) => return Step::Bad(r),
        }
    }
    match build_head(&lines, request, &buf[begin..pos]) {
        Ok(h) => Step::Done(h, pos),
        Err(r) => Step::Bad(r),
    }
}

fn build_head(lines: &[&[u8]], request: bool, raw: &[u8]) -> Result<Head, Refuse> {
    let (first, fields) = lines.split_first().ok_or_else(|| must("an empty head"))?;
    let start = if request {
        request_line(first)?
    } else {
        status_line(first)?
    };
    let fields = fields
        .iter()
        .map(|l| parse_field(l))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Head {
        start,
        fields,
        raw: raw.to_vec(),
    })
}

/// How a correct recipient delimits the body (RFC 9112 6.1-6.3).
fn framing(h: &Head, request: bool, head_request: bool) -> Result<Framing, Refuse> {
    if !request {
        let s = h.status();
        if head_request || (100..200).contains(&s) || s == 204 || s == 304 {
            return Ok(Framing::None);
        }
    }
    if h.count("transfer-encoding") > 0 {
        let codings = h.tokens("transfer-encoding");
        if h.minor(request) == 0 {
            return Err(must(
                "Transfer-Encoding in HTTP/1.0 (faulty framing, RFC 9112 6.1)",
            ));
        }
        if codings.is_empty() {
            return Err(must("an empty Transfer-Encoding"));
        }
        if codings.last().map(String::as_str) != Some("chunked") {
            if request {
                return Err(must(
                    "chunked is not the final transfer coding (RFC 9112 6.3)",
                ));
            }
            return Ok(Framing::Close);
        }
        if codings.iter().filter(|c| *c == "chunked").count() > 1 {
            return Err(unclear("chunked applied twice"));
        }
        // With a Content-Length as well, Transfer-Encoding overrides it.
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for v in h.values("content-length") {
        for item in v.split(',') {
            let item = item.trim_matches([' ', '\t']);
            if item.is_empty() || item.len() > 18 || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(must(format!("invalid Content-Length {v:?}")));
            }
            let n: u64 = item.parse().unwrap();
            if length.is_some_and(|l| l != n) {
                return Err(must("Content-Lengths that differ"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        None if request => Framing::None,
        None => Framing::Close,
    })
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`
fn chunk_ext_ok(s: &[u8]) -> bool {
    let mut i = 0;
    let skip = |i: &mut usize| {
        while *i < s.len() && is_ows(s[*i]) {
            *i += 1;
        }
    };
    loop {
        let before = i;
        skip(&mut i);
        if i == s.len() {
            return i == before;
        }
        if s[i] != b';' {
            return false;
        }
        i += 1;
        skip(&mut i);
        let name = i;
        while i < s.len() && is_tchar(s[i]) {
            i += 1;
        }
        if i == name {
            return false;
        }
        let after_name = i;
        skip(&mut i);
        if i < s.len() && s[i] == b'=' {
            i += 1;
            skip(&mut i);
            if i < s.len() && s[i] == b'"' {
                i += 1;
                loop {
                    match s.get(i) {
                        None => return false,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if i + 1 < s.len() => i += 2,
                        Some(&b) if b == b'\t' || b >= 0x20 && b != 0x7f => i += 1,
                        Some(_) => return false,
                    }
                }
            } else {
                let v = i;
                while i < s.len() && is_tchar(s[i]) {
                    i += 1;
                }
                if i == v {
                    return false;
                }
            }
        } else {
            i = after_name;
        }
    }
}

/// A chunked body at the start of `buf`: the de-chunked bytes.
fn parse_chunked(buf: &[u8]) -> Step<Vec<u8>> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line = match next_line(buf, pos, MAX_CHUNK_LINE) {
            Step::Done(l, next) => {
                pos = next;
                l
            }
            Step::More => return Step::More,
            Step::Bad(r) => return Step::Bad(r),
        };
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 15 {
            return Step::Bad(must(format!("invalid chunk size line {:?}", esc(line))));
        }
        if !chunk_ext_ok(&line[digits..]) {
            return Step::Bad(must(format!("invalid chunk extension {:?}", esc(line))));
        }
        let size =
            usize::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap(), 16).unwrap();
        if size == 0 {
            // Trailer section.
            loop {
                match next_line(buf, pos, MAX_HEAD) {
                    Step::Done(l, next) => {
                        pos = next;
                        if l.is_empty() {
                            return Step::Done(body, pos);
                        }
                        if let Err(r) = parse_field(l) {
                            return Step::Bad(r);
                        }
                    }
                    Step::More => return Step::More,
                    Step::Bad(r) => return Step::Bad(r),
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Step::More;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Step::Bad(must("chunk data not followed by CRLF"));
        }
        pos += size + 2;
    }
}

/// One message at the start of `buf`; `eof` when no more bytes will come.
fn parse_message(buf: &[u8], request: bool, head_request: bool, eof: bool) -> Step<Msg> {
    let (head, n) = match parse_head(buf, request) {
        Step::Done(h, n) => (h, n),
        Step::More => return Step::More,
        Step::Bad(r) => return Step::Bad(r),
    };
    let framing = match framing(&head, request, head_request) {
        Ok(f) => f,
        Err(r) => return Step::Bad(r),
    };
    let (body, used) = match framing {
        Framing::None => (Vec::new(), n),
        Framing::Length(len) => {
            let len = len as usize;
            if buf.len() - n < len {
                return Step::More;
            }
            (buf[n..n + len].to_vec(), n + len)
        }
        Framing::Chunked => match parse_chunked(&buf[n..]) {
            Step::Done(b, m) => (b, n + m),
            Step::More => return Step::More,
            Step::Bad(r) => return Step::Bad(r),
        },
        Framing::Close if eof => (buf[n..].to_vec(), buf.len()),
        Framing::Close => return Step::More,
    };
    Step::Done(
        Msg {
            head,
            framing,
            body,
        },
        used,
    )
}

/// `uri-host [ ":" port ]` (RFC 9110 7.2); empty is allowed.
fn host_ok(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let (host, port) = if v.starts_with('[') {
        match v.find(']') {
            Some(i) => (&v[..=i], &v[i + 1..]),
            None => return false,
        }
    } else {
        match v.rfind(':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, ""),
        }
    };
    let port_ok = port.is_empty()
        || (port.starts_with(':')
            && port.len() <= 6
            && port[1..].bytes().all(|c| c.is_ascii_digit()));
    let host_ok = if host.starts_with('[') {
        host.len() > 2
            && host[1..host.len() - 1]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&c))
    };
    port_ok && host_ok
}

// ---- a client or backend connection ---------------------------------------

enum ReadEnd {
    /// EOF or a reset; the bytes of an incomplete message.
    Closed(Vec<u8>),
    /// Nothing complete within the limit; the connection is still open.
    Timeout(Vec<u8>),
    Bad(String, Vec<u8>),
}

struct Peer {
    s: TcpStream,
    buf: Vec<u8>,
    tmp: Vec<u8>,
    eof: bool,
}

impl Peer {
    fn new(s: TcpStream) -> Peer {
        Peer {
            s,
            buf: Vec::new(),
            tmp: vec![0; 64 * 1024],
            eof: false,
        }
    }

    fn connect(port: u16) -> Result<Peer, String> {
        let s = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("cannot connect to the load balancer (has it died?): {e}"))?;
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(READ_LIMIT)).unwrap();
        Ok(Peer::new(s))
    }

    /// Reads one response (the proxy's), within `limit`.
    fn read_response(&mut self, head_request: bool, limit: Duration) -> Result<Msg, ReadEnd> {
        let deadline = Instant::now() + limit;
        loop {
            match parse_message(&self.buf, false, head_request, self.eof) {
                Step::Done(m, used) => {
                    self.buf.drain(..used);
                    return Ok(m);
                }
                Step::Bad(r) => return Err(ReadEnd::Bad(r.why, self.buf.clone())),
                Step::More if self.eof => return Err(ReadEnd::Closed(self.buf.clone())),
                Step::More => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadEnd::Timeout(self.buf.clone()));
            }
            self.s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.s.read(&mut self.tmp) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&self.tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(ReadEnd::Timeout(self.buf.clone())),
                Err(_) => self.eof = true,
            }
        }
    }

    /// Reads more bytes (a backend waiting for requests); false at the end.
    fn fill(&mut self) -> bool {
        match self.s.read(&mut self.tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&self.tmp[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted || is_timeout(&e) => true,
            Err(_) => false,
        }
    }
}

/// Exactly one framing header on a message the proxy composed (d).
fn framing_headers_problem(h: &Head, has_body: bool) -> Option<String> {
    let cl: Vec<&str> = h.values("content-length").collect();
    let te: Vec<&str> = h.values("transfer-encoding").collect();
    match (cl.as_slice(), te.as_slice()) {
        ([], []) if has_body => Some("a body but no framing header".into()),
        ([], []) => None,
        ([v], []) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => None,
        ([], [v]) if v.eq_ignore_ascii_case("chunked") => None,
        _ => Some(format!(
            "framing headers Content-Length {cl:?}, Transfer-Encoding {te:?} (exactly one expected)"
        )),
    }
}

// ---- the search loop, shared by both directions ---------------------------

struct Search {
    test: &'static str,
    started: Instant,
    cases: u64,
    requests: u64,
    rejections: BTreeMap<u16, u64>,
    notes: BTreeMap<&'static str, u64>,
    failures: Vec<String>,
    first_failure: Option<(Duration, u64, String)>,
}

impl Search {
    fn new(test: &'static str) -> Search {
        Search {
            test,
            started: Instant::now(),
            cases: 0,
            requests: 0,
            rejections: BTreeMap::new(),
            notes: BTreeMap::new(),
            failures: Vec::new(),
            first_failure: None,
        }
    }

    fn note(&mut self, what: &'static str) {
        *self.notes.entry(what).or_default() += 1;
    }

    /// Runs the schedule: fixed cases first, then generated ones until the
    /// case cap, the time budget or the failure limit.
    fn run<C>(
        &mut self,
        s: &Settings,
        fixed: &[C],
        generate: impl Fn(u64) -> C,
        mut run_case: impl FnMut(&mut Search, &C) -> Result<(), Failure>,
        mut restart: impl FnMut(),
    ) {
        let schedule = s.schedule(fixed.len());
        let generated = s.only.is_none();
        let mut next_gen = 0u64;
        let mut i = 0;
        loop {
            let id = if i < schedule.len() {
                i += 1;
                schedule[i - 1]
            } else if generated && self.cases < s.max_cases && self.started.elapsed() < s.budget {
                next_gen += 1;
                CaseId::Gen(next_gen - 1)
            } else {
                break;
            };
            let generated_case;
            let case = match id {
                CaseId::Fixed(k) => fixed.get(k).unwrap_or_else(|| panic!("no fixed case f{k}")),
                CaseId::Gen(n) => {
                    generated_case = generate(n);
                    &generated_case
                }
            };
            self.cases += 1;
            if let Err(f) = run_case(self, case) {
                let tag = id.tag();
                if self.first_failure.is_none() {
                    self.first_failure = Some((self.started.elapsed(), self.cases, tag.clone()));
                }
                let mut text = format!(
                    "=== {} FAILED: case {tag} (seed {:#x}), {:.1?} into the run\n",
                    self.test,
                    s.seed,
                    self.started.elapsed()
                );
                for v in &f.violations {
                    text.push_str(&format!("  violation: {v}\n"));
                }
                text.push_str(&f.dump);
                text.push_str(&format!("  replay: {}\n", s.replay(self.test, &tag)));
                eprintln!("{text}");
                self.failures.push(text);
                if self.failures.len() >= s.max_failures {
                    break;
                }
                // A fresh proxy and backend: one defect must not fail every
                // case after it through a poisoned pool.
                restart();
            }
        }
    }

    fn summary(&self, s: &Settings) -> String {
        let mut t = format!(
            "{}: {} cases, {} requests in {:.1?} (seed {:#x}, binary {})\n",
            self.test,
            self.cases,
            self.requests,
            self.started.elapsed(),
            s.seed,
            s.bin
        );
        t.push_str(&format!("  rejections by status: {:?}\n", self.rejections));
        for (k, v) in &self.notes {
            t.push_str(&format!("  {k}: {v}\n"));
        }
        match &self.first_failure {
            Some((at, cases, tag)) => t.push_str(&format!(
                "  first failure after {at:.1?}, at case {tag} ({cases} cases run); {} failing cases\n",
                self.failures.len()
            )),
            None => t.push_str("  no failure\n"),
        }
        t
    }

    fn finish(self, s: &Settings) {
        let summary = self.summary(s);
        println!("{summary}");
        // The full reports went to stderr as they were found; here only
        // their first lines (case, violations, replay).
        let short: Vec<String> = self
            .failures
            .iter()
            .map(|f| {
                f.lines()
                    .filter(|l| {
                        l.starts_with("===")
                            || l.starts_with("  violation")
                            || l.starts_with("  replay")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        assert!(
            self.failures.is_empty(),
            "{summary}(the case bytes of each failure are printed above)\n{}",
            short.join("\n")
        );
    }
}

struct Failure {
    violations: Vec<String>,
    dump: String,
}

fn start_lb(bin: &str, backend_port: u16, extra: &str) -> (Lb, TempFile) {
    let cfg = temp_file(
        "desync_search.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {backend_port}}}], "probe_interval_ms": 86400000, "unhealthy_threshold": 1000{extra}}}"#
        ),
    );
    let lb = Lb::start_bin(bin, &["-c", cfg.to_str().unwrap(), "-w", "1"]);
    (lb, cfg)
}

// ---- request direction: generation ----------------------------------------

#[derive(Clone, Debug)]
enum Verdict {
    /// A correct reader forwards exactly this body.
    Forward(Vec<u8>),
    /// No valid reading: must never reach a backend.
    MustRefuse(String),
    /// Only a SHOULD/MAY applies: no check on the body.
    Unclear(String),
}

#[derive(Clone, Debug)]
struct ReqPlan {
    id: String,
    method: String,
    head_request: bool,
    minor: u8,
    bytes: Vec<u8>,
    verdict: Verdict,
}

#[derive(Clone, Debug)]
struct ReqCase {
    tag: String,
    /// Through the proxy that buffers request bodies (else the one that
    /// streams them: `request_buffer_bytes` 0).
    buffered: bool,
    /// Client connections, used one after the other; each one's requests
    /// are written in one go.
    conns: Vec<Vec<ReqPlan>>,
}

/// The reference reading of one request's bytes.
fn reference_verdict(bytes: &[u8]) -> Verdict {
    match parse_message(bytes, true, false, false) {
        Step::Done(m, used) if used == bytes.len() => {
            let hosts: Vec<&str> = m.head.values("host").collect();
            match hosts.as_slice() {
                [] if m.head.minor(true) == 1 => {
                    Verdict::MustRefuse("HTTP/1.1 without Host".into())
                }
                [_, _, ..] => Verdict::MustRefuse("more than one Host".into()),
                [h] if !host_ok(h) => Verdict::MustRefuse(format!("invalid Host {h:?}")),
                _ => Verdict::Forward(m.body),
            }
        }
        Step::Done(_, used) => Verdict::Unclear(format!(
            "the reference reads {used} of its {} bytes",
            bytes.len()
        )),
        Step::More => Verdict::Unclear("the reference reads it as incomplete".into()),
        Step::Bad(r) if r.must => Verdict::MustRefuse(r.why),
        Step::Bad(r) => Verdict::Unclear(r.why),
    }
}

/// A plan for `bytes` (one request), its verdict from the reference.
fn plan(id: &str, bytes: Vec<u8>) -> ReqPlan {
    let line_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let line = String::from_utf8_lossy(&bytes[..line_end]).into_owned();
    let method = line.split(' ').next().unwrap_or_default().to_string();
    ReqPlan {
        id: id.to_string(),
        head_request: method == "HEAD",
        minor: u8::from(!line.ends_with("HTTP/1.0")),
        method,
        verdict: reference_verdict(&bytes),
        bytes,
    }
}

fn vary_case(rng: &mut Rng, name: &str) -> String {
    match rng.below(6) {
        0 => name.to_ascii_lowercase(),
        1 => name.to_ascii_uppercase(),
        2 => name
            .chars()
            .map(|c| {
                if rng.chance(50) {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect(),
        _ => name.to_string(),
    }
}

fn ows(rng: &mut Rng) -> &'static str {
    rng.pick::<&str>(&["", " ", " ", "\t", "  ", " \t"])
}

/// `Name: value` with OWS variants around the value (no CRLF).
fn field(rng: &mut Rng, name: &str, value: &str) -> String {
    if rng.chance(65) {
        return format!("{name}: {value}");
    }
    let (a, b) = (ows(rng), ows(rng));
    format!("{name}:{a}{value}{b}")
}

fn filler(rng: &mut Rng, n: usize) -> Vec<u8> {
    match rng.below(3) {
        0 => {
            const TEXT: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789&=_-";
            (0..n).map(|_| *rng.pick(TEXT)).collect()
        }
        1 => (0..n).map(|_| rng.next() as u8).collect(),
        _ => b"a=1&b=2&".iter().copied().cycle().take(n).collect(),
    }
}

/// A body carrying a marked request line, sometimes unfinished (so that a
/// backend reading it as a request swallows the next request's line).
fn smuggling_payload(rng: &mut Rng, tag: &str, k: usize) -> Vec<u8> {
    let name = format!("/SMUGGLED-{tag}-{k}");
    let (marked, finished) = match rng.below(6) {
        0..=1 => (format!("GET {name} HTTP/1.1\r\nX: "), false),
        2 => (format!("GET {name} HTTP/1.1\r\nHost: x\r\n\r\n"), true),
        3 => (
            format!("0\r\n\r\nGET {name} HTTP/1.1\r\nHost: x\r\n\r\n"),
            true,
        ),
        4 => (format!("GET {name} HTTP/1.1\r\nHost: x\r\nX: "), false),
        _ => (
            format!("POST {name} HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"),
            true,
        ),
    };
    let mut p = Vec::new();
    if rng.chance(4) {
        let n = rng.range(20_000, 100_000);
        p = filler(rng, n);
    } else if rng.chance(35) {
        let n = rng.range(1, 60);
        p = filler(rng, n);
    }
    p.extend_from_slice(marked.as_bytes());
    if finished && rng.chance(25) {
        let n = rng.range(1, 40);
        p.extend(filler(rng, n));
    }
    p
}

/// Content-Length line(s) for a body of `n` bytes, now and then invalid.
fn content_length_lines(rng: &mut Rng, n: usize) -> Vec<String> {
    let name = vary_case(rng, "Content-Length");
    let value = match rng.below(40) {
        0 => format!("0{n}"),
        1 => format!("00{n}"),
        2 => format!("{n}, {n}"),
        3 => format!("{n},{n}"),
        4 => format!("+{n}"),
        5 => format!("{n} {n}"),
        6 => format!("{n}, {}", n + 1),
        7 => format!("-{n}"),
        8 => format!("0x{n:x}"),
        9 => format!("{n}a"),
        10 => "99999999999999999999999".into(),
        _ => n.to_string(),
    };
    let mut lines = vec![field(rng, &name, &value)];
    match rng.below(40) {
        0 => lines.push(format!("{name}: {n}")),
        1 => lines.push(format!("{name}: {}", n + 2)),
        2 => lines[0] = format!("{name} : {value}"),
        3 => lines[0] = format!("Content_Length: {value}"),
        _ => {}
    }
    lines
}

/// Transfer-Encoding line(s), now and then not a usable one.
fn transfer_encoding_lines(rng: &mut Rng) -> Vec<String> {
    let name = vary_case(rng, "Transfer-Encoding");
    let value = match rng.below(30) {
        0 => "Chunked",
        1 => "CHUNKED",
        2 => " chunked",
        3 => "gzip, chunked",
        4 => "chunked, chunked",
        5 => "identity",
        6 => "chunked, identity",
        7 => "xchunked",
        8 => "chunked;q=1",
        9 => "identity, chunked",
        10 => "chunked , gzip",
        _ => "chunked",
    };
    let mut lines = vec![field(rng, &name, value)];
    match rng.below(30) {
        0 => lines.push(format!("{name}: chunked")),
        1 => lines.push(format!("{name}: identity")),
        2 => lines.insert(0, format!("{name}: gzip")),
        3 => lines[0] = format!("{name} : {value}"),
        4 => lines[0] = format!("Transfer_Encoding: {value}"),
        5 => lines[0] = format!("Transfer-Encoding:\x0b{value}"),
        _ => {}
    }
    lines
}

/// `p` chunked: 1-4 chunks, size case and zeros, extensions, trailers,
/// and (rarely) broken chunk syntax.
fn chunked(rng: &mut Rng, p: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = p;
    let mut pieces = rng.range(1, 4);
    let broken = if rng.chance(6) { rng.range(1, 6) } else { 0 };
    let ext = |rng: &mut Rng| -> &'static str {
        if rng.chance(15) {
            rng.pick::<&str>(&[
                ";a=b",
                ";foo",
                ";q=\"x y\"",
                " ;a=1",
                "; a = 1",
                ";n=\"\\\"\"",
            ])
        } else {
            ""
        }
    };
    while !rest.is_empty() {
        let take = if pieces <= 1 {
            rest.len()
        } else {
            rng.range(1, rest.len())
        };
        pieces = pieces.saturating_sub(1);
        let size = match rng.below(10) {
            0 => format!("{take:X}"),
            1 => format!("00{take:x}"),
            _ => format!("{take:x}"),
        };
        let e = ext(rng);
        match broken {
            1 => out.extend_from_slice(format!("0x{size}\r\n").as_bytes()),
            2 => out.extend_from_slice(format!("{size}\n").as_bytes()),
            3 => out.extend_from_slice(format!("{size} \r\n").as_bytes()),
            _ => out.extend_from_slice(format!("{size}{e}\r\n").as_bytes()),
        }
        out.extend_from_slice(&rest[..take]);
        if broken == 4 {
            out.push(b'x');
        }
        out.extend_from_slice(b"\r\n");
        rest = &rest[take..];
    }
    let last = if rng.chance(10) { "000" } else { "0" };
    let e = ext(rng);
    out.extend_from_slice(format!("{last}{e}\r\n").as_bytes());
    if rng.chance(15) {
        out.extend_from_slice(b"X-Trailer: 1\r\n");
        if rng.chance(30) {
            out.extend_from_slice(b"Expires: 0\r\n");
        }
    }
    if broken == 5 {
        out.extend_from_slice(b"X-Folded: a\r\n b\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

const CONNECTION_TOKENS: &[&str] = &[
    "close",
    "keep-alive",
    "upgrade",
    "Content-Length",
    "Transfer-Encoding",
    "Host",
    "X-Forwarded-For",
    "Forwarded",
    "TE",
    "Expect",
    "Upgrade",
    "Keep-Alive",
    "X-Rnd-1",
    "Trailer",
    "X-Real-IP",
];

/// One or two `Connection` lines with 1-3 tokens each.
fn connection_lines(rng: &mut Rng, pool: &[&str]) -> Vec<String> {
    let n = if rng.chance(85) { 1 } else { 2 };
    (0..n)
        .map(|_| {
            let k = rng.range(1, 3);
            let tokens: Vec<String> = (0..k)
                .map(|_| {
                    let t = *rng.pick(pool);
                    vary_case(rng, t)
                })
                .collect();
            let sep = *rng.pick(&[", ", ",", " , ", ", ,"]);
            let name = vary_case(rng, "Connection");
            field(rng, &name, &tokens.join(sep))
        })
        .collect()
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"];

/// One generated request, its body laid out where the reference reader of
/// its head looks for it.
fn gen_request(rng: &mut Rng, tag: &str, k: usize) -> ReqPlan {
    let method = *rng.pick(METHODS);
    let minor = if rng.chance(12) { 0 } else { 1 };
    let id = format!("/r/{tag}/{k}");
    let with_body = match method {
        "POST" | "PUT" => rng.chance(85),
        _ => rng.chance(25),
    };
    let payload = if with_body {
        smuggling_payload(rng, tag, k)
    } else {
        Vec::new()
    };
    #[derive(PartialEq)]
    enum Intent {
        NoBody,
        Length,
        Chunked,
    }
    let intent = match (with_body, rng.below(100)) {
        (false, 0..=9) => Intent::Length,
        (false, 10..=14) => Intent::Chunked,
        (false, _) => Intent::NoBody,
        (true, 0..=54) => Intent::Length,
        (true, _) => Intent::Chunked,
    };
    let mut lines: Vec<String> = Vec::new();
    let host_name = vary_case(rng, "Host");
    match rng.below(100) {
        0..=2 => {}
        3..=4 => {
            lines.push(field(rng, &host_name, "x"));
            lines.push(field(rng, &host_name, "y"));
        }
        5..=6 => {
            let bad = *rng.pick(&["a b", "x/y", "x:8o", "a@b"]);
            lines.push(field(rng, &host_name, bad));
        }
        _ => {
            let h = *rng.pick(&[
                "x",
                "x",
                "x:80",
                "127.0.0.1:8080",
                "[::1]:80",
                "Example.COM",
            ]);
            lines.push(field(rng, &host_name, h));
        }
    }
    match intent {
        Intent::Length => lines.extend(content_length_lines(rng, payload.len())),
        Intent::Chunked => {
            lines.extend(transfer_encoding_lines(rng));
            if rng.chance(8) {
                let n = if rng.chance(50) {
                    payload.len()
                } else {
                    rng.range(0, 9)
                };
                lines.push(format!("Content-Length: {n}"));
            }
        }
        Intent::NoBody => {}
    }
    if rng.chance(40) {
        lines.extend(connection_lines(rng, CONNECTION_TOKENS));
    }
    if with_body && rng.chance(12) {
        let name = vary_case(rng, "Expect");
        lines.push(field(rng, &name, "100-continue"));
    }
    if rng.chance(8) {
        lines.push("Upgrade: websocket".into());
        if rng.chance(60) {
            lines.push("Connection: Upgrade".into());
        }
    }
    if rng.chance(8) {
        lines.push("TE: trailers".into());
    }
    if rng.chance(6) {
        lines.push("Keep-Alive: timeout=5".into());
    }
    if rng.chance(8) {
        lines.push("X-Forwarded-For: 203.0.113.7".into());
    }
    if rng.chance(5) {
        lines.push("Forwarded: for=203.0.113.7".into());
    }
    if rng.chance(25) {
        lines.push("X-Rnd-1: v".into());
    }
    if rng.chance(15) {
        lines.push("User-Agent: desync-search".into());
    }
    rng.shuffle(&mut lines);
    let mut bytes = format!("{method} {id} HTTP/1.{minor}\r\n").into_bytes();
    for l in &lines {
        bytes.extend_from_slice(l.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    // Lay the body out as the reference reads the head; where it has no
    // reading, as the generator meant it.
    let reading = match parse_head(&bytes, true) {
        Step::Done(h, _) => framing(&h, true, false),
        Step::Bad(r) => Err(r),
        Step::More => Err(unclear("incomplete head")),
    };
    let body = match (reading, &intent) {
        (Ok(Framing::None | Framing::Close), _) => Vec::new(),
        (Ok(Framing::Length(n)), _) => {
            let mut p = payload;
            p.resize(n as usize, b'z');
            p
        }
        (Ok(Framing::Chunked), _) | (Err(_), Intent::Chunked) => chunked(rng, &payload),
        (Err(_), _) => payload,
    };
    bytes.extend_from_slice(&body);
    plan(&id, bytes)
}

fn gen_request_case(seed: u64, n: u64) -> ReqCase {
    let mut rng = Rng::for_case(seed, n, 1);
    let tag = n.to_string();
    let buffered = rng.chance(50);
    let mut k = 0;
    let conns = (0..rng.range(1, 3))
        .map(|_| {
            (0..rng.range(1, 4))
                .map(|_| {
                    k += 1;
                    gen_request(&mut rng, &tag, k - 1)
                })
                .collect()
        })
        .collect();
    ReqCase {
        tag,
        buffered,
        conns,
    }
}

/// The issue's request vectors, by number: client connections of raw
/// requests, with `id(k)` the target of the k-th request.
fn fixed_request_shape(i: usize, id: &dyn Fn(usize) -> String) -> Option<Vec<Vec<String>>> {
    const UNFINISHED: &str = "GET /SMUGGLED HTTP/1.1\r\nX: ";
    let n = UNFINISHED.len();
    let post = |k: usize, connection: &str| {
        format!(
            "POST {} HTTP/1.1\r\nHost: x\r\n{connection}\r\nContent-Length: {n}\r\n\r\n{UNFINISHED}",
            id(k)
        )
    };
    let get = |k: usize| format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", id(k));
    Some(match i {
        // The follower pipelined on the same connection.
        0 => vec![vec![post(0, "Connection: Content-Length"), get(1)]],
        // Lowercase; the follower on another connection (a pooled upstream).
        1 => vec![
            vec![format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nconnection: content-length\r\ncontent-length: {n}\r\n\r\n{UNFINISHED}",
                id(0)
            )],
            vec![get(1)],
        ],
        2 => vec![
            vec![post(0, "Connection: keep-alive, Content-Length"), get(1)],
            vec![get(2)],
        ],
        3 => vec![
            vec![
                format!(
                    "POST {} HTTP/1.1\r\nHost: x\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{UNFINISHED}\r\n0\r\n\r\n",
                    id(0)
                ),
                get(1),
            ],
            vec![get(2)],
        ],
        4 => vec![vec![post(0, "Connection: Host"), get(1)], vec![get(2)]],
        _ => return None,
    })
}

/// The issue's vectors, each through both proxies (buffered, streamed).
fn fixed_request_cases() -> Vec<ReqCase> {
    let mut cases = Vec::new();
    for i in 0.. {
        for buffered in [true, false] {
            let tag = format!("f{}", cases.len());
            let id = |k: usize| format!("/r/{tag}/{k}");
            let Some(raw) = fixed_request_shape(i, &id) else {
                return cases;
            };
            let mut k = 0;
            let conns = raw
                .into_iter()
                .map(|c| {
                    c.into_iter()
                        .map(|r| {
                            k += 1;
                            plan(&id(k - 1), r.into_bytes())
                        })
                        .collect()
                })
                .collect();
            cases.push(ReqCase {
                tag,
                buffered,
                conns,
            });
        }
    }
    cases
}

// ---- request direction: the recording backend -----------------------------

#[derive(Clone, Debug)]
enum BackendEvent {
    Request {
        conn: usize,
        msg: Msg,
    },
    Unparsable {
        conn: usize,
        why: String,
        bytes: Vec<u8>,
    },
}

#[derive(Default)]
struct BackendState {
    events: Vec<BackendEvent>,
    /// Per connection: open, and the bytes received but not yet parsed.
    conns: Vec<(bool, Vec<u8>)>,
    /// Connections that may be open (indexes into `conns`).
    open: Vec<usize>,
}

/// A backend that parses what the proxy sends strictly (the reference
/// reader), records every request and answers each with its target.
struct RecordingBackend {
    state: Arc<Mutex<BackendState>>,
    be: Backend,
}

impl RecordingBackend {
    fn start() -> RecordingBackend {
        let state = Arc::new(Mutex::new(BackendState::default()));
        let st = state.clone();
        let be = Backend::raw(move |s| serve_recording(s, &st));
        RecordingBackend { state, be }
    }

    /// Every event since the last call (a long run keeps no history).
    fn take_events(&self) -> Vec<BackendEvent> {
        std::mem::take(&mut self.state.lock().unwrap().events)
    }

    /// An open connection still holding unparsed bytes after `limit`.
    fn leftover(&self, limit: Duration) -> Option<(usize, Vec<u8>)> {
        let deadline = Instant::now() + limit;
        loop {
            let found = {
                let mut g = self.state.lock().unwrap();
                let st = &mut *g;
                st.open.retain(|&c| st.conns[c].0);
                st.open
                    .iter()
                    .find(|&&c| !st.conns[c].1.is_empty())
                    .map(|&c| (c, st.conns[c].1.clone()))
            };
            match found {
                None => return None,
                Some(f) if Instant::now() >= deadline => return Some(f),
                Some(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// The proxy's own health probe (a day apart here, but one may come at
/// start): answered, never recorded.
fn is_probe(h: &Head) -> bool {
    h.get("user-agent") == Some("load_balancer-probe")
}

/// The answer to `h`: 200, `X-Echo-Target`, the target as the body.
fn echo_response(h: &Head, close: bool) -> Vec<u8> {
    let t = h.target();
    let connection = if close {
        "Connection: close\r\n"
    } else if h.minor(true) == 0 {
        "Connection: keep-alive\r\n"
    } else {
        ""
    };
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nX-Echo-Target: {t}\r\nContent-Length: {}\r\n{connection}\r\n",
        t.len()
    )
    .into_bytes();
    if h.start[0] != "HEAD" {
        r.extend_from_slice(t.as_bytes());
    }
    r
}

fn serve_recording(s: TcpStream, st: &Mutex<BackendState>) {
    let conn = {
        let mut g = st.lock().unwrap();
        g.conns.push((true, Vec::new()));
        let c = g.conns.len() - 1;
        g.open.push(c);
        c
    };
    let mut w = s.try_clone().unwrap();
    let mut peer = Peer::new(s);
    // Sent `100 Continue` for the request at the start of the buffer.
    let mut continued = false;
    let deadline = Instant::now() + Duration::from_secs(3600);
    'conn: while Instant::now() < deadline {
        loop {
            match parse_message(&peer.buf, true, false, false) {
                Step::Done(msg, used) => {
                    peer.buf.drain(..used);
                    continued = false;
                    let close = !persistent(&msg.head, true);
                    let answer = echo_response(&msg.head, close);
                    if !is_probe(&msg.head) {
                        st.lock()
                            .unwrap()
                            .events
                            .push(BackendEvent::Request { conn, msg });
                    }
                    if w.write_all(&answer).is_err() || close {
                        break 'conn;
                    }
                }
                Step::More => {
                    if !continued {
                        if let Step::Done(h, _) = parse_head(&peer.buf, true) {
                            if h.minor(true) == 1
                                && h.tokens("expect").iter().any(|e| e == "100-continue")
                            {
                                continued = true;
                                let _ = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                            }
                        }
                    }
                    break;
                }
                Step::Bad(r) => {
                    st.lock().unwrap().events.push(BackendEvent::Unparsable {
                        conn,
                        why: r.why,
                        bytes: peer.buf.clone(),
                    });
                    let _ = w.write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    break 'conn;
                }
            }
        }
        st.lock().unwrap().conns[conn].1 = peer.buf.clone();
        if !peer.fill() {
            break;
        }
    }
    st.lock().unwrap().conns[conn] = (false, Vec::new());
    let _ = w.shutdown(Shutdown::Both);
}

// ---- request direction: running a case ------------------------------------

struct RequestEnv {
    // Field order is drop order: the proxies go first.
    lbs: Vec<(Lb, TempFile)>,
    backend: RecordingBackend,
}

impl RequestEnv {
    fn start(bin: &str) -> RequestEnv {
        let backend = RecordingBackend::start();
        let port = backend.be.port;
        RequestEnv {
            lbs: vec![
                start_lb(bin, port, ""),
                start_lb(bin, port, r#", "request_buffer_bytes": 0"#),
            ],
            backend,
        }
    }
}

/// `/r/<case>/<k>` → (case, k).
fn parse_id(target: &str) -> Option<(&str, usize)> {
    let rest = target.strip_prefix("/r/")?;
    let (case, k) = rest.split_once('/')?;
    Some((case, k.parse().ok()?))
}

/// Reads the responses on one client connection and checks (c).
fn read_responses(
    search: &mut Search,
    peer: &mut Peer,
    ci: usize,
    reqs: &[ReqPlan],
    v: &mut Vec<String>,
) {
    let mut i = 0;
    let mut rejected = false;
    let mut interim = 0;
    // The last response left the connection open; it answered a HEAD with
    // a rejection.
    let mut open = true;
    let mut head_rejected = false;
    while i < reqs.len() {
        let r = &reqs[i];
        let limit = if rejected {
            AFTER_REJECTION_LIMIT
        } else {
            READ_LIMIT
        };
        let m = match peer.read_response(r.head_request, limit) {
            Ok(m) => m,
            Err(ReadEnd::Closed(_)) if rejected => {
                search.note("requests unanswered after a rejection, connection closed");
                return;
            }
            Err(ReadEnd::Closed(partial)) => {
                // Nothing said the connection would end: a response was owed
                // (a crashed worker ends here too).
                v.push(format!(
                    "(c) connection {ci}: closed without a whole response to {}; got {} bytes: {}",
                    r.id,
                    partial.len(),
                    esc_cut(&partial, 600)
                ));
                return;
            }
            Err(ReadEnd::Timeout(_)) if rejected => {
                search.note("requests unanswered after a rejection, connection left open");
                return;
            }
            Err(ReadEnd::Timeout(partial)) => {
                v.push(format!(
                    "(c) connection {ci}: no response to {} within {limit:?} (connection still open); got {} bytes: {}",
                    r.id,
                    partial.len(),
                    esc_cut(&partial, 600)
                ));
                return;
            }
            Err(ReadEnd::Bad(why, bytes)) => {
                v.push(format!(
                    "(c) connection {ci}: unreadable response to {} ({why}): {}",
                    r.id,
                    esc_cut(&bytes, 600)
                ));
                return;
            }
        };
        let status = m.head.status();
        if (100..200).contains(&status) {
            interim += 1;
            search.note("interim responses");
            if interim > 4 {
                v.push(format!("(c) connection {ci}: endless interim responses"));
                return;
            }
            continue;
        }
        if let Some(p) = framing_headers_problem(&m.head, false) {
            v.push(format!("(d) connection {ci}: response to {}: {p}", r.id));
        }
        interim = 0;
        match m.head.get("x-echo-target") {
            Some(t) if t == r.id => {
                if status != 200 {
                    v.push(format!("(c) {}: status {status} with its echo", r.id));
                }
                if !r.head_request && m.body != r.id.as_bytes() {
                    v.push(format!(
                        "(c) connection {ci}: response to {} has body {}",
                        r.id,
                        esc_cut(&m.body, 200)
                    ));
                }
            }
            Some(t) => {
                v.push(format!(
                    "(c) connection {ci}: the response read for {} answers {t}",
                    r.id
                ));
                return;
            }
            None if status >= 400 => {
                *search.rejections.entry(status).or_default() += 1;
                rejected = true;
                head_rejected = r.head_request;
            }
            None => {
                v.push(format!(
                    "(c) connection {ci}: a {status} without X-Echo-Target for {}",
                    r.id
                ));
                return;
            }
        }
        i += 1;
        if !persistent(&m.head, false) {
            open = false;
            break;
        }
    }
    if peer.buf.is_empty() {
        return;
    }
    if open && i == reqs.len() {
        v.push(format!(
            "(c) connection {ci}: bytes after the last response: {}",
            esc_cut(&peer.buf, 300)
        ));
    } else if !open && head_rejected {
        // Harmless on a closing connection, but RFC 9110 9.3.2 says a
        // response to HEAD has no content: reported in the summary.
        search.note("rejections of HEAD requests with content (connection closed)");
    }
}

/// What the backend got during a case, checked against the plans: (a),
/// (b), (d), (e), (f).
fn check_backend(case: &ReqCase, events: &[BackendEvent], v: &mut Vec<String>) -> u64 {
    let all: Vec<&ReqPlan> = case.conns.iter().flatten().collect();
    let mut last: Option<usize> = None;
    let mut forwarded = 0;
    for ev in events {
        let (conn, msg) = match ev {
            BackendEvent::Unparsable { conn, why, bytes } => {
                v.push(format!(
                    "(f) backend connection {conn} could not parse what the proxy sent ({why}): {}",
                    esc_cut(bytes, 600)
                ));
                continue;
            }
            BackendEvent::Request { conn, msg } => (conn, msg),
        };
        forwarded += 1;
        let t = msg.head.target();
        let at = format!("backend connection {conn}: {} {t}", msg.head.start[0]);
        if t.contains("SMUGGLED") {
            v.push(format!(
                "(b) {at}: a smuggled request reached the backend: {}",
                esc_cut(&msg.head.raw, 400)
            ));
            continue;
        }
        let k = match parse_id(t) {
            Some((c, k)) if c == case.tag && k < all.len() => k,
            Some((c, _)) => {
                v.push(format!(
                    "(a) {at}: a request of case {c} arrived during case {}",
                    case.tag
                ));
                continue;
            }
            None => {
                v.push(format!("(a) {at}: a target the client never sent"));
                continue;
            }
        };
        let p = all[k];
        if last.is_some_and(|l| k <= l) {
            v.push(format!(
                "(a) {at}: out of order or twice (after request {})",
                last.unwrap()
            ));
        }
        last = Some(k);
        if msg.head.start[0] != p.method {
            v.push(format!("(a) {at}: sent as {}", p.method));
        }
        let mut has_body = !msg.body.is_empty();
        match &p.verdict {
            Verdict::Forward(body) => {
                has_body |= !body.is_empty();
                if &msg.body != body {
                    v.push(format!(
                        "(a) {at}: body of {} bytes differs from the {} bytes sent: got {}, sent {}",
                        msg.body.len(),
                        body.len(),
                        esc_cut(&msg.body, 200),
                        esc_cut(body, 200)
                    ));
                }
            }
            Verdict::MustRefuse(why) => {
                v.push(format!(
                    "(a) {at}: forwarded although it has no valid reading ({why})"
                ));
            }
            Verdict::Unclear(_) => {}
        }
        if let Some(problem) = framing_headers_problem(&msg.head, has_body) {
            v.push(format!(
                "(d) {at}: {problem}; head {}",
                esc_cut(&msg.head.raw, 600)
            ));
        }
        if p.minor == 1 && msg.head.count("host") != 1 {
            v.push(format!(
                "(e) {at}: {} Host lines in an HTTP/1.1 request; head {}",
                msg.head.count("host"),
                esc_cut(&msg.head.raw, 600)
            ));
        }
    }
    forwarded
}

fn run_request_case(search: &mut Search, env: &RequestEnv, case: &ReqCase) -> Result<(), Failure> {
    // Whatever arrived since the last case is checked with this one: a late
    // request of an earlier case shows as one that does not belong here.
    let _ = env.backend.take_events();
    let lb = &env.lbs[if case.buffered { 0 } else { 1 }].0;
    let mut v = Vec::new();
    for (ci, reqs) in case.conns.iter().enumerate() {
        search.requests += reqs.len() as u64;
        let bytes: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.iter().copied()).collect();
        let mut peer = match Peer::connect(lb.port) {
            Ok(p) => p,
            Err(e) => {
                v.push(e);
                break;
            }
        };
        let mut w = peer.s.try_clone().unwrap();
        std::thread::scope(|sc| {
            let writer = sc.spawn(move || w.write_all(&bytes).is_ok());
            read_responses(search, &mut peer, ci, reqs, &mut v);
            let _ = peer.s.shutdown(Shutdown::Both);
            if !writer.join().unwrap_or(false) {
                search.note("client writes cut short (the proxy closed first)");
            }
        });
        if !v.is_empty() {
            break;
        }
    }
    let leftover = env.backend.leftover(LEFTOVER_LIMIT);
    let events = env.backend.take_events();
    let forwarded = check_backend(case, &events, &mut v);
    *search.notes.entry("requests forwarded").or_default() += forwarded;
    if let Some((conn, bytes)) = &leftover {
        v.push(format!(
            "(f) backend connection {conn} is open and holds {} unparsed bytes after the case: {}",
            bytes.len(),
            esc_cut(bytes, 400)
        ));
    }
    for r in case.conns.iter().flatten() {
        search.note(match r.verdict {
            Verdict::Forward(_) => "verdict: forward",
            Verdict::MustRefuse(_) => "verdict: must refuse",
            Verdict::Unclear(_) => "verdict: unclear",
        });
    }
    if v.is_empty() {
        return Ok(());
    }
    let mut dump = format!(
        "  through the proxy that {} request bodies\n",
        if case.buffered { "buffers" } else { "streams" }
    );
    for (ci, reqs) in case.conns.iter().enumerate() {
        dump.push_str(&format!("  client connection {ci}, written in one go:\n"));
        for r in reqs {
            dump.push_str(&format!(
                "   {} (reference: {:?}):\n",
                r.id,
                short_verdict(&r.verdict)
            ));
            dump.push_str(&esc_block(&r.bytes, 4096));
            dump.push('\n');
        }
    }
    dump.push_str("  the backend received:\n");
    for ev in &events {
        match ev {
            BackendEvent::Request { conn, msg } => {
                dump.push_str(&format!("   on connection {conn}:\n"));
                dump.push_str(&esc_block(&msg.head.raw, 2048));
                dump.push_str(&format!("\n     body: {}\n", esc_cut(&msg.body, 400)));
            }
            BackendEvent::Unparsable { conn, why, bytes } => dump.push_str(&format!(
                "   on connection {conn}, unparsable ({why}): {}\n",
                esc_cut(bytes, 400)
            )),
        }
    }
    Err(Failure {
        violations: v,
        dump,
    })
}

fn short_verdict(v: &Verdict) -> String {
    match v {
        Verdict::Forward(b) => format!("forward a {}-byte body", b.len()),
        Verdict::MustRefuse(why) => format!("must refuse: {why}"),
        Verdict::Unclear(why) => format!("unclear: {why}"),
    }
}

#[test]
fn request_smuggling_search() {
    let s = Settings::from_env(DEFAULT_REQUEST_CASES);
    let mut env = RequestEnv::start(&s.bin);
    let mut search = Search::new("request_smuggling_search");
    let fixed = fixed_request_cases();
    let env_cell = std::cell::RefCell::new(&mut env);
    search.run(
        &s,
        &fixed,
        |n| gen_request_case(s.seed, n),
        |search, case| run_request_case(search, &env_cell.borrow(), case),
        || {
            let mut e = env_cell.borrow_mut();
            **e = RequestEnv::start(&s.bin);
        },
    );
    search.finish(&s);
}

// ---- response direction ----------------------------------------------------

#[derive(Clone, Debug)]
enum Expect {
    /// The client must get this status and body (or a 5xx from the proxy).
    Exact { status: u16, body: Vec<u8> },
    /// No valid reading: the client must get a 5xx.
    MustFail(String),
    /// The backend closes before the body is complete: never presented as
    /// a whole response.
    Truncated,
    /// Only a SHOULD/MAY applies.
    Unclear(String),
}

#[derive(Clone, Debug)]
struct RespPlan {
    /// Exactly what the backend writes, in one write (interim, final, extra).
    bytes: Vec<u8>,
    /// Where the final response starts and where the extra bytes start.
    final_at: usize,
    extra_at: usize,
    close_after: bool,
    expect: Expect,
}

#[derive(Clone, Debug)]
struct RespReq {
    id: String,
    head_request: bool,
    plan: RespPlan,
}

#[derive(Clone, Debug)]
struct RespCase {
    /// Client connections, one after the other; requests one at a time.
    conns: Vec<Vec<RespReq>>,
}

/// A plan from its parts, with the reference's expectation.
fn resp_plan(
    head_request: bool,
    interim: &[u8],
    fin: &[u8],
    extra: &[u8],
    close_after: bool,
    truncated: bool,
) -> RespPlan {
    let mut rest = fin.to_vec();
    rest.extend_from_slice(extra);
    let expect = match parse_message(&rest, false, head_request, close_after) {
        _ if truncated => Expect::Truncated,
        Step::Done(m, _) => Expect::Exact {
            status: m.head.status(),
            body: m.body,
        },
        Step::Bad(r) if r.must => Expect::MustFail(r.why),
        Step::Bad(r) => Expect::Unclear(r.why),
        Step::More => Expect::Unclear("incomplete by the reference".into()),
    };
    let mut bytes = interim.to_vec();
    bytes.extend_from_slice(&rest);
    RespPlan {
        bytes,
        final_at: interim.len(),
        extra_at: interim.len() + fin.len(),
        close_after,
        expect,
    }
}

fn smuggled_response(id: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nX-Echo-Target: /SMUGGLED-{}\r\nContent-Length: 9\r\n\r\nSMUGGLED!",
        id.trim_start_matches('/')
    )
    .into_bytes()
}

fn response_body(rng: &mut Rng, id: &str, big: bool) -> Vec<u8> {
    if big {
        let n = rng.range(256 * 1024, 768 * 1024);
        let mut b = Vec::with_capacity(n + 32);
        while b.len() < n {
            b.extend_from_slice(format!("{id} at {:08}\n", b.len()).as_bytes());
        }
        b.truncate(n);
        return b;
    }
    let mut b = format!("body of {id}:").into_bytes();
    let n = rng.range(0, 300);
    b.extend(filler(rng, n));
    b
}

const RESPONSE_CONNECTION_TOKENS: &[&str] = &[
    "close",
    "keep-alive",
    "Content-Length",
    "Transfer-Encoding",
    "X-Rnd-1",
    "Keep-Alive",
    "Date",
    "Set-Cookie",
    "Server",
];

fn gen_response(rng: &mut Rng, id: &str, head_request: bool) -> RespPlan {
    let minor = if rng.chance(8) { 0 } else { 1 };
    let (status, reason) = match rng.below(100) {
        0..=59 => (200, "OK"),
        60..=66 => (201, "Created"),
        67..=74 => (404, "Not Found"),
        75..=79 => (500, "Internal Server Error"),
        80..=88 => (204, "No Content"),
        _ => (304, "Not Modified"),
    };
    let reason = if rng.chance(5) { "" } else { reason };
    let big = rng.chance(8);
    let body = response_body(rng, id, big);
    #[derive(PartialEq)]
    enum Intent {
        Length,
        Chunked,
        Close,
    }
    let intent = match rng.below(100) {
        0..=49 => Intent::Length,
        50..=79 => Intent::Chunked,
        _ => Intent::Close,
    };
    let mut lines = vec![format!("{}: {id}", vary_case(rng, "X-Echo-Target"))];
    match intent {
        Intent::Length => lines.extend(content_length_lines(rng, body.len())),
        Intent::Chunked => {
            lines.extend(transfer_encoding_lines(rng));
            if rng.chance(5) {
                lines.push(format!("Content-Length: {}", body.len()));
            }
        }
        Intent::Close => {}
    }
    if rng.chance(35) {
        lines.extend(connection_lines(rng, RESPONSE_CONNECTION_TOKENS));
    }
    if rng.chance(8) {
        lines.push("Keep-Alive: timeout=5, max=100".into());
    }
    if rng.chance(10) {
        lines.push("Set-Cookie: a=1".into());
        lines.push("Set-Cookie: b=2".into());
    }
    if rng.chance(8) {
        lines.push("X-Dup: 1".into());
        lines.push("x-dup: 2".into());
    }
    if rng.chance(30) {
        lines.push("Date: Thu, 04 Dec 2025 21:00:00 GMT".into());
    }
    if rng.chance(20) {
        lines.push("X-Rnd-1: v".into());
    }
    rng.shuffle(&mut lines);
    let mut fin = format!("HTTP/1.{minor} {status} {reason}\r\n").into_bytes();
    for l in &lines {
        fin.extend_from_slice(l.as_bytes());
        fin.extend_from_slice(b"\r\n");
    }
    fin.extend_from_slice(b"\r\n");
    let (reading, head) = match parse_head(&fin, false) {
        Step::Done(h, _) => (framing(&h, false, head_request), Some(h)),
        Step::Bad(r) => (Err(r), None),
        Step::More => (Err(unclear("incomplete head")), None),
    };
    let mut close_after = rng.chance(6) || head.as_ref().is_some_and(|h| !persistent(h, false));
    let mut extra = Vec::new();
    let mut truncated = false;
    match (reading, &intent) {
        (Ok(Framing::None), _) => {
            if rng.chance(20) {
                extra = if rng.chance(50) {
                    body
                } else {
                    smuggled_response(id)
                };
            }
        }
        (Ok(Framing::Length(n)), _) => {
            let mut b = body;
            b.resize(n as usize, b'z');
            if n > 1 && rng.chance(3) {
                b.truncate(n as usize / 2);
                truncated = true;
                close_after = true;
            }
            fin.extend_from_slice(&b);
        }
        (Ok(Framing::Chunked), _) | (Err(_), Intent::Chunked) => {
            fin.extend_from_slice(&chunked(rng, &body));
        }
        (Ok(Framing::Close), _) | (Err(_), Intent::Close) => {
            fin.extend_from_slice(&body);
            close_after = true;
        }
        (Err(_), Intent::Length) => fin.extend_from_slice(&body),
    }
    if !close_after && !truncated && extra.is_empty() && rng.chance(15) {
        extra = smuggled_response(id);
    }
    let interim: &[u8] = match rng.below(100) {
        0..=4 => b"HTTP/1.1 100 Continue\r\n\r\n",
        5..=7 => b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
        _ => b"",
    };
    resp_plan(head_request, interim, &fin, &extra, close_after, truncated)
}

fn gen_response_case(seed: u64, n: u64) -> RespCase {
    let mut rng = Rng::for_case(seed, n, 2);
    let tag = n.to_string();
    let mut k = 0;
    let conns = (0..rng.range(1, 2))
        .map(|_| {
            (0..rng.range(1, 4))
                .map(|_| {
                    let id = format!("/r/{tag}/{k}");
                    k += 1;
                    let head_request = rng.chance(10);
                    RespReq {
                        plan: gen_response(&mut rng, &id, head_request),
                        id,
                        head_request,
                    }
                })
                .collect()
        })
        .collect();
    RespCase { conns }
}

/// A plain, correct response to `id`.
fn plain(id: &str) -> RespPlan {
    let body = format!("plain {id}");
    let fin = format!(
        "HTTP/1.1 200 OK\r\nX-Echo-Target: {id}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    resp_plan(false, b"", fin.as_bytes(), b"", false, false)
}

/// A GET of `id` answered by `plan`.
fn get_req(id: String, plan: RespPlan) -> RespReq {
    RespReq {
        id,
        head_request: false,
        plan,
    }
}

/// The issue's response-side vectors.
fn fixed_response_cases() -> Vec<RespCase> {
    let id = |t: &str, k: usize| format!("/r/{t}/{k}");
    let mut cases = Vec::new();
    // f0, f1: `Connection` names Content-Length (`Content-Length: 5`); then
    // a request on the same connection and one on another.
    for connection in [
        "Connection: Content-Length",
        "connection: keep-alive, content-length",
    ] {
        let t = format!("f{}", cases.len());
        let fin = format!(
            "HTTP/1.1 200 OK\r\nX-Echo-Target: {}\r\n{connection}\r\nContent-Length: 5\r\n\r\nhello",
            id(&t, 0)
        );
        let first = resp_plan(false, b"", fin.as_bytes(), b"", false, false);
        cases.push(RespCase {
            conns: vec![
                vec![
                    get_req(id(&t, 0), first),
                    get_req(id(&t, 1), plain(&id(&t, 1))),
                ],
                vec![get_req(id(&t, 2), plain(&id(&t, 2)))],
            ],
        });
    }
    // f2: a 300 KiB Content-Length body (spliced) and a marked response
    // right behind it, in the same write.
    let t = "f2";
    let body: Vec<u8> = (0..300 * 1024)
        .map(|i| b"0123456789abcdef"[i % 16])
        .collect();
    let mut fin = format!(
        "HTTP/1.1 200 OK\r\nX-Echo-Target: {}\r\nContent-Length: {}\r\n\r\n",
        id(t, 0),
        body.len()
    )
    .into_bytes();
    fin.extend_from_slice(&body);
    let first = resp_plan(
        false,
        b"",
        &fin,
        &smuggled_response(&id(t, 0)),
        false,
        false,
    );
    cases.push(RespCase {
        conns: vec![
            vec![
                get_req(id(t, 0), first),
                get_req(id(t, 1), plain(&id(t, 1))),
            ],
            vec![get_req(id(t, 2), plain(&id(t, 2)))],
        ],
    });
    // f3: a 204 with a marked response behind it (204 has no body: extra).
    let t = "f3";
    let fin = format!(
        "HTTP/1.1 204 No Content\r\nX-Echo-Target: {}\r\n\r\n",
        id(t, 0)
    );
    let first = resp_plan(
        false,
        b"",
        fin.as_bytes(),
        &smuggled_response(&id(t, 0)),
        false,
        false,
    );
    cases.push(RespCase {
        conns: vec![vec![
            get_req(id(t, 0), first),
            get_req(id(t, 1), plain(&id(t, 1))),
        ]],
    });
    // f4: `Connection: Transfer-Encoding` on a chunked response.
    let t = "f4";
    let fin = format!(
        "HTTP/1.1 200 OK\r\nX-Echo-Target: {}\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        id(t, 0)
    );
    let first = resp_plan(false, b"", fin.as_bytes(), b"", false, false);
    cases.push(RespCase {
        conns: vec![vec![
            get_req(id(t, 0), first),
            get_req(id(t, 1), plain(&id(t, 1))),
        ]],
    });
    cases
}

type Plans = Arc<Mutex<HashMap<String, Arc<RespPlan>>>>;

/// A backend answering each request with the plan registered for its target.
fn serve_planned(s: TcpStream, plans: &Plans, problems: &Mutex<Vec<String>>) {
    let mut w = s.try_clone().unwrap();
    let mut peer = Peer::new(s);
    let deadline = Instant::now() + Duration::from_secs(3600);
    'conn: while Instant::now() < deadline {
        loop {
            match parse_message(&peer.buf, true, false, false) {
                Step::Done(m, used) => {
                    peer.buf.drain(..used);
                    let t = m.head.target().to_string();
                    let plan = plans.lock().unwrap().get(&t).cloned();
                    match plan {
                        None if is_probe(&m.head) => {
                            let _ = w.write_all(&echo_response(&m.head, true));
                            break 'conn;
                        }
                        Some(p) => {
                            if w.write_all(&p.bytes).is_err() || p.close_after {
                                break 'conn;
                            }
                        }
                        None => {
                            problems.lock().unwrap().push(format!(
                                "the backend got a request for {t} it has no plan for: {}",
                                esc_cut(&m.head.raw, 300)
                            ));
                            let _ = w.write_all(
                                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                            break 'conn;
                        }
                    }
                }
                Step::More => break,
                Step::Bad(r) => {
                    problems.lock().unwrap().push(format!(
                        "the backend could not parse what the proxy sent ({}): {}",
                        r.why,
                        esc_cut(&peer.buf, 300)
                    ));
                    break 'conn;
                }
            }
        }
        if !peer.fill() {
            break;
        }
    }
    let _ = w.shutdown(Shutdown::Both);
}

struct ResponseEnv {
    lb: (Lb, TempFile),
    plans: Plans,
    problems: Arc<Mutex<Vec<String>>>,
    _backend: Backend,
}

impl ResponseEnv {
    fn start(bin: &str) -> ResponseEnv {
        let plans: Plans = Arc::new(Mutex::new(HashMap::new()));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (p, q) = (plans.clone(), problems.clone());
        let backend = Backend::raw(move |s| serve_planned(s, &p, &q));
        ResponseEnv {
            lb: start_lb(bin, backend.port, ""),
            plans,
            problems,
            _backend: backend,
        }
    }
}

/// Checks one response the client read against the plan for its request.
fn check_response(search: &mut Search, r: &RespReq, m: &Msg, v: &mut Vec<String>) {
    let status = m.head.status();
    let echo = m.head.get("x-echo-target");
    let at = format!("response to {}", r.id);
    if let Some(p) = framing_headers_problem(&m.head, false) {
        v.push(format!("(d) {at}: {p}"));
    }
    if echo.is_some_and(|e| e.contains("SMUGGLED")) || m.body.windows(8).any(|w| w == b"SMUGGLED") {
        v.push(format!(
            "(b) {at}: a SMUGGLED response was presented: {}{}",
            esc_cut(&m.head.raw, 300),
            esc_cut(&m.body, 100)
        ));
        return;
    }
    match (echo, &r.plan.expect) {
        (Some(e), _) if e != r.id => v.push(format!("(c) {at}: it answers {e}")),
        (None, _) if status >= 500 => {
            search.note("5xx from the proxy");
            *search.rejections.entry(status).or_default() += 1;
        }
        (None, _) => v.push(format!("(c) {at}: a {status} without X-Echo-Target")),
        (Some(_), Expect::Exact { status: want, body }) => {
            if status != *want {
                v.push(format!("{at}: status {status}, the backend sent {want}"));
            }
            if !r.head_request && m.body != *body {
                let first = m
                    .body
                    .iter()
                    .zip(body.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(m.body.len().min(body.len()));
                v.push(format!(
                    "{at}: body of {} bytes, the backend sent {} (first difference at byte {first}): got {}",
                    m.body.len(),
                    body.len(),
                    esc_cut(&m.body[first.min(m.body.len())..], 200)
                ));
            }
        }
        (Some(_), Expect::MustFail(why)) => v.push(format!(
            "{at}: forwarded a response that has no valid reading ({why})"
        )),
        (Some(_), Expect::Truncated) => v.push(format!(
            "{at}: the backend's body was cut short, yet the client got a whole response: {} with {} bytes",
            esc_cut(&m.head.raw, 300),
            m.body.len()
        )),
        (Some(_), Expect::Unclear(_)) => search.note("unclear responses forwarded"),
    }
}

fn run_response_case(
    search: &mut Search,
    env: &ResponseEnv,
    case: &RespCase,
) -> Result<(), Failure> {
    {
        let mut plans = env.plans.lock().unwrap();
        for r in case.conns.iter().flatten() {
            plans.insert(r.id.clone(), Arc::new(r.plan.clone()));
        }
    }
    let problems_before = env.problems.lock().unwrap().len();
    let mut v = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    'conns: for (ci, reqs) in case.conns.iter().enumerate() {
        let mut peer: Option<Peer> = None;
        for r in reqs {
            search.requests += 1;
            let mut retried = false;
            let m = loop {
                let fresh = peer.is_none();
                if fresh {
                    match Peer::connect(env.lb.0.port) {
                        Ok(p) => peer = Some(p),
                        Err(e) => {
                            v.push(e);
                            break None;
                        }
                    }
                }
                let p = peer.as_mut().unwrap();
                let method = if r.head_request { "HEAD" } else { "GET" };
                let req = format!("{method} {} HTTP/1.1\r\nHost: x\r\n\r\n", r.id);
                let sent = p.s.write_all(req.as_bytes()).is_ok();
                let mut got = if sent {
                    p.read_response(r.head_request, READ_LIMIT)
                } else {
                    Err(ReadEnd::Closed(Vec::new()))
                };
                let mut interim = 0;
                while let Ok(m) = &got {
                    if !(100..200).contains(&m.head.status()) || interim > 8 {
                        break;
                    }
                    interim += 1;
                    search.note("interim responses");
                    got = p.read_response(r.head_request, READ_LIMIT);
                }
                match got {
                    Ok(m) => break Some(m),
                    // A kept-alive connection the proxy closed just before
                    // this request: once more on a new one.
                    Err(ReadEnd::Closed(partial)) if partial.is_empty() && !fresh && !retried => {
                        search.note("requests retried on a new connection");
                        retried = true;
                        peer = None;
                    }
                    Err(ReadEnd::Closed(partial)) => {
                        match &r.plan.expect {
                            Expect::Exact { .. } => v.push(format!(
                                "connection {ci}: closed without a whole response to {}; got {}",
                                r.id,
                                esc_cut(&partial, 300)
                            )),
                            _ => search.note("connection closed on a bad or short response"),
                        }
                        break None;
                    }
                    Err(ReadEnd::Timeout(partial)) => {
                        let unframed = matches!(
                            parse_head(&partial, false),
                            Step::Done(h, _) if h.count("content-length") + h.count("transfer-encoding") == 0
                        );
                        v.push(format!(
                            "connection {ci}: no whole response to {} within {READ_LIMIT:?}, connection still open{}; got {} bytes: {}",
                            r.id,
                            if unframed { " (a response head without framing)" } else { "" },
                            partial.len(),
                            esc_cut(&partial, 400)
                        ));
                        break None;
                    }
                    Err(ReadEnd::Bad(why, bytes)) => {
                        v.push(format!(
                            "connection {ci}: unreadable response to {} ({why}): {}",
                            r.id,
                            esc_cut(&bytes, 400)
                        ));
                        break None;
                    }
                }
            };
            seen.push(match &m {
                Some(m) => format!(
                    "{}: {}   body {} bytes: {}",
                    r.id,
                    esc_cut(&m.head.raw, 600),
                    m.body.len(),
                    esc_cut(&m.body, 120)
                ),
                None => format!("{}: no response", r.id),
            });
            let Some(m) = m else {
                if !v.is_empty() {
                    break 'conns;
                }
                peer = None;
                continue;
            };
            check_response(search, r, &m, &mut v);
            if !v.is_empty() {
                break 'conns;
            }
            if !persistent(&m.head, false) || m.framing == Framing::Close {
                peer = None;
            }
        }
    }
    {
        let problems = env.problems.lock().unwrap();
        v.extend(problems[problems_before..].iter().cloned());
        let mut plans = env.plans.lock().unwrap();
        for r in case.conns.iter().flatten() {
            plans.remove(&r.id);
        }
    }
    if v.is_empty() {
        return Ok(());
    }
    let mut dump = String::new();
    for (ci, reqs) in case.conns.iter().enumerate() {
        dump.push_str(&format!(
            "  client connection {ci}, one request at a time:\n"
        ));
        for r in reqs {
            let method = if r.head_request { "HEAD" } else { "GET" };
            let p = &r.plan;
            dump.push_str(&format!(
                "   {method} {}: the backend writes {} bytes{} (reference: {}):\n",
                r.id,
                p.bytes.len(),
                if p.close_after { " and closes" } else { "" },
                match &p.expect {
                    Expect::Exact { status, body } =>
                        format!("{status} with a {}-byte body", body.len()),
                    Expect::MustFail(why) => format!("must fail: {why}"),
                    Expect::Truncated => "cut short".into(),
                    Expect::Unclear(why) => format!("unclear: {why}"),
                }
            ));
            if p.final_at > 0 {
                dump.push_str(&format!("     interim: {}\n", esc(&p.bytes[..p.final_at])));
            }
            dump.push_str(&esc_block(&p.bytes[p.final_at..p.extra_at], 2048));
            dump.push('\n');
            if p.extra_at < p.bytes.len() {
                dump.push_str(&format!(
                    "     then extra bytes: {}\n",
                    esc_cut(&p.bytes[p.extra_at..], 300)
                ));
            }
        }
    }
    dump.push_str("  the client got:\n");
    for s in &seen {
        dump.push_str(&format!("   {s}\n"));
    }
    Err(Failure {
        violations: v,
        dump,
    })
}

#[test]
fn response_desync_search() {
    let s = Settings::from_env(DEFAULT_RESPONSE_CASES);
    let mut env = ResponseEnv::start(&s.bin);
    let mut search = Search::new("response_desync_search");
    let fixed = fixed_response_cases();
    let env_cell = std::cell::RefCell::new(&mut env);
    search.run(
        &s,
        &fixed,
        |n| gen_response_case(s.seed, n),
        |search, case| run_response_case(search, &env_cell.borrow(), case),
        || {
            let mut e = env_cell.borrow_mut();
            **e = ResponseEnv::start(&s.bin);
        },
    );
    search.finish(&s);
}
