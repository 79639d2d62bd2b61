//! The head parser: request line or status line, then header fields, strictly
//! by RFC 9112. It is restartable: given more bytes it parses again from the
//! start, so it keeps no state between calls.
#![forbid(unsafe_code)]

use super::scan::eq_ignore_case;
use super::simd::{self, Scanner, WithScanner};
use crate::config::MAX_HEADER_BYTES;
use std::fmt;

/// A byte range `[start, end)` of the buffer the head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    #[inline]
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// One header field: its name and its value with surrounding whitespace trimmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderRef {
    pub name: Span,
    pub value: Span,
    /// The whole line, CRLF included: what is copied when forwarded unchanged.
    pub line: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Span,
    pub target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Header fields stored in the caller's slice.
    pub header_count: usize,
    /// Offset of the request line (after any empty lines before it).
    pub start: usize,
    /// Bytes of the head, from offset 0 to the end of the empty line.
    pub len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub minor: u8,
    pub status: u16,
    pub reason: Span,
    pub header_count: usize,
    pub len: usize,
}

/// Outcome of a parse that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    /// More bytes are needed.
    Partial,
}

/// Why a head (or its framing) was rejected. [`ParseError::status`] gives the
/// response code a client gets for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    Method,
    UnknownMethod,
    Target,
    Version,
    VersionNotSupported,
    StatusCode,
    Reason,
    HeaderName,
    WhitespaceBeforeColon,
    ObsFold,
    HeaderValue,
    BareLf,
    TooManyHeaders,
    HeadTooLarge,
    UriTooLong,
    // Framing (see `framing.rs`).
    ContentLengthAndTransferEncoding,
    DuplicateContentLength,
    BadContentLength,
    TransferEncodingNotChunked,
    UnknownTransferCoding,
    TransferEncodingInHttp10,
    DuplicateHost,
    MissingHost,
    BadHost,
    TargetForm,
    TargetAuthority,
    TooManyConnectionTokens,
    FramingLookalike,
}

impl ParseError {
    /// The status code a client is answered with when its request fails so.
    pub fn status(self) -> u16 {
        match self {
            ParseError::TooManyHeaders | ParseError::HeadTooLarge => 431,
            ParseError::UriTooLong => 414,
            ParseError::UnknownMethod => 501,
            ParseError::VersionNotSupported => 505,
            ParseError::UnknownTransferCoding => 501,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ParseError::Method => "invalid method",
            ParseError::UnknownMethod => "unknown method",
            ParseError::Target => "invalid request target",
            ParseError::Version => "invalid HTTP version",
            ParseError::VersionNotSupported => "HTTP version not supported",
            ParseError::StatusCode => "invalid status code",
            ParseError::Reason => "invalid reason phrase",
            ParseError::HeaderName => "invalid header name",
            ParseError::WhitespaceBeforeColon => "whitespace between header name and colon",
            ParseError::ObsFold => "obsolete line folding",
            ParseError::HeaderValue => "invalid byte in header value",
            ParseError::BareLf => "bare LF line ending",
            ParseError::TooManyHeaders => "too many header lines",
            ParseError::HeadTooLarge => "head too large",
            ParseError::UriTooLong => "request target too long",
            ParseError::ContentLengthAndTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            ParseError::DuplicateContentLength => "more than one Content-Length",
            ParseError::BadContentLength => "invalid Content-Length",
            ParseError::TransferEncodingNotChunked => "Transfer-Encoding does not end in chunked",
            ParseError::UnknownTransferCoding => "unsupported transfer coding",
            ParseError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            ParseError::DuplicateHost => "more than one Host",
            ParseError::MissingHost => "HTTP/1.1 request without Host",
            ParseError::BadHost => "invalid Host value (not host[:port])",
            ParseError::TargetForm => {
                "request target is not origin-form, http(s) absolute-form or asterisk-form"
            }
            ParseError::TargetAuthority => {
                "invalid authority in an absolute-form request target (not host[:port])"
            }
            ParseError::TooManyConnectionTokens => "too many Connection options",
            ParseError::FramingLookalike => "header name that reads as a framing header",
        };
        f.write_str(s)
    }
}

impl std::error::Error for ParseError {}

/// Internal: ran out of bytes (`Partial`) or found an error.
enum Stop {
    Partial,
    Err(ParseError),
}

impl From<ParseError> for Stop {
    fn from(e: ParseError) -> Stop {
        Stop::Err(e)
    }
}

type Res<T> = Result<T, Stop>;

#[inline]
fn byte(buf: &[u8], i: usize) -> Res<u8> {
    buf.get(i).copied().ok_or(Stop::Partial)
}

/// Expects CRLF at `i`; returns the index after it.
#[inline]
fn crlf(buf: &[u8], i: usize, bad: ParseError) -> Res<usize> {
    match byte(buf, i)? {
        b'\r' => match byte(buf, i + 1)? {
            b'\n' => Ok(i + 2),
            _ => Err(Stop::Err(bad)),
        },
        b'\n' => Err(Stop::Err(ParseError::BareLf)),
        _ => Err(Stop::Err(bad)),
    }
}

/// `HTTP/1.x`; returns the minor version and the index after it.
#[inline(always)]
fn version(buf: &[u8], i: usize) -> Res<(u8, usize)> {
    // The usual case in one 8-byte compare; `version_bytes` decides the
    // rest (and would give the same answer for these two).
    match buf.get(i..i + 8) {
        Some(b"HTTP/1.1") => Ok((1, i + 8)),
        Some(b"HTTP/1.0") => Ok((0, i + 8)),
        _ => version_bytes(buf, i),
    }
}

/// [`version`] byte by byte.
fn version_bytes(buf: &[u8], i: usize) -> Res<(u8, usize)> {
    let want = b"HTTP/";
    for (k, &w) in want.iter().enumerate() {
        if byte(buf, i + k)? != w {
            return Err(ParseError::Version.into());
        }
    }
    // Each byte is checked as it arrives, so a head that can never be valid
    // is refused at once rather than waited on.
    let major = byte(buf, i + 5)?;
    if !major.is_ascii_digit() {
        return Err(ParseError::Version.into());
    }
    if byte(buf, i + 6)? != b'.' {
        return Err(ParseError::Version.into());
    }
    let minor = byte(buf, i + 7)?;
    if !minor.is_ascii_digit() {
        return Err(ParseError::Version.into());
    }
    match (major, minor) {
        (b'1', b'0') => Ok((0, i + 8)),
        (b'1', b'1') => Ok((1, i + 8)),
        _ => Err(ParseError::VersionNotSupported.into()),
    }
}

/// Header fields from `i` to the empty line; returns (count, head length).
#[inline(always)]
fn headers<S: Scanner>(
    s: S,
    buf: &[u8],
    mut i: usize,
    out: &mut [HeaderRef],
) -> Res<(usize, usize)> {
    let mut n = 0;
    let mut content_length = false;
    loop {
        let first = byte(buf, i)?;
        // One compare for the usual case, a name's first byte.
        if first <= b' ' {
            match first {
                b'\r' => return Ok((n, crlf(buf, i, ParseError::HeaderName)?)),
                b'\n' => return Err(ParseError::BareLf.into()),
                b' ' | b'\t' => return Err(ParseError::ObsFold.into()),
                _ => {}
            }
        }
        let line_start = i;
        // One pass finds the end of the name (the first non-tchar) and the
        // first byte from the line's start that cannot be in a value. When
        // the name, colon and OWS below are valid, every byte before the
        // value is a value byte, so that is exactly where a value scan from
        // the value's start stops; it does not wait on the name's end.
        let (name_end, end) = s.field_ends(buf, i);
        match byte(buf, name_end)? {
            b':' if name_end > i => {}
            b' ' | b'\t' if name_end > i => return Err(ParseError::WhitespaceBeforeColon.into()),
            _ => return Err(ParseError::HeaderName.into()),
        }
        let mut v = name_end + 1;
        while matches!(byte(buf, v)?, b' ' | b'\t') {
            v += 1;
        }
        debug_assert_eq!(end, s.value_end(buf, v));
        let mut trimmed = end;
        while trimmed > v && matches!(buf[trimmed - 1], b' ' | b'\t') {
            trimmed -= 1;
        }
        let next = crlf(buf, end, ParseError::HeaderValue)?;
        if n == out.len() {
            return Err(ParseError::TooManyHeaders.into());
        }
        // Content-Length is checked as soon as its line is complete, so a
        // bad or repeated one is refused before the head has even ended.
        if eq_ignore_case(&buf[i..name_end], b"content-length") {
            if content_length {
                return Err(ParseError::DuplicateContentLength.into());
            }
            content_length = true;
            let digits = &buf[v..trimmed];
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::BadContentLength.into());
            }
        }
        out[n] = HeaderRef {
            name: Span::new(i, name_end),
            value: Span::new(v, trimmed),
            line: Span::new(line_start, next),
        };
        n += 1;
        i = next;
    }
}

/// The methods of HTTP and its registered extensions (WebDAV, CalDAV, UPnP,
/// the QUERY draft) that llhttp also knows. Anything else is answered 501
/// (RFC 9110 section 9.1) rather than passed to a backend that may read the
/// request differently.
#[inline]
fn known_method(m: &[u8]) -> bool {
    const METHODS: [&[u8]; 35] = [
        b"GET",
        b"HEAD",
        b"POST",
        b"PUT",
        b"DELETE",
        b"CONNECT",
        b"OPTIONS",
        b"TRACE",
        b"PATCH",
        b"COPY",
        b"LOCK",
        b"MKCOL",
        b"MOVE",
        b"PROPFIND",
        b"PROPPATCH",
        b"SEARCH",
        b"UNLOCK",
        b"BIND",
        b"REBIND",
        b"UNBIND",
        b"ACL",
        b"REPORT",
        b"MKACTIVITY",
        b"CHECKOUT",
        b"MERGE",
        b"M-SEARCH",
        b"NOTIFY",
        b"SUBSCRIBE",
        b"UNSUBSCRIBE",
        b"PURGE",
        b"MKCALENDAR",
        b"LINK",
        b"UNLINK",
        b"SOURCE",
        b"QUERY",
    ];
    // The usual two first, without the calls of the search.
    m == b"GET" || m == b"POST" || METHODS.contains(&m)
}

#[inline(always)]
fn request<S: Scanner>(
    s: S,
    buf: &[u8],
    out: &mut [HeaderRef],
    in_target: &mut bool,
) -> Res<RequestHead> {
    // RFC 9112 section 2.2: ignore empty lines before the request line.
    let mut start = 0;
    loop {
        match byte(buf, start)? {
            b'\r' => start = crlf(buf, start, ParseError::Method)?,
            b'\n' => return Err(ParseError::BareLf.into()),
            _ => break,
        }
    }
    let m_end = match buf.get(start..start + 5) {
        // The usual two with the space after them in one compare each: what
        // the scan and checks below find for them. The target's scan then
        // starts at a constant, without waiting on a scan of the method.
        Some([b'G', b'E', b'T', b' ', _]) => start + 3,
        Some(b"POST ") => start + 4,
        _ => {
            let m_end = s.token_end(buf, start);
            if byte(buf, m_end)? != b' ' || m_end == start {
                return Err(ParseError::Method.into());
            }
            if !known_method(&buf[start..m_end]) {
                return Err(ParseError::UnknownMethod.into());
            }
            m_end
        }
    };
    let t_start = m_end + 1;
    *in_target = true;
    let t_end = s.target_end(buf, t_start);
    if byte(buf, t_end)? != b' ' || t_end == t_start {
        return Err(ParseError::Target.into());
    }
    *in_target = false;
    let (minor, i) = version(buf, t_end + 1)?;
    let i = crlf(buf, i, ParseError::Version)?;
    let (count, len) = headers(s, buf, i, out)?;
    Ok(RequestHead {
        method: Span::new(start, m_end),
        target: Span::new(t_start, t_end),
        minor,
        header_count: count,
        start,
        len,
    })
}

#[inline(always)]
fn response<S: Scanner>(s: S, buf: &[u8], out: &mut [HeaderRef]) -> Res<ResponseHead> {
    let (minor, i) = version(buf, 0)?;
    if byte(buf, i)? != b' ' {
        return Err(ParseError::Version.into());
    }
    let mut status = 0u16;
    for k in 0..3 {
        let d = byte(buf, i + 1 + k)?;
        if !d.is_ascii_digit() || (k == 0 && d == b'0') {
            return Err(ParseError::StatusCode.into());
        }
        status = status * 10 + (d - b'0') as u16;
    }
    if status < 100 {
        return Err(ParseError::StatusCode.into());
    }
    let mut j = i + 4;
    let reason_start;
    match byte(buf, j)? {
        b' ' => {
            j += 1;
            reason_start = j;
            j = s.value_end(buf, j);
        }
        _ => reason_start = j,
    }
    let reason = Span::new(reason_start, j);
    let i = crlf(buf, j, ParseError::Reason)?;
    let (count, len) = headers(s, buf, i, out)?;
    Ok(ResponseHead {
        minor,
        status,
        reason,
        header_count: count,
        len,
    })
}

/// [`request`] as a [`WithScanner`], so that `simd::run` compiles it once
/// per SIMD level with the scanning inlined. It gives the public result
/// itself: the head is then written once, where the caller wants it, and
/// not read back and copied out of `run` (a copy whose wide loads of the
/// fields just stored cannot be served by store forwarding).
struct ParseRequest<'a, 'b> {
    /// The whole input; only its first `MAX_HEADER_BYTES` are parsed.
    buf: &'a [u8],
    out: &'b mut [HeaderRef],
}

impl WithScanner for ParseRequest<'_, '_> {
    type Out = Result<Status<RequestHead>, ParseError>;
    #[inline(always)]
    fn call<S: Scanner>(self, s: S) -> Self::Out {
        let limited = &self.buf[..self.buf.len().min(MAX_HEADER_BYTES)];
        let mut in_target = false;
        match request(s, limited, self.out, &mut in_target) {
            Ok(h) => Ok(Status::Complete(h)),
            Err(Stop::Err(e)) => Err(e),
            Err(Stop::Partial) if self.buf.len() >= MAX_HEADER_BYTES => Err(if in_target {
                ParseError::UriTooLong
            } else {
                ParseError::HeadTooLarge
            }),
            Err(Stop::Partial) => Ok(Status::Partial),
        }
    }
}

/// [`response`] as a [`WithScanner`], giving the public result as
/// [`ParseRequest`] does.
struct ParseResponse<'a, 'b> {
    /// The whole input; only its first `MAX_HEADER_BYTES` are parsed.
    buf: &'a [u8],
    out: &'b mut [HeaderRef],
}

impl WithScanner for ParseResponse<'_, '_> {
    type Out = Result<Status<ResponseHead>, ParseError>;
    #[inline(always)]
    fn call<S: Scanner>(self, s: S) -> Self::Out {
        let limited = &self.buf[..self.buf.len().min(MAX_HEADER_BYTES)];
        match response(s, limited, self.out) {
            Ok(h) => Ok(Status::Complete(h)),
            Err(Stop::Err(e)) => Err(e),
            Err(Stop::Partial) if self.buf.len() >= MAX_HEADER_BYTES => {
                Err(ParseError::HeadTooLarge)
            }
            Err(Stop::Partial) => Ok(Status::Partial),
        }
    }
}

/// Parses a request head at the start of `buf`, filling `headers`.
/// Heads longer than `MAX_HEADER_BYTES` fail with 431 (414 while still in
/// the request target).
pub fn parse_request(
    buf: &[u8],
    headers: &mut [HeaderRef],
) -> Result<Status<RequestHead>, ParseError> {
    simd::run(ParseRequest { buf, out: headers })
}

/// Parses a response head at the start of `buf`, filling `headers`.
pub fn parse_response(
    buf: &[u8],
    headers: &mut [HeaderRef],
) -> Result<Status<ResponseHead>, ParseError> {
    simd::run(ParseResponse { buf, out: headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &[u8]) -> Result<Status<RequestHead>, ParseError> {
        let mut h = [HeaderRef::default(); 16];
        parse_request(s, &mut h)
    }

    #[test]
    fn parses_a_simple_request() {
        let buf = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A:  v  v \r\n\r\nBODY";
        let mut h = [HeaderRef::default(); 16];
        let Status::Complete(r) = parse_request(buf, &mut h).unwrap() else {
            panic!()
        };
        assert_eq!(r.method.of(buf), b"GET");
        assert_eq!(r.target.of(buf), b"/a?b=c");
        assert_eq!(r.minor, 1);
        assert_eq!(r.header_count, 2);
        assert_eq!(h[1].name.of(buf), b"X-A");
        assert_eq!(h[1].value.of(buf), b"v  v");
        assert_eq!(h[1].line.of(buf), b"X-A:  v  v \r\n");
        assert_eq!(&buf[r.len..], b"BODY");
    }

    #[test]
    fn every_prefix_is_partial() {
        let buf = b"\r\nPOST /x HTTP/1.0\r\nA: b\r\nC:\r\n\r\n";
        for i in 0..buf.len() {
            assert_eq!(req(&buf[..i]), Ok(Status::Partial), "prefix {i}");
        }
        assert!(matches!(req(buf), Ok(Status::Complete(_))));
    }

    #[test]
    fn rejects_malformed_requests() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"GET  / HTTP/1.1\r\n\r\n", ParseError::Target),
            (b"G(T / HTTP/1.1\r\n\r\n", ParseError::Method),
            (b"ANNOUNCE / HTTP/1.1\r\n\r\n", ParseError::UnknownMethod),
            (b"get / HTTP/1.1\r\n\r\n", ParseError::UnknownMethod),
            (b"GET /\x01 HTTP/1.1\r\n\r\n", ParseError::Target),
            (b"GET / HTTP/1.1\nHost: x\r\n\r\n", ParseError::BareLf),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", ParseError::BareLf),
            (b"GET / HTTP/2.0\r\n\r\n", ParseError::VersionNotSupported),
            (b"GET / HTTX/1.1\r\n\r\n", ParseError::Version),
            (
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
                ParseError::WhitespaceBeforeColon,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
                ParseError::ObsFold,
            ),
            (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", ParseError::ObsFold),
            (
                b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
                ParseError::HeaderValue,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
                ParseError::HeaderValue,
            ),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", ParseError::HeaderName),
            (
                b"GET / HTTP/1.1\r\nA\x01: x\r\n\r\n",
                ParseError::HeaderName,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                req(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEADER_BYTES + 10, b'a');
        assert_eq!(req(&long), Err(ParseError::UriTooLong));
        let mut big = b"GET / HTTP/1.1\r\nA: ".to_vec();
        big.resize(MAX_HEADER_BYTES, b'a');
        assert_eq!(req(&big), Err(ParseError::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..17 {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(req(&many), Err(ParseError::TooManyHeaders));
    }

    #[test]
    fn parses_responses() {
        let mut h = [HeaderRef::default(); 8];
        let buf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let Status::Complete(r) = parse_response(buf, &mut h).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.status, r.reason.of(buf), r.header_count, r.len),
            (404, &b"Not Found"[..], 1, buf.len())
        );
        let buf = b"HTTP/1.0 299\r\n\r\n";
        let Status::Complete(r) = parse_response(buf, &mut h).unwrap() else {
            panic!()
        };
        assert_eq!((r.status, r.minor, r.reason.len()), (299, 0, 0));
        assert_eq!(
            parse_response(b"HTTP/1.1 20x OK\r\n\r\n", &mut h),
            Err(ParseError::StatusCode)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 099 OK\r\n\r\n", &mut h),
            Err(ParseError::StatusCode)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n", &mut h),
            Ok(Status::Partial)
        );
    }
}
