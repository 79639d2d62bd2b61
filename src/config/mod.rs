//! What the load balancer is told to do: the validated settings that the CLI
//! (`crate::cli`) and the JSON config file (`json`, `file`) produce.
//!
//! Everything here is plain data, checked once at start-up; the worker never
//! re-validates it. Limits are the spec's compile-time constants.
#![forbid(unsafe_code)]

pub mod file;
pub mod json;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Maximum backends (a `u64` health bitmap holds one bit each).
pub const MAX_BACKENDS: usize = 64;
/// Maximum hostname length (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;
/// Maximum size of a request or response head, request line included.
pub const MAX_HEADER_BYTES: usize = 8192;
/// Maximum header lines in one head.
pub const MAX_HEADER_LINES: usize = 256;
/// Default `pool_max_conn`: idle upstream connections kept per backend per
/// worker at most (HAProxy's `pool-max-conn`): high enough for 10,000 client
/// connections; the descriptor budget (`max_connections`) bounds the total.
pub const DEFAULT_POOL_MAX_CONN: usize = 10_000;
/// Largest `max_connections` accepted.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// Maximum config file size.
pub const MAX_CONFIG_SIZE: usize = 64 * 1024;

/// How a backend is chosen for each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    RoundRobin,
    /// Smooth weighted round robin, as nginx: weights 5:1:1 give a a b a c a a.
    WeightedRoundRobin,
    Random,
    /// Fewest requests in flight (all workers' together), relative to the
    /// weight; ties broken round robin (nginx `least_conn`, HAProxy
    /// `leastconn`).
    LeastConnections,
    /// Power of two random choices: of two candidates drawn at random, the
    /// one with less in flight times its recent response time, relative to
    /// the weight (Envoy `LEAST_REQUEST`, Finagle P2C/EWMA).
    P2c,
}

impl Strategy {
    /// Accepts the spec's names; `weighted` is the short form its Options
    /// section uses, `least_conn` nginx's name.
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "round_robin" => Some(Strategy::RoundRobin),
            "weighted_round_robin" | "weighted" => Some(Strategy::WeightedRoundRobin),
            "random" => Some(Strategy::Random),
            "least_connections" | "least_conn" => Some(Strategy::LeastConnections),
            "p2c" => Some(Strategy::P2c),
            _ => None,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::WeightedRoundRobin => "weighted_round_robin",
            Strategy::Random => "random",
            Strategy::LeastConnections => "least_connections",
            Strategy::P2c => "p2c",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Err = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s {
            "err" | "error" => Some(LogLevel::Err),
            "warn" | "warning" => Some(LogLevel::Warn),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            _ => None,
        }
    }
}

/// Default `request_buffer_bytes`: 64 KiB, as the operators expect
/// (nginx buffers whole bodies by default; this keeps the bound small).
pub const DEFAULT_REQUEST_BUFFER_BYTES: u64 = 64 * 1024;
/// Most bytes of buffered request bodies one worker holds at once; past it a
/// request with a body to buffer gets 503 (with `Retry-After`).
pub const REQUEST_BUFFER_CAP_BYTES: usize = 64 * 1024 * 1024;

/// Process model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// nginx-style: a master forks worker processes that share its listening socket.
    Mp,
    /// One process; workers are threads.
    Sp,
}

impl Mode {
    /// As the spec says: mp on Linux, sp on macOS (where `fork` after
    /// threads and shared listeners behave worse), sp elsewhere.
    pub const DEFAULT: Mode = if cfg!(target_os = "linux") {
        Mode::Mp
    } else {
        Mode::Sp
    };
}

/// A certificate chain and its private key (PEM files) for the TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `--tls-port` / `"tls_listener"`: HTTPS on a second listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsListener {
    pub port: u16,
    /// In order: SNI picks among them, the first is the default.
    pub certificates: Vec<CertPair>,
    /// `"redirect_http_to_https"`: plain requests get a 308 to the TLS port.
    pub redirect_http: bool,
}

/// One upstream server as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Hostname or IP literal, at most [`MAX_HOST_LEN`] bytes, without brackets.
    pub host: String,
    pub port: u16,
    /// Weight for weighted round robin, at least 1.
    pub weight: u16,
    /// Speak TLS to this backend (port 443, `https://` prefix, or `"tls": true`).
    pub tls: bool,
    /// `{"srv": "_http._tcp.name"}`: `host` is an SRV name; targets, ports
    /// and weights come from its records (`port` and `weight` unused).
    pub srv: bool,
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.srv {
            write!(f, "srv {}", self.host)
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Active and passive health checking (spec: Health Check Settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub probe_interval_ms: u64,
    pub probe_timeout_ms: u64,
    pub health_path: String,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            probe_interval_ms: 5000,
            probe_timeout_ms: 2000,
            health_path: "/".to_string(),
        }
    }
}

/// Every timeout the worker enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the first byte of a request head to its end (slowloris defence).
    pub client_header: Duration,
    /// A kept-alive client connection with no request in flight.
    pub client_idle: Duration,
    /// TCP connect to a backend.
    pub upstream_connect: Duration,
    /// From the request sent to the first byte of the response head (504 after).
    pub upstream_response: Duration,
    /// Longest wait for any progress of a body, either way.
    pub body_progress: Duration,
    /// A request body buffered before a backend is chosen (at most
    /// `request_buffer_bytes`) must arrive whole within this (408 after).
    pub client_body: Duration,
    /// An idle pooled upstream connection is closed after this (HAProxy's
    /// `pool-purge-delay`): the pool keeps what recent concurrency needed
    /// and shrinks when traffic falls.
    pub upstream_idle: Duration,
    /// Least average rate of a request body, bytes per second over each
    /// [`BODY_RATE_WINDOW_MS`] (Apache's `mod_reqtimeout` MinRate): a body
    /// slower than that gets 408 and holds no backend longer. 0: off.
    pub client_body_min_rate: u64,
}

/// The window over which `client_body_min_rate` is measured.
pub const BODY_RATE_WINDOW_MS: u64 = 5_000;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            client_header: Duration::from_secs(10),
            client_idle: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(3),
            upstream_response: Duration::from_secs(60),
            body_progress: Duration::from_secs(60),
            client_body: Duration::from_secs(10),
            upstream_idle: Duration::from_secs(30),
            client_body_min_rate: 500,
        }
    }
}

/// What the proxy does with one of the forwarding headers it can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMode {
    /// Keep what the client sent and add this hop: `client-value, peer`.
    Append,
    /// Drop what the client sent; send only this hop (client values are not
    /// trusted).
    Replace,
    /// Write none. What the client sent is removed too, unless named in
    /// `trusted_client_headers`.
    Off,
}

impl HeaderMode {
    pub fn parse(s: &str) -> Option<HeaderMode> {
        match s {
            "append" => Some(HeaderMode::Append),
            "replace" => Some(HeaderMode::Replace),
            "off" => Some(HeaderMode::Off),
            _ => None,
        }
    }
}

/// `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` (RFC 7239) on
/// requests sent upstream. By default client-sent values are not trusted:
/// the two X- headers are replaced, `Forwarded` is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardedHeaders {
    pub x_forwarded_for: HeaderMode,
    pub x_forwarded_proto: HeaderMode,
    pub forwarded: HeaderMode,
}

impl Default for ForwardedHeaders {
    fn default() -> Self {
        ForwardedHeaders {
            x_forwarded_for: HeaderMode::Replace,
            x_forwarded_proto: HeaderMode::Replace,
            forwarded: HeaderMode::Off,
        }
    }
}

/// The complete, validated configuration of one load balancer process.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    /// `-m` was on the command line (a legacy binary's mode yields to it).
    pub mode_given: bool,
    /// Worker count; 0 means one per CPU core.
    pub workers: usize,
    pub host: String,
    pub port: u16,
    pub backends: Vec<BackendSpec>,
    /// How many of `backends` came from `-b` flags (they come first, and a
    /// reload of the `-c` file keeps them).
    pub flag_backends: usize,
    pub strategy: Strategy,
    /// `-s` was given: it wins over the file's `"strategy"`, on reload too.
    pub strategy_given: bool,
    pub config_path: Option<PathBuf>,
    pub log_level: LogLevel,
    pub insecure_tls: bool,
    /// `--ca-file` / `"ca_file"`: trust exactly these CA certificates for
    /// HTTPS backends (else the system store).
    pub ca_file: Option<PathBuf>,
    pub trace: bool,
    pub tls_trace: bool,
    pub health: HealthSettings,
    pub timeouts: Timeouts,
    pub forwarded: ForwardedHeaders,
    /// Largest request body accepted (413 beyond); 0 means no limit.
    pub max_body_bytes: u64,
    /// `--admin` / `"admin"`: a second listener for `/metrics`, `/status`
    /// and `/status.json` only.
    pub admin: Option<std::net::SocketAddr>,
    /// `"metrics_on_traffic_port"`: `/metrics` is also answered on the
    /// traffic port (the spec's default); false forwards it like any path.
    pub metrics_on_traffic_port: bool,
    /// `--access-log` / `"access_log"`: a file, or `-` for standard output.
    pub access_log: Option<PathBuf>,
    /// Request bodies up to this size are read whole before a backend is
    /// chosen (slow uploads hold no backend connection); 0 turns it off.
    pub request_buffer_bytes: u64,
    /// `--max-connections` / `"max_connections"`: client connections per
    /// worker; 0 means from the descriptor limit ([`default_max_connections`]).
    pub max_connections: usize,
    /// `"pool_max_conn"`: idle upstream connections kept per backend per
    /// worker at most.
    pub pool_max_conn: usize,
    /// Which of the settings a file may also give came from flags (a flag
    /// wins over the file, on reload too).
    pub given: FlagsGiven,
    /// `--pid-file` / `"pid_file"`: the master's pid, written at start (by a
    /// successor once handed over), removed at exit.
    pub pid_file: Option<PathBuf>,
    /// `"trusted_client_headers"`: identity headers a client may send on
    /// (for a chain of proxies); every other one in [`IDENTITY_HEADERS`] is
    /// removed before a request goes upstream. Lowercase.
    pub trusted_client_headers: Vec<String>,
    /// The TLS listener, if any (flags win over the file's, whole).
    pub tls_listener: Option<TlsListener>,
    /// `--resolver` / `"resolver"`: DNS servers for backend names (else
    /// those of /etc/resolv.conf).
    pub resolvers: Vec<std::net::SocketAddr>,
    /// Backend names are resolved again after their TTL, clamped to
    /// `dns_min_ttl_ms..=dns_max_ttl_ms`.
    pub dns_min_ttl_ms: u64,
    pub dns_max_ttl_ms: u64,
}

impl Config {
    /// The TLS listener came from the config file (no `--tls-port` or
    /// `--tls-cert` flag replaced it).
    pub fn given_tls_listener_from_file(&self) -> bool {
        !self.given.tls_listener
    }

    /// `--resolver` was given (it wins over the file's `"resolver"`).
    pub fn given_resolvers(&self) -> bool {
        self.given.resolvers
    }
}

/// Default lower and upper bounds of a DNS answer's life (1 s, 5 min).
pub const DNS_MIN_TTL_MS: u64 = 1_000;
pub const DNS_MAX_TTL_MS: u64 = 300_000;

/// Checks a name to be looked up in DNS: 1..=253 bytes, labels of 1..=63
/// bytes of letters, digits, `-` and `_` (SRV names), an optional final dot.
pub fn validate_dns_name(name: &str) -> Result<(), String> {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() || n.len() > 253 {
        return Err(format!("{name:?} is not a DNS name (1 to 253 bytes)"));
    }
    for label in n.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "{name:?}: a label of {} bytes (1 to 63)",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("{name:?}: {c:?} is not allowed in a DNS name"));
        }
    }
    Ok(())
}

/// Settings given on the command line that the config file may also give.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlagsGiven {
    pub access_log: bool,
    pub ca_file: bool,
    pub admin: bool,
    pub max_connections: bool,
    pub pid_file: bool,
    pub tls_listener: bool,
    pub resolvers: bool,
}

/// Headers that say who the client is or how it connected (what
/// frameworks and CDNs read: Rack takes `X-Forwarded-Ssl: on` for https,
/// many apps `X-Real-IP` or `CF-Connecting-IP` for the client). A client's
/// own copies never reach a backend unless named in
/// `trusted_client_headers`: the proxy writes its own (`X-Forwarded-For`,
/// `X-Forwarded-Proto`, `Forwarded`, as `forwarded` says) or none. Any
/// other `X-Forwarded-*` header, and every spelling with `_` for `-`, is
/// removed too and cannot be trusted (`compose::is_identity`).
pub const IDENTITY_HEADERS: [&str; 18] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
];

/// Descriptors kept aside per worker for listeners, the log, pipes.
const RESERVED_FDS: u64 = 64;

/// `max_connections` when none is configured: each client connection may
/// hold one upstream connection too, so half of what the descriptor limit
/// (`nofile`, shared by the threads of one process in sp mode) leaves.
pub fn default_max_connections(nofile: u64, workers_sharing: usize) -> usize {
    let per_process = nofile.saturating_sub(RESERVED_FDS) / 2;
    (per_process / workers_sharing.max(1) as u64).clamp(16, MAX_CONNECTIONS_LIMIT as u64) as usize
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::DEFAULT,
            mode_given: false,
            workers: 0,
            host: "0.0.0.0".to_string(),
            port: 8080,
            backends: Vec::new(),
            flag_backends: 0,
            strategy: Strategy::RoundRobin,
            strategy_given: false,
            config_path: None,
            log_level: LogLevel::Info,
            insecure_tls: false,
            ca_file: None,
            trace: false,
            tls_trace: false,
            health: HealthSettings::default(),
            timeouts: Timeouts::default(),
            forwarded: ForwardedHeaders::default(),
            max_body_bytes: 0,
            request_buffer_bytes: DEFAULT_REQUEST_BUFFER_BYTES,
            admin: None,
            metrics_on_traffic_port: true,
            access_log: None,
            max_connections: 0,
            pool_max_conn: DEFAULT_POOL_MAX_CONN,
            trusted_client_headers: Vec::new(),
            tls_listener: None,
            resolvers: Vec::new(),
            dns_min_ttl_ms: DNS_MIN_TTL_MS,
            dns_max_ttl_ms: DNS_MAX_TTL_MS,
            pid_file: None,
            given: FlagsGiven::default(),
        }
    }
}

/// The first backend listed twice (same host, port and TLS setting), as an
/// error naming both places: `-b` flags come first in `specs` (`flags` of
/// them), then the file's entries at `file_pos` in `file`. Two identical
/// entries would be two identical Prometheus series and a double share.
pub fn duplicate_backend(
    specs: &[BackendSpec],
    flags: usize,
    file: Option<(&std::path::Path, &[json::Pos])>,
) -> Option<String> {
    let place = |i: usize| -> String {
        if i < flags {
            format!("-b {} (flag {} of {flags})", specs[i], i + 1)
        } else {
            match file.and_then(|(p, pos)| Some((p, pos.get(i - flags)?))) {
                Some((p, pos)) => format!("{}:{}:{}", p.display(), pos.line, pos.col),
                None => format!("the config file's backend {}", i - flags + 1),
            }
        }
    };
    for j in 1..specs.len() {
        let b = &specs[j];
        if let Some(i) = specs[..j].iter().position(|a| {
            a.port == b.port && a.tls == b.tls && a.host.eq_ignore_ascii_case(&b.host)
        }) {
            return Some(format!(
                "backend {b} is listed twice: {} and {}",
                place(i),
                place(j)
            ));
        }
    }
    None
}

/// Why a hostname cannot be used; callers add what the host was given for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    Empty,
    /// Length in bytes, over [`MAX_HOST_LEN`].
    TooLong(usize),
    /// A character no hostname or IP literal contains (space, `/`, `@`, ...).
    BadChar(char),
    /// Starts with `-`, which no hostname does (and which is likely a flag).
    LeadingDash,
    /// Has a `:` but is not an IPv6 address: usually `host:port` in a host field.
    NotIpv6,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Empty => f.write_str("host is empty"),
            HostError::TooLong(n) => {
                write!(f, "host is {n} bytes long, at most {MAX_HOST_LEN}")
            }
            HostError::BadChar(c) => write!(f, "host contains {:?}", c),
            HostError::LeadingDash => f.write_str("host starts with '-'"),
            HostError::NotIpv6 => f.write_str("host has a ':' but is not an IPv6 address"),
        }
    }
}

/// Checks a hostname or IP literal (IPv6 without brackets, an optional
/// `%zone` allowed). Deliberately loose about hostname syntax (resolution
/// will judge), strict about what can never be right.
pub fn validate_host(host: &str) -> Result<(), HostError> {
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if host.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong(host.len()));
    }
    if host.starts_with('-') {
        return Err(HostError::LeadingDash);
    }
    if let Some(c) = host
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || "/\\@?#[]\"'<>,;{}|".contains(c))
    {
        return Err(HostError::BadChar(c));
    }
    if host.contains(':') {
        let addr = host.split('%').next().unwrap_or("");
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::NotIpv6);
        }
    }
    Ok(())
}

/// Parses the CLI form of a backend: `host:port`, `http://host:port`,
/// `https://host:port` or `[v6addr]:port` (a single trailing `/` is allowed
/// after a scheme). Port 443 or `https://` means TLS. The weight is 1.
pub fn parse_backend_addr(s: &str) -> Result<BackendSpec, String> {
    let (rest, scheme) = strip_scheme(s);
    let rest = if rest.len() < s.len() {
        rest.strip_suffix('/').unwrap_or(rest)
    } else {
        rest
    };
    if rest.contains('/') {
        return Err(format!("backend {s:?} must not have a path"));
    }
    let bracketed = rest.starts_with('[');
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("backend {s:?} has no closing ']'"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, port),
            None if after.is_empty() => return Err(format!("backend {s:?} has no port")),
            None => {
                return Err(format!(
                    "backend {s:?} has text after ']' that is not ':PORT'"
                ))
            }
        }
    } else {
        match rest.rsplit_once(':') {
            None => return Err(format!("backend {s:?} has no port")),
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "backend {s:?}: put an IPv6 address in brackets, e.g. [::1]:8080"
                ))
            }
            Some(pair) => pair,
        }
    };
    if host.is_empty() {
        return Err(format!("backend {s:?} has an empty host"));
    }
    if host.len() > MAX_HOST_LEN {
        return Err(format!(
            "backend host is {} bytes long, at most {MAX_HOST_LEN}",
            host.len()
        ));
    }
    if port.is_empty() {
        return Err(format!("backend {s:?} has no port"));
    }
    let port = parse_port(port)
        .ok_or_else(|| format!("backend {s:?}: port must be an integer 1..=65535, got {port:?}"))?;
    let checked = match validate_host(host) {
        Ok(()) if bracketed && !host.contains(':') => Err(HostError::NotIpv6),
        other => other,
    };
    if let Err(e) = checked {
        return Err(format!("backend {s:?}: {e}"));
    }
    Ok(BackendSpec {
        host: host.to_string(),
        port,
        weight: 1,
        tls: tls_for(scheme, port),
        srv: false,
    })
}

/// Strips an `http://` or `https://` prefix (any case): `Some(true)` for
/// https, `Some(false)` for http, `None` without a scheme.
pub(crate) fn strip_scheme(s: &str) -> (&str, Option<bool>) {
    for (scheme, tls) in [("https://", true), ("http://", false)] {
        if let Some(head) = s.get(..scheme.len()) {
            if head.eq_ignore_ascii_case(scheme) {
                return (&s[scheme.len()..], Some(tls));
            }
        }
    }
    (s, None)
}

/// TLS or not, as the spec says: `https://` yes, `http://` no, and without a
/// scheme port 443 means TLS.
pub(crate) fn tls_for(scheme: Option<bool>, port: u16) -> bool {
    scheme.unwrap_or(port == 443)
}

/// A decimal port 1..=65535: ASCII digits only (no sign, no spaces).
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &str, port: u16, tls: bool) -> BackendSpec {
        BackendSpec {
            host: host.to_string(),
            port,
            weight: 1,
            tls,
            srv: false,
        }
    }

    #[test]
    fn backend_addr_ok() {
        let cases: &[(&str, BackendSpec)] = &[
            ("127.0.0.1:9001", spec("127.0.0.1", 9001, false)),
            ("localhost:1", spec("localhost", 1, false)),
            ("example.com:65535", spec("example.com", 65535, false)),
            ("example.com:443", spec("example.com", 443, true)),
            ("http://example.com:80", spec("example.com", 80, false)),
            ("HTTP://example.com:80/", spec("example.com", 80, false)),
            ("https://example.com:8443", spec("example.com", 8443, true)),
            ("https://example.com:8443/", spec("example.com", 8443, true)),
            ("[::1]:9001", spec("::1", 9001, false)),
            ("http://[::1]:9001", spec("::1", 9001, false)),
            ("[fe80::1%eth0]:80", spec("fe80::1%eth0", 80, false)),
            ("[2001:db8::1]:443", spec("2001:db8::1", 443, true)),
            ("h:00080", spec("h", 80, false)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_backend_addr(input).as_ref(), Ok(want), "{input}");
        }
        let long = format!("{}:80", "a".repeat(MAX_HOST_LEN));
        assert_eq!(parse_backend_addr(&long).unwrap().host.len(), MAX_HOST_LEN);
    }

    #[test]
    fn backend_addr_errors() {
        let long = format!("{}:80", "a".repeat(MAX_HOST_LEN + 1));
        let cases: &[(&str, &str)] = &[
            ("localhost", "backend \"localhost\" has no port"),
            ("localhost:", "backend \"localhost:\" has no port"),
            (
                "https://example.com",
                "backend \"https://example.com\" has no port",
            ),
            ("[::1]", "backend \"[::1]\" has no port"),
            ("[::1", "backend \"[::1\" has no closing ']'"),
            (
                "[::1]x",
                "backend \"[::1]x\" has text after ']' that is not ':PORT'",
            ),
            (":8080", "backend \":8080\" has an empty host"),
            ("[]:80", "backend \"[]:80\" has an empty host"),
            (
                "h:0",
                "backend \"h:0\": port must be an integer 1..=65535, got \"0\"",
            ),
            (
                "h:65536",
                "backend \"h:65536\": port must be an integer 1..=65535, got \"65536\"",
            ),
            (
                "h:abc",
                "backend \"h:abc\": port must be an integer 1..=65535, got \"abc\"",
            ),
            (
                "h:+80",
                "backend \"h:+80\": port must be an integer 1..=65535, got \"+80\"",
            ),
            (
                "h:-1",
                "backend \"h:-1\": port must be an integer 1..=65535, got \"-1\"",
            ),
            (
                "h: 80",
                "backend \"h: 80\": port must be an integer 1..=65535, got \" 80\"",
            ),
            (
                "::1:80",
                "backend \"::1:80\": put an IPv6 address in brackets, e.g. [::1]:8080",
            ),
            ("h:80/x", "backend \"h:80/x\" must not have a path"),
            (
                "http://h:80/x",
                "backend \"http://h:80/x\" must not have a path",
            ),
            ("a b:80", "backend \"a b:80\": host contains ' '"),
            ("-x:80", "backend \"-x:80\": host starts with '-'"),
            (
                "[nope]:80",
                "backend \"[nope]:80\": host has a ':' but is not an IPv6 address",
            ),
            ("user@h:80", "backend \"user@h:80\": host contains '@'"),
            (&long, "backend host is 254 bytes long, at most 253"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_backend_addr(input).unwrap_err(), *want, "{input}");
        }
    }

    #[test]
    fn host_validation() {
        let cases: &[(&str, Result<(), HostError>)] = &[
            ("a", Ok(())),
            ("127.0.0.1", Ok(())),
            ("::1", Ok(())),
            ("fe80::1%lo", Ok(())),
            ("my-host.example", Ok(())),
            ("", Err(HostError::Empty)),
            ("h:80", Err(HostError::NotIpv6)),
            ("a\tb", Err(HostError::BadChar('\t'))),
            ("a/b", Err(HostError::BadChar('/'))),
            ("[::1]", Err(HostError::BadChar('['))),
            ("-h", Err(HostError::LeadingDash)),
        ];
        for (input, want) in cases {
            assert_eq!(validate_host(input), *want, "{input:?}");
        }
        let long = "a".repeat(MAX_HOST_LEN + 1);
        assert_eq!(validate_host(&long), Err(HostError::TooLong(254)));
        assert_eq!(
            HostError::TooLong(254).to_string(),
            "host is 254 bytes long, at most 253"
        );
    }

    #[test]
    fn ports() {
        let cases: &[(&str, Option<u16>)] = &[
            ("1", Some(1)),
            ("80", Some(80)),
            ("65535", Some(65535)),
            ("00080", Some(80)),
            ("0", None),
            ("65536", None),
            ("", None),
            ("+1", None),
            ("-1", None),
            ("1 ", None),
            ("000080", None),
            ("99999999999999999999", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_port(input), *want, "{input:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            Strategy::parse("weighted"),
            Some(Strategy::WeightedRoundRobin)
        );
        assert_eq!(Strategy::parse("Random"), None);
        assert_eq!(LogLevel::parse("debug"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse("trace"), None);
        assert_eq!(spec("::1", 80, false).to_string(), "[::1]:80");
        assert_eq!(spec("h", 80, false).to_string(), "h:80");
    }
}
