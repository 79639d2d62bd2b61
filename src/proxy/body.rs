//! Forwarding one message body, in either direction: how many of the bytes
//! buffered at the front of a connection's buffer are body that may go out
//! now, and when the body is complete. The same state serves the request
//! body (client → backend) and the response body (backend → client).
//!
//! No I/O here: the session reads and writes, and tells the body what moved.
#![forbid(unsafe_code)]

use crate::http::{BodyMode, ChunkError, ChunkedDecoder};

#[derive(Clone, Copy)]
pub struct Body {
    pub mode: BodyMode,
    /// Content-Length: bytes not yet forwarded.
    left: u64,
    /// Chunked: validates the framing as it streams by.
    chunk: ChunkedDecoder,
    /// Chunked: validated bytes at the front of the buffer, not yet forwarded.
    pending: usize,
    /// Until-close: the sender closed, the body is complete.
    eof: bool,
}

impl Default for Body {
    fn default() -> Self {
        Body::new(BodyMode::None)
    }
}

impl Body {
    pub fn new(mode: BodyMode) -> Body {
        Body {
            mode,
            left: match mode {
                BodyMode::ContentLength(n) => n,
                _ => 0,
            },
            chunk: ChunkedDecoder::new(),
            pending: 0,
            eof: false,
        }
    }

    /// How many bytes at the front of `buffered` are body that may be
    /// forwarded now. Chunked framing is validated here, as it arrives; an
    /// error means the message is malformed and the connection unusable.
    #[inline]
    pub fn ready(&mut self, buffered: &[u8]) -> Result<usize, ChunkError> {
        Ok(match self.mode {
            BodyMode::None => 0,
            BodyMode::ContentLength(_) => self.left.min(buffered.len() as u64) as usize,
            BodyMode::Chunked => {
                if !self.chunk.is_done() && self.pending < buffered.len() {
                    let p = self.chunk.feed(&buffered[self.pending..])?;
                    self.pending += p.consumed;
                }
                self.pending
            }
            BodyMode::UntilClose => buffered.len(),
        })
    }

    /// `n` of the ready bytes went out (written, or spliced).
    #[inline]
    pub fn forwarded(&mut self, n: usize) {
        match self.mode {
            BodyMode::ContentLength(_) => self.left -= n as u64,
            BodyMode::Chunked => self.pending -= n,
            BodyMode::None | BodyMode::UntilClose => {}
        }
    }

    /// Content-Length bytes still to come (0 for other framings).
    #[inline]
    pub fn left(&self) -> u64 {
        self.left
    }

    /// Chunk data bytes seen so far (the decoded size, for body limits).
    #[inline]
    pub fn data_bytes(&self) -> u64 {
        self.chunk.data_bytes
    }

    /// The sender closed its side: the end of an until-close body.
    pub fn end_of_stream(&mut self) {
        self.eof = true;
    }

    #[inline]
    pub fn is_complete(&self) -> bool {
        match self.mode {
            BodyMode::None => true,
            BodyMode::ContentLength(_) => self.left == 0,
            BodyMode::Chunked => self.chunk.is_done() && self.pending == 0,
            BodyMode::UntilClose => self.eof,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_counts_down() {
        let mut b = Body::new(BodyMode::ContentLength(5));
        assert!(!b.is_complete());
        assert_eq!(b.ready(b"abc").unwrap(), 3);
        b.forwarded(3);
        assert_eq!(b.ready(b"deNEXT").unwrap(), 2, "never past the body");
        b.forwarded(2);
        assert!(b.is_complete());
        assert_eq!(b.ready(b"NEXT").unwrap(), 0);
    }

    #[test]
    fn chunked_validates_then_releases() {
        let mut b = Body::new(BodyMode::Chunked);
        let msg = b"3\r\nabc\r\n0\r\n\r\nGET";
        let n = b.ready(msg).unwrap();
        assert_eq!(n, msg.len() - 3);
        assert!(!b.is_complete(), "validated but not yet forwarded");
        b.forwarded(n);
        assert!(b.is_complete());
        assert_eq!(b.data_bytes(), 3);
        let mut bad = Body::new(BodyMode::Chunked);
        assert!(bad.ready(b"zz\r\n").is_err());
    }

    #[test]
    fn until_close_and_none() {
        let mut b = Body::new(BodyMode::UntilClose);
        assert_eq!(b.ready(b"all of it").unwrap(), 9);
        assert!(!b.is_complete());
        b.end_of_stream();
        assert!(b.is_complete());
        let mut n = Body::default();
        assert!(n.is_complete());
        assert_eq!(n.ready(b"x").unwrap(), 0);
    }
}
