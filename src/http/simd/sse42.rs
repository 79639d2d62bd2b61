//! SSE4.2 level: 16 bytes per step, the same classifiers as the AVX2 path
//! on 128-bit vectors (`pshufb` nibble tables for tchar, unsigned min and
//! compares for value and target bytes).
//!
//! As in `avx2.rs`, the last partial block of a buffer of 16 bytes or more
//! is read as the 16 bytes ending at its end; shorter buffers use the
//! scalar loops.

use super::{Class, Scanner, WithScanner};
use std::arch::x86_64::*;

/// The SSE4.2 scanner; only [`run`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Sse42 {
    /// Private: a value is proof that the CPU has SSE4.2.
    _cpu_has_sse42: (),
}

/// Calls `w` with the SSE4.2 scanner, compiled with SSE4.2 enabled so the
/// scanning loops inline into it.
///
/// # Safety
/// The CPU must support SSE4.2.
#[target_feature(enable = "sse4.2")]
pub unsafe fn run<W: WithScanner>(w: W) -> W::Out {
    w.call(Sse42 { _cpu_has_sse42: () })
}

impl Scanner for Sse42 {
    #[inline(always)]
    fn token_end(self, buf: &[u8], from: usize) -> usize {
        // SAFETY: an `Sse42` exists only inside `run`, whose caller checked
        // that the CPU supports SSE4.2.
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
        if from + 16 > buf.len() {
            return (self.token_end(buf, from), self.value_end(buf, from));
        }
        // SAFETY: from + 16 <= len, so the load is in bounds; SSE4.2 as in
        // `token_end`.
        let (token, value, cr) = unsafe {
            let v = _mm_loadu_si128(buf.as_ptr().add(from).cast());
            let cr = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8))) as u32;
            (outside::<TOKEN>(v), outside::<VALUE>(v), cr)
        };
        let name_end = if token != 0 {
            from + token.trailing_zeros() as usize
        } else {
            self.token_end(buf, from + 16)
        };
        let end = if cr != 0 && value & ((cr & cr.wrapping_neg()) - 1) == 0 {
            // The usual case: the first byte outside the class is the
            // line's CR. Found by one compare, so that the next line, which
            // starts after it, does not wait on the whole classification.
            from + cr.trailing_zeros() as usize
        } else if value != 0 {
            from + value.trailing_zeros() as usize
        } else {
            self.value_end(buf, from + 16)
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
/// The CPU must support SSE4.2.
#[target_feature(enable = "sse4.2")]
pub unsafe fn scan(buf: &[u8], from: usize, class: Class) -> usize {
    // SAFETY: the caller guarantees SSE4.2.
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
/// into a function compiled with SSE4.2 ([`run`], [`scan`]), where the
/// intrinsics inline too.
///
/// # Safety
/// The CPU must support SSE4.2.
#[inline(always)]
unsafe fn outside<const K: u8>(v: __m128i) -> u32 {
    // SAFETY: the caller guarantees SSE4.2.
    unsafe {
        let bad = match K {
            TOKEN => {
                // See `avx2::outside`.
                let [l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, la, lb, lc, ld, le, lf] =
                    super::TOKEN_LO.map(|b| b as i8);
                let lo_tbl = _mm_setr_epi8(
                    l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, la, lb, lc, ld, le, lf,
                );
                let hi_tbl = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0);
                let lo = _mm_shuffle_epi8(lo_tbl, v);
                let hi_nibble = _mm_and_si128(_mm_srli_epi16::<4>(v), _mm_set1_epi8(0x0f));
                let hi = _mm_shuffle_epi8(hi_tbl, hi_nibble);
                _mm_cmpeq_epi8(_mm_and_si128(lo, hi), _mm_setzero_si128())
            }
            _ => {
                let limit = _mm_set1_epi8(if K == VALUE { 0x1f } else { 0x20 });
                let tab = _mm_set1_epi8(if K == VALUE { 0x09 } else { 0x7f });
                // v <= limit (unsigned) <=> min(v, limit) == v
                let ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, limit), v);
                let ok_tab = _mm_cmpeq_epi8(v, tab);
                let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
                _mm_or_si128(_mm_andnot_si128(ok_tab, ctl), del)
            }
        };
        _mm_movemask_epi8(bad) as u32
    }
}

/// Index of the first byte at or after `from` outside class `K`, or
/// `buf.len()` (`inline(always)` as [`outside`] is).
///
/// # Safety
/// The CPU must support SSE4.2.
#[inline(always)]
unsafe fn scan_class<const K: u8>(buf: &[u8], from: usize) -> usize {
    let len = buf.len();
    let mut i = from;
    while i + 16 <= len {
        // SAFETY: i + 16 <= len, so the 16-byte unaligned load is in bounds.
        let v = unsafe { _mm_loadu_si128(buf.as_ptr().add(i).cast()) };
        // SAFETY: the caller guarantees SSE4.2.
        let mask = unsafe { outside::<K>(v) };
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    if i >= len {
        return len;
    }
    if len >= 16 {
        // The last 16 bytes, of which the first `i - base` (1 to 15) come
        // before the scan's position and are ignored.
        let base = len - 16;
        // SAFETY: base + 16 == len, so the load is in bounds.
        let v = unsafe { _mm_loadu_si128(buf.as_ptr().add(base).cast()) };
        // SAFETY: the caller guarantees SSE4.2.
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
