//! The upstream side of a session: choosing a backend and a connection
//! (pooled or new), sending the request, reading and forwarding the
//! response, and what a failure means: retry on another backend, 502, or
//! cutting the client off once part of a response is out.
#![forbid(unsafe_code)]

use super::balance::candidates;
use super::body::Body;
use super::downstream::BodyRefusal;
use super::session::{Phase, Resp};
use super::worker::{token, Worker, KIND_UPSTREAM};
use crate::buf::Buf;
use crate::http::compose::{compose_response, Framing};
use crate::http::framing::response_meta;
use crate::http::{parse_response, BodyMode, ResponseHead, Status};
use crate::log;
use crate::log::Kind;
use crate::metrics::ErrorKind;
use crate::net::tls::{failure_of, TlsFailure};
use crate::net::{Conn, Io, Stream, Tcp, Transport};
use crate::sys;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;

/// A pooled connection idle longer than this is peeked at before reuse.
const PEEK_AFTER_IDLE_MS: u64 = 1_000;
/// Most backends tried for one request (also bounds stale-pool retries).
const MAX_ATTEMPTS: u8 = 8;

/// A connection to a backend, attached to a session or idle in the pool.
pub(super) struct Upstream {
    pub(super) stream: Stream<Conn>,
    pub(super) gen: u32,
    pub(super) backend: usize,
    pub(super) rbuf: Option<Buf>,
    /// The TCP connect finished.
    pub(super) tcp_up: bool,
    /// Connected and (TLS) handshake done: requests may go out.
    pub(super) connected: bool,
    pub(super) client: Option<u32>,
    pub(super) idle_since: u64,
    /// Taken from the pool (a failure may just mean the backend closed it).
    pub(super) reused: bool,
    /// `Worker::id_epoch` of its backend id when connected: the connection
    /// is pooled again only while the id still names the same backend.
    pub(super) epoch: u64,
}

/// Why an exchange with a backend failed.
#[derive(Debug)]
pub(super) enum UpstreamFailure {
    Connect(io::Error),
    ConnectTimeout,
    Write(io::Error),
    Read(io::Error),
    ClosedBeforeResponse,
}

impl UpstreamFailure {
    /// The `kind` label of `lb_backend_errors_total`.
    fn kind(&self) -> ErrorKind {
        if self.tls().is_some() {
            return ErrorKind::Tls;
        }
        match self {
            UpstreamFailure::Connect(e) => ErrorKind::of_io(e, true),
            UpstreamFailure::ConnectTimeout => ErrorKind::Timeout,
            UpstreamFailure::Write(e) | UpstreamFailure::Read(e) => ErrorKind::of_io(e, false),
            UpstreamFailure::ClosedBeforeResponse => ErrorKind::Reset,
        }
    }

    /// The TLS failure behind it, if any.
    fn tls(&self) -> Option<&TlsFailure> {
        match self {
            UpstreamFailure::Connect(e) | UpstreamFailure::Write(e) | UpstreamFailure::Read(e) => {
                failure_of(e)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            _ if self.tls().is_some() => write!(f, "TLS: {}", self.tls().expect("checked")),
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

/// What `least_connections` and `p2c` see: the requests in flight to each
/// live backend, summed over the counter slots of the workers configured.
struct RegionLoad<'a> {
    set: &'a super::backends::BackendSet,
    slots: &'a [crate::metrics::Metrics],
}

impl super::balance::Load for RegionLoad<'_> {
    #[inline]
    fn id(&self, pos: usize) -> usize {
        self.set.at(pos).id
    }

    #[inline]
    fn inflight(&self, pos: usize) -> u64 {
        let id = self.set.at(pos).id;
        self.slots
            .iter()
            .map(|m| m.inflight[id].load(Relaxed))
            .sum()
    }
}

impl Worker {
    pub(super) fn connect(&mut self, ci: u32) {
        // A new attempt: the last one (if any) is no longer in flight.
        self.release_inflight(ci);
        // Down backends due a trial whose trial another worker took.
        let mut skip = 0u64;
        loop {
            let c = self.sessions.get_mut(ci).expect("client");
            let sh = &self.shared;
            if c.req.attempts >= MAX_ATTEMPTS {
                return self.local_error(ci, 502, "no backend could be reached");
            }
            let set = &self.backends;
            let settings = set.health_settings();
            let ok = candidates(set, c.tried, sh.health, settings, self.now) & !skip;
            let rr = &sh.region.control.rr_counter;
            let workers = (sh.region.process.workers_configured.load(Relaxed) as usize)
                .clamp(1, sh.region.workers.len());
            let load = RegionLoad {
                set,
                slots: &sh.region.workers[..workers],
            };
            let Some(pos) = self.balancer.pick(set.weights(), ok, rr, &load) else {
                return if c.req.attempts == 0 {
                    self.local_error(ci, 503, "no healthy backend")
                } else {
                    self.local_error(ci, 502, "no backend could be reached")
                };
            };
            let backend = set.at(pos);
            let b = backend.id;
            if !sh.health.is_healthy(b) && !sh.health.claim_trial(b, self.now) {
                skip |= 1 << pos;
                continue;
            }
            c.tried |= 1 << b;
            c.req.attempts += 1;
            c.backend = b;
            // In flight from here until the exchange ends (release_inflight).
            sh.metrics.inflight[b].fetch_add(1, Relaxed);
            c.inflight = Some(b as u8);
            while let Some(ui) = self.pools[b].pop() {
                let u = self.ups.get_mut(ui).expect("pooled upstream");
                if self.now.saturating_sub(u.idle_since) >= PEEK_AFTER_IDLE_MS
                    && u.stream.io.peer_closed_or_dirty()
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
                c.req.connect_us = Some(0);
                c.deadline = self.now + sh.config.timeouts.upstream_response.as_millis() as u64;
                sh.metrics.upstream_reuses.fetch_add(1, Relaxed);
                sh.metrics.backend_requests[b].fetch_add(1, Relaxed);
                return;
            }
            match sys::connect(&backend.addr) {
                Ok((fd, done)) => {
                    let _ = sys::set_nodelay(fd.as_fd());
                    let conn = if backend.tls {
                        let tls = sh
                            .tls
                            .as_ref()
                            .ok_or_else(|| io::Error::other("TLS is not set up"));
                        match tls
                            .and_then(|t| t.connect(Tcp::new(fd), &backend.host, &backend.name))
                        {
                            Ok(t) => Conn::Tls(Box::new(t)),
                            Err(e) => {
                                crate::log_limited!(
                                    Kind::ConnectFailed(b),
                                    Err,
                                    "backend {}: TLS: {e}",
                                    backend.name
                                );
                                self.backend_failed(b, ErrorKind::Tls);
                                skip |= 1 << pos;
                                continue;
                            }
                        }
                    } else {
                        Conn::Plain(Tcp::new(fd))
                    };
                    let (ui, gen) = self.ups.insert(Upstream {
                        stream: Stream::new(conn, false, done),
                        gen: 0,
                        backend: b,
                        rbuf: None,
                        tcp_up: done,
                        connected: false,
                        client: Some(ci),
                        idle_since: 0,
                        reused: false,
                        epoch: self.id_epoch[b],
                    });
                    let u = self.ups.get_mut(ui).expect("just inserted");
                    u.gen = gen;
                    if let Err(e) = self
                        .poller
                        .add(u.stream.io.fd(), token(KIND_UPSTREAM, ui, gen))
                    {
                        log!(Err, "proxy", "epoll add: {e}");
                        self.ups.remove(ui);
                        return self.local_error(ci, 502, "internal error");
                    }
                    c.up = Some(ui);
                    c.req.t_connect_us = sys::now_us();
                    c.req.connect_us = None;
                    // Connect and (TLS) handshake: the connect timeout;
                    // the response timeout starts once they are done.
                    c.deadline = self.now + sh.config.timeouts.upstream_connect.as_millis() as u64;
                    sh.metrics.upstream_connects.fetch_add(1, Relaxed);
                    sh.metrics.backend_requests[b].fetch_add(1, Relaxed);
                    return;
                }
                Err(e) if sys::is_local_exhaustion(&e) => {
                    // Out of descriptors or memory here: no backend would do
                    // better, and none is to blame.
                    crate::log_limited!(
                        Kind::AcceptFailing,
                        Err,
                        "connect to backend {}: {e} (503; not counted against the backend)",
                        backend.name
                    );
                    sh.metrics.local_errors.fetch_add(1, Relaxed);
                    return self.local_error(
                        ci,
                        503,
                        "the load balancer is out of resources, retry",
                    );
                }
                Err(e) => {
                    crate::log_limited!(
                        Kind::ConnectFailed(b),
                        Warn,
                        "backend {}: connect: {e}",
                        backend.name
                    );
                    self.backend_failed(b, ErrorKind::of_io(&e, true));
                    // Nothing was sent: the next backend is safe for any method.
                }
            }
        }
    }

    /// A failure that says the backend is unreachable or dead (connect
    /// refused or timed out, reset, no response in time, TLS handshake):
    /// counted by kind and against its health (passive checking, as nginx's
    /// `proxy_next_upstream error timeout`). A response that is merely
    /// malformed is [`Worker::bad_response`]: counted, not held against the
    /// backend's health, since one client can provoke it.
    pub(super) fn backend_failed(&self, b: usize, kind: ErrorKind) {
        let sh = &self.shared;
        sh.metrics.backend_failures[b].fetch_add(1, Relaxed);
        sh.metrics.backend_error(b, kind);
        if sh
            .health
            .record_failure(b, self.now, self.backends.health_settings())
        {
            log!(
                Warn,
                "health",
                "backend {} marked unhealthy",
                self.backends.name(b)
            );
        }
    }

    /// The exchange with the current backend failed: retry where that is
    /// safe, else answer 502 (or cut the client off if a response started).
    pub(super) fn upstream_failed(&mut self, ci: u32, why: UpstreamFailure) {
        let c = self.sessions.get_mut(ci).expect("client");
        let Some(ui) = c.up.take() else { return };
        let b = c.backend;
        let reused = self.ups.get(ui).is_some_and(|u| u.reused);
        self.close_upstream(ui);
        let name = self.backends.name(b);
        let tls = why.tls().cloned();
        if let Some(t) = tls.as_ref().filter(|t| t.during_handshake) {
            self.shared.metrics.tls_failure(t.kind);
        }
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
            crate::log_limited!(Kind::UpstreamFailed(b), Warn, "backend {name}: {why}");
            self.backend_failed(b, why.kind());
        }
        let c = self.sessions.get_mut(ci).expect("client");
        // A handshake that never finished carried no request byte.
        let nothing_sent = !c.req.sent_any || tls.is_some_and(|t| t.during_handshake);
        let can_retry =
            !c.resp.head_done && (nothing_sent || (c.req.idempotent && c.req.body_sent == 0));
        if can_retry {
            if stale {
                // The same backend, on a fresh connection, is fine to try again.
                c.tried &= !(1 << b);
            }
            c.req.head_sent = 0;
            c.req.pre_sent = 0;
            c.req.sent_any = false;
            self.shared.metrics.retries.fetch_add(1, Relaxed);
            self.connect(ci);
        } else {
            self.fail_exchange(ci, 502, "the backend failed");
        }
    }

    /// The one way an exchange that cannot go on ends: the upstream
    /// connection is closed (it carries a partial request or response),
    /// whatever was queued for the client is dropped, and the client gets
    /// `status` if nothing of a response reached it yet, else a cut (all it
    /// can be told is that the response ended early). Either way the
    /// exchange is recorded: an access log line and the histogram.
    pub(super) fn fail_exchange(&mut self, ci: u32, status: u16, detail: &str) {
        self.release_inflight(ci);
        let c = self.sessions.get_mut(ci).expect("client");
        if let Some(ui) = c.up.take() {
            self.close_upstream(ui);
        }
        let c = self.sessions.get_mut(ci).expect("client");
        c.keep_alive = false;
        if c.resp.sent > 0 {
            // A cut: part of the response went out and the rest never will.
            // A body with a length or chunks shows the client it is short,
            // and it gets every byte that came (a FIN after them). A body
            // the client reads until close (HTTP/1.0, `Connection: close`)
            // would look whole: a reset instead, though it drops what the
            // socket had not sent yet.
            if c.resp.body.mode == BodyMode::UntilClose && !c.resp.rechunk {
                let _ = sys::reset_on_close(c.stream.io.fd());
            }
            self.close_client(ci);
        } else {
            if c.resp.head_done {
                if let Some(w) = c.wbuf.as_mut() {
                    w.clear(); // a final head composed but not sent
                }
            }
            // Else what waits in wbuf is whole interim responses (maybe
            // half written): they go out first, then this answer.
            self.local_error(ci, status, detail);
        }
    }

    pub(super) fn step_request(&mut self, ci: u32) -> bool {
        let Worker {
            sessions,
            ups,
            bufs,
            shared,
            now,
            trace,
            defer_writes,
            deferred,
            ..
        } = self;
        let c = sessions.get_mut(ci).expect("client");
        let Some(ui) = c.up else { return false };
        let u = ups.get_mut(ui).expect("attached upstream");
        if !u.connected {
            // TCP connect, then (TLS) the handshake: no request byte goes
            // out before both are done, so a failure here is always safe to
            // retry on the next backend. The connect timeout covers both.
            if !u.tcp_up {
                if !u.stream.writable {
                    return false;
                }
                match u.stream.io.take_error() {
                    Ok(None) => u.tcp_up = true,
                    Ok(Some(e)) | Err(e) => {
                        self.upstream_failed(ci, UpstreamFailure::Connect(e));
                        return true;
                    }
                }
            }
            match u.stream.handshake() {
                Ok(true) => {
                    u.connected = true;
                    c.req.connect_us = Some(sys::now_us().saturating_sub(c.req.t_connect_us));
                    c.deadline = *now + shared.config.timeouts.upstream_response.as_millis() as u64;
                }
                Ok(false) => return false,
                Err(e) => {
                    self.upstream_failed(ci, UpstreamFailure::Connect(e));
                    return true;
                }
            }
        }
        let head = c
            .reqhead
            .as_ref()
            .map_or(&[][..], |h| &h.filled()[c.req.head_sent..]);
        if c.request_sent() || c.req.unsent {
            return false;
        }
        let pre = c
            .prebody
            .as_deref()
            .map_or(&[][..], |p| &p[c.req.pre_sent..]);
        let rbuf = c.rbuf.get_or_insert_with(|| bufs.take());
        // Which buffered bytes are body, ready to go?
        let limit = shared.config.max_body_bytes;
        let pending = match c.req.body.ready(rbuf.filled()) {
            Ok(_) if limit > 0 && c.req.body.data_bytes() > limit => {
                self.refuse_body(ci, BodyRefusal::TooLarge(limit));
                return true;
            }
            Ok(p) => p,
            Err(e) => {
                self.refuse_body(ci, BodyRefusal::Malformed(e));
                return true;
            }
        };
        if head.is_empty() && pre.is_empty() && pending == 0 {
            // The body needs more bytes from the client.
            if !c.stream.readable {
                return false;
            }
            return match c.stream.read_into(rbuf) {
                Io::Moved(n) => {
                    c.req.rate_bytes += n as u64;
                    c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
                    true
                }
                Io::Blocked => false,
                Io::Eof | Io::Failed(_) => {
                    crate::log_limited!(
                        Kind::ClientClosed,
                        Info,
                        "{}: client closed during the request body",
                        c.peer()
                    );
                    self.close_client(ci);
                    true
                }
            };
        }
        if !u.stream.writable {
            return false;
        }
        if *defer_writes {
            c.defer_write(ci, deferred);
            return false;
        }
        let body = &rbuf.filled()[..pending];
        match u
            .stream
            .write_from(&[IoSlice::new(head), IoSlice::new(pre), IoSlice::new(body)])
        {
            Io::Moved(n) => {
                if *trace {
                    let seen: Vec<u8> = [head, pre, body].concat().into_iter().take(n).collect();
                    log::trace_bytes("REQUEST TO BACKEND", &seen);
                }
                let h = n.min(head.len());
                let p = (n - h).min(pre.len());
                let k = n - h - p;
                c.req.head_sent += h;
                c.req.pre_sent += p;
                c.req.sent_any = true;
                rbuf.consume(k);
                c.req.body_sent += k as u64;
                c.req.body.forwarded(k);
                if c.request_sent() || c.req.t_sent_us == 0 {
                    // From the first byte sent, then from the last: a backend
                    // may answer before the whole body is sent (413).
                    c.req.t_sent_us = sys::now_us();
                }
                if !c.resp.head_done {
                    // While the client still owes body bytes, the clock is
                    // the client's (body progress); once all is sent, the
                    // backend's (response time).
                    let t = &shared.config.timeouts;
                    let wait = if c.request_sent() {
                        t.upstream_response
                    } else {
                        t.body_progress
                    };
                    c.deadline = *now + wait.as_millis() as u64;
                }
                true
            }
            Io::Blocked => false,
            _ if c.resp.head_done => {
                // The backend answered before taking the whole request (an
                // early 413, read with the reset that followed it): its
                // answer goes to the client; the rest of the request is
                // never sent, so neither connection is reused after it.
                c.req.unsent = true;
                c.keep_alive = false;
                true
            }
            r => {
                self.upstream_failed(ci, UpstreamFailure::Write(r.into_error()));
                true
            }
        }
    }

    pub(super) fn step_response(&mut self, ci: u32) -> bool {
        let Worker {
            sessions,
            ups,
            bufs,
            hdrs,
            trace,
            ..
        } = self;
        let c = sessions.get_mut(ci).expect("client");
        let Some(ui) = c.up else { return false };
        let u = ups.get_mut(ui).expect("attached upstream");
        if !u.connected || !c.req.sent_any {
            // Nothing of the request went out yet (its write may wait for
            // the end of the batch): what the backend sends is read after
            // it did, so a response is never timed from before the request
            // (or taken for a 101 with the request head still unsent).
            return false;
        }
        if c.resp.head_done {
            return self.step_response_body(ci, ui);
        }
        if c.wbuf.as_ref().is_some_and(|w| !w.is_empty()) {
            // Interim responses (a backend's 103, our own 100 Continue) go
            // out whole, and at once (the client may wait for a 100 before
            // it sends the body), before a final head is composed behind
            // them: a failure then never splices a 502 into a 1xx.
            return self.flush_wbuf(ci).unwrap_or(false);
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
        if !u.stream.readable {
            return false;
        }
        let rbuf = u.rbuf.get_or_insert_with(|| bufs.take());
        match u.stream.read_into(rbuf) {
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
    pub(super) fn bad_response(&mut self, ci: u32, why: &str) {
        let c = self.sessions.get_mut(ci).expect("client");
        let b = c.backend;
        crate::log_limited!(
            Kind::UpstreamFailed(b),
            Warn,
            "backend {}: invalid response: {why} (502)",
            self.backends.name(b)
        );
        // Counted, not held against the backend's health: a client can
        // provoke a malformed response (a long target echoed into a header).
        self.shared.metrics.backend_error(b, ErrorKind::BadResponse);
        self.fail_exchange(ci, 502, "invalid response from backend");
    }

    pub(super) fn start_response(&mut self, ci: u32, ui: u32, head: ResponseHead) {
        let Worker {
            sessions,
            ups,
            bufs,
            hdrs,
            shared,
            now,
            balancer,
            ..
        } = self;
        let c = sessions.get_mut(ci).expect("client");
        let u = ups.get_mut(ui).expect("upstream");
        let rbuf = u.rbuf.as_mut().expect("head parsed from rbuf");
        let buf = rbuf.filled();
        if (100..200).contains(&head.status) && head.status != 101 {
            // Interim response (100 Continue, 103 Early Hints): held to the
            // same rules as a final one, passed on to HTTP/1.1 sessions
            // without framing or hop-by-hop headers, then the final one.
            let meta = match response_meta(buf, &head, &hdrs[..head.header_count], c.req.is_head) {
                Ok(m) => m,
                Err(e) => return self.bad_response(ci, &e.to_string()),
            };
            if c.req.minor == 1 {
                let w = c.wbuf.get_or_insert_with(|| bufs.take());
                let hs = &hdrs[..head.header_count];
                if !compose_response(buf, &head, hs, &meta.conn, Framing::Interim, w) {
                    w.clear();
                    return self.bad_response(ci, "interim response head too large");
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
            // Counted and logged when the tunnel closes.
            c.status = 101;
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
        if !c.req.body.is_complete() {
            // The backend answered before the whole request body arrived:
            // the rest of it cannot be told apart from a next request.
            c.keep_alive = false;
        }
        c.said_close = !c.keep_alive;
        let w = c.wbuf.get_or_insert_with(|| bufs.take());
        let chunked = rechunk || meta.body == BodyMode::Chunked;
        let framing = Framing::Message {
            chunked,
            content_length: meta.content_length.filter(|_| !chunked),
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
            body: Body::new(meta.body),
            rechunk,
            reusable: meta.conn.persistent(head.minor)
                && c.req.minor == 1
                && meta.body != BodyMode::UntilClose,
            ..Resp::default()
        };
        bufs.release(&mut c.reqhead);
        let waited = sys::now_us().saturating_sub(c.req.t_sent_us);
        shared.metrics.observe_upstream(c.backend, waited);
        balancer.observe(c.backend, waited);
        c.req.upstream_us = Some(waited);
        c.status = head.status;
        let b = c.backend;
        c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
        if shared
            .health
            .record_success(b, self.backends.health_settings())
        {
            log!(
                Info,
                "health",
                "backend {} is healthy again",
                self.backends.name(b)
            );
        }
    }

    /// The response is fully written: pool the backend connection if it is
    /// clean, and wait for the next request or close.
    pub(super) fn finish_exchange(&mut self, ci: u32) {
        let c = self.sessions.get_mut(ci).expect("client");
        if let Some(ui) = c.up.take() {
            let clean = c.resp.reusable && c.request_sent();
            let b = c.backend;
            let u = self.ups.get_mut(ui).expect("upstream");
            // Bytes past the response (a backend that sent more than it
            // framed; a spliced body moves exactly its length) would be read
            // as the next client's response. A stream not known to be empty
            // (no short read or EAGAIN since its last event) is peeked at.
            let unread = u.rbuf.as_ref().is_some_and(|r| !r.is_empty())
                || ((u.stream.readable || u.stream.hup) && u.stream.io.peer_closed_or_dirty());
            if clean && unread {
                self.shared.metrics.upstream_unread.fetch_add(1, Relaxed);
            }
            if clean
                && !unread
                && u.epoch == self.id_epoch[b]
                && self.pools[b].len() < self.shared.config.pool_max_conn
                // Idle upstream descriptors come out of the same budget as
                // client connections, never starving accepts.
                && self.pools.iter().map(Vec::len).sum::<usize>() < self.max_conns
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
}
