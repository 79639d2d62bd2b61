//! Binary upgrade (SIGUSR2), in both modes: start the binary found at the
//! path this process was started from (a new build copied over it) with the
//! same arguments, handing it the listening socket and the shared region
//! instead of letting it bind anew (with a rebind, connections would race
//! or be refused). The successor starts its workers and reports ready on a
//! pipe; only then does this process stop accepting and drain.
//!
//! Environment of the successor (fd numbers, inherited across `exec`):
//! `LB_UPGRADE_LISTEN_FD` the listening socket (unless `-p 0`),
//! `LB_UPGRADE_TLS_FD` the TLS listener (with `--tls-port`),
//! `LB_UPGRADE_ADMIN_FD` the admin listener (with `--admin`), `LB_UPGRADE_REGION_FD` the
//! region's memfd (Linux; counters then continue), `LB_UPGRADE_READY_FD` the
//! pipe to write one byte to once serving.
//!
//! If the successor fails to start, exits, or is not ready within
//! [`READY_TIMEOUT_MS`], this process keeps serving as if nothing happened.
#![forbid(unsafe_code)]

use crate::sys;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const LISTEN_FD: &str = "LB_UPGRADE_LISTEN_FD";
pub const ADMIN_FD: &str = "LB_UPGRADE_ADMIN_FD";
pub const TLS_FD: &str = "LB_UPGRADE_TLS_FD";
pub const REGION_FD: &str = "LB_UPGRADE_REGION_FD";
pub const READY_FD: &str = "LB_UPGRADE_READY_FD";
/// How long a successor being stopped (failed or cancelled upgrade) has
/// after TERM before it is killed.
pub const STOP_GRACE_MS: u64 = 12_000;

/// How long a successor has to report ready (every worker's loop and the
/// prober running). `LB_UPGRADE_READY_TIMEOUT_MS` shortens it (tests).
pub const READY_TIMEOUT_MS: u64 = 10_000;

fn ready_timeout_ms() -> u64 {
    std::env::var("LB_UPGRADE_READY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(READY_TIMEOUT_MS)
}

/// How this process was started, recorded at start-up: by the time of a
/// SIGUSR2 the binary at that path may be another build.
pub struct SelfExe {
    pub path: PathBuf,
    pub args: Vec<OsString>,
}

impl SelfExe {
    pub fn record() -> SelfExe {
        let args: Vec<OsString> = std::env::args_os().collect();
        // The path as started (argv[0] made absolute), not /proc/self/exe,
        // which keeps naming the old file after a new one is moved over it.
        let argv0 = PathBuf::from(args.first().cloned().unwrap_or_default());
        let path = if argv0.components().count() > 1 {
            std::env::current_dir()
                .map(|d| d.join(&argv0))
                .unwrap_or(argv0)
        } else {
            std::env::current_exe().unwrap_or(argv0)
        };
        SelfExe {
            path,
            args: args.into_iter().skip(1).collect(),
        }
    }
}

/// What a successor inherited from its predecessor.
#[derive(Default)]
pub struct Inherited {
    pub listener: Option<OwnedFd>,
    pub tls: Option<OwnedFd>,
    pub admin: Option<OwnedFd>,
    pub region: Option<OwnedFd>,
    pub ready: Option<OwnedFd>,
}

impl Inherited {
    pub fn from_env() -> io::Result<Inherited> {
        Ok(Inherited {
            listener: sys::inherited_fd(LISTEN_FD)?,
            tls: sys::inherited_fd(TLS_FD)?,
            admin: sys::inherited_fd(ADMIN_FD)?,
            region: sys::inherited_fd(REGION_FD)?,
            ready: sys::inherited_fd(READY_FD)?,
        })
    }
}

/// Tells the predecessor that this process serves (one byte, then close).
pub fn report_ready(fd: OwnedFd) {
    let _ = sys::write(fd.as_fd(), b"1");
}

/// A successor started and not yet ready.
pub struct Pending {
    pub pid: libc::pid_t,
    /// Signals it without ever reaching a reused pid (a pidfd on Linux).
    pub child: sys::ChildHandle,
    ready: OwnedFd,
    deadline: u64,
}

/// How a pending upgrade ended.
pub enum Outcome {
    Ready,
    Failed(String),
}

/// Starts the successor with the listeners (and region) inherited.
pub fn start(
    exe: &SelfExe,
    listeners: &crate::proxy::Listeners,
    region: Option<BorrowedFd<'_>>,
) -> io::Result<Pending> {
    let (ready_r, ready_w) = sys::pipe_pair()?;
    let mut cmd = Command::new(&exe.path);
    cmd.args(&exe.args)
        .stdin(Stdio::null())
        .env(READY_FD, ready_w.as_raw_fd().to_string());
    let (plain, tls, admin) = (
        listeners.plain.as_ref().map(|l| l.as_fd()),
        listeners.tls.as_ref().map(|l| l.as_fd()),
        listeners.admin.as_ref().map(|l| l.as_fd()),
    );
    for (var, l) in [
        (LISTEN_FD, plain),
        (TLS_FD, tls),
        (ADMIN_FD, admin),
        (REGION_FD, region),
    ] {
        if let Some(l) = l {
            cmd.env(var, l.as_raw_fd().to_string());
        }
    }
    let shared: Vec<BorrowedFd<'_>> = [plain, tls, admin, region, Some(ready_w.as_fd())]
        .into_iter()
        .flatten()
        .collect();
    for fd in &shared {
        sys::set_cloexec(*fd, false)?;
    }
    let spawned = cmd.spawn();
    for fd in &shared {
        let _ = sys::set_cloexec(*fd, true);
    }
    // Our copy of the write end goes now: EOF on the read end then means
    // the successor is gone.
    drop(ready_w);
    let child = spawned?;
    let pid = child.id() as libc::pid_t;
    Ok(Pending {
        pid,
        child: sys::ChildHandle::new(pid),
        ready: ready_r,
        deadline: sys::now_ms() + ready_timeout_ms(),
    })
}

impl Pending {
    /// Never blocks: `None` while the successor is starting.
    pub fn poll(&self) -> Option<Outcome> {
        let mut b = [0u8; 1];
        match sys::read(self.ready.as_fd(), &mut b) {
            Ok(1) => Some(Outcome::Ready),
            Ok(_) => Some(Outcome::Failed("it exited before it was ready".into())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => (sys::now_ms() >= self.deadline)
                .then(|| Outcome::Failed(format!("not ready within {} ms", ready_timeout_ms()))),
            Err(e) => Some(Outcome::Failed(format!("ready pipe: {e}"))),
        }
    }
}
