//! What each fuzz target checks, as plain functions that panic on a
//! violated property. The fuzz crate (tests/fuzz, `cargo fuzz`) runs them on
//! generated inputs; the stable test tests/fuzz_regressions.rs includes this
//! same file and replays every kept input through them, so a failure found
//! once is checked by `make test` from then on.
//!
//! Targets and their properties:
//! - [`head_parser`]: request and response heads parse the same at every
//!   SIMD level the CPU has as on the scalar twin (result, head fields and
//!   every header span), and so do the raw scans; every prefix of the input
//!   parses as `Partial` up to the point where the whole input's result is
//!   decided and as that same result (complete head or error) from there
//!   on; a complete head keeps the parser's structural promises.
//! - [`chunked`]: the streaming [`ChunkedDecoder`] agrees with [`chunked_ref`],
//!   a small strict RFC 9112 section 7.1 decoder written for this test, on
//!   accept or reject (and which error, at which byte), where the message
//!   ends and the data it carries, whether fed whole, byte by byte, or split
//!   in two at every point.
//! - [`json`]: the JSON parser never panics; it accepts exactly what the
//!   RFC 8259 recogniser [`json_ref_accepts`] accepts; every value's
//!   position points at its first character and an error's at a place in
//!   the text; a parsed document written back and parsed again is the same.
//! - [`config`]: the config loader never panics; every error has a
//!   `line:column` in the text (a value's, for a config that is valid JSON)
//!   and says it as `FILE:LINE:COL:`; `load` of a file gives what
//!   `parse_str` of its text gives (or `NotUtf8` at the first bad byte); an
//!   accepted config is within its documented limits and reads back the
//!   same when written out again.
//! - [`cli`]: the argument parser never panics and is deterministic; an
//!   accepted command line is within the limits (1..=64 backends, valid
//!   hosts, ports, workers); `--help` and `--version` win as documented, and
//!   `--check` turns a run into a check of the same configuration.
//! - [`dns`]: the DNS answer parser never panics and is deterministic, asked
//!   the question the message itself carries; an answer it accepts is
//!   bounded and consistent (addresses of the family asked and present in
//!   the bytes, SRV only for SRV, names that can be asked, a TTL within its
//!   cap); every prefix of the message is an error or the same answer; the
//!   resolv.conf and hosts parsers, fed the bytes as text, stay within their
//!   limits.
//!
//! Long inputs are reachable through [`expand`]: an input starting with
//! 0xFF is run-length coded, so the fuzzer can cross the 4 KiB and 8 KiB
//! limits of the parser and decoder without mutating 8 KiB inputs.

#![allow(clippy::manual_range_contains)]

use lb::config::file::{self, ConfigError, FileConfig};
use lb::config::json::{self, Json, Pos, Value};
use lb::http::chunked::{ChunkError, ChunkedDecoder, MAX_SIZE_LINE, MAX_TRAILER_BYTES};
use lb::http::simd::{self, Class, Level};
use lb::http::{
    framing, parse_request, parse_response, HeaderRef, ParseError, RequestHead, ResponseHead,
    Status,
};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Every target, as `make fuzz` and the replay test name them.
pub const TARGETS: [&str; 6] = ["head", "chunked", "json", "config", "cli", "dns"];

/// Runs the check of `target` on `data`.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "head" => head_parser(data),
        "chunked" => chunked(data),
        "json" => json(data),
        "config" => config(data),
        "cli" => cli(data),
        "dns" => dns(data),
        _ => panic!("unknown fuzz target {target:?}"),
    }
}

// ------------------------------------------------------------ inputs ---

/// Largest expanded input.
const EXPANDED_MAX: usize = 64 * 1024;

/// The bytes a target reads from the fuzzer's `data`: `data` itself, unless
/// it starts with 0xFF. Then the rest is copied, except that `0xFF n b`
/// stands for `(n + 1) * 64` copies of `b` (an incomplete escape at the end
/// is dropped), up to 64 KiB in all.
pub fn expand(data: &[u8]) -> Cow<'_, [u8]> {
    let Some(rest) = data.strip_prefix(&[0xFF]) else {
        return Cow::Borrowed(data);
    };
    let mut out = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() && out.len() < EXPANDED_MAX {
        if rest[i] == 0xFF {
            let (Some(&n), Some(&b)) = (rest.get(i + 1), rest.get(i + 2)) else {
                break;
            };
            let run = ((n as usize + 1) * 64).min(EXPANDED_MAX - out.len());
            out.resize(out.len() + run, b);
            i += 3;
        } else {
            out.push(rest[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

/// `b"..."` for assertion messages, shortened.
fn esc(buf: &[u8]) -> String {
    let mut s = String::new();
    for &b in buf.iter().take(300) {
        s.extend(std::ascii::escape_default(b).map(char::from));
    }
    if buf.len() > 300 {
        s.push_str(&format!("... ({} bytes)", buf.len()));
    }
    s
}

/// RFC 9110 5.6.2 `tchar`, written out (not the parser's table).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 5.5 field-value bytes: VCHAR, obs-text, SP and HTAB.
fn is_field_byte(b: u8) -> bool {
    b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

// ------------------------------------------------------- head parser ---

/// `simd::set_level` is process-global: one check at a time changes it.
static LEVEL_LOCK: Mutex<()> = Mutex::new(());

fn levels() -> &'static [Level] {
    static LEVELS: OnceLock<Vec<Level>> = OnceLock::new();
    LEVELS.get_or_init(|| {
        let l = simd::available();
        assert_eq!(l[0], Level::Scalar);
        l
    })
}

/// A parse result with the headers it filled, comparable across levels.
#[derive(Clone, Debug, PartialEq)]
enum Out<H> {
    Complete(H, Vec<HeaderRef>),
    Partial,
    Err(ParseError),
}

fn request_at(level: Level, buf: &[u8], slots: &mut [HeaderRef]) -> Out<RequestHead> {
    simd::set_level(level);
    match parse_request(buf, slots) {
        Ok(Status::Complete(h)) => Out::Complete(h, slots[..h.header_count].to_vec()),
        Ok(Status::Partial) => Out::Partial,
        Err(e) => Out::Err(e),
    }
}

fn response_at(level: Level, buf: &[u8], slots: &mut [HeaderRef]) -> Out<ResponseHead> {
    simd::set_level(level);
    match parse_response(buf, slots) {
        Ok(Status::Complete(h)) => Out::Complete(h, slots[..h.header_count].to_vec()),
        Ok(Status::Partial) => Out::Partial,
        Err(e) => Out::Err(e),
    }
}

/// The prefix lengths checked for an input of `n` bytes whose result is
/// decided at `p`: all of them for short inputs; else the short ones, those
/// around `p` and `n`, and an even spread, as many as keep the bytes parsed
/// near 32 KiB (the fuzzer's speed).
fn prefix_lengths(n: usize, p: Option<usize>) -> Vec<usize> {
    if n <= 192 {
        return (0..=n).collect();
    }
    let mut v: Vec<usize> = (0..=32).collect();
    let spread = (32768 / n).clamp(4, 64);
    v.extend((1..spread).map(|k| k * n / spread));
    for c in [p, Some(n)].into_iter().flatten() {
        v.extend(c.saturating_sub(4)..=(c + 4).min(n));
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Checks one direction (request or response) of the head parser on `buf`.
fn head_direction<H: Copy + std::fmt::Debug + PartialEq>(
    what: &str,
    buf: &[u8],
    slots: &mut [HeaderRef],
    parse_at: fn(Level, &[u8], &mut [HeaderRef]) -> Out<H>,
    len_of: fn(&H) -> usize,
) -> Out<H> {
    let whole = parse_at(Level::Scalar, buf, slots);
    for &level in &levels()[1..] {
        let got = parse_at(level, buf, slots);
        assert_eq!(
            got,
            whole,
            "{what} at {level:?} vs scalar on b\"{}\"",
            esc(buf)
        );
    }
    // Where the result is decided: the smallest prefix that is not Partial.
    // For a complete head that is its length; otherwise found by bisection
    // (the sweep below checks that the results are monotone).
    let p = match &whole {
        Out::Partial => None,
        Out::Complete(h, _) => Some(len_of(h)),
        Out::Err(_) => {
            let (mut lo, mut hi) = (0, buf.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                if parse_at(Level::Scalar, &buf[..mid], slots) == Out::Partial {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            Some(lo)
        }
    };
    // Each prefix at one level, taking the levels in turn: every level
    // sees prefixes of every length modulo the level count, at a third of
    // the cost.
    let all = levels();
    for k in prefix_lengths(buf.len(), p) {
        let want = match p {
            Some(p) if k >= p => &whole,
            _ => &Out::Partial,
        };
        let level = all[k % all.len()];
        let got = parse_at(level, &buf[..k], slots);
        assert_eq!(
            &got,
            want,
            "{what} at {level:?}: prefix of {k} bytes (decided at {p:?}) of b\"{}\"",
            esc(buf)
        );
    }
    whole
}

/// Checks the header lines of a complete head: from `first` (just after the
/// start line) to `len`, each `name: value` line contiguous and well formed.
fn check_header_lines(buf: &[u8], first: usize, len: usize, headers: &[HeaderRef], ctx: &str) {
    assert!(
        len <= buf.len() && len <= lb::config::MAX_HEADER_BYTES,
        "{ctx}: len {len}"
    );
    assert!(
        buf[..len].ends_with(b"\r\n\r\n"),
        "{ctx}: head does not end in CRLF CRLF"
    );
    let mut at = first;
    for h in headers {
        let (ls, le) = (h.line.start as usize, h.line.end as usize);
        assert_eq!(ls, at, "{ctx}: header lines are not contiguous");
        assert!(
            le <= len && buf[ls..le].ends_with(b"\r\n"),
            "{ctx}: line {ls}..{le}"
        );
        let (ns, ne) = (h.name.start as usize, h.name.end as usize);
        assert!(ns == ls && ne > ns, "{ctx}: name {ns}..{ne}");
        assert!(
            buf[ns..ne].iter().all(|&b| is_tchar(b)),
            "{ctx}: name bytes"
        );
        assert_eq!(buf[ne], b':', "{ctx}: no colon after the name");
        let (vs, ve) = (h.value.start as usize, h.value.end as usize);
        assert!(
            ne < vs && vs <= ve && ve <= le - 2,
            "{ctx}: value {vs}..{ve}"
        );
        let ows = |s: &[u8]| s.iter().all(|&b| b == b' ' || b == b'\t');
        assert!(ows(&buf[ne + 1..vs]) && ows(&buf[ve..le - 2]), "{ctx}: OWS");
        let v = &buf[vs..ve];
        assert!(v.iter().all(|&b| is_field_byte(b)), "{ctx}: value bytes");
        if let (Some(a), Some(z)) = (v.first(), v.last()) {
            assert!(!ows(&[*a]) && !ows(&[*z]), "{ctx}: value not trimmed");
        }
        at = le;
    }
    assert_eq!(at + 2, len, "{ctx}: the empty line does not end the head");
}

/// Head parser: every SIMD level against the scalar twin, every prefix, and
/// the structure of complete heads (see the module comment).
pub fn head_parser(data: &[u8]) {
    let buf = expand(data);
    let buf = &buf[..];
    let _guard = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let detected = simd::level();
    // Header slots: the proxy's 256 for even lengths, 8 for odd ones (to
    // reach TooManyHeaders with short inputs).
    let mut slots = vec![HeaderRef::default(); if buf.len() & 1 == 0 { 256 } else { 8 }];

    // The raw scans, from a few starting points.
    for from in [0, 1, 5, 16, 31, 33, buf.len() / 2, buf.len()] {
        for class in [Class::Value, Class::Target] {
            let want = simd::scalar(buf, from.min(buf.len()), class);
            for &level in &levels()[1..] {
                let got = simd::scan_with(level, buf, from, class);
                assert_eq!(
                    got,
                    want,
                    "scan_with({level:?}, {class:?}, {from}) on b\"{}\"",
                    esc(buf)
                );
            }
        }
    }

    let req = head_direction("request", buf, &mut slots, request_at, |h| h.len);
    if let Out::Complete(h, headers) = &req {
        let ctx = format!("request b\"{}\"", esc(buf));
        assert!(
            h.start <= h.method.start as usize && h.method.start < h.method.end,
            "{ctx}"
        );
        let method = h.method.of(buf);
        assert!(method.iter().all(|&b| is_tchar(b)), "{ctx}: method");
        assert_eq!(buf[h.method.end as usize], b' ', "{ctx}");
        assert_eq!(h.target.start, h.method.end + 1, "{ctx}");
        assert!(!h.target.is_empty(), "{ctx}: empty target");
        assert!(
            h.target.of(buf).iter().all(|&b| b > 0x20 && b != 0x7f),
            "{ctx}: target"
        );
        let version = &buf[h.target.end as usize..h.target.end as usize + 11];
        let want: &[u8] = if h.minor == 1 {
            b" HTTP/1.1\r\n"
        } else {
            b" HTTP/1.0\r\n"
        };
        assert_eq!(version, want, "{ctx}: version");
        assert!(
            buf[..h.start].chunks(2).all(|c| c == b"\r\n"),
            "{ctx}: leading lines"
        );
        check_header_lines(buf, h.target.end as usize + 11, h.len, headers, &ctx);
        // Framing must not panic, whatever it decides.
        simd::set_level(detected);
        let _ = framing::request_meta(buf, h, headers);
    }
    let resp = head_direction("response", buf, &mut slots, response_at, |h| h.len);
    if let Out::Complete(h, headers) = &resp {
        let ctx = format!("response b\"{}\"", esc(buf));
        assert!(
            buf.starts_with(b"HTTP/1.1 ") || buf.starts_with(b"HTTP/1.0 "),
            "{ctx}"
        );
        assert_eq!(h.minor, buf[7] - b'0', "{ctx}: minor");
        assert!(
            (100..=999).contains(&h.status),
            "{ctx}: status {}",
            h.status
        );
        assert_eq!(
            &buf[9..12],
            h.status.to_string().as_bytes(),
            "{ctx}: status digits"
        );
        let reason_end = h.reason.end as usize;
        assert!(
            h.reason.of(buf).iter().all(|&b| is_field_byte(b)),
            "{ctx}: reason"
        );
        assert_eq!(
            &buf[reason_end..reason_end + 2],
            b"\r\n",
            "{ctx}: status line end"
        );
        check_header_lines(buf, reason_end + 2, h.len, headers, &ctx);
        simd::set_level(detected);
        for was_head in [false, true] {
            let _ = framing::response_meta(buf, h, headers, was_head);
        }
    }
    simd::set_level(detected);
}

// ---------------------------------------------------- chunked decoder ---

/// How the reference decoder ends on an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefEnd {
    /// A complete body: its length (bytes after it belong to the next message).
    Done(usize),
    /// A valid beginning: more bytes are needed.
    More,
    /// The first byte at which no continuation can be valid, and why.
    Bad(usize, ChunkError),
}

/// Why the reference stopped reading.
enum Stop {
    More,
    Bad(usize, ChunkError),
}

type RefResult<T> = Result<T, Stop>;

/// The reference: RFC 9112 section 7.1 read top-down from a whole buffer.
///
/// ```text
/// chunked-body   = *chunk last-chunk trailer-section CRLF
/// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-size     = 1*HEXDIG
/// last-chunk     = 1*("0") [ chunk-ext ] CRLF
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-val  = token / quoted-string
/// trailer-section = *( field-line CRLF )
/// field-line     = field-name ":" OWS field-value OWS
/// ```
///
/// Plus the decoder's documented bounds: a size (as a number) over 64 bits
/// is refused at the digit that overflows; a chunk-size line of more than
/// [`MAX_SIZE_LINE`] bytes before its CR at its first byte past the limit,
/// and a trailer section (final CRLF included) of more than
/// [`MAX_TRAILER_BYTES`] likewise; a limit is reported before whatever that
/// byte would otherwise mean. The error kinds: `BadSize` for the size and
/// the size line's own CRLF and for whitespace after the size not followed
/// by `;`, `BadExtension` inside the extensions, `MissingCrlf` after data,
/// and the trailer kinds by what the byte is.
struct Reference<'a> {
    b: &'a [u8],
    i: usize,
    data: Vec<u8>,
    /// Index of the first byte past the size line's limit, in a size line.
    line_limit: Option<usize>,
    /// Index of the first byte past the trailer limit, in the trailers.
    trailer_limit: Option<usize>,
}

impl Reference<'_> {
    fn bad<T>(&self, kind: ChunkError) -> RefResult<T> {
        Err(Stop::Bad(self.i, kind))
    }

    /// The byte at `at` (>= `self.i`), with the limits applied.
    fn byte_at(&self, at: usize) -> RefResult<u8> {
        let b = *self.b.get(at).ok_or(Stop::More)?;
        if self.line_limit == Some(at) && b != b'\r' {
            return Err(Stop::Bad(at, ChunkError::SizeLineTooLong));
        }
        if self.trailer_limit.is_some_and(|l| at >= l) {
            return Err(Stop::Bad(at, ChunkError::TrailersTooLong));
        }
        Ok(b)
    }

    fn peek(&self) -> RefResult<u8> {
        self.byte_at(self.i)
    }

    /// Skips SP and HTAB; how many.
    fn skip_ws(&mut self) -> RefResult<usize> {
        let start = self.i;
        while matches!(self.peek()?, b' ' | b'\t') {
            self.i += 1;
        }
        Ok(self.i - start)
    }

    /// Skips a token; its length.
    fn token(&mut self) -> RefResult<usize> {
        let start = self.i;
        while is_tchar(self.peek()?) {
            self.i += 1;
        }
        Ok(self.i - start)
    }

    /// quoted-string (RFC 9110 5.6.4); the cursor is on the opening quote.
    fn quoted_string(&mut self) -> RefResult<()> {
        self.i += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.i += 1;
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    if !is_field_byte(self.peek()?) {
                        return self.bad(ChunkError::BadExtension);
                    }
                    self.i += 1;
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                b if is_field_byte(b) => self.i += 1,
                _ => return self.bad(ChunkError::BadExtension),
            }
        }
    }

    /// chunk-size [ chunk-ext ] CRLF; the size.
    fn size_line(&mut self) -> RefResult<u64> {
        self.line_limit = Some(self.i + MAX_SIZE_LINE as usize);
        let mut size: u64 = 0;
        let mut digits = 0;
        while let Some(d) = (self.peek()? as char).to_digit(16) {
            size = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(d as u64))
                .ok_or(Stop::Bad(self.i, ChunkError::SizeOverflow))?;
            self.i += 1;
            digits += 1;
        }
        if digits == 0 {
            return self.bad(ChunkError::BadSize);
        }
        // Until the first `;`, a wrong byte is a bad size line.
        let mut wrong = ChunkError::BadSize;
        loop {
            let ws = self.skip_ws()?;
            match self.peek()? {
                b';' => {
                    self.i += 1;
                    wrong = ChunkError::BadExtension;
                }
                b'\r' if ws == 0 => break,
                _ => return self.bad(wrong),
            }
            self.skip_ws()?;
            if self.token()? == 0 {
                return self.bad(ChunkError::BadExtension);
            }
            // [ BWS "=" BWS chunk-ext-val ]: the BWS is this extension's only
            // if an `=` follows it.
            let mut j = self.i;
            while matches!(self.byte_at(j)?, b' ' | b'\t') {
                j += 1;
            }
            if self.byte_at(j)? == b'=' {
                self.i = j + 1;
                self.skip_ws()?;
                if self.peek()? == b'"' {
                    self.quoted_string()?;
                } else if self.token()? == 0 {
                    return self.bad(ChunkError::BadExtension);
                }
            }
        }
        self.i += 1; // CR
        if self.peek()? != b'\n' {
            return self.bad(ChunkError::BadSize);
        }
        self.i += 1;
        self.line_limit = None;
        Ok(size)
    }

    /// chunk-data CRLF.
    fn chunk_data(&mut self, size: u64) -> RefResult<()> {
        let left = self.b.len() - self.i;
        if (left as u64) < size {
            self.data.extend_from_slice(&self.b[self.i..]);
            self.i = self.b.len();
            return Err(Stop::More);
        }
        let end = self.i + size as usize;
        self.data.extend_from_slice(&self.b[self.i..end]);
        self.i = end;
        for want in *b"\r\n" {
            if self.peek()? != want {
                return self.bad(ChunkError::MissingCrlf);
            }
            self.i += 1;
        }
        Ok(())
    }

    /// CRLF at the end of a trailer line or of the section.
    fn line_end(&mut self) -> RefResult<()> {
        self.i += 1; // CR
        if self.peek()? != b'\n' {
            return self.bad(ChunkError::TrailerLineEnding);
        }
        self.i += 1;
        Ok(())
    }

    /// trailer-section CRLF.
    fn trailers(&mut self) -> RefResult<()> {
        self.trailer_limit = Some(self.i + MAX_TRAILER_BYTES as usize);
        loop {
            match self.peek()? {
                b'\r' => return self.line_end(),
                b'\n' => return self.bad(ChunkError::TrailerLineEnding),
                b' ' | b'\t' => return self.bad(ChunkError::TrailerObsFold),
                _ => {}
            }
            if self.token()? == 0 {
                return self.bad(ChunkError::TrailerName);
            }
            match self.peek()? {
                b':' => self.i += 1,
                b' ' | b'\t' => return self.bad(ChunkError::TrailerWhitespaceBeforeColon),
                _ => return self.bad(ChunkError::TrailerName),
            }
            // OWS field-value OWS: any run of field-value bytes.
            while is_field_byte(self.peek()?) {
                self.i += 1;
            }
            match self.peek()? {
                b'\r' => self.line_end()?,
                b'\n' => return self.bad(ChunkError::TrailerLineEnding),
                _ => return self.bad(ChunkError::TrailerValue),
            }
        }
    }

    fn body(&mut self) -> RefResult<()> {
        loop {
            let size = self.size_line()?;
            if size == 0 {
                return self.trailers();
            }
            self.chunk_data(size)?;
        }
    }
}

/// The reference decoder: how `input` ends, and the chunk data read.
pub fn chunked_ref(input: &[u8]) -> (RefEnd, Vec<u8>) {
    let mut r = Reference {
        b: input,
        i: 0,
        data: Vec::new(),
        line_limit: None,
        trailer_limit: None,
    };
    let end = match r.body() {
        Ok(()) => RefEnd::Done(r.i),
        Err(Stop::More) => RefEnd::More,
        Err(Stop::Bad(at, kind)) => RefEnd::Bad(at, kind),
    };
    (end, r.data)
}

/// What the decoder did with `input` fed in pieces ending at `cuts`.
#[derive(Debug, PartialEq)]
struct Fed {
    end: RefEnd,
    data: Vec<u8>,
}

/// Feeds `input` to a new decoder, cut before each index of `cuts`
/// (ascending), as a reader would; the byte an error came at is the first
/// of the piece that failed when pieces are single bytes, else `at` is the
/// start of the failing piece.
fn feed(input: &[u8], cuts: &[usize], ctx: &dyn Fn() -> String) -> Fed {
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut at = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let piece = &input[at..end];
        let r = d.feed_with(piece, |s, e| {
            assert!(s < e && e <= piece.len(), "{}: data run {s}..{e}", ctx());
            data.extend_from_slice(&piece[s..e]);
        });
        match r {
            Err(kind) => {
                assert_eq!(d.data_bytes, data.len() as u64, "{}: data_bytes", ctx());
                return Fed {
                    end: RefEnd::Bad(at, kind),
                    data,
                };
            }
            Ok(p) => {
                assert_eq!(p.done, d.is_done(), "{}: done vs is_done", ctx());
                assert!(p.consumed <= piece.len(), "{}: consumed", ctx());
                if p.done {
                    assert_eq!(d.data_remaining(), 0, "{}", ctx());
                    // Fed again after the end, it reads nothing.
                    let again = d.feed(b"0\r\n\r\n").expect("feed after the end");
                    assert!(again.done && again.consumed == 0, "{}: after done", ctx());
                    assert_eq!(d.data_bytes, data.len() as u64, "{}: data_bytes", ctx());
                    return Fed {
                        end: RefEnd::Done(at + p.consumed),
                        data,
                    };
                }
                assert_eq!(p.consumed, piece.len(), "{}: stopped early", ctx());
            }
        }
        at = end;
    }
    assert_eq!(d.data_bytes, data.len() as u64, "{}: data_bytes", ctx());
    Fed {
        end: RefEnd::More,
        data,
    }
}

/// Chunked decoder against the reference, whole, byte by byte and split.
pub fn chunked(data: &[u8]) {
    let input = expand(data);
    let input = &input[..];
    let ctx = || format!("b\"{}\"", esc(input));
    let (want_end, want_data) = chunked_ref(input);

    // Byte by byte: the error comes at the very byte the reference names.
    let bytes: Vec<usize> = (1..input.len()).collect();
    let got = feed(input, &bytes, &|| format!("byte by byte, {}", ctx()));
    let want = Fed {
        end: want_end.clone(),
        data: want_data.clone(),
    };
    assert_eq!(got, want, "byte by byte vs reference, {}", ctx());

    // Whole, and split in two: the same, the error only located to the
    // piece that failed.
    let located = |cut: Option<usize>| match &want_end {
        RefEnd::Bad(at, kind) => match cut {
            Some(c) if *at >= c => RefEnd::Bad(c, *kind),
            _ => RefEnd::Bad(0, *kind),
        },
        other => other.clone(),
    };
    let got = feed(input, &[], &|| format!("whole, {}", ctx()));
    assert_eq!(
        got,
        Fed {
            end: located(None),
            data: want_data.clone()
        },
        "whole vs reference, {}",
        ctx()
    );
    let n = input.len();
    let cuts: Vec<usize> = if n <= 256 {
        (0..=n).collect()
    } else {
        // As many spread cuts as keep the bytes fed near 64 KiB.
        let spread = (65536 / n).clamp(4, 64);
        let mut v: Vec<usize> = (0..=16).chain(n - 16..=n).collect();
        v.extend((1..spread).map(|k| k * n / spread));
        if let RefEnd::Bad(at, _) | RefEnd::Done(at) = want_end {
            v.extend(at.saturating_sub(4)..=(at + 4).min(n));
        }
        v
    };
    for cut in cuts {
        let got = feed(input, &[cut], &|| format!("cut at {cut}, {}", ctx()));
        assert_eq!(
            got,
            Fed {
                end: located(Some(cut)),
                data: want_data.clone()
            },
            "cut at {cut} vs reference, {}",
            ctx()
        );
    }
}

// --------------------------------------------------------------- JSON ---

/// The input as text: JSON and config take `&str`; other bytes are replaced.
fn text_of(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The text JSON positions are counted in: without a leading BOM (which the
/// parser skips without counting it).
fn positioned(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The character at `pos`, `Some(None)` just past the end of a line or of
/// the text, `None` if `pos` is not in the text.
fn char_at(text: &str, pos: Pos) -> Option<Option<char>> {
    let line = positioned(text)
        .split('\n')
        .nth((pos.line as usize).checked_sub(1)?)?;
    let col = (pos.col as usize).checked_sub(1)?;
    let mut chars = line.chars();
    match chars.nth(col) {
        Some(c) => Some(Some(c)),
        None if line.chars().count() == col => Some(None),
        None => None,
    }
}

/// Whether `c` can begin a JSON value.
fn starts_value(c: char) -> bool {
    matches!(c, '{' | '[' | '"' | '-' | '0'..='9' | 't' | 'f' | 'n')
}

/// An RFC 8259 recogniser, written for this test: whether `text` is one
/// JSON value with optional whitespace around it, a leading BOM allowed,
/// nesting at most [`json::MAX_DEPTH`] deep, every number finite as an
/// `f64`, and every `\u` escape of a surrogate half paired.
pub fn json_ref_accepts(text: &str) -> bool {
    struct R<'a> {
        b: &'a [u8],
        i: usize,
    }
    impl R<'_> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }
        fn eat(&mut self, c: u8) -> bool {
            let ok = self.peek() == Some(c);
            self.i += ok as usize;
            ok
        }
        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }
        fn digits(&mut self) -> usize {
            let s = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            self.i - s
        }
        fn number(&mut self) -> bool {
            let s = self.i;
            self.eat(b'-');
            if !self.eat(b'0') && (!matches!(self.peek(), Some(b'1'..=b'9')) || self.digits() == 0)
            {
                return false;
            }
            if self.eat(b'.') && self.digits() == 0 {
                return false;
            }
            if self.eat(b'e') || self.eat(b'E') {
                if !self.eat(b'+') {
                    self.eat(b'-');
                }
                if self.digits() == 0 {
                    return false;
                }
            }
            let text = std::str::from_utf8(&self.b[s..self.i]).unwrap_or("x");
            text.parse::<f64>().is_ok_and(f64::is_finite)
        }
        fn hex4(&mut self) -> Option<u16> {
            let h = self.b.get(self.i..self.i + 4)?;
            let s = std::str::from_utf8(h).ok()?;
            if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            self.i += 4;
            u16::from_str_radix(s, 16).ok()
        }
        fn string(&mut self) -> bool {
            if !self.eat(b'"') {
                return false;
            }
            loop {
                match self.peek() {
                    None => return false,
                    Some(b'"') => {
                        self.i += 1;
                        return true;
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        match self.peek() {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                                self.i += 1
                            }
                            Some(b'u') => {
                                self.i += 1;
                                let Some(u) = self.hex4() else { return false };
                                if (0xDC00..=0xDFFF).contains(&u) {
                                    return false;
                                }
                                if (0xD800..=0xDBFF).contains(&u) {
                                    if !(self.eat(b'\\') && self.eat(b'u')) {
                                        return false;
                                    }
                                    match self.hex4() {
                                        Some(lo) if (0xDC00..=0xDFFF).contains(&lo) => {}
                                        _ => return false,
                                    }
                                }
                            }
                            _ => return false,
                        }
                    }
                    Some(c) if c < 0x20 => return false,
                    Some(_) => self.i += 1,
                }
            }
        }
        /// A value at nesting `depth` (containers around it).
        fn value(&mut self, depth: usize) -> bool {
            match self.peek() {
                Some(b'{') | Some(b'[') if depth == json::MAX_DEPTH => false,
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b'}') {
                        return true;
                    }
                    loop {
                        self.ws();
                        if !self.string() {
                            return false;
                        }
                        self.ws();
                        if !self.eat(b':') {
                            return false;
                        }
                        self.ws();
                        if !self.value(depth + 1) {
                            return false;
                        }
                        self.ws();
                        if self.eat(b'}') {
                            return true;
                        }
                        if !self.eat(b',') {
                            return false;
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b']') {
                        return true;
                    }
                    loop {
                        self.ws();
                        if !self.value(depth + 1) {
                            return false;
                        }
                        self.ws();
                        if self.eat(b']') {
                            return true;
                        }
                        if !self.eat(b',') {
                            return false;
                        }
                    }
                }
                Some(b'"') => self.string(),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => ["true", "false", "null"].iter().any(|w| {
                    let ok = self.b[self.i..].starts_with(w.as_bytes());
                    self.i += if ok { w.len() } else { 0 };
                    ok
                }),
            }
        }
    }
    let mut r = R {
        b: positioned(text).as_bytes(),
        i: 0,
    };
    r.ws();
    if !r.value(0) {
        return false;
    }
    r.ws();
    r.i == r.b.len()
}

/// Writes a parsed value back as JSON.
fn write_json(v: &Json, out: &mut String) {
    match &v.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (v.as_i64(), v.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            // `{:?}` of a finite f64 is a JSON number that reads back exactly.
            _ => out.push_str(&format!("{n:?}")),
        },
        Value::String(s) => write_json_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(k, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The same document, positions aside.
fn same_json(a: &Json, b: &Json) -> bool {
    match (&a.value, &b.value) {
        (Value::Number(x), Value::Number(y)) => {
            x == y && a.as_i64() == b.as_i64() && a.as_u64() == b.as_u64()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k, p), (l, q))| k == l && same_json(p, q))
        }
        (x, y) => x == y,
    }
}

/// Every value's position points at its first character.
fn check_positions(text: &str, v: &Json, depth: usize) {
    let c = char_at(text, v.pos);
    assert!(
        matches!(c, Some(Some(c)) if starts_value(c)),
        "value {} at {} points at {c:?} in {text:?}",
        v.type_name(),
        v.pos
    );
    assert!(depth <= json::MAX_DEPTH, "nested {depth} deep");
    match &v.value {
        Value::Array(items) => items
            .iter()
            .for_each(|i| check_positions(text, i, depth + 1)),
        Value::Object(members) => members
            .iter()
            .for_each(|(_, i)| check_positions(text, i, depth + 1)),
        _ => {}
    }
}

/// JSON parser: no panic, the recogniser's verdict, positions, round trip.
pub fn json(data: &[u8]) {
    let text = text_of(data);
    let text = &text[..];
    let parsed = json::parse(text);
    assert_eq!(
        parsed.is_ok(),
        json_ref_accepts(text),
        "parser vs recogniser on {text:?}: {parsed:?}"
    );
    match parsed {
        Err(e) => {
            assert!(
                char_at(text, e.pos).is_some(),
                "error position {} outside {text:?}: {e}",
                e.pos
            );
            assert!(e.to_string().starts_with(&e.pos.to_string()), "{e}");
        }
        Ok(v) => {
            check_positions(text, &v, 0);
            let mut out = String::new();
            write_json(&v, &mut out);
            let again = json::parse(&out).unwrap_or_else(|e| panic!("{out:?} written back: {e}"));
            assert!(same_json(&v, &again), "{text:?} read back as {out:?}");
        }
    }
}

// ------------------------------------------------------------- config ---

/// A file of this process's own under the temp dir.
fn scratch_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lb-fuzz-{}-{name}", std::process::id()))
}

/// Writes a config back as the JSON the loader reads.
fn write_config(c: &FileConfig) -> String {
    let mut s = String::from("{\"backends\": [");
    for (i, b) in c.backends.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        // The scheme keeps `tls` as it was whatever the port.
        let scheme = if b.tls { "https://" } else { "http://" };
        let host = if b.host.contains(':') {
            format!("{scheme}[{}]", b.host)
        } else {
            format!("{scheme}{}", b.host)
        };
        s.push_str("{\"host\": ");
        write_json_str(&host, &mut s);
        s.push_str(&format!(
            ", \"port\": {}, \"weight\": {}, \"tls\": {}}}",
            b.port, b.weight, b.tls
        ));
    }
    s.push(']');
    if let Some(st) = c.strategy {
        s.push_str(&format!(", \"strategy\": \"{st}\""));
    }
    let h = &c.health;
    s.push_str(&format!(
        ", \"health\": {{\"unhealthy_threshold\": {}, \"healthy_threshold\": {}, \
         \"probe_interval_ms\": {}, \"probe_timeout_ms\": {}, \"health_path\": ",
        h.unhealthy_threshold, h.healthy_threshold, h.probe_interval_ms, h.probe_timeout_ms
    ));
    write_json_str(&h.health_path, &mut s);
    let t = &c.timeouts;
    s.push_str(&format!(
        "}}, \"timeouts\": {{\"client_header_ms\": {}, \"client_idle_ms\": {}, \
         \"upstream_connect_ms\": {}, \"upstream_response_ms\": {}, \"body_progress_ms\": {}}}",
        t.client_header.as_millis(),
        t.client_idle.as_millis(),
        t.upstream_connect.as_millis(),
        t.upstream_response.as_millis(),
        t.body_progress.as_millis()
    ));
    let mode = |m: lb::config::HeaderMode| match m {
        lb::config::HeaderMode::Append => "append",
        lb::config::HeaderMode::Replace => "replace",
        lb::config::HeaderMode::Off => "off",
    };
    let f = &c.forwarded;
    s.push_str(&format!(
        ", \"forwarded\": {{\"x_forwarded_for\": \"{}\", \"x_forwarded_proto\": \"{}\", \
         \"forwarded\": \"{}\"}}, \"max_body_bytes\": {}",
        mode(f.x_forwarded_for),
        mode(f.x_forwarded_proto),
        mode(f.forwarded),
        c.max_body_bytes
    ));
    if let Some(ca) = &c.ca_file {
        s.push_str(", \"ca_file\": ");
        write_json_str(ca.to_str().expect("ca_file came from a string"), &mut s);
    }
    if let Some(p) = &c.pid_file {
        s.push_str(", \"pid_file\": ");
        write_json_str(p.to_str().expect("pid_file came from a string"), &mut s);
    }
    if c.pool_max_conn != lb::config::DEFAULT_POOL_MAX_CONN {
        s.push_str(&format!(", \"pool_max_conn\": {}", c.pool_max_conn));
    }
    if c.max_connections != 0 {
        s.push_str(&format!(", \"max_connections\": {}", c.max_connections));
    }
    if !c.trusted_client_headers.is_empty() {
        s.push_str(", \"trusted_client_headers\": [");
        for (i, h) in c.trusted_client_headers.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            write_json_str(h, &mut s);
        }
        s.push(']');
    }
    if let Some(m) = c.metrics_on_traffic_port {
        s.push_str(&format!(", \"metrics_on_traffic_port\": {m}"));
    }
    s.push('}');
    s
}

/// The position just past `text`, counted independently of the loader.
fn end_of(text: &str) -> Pos {
    let line = text.matches('\n').count() as u32 + 1;
    let col = text.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
    Pos { line, col }
}

/// Checks one config error on `text` read as `path`.
fn check_config_error(e: &ConfigError, text: &str, path: &Path) {
    let msg = e.to_string();
    assert_eq!(e.path(), path, "{msg}");
    let pos = e
        .pos()
        .unwrap_or_else(|| panic!("no line:column in {msg:?} for {text:?}"));
    let prefix = format!("{}:{}:{}: ", path.display(), pos.line, pos.col);
    assert!(
        msg.starts_with(&prefix),
        "{msg:?} does not start with {prefix:?}"
    );
    let at = char_at(text, pos);
    assert!(at.is_some(), "{msg}: position outside {text:?}");
    match e {
        ConfigError::Syntax { error, .. } => {
            assert_eq!(Err(error.clone()), json::parse(text).map(|_| ()), "{msg}");
        }
        ConfigError::Invalid { .. } => {
            assert!(json::parse(text).is_ok(), "{msg}: not JSON");
            // The position of a value of the document.
            assert!(
                matches!(at, Some(Some(c)) if starts_value(c)),
                "{msg}: points at {at:?} in {text:?}"
            );
        }
        other => panic!("{msg}: {other:?} from text"),
    }
}

/// Config loader: positions in errors, `load` = `parse_str`, limits, round trip.
pub fn config(data: &[u8]) {
    let path = scratch_file("config.json");
    std::fs::write(&path, data).expect("write the scratch config");
    let loaded = file::load(&path);
    let _ = std::fs::remove_file(&path);
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => {
            let good = std::str::from_utf8(&data[..e.valid_up_to()]).expect("valid prefix");
            match loaded {
                Err(ConfigError::NotUtf8 { pos, .. }) => assert_eq!(pos, end_of(good)),
                other => panic!("not UTF-8, loaded as {other:?}"),
            }
            // The loader stops there; the text with replacement characters
            // still goes through `parse_str`.
            let lossy = String::from_utf8_lossy(data);
            let _ = config_text(&lossy, &path);
            return;
        }
    };
    let parsed = config_text(text, &path);
    match (&loaded, &parsed) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "load vs parse_str on {text:?}"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "load vs parse_str"),
        (a, b) => panic!("load gave {a:?}, parse_str gave {b:?} for {text:?}"),
    }
}

/// `parse_str` of `text` as `path`, checked.
fn config_text(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    let parsed = file::parse_str(text, path);
    match &parsed {
        Err(e) => check_config_error(e, text, path),
        Ok(c) => {
            let n = c.backends.len();
            assert!(n >= 1 && n <= lb::config::MAX_BACKENDS, "{n} backends");
            for b in &c.backends {
                assert!(lb::config::validate_host(&b.host).is_ok(), "{b:?}");
                assert!(b.port >= 1 && b.weight >= 1, "{b:?}");
            }
            let h = &c.health;
            assert!((1..=1000).contains(&h.unhealthy_threshold), "{h:?}");
            assert!((1..=1000).contains(&h.healthy_threshold), "{h:?}");
            assert!((0..=86_400_000).contains(&h.probe_interval_ms), "{h:?}");
            assert!((1..=86_400_000).contains(&h.probe_timeout_ms), "{h:?}");
            assert!(h.health_path.starts_with('/') && h.health_path.len() <= 1024);
            let written = write_config(c);
            let mut again = file::parse_str(&written, path)
                .unwrap_or_else(|e| panic!("{text:?} written back as {written:?}: {e}"));
            // Where each backend stood in the text is not configuration.
            again.backend_pos.clone_from(&c.backend_pos);
            assert_eq!(&again, c, "{text:?} written back as {written:?}");
        }
    }
    parsed
}

// ---------------------------------------------------------------- CLI ---

/// The directory the CLI check runs in (its `-c` files live there).
fn cli_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_file("cli");
        std::fs::create_dir_all(&dir).expect("create the CLI scratch dir");
        std::fs::write(
            dir.join("good.json"),
            r#"{"backends": [{"host": "127.0.0.1", "port": 9001}], "strategy": "random"}"#,
        )
        .unwrap();
        std::fs::write(dir.join("bad.json"), "{\"backends\": [],}").unwrap();
        std::env::set_current_dir(&dir).expect("enter the CLI scratch dir");
        dir
    })
}

/// Removes the CLI scratch dir (the replay test, when done).
pub fn cli_cleanup() {
    if let Some(parent) = cli_dir().parent() {
        let _ = std::env::set_current_dir(parent);
    }
    let _ = std::fs::remove_dir_all(cli_dir());
}

/// The arguments of a CLI input: NUL-separated, each made UTF-8, and every
/// `/` outside a `://` made `_`, so that a `-c FILE` can only name a file
/// in the scratch dir (a path with `://` starts with a directory ending in
/// `:`, which is not there). After an empty argument (two NULs in a row)
/// the rest is the content of `cfg.json` in that dir.
fn cli_args(data: &[u8]) -> (Vec<String>, Option<&[u8]>) {
    let (args, file) = match data.windows(2).position(|w| w == [0, 0]) {
        Some(i) => (&data[..i], Some(&data[i + 2..])),
        None => (data, None),
    };
    let args = if args.is_empty() {
        Vec::new()
    } else {
        args.split(|&b| b == 0)
            .map(|a| {
                let a = String::from_utf8_lossy(a);
                let mut out = String::with_capacity(a.len());
                let mut rest = &a[..];
                while let Some(c) = rest.chars().next() {
                    if rest.starts_with("://") {
                        out.push_str("://");
                        rest = &rest[3..];
                    } else {
                        out.push(if c == '/' { '_' } else { c });
                        rest = &rest[c.len_utf8()..];
                    }
                }
                out
            })
            .collect()
    };
    (args, file)
}

fn show(r: &Result<lb::cli::Command, lb::cli::CliError>) -> String {
    match r {
        Ok(c) => format!("{c:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// CLI: no panic, deterministic, limits, `--help`/`--version`/`--check`.
pub fn cli(data: &[u8]) {
    use lb::cli::{parse, Command};
    let dir = cli_dir();
    let (args, file) = cli_args(data);
    let cfg = dir.join("cfg.json");
    match file {
        Some(content) => std::fs::write(&cfg, content).expect("write cfg.json"),
        None => {
            let _ = std::fs::remove_file(&cfg);
        }
    }
    let ctx = format!("{args:?}");
    let first = parse(args.clone());
    assert_eq!(
        show(&first),
        show(&parse(args.clone())),
        "{ctx}: not deterministic"
    );
    match &first {
        Ok(Command::Run(c)) | Ok(Command::Check(c)) => {
            let n = c.backends.len();
            assert!(
                n >= 1 && n <= lb::config::MAX_BACKENDS,
                "{ctx}: {n} backends"
            );
            assert!(c.flag_backends <= n, "{ctx}");
            for b in &c.backends {
                assert!(lb::config::validate_host(&b.host).is_ok(), "{ctx}: {b:?}");
                assert!(b.port >= 1 && b.weight >= 1, "{ctx}: {b:?}");
            }
            assert!(lb::config::validate_host(&c.host).is_ok(), "{ctx}: host");
            assert!(c.port >= 1 && c.workers <= 64, "{ctx}: port or workers");
            // `--help` after a valid command line wins, and `--check` makes
            // it a check of the same configuration.
            let mut help = args.clone();
            help.push("--help".into());
            assert!(matches!(parse(help), Ok(Command::Help)), "{ctx} --help");
            let mut check = args.clone();
            check.push("--check".into());
            match parse(check) {
                Ok(Command::Check(d)) => {
                    assert_eq!(format!("{c:?}"), format!("{d:?}"), "{ctx} --check")
                }
                other => panic!("{ctx} --check: {}", show(&other)),
            }
        }
        Ok(Command::Help) | Ok(Command::Version) => {}
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty(), "{ctx}: empty error");
            if let lb::cli::CliError::Config(ce) = e {
                if let Some(pos) = ce.pos() {
                    let at = format!(":{}:{}: ", pos.line, pos.col);
                    assert!(msg.contains(&at), "{ctx}: {msg:?} without {at:?}");
                }
            }
        }
    }
    // `--version` (and `--help`) first win over anything after them.
    let mut version = vec!["--version".to_string()];
    version.extend(args.iter().cloned());
    assert!(
        matches!(parse(version), Ok(Command::Version)),
        "--version {ctx}"
    );
    let mut help = vec!["--help".to_string()];
    help.extend(args);
    assert!(matches!(parse(help), Ok(Command::Help)), "--help {ctx}");
}

// ---------------------------------------------------------------- DNS ---

use lb::dns::message::{MAX_ADDRS, MAX_SRV, MAX_TTL_MS};
use lb::dns::{
    encode_query, parse_response as parse_answer, DnsError, Hosts, QType, ResolvConf, Response,
};

/// The id and question a message carries, read with a decoder of this
/// file's own (uncompressed labels: a question cannot be compressed), so
/// the parser's question checks pass and the fuzzer reaches the records.
/// A message whose question cannot be read is asked `example.test` A.
pub fn dns_question(m: &[u8]) -> (u16, String, QType) {
    let id = match m {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    let fallback = (id, "example.test".to_string(), QType::A);
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let Some(&n) = m.get(at) else { return fallback };
        if n == 0 {
            break;
        }
        let Some(label) = m.get(at + 1..at + 1 + n as usize) else {
            return fallback;
        };
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += 1 + n as usize;
    }
    let name = labels.join(".");
    if encode_query(0, &name, QType::A, None).is_err() {
        return fallback;
    }
    let qtype = match m.get(at + 1..at + 3) {
        Some([0, 28]) => QType::Aaaa,
        Some([0, 33]) => QType::Srv,
        _ => QType::A,
    };
    (id, name, qtype)
}

/// What an accepted answer must be, whatever the bytes.
fn dns_consistent(m: &[u8], r: &Response, qtype: QType) {
    let ctx = || format!("{r:?} from b\"{}\"", esc(m));
    assert!(r.addrs.len() <= MAX_ADDRS, "addresses unbounded: {}", ctx());
    assert!(r.srv.len() <= MAX_SRV, "SRV unbounded: {}", ctx());
    let srv_addrs: usize = r.srv.iter().map(|s| s.addrs.len()).sum();
    assert!(srv_addrs <= MAX_ADDRS, "SRV addresses unbounded: {}", ctx());
    assert!(
        r.ttl_ms <= MAX_TTL_MS && r.ttl_ms % 1000 == 0,
        "TTL: {}",
        ctx()
    );
    if r.truncated {
        let bare = Response {
            truncated: true,
            ..Response::default()
        };
        assert_eq!(*r, bare, "a truncated answer carries nothing: {}", ctx());
    }
    match qtype {
        QType::A => assert!(r.addrs.iter().all(|a| a.is_ipv4()), "{}", ctx()),
        QType::Aaaa => assert!(r.addrs.iter().all(|a| a.is_ipv6()), "{}", ctx()),
        QType::Srv => assert!(r.addrs.is_empty(), "{}", ctx()),
    }
    assert!(qtype == QType::Srv || r.srv.is_empty(), "{}", ctx());
    if r.cname.is_some() {
        assert!(r.addrs.is_empty() && r.srv.is_empty(), "{}", ctx());
    }
    // Nothing invented: every address is in the bytes; every name can be
    // asked as it is, lowercase, without a trailing dot.
    let present = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v) => m.windows(4).any(|w| w == v.octets()),
        std::net::IpAddr::V6(v) => m.windows(16).any(|w| w == v.octets()),
    };
    let all_addrs = r.addrs.iter().chain(r.srv.iter().flat_map(|s| &s.addrs));
    for ip in all_addrs {
        assert!(present(ip), "{ip} is not in the message: {}", ctx());
    }
    for s in &r.srv {
        let mut seen = s.addrs.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), s.addrs.len(), "repeated address: {}", ctx());
    }
    for name in r.srv.iter().map(|s| &s.target).chain(&r.cname) {
        assert!(
            encode_query(1, name, QType::A, None).is_ok(),
            "{name:?}: {}",
            ctx()
        );
        assert!(
            !name.ends_with('.') && *name == name.to_ascii_lowercase(),
            "{}",
            ctx()
        );
    }
}

/// The prefixes of an `n`-byte input checked: all of them up to 512
/// bytes, else 64 spread over it and the last 32.
fn dns_prefix_points(n: usize) -> Vec<usize> {
    if n <= 512 {
        return (0..n).collect();
    }
    let mut v: Vec<usize> = (0..64).map(|i| i * n / 64).collect();
    v.extend(n - 32..n);
    v
}

pub fn dns(data: &[u8]) {
    let (id, qname, qtype) = dns_question(data);
    let got = parse_answer(data, id, &qname, qtype);
    let again = parse_answer(data, id, &qname, qtype);
    assert_eq!(got, again, "not deterministic on b\"{}\"", esc(data));
    if let Ok(r) = &got {
        dns_consistent(data, r, qtype);
    }
    // A prefix cannot hold more than the message: it is cut somewhere the
    // counts still need (an error) or after the last record (the same).
    for cut in dns_prefix_points(data.len()) {
        if let Ok(p) = parse_answer(&data[..cut], id, &qname, qtype) {
            assert_eq!(
                Ok(p),
                got,
                "the {cut}-byte prefix of b\"{}\" parses differently",
                esc(data)
            );
        }
    }
    // The query for this question is no answer to it (QR clear).
    if let Ok(q) = encode_query(id, &qname, qtype, Some(1232)) {
        assert!(
            matches!(
                parse_answer(&q, id, &qname, qtype),
                Err(DnsError::Mismatch(_))
            ),
            "a query read as an answer: {qname}"
        );
    }
    // The same bytes as resolv.conf and hosts text.
    let text = String::from_utf8_lossy(data);
    let c = ResolvConf::parse(&text);
    assert!((1..=3).contains(&c.nameservers.len()), "{c:?}");
    assert!(c.search.len() <= 6 && c.ndots <= 15, "{c:?}");
    assert!(
        (1000..=30_000).contains(&c.timeout_ms) && (1..=5).contains(&c.attempts),
        "{c:?}"
    );
    for d in &c.search {
        assert!(
            encode_query(1, d, QType::A, None).is_ok(),
            "search domain {d:?}"
        );
    }
    let hosts = Hosts::parse(&text);
    let words: Vec<&str> = text.split_ascii_whitespace().take(64).collect();
    assert!(
        hosts.len() <= text.split_ascii_whitespace().count(),
        "{hosts:?}"
    );
    for w in words {
        let mut addrs = hosts.lookup(w);
        let n = addrs.len();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), n, "repeated address for {w:?}");
    }
}
