//! Starting and running the load balancer: bind (or inherit) the listening
//! socket, create (or adopt) the shared region, run the workers (forked
//! processes in mp mode, threads in sp mode) and the prober, restart what
//! dies, act on signals, and map failures to exit codes (2: bad
//! configuration, 1: could not start).
//!
//! The supervisor never touches a client connection: it holds the listening
//! socket (so a worker's death loses no queued connection) and the region,
//! and it is the only writer of the region's backend arrays (start-up and
//! reloads). Signals: TERM/INT/QUIT drain and exit, HUP reloads `-c`, USR2
//! upgrades the binary, USR1 is logged (no log file to reopen).
#![forbid(unsafe_code)]

use crate::config::{Config, Mode};
use crate::discovery::Discovery;
use crate::dns_shared::DnsShared;
use crate::log;
use crate::net::tls::TlsContext;
use crate::net::tls_listener::ListenerTls;
use crate::notify;
use crate::proxy::worker::Worker;
use crate::proxy::{Listeners, Shared};
use crate::reload::{Desired, Reloader, Watch};
use crate::shm::{BackendEntry, Region, Runtime, Settings, MAX_WORKERS};
use crate::sys::{self, Signal};
use crate::upgrade::{self, Inherited, Outcome, Pending, SelfExe};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod processes;
mod reloads;
mod threads;

/// Longest a successor that reported ready may take to take over (publish
/// and say so) before the old process takes the region back.
const TAKE_OVER_MS: u64 = 5_000;
/// Longest the supervisor waits for workers to drain after a shutdown signal
/// (the workers' own limit is 10 s) before it kills what is left.
const SHUTDOWN_GRACE_MS: u64 = 12_000;
/// A worker that dies sooner than this after starting counts as a failed start.
const QUICK_DEATH_MS: u64 = 1_000;
/// Restart back-off for workers that keep dying at start: doubles up to this.
const MAX_BACKOFF_MS: u64 = 10_000;

/// The listen address from `--host` and `--port`.
pub fn listen_addr(cfg: &Config) -> Result<SocketAddr, String> {
    let ip: IpAddr = match cfg.host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("--host: invalid listen address {h:?}"))?,
    };
    Ok(SocketAddr::new(ip, cfg.port))
}

/// `--check`: everything `run` validates before serving, then exit.
/// How long start-up (and `--check`) waits for the first answers about
/// backend names; a name still without one is warned about.
const START_DNS_MS: u64 = 5_000;

/// How long a reload (or a hand-over) waits for its new names' first
/// answers before it publishes without them.
const PUBLISH_WAIT_MS: u64 = 2_000;

pub fn check(cfg: &Config) -> i32 {
    let mut discovery = Discovery::new(cfg);
    discovery.settle(START_DNS_MS);
    for w in discovery.unresolved() {
        eprintln!("load_balancer: warning: {w} (it gets no traffic until it resolves)");
    }
    let res = listen_addr(cfg)
        .and_then(|_| TlsContext::new(cfg.ca_file.as_deref(), cfg.insecure_tls, false).map(|_| ()))
        .and_then(|_| listener_tls(cfg).map(|_| ()))
        .and_then(|_| distinct_ports(cfg));
    match res {
        Ok(()) => {
            let mut listeners = Vec::new();
            if cfg.port != 0 {
                listeners.push(format!("HTTP on port {}", cfg.port));
            }
            if let Some(t) = &cfg.tls_listener {
                listeners.push(format!(
                    "HTTPS on port {} with {} certificate{}",
                    t.port,
                    t.certificates.len(),
                    if t.certificates.len() == 1 { "" } else { "s" }
                ));
            }
            println!(
                "load_balancer: configuration ok ({} backends; {} listener{}: {})",
                cfg.backends.len(),
                listeners.len(),
                if listeners.len() == 1 { "" } else { "s" },
                listeners.join(", ")
            );
            0
        }
        Err(e) => {
            eprintln!("load_balancer: {e}");
            2
        }
    }
}

/// TLS to HTTPS backends: the trust store (`--ca-file`, `-k`, or the
/// system's), loaded once at start; a bad `--ca-file` is a configuration
/// error. `-k` is warned about, as the spec says.
fn tls_context(cfg: &Config) -> Result<Arc<TlsContext>, String> {
    let ctx = TlsContext::new(cfg.ca_file.as_deref(), cfg.insecure_tls, cfg.tls_trace)?;
    if cfg.insecure_tls {
        log!(
            Warn,
            "tls",
            "-k/--insecure: backend certificates are NOT verified; anyone on the path can impersonate a backend"
        );
    } else if cfg.backends.iter().any(|b| b.tls) || cfg.ca_file.is_some() {
        log!(
            Info,
            "tls",
            "trusting {} CA certificates from {}",
            ctx.ca_count,
            ctx.ca_source
        );
    }
    Ok(Arc::new(ctx))
}

/// The plain, TLS and admin listeners on three different ports.
fn distinct_ports(cfg: &Config) -> Result<(), String> {
    let tls = cfg.tls_listener.as_ref().map(|t| t.port);
    let admin = cfg.admin.map(|a| a.port());
    if admin.is_some() && (admin == tls || admin == Some(cfg.port)) {
        return Err(format!(
            "--admin {}: the admin listener needs a port of its own",
            cfg.admin.map(|a| a.to_string()).unwrap_or_default()
        ));
    }
    Ok(())
}

/// The TLS listener's certificates, loaded (a file that does not load is a
/// configuration error naming it).
fn listener_tls(cfg: &Config) -> Result<Option<Arc<ListenerTls>>, String> {
    match &cfg.tls_listener {
        None => Ok(None),
        Some(t) => ListenerTls::new(&t.certificates, true)
            .map(|l| Some(Arc::new(l)))
            .map_err(|e| format!("TLS listener: {e}")),
    }
}

/// Binds a listener, or takes the one a predecessor handed over (if it is
/// on the same port). `what` names it in errors.
fn bind(addr: SocketAddr, inherited: Option<OwnedFd>, what: &str) -> Result<OwnedFd, String> {
    if let Some(l) = inherited {
        return match sys::local_addr(l.as_fd()) {
            Ok(a) if a.port() == addr.port() => Ok(l),
            other => Err(format!(
                "upgrade: the inherited {what} socket is {other:?}, this configuration listens on {addr}"
            )),
        };
    }
    let l = sys::listen(addr, 4096).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("cannot listen on {addr} ({what}): address in use (is another load balancer running?)")
        } else {
            format!("cannot listen on {addr} ({what}): {e}")
        }
    })?;
    sys::set_defer_accept(l.as_fd(), 1);
    Ok(l)
}

/// How many workers `-w` asks for: 0 means one per CPU this process may use.
pub fn worker_count(cfg: &Config) -> usize {
    let n = if cfg.workers == 0 {
        sys::cpu_count()
    } else {
        cfg.workers
    };
    n.clamp(1, MAX_WORKERS)
}

pub fn run(cfg: Config) -> i32 {
    log::set_level(cfg.log_level);
    sys::ignore_sigpipe();
    sys::raise_fd_limit();
    if let Err(e) = sys::install_signals() {
        eprintln!("load_balancer: cannot install signal handlers: {e}");
        return 1;
    }
    let exe = SelfExe::record();
    // Whatever a parent leaked to this process is not passed on to a
    // successor; the upgrade's own descriptors are taken next.
    sys::cloexec_inherited();
    let inherited = match Inherited::from_env() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("load_balancer: upgrade: bad inherited descriptor: {e}");
            return 1;
        }
    };
    let addr = match listen_addr(&cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load_balancer: {e}");
            return 2;
        }
    };
    // Backend names: the first answers before anything serves (bounded);
    // a name without one is warned about and gets no traffic until it has.
    // Made always: a reload may add the first name later.
    if let Err(e) = DnsShared::create() {
        eprintln!("load_balancer: cannot map the DNS status block: {e}");
        return 1;
    }
    let mut discovery = Discovery::new(&cfg);
    if discovery.active() {
        // A successor of an upgrade does not wait: its predecessor serves
        // meanwhile, and it publishes only once its names have answered
        // (`took_over`), within the predecessor's ready timeout.
        if inherited.region.is_none() {
            discovery.settle(START_DNS_MS);
        }
        for w in discovery.unresolved() {
            log!(
                Warn,
                "dns",
                "{w}; starting without it (no traffic to it until it resolves)"
            );
        }
        if let Some(d) = DnsShared::current() {
            d.publish(&discovery);
        }
    }
    let entries = discovery.entries(&|_, _| false);
    let tls = match tls_context(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("load_balancer: {e}");
            return 2;
        }
    };
    // The session cache first: the listener's configuration stores into it.
    if cfg.tls_listener.is_some() {
        if let Err(e) = crate::tls_shared::TlsShared::create() {
            eprintln!("load_balancer: cannot map the TLS session cache: {e}");
            return 1;
        }
    }
    let listener_tls = match listener_tls(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("load_balancer: {e}");
            return 2;
        }
    };
    let mut inherited = inherited;
    let listener = match (cfg.port, inherited.listener.take()) {
        (0, _) => None,
        (_, l) => match bind(addr, l, "HTTP") {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("load_balancer: {e}");
                return 1;
            }
        },
    };
    // A TLS listener handed over that this configuration does not have (or
    // has on another port) is closed, not left accepting for no one.
    let inherited_tls = inherited.tls.take().filter(|l| {
        cfg.tls_listener
            .as_ref()
            .is_some_and(|t| sys::local_addr(l.as_fd()).is_ok_and(|a| a.port() == t.port))
    });
    let tls_listener = match &cfg.tls_listener {
        None => None,
        Some(t) => match bind(SocketAddr::new(addr.ip(), t.port), inherited_tls, "HTTPS") {
            Ok(l) => {
                let certs = listener_tls.as_ref().map_or(0, |l| l.certs.certs.len());
                log!(
                    Info,
                    "main",
                    "TLS listener on port {} ({certs} certificate{}; TLS 1.2 and 1.3, ALPN http/1.1)",
                    t.port,
                    if certs == 1 { "" } else { "s" }
                );
                Some(l)
            }
            Err(e) => {
                eprintln!("load_balancer: {e}");
                return 1;
            }
        },
    };
    let admin = match (cfg.admin, inherited.admin) {
        (Some(a), Some(fd)) if sys::local_addr(fd.as_fd()).is_ok_and(|l| l == a) => Some(fd),
        (Some(a), _) => match sys::listen(a, 128) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("load_balancer: --admin: cannot listen on {a}: {e}");
                return 1;
            }
        },
        (None, _) => None,
    };
    if let Some(a) = cfg.admin {
        log!(
            Info,
            "main",
            "admin listener on {a}: /metrics, /status, /status.json"
        );
    }
    log!(
        Info,
        "main",
        "/metrics on the traffic port: {}",
        match (cfg.metrics_on_traffic_port, cfg.admin.is_some()) {
            (true, false) => "on (no admin listener; --admin moves it there)",
            (true, true) => "on (metrics_on_traffic_port: true)",
            (false, true) => "off (served by the admin listener)",
            (false, false) => "off (metrics_on_traffic_port: false)",
        }
    );
    let adopted = inherited.region.and_then(|fd| match Region::adopt(fd) {
        Ok(r) => Some(r),
        Err(e) => {
            log!(
                Warn,
                "main",
                "upgrade: cannot adopt the shared region ({e}); counters start at zero"
            );
            None
        }
    });
    let upgraded = adopted.is_some();
    // A successor writes nothing to the region until its predecessor hands
    // it over (`Supervisor::took_over`): a failed upgrade leaves no trace.
    let (region, memfd) = match adopted {
        Some((r, fd)) => (r, Some(fd)),
        None => match Region::create() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("load_balancer: cannot create the shared region: {e}");
                return 1;
            }
        },
    };
    let workers = worker_count(&cfg);
    if let Some(path) = cfg.pid_file.as_ref().filter(|_| !upgraded) {
        if let Err(e) = notify::write_pid_file(path, sys::getpid() as u32) {
            eprintln!("load_balancer: --pid-file {}: {e}", path.display());
            return 1;
        }
    }
    if !upgraded {
        let runtime = Runtime::from_config(&cfg);
        let settings = Settings::new(cfg.strategy, &cfg.health);
        if let Err(e) = region.publish_all(&entries, &settings, Some(&runtime)) {
            eprintln!("load_balancer: {e}");
            return 1;
        }
        region.health.reset(entries.len());
        region
            .process
            .workers_configured
            .store(workers as u32, Relaxed);
    }
    let names: Vec<String> = entries.iter().map(BackendEntry::display_name).collect();
    let mode = match cfg.mode {
        Mode::Mp => "mp",
        Mode::Sp => "sp",
    };
    log!(
        Info,
        "main",
        "{} on {}, pid {}, mode {mode}, {workers} workers, backends: {}, strategy: {}",
        if upgraded {
            "upgraded: serving"
        } else {
            "listening"
        },
        if cfg.port == 0 {
            "HTTPS only (-p 0)".to_string()
        } else {
            addr.to_string()
        },
        sys::getpid(),
        names.join(", "),
        cfg.strategy
    );
    let sup = Supervisor {
        cfg,
        region,
        memfd,
        listeners: Mutex::new(Some(Listeners {
            plain: listener,
            tls: tls_listener,
            admin,
        })),
        listener_tls,
        discovery: Mutex::new(Some(discovery)),
        workers,
        exe,
        tls: Some(tls),
        ready: Mutex::new(inherited.ready),
        upgraded,
        pid: sys::getpid() as u32,
        started: AtomicU64::new(0),
        prober_up: AtomicBool::new(false),
        running: AtomicUsize::new(0),
    };
    let pid_file = sup.cfg.pid_file.clone();
    let code = match sup.cfg.mode {
        Mode::Mp => sup.run_processes(),
        Mode::Sp => sup.run_threads(),
    };
    if let Some(path) = pid_file {
        notify::remove_pid_file(&path, sys::getpid() as u32);
    }
    code
}

struct Supervisor {
    cfg: Config,
    region: &'static Region,
    /// The region's memfd, handed to a successor binary.
    memfd: Option<OwnedFd>,
    /// The listening sockets (plain, TLS, admin); closed (taken) when
    /// draining starts. Never `shutdown()`: another process (a successor, a
    /// worker still draining) may hold them, and a shut socket reports
    /// hang-up to all of them.
    listeners: Mutex<Option<Listeners>>,
    /// The TLS listener's certificates as loaded at start (workers reload
    /// their own copies when `TlsShared::cert_generation` moves).
    listener_tls: Option<Arc<ListenerTls>>,
    /// Backend names followed through DNS, as resolved at start; moved
    /// into the supervisor's loop (`Control`).
    discovery: Mutex<Option<Discovery>>,
    workers: usize,
    exe: SelfExe,
    tls: Option<Arc<TlsContext>>,
    /// Started by a predecessor: where to say "ready" once serving.
    ready: Mutex<Option<OwnedFd>>,
    /// Started by a predecessor (an adopted region): until it hands the
    /// region over, this process writes nothing to it.
    upgraded: bool,
    /// This supervisor's pid (the region's owner word holds it once owned).
    pid: u32,
    /// Readiness: bit i set once worker i's loop runs (it has its poller,
    /// listener and access log).
    started: AtomicU64,
    /// Readiness: the prober runs.
    prober_up: AtomicBool,
    /// sp: worker threads running now.
    running: AtomicUsize,
}

/// What a child writes to the start pipe once running, when it is the
/// prober (a worker writes its slot number).
const PROBER_BYTE: u8 = 255;

/// What the supervisor's loop does besides watching workers: reloads,
/// upgrades, and deciding when to drain.
struct Control {
    reloader: Option<Reloader>,
    /// Backend names followed through DNS.
    discovery: Discovery,
    /// What the workers should run with; published (names expanded by
    /// `discovery`) when due and every name has answered or failed.
    desired: Desired,
    /// A reload or a hand-over waits to publish `desired`; why, for the
    /// log, and since when (ms): it waits for new names' first answers at
    /// most [`PUBLISH_WAIT_MS`], unless it would publish no backend: then
    /// until they answer or fail (`follow_dns`).
    publish_due: Option<String>,
    publish_due_since: u64,
    /// What a reload waiting to publish replaced: taken back if none of
    /// the new configuration's backends resolved.
    reload_before: Option<Desired>,
    /// The backend set last published (host, address, weight): DNS answers
    /// and SRV fallbacks are published when what they make differs.
    published: Vec<(String, std::net::SocketAddr, u16)>,
    /// When the DNS status block is next refreshed (ms).
    dns_status_at: u64,
    pending: Option<Pending>,
    /// A successor is serving: this process only drains, and must not stop
    /// the listening socket the successor now uses.
    handed_over: bool,
    draining: bool,
    /// Every worker and the prober reported running; the predecessor (if
    /// any) was told.
    ready_reported: bool,
    /// A successor did what it defers until the hand-over (`took_over`).
    took_over: bool,
    /// The region was handed to this successor; this process keeps serving
    /// until the successor says it took over (`Control::taken`), and takes
    /// the region back if it dies or does not by the deadline.
    handing: Option<(upgrade::Pending, u64)>,
    /// Successors being stopped (a failed or cancelled upgrade): TERM was
    /// sent (so an sp successor's requests in flight finish); KILL at the
    /// deadline if still there.
    stopping: Vec<(sys::ChildHandle, u64)>,
    /// mp: the worker processes, to pass SIGUSR1 on to.
    worker_pids: Vec<libc::pid_t>,
    /// The TLS listener's certificate and key files, watched like the
    /// config file (in place, by rename, through symlinks).
    cert_watch: Vec<Watch>,
}

impl Control {
    /// At exit: a successor still being stopped does not outlive us.
    fn kill_stopping(&mut self) {
        for (child, _) in self.stopping.drain(..) {
            if !child.exited() {
                child.signal(libc::SIGKILL);
            }
        }
    }

    fn new(cfg: &Config, discovery: Option<Discovery>) -> Control {
        let discovery = discovery.unwrap_or_else(|| Discovery::new(cfg));
        let published = discovery
            .entries(&|_, _| false)
            .iter()
            .map(|e| (e.host().to_string(), e.addr(), e.weight))
            .collect();
        Control {
            reloader: Reloader::new(cfg),
            discovery,
            desired: Desired::of(cfg),
            publish_due: None,
            publish_due_since: 0,
            reload_before: None,
            published,
            dns_status_at: 0,
            pending: None,
            handed_over: false,
            draining: false,
            ready_reported: false,
            took_over: false,
            handing: None,
            stopping: Vec::new(),
            worker_pids: Vec::new(),
            cert_watch: cfg
                .tls_listener
                .iter()
                .flat_map(|t| &t.certificates)
                .flat_map(|p| [Watch::new(&p.cert), Watch::new(&p.key)])
                .collect(),
        }
    }
}

impl Supervisor {
    /// Whether this supervisor owns the region (see `shm::Control::owner`):
    /// only then are the gauges of its workers its to write.
    fn owns(&self) -> bool {
        self.region.owned_by(self.pid)
    }

    /// The prober's loop, in its process (mp) or thread (sp); it probes only
    /// while `may_write` says this supervisor owns the region.
    fn run_prober(&self, may_write: impl Fn() -> bool) {
        crate::probe::run(
            self.region,
            self.tls.as_ref(),
            self.cfg.ca_file.clone(),
            self.cfg.insecure_tls,
            sys::shutdown_requested,
            may_write,
        );
    }

    /// Duplicates of the listeners for a worker; `None` once draining.
    fn dup_listeners(&self) -> io::Result<Option<Listeners>> {
        match self
            .listeners
            .lock()
            .ok()
            .as_deref()
            .and_then(Option::as_ref)
        {
            Some(l) => l.dup().map(Some),
            None => Ok(None),
        }
    }

    /// Runs one worker loop in the calling thread or process, in slot `i`;
    /// `running` is called once the loop is about to run (readiness).
    fn run_worker(&self, i: usize, listeners: Listeners, running: &dyn Fn()) -> i32 {
        let mut shared = Shared::new(self.cfg.clone(), self.region, i, self.tls.clone());
        shared.listener_tls = self.listener_tls.clone();
        let shared = Arc::new(shared);
        let seed = sys::now_ms() ^ (u64::from(sys::getpid().unsigned_abs()) << 16) ^ i as u64;
        let stop = Arc::new(AtomicBool::new(false));
        let run = Worker::new(shared, listeners, stop, seed).and_then(|mut w| {
            running();
            w.run()
        });
        match run {
            Ok(()) => 0,
            Err(e) => {
                log!(Err, "main", "worker {i} failed: {e}");
                1
            }
        }
    }

    /// Ready: every worker's loop runs and the prober runs. Then (once) a
    /// predecessor is told (binary upgrade), or, without one, the service
    /// manager. Until then a predecessor keeps serving, and stops this
    /// process if it is not ready in time.
    fn report_ready_once(&self, ctl: &mut Control) {
        let all = u64::MAX >> (64 - self.workers);
        if ctl.ready_reported
            || self.started.load(Relaxed) & all != all
            || !self.prober_up.load(Relaxed)
        {
            return;
        }
        ctl.ready_reported = true;
        if !self.upgraded {
            notify::sd_notify("READY=1");
        }
        if let Some(fd) = self.ready.lock().ok().and_then(|mut r| r.take()) {
            log!(
                Info,
                "main",
                "upgrade: {} workers and the prober are running; telling the old process",
                self.workers
            );
            upgrade::report_ready(fd);
        }
    }

    /// A successor, once its predecessor handed the region over: what a
    /// process starting afresh writes at start, now its to write.
    fn took_over(&self, ctl: &mut Control, live: usize) {
        let p = &self.region.process;
        p.upgrades.fetch_add(1, Relaxed);
        p.workers_configured.store(self.workers as u32, Relaxed);
        p.workers_live.store(live as u32, Relaxed);
        // The configuration file as it is now (it may have changed since
        // this process started), else the one it started with.
        let desired = match ctl.reloader.as_ref() {
            Some(r) => r.load(),
            None => Ok(Desired::of(&self.cfg)),
        };
        let published = desired.map(|d| {
            ctl.discovery.set_specs(&d.specs, &self.cfg.resolvers);
            // Names not answered yet keep what the predecessor published.
            let mut handed = Vec::new();
            self.region.read_backends(&mut handed);
            ctl.discovery.seed(&handed, sys::now_ms());
            ctl.desired = d;
            ctl.publish_due = Some("upgrade".into());
            ctl.publish_due_since = sys::now_ms();
            self.follow_dns(ctl);
        });
        if let Some(path) = &self.cfg.pid_file {
            if let Err(e) = notify::write_pid_file(path, self.pid) {
                log!(Err, "main", "--pid-file {}: {e}", path.display());
            }
        }
        notify::sd_notify(&format!("MAINPID={}\nREADY=1", self.pid));
        // Tells the old process it may drain now.
        self.region.control.taken.store(self.pid, Relaxed);
        match published {
            Ok(()) => log!(
                Info,
                "main",
                "upgrade: handed over; serving generation {}",
                self.region.generation()
            ),
            Err(e) => log!(
                Err,
                "main",
                "upgrade: handed over, but this configuration could not be published ({e}); serving the old one"
            ),
        }
    }

    /// Everything but the workers, once per turn of the loop. True when the
    /// workers should start draining (shutdown, or a successor took over).
    fn tick(&self, ctl: &mut Control, live: usize) -> bool {
        self.report_ready_once(ctl);
        if self.upgraded && !ctl.took_over && ctl.ready_reported {
            let owner = self.region.control.owner.load(Relaxed);
            // The predecessor (the process that started this one, our
            // parent until it exits) died before handing over: take the
            // region from it rather than serve for ever without it.
            let orphaned = owner != self.pid && sys::parent_pid() as u32 != owner;
            if orphaned && self.region.take_over_from_dead(owner, self.pid) {
                log!(
                    Warn,
                    "main",
                    "upgrade: the old process (pid {owner}) is gone; taking over the region"
                );
            }
            if self.owns() {
                // Handed over (the owner word names this process now).
                ctl.took_over = true;
                self.took_over(ctl, live);
            }
        }
        self.check_hand_over(ctl);
        ctl.stopping.retain(|(child, deadline)| {
            if child.exited() {
                return false;
            }
            if sys::now_ms() >= *deadline {
                child.signal(libc::SIGKILL);
                return false;
            }
            true
        });
        self.reload_if_due(ctl);
        self.follow_dns(ctl);
        if sys::take_signal(Signal::Reopen) {
            match &self.cfg.access_log {
                Some(p) => log!(
                    Info,
                    "main",
                    "SIGUSR1: reopening the access log {}",
                    p.display()
                ),
                None => log!(
                    Info,
                    "main",
                    "SIGUSR1: no access log to reopen; nothing changed"
                ),
            }
            // Worker threads see this process's count move; worker
            // processes are told with a signal of their own.
            for pid in ctl.worker_pids.iter().copied() {
                sys::kill(pid, libc::SIGUSR1);
            }
        }
        if sys::take_signal(Signal::Upgrade) {
            self.start_upgrade(ctl);
        }
        if sys::shutdown_requested() {
            if let Some(p) = ctl.pending.take() {
                // A stop during an upgrade (a restart script, systemd
                // stopping the unit) cancels it: the successor goes, and
                // this process drains as usual.
                log!(
                    Warn,
                    "main",
                    "upgrade cancelled by a stop signal: stopping the new process pid {}",
                    p.pid
                );
                self.stop_successor(ctl, p);
            }
            if let Some((p, _)) = ctl.handing.take() {
                if self.region.hand_over(p.pid as u32, self.pid) {
                    log!(
                        Warn,
                        "main",
                        "upgrade cancelled by a stop signal before pid {} took over",
                        p.pid
                    );
                    self.stop_successor(ctl, p);
                } else {
                    ctl.handed_over = true;
                }
            }
        }
        if let Some(outcome) = ctl.pending.as_ref().and_then(Pending::poll) {
            let p = ctl.pending.take().expect("polled");
            let pid = p.pid;
            match outcome {
                Outcome::Ready
                    if !p.child.exited() && self.region.hand_over(self.pid, pid as u32) =>
                {
                    // Serving goes on here until the successor says it took
                    // over (`check_hand_over`).
                    ctl.handing = Some((p, sys::now_ms() + TAKE_OVER_MS));
                }
                Outcome::Ready => {
                    log!(
                        Err,
                        "main",
                        "upgrade failed: pid {pid} reported ready but is gone, or this process does not own the region; still serving"
                    );
                    self.stop_successor(ctl, p);
                }
                Outcome::Failed(why) => {
                    log!(
                        Err,
                        "main",
                        "upgrade failed: new process pid {pid}: {why}; still serving"
                    );
                    self.stop_successor(ctl, p);
                }
            }
        }
        let stop = ctl.handed_over || sys::shutdown_requested();
        if stop && !ctl.draining {
            ctl.draining = true;
            if !ctl.handed_over {
                log!(
                    Info,
                    "main",
                    "shutting down: draining {} workers",
                    self.workers
                );
                notify::sd_notify("STOPPING=1");
            }
            // This process's copies of the listeners go; once the workers
            // have closed theirs (they do as they start draining) a socket
            // nobody else holds is closed and new connections are refused.
            // After a hand-over the successor holds it and serves.
            drop(self.listeners.lock().ok().and_then(|mut l| l.take()));
            return true;
        }
        false
    }

    /// The old side of a hand-over: drain once the successor took over;
    /// take the region back (and keep serving) if it died or did not take
    /// over in time.
    fn check_hand_over(&self, ctl: &mut Control) {
        let Some((p, deadline)) = ctl.handing.as_ref() else {
            return;
        };
        let pid = p.pid;
        if self.region.control.taken.load(Relaxed) == pid as u32 {
            log!(
                Info,
                "main",
                "upgrade: new process pid {pid} is serving; this one (pid {}) stops accepting and drains",
                self.pid
            );
            // The service manager follows the successor (with
            // `NotifyAccess=all`), not this process's exit.
            notify::sd_notify(&format!("MAINPID={pid}"));
            ctl.handing = None;
            ctl.handed_over = true;
            return;
        }
        let why = if p.child.exited() {
            "it exited before taking over"
        } else if sys::now_ms() >= *deadline {
            "it did not take over in time"
        } else {
            return;
        };
        let (p, _) = ctl.handing.take().expect("checked");
        if self.region.hand_over(pid as u32, self.pid) {
            log!(
                Err,
                "main",
                "upgrade failed: new process pid {pid}: {why}; this process takes the region back and keeps serving"
            );
            self.stop_successor(ctl, p);
        } else {
            // It took over meanwhile after all.
            ctl.handed_over = true;
        }
    }

    /// A successor that will not serve: counted as a failed upgrade, sent
    /// TERM (its workers finish what they took), KILL later if still there.
    fn stop_successor(&self, ctl: &mut Control, p: upgrade::Pending) {
        if self.owns() {
            self.region.process.upgrades_failed.fetch_add(1, Relaxed);
        }
        p.child.signal(libc::SIGTERM);
        ctl.stopping
            .push((p.child, sys::now_ms() + upgrade::STOP_GRACE_MS));
    }

    fn start_upgrade(&self, ctl: &mut Control) {
        if !self.owns() {
            log!(
                Warn,
                "main",
                "SIGUSR2: this process has not taken over from its predecessor yet; ignored"
            );
            return;
        }
        if ctl.pending.is_some() || ctl.handing.is_some() || ctl.handed_over {
            log!(
                Warn,
                "main",
                "SIGUSR2: an upgrade is already in progress; ignored"
            );
            return;
        }
        if ctl.draining {
            log!(Warn, "main", "SIGUSR2: shutting down; ignored");
            return;
        }
        let region_fd = self.memfd.as_ref().map(|f| f.as_fd());
        let Ok(listeners) = self.listeners.lock() else {
            return;
        };
        let Some(l) = listeners.as_ref() else {
            return;
        };
        match upgrade::start(&self.exe, l, region_fd) {
            Ok(p) => {
                log!(
                    Info,
                    "main",
                    "SIGUSR2: upgrade: started {} as pid {}; waiting for it to be ready",
                    self.exe.path.display(),
                    p.pid
                );
                ctl.pending = Some(p);
            }
            Err(e) => log!(
                Err,
                "main",
                "upgrade failed: cannot start {}: {e}; still serving",
                self.exe.path.display()
            ),
        }
    }
}

pub(super) fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// No delay for a worker that ran a while; for one that keeps dying at
/// start, 100 ms doubling up to `MAX_BACKOFF_MS`.
fn backoff_ms(quick_deaths: u32) -> u64 {
    match quick_deaths {
        0 | 1 => 0,
        n => (100u64 << (n - 2).min(10)).min(MAX_BACKOFF_MS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff_ms(0), 0);
        assert_eq!(backoff_ms(1), 0);
        assert_eq!(backoff_ms(2), 100);
        assert_eq!(backoff_ms(3), 200);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }
}
