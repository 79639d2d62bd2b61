//! The readiness event loop: one [`Poller`] per worker, created after any
//! `fork()` (an inherited epoll instance would be shared with the parent).
//!
//! Registration is edge-triggered, for read and write at once, and never
//! modified afterwards: a connection is added once when it is opened and
//! removed by closing its fd. The worker remembers readiness itself (a short
//! read or write means "not ready until the next edge"), so no
//! `EPOLL_CTL_MOD` is issued per request. See ARCHITECTURE.md for the
//! measurement behind that choice.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use epoll::{Events, Poller};

#[cfg(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd"
))]
mod kqueue;
#[cfg(any(
    target_os = "macos",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd"
))]
pub use kqueue::{Events, Poller};

/// One readiness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Error or hang-up: reading will tell which.
    pub closed: bool,
    /// The peer shut its write side (or the socket failed): a short read
    /// does not mean "nothing more", the end of the stream is still to be read.
    pub hup: bool,
}
