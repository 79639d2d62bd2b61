//! BSD/macOS kqueue, edge-triggered (EV_CLEAR), mirroring `epoll.rs`.
//!
//! kqueue reports read and write readiness as two separate events (one per
//! filter) where epoll sends one with both bits; the worker ORs readiness
//! into the connection's state, so two events mean the same as one.
#![allow(unsafe_code)]

use super::Event;
use crate::sys::syscall;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// The field types of `struct kevent` (and libc's EVFILT_*/EV_* constants).
#[cfg(not(target_os = "netbsd"))]
type Filter = i16;
#[cfg(not(target_os = "netbsd"))]
type Flags = u16;
#[cfg(target_os = "netbsd")]
type Filter = u32;
#[cfg(target_os = "netbsd")]
type Flags = u32;

pub struct Poller {
    kq: OwnedFd,
}

/// A reusable buffer of kernel events, sized once.
pub struct Events {
    buf: Vec<libc::kevent>,
    len: usize,
}

fn kev(fd: BorrowedFd<'_>, filter: Filter, flags: Flags, token: u64) -> libc::kevent {
    // SAFETY: kevent is plain old data; all-zero is valid.
    let mut k: libc::kevent = unsafe { std::mem::zeroed() };
    k.ident = fd.as_raw_fd() as _;
    k.filter = filter;
    k.flags = flags;
    // The token rides in the pointer-sized udata: on 64-bit targets all of it.
    k.udata = token as _;
    k
}

impl Events {
    pub fn with_capacity(cap: usize) -> Events {
        // SAFETY: kevent is plain old data; all-zero is valid.
        let zero: libc::kevent = unsafe { std::mem::zeroed() };
        Events {
            buf: vec![zero; cap.max(1)],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`th event of the last wait, in epoll's terms:
    /// - read filter: `EPOLLIN`; with `EV_EOF` (the peer sent FIN) also
    ///   `EPOLLRDHUP`;
    /// - write filter: `EPOLLOUT`; with `EV_EOF` (nothing more can be sent)
    ///   also `EPOLLHUP`'s `closed` (the read filter reports the peer's FIN
    ///   on its own);
    /// - `EV_EOF` with a socket error in `fflags` (e.g. a reset), or
    ///   `EV_ERROR`: `EPOLLERR`, every flag set.
    #[inline]
    pub fn get(&self, i: usize) -> Event {
        let k = &self.buf[i];
        let eof = k.flags & libc::EV_EOF != 0;
        let err = k.flags & libc::EV_ERROR != 0 || (eof && k.fflags != 0);
        let read = k.filter == libc::EVFILT_READ;
        let write = k.filter == libc::EVFILT_WRITE;
        Event {
            token: k.udata as u64,
            readable: read || err,
            writable: write || err,
            closed: err || (write && eof),
            hup: err || (read && eof),
        }
    }
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: no arguments; the new fd is wrapped at once.
        let fd = syscall!(kqueue())?;
        // SAFETY: fd was just returned by kqueue and is owned by nobody else.
        let kq = unsafe { OwnedFd::from_raw_fd(fd) };
        // epoll's EPOLL_CLOEXEC (a kqueue is never inherited across fork,
        // but it is across exec).
        // SAFETY: kq is a live fd; FD_CLOEXEC is an integer flag.
        syscall!(fcntl(kq.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC))?;
        Ok(Poller { kq })
    }

    fn change(&self, changes: &[libc::kevent]) -> io::Result<()> {
        // SAFETY: changes is a valid array of kevent; no output buffer.
        syscall!(kevent(
            self.kq.as_raw_fd(),
            changes.as_ptr(),
            changes.len() as _,
            std::ptr::null_mut(),
            0,
            std::ptr::null()
        ))?;
        Ok(())
    }

    /// Registers `fd` for edge-triggered read and write readiness under `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let flags = libc::EV_ADD | libc::EV_CLEAR;
        self.change(&[
            kev(fd, libc::EVFILT_READ, flags, token),
            kev(fd, libc::EVFILT_WRITE, flags, token),
        ])
    }

    /// Registers a listening socket: level-triggered read (no EV_CLEAR), so
    /// that a backlog left after a bounded accept batch is reported again.
    pub fn add_listener(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.change(&[kev(fd, libc::EVFILT_READ, libc::EV_ADD, token)])
    }

    /// Removes `fd` (needed only for fds that stay open, e.g. a listener being
    /// handed over; closing an fd removes it by itself). Two calls: a
    /// listener has no write filter, and a failed change stops the batch.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let _ = self.change(&[kev(fd, libc::EVFILT_WRITE, libc::EV_DELETE, 0)]);
        self.change(&[kev(fd, libc::EVFILT_READ, libc::EV_DELETE, 0)])
    }

    /// Waits up to `timeout_ms` (-1: forever) for events.
    pub fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<()> {
        events.len = 0;
        let ts = libc::timespec {
            tv_sec: (timeout_ms / 1000) as _,
            tv_nsec: ((timeout_ms % 1000) * 1_000_000) as _,
        };
        let tsp = if timeout_ms < 0 {
            std::ptr::null()
        } else {
            &ts as *const libc::timespec
        };
        let cap = events.buf.len().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: the output buffer holds cap writable kevents; no changes.
        match syscall!(kevent(
            self.kq.as_raw_fd(),
            std::ptr::null(),
            0,
            events.buf.as_mut_ptr(),
            cap as _,
            tsp
        )) {
            Ok(n) => {
                events.len = n as usize;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}
