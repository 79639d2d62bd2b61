//! Linux epoll, edge-triggered.
#![allow(unsafe_code)]

use super::Event;
use crate::sys::syscall;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub struct Poller {
    epfd: OwnedFd,
}

/// A reusable buffer of kernel events, sized once.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub fn with_capacity(cap: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; cap.max(1)],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`th event of the last wait.
    #[inline]
    pub fn get(&self, i: usize) -> Event {
        let e = self.buf[i];
        let bits = e.events as libc::c_int;
        Event {
            token: e.u64,
            readable: bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR)
                != 0,
            writable: bits & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) != 0,
            closed: bits & (libc::EPOLLHUP | libc::EPOLLERR) != 0,
            hup: bits & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0,
        }
    }
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: a flag argument only; the new fd is wrapped at once.
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: fd was just returned by epoll_create1 and is owned by nobody else.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller { epfd })
    }

    /// Registers `fd` for edge-triggered read and write readiness under `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event; fd is a live descriptor.
        syscall!(epoll_ctl(
            self.epfd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut ev
        ))?;
        Ok(())
    }

    /// Registers a listening socket: level-triggered read, so that a backlog
    /// left after a bounded accept batch is reported again; `EPOLLEXCLUSIVE`,
    /// so that a connection wakes one of the workers sharing the socket, not
    /// all of them.
    pub fn add_listener(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event; fd is a live descriptor.
        syscall!(epoll_ctl(
            self.epfd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut ev
        ))?;
        Ok(())
    }

    /// Removes `fd` (needed only for fds that stay open, e.g. a listener being
    /// handed over; closing an fd removes it by itself).
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: ev is valid (ignored by the kernel for DEL); fd is live.
        syscall!(epoll_ctl(
            self.epfd.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            &mut ev
        ))?;
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: forever) for events.
    pub fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<()> {
        events.len = 0;
        let cap = events.buf.len().min(i32::MAX as usize) as libc::c_int;
        // SAFETY: the buffer holds cap writable epoll_event entries.
        match syscall!(epoll_wait(
            self.epfd.as_raw_fd(),
            events.buf.as_mut_ptr(),
            cap,
            timeout_ms
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
