//! Tunnels after `101 Switching Protocols`: bytes flow both ways untouched
//! until both sides have finished sending.
#![forbid(unsafe_code)]

use super::worker::Worker;
use crate::net::{Io, Transport};
use std::io::IoSlice;

impl Worker {
    /// Moves bytes both ways, untouched. When one side finishes sending, the
    /// other side's write half is shut; when both have, the tunnel closes.
    pub(super) fn step_tunnel(&mut self, ci: u32) -> bool {
        let Worker {
            sessions,
            ups,
            bufs,
            shared,
            now,
            ..
        } = self;
        let c = sessions.get_mut(ci).expect("client");
        let Some(ui) = c.up else {
            self.close_client(ci);
            return true;
        };
        let u = ups.get_mut(ui).expect("tunnel upstream");
        let idle = shared.config.timeouts.body_progress.as_millis() as u64;
        let mut progressed = false;
        // Client -> backend.
        let cb = c.rbuf.get_or_insert_with(|| bufs.take());
        if !cb.is_empty() && u.stream.writable {
            match u.stream.write_from(&[IoSlice::new(cb.filled())]) {
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
        } else if cb.is_empty() && !c.client_done && c.stream.readable {
            match c.stream.read_into(cb) {
                Io::Moved(_) => progressed = true,
                Io::Blocked => {}
                Io::Eof | Io::Failed(_) => {
                    c.client_done = true;
                    u.stream.io.shutdown_write();
                    progressed = true;
                }
            }
        }
        // Backend -> client, after the 101 head still in wbuf.
        let ub = u.rbuf.get_or_insert_with(|| bufs.take());
        let w = c.wbuf.as_ref().map_or(&[][..], |w| w.filled());
        if (!w.is_empty() || !ub.is_empty()) && c.stream.writable {
            let r = c
                .stream
                .write_from(&[IoSlice::new(w), IoSlice::new(ub.filled())]);
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
        } else if w.is_empty() && ub.is_empty() && !c.upstream_done && u.stream.readable {
            match u.stream.read_into(ub) {
                Io::Moved(_) => progressed = true,
                Io::Blocked => {}
                Io::Eof | Io::Failed(_) => {
                    c.upstream_done = true;
                    c.stream.io.shutdown_write();
                    progressed = true;
                }
            }
        }
        if progressed {
            c.deadline = *now + idle;
        }
        let flushed =
            ub.is_empty() && c.wbuf.as_ref().is_none_or(|w| w.is_empty()) && cb.is_empty();
        if c.client_done && c.upstream_done && flushed {
            self.close_client(ci);
            return true;
        }
        progressed
    }
}
