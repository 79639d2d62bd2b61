//! SIMD twins of the parser's scanning loops, chosen once per process by
//! CPU detection: AVX2 (32 bytes a step), SSE4.2 (16 bytes, `pcmpestri`
//! ranges), else the scalar loop of `scan.rs`. Every path returns exactly
//! what the scalar one does; the tests run all of them on the same inputs.
//!
//! Building with `--features scalar` forces the scalar path everywhere.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod sse42;

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Scalar = 1,
    Sse42 = 2,
    Avx2 = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The best level this CPU supports (detected once, then cached).
#[inline]
pub fn level() -> Level {
    match LEVEL.load(Relaxed) {
        1 => Level::Scalar,
        2 => Level::Sse42,
        3 => Level::Avx2,
        _ => {
            let l = detect();
            LEVEL.store(l as u8, Relaxed);
            l
        }
    }
}

fn detect() -> Level {
    if cfg!(feature = "scalar") {
        return Level::Scalar;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            return Level::Avx2;
        }
        if std::is_x86_feature_detected!("sse4.2") {
            return Level::Sse42;
        }
    }
    Level::Scalar
}

/// Forces `level` for the whole process (tests and benchmarks that compare
/// paths). Ignored if the CPU lacks it.
pub fn set_level(l: Level) {
    if available().contains(&l) {
        LEVEL.store(l as u8, Relaxed);
    }
}

/// Levels usable on this CPU, for tests that compare them.
pub fn available() -> Vec<Level> {
    let mut v = vec![Level::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("sse4.2") {
            v.push(Level::Sse42);
        }
        if std::is_x86_feature_detected!("avx2") {
            v.push(Level::Avx2);
        }
    }
    v
}

/// What a scan stops at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Field value: stops at controls other than HTAB, and DEL.
    Value,
    /// Request target: stops at controls, SP and DEL.
    Target,
}

/// Index of the first byte at or after `from` that `class` does not allow,
/// or `buf.len()`, using `level`.
#[inline]
pub fn scan_with(level: Level, buf: &[u8], from: usize, class: Class) -> usize {
    let from = from.min(buf.len());
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level` is Avx2 only if the CPU reported AVX2 (`detect`/`available`).
        Level::Avx2 => unsafe { avx2::scan(buf, from, class) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level` is Sse42 only if the CPU reported SSE4.2.
        Level::Sse42 => unsafe { sse42::scan(buf, from, class) },
        _ => scalar(buf, from, class),
    }
}

/// [`scan_with`] at the detected level.
#[inline]
pub fn scan(buf: &[u8], from: usize, class: Class) -> usize {
    scan_with(level(), buf, from, class)
}

pub fn scalar(buf: &[u8], from: usize, class: Class) -> usize {
    match class {
        Class::Value => super::scan::value_end_scalar(buf, from),
        Class::Target => super::scan::class_end(buf, from, &super::scan::TARGET),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::scan::{TARGET, VALUE};

    /// Every byte value, at every offset and length, against the tables
    /// (httparse's and memchr's way of testing SIMD paths).
    #[test]
    fn every_level_agrees_with_the_tables() {
        for level in available() {
            for (class, table) in [(Class::Value, &VALUE), (Class::Target, &TARGET)] {
                for bad in 0u8..=255 {
                    for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100] {
                        for pos in 0..=len {
                            let mut v = vec![b'a'; len];
                            if pos < len {
                                v[pos] = bad;
                            }
                            for from in [0, 1.min(len)] {
                                let hit = pos < len && pos >= from && !table[bad as usize];
                                let want = if hit { pos } else { len };
                                assert_eq!(scan_with(level, &v, from, class), want, "{level:?} {class:?} byte {bad:#x} at {pos} of {len} from {from}");
                            }
                        }
                    }
                }
            }
        }
    }
}
