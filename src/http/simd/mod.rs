//! SIMD twins of the parser's scanning loops, chosen once per process by
//! CPU detection: AVX2 (32 bytes a step), SSE4.2 (16 bytes), else the scalar
//! loops of `scan.rs`. Every path returns exactly what the scalar one does;
//! the tests run all of them on the same inputs.
//!
//! The parser is generic over a `Scanner` (one per level) and `run`
//! instantiates it once per level inside a function compiled for that
//! level's CPU features, so the scanning loops inline into the parser's
//! header loop instead of being called through a dispatch per field.
//!
//! Building with `--features scalar` forces the scalar path everywhere.
#![allow(unsafe_code)]

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

/// The scanning loops of one level. Each method returns the index of the
/// first byte at or after `from` (`from` <= `buf.len()`) outside its class,
/// or `buf.len()`; every implementation returns exactly what [`ScalarScan`]
/// does. A value of the SIMD implementations is made only by [`run_at`],
/// for a level the CPU has: it is the proof their `unsafe` relies on.
pub(crate) trait Scanner: Copy {
    /// `tchar` (the `TOKEN` table of `scan.rs`): methods and field names.
    fn token_end(self, buf: &[u8], from: usize) -> usize;
    /// Field-value bytes ([`Class::Value`]).
    fn value_end(self, buf: &[u8], from: usize) -> usize;
    /// Request-target bytes ([`Class::Target`]).
    fn target_end(self, buf: &[u8], from: usize) -> usize;
    /// `(token_end(buf, from), value_end(buf, from))`, from one load where
    /// the level can: a header line's name and, when the name is valid, the
    /// line's end.
    fn field_ends(self, buf: &[u8], from: usize) -> (usize, usize);
}

/// A computation generic over the [`Scanner`], for [`run`].
pub(crate) trait WithScanner {
    type Out;
    fn call<S: Scanner>(self, s: S) -> Self::Out;
}

/// Runs `w` with the scanner of the process's level ([`level`]), its code
/// compiled for that level's CPU features (`w.call` should be
/// `#[inline(always)]` for the scanning to inline).
#[inline]
pub(crate) fn run<W: WithScanner>(w: W) -> W::Out {
    run_at(level(), w)
}

/// [`run`] at `level`, which must be [`level`] or one of [`available`]: a
/// level the CPU has.
#[inline]
fn run_at<W: WithScanner>(level: Level, w: W) -> W::Out {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level` is Avx2 only if the CPU reported AVX2: it comes
        // from `level()` (`detect`, or `set_level`, which takes only
        // `available()` levels) or from `available()` (the tests).
        Level::Avx2 => unsafe { avx2::run(w) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: likewise, Sse42 only if the CPU reported SSE4.2.
        Level::Sse42 => unsafe { sse42::run(w) },
        _ => w.call(ScalarScan),
    }
}

/// `tchar` by nibbles, for the `pshufb` classifiers: bit `h` of entry `l`
/// is set when the byte `0xhl` is in `scan::TOKEN` (`h` < 8; no byte from
/// 0x80 up is). Built from the table, so the two cannot disagree.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const TOKEN_LO: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut b = 0;
    while b < 0x80 {
        if super::scan::TOKEN[b] {
            t[b & 0x0f] |= 1 << (b >> 4);
        }
        b += 1;
    }
    t
};

/// The scalar scanner: the table loops of `scan.rs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScalarScan;

impl Scanner for ScalarScan {
    #[inline(always)]
    fn token_end(self, buf: &[u8], from: usize) -> usize {
        super::scan::class_end(buf, from, &super::scan::TOKEN)
    }
    #[inline(always)]
    fn value_end(self, buf: &[u8], from: usize) -> usize {
        super::scan::value_end_scalar(buf, from)
    }
    #[inline(always)]
    fn target_end(self, buf: &[u8], from: usize) -> usize {
        super::scan::target_end_scalar(buf, from)
    }
    #[inline(always)]
    fn field_ends(self, buf: &[u8], from: usize) -> (usize, usize) {
        // Every tchar is a value byte, so the value scan can start where
        // the token scan stopped.
        let name_end = self.token_end(buf, from);
        (name_end, self.value_end(buf, name_end))
    }
}

/// Index of the first byte at or after `from` that `class` does not allow,
/// or `buf.len()`, using `level`.
#[inline]
pub fn scan_with(level: Level, buf: &[u8], from: usize, class: Class) -> usize {
    let from = from.min(buf.len());
    // `level` comes from the caller, so the CPU is asked again (a cached
    // load in std); a level the CPU lacks falls back to the scalar loop.
    // The parser itself does not come through here (see `run`).
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 if std::is_x86_feature_detected!("avx2") => {
            // SAFETY: the CPU reported AVX2 just above.
            unsafe { avx2::scan(buf, from, class) }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Sse42 if std::is_x86_feature_detected!("sse4.2") => {
            // SAFETY: the CPU reported SSE4.2 just above.
            unsafe { sse42::scan(buf, from, class) }
        }
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
        Class::Target => super::scan::target_end_scalar(buf, from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::scan::{TARGET, TOKEN, VALUE};

    /// Every byte, at every offset and length, through `run` (the scanners
    /// the parser uses), against the tables.
    #[test]
    fn every_scanner_agrees_with_the_tables() {
        struct All<'a>(&'a [u8], usize);
        impl WithScanner for All<'_> {
            type Out = [usize; 3];
            #[inline(always)]
            fn call<S: Scanner>(self, s: S) -> [usize; 3] {
                let both = s.field_ends(self.0, self.1);
                let one = [
                    s.token_end(self.0, self.1),
                    s.value_end(self.0, self.1),
                    s.target_end(self.0, self.1),
                ];
                assert_eq!(both, (one[0], one[1]), "field_ends");
                one
            }
        }
        for level in available() {
            for bad in 0u8..=255 {
                for len in [
                    0usize, 1, 2, 15, 16, 17, 18, 31, 32, 33, 34, 47, 48, 49, 63, 64, 65, 66, 97,
                ] {
                    let mut v = vec![b'a'; len];
                    for pos in 0..=len {
                        if pos < len {
                            v[pos] = bad;
                        }
                        for from in [0, 1, 16, 17, 33] {
                            let from = from.min(len);
                            let want = [&TOKEN, &VALUE, &TARGET].map(|t| {
                                if pos < len && pos >= from && !t[bad as usize] {
                                    pos
                                } else {
                                    len
                                }
                            });
                            assert_eq!(
                                run_at(level, All(&v, from)),
                                want,
                                "{level:?} byte {bad:#x} at {pos} of {len} from {from}"
                            );
                        }
                        if pos < len {
                            v[pos] = b'a';
                        }
                    }
                }
            }
        }
    }

    /// `field_ends` finds a line's end by its CR when nothing stops the
    /// value scan before it: a CR with another stop (or a tchar-only stop)
    /// before or after it, at every pair of positions.
    #[test]
    fn field_ends_with_a_cr_and_another_byte() {
        struct Ends<'a>(&'a [u8], usize);
        impl WithScanner for Ends<'_> {
            type Out = (usize, usize);
            #[inline(always)]
            fn call<S: Scanner>(self, s: S) -> (usize, usize) {
                s.field_ends(self.0, self.1)
            }
        }
        let first = |v: &[u8], from: usize, t: &[bool; 256]| {
            (from..v.len())
                .find(|&k| !t[v[k] as usize])
                .unwrap_or(v.len())
        };
        for level in available() {
            for len in [16usize, 17, 31, 32, 33, 40, 64, 70] {
                for cr in 0..len {
                    for other in [0u8, b'\n', b'\r', 0x7f, b'\t', b' ', b':', 0x80] {
                        for at in 0..len {
                            let mut v = vec![b'a'; len];
                            v[at] = other;
                            v[cr] = b'\r';
                            for from in [0, 1, 5] {
                                let want = (first(&v, from, &TOKEN), first(&v, from, &VALUE));
                                assert_eq!(
                                    run_at(level, Ends(&v, from)),
                                    want,
                                    "{level:?} CR at {cr}, {other:#x} at {at} of {len} from {from}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

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
