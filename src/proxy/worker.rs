//! The worker: one event loop that accepts sessions, dispatches the
//! poller's events to sessions (`session`), sweeps deadlines (`deadlines`)
//! and drains on shutdown. It does not care whether it runs in a thread or
//! a process.
//!
//! Readiness is remembered per socket (edge-triggered epoll, see
//! `net::Stream`): no syscall is spent on a socket known to be empty or
//! full. Bytes are forwarded from the buffer they were read into: header
//! lines that pass through are copied verbatim into the outgoing head and
//! bodies are never copied (one `writev` sends the new head and the body
//! bytes behind it).
#![forbid(unsafe_code)]

use super::backends::BackendSet;
use super::balance::Balancer;
use super::downstream::DRAIN_IDLE_MS;
use super::session::{Phase, Req, Resp, Session};
use super::upstream::Upstream;
use super::{Listeners, Shared};
use crate::access_log::AccessLog;
use crate::buf::BufPool;
use crate::config::{MAX_BACKENDS, MAX_HEADER_LINES};
use crate::event::{Events, Poller};
use crate::http::HeaderRef;
use crate::log;
use crate::log::Kind;
use crate::net::tls_listener::ListenerTls;
use crate::net::{Conn, Stream, Tcp, Transport};
use crate::shm::Runtime;
use crate::slab::Slab;
use crate::sys;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

const LISTENER: u64 = u64::MAX;
/// The TLS listener (`--tls-port`).
const TLS_LISTENER: u64 = u64::MAX - 3;
/// Spare request-body buffers kept per worker.
pub(super) const BODY_POOL_MAX: usize = 64;
/// The signal self-pipe: a signal wakes the loop at once.
const WAKE: u64 = u64::MAX - 1;
/// The admin listener.
const ADMIN: u64 = u64::MAX - 2;
const KIND_CLIENT: u64 = 0;
pub(super) const KIND_UPSTREAM: u64 = 1;
/// How often deadlines are checked.
const SWEEP_MS: u64 = 100;
/// Longest a graceful shutdown waits for requests in flight.
const SHUTDOWN_MS: u64 = 10_000;
/// Admin listener connections a worker holds at most (they do not count
/// against `max_connections`).
const ADMIN_MAX: usize = 64;
/// Idle keep-alive connections closed at once when `max_connections` is
/// reached and a new one waits (nginx reuses connections the same way).
const RECLAIM_BATCH: usize = 16;
/// How often spare buffers and pipes beyond recent need are given back.
pub(super) const TRIM_MS: u64 = 10_000;
/// Spare splice pipes kept (two descriptors each).
pub(super) const PIPES_KEEP: usize = 8;

/// `max_connections`, or its default from the descriptor limit.
fn max_connections(cfg: &crate::config::Config) -> usize {
    match cfg.max_connections {
        0 => {
            // Threads of one process share its descriptor table.
            let sharing = match cfg.mode {
                crate::config::Mode::Sp => cfg.workers.max(1),
                crate::config::Mode::Mp => 1,
            };
            crate::config::default_max_connections(sys::fd_limit(), sharing)
        }
        n => n,
    }
}

/// `shared` with the runtime settings `rt` applied to its configuration,
/// and a TLS context for a changed CA file (if it loads; else the old one
/// stays, and the log says why).
fn with_runtime(shared: &Arc<Shared>, rt: &Runtime) -> Arc<Shared> {
    if rt.set == 0 {
        return Arc::clone(shared);
    }
    let mut cfg = shared.config.clone();
    rt.apply(&mut cfg);
    let mut tls = shared.tls.clone();
    if cfg.ca_file != shared.config.ca_file {
        match crate::net::tls::TlsContext::new(
            cfg.ca_file.as_deref(),
            cfg.insecure_tls,
            cfg.tls_trace,
        ) {
            Ok(t) => tls = Some(Arc::new(t)),
            Err(e) => {
                log!(
                    Err,
                    "reload",
                    "{e}; new backend connections keep the trust they had"
                );
                cfg.ca_file = shared.config.ca_file.clone();
            }
        }
    }
    Arc::new(Shared::new(cfg, shared.region, shared.worker, tls))
}

#[inline]
pub(super) fn token(kind: u64, idx: u32, gen: u32) -> u64 {
    (gen as u64) << 32 | (idx as u64) << 1 | kind
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Door {
    Plain,
    Tls,
    Admin,
}

/// One event loop and everything it owns.
pub struct Worker {
    pub(super) shared: Arc<Shared>,
    /// The runtime settings `shared.config` was last brought up to.
    pub(super) runtime: Runtime,
    pub(super) poller: Poller,
    pub(super) events: Events,
    /// None once a shutdown began: new connections are refused. None
    /// from the start with `-p 0`.
    pub(super) listener: Option<OwnedFd>,
    /// The TLS listener (`--tls-port`), and what its connections share
    /// (replaced when the certificates are reloaded).
    pub(super) tls_listener: Option<OwnedFd>,
    pub(super) listener_tls: Option<Arc<ListenerTls>>,
    /// The certificate generation `listener_tls` was loaded at.
    pub(super) cert_generation: u64,
    /// After a certificate load failed here: no new try before this (ms).
    pub(super) cert_retry_at: u64,
    /// The admin listener (`--admin`): `/metrics`, `/status`, `/status.json`.
    pub(super) admin: Option<OwnedFd>,
    /// `--access-log`: this worker's buffer and file.
    pub(super) access: Option<AccessLog>,
    /// The access log reopen generation seen (SIGUSR1).
    pub(super) reopen_seen: u64,
    /// The traffic listeners (plain and TLS) are in the poller.
    pub(super) listener_registered: bool,
    pub(super) admin_registered: bool,
    /// Client connections this worker holds at most (`max_connections`):
    /// at the limit it stops accepting until one closes, as nginx's
    /// `worker_connections`; the rest wait in the listen queue.
    pub(super) max_conns: usize,
    /// After `EMFILE` and friends: no accept before this time (ms).
    pub(super) accept_retry_at: u64,
    /// Sessions from the admin listener (counted apart from traffic).
    pub(super) admin_sessions: usize,
    /// Deadline (ms) of a graceful shutdown in progress.
    pub(super) draining: Option<u64>,
    pub(super) sessions: Slab<Session>,
    pub(super) ups: Slab<Upstream>,
    /// Idle upstream connections per backend, most recently used last.
    pub(super) pools: Vec<Vec<u32>>,
    pub(super) bufs: BufPool,
    pub(super) hdrs: Box<[HeaderRef]>,
    pub(super) balancer: Balancer,
    /// The live backend set, copied from the region when its generation moves.
    pub(super) backends: BackendSet,
    /// Per backend id: the generation in which the id last changed hands
    /// (removed, or given to another backend). Keys the pools.
    pub(super) id_epoch: [u64; MAX_BACKENDS],
    pub(super) now: u64,
    pub(super) next_sweep: u64,
    /// When spare buffers and pipes are next given back (`TRIM_MS`).
    pub(super) next_trim: u64,
    /// Request bodies read before a backend is chosen: spare vectors, and
    /// the bytes (capacity) held by sessions now, bounded by
    /// `REQUEST_BUFFER_CAP_BYTES`.
    pub(super) body_pool: Vec<Vec<u8>>,
    pub(super) body_buffered: usize,
    /// Empty splice pipes, for large bodies.
    pub(super) pipes: Vec<sys::Pipe>,
    /// Connections whose `drive` ran out of budget, to continue next turn.
    pub(super) again: Vec<(u32, u32)>,
    /// True while a batch of events is dispatched: the data path's writes
    /// (request to a backend, response to a client) wait in `deferred`
    /// until every event of the batch was read, then go out together.
    pub(super) defer_writes: bool,
    pub(super) deferred: Vec<(u32, u32)>,
    pub(super) scratch: Vec<u32>,
    pub(super) trace: bool,
    pub(super) stop: Arc<AtomicBool>,
    /// Failpoint for the restart tests: a request for this path panics the
    /// worker (`LB_TEST_PANIC_PATH`; unset in production, costs one branch).
    pub(super) panic_path: Option<Box<[u8]>>,
}

impl Drop for Worker {
    /// Lines still buffered go out at exit (and after a panic).
    fn drop(&mut self) {
        if let Some(log) = self.access.as_mut() {
            let _ = log.flush();
        }
    }
}

impl Worker {
    /// A worker serving `listener`. The poller is created here, in the
    /// thread or process that will run the loop.
    pub fn new(
        shared: Arc<Shared>,
        listeners: Listeners,
        stop: Arc<AtomicBool>,
        seed: u64,
    ) -> io::Result<Worker> {
        crate::metrics::set_current(shared.metrics);
        let poller = Poller::new()?;
        let Listeners {
            plain: listener,
            tls: tls_listener,
            admin,
        } = listeners;
        for (l, tok) in [
            (&listener, LISTENER),
            (&tls_listener, TLS_LISTENER),
            (&admin, ADMIN),
        ] {
            if let Some(l) = l {
                poller.add_listener(l.as_fd(), tok)?;
            }
        }
        let listener_tls = shared.listener_tls.clone();
        if tls_listener.is_some() && listener_tls.is_none() {
            return Err(io::Error::other("a TLS listener without certificates"));
        }
        // Generation 0 is what the supervisor loaded at start: a worker
        // (re)started after a renewal loads the renewed files at once.
        let cert_generation = 0;
        if let Some(w) = sys::wake_fd() {
            poller.add(w, WAKE)?;
        }
        let backends = BackendSet::load(shared.region);
        // A reload may have changed settings since the supervisor started
        // (a worker restarted later starts with them).
        let runtime = *backends.runtime();
        let start_log = shared.config.access_log.clone();
        let mut shared = with_runtime(&shared, &runtime);
        let open = |path: &std::path::Path| {
            AccessLog::open(path).map_err(|e| {
                io::Error::new(e.kind(), format!("--access-log {}: {e}", path.display()))
            })
        };
        let access = match shared.config.access_log.as_deref().map(open) {
            None => None,
            Some(Ok(log)) => Some(log),
            // A reloaded path that cannot be opened now: the one started
            // with, as the running workers kept it.
            Some(Err(e)) if shared.config.access_log != start_log => {
                log!(Err, "main", "{e}; using the access log started with");
                if let Some(s) = Arc::get_mut(&mut shared) {
                    s.config.access_log = start_log.clone();
                }
                start_log.as_deref().map(open).transpose()?
            }
            Some(Err(e)) => return Err(e),
        };
        let trace = shared.config.trace;
        let strategy = shared.config.strategy;
        let max_conns = max_connections(&shared.config);
        let mut w = Worker {
            runtime,
            shared,
            poller,
            events: Events::with_capacity(1024),
            listener,
            tls_listener,
            listener_tls,
            cert_generation,
            admin,
            access,
            reopen_seen: sys::reopen_generation(),
            listener_registered: true,
            admin_registered: true,
            max_conns,
            accept_retry_at: 0,
            admin_sessions: 0,
            draining: None,
            sessions: Slab::default(),
            ups: Slab::default(),
            pools: (0..MAX_BACKENDS).map(|_| Vec::new()).collect(),
            bufs: BufPool::default(),
            hdrs: vec![HeaderRef::default(); MAX_HEADER_LINES].into_boxed_slice(),
            balancer: Balancer::new(strategy, seed),
            backends,
            id_epoch: [0; MAX_BACKENDS],
            now: sys::now_ms(),
            next_sweep: 0,
            next_trim: 0,
            pipes: Vec::new(),
            body_pool: Vec::new(),
            body_buffered: 0,
            again: Vec::new(),
            defer_writes: false,
            deferred: Vec::new(),
            scratch: Vec::new(),
            trace,
            stop,
            panic_path: std::env::var_os("LB_TEST_PANIC_PATH")
                .map(|p| p.into_encoded_bytes().into_boxed_slice()),
            cert_retry_at: 0,
        };
        w.refresh_certificates();
        Ok(w)
    }

    /// Runs until the stop flag is set.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.stop.load(Relaxed) {
            if self.draining.is_none() && sys::shutdown_requested() {
                self.begin_shutdown();
            }
            if let Some(deadline) = self.draining {
                if self.sessions.is_empty() || self.now >= deadline {
                    log!(
                        Info,
                        "main",
                        "shutdown complete ({} connections cut)",
                        self.sessions.len()
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
            // Reads first, writes at the end of the batch (as HAProxy's
            // tasklets do): a backend or client woken by the first write
            // finds the rest of its batch there instead of being woken
            // again for each (ARCHITECTURE.md, "Writes at the end of the
            // batch").
            self.defer_writes = true;
            for k in 0..self.events.len() {
                let ev = self.events.get(k);
                self.dispatch(ev.token, ev.readable, ev.writable, ev.hup);
            }
            self.defer_writes = false;
            // The writes of the batch, then the sessions `drive` left
            // unfinished (budget spent); what they queue again waits for
            // the next turn.
            let deferred = std::mem::take(&mut self.deferred);
            self.deferred = self.drive_listed(deferred);
            if !self.again.is_empty() {
                let again = std::mem::take(&mut self.again);
                let spare = self.drive_listed(again);
                if self.again.is_empty() {
                    self.again = spare;
                }
            }
            if self.now >= self.next_sweep {
                self.sweep();
                self.next_sweep = self.now + SWEEP_MS;
            }
        }
        Ok(())
    }

    /// Drives each session of `list` (slot, generation) that is still open,
    /// and gives the vector back empty with its capacity: no allocation per
    /// turn.
    fn drive_listed(&mut self, mut list: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        for &(ci, gen) in &list {
            if let Some(c) = self.sessions.get_mut_gen(ci, gen) {
                c.deferred = false;
                self.drive(ci);
            }
        }
        list.clear();
        list
    }

    /// Graceful shutdown: stop accepting (the listening socket is closed, so
    /// new connections are refused, not left waiting), close idle kept-alive
    /// connections, let requests in flight finish (their connections close
    /// after the response), for at most `SHUTDOWN_MS`.
    pub(super) fn begin_shutdown(&mut self) {
        for l in [
            self.listener.take(),
            self.tls_listener.take(),
            self.admin.take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = self.poller.delete(l.as_fd());
        }
        self.draining = Some(self.now + SHUTDOWN_MS);
        let mut idx = std::mem::take(&mut self.scratch);
        idx.clear();
        idx.extend(self.sessions.indices());
        log!(
            Info,
            "main",
            "shutting down: {} connections open, finishing requests in flight",
            idx.len()
        );
        for &ci in &idx {
            let c = self.sessions.get_mut(ci).expect("listed client");
            c.keep_alive = false;
            if c.phase == Phase::Head && c.rbuf.as_ref().is_none_or(|b| b.is_empty()) {
                // Idle: it may be sending a request this very moment, which
                // then gets a `Connection: close` answer; closed if it stays idle.
                c.deadline = c.deadline.min(self.now + DRAIN_IDLE_MS);
            }
        }
        self.scratch = idx;
    }

    pub(super) fn dispatch(&mut self, tok: u64, readable: bool, writable: bool, hup: bool) {
        match tok {
            LISTENER => return self.accept(Door::Plain),
            TLS_LISTENER => return self.accept(Door::Tls),
            ADMIN => return self.accept(Door::Admin),
            _ => {}
        }
        if tok == WAKE {
            // The loop checks the signal flags on every turn.
            return;
        }
        let idx = (tok as u32) >> 1;
        let gen = (tok >> 32) as u32;
        if tok & 1 == KIND_CLIENT {
            if let Some(c) = self.sessions.get_mut_gen(idx, gen) {
                c.stream.on_event(readable, writable, hup);
                self.drive(idx);
            }
        } else if let Some(u) = self.ups.get_mut_gen(idx, gen) {
            u.stream.on_event(readable, writable, hup);
            match u.client {
                Some(ci) => self.drive(ci),
                None if readable && u.stream.io.peer_closed_or_dirty() => {
                    // An idle pooled connection the backend closed (or wrote to).
                    self.close_upstream(idx);
                }
                None => {}
            }
        }
    }

    /// Accepts a batch from one listener.
    pub(super) fn accept(&mut self, door: Door) {
        let admin = door == Door::Admin;
        for _ in 0..64 {
            let full = if admin {
                self.admin_sessions >= ADMIN_MAX
            } else {
                self.sessions.len() - self.admin_sessions >= self.max_conns
                    && self.reclaim_idle() == 0
            };
            if full {
                // At `max_connections` (or the admin cap): the rest wait in
                // the listen queue until a connection closes
                // (`resume_accepting`).
                crate::log_limited!(
                    Kind::Overloaded,
                    Warn,
                    "{} client connections (max_connections): pausing accepts",
                    self.sessions.len()
                );
                self.pause_accepting(admin);
                return;
            }
            // Looked up each time round: `add_client` borrows all of `self`.
            let listener = match door {
                Door::Plain => &self.listener,
                Door::Tls => &self.tls_listener,
                Door::Admin => &self.admin,
            };
            let Some(listener) = listener.as_ref() else {
                return;
            };
            match sys::accept(listener.as_fd()) {
                Ok((fd, peer)) => self.add_client(fd, peer, door),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if sys::is_local_exhaustion(&e) => {
                    // Out of descriptors: stop accepting until the next sweep
                    // rather than spin on a listener that stays readable.
                    crate::log_limited!(Kind::AcceptFailing, Err, "accept: {e}; pausing accepts");
                    self.accept_retry_at = self.now + SWEEP_MS;
                    self.pause_accepting(admin);
                    return;
                }
                Err(_) => continue, // ECONNABORTED and friends: that client is gone
            }
        }
    }

    /// At `max_connections` with a connection waiting: closes up to
    /// [`RECLAIM_BATCH`] kept-alive connections idle between requests (no
    /// byte of a next request read), as nginx does; returns how many.
    fn reclaim_idle(&mut self) -> usize {
        let mut idle = std::mem::take(&mut self.scratch);
        idle.clear();
        idle.extend(self.sessions.indices().filter(|&ci| {
            self.sessions.get(ci).is_some_and(|c| {
                !c.admin
                    && c.phase == Phase::Head
                    && !c.req.started
                    && !c.stream.io.listener_handshaking()
                    && c.rbuf.as_ref().is_none_or(|b| b.is_empty())
            })
        }));
        idle.truncate(RECLAIM_BATCH);
        let n = idle.len();
        for &ci in &idle {
            self.close_client(ci);
        }
        self.scratch = idle;
        n
    }

    /// Takes a listener out of the poller (it is level-triggered: left in,
    /// a queue the worker will not take from would wake it forever).
    fn pause_accepting(&mut self, admin: bool) {
        let (ls, registered) = if admin {
            ([&self.admin, &None], &mut self.admin_registered)
        } else {
            (
                [&self.listener, &self.tls_listener],
                &mut self.listener_registered,
            )
        };
        if *registered {
            for l in ls.into_iter().flatten() {
                let _ = self.poller.delete(l.as_fd());
            }
            *registered = false;
            self.shared.metrics.accept_pauses.fetch_add(1, Relaxed);
        }
    }

    /// Puts paused listeners back once there is room (below
    /// `max_connections`, and past an `EMFILE` back-off).
    pub(super) fn resume_accepting(&mut self) {
        if self.now < self.accept_retry_at {
            return;
        }
        if !self.listener_registered && self.sessions.len() - self.admin_sessions < self.max_conns {
            let mut ok = true;
            for (l, tok) in [
                (&self.listener, LISTENER),
                (&self.tls_listener, TLS_LISTENER),
            ] {
                if let Some(l) = l.as_ref() {
                    ok &= self.poller.add_listener(l.as_fd(), tok).is_ok();
                }
            }
            self.listener_registered = ok;
        }
        if !self.admin_registered && self.admin_sessions < ADMIN_MAX {
            if let Some(l) = self.admin.as_ref() {
                self.admin_registered = self.poller.add_listener(l.as_fd(), ADMIN).is_ok();
            }
        }
    }

    pub(super) fn add_client(&mut self, fd: OwnedFd, peer: Option<IpAddr>, door: Door) {
        let admin = door == Door::Admin;
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
        let io = match (door, &self.listener_tls) {
            (Door::Tls, Some(t)) => {
                let peer_text = std::str::from_utf8(&text[..peer_len]).unwrap_or("?");
                match t.accept(Tcp::new(fd), peer_text) {
                    Ok(tls) => Conn::Tls(Box::new(tls)),
                    Err(e) => {
                        log!(Err, "proxy", "TLS listener: {e}");
                        return;
                    }
                }
            }
            _ => Conn::Plain(Tcp::new(fd)),
        };
        let client = Session {
            // TCP_DEFER_ACCEPT: the request is usually here already.
            stream: Stream::new(io, true, true),
            https: door == Door::Tls,
            gen: 0,
            peer: text,
            peer_len: peer_len as u8,
            rbuf: None,
            wbuf: None,
            reqhead: None,
            prebody: None,
            admin,
            peer_ip: peer,
            status: 0,
            body_bytes: 0,
            alog: Default::default(),
            local: Vec::new(),
            local_off: 0,
            phase: Phase::Head,
            up: None,
            backend: 0,
            inflight: None,
            req: Req::default(),
            resp: Resp::default(),
            tried: 0,
            keep_alive: true,
            said_close: false,
            // A new connection has the header timeout to send its first
            // request (the idle timeout is for between requests).
            deadline: self.now + self.shared.config.timeouts.client_header.as_millis() as u64,
            drained: 0,
            pipe: None,
            pipe_len: 0,
            no_splice: false,
            client_done: false,
            deferred: false,
            upstream_done: false,
        };
        let (ci, gen) = self.sessions.insert(client);
        let c = self.sessions.get_mut(ci).expect("just inserted");
        c.gen = gen;
        if let Err(e) = self
            .poller
            .add(c.stream.io.fd(), token(KIND_CLIENT, ci, gen))
        {
            log!(Err, "proxy", "epoll add: {e}");
            self.sessions.remove(ci);
            return;
        }
        if admin {
            self.admin_sessions += 1;
        }
        let m = &self.shared.metrics;
        m.connections_accepted.fetch_add(1, Relaxed);
        m.connections_active.fetch_add(1, Relaxed);
        self.drive(ci);
    }

    /// Gives a session's buffered request body back to the pool.
    pub(super) fn release_prebody(&mut self, ci: u32) {
        let Some(mut v) = self.sessions.get_mut(ci).and_then(|c| c.prebody.take()) else {
            return;
        };
        self.body_buffered -= v.capacity();
        v.clear();
        // Only default-sized vectors are kept: a large one would be handed
        // to (and charged for) a small body later.
        if self.body_pool.len() < BODY_POOL_MAX
            && v.capacity() <= crate::config::DEFAULT_REQUEST_BUFFER_BYTES as usize
        {
            self.body_pool.push(v);
        }
    }

    /// The exchange's request is no longer in flight to its backend
    /// (it ended, failed, or a retry goes elsewhere). At most once per
    /// attempt: the count never goes negative and never leaks.
    pub(super) fn release_inflight(&mut self, ci: u32) {
        if let Some(b) = self.sessions.get_mut(ci).and_then(|c| c.inflight.take()) {
            crate::metrics::gauge_down(&self.shared.metrics.inflight[b as usize]);
        }
    }

    pub(super) fn close_client(&mut self, ci: u32) {
        self.release_inflight(ci);
        // An exchange cut short (by either side) still gets its access log
        // line and histogram observation, with what was sent.
        self.record_request(ci);
        self.release_prebody(ci);
        let Some(mut c) = self.sessions.remove(ci) else {
            return;
        };
        if c.admin {
            self.admin_sessions -= 1;
        }
        if let Some(ui) = c.up.take() {
            self.close_upstream(ui);
        }
        self.bufs.release(&mut c.rbuf);
        self.bufs.release(&mut c.wbuf);
        self.bufs.release(&mut c.reqhead);
        if let Some(p) = c.pipe.take().filter(|_| c.pipe_len == 0) {
            self.pipes.push(p);
        }
        crate::metrics::gauge_down(&self.shared.metrics.connections_active);
        if !self.listener_registered || !self.admin_registered {
            self.resume_accepting();
        }
    }

    /// Picks up a change of the live backend set (one atomic load when there
    /// is none): idle connections to backends no longer in it are closed.
    pub(super) fn refresh_backends(&mut self) {
        let region = self.shared.region;
        if region.generation() == self.backends.generation() {
            return;
        }
        let before: Vec<(usize, String, std::net::SocketAddr, bool)> = self
            .backends
            .iter()
            .map(|b| (b.id, b.host.clone(), b.sock, b.tls))
            .collect();
        self.backends.refresh(region);
        self.balancer.reset(self.backends.strategy());
        if self.backends.runtime() != &self.runtime {
            self.apply_runtime();
        }
        for (id, host, sock, tls) in before {
            // Gone, or the id now names another backend (another address,
            // TLS switched, another name to verify): its idle connections
            // lead somewhere no request may go.
            let same = |b: &super::backends::Backend| {
                b.host.eq_ignore_ascii_case(&host) && b.sock == sock && b.tls == tls
            };
            if self.backends.get(id).is_none_or(|b| !same(b)) {
                self.id_epoch[id] = self.backends.generation();
                self.balancer.forget(id);
                while let Some(ui) = self.pools[id].pop() {
                    if let Some(mut u) = self.ups.remove(ui) {
                        self.bufs.release(&mut u.rbuf);
                    }
                }
            }
        }
    }

    /// A reload changed timeouts, forwarding, buffering, limits, the access
    /// log or the CA file: new requests follow them (those in flight finish
    /// as they began). A new access log or CA file that cannot be opened
    /// keeps the old one, and says so.
    fn apply_runtime(&mut self) {
        let rt = *self.backends.runtime();
        self.runtime = rt;
        let old_log = self.shared.config.access_log.clone();
        let mut shared = with_runtime(&self.shared, &rt);
        if shared.config.access_log != old_log {
            let opened = shared
                .config
                .access_log
                .as_deref()
                .map(AccessLog::open)
                .transpose();
            match opened {
                Ok(log) => {
                    if let Some(old) = self.access.as_mut() {
                        let _ = old.flush();
                    }
                    self.access = log;
                }
                Err(e) => {
                    log!(
                        Err,
                        "reload",
                        "access log {}: {e}; keeping {}",
                        shared
                            .config
                            .access_log
                            .as_deref()
                            .unwrap_or(std::path::Path::new("-"))
                            .display(),
                        old_log
                            .as_deref()
                            .map_or("none".into(), |p| p.display().to_string())
                    );
                    if let Some(s) = Arc::get_mut(&mut shared) {
                        s.config.access_log = old_log;
                    }
                }
            }
        }
        self.max_conns = max_connections(&shared.config);
        self.shared = shared;
    }

    pub(super) fn close_upstream(&mut self, ui: u32) {
        let Some(mut u) = self.ups.remove(ui) else {
            return;
        };
        if u.client.is_none() {
            self.pools[u.backend].retain(|&x| x != ui);
        }
        self.bufs.release(&mut u.rbuf);
    }

    /// Loads the TLS listener's certificates anew when the supervisor says
    /// they changed (one atomic load when they did not). New handshakes use
    /// them; connections already made keep theirs. If they no longer load
    /// (changed again since), the ones in use stay.
    pub(super) fn refresh_certificates(&mut self) {
        let Some(t) = crate::tls_shared::TlsShared::current() else {
            return;
        };
        let gen = t.cert_generation.load(Relaxed);
        if gen == self.cert_generation
            || self.listener_tls.is_none()
            || self.now < self.cert_retry_at
        {
            return;
        }
        // What the supervisor loaded, not the files (they may have changed
        // again since).
        let Some(fields) = t.certs() else {
            return;
        };
        let pems = crate::net::tls_listener::from_fields(fields);
        match ListenerTls::from_pem(&pems, false) {
            Ok(t) => {
                self.listener_tls = Some(Arc::new(t));
                self.cert_generation = gen;
            }
            Err(e) => {
                // Changed again since the supervisor loaded them: tried
                // again in a while (its next reload bumps the generation).
                if self.cert_retry_at == 0 {
                    log!(
                        Err,
                        "tls",
                        "TLS listener: {e}; this worker keeps the certificates it had"
                    );
                }
                self.cert_retry_at = self.now + 5_000;
            }
        }
    }
}
