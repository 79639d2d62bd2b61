//! Test support: start the real `load_balancer` binary on loopback, in-test
//! backends (well-behaved and misbehaving), and a small HTTP/1.1 client that
//! reads responses byte-exactly. Everything started here is killed on drop,
//! and every wait is bounded.
#![allow(dead_code)]

pub mod dnsmasq;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const LB: &str = env!("CARGO_BIN_EXE_load_balancer");
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A port the kernel just handed out (and took back).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running load balancer; killed on drop.
pub struct Lb {
    child: Child,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
}

impl Lb {
    /// Starts `load_balancer -h 127.0.0.1 -p PORT ARGS...` and waits until it accepts.
    pub fn start(args: &[&str]) -> Lb {
        // `LB_BIN=/path/to/old/load_balancer` runs a test against another
        // build (to show a test fails on the code before a fix).
        match std::env::var("LB_BIN") {
            Ok(bin) => Lb::start_bin(&bin, args),
            Err(_) => Lb::start_bin(LB, args),
        }
    }

    /// The same, from the binary at `bin` (an upgrade test's copy).
    pub fn start_bin(bin: &str, args: &[&str]) -> Lb {
        Lb::start_with_env(bin, &[], args)
    }

    /// The same, with `env` added to the environment it starts with.
    pub fn start_with_env(bin: &str, env: &[(&str, &str)], args: &[&str]) -> Lb {
        for _attempt in 0..5 {
            let port = free_port();
            let spawn = || {
                Command::new(bin)
                    .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                    .args(args)
                    .envs(env.iter().copied())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
            };
            // A binary just copied (an upgrade test's) may be "busy" for a
            // moment: another test thread's fork can hold its write fd.
            let mut tries = 0;
            let mut child = loop {
                match spawn() {
                    Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                        tries += 1;
                        thread::sleep(Duration::from_millis(20));
                    }
                    r => break r.expect("spawn load_balancer"),
                }
            };
            let log = Arc::new(Mutex::new(String::new()));
            let stderr = child.stderr.take().unwrap();
            let sink = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Lb { child, port, log };
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let text = log.lock().unwrap().clone();
            if !text.contains("address in use") {
                panic!("load_balancer did not start: {text}");
            }
        }
        panic!("no free port for the load balancer");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit code, if the process has exited.
    pub fn try_wait(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }

    pub fn conn(&self) -> Client {
        Client::connect(self.port)
    }

    /// Resident memory of the process, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// True once the log contains `needle` (the log is read by another
    /// thread, so a line may arrive a moment after the event); waits 5 s at most.
    pub fn log_has(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One parsed HTTP message as a test sees it.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Request: method; response: status code as text.
    pub start: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The head exactly as received.
    pub raw_head: Vec<u8>,
    /// Body arrived chunked.
    pub chunked: bool,
}

impl Message {
    pub fn status(&self) -> u16 {
        self.start[1].parse().unwrap()
    }
    pub fn method(&self) -> &str {
        &self.start[0]
    }
    pub fn target(&self) -> &str {
        &self.start[1]
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A head as read: raw bytes, start-line words, header fields.
pub type Head = (Vec<u8>, Vec<String>, Vec<(String, String)>);

/// Why reading a head stopped short.
#[derive(Debug)]
pub struct HeadError {
    /// The error from the read (UnexpectedEof for a close mid-head).
    pub error: std::io::Error,
    /// The bytes of the head read before it.
    pub partial: Vec<u8>,
}

/// Reads one head (through the empty line). `Ok(None)` on EOF before the
/// first byte; an error (with the bytes read so far) on EOF mid-head, a
/// reset, or a read timeout.
pub fn try_read_head(r: &mut impl BufRead) -> Result<Option<Head>, HeadError> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = match r.read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(error) => {
                raw.extend_from_slice(&line);
                return Err(HeadError {
                    error,
                    partial: raw,
                });
            }
        };
        raw.extend_from_slice(&line);
        if n == 0 || !line.ends_with(b"\n") {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(HeadError {
                error: std::io::ErrorKind::UnexpectedEof.into(),
                partial: raw,
            });
        }
        assert!(
            line.ends_with(b"\r\n"),
            "line without CRLF: {:?}",
            String::from_utf8_lossy(&line)
        );
        if line == b"\r\n" {
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(String::from_utf8_lossy(&line[..line.len() - 2]).into_owned());
    }
    let start = lines[0].splitn(3, ' ').map(str::to_string).collect();
    let headers = lines[1..]
        .iter()
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header colon");
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    Ok(Some((raw, start, headers)))
}

/// Reads one head, for a backend: `None` when the peer closed, reset, or
/// went silent past the read timeout (a backend simply gives up on it).
/// Never use it to decide that a connection was closed: see `try_read_head`
/// and `Client::read_head`.
pub fn read_head(r: &mut impl BufRead) -> Option<Head> {
    try_read_head(r).ok().flatten()
}

/// Reads a body framed by Content-Length or chunked; `until_close` when neither.
pub fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    bodiless: bool,
) -> (Vec<u8>, bool) {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if bodiless {
        return (Vec::new(), false);
    }
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap(), 16)
                .expect("chunk size");
            if size == 0 {
                // trailers
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t).unwrap();
                    if t == "\r\n" || t.is_empty() {
                        break;
                    }
                }
                return (body, true);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).unwrap();
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).unwrap();
            assert_eq!(&crlf, b"\r\n");
        }
    }
    if let Some(n) = get("content-length") {
        let mut body = vec![0u8; n.parse().unwrap()];
        r.read_exact(&mut body).unwrap();
        return (body, false);
    }
    // Close-delimited: a read timeout is not the end of the body.
    let mut body = Vec::new();
    if let Err(e) = r.read_to_end(&mut body) {
        panic!(
            "close-delimited body: {e} ({:?}) after {} bytes{}: {:?}",
            e.kind(),
            body.len(),
            if is_timeout(&e) {
                "; the peer kept the connection open"
            } else {
                ""
            },
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    (body, false)
}

/// How long `is_closed` and `expect_closed` wait for a close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How a read-until-close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer closed: a read returned 0.
    Eof,
    /// The peer reset (or aborted) the connection.
    Reset(std::io::ErrorKind),
    /// Nothing more came within the limit: the connection is still open.
    StillOpen { waited: Duration },
    /// Some other read error: the state of the connection is unknown.
    Failed(std::io::ErrorKind),
}

impl End {
    /// True only for a real close: EOF or a reset.
    pub fn closed(self) -> bool {
        matches!(self, End::Eof | End::Reset(_))
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Eof => write!(f, "closed (EOF)"),
            End::Reset(k) => write!(f, "closed by a reset ({k:?})"),
            End::StillOpen { waited } => {
                write!(f, "still open after {waited:.1?} (read timed out)")
            }
            End::Failed(k) => write!(f, "read failed ({k:?})"),
        }
    }
}

/// A read timeout (SO_RCVTIMEO gives EAGAIN, seen as WouldBlock).
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A connection the peer tore down.
pub fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// Reads from `r` (which reads `sock`, perhaps through a buffer) until the
/// peer closes or resets, or `limit` passes: returns every byte read and how
/// it ended. Leaves `sock`'s read timeout at `IO_TIMEOUT`.
pub fn read_until_end(r: &mut impl Read, sock: &TcpStream, limit: Duration) -> (Vec<u8>, End) {
    let started = Instant::now();
    let deadline = started + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break End::StillOpen {
                waited: started.elapsed(),
            };
        }
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match r.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_reset(&e) => break End::Reset(e.kind()),
            Err(e) if is_timeout(&e) => {
                break End::StillOpen {
                    waited: started.elapsed(),
                }
            }
            Err(e) => break End::Failed(e.kind()),
        }
    };
    let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
    (got, end)
}

/// `read_until_end` on a bare stream.
pub fn stream_until_end(s: &TcpStream, limit: Duration) -> (Vec<u8>, End) {
    read_until_end(&mut &*s, s, limit)
}

/// Up to 300 bytes of `b`, for a message.
pub fn show(b: &[u8]) -> String {
    let cut = b.len().min(300);
    let more = if b.len() > cut { "..." } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(&b[..cut]))
}

/// A client connection to the load balancer.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.w.write_all(raw).unwrap();
    }

    /// Reads one response; `head_request` when it answers a HEAD.
    #[track_caller]
    pub fn read_response(&mut self, head_request: bool) -> Message {
        let (raw_head, start, headers) = self.read_head();
        let status: u16 = start[1].parse().unwrap();
        let bodiless = head_request || status < 200 || status == 204 || status == 304;
        let (body, chunked) = read_body(&mut self.r, &headers, bodiless);
        Message {
            start,
            headers,
            body,
            raw_head,
            chunked,
        }
    }

    /// Sends `raw` and reads the response.
    pub fn roundtrip(&mut self, raw: &[u8]) -> Message {
        self.send(raw);
        self.read_response(raw.starts_with(b"HEAD "))
    }

    pub fn get(&mut self, path: &str) -> Message {
        self.roundtrip(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
    }

    /// Reads one response head, panicking with what was seen when the
    /// connection closes, resets or stays silent instead.
    #[track_caller]
    pub fn read_head(&mut self) -> Head {
        match try_read_head(&mut self.r) {
            Ok(Some(h)) => h,
            Ok(None) => panic!("connection closed (EOF) before a response head"),
            Err(HeadError { error, partial }) => panic!(
                "no complete response head: {error} ({:?}){}; got {} bytes: {}",
                error.kind(),
                if is_timeout(&error) {
                    " after the read timeout, connection still open"
                } else {
                    ""
                },
                partial.len(),
                show(&partial)
            ),
        }
    }

    /// Reads until the server closes or resets the connection, or `limit`
    /// passes; every byte read (buffered ones first) and how it ended.
    pub fn read_until_end(&mut self, limit: Duration) -> (Vec<u8>, End) {
        let sock = self.w.try_clone().unwrap();
        read_until_end(&mut self.r, &sock, limit)
    }

    /// True only if the server closes the connection (EOF or a reset)
    /// within `CLOSE_WAIT` without sending anything more. False when the
    /// read times out (the connection is still open) or bytes arrive.
    pub fn is_closed(&mut self) -> bool {
        let (got, end) = self.read_until_end(CLOSE_WAIT);
        got.is_empty() && end.closed()
    }

    /// Panics unless the server closes the connection (EOF or a reset)
    /// within `CLOSE_WAIT` without sending anything more.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        self.expect_closed_for("");
    }

    /// `expect_closed`, naming `what` in the message.
    #[track_caller]
    pub fn expect_closed_for(&mut self, what: &str) {
        let (got, end) = self.read_until_end(CLOSE_WAIT);
        let what = if what.is_empty() {
            String::new()
        } else {
            format!("{what}: ")
        };
        assert!(
            got.is_empty() && end.closed(),
            "{what}expected the connection closed: {end}, got {} bytes: {}",
            got.len(),
            show(&got)
        );
    }

    /// Everything until the server closes (EOF) or resets the connection;
    /// panics with what was read if it is still open after `IO_TIMEOUT`.
    #[track_caller]
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let (got, end) = self.read_until_end(IO_TIMEOUT);
        assert!(
            end.closed(),
            "expected the server to close: {end}; read so far {} bytes: {}",
            got.len(),
            show(&got)
        );
        got
    }
}

/// One GET on a fresh connection.
pub fn get(port: u16, path: &str) -> Message {
    Client::connect(port).get(path)
}

/// What a backend handler returns.
pub type Handler = dyn Fn(&Message) -> Vec<u8> + Send + Sync;

/// An in-test backend: a thread per connection, keep-alive, recording every
/// request it receives.
pub struct Backend {
    pub ip: String,
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// A backend answering every request with `handler`.
    pub fn spawn(handler: impl Fn(&Message) -> Vec<u8> + Send + Sync + 'static) -> Backend {
        let handler: Arc<Handler> = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        Backend::raw(move |stream| {
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut w = stream;
            while let Some((raw_head, start, headers)) = read_head(&mut r) {
                let (body, chunked) = read_body(&mut r, &headers, false_if_no_framing(&headers));
                let m = Message {
                    start,
                    headers,
                    body,
                    raw_head,
                    chunked,
                };
                let resp = handler(&m);
                let close = m
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    || m.start.get(2).is_some_and(|v| v == "HTTP/1.0");
                reqs.lock().unwrap().push(m);
                if w.write_all(&resp).is_err() || close {
                    break;
                }
            }
        })
        .with_requests(requests)
    }

    /// A backend that answers `Hello from NAME` with Content-Length.
    pub fn named(name: &str) -> Backend {
        let body = name.to_string();
        Backend::spawn(move |_| ok(&body))
    }

    /// A backend answering `Hello from NAME` on `ip:port` (port 0: any),
    /// e.g. 127.0.0.2 for a name that DNS gives that address.
    pub fn named_on(ip: &str, port: u16, name: &str) -> Backend {
        let body = name.to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        let mut b = Backend::raw_on(&format!("{ip}:{port}"), move |stream| {
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut w = stream;
            while let Some((raw_head, start, headers)) = read_head(&mut r) {
                let (body_in, chunked) = read_body(&mut r, &headers, false_if_no_framing(&headers));
                reqs.lock().unwrap().push(Message {
                    start,
                    headers,
                    body: body_in,
                    raw_head,
                    chunked,
                });
                if w.write_all(&ok(&body)).is_err() {
                    break;
                }
            }
        })
        .with_requests(requests);
        b.ip = ip.to_string();
        b
    }

    /// A backend whose connection handling is entirely `f`.
    pub fn raw(f: impl Fn(TcpStream) + Send + Sync + 'static) -> Backend {
        Backend::raw_on("127.0.0.1:0", f)
    }

    fn raw_on(bind: &str, f: impl Fn(TcpStream) + Send + Sync + 'static) -> Backend {
        let l = TcpListener::bind(bind).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let f = Arc::new(f);
        let (st, cn) = (stop.clone(), connections.clone());
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        cn.fetch_add(1, Ordering::Relaxed);
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        let f = f.clone();
                        thread::spawn(move || f(s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend {
            ip: "127.0.0.1".into(),
            port,
            connections,
            requests: Arc::new(Mutex::new(Vec::new())),
            stop,
        }
    }

    fn with_requests(mut self, r: Arc<Mutex<Vec<Message>>>) -> Backend {
        self.requests = r;
        self
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn received(&self) -> Vec<Message> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn false_if_no_framing(_h: &[(String, String)]) -> bool {
    // A request without Content-Length or Transfer-Encoding has no body.
    !_h.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    })
}

/// `200 OK` with `body` and Content-Length.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        body
    )
    .into_bytes()
}

/// A port with nothing listening on it.
pub fn refused_port() -> u16 {
    free_port()
}

/// Runs the binary with `args`, returning (exit code, stdout, stderr).
pub fn run_lb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(LB)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run load_balancer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` to a fresh temp file and returns its path.
pub fn temp_file(name: &str, text: &str) -> TempFile {
    let dir = std::env::temp_dir().join(format!("lb-test-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    TempFile { dir, path }
}

/// A file in a directory of its own, both removed on drop.
pub struct TempFile {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn shutdown_write(c: &Client) {
    let _ = c.w.shutdown(Shutdown::Write);
}

/// The cases of a corpus in tests/conformance/NAME/cases.jsonl (the
/// project's copy, see tests/conformance/README.md), read with the project's
/// own JSON parser.
pub fn corpus(name: &str) -> Vec<lb::config::json::Json> {
    let path = format!(
        "{}/tests/conformance/{name}/cases.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| lb::config::json::parse(l).expect("corpus line parses"))
        .collect()
}

/// Bytes from a hex string.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Sends signal number `sig` to `pid` (a process this test started), with
/// kill(1), so tests need no unsafe code.
pub fn signal(pid: u32, sig: i32) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill(1)")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

// ---- multi-process helpers: workers, metrics, load ------------------------

/// A demo backend (the project's own event loop) on a kernel-chosen port,
/// answering `Hello from NAME`; runs until the test process ends.
pub fn demo_backend(name: &'static str) -> String {
    let l = lb::sys::listen("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
    let port = lb::sys::local_addr(std::os::fd::AsFd::as_fd(&l))
        .unwrap()
        .port();
    thread::spawn(move || lb::demo::serve(name, l));
    format!("127.0.0.1:{port}")
}

/// Pids whose parent is `pid`, with their `comm`.
pub fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let ppid: u32 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        if ppid == pid && state != "Z" {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            out.push((p, comm.trim().to_string()));
        }
    }
    out.sort();
    out
}

/// The master's `n` worker processes (not its prober), once they are all
/// there (the port accepts as soon as the master has bound it, before the
/// forks).
pub fn workers_of(master: u32, n: usize) -> Vec<(u32, String)> {
    let mut kids = Vec::new();
    let found = eventually(Duration::from_secs(10), || {
        kids = children(master);
        kids.retain(|(_, comm)| comm.starts_with("lb: worker"));
        kids.len() == n
    });
    assert!(found, "master {master}: workers {kids:?}, expected {n}");
    kids
}

pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Waits (bounded) until `f` holds; false if it never did.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// The value of an unlabelled (or fully labelled) series in a scrape.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub fn scrape(port: u16) -> String {
    let m = get(port, "/metrics");
    assert_eq!(m.status(), 200);
    m.text()
}

/// Starts wrk against `port` for `secs` seconds with 50 connections.
pub fn wrk(port: u16, secs: u32) -> std::process::Child {
    Command::new("wrk")
        .args([
            "-t2",
            "-c50",
            &format!("-d{secs}s"),
            &format!("http://127.0.0.1:{port}/"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk is needed for the fault tests under load (apt-get install wrk)")
}

/// Waits for wrk: (requests completed, failed requests: socket errors plus
/// non-2xx/3xx responses, wrk's whole output).
pub fn wrk_result(child: std::process::Child) -> (u64, u64, String) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let done = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    let mut failed = 0;
    for l in text.lines() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("Socket errors:") {
            failed += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if let Some(n) = l.strip_prefix("Non-2xx or 3xx responses:") {
            failed += n.trim().parse::<u64>().unwrap();
        }
    }
    (done, failed, text)
}

// ---- binary upgrades -------------------------------------------------------

/// The successor of an upgrade: found in the log, stopped when the test ends.
pub struct Successor(pub Option<u32>);

impl Drop for Successor {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let gone = eventually(Duration::from_secs(12), || {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            if !gone {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

pub fn successor_pid(log: &str) -> Option<u32> {
    let i = log.find("upgrade: new process pid ")? + "upgrade: new process pid ".len();
    log[i..].split_whitespace().next()?.parse().ok()
}

/// `kill -USR2` to `lb`, then waits until its successor serves (within
/// `serving_within`) and `lb` has exited: the successor, stopped when it
/// is dropped.
pub fn upgrade_and_wait(lb: &mut Lb, serving_within: Duration) -> Successor {
    signal(lb.pid(), 12); // SIGUSR2
    assert!(
        eventually(serving_within, || lb.log_has("is serving")),
        "{}",
        lb.log_text()
    );
    let successor = Successor(successor_pid(&lb.log_text()));
    assert!(
        eventually(Duration::from_secs(15), || lb.try_wait().is_some()),
        "the old process did not exit:\n{}",
        lb.log_text()
    );
    successor
}

/// A private copy of the binary, so a test can move a new build over it.
pub fn binary_copy(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let bin = dir.join("load_balancer");
    std::fs::copy(std::env::var("LB_BIN").unwrap_or(LB.to_string()), &bin).unwrap();
    bin.to_str().unwrap().to_string()
}

pub fn replace_binary(bin: &str, with: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = format!("{bin}.new");
    std::fs::write(&tmp, with).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, bin).unwrap();
}

/// CPU time (user + system, clock ticks) `pid` has used.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Live (not zombie) processes whose command line mentions `needle` (a
/// test's private directory, where its copy of the binary is).
pub fn running_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// A small seeded generator (xorshift64) for the tests' random sequences.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform enough in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `n` GETs of `/` at once, each on its own connection; their statuses.
pub fn concurrent_gets(port: u16, n: usize) -> Vec<u16> {
    let ts: Vec<_> = (0..n)
        .map(|_| thread::spawn(move || get(port, "/").status()))
        .collect();
    ts.into_iter().map(|t| t.join().unwrap()).collect()
}
