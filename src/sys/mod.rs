//! The one room where `libc` is called for plain fd and socket work.
//!
//! Every call goes through [`syscall!`], which turns `-1` into `io::Error`
//! (mio's `src/sys/unix/mod.rs` habit). File descriptors leave this module as
//! [`OwnedFd`], so closing is never forgotten and never done twice.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Calls a libc function and maps a `-1` return to the thread's `errno`.
/// Every call site documents why its arguments are valid (`// SAFETY:`).
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller's arguments are checked at each call site below;
        // the macro only adds errno handling.
        #[allow(unused_unsafe)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
/// Crate-private, as mio keeps its own: the unsafe rooms use it, nothing else.
pub(crate) use syscall;

/// `read(2)` into `buf`. `Ok(0)` is end of stream.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    let n = syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()))?;
    Ok(n as usize)
}

/// `writev(2)` of up to a few slices; a short count is normal on a full socket.
pub fn writev(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // IoSlice is guaranteed ABI-compatible with struct iovec on Unix.
    let iov = bufs.as_ptr().cast::<libc::iovec>();
    let cnt = bufs.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // MSG_NOSIGNAL is not available to writev; SIGPIPE is ignored process-wide
    // by `ignore_sigpipe` instead.
    // SAFETY: IoSlice is ABI-compatible with iovec; cnt slices are valid.
    let n = syscall!(writev(fd.as_raw_fd(), iov, cnt))?;
    Ok(n as usize)
}

/// `write(2)` of one slice.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid readable region of buf.len() bytes.
    let n = syscall!(write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()))?;
    Ok(n as usize)
}

/// A writer to a peer that has gone must get EPIPE, not a fatal signal.
pub fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN for SIGPIPE has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Where `socket`/`accept4` take no SOCK_NONBLOCK | SOCK_CLOEXEC (macOS):
/// sets both on a fresh `fd`, closing it if that fails so it never leaks.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn nonblock_cloexec(fd: RawFd) -> io::Result<RawFd> {
    // SAFETY: fd is a live descriptor owned by the caller; integer arguments.
    let res = syscall!(fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK))
        // SAFETY: as above.
        .and_then(|_| syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)));
    if let Err(e) = res {
        // SAFETY: fd is owned by nobody else and not used again.
        let _ = syscall!(close(fd));
        return Err(e);
    }
    Ok(fd)
}

fn socket(family: libc::c_int) -> io::Result<OwnedFd> {
    socket_of(family, libc::SOCK_STREAM)
}

/// A non-blocking, close-on-exec socket of `family` and type `ty`
/// (`SOCK_STREAM`, `SOCK_DGRAM`).
fn socket_of(family: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    // SAFETY: plain integer arguments; the new fd is wrapped at once below.
    let fd = syscall!(socket(
        family,
        ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0
    ))?;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    // SAFETY: plain integer arguments.
    let fd = nonblock_cloexec(syscall!(socket(family, ty, 0))?)?;
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the size passed.
    syscall!(setsockopt(
        fd,
        level,
        name,
        (&val as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t
    ))?;
    Ok(())
}

/// Disables Nagle: every response head is written in one call, and must not wait.
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// A socket address in the form the kernel takes.
#[derive(Clone, Copy)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    /// Room for any address, for the kernel to fill.
    fn empty() -> RawAddr {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        RawAddr {
            storage,
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    pub fn new(addr: SocketAddr) -> RawAddr {
        let mut raw = RawAddr::empty();
        let base = (&mut raw.storage as *mut libc::sockaddr_storage).cast::<u8>();
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_in is plain old data; all-zero is valid (and
                // sets the BSD-only sin_len to 0, which the kernel ignores).
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
                unsafe { std::ptr::write(base.cast(), sin) };
                raw.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_in6 is plain old data; all-zero is valid.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_scope_id = a.scope_id();
                // SAFETY: as above.
                unsafe { std::ptr::write(base.cast(), sin6) };
                raw.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        raw
    }

    fn family(&self) -> libc::c_int {
        self.storage.ss_family as libc::c_int
    }

    fn ip(&self) -> Option<IpAddr> {
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe {
                    &*(&self.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                Some(IpAddr::V4(Ipv4Addr::from(
                    sin.sin_addr.s_addr.to_ne_bytes(),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe {
                    &*(&self.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(match ip.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(ip),
                })
            }
            _ => None,
        }
    }

    fn socket_addr(&self) -> Option<SocketAddr> {
        let ip = self.ip()?;
        let port = match self.family() {
            // SAFETY: the family says which sockaddr the storage holds.
            libc::AF_INET => u16::from_be(unsafe {
                (*(&self.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>())
                    .sin_port
            }),
            // SAFETY: as above.
            _ => u16::from_be(unsafe {
                (*(&self.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>())
                    .sin6_port
            }),
        };
        Some(SocketAddr::new(ip, port))
    }
}

/// A non-blocking listening socket with SO_REUSEADDR (restart while old
/// connections sit in TIME_WAIT) but not SO_REUSEPORT: workers share this one
/// socket (inherited, or duplicated), and a second load balancer started on
/// the same port fails with "address in use" instead of quietly taking part
/// of the traffic.
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let raw = RawAddr::new(addr);
    let fd = socket(raw.family())?;
    setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    // SAFETY: raw holds a valid sockaddr of raw.len bytes.
    syscall!(bind(
        fd.as_raw_fd(),
        (&raw.storage as *const libc::sockaddr_storage).cast(),
        raw.len
    ))?;
    // SAFETY: fd is a live, bound socket.
    syscall!(listen(fd.as_raw_fd(), backlog))?;
    Ok(fd)
}

/// The address a socket is bound to (the port the kernel chose for port 0).
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut raw = RawAddr::empty();
    // SAFETY: storage and len are valid for writing.
    syscall!(getsockname(
        fd.as_raw_fd(),
        (&mut raw.storage as *mut libc::sockaddr_storage).cast(),
        &mut raw.len
    ))?;
    raw.socket_addr()
        .ok_or_else(|| io::Error::other("unknown address family"))
}

/// SO_LINGER with a zero timeout: closing the socket then sends a reset,
/// not a FIN.
pub fn reset_on_close(fd: BorrowedFd<'_>) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value is a live `linger` of the size passed.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        (&l as *const libc::linger).cast(),
        std::mem::size_of::<libc::linger>() as libc::socklen_t
    ))?;
    Ok(())
}

/// Accepts one connection, non-blocking and close-on-exec, with its peer's IP.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<IpAddr>)> {
    let mut raw = RawAddr::empty();
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    // SAFETY: raw.storage and raw.len are valid for the kernel to write.
    let fd = syscall!(accept4(
        listener.as_raw_fd(),
        (&mut raw.storage as *mut libc::sockaddr_storage).cast(),
        &mut raw.len,
        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
    ))?;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    // SAFETY: storage and len are valid for writing.
    let fd = nonblock_cloexec(syscall!(accept(
        listener.as_raw_fd(),
        (&mut raw.storage as *mut libc::sockaddr_storage).cast(),
        &mut raw.len
    ))?)?;
    // SAFETY: fd was just returned by accept and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, raw.ip()))
}

/// Starts a non-blocking connect. `Ok((fd, true))` if it completed at once,
/// `Ok((fd, false))` if it is in progress (writability will tell).
pub fn connect(addr: &RawAddr) -> io::Result<(OwnedFd, bool)> {
    let fd = socket(addr.family())?;
    // SAFETY: addr holds a valid sockaddr of addr.len bytes.
    match syscall!(connect(
        fd.as_raw_fd(),
        (&addr.storage as *const libc::sockaddr_storage).cast(),
        addr.len
    )) {
        Ok(_) => Ok((fd, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok((fd, false)),
        Err(e) => Err(e),
    }
}

/// A non-blocking, close-on-exec UDP socket connected to `addr`, for one
/// DNS query. It is bound to port 0 first, so the kernel picks a random
/// ephemeral source port (a fresh socket per query gives each query its own
/// port: an off-path attacker must guess port and id). Connecting makes the
/// kernel drop datagrams from any other source address and port, and turns
/// an ICMP "port unreachable" into `ECONNREFUSED` on the next `recv`.
pub fn udp_connect(addr: &RawAddr) -> io::Result<OwnedFd> {
    let fd = socket_of(addr.family(), libc::SOCK_DGRAM)?;
    let any = RawAddr::new(match addr.family() {
        libc::AF_INET6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    });
    // SAFETY: any holds a valid sockaddr of any.len bytes.
    syscall!(bind(
        fd.as_raw_fd(),
        (&any.storage as *const libc::sockaddr_storage).cast(),
        any.len
    ))?;
    // SAFETY: addr holds a valid sockaddr of addr.len bytes; a UDP connect
    // only sets the peer, it never blocks.
    syscall!(connect(
        fd.as_raw_fd(),
        (&addr.storage as *const libc::sockaddr_storage).cast(),
        addr.len
    ))?;
    Ok(fd)
}

/// `send(2)` of one datagram (or stream bytes) on a connected socket.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid readable region of buf.len() bytes.
    let n = syscall!(send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0))?;
    Ok(n as usize)
}

/// `recv(2)` of one datagram into `buf` (a longer one is cut to `buf.len()`).
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    let n = syscall!(recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0))?;
    Ok(n as usize)
}

/// Fills `buf` from the kernel's random generator (`getrandom(2)`;
/// `getentropy` on macOS): DNS query ids must be unpredictable.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        // SAFETY: rest is a valid writable region of rest.len() bytes.
        let r = syscall!(getrandom(rest.as_mut_ptr().cast(), rest.len(), 0)).map(|n| n as usize);
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        let r = {
            // getentropy fills at most 256 bytes a call, all or nothing.
            let n = rest.len().min(256);
            // SAFETY: rest has at least n writable bytes.
            syscall!(getentropy(rest.as_mut_ptr().cast(), n)).map(|_| n)
        };
        match r {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// This host's name (`gethostname(2)`), if it is valid UTF-8: the
/// resolver's default search domain is the part after its first dot.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for buf.len() bytes; the result is cut at the
    // first NUL below, and the last byte is never written (len - 1).
    syscall!(gethostname(buf.as_mut_ptr().cast(), buf.len() - 1)).ok()?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).ok()
}

/// The pending error of a socket (SO_ERROR): how a non-blocking connect ended.
pub fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: val and len are valid for writing and sized as passed.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_ERROR,
        (&mut val as *mut libc::c_int).cast(),
        &mut len
    ))?;
    Ok(if val == 0 {
        None
    } else {
        Some(io::Error::from_raw_os_error(val))
    })
}

/// True when a pooled connection has been closed or has unexpected bytes:
/// a non-blocking one-byte peek that finds data or end of stream.
pub fn peer_closed_or_dirty(fd: BorrowedFd<'_>) -> bool {
    let mut b = 0u8;
    // SAFETY: b is one writable byte.
    match syscall!(recv(
        fd.as_raw_fd(),
        (&mut b as *mut u8).cast(),
        1,
        libc::MSG_PEEK | libc::MSG_DONTWAIT
    )) {
        Ok(_) => true, // 0 = EOF, 1 = stray bytes: either way not reusable
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

/// An error that says this host is out of a local resource: descriptors
/// (`EMFILE`, `ENFILE`), memory (`ENOBUFS`, `ENOMEM`) or local ports
/// (`EADDRNOTAVAIL` from a connect): the proxy's problem, never a verdict on
/// the peer it was trying to reach.
pub fn is_local_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// Half-closes the write side (used after an error response, so the client
/// reads it before the connection goes).
pub fn shutdown_write(fd: BorrowedFd<'_>) {
    // SAFETY: fd is live (borrowed); shutdown only changes socket state.
    let _ = syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_WR));
}

/// Monotonic milliseconds, for deadlines (vDSO, not a real syscall on Linux).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    let _ = syscall!(clock_gettime(libc::CLOCK_MONOTONIC, &mut ts));
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// A zero-filled `MAP_SHARED | MAP_ANONYMOUS` mapping holding one `T`,
/// never unmapped: memory a process shares with the children it forks
/// afterwards (the TLS session cache, the DNS status block).
///
/// # Safety
/// All-zero bytes must be a valid `T` (atomics and plain integers only),
/// and `T` must need no more than page alignment.
pub unsafe fn map_shared_zeroed<T>() -> io::Result<&'static T> {
    let size = std::mem::size_of::<T>();
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: page-aligned, `size` bytes, zero-filled: a valid `T` by the
    // caller's promise; never unmapped, so 'static holds.
    Ok(unsafe { &*p.cast::<T>() })
}

/// Wall-clock seconds since the Unix epoch (certificate dates).
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Monotonic microseconds, for latencies (the histograms and the access
/// log's times); vDSO like [`now_ms`].
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    let _ = syscall!(clock_gettime(libc::CLOCK_MONOTONIC, &mut ts));
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// CPU time used by this process so far (user + system), in microseconds.
pub fn cpu_time_us() -> u64 {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is valid for writing.
    let _ = syscall!(getrusage(libc::RUSAGE_SELF, &mut ru));
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Linux: wake `accept` only once a request's first bytes have arrived, so
/// the first read of a new connection finds data.
pub fn set_defer_accept(fd: BorrowedFd<'_>, secs: i32) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = setsockopt_int(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        secs,
    );
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (fd, secs);
}

/// Raises the soft limit on open files to the hard limit: every client and
/// upstream connection is a descriptor (nginx's `worker_rlimit_nofile`).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to fill.
    if syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim)).is_ok() && lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: lim is a valid rlimit.
        let _ = syscall!(setrlimit(libc::RLIMIT_NOFILE, &lim));
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), after [`raise_fd_limit`].
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to fill.
    match syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim)) {
        // rlim_t is u64 on Linux and macOS, i64 on FreeBSD.
        #[allow(clippy::unnecessary_cast)]
        Ok(_) if lim.rlim_cur != libc::RLIM_INFINITY => lim.rlim_cur as u64,
        _ => 1 << 20,
    }
}

/// A pipe for `splice`: bytes move socket → pipe → socket inside the kernel.
pub struct Pipe {
    pub r: OwnedFd,
    pub w: OwnedFd,
    /// Bytes the pipe holds: a splice into it that moves fewer than this
    /// (and fewer than asked) found its source empty.
    pub cap: usize,
}

/// Bytes a splice pipe is asked to hold (the kernel may grant less).
pub const PIPE_SIZE: usize = 1 << 20;

/// A non-blocking pipe, enlarged to [`PIPE_SIZE`] where the system allows.
#[cfg(target_os = "linux")]
pub fn pipe() -> io::Result<Pipe> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC))?;
    // SAFETY: pipe2 just returned these two descriptors; nobody else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Larger pipes mean fewer splices per body; the default (64 KiB) still works.
    let _ = syscall!(fcntl(
        w.as_raw_fd(),
        libc::F_SETPIPE_SZ,
        PIPE_SIZE as libc::c_int
    ));
    // SAFETY: w is a live pipe fd; F_GETPIPE_SZ takes no argument.
    let cap = syscall!(fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ))? as usize;
    Ok(Pipe { r, w, cap })
}

/// Moves up to `len` bytes from `from` to `to` without copying them through
/// user space; one of the two must be a pipe.
#[cfg(target_os = "linux")]
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets mean "current position"; both fds are live.
    let n = syscall!(splice(
        from.as_raw_fd(),
        std::ptr::null_mut(),
        to.as_raw_fd(),
        std::ptr::null_mut(),
        len,
        libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE
    ))?;
    Ok(n as usize)
}

#[cfg(not(target_os = "linux"))]
pub fn pipe() -> io::Result<Pipe> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(target_os = "linux"))]
pub fn splice(_from: BorrowedFd<'_>, _to: BorrowedFd<'_>, _len: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

mod process;
mod watch;
pub use process::*;
pub use watch::*;
