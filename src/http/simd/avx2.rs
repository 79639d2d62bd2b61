//! AVX2: 32 bytes per step.

use super::Class;
use std::arch::x86_64::*;

/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn scan(buf: &[u8], from: usize, class: Class) -> usize {
    let mut i = from;
    // Bytes <= `limit` are controls (0x1f for values, 0x20 for targets).
    let limit = _mm256_set1_epi8(if class == Class::Value { 0x1f } else { 0x20 });
    let del = _mm256_set1_epi8(0x7f);
    let tab = _mm256_set1_epi8(if class == Class::Value { 0x09 } else { 0x7f });
    while i + 32 <= buf.len() {
        // SAFETY: i + 32 <= len, so the 32-byte unaligned load is in bounds.
        let v = unsafe { _mm256_loadu_si256(buf.as_ptr().add(i).cast()) };
        // v <= limit (unsigned) <=> min(v, limit) == v
        let ctl = _mm256_cmpeq_epi8(_mm256_min_epu8(v, limit), v);
        let ok_tab = _mm256_cmpeq_epi8(v, tab);
        let bad = _mm256_or_si256(_mm256_andnot_si256(ok_tab, ctl), _mm256_cmpeq_epi8(v, del));
        let mask = _mm256_movemask_epi8(bad) as u32;
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 32;
    }
    super::scalar(buf, i, class)
}
