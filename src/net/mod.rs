//! Byte streams the worker reads and writes: the [`Transport`] trait, plain
//! TCP as its first implementation, and [`Stream`], a transport with the
//! readiness the edge-triggered poller reported for it.
//!
//! Session code never reaches for the fd behind a transport: every read,
//! write, connect result, half-close, idle check and splice goes through the
//! trait, so a TLS transport drops in without touching the sessions. A
//! transport that cannot hand its bytes to the kernel unchanged (TLS) says so
//! by returning `None` from [`Transport::splice_fd`].
//!
//! Upstream connections are a [`Conn`]: plain [`Tcp`] or [`tls::Tls`].
#![forbid(unsafe_code)]

#[cfg(feature = "tls")]
pub mod tls;
#[cfg(not(feature = "tls"))]
#[path = "tls_off.rs"]
pub mod tls;
#[cfg(feature = "tls")]
pub mod tls_listener;
#[cfg(not(feature = "tls"))]
pub mod tls_listener {
    //! Built without the `tls` feature: no TLS listener (refused at start).
    pub use super::tls::{
        fields, from_fields, read_files, CertSet, Certificate, ListenerTls, PemPair,
    };
    pub fn render_metrics(_o: &mut String) {}
}
pub mod x509;

use crate::buf::Buf;
use crate::sys;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A non-blocking byte stream. Reads and writes return `WouldBlock` when
/// the stream is not ready; `Ok(0)` from `read` is the end of the stream.
pub trait Transport {
    /// The fd to register with the poller.
    fn fd(&self) -> BorrowedFd<'_>;
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// After a non-blocking connect became writable: `None` if it succeeded.
    fn take_error(&self) -> io::Result<Option<io::Error>>;
    /// Shuts the write half (a tunnel side finished, a lingering close).
    fn shutdown_write(&mut self);
    /// An idle connection the peer closed, or wrote to unasked: not reusable.
    fn peer_closed_or_dirty(&mut self) -> bool;
    /// The fd whose bytes are the application's bytes, for `splice`; `None`
    /// when the transport transforms them (TLS).
    fn splice_fd(&self) -> Option<BorrowedFd<'_>>;
    /// The socket turned writable: send what the transport still holds
    /// (TLS ciphertext left over from an earlier write).
    fn on_writable(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn is_tls(&self) -> bool {
        false
    }
    /// The end of the stream is known and still to be read (a TLS
    /// `close_notify` that came with the last data): a short read does not
    /// mean the stream is empty.
    fn end_pending(&self) -> bool {
        false
    }
    /// Advances a handshake (TLS) as far as the socket allows.
    fn handshake(&mut self) -> io::Result<Handshake> {
        Ok(Handshake::Done)
    }
}

/// Where a transport's handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    Done,
    /// Waiting for bytes from the peer (the socket was read to `EAGAIN`).
    WantRead,
    /// Waiting for room to send (a write hit `EAGAIN`).
    WantWrite,
}

/// A plain TCP connection.
#[derive(Debug)]
pub struct Tcp {
    fd: OwnedFd,
}

impl Tcp {
    pub fn new(fd: OwnedFd) -> Tcp {
        Tcp { fd }
    }
}

impl Transport for Tcp {
    #[inline]
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.fd.as_fd(), buf)
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::writev(self.fd.as_fd(), bufs)
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        sys::take_error(self.fd.as_fd())
    }

    fn shutdown_write(&mut self) {
        sys::shutdown_write(self.fd.as_fd())
    }

    fn peer_closed_or_dirty(&mut self) -> bool {
        sys::peer_closed_or_dirty(self.fd.as_fd())
    }

    #[inline]
    fn splice_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }
}

/// An upstream connection: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Conn {
    Plain(Tcp),
    Tls(Box<tls::Tls>),
}

impl Transport for Conn {
    #[inline]
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Plain(t) => t.fd(),
            Conn::Tls(t) => t.fd(),
        }
    }

    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(t) => t.read(buf),
            Conn::Tls(t) => t.read(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Conn::Plain(t) => t.write_vectored(bufs),
            Conn::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Conn::Plain(t) => t.take_error(),
            Conn::Tls(t) => t.take_error(),
        }
    }

    fn shutdown_write(&mut self) {
        match self {
            Conn::Plain(t) => t.shutdown_write(),
            Conn::Tls(t) => t.shutdown_write(),
        }
    }

    fn peer_closed_or_dirty(&mut self) -> bool {
        match self {
            Conn::Plain(t) => t.peer_closed_or_dirty(),
            Conn::Tls(t) => t.peer_closed_or_dirty(),
        }
    }

    #[inline]
    fn splice_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Conn::Plain(t) => t.splice_fd(),
            Conn::Tls(t) => t.splice_fd(),
        }
    }

    #[inline]
    fn on_writable(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(_) => Ok(()),
            Conn::Tls(t) => t.on_writable(),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    #[inline]
    fn end_pending(&self) -> bool {
        match self {
            Conn::Plain(_) => false,
            Conn::Tls(t) => t.end_pending(),
        }
    }

    fn handshake(&mut self) -> io::Result<Handshake> {
        match self {
            Conn::Plain(_) => Ok(Handshake::Done),
            Conn::Tls(t) => t.handshake(),
        }
    }
}

impl Conn {
    /// A client of the TLS listener whose handshake has not finished.
    pub fn listener_handshaking(&self) -> bool {
        match self {
            Conn::Plain(_) => false,
            Conn::Tls(t) => t.listener_handshaking(),
        }
    }
}

/// What one read or write did.
#[derive(Debug)]
pub enum Io {
    /// Moved this many bytes (0 after EINTR: just try again).
    Moved(usize),
    /// The stream is not ready; its readiness flag was cleared.
    Blocked,
    /// End of stream (reads only).
    Eof,
    Failed(io::Error),
}

impl Io {
    /// The error behind a failed read or write (end of stream as `UnexpectedEof`).
    pub fn into_error(self) -> io::Error {
        match self {
            Io::Failed(e) => e,
            _ => io::ErrorKind::UnexpectedEof.into(),
        }
    }
}

/// A transport and its readiness. Edge-triggered: an event sets a flag, a
/// short read or write (or `EAGAIN`) clears it, so no syscall is spent on a
/// stream known to be empty or full.
pub struct Stream<T: Transport> {
    pub io: T,
    pub readable: bool,
    pub writable: bool,
    /// The peer shut its write side: keep reading until end of stream.
    pub hup: bool,
}

impl<T: Transport> Stream<T> {
    pub fn new(io: T, readable: bool, writable: bool) -> Stream<T> {
        Stream {
            io,
            readable,
            writable,
            hup: false,
        }
    }

    /// Records what the poller reported; a writable socket first takes what
    /// the transport still holds (an error shows at the next read or write).
    #[inline]
    pub fn on_event(&mut self, readable: bool, writable: bool, hup: bool) {
        self.readable |= readable;
        self.writable |= writable;
        self.hup |= hup;
        if writable {
            let _ = self.io.on_writable();
        }
    }

    /// Advances the transport's handshake; true once it is done. The
    /// readiness flag it waits on is cleared (it ran into `EAGAIN`).
    pub fn handshake(&mut self) -> io::Result<bool> {
        match self.io.handshake()? {
            Handshake::Done => Ok(true),
            Handshake::WantRead => {
                self.readable = false;
                Ok(false)
            }
            Handshake::WantWrite => {
                self.writable = false;
                Ok(false)
            }
        }
    }

    /// Reads into the free space of `buf`. A short read means the stream is
    /// empty, unless the peer has hung up (then the end of stream is still
    /// to be read).
    #[inline]
    pub fn read_into(&mut self, buf: &mut Buf) -> Io {
        let spare = buf.spare();
        let want = spare.len();
        if want == 0 {
            return Io::Blocked;
        }
        match self.io.read(spare) {
            Ok(0) => Io::Eof,
            Ok(n) => {
                buf.commit(n);
                if n < want && !self.hup && !self.io.end_pending() {
                    self.readable = false;
                }
                Io::Moved(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Io::Blocked
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Io::Moved(0),
            Err(e) => Io::Failed(e),
        }
    }

    /// Writes `bufs` with one vectored write; a short write means the stream
    /// is full.
    #[inline]
    pub fn write_from(&mut self, bufs: &[IoSlice<'_>]) -> Io {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        match self.io.write_vectored(bufs) {
            Ok(n) => {
                if n < total {
                    self.writable = false;
                }
                Io::Moved(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                Io::Blocked
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Io::Moved(0),
            Err(e) => Io::Failed(e),
        }
    }
}
