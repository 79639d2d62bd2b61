//! The downstream (client) side of a session: reading and checking request
//! heads, routing (local answers such as `/metrics` and errors, or a
//! backend), writing responses made here, and the lingering close.
#![forbid(unsafe_code)]

use super::body::Body;
use super::session::{Phase, Req, Resp};
use super::worker::Worker;
use crate::access_log::Entry;
use crate::admin::StatusView;
use crate::config::REQUEST_BUFFER_CAP_BYTES;
use crate::http::compose::{compose_request, reason, RequestOut};
use crate::http::framing::request_meta;
use crate::http::{parse_request, BodyMode, ParseError, RequestHead, Status};
use crate::log::Kind;
use crate::metrics::View;
use crate::net::{Io, Transport};
use std::io::{IoSlice, Write as _};
use std::sync::atomic::Ordering::Relaxed;

/// After an error response: how long and how much to read before closing,
/// so the client sees the response rather than a reset.
const LINGER_MS: u64 = 2_000;
const LINGER_BYTES: u64 = 1 << 20;
/// While draining (shutdown, upgrade): how long an idle kept-alive
/// connection is left open for a last request before it is closed.
pub(super) const DRAIN_IDLE_MS: u64 = 1_000;

impl Worker {
    pub(super) fn step_head(&mut self, ci: u32) -> bool {
        let c = self.sessions.get_mut(ci).expect("driven client exists");
        if let Some(b) = c.rbuf.as_ref().filter(|b| !b.is_empty()) {
            match parse_request(b.filled(), &mut self.hdrs) {
                Ok(Status::Complete(head)) => {
                    self.start_request(ci, head);
                    return true;
                }
                Ok(Status::Partial) => {}
                Err(e) => {
                    // The answer to a HEAD has no body, even a refusal.
                    c.req.is_head = b.filled().starts_with(b"HEAD ");
                    self.reject(ci, e);
                    return true;
                }
            }
        }
        if !c.stream.readable {
            self.bufs.release_if_empty(&mut c.rbuf);
            return false;
        }
        let b = c.rbuf.get_or_insert_with(|| self.bufs.take());
        match c.stream.read_into(b) {
            Io::Moved(_) => {
                if !c.req.started {
                    c.req.started = true;
                    c.req.t0_us = crate::sys::now_us();
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

    pub(super) fn reject(&mut self, ci: u32, e: ParseError) {
        self.shared.metrics.bad_requests.fetch_add(1, Relaxed);
        let c = self.sessions.get(ci).expect("client");
        crate::log_limited!(
            Kind::BadRequest,
            Info,
            "{}: rejected request: {} ({})",
            c.peer(),
            e,
            e.status()
        );
        self.local_error(ci, e.status(), &e.to_string());
    }

    pub(super) fn start_request(&mut self, ci: u32, head: RequestHead) {
        self.refresh_backends();
        let draining = self.draining.is_some();
        let Worker {
            sessions,
            hdrs,
            bufs,
            shared,
            backends,
            panic_path,
            access,
            ..
        } = self;
        let c = sessions.get_mut(ci).expect("client");
        let rbuf = c.rbuf.as_mut().expect("head parsed from rbuf");
        let buf = rbuf.filled();
        let meta = match request_meta(buf, &head, hdrs) {
            Ok(m) => m,
            Err(e) => {
                // The answer to a HEAD has no body, even a refusal.
                c.req.is_head = head.method.of(buf) == b"HEAD";
                return self.reject(ci, e);
            }
        };
        // Draining (shutdown, upgrade): this response says `Connection: close`.
        c.keep_alive = meta.conn.persistent(head.minor) && !draining;
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
            body: Body::new(meta.body),
            upgrade: meta.upgrade,
            t0_us: c.req.t0_us,
            ..Req::default()
        };
        c.resp = Resp::default();
        let method = head.method.of(buf);
        let target = head.target.of(buf);
        if access.is_some() {
            // Copied now: the head's bytes are reused before the response ends.
            let f = &mut c.alog;
            f.clear();
            f.push(0, method);
            f.push(1, target);
            f.push(
                2,
                if head.minor == 0 {
                    b"HTTP/1.0"
                } else {
                    b"HTTP/1.1"
                },
            );
            for (slot, name) in [(0, &b"referer"[..]), (1, &b"user-agent"[..])] {
                let h = hdrs[..head.header_count]
                    .iter()
                    .find(|h| h.name.of(buf).eq_ignore_ascii_case(name));
                f.has[slot] = h.is_some();
                f.push(3 + slot, h.map_or(&[][..], |h| h.value.of(buf)));
            }
        }
        if panic_path.as_deref() == Some(target) {
            panic!("LB_TEST_PANIC_PATH: panicking on request as asked");
        }
        if meta.is_connect {
            c.keep_alive = false;
            rbuf.consume(head.len);
            return self.local_error(ci, 405, "CONNECT is not supported");
        }
        let path = meta.absolute.map_or(target, |a| a.path.of(buf));
        let path = path.split(|&b| b == b'?').next().unwrap_or(path);
        let readonly = method == b"GET" || meta.is_head;
        if c.admin || (path == b"/metrics" && readonly && shared.config.metrics_on_traffic_port) {
            // Answered here, never proxied: the admin listener's pages, and
            // /metrics on the traffic port unless configured off.
            if meta.body != BodyMode::None {
                c.keep_alive = false;
            }
            let page = if readonly { Page::of(path) } else { None };
            rbuf.consume(head.len);
            return self.admin_page(ci, page);
        }
        if let Some(tls_port) = shared
            .config
            .tls_listener
            .as_ref()
            .filter(|l| l.redirect_http && !c.https)
            .map(|l| l.port)
        {
            // `redirect_http_to_https`: 308 to the same host and target on
            // the TLS port (308 keeps the method and body, unlike 301).
            let host = match meta.absolute {
                Some(a) => a.authority.of(buf),
                None => hdrs[..head.header_count]
                    .iter()
                    .find(|h| h.name.of(buf).eq_ignore_ascii_case(b"host"))
                    .map_or(&[][..], |h| h.value.of(buf)),
            };
            let location = redirect_location(host, tls_port, path_and_query(buf, target, &meta));
            if meta.body != BodyMode::None {
                c.keep_alive = false;
            }
            rbuf.consume(head.len);
            return match location {
                Some(l) => self.local_response_with(ci, 308, "text/plain", &l, b"Moved to HTTPS\n"),
                None => self.local_error(ci, 400, "no Host to redirect to"),
            };
        }
        shared.metrics.requests.fetch_add(1, Relaxed);
        let limit = shared.config.max_body_bytes;
        if limit > 0 && matches!(meta.body, BodyMode::ContentLength(n) if n > limit) {
            c.keep_alive = false;
            rbuf.consume(head.len);
            crate::log_limited!(
                Kind::BadRequest,
                Info,
                "{}: request body over max_body_bytes ({limit}) (413)",
                c.peer()
            );
            return self.local_error(ci, 413, "request body too large");
        }
        if backends.is_empty() {
            c.keep_alive = false;
            rbuf.consume(head.len);
            return self.local_error(ci, 503, "no backends configured");
        }
        // The first `request_buffer_bytes` of every body (all of a smaller
        // one) are read before a backend is chosen, so a slow upload holds
        // no backend connection until that much has come; the rest, if
        // any, streams. `Expect: 100-continue` is answered here then.
        let cap = shared.config.request_buffer_bytes as usize;
        let buffer = match meta.body {
            BodyMode::ContentLength(n) => (n as usize).min(cap),
            BodyMode::Chunked => cap,
            BodyMode::None | BodyMode::UntilClose => 0,
        };
        let buffer = if meta.upgrade { 0 } else { buffer };
        let mut out = c.reqhead.take().unwrap_or_else(|| bufs.take());
        out.clear();
        let o = RequestOut {
            conn: &meta.conn,
            body: meta.body,
            content_length: meta.content_length,
            upgrade: meta.upgrade,
            strip_expect: buffer > 0 && meta.expect_continue,
            peer: &c.peer[..c.peer_len as usize],
            https: c.https,
            fwd: &shared.config.forwarded,
            trusted: &shared.config.trusted_client_headers,
            absolute: meta.absolute,
        };
        if !compose_request(buf, &head, &hdrs[..head.header_count], &o, &mut out) {
            bufs.give(out);
            c.keep_alive = false;
            return self.local_error(ci, 431, "request head too large");
        }
        rbuf.consume(head.len);
        c.reqhead = Some(out);
        c.tried = 0;
        c.req.rate_since = self.now;
        if buffer == 0 {
            c.phase = Phase::Proxy;
            return self.connect(ci);
        }
        self.start_body(ci, buffer, meta.expect_continue);
    }

    /// Enters `Phase::Body` with room for `size` bytes. When this worker
    /// already holds its cap of buffered bodies, the body streams instead
    /// (as it would with buffering off). `Expect: 100-continue` was taken
    /// off the upstream head: the 100 is answered here either way.
    fn start_body(&mut self, ci: u32, size: usize, expect_continue: bool) {
        if expect_continue {
            let c = self.sessions.get_mut(ci).expect("client");
            let w = c.wbuf.get_or_insert_with(|| self.bufs.take());
            w.push(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        if self.body_buffered + size > REQUEST_BUFFER_CAP_BYTES {
            let c = self.sessions.get_mut(ci).expect("client");
            crate::log_limited!(Kind::Overloaded, Warn, "{}: request bodies being buffered reached {REQUEST_BUFFER_CAP_BYTES} bytes in this worker; this one streams",
                c.peer()
            );
            c.phase = Phase::Proxy;
            return self.connect(ci);
        }
        let mut v = self.body_pool.pop().unwrap_or_default();
        v.reserve_exact(size);
        self.body_buffered += v.capacity();
        let deadline = self.now + self.shared.config.timeouts.client_body.as_millis() as u64;
        let c = self.sessions.get_mut(ci).expect("client");
        c.prebody = Some(v);
        c.phase = Phase::Body;
        c.deadline = deadline;
    }

    /// Reads the request body into `prebody` (its framing validated as it
    /// comes); once whole, or once `request_buffer_bytes` of it are here
    /// (the rest then streams), a backend is chosen.
    pub(super) fn step_body(&mut self, ci: u32) -> bool {
        let c = self.sessions.get_mut(ci).expect("client");
        if c.wbuf.as_ref().is_some_and(|w| !w.is_empty()) && c.stream.writable {
            // Our own `100 Continue`: the client may wait for it.
            return self.flush_wbuf(ci).unwrap_or(false);
        }
        let Worker {
            sessions,
            bufs,
            shared,
            ..
        } = self;
        let c = sessions.get_mut(ci).expect("client");
        let cap = shared.config.request_buffer_bytes as usize;
        let limit = shared.config.max_body_bytes;
        let rbuf = c.rbuf.get_or_insert_with(|| bufs.take());
        let pre = c.prebody.as_mut().expect("Phase::Body has a body buffer");
        match c.req.body.ready(rbuf.filled()) {
            Ok(_) if limit > 0 && c.req.body.data_bytes() > limit => {
                self.refuse_body(ci, BodyRefusal::TooLarge(limit));
                return true;
            }
            Ok(n) => {
                let n = n.min(cap.saturating_sub(pre.len()));
                pre.extend_from_slice(&rbuf.filled()[..n]);
                rbuf.consume(n);
                c.req.body.forwarded(n);
            }
            Err(e) => {
                self.refuse_body(ci, BodyRefusal::Malformed(e));
                return true;
            }
        }
        if c.req.body.is_complete() || pre.len() >= cap {
            c.phase = Phase::Proxy;
            self.connect(ci);
            return true;
        }
        if !c.stream.readable {
            self.bufs.release_if_empty(&mut c.rbuf);
            return false;
        }
        match c.stream.read_into(rbuf) {
            Io::Moved(n) => {
                c.req.rate_bytes += n as u64;
                true
            }
            Io::Blocked => false,
            Io::Eof => {
                // The client shut its side with the body short: it may still
                // read, so it gets told; no backend ever saw the request.
                crate::log_limited!(
                    Kind::BadRequest,
                    Info,
                    "{}: request body ended early (400)",
                    c.peer()
                );
                shared.metrics.bad_requests.fetch_add(1, Relaxed);
                self.local_error(ci, 400, "the request body ended before its declared length");
                true
            }
            Io::Failed(_) => {
                crate::log_limited!(
                    Kind::ClientClosed,
                    Info,
                    "{}: client closed during the request body",
                    c.peer()
                );
                self.close_client(ci);
                true
            }
        }
    }

    /// A response is complete: the request-duration histogram, and the
    /// access log line.
    pub(super) fn record_request(&mut self, ci: u32) {
        let Worker {
            sessions,
            access,
            shared,
            backends,
            ..
        } = self;
        let Some(c) = sessions.get_mut(ci) else {
            return;
        };
        if c.status == 0 {
            return;
        }
        // The status the client got, counted once per exchange: a backend's
        // 200 that turned into a 502 is a 5xx, not both.
        shared.metrics.response(c.status);
        let total = crate::sys::now_us().saturating_sub(c.req.t0_us);
        shared.metrics.observe_request(total);
        if let Some(log) = access.as_mut() {
            let f = &c.alog;
            let upstream = c
                .req
                .upstream_us
                .and_then(|_| backends.get(c.backend))
                .map(|b| b.sock);
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let e = Entry {
                unix_ms,
                client: c
                    .peer_ip
                    .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                method: f.field(0),
                target: f.field(1),
                protocol: f.field(2),
                status: c.status,
                body_bytes: c.body_bytes,
                referer: f.has[0].then(|| f.field(3)),
                user_agent: f.has[1].then(|| f.field(4)),
                request_us: total,
                upstream,
                upstream_connect_us: upstream.and(c.req.connect_us),
                upstream_us: c.req.upstream_us,
                retries: u32::from(c.req.attempts.saturating_sub(1)),
            };
            if let Err(err) = log.record(&e) {
                crate::log_limited!(Kind::AccessLogWrite, Err, "access log: {err}");
            }
        }
        c.status = 0;
        c.body_bytes = 0;
        c.alog.clear();
    }

    /// A request body that cannot go on: over `max_body_bytes` (413) or
    /// badly framed (400). The backend connection, if any, carries a partial
    /// request and is closed; once part of a response is out, all the client
    /// can be told is a close.
    pub(super) fn refuse_body(&mut self, ci: u32, why: BodyRefusal) {
        let c = self.sessions.get_mut(ci).expect("client");
        let (status, detail) = match &why {
            BodyRefusal::TooLarge(limit) => {
                crate::log_limited!(
                    Kind::BadRequest,
                    Info,
                    "{}: chunked body over max_body_bytes ({limit}) (413)",
                    c.peer()
                );
                (413, "request body too large".to_string())
            }
            BodyRefusal::Malformed(e) => {
                crate::log_limited!(
                    Kind::BadRequest,
                    Info,
                    "{}: rejected request body: {e} (400)",
                    c.peer()
                );
                self.shared.metrics.bad_requests.fetch_add(1, Relaxed);
                (400, e.to_string())
            }
        };
        self.fail_exchange(ci, status, &detail);
    }

    /// A page made here: `/metrics`, `/status`, `/status.json` (404 for
    /// anything else asked of the admin listener).
    fn admin_page(&mut self, ci: u32, page: Option<Page>) {
        let region = self.shared.region;
        let mut live = Vec::new();
        let (generation, settings) = region.read_backends(&mut live);
        let view = View {
            slots: &region.workers,
            backends: &live,
            health: &region.health,
            process: &region.process,
            generation,
        };
        let (ctype, body) = match page {
            Some(Page::Metrics) => ("text/plain; version=0.0.4", view.render()),
            Some(Page::Status) => (
                "text/html; charset=utf-8",
                crate::admin::status_html(&StatusView::from_view(
                    &view,
                    &settings,
                    env!("CARGO_PKG_VERSION"),
                    crate::sys::now_ms(),
                )),
            ),
            Some(Page::StatusJson) => (
                "application/json",
                crate::admin::status_json(&StatusView::from_view(
                    &view,
                    &settings,
                    env!("CARGO_PKG_VERSION"),
                    crate::sys::now_ms(),
                )),
            ),
            None => {
                return self.local_error(
                    ci,
                    404,
                    "not found: try /metrics, /status or /status.json",
                )
            }
        };
        self.local_response(ci, 200, ctype, body.as_bytes());
    }

    /// Next request on a kept-alive connection, or a graceful close.
    pub(super) fn after_response(&mut self, ci: u32) {
        self.release_inflight(ci);
        self.record_request(ci);
        self.release_prebody(ci);
        let c = self.sessions.get_mut(ci).expect("client");
        self.bufs.release(&mut c.reqhead);
        self.bufs.release_if_empty(&mut c.wbuf);
        c.up = None;
        c.tried = 0;
        // While draining, a connection is closed only after a response that
        // said `Connection: close` (one composed before the drain began did
        // not: the client may already be sending its next request, which
        // gets the close), or once idle for the drain's grace period.
        let close = !c.keep_alive && (c.said_close || self.draining.is_none());
        if close {
            return self.start_drain(ci);
        }
        c.phase = Phase::Head;
        c.resp = Resp::default();
        c.req = Req::default();
        let t = &self.shared.config.timeouts;
        let idle_ms = match self.draining {
            Some(_) => DRAIN_IDLE_MS,
            None => t.client_idle.as_millis() as u64,
        };
        if c.rbuf.as_ref().is_some_and(|b| !b.is_empty()) {
            c.req.started = true;
            c.req.t0_us = crate::sys::now_us();
            c.deadline = self.now + t.client_header.as_millis() as u64;
        } else {
            self.bufs.release(&mut c.rbuf);
            c.deadline = self.now + idle_ms;
        }
    }

    pub(super) fn local_error(&mut self, ci: u32, status: u16, detail: &str) {
        let body = format!("{} {}: {}\n", status, reason(status), detail);
        if let Some(c) = self.sessions.get_mut(ci) {
            c.keep_alive = false;
        }
        self.local_response(ci, status, "text/plain", body.as_bytes());
    }

    pub(super) fn local_response(&mut self, ci: u32, status: u16, ctype: &str, body: &[u8]) {
        self.local_response_with(ci, status, ctype, "", body)
    }

    /// A response made here, with `extra` header lines (each ending CRLF).
    pub(super) fn local_response_with(
        &mut self,
        ci: u32,
        status: u16,
        ctype: &str,
        extra: &str,
        body: &[u8],
    ) {
        let c = self.sessions.get_mut(ci).expect("client");
        if let Some(ui) = c.up.take() {
            self.close_upstream(ui);
        }
        let c = self.sessions.get_mut(ci).expect("client");
        self.bufs.release(&mut c.reqhead);
        c.local.clear();
        c.said_close = !c.keep_alive;
        c.status = status;
        c.body_bytes = if c.req.is_head { 0 } else { body.len() as u64 };
        let conn = if c.keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        let _ = write!(
            c.local,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}{}\r\n",
            status,
            reason(status),
            ctype,
            body.len(),
            extra,
            // 503 is temporary here (no healthy backend, or busy buffering
            // bodies): clients may come back in a second.
            if status == 503 {
                "Retry-After: 1\r\n"
            } else {
                ""
            },
            conn
        );
        if !c.req.is_head {
            c.local.extend_from_slice(body);
        }
        c.local_off = 0;
        c.phase = Phase::Local;
    }

    pub(super) fn step_local(&mut self, ci: u32) -> bool {
        // An interim response may still sit in wbuf ahead of this one.
        if let Some(progressed) = self.flush_wbuf(ci) {
            return progressed;
        }
        let c = self.sessions.get_mut(ci).expect("client");
        if c.local_off == c.local.len() {
            c.local.clear();
            if c.local.capacity() > 4096 {
                c.local = Vec::new();
            }
            self.after_response(ci);
            return true;
        }
        if !c.stream.writable {
            return false;
        }
        match c
            .stream
            .write_from(&[IoSlice::new(&c.local[c.local_off..])])
        {
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
    pub(super) fn start_drain(&mut self, ci: u32) {
        let c = self.sessions.get_mut(ci).expect("client");
        c.stream.io.shutdown_write();
        c.phase = Phase::Drain;
        c.drained = 0;
        c.deadline = self.now + LINGER_MS;
        self.bufs.release(&mut c.wbuf);
    }

    pub(super) fn step_drain(&mut self, ci: u32) -> bool {
        let c = self.sessions.get_mut(ci).expect("client");
        if !c.stream.readable {
            return false;
        }
        let b = c.rbuf.get_or_insert_with(|| self.bufs.take());
        b.clear();
        match c.stream.read_into(b) {
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
}

fn method_is(buf: &[u8], head: &RequestHead, m: &[u8]) -> bool {
    head.method.of(buf) == m
}

/// The pages the load balancer serves itself.
#[derive(Clone, Copy)]
enum Page {
    Metrics,
    Status,
    StatusJson,
}

impl Page {
    fn of(path: &[u8]) -> Option<Page> {
        match path {
            b"/metrics" => Some(Page::Metrics),
            b"/status" | b"/" => Some(Page::Status),
            b"/status.json" => Some(Page::StatusJson),
            _ => None,
        }
    }
}

/// Why a request body is refused (see [`Worker::refuse_body`]).
pub(super) enum BodyRefusal {
    /// Chunked data over `max_body_bytes` (this limit).
    TooLarge(u64),
    Malformed(crate::http::ChunkError),
}

/// The path and query of a request: its origin-form target, or the path of
/// an absolute-form one.
fn path_and_query<'a>(
    buf: &'a [u8],
    target: &'a [u8],
    meta: &crate::http::framing::RequestMeta,
) -> &'a [u8] {
    match meta.absolute {
        Some(a) => a.path.of(buf),
        None => target,
    }
}

/// `Location: https://HOST[:PORT]PATH\r\n` for `redirect_http_to_https`:
/// the Host without its port (an IPv6 literal keeps its brackets), the TLS
/// port unless 443. `None` without a Host. Host and target were validated
/// by the parser (no CR, LF or spaces).
fn redirect_location(host: &[u8], tls_port: u16, path: &[u8]) -> Option<String> {
    let host = std::str::from_utf8(host).ok()?;
    let name = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if name.is_empty() {
        return None;
    }
    let path = std::str::from_utf8(path).ok()?;
    let path = if path.starts_with('/') { path } else { "/" };
    Some(if tls_port == 443 {
        format!("Location: https://{name}{path}\r\n")
    } else {
        format!("Location: https://{name}:{tls_port}{path}\r\n")
    })
}

#[cfg(test)]
mod redirect_tests {
    use super::redirect_location;

    #[test]
    fn the_location_keeps_host_and_target_and_takes_the_tls_port() {
        let l = |h: &str, p: u16, t: &str| redirect_location(h.as_bytes(), p, t.as_bytes());
        assert_eq!(
            l("example.com", 443, "/a?b=1").unwrap(),
            "Location: https://example.com/a?b=1\r\n"
        );
        assert_eq!(
            l("example.com:8080", 8443, "/").unwrap(),
            "Location: https://example.com:8443/\r\n"
        );
        assert_eq!(
            l("[::1]:8080", 8443, "/x").unwrap(),
            "Location: https://[::1]:8443/x\r\n"
        );
        assert_eq!(
            l("[::1]", 443, "*").unwrap(),
            "Location: https://[::1]/\r\n"
        );
        assert_eq!(l("", 443, "/"), None);
    }
}
