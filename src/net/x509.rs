//! The two facts the TLS listener needs from a certificate that rustls does
//! not hand out: the names it is for (to pick a certificate by SNI) and
//! when it expires (`lb_tls_certificate_expiry_seconds`, the start-up
//! warning). A DER walk over the fields on the way, nothing verified
//! (rustls and the client verify; this only reads the operator's own
//! file). Every length is checked: a malformed certificate gives no names
//! and no date, never a panic.
#![forbid(unsafe_code)]

/// One DER element at a time.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next element's tag and contents.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, value))
    }

    /// The next element, if it has this tag.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, v) if t == tag => Some(v),
            _ => None,
        }
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// subjectAltName (2.5.29.17) and commonName (2.5.4.3).
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// `dNSName` in a GeneralName (context tag 2, primitive).
const DNS_NAME: u8 = 0x82;

/// The to-be-signed part's fields, from `validity` on.
struct Tbs<'a> {
    validity: &'a [u8],
    subject: &'a [u8],
    extensions: Option<&'a [u8]>,
}

fn tbs(cert_der: &[u8]) -> Option<Tbs<'_>> {
    let cert = Der(cert_der).expect(SEQUENCE)?;
    let mut t = Der(Der(cert).expect(SEQUENCE)?);
    let mut el = t.next()?;
    if el.0 == 0xa0 {
        el = t.next()?; // the version; then the serial number
    }
    let _serial = el;
    t.expect(SEQUENCE)?; // signature algorithm
    t.expect(SEQUENCE)?; // issuer
    let validity = t.expect(SEQUENCE)?;
    let subject = t.expect(SEQUENCE)?;
    t.expect(SEQUENCE)?; // subject public key info
    let mut extensions = None;
    while let Some((tag, v)) = t.next() {
        if tag == 0xa3 {
            extensions = Some(Der(v).expect(SEQUENCE)?);
        }
    }
    Some(Tbs {
        validity,
        subject,
        extensions,
    })
}

/// The DNS names a certificate is for, lowercase: its subjectAltName
/// `dNSName`s, or where it has none, its subject's common name.
pub fn names(cert_der: &[u8]) -> Vec<String> {
    let Some(t) = tbs(cert_der) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(ext) = t.extensions {
        let mut exts = Der(ext);
        while let Some(e) = exts.expect(SEQUENCE) {
            let mut e = Der(e);
            if e.expect(OID) != Some(OID_SAN) {
                continue;
            }
            let mut value = e.next();
            if value.is_some_and(|(tag, _)| tag == 0x01) {
                value = e.next(); // `critical`
            }
            let Some((0x04, octets)) = value else {
                continue;
            };
            let Some(general) = Der(octets).expect(SEQUENCE) else {
                continue;
            };
            let mut general = Der(general);
            while let Some((tag, v)) = general.next() {
                if tag == DNS_NAME {
                    if let Ok(s) = std::str::from_utf8(v) {
                        out.push(s.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    if out.is_empty() {
        let mut rdns = Der(t.subject);
        while let Some(set) = rdns.expect(SET) {
            let mut set = Der(set);
            while let Some(atv) = set.expect(SEQUENCE) {
                let mut atv = Der(atv);
                if atv.expect(OID) == Some(OID_CN) {
                    if let Some((_, v)) = atv.next() {
                        if let Ok(s) = std::str::from_utf8(v) {
                            out.push(s.to_ascii_lowercase());
                        }
                    }
                }
            }
        }
    }
    out
}

/// `notAfter`, in seconds since the Unix epoch.
pub fn not_after(cert_der: &[u8]) -> Option<i64> {
    let t = tbs(cert_der)?;
    let mut v = Der(t.validity);
    v.next()?; // notBefore
    let (tag, time) = v.next()?;
    parse_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950..2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, s: &[u8]) -> Option<i64> {
    let digits = |b: &[u8]| -> Option<i64> {
        b.iter().try_fold(0i64, |a, &c| {
            c.is_ascii_digit().then(|| a * 10 + i64::from(c - b'0'))
        })
    };
    let (year, rest) = match tag {
        0x17 if s.len() == 13 => {
            let yy = digits(&s[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &s[2..])
        }
        0x18 if s.len() == 15 => (digits(&s[..4])?, &s[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let f = |i: usize| digits(&rest[i..i + 2]);
    let (month, day, h, m, sec) = (f(0)?, f(2)?, f(4)?, f(6)?, f(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a Unix time, for messages.
pub fn date(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Whether `name` (lowercase, from SNI) is covered by `pattern` (a
/// certificate name): equal, or `*.rest` matching exactly one leftmost label.
pub fn matches(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        (Some(rest), Some((label, name_rest))) => !label.is_empty() && rest == name_rest,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_times_parse() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(date(2_524_607_999), "2049-12-31");
        assert_eq!(parse_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(parse_time(0x17, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(parse_time(0x17, b"50010100000Z"), None);
        assert_eq!(parse_time(0x17, b"501301000000Z"), None);
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(matches("a.example", "a.example"));
        assert!(matches("*.example", "a.example"));
        assert!(!matches("*.example", "b.a.example"));
        assert!(!matches("*.example", "example"));
        assert!(!matches("*.example", ".example"));
    }

    #[test]
    fn garbage_gives_nothing_and_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 300)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Mostly DER-ish tags and lengths.
                    [
                        0x30, 0x31, 0x82, 0xa0, 0xa3, 0x04, 0x06, 0x81, 0x17, seed as u8,
                    ][(seed >> 8) as usize % 10]
                })
                .collect();
            let _ = names(&bytes);
            let _ = not_after(&bytes);
        }
        assert!(names(b"").is_empty());
    }
}
