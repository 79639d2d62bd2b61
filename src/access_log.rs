//! The access log: one line per request, buffered per worker, appended to a
//! file (or stdout) that every worker process shares.
//!
//! # Format
//!
//! nginx's `combined` format followed by timing fields, i.e. nginx with
//!
//! ```text
//! log_format lb '$remote_addr - - [$time_local] "$request" $status $body_bytes_sent '
//!               '"$http_referer" "$http_user_agent" rt=$request_time '
//!               'uct=$upstream_connect_time upstream=$upstream_addr '
//!               'urt=$upstream_response_time retries=$retries';
//! ```
//!
//! ```text
//! 203.0.113.7 - - [26/Nov/2026:17:42:00 +0000] "GET /a?b=1 HTTP/1.1" 200 512 "-" "curl/8.5.0" rt=0.004 uct=0.000 upstream=10.0.0.1:8080 urt=0.003 retries=0
//! ```
//!
//! Why this and not JSON lines: the first nine fields are `combined`
//! exactly, which every log tool already parses (goaccess, lnav, fail2ban,
//! awstats, `awk '{print $9}'`) and which ignore what follows; the trailing
//! `key=value` fields are nginx's own names for the same measurements. JSON
//! would need a schema every consumer learns, and escaping rules of its own.
//!
//! - `$time_local` is always UTC (`+0000`): a worker never reads the time
//!   zone database. Seconds, as in `combined`; `rt`, `uct`, `urt` are
//!   seconds with millisecond resolution, as nginx prints them.
//! - `$request` is `METHOD target PROTOCOL` as received, or `-` when no
//!   request line was read (a connection closed or timed out first).
//! - `$body_bytes_sent`: response body bytes sent, head not counted.
//! - Absent values are `-` (no referer, no upstream, no upstream timing);
//!   `uct=0.000` means a pooled connection was reused.
//! - Escaping is nginx's `escape=default`: in the request line, referer and
//!   user agent, `"`, `\`, bytes below 0x20 and from 0x7f up are written as
//!   `\xHH` (upper-case hex), so a line is always one line and its quoted
//!   fields always end at the next unescaped `"`.
//!
//! # Buffering and sharing
//!
//! [`AccessLog::record`] formats into the worker's own buffer (a `Vec`
//! that is cleared, never shrunk: no allocation per line after warm-up).
//! The buffer is written with one `write(2)` when it passes
//! [`FLUSH_BYTES`], when [`AccessLog::flush_if_due`] finds it older than
//! [`FLUSH_INTERVAL_MS`] (call it from the sweep), and at exit
//! ([`AccessLog::flush`]). The file is opened `O_APPEND`, so the workers'
//! writes land whole, one after another, never over each other; each write
//! holds whole lines. To a pipe or terminal (`-` for stdout), where only
//! writes of up to `PIPE_BUF` (4096) bytes are atomic, the buffer goes out
//! in chunks of whole lines of at most that size.
//!
//! [`AccessLog::reopen`] opens the path again (nginx's SIGUSR1): rotate by
//! renaming the file, then signal; lines buffered before go to the old file.
//!
//! What it must never do: allocate per line, or write part of a line (a
//! line is dropped whole when the write fails, and counted in
//! [`AccessLog::lost_lines`]). Writes block: a log on a full disk is
//! dropped, but a stdout pipe nobody reads stalls the worker, as in nginx.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A buffer this large is written at once, without waiting for the sweep.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// A line waits at most this long (plus one sweep) in the buffer.
pub const FLUSH_INTERVAL_MS: u64 = 1000;
/// POSIX's minimum and Linux's `PIPE_BUF`: the largest atomic pipe write.
const PIPE_BUF: usize = 4096;

/// One request as the access log records it; every field borrowed from the
/// session (header values are spans into its buffer).
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// When the response completed, Unix milliseconds (wall clock).
    pub unix_ms: u64,
    /// The client's address (a v4-mapped v6 address is written as v4).
    pub client: IpAddr,
    /// The request line's parts as received; all empty: no request line.
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub protocol: &'a [u8],
    pub status: u16,
    /// Response body bytes sent to the client (the head not counted).
    pub body_bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// From the request's first byte read to its response's last byte sent.
    pub request_us: u64,
    /// The backend that answered (the last one tried); `None` for answers
    /// the proxy made itself.
    pub upstream: Option<SocketAddr>,
    /// Time to connect (and TLS handshake) to `upstream`; `Some(0)` for a
    /// pooled connection.
    pub upstream_connect_us: Option<u64>,
    /// From the request sent to `upstream` to its response head received.
    pub upstream_us: Option<u64>,
    /// Attempts after the first (other backends, or a fresh connection).
    pub retries: u32,
}

/// Where the lines go.
enum Sink {
    File(PathBuf),
    Stdout,
}

/// One worker's access log.
pub struct AccessLog {
    sink: Sink,
    file: File,
    /// `Some(PIPE_BUF)` unless the file is a regular file.
    chunk: Option<usize>,
    buf: Vec<u8>,
    last_flush_ms: Option<u64>,
    lost: u64,
}

impl AccessLog {
    /// Opens `path` for appending (created `0644` if missing); `-` is
    /// standard output.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        let (sink, file) = if path.as_os_str() == "-" {
            let fd = io::stdout().as_fd().try_clone_to_owned()?;
            (Sink::Stdout, File::from(fd))
        } else {
            (Sink::File(path.to_path_buf()), open_append(path)?)
        };
        let chunk = chunk_for(&file)?;
        Ok(AccessLog {
            sink,
            file,
            chunk,
            buf: Vec::with_capacity(FLUSH_BYTES + 8192),
            last_flush_ms: None,
            lost: 0,
        })
    }

    /// Appends one line to the buffer; writes the buffer out if it passed
    /// [`FLUSH_BYTES`] (the error is that write's).
    pub fn record(&mut self, e: &Entry<'_>) -> io::Result<()> {
        format_line(&mut self.buf, e);
        if self.buf.len() >= FLUSH_BYTES {
            return self.flush();
        }
        Ok(())
    }

    /// The sweep's call: writes the buffer if it is full or has waited
    /// [`FLUSH_INTERVAL_MS`] since the last time this found it empty or
    /// wrote it. `now_ms` is any monotonic clock in milliseconds.
    pub fn flush_if_due(&mut self, now_ms: u64) -> io::Result<()> {
        let last = *self.last_flush_ms.get_or_insert(now_ms);
        if self.buf.is_empty() {
            self.last_flush_ms = Some(now_ms);
            return Ok(());
        }
        if self.buf.len() >= FLUSH_BYTES || now_ms.saturating_sub(last) >= FLUSH_INTERVAL_MS {
            self.last_flush_ms = Some(now_ms);
            return self.flush();
        }
        Ok(())
    }

    /// Writes every buffered line now (at exit, before a reopen). On an
    /// error the buffered lines not yet written are dropped (counted in
    /// [`lost_lines`](Self::lost_lines)), so a failing log never grows.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            let rest = &self.buf[done..];
            if rest.is_empty() {
                break Ok(());
            }
            let n = match self.chunk {
                Some(limit) => whole_lines(rest, limit),
                None => rest.len(),
            };
            match self.file.write(&rest[..n]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => done += w,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if result.is_err() {
            let rest = &self.buf[done..];
            self.lost += rest.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        self.buf.clear();
        result
    }

    /// Opens the path again (SIGUSR1, after the file was renamed away):
    /// buffered lines are written to the old file first. If the path cannot
    /// be opened, the old file stays in use and the error is returned. A
    /// no-op but for the flush on stdout.
    pub fn reopen(&mut self) -> io::Result<()> {
        let flushed = self.flush();
        if let Sink::File(path) = &self.sink {
            let file = open_append(path)?;
            self.chunk = chunk_for(&file)?;
            self.file = file;
        }
        flushed
    }

    /// Bytes buffered, not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Lines dropped because their write failed, since open.
    pub fn lost_lines(&self) -> u64 {
        self.lost
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
}

/// Writes to a regular file with `O_APPEND` are whole; to anything else only
/// up to `PIPE_BUF`.
fn chunk_for(file: &File) -> io::Result<Option<usize>> {
    Ok(if file.metadata()?.file_type().is_file() {
        None
    } else {
        Some(PIPE_BUF)
    })
}

/// How much of `buf` (whole lines) to write at once: everything if it fits
/// in `limit`, else the lines that do, else the first line alone (longer
/// than `limit`: written whole, if not atomically).
fn whole_lines(buf: &[u8], limit: usize) -> usize {
    if buf.len() <= limit {
        return buf.len();
    }
    if let Some(i) = buf[..limit].iter().rposition(|&b| b == b'\n') {
        return i + 1;
    }
    buf.iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |i| i + 1)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends `e` as one line (see the module doc for the format).
pub fn format_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    // Writing to a Vec cannot fail; formatting numbers does not allocate.
    let (y, mo, d, h, mi, s) = crate::log::utc(e.unix_ms / 1000);
    let month = MONTHS[(mo as usize).clamp(1, 12) - 1];
    let _ = write!(
        out,
        "{} - - [{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000] \"",
        e.client.to_canonical()
    );
    if e.method.is_empty() && e.target.is_empty() && e.protocol.is_empty() {
        out.push(b'-');
    } else {
        let mut first = true;
        for part in [e.method, e.target, e.protocol] {
            if !part.is_empty() {
                if !first {
                    out.push(b' ');
                }
                escape(out, part);
                first = false;
            }
        }
    }
    let _ = write!(out, "\" {} {} \"", e.status, e.body_bytes);
    quoted_or_dash(out, e.referer);
    out.extend_from_slice(b"\" \"");
    quoted_or_dash(out, e.user_agent);
    out.extend_from_slice(b"\" rt=");
    secs(out, Some(e.request_us));
    out.extend_from_slice(b" uct=");
    secs(out, e.upstream_connect_us);
    out.extend_from_slice(b" upstream=");
    match e.upstream {
        Some(a) => {
            let _ = write!(out, "{a}");
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" urt=");
    secs(out, e.upstream_us);
    let _ = writeln!(out, " retries={}", e.retries);
}

fn quoted_or_dash(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => escape(out, v),
        _ => out.push(b'-'),
    }
}

/// Seconds with millisecond resolution (truncated, as nginx), or `-`.
fn secs(out: &mut Vec<u8>, us: Option<u64>) {
    match us {
        Some(us) => {
            let _ = write!(out, "{}.{:03}", us / 1_000_000, us % 1_000_000 / 1000);
        }
        None => out.push(b'-'),
    }
}

/// nginx's `escape=default`: `"`, `\`, control bytes and bytes ≥ 0x7f as
/// `\xHH`.
fn escape(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in v {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn entry() -> Entry<'static> {
        Entry {
            unix_ms: 1_795_714_920_123,
            client: "203.0.113.7".parse().unwrap(),
            method: b"GET",
            target: b"/a?b=1",
            protocol: b"HTTP/1.1",
            status: 200,
            body_bytes: 512,
            referer: None,
            user_agent: Some(b"curl/8.5.0"),
            request_us: 4_321,
            upstream: Some("10.0.0.1:8080".parse().unwrap()),
            upstream_connect_us: Some(0),
            upstream_us: Some(3_999),
            retries: 0,
        }
    }

    fn line(e: &Entry<'_>) -> String {
        let mut v = Vec::new();
        format_line(&mut v, e);
        String::from_utf8(v).unwrap()
    }

    /// A file name in a directory of its own, removed with the guard.
    struct Temp(PathBuf);
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }
    impl AsRef<Path> for Temp {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }
    impl std::ops::Deref for Temp {
        type Target = PathBuf;
        fn deref(&self) -> &PathBuf {
            &self.0
        }
    }

    fn temp(name: &str) -> Temp {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lb-access-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Temp(dir.join(name))
    }

    #[test]
    fn a_line_is_combined_plus_timings() {
        let l = line(&entry());
        assert_eq!(
            l,
            "203.0.113.7 - - [26/Nov/2026:17:42:00 +0000] \"GET /a?b=1 HTTP/1.1\" 200 512 \"-\" \"curl/8.5.0\" rt=0.004 uct=0.000 upstream=10.0.0.1:8080 urt=0.003 retries=0\n"
        );
        // Field by field, the way a combined parser splits it.
        let (head, rest) = l.split_once(" \"").unwrap();
        let f: Vec<&str> = head.split(' ').collect();
        assert_eq!(f[..3], ["203.0.113.7", "-", "-"]);
        assert_eq!(f[3..].join(" "), "[26/Nov/2026:17:42:00 +0000]");
        let q: Vec<&str> = rest.split('"').collect();
        assert_eq!(q[0], "GET /a?b=1 HTTP/1.1");
        assert_eq!(q[1], " 200 512 ");
        assert_eq!((q[2], q[4]), ("-", "curl/8.5.0"));
        let kv: Vec<&str> = q[5].split_whitespace().collect();
        assert_eq!(
            kv,
            [
                "rt=0.004",
                "uct=0.000",
                "upstream=10.0.0.1:8080",
                "urt=0.003",
                "retries=0"
            ]
        );
    }

    #[test]
    fn variants_of_each_field() {
        let base = entry();
        // (change, expected substring)
        type Case = (fn(&mut Entry<'static>), &'static str);
        let table: &[Case] = &[
            (
                |e| e.client = "::ffff:192.0.2.1".parse().unwrap(),
                "192.0.2.1 - - [",
            ),
            (
                |e| e.client = "2001:db8::1".parse().unwrap(),
                "2001:db8::1 - - [",
            ),
            (
                |e| e.unix_ms = 951_782_400_999,
                "[29/Feb/2000:00:00:00 +0000]",
            ),
            (|e| e.unix_ms = 0, "[01/Jan/1970:00:00:00 +0000]"),
            (
                |e| {
                    e.method = b"";
                    e.target = b"";
                    e.protocol = b"";
                    e.status = 408;
                    e.body_bytes = 0;
                },
                "] \"-\" 408 0 \"-\"",
            ),
            (|e| e.protocol = b"", "\"GET /a?b=1\" 200"),
            (
                |e| e.referer = Some(b"https://x.example/"),
                "200 512 \"https://x.example/\" \"curl",
            ),
            (|e| e.referer = Some(b""), "200 512 \"-\" \"curl"),
            (|e| e.user_agent = None, "\"-\" \"-\" rt="),
            (|e| e.request_us = 61_234_567, " rt=61.234 "),
            (|e| e.request_us = 999, " rt=0.000 "),
            (
                |e| {
                    e.upstream = None;
                    e.upstream_connect_us = None;
                    e.upstream_us = None;
                    e.status = 502;
                },
                " uct=- upstream=- urt=- retries=0\n",
            ),
            (
                |e| e.upstream = Some("[::1]:9000".parse().unwrap()),
                " upstream=[::1]:9000 ",
            ),
            (|e| e.upstream_connect_us = Some(1_500), " uct=0.001 "),
            (|e| e.retries = 2, " retries=2\n"),
            (|e| e.body_bytes = u64::MAX, " 200 18446744073709551615 "),
        ];
        for (i, (change, want)) in table.iter().enumerate() {
            let mut e = base;
            change(&mut e);
            let l = line(&e);
            assert!(l.contains(want), "case {i}: {want:?} not in {l:?}");
            assert_eq!(l.matches('\n').count(), 1, "case {i}: one line");
        }
    }

    #[test]
    fn quotes_backslashes_and_control_bytes_are_escaped_as_nginx_does() {
        // (input, escaped)
        let table: &[(&[u8], &str)] = &[
            (b"plain", "plain"),
            (b"a\"b", "a\\x22b"),
            (b"a\\b", "a\\x5Cb"),
            (b"\r\n\t\x00", "\\x0D\\x0A\\x09\\x00"),
            (b"\x7f\x80\xff", "\\x7F\\x80\\xFF"),
            ("é".as_bytes(), "\\xC3\\xA9"),
            (b"' <>`~", "' <>`~"),
        ];
        for &(input, want) in table {
            let mut v = Vec::new();
            escape(&mut v, input);
            assert_eq!(String::from_utf8(v).unwrap(), want);
            let mut e = entry();
            e.target = input;
            e.referer = Some(input);
            e.user_agent = Some(input);
            let l = line(&e);
            assert_eq!(l.matches(want).count(), 3, "{l}");
            // Quoted fields still split at the right quotes: 6 quotes.
            assert_eq!(l.matches('"').count(), 6, "{l}");
        }
    }

    #[test]
    fn whole_lines_per_chunk() {
        // (buffer, limit, bytes to write)
        let table: &[(&[u8], usize, usize)] = &[
            (b"", 10, 0),
            (b"ab\ncd\n", 10, 6),
            (b"ab\ncd\n", 6, 6),
            (b"ab\ncd\n", 5, 3),
            (b"ab\ncd\nef\n", 7, 6),
            (b"abcdefgh\nxy\n", 4, 9),
            (b"abcdefgh", 4, 8),
        ];
        for &(buf, limit, want) in table {
            assert_eq!(whole_lines(buf, limit), want, "{buf:?} limit {limit}");
        }
    }

    #[test]
    fn buffers_until_a_second_passed_or_64_kib() {
        let path = temp("access.log");
        let mut log = AccessLog::open(&path).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        log.flush_if_due(10_000).unwrap();
        log.record(&entry()).unwrap();
        let one = log.pending().len() as u64;
        // (now_ms, lines to record first, file size after flush_if_due)
        let table: &[(u64, usize, u64)] = &[
            (10_100, 0, 0),
            (10_999, 0, 0),
            (11_000, 0, one), // a second after the sweep that saw it empty
            (11_500, 1, one), // recorded, but the last write was at 11 000
            (11_999, 0, one),
            (12_000, 0, 2 * one),
            (20_000, 0, 2 * one), // nothing buffered: nothing written
            (20_001, 1, 2 * one), // the clock restarts at the idle sweep
            (21_000, 0, 3 * one),
        ];
        for &(now, lines, want) in table {
            for _ in 0..lines {
                log.record(&entry()).unwrap();
            }
            log.flush_if_due(now).unwrap();
            assert_eq!(size(), want, "at {now} ms");
        }
        // Past 64 KiB, `record` writes at once, with no sweep.
        let before = size();
        let n = (FLUSH_BYTES as u64).div_ceil(one);
        for _ in 0..n {
            log.record(&entry()).unwrap();
        }
        assert_eq!(size(), before + n * one);
        assert!(log.pending().is_empty());
        log.record(&entry()).unwrap();
        log.flush().unwrap();
        assert_eq!(size(), before + (n + 1) * one);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().all(|l| l == line(&entry()).trim_end()));
        assert_eq!(log.lost_lines(), 0);
    }

    #[test]
    fn reopen_after_a_rename_writes_to_the_new_file() {
        let path = temp("access.log");
        let rotated = path.with_extension("log.1");
        let mut log = AccessLog::open(&path).unwrap();
        let mut e = entry();
        e.target = b"/before";
        log.record(&e).unwrap();
        log.flush().unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        e.target = b"/between";
        log.record(&e).unwrap(); // buffered: goes to the old file at reopen
        log.reopen().unwrap();
        e.target = b"/after";
        log.record(&e).unwrap();
        log.flush().unwrap();
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 2, "{old}");
        assert!(old.contains("/before") && old.contains("/between"));
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("/after"));
    }

    #[test]
    fn reopen_that_fails_keeps_the_old_file() {
        let path = temp("access.log");
        let moved = path.with_extension("old");
        let mut log = AccessLog::open(&path).unwrap();
        std::fs::rename(&path, &moved).unwrap();
        std::fs::create_dir(&path).unwrap(); // the path cannot be opened now
        assert!(log.reopen().is_err());
        log.record(&entry()).unwrap();
        log.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), line(&entry()));
    }

    #[test]
    fn appends_from_several_writers_stay_whole_lines() {
        let path = temp("shared.log");
        let writers = 4;
        let per = 3000;
        std::thread::scope(|s| {
            for w in 0..writers {
                let path: &Path = &path;
                s.spawn(move || {
                    let mut log = AccessLog::open(path).unwrap();
                    let target = format!("/writer-{w}");
                    for i in 0..per {
                        let mut e = entry();
                        e.target = target.as_bytes();
                        e.retries = i;
                        log.record(&e).unwrap();
                    }
                    log.flush().unwrap();
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), writers * per as usize);
        for w in 0..writers {
            let mut next = 0;
            for l in text
                .lines()
                .filter(|l| l.contains(&format!("/writer-{w} ")))
            {
                assert!(l.starts_with("203.0.113.7 - - ["), "torn line {l:?}");
                assert!(l.ends_with(&format!(" retries={next}")), "{l:?}");
                next += 1;
            }
            assert_eq!(next, per, "writer {w}: every line, in order");
        }
    }

    #[test]
    fn the_buffer_is_reused_not_regrown() {
        let mut buf = Vec::with_capacity(1024);
        let e = entry();
        format_line(&mut buf, &e);
        let cap = buf.capacity();
        let ptr = buf.as_ptr();
        for _ in 0..100 {
            buf.clear();
            format_line(&mut buf, &e);
        }
        assert_eq!((buf.capacity(), buf.as_ptr()), (cap, ptr));
    }
}
