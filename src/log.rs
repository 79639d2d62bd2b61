//! Log lines to stderr: `2026-11-26T17:42:00.123Z warn(proxy): message`.
//!
//! The level is a process-wide atomic, so a disabled level costs one load
//! and a branch. Each line is formatted into one buffer and written with one
//! `write(2)`, so lines from several workers never interleave.
#![forbid(unsafe_code)]

use crate::config::LogLevel;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

pub fn set_level(l: LogLevel) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

#[inline]
pub fn enabled(l: LogLevel) -> bool {
    l as u8 <= LEVEL.load(Ordering::Relaxed)
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Err => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

/// UTC civil time from Unix seconds (Howard Hinnant's days-to-civil).
pub(crate) fn utc(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

pub fn write_line(level: LogLevel, scope: &str, args: std::fmt::Arguments<'_>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (y, mo, d, h, mi, s) = utc(now.as_secs());
    let mut line = String::with_capacity(128);
    let _ = writeln!(
        line,
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z {}({scope}): {args}",
        now.subsec_millis(),
        level_name(level)
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Logs at a level: `log!(Warn, "proxy", "backend {} refused", name)`.
#[macro_export]
macro_rules! log {
    ($lvl:ident, $scope:expr, $($arg:tt)+) => {
        if $crate::log::enabled($crate::config::LogLevel::$lvl) {
            $crate::log::write_line($crate::config::LogLevel::$lvl, $scope, format_args!($($arg)+));
        }
    };
}

/// Writes `=== LABEL (N bytes) ===` and `hexdump -C` rows of `data` as
/// `info(trace)` lines (the `--trace` output of the spec).
pub fn trace_bytes(label: &str, data: &[u8]) {
    let mut out = String::with_capacity(64 + data.len() * 4);
    let _ = writeln!(out, "info(trace): === {label} ({} bytes) ===", data.len());
    hexdump(data, &mut out);
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// `hexdump -C` rows, each prefixed `info(trace): `.
pub fn hexdump(data: &[u8], out: &mut String) {
    for (row, chunk) in data.chunks(16).enumerate() {
        let _ = write!(out, "info(trace): {:08x}  ", row * 16);
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if i == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        for &b in chunk {
            out.push(if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time() {
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc(1_795_714_920), (2026, 11, 26, 17, 42, 0));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn hexdump_matches_hexdump_c() {
        let mut s = String::new();
        hexdump(b"GET /ip HTTP/1.1\r\nHost", &mut s);
        assert_eq!(
            s,
            "info(trace): 00000000  47 45 54 20 2f 69 70 20  48 54 54 50 2f 31 2e 31  |GET /ip HTTP/1.1|\n\
             info(trace): 00000010  0d 0a 48 6f 73 74                                 |..Host|\n"
        );
    }
}
