//! The worker: one event loop that accepts clients, reads their requests,
//! forwards them to backends over pooled connections and streams the
//! responses back.
//!
//! Every connection is a small state machine driven by [`Worker::drive`]:
//! each step moves bytes or returns `false` when it must wait for the
//! socket. Readiness is remembered per socket (edge-triggered epoll): a read
//! or write that comes back short marks the socket not ready until its next
//! edge, so no syscall is spent on a socket known to be empty or full.
//!
//! Bytes are forwarded from the buffer they were read into. Header lines
//! that pass through are copied verbatim into the outgoing head; bodies are
//! never copied (one `writev` sends the new head and the body bytes behind
//! it).

use super::balance::Balancer;
use super::Shared;
use crate::buf::{Buf, BufPool};
use crate::config::{ForwardedHeaders, HeaderMode, MAX_HEADER_LINES, MAX_IDLE_CONNS};
use crate::event::{Events, Poller};
use crate::http::framing::{request_meta, response_meta};
use crate::http::{
    parse_request, parse_response, BodyMode, ChunkedDecoder, HeaderRef, ParseError, RequestHead,
    ResponseHead, Status,
};
use crate::log;
use crate::net::{Tcp, Transport};
use crate::slab::Slab;
use crate::sys;
use std::io::{self, IoSlice, Write as _};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

const LISTENER: u64 = u64::MAX;
const KIND_CLIENT: u64 = 0;
const KIND_UPSTREAM: u64 = 1;
/// How often deadlines are checked.
const SWEEP_MS: u64 = 100;
/// Longest a graceful shutdown waits for requests in flight.
const SHUTDOWN_MS: u64 = 10_000;
/// Idle pooled upstream connections older than this are closed.
const UPSTREAM_IDLE_MS: u64 = 30_000;
/// A pooled connection idle longer than this is peeked at before reuse.
const PEEK_AFTER_IDLE_MS: u64 = 1_000;
/// After an error response: how long and how much to read before closing,
/// so the client sees the response rather than a reset.
const LINGER_MS: u64 = 2_000;
const LINGER_BYTES: u64 = 1 << 20;
/// Most backends tried for one request (also bounds stale-pool retries).
const MAX_ATTEMPTS: u8 = 8;
/// Bodies at least this long go through a splice pipe, not a buffer.
const SPLICE_MIN: u64 = 256 * 1024;
/// Steps one `drive` call may take before yielding to other connections.
const DRIVE_BUDGET: u32 = 256;

#[inline]
fn token(kind: u64, idx: u32, gen: u32) -> u64 {
    (gen as u64) << 32 | (idx as u64) << 1 | kind
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// A request is being exchanged with a backend.
    Proxy,
    /// Writing a response made here (error, metrics).
    Local,
    /// Write side shut; reading and discarding until the client closes.
    Drain,
    /// After a 101: bytes flow both ways untouched until both sides close.
    Tunnel,
}

/// The request in flight on a client connection.
#[derive(Clone, Copy)]
struct Req {
    minor: u8,
    idempotent: bool,
    is_head: bool,
    body: BodyMode,
    /// Content-Length bytes not yet sent upstream.
    left: u64,
    chunk: ChunkedDecoder,
    /// Chunked: validated bytes at the front of the client buffer.
    chunk_pending: usize,
    body_done: bool,
    body_sent: u64,
    /// Bytes of the upstream head written.
    head_sent: usize,
    sent_any: bool,
    attempts: u8,
    /// The request asked to switch protocols.
    upgrade: bool,
    /// Bytes of a head have arrived (header timeout runs, not idle timeout).
    started: bool,
}

impl Default for Req {
    fn default() -> Self {
        Req {
            minor: 1,
            idempotent: true,
            is_head: false,
            body: BodyMode::None,
            left: 0,
            chunk: ChunkedDecoder::new(),
            chunk_pending: 0,
            body_done: true,
            body_sent: 0,
            head_sent: 0,
            sent_any: false,
            attempts: 0,
            upgrade: false,
            started: false,
        }
    }
}

/// The response in flight.
#[derive(Clone, Copy)]
struct Resp {
    head_done: bool,
    body: BodyMode,
    left: u64,
    chunk: ChunkedDecoder,
    chunk_pending: usize,
    /// Close-delimited body re-framed as chunked for the client.
    rechunk: bool,
    /// The backend closed (end of a close-delimited body).
    eof: bool,
    /// The backend connection may be pooled after this response.
    reusable: bool,
}

impl Default for Resp {
    fn default() -> Self {
        Resp {
            head_done: false,
            body: BodyMode::None,
            left: 0,
            chunk: ChunkedDecoder::new(),
            chunk_pending: 0,
            rechunk: false,
            eof: false,
            reusable: false,
        }
    }
}

impl Resp {
    fn complete(&self) -> bool {
        match self.body {
            BodyMode::None => true,
            BodyMode::ContentLength(_) => self.left == 0,
            BodyMode::Chunked => self.chunk.is_done() && self.chunk_pending == 0,
            BodyMode::UntilClose => self.eof,
        }
    }
}

struct Client {
    io: Tcp,
    gen: u32,
    peer: [u8; 48],
    peer_len: u8,
    /// Bytes from the client.
    rbuf: Option<Buf>,
    /// Bytes to the client ahead of any body bytes (response head, interim
    /// responses, re-chunked data).
    wbuf: Option<Buf>,
    /// The request head as sent upstream, kept until the response starts
    /// so that a retry can send it again.
    reqhead: Option<Buf>,
    /// A response generated here (errors, metrics) and how much is written.
    local: Vec<u8>,
    local_off: usize,
    readable: bool,
    writable: bool,
    /// The client shut its write side: read until end of stream.
    hup: bool,
    phase: Phase,
    up: Option<u32>,
    backend: usize,
    req: Req,
    resp: Resp,
    /// Backends tried for the current request (bit per backend).
    tried: u64,
    /// The client connection stays open after the current exchange.
    keep_alive: bool,
    deadline: u64,
    drained: u64,
    /// Splice pipe of a large body in flight, and the bytes in it.
    pipe: Option<sys::Pipe>,
    pipe_len: usize,
    /// Pipes are not available here: copy bodies through buffers.
    no_splice: bool,
    /// Tunnel: the client, or the backend, has finished sending.
    client_done: bool,
    upstream_done: bool,
}

impl Client {
    fn peer(&self) -> &str {
        std::str::from_utf8(&self.peer[..self.peer_len as usize]).unwrap_or("?")
    }
}

struct Upstream {
    io: Tcp,
    gen: u32,
    backend: usize,
    rbuf: Option<Buf>,
    readable: bool,
    writable: bool,
    hup: bool,
    connected: bool,
    client: Option<u32>,
    idle_since: u64,
    /// Taken from the pool (a failure may just mean the backend closed it).
    reused: bool,
}

/// Why an exchange with a backend failed.
#[derive(Debug)]
enum UpstreamFailure {
    Connect(io::Error),
    ConnectTimeout,
    Write(io::Error),
    Read(io::Error),
    ClosedBeforeResponse,
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamFailure::Connect(e) => write!(f, "connect: {e}"),
            UpstreamFailure::ConnectTimeout => f.write_str("connect timed out"),
            UpstreamFailure::Write(e) => write!(f, "sending the request: {e}"),
            UpstreamFailure::Read(e) => write!(f, "reading the response: {e}"),
            UpstreamFailure::ClosedBeforeResponse => {
                f.write_str("closed the connection before responding")
            }
        }
    }
}

/// One event loop and everything it owns.
pub struct Worker {
    shared: Arc<Shared>,
    poller: Poller,
    events: Events,
    /// None once a shutdown began: new connections are refused.
    listener: Option<OwnedFd>,
    listener_registered: bool,
    /// Deadline (ms) of a graceful shutdown in progress.
    draining: Option<u64>,
    clients: Slab<Client>,
    ups: Slab<Upstream>,
    /// Idle upstream connections per backend, most recently used last.
    pools: Vec<Vec<u32>>,
    bufs: BufPool,
    hdrs: Box<[HeaderRef]>,
    balancer: Balancer,
    weights: Vec<u16>,
    now: u64,
    next_sweep: u64,
    /// Empty splice pipes, for large bodies.
    pipes: Vec<sys::Pipe>,
    /// Connections whose `drive` ran out of budget, to continue next turn.
    again: Vec<(u32, u32)>,
    scratch: Vec<u32>,
    trace: bool,
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// A worker serving `listener`. The poller is created here, in the
    /// thread or process that will run the loop.
    pub fn new(
        shared: Arc<Shared>,
        listener: OwnedFd,
        stop: Arc<AtomicBool>,
        seed: u64,
    ) -> io::Result<Worker> {
        let poller = Poller::new()?;
        poller.add_listener(listener.as_fd(), LISTENER)?;
        let n = shared.table.len();
        let weights = (0..n).map(|i| shared.table.get(i).weight).collect();
        let trace = shared.config.trace;
        let strategy = shared.config.strategy;
        Ok(Worker {
            shared,
            poller,
            events: Events::with_capacity(1024),
            listener: Some(listener),
            listener_registered: true,
            draining: None,
            clients: Slab::default(),
            ups: Slab::default(),
            pools: (0..n).map(|_| Vec::with_capacity(MAX_IDLE_CONNS)).collect(),
            bufs: BufPool::default(),
            hdrs: vec![HeaderRef::default(); MAX_HEADER_LINES].into_boxed_slice(),
            balancer: Balancer::new(strategy, seed),
            weights,
            now: sys::now_ms(),
            next_sweep: 0,
            pipes: Vec::new(),
            again: Vec::new(),
            scratch: Vec::new(),
            trace,
            stop,
        })
    }

    /// Runs until the stop flag is set.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.stop.load(Relaxed) {
            if self.draining.is_none() && sys::shutdown_requested() {
                self.begin_shutdown();
            }
            if let Some(deadline) = self.draining {
                if self.clients.is_empty() || self.now >= deadline {
                    log!(
                        Info,
                        "main",
                        "shutdown complete ({} connections cut)",
                        self.clients.len()
                    );
                    return Ok(());
                }
            }
            let timeout = if self.again.is_empty() {
                SWEEP_MS as i32
            } else {
                0
            };
            self.poller.wait(&mut self.events, timeout)?;
            self.now = sys::now_ms();
            for k in 0..self.events.len() {
                let ev = self.events.get(k);
                self.dispatch(ev.token, ev.readable, ev.writable, ev.hup);
            }
            if !self.again.is_empty() {
                let again = std::mem::take(&mut self.again);
                for &(ci, gen) in &again {
                    if self.clients.get_mut_gen(ci, gen).is_some() {
                        self.drive(ci);
                    }
                }
                let mut again = again;
                again.clear();
                if self.again.is_empty() {
                    self.again = again;
                }
            }
            if self.now >= self.next_sweep {
                self.sweep();
                self.next_sweep = self.now + SWEEP_MS;
            }
        }
        Ok(())
    }

    /// Graceful shutdown: stop accepting (the listening socket is closed, so
    /// new connections are refused, not left waiting), close idle kept-alive
    /// connections, let requests in flight finish (their connections close
    /// after the response), for at most `SHUTDOWN_MS`.
    fn begin_shutdown(&mut self) {
        if let Some(l) = self.listener.take() {
            let _ = self.poller.delete(l.as_fd());
        }
        self.draining = Some(self.now + SHUTDOWN_MS);
        let mut idx = std::mem::take(&mut self.scratch);
        idx.clear();
        idx.extend(self.clients.indices());
        log!(
            Info,
            "main",
            "shutting down: {} connections open, finishing requests in flight",
            idx.len()
        );
        for &ci in &idx {
            let c = self.clients.get_mut(ci).expect("listed client");
            c.keep_alive = false;
            if c.phase == Phase::Head && c.rbuf.as_ref().map_or(true, |b| b.is_empty()) {
                self.close_client(ci);
            }
        }
        self.scratch = idx;
    }

    fn dispatch(&mut self, tok: u64, readable: bool, writable: bool, hup: bool) {
        if tok == LISTENER {
            self.accept();
            return;
        }
        let idx = (tok as u32) >> 1;
        let gen = (tok >> 32) as u32;
        if tok & 1 == KIND_CLIENT {
            if let Some(c) = self.clients.get_mut_gen(idx, gen) {
                c.readable |= readable;
                c.writable |= writable;
                c.hup |= hup;
                self.drive(idx);
            }
        } else if let Some(u) = self.ups.get_mut_gen(idx, gen) {
            u.readable |= readable;
            u.writable |= writable;
            u.hup |= hup;
            match u.client {
                Some(ci) => self.drive(ci),
                None if readable && sys::peer_closed_or_dirty(u.io.fd()) => {
                    // An idle pooled connection the backend closed (or wrote to).
                    self.close_upstream(idx);
                }
                None => {}
            }
        }
    }

    fn accept(&mut self) {
        for _ in 0..64 {
            // Looked up each time round: `add_client` borrows all of `self`.
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match sys::accept(listener.as_fd()) {
                Ok((fd, peer)) => self.add_client(fd, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    // Out of descriptors: stop accepting until the next sweep
                    // rather than spin on a listener that stays readable.
                    log!(Err, "proxy", "accept: {e}; pausing accepts");
                    if self
                        .listener
                        .as_ref()
                        .is_some_and(|l| self.poller.delete(l.as_fd()).is_ok())
                    {
                        self.listener_registered = false;
                    }
                    return;
                }
                Err(_) => continue, // ECONNABORTED and friends: that client is gone
            }
        }
    }

    fn add_client(&mut self, fd: OwnedFd, peer: Option<IpAddr>) {
        let _ = sys::set_nodelay(fd.as_fd());
        let mut text = [0u8; 48];
        let peer_len = {
            let mut w = &mut text[..];
            let _ = match peer {
                Some(ip) => write!(w, "{ip}"),
                None => write!(w, "unknown"),
            };
            48 - w.len()
        };
        let client = Client {
            io: Tcp::new(fd),
            gen: 0,
            peer: text,
            peer_len: peer_len as u8,
            rbuf: None,
            wbuf: None,
            reqhead: None,
            local: Vec::new(),
            local_off: 0,
            // TCP_DEFER_ACCEPT: the request is usually here already.
            readable: true,
            writable: true,
            hup: false,
            phase: Phase::Head,
            up: None,
            backend: 0,
            req: Req::default(),
            resp: Resp::default(),
            tried: 0,
            keep_alive: true,
            deadline: self.now + self.shared.config.timeouts.client_idle.as_millis() as u64,
            drained: 0,
            pipe: None,
            pipe_len: 0,
            no_splice: false,
            client_done: false,
            upstream_done: false,
        };
        let (ci, gen) = self.clients.insert(client);
        let c = self.clients.get_mut(ci).expect("just inserted");
        c.gen = gen;
        if let Err(e) = self.poller.add(c.io.fd(), token(KIND_CLIENT, ci, gen)) {
            log!(Err, "proxy", "epoll add: {e}");
            self.clients.remove(ci);
            return;
        }
        let m = &self.shared.metrics;
        m.connections_accepted.fetch_add(1, Relaxed);
        m.connections_active.fetch_add(1, Relaxed);
        self.drive(ci);
    }

    /// Advances a client connection as far as its sockets allow.
    fn drive(&mut self, ci: u32) {
        for _ in 0..DRIVE_BUDGET {
            let Some(phase) = self.clients.get(ci).map(|c| c.phase) else {
                return;
            };
            let progressed = match phase {
                Phase::Head => self.step_head(ci),
                Phase::Proxy => {
                    let a = self.step_request(ci);
                    let b = self
                        .clients
                        .get(ci)
                        .is_some_and(|c| c.phase == Phase::Proxy)
                        && self.step_response(ci);
                    a || b
                }
                Phase::Local => self.step_local(ci),
                Phase::Drain => self.step_drain(ci),
                Phase::Tunnel => self.step_tunnel(ci),
            };
            if !progressed {
                return;
            }
        }
        if let Some(c) = self.clients.get(ci) {
            self.again.push((ci, c.gen));
        }
    }

    // ---- reading a request head -------------------------------------------------

    fn step_head(&mut self, ci: u32) -> bool {
        let c = self.clients.get_mut(ci).expect("driven client exists");
        if let Some(b) = c.rbuf.as_ref().filter(|b| !b.is_empty()) {
            match parse_request(b.filled(), &mut self.hdrs) {
                Ok(Status::Complete(head)) => {
                    self.start_request(ci, head);
                    return true;
                }
                Ok(Status::Partial) => {}
                Err(e) => {
                    self.reject(ci, e);
                    return true;
                }
            }
        }
        if !c.readable {
            self.bufs.release_if_empty(&mut c.rbuf);
            return false;
        }
        let b = c.rbuf.get_or_insert_with(|| self.bufs.take());
        match read_into(&mut c.io, b, &mut c.readable, c.hup) {
            Io::Moved(_) => {
                if !c.req.started {
                    c.req.started = true;
                    c.deadline =
                        self.now + self.shared.config.timeouts.client_header.as_millis() as u64;
                }
                true
            }
            Io::Blocked => {
                self.bufs.release_if_empty(&mut c.rbuf);
                false
            }
            Io::Eof | Io::Failed(_) => {
                self.close_client(ci);
                true
            }
        }
    }

    fn reject(&mut self, ci: u32, e: ParseError) {
        self.shared.metrics.bad_requests.fetch_add(1, Relaxed);
        let c = self.clients.get(ci).expect("client");
        log!(
            Info,
            "proxy",
            "{}: rejected request: {} ({})",
            c.peer(),
            e,
            e.status()
        );
        self.local_error(ci, e.status(), &e.to_string());
    }

    fn start_request(&mut self, ci: u32, head: RequestHead) {
        let Worker {
            clients,
            hdrs,
            bufs,
            shared,
            ..
        } = self;
        let c = clients.get_mut(ci).expect("client");
        let rbuf = c.rbuf.as_mut().expect("head parsed from rbuf");
        let buf = rbuf.filled();
        let meta = match request_meta(buf, &head, hdrs) {
            Ok(m) => m,
            Err(e) => return self.reject(ci, e),
        };
        c.keep_alive = meta.conn.persistent(head.minor);
        if meta.body != BodyMode::None && (method_is(buf, &head, b"GET") || meta.is_head) {
            // A body on GET or HEAD has no defined meaning; some servers
            // ignore it and would read it as the next request. Forward it
            // framed, then close (desync-guardian's "Ambiguous" rule).
            c.keep_alive = false;
        }
        c.req = Req {
            minor: head.minor,
            idempotent: meta.idempotent,
            is_head: meta.is_head,
            body: meta.body,
            left: match meta.body {
                BodyMode::ContentLength(n) => n,
                _ => 0,
            },
            body_done: meta.body == BodyMode::None,
            upgrade: meta.upgrade,
            ..Req::default()
        };
        c.resp = Resp::default();
        let method = head.method.of(buf);
        let target = head.target.of(buf);
        if meta.is_connect {
            c.keep_alive = false;
            rbuf.consume(head.len);
            return self.local_error(ci, 405, "CONNECT is not supported");
        }
        if target == b"/metrics" && (method == b"GET" || meta.is_head) {
            if meta.body != BodyMode::None {
                c.keep_alive = false;
            }
            rbuf.consume(head.len);
            let body = shared.metrics.render(shared.table.names(), &shared.health);
            return self.local_response(ci, 200, "text/plain; version=0.0.4", body.as_bytes());
        }
        shared.metrics.requests.fetch_add(1, Relaxed);
        let limit = shared.config.max_body_bytes;
        if limit > 0 && matches!(meta.body, BodyMode::ContentLength(n) if n > limit) {
            c.keep_alive = false;
            rbuf.consume(head.len);
            log!(
                Info,
                "proxy",
                "{}: request body over max_body_bytes ({limit}) (413)",
                c.peer()
            );
            return self.local_error(ci, 413, "request body too large");
        }
        if shared.table.is_empty() {
            c.keep_alive = false;
            rbuf.consume(head.len);
            return self.local_error(ci, 503, "no backends configured");
        }
        let mut out = c.reqhead.take().unwrap_or_else(|| bufs.take());
        out.clear();
        let o = RequestOut {
            conn: &meta.conn,
            body: meta.body,
            upgrade: meta.upgrade,
            peer: &c.peer[..c.peer_len as usize],
            fwd: &shared.config.forwarded,
        };
        if !compose_request(buf, &head, &hdrs[..head.header_count], &o, &mut out) {
            bufs.give(out);
            c.keep_alive = false;
            return self.local_error(ci, 431, "request head too large");
        }
        rbuf.consume(head.len);
        c.reqhead = Some(out);
        c.phase = Phase::Proxy;
        c.tried = 0;
        self.connect(ci);
    }

    // ---- choosing a backend and a connection ----------------------------------

    fn connect(&mut self, ci: u32) {
        loop {
            let c = self.clients.get_mut(ci).expect("client");
            let sh = &self.shared;
            if c.req.attempts >= MAX_ATTEMPTS {
                return self.local_error(ci, 502, "no backend could be reached");
            }
            let Some(b) = self.balancer.pick(
                &self.weights,
                c.tried,
                &sh.health,
                &sh.config.health,
                self.now,
            ) else {
                return self.local_error(ci, 502, "no backend could be reached");
            };
            c.tried |= 1 << b;
            c.req.attempts += 1;
            c.backend = b;
            while let Some(ui) = self.pools[b].pop() {
                let u = self.ups.get_mut(ui).expect("pooled upstream");
                if self.now.saturating_sub(u.idle_since) >= PEEK_AFTER_IDLE_MS
                    && sys::peer_closed_or_dirty(u.io.fd())
                {
                    // Already out of the pool list: just drop it.
                    if let Some(mut dead) = self.ups.remove(ui) {
                        self.bufs.release(&mut dead.rbuf);
                    }
                    continue;
                }
                u.client = Some(ci);
                u.reused = true;
                c.up = Some(ui);
                c.deadline = self.now + sh.config.timeouts.upstream_response.as_millis() as u64;
                sh.metrics.upstream_reuses.fetch_add(1, Relaxed);
                sh.metrics.backend_requests[b].fetch_add(1, Relaxed);
                return;
            }
            let backend = sh.table.get(b);
            match sys::connect(&backend.addr) {
                Ok((fd, done)) => {
                    let _ = sys::set_nodelay(fd.as_fd());
                    let (ui, gen) = self.ups.insert(Upstream {
                        io: Tcp::new(fd),
                        gen: 0,
                        backend: b,
                        rbuf: None,
                        readable: false,
                        writable: done,
                        hup: false,
                        connected: done,
                        client: Some(ci),
                        idle_since: 0,
                        reused: false,
                    });
                    let u = self.ups.get_mut(ui).expect("just inserted");
                    u.gen = gen;
                    if let Err(e) = self.poller.add(u.io.fd(), token(KIND_UPSTREAM, ui, gen)) {
                        log!(Err, "proxy", "epoll add: {e}");
                        self.ups.remove(ui);
                        return self.local_error(ci, 502, "internal error");
                    }
                    c.up = Some(ui);
                    let t = &sh.config.timeouts;
                    c.deadline = self.now
                        + if done {
                            t.upstream_response
                        } else {
                            t.upstream_connect
                        }
                        .as_millis() as u64;
                    sh.metrics.upstream_connects.fetch_add(1, Relaxed);
                    sh.metrics.backend_requests[b].fetch_add(1, Relaxed);
                    return;
                }
                Err(e) => {
                    log!(Warn, "proxy", "backend {}: connect: {e}", backend.name);
                    self.backend_failed(b);
                    // Nothing was sent: the next backend is safe for any method.
                }
            }
        }
    }

    fn backend_failed(&self, b: usize) {
        let sh = &self.shared;
        sh.metrics.backend_failures[b].fetch_add(1, Relaxed);
        if sh.health.record_failure(b, self.now, &sh.config.health) {
            log!(
                Warn,
                "health",
                "backend {} marked unhealthy",
                sh.table.get(b).name
            );
        }
    }

    /// The exchange with the current backend failed: retry where that is
    /// safe, else answer 502 (or cut the client off if a response started).
    fn upstream_failed(&mut self, ci: u32, why: UpstreamFailure) {
        let c = self.clients.get_mut(ci).expect("client");
        let Some(ui) = c.up.take() else { return };
        let b = c.backend;
        let reused = self.ups.get(ui).is_some_and(|u| u.reused);
        self.close_upstream(ui);
        let name = &self.shared.table.get(b).name;
        // A pooled connection closed by the backend is not a sign of trouble.
        let stale = reused
            && matches!(
                why,
                UpstreamFailure::ClosedBeforeResponse
                    | UpstreamFailure::Write(_)
                    | UpstreamFailure::Read(_)
            );
        if stale {
            log!(
                Debug,
                "proxy",
                "backend {name}: pooled connection failed: {why}"
            );
        } else {
            log!(Warn, "proxy", "backend {name}: {why}");
            self.backend_failed(b);
        }
        let c = self.clients.get_mut(ci).expect("client");
        let nothing_sent = !c.req.sent_any;
        let can_retry =
            !c.resp.head_done && (nothing_sent || (c.req.idempotent && c.req.body_sent == 0));
        if can_retry {
            if stale {
                // The same backend, on a fresh connection, is fine to try again.
                c.tried &= !(1 << b);
            }
            c.req.head_sent = 0;
            c.req.sent_any = false;
            self.shared.metrics.retries.fetch_add(1, Relaxed);
            self.connect(ci);
        } else if !c.resp.head_done {
            c.keep_alive = false;
            self.local_error(ci, 502, "the backend failed");
        } else {
            self.close_client(ci);
        }
    }

    // ---- request: client -> backend --------------------------------------------

    fn step_request(&mut self, ci: u32) -> bool {
        let Worker {
            clients,
            ups,
            bufs,
            shared,
            now,
            trace,
            ..
        } = self;
        let c = clients.get_mut(ci).expect("client");
        let Some(ui) = c.up else { return false };
        let u = ups.get_mut(ui).expect("attached upstream");
        if !u.connected {
            if !u.writable {
                return false;
            }
            match sys::take_error(u.io.fd()) {
                Ok(None) => {
                    u.connected = true;
                    c.deadline = *now + shared.config.timeouts.upstream_response.as_millis() as u64;
                }
                Ok(Some(e)) | Err(e) => {
                    self.upstream_failed(ci, UpstreamFailure::Connect(e));
                    return true;
                }
            }
        }
        let head = c
            .reqhead
            .as_ref()
            .map_or(&[][..], |h| &h.filled()[c.req.head_sent..]);
        if head.is_empty() && c.req.body_done {
            return false;
        }
        let rbuf = c.rbuf.get_or_insert_with(|| bufs.take());
        // Which buffered bytes are body, ready to go?
        let pending = match c.req.body {
            BodyMode::ContentLength(_) => (c.req.left.min(rbuf.len() as u64)) as usize,
            BodyMode::Chunked => {
                if !c.req.chunk.is_done() && c.req.chunk_pending < rbuf.len() {
                    let limit = shared.config.max_body_bytes;
                    match c.req.chunk.feed(&rbuf.filled()[c.req.chunk_pending..]) {
                        Ok(_) if limit > 0 && c.req.chunk.data_bytes > limit => {
                            log!(
                                Info,
                                "proxy",
                                "{}: chunked body over max_body_bytes ({limit})",
                                c.peer()
                            );
                            c.keep_alive = false;
                            if let Some(ui) = c.up.take() {
                                self.close_upstream(ui);
                            }
                            let c = self.clients.get(ci).expect("client");
                            if c.resp.head_done {
                                self.close_client(ci);
                            } else {
                                self.local_error(ci, 413, "request body too large");
                            }
                            return true;
                        }
                        Ok(p) => c.req.chunk_pending += p.consumed,
                        Err(e) => {
                            log!(
                                Info,
                                "proxy",
                                "{}: rejected request body: {e} (400)",
                                c.peer()
                            );
                            shared.metrics.bad_requests.fetch_add(1, Relaxed);
                            c.keep_alive = false;
                            if let Some(ui) = c.up.take() {
                                self.close_upstream(ui);
                            }
                            self.local_error(ci, 400, &e.to_string());
                            return true;
                        }
                    }
                }
                c.req.chunk_pending
            }
            BodyMode::None | BodyMode::UntilClose => 0,
        };
        if head.is_empty() && pending == 0 {
            // The body needs more bytes from the client.
            if !c.readable {
                return false;
            }
            return match read_into(&mut c.io, rbuf, &mut c.readable, c.hup) {
                Io::Moved(_) => {
                    c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
                    true
                }
                Io::Blocked => false,
                Io::Eof | Io::Failed(_) => {
                    log!(
                        Info,
                        "proxy",
                        "{}: client closed during the request body",
                        c.peer()
                    );
                    self.close_client(ci);
                    true
                }
            };
        }
        if !u.writable {
            return false;
        }
        let body = &rbuf.filled()[..pending];
        match write_from(
            &mut u.io,
            &[IoSlice::new(head), IoSlice::new(body)],
            &mut u.writable,
        ) {
            Io::Moved(n) => {
                if *trace {
                    let mut seen = head[..n.min(head.len())].to_vec();
                    seen.extend_from_slice(&body[..n - n.min(head.len())]);
                    log::trace_bytes("REQUEST TO BACKEND", &seen);
                }
                let h = n.min(head.len());
                let k = n - h;
                c.req.head_sent += h;
                c.req.sent_any = true;
                rbuf.consume(k);
                c.req.body_sent += k as u64;
                match c.req.body {
                    BodyMode::ContentLength(_) => {
                        c.req.left -= k as u64;
                        c.req.body_done = c.req.left == 0;
                    }
                    BodyMode::Chunked => {
                        c.req.chunk_pending -= k;
                        c.req.body_done = c.req.chunk.is_done() && c.req.chunk_pending == 0;
                    }
                    _ => {}
                }
                if !c.resp.head_done {
                    c.deadline = *now + shared.config.timeouts.upstream_response.as_millis() as u64;
                }
                true
            }
            Io::Blocked => false,
            r => {
                self.upstream_failed(ci, UpstreamFailure::Write(io_error(r)));
                true
            }
        }
    }

    // ---- response: backend -> client -------------------------------------------

    fn step_response(&mut self, ci: u32) -> bool {
        let Worker {
            clients,
            ups,
            bufs,
            hdrs,
            trace,
            ..
        } = self;
        let c = clients.get_mut(ci).expect("client");
        let Some(ui) = c.up else { return false };
        let u = ups.get_mut(ui).expect("attached upstream");
        if !u.connected {
            return false;
        }
        if c.resp.head_done {
            return self.step_response_body(ci, ui);
        }
        if let Some(w) = c.wbuf.as_mut().filter(|w| !w.is_empty() && c.writable) {
            // An interim response (100 Continue) goes out at once: the client
            // may be waiting for it before it sends the body.
            return match write_from(&mut c.io, &[IoSlice::new(w.filled())], &mut c.writable) {
                Io::Moved(n) => {
                    w.consume(n);
                    true
                }
                Io::Blocked => false,
                Io::Eof | Io::Failed(_) => {
                    self.close_client(ci);
                    true
                }
            };
        }
        if let Some(b) = u.rbuf.as_ref().filter(|b| !b.is_empty()) {
            match parse_response(b.filled(), hdrs) {
                Ok(Status::Complete(head)) => {
                    self.start_response(ci, ui, head);
                    return true;
                }
                Ok(Status::Partial) => {}
                Err(e) => {
                    self.bad_response(ci, &e.to_string());
                    return true;
                }
            }
        }
        if !u.readable {
            return false;
        }
        let rbuf = u.rbuf.get_or_insert_with(|| bufs.take());
        match read_into(&mut u.io, rbuf, &mut u.readable, u.hup) {
            Io::Moved(n) => {
                if *trace {
                    log::trace_bytes("RESPONSE FROM BACKEND", &rbuf.filled()[rbuf.len() - n..]);
                }
                true
            }
            Io::Blocked => false,
            Io::Eof => {
                self.upstream_failed(ci, UpstreamFailure::ClosedBeforeResponse);
                true
            }
            Io::Failed(e) => {
                self.upstream_failed(ci, UpstreamFailure::Read(e));
                true
            }
        }
    }

    /// A response the proxy cannot forward: 502, and the backend connection
    /// is closed, never pooled.
    fn bad_response(&mut self, ci: u32, why: &str) {
        let c = self.clients.get_mut(ci).expect("client");
        let b = c.backend;
        log!(
            Warn,
            "proxy",
            "backend {}: invalid response: {why} (502)",
            self.shared.table.get(b).name
        );
        if let Some(ui) = c.up.take() {
            self.close_upstream(ui);
        }
        self.backend_failed(b);
        let c = self.clients.get_mut(ci).expect("client");
        if c.resp.head_done {
            self.close_client(ci);
        } else {
            c.keep_alive = false;
            self.local_error(ci, 502, "invalid response from backend");
        }
    }

    fn start_response(&mut self, ci: u32, ui: u32, head: ResponseHead) {
        let Worker {
            clients,
            ups,
            bufs,
            hdrs,
            shared,
            now,
            ..
        } = self;
        let c = clients.get_mut(ci).expect("client");
        let u = ups.get_mut(ui).expect("upstream");
        let rbuf = u.rbuf.as_mut().expect("head parsed from rbuf");
        let buf = rbuf.filled();
        if (100..200).contains(&head.status) && head.status != 101 {
            // Interim response (100 Continue, 103 Early Hints): pass it on to
            // HTTP/1.1 clients as it came, then wait for the final one.
            if c.req.minor == 1 {
                let w = c.wbuf.get_or_insert_with(|| bufs.take());
                if !w.push(&buf[..head.len]) {
                    return self.bad_response(ci, "interim responses overflow");
                }
            }
            rbuf.consume(head.len);
            return;
        }
        if head.status == 101 {
            if !c.req.upgrade {
                return self.bad_response(ci, "101 to a request that did not ask to upgrade");
            }
            let w = c.wbuf.get_or_insert_with(|| bufs.take());
            let meta_conn = crate::http::ConnectionOpts::default();
            if !compose_response(
                buf,
                &head,
                &hdrs[..head.header_count],
                &meta_conn,
                Framing::Upgrade,
                w,
            ) {
                w.clear();
                return self.bad_response(ci, "response head too large");
            }
            rbuf.consume(head.len);
            bufs.release(&mut c.reqhead);
            shared.metrics.response(101);
            c.keep_alive = false;
            c.resp.head_done = true;
            c.phase = Phase::Tunnel;
            c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
            return;
        }
        let meta = match response_meta(buf, &head, &hdrs[..head.header_count], c.req.is_head) {
            Ok(m) => m,
            Err(e) => return self.bad_response(ci, &e.to_string()),
        };
        let client_11 = c.req.minor == 1;
        let mut rechunk = false;
        match meta.body {
            BodyMode::Chunked if !client_11 => {
                return self.bad_response(ci, "chunked response to an HTTP/1.0 request");
            }
            BodyMode::UntilClose if client_11 && c.keep_alive => rechunk = true,
            BodyMode::UntilClose => c.keep_alive = false,
            _ => {}
        }
        if !c.req.body_done {
            // The backend answered before the whole request body arrived:
            // the rest of it cannot be told apart from a next request.
            c.keep_alive = false;
        }
        let w = c.wbuf.get_or_insert_with(|| bufs.take());
        let framing = Framing::Message {
            chunked: rechunk || meta.body == BodyMode::Chunked,
            keep_alive: c.keep_alive,
            client_11,
        };
        let ok = compose_response(
            buf,
            &head,
            &hdrs[..head.header_count],
            &meta.conn,
            framing,
            w,
        );
        if !ok {
            w.clear();
            return self.bad_response(ci, "response head too large");
        }
        rbuf.consume(head.len);
        c.resp = Resp {
            head_done: true,
            body: meta.body,
            left: match meta.body {
                BodyMode::ContentLength(n) => n,
                _ => 0,
            },
            rechunk,
            reusable: meta.conn.persistent(head.minor)
                && c.req.minor == 1
                && meta.body != BodyMode::UntilClose,
            ..Resp::default()
        };
        bufs.release(&mut c.reqhead);
        shared.metrics.response(head.status);
        let b = c.backend;
        c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
        if shared.health.record_success(b, &shared.config.health) {
            log!(
                Info,
                "health",
                "backend {} is healthy again",
                shared.table.get(b).name
            );
        }
    }

    fn step_response_body(&mut self, ci: u32, ui: u32) -> bool {
        let Worker {
            clients,
            ups,
            bufs,
            shared,
            now,
            trace,
            ..
        } = self;
        let c = clients.get_mut(ci).expect("client");
        let u = ups.get_mut(ui).expect("upstream");
        let rbuf = u.rbuf.get_or_insert_with(|| bufs.take());
        let mut pending = match c.resp.body {
            BodyMode::None => 0,
            BodyMode::ContentLength(_) => c.resp.left.min(rbuf.len() as u64) as usize,
            BodyMode::Chunked => {
                if !c.resp.chunk.is_done() && c.resp.chunk_pending < rbuf.len() {
                    match c.resp.chunk.feed(&rbuf.filled()[c.resp.chunk_pending..]) {
                        Ok(p) => c.resp.chunk_pending += p.consumed,
                        Err(e) => {
                            self.bad_response(ci, &e.to_string());
                            return true;
                        }
                    }
                }
                c.resp.chunk_pending
            }
            BodyMode::UntilClose => rbuf.len(),
        };
        if c.resp.rechunk && pending > 0 {
            // Close-delimited body to a keep-alive client: frame it as chunks.
            let w = c.wbuf.get_or_insert_with(|| bufs.take());
            let room = crate::buf::BUF_SIZE.saturating_sub(w.end + 16 + 2);
            let take = pending.min(room);
            if take > 0 {
                let mut size = [0u8; 18];
                let sl = hex_line(take, &mut size);
                w.push(sl);
                w.push(&rbuf.filled()[..take]);
                w.push(b"\r\n");
                rbuf.consume(take);
                pending = 0;
            }
        }
        let wlen = c.wbuf.as_ref().map_or(0, |w| w.len());
        let large = matches!(c.resp.body, BodyMode::ContentLength(_)) && c.resp.left >= SPLICE_MIN;
        if wlen == 0 && pending == 0 && (c.pipe_len > 0 || (large && !*trace && !c.no_splice)) {
            return self.splice_body(ci, ui);
        }
        if wlen == 0 && pending == 0 {
            if c.resp.complete() {
                self.finish_exchange(ci);
                return true;
            }
            if !u.readable {
                return false;
            }
            return match read_into(&mut u.io, rbuf, &mut u.readable, u.hup) {
                Io::Eof if c.resp.body == BodyMode::UntilClose => {
                    c.resp.eof = true;
                    if c.resp.rechunk {
                        let w = c.wbuf.get_or_insert_with(|| bufs.take());
                        w.push(b"0\r\n\r\n");
                    }
                    true
                }
                Io::Moved(n) => {
                    if *trace {
                        log::trace_bytes("RESPONSE FROM BACKEND", &rbuf.filled()[rbuf.len() - n..]);
                    }
                    c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
                    true
                }
                Io::Blocked => false,
                Io::Eof | Io::Failed(_) => {
                    // Closed or reset before the body was complete: the client
                    // must not take a short body for a whole one.
                    log!(
                        Warn,
                        "proxy",
                        "backend {}: response body truncated",
                        shared.table.get(c.backend).name
                    );
                    self.close_client(ci);
                    true
                }
            };
        }
        if !c.writable {
            return false;
        }
        let w = c.wbuf.as_ref().map_or(&[][..], |w| w.filled());
        let body = &rbuf.filled()[..pending];
        match write_from(
            &mut c.io,
            &[IoSlice::new(w), IoSlice::new(body)],
            &mut c.writable,
        ) {
            Io::Moved(n) => {
                let h = n.min(w.len());
                if let Some(w) = c.wbuf.as_mut() {
                    w.consume(h);
                }
                let k = n - h;
                rbuf.consume(k);
                match c.resp.body {
                    BodyMode::ContentLength(_) => c.resp.left -= k as u64,
                    BodyMode::Chunked => c.resp.chunk_pending -= k,
                    _ => {}
                }
                c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
                true
            }
            Io::Blocked => false,
            Io::Eof | Io::Failed(_) => {
                self.close_client(ci);
                true
            }
        }
    }

    /// A large Content-Length body, moved backend → pipe → client by
    /// `splice`, never through user space. `EAGAIN` from the backend side
    /// clears its readiness only when the pipe was empty (then it can only
    /// mean "socket empty", never "pipe full").
    fn splice_body(&mut self, ci: u32, ui: u32) -> bool {
        let Worker {
            clients,
            ups,
            pipes,
            shared,
            now,
            ..
        } = self;
        let c = clients.get_mut(ci).expect("client");
        let u = ups.get_mut(ui).expect("upstream");
        if c.pipe.is_none() {
            match pipes.pop().map_or_else(sys::pipe, Ok) {
                Ok(p) => c.pipe = Some(p),
                Err(_) => {
                    c.no_splice = true; // copy through buffers instead
                    return true;
                }
            }
        }
        let pipe = c.pipe.as_ref().expect("pipe just set");
        let mut progressed = false;
        if c.pipe_len > 0 && c.writable {
            match sys::splice(pipe.r.as_fd(), c.io.fd(), c.pipe_len) {
                Ok(n) => {
                    if n < c.pipe_len {
                        c.writable = false;
                    }
                    c.pipe_len -= n;
                    c.resp.left -= n as u64;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                Err(_) => {
                    self.close_client(ci);
                    return true;
                }
            }
        }
        let unread = c.resp.left - c.pipe_len as u64;
        if c.pipe_len < pipe.cap && unread > 0 && u.readable {
            let want = unread.min((pipe.cap - c.pipe_len) as u64) as usize;
            match sys::splice(u.io.fd(), pipe.w.as_fd(), want) {
                Ok(n) if n > 0 => {
                    // A short splice may mean the pipe ran out of slots, not
                    // that the socket is empty: readiness is cleared only by
                    // EAGAIN into an empty pipe, below.
                    c.pipe_len += n;
                    progressed = true;
                }
                // EAGAIN into an empty pipe: the socket is empty. Into a
                // non-empty one it may mean "pipe full"; draining will tell.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => u.readable = c.pipe_len > 0,
                _ => {
                    let name = &shared.table.get(c.backend).name;
                    log!(Warn, "proxy", "backend {name}: response body truncated");
                    self.close_client(ci);
                    return true;
                }
            }
        }
        if progressed {
            c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
        }
        if c.resp.left == 0 && c.pipe_len == 0 {
            if let Some(p) = c.pipe.take() {
                pipes.push(p);
            }
            self.finish_exchange(ci);
            return true;
        }
        progressed
    }

    /// The response is fully written: pool the backend connection if it is
    /// clean, and wait for the next request or close.
    fn finish_exchange(&mut self, ci: u32) {
        let c = self.clients.get_mut(ci).expect("client");
        if let Some(ui) = c.up.take() {
            let clean = c.resp.reusable && c.req.body_done;
            let b = c.backend;
            let u = self.ups.get_mut(ui).expect("upstream");
            if clean
                && u.rbuf.as_ref().map_or(true, |r| r.is_empty())
                && self.pools[b].len() < MAX_IDLE_CONNS
            {
                u.client = None;
                u.idle_since = self.now;
                self.bufs.release(&mut u.rbuf);
                self.pools[b].push(ui);
            } else {
                self.close_upstream(ui);
            }
        }
        self.after_response(ci);
    }

    /// Next request on a kept-alive connection, or a graceful close.
    fn after_response(&mut self, ci: u32) {
        let c = self.clients.get_mut(ci).expect("client");
        self.bufs.release(&mut c.reqhead);
        self.bufs.release_if_empty(&mut c.wbuf);
        c.up = None;
        c.tried = 0;
        if !c.keep_alive || self.draining.is_some() {
            return self.start_drain(ci);
        }
        c.phase = Phase::Head;
        c.resp = Resp::default();
        c.req = Req::default();
        let t = &self.shared.config.timeouts;
        if c.rbuf.as_ref().is_some_and(|b| !b.is_empty()) {
            c.req.started = true;
            c.deadline = self.now + t.client_header.as_millis() as u64;
        } else {
            self.bufs.release(&mut c.rbuf);
            c.deadline = self.now + t.client_idle.as_millis() as u64;
        }
    }

    // ---- responses made here ----------------------------------------------------

    fn local_error(&mut self, ci: u32, status: u16, detail: &str) {
        let body = format!("{} {}: {}\n", status, reason(status), detail);
        if let Some(c) = self.clients.get_mut(ci) {
            c.keep_alive = false;
        }
        self.local_response(ci, status, "text/plain", body.as_bytes());
    }

    fn local_response(&mut self, ci: u32, status: u16, ctype: &str, body: &[u8]) {
        let c = self.clients.get_mut(ci).expect("client");
        if let Some(ui) = c.up.take() {
            self.close_upstream(ui);
        }
        let c = self.clients.get_mut(ci).expect("client");
        self.bufs.release(&mut c.reqhead);
        c.local.clear();
        let conn = if c.keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        let _ = write!(
            c.local,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
            status,
            reason(status),
            ctype,
            body.len(),
            conn
        );
        if !c.req.is_head {
            c.local.extend_from_slice(body);
        }
        c.local_off = 0;
        c.phase = Phase::Local;
        self.shared.metrics.response(status);
    }

    fn step_local(&mut self, ci: u32) -> bool {
        let c = self.clients.get_mut(ci).expect("client");
        // An interim response may still sit in wbuf ahead of this one.
        if let Some(w) = c.wbuf.as_mut().filter(|w| !w.is_empty()) {
            if !c.writable {
                return false;
            }
            return match write_from(&mut c.io, &[IoSlice::new(w.filled())], &mut c.writable) {
                Io::Moved(n) => {
                    w.consume(n);
                    true
                }
                Io::Blocked => false,
                Io::Eof | Io::Failed(_) => {
                    self.close_client(ci);
                    true
                }
            };
        }
        if c.local_off == c.local.len() {
            c.local.clear();
            if c.local.capacity() > 4096 {
                c.local = Vec::new();
            }
            self.after_response(ci);
            return true;
        }
        if !c.writable {
            return false;
        }
        match write_from(
            &mut c.io,
            &[IoSlice::new(&c.local[c.local_off..])],
            &mut c.writable,
        ) {
            Io::Moved(n) => {
                c.local_off += n;
                true
            }
            Io::Blocked => false,
            Io::Eof | Io::Failed(_) => {
                self.close_client(ci);
                true
            }
        }
    }

    /// Half-closes and reads until the client closes, so that the response
    /// just written is not destroyed by a reset (nginx's lingering close).
    fn start_drain(&mut self, ci: u32) {
        let c = self.clients.get_mut(ci).expect("client");
        sys::shutdown_write(c.io.fd());
        c.phase = Phase::Drain;
        c.drained = 0;
        c.deadline = self.now + LINGER_MS;
        self.bufs.release(&mut c.wbuf);
    }

    fn step_drain(&mut self, ci: u32) -> bool {
        let c = self.clients.get_mut(ci).expect("client");
        if !c.readable {
            return false;
        }
        let b = c.rbuf.get_or_insert_with(|| self.bufs.take());
        b.clear();
        match read_into(&mut c.io, b, &mut c.readable, c.hup) {
            Io::Moved(n) if c.drained + (n as u64) < LINGER_BYTES => {
                c.drained += n as u64;
                true
            }
            Io::Blocked => {
                self.bufs.release(&mut c.rbuf);
                false
            }
            Io::Moved(_) | Io::Eof | Io::Failed(_) => {
                self.close_client(ci);
                true
            }
        }
    }

    // ---- tunnels (after 101 Switching Protocols) ----------------------------------

    /// Moves bytes both ways, untouched. When one side finishes sending, the
    /// other side's write half is shut; when both have, the tunnel closes.
    fn step_tunnel(&mut self, ci: u32) -> bool {
        let Worker {
            clients,
            ups,
            bufs,
            shared,
            now,
            ..
        } = self;
        let c = clients.get_mut(ci).expect("client");
        let Some(ui) = c.up else {
            self.close_client(ci);
            return true;
        };
        let u = ups.get_mut(ui).expect("tunnel upstream");
        let idle = shared.config.timeouts.body_progress.as_millis() as u64;
        let mut progressed = false;
        // Client -> backend.
        let cb = c.rbuf.get_or_insert_with(|| bufs.take());
        if !cb.is_empty() && u.writable {
            match write_from(&mut u.io, &[IoSlice::new(cb.filled())], &mut u.writable) {
                Io::Moved(n) => {
                    cb.consume(n);
                    progressed = true;
                }
                Io::Blocked => {}
                Io::Eof | Io::Failed(_) => {
                    self.close_client(ci);
                    return true;
                }
            }
        } else if cb.is_empty() && !c.client_done && c.readable {
            match read_into(&mut c.io, cb, &mut c.readable, c.hup) {
                Io::Moved(_) => progressed = true,
                Io::Blocked => {}
                Io::Eof | Io::Failed(_) => {
                    c.client_done = true;
                    sys::shutdown_write(u.io.fd());
                    progressed = true;
                }
            }
        }
        // Backend -> client, after the 101 head still in wbuf.
        let ub = u.rbuf.get_or_insert_with(|| bufs.take());
        let w = c.wbuf.as_ref().map_or(&[][..], |w| w.filled());
        if (!w.is_empty() || !ub.is_empty()) && c.writable {
            let r = write_from(
                &mut c.io,
                &[IoSlice::new(w), IoSlice::new(ub.filled())],
                &mut c.writable,
            );
            match r {
                Io::Moved(n) => {
                    let h = n.min(w.len());
                    if let Some(w) = c.wbuf.as_mut() {
                        w.consume(h);
                    }
                    ub.consume(n - h);
                    progressed = true;
                }
                Io::Blocked => {}
                Io::Eof | Io::Failed(_) => {
                    self.close_client(ci);
                    return true;
                }
            }
        } else if w.is_empty() && ub.is_empty() && !c.upstream_done && u.readable {
            match read_into(&mut u.io, ub, &mut u.readable, u.hup) {
                Io::Moved(_) => progressed = true,
                Io::Blocked => {}
                Io::Eof | Io::Failed(_) => {
                    c.upstream_done = true;
                    sys::shutdown_write(c.io.fd());
                    progressed = true;
                }
            }
        }
        if progressed {
            c.deadline = *now + idle;
        }
        let flushed =
            ub.is_empty() && c.wbuf.as_ref().map_or(true, |w| w.is_empty()) && cb.is_empty();
        if c.client_done && c.upstream_done && flushed {
            self.close_client(ci);
            return true;
        }
        progressed
    }

    // ---- closing and timeouts ---------------------------------------------------

    fn close_client(&mut self, ci: u32) {
        let Some(mut c) = self.clients.remove(ci) else {
            return;
        };
        if let Some(ui) = c.up.take() {
            self.close_upstream(ui);
        }
        self.bufs.release(&mut c.rbuf);
        self.bufs.release(&mut c.wbuf);
        self.bufs.release(&mut c.reqhead);
        if let Some(p) = c.pipe.take().filter(|_| c.pipe_len == 0) {
            self.pipes.push(p);
        }
        self.shared.metrics.connections_active.fetch_sub(1, Relaxed);
    }

    fn close_upstream(&mut self, ui: u32) {
        let Some(mut u) = self.ups.remove(ui) else {
            return;
        };
        if u.client.is_none() {
            self.pools[u.backend].retain(|&x| x != ui);
        }
        self.bufs.release(&mut u.rbuf);
    }

    fn sweep(&mut self) {
        let paused = self.listener.as_ref().filter(|_| !self.listener_registered);
        if paused.is_some_and(|l| self.poller.add_listener(l.as_fd(), LISTENER).is_ok()) {
            self.listener_registered = true;
        }
        let mut idx = std::mem::take(&mut self.scratch);
        idx.clear();
        idx.extend(self.clients.indices());
        for &ci in &idx {
            if self.clients.get(ci).is_some_and(|c| c.deadline <= self.now) {
                self.timeout(ci);
            }
        }
        idx.clear();
        for pool in &self.pools {
            idx.extend(pool.iter().copied().filter(|&ui| {
                self.ups
                    .get(ui)
                    .is_some_and(|u| self.now - u.idle_since > UPSTREAM_IDLE_MS)
            }));
        }
        for &ui in &idx {
            self.close_upstream(ui);
        }
        self.scratch = idx;
    }

    fn timeout(&mut self, ci: u32) {
        let c = self.clients.get_mut(ci).expect("client");
        match c.phase {
            Phase::Head if c.rbuf.as_ref().is_some_and(|b| !b.is_empty()) => {
                log!(Info, "proxy", "{}: request head timed out (408)", c.peer());
                self.local_error(ci, 408, "request head not received in time");
            }
            Phase::Head | Phase::Local | Phase::Drain | Phase::Tunnel => {
                return self.close_client(ci)
            }
            Phase::Proxy => {
                let connected =
                    c.up.and_then(|ui| self.ups.get(ui))
                        .is_some_and(|u| u.connected);
                if !connected {
                    self.upstream_failed(ci, UpstreamFailure::ConnectTimeout);
                } else if !c.resp.head_done {
                    let b = c.backend;
                    log!(
                        Warn,
                        "proxy",
                        "backend {}: no response in time (504)",
                        self.shared.table.get(b).name
                    );
                    if let Some(ui) = c.up.take() {
                        self.close_upstream(ui);
                    }
                    self.backend_failed(b);
                    self.local_error(ci, 504, "the backend did not answer in time");
                } else {
                    log!(Warn, "proxy", "{}: body stalled; closing", c.peer());
                    return self.close_client(ci);
                }
            }
        }
        self.drive(ci);
    }
}

fn method_is(buf: &[u8], head: &RequestHead, m: &[u8]) -> bool {
    head.method.of(buf) == m
}

/// What one read or write did.
enum Io {
    /// Moved this many bytes (0 after EINTR: just try again).
    Moved(usize),
    /// The socket is not ready; its readiness flag was cleared.
    Blocked,
    /// End of stream (reads only).
    Eof,
    Failed(io::Error),
}

/// Reads into the free space of `buf`. Edge-triggered readiness: a short
/// read means the socket is empty, unless the peer has hung up (then the
/// end of stream is still to be read).
#[inline]
fn read_into(io: &mut Tcp, buf: &mut Buf, readable: &mut bool, hup: bool) -> Io {
    let spare = buf.spare();
    let want = spare.len();
    if want == 0 {
        return Io::Blocked;
    }
    match io.read(spare) {
        Ok(0) => Io::Eof,
        Ok(n) => {
            buf.commit(n);
            if n < want && !hup {
                *readable = false;
            }
            Io::Moved(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            *readable = false;
            Io::Blocked
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Io::Moved(0),
        Err(e) => Io::Failed(e),
    }
}

/// The error behind a failed read or write (end of stream as `UnexpectedEof`).
fn io_error(r: Io) -> io::Error {
    match r {
        Io::Failed(e) => e,
        _ => io::ErrorKind::UnexpectedEof.into(),
    }
}

/// Writes `bufs` with one `writev`; a short write means the socket is full.
#[inline]
fn write_from(io: &mut Tcp, bufs: &[IoSlice<'_>], writable: &mut bool) -> Io {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    match io.write_vectored(bufs) {
        Ok(n) => {
            if n < total {
                *writable = false;
            }
            Io::Moved(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            *writable = false;
            Io::Blocked
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Io::Moved(0),
        Err(e) => Io::Failed(e),
    }
}

/// What the upstream head needs besides the parsed request.
struct RequestOut<'a> {
    conn: &'a crate::http::ConnectionOpts,
    body: BodyMode,
    /// Keep `Upgrade` and send `Connection: upgrade`.
    upgrade: bool,
    /// The client's address as text.
    peer: &'a [u8],
    fwd: &'a ForwardedHeaders,
}

/// Writes the upstream request head: the request line as received, the
/// end-to-end headers verbatim, one framing header, the forwarding headers.
fn compose_request(
    buf: &[u8],
    head: &RequestHead,
    hdrs: &[HeaderRef],
    o: &RequestOut<'_>,
    out: &mut Buf,
) -> bool {
    let line_end = hdrs.first().map_or(head.len - 2, |h| h.line.start as usize);
    let mut ok = out.push(&buf[head.start..line_end]);
    let fwd = [
        (&b"x-forwarded-for"[..], o.fwd.x_forwarded_for),
        (&b"x-forwarded-proto"[..], o.fwd.x_forwarded_proto),
        (&b"forwarded"[..], o.fwd.forwarded),
    ];
    for h in hdrs {
        let name = h.name.of(buf);
        let keep = if o.upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            true
        } else if o.conn.is_hop_by_hop(buf, name) {
            false
        } else {
            // A forwarding header the proxy sets itself is written below.
            !fwd.iter()
                .any(|(n, mode)| *mode != HeaderMode::Off && name.eq_ignore_ascii_case(n))
        };
        if keep {
            ok &= out.push(h.line.of(buf));
        }
    }
    if o.upgrade {
        ok &= out.push(b"Connection: upgrade\r\n");
    }
    if o.body == BodyMode::Chunked {
        ok &= out.push(b"Transfer-Encoding: chunked\r\n");
    }
    ok &= forwarding_header(
        out,
        buf,
        hdrs,
        b"X-Forwarded-For: ",
        o.fwd.x_forwarded_for,
        &[o.peer],
    );
    ok &= forwarding_header(
        out,
        buf,
        hdrs,
        b"X-Forwarded-Proto: ",
        o.fwd.x_forwarded_proto,
        &[b"http"],
    );
    // RFC 7239: an IPv6 address is quoted and bracketed.
    let v6 = o.peer.contains(&b':');
    let node: [&[u8]; 3] = if v6 {
        [b"\"[", o.peer, b"]\""]
    } else {
        [b"", o.peer, b""]
    };
    ok &= forwarding_header(
        out,
        buf,
        hdrs,
        b"Forwarded: ",
        o.fwd.forwarded,
        &[b"for=", node[0], node[1], node[2], b";proto=http"],
    );
    ok && out.push(b"\r\n")
}

/// One forwarding header: `prefix` is `Name: `; this hop's value is the
/// concatenation of `value`; with `Append`, the client's values come first.
fn forwarding_header(
    out: &mut Buf,
    buf: &[u8],
    hdrs: &[HeaderRef],
    prefix: &[u8],
    mode: HeaderMode,
    value: &[&[u8]],
) -> bool {
    if mode == HeaderMode::Off {
        return true;
    }
    let name = &prefix[..prefix.len() - 2];
    let mut ok = out.push(prefix);
    if mode == HeaderMode::Append {
        for h in hdrs
            .iter()
            .filter(|h| h.name.of(buf).eq_ignore_ascii_case(name))
        {
            ok &= out.push(h.value.of(buf)) && out.push(b", ");
        }
    }
    for part in value {
        ok &= out.push(part);
    }
    ok && out.push(b"\r\n")
}

/// How the client response head ends.
#[derive(Clone, Copy)]
enum Framing {
    Message {
        chunked: bool,
        keep_alive: bool,
        client_11: bool,
    },
    /// A 101: keep `Upgrade`, say `Connection: upgrade`.
    Upgrade,
}

/// Writes the client response head: `HTTP/1.1` and the status and reason as
/// received, end-to-end headers verbatim, framing and connection headers.
fn compose_response(
    buf: &[u8],
    head: &ResponseHead,
    hdrs: &[HeaderRef],
    conn: &crate::http::ConnectionOpts,
    framing: Framing,
    out: &mut Buf,
) -> bool {
    let line_end = hdrs.first().map_or(head.len - 2, |h| h.line.start as usize);
    // "HTTP/1.x " is 9 bytes; the proxy speaks HTTP/1.1 itself.
    let mut ok = out.push(b"HTTP/1.1 ") && out.push(&buf[9..line_end]);
    let upgrade = matches!(framing, Framing::Upgrade);
    for h in hdrs {
        let name = h.name.of(buf);
        if (upgrade && name.eq_ignore_ascii_case(b"upgrade")) || !conn.is_hop_by_hop(buf, name) {
            ok &= out.push(h.line.of(buf));
        }
    }
    match framing {
        Framing::Upgrade => ok &= out.push(b"Connection: upgrade\r\n"),
        Framing::Message {
            chunked,
            keep_alive,
            client_11,
        } => {
            if chunked {
                ok &= out.push(b"Transfer-Encoding: chunked\r\n");
            }
            if !keep_alive {
                ok &= out.push(b"Connection: close\r\n");
            } else if !client_11 {
                ok &= out.push(b"Connection: keep-alive\r\n");
            }
        }
    }
    ok && out.push(b"\r\n")
}

/// `{size:x}\r\n` into `out`; returns the used part.
fn hex_line(mut n: usize, out: &mut [u8; 18]) -> &[u8] {
    let mut digits = [0u8; 16];
    let mut k = 0;
    loop {
        digits[k] = b"0123456789abcdef"[n & 15];
        k += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for i in 0..k {
        out[i] = digits[k - 1 - i];
    }
    out[k] = b'\r';
    out[k + 1] = b'\n';
    &out[..k + 2]
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lines() {
        let mut b = [0u8; 18];
        assert_eq!(hex_line(0, &mut b), b"0\r\n");
        assert_eq!(hex_line(255, &mut b), b"ff\r\n");
        assert_eq!(hex_line(16384, &mut b), b"4000\r\n");
    }
}
