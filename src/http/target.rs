//! Request targets and the Host header (RFC 9112 section 3.2): which form a
//! target has, where the authority and the path of an absolute-form target
//! are, and whether a Host value or an authority is a plain `host[:port]`
//! that every reader takes the same way.
//!
//! The proxy needs these to send upstream a request the backend cannot
//! route differently from the proxy: one valid Host, and an origin-form
//! target (a request in absolute-form is sent on with its authority as Host,
//! RFC 9112 section 3.2.2).
//!
//! Where the RFCs leave room, the strict reading:
//! - `Host` is `uri-host [ ":" port ]` (RFC 3986 section 3.2.2): a
//!   `reg-name`, an IPv4 address (a `reg-name` by its bytes) or a bracketed
//!   IPv6 / IPvFuture literal. An empty host is refused even though
//!   `reg-name` may be empty: an `http` or `https` URI with an empty host is
//!   invalid and its recipient must reject it (RFC 9110 section 4.2.1), and
//!   the target URI of an origin-form request is built from Host (RFC 9112
//!   section 3.3). nginx refuses an empty Host too.
//! - No userinfo (`user@host`): RFC 9110 section 4.2.4 forbids sending it in
//!   a target and asks recipients to treat it as an error.
//! - A port is at most five digits and at most 65535; it may be empty
//!   (`host:`), as RFC 3986 allows.
//! - A zone identifier in an IPv6 literal (RFC 6874) is refused: HTTP does
//!   not define one.
//! - A target that is neither origin-form (`/...`), asterisk-form (`*`),
//!   absolute-form with the `http` or `https` scheme (any case) nor the
//!   authority-form of CONNECT is refused: the proxy could not send it to an
//!   origin server in origin-form.
#![forbid(unsafe_code)]

use super::parse::{ParseError, Span};
use super::scan::REG_NAME;

/// The parts of an absolute-form target (`http://authority/path?query`)
/// that the proxy rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbsoluteForm {
    /// `host[:port]`, validated like a Host value: what an origin server
    /// uses instead of the Host header (RFC 9112 section 3.2.2), so the
    /// Host a proxy sends on.
    pub authority: Span,
    /// The rest of the target after the authority: empty, or starting with
    /// `/`, `?` or `#`. Its origin-form is this with a `/` before it when it
    /// does not start with one (RFC 9112 section 3.2.1: an empty path is
    /// sent as `/`).
    pub path: Span,
}

/// Checks the target of a request (`is_connect` for CONNECT, whose target is
/// an authority and is not looked at here) and returns the parts of an
/// absolute-form one.
pub fn request_target(
    buf: &[u8],
    target: Span,
    is_connect: bool,
) -> Result<Option<AbsoluteForm>, ParseError> {
    let t = target.of(buf);
    if is_connect || t.first() == Some(&b'/') || t == b"*" {
        return Ok(None);
    }
    let after_scheme = if starts_with_ignore_case(t, b"http://") {
        7
    } else if starts_with_ignore_case(t, b"https://") {
        8
    } else {
        return Err(ParseError::TargetForm);
    };
    let end = t[after_scheme..]
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(t.len(), |p| after_scheme + p);
    if !is_host_and_port(&t[after_scheme..end]) {
        return Err(ParseError::TargetAuthority);
    }
    let base = target.start as usize;
    Ok(Some(AbsoluteForm {
        authority: Span::new(base + after_scheme, base + end),
        path: Span::new(base + end, target.end as usize),
    }))
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `uri-host [ ":" port ]` with a host that is not empty: a Host value, or
/// the authority of an absolute-form target.
#[inline]
pub fn is_host_and_port(v: &[u8]) -> bool {
    // The usual value, a reg-name without percent-encoding and perhaps a
    // port, in one pass of a table load and an add a byte (every request's
    // Host comes through here): the sum of `HOST_SUM` counts the `:` in its
    // low byte and every other byte that is not a reg-name byte above it.
    // When there is no such byte, the value is valid if the host before the
    // first `:` is not empty and, with a `:`, there is exactly one,
    // followed by a port.
    if v.len() <= HOST_SUM_MAX_LEN {
        let sum: u32 = v.iter().map(|&b| u32::from(HOST_SUM[b as usize])).sum();
        match (sum >> 8, sum & 0xff) {
            (0, 0) => return !v.is_empty(),
            (0, 1) => {
                // A port has at most five digits, so the `:` is in the
                // last six bytes or the value is not valid.
                let tail = v.len().saturating_sub(6);
                return match v[tail..].iter().position(|&b| b == b':') {
                    Some(p) => tail + p > 0 && is_port(&v[tail + p + 1..]),
                    None => false,
                };
            }
            (0, _) => return false,
            // `[` of an IP literal, `%` of percent-encoding, or a byte that
            // a Host cannot have.
            _ => {}
        }
    }
    is_host_and_port_general(v)
}

/// Longest value [`is_host_and_port`] checks in one pass: its count of `:`
/// must fit in the low byte of the sum.
const HOST_SUM_MAX_LEN: usize = 255;

/// 0 for a reg-name byte (besides `%`), 1 for `:`, 0x100 for any other.
static HOST_SUM: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if REG_NAME[i] {
            0
        } else if i == b':' as usize {
            1
        } else {
            0x100
        };
        i += 1;
    }
    t
};

/// `port` as this proxy takes it: up to five digits, at most 65535.
fn is_port(port: &[u8]) -> bool {
    port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && port.iter().fold(0u32, |n, d| n * 10 + (d - b'0') as u32) <= 65535
}

/// [`is_host_and_port`] for any value: IP literals, percent-encoding.
#[inline(never)]
fn is_host_and_port_general(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        if !is_ip_literal(&v[1..close]) {
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
    is_port(port) && (host.first() == Some(&b'[') || is_reg_name(host))
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, not empty.
fn is_reg_name(h: &[u8]) -> bool {
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

/// What is inside the brackets of an `IP-literal`: `IPv6address` or
/// `IPvFuture` (RFC 3986 section 3.2.2).
pub(super) fn is_ip_literal(s: &[u8]) -> bool {
    match s {
        [b'v' | b'V', rest @ ..] => {
            // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
            let hex = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            match &rest[hex..] {
                [b'.', tail @ ..] => {
                    hex > 0
                        && !tail.is_empty()
                        && tail.iter().all(|&b| b == b':' || REG_NAME[b as usize])
                }
                _ => false,
            }
        }
        _ => is_ipv6(s),
    }
}

/// `IPv6address` of RFC 3986: eight 16-bit pieces of one to four hex
/// digits, the last two of which may be an IPv4 address, with at most one
/// `::` standing for one or more zero pieces.
fn is_ipv6(s: &[u8]) -> bool {
    let mut pieces = 0;
    let mut compressed = false;
    let mut i = 0;
    if s.starts_with(b"::") {
        compressed = true;
        i = 2;
    } else if s.first() == Some(&b':') {
        return false;
    }
    while i < s.len() {
        let hex = s[i..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if s.get(i + hex) == Some(&b'.') {
            // The IPv4 tail: two pieces, and the end.
            if !is_ipv4(&s[i..]) {
                return false;
            }
            pieces += 2;
            break;
        }
        if hex == 0 || hex > 4 {
            return false;
        }
        pieces += 1;
        i += hex;
        match &s[i..] {
            [] => break,
            [b':', b':', ..] if !compressed => {
                compressed = true;
                i += 2;
            }
            // A single colon is followed by another piece.
            [b':', next, ..] if *next != b':' => i += 1,
            _ => return false,
        }
    }
    if compressed {
        pieces <= 7
    } else {
        pieces == 8
    }
}

/// `IPv4address`: four `dec-octet`s (0 to 255, no leading zero) and dots.
fn is_ipv4(s: &[u8]) -> bool {
    let mut octets = 0;
    for part in s.split(|&b| b == b'.') {
        let ok = match part {
            [d] => d.is_ascii_digit(),
            [b'1'..=b'9', d] => d.is_ascii_digit(),
            [b'1', a, b] => a.is_ascii_digit() && b.is_ascii_digit(),
            [b'2', b'0'..=b'4', d] => d.is_ascii_digit(),
            [b'2', b'5', b'0'..=b'5'] => true,
            _ => false,
        };
        if !ok {
            return false;
        }
        octets += 1;
    }
    octets == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values() {
        let cases: &[(&[u8], bool)] = &[
            // reg-name [":" port]
            (b"example.com", true),
            (b"EXAMPLE.com:8080", true),
            (b"localhost:0", true),
            (b"a:65535", true),
            (b"a:", true),
            (b"home_0.netscape.com:443", true),
            (b"0.0.0.0=5000", true),
            (b"xn--bcher-kva.example", true),
            (b"caf%C3%A9.example", true),
            (b"!$&'()*+,;=-._~", true),
            (b"", false),
            (b":80", false),
            (b"a b", false),
            (b"a\tb", false),
            (b"evil@good", false),
            (b"user:pass@good", false),
            (b"x/y", false),
            (b"x?y", false),
            (b"x#y", false),
            (b"x\\y", false),
            (b"a\"b", false),
            (b"caf\xc3\xa9", false),
            (b"%", false),
            (b"a%4", false),
            (b"a%zz", false),
            (b"a:65536", false),
            (b"a:000080", false),
            (b"a:8o", false),
            (b"a:-1", false),
            (b"a:80:80", false),
            // IPv4 (a reg-name by its bytes)
            (b"10.0.0.7", true),
            (b"10.0.0.7:8080", true),
            // IP-literal
            (b"[::1]", true),
            (b"[::1]:8080", true),
            (b"[::]", true),
            (b"[2001:db8::8:800:200c:417a]", true),
            (b"[2001:DB8:0:0:8:800:200C:417A]:443", true),
            (b"[fe80::]", true),
            (b"[::ffff:192.0.2.1]", true),
            (b"[1:2:3:4:5:6:1.2.3.4]", true),
            (b"[1:2:3:4:5:6:7::]", true),
            (b"[::2:3:4:5:6:7:8]", true),
            (b"[v1.fe80::a+en1]", true),
            (b"[", false),
            (b"[]", false),
            (b"[::1", false),
            (b"::1", false),
            (b"[::1]x", false),
            (b"[::1]:", true),
            (b"[::1]:99999", false),
            (b"[1:2:3:4:5:6:7]", false),
            (b"[1:2:3:4:5:6:7:8:9]", false),
            (b"[1:2:3:4:5:6:7::8]", false),
            (b"[1::2::3]", false),
            (b"[:::]", false),
            (b"[:1::]", false),
            (b"[1:]", false),
            (b"[12345::]", false),
            (b"[::g]", false),
            (b"[::1.2.3]", false),
            (b"[::1.2.3.256]", false),
            (b"[::1.2.3.04]", false),
            (b"[::1.2.3.4:5]", false),
            (b"[1:2:3:4:5:6:7:1.2.3.4]", false),
            (b"[fe80::1%25eth0]", false),
            (b"[v1.]", false),
            (b"[v.a]", false),
            (b"[vx.a]", false),
            (b"[v1.a/b]", false),
            (b"[a@b]", false),
        ];
        for (v, want) in cases {
            assert_eq!(
                is_host_and_port(v),
                *want,
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn every_short_string_of_the_interesting_bytes_is_judged_without_panic() {
        // All strings of up to five bytes over the bytes the grammar turns
        // on, so every branch meets every neighbour and every end.
        const ALPHABET: &[u8] = b"[]:.%v1aF@/ ";
        let mut v = Vec::new();
        let mut valid = 0;
        for len in 0..=5u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                v.clear();
                for _ in 0..len {
                    v.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                valid += is_host_and_port(&v) as usize;
                let t = [b"http://", &v[..]].concat();
                let _ = request_target(&t, Span::new(0, t.len()), false);
            }
        }
        assert!(valid > 0);
    }

    /// `is_host_and_port` judges as the code before the speed work did
    /// (`framing_reference`): every string of up to five of the bytes the
    /// grammar turns on, then longer random ones over every byte value.
    #[test]
    fn host_check_agrees_with_the_reference() {
        use crate::http::framing_reference as reference;
        const ALPHABET: &[u8] = b"[]:.%v1aF@/ 9";
        let mut v = Vec::new();
        for len in 0..=5u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                v.clear();
                for _ in 0..len {
                    v.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                assert_eq!(
                    is_host_and_port(&v),
                    reference::is_host_and_port(&v),
                    "{:?}",
                    String::from_utf8_lossy(&v)
                );
            }
        }
        const COMMON: &[u8] = b"abcxyzABZ0123456789.-_~:%[]";
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        let mut valid = 0;
        for _ in 0..300_000 {
            v.clear();
            for _ in 0..next(40) {
                v.push(match next(40) {
                    0 => next(256) as u8,
                    1 => b'%',
                    _ => COMMON[next(COMMON.len() as u64)],
                });
            }
            if next(8) == 0 {
                let at = next(v.len() as u64 + 1);
                v.insert(at, b':');
                v.truncate(at + 1 + next(8));
                for d in &mut v[at + 1..] {
                    *d = b'0' + next(10) as u8;
                }
            }
            let want = reference::is_host_and_port(&v);
            assert_eq!(
                is_host_and_port(&v),
                want,
                "{:?}",
                String::from_utf8_lossy(&v)
            );
            valid += want as usize;
        }
        assert!(valid > 1000, "{valid} valid");
    }

    #[test]
    fn ipv6_agrees_with_std() {
        // Every string of up to nine bytes over these, judged by the
        // standard library's parser too (which follows RFC 4291 text form,
        // the same grammar).
        const ALPHABET: &[u8] = b"0:1.f";
        let mut v = Vec::new();
        for len in 0..=9u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                v.clear();
                for _ in 0..len {
                    v.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                let text = std::str::from_utf8(&v).unwrap();
                let std_ok = text.parse::<std::net::Ipv6Addr>().is_ok();
                assert_eq!(is_ipv6(&v), std_ok, "{text}");
            }
        }
        // Longer ones: up to nine pieces of zero to five hex digits, a `::`
        // at any place or none, now and then an IPv4 tail, valid or not.
        const TAILS: [&str; 5] = ["1.2.3.4", "255.0.0.1", "256.1.1.1", "01.1.1.1", "1.2.3"];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut text = String::new();
        let (mut valid, mut full) = (0, 0);
        for _ in 0..200_000 {
            text.clear();
            let pieces = next(10);
            let gap = next(pieces + 3);
            for k in 0..pieces {
                if k == gap {
                    text.push_str("::");
                } else if k > 0 {
                    text.push(':');
                }
                for _ in 0..[1, 1, 2, 4, 4, 0, 5][next(7) as usize] {
                    text.push(b"0123456789abcdefABCDEF"[next(22) as usize] as char);
                }
            }
            if gap == pieces {
                text.push_str("::");
            }
            if next(4) == 0 {
                if !text.is_empty() && !text.ends_with(':') {
                    text.push(':');
                }
                text.push_str(TAILS[next(5) as usize]);
            }
            let std_ok = text.parse::<std::net::Ipv6Addr>().is_ok();
            assert_eq!(is_ipv6(text.as_bytes()), std_ok, "{text}");
            valid += std_ok as usize;
            full += (std_ok && !text.contains("::")) as usize;
        }
        assert!(
            valid > 1000 && full > 10,
            "{valid} valid, {full} without ::"
        );
    }

    /// The target as a span of a buffer with a prefix, so that spans are
    /// checked as offsets into the buffer, not into the target.
    fn target(t: &[u8], connect: bool) -> Parts {
        let mut buf = b"GET ".to_vec();
        buf.extend_from_slice(t);
        let span = Span::new(4, buf.len());
        Ok(request_target(&buf, span, connect)?.map(|a| {
            (
                String::from_utf8_lossy(a.authority.of(&buf)).into_owned(),
                String::from_utf8_lossy(a.path.of(&buf)).into_owned(),
            )
        }))
    }

    /// The authority and path of an absolute-form target, as text.
    type Parts = Result<Option<(String, String)>, ParseError>;

    #[test]
    fn target_forms() {
        let abs = |a: &str, p: &str| Ok(Some((a.to_string(), p.to_string())));
        let cases: &[(&[u8], bool, Parts)] = &[
            (b"/", false, Ok(None)),
            (b"/a?b#c", false, Ok(None)),
            (b"*", false, Ok(None)),
            (b"example.com:443", true, Ok(None)),
            (b"http://example.com/x", false, abs("example.com", "/x")),
            (
                b"HTTPS://Example.com:8443/a/b?c=d",
                false,
                abs("Example.com:8443", "/a/b?c=d"),
            ),
            (
                b"http://hypnotoad.org?hail=all",
                false,
                abs("hypnotoad.org", "?hail=all"),
            ),
            (
                b"http://hypnotoad.org:1234",
                false,
                abs("hypnotoad.org:1234", ""),
            ),
            (b"http://[::1]:80/", false, abs("[::1]:80", "/")),
            (b"http://a#frag", false, abs("a", "#frag")),
            (
                b"http://a%12:b!&*$@hypnotoad.org:1234/toto",
                false,
                Err(ParseError::TargetAuthority),
            ),
            (
                b"http://user@host/",
                false,
                Err(ParseError::TargetAuthority),
            ),
            (b"http:///x", false, Err(ParseError::TargetAuthority)),
            (b"http://", false, Err(ParseError::TargetAuthority)),
            (b"http://a b/", false, Err(ParseError::TargetAuthority)),
            (b"http://a:99999/", false, Err(ParseError::TargetAuthority)),
            (b"http:/x", false, Err(ParseError::TargetForm)),
            (b"http:x", false, Err(ParseError::TargetForm)),
            (b"ftp://a/x", false, Err(ParseError::TargetForm)),
            (b"httpx://a/x", false, Err(ParseError::TargetForm)),
            (b"example.com/x", false, Err(ParseError::TargetForm)),
            (b"example.com:443", false, Err(ParseError::TargetForm)),
            (b"**", false, Err(ParseError::TargetForm)),
            (b"?a", false, Err(ParseError::TargetForm)),
        ];
        for (t, connect, want) in cases {
            assert_eq!(
                &target(t, *connect),
                want,
                "{:?}",
                String::from_utf8_lossy(t)
            );
        }
    }
}
