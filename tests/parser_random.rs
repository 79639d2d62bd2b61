//! Randomised tests of the head parser and the chunked decoder.
//!
//! 1. Every SIMD level agrees with the scalar one on a million generated and
//!    mutated request and response heads (full parse results and raw
//!    `scan_with` results), and complete heads satisfy the parser's
//!    structural guarantees.
//! 2. Valid inputs split at every byte boundary parse the same as whole.
//!
//! `simd::set_level` is process-global and the tests of one binary run in
//! parallel threads, so everything that depends on the level lives in the
//! single test `simd_levels_agree_and_every_prefix_is_partial`.
//!
//! Reproduce or vary a run with `PARSER_SEED=<u64>` and `PARSER_CASES=<n>`;
//! see the counts with `cargo test --release --test parser_random -- --nocapture`.

use lb::http::chunked::Progress;
use lb::http::simd::{self, Class, Level};
use lb::http::{
    parse_request, parse_response, ChunkError, ChunkedDecoder, HeaderRef, ParseError, RequestHead,
    ResponseHead, Status,
};
use std::time::Instant;

/// Cases of part 1 unless `PARSER_CASES` says otherwise.
const CASES: usize = 1_000_000;
/// Header slots given to the parser (some cases get fewer, to reach
/// `TooManyHeaders`).
const SLOTS: usize = 64;
/// The parser's head limit (`lb::config::MAX_HEADER_BYTES`); only used to
/// size the inputs meant to cross it.
const HEAD_LIMIT: usize = 8192;

// ---------------------------------------------------------------- PRNG ---

/// xorshift64* (Vigna), seeded through splitmix64 so that any seed works.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    fn pick_bytes<'a>(&mut self, xs: &[&'a [u8]]) -> &'a [u8] {
        xs[self.below(xs.len())]
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }

    /// Appends `n` bytes drawn from `dist` (a byte distribution: each of its
    /// 256 entries is equally likely), eight per step of the generator.
    fn fill(&mut self, out: &mut Vec<u8>, n: usize, dist: &[u8; 256]) {
        let mut left = n;
        while left > 0 {
            let x = self.next().to_le_bytes();
            let k = left.min(8);
            out.extend(x[..k].iter().map(|&b| dist[b as usize]));
            left -= k;
        }
    }
}

fn seed() -> u64 {
    std::env::var("PARSER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1b_5eed)
}

fn cases() -> usize {
    std::env::var("PARSER_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES)
}

/// The input as a Rust byte-string literal body, for assertion messages.
fn esc(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

// ---------------------------------------------------------- generators ---

const TCHAR_PUNCT: &[u8] = b"!#$%&'*+-.^_`|~";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const HEX: &[u8] = b"0123456789ABCDEFabcdef";

const METHODS: &[&[u8]] = &[
    b"GET",
    b"GET",
    b"GET",
    b"GET",
    b"POST",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"M-SEARCH",
    b"MKCALENDAR",
    b"QUERY",
    b"PURGE",
];

/// Methods the parser refuses: not known (501), or not a token (400).
const BAD_METHODS: &[&[u8]] = &[b"get", b"BREW", b"ANNOUNCE", b"G@T", b"GET\t"];

const NAMES: &[&[u8]] = &[
    b"Host",
    b"User-Agent",
    b"Accept",
    b"Accept-Encoding",
    b"Accept-Language",
    b"Cookie",
    b"Authorization",
    b"Content-Type",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"Cache-Control",
    b"Referer",
    b"X-Forwarded-For",
    b"X-Request-Id",
    b"Upgrade",
    b"Expect",
    b"TE",
    b"Server",
    b"Date",
    b"ETag",
    b"Set-Cookie",
    b"Vary",
    b"sec-ch-ua",
];

/// Field-value bytes: 70% visible ASCII, 12.5% SP, 5% HTAB, 12.5% obs-text.
static VALUE_DIST: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i {
            0..=179 => 0x21 + (i % 94) as u8,
            180..=211 => b' ',
            212..=223 => b'\t',
            _ => 0x80 + ((i - 224) * 4) as u8 + (i % 4) as u8,
        };
        i += 1;
    }
    t
};

/// Letters and digits.
static ALNUM_DIST: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ALNUM[i % ALNUM.len()];
        i += 1;
    }
    t
};

/// tchar: mostly letters and digits, one in eight punctuation.
static TOKEN_DIST: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i < 224 {
            ALNUM[i % ALNUM.len()]
        } else {
            TCHAR_PUNCT[i % TCHAR_PUNCT.len()]
        };
        i += 1;
    }
    t
};

/// Bearer-token bytes (base64url and dots).
static B64_DIST: [u8; 256] = {
    let mut t = [0u8; 256];
    let set = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    let mut i = 0;
    while i < 256 {
        t[i] = set[i % set.len()];
        i += 1;
    }
    t
};

/// A byte of a request target: mostly unreserved, some other visible ASCII,
/// some obs-text. `%`-escapes are added by the caller.
fn target_byte(r: &mut Rng) -> u8 {
    match r.below(20) {
        0..=13 => *r.pick(b"abcdefghijklmnopqrstuvwxyz0123456789-._~"),
        14..=17 => r.range(0x21, 0x7e) as u8,
        _ => r.range(0x80, 0xff) as u8,
    }
}

fn push_path(r: &mut Rng, out: &mut Vec<u8>) {
    out.push(b'/');
    for s in 0..r.below(6) {
        if s > 0 {
            out.push(b'/');
        }
        for _ in 0..r.below(14) {
            if r.chance(1, 10) {
                out.push(b'%');
                out.push(*r.pick(HEX));
                out.push(*r.pick(HEX));
            } else {
                out.push(target_byte(r));
            }
        }
    }
    if r.chance(1, 3) {
        out.push(b'?');
        for k in 0..r.range(1, 5) {
            if k > 0 {
                out.push(b'&');
            }
            for _ in 0..r.range(1, 8) {
                out.push(*r.pick(ALNUM));
            }
            out.push(b'=');
            for _ in 0..r.below(20) {
                if r.chance(1, 8) {
                    out.extend_from_slice(b"%2F");
                } else {
                    out.push(target_byte(r));
                }
            }
        }
    }
}

fn push_target(r: &mut Rng, method: &[u8], out: &mut Vec<u8>) {
    match (method, r.below(12)) {
        (b"CONNECT", _) | (_, 0) => {
            out.extend_from_slice(r.pick_bytes(&[&b"example.com"[..], b"10.0.0.7", b"[::1]"]));
            out.push(b':');
            out.extend_from_slice(r.range(1, 65535).to_string().as_bytes());
        }
        (b"OPTIONS", 1..=5) | (_, 1) => out.push(b'*'),
        (_, 2) => {
            out.extend_from_slice(r.pick_bytes(&[&b"http://"[..], b"https://"]));
            out.extend_from_slice(r.pick_bytes(&[&b"example.com"[..], b"api.example.org:8443"]));
            push_path(r, out);
        }
        _ => push_path(r, out),
    }
}

fn push_ows(r: &mut Rng, out: &mut Vec<u8>) {
    if r.chance(1, 6) {
        for _ in 0..r.range(1, 3) {
            out.push(*r.pick(b" \t"));
        }
    }
}

fn push_value(r: &mut Rng, name: &[u8], out: &mut Vec<u8>) {
    let lname = name.to_ascii_lowercase();
    match &lname[..] {
        b"content-length" if r.chance(7, 8) => {
            out.extend_from_slice(r.below(100_000).to_string().as_bytes())
        }
        b"transfer-encoding" if r.chance(7, 8) => {
            out.extend_from_slice(r.pick_bytes(&[&b"chunked"[..], b"gzip, chunked", b"identity"]))
        }
        b"connection" if r.chance(7, 8) => {
            out.extend_from_slice(r.pick_bytes(&[&b"keep-alive"[..], b"close", b"Upgrade, TE"]))
        }
        b"authorization" => {
            out.extend_from_slice(b"Bearer ");
            let n = r.range(20, 200);
            r.fill(out, n, &B64_DIST);
        }
        b"cookie" | b"set-cookie" => {
            for k in 0..r.range(1, 8) {
                if k > 0 {
                    out.extend_from_slice(b"; ");
                }
                let n = r.range(2, 12);
                r.fill(out, n, &TOKEN_DIST);
                out.push(b'=');
                let n = r.range(0, 40);
                r.fill(out, n, &ALNUM_DIST);
            }
        }
        _ => {
            let n = if r.chance(1, 50) {
                r.range(100, 1000)
            } else {
                r.below(50)
            };
            r.fill(out, n, &VALUE_DIST);
        }
    }
}

fn push_headers(r: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..r.range(0, 30) {
        let start = out.len();
        if r.chance(2, 3) {
            out.extend_from_slice(r.pick_bytes(NAMES));
        } else {
            let n = r.range(1, 24);
            r.fill(out, n, &TOKEN_DIST);
        }
        let name = out[start..].to_vec();
        out.push(b':');
        if r.chance(5, 6) {
            out.push(b' ');
        }
        push_ows(r, out);
        push_value(r, &name, out);
        push_ows(r, out);
        out.extend_from_slice(b"\r\n");
    }
    // Now and then a head past the size limit.
    if r.chance(1, 400) {
        out.extend_from_slice(b"X-Pad: ");
        let n = r.range(HEAD_LIMIT - 200, HEAD_LIMIT + 200);
        out.resize(out.len() + n, b'p');
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_body(r: &mut Rng, out: &mut Vec<u8>) {
    if r.chance(1, 5) {
        for _ in 0..r.below(40) {
            out.push(r.byte());
        }
    }
}

fn gen_request(r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    if r.chance(1, 30) {
        for _ in 0..r.range(1, 3) {
            out.extend_from_slice(b"\r\n");
        }
    }
    let method = if r.chance(1, 25) {
        r.pick_bytes(BAD_METHODS)
    } else {
        r.pick_bytes(METHODS)
    };
    out.extend_from_slice(method);
    out.push(b' ');
    if r.chance(1, 500) {
        // A target past the size limit: 414.
        out.push(b'/');
        out.resize(out.len() + HEAD_LIMIT, b'a');
    } else {
        push_target(r, method, &mut out);
    }
    out.push(b' ');
    out.extend_from_slice(match r.below(40) {
        0..=29 => b"HTTP/1.1",
        30..=36 => b"HTTP/1.0",
        37 => b"HTTP/2.0",
        38 => b"HTTP/1.x",
        _ => b"http/1.1",
    });
    out.extend_from_slice(b"\r\n");
    push_headers(r, &mut out);
    push_body(r, &mut out);
    out
}

fn gen_response(r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(if r.chance(7, 8) {
        b"HTTP/1.1 "
    } else {
        b"HTTP/1.0 "
    });
    let status = match r.below(20) {
        0 => r.below(1000),
        1..=4 => *r.pick(&[100, 101, 204, 304]),
        _ => r.range(200, 599),
    };
    out.extend_from_slice(format!("{status:03}").as_bytes());
    match r.below(10) {
        0 => {}
        1 => out.push(b' '),
        2..=4 => {
            out.push(b' ');
            let n = r.below(30);
            r.fill(&mut out, n, &VALUE_DIST);
        }
        _ => {
            out.push(b' ');
            out.extend_from_slice(r.pick_bytes(&[
                &b"OK"[..],
                b"Not Found",
                b"No Content",
                b"Internal Server Error",
                b"Switching Protocols",
            ]));
        }
    }
    out.extend_from_slice(b"\r\n");
    push_headers(r, &mut out);
    push_body(r, &mut out);
    out
}

/// Positions just after a CRLF (and 0): where lines start.
fn line_starts(v: &[u8]) -> Vec<usize> {
    let mut s = vec![0];
    s.extend(
        v.windows(2)
            .enumerate()
            .filter(|(_, w)| w == b"\r\n")
            .map(|(i, _)| i + 2),
    );
    s
}

fn mutate(r: &mut Rng, v: &mut Vec<u8>) {
    for _ in 0..r.range(1, 3) {
        let len = v.len();
        let pos = r.below(len + 1);
        match r.below(15) {
            0 if pos < len => v[pos] ^= 1 << r.below(8),
            1 if pos < len => v[pos] = r.byte(),
            2 => v.insert(pos, r.byte()),
            3 if pos < len => {
                v.remove(pos);
            }
            4 => v.insert(pos, b'\r'),
            5 => v.insert(pos, b'\n'),
            6 => v.insert(pos, 0),
            7 => {
                let c = if r.chance(1, 8) {
                    0x7f
                } else {
                    r.range(1, 0x1f) as u8
                };
                v.insert(pos, c)
            }
            8 => {
                // Whitespace before a colon.
                let colons: Vec<usize> = (0..len).filter(|&i| v[i] == b':').collect();
                if !colons.is_empty() {
                    let at = *r.pick(&colons);
                    v.insert(at, *r.pick(b" \t"));
                }
            }
            9 => {
                // A line starting with whitespace, or an extra empty line.
                let starts = line_starts(v);
                let at = *r.pick(&starts);
                let what = r.pick_bytes(&[
                    &b" \r\n"[..],
                    b"\t\r\n",
                    b"\r\n",
                    b" ",
                    b"\t",
                    b" folded\r\n",
                ]);
                v.splice(at..at, what.iter().copied());
            }
            10 => v.truncate(pos),
            11 => {
                // CRLF to a bare LF or a bare CR.
                let starts = line_starts(v);
                let at = *r.pick(&starts);
                if at >= 2 {
                    v.remove(at - if r.chance(1, 2) { 2 } else { 1 });
                }
            }
            12 => {
                // Duplicate a line (a second Content-Length, Host, ...).
                let starts = line_starts(v);
                if starts.len() >= 3 {
                    let k = r.below(starts.len() - 1);
                    let line = v[starts[k]..starts[k + 1]].to_vec();
                    let at = starts[r.below(starts.len())];
                    v.splice(at..at, line);
                }
            }
            13 => {
                // A run of arbitrary bytes.
                let n = r.range(1, 40);
                let run: Vec<u8> = (0..n).map(|_| r.byte()).collect();
                v.splice(pos..pos, run);
            }
            _ => {
                // A forbidden byte deep in a long line, where SIMD blocks are.
                let starts = line_starts(v);
                let at = *r.pick(&starts);
                let off = at + r.range(16, 80);
                if off < len {
                    v[off] = *r.pick(&[0u8, b'\r', b'\n', 0x7f, 0x1f, b'\t', b' ', 0x80, 0xff]);
                }
            }
        }
    }
}

// ------------------------------------------------------------ outcomes ---

/// Builds an assertion message's context (input and level) only when needed.
type Ctx<'a> = dyn Fn() -> String + 'a;

/// A parse result with the headers it filled, comparable across levels.
#[derive(Debug, PartialEq)]
enum Out<H> {
    Complete(H, Vec<HeaderRef>),
    Partial,
    Err(ParseError),
}

fn req_at(level: Level, buf: &[u8], slots: &mut [HeaderRef]) -> Out<RequestHead> {
    simd::set_level(level);
    slots.fill(HeaderRef::default());
    match parse_request(buf, slots) {
        Ok(Status::Complete(h)) => Out::Complete(h, slots[..h.header_count].to_vec()),
        Ok(Status::Partial) => Out::Partial,
        Err(e) => Out::Err(e),
    }
}

fn resp_at(level: Level, buf: &[u8], slots: &mut [HeaderRef]) -> Out<ResponseHead> {
    simd::set_level(level);
    slots.fill(HeaderRef::default());
    match parse_response(buf, slots) {
        Ok(Status::Complete(h)) => Out::Complete(h, slots[..h.header_count].to_vec()),
        Ok(Status::Partial) => Out::Partial,
        Err(e) => Out::Err(e),
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || TCHAR_PUNCT.contains(&b)
}

/// Field-value bytes (RFC 9110 5.5): VCHAR, obs-text, SP, HTAB.
fn is_value(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Request-target bytes as the parser takes them: visible ASCII and obs-text.
fn is_target(b: u8) -> bool {
    b > 0x20 && b != 0x7f
}

/// Reference for `simd::scan_with`, written from the RFC classes.
fn scan_ref(buf: &[u8], from: usize, class: Class) -> usize {
    let ok = match class {
        Class::Value => is_value,
        Class::Target => is_target,
    };
    let from = from.min(buf.len());
    buf[from..]
        .iter()
        .position(|&b| !ok(b))
        .map_or(buf.len(), |p| from + p)
}

/// What a complete head guarantees whatever its bytes: header lines tile
/// the head from the start line to the final CRLF, names are tokens followed
/// by a colon, values are trimmed field-value bytes inside their line.
fn check_headers(buf: &[u8], first_line: usize, len: usize, hs: &[HeaderRef], ctx: &Ctx) {
    assert!(
        len >= 2 && len <= buf.len() && &buf[len - 2..len] == b"\r\n",
        "{}: head length {len}",
        ctx()
    );
    let mut at = first_line;
    for (k, h) in hs.iter().enumerate() {
        let (line, name, value) = (h.line.of(buf), h.name.of(buf), h.value.of(buf));
        assert!(
            h.line.start as usize == at
                && h.name.start == h.line.start
                && !name.is_empty()
                && name.iter().all(|&b| is_token(b))
                && buf[h.name.end as usize] == b':'
                && h.value.start > h.name.end
                && h.value.end as usize + 2 <= h.line.end as usize
                && line.ends_with(b"\r\n")
                && buf[h.name.end as usize + 1..h.line.end as usize - 2]
                    .iter()
                    .all(|&b| is_value(b))
                && value.iter().all(|&b| is_value(b))
                && !value.starts_with(b" ")
                && !value.starts_with(b"\t")
                && !value.ends_with(b" ")
                && !value.ends_with(b"\t")
                && buf[h.name.end as usize + 1..h.value.start as usize]
                    .iter()
                    .all(|&b| b == b' ' || b == b'\t')
                && buf[h.value.end as usize..h.line.end as usize - 2]
                    .iter()
                    .all(|&b| b == b' ' || b == b'\t'),
            "{}: header {k} {h:?} line {:?}",
            ctx(),
            esc(line)
        );
        at = h.line.end as usize;
    }
    assert_eq!(
        at + 2,
        len,
        "{}: headers do not reach the empty line",
        ctx()
    );
}

fn check_request(buf: &[u8], h: &RequestHead, hs: &[HeaderRef], ctx: &Ctx) {
    assert!(
        buf[..h.start].chunks(2).all(|c| c == b"\r\n"),
        "{}: bytes before the request line",
        ctx()
    );
    let method = h.method.of(buf);
    let target = h.target.of(buf);
    let t_end = h.target.end as usize;
    assert!(
        h.method.start as usize == h.start
            && !method.is_empty()
            && method.iter().all(|&b| is_token(b))
            && h.target.start == h.method.end + 1
            && buf[h.method.end as usize] == b' '
            && !target.is_empty()
            && target.iter().all(|&b| is_target(b))
            && buf[t_end] == b' '
            && buf[t_end + 1..t_end + 8] == *b"HTTP/1."
            && buf[t_end + 8] == b"01"[h.minor as usize]
            && buf[t_end + 9..t_end + 11] == *b"\r\n",
        "{}: request line {h:?}",
        ctx()
    );
    check_headers(buf, t_end + 11, h.len, hs, ctx);
}

fn check_response(buf: &[u8], h: &ResponseHead, hs: &[HeaderRef], ctx: &Ctx) {
    let reason = h.reason.of(buf);
    assert!(
        buf[..7] == *b"HTTP/1."
            && buf[7] == b"01"[h.minor as usize]
            && buf[8] == b' '
            && (100..=999).contains(&h.status)
            && buf[9..12] == *format!("{:03}", h.status).as_bytes()
            && (h.reason.start == 12 || (buf[12] == b' ' && h.reason.start == 13))
            && reason.iter().all(|&b| is_value(b))
            && buf[h.reason.end as usize..h.reason.end as usize + 2] == *b"\r\n",
        "{}: status line {h:?}",
        ctx()
    );
    check_headers(buf, h.reason.end as usize + 2, h.len, hs, ctx);
}

/// Counts of outcomes, by error kind.
#[derive(Default)]
struct Tally {
    complete: u64,
    partial: u64,
    errors: Vec<(ParseError, u64)>,
}

impl Tally {
    fn add<H>(&mut self, o: &Out<H>) {
        match o {
            Out::Complete(..) => self.complete += 1,
            Out::Partial => self.partial += 1,
            Out::Err(e) => match self.errors.iter_mut().find(|(k, _)| k == e) {
                Some((_, n)) => *n += 1,
                None => self.errors.push((*e, 1)),
            },
        }
    }

    fn print(&mut self, what: &str) {
        self.errors.sort_by_key(|e| std::cmp::Reverse(e.1));
        let errs: Vec<String> = self
            .errors
            .iter()
            .map(|(e, n)| format!("{e:?} {n}"))
            .collect();
        println!(
            "{what}: complete {}, partial {}, errors {} ({})",
            self.complete,
            self.partial,
            self.errors.iter().map(|e| e.1).sum::<u64>(),
            errs.join(", ")
        );
    }
}

/// The outcome of `parse(prefix)` may be `Partial` or the whole input's
/// outcome, nothing else: the parser decides on bytes it has seen.
fn check_prefix<H: PartialEq + std::fmt::Debug + HeadLen>(
    whole: &Out<H>,
    cut: usize,
    prefix: &Out<H>,
    ctx: &Ctx,
) {
    let ok = match (whole, prefix) {
        (_, Out::Partial) => !matches!(whole, Out::Complete(h, _) if cut >= h.head_len()),
        (Out::Complete(h, _), p) => cut >= h.head_len() && p == whole,
        (Out::Err(_), p) => p == whole,
        (Out::Partial, _) => false,
    };
    assert!(
        ok,
        "{}: prefix of {cut} bytes gives {prefix:?}, the whole gives {whole:?}",
        ctx()
    );
}

trait HeadLen {
    fn head_len(&self) -> usize;
}
impl HeadLen for RequestHead {
    fn head_len(&self) -> usize {
        self.len
    }
}
impl HeadLen for ResponseHead {
    fn head_len(&self) -> usize {
        self.len
    }
}

// ------------------------------------------------------------- part 1 ---

fn compare_scans(r: &mut Rng, levels: &[Level], buf: &[u8]) {
    let len = buf.len();
    let offsets = [
        0,
        r.below(len + 1),
        r.below(len + 1),
        r.below(len + 1),
        len.saturating_sub(1),
        len,
        len + 3,
    ];
    for from in offsets {
        for class in [Class::Value, Class::Target] {
            let want = scan_ref(buf, from, class);
            for &level in levels {
                let got = simd::scan_with(level, buf, from, class);
                assert_eq!(
                    got,
                    want,
                    "scan_with({level:?}, {class:?}, from {from}) on b\"{}\"",
                    esc(buf)
                );
            }
        }
    }
}

fn random_heads(levels: &[Level]) {
    let seed = seed();
    let n = cases();
    let mut r = Rng::new(seed);
    let mut slots = vec![HeaderRef::default(); SLOTS];
    let (mut req_gen, mut req_mut, mut resp_gen, mut resp_mut): (Tally, Tally, Tally, Tally) =
        Default::default();
    let (mut bytes, mut mutated) = (0usize, 0usize);
    let t0 = Instant::now();
    for case in 0..n {
        let is_request = r.chance(3, 5);
        let mut buf = if is_request {
            gen_request(&mut r)
        } else {
            gen_response(&mut r)
        };
        let is_mutated = r.chance(1, 2);
        if is_mutated {
            mutate(&mut r, &mut buf);
            mutated += 1;
        }
        bytes += buf.len();
        let cap = if r.chance(1, 20) { r.below(32) } else { SLOTS };
        let slots = &mut slots[..cap];
        let ctx_of = |level: Level| {
            format!(
                "case {case} (seed {seed}), level {level:?}, {} slots, input b\"{}\"",
                cap,
                esc(&buf)
            )
        };
        let cut = r.below(buf.len() + 1);
        // Prefix checks rotate over the levels.
        let cut_level = levels[case % levels.len()];
        if is_request {
            let base = req_at(Level::Scalar, &buf, slots);
            if let Out::Complete(h, hs) = &base {
                check_request(&buf, h, hs, &|| ctx_of(Level::Scalar));
            }
            for &level in &levels[1..] {
                let got = req_at(level, &buf, slots);
                assert_eq!(got, base, "{} (Scalar gave the right side)", ctx_of(level));
            }
            let p = req_at(cut_level, &buf[..cut], slots);
            check_prefix(&base, cut, &p, &|| ctx_of(cut_level));
            let tally = if is_mutated {
                &mut req_mut
            } else {
                &mut req_gen
            };
            tally.add(&base);
        } else {
            let base = resp_at(Level::Scalar, &buf, slots);
            if let Out::Complete(h, hs) = &base {
                check_response(&buf, h, hs, &|| ctx_of(Level::Scalar));
            }
            for &level in &levels[1..] {
                let got = resp_at(level, &buf, slots);
                assert_eq!(got, base, "{} (Scalar gave the right side)", ctx_of(level));
            }
            let p = resp_at(cut_level, &buf[..cut], slots);
            check_prefix(&base, cut, &p, &|| ctx_of(cut_level));
            let tally = if is_mutated {
                &mut resp_mut
            } else {
                &mut resp_gen
            };
            tally.add(&base);
        }
        compare_scans(&mut r, levels, &buf);
    }
    println!(
        "part 1: {n} heads ({mutated} mutated, {:.1} MB) x levels {levels:?}, seed {seed}, {:.2?}",
        bytes as f64 / 1e6,
        t0.elapsed()
    );
    Tally::print(&mut req_gen, "  requests, generated");
    Tally::print(&mut req_mut, "  requests, mutated");
    Tally::print(&mut resp_gen, "  responses, generated");
    Tally::print(&mut resp_mut, "  responses, mutated");
    let (c, p, e) =
        [&req_gen, &req_mut, &resp_gen, &resp_mut]
            .iter()
            .fold((0, 0, 0), |(c, p, e), t| {
                (
                    c + t.complete,
                    p + t.partial,
                    e + t.errors.iter().map(|x| x.1).sum::<u64>(),
                )
            });
    println!("  total: complete {c}, partial {p}, error {e}");
    // The generator must actually reach each kind of outcome.
    assert!(c > 0 && p > 0 && e > 0, "degenerate generator");
}

// ------------------------------------------------------------- part 2 ---

/// Requests the split tests use: heads with and without bodies.
fn valid_requests() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"\r\n\r\nPOST /x HTTP/1.0\r\nA: b\r\nC:\r\n\r\n".to_vec(),
        b"GET /index.html?q=%E2%9C%93&x=\x80\xff HTTP/1.1\r\n\
          Host: www.example.com\r\n\
          User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
          Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
          Accept-Language: en-US,en;q=0.5\r\n\
          Accept-Encoding: gzip, deflate, br, zstd\r\n\
          Connection: keep-alive\r\n\
          Cookie: sessionid=abcdef0123456789abcdef0123456789; csrftoken=ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210; _ga=GA1.2.1234567890.1234567890\r\n\
          Upgrade-Insecure-Requests: 1\r\n\
          Sec-Fetch-Dest: document\r\n\
          Sec-Fetch-Mode: navigate\r\n\
          Sec-Fetch-Site: none\r\n\
          Priority: u=0, i\r\n\r\n"
            .to_vec(),
        b"POST /api/v1/items HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\nhello world".to_vec(),
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nTE: trailers\r\n\r\n\
          5;name=val;q=\"a\\\"b\"\r\nhello\r\n1A ; ext\r\nabcdefghijklmnopqrstuvwxyz\r\n0;last\r\nX-Checksum: abc\r\nX-T:\t v \r\n\r\n"
            .to_vec(),
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
        b"GET http://example.com/a%20b HTTP/1.0\r\nX-Obs: caf\xc3\xa9 \xff\t\r\nX-Empty:\r\nX-Ws: \t \t\r\n\r\n".to_vec(),
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n".to_vec(),
    ];
    // Values of every length around the 16- and 32-byte SIMD blocks, each
    // at a different alignment within the buffer.
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'p', 40));
    long.extend_from_slice(b" HTTP/1.1\r\n");
    for n in [0, 1, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100] {
        long.extend_from_slice(format!("X-L{n}: ").as_bytes());
        long.extend((0..n).map(|i| {
            if i % 7 == 3 {
                b'\t'
            } else {
                b'a' + (i % 26) as u8
            }
        }));
        long.extend_from_slice(b"\r\n");
    }
    long.extend_from_slice(b"\r\n");
    v.push(long);
    v
}

fn valid_responses() -> Vec<Vec<u8>> {
    vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello".to_vec(),
        b"HTTP/1.1 204\r\n\r\n".to_vec(),
        b"HTTP/1.1 101 \r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(),
        b"HTTP/1.0 404 Not \x80Found\t\r\nServer: x\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n\
          4\r\nWiki\r\n5;a=b\r\npedia\r\n0\r\nX-Sum: 9\r\n\r\n"
            .to_vec(),
    ]
}

/// Generated requests that parse complete, for more variety in the splits.
fn generated_valid_requests(count: usize) -> Vec<Vec<u8>> {
    let mut r = Rng::new(seed() ^ 0x5917);
    let mut slots = vec![HeaderRef::default(); SLOTS];
    let mut out = Vec::new();
    while out.len() < count {
        let buf = gen_request(&mut r);
        if buf.len() < 2000 {
            if let Out::Complete(..) = req_at(Level::Scalar, &buf, &mut slots) {
                out.push(buf);
            }
        }
    }
    out
}

fn split_heads(levels: &[Level]) {
    let t0 = Instant::now();
    let mut slots = vec![HeaderRef::default(); SLOTS];
    let mut requests = valid_requests();
    requests.extend(generated_valid_requests(40));
    let mut prefixes = 0usize;
    for buf in &requests {
        for &level in levels {
            let ctx = format!("level {level:?}, request b\"{}\"", esc(buf));
            let whole = req_at(level, buf, &mut slots);
            let Out::Complete(h, _) = &whole else {
                panic!("{ctx}: not complete: {whole:?}");
            };
            for cut in 0..=buf.len() {
                let p = req_at(level, &buf[..cut], &mut slots);
                let want = if cut < h.len { &Out::Partial } else { &whole };
                assert_eq!(&p, want, "{ctx}: prefix of {cut} bytes (head is {})", h.len);
                prefixes += 1;
            }
        }
    }
    let responses = valid_responses();
    for buf in &responses {
        for &level in levels {
            let ctx = format!("level {level:?}, response b\"{}\"", esc(buf));
            let whole = resp_at(level, buf, &mut slots);
            let Out::Complete(h, _) = &whole else {
                panic!("{ctx}: not complete: {whole:?}");
            };
            for cut in 0..=buf.len() {
                let p = resp_at(level, &buf[..cut], &mut slots);
                let want = if cut < h.len { &Out::Partial } else { &whole };
                assert_eq!(&p, want, "{ctx}: prefix of {cut} bytes (head is {})", h.len);
                prefixes += 1;
            }
        }
    }
    println!(
        "part 2: {} requests, {} responses, {prefixes} prefixes parsed, {:.2?}",
        requests.len(),
        responses.len(),
        t0.elapsed()
    );
}

/// The one test that changes the process-global SIMD level.
#[test]
fn simd_levels_agree_and_every_prefix_is_partial() {
    let detected = simd::level();
    let levels = simd::available();
    assert_eq!(levels[0], Level::Scalar);
    println!("levels {levels:?}, detected {detected:?}");
    random_heads(&levels);
    split_heads(&levels);
    simd::set_level(detected);
}

// ------------------------------------------------------- chunked bodies ---

/// What feeding a body in pieces found.
#[derive(Debug, PartialEq)]
struct Fed {
    consumed: usize,
    done: bool,
    /// Data runs as offsets into the whole input, adjacent runs merged.
    data: Vec<(usize, usize)>,
    data_bytes: u64,
}

/// Feeds `input` cut at `cuts` (ascending) as a caller would: piece after
/// piece until the decoder says the message is done.
fn feed_pieces(input: &[u8], cuts: &[usize], ctx: &dyn Fn() -> String) -> Result<Fed, ChunkError> {
    let mut d = ChunkedDecoder::new();
    let mut data: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let piece = &input[at..end];
        let Progress { consumed, done } = d.feed_with(piece, |s, e| {
            assert!(s < e && e <= piece.len(), "{}: data run {s}..{e}", ctx());
            match data.last_mut() {
                Some(last) if last.1 == at + s => last.1 = at + e,
                _ => data.push((at + s, at + e)),
            }
        })?;
        assert_eq!(done, d.is_done(), "{}: done vs is_done", ctx());
        if done {
            return Ok(Fed {
                consumed: at + consumed,
                done,
                data,
                data_bytes: d.data_bytes,
            });
        }
        assert_eq!(
            consumed,
            piece.len(),
            "{}: not done yet left bytes of the piece {at}..{end}",
            ctx()
        );
        at = end;
    }
    Ok(Fed {
        consumed: at,
        done: false,
        data,
        data_bytes: d.data_bytes,
    })
}

/// Chunked bodies (some followed by the next message's bytes, some broken).
fn chunked_bodies() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: y\r\n\r\nNEXT".to_vec(),
        b"0\r\n\r\n".to_vec(),
        b"000\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        b"5 ; a = \"q\\\"x; y\" ;b;c=d\r\nhello\r\n0\r\n\r\n".to_vec(),
        b"1A ; ext\r\nabcdefghijklmnopqrstuvwxyz\r\n0;last\r\nX-Checksum: abc\r\nX-T:\t v \r\n\r\n"
            .to_vec(),
        b"a\r\n0123456789\r\n1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n".to_vec(),
        b"c\r\n\r\n\r\n\r\n\r\n\r\n\r\n0\r\n\r\n".to_vec(),
        b"00000000000000F;x=\"\xff\t\"\r\n0123456789abcde\r\n0 ;done\r\nA: 1\r\nB: 2\r\nC:\r\n\r\nrest".to_vec(),
        b"3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n".to_vec(),
        // Broken: every split must fail the same way.
        b"5\r\nhelloXX".to_vec(),
        b"5;a=\"abc\r\nhello".to_vec(),
        b"0\r\n folded\r\n\r\n".to_vec(),
        b"5\r\nhello\r\n0\r\nA: b\n\r\n".to_vec(),
        b"10000000000000000\r\n".to_vec(),
        b"2;\r\naa\r\n".to_vec(),
        // Trailer lines held to the head's field-line rules.
        b"0\r\nfoo\r\n\r\n".to_vec(),
        b"0\r\nA : b\r\n\r\n".to_vec(),
        b"0\r\n\x00A: b\r\n\r\n".to_vec(),
        b"0\r\n\xbeA: b\r\n\r\n".to_vec(),
        b"0\r\nA: b\x01\r\n\r\n".to_vec(),
        b"0\r\nA: b\r\n c\r\n\r\n".to_vec(),
        // Whitespace at the end of a size line, after a size or an extension.
        b"5 \r\nhello\r\n0\r\n\r\n".to_vec(),
        b"0;a \r\n\r\n".to_vec(),
        b"1A ; ext \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n".to_vec(),
        b"0;a=\"b\"\t\r\n\r\n".to_vec(),
        // Incomplete: never done.
        b"5\r\nhel".to_vec(),
        b"5\r\nhello\r\n0\r\nX: y\r\n".to_vec(),
    ];
    // A long body with data runs crossing many cut points.
    let mut long = Vec::new();
    for (k, n) in [1usize, 16, 31, 255, 4096].iter().enumerate() {
        long.extend_from_slice(format!("{n:x};k={k}\r\n").as_bytes());
        long.extend((0..*n).map(|i| (i * 7 + k) as u8));
        long.extend_from_slice(b"\r\n");
    }
    long.extend_from_slice(b"0\r\nX-Final: yes\r\n\r\nTAIL");
    v.push(long);
    // Size lines at and past their limit (leading zeros and extensions
    // count alike), and a trailer section past its own.
    let max = lb::http::chunked::MAX_SIZE_LINE as usize;
    for (zeros, ext) in [(max, 0), (max + 1, 0), (max - 8, 7), (max - 8, 8)] {
        let mut b = vec![b'0'; zeros];
        if ext > 0 {
            b.extend_from_slice(b";");
            b.resize(zeros + ext, b'e');
        }
        b.extend_from_slice(b"\r\n\r\n");
        v.push(b);
    }
    let mut t = b"0\r\n".to_vec();
    for _ in 0..100 {
        t.extend_from_slice(b"X-Pad: ");
        t.resize(t.len() + 91, b'p');
        t.extend_from_slice(b"\r\n");
    }
    t.extend_from_slice(b"\r\n");
    v.push(t);
    v
}

/// A random chunked body: sizes in any case with leading zeros, extensions
/// (tokens, quoted strings, whitespace), trailers, and bytes after the end.
fn gen_chunked(r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..r.below(5) {
        let n = if r.chance(1, 10) {
            r.range(100, 600)
        } else {
            r.range(1, 40)
        };
        let zeros = r.below(3);
        out.resize(out.len() + zeros, b'0');
        let hex = if r.chance(1, 2) {
            format!("{n:x}")
        } else {
            format!("{n:X}")
        };
        out.extend_from_slice(hex.as_bytes());
        push_chunk_ext(r, &mut out);
        out.extend_from_slice(b"\r\n");
        r.fill(&mut out, n, &VALUE_DIST);
        out.extend_from_slice(b"\r\n");
    }
    out.push(b'0');
    push_chunk_ext(r, &mut out);
    out.extend_from_slice(b"\r\n");
    for _ in 0..r.below(3) {
        let n = r.range(1, 12);
        r.fill(&mut out, n, &TOKEN_DIST);
        out.extend_from_slice(b": ");
        let n = r.below(20);
        r.fill(&mut out, n, &VALUE_DIST);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if r.chance(1, 3) {
        out.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    }
    out
}

fn push_chunk_ext(r: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..r.below(3) {
        if r.chance(1, 4) {
            out.push(b' ');
        }
        out.push(b';');
        if r.chance(1, 4) {
            out.push(b'\t');
        }
        let n = r.range(1, 8);
        r.fill(out, n, &TOKEN_DIST);
        match r.below(4) {
            0 => {}
            1 => {
                out.push(b'=');
                let n = r.range(1, 8);
                r.fill(out, n, &TOKEN_DIST);
            }
            _ => {
                out.extend_from_slice(if r.chance(1, 2) { b" = \"" } else { b"=\"" });
                for _ in 0..r.below(12) {
                    match r.below(8) {
                        0 => out.extend_from_slice(b"\\\""),
                        1 => out.push(b' '),
                        _ => out.push(*r.pick(ALNUM)),
                    }
                }
                out.push(b'"');
            }
        }
    }
}

#[test]
fn chunked_decoder_split_anywhere_matches_whole() {
    let t0 = Instant::now();
    let mut r = Rng::new(seed() ^ 0xc4c4);
    let mut bodies = chunked_bodies();
    // Chunked bodies of the split-test requests, after their heads.
    let mut slots = vec![HeaderRef::default(); SLOTS];
    for req in valid_requests() {
        if let Ok(Status::Complete(h)) = parse_request(&req, &mut slots) {
            let head = &req[..h.len];
            if head
                .to_ascii_lowercase()
                .windows(7)
                .any(|w| w == b"chunked")
            {
                bodies.push(req[h.len..].to_vec());
            }
        }
    }
    let handwritten = bodies.len();
    // Random ones, half of them mutated: valid or not, every split must
    // agree with the whole.
    for _ in 0..1500 {
        let mut b = gen_chunked(&mut r);
        if r.chance(1, 2) {
            mutate(&mut r, &mut b);
        }
        bodies.push(b);
    }
    let (mut twos, mut threes) = (0usize, 0usize);
    let (mut done, mut failed) = (0usize, 0usize);
    // ChunkedDecoder has no SIMD path: its results do not depend on the level.
    for (k, input) in bodies.iter().enumerate() {
        let e = esc(input);
        let ctx1 = || format!("body b\"{e}\" (level-independent), one piece");
        let whole = feed_pieces(input, &[], &ctx1);
        match &whole {
            Ok(f) if f.done => done += 1,
            Err(_) => failed += 1,
            _ => {}
        }
        if let Ok(f) = &whole {
            let data: Vec<u8> = f
                .data
                .iter()
                .flat_map(|&(s, end)| input[s..end].iter().copied())
                .collect();
            assert_eq!(data.len() as u64, f.data_bytes, "{}", ctx1());
        }
        for cut in 0..=input.len() {
            let ctx = || format!("body b\"{e}\" (level-independent), cut at {cut}");
            let got = feed_pieces(input, &[cut], &ctx);
            assert_eq!(got, whole, "{}", ctx());
            twos += 1;
        }
        let len = input.len();
        let pairs: Vec<(usize, usize)> = if len <= 60 {
            (0..=len)
                .flat_map(|i| (i..=len).map(move |j| (i, j)))
                .collect()
        } else {
            (0..if k < handwritten { 3000 } else { 300 })
                .map(|_| {
                    let (a, b) = (r.below(len + 1), r.below(len + 1));
                    (a.min(b), a.max(b))
                })
                .collect()
        };
        for (i, j) in pairs {
            let ctx = || format!("body b\"{e}\" (level-independent), cuts at {i} and {j}");
            let got = feed_pieces(input, &[i, j], &ctx);
            assert_eq!(got, whole, "{}", ctx());
            threes += 1;
        }
    }
    println!(
        "chunked: {} bodies ({done} done, {failed} errors), {twos} two-piece and {threes} three-piece feeds, {:.2?}",
        bodies.len(),
        t0.elapsed()
    );
}
