//! SSE4.2: 16 bytes per step with `pcmpestri` in ranges mode, which finds
//! the first byte inside any of the forbidden ranges.

use super::Class;
use std::arch::x86_64::*;

/// # Safety
/// The CPU must support SSE4.2.
#[target_feature(enable = "sse4.2")]
pub unsafe fn scan(buf: &[u8], from: usize, class: Class) -> usize {
    // Forbidden ranges as (low, high) pairs.
    let (ranges, n): (&[u8; 16], i32) = match class {
        Class::Value => (
            b"\x00\x08\x0a\x1f\x7f\x7f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            6,
        ),
        Class::Target => (
            b"\x00\x20\x7f\x7f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            4,
        ),
    };
    // SAFETY: ranges is 16 bytes.
    let r = unsafe { _mm_loadu_si128(ranges.as_ptr().cast()) };
    let mut i = from;
    while i + 16 <= buf.len() {
        // SAFETY: i + 16 <= len, so the 16-byte unaligned load is in bounds.
        let v = unsafe { _mm_loadu_si128(buf.as_ptr().add(i).cast()) };
        let idx = _mm_cmpestri(
            r,
            n,
            v,
            16,
            _SIDD_UBYTE_OPS | _SIDD_CMP_RANGES | _SIDD_LEAST_SIGNIFICANT,
        );
        if idx != 16 {
            return i + idx as usize;
        }
        i += 16;
    }
    super::scalar(buf, i, class)
}
