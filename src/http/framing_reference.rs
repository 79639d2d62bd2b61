//! The framing checks and the Host check as they were before the parser
//! speed work of issue 15 (commit e8f9019), kept verbatim as the oracle
//! for differential tests: `framing::request_meta`, `framing::response_meta`
//! and `target::is_host_and_port` must judge every input exactly as these
//! do. Test-only; nothing here is fast, and nothing here should change.
#![forbid(unsafe_code)]

use super::framing::{
    is_never_hop_by_hop, BodyMode, ConnectionOpts, RequestMeta, ResponseMeta, MAX_CONNECTION_TOKENS,
};
use super::parse::{HeaderRef, ParseError, RequestHead, ResponseHead, Span};
use super::scan::REG_NAME;
use super::target;

#[inline]
fn name_is(buf: &[u8], h: &HeaderRef, want: &[u8]) -> bool {
    h.name.len() == want.len() && h.name.of(buf).eq_ignore_ascii_case(want)
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
    conn: ConnectionOpts,
    host_count: u32,
    /// The value of the (last) Host line.
    host: Span,
    expect_continue: bool,
    upgrade_header: bool,
}

fn scan(buf: &[u8], headers: &[HeaderRef]) -> Result<Common, ParseError> {
    let mut c = Common {
        content_length: None,
        te_chunked: false,
        te_unknown: false,
        conn: ConnectionOpts::default(),
        host_count: 0,
        host: Span::default(),
        expect_continue: false,
        upgrade_header: false,
    };
    let mut te_codings = 0u32;
    let mut te_last_chunked = false;
    let mut chunked_seen = 0u32;
    for h in headers {
        let n = h.name.len();
        if n == 14 && name_is(buf, h, b"content-length") {
            if c.content_length.is_some() {
                return Err(ParseError::DuplicateContentLength);
            }
            c.content_length = Some(parse_content_length(h.value.of(buf))?);
        } else if n == 17 && name_is(buf, h, b"transfer-encoding") {
            let mut any = false;
            for item in list_items(buf, h.value) {
                any = true;
                te_codings += 1;
                te_last_chunked = item.of(buf).eq_ignore_ascii_case(b"chunked");
                if te_last_chunked {
                    chunked_seen += 1;
                } else {
                    c.te_unknown = true;
                }
            }
            if !any {
                return Err(ParseError::TransferEncodingNotChunked);
            }
        } else if n == 10 && name_is(buf, h, b"connection") {
            for item in list_items(buf, h.value) {
                let t = item.of(buf);
                if t.eq_ignore_ascii_case(b"close") {
                    c.conn.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    c.conn.keep_alive = true;
                } else {
                    if t.eq_ignore_ascii_case(b"upgrade") {
                        c.conn.upgrade = true;
                    }
                    if is_never_hop_by_hop(t) {
                        continue;
                    }
                    if c.conn.named_len == MAX_CONNECTION_TOKENS {
                        return Err(ParseError::TooManyConnectionTokens);
                    }
                    c.conn.named[c.conn.named_len] = item;
                    c.conn.named_len += 1;
                }
            }
        } else if (14..=32).contains(&n)
            && matches!(buf[h.name.start as usize], b'c' | b'C' | b't' | b'T')
            && looks_like_framing(h.name.of(buf))
        {
            // `Transfer_Encoding`, `Content--Length`: some servers read these
            // as the real thing, so two readers could frame differently.
            return Err(ParseError::FramingLookalike);
        } else if n == 4 && name_is(buf, h, b"host") {
            c.host_count += 1;
            c.host = h.value;
        } else if n == 7 && name_is(buf, h, b"upgrade") {
            c.upgrade_header = true;
        } else if n == 6 && name_is(buf, h, b"expect") {
            c.expect_continue = h.value.of(buf).eq_ignore_ascii_case(b"100-continue");
        }
    }
    if te_codings > 0 {
        if c.content_length.is_some() {
            return Err(ParseError::ContentLengthAndTransferEncoding);
        }
        // Only `chunked`, once, is understood (RFC 9112 6.1); anything else
        // leaves the body length to guesswork.
        if c.te_unknown {
            return Err(ParseError::UnknownTransferCoding);
        }
        if chunked_seen != 1 || !te_last_chunked {
            return Err(ParseError::TransferEncodingNotChunked);
        }
        c.te_chunked = true;
    }
    Ok(c)
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
pub fn request_meta(
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderRef],
) -> Result<RequestMeta, ParseError> {
    let c = scan(buf, &headers[..head.header_count])?;
    if c.te_chunked && head.minor == 0 {
        return Err(ParseError::TransferEncodingInHttp10);
    }
    // RFC 9112 3.2: 400 for an HTTP/1.1 request without Host, and for any
    // request with more than one or with an invalid value.
    match c.host_count {
        0 if head.minor >= 1 => return Err(ParseError::MissingHost),
        0 => {}
        1 if !is_host_and_port(c.host.of(buf)) => return Err(ParseError::BadHost),
        1 => {}
        _ => return Err(ParseError::DuplicateHost),
    }
    let m = head.method.of(buf);
    let is_connect = m == b"CONNECT";
    let absolute = target::request_target(buf, head.target, is_connect)?;
    let body = match (c.te_chunked, c.content_length) {
        (true, _) => BodyMode::Chunked,
        (false, Some(0)) | (false, None) => BodyMode::None,
        (false, Some(n)) => BodyMode::ContentLength(n),
    };
    Ok(RequestMeta {
        body,
        content_length: c.content_length,
        conn: c.conn,
        expect_continue: c.expect_continue && head.minor == 1,
        idempotent: matches!(
            m,
            b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE"
        ),
        is_head: m == b"HEAD",
        is_connect,
        upgrade: c.conn.upgrade && c.upgrade_header && head.minor == 1 && body == BodyMode::None,
        absolute,
    })
}

/// Framing of a response to a request (RFC 9112 section 6.3).
pub fn response_meta(
    buf: &[u8],
    head: &ResponseHead,
    headers: &[HeaderRef],
    request_was_head: bool,
) -> Result<ResponseMeta, ParseError> {
    let c = scan(buf, &headers[..head.header_count])?;
    if c.te_chunked && head.minor == 0 {
        return Err(ParseError::TransferEncodingInHttp10);
    }
    let bodiless =
        request_was_head || head.status < 200 || head.status == 204 || head.status == 304;
    let body = if bodiless {
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
    Ok(ResponseMeta {
        body,
        content_length: c.content_length.filter(|_| !no_length),
        conn: c.conn,
    })
}

/// `uri-host [ ":" port ]` with a host that is not empty: a Host value, or
/// the authority of an absolute-form target.
pub fn is_host_and_port(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        if !target::is_ip_literal(&v[1..close]) {
            return false;
        }
        match &v[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&v[..close + 1], port),
            _ => return false,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(colon) => (&v[..colon], &v[colon + 1..]),
            None => (v, &[][..]),
        }
    };
    let port_ok = port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && port.iter().fold(0u32, |n, d| n * 10 + (d - b'0') as u32) <= 65535;
    port_ok && (host.first() == Some(&b'[') || is_reg_name(host))
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, not empty.
fn is_reg_name(h: &[u8]) -> bool {
    // The common case, no percent-encoding: one table lookup a byte,
    // without a branch (every request's Host goes through here).
    let mut ok = !h.is_empty();
    let mut pct = false;
    for &b in h {
        ok &= REG_NAME[b as usize];
        pct |= b == b'%';
    }
    if !pct {
        return ok;
    }
    let mut i = 0;
    while i < h.len() {
        if h[i] == b'%' {
            match h.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if REG_NAME[h[i] as usize] {
            i += 1;
        } else {
            return false;
        }
    }
    !h.is_empty()
}
