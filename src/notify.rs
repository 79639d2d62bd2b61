//! Telling the service manager and the operator's scripts where things
//! stand: the sd_notify protocol (a datagram to `$NOTIFY_SOCKET`, as systemd
//! units with `Type=notify` expect) and the pid file (`--pid-file`).
//!
//! Only the supervisor speaks here; workers never do. With
//! `NotifyAccess=all`, an upgrade keeps the unit alive: the old supervisor
//! names its successor (`MAINPID=`) when it hands over.
#![forbid(unsafe_code)]

use std::io;
use std::path::Path;

/// Sends one sd_notify message (`READY=1`, `RELOADING=1\nMONOTONIC_USEC=…`,
/// `STOPPING=1`, `MAINPID=…`) if `$NOTIFY_SOCKET` is set; otherwise does
/// nothing. A path starting with `@` is an abstract socket (Linux).
pub fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, msg) {
        crate::log!(
            Warn,
            "main",
            "NOTIFY_SOCKET {}: {e}",
            path.to_string_lossy()
        );
    }
}

fn send(path: &std::ffi::OsStr, msg: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = name;
            return Err(io::ErrorKind::Unsupported.into());
        }
    }
    sock.send_to(msg.as_bytes(), Path::new(path))?;
    Ok(())
}

/// `RELOADING=1` with the monotonic time systemd asks for.
pub fn reloading() {
    let us = crate::sys::now_us();
    sd_notify(&format!("RELOADING=1\nMONOTONIC_USEC={us}"));
}

/// Writes `pid` to `path` (a whole line, by rename: a reader never sees a
/// half-written file).
pub fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Removes `path` if it still names `pid` (after an upgrade it names the
/// successor, whose file it is then).
pub fn remove_pid_file(path: &Path, pid: u32) {
    let mine = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(pid);
    if mine {
        let _ = std::fs::remove_file(path);
    }
}
