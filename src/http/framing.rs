//! Message framing and connection management decided from parsed headers
//! (RFC 9112 sections 6 and 9): how long the body is, whether the
//! connection stays open, which headers are hop-by-hop. For requests also
//! the Host header and the target form (RFC 9112 section 3.2, checked in
//! `target.rs`): what a backend would route by.
#![forbid(unsafe_code)]

use super::parse::{HeaderRef, ParseError, RequestHead, ResponseHead, Span};
use super::scan::eq_ignore_case;
use super::target::{self, AbsoluteForm};

/// How a message body is delimited (pingora's `BodyMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    None,
    ContentLength(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// Most Connection options kept per message; more is rejected as a request
/// no real client sends and a hop-by-hop strip we could not honour.
pub const MAX_CONNECTION_TOKENS: usize = 16;

/// What the Connection header(s) said.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionOpts {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Other options: names of further hop-by-hop headers to strip. Names
    /// the proxy never strips on request ([`is_never_hop_by_hop`]: framing,
    /// `Host`, the forwarding headers) are not kept here.
    pub named: [Span; MAX_CONNECTION_TOKENS],
    pub named_len: usize,
}

impl ConnectionOpts {
    /// Whether the header called `name` is hop-by-hop for this message and
    /// must not be forwarded.
    pub fn is_hop_by_hop(&self, buf: &[u8], name: &[u8]) -> bool {
        is_standard_hop_by_hop(name)
            || self.named[..self.named_len]
                .iter()
                .any(|s| s.of(buf).eq_ignore_ascii_case(name))
    }

    /// Whether the connection persists after this message (RFC 9112 section 9.3).
    pub fn persistent(&self, minor: u8) -> bool {
        !self.close && (minor >= 1 || self.keep_alive)
    }
}

/// Headers a `Connection` option cannot make hop-by-hop. Framing
/// (`Content-Length`, `Transfer-Encoding`) and routing (`Host`) are the
/// proxy's to decide: honouring `Connection: Content-Length` would forward a
/// body with no framing, which the next hop reads as a second request. The
/// forwarding headers (`X-Forwarded-*`, `Forwarded`) are the proxy's own:
/// it writes them, or removes the client's (ARCHITECTURE.md, "Connection
/// options").
pub fn is_never_hop_by_hop(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 4] = [
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"forwarded",
    ];
    const PREFIX: &[u8] = b"x-forwarded-";
    NAMES
        .iter()
        .any(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        || (name.len() > PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX))
}

/// The hop-by-hop headers of RFC 9110 section 7.6.1, plus the framing
/// headers that the proxy re-emits itself.
fn is_standard_hop_by_hop(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 8] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
    ];
    NAMES
        .iter()
        .any(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
}

#[derive(Clone, Copy, Debug)]
pub struct RequestMeta {
    pub body: BodyMode,
    /// The Content-Length received (also when 0, which is `BodyMode::None`).
    pub content_length: Option<u64>,
    pub conn: ConnectionOpts,
    pub expect_continue: bool,
    /// Safe to send twice (RFC 9110 section 9.2.2).
    pub idempotent: bool,
    pub is_head: bool,
    pub is_connect: bool,
    /// An HTTP/1.1 request without a body asking to switch protocols
    /// (`Connection: upgrade` and an `Upgrade` header): a 101 opens a tunnel.
    pub upgrade: bool,
    /// The authority and path of an absolute-form target
    /// (`GET http://example.com/x HTTP/1.1`): a request to send on with the
    /// authority as its only Host and the path in origin-form.
    pub absolute: Option<AbsoluteForm>,
}

#[derive(Clone, Copy, Debug)]
pub struct ResponseMeta {
    pub body: BodyMode,
    /// The Content-Length to state: the one received, also on a response
    /// that has no body (to HEAD, 304) where it describes the
    /// representation; never on 1xx and 204 (RFC 9110 8.6).
    pub content_length: Option<u64>,
    pub conn: ConnectionOpts,
}

/// Iterates the comma-separated list elements of a field value, trimmed,
/// skipping empty ones (RFC 9110 section 5.6.1).
fn list_items(buf: &[u8], v: Span) -> impl Iterator<Item = Span> + '_ {
    let bytes = v.of(buf);
    let base = v.start as usize;
    bytes
        .split(|&b| b == b',')
        .scan(0usize, move |off, part| {
            let s = *off;
            *off += part.len() + 1;
            let lead = part
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .count();
            let trail = part[lead..]
                .iter()
                .rev()
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .count();
            Some(Span {
                start: (base + s + lead) as u32,
                end: (base + s + part.len() - trail) as u32,
            })
        })
        .filter(|s| !s.is_empty())
}

/// Framing facts common to requests and responses.
struct Common {
    content_length: Option<u64>,
    /// Transfer-Encoding present and exactly `chunked`.
    te_chunked: bool,
    /// Codings other than chunked were listed (e.g. `gzip, chunked`).
    te_unknown: bool,
    host_count: u32,
    /// The value of the (last) Host line.
    host: Span,
    expect_continue: bool,
    upgrade_header: bool,
}

/// The names `scan` looks at, by length and first letter: bit `c - b'a'` of
/// entry `n` is set when a name of `n` bytes starting with `c` (either
/// case) may be one of them. Entry 33 stands for every longer name.
static LOOKED_AT: [u32; 34] = {
    const fn letter(c: u8) -> u32 {
        1 << (c - b'a')
    }
    let mut t = [0u32; 34];
    // host, expect, upgrade, connection.
    t[4] = letter(b'h');
    t[6] = letter(b'e');
    t[7] = letter(b'u');
    t[10] = letter(b'c');
    // content-length (14), transfer-encoding (17) and their look-alikes.
    let mut n = 14;
    while n <= 32 {
        t[n] = letter(b'c') | letter(b't');
        n += 1;
    }
    t
};

/// A letter's bit in [`LOOKED_AT`] (either case); 0 for any other byte.
static FIRST_LETTER: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = 1 << (c - b'a');
        t[c.to_ascii_uppercase() as usize] = 1 << (c - b'a');
        c += 1;
    }
    t
};

/// What the Transfer-Encoding lines said, summed over all of them.
#[derive(Default)]
struct TransferCodings {
    /// Codings listed.
    count: u32,
    /// How many of them were `chunked`.
    chunked: u32,
    /// The last one listed was `chunked`.
    last_chunked: bool,
}

/// Reads the framing headers; the Connection options go straight into
/// `conn`, the caller's result (a copy of them is most of the result's
/// size).
fn scan(
    buf: &[u8],
    headers: &[HeaderRef],
    conn: &mut ConnectionOpts,
) -> Result<Common, ParseError> {
    let mut c = Common {
        content_length: None,
        te_chunked: false,
        te_unknown: false,
        host_count: 0,
        host: Span::default(),
        expect_continue: false,
        upgrade_header: false,
    };
    let mut te = TransferCodings::default();
    for h in headers {
        let name = h.name.of(buf);
        // Most names are none of those below: their length and first letter
        // set them apart with two table loads and one branch, before any
        // compare. A name that passes is matched on both again, then
        // compared whole, a word at a time (`eq_ignore_case`).
        let first = name.first().copied().unwrap_or(0);
        if LOOKED_AT[name.len().min(33)] & FIRST_LETTER[first as usize] == 0 {
            continue;
        }
        // `| 0x20` makes `C` and only `C` read as `c`.
        match (name.len(), first | 0x20) {
            (14, b'c') if eq_ignore_case(name, b"content-length") => {
                if c.content_length.is_some() {
                    return Err(ParseError::DuplicateContentLength);
                }
                c.content_length = Some(parse_content_length(h.value.of(buf))?);
            }
            (17, b't') if eq_ignore_case(name, b"transfer-encoding") => {
                transfer_codings(buf, h.value, &mut te, &mut c.te_unknown)?;
            }
            (10, b'c') if eq_ignore_case(name, b"connection") => {
                connection_options(buf, h.value, conn)?;
            }
            // `Transfer_Encoding`, `Content--Length`: some servers read these
            // as the real thing, so two readers could frame differently.
            (14..=32, b'c' | b't') if looks_like_framing(name) => {
                return Err(ParseError::FramingLookalike);
            }
            (4, b'h') if eq_ignore_case(name, b"host") => {
                c.host_count += 1;
                c.host = h.value;
            }
            (7, b'u') if eq_ignore_case(name, b"upgrade") => c.upgrade_header = true,
            (6, b'e') if eq_ignore_case(name, b"expect") => {
                c.expect_continue = eq_ignore_case(h.value.of(buf), b"100-continue");
            }
            _ => {}
        }
    }
    if te.count > 0 {
        if c.content_length.is_some() {
            return Err(ParseError::ContentLengthAndTransferEncoding);
        }
        // Only `chunked`, once, is understood (RFC 9112 6.1); anything else
        // leaves the body length to guesswork.
        if c.te_unknown {
            return Err(ParseError::UnknownTransferCoding);
        }
        if te.chunked != 1 || !te.last_chunked {
            return Err(ParseError::TransferEncodingNotChunked);
        }
        c.te_chunked = true;
    }
    Ok(c)
}

/// One Transfer-Encoding line: its codings, added to `te`; `unknown` set
/// when one is not `chunked`. An empty list is an error.
#[inline(never)]
fn transfer_codings(
    buf: &[u8],
    value: Span,
    te: &mut TransferCodings,
    unknown: &mut bool,
) -> Result<(), ParseError> {
    let mut any = false;
    for item in list_items(buf, value) {
        any = true;
        te.count += 1;
        te.last_chunked = eq_ignore_case(item.of(buf), b"chunked");
        if te.last_chunked {
            te.chunked += 1;
        } else {
            *unknown = true;
        }
    }
    if any {
        Ok(())
    } else {
        Err(ParseError::TransferEncodingNotChunked)
    }
}

/// One Connection line: its options, added to `conn`.
#[inline(always)]
fn connection_options(
    buf: &[u8],
    value: Span,
    conn: &mut ConnectionOpts,
) -> Result<(), ParseError> {
    // The usual value, one `keep-alive` or `close`, is the one option the
    // list below would find in it, without the split.
    let v = value.of(buf);
    if eq_ignore_case(v, b"keep-alive") {
        conn.keep_alive = true;
        Ok(())
    } else if eq_ignore_case(v, b"close") {
        conn.close = true;
        Ok(())
    } else {
        connection_list(buf, value, conn)
    }
}

/// [`connection_options`] for any list.
#[inline(never)]
fn connection_list(buf: &[u8], value: Span, conn: &mut ConnectionOpts) -> Result<(), ParseError> {
    for item in list_items(buf, value) {
        let t = item.of(buf);
        if t.eq_ignore_ascii_case(b"close") {
            conn.close = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            conn.keep_alive = true;
        } else {
            if t.eq_ignore_ascii_case(b"upgrade") {
                conn.upgrade = true;
            }
            if is_never_hop_by_hop(t) {
                continue;
            }
            if conn.named_len == MAX_CONNECTION_TOKENS {
                return Err(ParseError::TooManyConnectionTokens);
            }
            conn.named[conn.named_len] = item;
            conn.named_len += 1;
        }
    }
    Ok(())
}

/// True for a name that is not a framing header but becomes one when `_`
/// is read as `-` and repeated dashes are collapsed.
fn looks_like_framing(name: &[u8]) -> bool {
    if !name.contains(&b'_') && !name.windows(2).any(|w| w == b"--") {
        return false;
    }
    let mut norm = [0u8; 32];
    let mut k = 0;
    for &b in name {
        let c = if b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        };
        if c == b'-' && k > 0 && norm[k - 1] == b'-' {
            continue;
        }
        norm[k] = c;
        k += 1;
    }
    &norm[..k] == b"content-length" || &norm[..k] == b"transfer-encoding"
}

/// `1*DIGIT` that fits in a u64: no sign, no list, no spaces inside.
fn parse_content_length(v: &[u8]) -> Result<u64, ParseError> {
    if v.is_empty() || v.len() > 19 {
        // 19 digits always fit in a u64; 20 may not, and no body is that long.
        return Err(ParseError::BadContentLength);
    }
    let mut n = 0u64;
    for &d in v {
        if !d.is_ascii_digit() {
            return Err(ParseError::BadContentLength);
        }
        n = n * 10 + (d - b'0') as u64;
    }
    Ok(n)
}

/// Framing of a request: body length, connection options, retry safety;
/// and its Host and target, which a backend routes by. Framing errors are
/// reported before Host and target ones: they are the ones a smuggling
/// attempt makes.
///
/// A small inline shell around `request_meta_into`: the result is made
/// in the caller's frame and filled there, never copied out of this
/// function (it is some 200 bytes, most of them the Connection options).
#[inline]
pub fn request_meta(
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderRef],
) -> Result<RequestMeta, ParseError> {
    let mut meta = RequestMeta {
        body: BodyMode::None,
        content_length: None,
        conn: ConnectionOpts::default(),
        expect_continue: false,
        idempotent: false,
        is_head: false,
        is_connect: false,
        upgrade: false,
        absolute: None,
    };
    request_meta_into(buf, head, headers, &mut meta)?;
    Ok(meta)
}

/// [`request_meta`] into `meta`, which must be as that makes it (nothing
/// found yet). On an error, what is in `meta` means nothing.
fn request_meta_into(
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderRef],
    meta: &mut RequestMeta,
) -> Result<(), ParseError> {
    let c = scan(buf, &headers[..head.header_count], &mut meta.conn)?;
    if c.te_chunked && head.minor == 0 {
        return Err(ParseError::TransferEncodingInHttp10);
    }
    // RFC 9112 3.2: 400 for an HTTP/1.1 request without Host, and for any
    // request with more than one or with an invalid value.
    match c.host_count {
        0 if head.minor >= 1 => return Err(ParseError::MissingHost),
        0 => {}
        1 if !target::is_host_and_port(c.host.of(buf)) => return Err(ParseError::BadHost),
        1 => {}
        _ => return Err(ParseError::DuplicateHost),
    }
    let m = head.method.of(buf);
    meta.is_connect = m == b"CONNECT";
    meta.absolute = target::request_target(buf, head.target, meta.is_connect)?;
    meta.body = match (c.te_chunked, c.content_length) {
        (true, _) => BodyMode::Chunked,
        (false, Some(0)) | (false, None) => BodyMode::None,
        (false, Some(n)) => BodyMode::ContentLength(n),
    };
    meta.content_length = c.content_length;
    meta.expect_continue = c.expect_continue && head.minor == 1;
    meta.idempotent = matches!(
        m,
        b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE"
    );
    meta.is_head = m == b"HEAD";
    meta.upgrade =
        meta.conn.upgrade && c.upgrade_header && head.minor == 1 && meta.body == BodyMode::None;
    Ok(())
}

/// Framing of a response to a request (RFC 9112 section 6.3). Made in the
/// caller's frame and filled there, as [`request_meta`] is.
#[inline]
pub fn response_meta(
    buf: &[u8],
    head: &ResponseHead,
    headers: &[HeaderRef],
    request_was_head: bool,
) -> Result<ResponseMeta, ParseError> {
    let mut meta = ResponseMeta {
        body: BodyMode::None,
        content_length: None,
        conn: ConnectionOpts::default(),
    };
    response_meta_into(buf, head, headers, request_was_head, &mut meta)?;
    Ok(meta)
}

/// [`response_meta`] into `meta`, which must be as that makes it.
fn response_meta_into(
    buf: &[u8],
    head: &ResponseHead,
    headers: &[HeaderRef],
    request_was_head: bool,
    meta: &mut ResponseMeta,
) -> Result<(), ParseError> {
    let c = scan(buf, &headers[..head.header_count], &mut meta.conn)?;
    if c.te_chunked && head.minor == 0 {
        return Err(ParseError::TransferEncodingInHttp10);
    }
    let bodiless =
        request_was_head || head.status < 200 || head.status == 204 || head.status == 304;
    meta.body = if bodiless {
        BodyMode::None
    } else {
        match (c.te_chunked, c.content_length) {
            (true, _) => BodyMode::Chunked,
            (false, Some(0)) => BodyMode::None,
            (false, Some(n)) => BodyMode::ContentLength(n),
            (false, None) => BodyMode::UntilClose,
        }
    };
    let no_length = head.status < 200 || head.status == 204;
    meta.content_length = c.content_length.filter(|_| !no_length);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{parse_request, parse_response, Status};

    fn meta(raw: &[u8]) -> Result<RequestMeta, ParseError> {
        let mut h = [HeaderRef::default(); 32];
        match parse_request(raw, &mut h)? {
            Status::Complete(head) => request_meta(raw, &head, &h),
            Status::Partial => panic!("partial head"),
        }
    }

    #[test]
    fn request_framing() {
        let ok: &[(&[u8], BodyMode)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", BodyMode::None),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
                BodyMode::ContentLength(12),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                BodyMode::Chunked,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", BodyMode::None),
        ];
        for (raw, want) in ok {
            assert_eq!(meta(raw).unwrap().body, *want);
        }
        let bad: &[(&[u8], ParseError)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::ContentLengthAndTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", ParseError::DuplicateContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42, 42\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", ParseError::UnknownTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ParseError::UnknownTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", ParseError::UnknownTransferCoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", ParseError::TransferEncodingNotChunked),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::TransferEncodingNotChunked),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", ParseError::TransferEncodingNotChunked),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::TransferEncodingInHttp10),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ParseError::DuplicateHost),
            (b"POST / HTTP/1.1\r\nTransfer_Encoding: chunked\r\n\r\n", ParseError::FramingLookalike),
            (b"POST / HTTP/1.1\r\nContent---Length: 5\r\n\r\n", ParseError::FramingLookalike),
        ];
        for (raw, want) in bad {
            assert_eq!(
                meta(raw).unwrap_err(),
                *want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    /// The authority and path of an absolute-form target, as text.
    type Parts = Result<Option<(String, String)>, ParseError>;

    #[test]
    fn host_and_target() {
        let abs = |a: &str, p: &str| Ok(Some((a.to_string(), p.to_string())));
        let cases: &[(&[u8], Parts)] = &[
            (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", Ok(None)),
            (b"GET / HTTP/1.1\r\nhOST:  [::1]:8080 \r\n\r\n", Ok(None)),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Ok(None)),
            (
                b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
                Ok(None),
            ),
            // HTTP/1.0 needs no Host, but one it sends must be valid.
            (b"GET / HTTP/1.0\r\n\r\n", Ok(None)),
            (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", Ok(None)),
            (
                b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n",
                Err(ParseError::BadHost),
            ),
            (b"GET / HTTP/1.1\r\n\r\n", Err(ParseError::MissingHost)),
            (
                b"GET / HTTP/1.1\r\nX-Host: a\r\nHosts: a\r\n\r\n",
                Err(ParseError::MissingHost),
            ),
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", Err(ParseError::BadHost)),
            (
                b"GET / HTTP/1.1\r\nHost: \t\r\n\r\n",
                Err(ParseError::BadHost),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                Err(ParseError::BadHost),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: evil@good\r\n\r\n",
                Err(ParseError::BadHost),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x/y\r\n\r\n",
                Err(ParseError::BadHost),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n",
                Err(ParseError::BadHost),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                Err(ParseError::DuplicateHost),
            ),
            // Absolute-form: the authority and the rest; Host is still
            // required in HTTP/1.1 (RFC 9112 3.2), and is replaced upstream.
            (
                b"GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
                abs("example.com", "/x?y"),
            ),
            (
                b"GET hTTps://example.com:8443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
                abs("example.com:8443", ""),
            ),
            (
                b"GET http://10.0.0.7:81?q HTTP/1.0\r\n\r\n",
                abs("10.0.0.7:81", "?q"),
            ),
            (
                b"GET http://example.com/x HTTP/1.1\r\n\r\n",
                Err(ParseError::MissingHost),
            ),
            (
                b"GET http://user@example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
                Err(ParseError::TargetAuthority),
            ),
            (
                b"GET http:///x HTTP/1.1\r\nHost: example.com\r\n\r\n",
                Err(ParseError::TargetAuthority),
            ),
            (
                b"GET ftp://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
                Err(ParseError::TargetForm),
            ),
            (
                b"GET x HTTP/1.1\r\nHost: example.com\r\n\r\n",
                Err(ParseError::TargetForm),
            ),
            // Framing errors come first.
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                Err(ParseError::DuplicateContentLength),
            ),
        ];
        for (raw, want) in cases {
            let got = meta(raw).map(|m| {
                m.absolute.map(|a| {
                    let text = |s: Span| String::from_utf8_lossy(s.of(raw)).into_owned();
                    (text(a.authority), text(a.path))
                })
            });
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(ParseError::MissingHost.status(), 400);
        assert_eq!(ParseError::BadHost.status(), 400);
        assert_eq!(ParseError::TargetForm.status(), 400);
        assert_eq!(ParseError::TargetAuthority.status(), 400);
    }

    #[test]
    fn connection_options() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Foo\r\nX-Foo: 1\r\n\r\n";
        let m = meta(raw).unwrap();
        assert!(m.conn.close && !m.conn.persistent(1));
        assert!(m.conn.is_hop_by_hop(raw, b"x-foo") && m.conn.is_hop_by_hop(raw, b"Keep-Alive"));
        assert!(!m.conn.is_hop_by_hop(raw, b"x-bar"));
        let m = meta(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(m.conn.persistent(0));
    }

    /// Framing, routing and the proxy's own headers stay end-to-end whatever
    /// `Connection` names (a smuggling vector when honoured).
    #[test]
    fn connection_cannot_name_framing_or_routing() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CONTENT-length, Transfer-Encoding, host, X-Forwarded-For, forwarded, x-forwarded-host, X-Other\r\nContent-Length: 3\r\n\r\n";
        let m = meta(raw).unwrap();
        assert_eq!(m.content_length, Some(3));
        for name in [
            &b"Content-Length"[..],
            b"Host",
            b"X-Forwarded-For",
            b"Forwarded",
            b"X-Forwarded-Host",
        ] {
            assert!(!m.conn.is_hop_by_hop(raw, name), "{name:?}");
        }
        assert!(m.conn.is_hop_by_hop(raw, b"x-other"));
        assert!(is_never_hop_by_hop(b"X-FORWARDED-PORT") && !is_never_hop_by_hop(b"x-forwarded-"));
    }

    #[test]
    fn response_framing() {
        let mut h = [HeaderRef::default(); 8];
        let cases: &[(&[u8], bool, BodyMode)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                BodyMode::ContentLength(5),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                BodyMode::None,
            ),
            (
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                false,
                BodyMode::None,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                BodyMode::None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                BodyMode::Chunked,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, BodyMode::UntilClose),
        ];
        for (raw, head_req, want) in cases {
            let Ok(Status::Complete(r)) = parse_response(raw, &mut h) else {
                panic!()
            };
            assert_eq!(response_meta(raw, &r, &h, *head_req).unwrap().body, *want);
        }
    }

    /// A small xorshift PRNG for the differential test.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
        /// `s` with each letter's case flipped now and then.
        fn mixed_case(&mut self, s: &str, out: &mut Vec<u8>) {
            let flip = self.below(3) == 0;
            for b in s.bytes() {
                let c = if flip && self.below(2) == 0 {
                    b ^ 0x20
                } else {
                    b
                };
                out.push(if b.is_ascii_alphabetic() { c } else { b });
            }
        }
    }

    /// Names `request_meta` acts on, their look-alikes and near misses
    /// (a letter off, a byte longer or shorter, the same length and first
    /// letter), and everyday names.
    const NAMES: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "expect",
        "transfer_encoding",
        "content--length",
        "content_length",
        "Content-_Length",
        "transfer--encoding",
        "content-length_",
        "t-r_a",
        "contentlength",
        "content-lengtx",
        "content-lengthx",
        "transfer-encodinh",
        "connectiom",
        "connectio",
        "connections",
        "hosts",
        "hos",
        "hosT",
        "upgradE",
        "upgrad",
        "expecT",
        "expecu",
        "c",
        "t",
        "h",
        "content-lengths",
        "content-type",
        "cookie",
        "accept",
        "user-agent",
        "referer",
        "sec-fetch-mode",
        "x-forwarded-for",
        "te",
        "keep-alive",
        "trailer",
        "CONTENT___LENGTH",
        "transfer-encoding-",
        "tRANSFER-ENCODING",
        "content-lengtH",
        "Connection_",
    ];

    const VALUES: &[&str] = &[
        "",
        "0",
        "12",
        "007",
        "+1",
        "1,1",
        "1 1",
        "99999999999999999999",
        "9999999999999999999",
        "chunked",
        "Chunked",
        "gzip, chunked",
        "chunked, gzip",
        "chunked, chunked",
        ",,",
        " , chunked",
        "identity",
        "chunked,",
        "keep-alive",
        "Keep-Alive",
        "close",
        "CLOSE",
        "keep-alive, close",
        "keep-alive, Upgrade",
        "upgrade",
        "Upgrade, TE",
        "close, x-foo, te",
        "content-length, host, X-Forwarded-For, forwarded, x-forwarded-",
        "keep-alivex",
        "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p",
        "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q",
        "keep-alive,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p",
        "100-continue",
        "100-Continue",
        "a",
        "a:80",
        "a:",
        ":80",
        "[::1]:8080",
        "[v1.x]",
        "a b",
        "caf%C3%A9",
        "a%zz",
        "evil@x",
        "10.0.0.12:8080",
        "www.example-shop.com",
        "a:65536",
        "a:0080",
        "x/y",
        "h\u{e9}",
    ];

    /// `request_meta` and `response_meta` judge every generated head as the
    /// code before the speed work did (`framing_reference`): the same
    /// error, or the same result to the last span. Half of the heads go
    /// through the parser; the other half are header lists made directly,
    /// with now and then a byte no parser would let through, so that the
    /// framing checks are compared on their own too.
    #[test]
    fn meta_agrees_with_the_reference() {
        use crate::http::framing_reference as reference;
        const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "PATCH"];
        const TARGETS: &[&str] = &[
            "/",
            "/a?b",
            "*",
            "http://example.com/x",
            "HTTPS://a:1",
            "a.example:443",
            "x",
            "http://u@h/",
            "http://[::1]/",
            "http://a%zz/",
        ];
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut h = [HeaderRef::default(); 32];
        let (mut requests, mut ok) = (0, 0);
        for case in 0..400_000 {
            let response = case % 4 == 3;
            let direct = case % 2 == 0;
            let mut raw = Vec::new();
            let (method, target, minor) = (r.pick(METHODS), r.pick(TARGETS), r.below(2) as u8);
            let status = [200u16, 204, 304, 101][r.below(4)];
            if response {
                raw.extend_from_slice(format!("HTTP/1.{minor} {status} x\r\n").as_bytes());
            } else {
                raw.extend_from_slice(format!("{method} {target} HTTP/1.{minor}\r\n").as_bytes());
            }
            let mut count = 0;
            for _ in 0..r.below(8) {
                let name = if r.below(4) == 0 {
                    r.pick(&NAMES[..6])
                } else {
                    r.pick(NAMES)
                };
                let line = raw.len();
                r.mixed_case(name, &mut raw);
                let name_end = raw.len();
                raw.extend_from_slice(b": ");
                let value = r.pick(VALUES);
                r.mixed_case(value, &mut raw);
                let value_end = raw.len();
                if direct && r.below(8) == 0 {
                    // Any byte anywhere in the name or the value.
                    let at = line + r.below(value_end - line);
                    if at != name_end {
                        raw[at] = r.below(256) as u8;
                    }
                }
                raw.extend_from_slice(b"\r\n");
                h[count] = HeaderRef {
                    name: Span::new(line, name_end),
                    value: Span::new(name_end + 2, value_end),
                    line: Span::new(line, raw.len()),
                };
                count += 1;
            }
            raw.extend_from_slice(b"\r\n");
            if response {
                let head = if direct {
                    ResponseHead {
                        minor,
                        status,
                        reason: Span::default(),
                        header_count: count,
                        len: raw.len(),
                    }
                } else {
                    match parse_response(&raw, &mut h) {
                        Ok(Status::Complete(head)) => head,
                        _ => continue,
                    }
                };
                let hs = &h[..head.header_count];
                let was_head = r.below(2) == 0;
                let got = format!("{:?}", response_meta(&raw, &head, hs, was_head));
                let want = format!("{:?}", reference::response_meta(&raw, &head, hs, was_head));
                assert_eq!(got, want, "{}", String::from_utf8_lossy(&raw));
            } else {
                let head = if direct {
                    let m_end = method.len();
                    RequestHead {
                        method: Span::new(0, m_end),
                        target: Span::new(m_end + 1, m_end + 1 + target.len()),
                        minor,
                        header_count: count,
                        start: 0,
                        len: raw.len(),
                    }
                } else {
                    match parse_request(&raw, &mut h) {
                        Ok(Status::Complete(head)) => head,
                        _ => continue,
                    }
                };
                let got = format!("{:?}", request_meta(&raw, &head, &h));
                let want = format!("{:?}", reference::request_meta(&raw, &head, &h));
                assert_eq!(got, want, "{}", String::from_utf8_lossy(&raw));
                requests += 1;
                ok += got.starts_with("Ok") as usize;
            }
        }
        assert!(
            requests > 200_000 && ok > 20_000,
            "{requests} requests, {ok} valid"
        );
    }
}
