//! Signals (flags and the self-pipe that wakes event loops), processes
//! (fork, reap, kill, names, fd inheritance for upgrades) and `poll`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

// ---- signals -------------------------------------------------------------

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// What a signal asks for. A handler only sets a flag and writes one byte to
/// the wake pipe (both async-signal-safe); loops act on the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, SIGINT, SIGQUIT: stop accepting, finish in-flight, exit.
    Shutdown,
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGUSR1: reopen log files.
    Reopen,
    /// SIGUSR2: binary upgrade.
    Upgrade,
    /// SIGCHLD: a worker process exited.
    Child,
}

const SIGNALS: usize = 5;
static FLAGS: [AtomicBool; SIGNALS] = [
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
];
/// The self-pipe: read end registered in every poller, write end for handlers.
static WAKE_R: AtomicI32 = AtomicI32::new(-1);
/// Counts SIGUSR1s received by this process: every worker (thread or
/// process) reopens its access log when it sees the count move.
static REOPEN_GEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static WAKE_W: AtomicI32 = AtomicI32::new(-1);

fn signal_of(sig: libc::c_int) -> Option<Signal> {
    Some(match sig {
        libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => Signal::Shutdown,
        libc::SIGHUP => Signal::Reload,
        libc::SIGUSR1 => Signal::Reopen,
        libc::SIGUSR2 => Signal::Upgrade,
        libc::SIGCHLD => Signal::Child,
        _ => return None,
    })
}

extern "C" fn on_signal(sig: libc::c_int) {
    if let Some(s) = signal_of(sig) {
        FLAGS[s as usize].store(true, Ordering::SeqCst);
        if s == Signal::Reopen {
            REOPEN_GEN.fetch_add(1, Ordering::SeqCst);
        }
    }
    let fd = WAKE_W.load(Ordering::Relaxed);
    if fd >= 0 {
        let saved = errno();
        // SAFETY: write(2) is async-signal-safe; a full pipe (EAGAIN) is fine,
        // the loop is awake already. errno is restored for the interrupted code.
        unsafe {
            libc::write(fd, [1u8].as_ptr().cast(), 1);
            set_errno(saved);
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn errno_ptr() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno location; always valid.
    unsafe { libc::__errno_location() }
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
fn errno_ptr() -> *mut libc::c_int {
    // SAFETY: as above.
    unsafe { libc::__error() }
}

#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
fn errno_ptr() -> *mut libc::c_int {
    // SAFETY: as above.
    unsafe { libc::__errno() }
}

fn errno() -> libc::c_int {
    // SAFETY: errno_ptr points at this thread's errno.
    unsafe { *errno_ptr() }
}

/// # Safety
/// Only for restoring a value read with `errno()` on the same thread.
unsafe fn set_errno(v: libc::c_int) {
    // SAFETY: errno_ptr points at this thread's errno.
    unsafe { *errno_ptr() = v };
}

/// A fresh non-blocking, close-on-exec self-pipe for this process (a forked
/// worker makes its own, so the master's signals do not wake it).
pub fn renew_wake_pipe() -> io::Result<()> {
    let fds = raw_pipe(true)?;
    let old_r = WAKE_R.swap(fds[0], Ordering::SeqCst);
    let old_w = WAKE_W.swap(fds[1], Ordering::SeqCst);
    for fd in [old_r, old_w] {
        if fd >= 0 {
            // SAFETY: the old pipe's fds belong to this module alone.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Installs the handlers (without `SA_RESTART`, so a loop blocked in
/// `epoll_wait` returns at once) and creates the wake pipe.
pub fn install_signals() -> io::Result<()> {
    renew_wake_pipe()?;
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGCHLD,
    ] {
        // SAFETY: sigaction is plain old data; all-zero is a valid start.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        if sig == libc::SIGCHLD {
            sa.sa_flags = libc::SA_NOCLDSTOP;
        }
        // SAFETY: sa.sa_mask is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: sa is fully initialised; the old action is not needed.
        syscall!(sigaction(sig, &sa, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// The read end of the wake pipe, to register in a poller.
pub fn wake_fd() -> Option<BorrowedFd<'static>> {
    let fd = WAKE_R.load(Ordering::Relaxed);
    // SAFETY: the wake pipe is replaced only by `renew_wake_pipe`, which a
    // forked child calls before it creates any poller; otherwise it lives as
    // long as the process.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Waits up to `timeout_ms` for a signal (or any byte on the wake pipe), then
/// empties the pipe. For the supervisor's loop; workers poll it themselves.
pub fn wait_for_signal(timeout_ms: i32) {
    let fd = WAKE_R.load(Ordering::Relaxed);
    if fd < 0 {
        std::thread::sleep(std::time::Duration::from_millis(timeout_ms as u64));
        return;
    }
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd.
    let _ = syscall!(poll(&mut p, 1, timeout_ms));
    let mut b = [0u8; 64];
    // SAFETY: fd is the non-blocking read end; b is writable.
    while syscall!(read(fd, b.as_mut_ptr().cast(), b.len())).is_ok_and(|n| n > 0) {}
}

/// How many SIGUSR1s this process has had (see `REOPEN_GEN`).
pub fn reopen_generation() -> u64 {
    REOPEN_GEN.load(Ordering::Relaxed)
}

/// Whether `s` arrived since the last call (clears it).
pub fn take_signal(s: Signal) -> bool {
    FLAGS[s as usize].swap(false, Ordering::SeqCst)
}

/// Raises `s` from inside the process (a supervisor telling its threads).
pub fn raise_flag(s: Signal) {
    FLAGS[s as usize].store(true, Ordering::SeqCst);
    let fd = WAKE_W.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: one byte from a valid buffer to the non-blocking pipe.
        let _ = syscall!(write(fd, [1u8].as_ptr().cast(), 1));
    }
}

/// Whether a shutdown signal has arrived (not cleared: every worker sees it).
#[inline]
pub fn shutdown_requested() -> bool {
    FLAGS[Signal::Shutdown as usize].load(Ordering::Relaxed)
}

// ---- processes -------------------------------------------------------------

/// CPUs this process may run on (`sched_getaffinity`), at least 1.
pub fn cpu_count() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain old data; all-zero is valid.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: set is a valid cpu_set_t of the size passed.
        if syscall!(sched_getaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set
        ))
        .is_ok()
        {
            // SAFETY: set was filled by the kernel.
            let n = unsafe { libc::CPU_COUNT(&set) };
            if n > 0 {
                return n as usize;
            }
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `fork(2)`: `Ok(0)` in the child, the child's pid in the parent. The
/// caller must be single-threaded (the master is).
pub fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the master process has one thread; the child continues with a
    // copy of it and touches only its own state.
    syscall!(fork())
}

/// Reaps one exited child without blocking: its pid and wait status.
pub fn reap_child() -> Option<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    // SAFETY: status is a valid int to write.
    match syscall!(waitpid(-1, &mut status, libc::WNOHANG)) {
        Ok(pid) if pid > 0 => Some((pid, status)),
        _ => None,
    }
}

/// How a child ended, in words ("exit status 1", "killed by signal 9").
pub fn describe_exit(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// Sends `sig` to `pid` (errors ignored: it may have just exited).
pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: integer arguments; the pid is one of our own children.
    let _ = syscall!(kill(pid, sig));
}

/// Ends a forked child at once, without running the parent's exit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Linux: names the calling thread (what `ps` and `top` show), and ties a
/// worker process to its master: it gets `sig` when the master dies.
pub fn set_process_name(name: &str) {
    #[cfg(target_os = "linux")]
    {
        let mut buf = [0u8; 16];
        let n = name.len().min(15);
        buf[..n].copy_from_slice(&name.as_bytes()[..n]);
        // SAFETY: buf is NUL-terminated and at most 16 bytes, as PR_SET_NAME reads.
        let _ = syscall!(prctl(
            libc::PR_SET_NAME,
            buf.as_ptr() as libc::c_ulong,
            0,
            0,
            0
        ));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}

/// Linux: `sig` is delivered to this process when its parent exits; false if
/// the parent is already gone (it exited before the call).
pub fn die_with_parent(sig: libc::c_int, parent: libc::pid_t) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_PDEATHSIG takes a signal number.
        let _ = syscall!(prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sig;
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() == parent }
}

/// The parent's pid (the process that started this one, until it exits).
pub fn parent_pid() -> libc::pid_t {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// A close-on-exec duplicate (each worker owns its copy of the listener).
pub fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// Sets or clears close-on-exec: cleared on the fds a successor binary
/// inherits (listener, region, ready pipe) just around its spawn.
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fd is live (borrowed); F_SETFD takes an integer flag.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFD, flag))?;
    Ok(())
}

/// Takes ownership of an fd inherited across `exec`, named by the
/// environment variable `var` (binary upgrade). `None` if unset; an error if
/// the number is not an open descriptor. The fd becomes close-on-exec again.
pub fn inherited_fd(var: &str) -> io::Result<Option<OwnedFd>> {
    let Some(v) = std::env::var_os(var) else {
        return Ok(None);
    };
    let n: RawFd = v
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 2)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{var}={v:?}")))?;
    // SAFETY: F_GETFD only asks whether n is an open descriptor.
    syscall!(fcntl(n, libc::F_GETFD))?;
    // SAFETY: n is open, was handed to this process by its predecessor for
    // it alone, and nothing else in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(n) };
    set_cloexec(fd.as_fd(), true)?;
    // Children (workers, a later successor) must not see it again.
    std::env::remove_var(var);
    Ok(Some(fd))
}

/// A close-on-exec pipe whose read end is non-blocking: (read, write).
pub fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let fds = raw_pipe(false)?;
    // SAFETY: raw_pipe just returned these two descriptors; nobody else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: r is a live pipe fd; O_NONBLOCK is an integer flag.
    syscall!(fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK))?;
    Ok((r, w))
}

/// A close-on-exec pipe (both ends non-blocking if `nonblocking`), made in
/// one call where the system has `pipe2`: no window in which a concurrent
/// `fork`/`exec` (an upgrade's successor) inherits it.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn raw_pipe(nonblocking: bool) -> io::Result<[libc::c_int; 2]> {
    let mut fds = [0 as libc::c_int; 2];
    let flags = libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    syscall!(pipe2(fds.as_mut_ptr(), flags))?;
    Ok(fds)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn raw_pipe(nonblocking: bool) -> io::Result<[libc::c_int; 2]> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe writes.
    syscall!(pipe(fds.as_mut_ptr()))?;
    for fd in fds {
        // SAFETY: fd was just returned by pipe.
        let _ = syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC));
        if nonblocking {
            // SAFETY: as above.
            let _ = syscall!(fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK));
        }
    }
    Ok(fds)
}

/// Marks every descriptor this process was started with (beyond stdin,
/// stdout and stderr) close-on-exec: whatever a parent leaked to it is not
/// the load balancer's to pass on to a successor binary or anything it runs.
/// The upgrade's own descriptors are taken afterwards ([`inherited_fd`]) and
/// opened to a successor on purpose.
pub fn cloexec_inherited() {
    let fds: Vec<RawFd> =
        match std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd")) {
            Ok(dir) => dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect(),
            Err(_) => (3..256).collect(),
        };
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: F_SETFD on a number that may or may not be open: EBADF at
        // worst; no descriptor is closed or reused.
        let _ = syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC));
    }
}

/// A handle on a child process that can be signalled without the risk of
/// reaching another process that reused its pid once it was reaped: a pidfd
/// (Linux 5.3 and later), else the pid, signalled only while `waitpid`
/// says it has not exited.
pub struct ChildHandle {
    pub pid: libc::pid_t,
    #[cfg(target_os = "linux")]
    pidfd: Option<OwnedFd>,
}

impl ChildHandle {
    /// Right after the child was started (before anyone could reap it).
    pub fn new(pid: libc::pid_t) -> ChildHandle {
        ChildHandle {
            pid,
            #[cfg(target_os = "linux")]
            // SAFETY: integer arguments; pidfd_open returns a new descriptor.
            pidfd: syscall!(syscall(libc::SYS_pidfd_open, pid, 0))
                .ok()
                // SAFETY: pidfd_open returned a descriptor nothing else owns.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
        }
    }

    /// Whether the child has exited (without reaping it when a pidfd says).
    pub fn exited(&self) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.pidfd {
            let mut p = [libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // A pidfd polls readable once its process has exited.
            return poll(&mut p, 0).is_ok_and(|n| n > 0);
        }
        // SAFETY: signal 0 only checks that the pid exists.
        syscall!(kill(self.pid, 0)).is_err()
    }

    /// Sends `sig` to the child if it still exists.
    pub fn signal(&self, sig: libc::c_int) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.pidfd {
            // SAFETY: fd is a live pidfd; a null siginfo is allowed.
            let _ = syscall!(syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0
            ));
            return;
        }
        let mut status = 0;
        // SAFETY: status is a valid int; WNOHANG never blocks. If the child
        // has exited this reaps it, and it is not signalled.
        if let Ok(0) = syscall!(waitpid(self.pid, &mut status, libc::WNOHANG)) {
            kill(self.pid, sig);
        }
    }
}

/// `poll(2)` over `fds`; the number of fds with events.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: fds is a valid, writable array of fds.len() pollfd.
    let n = syscall!(poll(
        fds.as_mut_ptr(),
        fds.len() as libc::nfds_t,
        timeout_ms
    ))?;
    Ok(n as usize)
}
