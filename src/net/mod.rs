//! Byte streams the worker reads and writes: the [`Transport`] trait, and
//! plain TCP as its first implementation. TLS to HTTPS backends will be a
//! second implementation of the same trait, so the proxy code that moves
//! bytes does not change.

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
}

/// A plain TCP connection.
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
}
