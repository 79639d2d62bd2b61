//! A client connection and the exchange in flight on it: the session.
//!
//! A session is a small state machine ([`Phase`]): `Head → Proxy → Head …`,
//! `Local` for answers made here, `Drain` for a lingering close, `Tunnel`
//! after a `101`. [`Worker::drive`] runs its steps until every socket
//! involved would block; each step lives with its side: reading requests
//! and local answers in `downstream`, the backend exchange in `upstream`,
//! tunnels in `tunnel`, body accounting in `body`.
#![forbid(unsafe_code)]

use super::body::Body;
use super::worker::Worker;
use crate::buf::Buf;
use crate::net::{Conn, Io, Stream};
use crate::sys;
use std::io::IoSlice;

/// Steps one `drive` call may take before yielding to other connections.
const DRIVE_BUDGET: u32 = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// A request is being exchanged with a backend.
    Proxy,
    /// Writing a response made here (error, metrics).
    Local,
    /// Reading a request body whole (up to `request_buffer_bytes`) before
    /// a backend is chosen: a slow upload holds no backend connection.
    Body,
    /// Write side shut; reading and discarding until the client closes.
    Drain,
    /// After a 101: bytes flow both ways untouched until both sides close.
    Tunnel,
}

/// The request in flight on a client connection.
#[derive(Clone, Copy)]
pub(super) struct Req {
    pub(super) minor: u8,
    pub(super) idempotent: bool,
    pub(super) is_head: bool,
    pub(super) body: Body,
    pub(super) body_sent: u64,
    /// Bytes of the upstream head written.
    pub(super) head_sent: usize,
    /// Bytes of the buffered body (`Session::prebody`) written.
    pub(super) pre_sent: usize,
    pub(super) sent_any: bool,
    /// The backend answered, then stopped taking the request (a write
    /// failed): the rest is not sent, and its answer stands.
    pub(super) unsent: bool,
    pub(super) attempts: u8,
    /// The request asked to switch protocols.
    pub(super) upgrade: bool,
    /// Bytes of a head have arrived (header timeout runs, not idle timeout).
    pub(super) started: bool,
    /// Monotonic µs: the request's first byte read; the request wholly
    /// sent upstream; a new upstream connect begun.
    pub(super) t0_us: u64,
    pub(super) t_sent_us: u64,
    pub(super) t_connect_us: u64,
    /// Connect (and TLS handshake) time; `Some(0)` on a pooled connection.
    pub(super) connect_us: Option<u64>,
    /// Request sent to response head, for the final response of a backend.
    pub(super) upstream_us: Option<u64>,
    /// `client_body_min_rate`: when the current window began (ms) and the
    /// body bytes read from the client in it.
    pub(super) rate_since: u64,
    pub(super) rate_bytes: u64,
}

impl Default for Req {
    fn default() -> Self {
        Req {
            minor: 1,
            idempotent: true,
            is_head: false,
            body: Body::default(),
            body_sent: 0,
            head_sent: 0,
            pre_sent: 0,
            sent_any: false,
            unsent: false,
            attempts: 0,
            upgrade: false,
            started: false,
            t0_us: 0,
            t_sent_us: 0,
            t_connect_us: 0,
            connect_us: None,
            upstream_us: None,
            rate_since: 0,
            rate_bytes: 0,
        }
    }
}

/// The response in flight.
#[derive(Clone, Copy, Default)]
pub(super) struct Resp {
    pub(super) head_done: bool,
    pub(super) body: Body,
    /// Close-delimited body re-framed as chunked for the client.
    pub(super) rechunk: bool,
    /// The backend connection may be pooled after this response.
    pub(super) reusable: bool,
    /// Bytes of this response written to the client (head included): while
    /// none are, a failure can still be answered with a 502.
    pub(super) sent: u64,
}

pub(super) struct Session {
    pub(super) stream: Stream<Conn>,
    /// Came in on the TLS listener (`X-Forwarded-Proto: https`).
    pub(super) https: bool,
    pub(super) gen: u32,
    pub(super) peer: [u8; 48],
    pub(super) peer_len: u8,
    /// Bytes from the client.
    pub(super) rbuf: Option<Buf>,
    /// Bytes to the client ahead of any body bytes (response head, interim
    /// responses, re-chunked data).
    pub(super) wbuf: Option<Buf>,
    /// The request head as sent upstream, kept until the response starts
    /// so that a retry can send it again.
    pub(super) reqhead: Option<Buf>,
    /// The request body read before a backend was chosen (its framing as
    /// received), sent after the head; kept, like the head, for a retry.
    pub(super) prebody: Option<Vec<u8>>,
    /// Came in on the admin listener: answered here, never proxied.
    pub(super) admin: bool,
    /// The client's address, for the access log.
    pub(super) peer_ip: Option<std::net::IpAddr>,
    /// Status and body bytes of the response in flight (0: none yet).
    pub(super) status: u16,
    pub(super) body_bytes: u64,
    /// With an access log: the request line's parts and two headers,
    /// copied before the head's bytes are reused (capacity kept).
    pub(super) alog: AccessFields,
    /// A response generated here (errors, metrics) and how much is written.
    pub(super) local: Vec<u8>,
    pub(super) local_off: usize,
    pub(super) phase: Phase,
    pub(super) up: Option<u32>,
    pub(super) backend: usize,
    /// The backend id this session's request counts as in flight to
    /// (`Metrics::inflight`), until the exchange ends.
    pub(super) inflight: Option<u8>,
    pub(super) req: Req,
    pub(super) resp: Resp,
    /// Backends tried for the current request (bit per backend).
    pub(super) tried: u64,
    /// The client connection stays open after the current exchange.
    pub(super) keep_alive: bool,
    /// The response in flight told the client `Connection: close`.
    pub(super) said_close: bool,
    pub(super) deadline: u64,
    pub(super) drained: u64,
    /// Splice pipe of a large body in flight, and the bytes in it.
    pub(super) pipe: Option<sys::Pipe>,
    pub(super) pipe_len: usize,
    /// Pipes are not available here: copy bodies through buffers.
    pub(super) no_splice: bool,
    /// Tunnel: the client, or the backend, has finished sending.
    pub(super) client_done: bool,
    /// Queued in `Worker::deferred`: a write waits for the end of the
    /// event batch.
    pub(super) deferred: bool,
    pub(super) upstream_done: bool,
}

impl Session {
    /// A write of this session's waits for the end of the event batch
    /// (`Worker::defer_writes`): queued once, driven again then. The step
    /// that calls this reports no progress, so `drive` stops here for now.
    pub(super) fn defer_write(&mut self, ci: u32, deferred: &mut Vec<(u32, u32)>) {
        if !self.deferred {
            self.deferred = true;
            deferred.push((ci, self.gen));
        }
    }

    pub(super) fn peer(&self) -> &str {
        std::str::from_utf8(&self.peer[..self.peer_len as usize]).unwrap_or("?")
    }

    /// The worker waits for request body bytes from the client, not for the
    /// backend to take what it has: buffering the body (`Phase::Body`), or
    /// streaming it to a connected backend with the head, the buffered part
    /// and every byte read so far sent. Only then is a slow body the
    /// client's doing (`client_body_min_rate`, the stalled-body 408).
    pub(super) fn awaits_client_body(&self, upstream_connected: bool) -> bool {
        match self.phase {
            Phase::Body => true,
            Phase::Proxy => {
                upstream_connected
                    && !self.resp.head_done
                    && !self.req.body.is_complete()
                    && self.rbuf.as_ref().is_none_or(|b| b.is_empty())
                    && self.head_and_buffered_body_sent()
            }
            _ => false,
        }
    }

    /// The whole request went upstream: head, buffered body, the rest.
    pub(super) fn request_sent(&self) -> bool {
        self.head_and_buffered_body_sent() && self.req.body.is_complete()
    }

    /// The upstream head and the body read before routing are all sent.
    fn head_and_buffered_body_sent(&self) -> bool {
        self.reqhead
            .as_ref()
            .is_none_or(|h| self.req.head_sent == h.len())
            && self
                .prebody
                .as_ref()
                .is_none_or(|p| self.req.pre_sent == p.len())
    }
}

impl Worker {
    /// Writes what waits in `wbuf` for the client (an interim response
    /// ahead of the final one): `None` when nothing waits, else whether it
    /// progressed (a failed write closes the client, which is progress).
    pub(super) fn flush_wbuf(&mut self, ci: u32) -> Option<bool> {
        let c = self.sessions.get_mut(ci)?;
        let w = c.wbuf.as_mut().filter(|w| !w.is_empty())?;
        if !c.stream.writable {
            return Some(false);
        }
        Some(match c.stream.write_from(&[IoSlice::new(w.filled())]) {
            Io::Moved(n) => {
                w.consume(n);
                true
            }
            Io::Blocked => false,
            Io::Eof | Io::Failed(_) => {
                self.close_client(ci);
                true
            }
        })
    }

    /// Advances a client connection as far as its sockets allow.
    pub(super) fn drive(&mut self, ci: u32) {
        for _ in 0..DRIVE_BUDGET {
            let Some(phase) = self.sessions.get(ci).map(|c| c.phase) else {
                return;
            };
            let progressed = match phase {
                Phase::Head => self.step_head(ci),
                Phase::Proxy => {
                    let a = self.step_request(ci);
                    let b = self
                        .sessions
                        .get(ci)
                        .is_some_and(|c| c.phase == Phase::Proxy)
                        && self.step_response(ci);
                    a || b
                }
                Phase::Body => self.step_body(ci),
                Phase::Local => self.step_local(ci),
                Phase::Drain => self.step_drain(ci),
                Phase::Tunnel => self.step_tunnel(ci),
            };
            if !progressed {
                return;
            }
        }
        if let Some(c) = self.sessions.get(ci) {
            self.again.push((ci, c.gen));
        }
    }
}

/// What the access log needs from a request head, copied out of it
/// (method, target, protocol, referer, user agent, in `bytes`).
#[derive(Default)]
pub(super) struct AccessFields {
    pub(super) bytes: Vec<u8>,
    /// End offsets in `bytes` of the five fields; `has` marks the headers
    /// that were present.
    pub(super) ends: [u32; 5],
    pub(super) has: [bool; 2],
}

impl AccessFields {
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.ends = [0; 5];
        self.has = [false; 2];
    }

    /// Appends field `i` (in order).
    pub(super) fn push(&mut self, i: usize, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.ends[i] = self.bytes.len() as u32;
    }

    pub(super) fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start.min(self.bytes.len())..(self.ends[i] as usize).min(self.bytes.len())]
    }
}
