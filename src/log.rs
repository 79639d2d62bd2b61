//! Log lines to stderr: `2026-11-26T17:42:00.123Z warn(proxy): message`.
//!
//! The level is a process-wide atomic, so a disabled level costs one load
//! and a branch. Each line is formatted into one buffer and written with one
//! `write(2)`, so lines from several workers never interleave.
//!
//! Lines that a flood of clients or a dead backend can repeat thousands of
//! times a second go through [`log_limited!`](crate::log_limited) instead:
//! at most [`LIMIT_PER_SECOND`] lines per [`Kind`] per second, then one
//! line saying how many were suppressed. State changes (a backend down or
//! up, a reload, a worker respawned, an upgrade) are rare and each one
//! matters: they go through [`log!`](crate::log), never the limiter.
#![forbid(unsafe_code)]

use crate::config::{LogLevel, MAX_BACKENDS};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
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

/// `2026-12-04 23:40:11` for a Unix time (status page, DNS messages).
pub fn utc_text(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = utc(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
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

/// Logs a line that may repeat, at most [`LIMIT_PER_SECOND`] times a second
/// per kind: `log_limited!(Kind::SlowClient, Info, "client {ip}: header timeout")`.
/// The kind gives the scope (see [`Kind::scope`]). A suppressed line costs a
/// clock read and two atomic operations, and allocates nothing.
#[macro_export]
macro_rules! log_limited {
    ($kind:expr, $lvl:ident, $($arg:tt)+) => {
        if $crate::log::enabled($crate::config::LogLevel::$lvl) {
            $crate::log::write_limited($kind, $crate::config::LogLevel::$lvl, format_args!($($arg)+));
        }
    };
}

/// Lines of one kind allowed per second (per process: each mp worker has
/// its own budget; sp worker threads share one).
pub const LIMIT_PER_SECOND: u32 = 5;

/// What repeats. Each kind (and backend id, for the per-backend kinds) has
/// its own budget, so a flood of one never hides another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A client too slow to send its request head (408).
    SlowClient,
    /// A malformed request from a client (400, 413, 414, 431, 501, 505).
    BadRequest,
    /// `accept(2)` failing, e.g. at the fd limit (`EMFILE`, `ENFILE`).
    AcceptFailing,
    /// The access log could not be written.
    AccessLogWrite,
    /// A client went away in the middle of its request (body not finished).
    ClientClosed,
    /// A request refused for a per-worker limit (503: too many request
    /// bodies being buffered, and the like).
    Overloaded,
    /// A client's TLS handshake with the listener failed (plain HTTP or
    /// garbage on the TLS port, no common version, an alert).
    TlsHandshake,
    /// Connecting to the backend with this id failed (refused, unreachable,
    /// timed out, TLS handshake).
    ConnectFailed(usize),
    /// An exchange with the backend with this id failed after connecting
    /// (timeout, reset, bad response).
    UpstreamFailed(usize),
}

const UNIT_KINDS: usize = 7;
const SLOTS: usize = UNIT_KINDS + 2 * MAX_BACKENDS;

impl Kind {
    fn slot(self) -> usize {
        let id = |i: usize| i.min(MAX_BACKENDS - 1);
        match self {
            Kind::SlowClient => 0,
            Kind::BadRequest => 1,
            Kind::AcceptFailing => 2,
            Kind::AccessLogWrite => 3,
            Kind::ClientClosed => 4,
            Kind::Overloaded => 5,
            Kind::TlsHandshake => 6,
            Kind::ConnectFailed(i) => UNIT_KINDS + id(i),
            Kind::UpstreamFailed(i) => UNIT_KINDS + MAX_BACKENDS + id(i),
        }
    }

    fn from_slot(slot: usize) -> Kind {
        match slot {
            0 => Kind::SlowClient,
            1 => Kind::BadRequest,
            2 => Kind::AcceptFailing,
            3 => Kind::AccessLogWrite,
            4 => Kind::ClientClosed,
            5 => Kind::Overloaded,
            6 => Kind::TlsHandshake,
            s if s < UNIT_KINDS + MAX_BACKENDS => Kind::ConnectFailed(s - UNIT_KINDS),
            s => Kind::UpstreamFailed(s - UNIT_KINDS - MAX_BACKENDS),
        }
    }

    /// The scope its lines are logged under.
    pub fn scope(self) -> &'static str {
        match self {
            Kind::AccessLogWrite => "access_log",
            _ => "proxy",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::SlowClient => f.write_str("slow client"),
            Kind::BadRequest => f.write_str("bad request"),
            Kind::AcceptFailing => f.write_str("accept failing"),
            Kind::AccessLogWrite => f.write_str("access log write"),
            Kind::ClientClosed => f.write_str("client closed mid-request"),
            Kind::Overloaded => f.write_str("overloaded"),
            Kind::TlsHandshake => f.write_str("TLS handshakes failing"),
            Kind::ConnectFailed(i) => write!(f, "connect failed, backend id {i}"),
            Kind::UpstreamFailed(i) => write!(f, "backend failed, backend id {i}"),
        }
    }
}

/// What the limiter decided about one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Over the budget: counted, not written.
    Suppress,
    /// Write it; if `suppressed` > 0, first write the summary of the
    /// `suppressed` lines dropped in the second `secs_ago` seconds back.
    Write { suppressed: u64, secs_ago: u64 },
}

struct Slot {
    /// `second << 32 | lines written in that second` (seconds mod 2^32).
    state: AtomicU64,
    /// Lines suppressed and not yet reported.
    suppressed: AtomicU64,
    /// The level of the last line admitted (the summary's level).
    level: AtomicU8,
}

/// A budget per [`Kind`]: lock-free, shared by threads. The process has one
/// ([`write_limited`]); tests make their own and pass the clock in.
pub struct Limiter {
    slots: [Slot; SLOTS],
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

fn pack(second: u64, n: u32) -> u64 {
    (second & 0xffff_ffff) << 32 | u64::from(n)
}

/// Seconds from the stored (truncated) second to `now_s`.
fn secs_since(state: u64, now_s: u64) -> u64 {
    (now_s & 0xffff_ffff).wrapping_sub(state >> 32) & 0xffff_ffff
}

impl Limiter {
    pub const fn new() -> Limiter {
        Limiter {
            slots: [const {
                Slot {
                    state: AtomicU64::new(0),
                    suppressed: AtomicU64::new(0),
                    level: AtomicU8::new(LogLevel::Info as u8),
                }
            }; SLOTS],
        }
    }

    /// Whether a line of `kind` may be written in second `now_s`.
    pub fn admit(&self, kind: Kind, level: LogLevel, now_s: u64) -> Admit {
        let slot = &self.slots[kind.slot()];
        let mut cur = slot.state.load(Ordering::Relaxed);
        loop {
            let same_second = secs_since(cur, now_s) == 0;
            let n = if same_second { cur as u32 } else { 0 };
            if n >= LIMIT_PER_SECOND {
                slot.suppressed.fetch_add(1, Ordering::Relaxed);
                return Admit::Suppress;
            }
            match slot.state.compare_exchange_weak(
                cur,
                pack(now_s, n + 1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    slot.level.store(level as u8, Ordering::Relaxed);
                    let suppressed = if same_second {
                        0
                    } else {
                        slot.suppressed.swap(0, Ordering::Relaxed)
                    };
                    return Admit::Write {
                        suppressed,
                        secs_ago: secs_since(cur, now_s),
                    };
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes the counts of lines suppressed in seconds before `now_s` (the
    /// sweep's call, so a flood that stops is still reported):
    /// `f(kind, level, suppressed, secs_ago)` for each kind that has some.
    pub fn take_expired(&self, now_s: u64, mut f: impl FnMut(Kind, LogLevel, u64, u64)) {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.suppressed.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let state = slot.state.load(Ordering::Relaxed);
            let ago = secs_since(state, now_s);
            if ago == 0 {
                continue; // its second is still running: more may come
            }
            let n = slot.suppressed.swap(0, Ordering::Relaxed);
            if n > 0 {
                let level = level_of(slot.level.load(Ordering::Relaxed));
                f(Kind::from_slot(i), level, n, ago);
            }
        }
    }
}

fn level_of(v: u8) -> LogLevel {
    match v {
        0 => LogLevel::Err,
        1 => LogLevel::Warn,
        2 => LogLevel::Info,
        _ => LogLevel::Debug,
    }
}

/// The summary line's text.
struct Suppressed {
    kind: Kind,
    n: u64,
    secs_ago: u64,
}

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.n == 1 { "" } else { "s" };
        write!(
            f,
            "suppressed {} similar message{s} ({})",
            self.n, self.kind
        )?;
        match self.secs_ago {
            0 | 1 => f.write_str(" in the last second"),
            ago => write!(f, " in the last {ago} seconds"),
        }
    }
}

static LIMITER: Limiter = Limiter::new();

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// [`log_limited!`](crate::log_limited)'s body.
pub fn write_limited(kind: Kind, level: LogLevel, args: std::fmt::Arguments<'_>) {
    if let Admit::Write {
        suppressed,
        secs_ago,
    } = LIMITER.admit(kind, level, unix_secs())
    {
        if suppressed > 0 {
            let summary = Suppressed {
                kind,
                n: suppressed,
                secs_ago,
            };
            write_line(level, kind.scope(), format_args!("{summary}"));
        }
        write_line(level, kind.scope(), args);
    }
}

/// Reports lines suppressed in seconds that have ended, of kinds that have
/// logged nothing since (call it from the worker's sweep: a flood that
/// stops is reported within a second, not at the next line of its kind).
pub fn report_suppressed() {
    LIMITER.take_expired(unix_secs(), |kind, level, n, secs_ago| {
        if enabled(level) {
            let summary = Suppressed { kind, n, secs_ago };
            write_line(level, kind.scope(), format_args!("{summary}"));
        }
    });
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

    #[test]
    fn at_most_the_limit_per_second_then_a_summary() {
        use LogLevel::Warn;
        let l = Limiter::new();
        let w = |suppressed, secs_ago| Admit::Write {
            suppressed,
            secs_ago,
        };
        let k = Kind::SlowClient;
        // (second, kind, expected)
        let table: &[(u64, Kind, Admit)] = &[
            (100, k, w(0, 100)),
            (100, k, w(0, 0)),
            (100, k, w(0, 0)),
            (100, k, w(0, 0)),
            (100, k, w(0, 0)),
            (100, k, Admit::Suppress),
            (100, k, Admit::Suppress),
            // Another kind, another id: budgets of their own.
            (100, Kind::ConnectFailed(3), w(0, 100)),
            (100, Kind::ConnectFailed(4), w(0, 100)),
            (100, k, Admit::Suppress),
            // The next second: the summary of 3 comes first.
            (101, k, w(3, 1)),
            (101, k, w(0, 0)),
            // Nothing suppressed: no summary after a pause.
            (105, k, w(0, 4)),
        ];
        for (i, &(now, kind, want)) in table.iter().enumerate() {
            assert_eq!(l.admit(kind, Warn, now), want, "step {i}");
        }
        for _ in 0..4 {
            l.admit(k, Warn, 105);
        }
        assert_eq!(l.admit(k, Warn, 105), Admit::Suppress);
        // Reported late: says so.
        assert_eq!(l.admit(k, Warn, 109), w(1, 4));
    }

    #[test]
    fn summaries_read_well() {
        // (kind, n, secs_ago, text)
        let table: &[(Kind, u64, u64, &str)] = &[
            (
                Kind::SlowClient,
                37,
                1,
                "suppressed 37 similar messages (slow client) in the last second",
            ),
            (
                Kind::ConnectFailed(2),
                1,
                1,
                "suppressed 1 similar message (connect failed, backend id 2) in the last second",
            ),
            (
                Kind::AcceptFailing,
                8,
                30,
                "suppressed 8 similar messages (accept failing) in the last 30 seconds",
            ),
        ];
        for &(kind, n, secs_ago, want) in table {
            assert_eq!(Suppressed { kind, n, secs_ago }.to_string(), want);
        }
    }

    #[test]
    fn the_sweep_reports_ended_seconds_once() {
        let l = Limiter::new();
        for _ in 0..8 {
            l.admit(Kind::BadRequest, LogLevel::Info, 50);
        }
        for _ in 0..6 {
            l.admit(Kind::UpstreamFailed(63), LogLevel::Warn, 50);
        }
        let take = |now| {
            let mut got = Vec::new();
            l.take_expired(now, |k, lvl, n, ago| got.push((k, lvl, n, ago)));
            got
        };
        assert_eq!(take(50), [], "the second is still running");
        assert_eq!(
            take(51),
            [
                (Kind::BadRequest, LogLevel::Info, 3, 1),
                (Kind::UpstreamFailed(63), LogLevel::Warn, 1, 1)
            ]
        );
        assert_eq!(take(52), [], "reported once");
        assert_eq!(
            l.admit(Kind::BadRequest, LogLevel::Info, 52),
            Admit::Write {
                suppressed: 0,
                secs_ago: 2
            },
            "and not again by the next line"
        );
    }

    #[test]
    fn kinds_map_to_distinct_slots_and_back() {
        let mut seen = std::collections::HashSet::new();
        let mut kinds = vec![
            Kind::SlowClient,
            Kind::BadRequest,
            Kind::AcceptFailing,
            Kind::AccessLogWrite,
            Kind::ClientClosed,
            Kind::Overloaded,
            Kind::TlsHandshake,
        ];
        for i in 0..MAX_BACKENDS {
            kinds.push(Kind::ConnectFailed(i));
            kinds.push(Kind::UpstreamFailed(i));
        }
        for k in kinds {
            assert!(seen.insert(k.slot()), "{k:?}");
            assert_eq!(Kind::from_slot(k.slot()), k);
        }
        assert_eq!(seen.len(), SLOTS);
        // An id out of range shares the last slot rather than panicking.
        assert_eq!(
            Kind::ConnectFailed(1000).slot(),
            Kind::ConnectFailed(63).slot()
        );
    }

    #[test]
    fn threads_share_one_budget_and_lose_no_count() {
        let l = Limiter::new();
        let written = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        if let Admit::Write { .. } = l.admit(Kind::SlowClient, LogLevel::Info, 7) {
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(written.load(Ordering::Relaxed), u64::from(LIMIT_PER_SECOND));
        assert_eq!(
            l.admit(Kind::SlowClient, LogLevel::Info, 8),
            Admit::Write {
                suppressed: 8_000 - u64::from(LIMIT_PER_SECOND),
                secs_ago: 1
            }
        );
    }
}
