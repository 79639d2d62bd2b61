//! Byte-class tables and the scanning loops of the parser.
//!
//! The loops here are the hot part of parsing: most head bytes are header
//! values. Each has a scalar form; SIMD forms will sit beside them with the
//! same contract and the same tests.
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

/// The scalar twin of [`value_end`].
#[inline]
pub fn value_end_scalar(buf: &[u8], from: usize) -> usize {
    let mut i = from;
    // Eight at a time: the common value is plain ASCII text.
    while i + 8 <= buf.len() {
        let w = &buf[i..i + 8];
        if !(VALUE[w[0] as usize]
            & VALUE[w[1] as usize]
            & VALUE[w[2] as usize]
            & VALUE[w[3] as usize]
            & VALUE[w[4] as usize]
            & VALUE[w[5] as usize]
            & VALUE[w[6] as usize]
            & VALUE[w[7] as usize])
        {
            break;
        }
        i += 8;
    }
    while i < buf.len() && VALUE[buf[i] as usize] {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `from` not in `class`, or `buf.len()`.
#[inline]
pub fn class_end(buf: &[u8], from: usize, class: &[bool; 256]) -> usize {
    let mut i = from;
    while i < buf.len() && class[buf[i] as usize] {
        i += 1;
    }
    i
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
    }
}
