//! AVX2: 32 bytes per step.
//!
//! Each class is a 32-bit mask of the bytes outside it; a scan loads 32
//! bytes at a time and stops at the lowest set bit. The last partial block
//! of a buffer of 32 bytes or more is read as the 32 bytes ending at its
//! end, the bits before the scan's position shifted out, so there is no
//! byte-at-a-time tail; only buffers shorter than 32 bytes use the scalar
//! loops.

use super::{Class, Scanner, WithScanner};
use std::arch::x86_64::*;

/// The AVX2 scanner; only [`run`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx2 {
    /// Private: a value is proof that the CPU has AVX2.
    _cpu_has_avx2: (),
}

/// Calls `w` with the AVX2 scanner, compiled with AVX2 enabled so the
/// scanning loops inline into it.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn run<W: WithScanner>(w: W) -> W::Out {
    w.call(Avx2 { _cpu_has_avx2: () })
}

impl Scanner for Avx2 {
    #[inline(always)]
    fn token_end(self, buf: &[u8], from: usize) -> usize {
        // SAFETY: an `Avx2` exists only inside `run`, whose caller checked
        // that the CPU supports AVX2.
        unsafe { scan_class::<TOKEN>(buf, from) }
    }
    #[inline(always)]
    fn value_end(self, buf: &[u8], from: usize) -> usize {
        // SAFETY: as in `token_end`.
        unsafe { scan_class::<VALUE>(buf, from) }
    }
    #[inline(always)]
    fn target_end(self, buf: &[u8], from: usize) -> usize {
        // SAFETY: as in `token_end`.
        unsafe { scan_class::<TARGET>(buf, from) }
    }
    #[inline(always)]
    fn field_ends(self, buf: &[u8], from: usize) -> (usize, usize) {
        if from + 32 > buf.len() {
            return (self.token_end(buf, from), self.value_end(buf, from));
        }
        // SAFETY: from + 32 <= len, so the load is in bounds; AVX2 as in
        // `token_end`.
        let (token, value, cr) = unsafe {
            let v = _mm256_loadu_si256(buf.as_ptr().add(from).cast());
            let cr =
                _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\r' as i8))) as u32;
            (outside::<TOKEN>(v), outside::<VALUE>(v), cr)
        };
        let name_end = if token != 0 {
            from + token.trailing_zeros() as usize
        } else {
            self.token_end(buf, from + 32)
        };
        let end = if cr != 0 && value & ((cr & cr.wrapping_neg()) - 1) == 0 {
            // The usual case: the first byte outside the class is the
            // line's CR. Found by one compare, so that the next line, which
            // starts after it, does not wait on the whole classification.
            from + cr.trailing_zeros() as usize
        } else if value != 0 {
            from + value.trailing_zeros() as usize
        } else {
            self.value_end(buf, from + 32)
        };
        (name_end, end)
    }
}

/// The classes, as const generic arguments.
const TOKEN: u8 = 0;
const VALUE: u8 = 1;
const TARGET: u8 = 2;

/// Standalone scan (`simd::scan_with`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn scan(buf: &[u8], from: usize, class: Class) -> usize {
    // SAFETY: the caller guarantees AVX2.
    unsafe {
        match class {
            Class::Value => scan_class::<VALUE>(buf, from),
            Class::Target => scan_class::<TARGET>(buf, from),
        }
    }
}

/// Bit k set where byte k of `v` is outside class `K`.
///
/// `inline(always)` rather than `target_feature`: it is meant to be inlined
/// into a function compiled with AVX2 ([`run`], [`scan`]), where the
/// intrinsics inline too.
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn outside<const K: u8>(v: __m256i) -> u32 {
    // SAFETY: the caller guarantees AVX2.
    unsafe {
        let bad = match K {
            TOKEN => {
                // tchar by nibbles: LO[low nibble] has bit h set when the byte
                // 0xhl is a tchar (h < 8); HI[h] = 1 << h. `shuffle_epi8` gives
                // 0 for bytes >= 0x80 (their top bit), which are not tchars.
                let [l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, la, lb, lc, ld, le, lf] =
                    super::TOKEN_LO.map(|b| b as i8);
                #[rustfmt::skip]
                let lo_tbl = _mm256_setr_epi8(
                    l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, la, lb, lc, ld, le, lf,
                    l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, la, lb, lc, ld, le, lf,
                );
                #[rustfmt::skip]
                let hi_tbl = _mm256_setr_epi8(
                    1, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0,
                    1, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0,
                );
                let lo = _mm256_shuffle_epi8(lo_tbl, v);
                let hi_nibble = _mm256_and_si256(_mm256_srli_epi16::<4>(v), _mm256_set1_epi8(0x0f));
                let hi = _mm256_shuffle_epi8(hi_tbl, hi_nibble);
                _mm256_cmpeq_epi8(_mm256_and_si256(lo, hi), _mm256_setzero_si256())
            }
            _ => {
                // Bytes <= `limit` are controls (0x1f for values, 0x20 for
                // targets, whose SP is not allowed either); HTAB is allowed in
                // values; DEL in neither.
                let limit = _mm256_set1_epi8(if K == VALUE { 0x1f } else { 0x20 });
                let tab = _mm256_set1_epi8(if K == VALUE { 0x09 } else { 0x7f });
                // v <= limit (unsigned) <=> min(v, limit) == v
                let ctl = _mm256_cmpeq_epi8(_mm256_min_epu8(v, limit), v);
                let ok_tab = _mm256_cmpeq_epi8(v, tab);
                let del = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(0x7f));
                _mm256_or_si256(_mm256_andnot_si256(ok_tab, ctl), del)
            }
        };
        _mm256_movemask_epi8(bad) as u32
    }
}

/// Index of the first byte at or after `from` outside class `K`, or
/// `buf.len()` (`inline(always)` as [`outside`] is).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn scan_class<const K: u8>(buf: &[u8], from: usize) -> usize {
    let len = buf.len();
    let mut i = from;
    while i + 32 <= len {
        // SAFETY: i + 32 <= len, so the 32-byte unaligned load is in bounds.
        let v = unsafe { _mm256_loadu_si256(buf.as_ptr().add(i).cast()) };
        // SAFETY: the caller guarantees AVX2.
        let mask = unsafe { outside::<K>(v) };
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 32;
    }
    if i >= len {
        return len;
    }
    if len >= 32 {
        // The last 32 bytes, of which the first `i - base` (1 to 31) come
        // before the scan's position and are ignored.
        let base = len - 32;
        // SAFETY: base + 32 == len, so the load is in bounds.
        let v = unsafe { _mm256_loadu_si256(buf.as_ptr().add(base).cast()) };
        // SAFETY: the caller guarantees AVX2.
        let mask = unsafe { outside::<K>(v) } >> (i - base);
        return if mask != 0 {
            i + mask.trailing_zeros() as usize
        } else {
            len
        };
    }
    match K {
        TOKEN => super::ScalarScan.token_end(buf, i),
        VALUE => super::ScalarScan.value_end(buf, i),
        _ => super::ScalarScan.target_end(buf, i),
    }
}
