//! The shared-memory region: what every worker of one load balancer reads
//! its backends and health from, and writes its counters to, whether the
//! workers are processes (mp) or threads (sp).
//!
//! Created once, before any worker starts (`memfd_create` + `mmap(MAP_SHARED)`
//! on Linux, an anonymous shared mapping elsewhere), so forked workers inherit
//! it at the same address. It holds no pointers: hostnames are inline,
//! counters are plain atomics. It is never unmapped, so it is handed out as
//! `&'static Region`.
//!
//! Layout (offsets asserted below, `LAYOUT_VERSION` bumped on any change):
//!
//! | offset | size | block |
//! |---:|---:|---|
//! | 0 | 64 | [`Header`]: magic, layout version, region size |
//! | 64 | 64 | [`Control`]: `active_index`, `backend_count`, `generation`, `seq`, `rr_counter`, `owner` |
//! | 128 | 64 | [`Process`]: live workers, restarts, start time |
//! | 192 | 256 | [`Settings`]: strategy, health thresholds, probe settings |
//! | 448 | 1088 | [`HealthState`]: bitmap (1 = healthy) and consecutive counters |
//! | 1536 | 2 × 17984 | two [`BackendArray`]s of 64 [`BackendEntry`] (280 bytes each) |
//! | 37504 | 64 × 12672 | one [`Metrics`] slot per worker, cache-line aligned: counters (1224), request histogram (128), 64 per-backend histograms (64 × 128), 64 × 5 backend error counters (2560), 4 more counters (32), requests in flight per backend (64 × 8), padding |
//! | 848512 | 2176 | [`Runtime`]: what a reload changes in running workers |
//!
//! 815,744 bytes in all (797 KiB), mapped once per load balancer whatever
//! the number of workers; the slots of workers that do not exist are never
//! written.
//!
//! Who writes what: the supervisor (one thread, one process) writes the
//! backend arrays, `Control` and `Process`; each worker writes only its own
//! `Metrics` slot and `rr_counter`; health is written by whoever observes a
//! result (workers, later the prober) with single atomic operations.
#![allow(unsafe_code)]

use crate::config::{HealthSettings, Strategy, MAX_BACKENDS};
use crate::health::HealthState;
use crate::metrics::Metrics;
use std::cell::UnsafeCell;
use std::io;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// "LBREGION" in ASCII.
pub const MAGIC: u64 = 0x4C42_5245_4749_4F4E;
/// Bumped whenever a block below changes size, order or meaning.
pub const LAYOUT_VERSION: u32 = 4;
/// Worker slots in the region: the most workers one load balancer runs.
pub const MAX_WORKERS: usize = 64;
/// Longest hostname (RFC 1035), stored NUL-terminated.
pub const HOST_BYTES: usize = 254;

#[repr(C, align(64))]
pub struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    /// `size_of::<Region>()`, so a process of another build refuses to adopt it.
    pub size: AtomicU32,
}
const _: () = assert!(size_of::<Header>() == 64);

/// The spec's control block. `seq` is the seqlock over the backend arrays:
/// odd while the supervisor writes one, even when they are stable.
#[repr(C, align(64))]
pub struct Control {
    /// Which of the two backend arrays is live (0 or 1).
    pub active_index: AtomicU32,
    /// Backends in the live array.
    pub backend_count: AtomicU32,
    /// Configuration generation: 1 at start, +1 per published change.
    pub generation: AtomicU64,
    pub seq: AtomicU64,
    /// Round robin across all workers: each pick takes the next number.
    pub rr_counter: AtomicU64,
    /// The pid of the supervisor that owns the region: the only process
    /// that may publish, and the one whose workers' gauges (`workers_live`,
    /// a dead worker's slot gauges) count. Set at creation; at an upgrade
    /// the old owner hands it over with a compare-and-swap once the
    /// successor reported ready ([`Region::hand_over`]).
    pub owner: AtomicU32,
    /// The pid of the successor that has taken over (published its
    /// configuration): the old owner drains only once this names the pid it
    /// handed over to, and takes the region back if that never comes.
    pub taken: AtomicU32,
}
const _: () = assert!(size_of::<Control>() == 64);
const _: () = assert!(offset_of!(Control, owner) == 32);

/// What the supervisor knows about its workers, for `/metrics`.
#[repr(C, align(64))]
pub struct Process {
    pub workers_live: AtomicU32,
    pub workers_configured: AtomicU32,
    /// Workers restarted after dying (process exit, signal, or thread panic).
    pub worker_restarts: AtomicU64,
    /// `CLOCK_MONOTONIC` ms when the region was created (uptime).
    pub started_ms: AtomicU64,
    /// Configuration reloads applied, and refused (the old set kept).
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Binary upgrades this region has been handed over through.
    pub upgrades: AtomicU64,
    /// Upgrades that did not hand over (the successor failed, was not ready
    /// in time, or was cancelled by a stop signal).
    pub upgrades_failed: AtomicU64,
}
const _: () = assert!(size_of::<Process>() == 64);

/// Longest path the runtime block holds (access log, CA file).
pub const RUNTIME_PATH_BYTES: usize = 1024;

/// The settings a reload applies to running workers besides the backend
/// set: timeouts, forwarding, buffering and limits, `/metrics` on the
/// traffic port, the access log's path and the CA file for new backend
/// connections ([`Runtime::from_config`], [`Runtime::apply`]).
#[repr(C, align(64))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    /// 0 until first published (then workers keep their start config).
    pub set: u32,
    /// Bit 0: `/metrics` on the traffic port.
    pub flags: u32,
    /// client_header, client_idle, upstream_connect, upstream_response,
    /// body_progress, client_body (ms).
    pub timeouts_ms: [u64; 6],
    pub client_body_min_rate: u64,
    pub max_body_bytes: u64,
    pub request_buffer_bytes: u64,
    pub max_connections: u64,
    pub pool_max_conn: u64,
    pub upstream_idle_ms: u64,
    /// x_forwarded_for, x_forwarded_proto, forwarded: 0 append, 1 replace,
    /// 2 off (the fourth byte is unused).
    pub forwarded: [u8; 4],
    /// Bit i: `IDENTITY_HEADERS[i]` is trusted.
    pub trusted: u32,
    pub access_log_len: u32,
    pub ca_file_len: u32,
    pub access_log: [u8; RUNTIME_PATH_BYTES],
    pub ca_file: [u8; RUNTIME_PATH_BYTES],
}
const _: () = assert!(size_of::<Runtime>() == 2176);

impl Runtime {
    /// The runtime part of `cfg`. Paths longer than [`RUNTIME_PATH_BYTES`]
    /// are not carried (the start value then stays).
    pub fn from_config(cfg: &crate::config::Config) -> Runtime {
        use crate::config::HeaderMode;
        let t = &cfg.timeouts;
        let mode = |m: HeaderMode| match m {
            HeaderMode::Append => 0,
            HeaderMode::Replace => 1,
            HeaderMode::Off => 2,
        };
        let path = |p: &Option<std::path::PathBuf>, out: &mut [u8; RUNTIME_PATH_BYTES]| {
            use std::os::unix::ffi::OsStrExt;
            let b = p.as_ref().map_or(&[][..], |p| p.as_os_str().as_bytes());
            if b.len() > RUNTIME_PATH_BYTES {
                return 0;
            }
            out[..b.len()].copy_from_slice(b);
            b.len() as u32
        };
        let mut r = Runtime {
            set: 1,
            flags: u32::from(cfg.metrics_on_traffic_port),
            timeouts_ms: [
                t.client_header,
                t.client_idle,
                t.upstream_connect,
                t.upstream_response,
                t.body_progress,
                t.client_body,
            ]
            .map(|d| d.as_millis() as u64),
            client_body_min_rate: t.client_body_min_rate,
            max_body_bytes: cfg.max_body_bytes,
            request_buffer_bytes: cfg.request_buffer_bytes,
            max_connections: cfg.max_connections as u64,
            pool_max_conn: cfg.pool_max_conn as u64,
            upstream_idle_ms: cfg.timeouts.upstream_idle.as_millis() as u64,
            forwarded: [
                mode(cfg.forwarded.x_forwarded_for),
                mode(cfg.forwarded.x_forwarded_proto),
                mode(cfg.forwarded.forwarded),
                0,
            ],
            trusted: crate::config::IDENTITY_HEADERS
                .iter()
                .enumerate()
                .filter(|(_, n)| cfg.trusted_client_headers.iter().any(|t| t == *n))
                .fold(0u32, |m, (i, _)| m | 1 << i),
            access_log_len: 0,
            ca_file_len: 0,
            access_log: [0; RUNTIME_PATH_BYTES],
            ca_file: [0; RUNTIME_PATH_BYTES],
        };
        r.access_log_len = path(&cfg.access_log, &mut r.access_log);
        r.ca_file_len = path(&cfg.ca_file, &mut r.ca_file);
        r
    }

    /// The CA file in this block (`None`: the system store, or never set).
    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        runtime_path(self.ca_file_len, &self.ca_file)
    }

    /// Writes these settings into `cfg` (a worker's copy). Every value read
    /// from the region is clamped: another process's bad write must not
    /// become a panic or a nonsense limit here.
    pub fn apply(&self, cfg: &mut crate::config::Config) {
        use crate::config::HeaderMode;
        use std::time::Duration;
        if self.set == 0 {
            return;
        }
        let ms = |i: usize| Duration::from_millis(self.timeouts_ms[i].clamp(1, 86_400_000));
        let t = &mut cfg.timeouts;
        (t.client_header, t.client_idle, t.upstream_connect) = (ms(0), ms(1), ms(2));
        (t.upstream_response, t.body_progress, t.client_body) = (ms(3), ms(4), ms(5));
        t.client_body_min_rate = self.client_body_min_rate.min(1 << 30);
        cfg.max_body_bytes = self.max_body_bytes.min(u64::MAX >> 1);
        cfg.request_buffer_bytes = self.request_buffer_bytes.min(16 * 1024 * 1024);
        cfg.max_connections =
            self.max_connections
                .min(crate::config::MAX_CONNECTIONS_LIMIT as u64) as usize;
        cfg.pool_max_conn = self.pool_max_conn.min(1_000_000) as usize;
        cfg.timeouts.upstream_idle =
            Duration::from_millis(self.upstream_idle_ms.clamp(1, 86_400_000));
        let mode = |m: u8| match m {
            0 => HeaderMode::Append,
            1 => HeaderMode::Replace,
            _ => HeaderMode::Off,
        };
        cfg.forwarded.x_forwarded_for = mode(self.forwarded[0]);
        cfg.forwarded.x_forwarded_proto = mode(self.forwarded[1]);
        cfg.forwarded.forwarded = mode(self.forwarded[2]);
        cfg.metrics_on_traffic_port = self.flags & 1 != 0;
        cfg.trusted_client_headers = crate::config::IDENTITY_HEADERS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.trusted & (1 << i) != 0)
            .map(|(_, n)| n.to_string())
            .collect();
        cfg.access_log = runtime_path(self.access_log_len, &self.access_log);
        cfg.ca_file = self.ca_file();
    }
}

/// A path held in the runtime block (`len` clamped: never trusted).
fn runtime_path(len: u32, b: &[u8; RUNTIME_PATH_BYTES]) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let n = (len as usize).min(RUNTIME_PATH_BYTES);
    (n > 0).then(|| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&b[..n])))
}

/// Tries a reader makes before backing off (`Region::read_backends`).
pub const READ_SPINS: u32 = 100_000;

/// `publish` by a process that does not own the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOwner {
    /// The pid that owns it.
    pub owner: u32,
}

impl std::fmt::Display for NotOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the shared region belongs to pid {}: only its owner publishes",
            self.owner
        )
    }
}

/// Longest `health_path` the region holds.
pub const HEALTH_PATH_BYTES: usize = 220;

/// What a configuration change may change besides the backends, published
/// with them under the same seqlock: workers follow the strategy and
/// thresholds, the prober the probe settings.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct Settings {
    /// `Strategy` as 0 round robin, 1 weighted, 2 random.
    pub strategy: u32,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub health_path_len: u32,
    pub probe_interval_ms: u64,
    pub probe_timeout_ms: u64,
    pub health_path: [u8; HEALTH_PATH_BYTES],
}
const _: () = assert!(size_of::<Settings>() == 256);

impl Settings {
    pub fn new(strategy: Strategy, h: &HealthSettings) -> Settings {
        let mut s = Settings {
            strategy: match strategy {
                Strategy::RoundRobin => 0,
                Strategy::WeightedRoundRobin => 1,
                Strategy::Random => 2,
                Strategy::LeastConnections => 3,
                Strategy::P2c => 4,
            },
            unhealthy_threshold: h.unhealthy_threshold,
            healthy_threshold: h.healthy_threshold,
            health_path_len: 0,
            probe_interval_ms: h.probe_interval_ms,
            probe_timeout_ms: h.probe_timeout_ms,
            health_path: [0; HEALTH_PATH_BYTES],
        };
        let n = h.health_path.len().min(HEALTH_PATH_BYTES);
        s.health_path[..n].copy_from_slice(&h.health_path.as_bytes()[..n]);
        s.health_path_len = n as u32;
        s
    }

    pub fn strategy(&self) -> Strategy {
        match self.strategy {
            1 => Strategy::WeightedRoundRobin,
            2 => Strategy::Random,
            3 => Strategy::LeastConnections,
            4 => Strategy::P2c,
            _ => Strategy::RoundRobin,
        }
    }

    pub fn health(&self) -> HealthSettings {
        let n = (self.health_path_len as usize).min(HEALTH_PATH_BYTES);
        HealthSettings {
            unhealthy_threshold: self.unhealthy_threshold,
            healthy_threshold: self.healthy_threshold,
            probe_interval_ms: self.probe_interval_ms,
            probe_timeout_ms: self.probe_timeout_ms,
            health_path: String::from_utf8_lossy(&self.health_path[..n]).into_owned(),
        }
    }
}

/// One backend as the workers see it. Inline, fixed-size, pointer-free.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BackendEntry {
    /// Hostname as configured, NUL-terminated.
    pub host: [u8; HOST_BYTES],
    pub port: u16,
    pub weight: u16,
    pub tls: u8,
    /// 4 or 6: which part of `ip` is the resolved address.
    pub family: u8,
    pub ip: [u8; 16],
    /// Stable identity: the slot of this backend's health state and
    /// counters, kept by a backend across configuration changes.
    pub id: u32,
}
const _: () = assert!(size_of::<BackendEntry>() == 280);
const _: () = assert!(offset_of!(BackendEntry, port) == 254);
const _: () = assert!(offset_of!(BackendEntry, ip) == 260);

impl BackendEntry {
    pub const EMPTY: BackendEntry = BackendEntry {
        host: [0; HOST_BYTES],
        port: 0,
        weight: 0,
        tls: 0,
        family: 0,
        ip: [0; 16],
        id: 0,
    };

    /// An entry for `host` (at most 253 bytes), resolved to `addr`.
    pub fn new(host: &str, addr: SocketAddr, weight: u16, tls: bool, id: u32) -> BackendEntry {
        let mut e = BackendEntry::EMPTY;
        let n = host.len().min(HOST_BYTES - 1);
        e.host[..n].copy_from_slice(&host.as_bytes()[..n]);
        e.port = addr.port();
        e.weight = weight;
        e.tls = u8::from(tls);
        e.id = id;
        match addr.ip() {
            IpAddr::V4(v4) => {
                e.family = 4;
                e.ip[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                e.family = 6;
                e.ip = v6.octets();
            }
        }
        e
    }

    /// Whether `self` and `other` are the same backend: how it is reached
    /// (address, port, TLS on or off) and the name it is verified as (its
    /// host). The one identity used by the ids (`assign_ids`), the pools
    /// (a worker closes the idle connections of an id whose backend
    /// changed) and the prober. A change of any part is a new backend.
    pub fn same_backend(&self, other: &BackendEntry) -> bool {
        self.port == other.port
            && self.tls == other.tls
            && self.family == other.family
            && self.ip == other.ip
            && self.host().eq_ignore_ascii_case(other.host())
    }

    pub fn host(&self) -> &str {
        let n = self.host.iter().position(|&b| b == 0).unwrap_or(HOST_BYTES);
        std::str::from_utf8(&self.host[..n]).unwrap_or("?")
    }

    pub fn addr(&self) -> SocketAddr {
        let ip = if self.family == 6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            ))
        };
        SocketAddr::new(ip, self.port)
    }

    /// Whether the backend was given by name, not as the IP literal of its
    /// own address: one name can stand for several backends (a name
    /// followed through DNS), told apart by their addresses. A DNS name
    /// that reads like an IP (an SRV target `1.2.3.4` with A records of
    /// its own) is a name too.
    pub fn is_named(&self) -> bool {
        let h = self.host();
        let h = h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h);
        h.parse::<IpAddr>().ok() != Some(self.addr().ip())
    }

    /// How logs name it: `host:port`, and for a named backend the address
    /// it stands for, `host:port (ip:port)`.
    pub fn display_name(&self) -> String {
        if self.is_named() {
            format!("{}:{} ({})", self.host(), self.port, self.addr())
        } else {
            format!("{}:{}", self.host(), self.port)
        }
    }
}

#[repr(C, align(64))]
pub struct BackendArray {
    count: UnsafeCell<u32>,
    entries: UnsafeCell<[BackendEntry; MAX_BACKENDS]>,
}
const _: () = assert!(size_of::<BackendArray>() == 17984);

/// The whole region.
#[repr(C)]
pub struct Region {
    pub header: Header,
    pub control: Control,
    pub process: Process,
    settings: UnsafeCell<Settings>,
    pub health: HealthState,
    arrays: [BackendArray; 2],
    pub workers: [Metrics; MAX_WORKERS],
    /// What a reload changes in the workers besides backends (published
    /// with them, under the same seqlock).
    runtime: UnsafeCell<Runtime>,
}
const _: () = assert!(offset_of!(Region, control) == 64);
const _: () = assert!(offset_of!(Region, process) == 128);
const _: () = assert!(offset_of!(Region, settings) == 192);
const _: () = assert!(offset_of!(Region, health) == 448);
const _: () = assert!(size_of::<HealthState>() == 1088);
const _: () = assert!(offset_of!(Region, arrays) == 1536);
const _: () = assert!(offset_of!(Region, workers) == 1536 + 2 * 17984);
const _: () = assert!(size_of::<Metrics>() == 12672);
const _: () = assert!(offset_of!(Metrics, request_duration) == 1224);
const _: () = assert!(offset_of!(Metrics, upstream_response) == 1352);
const _: () = assert!(offset_of!(Metrics, backend_errors) == 1352 + MAX_BACKENDS * 128);
const _: () = assert!(offset_of!(Region, runtime) == 37504 + MAX_WORKERS * 12672);
const _: () = assert!(size_of::<Region>() == 37504 + MAX_WORKERS * 12672 + 2176);
const _: () = assert!(size_of::<Region>() == 850_688);

// SAFETY: every field is an atomic except the backend arrays, which are
// behind UnsafeCell and written only by the single publisher under the
// seqlock protocol of `publish`/`read_backends` (readers copy with volatile
// reads and retry when `seq` moved).
unsafe impl Sync for Region {}

impl Region {
    /// Maps a new zeroed region and initialises its header. Linux: backed by
    /// a memfd (returned, so a successor process can adopt the region).
    pub fn create() -> io::Result<(&'static Region, Option<OwnedFd>)> {
        let size = size_of::<Region>();
        let fd = memfd(size)?;
        let raw = fd.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        let flags = if fd.is_some() {
            libc::MAP_SHARED
        } else {
            libc::MAP_SHARED | libc::MAP_ANONYMOUS
        };
        // SAFETY: a fresh mapping of `size` bytes; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping is page-aligned (more than Region's 64), `size`
        // bytes long, zero-filled (a valid Region: atomics and plain integers
        // whose zero is a valid value), never unmapped, so 'static holds.
        let region: &'static Region = unsafe { &*p.cast::<Region>() };
        region.header.magic.store(MAGIC, Ordering::Relaxed);
        region
            .header
            .version
            .store(LAYOUT_VERSION, Ordering::Relaxed);
        region.header.size.store(size as u32, Ordering::Relaxed);
        region
            .process
            .started_ms
            .store(crate::sys::now_ms(), Ordering::Relaxed);
        region
            .control
            .owner
            .store(crate::sys::getpid() as u32, Ordering::Release);
        Ok((region, fd))
    }

    /// Whether process `pid` owns the region (may publish, owns the gauges).
    #[inline]
    pub fn owned_by(&self, pid: u32) -> bool {
        self.control.owner.load(Ordering::Acquire) == pid
    }

    /// `Ok` if this process owns the region, else who does.
    pub fn check_owner(&self) -> Result<(), NotOwner> {
        let owner = self.control.owner.load(Ordering::Acquire);
        if owner == crate::sys::getpid() as u32 {
            Ok(())
        } else {
            Err(NotOwner { owner })
        }
    }

    /// Takes the region from an owner that died (`dead`, not this process):
    /// a successor whose predecessor was killed during the upgrade. A
    /// publish the dead owner left half done (`seq` odd) is closed: nobody
    /// else writes, and readers would otherwise wait for ever.
    pub fn take_over_from_dead(&self, dead: u32, me: u32) -> bool {
        if !self.hand_over(dead, me) {
            return false;
        }
        let c = &self.control;
        let s = c.seq.load(Ordering::Acquire);
        if s & 1 == 1 {
            c.seq.store(s + 1, Ordering::Release);
        }
        true
    }

    /// Hands the region from `from` to `to` (an upgrade's successor that
    /// reported ready). False if `from` did not own it.
    pub fn hand_over(&self, from: u32, to: u32) -> bool {
        self.control
            .owner
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Maps the region a predecessor created (binary upgrade), refusing one
    /// of another size, magic or layout version.
    pub fn adopt(fd: OwnedFd) -> Result<(&'static Region, OwnedFd), String> {
        use std::os::fd::AsRawFd;
        let size = size_of::<Region>();
        let len = std::fs::File::from(fd.try_clone().map_err(|e| e.to_string())?)
            .metadata()
            .map_err(|e| e.to_string())?
            .len();
        if len != size as u64 {
            return Err(format!(
                "shared region is {len} bytes, this build's is {size}"
            ));
        }
        // SAFETY: a new shared mapping of the predecessor's memfd, `size`
        // bytes as checked; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error().to_string());
        }
        // SAFETY: page-aligned, `size` bytes, initialised by a process of a
        // build whose header is checked next (same magic, version and size:
        // the same layout); never unmapped.
        let region: &'static Region = unsafe { &*p.cast::<Region>() };
        region.check()?;
        Ok((region, fd))
    }

    /// Replaces the live backend set (the supervisor only; one publisher at a
    /// time). Writes the inactive array, flips `active_index`, bumps
    /// `generation`. Returns the new generation.
    ///
    /// Only the owner publishes (`NotOwner` otherwise: a successor before
    /// its hand-over, an old process after it), and `seq` is taken odd with a
    /// compare-and-swap, so even a second caller in the owner (there is none
    /// by design) waits rather than interleaving a torn array.
    pub fn publish(&self, entries: &[BackendEntry], settings: &Settings) -> Result<u64, NotOwner> {
        self.publish_all(entries, settings, None)
    }

    /// `publish`, with the runtime settings too (`None` keeps them).
    pub fn publish_all(
        &self,
        entries: &[BackendEntry],
        settings: &Settings,
        runtime: Option<&Runtime>,
    ) -> Result<u64, NotOwner> {
        self.check_owner()?;
        let n = entries.len().min(MAX_BACKENDS);
        let c = &self.control;
        let s = loop {
            let s = c.seq.load(Ordering::Relaxed);
            if s & 1 == 0
                && c.seq
                    .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break s;
            }
            std::hint::spin_loop();
        };
        fence(Ordering::Release);
        let next = 1 - c.active_index.load(Ordering::Relaxed) as usize;
        let arr = &self.arrays[next];
        // SAFETY: only the publisher writes the arrays; readers that overlap
        // see `seq` odd or changed and retry (volatile: no torn assumptions).
        unsafe {
            let dst = arr.entries.get().cast::<BackendEntry>();
            for (i, e) in entries[..n].iter().enumerate() {
                std::ptr::write_volatile(dst.add(i), *e);
            }
            std::ptr::write_volatile(arr.count.get(), n as u32);
            std::ptr::write_volatile(self.settings.get(), *settings);
            if let Some(r) = runtime {
                std::ptr::write_volatile(self.runtime.get(), *r);
            }
        }
        c.active_index.store(next as u32, Ordering::Relaxed);
        c.backend_count.store(n as u32, Ordering::Relaxed);
        let g = c.generation.fetch_add(1, Ordering::Relaxed) + 1;
        c.seq.store(s + 2, Ordering::Release);
        Ok(g)
    }

    /// The live generation: a worker compares it per request (one load).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.control.generation.load(Ordering::Acquire)
    }

    /// Copies the live backend set into `out`; returns its generation and
    /// settings.
    ///
    /// Bounded: a publish takes microseconds, so a reader that finds no
    /// stable copy in [`READ_SPINS`] tries backs off (1 ms sleeps), says so
    /// once, and gives up with what it has when this process is shutting
    /// down (a publisher that died mid-write is the only way there: its
    /// workers are told to stop by the parent-death signal).
    pub fn read_backends(&self, out: &mut Vec<BackendEntry>) -> (u64, Settings) {
        self.read_all(out, None)
    }

    /// `read_backends`, and the runtime settings of the same generation
    /// into `runtime`.
    pub fn read_all(
        &self,
        out: &mut Vec<BackendEntry>,
        mut runtime: Option<&mut Runtime>,
    ) -> (u64, Settings) {
        let c = &self.control;
        let mut tries = 0u32;
        loop {
            tries = tries.saturating_add(1);
            if tries > READ_SPINS {
                if tries == READ_SPINS + 1 {
                    crate::log!(
                        Err,
                        "region",
                        "no stable copy of the backend set after {READ_SPINS} tries (seq {}); waiting",
                        c.seq.load(Ordering::Relaxed)
                    );
                }
                if crate::sys::shutdown_requested() {
                    out.clear();
                    // SAFETY: plain-old-data; possibly torn, and only used
                    // by a process on its way out.
                    let settings = unsafe { std::ptr::read_volatile(self.settings.get()) };
                    return (0, settings);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let s1 = c.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let g = c.generation.load(Ordering::Relaxed);
            let arr = &self.arrays[c.active_index.load(Ordering::Relaxed) as usize & 1];
            out.clear();
            // SAFETY: reads of plain-old-data through volatile pointers; a
            // torn copy is detected by `seq` below and thrown away.
            unsafe {
                let n = (std::ptr::read_volatile(arr.count.get()) as usize).min(MAX_BACKENDS);
                let src = arr.entries.get().cast::<BackendEntry>();
                for i in 0..n {
                    let mut e = std::ptr::read_volatile(src.add(i));
                    // Clamped as read: an id indexes health, counters and
                    // bitmaps (`1 << id`) in every process, the master
                    // included; a bad write elsewhere must not become a
                    // panic here.
                    e.id = e.id.min(MAX_BACKENDS as u32 - 1);
                    e.weight = e.weight.max(1);
                    out.push(e);
                }
            }
            // SAFETY: as above, plain-old-data under the same seqlock.
            let settings = unsafe { std::ptr::read_volatile(self.settings.get()) };
            if let Some(r) = runtime.as_deref_mut() {
                // SAFETY: as above.
                *r = unsafe { std::ptr::read_volatile(self.runtime.get()) };
            }
            fence(Ordering::Acquire);
            if c.seq.load(Ordering::Relaxed) == s1 {
                return (g, settings);
            }
        }
    }

    /// Whether `self` is a region this build can use.
    pub fn check(&self) -> Result<(), String> {
        let h = &self.header;
        let (m, v, s) = (
            h.magic.load(Ordering::Relaxed),
            h.version.load(Ordering::Relaxed),
            h.size.load(Ordering::Relaxed) as usize,
        );
        if m != MAGIC || v != LAYOUT_VERSION || s != size_of::<Region>() {
            return Err(format!(
                "shared region: magic {m:#x} version {v} size {s}, expected {MAGIC:#x} {LAYOUT_VERSION} {}",
                size_of::<Region>()
            ));
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn memfd(size: usize) -> io::Result<Option<OwnedFd>> {
    use crate::sys::syscall;
    use std::os::fd::FromRawFd;
    let name = b"load_balancer-region\0";
    // SAFETY: name is NUL-terminated.
    let raw = syscall!(memfd_create(
        name.as_ptr().cast(),
        libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING
    ))?;
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: fd is a valid memfd.
    syscall!(ftruncate(raw, size as libc::off_t))?;
    // Its size is fixed from here on: no process holding it (a successor,
    // a worker) can shrink it under another's mapping (SIGBUS) or grow it,
    // and the seals themselves cannot be changed.
    // SAFETY: fd is a valid memfd created with MFD_ALLOW_SEALING.
    syscall!(fcntl(
        raw,
        libc::F_ADD_SEALS,
        libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL
    ))?;
    Ok(Some(fd))
}

#[cfg(not(target_os = "linux"))]
fn memfd(_size: usize) -> io::Result<Option<OwnedFd>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_flips_and_readers_see_the_new_set() {
        let (r, _fd) = Region::create().unwrap();
        r.check().unwrap();
        let a = BackendEntry::new("a.example", "127.0.0.1:1".parse().unwrap(), 5, false, 0);
        let b = BackendEntry::new("::1", "[::1]:2".parse().unwrap(), 1, true, 1);
        let st = Settings::new(Strategy::Random, &HealthSettings::default());
        assert_eq!(r.publish(&[a], &st).unwrap(), 1);
        let mut out = Vec::new();
        let (g, got) = r.read_backends(&mut out);
        assert_eq!(g, 1);
        assert_eq!(got.strategy(), Strategy::Random);
        assert_eq!(got.health(), HealthSettings::default());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].host(), "a.example");
        assert_eq!(out[0].addr(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(r.publish(&[a, b], &st).unwrap(), 2);
        assert_eq!(r.control.active_index.load(Ordering::Relaxed), 0);
        assert_eq!(r.read_backends(&mut out).0, 2);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].host(), "::1");
        assert_eq!(out[1].addr(), "[::1]:2".parse().unwrap());
        assert_eq!((out[1].weight, out[1].tls, out[1].id), (1, 1, 1));
    }

    /// Ids and weights are clamped as they are read: a bad write elsewhere
    /// (an id of 200) indexes nothing out of range in any process.
    #[test]
    fn ids_read_from_the_region_are_clamped() {
        let (r, _fd) = Region::create().unwrap();
        let st = Settings::new(Strategy::RoundRobin, &HealthSettings::default());
        let e = BackendEntry::new("a", "127.0.0.1:1".parse().unwrap(), 0, false, 200);
        r.publish(&[e], &st).unwrap();
        let mut out = Vec::new();
        r.read_backends(&mut out);
        assert_eq!((out[0].id, out[0].weight), (MAX_BACKENDS as u32 - 1, 1));
    }

    /// The region's memfd cannot change size: a successor or a worker that
    /// tried would SIGBUS every other mapping.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_region_memfd_is_sealed() {
        use std::os::fd::AsRawFd;
        let (_r, fd) = Region::create().unwrap();
        let fd = fd.expect("a memfd on Linux");
        // SAFETY: fd is a live memfd; F_GET_SEALS takes no argument.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        assert_eq!(seals & want, want, "seals {seals:#x}");
        // SAFETY: as above; a shrink the seal must refuse.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), 4096) }, -1);
    }

    #[test]
    fn long_hostnames_stay_nul_terminated() {
        let host = "h".repeat(253);
        let e = BackendEntry::new(&host, "10.0.0.1:80".parse().unwrap(), 1, false, 3);
        assert_eq!(e.host(), host);
        assert_eq!(e.host[253], 0);
    }

    #[test]
    fn concurrent_readers_never_see_a_torn_set() {
        let (r, _fd) = Region::create().unwrap();
        let sets: Vec<Vec<BackendEntry>> = (1..=4u16)
            .map(|n| {
                (0..n)
                    .map(|i| {
                        let addr = SocketAddr::from(([10, 0, 0, n as u8], 1000 + n));
                        BackendEntry::new(&format!("set{n}-{i}"), addr, n, false, i as u32)
                    })
                    .collect()
            })
            .collect();
        let st = Settings::new(Strategy::RoundRobin, &HealthSettings::default());
        r.publish(&sets[0], &st).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for k in 0..20_000 {
                    r.publish(&sets[k % 4], &st).unwrap();
                }
            });
            let mut out = Vec::new();
            for _ in 0..20_000 {
                r.read_backends(&mut out);
                let n = out.len() as u16;
                assert!(
                    out.iter().all(|e| e.weight == n && e.port == 1000 + n),
                    "torn read"
                );
            }
        });
    }
}
