//! Active health probes. One prober per load balancer, whatever the worker
//! count: a process of its own in mp mode ("lb: prober"), a thread in sp
//! mode. It reads the live backends and probe settings from the region, so
//! it follows reloads (a new backend is probed at once, a removed one no
//! longer), and writes the region's health block.
//!
//! A probe is `GET health_path` on a new connection, answered within
//! `probe_timeout_ms`; 2xx is a success. The status line is read with the
//! project's own response parser. The first probes go one interval after
//! start (backends start healthy). Probes of all due backends run at once
//! (one `poll` over their sockets), so a hung backend delays no other. After
//! a failure a still-healthy backend is probed again at once, so a hung one
//! is out within `probe_interval_ms + probe_timeout_ms × unhealthy_threshold`.
#![forbid(unsafe_code)]

use crate::config::{HealthSettings, MAX_BACKENDS, MAX_HEADER_LINES};
use crate::http::{parse_response, HeaderRef, Status};
use crate::log;
use crate::net::tls::TlsContext;
use crate::net::{Conn, Tcp, Transport};
use crate::shm::{BackendEntry, Region};
use crate::sys::{self, RawAddr};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// Longest a probe response head may be.
const MAX_PROBE_RESPONSE: usize = 8192;
/// How long the prober sleeps at most between checks of its stop flag.
const TICK_MS: u64 = 100;

/// Runs probes until `stop()` says so. TLS backends are probed over TLS.
/// While `may_write()` is false (the prober of an upgrade's successor,
/// before its hand-over) it probes nothing: the health block is the
/// region owner's to write.
///
/// `ca_file` and `insecure` are what `tls` was made from: a reload that
/// changes the CA file (the region's runtime block) makes a new context,
/// so HTTPS backends are probed with the trust new connections use.
pub fn run(
    region: &Region,
    tls: Option<&Arc<TlsContext>>,
    ca_file: Option<std::path::PathBuf>,
    insecure: bool,
    stop: impl Fn() -> bool,
    may_write: impl Fn() -> bool,
) {
    let mut tls_now = tls.cloned();
    let mut ca_now = ca_file;
    let mut runtime = crate::shm::Runtime::from_config(&crate::config::Config::default());
    runtime.set = 0;
    let mut entries: Vec<BackendEntry> = Vec::new();
    let mut next_at = [0u64; MAX_BACKENDS];
    let mut seen_gen = 0;
    let mut known: Vec<BackendEntry> = Vec::new();
    let mut hdrs = vec![HeaderRef::default(); MAX_HEADER_LINES];
    while !stop() {
        if !may_write() {
            sys::wait_for_signal(TICK_MS as i32);
            continue;
        }
        let (gen, settings) = region.read_all(&mut entries, Some(&mut runtime));
        if runtime.set != 0 && runtime.ca_file() != ca_now {
            ca_now = runtime.ca_file();
            match TlsContext::new(ca_now.as_deref(), insecure, false) {
                Ok(t) => tls_now = Some(Arc::new(t)),
                Err(e) => log!(Err, "health", "{e}; probes keep the trust they had"),
            }
        }
        let tls = tls_now.as_ref();
        let health = settings.health();
        if seen_gen == 0 {
            // At start every backend is presumed healthy (as nginx and
            // HAProxy do) and first probed one interval in; requests that
            // fail count meanwhile.
            let first = sys::now_ms() + health.probe_interval_ms;
            for e in &entries {
                next_at[e.id as usize] = first;
            }
            known.clone_from(&entries);
            seen_gen = gen;
        } else if gen != seen_gen {
            // New backends are probed at once; the others keep their turn.
            for e in &entries {
                let same = |k: &BackendEntry| k.id == e.id && k.same_backend(e);
                if !known.iter().any(same) {
                    next_at[e.id as usize] = 0;
                }
            }
            known.clone_from(&entries);
            seen_gen = gen;
        }
        if health.probe_interval_ms == 0 {
            sys::wait_for_signal(TICK_MS as i32);
            continue;
        }
        let now = sys::now_ms();
        let due: Vec<&BackendEntry> = entries
            .iter()
            .filter(|e| next_at[e.id as usize] <= now)
            .collect();
        if !due.is_empty() {
            let results = probe_all(&due, &health, tls, &mut hdrs);
            let done = sys::now_ms();
            if region.generation() != gen {
                // The set changed under the probes: start over with the new one.
                continue;
            }
            for (e, result) in due.iter().zip(results) {
                let id = e.id as usize;
                let name = e.display_name();
                next_at[id] = now + health.probe_interval_ms;
                let Some(result) = result else {
                    // Not probed: this process is out of descriptors or
                    // memory. That says nothing about the backend.
                    continue;
                };
                match result {
                    Ok(status) => {
                        if region.health.record_probe_success(id, &health) {
                            log!(
                                Info,
                                "health",
                                "backend {name} is healthy again (probe: {status})"
                            );
                        }
                    }
                    Err(why) => {
                        let was_up = region.health.is_healthy(id);
                        if region.health.record_failure(id, done, &health) {
                            log!(
                                Warn,
                                "health",
                                "backend {name} marked unhealthy: probe: {why}"
                            );
                        } else if was_up {
                            // Still counting towards the threshold: again at once.
                            next_at[id] = done;
                        }
                        log!(Debug, "health", "backend {name}: probe failed: {why}");
                    }
                }
            }
        }
        let now = sys::now_ms();
        let wake = entries
            .iter()
            .map(|e| next_at[e.id as usize])
            .min()
            .unwrap_or(now + TICK_MS);
        let wait = wake.saturating_sub(now).min(TICK_MS);
        if wait > 0 {
            sys::wait_for_signal(wait as i32);
        }
    }
}

enum Step {
    Connecting,
    Sending(usize),
    Reading,
    Done(Result<u16, String>),
    /// Not made: a local failure (see [`probe_all`]).
    Local,
}

struct Probe {
    conn: Option<Conn>,
    step: Step,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// Probes every backend in `due` at once; one result per backend, in order:
/// `None` when no probe could be made for a local reason (no descriptor, no
/// memory: [`sys::is_local_exhaustion`]), which is no verdict on the backend.
fn probe_all(
    due: &[&BackendEntry],
    health: &HealthSettings,
    tls: Option<&Arc<TlsContext>>,
    hdrs: &mut [HeaderRef],
) -> Vec<Option<Result<u16, String>>> {
    let deadline = sys::now_ms() + health.probe_timeout_ms.max(1);
    let mut probes: Vec<Probe> = due
        .iter()
        .map(|e| {
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: load_balancer-probe\r\nConnection: close\r\n\r\n",
                health.health_path,
                host_header(e)
            )
            .into_bytes();
            let name = e.display_name();
            let conn = sys::connect(&RawAddr::new(e.addr())).and_then(|(fd, done)| {
                let tcp = Tcp::new(fd);
                let conn = match (e.tls != 0, tls) {
                    (false, _) => Conn::Plain(tcp),
                    (true, Some(ctx)) => Conn::Tls(Box::new(ctx.connect(tcp, e.host(), &name)?)),
                    (true, None) => return Err(io::Error::other("TLS is not set up")),
                };
                Ok((conn, done))
            });
            match conn {
                Ok((conn, done)) => Probe {
                    conn: Some(conn),
                    step: if done { Step::Sending(0) } else { Step::Connecting },
                    request,
                    response: Vec::new(),
                },
                Err(err) if sys::is_local_exhaustion(&err) => {
                    crate::log_limited!(
                        crate::log::Kind::AcceptFailing,
                        Err,
                        "probe of {name} not made: {err}"
                    );
                    Probe {
                        conn: None,
                        step: Step::Local,
                        request,
                        response: Vec::new(),
                    }
                }
                Err(err) => Probe {
                    conn: None,
                    step: Step::Done(Err(format!("connect: {err}"))),
                    request,
                    response: Vec::new(),
                },
            }
        })
        .collect();
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut owners = Vec::new();
        for (i, p) in probes.iter().enumerate() {
            let events = match p.step {
                Step::Connecting | Step::Sending(_) => libc::POLLOUT,
                Step::Reading => libc::POLLIN,
                Step::Done(_) | Step::Local => continue,
            };
            let conn = p.conn.as_ref().expect("a probe in progress has a socket");
            fds.push(libc::pollfd {
                fd: conn.fd().as_raw_fd(),
                events,
                revents: 0,
            });
            owners.push(i);
        }
        if fds.is_empty() {
            break;
        }
        let now = sys::now_ms();
        if now >= deadline {
            for &i in &owners {
                probes[i].step = Step::Done(Err(format!(
                    "no answer within {} ms",
                    health.probe_timeout_ms
                )));
            }
            break;
        }
        if sys::poll(&mut fds, (deadline - now) as i32).is_err() {
            continue;
        }
        for (pfd, &i) in fds.iter().zip(&owners) {
            if pfd.revents != 0 {
                advance(&mut probes[i], hdrs);
            }
        }
    }
    probes
        .into_iter()
        .map(|p| match p.step {
            Step::Done(r) => Some(r),
            Step::Local => None,
            _ => Some(Err("unfinished".into())),
        })
        .collect()
}

/// One step of one probe after its socket became ready.
fn advance(p: &mut Probe, hdrs: &mut [HeaderRef]) {
    let Some(conn) = p.conn.as_mut() else { return };
    loop {
        match p.step {
            Step::Connecting => match conn.take_error() {
                Ok(None) => p.step = Step::Sending(0),
                Ok(Some(e)) | Err(e) => p.step = Step::Done(Err(format!("connect: {e}"))),
            },
            Step::Sending(off) => match conn.write_vectored(&[IoSlice::new(&p.request[off..])]) {
                Ok(n) if off + n == p.request.len() => p.step = Step::Reading,
                Ok(n) => p.step = Step::Sending(off + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => p.step = Step::Done(Err(format!("sending: {e}"))),
            },
            Step::Reading => {
                let mut buf = [0u8; 2048];
                match conn.read(&mut buf) {
                    Ok(0) => {
                        p.step = Step::Done(Err("closed before a complete response head".into()))
                    }
                    Ok(n) => {
                        p.response.extend_from_slice(&buf[..n]);
                        match parse_response(&p.response, hdrs) {
                            Ok(Status::Complete(head)) => {
                                p.step = Step::Done(if (200..300).contains(&head.status) {
                                    Ok(head.status)
                                } else {
                                    Err(format!("status {}", head.status))
                                })
                            }
                            Ok(Status::Partial) if p.response.len() < MAX_PROBE_RESPONSE => {}
                            Ok(Status::Partial) => {
                                p.step = Step::Done(Err("response head too large".into()))
                            }
                            Err(e) => p.step = Step::Done(Err(format!("invalid response: {e}"))),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => p.step = Step::Done(Err(format!("reading: {e}"))),
                }
            }
            Step::Done(_) | Step::Local => {
                p.conn = None;
                return;
            }
        }
    }
}

/// `host[:port]` as a Host header value (IPv6 literals in brackets).
fn host_header(e: &BackendEntry) -> String {
    let host = e.host();
    if host.contains(':') {
        format!("[{host}]:{}", e.port)
    } else {
        format!("{host}:{}", e.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn serve_once(response: &'static [u8]) -> BackendEntry {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b);
                if !response.is_empty() {
                    let _ = s.write_all(response);
                } else {
                    std::thread::sleep(std::time::Duration::from_secs(2));
                }
            }
        });
        BackendEntry::new("127.0.0.1", addr, 1, false, 0)
    }

    #[test]
    fn probes_read_the_status_line_and_time_out() {
        let hs = HealthSettings {
            probe_timeout_ms: 300,
            ..HealthSettings::default()
        };
        let ok = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        let bad = serve_once(b"HTTP/1.1 503 Busy\r\nContent-Length: 3\r\n\r\n200");
        let garbage = serve_once(b"hello 200 OK\r\n\r\n");
        let hung = serve_once(b"");
        let refused = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            drop(l);
            BackendEntry::new("127.0.0.1", a, 1, false, 0)
        };
        let mut hdrs = vec![HeaderRef::default(); MAX_HEADER_LINES];
        let r = probe_all(
            &[&ok, &bad, &garbage, &hung, &refused],
            &hs,
            None,
            &mut hdrs,
        );
        let r: Vec<Result<u16, String>> = r.into_iter().map(|x| x.expect("probed")).collect();
        assert_eq!(r[0], Ok(204));
        assert_eq!(
            r[1],
            Err("status 503".to_string()),
            "not found by substring"
        );
        assert!(
            r[2].as_ref()
                .is_err_and(|e| e.starts_with("invalid response")),
            "{:?}",
            r[2]
        );
        assert!(
            r[3].as_ref().is_err_and(|e| e.contains("within 300 ms")),
            "{:?}",
            r[3]
        );
        assert!(
            r[4].as_ref().is_err_and(|e| e.starts_with("connect")),
            "{:?}",
            r[4]
        );
    }
}
