//! Composing the heads the proxy sends: the upstream request head and the
//! client response head. Pure functions over the parsed head and the bytes it
//! was parsed from: no I/O, no allocation (they write into a [`Buf`]).
//!
//! Header lines that pass through are copied verbatim; only the proxy's own
//! lines (framing, `Connection`, forwarding headers) are written by it.
//!
//! Framing is decided here and nowhere else: every `Content-Length` and
//! `Transfer-Encoding` line received is dropped, and [`framing_header`]
//! writes the one the proxy's own parse says, in both directions. What a
//! `Connection` header names cannot change that (`framing::is_never_hop_by_hop`).
#![forbid(unsafe_code)]

use super::target::AbsoluteForm;
use super::{BodyMode, ConnectionOpts, HeaderRef, RequestHead, ResponseHead};
use crate::buf::Buf;
use crate::config::{ForwardedHeaders, HeaderMode, IDENTITY_HEADERS};

/// What the upstream head needs besides the parsed request.
pub struct RequestOut<'a> {
    pub conn: &'a ConnectionOpts,
    pub body: BodyMode,
    /// The Content-Length received (kept when 0).
    pub content_length: Option<u64>,
    /// Keep `Upgrade` and send `Connection: upgrade`.
    pub upgrade: bool,
    /// The proxy answered `Expect: 100-continue` itself (it reads the body
    /// before choosing a backend): the header is not sent on.
    pub strip_expect: bool,
    /// The client's address as text.
    pub peer: &'a [u8],
    /// The request came over TLS (the TLS listener): `https` in
    /// `X-Forwarded-Proto` and `Forwarded`.
    pub https: bool,
    pub fwd: &'a ForwardedHeaders,
    /// Identity headers the client may send on (`trusted_client_headers`,
    /// lowercase); the others in `IDENTITY_HEADERS` are removed.
    pub trusted: &'a [String],
    /// An absolute-form target: sent on in origin-form, with `Host` set to
    /// its authority (RFC 9112 section 3.2.2: the received Host is ignored).
    pub absolute: Option<AbsoluteForm>,
}

/// Writes the upstream request head: the request line as received (an
/// absolute-form target in origin-form), the end-to-end headers verbatim, one
/// framing header, the forwarding headers.
pub fn compose_request(
    buf: &[u8],
    head: &RequestHead,
    hdrs: &[HeaderRef],
    o: &RequestOut<'_>,
    out: &mut Buf,
) -> bool {
    let line_end = hdrs.first().map_or(head.len - 2, |h| h.line.start as usize);
    let mut ok = match o.absolute {
        None => out.push(&buf[head.start..line_end]),
        Some(a) => {
            let path = a.path.of(buf);
            out.push(&buf[head.start..head.target.start as usize])
                && (path.first() == Some(&b'/') || out.push(b"/"))
                && out.push(path)
                && out.push(&buf[head.target.end as usize..line_end])
                && out.push(b"Host: ")
                && out.push(a.authority.of(buf))
                && out.push(b"\r\n")
        }
    };
    let fwd = [
        (&b"x-forwarded-for"[..], o.fwd.x_forwarded_for),
        (&b"x-forwarded-proto"[..], o.fwd.x_forwarded_proto),
        (&b"forwarded"[..], o.fwd.forwarded),
    ];
    for h in hdrs {
        let name = h.name.of(buf);
        let keep = if o.upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            true
        } else if is_framing(name)
            || o.conn.is_hop_by_hop(buf, name)
            || (o.strip_expect && name.eq_ignore_ascii_case(b"expect"))
            || (o.absolute.is_some() && name.eq_ignore_ascii_case(b"host"))
            // A forwarding header the proxy sets itself: written below.
            || fwd
                .iter()
                .any(|(n, mode)| *mode != HeaderMode::Off && name.eq_ignore_ascii_case(n))
        {
            false
        } else if is_identity(name) {
            // Who the client is, as the client says: not passed on unless
            // configured as trusted (a proxy in front of this one), and
            // never in a spelling with `_`.
            !name.contains(&b'_')
                && o.trusted
                    .iter()
                    .any(|t| name.eq_ignore_ascii_case(t.as_bytes()))
        } else {
            true
        };
        if keep {
            ok &= out.push(h.line.of(buf));
        }
    }
    if o.upgrade {
        ok &= out.push(b"Connection: upgrade\r\n");
    }
    ok &= framing_header(out, o.body == BodyMode::Chunked, o.content_length);
    ok &= forwarding_header(
        out,
        buf,
        hdrs,
        b"X-Forwarded-For: ",
        o.fwd.x_forwarded_for,
        &[o.peer],
    );
    ok &= forwarding_header(
        out,
        buf,
        hdrs,
        b"X-Forwarded-Proto: ",
        o.fwd.x_forwarded_proto,
        &[if o.https { b"https" } else { b"http" }],
    );
    // RFC 7239: an IPv6 address is quoted and bracketed.
    let v6 = o.peer.contains(&b':');
    let node: [&[u8]; 3] = if v6 {
        [b"\"[", o.peer, b"]\""]
    } else {
        [b"", o.peer, b""]
    };
    ok &= forwarding_header(
        out,
        buf,
        hdrs,
        b"Forwarded: ",
        o.fwd.forwarded,
        &[
            b"for=",
            node[0],
            node[1],
            node[2],
            if o.https {
                b";proto=https"
            } else {
                b";proto=http"
            },
        ],
    );
    ok && out.push(b"\r\n")
}

/// One of [`IDENTITY_HEADERS`], or any `X-Forwarded-*`, with `_` read as
/// `-` (a framework may).
#[inline]
fn is_identity(name: &[u8]) -> bool {
    if !matches!(
        name.first(),
        Some(b'x' | b'X' | b'f' | b'F' | b't' | b'T' | b'c' | b'C')
    ) {
        return false;
    }
    const PREFIX: &[u8] = b"x-forwarded-";
    (name.len() > PREFIX.len() && loose_eq(&name[..PREFIX.len()], PREFIX))
        || IDENTITY_HEADERS
            .iter()
            .any(|n| n.len() == name.len() && loose_eq(name, n.as_bytes()))
}

/// `name` equals the lowercase `want`, ignoring case and reading `_` as `-`.
#[inline]
fn loose_eq(name: &[u8], want: &[u8]) -> bool {
    name.len() == want.len()
        && name
            .iter()
            .zip(want)
            .all(|(&a, &b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

/// `Content-Length` or `Transfer-Encoding`: never copied, always written by
/// [`framing_header`].
#[inline]
fn is_framing(name: &[u8]) -> bool {
    (name.len() == 14 && name.eq_ignore_ascii_case(b"content-length"))
        || (name.len() == 17 && name.eq_ignore_ascii_case(b"transfer-encoding"))
}

/// The one framing header of a forwarded message: `Transfer-Encoding:
/// chunked` for a chunked body, else `Content-Length: n` when there is a
/// length to state, else nothing (no body, or a body delimited by close).
fn framing_header(out: &mut Buf, chunked: bool, content_length: Option<u64>) -> bool {
    if chunked {
        return out.push(b"Transfer-Encoding: chunked\r\n");
    }
    match content_length {
        Some(n) => {
            let mut digits = [0u8; 20];
            out.push(b"Content-Length: ") && out.push(dec(n, &mut digits)) && out.push(b"\r\n")
        }
        None => true,
    }
}

/// `n` in decimal, in the tail of `out`.
fn dec(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut k = out.len();
    loop {
        k -= 1;
        out[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[k..];
        }
    }
}

/// One forwarding header: `prefix` is `Name: `; this hop's value is the
/// concatenation of `value`; with `Append`, the client's values come first.
fn forwarding_header(
    out: &mut Buf,
    buf: &[u8],
    hdrs: &[HeaderRef],
    prefix: &[u8],
    mode: HeaderMode,
    value: &[&[u8]],
) -> bool {
    if mode == HeaderMode::Off {
        return true;
    }
    let name = &prefix[..prefix.len() - 2];
    let mut ok = out.push(prefix);
    if mode == HeaderMode::Append {
        for h in hdrs
            .iter()
            .filter(|h| h.name.of(buf).eq_ignore_ascii_case(name))
        {
            ok &= out.push(h.value.of(buf)) && out.push(b", ");
        }
    }
    for part in value {
        ok &= out.push(part);
    }
    ok && out.push(b"\r\n")
}

/// How the client response head ends.
#[derive(Clone, Copy)]
pub enum Framing {
    Message {
        /// The body goes out chunked (as received, or re-chunked).
        chunked: bool,
        /// Otherwise, the `Content-Length` to state, if any.
        content_length: Option<u64>,
        keep_alive: bool,
        client_11: bool,
    },
    /// A 101: keep `Upgrade`, say `Connection: upgrade`.
    Upgrade,
    /// An interim response (100, 103): end-to-end headers only, no framing
    /// and no connection header (it has no body, and the final response
    /// says what happens to the connection).
    Interim,
}

/// Writes the client response head: `HTTP/1.1` and the status and reason as
/// received, end-to-end headers verbatim, framing and connection headers.
pub fn compose_response(
    buf: &[u8],
    head: &ResponseHead,
    hdrs: &[HeaderRef],
    conn: &ConnectionOpts,
    framing: Framing,
    out: &mut Buf,
) -> bool {
    let line_end = hdrs.first().map_or(head.len - 2, |h| h.line.start as usize);
    // "HTTP/1.x " is 9 bytes; the proxy speaks HTTP/1.1 itself.
    let mut ok = out.push(b"HTTP/1.1 ") && out.push(&buf[9..line_end]);
    let upgrade = matches!(framing, Framing::Upgrade);
    for h in hdrs {
        let name = h.name.of(buf);
        let keep = if upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            true
        } else {
            !is_framing(name) && !conn.is_hop_by_hop(buf, name)
        };
        if keep {
            ok &= out.push(h.line.of(buf));
        }
    }
    match framing {
        Framing::Upgrade => ok &= out.push(b"Connection: upgrade\r\n"),
        Framing::Interim => {}
        Framing::Message {
            chunked,
            content_length,
            keep_alive,
            client_11,
        } => {
            ok &= framing_header(out, chunked, content_length);
            if !keep_alive {
                ok &= out.push(b"Connection: close\r\n");
            } else if !client_11 {
                ok &= out.push(b"Connection: keep-alive\r\n");
            }
        }
    }
    ok && out.push(b"\r\n")
}

/// `{size:x}\r\n` into `out`; returns the used part.
pub fn hex_line(mut n: usize, out: &mut [u8; 18]) -> &[u8] {
    let mut digits = [0u8; 16];
    let mut k = 0;
    loop {
        digits[k] = b"0123456789abcdef"[n & 15];
        k += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for i in 0..k {
        out[i] = digits[k - 1 - i];
    }
    out[k] = b'\r';
    out[k + 1] = b'\n';
    &out[..k + 2]
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::framing::{request_meta, response_meta};
    use crate::http::{parse_request, parse_response, Status};

    fn request(raw: &[u8], fwd: &ForwardedHeaders, peer: &[u8]) -> String {
        request_trusting(raw, fwd, peer, &[])
    }

    /// `request`, with `trusted` identity headers.
    fn request_trusting(
        raw: &[u8],
        fwd: &ForwardedHeaders,
        peer: &[u8],
        trusted: &[String],
    ) -> String {
        let mut hdrs = vec![HeaderRef::default(); 64];
        let Ok(Status::Complete(head)) = parse_request(raw, &mut hdrs) else {
            panic!("test request must parse")
        };
        let meta = request_meta(raw, &head, &hdrs).expect("valid request");
        let o = RequestOut {
            conn: &meta.conn,
            body: meta.body,
            content_length: meta.content_length,
            upgrade: meta.upgrade,
            strip_expect: false,
            peer,
            https: false,
            fwd,
            trusted,
            absolute: meta.absolute,
        };
        let mut out = crate::buf::BufPool::default().take();
        assert!(compose_request(
            raw,
            &head,
            &hdrs[..head.header_count],
            &o,
            &mut out
        ));
        String::from_utf8(out.filled().to_vec()).unwrap()
    }

    fn response(raw: &[u8], framing: Framing) -> String {
        let mut hdrs = vec![HeaderRef::default(); 64];
        let Ok(Status::Complete(head)) = parse_response(raw, &mut hdrs) else {
            panic!("test response must parse")
        };
        let meta = response_meta(raw, &head, &hdrs[..head.header_count], false).expect("valid");
        let mut out = crate::buf::BufPool::default().take();
        assert!(compose_response(
            raw,
            &head,
            &hdrs[..head.header_count],
            &meta.conn,
            framing,
            &mut out
        ));
        String::from_utf8(out.filled().to_vec()).unwrap()
    }

    #[test]
    fn request_keeps_end_to_end_lines_verbatim_and_drops_hop_by_hop() {
        let fwd = ForwardedHeaders::default();
        let out = request(
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-Custom:  spaced \r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            &fwd,
            b"10.0.0.1",
        );
        assert_eq!(
            out,
            "GET /a?b HTTP/1.1\r\nHost: x\r\nX-Custom:  spaced \r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_goes_on_in_origin_form_with_its_authority_as_host() {
        let fwd = ForwardedHeaders {
            x_forwarded_for: HeaderMode::Off,
            x_forwarded_proto: HeaderMode::Off,
            forwarded: HeaderMode::Off,
        };
        let cases = [
            (
                "GET http://example.com/x?y HTTP/1.1\r\nHost: evil\r\nA: b\r\n\r\n",
                "GET /x?y HTTP/1.1\r\nHost: example.com\r\nA: b\r\n\r\n",
            ),
            (
                "GET HTTP://example.com:8080 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            ),
            (
                "OPTIONS http://a?q HTTP/1.1\r\nHost: a\r\n\r\n",
                "OPTIONS /?q HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                request(input.as_bytes(), &fwd, b"1.2.3.4"),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn request_forwarding_modes() {
        let fwd = ForwardedHeaders {
            x_forwarded_for: HeaderMode::Append,
            x_forwarded_proto: HeaderMode::Off,
            forwarded: HeaderMode::Replace,
        };
        let out = request(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            &fwd,
            b"::1",
        );
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 1.1.1.1, ::1\r\nForwarded: for=\"[::1]\";proto=http\r\n\r\n"
        );
    }

    /// `Connection` naming a framing, routing or forwarding header does not
    /// strip it: the upstream request carries the proxy's own framing.
    #[test]
    fn connection_cannot_strip_framing_host_or_forwarding() {
        let fwd = ForwardedHeaders::default();
        let cases = [
            (
                "POST /a HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n",
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: http\r\n\r\n",
            ),
            (
                "POST /a HTTP/1.1\r\nHost: x\r\nconnection: keep-alive, transfer-ENCODING\r\nTransfer-Encoding: chunked\r\n\r\n",
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: http\r\n\r\n",
            ),
            (
                "GET /a HTTP/1.1\r\nConnection: Host, X-Forwarded-For, X-Forwarded-Proto\r\nHost: x\r\n\r\n",
                "GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: http\r\n\r\n",
            ),
            // A zero length is stated, not dropped (a backend may want 411).
            (
                "POST /a HTTP/1.1\r\nContent-Length: 0\r\nHost: x\r\n\r\n",
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: http\r\n\r\n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                request(input.as_bytes(), &fwd, b"9.9.9.9"),
                want,
                "{input:?}"
            );
        }
    }

    /// Client-supplied identity headers are removed unless trusted.
    #[test]
    fn identity_headers_removed_unless_trusted() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Real-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nForwarded: for=6.6.6.6\r\nX-Keep: 1\r\nX-Forwarded-Ssl: on\r\nX_Real_IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\nX-Forwarded-Whatever: 1\r\n\r\n";
        let fwd = ForwardedHeaders::default();
        assert_eq!(
            request(raw, &fwd, b"1.2.3.4"),
            "GET / HTTP/1.1\r\nHost: x\r\nX-Keep: 1\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
        let trusted = ["x-real-ip".to_string(), "forwarded".to_string()];
        assert_eq!(
            request_trusting(raw, &fwd, b"1.2.3.4", &trusted),
            "GET / HTTP/1.1\r\nHost: x\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Keep: 1\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn response_framing_is_written_from_the_parse() {
        let raw =
            b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\nA: b\r\n\r\n";
        let mut hdrs = vec![HeaderRef::default(); 8];
        let Ok(Status::Complete(head)) = parse_response(raw, &mut hdrs) else {
            panic!("parses")
        };
        let meta = response_meta(raw, &head, &hdrs[..head.header_count], false).unwrap();
        assert_eq!(meta.body, BodyMode::ContentLength(5));
        let framing = Framing::Message {
            chunked: false,
            content_length: meta.content_length,
            keep_alive: true,
            client_11: true,
        };
        assert_eq!(
            response(raw, framing),
            "HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 5\r\n\r\n"
        );
        let mut d = [0u8; 20];
        assert_eq!(dec(0, &mut d), b"0");
        assert_eq!(dec(u64::MAX, &mut d), b"18446744073709551615");
    }

    #[test]
    fn request_upgrade_keeps_upgrade() {
        let fwd = ForwardedHeaders {
            x_forwarded_for: HeaderMode::Off,
            x_forwarded_proto: HeaderMode::Off,
            forwarded: HeaderMode::Off,
        };
        let out = request(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            &fwd,
            b"1.2.3.4",
        );
        assert_eq!(
            out,
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn response_framing_table() {
        let raw = b"HTTP/1.0 200 Fine\r\nServer: s\r\nConnection: close\r\n\r\n";
        let cases = [
            (
                Framing::Message {
                    chunked: true,
                    content_length: None,
                    keep_alive: true,
                    client_11: true,
                },
                "HTTP/1.1 200 Fine\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            (
                Framing::Message {
                    chunked: false,
                    content_length: None,
                    keep_alive: false,
                    client_11: true,
                },
                "HTTP/1.1 200 Fine\r\nServer: s\r\nConnection: close\r\n\r\n",
            ),
            (
                Framing::Message {
                    chunked: false,
                    content_length: None,
                    keep_alive: true,
                    client_11: false,
                },
                "HTTP/1.1 200 Fine\r\nServer: s\r\nConnection: keep-alive\r\n\r\n",
            ),
        ];
        for (framing, want) in cases {
            assert_eq!(response(raw, framing), want);
        }
        let up = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(
            response(up, Framing::Upgrade),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        );
    }

    #[test]
    fn a_request_over_tls_is_forwarded_as_https() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut hdrs = vec![HeaderRef::default(); 64];
        let Ok(Status::Complete(head)) = parse_request(raw, &mut hdrs) else {
            panic!("parses")
        };
        let meta = request_meta(raw, &head, &hdrs).unwrap();
        let fwd = ForwardedHeaders {
            forwarded: HeaderMode::Replace,
            ..ForwardedHeaders::default()
        };
        let o = RequestOut {
            conn: &meta.conn,
            body: meta.body,
            content_length: meta.content_length,
            upgrade: false,
            strip_expect: false,
            peer: b"1.2.3.4",
            https: true,
            fwd: &fwd,
            trusted: &[],
            absolute: None,
        };
        let mut out = crate::buf::BufPool::default().take();
        assert!(compose_request(
            raw,
            &head,
            &hdrs[..head.header_count],
            &o,
            &mut out
        ));
        let text = String::from_utf8_lossy(out.filled()).into_owned();
        assert!(text.contains("X-Forwarded-Proto: https\r\n"), "{text}");
        assert!(
            text.contains("Forwarded: for=1.2.3.4;proto=https\r\n"),
            "{text}"
        );
    }

    #[test]
    fn head_that_does_not_fit_reports_false() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: 0123456789abcdef\r\n\r\n";
        let mut hdrs = vec![HeaderRef::default(); 64];
        let Ok(Status::Complete(head)) = parse_request(raw, &mut hdrs) else {
            panic!("parses")
        };
        let meta = request_meta(raw, &head, &hdrs).unwrap();
        let fwd = ForwardedHeaders::default();
        let o = RequestOut {
            conn: &meta.conn,
            body: meta.body,
            content_length: meta.content_length,
            upgrade: false,
            strip_expect: false,
            peer: b"1.2.3.4",
            https: false,
            fwd: &fwd,
            trusted: &[],
            absolute: None,
        };
        let mut out = crate::buf::BufPool::default().take();
        let filler = vec![b'.'; crate::buf::BUF_SIZE - 40];
        assert!(out.push(&filler));
        assert!(!compose_request(
            raw,
            &head,
            &hdrs[..head.header_count],
            &o,
            &mut out
        ));
    }

    #[test]
    fn hex_lines_and_reasons() {
        let mut b = [0u8; 18];
        assert_eq!(hex_line(0, &mut b), b"0\r\n");
        assert_eq!(hex_line(255, &mut b), b"ff\r\n");
        assert_eq!(hex_line(16384, &mut b), b"4000\r\n");
        assert_eq!(hex_line(usize::MAX, &mut b), b"ffffffffffffffff\r\n");
        assert_eq!(reason(502), "Bad Gateway");
        assert_eq!(reason(599), "Error");
    }
}
