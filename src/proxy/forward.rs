//! Forwarding a response body to the client: copied through the upstream
//! buffer (Content-Length, chunked as validated, or until close, re-chunked
//! for HTTP/1.1 clients), or for large Content-Length bodies spliced
//! backend → pipe → client inside the kernel.
#![forbid(unsafe_code)]

use super::worker::Worker;
use crate::http::compose::hex_line;
use crate::http::BodyMode;
use crate::log;
use crate::log::Kind;
use crate::net::{Io, Transport};
use crate::sys;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;

/// Bodies at least this long go through a splice pipe, not a buffer.
const SPLICE_MIN: u64 = 256 * 1024;
/// A chunk's size line (at most 16 hex digits and CRLF) and its closing CRLF.
const CHUNK_OVERHEAD: usize = 16 + 2 + 2;

impl Worker {
    pub(super) fn step_response_body(&mut self, ci: u32, ui: u32) -> bool {
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
        let u = ups.get_mut(ui).expect("upstream");
        let rbuf = u.rbuf.get_or_insert_with(|| bufs.take());
        let mut pending = match c.resp.body.ready(rbuf.filled()) {
            Ok(p) => p,
            Err(e) => {
                self.bad_response(ci, &e.to_string());
                return true;
            }
        };
        if c.resp.rechunk && pending > 0 {
            // Close-delimited body to a keep-alive client: frame it as chunks.
            // The raw bytes never go out as they are: what does not fit in
            // wbuf now waits until the client has taken what is there.
            let w = c.wbuf.get_or_insert_with(|| bufs.take());
            let take = pending.min(w.room().saturating_sub(CHUNK_OVERHEAD));
            if take > 0 {
                let mut size = [0u8; 18];
                let sl = hex_line(take, &mut size);
                let ok = w.push(sl) && w.push(&rbuf.filled()[..take]) && w.push(b"\r\n");
                debug_assert!(ok, "room was checked");
                rbuf.consume(take);
            }
            pending = 0;
        }
        let wlen = c.wbuf.as_ref().map_or(0, |w| w.len());
        let large = c.resp.body.left() >= SPLICE_MIN;
        if wlen == 0 && pending == 0 && (c.pipe_len > 0 || (large && !*trace && !c.no_splice)) {
            return self.splice_body(ci, ui);
        }
        if wlen == 0 && pending == 0 {
            if c.resp.body.is_complete() {
                self.finish_exchange(ci);
                return true;
            }
            if !u.stream.readable {
                return false;
            }
            return match u.stream.read_into(rbuf) {
                Io::Eof if c.resp.body.mode == BodyMode::UntilClose => {
                    c.resp.body.end_of_stream();
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
                    let b = c.backend;
                    crate::log_limited!(
                        Kind::UpstreamFailed(b),
                        Warn,
                        "backend {}: response body truncated",
                        self.backends.name(b)
                    );
                    self.backend_failed(b, crate::metrics::ErrorKind::Reset);
                    self.fail_exchange(ci, 502, "the backend closed during the response");
                    true
                }
            };
        }
        if !c.stream.writable {
            return false;
        }
        if *defer_writes {
            c.defer_write(ci, deferred);
            return false;
        }
        let w = c.wbuf.as_ref().map_or(&[][..], |w| w.filled());
        let body = &rbuf.filled()[..pending];
        match c.stream.write_from(&[IoSlice::new(w), IoSlice::new(body)]) {
            Io::Moved(n) => {
                let h = n.min(w.len());
                if let Some(w) = c.wbuf.as_mut() {
                    w.consume(h);
                }
                let k = n - h;
                rbuf.consume(k);
                c.resp.body.forwarded(k);
                c.body_bytes += k as u64;
                c.resp.sent += n as u64;
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
    pub(super) fn splice_body(&mut self, ci: u32, ui: u32) -> bool {
        let Worker {
            sessions,
            ups,
            pipes,
            shared,
            now,
            ..
        } = self;
        let c = sessions.get_mut(ci).expect("client");
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
        let (Some(to), Some(from)) = (c.stream.io.splice_fd(), u.stream.io.splice_fd()) else {
            // A transport that transforms its bytes (TLS): copy through buffers.
            c.no_splice = true;
            return true;
        };
        let mut progressed = false;
        if c.pipe_len > 0 && c.stream.writable {
            match sys::splice(pipe.r.as_fd(), to, c.pipe_len) {
                Ok(n) => {
                    if n < c.pipe_len {
                        c.stream.writable = false;
                    }
                    c.pipe_len -= n;
                    c.resp.body.forwarded(n);
                    c.body_bytes += n as u64;
                    c.resp.sent += n as u64;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.stream.writable = false,
                Err(_) => {
                    self.close_client(ci);
                    return true;
                }
            }
        }
        let unread = c.resp.body.left() - c.pipe_len as u64;
        if c.pipe_len < pipe.cap && unread > 0 && u.stream.readable {
            let want = unread.min((pipe.cap - c.pipe_len) as u64) as usize;
            match sys::splice(from, pipe.w.as_fd(), want) {
                Ok(n) if n > 0 => {
                    // A short splice may mean the pipe ran out of slots, not
                    // that the socket is empty: readiness is cleared only by
                    // EAGAIN into an empty pipe, below.
                    c.pipe_len += n;
                    progressed = true;
                }
                // EAGAIN into an empty pipe: the socket is empty. Into a
                // non-empty one it may mean "pipe full"; draining will tell.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    u.stream.readable = c.pipe_len > 0
                }
                _ => {
                    let b = c.backend;
                    let name = &self.backends.name(b);
                    crate::log_limited!(
                        Kind::UpstreamFailed(b),
                        Warn,
                        "backend {name}: response body truncated"
                    );
                    self.backend_failed(b, crate::metrics::ErrorKind::Reset);
                    self.fail_exchange(ci, 502, "the backend closed during the response");
                    return true;
                }
            }
        }
        if progressed {
            c.deadline = *now + shared.config.timeouts.body_progress.as_millis() as u64;
        }
        if c.resp.body.left() == 0 && c.pipe_len == 0 {
            if let Some(p) = c.pipe.take() {
                pipes.push(p);
            }
            self.finish_exchange(ci);
            return true;
        }
        progressed
    }
}
