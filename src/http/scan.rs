//! Byte-class tables and the scanning loops of the parser.
//!
//! The loops here are the hot part of parsing: most head bytes are header
//! values. These are the scalar forms (the field-value and target scans
//! eight bytes at a time in a `u64`); the SIMD forms in `simd/` have the
//! same contract and the same tests, and the parser reaches whichever runs
//! through `simd::Scanner`. Also here: the word-at-a-time case-insensitive
//! compare (`eq_ignore_case`) with which the framing checks recognise
//! header names and values.
#![forbid(unsafe_code)]

/// `tchar` of RFC 9110 section 5.6.2: the bytes of a method or a field name.
pub static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// Bytes allowed in a request target: visible ASCII and obs-text, no
/// controls, no space.
pub static TARGET: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 256 {
        t[i] = i != 0x7f;
        i += 1;
    }
    t
};

/// `unreserved` and `sub-delims` of RFC 3986 section 2: the bytes of a
/// `reg-name` (a host name in a Host value or an authority) besides
/// `pct-encoded` triplets.
pub static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        i += 1;
    }
    t
};

/// Bytes allowed inside a field value: field-vchar, obs-text, SP and HTAB.
/// CR, LF, NUL and every other control are not.
pub static VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i >= 0x20 && i != 0x7f) || i == b'\t' as usize;
        i += 1;
    }
    t
};

/// Index of the first byte at or after `from` that is not a field-value byte,
/// or `buf.len()`: the SIMD path when the CPU has one.
#[inline]
pub fn value_end(buf: &[u8], from: usize) -> usize {
    super::simd::scan(buf, from, super::simd::Class::Value)
}

/// Index of the first byte at or after `from` that may not be in a request
/// target, or `buf.len()`.
#[inline]
pub fn target_end(buf: &[u8], from: usize) -> usize {
    super::simd::scan(buf, from, super::simd::Class::Target)
}

/// The scalar twin of [`value_end`]: eight bytes per step as a `u64`.
#[inline]
pub fn value_end_scalar(buf: &[u8], from: usize) -> usize {
    swar_end(buf, from, |x| {
        (swar_below(x, 0x20) & !swar_equal(x, b'\t')) | swar_equal(x, 0x7f)
    })
}

/// The scalar twin of [`target_end`]: eight bytes per step as a `u64`.
#[inline]
pub fn target_end_scalar(buf: &[u8], from: usize) -> usize {
    swar_end(buf, from, |x| swar_below(x, 0x21) | swar_equal(x, 0x7f))
}

/// The high bit of every byte of a word.
const HIGH: u64 = 0x8080_8080_8080_8080;
/// The low seven bits of every byte of a word.
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// A byte value repeated in every byte of a word.
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// The high bit of each byte of `x` set when that byte is below `n` (1 to
/// 0x80), exactly: no carry crosses from one byte to the next.
#[inline(always)]
fn swar_below(x: u64, n: u8) -> u64 {
    // (b & 0x7f) + (0x80 - n) <= 0xff has its high bit set when
    // b & 0x7f >= n; or-ing `x` adds the bytes from 0x80 up.
    !(((x & LOW7) + splat(0x80 - n)) | x) & HIGH
}

/// The high bit of each byte of `x` set when that byte is `c`, exactly.
#[inline(always)]
fn swar_equal(x: u64, c: u8) -> u64 {
    let y = x ^ splat(c);
    // (y & 0x7f) + 0x7f has its high bit set when the low bits are not all
    // zero; or-ing `y` adds the high bit itself.
    !(((y & LOW7) + LOW7) | y) & HIGH
}

/// Index of the first byte at or after `from` whose high bit is set in
/// `bad(word)`, or `buf.len()` (or `from` if it is beyond the end), reading
/// eight bytes at a time; the last partial word is read as the eight bytes
/// ending at the end, those before the scan's position shifted out.
#[inline(always)]
fn swar_end(buf: &[u8], from: usize, bad: impl Fn(u64) -> u64) -> usize {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let len = buf.len();
    let mut i = from;
    while i + 8 <= len {
        let m = bad(word(i));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    if i >= len {
        return i;
    }
    if len >= 8 {
        let base = len - 8;
        let m = bad(word(base)) >> (8 * (i - base));
        return if m != 0 {
            i + (m.trailing_zeros() / 8) as usize
        } else {
            len
        };
    }
    // Fewer than eight bytes in all: one at a time, as the low byte of a
    // word.
    while i < len && bad(buf[i] as u64) & 0x80 == 0 {
        i += 1;
    }
    i
}

/// `x` with each ASCII capital letter made small, as
/// `u8::to_ascii_lowercase` does byte by byte: eight bytes at once.
#[inline(always)]
pub fn lowercase_word(x: u64) -> u64 {
    let low = x & LOW7;
    // The high bit of a byte set where its low seven bits are at least
    // b'A', and where they are above b'Z' (no sum reaches 0x100, so no
    // carry crosses into the next byte); bytes from 0x80 up are no letters.
    let from_a = low + splat(0x80 - b'A');
    let past_z = low + splat(0x80 - b'Z' - 1);
    let capital = from_a & !past_z & !x & HIGH;
    // 0x80 >> 2 is 0x20, the case bit.
    x | (capital >> 2)
}

/// `bytes.eq_ignore_ascii_case(lower)` for a `lower` with no capital
/// letters, eight bytes at a time: each word of `bytes` is lowercased
/// ([`lowercase_word`]) and compared with the same word of `lower`, which
/// is a constant at every call (this inlines), so its words are too.
#[inline(always)]
pub fn eq_ignore_case(bytes: &[u8], lower: &[u8]) -> bool {
    debug_assert!(!lower.iter().any(u8::is_ascii_uppercase));
    let n = lower.len();
    if bytes.len() != n {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap()) as u64;
    if n >= 8 {
        // Whole words, then the last eight bytes (overlapping the word
        // before when `n` is not a multiple of eight).
        let mut at = 0;
        while at + 8 < n {
            if lowercase_word(word(bytes, at)) != word(lower, at) {
                return false;
            }
            at += 8;
        }
        lowercase_word(word(bytes, n - 8)) == word(lower, n - 8)
    } else if n >= 4 {
        // The first four bytes and the last four, in one word.
        let pair = |s: &[u8]| half(s, 0) | half(s, n - 4) << 32;
        lowercase_word(pair(bytes)) == pair(lower)
    } else {
        bytes.eq_ignore_ascii_case(lower)
    }
}

/// Index of the first byte at or after `from` not in `class`, or `buf.len()`
/// (or `from` if it is beyond the end).
#[inline]
pub fn class_end(buf: &[u8], from: usize, class: &[bool; 256]) -> usize {
    match buf.get(from..) {
        Some(rest) => rest
            .iter()
            .position(|&b| !class[b as usize])
            .map_or(buf.len(), |p| from + p),
        None => from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_end_stops_at_every_forbidden_byte_at_every_offset() {
        for bad in 0u8..=255 {
            if VALUE[bad as usize] {
                continue;
            }
            for len in 0..40 {
                for pos in 0..len {
                    let mut v = vec![b'a'; len];
                    v[pos] = bad;
                    assert_eq!(value_end(&v, 0), pos, "byte {bad:#x} at {pos} of {len}");
                }
            }
        }
    }

    #[test]
    fn scalar_scans_agree_with_the_tables() {
        // Every byte at every position of short and word-crossing buffers,
        // from every start.
        for bad in 0u8..=255 {
            for len in 0..=20 {
                for pos in 0..=len {
                    let mut v = vec![b'a'; len];
                    if pos < len {
                        v[pos] = bad;
                    }
                    for from in 0..=len + 1 {
                        for (got, table) in [
                            (value_end_scalar(&v, from), &VALUE),
                            (target_end_scalar(&v, from), &TARGET),
                        ] {
                            let want = if from > len {
                                from
                            } else {
                                (from..len).find(|&k| !table[v[k] as usize]).unwrap_or(len)
                            };
                            assert_eq!(got, want, "byte {bad:#x} at {pos} of {len} from {from}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lowercase_word_is_to_ascii_lowercase() {
        for b in 0..=255u8 {
            for k in 0..8 {
                let x = u64::from(b) << (8 * k) | 0x4142_5a5b_6061_7a7b & !(0xff << (8 * k));
                let want = u64::from_le_bytes(x.to_le_bytes().map(|c| c.to_ascii_lowercase()));
                assert_eq!(lowercase_word(x), want, "byte {b:#x} at {k}");
            }
        }
    }

    #[test]
    fn eq_ignore_case_is_eq_ignore_ascii_case() {
        // Every length up to 40, a lowercase name against itself in mixed
        // case and against every byte value at every position.
        let lower: Vec<u8> = (0..40).map(|k| b"abcz-_0@[`{"[k % 11]).collect();
        for n in 0..=40 {
            let want = &lower[..n];
            let mut v: Vec<u8> = want.iter().map(|b| b.to_ascii_uppercase()).collect();
            assert!(eq_ignore_case(&v, want));
            assert!(!eq_ignore_case(&v[..n.saturating_sub(1)], want) || n == 0);
            for at in 0..n {
                let keep = v[at];
                for b in 0..=255u8 {
                    v[at] = b;
                    assert_eq!(
                        eq_ignore_case(&v, want),
                        v.eq_ignore_ascii_case(want),
                        "{n} {at} {b:#x}"
                    );
                }
                v[at] = keep;
            }
        }
    }

    #[test]
    fn every_tchar_is_a_value_byte() {
        // The parser relies on it: a valid name, its colon and OWS never
        // stop a value scan.
        for b in 0..256 {
            assert!(!TOKEN[b] || VALUE[b], "{b:#x}");
        }
    }

    #[test]
    fn tables_match_the_rfc() {
        assert!(
            TOKEN[b'a' as usize]
                && TOKEN[b'~' as usize]
                && !TOKEN[b':' as usize]
                && !TOKEN[b' ' as usize]
        );
        assert!(
            !VALUE[0]
                && !VALUE[b'\r' as usize]
                && !VALUE[b'\n' as usize]
                && VALUE[b'\t' as usize]
                && VALUE[0x80]
        );
        assert!(!TARGET[b' ' as usize] && !TARGET[0x7f] && TARGET[b'/' as usize]);
        let reg_name: Vec<u8> = (0..=255u8).filter(|&b| REG_NAME[b as usize]).collect();
        let mut want =
            b"!$&'()*+,-.0123456789;=ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
                .to_vec();
        want.sort_unstable();
        assert_eq!(reg_name, want);
    }
}
