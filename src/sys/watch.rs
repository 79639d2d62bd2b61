//! Watching a file for changes (inotify on Linux; elsewhere the caller
//! compares modification times).
#![allow(unsafe_code)]

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// ---- file watching ---------------------------------------------------------

/// inotify on a file's directory, reporting changes to that one name.
#[cfg(target_os = "linux")]
pub struct Inotify {
    fd: OwnedFd,
    name: std::ffi::OsString,
}

#[cfg(target_os = "linux")]
impl Inotify {
    /// Watches `path` by its directory: writes closed (`IN_CLOSE_WRITE`) and
    /// renames onto it (`IN_MOVED_TO`).
    pub fn watch_file(path: &std::path::Path) -> io::Result<Inotify> {
        use std::os::unix::ffi::OsStrExt;
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?
            .to_os_string();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let mut cdir = dir.as_os_str().as_bytes().to_vec();
        cdir.push(0);
        // SAFETY: flag arguments only; the new fd is wrapped at once.
        let raw = syscall!(inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC))?;
        // SAFETY: inotify_init1 returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: cdir is NUL-terminated; fd is a live inotify instance.
        syscall!(inotify_add_watch(
            fd.as_raw_fd(),
            cdir.as_ptr().cast(),
            libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO
        ))?;
        Ok(Inotify { fd, name })
    }

    /// inotify on each of `dirs`, reporting any change of any name in them
    /// (the caller decides whether its file changed: a symlink chain, as
    /// Kubernetes mounts a ConfigMap, is replaced by renaming a link).
    pub fn watch_dirs(dirs: &[std::path::PathBuf]) -> io::Result<Inotify> {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: flag arguments only; the new fd is wrapped at once.
        let raw = syscall!(inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC))?;
        // SAFETY: inotify_init1 returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for dir in dirs {
            let mut cdir = dir.as_os_str().as_bytes().to_vec();
            cdir.push(0);
            // SAFETY: cdir is NUL-terminated; fd is a live inotify instance.
            syscall!(inotify_add_watch(
                fd.as_raw_fd(),
                cdir.as_ptr().cast(),
                libc::IN_CLOSE_WRITE
                    | libc::IN_MOVED_TO
                    | libc::IN_MOVED_FROM
                    | libc::IN_CREATE
                    | libc::IN_DELETE
                    | libc::IN_ATTRIB
                    | libc::IN_DELETE_SELF
                    | libc::IN_MOVE_SELF
            ))?;
        }
        Ok(Inotify {
            fd,
            name: std::ffi::OsString::new(),
        })
    }

    /// Drains pending events; true if there was any (a `watch_dirs`
    /// instance), or one named the watched file (`watch_file`).
    pub fn file_changed(&mut self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let want = self.name.as_bytes();
        let mut hit = false;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: buf is writable for its length; fd is non-blocking.
            let n = match syscall!(read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len()
            )) {
                Ok(n) if n > 0 => n as usize,
                _ => return hit,
            };
            let head = std::mem::size_of::<libc::inotify_event>();
            let mut off = 0;
            while off + head <= n {
                // The kernel writes whole events; fields read by offset, since
                // the buffer's alignment is only that of u8.
                let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap()) as usize;
                let name_end = (off + head + len).min(n);
                let name = &buf[off + head..name_end];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                hit |= want.is_empty() || name == want;
                off = name_end;
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub struct Inotify;

#[cfg(not(target_os = "linux"))]
impl Inotify {
    /// Not on this system: the caller falls back to checking the file's
    /// modification time.
    pub fn watch_file(_path: &std::path::Path) -> io::Result<Inotify> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn watch_dirs(_dirs: &[std::path::PathBuf]) -> io::Result<Inotify> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn file_changed(&mut self) -> bool {
        false
    }
}
