//! The JSON config file (`-c FILE`): backends, health-check settings and the
//! strategy, read at start-up and again on every hot reload.
//!
//! It exists so that a mistake in the file is caught before anything runs,
//! with a message that names the file, the line and column of the offending
//! value, and what was expected (`backends.json:3:21: "port" must be an
//! integer 1..=65535, got 70000`). It must never accept a file it does not
//! fully understand: unknown keys, duplicate keys and wrong types are errors,
//! because a typo silently ignored is a setting silently lost.
//!
//! Format (every key but `backends` optional; the health keys may also sit
//! in a nested `"health"` object, but each key only once):
//!
//! ```json
//! {"backends": [{"host": "127.0.0.1", "port": 9001, "weight": 2, "tls": false}],
//!  "strategy": "round_robin",
//!  "unhealthy_threshold": 3, "healthy_threshold": 2,
//!  "probe_interval_ms": 5000, "probe_timeout_ms": 2000, "health_path": "/"}
//! ```
//!
//! `backends` must list 1 to [`MAX_BACKENDS`] backends. A backend needs
//! `host` and `port`; `weight` defaults to 1 (1..=65535) and `tls` to false.
//! TLS is also chosen by port 443 or an `https://` prefix on the host, which
//! is stripped (as is `http://`, and the brackets of `[::1]`).
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::json::{self, Json, JsonError, Pos, Value};
use super::{
    strip_scheme, tls_for, validate_host, BackendSpec, ForwardedHeaders, HeaderMode,
    HealthSettings, HostError, Strategy, Timeouts, MAX_BACKENDS, MAX_CONFIG_SIZE,
};

/// What a config file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileConfig {
    pub backends: Vec<BackendSpec>,
    /// The file's health settings, defaults for the keys it leaves out.
    pub health: HealthSettings,
    /// `None` when the file does not set `"strategy"`.
    pub strategy: Option<Strategy>,
    /// The file's `"timeouts"`, defaults for the keys it leaves out.
    pub timeouts: Timeouts,
    /// The file's `"forwarded"` header modes, defaults for those it leaves out.
    pub forwarded: ForwardedHeaders,
    /// `"max_body_bytes"`, 0 (no limit) if absent.
    pub max_body_bytes: u64,
    /// `"admin"`: `host:port` of the admin listener.
    pub admin: Option<std::net::SocketAddr>,
    /// `"metrics_on_traffic_port"`; if absent, true unless an admin
    /// listener is configured.
    pub metrics_on_traffic_port: Option<bool>,
    /// Where each of `backends` is in the file (for errors naming it).
    pub backend_pos: Vec<super::json::Pos>,
    /// `"pid_file"`, relative to the file's directory.
    pub pid_file: Option<PathBuf>,
    /// `"pool_max_conn"`, [`super::DEFAULT_POOL_MAX_CONN`] if absent.
    pub pool_max_conn: usize,
    /// `"max_connections"`, 0 (from the descriptor limit) if absent.
    pub max_connections: usize,
    /// `"trusted_client_headers"`, lowercase; none if absent.
    pub trusted_client_headers: Vec<String>,
    /// `"access_log"`: a path (relative to the file's directory) or `-`.
    pub access_log: Option<PathBuf>,
    /// `"request_buffer_bytes"`, 64 KiB if absent.
    pub request_buffer_bytes: u64,
    /// `"ca_file"`, relative to the config file's directory.
    pub ca_file: Option<PathBuf>,
    /// `"tls_listener"`: its port and certificates (paths relative to the
    /// file's directory); `"redirect_http_to_https"` is folded into it.
    pub tls_listener: Option<super::TlsListener>,
    /// `"resolver"`: DNS servers (else /etc/resolv.conf's).
    pub resolvers: Vec<std::net::SocketAddr>,
    /// `"dns_min_ttl_ms"`, `"dns_max_ttl_ms"`: re-resolution bounds.
    pub dns_ttl_ms: (u64, u64),
}

/// Why a config file was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be opened or read.
    Io { path: PathBuf, error: io::Error },
    /// The file is over [`MAX_CONFIG_SIZE`] bytes (`size` is at least what was seen).
    TooLarge { path: PathBuf, size: u64 },
    /// The file is not UTF-8; `pos` is the first bad byte.
    NotUtf8 { path: PathBuf, pos: Pos },
    /// The file is not JSON.
    Syntax { path: PathBuf, error: JsonError },
    /// The file is JSON but not a valid config.
    Invalid {
        path: PathBuf,
        pos: Pos,
        problem: Problem,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Io { path, .. }
            | ConfigError::TooLarge { path, .. }
            | ConfigError::NotUtf8 { path, .. }
            | ConfigError::Syntax { path, .. }
            | ConfigError::Invalid { path, .. } => path,
        }
    }

    /// Where in the file, when the error has a place.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            ConfigError::NotUtf8 { pos, .. } | ConfigError::Invalid { pos, .. } => Some(*pos),
            ConfigError::Syntax { error, .. } => Some(error.pos),
            ConfigError::Io { .. } | ConfigError::TooLarge { .. } => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            ConfigError::TooLarge { path, size } => write!(
                f,
                "{}: config file is {size} bytes, larger than the limit of {MAX_CONFIG_SIZE}",
                path.display()
            ),
            ConfigError::NotUtf8 { path, pos } => write!(
                f,
                "{}:{}:{}: config file is not valid UTF-8",
                path.display(),
                pos.line,
                pos.col
            ),
            ConfigError::Syntax { path, error } => write!(
                f,
                "{}:{}:{}: {}",
                path.display(),
                error.pos.line,
                error.pos.col,
                error.kind
            ),
            ConfigError::Invalid { path, pos, problem } => {
                write!(f, "{}:{}:{}: {problem}", path.display(), pos.line, pos.col)
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { error, .. } => Some(error),
            ConfigError::Syntax { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What is wrong with a well-formed JSON config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The top level, a backend or `"health"` is not an object.
    NotObject {
        what: &'static str,
        got: String,
    },
    /// A key the format does not have (`place` is "the config", "a backend", ...).
    UnknownKey {
        key: String,
        place: &'static str,
        allowed: &'static str,
    },
    DuplicateKey(String),
    MissingKey {
        key: &'static str,
        place: &'static str,
    },
    /// A value of the wrong type or out of range: `"key" must be EXPECTED, got GOT`.
    BadValue {
        key: &'static str,
        expected: &'static str,
        got: String,
    },
    BadHost(HostError),
    NoBackends,
    /// More than [`MAX_BACKENDS`]; the position is the first one too many.
    TooManyBackends(usize),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotObject { what, got } => write!(f, "{what} must be an object, got {got}"),
            Problem::UnknownKey {
                key,
                place,
                allowed,
            } => write!(f, "unknown key {key:?} in {place} (expected {allowed})"),
            Problem::DuplicateKey(key) => write!(f, "duplicate key {key:?}"),
            Problem::MissingKey { key, place } => write!(f, "{place} has no {key:?}"),
            Problem::BadValue { key, expected, got } => {
                write!(f, "{key:?} must be {expected}, got {got}")
            }
            Problem::BadHost(e) => match e {
                HostError::Empty => f.write_str("\"host\" is empty"),
                HostError::TooLong(n) => write!(
                    f,
                    "\"host\" is {n} bytes long, at most {}",
                    super::MAX_HOST_LEN
                ),
                HostError::BadChar(c) => write!(f, "\"host\" contains {c:?}"),
                HostError::LeadingDash => f.write_str("\"host\" starts with '-'"),
                HostError::NotIpv6 => f.write_str(
                    "\"host\" has a ':' but is not an IPv6 address (give the port in \"port\")",
                ),
            },
            Problem::NoBackends => f.write_str("\"backends\" is empty: list at least one backend"),
            Problem::TooManyBackends(n) => {
                write!(f, "too many backends: {n}, at most {MAX_BACKENDS}")
            }
        }
    }
}

const TOP_KEYS: &str = "backends, strategy, health, timeouts, forwarded, max_body_bytes, \
                        request_buffer_bytes, ca_file, admin, metrics_on_traffic_port, access_log, \
                        max_connections, pool_max_conn, trusted_client_headers, pid_file, \
                        tls_listener, redirect_http_to_https, resolver, dns_min_ttl_ms, \
                        dns_max_ttl_ms, unhealthy_threshold, \
                        healthy_threshold, probe_interval_ms, probe_timeout_ms, health_path";
const TLS_LISTENER_KEYS: &str = "port, certificates";
const CERT_KEYS: &str = "cert, key";
const FORWARDED_KEYS: &str = "x_forwarded_for, x_forwarded_proto, forwarded";
const TIMEOUT_KEYS: &str =
    "client_header_ms, client_idle_ms, upstream_connect_ms, upstream_response_ms, body_progress_ms, \
     client_body_ms, upstream_idle_ms, client_body_min_rate";
const HEALTH_KEYS: &str =
    "unhealthy_threshold, healthy_threshold, probe_interval_ms, probe_timeout_ms, health_path";
const BACKEND_KEYS: &str = "host, port, weight, tls, srv";

/// Longest `health_path` accepted; it goes into every probe's request line.
const MAX_HEALTH_PATH: usize = 1024;
/// Upper bound of the probe interval and timeout: one day.
const MAX_PROBE_MS: u64 = 86_400_000;
/// Upper bound of the health thresholds.
const MAX_THRESHOLD: u64 = 1000;

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let io_err = |error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
    };
    // Looked at before it is opened: opening a FIFO would block until a
    // writer came (the master, or `--check`, would hang).
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "is a directory"
        } else {
            "is not a regular file (a FIFO, socket or device)"
        };
        return Err(io_err(io::Error::new(io::ErrorKind::InvalidInput, what)));
    }
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.len() > MAX_CONFIG_SIZE as u64 {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    // Bounded even when the size lied (a growing file, a FIFO, /dev/zero).
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() > MAX_CONFIG_SIZE {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("");
            return Err(ConfigError::NotUtf8 {
                path: path.to_path_buf(),
                pos: end_pos(good),
            });
        }
    };
    parse_str(text, path)
}

/// Validates config text; `path_for_messages` only names the file in errors.
pub fn parse_str(text: &str, path_for_messages: &Path) -> Result<FileConfig, ConfigError> {
    let path = path_for_messages;
    if text.len() > MAX_CONFIG_SIZE {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size: text.len() as u64,
        });
    }
    let doc = json::parse(text).map_err(|error| ConfigError::Syntax {
        path: path.to_path_buf(),
        error,
    })?;
    Reader { path }.config(&doc)
}

/// The position just after `text`.
fn end_pos(text: &str) -> Pos {
    let mut pos = Pos::START;
    for c in text.chars() {
        if c == '\n' {
            pos.line += 1;
            pos.col = 1;
        } else {
            pos.col += 1;
        }
    }
    pos
}

/// How a value is shown after "got": numbers and short strings as written,
/// containers by kind.
fn describe(v: &Json) -> String {
    match &v.value {
        Value::Number(n) => match (v.as_i64(), v.as_u64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(u)) => u.to_string(),
            // Not written as an integer: show that (`80.0`, `1e23`).
            _ => format!("{n:?}"),
        },
        Value::String(s) => {
            const MAX: usize = 40;
            if s.chars().count() > MAX {
                let head: String = s.chars().take(MAX).collect();
                format!("{head:?}...")
            } else {
                format!("{s:?}")
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => v.type_name().to_string(),
    }
}

struct Reader<'a> {
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, at: &Json, problem: Problem) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            pos: at.pos,
            problem,
        }
    }

    fn bad(&self, at: &Json, key: &'static str, expected: &'static str) -> ConfigError {
        self.err(
            at,
            Problem::BadValue {
                key,
                expected,
                got: describe(at),
            },
        )
    }

    fn object<'j>(
        &self,
        v: &'j Json,
        what: &'static str,
    ) -> Result<&'j [(String, Json)], ConfigError> {
        v.as_object().ok_or_else(|| {
            self.err(
                v,
                Problem::NotObject {
                    what,
                    got: v.type_name().to_string(),
                },
            )
        })
    }

    /// An integer in `lo..=hi`.
    fn int(
        &self,
        v: &Json,
        key: &'static str,
        expected: &'static str,
        lo: u64,
        hi: u64,
    ) -> Result<u64, ConfigError> {
        match v.as_u64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(self.bad(v, key, expected)),
        }
    }

    fn config(&self, doc: &Json) -> Result<FileConfig, ConfigError> {
        let members = self.object(doc, "the config")?;
        let mut seen: Vec<&str> = Vec::new();
        let mut backends = None;
        let mut strategy = None;
        let mut health = HealthSettings::default();
        let mut timeouts = Timeouts::default();
        let mut forwarded = ForwardedHeaders::default();
        let mut max_body_bytes = 0;
        let mut request_buffer_bytes = super::DEFAULT_REQUEST_BUFFER_BYTES;
        let mut ca_file = None;
        let mut admin = None;
        let mut metrics_on_traffic_port = None;
        let mut access_log = None;
        let mut max_connections = 0;
        let mut pool_max_conn = super::DEFAULT_POOL_MAX_CONN;
        let mut pid_file = None;
        let mut trusted_client_headers = Vec::new();
        let mut tls_listener = None;
        let mut redirect_http = None;
        let mut resolvers = Vec::new();
        let mut dns_ttl_ms = (super::DNS_MIN_TTL_MS, super::DNS_MAX_TTL_MS);
        for (key, v) in members {
            self.once(&mut seen, key, v)?;
            match key.as_str() {
                "backends" => backends = Some(self.backends(v)?),
                "strategy" => {
                    const EXPECTED: &str =
                        "one of round_robin, weighted_round_robin, weighted, random, least_connections, least_conn, p2c";
                    let s = v
                        .as_str()
                        .ok_or_else(|| self.bad(v, "strategy", EXPECTED))?;
                    let parsed =
                        Strategy::parse(s).ok_or_else(|| self.bad(v, "strategy", EXPECTED))?;
                    strategy = Some(parsed);
                }
                "ca_file" => {
                    const EXPECTED: &str = "a file name (PEM CA certificates)";
                    let name = v
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| self.bad(v, "ca_file", EXPECTED))?;
                    let dir = self.path.parent().unwrap_or(Path::new(""));
                    ca_file = Some(dir.join(name));
                }
                "admin" => {
                    const EXPECTED: &str = "an address like \"127.0.0.1:9090\"";
                    let a = v
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| self.bad(v, "admin", EXPECTED))?;
                    admin = Some(a);
                }
                "metrics_on_traffic_port" => {
                    metrics_on_traffic_port =
                        Some(v.as_bool().ok_or_else(|| {
                            self.bad(v, "metrics_on_traffic_port", "true or false")
                        })?);
                }
                "pool_max_conn" => {
                    const EXPECTED: &str =
                        "an integer 0..=1000000 (idle backend connections kept per backend per worker)";
                    pool_max_conn = self.int(v, "pool_max_conn", EXPECTED, 0, 1_000_000)? as usize;
                }
                "max_connections" => {
                    const EXPECTED: &str = "an integer 1..=1000000 (client connections per worker)";
                    max_connections = self.int(
                        v,
                        "max_connections",
                        EXPECTED,
                        1,
                        super::MAX_CONNECTIONS_LIMIT as u64,
                    )? as usize;
                }
                "trusted_client_headers" => {
                    const EXPECTED: &str = "a list of header names among Forwarded, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Port, X-Forwarded-Ssl, X-Forwarded-Scheme, X-Forwarded-Prefix, X-Forwarded-Server, X-Forwarded, X-Real-IP, True-Client-IP, X-Client-IP, Client-IP, X-Cluster-Client-IP, CF-Connecting-IP, Fastly-Client-IP, X-Original-Forwarded-For";
                    let items = v
                        .as_array()
                        .ok_or_else(|| self.bad(v, "trusted_client_headers", EXPECTED))?;
                    for item in items {
                        let name = item
                            .as_str()
                            .map(str::to_ascii_lowercase)
                            .filter(|n| super::IDENTITY_HEADERS.contains(&n.as_str()))
                            .ok_or_else(|| self.bad(item, "trusted_client_headers", EXPECTED))?;
                        trusted_client_headers.push(name);
                    }
                }
                "access_log" => {
                    const EXPECTED: &str = "a file name, or \"-\" for standard output";
                    let name = v
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| self.bad(v, "access_log", EXPECTED))?;
                    access_log = Some(if name == "-" {
                        PathBuf::from("-")
                    } else {
                        self.path.parent().unwrap_or(Path::new("")).join(name)
                    });
                }
                "tls_listener" => tls_listener = Some(self.tls_listener(v)?),
                "resolver" => {
                    const EXPECTED: &str =
                        "an address like \"10.0.0.2:53\", or a list of them (at most 3)";
                    let items: Vec<&Json> = match v.as_array() {
                        Some(list) if !list.is_empty() && list.len() <= 3 => list.iter().collect(),
                        Some(_) => return Err(self.bad(v, "resolver", EXPECTED)),
                        None => vec![v],
                    };
                    for item in items {
                        let a = item
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| self.bad(item, "resolver", EXPECTED))?;
                        resolvers.push(a);
                    }
                }
                "dns_min_ttl_ms" => {
                    const MS: &str = "an integer 0..=86400000 (milliseconds)";
                    dns_ttl_ms.0 = self.int(v, "dns_min_ttl_ms", MS, 0, MAX_PROBE_MS)?;
                }
                "dns_max_ttl_ms" => {
                    const MS: &str = "an integer 1..=86400000 (milliseconds)";
                    dns_ttl_ms.1 = self.int(v, "dns_max_ttl_ms", MS, 1, MAX_PROBE_MS)?;
                }
                "redirect_http_to_https" => {
                    redirect_http = Some((
                        v.as_bool().ok_or_else(|| {
                            self.bad(v, "redirect_http_to_https", "true or false")
                        })?,
                        v,
                    ));
                }
                "pid_file" => {
                    const EXPECTED: &str = "a file name";
                    let name = v
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| self.bad(v, "pid_file", EXPECTED))?;
                    pid_file = Some(self.path.parent().unwrap_or(Path::new("")).join(name));
                }
                "request_buffer_bytes" => {
                    const EXPECTED: &str = "an integer 0..=16777216 (0: stream every body)";
                    request_buffer_bytes =
                        self.int(v, "request_buffer_bytes", EXPECTED, 0, 16 * 1024 * 1024)?;
                }
                "max_body_bytes" => {
                    const EXPECTED: &str = "an integer, 0 for no limit";
                    max_body_bytes = self.int(v, "max_body_bytes", EXPECTED, 0, u64::MAX >> 1)?;
                }
                "forwarded" => {
                    const EXPECTED: &str = "one of append, replace, off";
                    let mut inner = Vec::new();
                    for (key, v) in self.object(v, "\"forwarded\"")? {
                        self.once(&mut inner, key, v)?;
                        let slot = match key.as_str() {
                            "x_forwarded_for" => &mut forwarded.x_forwarded_for,
                            "x_forwarded_proto" => &mut forwarded.x_forwarded_proto,
                            "forwarded" => &mut forwarded.forwarded,
                            _ => {
                                return Err(self.err(
                                    v,
                                    Problem::UnknownKey {
                                        key: key.clone(),
                                        place: "\"forwarded\"",
                                        allowed: FORWARDED_KEYS,
                                    },
                                ))
                            }
                        };
                        let mode = v.as_str().and_then(HeaderMode::parse);
                        *slot = mode.ok_or_else(|| self.bad(v, "forwarded", EXPECTED))?;
                    }
                }
                "timeouts" => {
                    const MS: &str = "an integer 1..=86400000 (milliseconds)";
                    let mut inner = Vec::new();
                    for (key, v) in self.object(v, "\"timeouts\"")? {
                        self.once(&mut inner, key, v)?;
                        if key == "client_body_min_rate" {
                            const RATE: &str =
                                "an integer 0..=1073741824 (bytes per second; 0 turns it off)";
                            timeouts.client_body_min_rate =
                                self.int(v, "client_body_min_rate", RATE, 0, 1 << 30)?;
                            continue;
                        }
                        let slot = match key.as_str() {
                            "client_header_ms" => &mut timeouts.client_header,
                            "client_idle_ms" => &mut timeouts.client_idle,
                            "upstream_connect_ms" => &mut timeouts.upstream_connect,
                            "upstream_response_ms" => &mut timeouts.upstream_response,
                            "body_progress_ms" => &mut timeouts.body_progress,
                            "client_body_ms" => &mut timeouts.client_body,
                            "upstream_idle_ms" => &mut timeouts.upstream_idle,
                            _ => {
                                return Err(self.err(
                                    v,
                                    Problem::UnknownKey {
                                        key: key.clone(),
                                        place: "\"timeouts\"",
                                        allowed: TIMEOUT_KEYS,
                                    },
                                ))
                            }
                        };
                        let ms = self.int(v, "timeouts", MS, 1, MAX_PROBE_MS)?;
                        *slot = Duration::from_millis(ms);
                    }
                }
                "health" => {
                    for (key, v) in self.object(v, "\"health\"")? {
                        self.once(&mut seen, key, v)?;
                        if !self.health_key(&mut health, key, v)? {
                            return Err(self.err(
                                v,
                                Problem::UnknownKey {
                                    key: key.clone(),
                                    place: "\"health\"",
                                    allowed: HEALTH_KEYS,
                                },
                            ));
                        }
                    }
                }
                _ => {
                    if !self.health_key(&mut health, key, v)? {
                        return Err(self.err(
                            v,
                            Problem::UnknownKey {
                                key: key.clone(),
                                place: "the config",
                                allowed: TOP_KEYS,
                            },
                        ));
                    }
                }
            }
        }
        let backend_pos: Vec<super::json::Pos> = members
            .iter()
            .find(|(k, _)| k == "backends")
            .and_then(|(_, v)| v.as_array())
            .map(|items| items.iter().map(|b| b.pos).collect())
            .unwrap_or_default();
        let backends = backends.ok_or_else(|| {
            self.err(
                doc,
                Problem::MissingKey {
                    key: "backends",
                    place: "the config",
                },
            )
        })?;
        match (&mut tls_listener, redirect_http) {
            (Some(l), Some((on, _))) => l.redirect_http = on,
            (None, Some((true, v))) => {
                return Err(self.bad(
                    v,
                    "redirect_http_to_https",
                    "false without a \"tls_listener\" (there is no TLS port to redirect to)",
                ))
            }
            _ => {}
        }
        if dns_ttl_ms.0 > dns_ttl_ms.1 {
            let at = members
                .iter()
                .find(|(k, _)| k == "dns_min_ttl_ms")
                .map_or(doc, |(_, v)| v);
            return Err(self.bad(at, "dns_min_ttl_ms", "at most dns_max_ttl_ms"));
        }
        Ok(FileConfig {
            resolvers,
            dns_ttl_ms,
            tls_listener,
            backends,
            health,
            strategy,
            timeouts,
            forwarded,
            max_body_bytes,
            request_buffer_bytes,
            ca_file,
            admin,
            metrics_on_traffic_port,
            access_log,
            max_connections,
            pool_max_conn,
            trusted_client_headers,
            backend_pos,
            pid_file,
        })
    }

    /// `"tls_listener": {"port": 8443, "certificates": [{"cert": "site.pem",
    /// "key": "site.key"}]}`.
    fn tls_listener(&self, v: &Json) -> Result<super::TlsListener, ConfigError> {
        let mut out = super::TlsListener::default();
        let mut inner = Vec::new();
        let mut port = None;
        let mut certs = None;
        for (key, item) in self.object(v, "\"tls_listener\"")? {
            self.once(&mut inner, key, item)?;
            match key.as_str() {
                "port" => {
                    port = Some(self.int(item, "port", "an integer 1..=65535", 1, 65535)? as u16)
                }
                "certificates" => {
                    const EXPECTED: &str =
                        "a non-empty list of {\"cert\": \"file.pem\", \"key\": \"file.key\"}";
                    let list = item
                        .as_array()
                        .filter(|l| !l.is_empty())
                        .ok_or_else(|| self.bad(item, "certificates", EXPECTED))?;
                    let dir = self.path.parent().unwrap_or(Path::new(""));
                    let mut pairs = Vec::new();
                    for c in list {
                        let mut seen = Vec::new();
                        let (mut cert, mut key_file) = (None, None);
                        for (k, f) in self.object(c, "a certificate")? {
                            self.once(&mut seen, k, f)?;
                            let name = f.as_str().filter(|s| !s.is_empty()).map(|s| dir.join(s));
                            match k.as_str() {
                                "cert" => {
                                    cert = Some(name.ok_or_else(|| {
                                        self.bad(f, "cert", "a file name (PEM certificate chain)")
                                    })?)
                                }
                                "key" => {
                                    key_file = Some(name.ok_or_else(|| {
                                        self.bad(f, "key", "a file name (PEM private key)")
                                    })?)
                                }
                                _ => {
                                    return Err(self.err(
                                        f,
                                        Problem::UnknownKey {
                                            key: k.clone(),
                                            place: "a certificate",
                                            allowed: CERT_KEYS,
                                        },
                                    ))
                                }
                            }
                        }
                        let missing = |key| {
                            self.err(
                                c,
                                Problem::MissingKey {
                                    key,
                                    place: "a certificate",
                                },
                            )
                        };
                        pairs.push(super::CertPair {
                            cert: cert.ok_or_else(|| missing("cert"))?,
                            key: key_file.ok_or_else(|| missing("key"))?,
                        });
                    }
                    certs = Some(pairs);
                }
                _ => {
                    return Err(self.err(
                        item,
                        Problem::UnknownKey {
                            key: key.clone(),
                            place: "\"tls_listener\"",
                            allowed: TLS_LISTENER_KEYS,
                        },
                    ))
                }
            }
        }
        let missing = |key| {
            self.err(
                v,
                Problem::MissingKey {
                    key,
                    place: "\"tls_listener\"",
                },
            )
        };
        out.port = port.ok_or_else(|| missing("port"))?;
        out.certificates = certs.ok_or_else(|| missing("certificates"))?;
        Ok(out)
    }

    /// Refuses a key seen before in the same scope.
    fn once<'k>(&self, seen: &mut Vec<&'k str>, key: &'k str, v: &Json) -> Result<(), ConfigError> {
        if seen.contains(&key) {
            return Err(self.err(v, Problem::DuplicateKey(key.to_string())));
        }
        seen.push(key);
        Ok(())
    }

    /// Applies one health key; false if `key` is not one.
    fn health_key(
        &self,
        health: &mut HealthSettings,
        key: &str,
        v: &Json,
    ) -> Result<bool, ConfigError> {
        const THRESHOLD: &str = "an integer 1..=1000";
        const MS: &str = "an integer 1..=86400000 (milliseconds)";
        match key {
            "unhealthy_threshold" => {
                let n = self.int(v, "unhealthy_threshold", THRESHOLD, 1, MAX_THRESHOLD)?;
                health.unhealthy_threshold = n as u32;
            }
            "healthy_threshold" => {
                let n = self.int(v, "healthy_threshold", THRESHOLD, 1, MAX_THRESHOLD)?;
                health.healthy_threshold = n as u32;
            }
            "probe_interval_ms" => {
                const EXPECTED: &str =
                    "an integer 0..=86400000 (milliseconds; 0 turns active probing off)";
                health.probe_interval_ms =
                    self.int(v, "probe_interval_ms", EXPECTED, 0, MAX_PROBE_MS)?;
            }
            "probe_timeout_ms" => {
                health.probe_timeout_ms = self.int(v, "probe_timeout_ms", MS, 1, MAX_PROBE_MS)?;
            }
            "health_path" => {
                const EXPECTED: &str =
                    "a path starting with '/', at most 1024 bytes of visible ASCII";
                let ok = v.as_str().filter(|s| {
                    s.starts_with('/')
                        && s.len() <= MAX_HEALTH_PATH
                        && s.bytes().all(|b| b.is_ascii_graphic())
                });
                let s = ok.ok_or_else(|| self.bad(v, "health_path", EXPECTED))?;
                health.health_path = s.to_string();
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn backends(&self, v: &Json) -> Result<Vec<BackendSpec>, ConfigError> {
        let items = v
            .as_array()
            .ok_or_else(|| self.bad(v, "backends", "an array of backends"))?;
        if items.is_empty() {
            return Err(self.err(v, Problem::NoBackends));
        }
        if let Some(extra) = items.get(MAX_BACKENDS) {
            return Err(self.err(extra, Problem::TooManyBackends(items.len())));
        }
        items.iter().map(|b| self.backend(b)).collect()
    }

    fn backend(&self, v: &Json) -> Result<BackendSpec, ConfigError> {
        let members = self.object(v, "each backend")?;
        let mut seen: Vec<&str> = Vec::new();
        let mut host = None;
        let mut port = None;
        let mut weight = 1u16;
        let mut tls = false;
        let mut scheme = None;
        let mut srv = None;
        for (key, item) in members {
            self.once(&mut seen, key, item)?;
            match key.as_str() {
                "host" => {
                    let raw = item
                        .as_str()
                        .ok_or_else(|| self.bad(item, "host", "a string"))?;
                    let (rest, given) = strip_scheme(raw);
                    let name = match rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                        Some(inner) if inner.contains(':') => inner,
                        Some(_) => return Err(self.err(item, Problem::BadHost(HostError::NotIpv6))),
                        None => rest,
                    };
                    validate_host(name).map_err(|e| self.err(item, Problem::BadHost(e)))?;
                    scheme = given;
                    host = Some(name.to_string());
                }
                "port" => {
                    let n = self.int(item, "port", "an integer 1..=65535", 1, 65535)?;
                    port = Some(n as u16);
                }
                "weight" => {
                    let n = self.int(item, "weight", "an integer 1..=65535", 1, 65535)?;
                    weight = n as u16;
                }
                "tls" => {
                    tls |= item
                        .as_bool()
                        .ok_or_else(|| self.bad(item, "tls", "true or false"))?;
                }
                "srv" => {
                    const EXPECTED: &str = "a DNS name like \"_http._tcp.example.com\"";
                    let name = item
                        .as_str()
                        .filter(|n| super::validate_dns_name(n).is_ok())
                        .ok_or_else(|| self.bad(item, "srv", EXPECTED))?;
                    srv = Some((name.to_string(), item));
                }
                _ => {
                    return Err(self.err(
                        item,
                        Problem::UnknownKey {
                            key: key.clone(),
                            place: "a backend",
                            allowed: BACKEND_KEYS,
                        },
                    ))
                }
            }
        }
        let missing = |key| {
            self.err(
                v,
                Problem::MissingKey {
                    key,
                    place: "backend",
                },
            )
        };
        if let Some((name, item)) = srv {
            // Targets, ports and weights come from the SRV records.
            if host.is_some() || port.is_some() || seen.contains(&"weight") {
                return Err(self.bad(
                    item,
                    "srv",
                    "alone with \"tls\" (host, port and weight come from the SRV records)",
                ));
            }
            return Ok(BackendSpec {
                host: name,
                port: 0,
                weight: 1,
                tls,
                srv: true,
            });
        }
        let host = host.ok_or_else(|| missing("host"))?;
        let port = port.ok_or_else(|| missing("port"))?;
        Ok(BackendSpec {
            host,
            port,
            weight,
            tls: tls || tls_for(scheme, port),
            srv: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn be(host: &str, port: u16, weight: u16, tls: bool) -> BackendSpec {
        BackendSpec {
            host: host.to_string(),
            port,
            weight,
            tls,
            srv: false,
        }
    }

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        parse_str(text, Path::new("backends.json"))
    }

    #[test]
    fn full_example() {
        let text = r#"{
  "backends": [
    {"host": "127.0.0.1", "port": 9001},
    {"host": "127.0.0.1", "port": 9002, "weight": 2},
    {"host": "api.example.com", "port": 443, "tls": true},
    {"host": "https://secure.example", "port": 8443},
    {"host": "http://plain.example", "port": 80, "tls": false},
    {"host": "[::1]", "port": 9003, "weight": 65535},
    {"host": "::1", "port": 9004}
  ],
  "strategy": "weighted_round_robin",
  "unhealthy_threshold": 5,
  "healthy_threshold": 1,
  "probe_interval_ms": 250,
  "probe_timeout_ms": 100,
  "health_path": "/healthz?full=1"
}"#;
        let cfg = parse(text).unwrap();
        assert_eq!(
            cfg.backends,
            [
                be("127.0.0.1", 9001, 1, false),
                be("127.0.0.1", 9002, 2, false),
                be("api.example.com", 443, 1, true),
                be("secure.example", 8443, 1, true),
                be("plain.example", 80, 1, false),
                be("::1", 9003, 65535, false),
                be("::1", 9004, 1, false),
            ]
        );
        assert_eq!(cfg.strategy, Some(Strategy::WeightedRoundRobin));
        assert_eq!(
            cfg.health,
            HealthSettings {
                unhealthy_threshold: 5,
                healthy_threshold: 1,
                probe_interval_ms: 250,
                probe_timeout_ms: 100,
                health_path: "/healthz?full=1".to_string(),
            }
        );
    }

    #[test]
    fn defaults_and_nested_health() {
        let cfg = parse(r#"{"backends":[{"host":"h","port":1}]}"#).unwrap();
        assert_eq!(cfg.health, HealthSettings::default());
        assert_eq!(cfg.strategy, None);
        assert_eq!(cfg.backends, [be("h", 1, 1, false)]);

        let cfg = parse(
            r#"{"health":{"probe_interval_ms":100,"health_path":"/up"},
                "backends":[{"host":"h","port":1}],"healthy_threshold":4,
                "strategy":"weighted"}"#,
        )
        .unwrap();
        assert_eq!(cfg.health.probe_interval_ms, 100);
        assert_eq!(cfg.health.health_path, "/up");
        assert_eq!(cfg.health.healthy_threshold, 4);
        assert_eq!(cfg.health.unhealthy_threshold, 3);
        assert_eq!(cfg.strategy, Some(Strategy::WeightedRoundRobin));

        for (name, want) in [
            ("round_robin", Strategy::RoundRobin),
            ("random", Strategy::Random),
        ] {
            let text = format!(r#"{{"strategy":"{name}","backends":[{{"host":"h","port":1}}]}}"#);
            assert_eq!(parse(&text).unwrap().strategy, Some(want));
        }
    }

    #[test]
    fn timeouts() {
        let cfg = parse(r#"{"backends":[{"host":"a","port":1}],"timeouts":{"upstream_response_ms":250,"client_idle_ms":1000}}"#).unwrap();
        assert_eq!(cfg.timeouts.upstream_response, Duration::from_millis(250));
        assert_eq!(cfg.timeouts.client_idle, Duration::from_secs(1));
        assert_eq!(
            cfg.timeouts.client_header,
            Timeouts::default().client_header
        );
        let e =
            parse(r#"{"backends":[{"host":"a","port":1}],"timeouts":{"connect":1}}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown key \"connect\" in \"timeouts\""),
            "{e}"
        );
        let e = parse(r#"{"backends":[{"host":"a","port":1}],"timeouts":{"client_idle_ms":0}}"#)
            .unwrap_err();
        assert!(
            e.to_string().contains("must be an integer 1..=86400000"),
            "{e}"
        );
    }

    #[test]
    fn max_backends_accepted() {
        let list: Vec<String> = (0..MAX_BACKENDS)
            .map(|i| format!(r#"{{"host":"h{i}","port":{}}}"#, 1000 + i))
            .collect();
        let text = format!(r#"{{"backends":[{}]}}"#, list.join(","));
        assert_eq!(parse(&text).unwrap().backends.len(), MAX_BACKENDS);
        let long = "a".repeat(super::super::MAX_HOST_LEN);
        let text = format!(r#"{{"backends":[{{"host":"{long}","port":1}}]}}"#);
        assert_eq!(parse(&text).unwrap().backends[0].host, long);
    }

    #[test]
    fn errors_name_file_line_column() {
        let too_many: Vec<String> = (0..=MAX_BACKENDS)
            .map(|_| r#"{"host":"h","port":1}"#.to_string())
            .collect();
        let too_many = format!("{{\"backends\":[\n{}\n]}}", too_many.join(",\n"));
        let long = format!(
            r#"{{"backends":[{{"host":"{}","port":1}}]}}"#,
            "a".repeat(254)
        );
        let cases: &[(&str, &str)] = &[
            (
                "{\"backends\": [\n  {\"host\": \"a\", \"port\": 9001},\n  {\"host\": \"b\", \"port\": 70000}\n]}",
                "backends.json:3:25: \"port\" must be an integer 1..=65535, got 70000",
            ),
            (
                r#"{"backends":[{"host":"a","port":0}]}"#,
                "backends.json:1:33: \"port\" must be an integer 1..=65535, got 0",
            ),
            (
                r#"{"backends":[{"host":"a","port":-1}]}"#,
                "backends.json:1:33: \"port\" must be an integer 1..=65535, got -1",
            ),
            (
                r#"{"backends":[{"host":"a","port":80.5}]}"#,
                "backends.json:1:33: \"port\" must be an integer 1..=65535, got 80.5",
            ),
            (
                r#"{"backends":[{"host":"a","port":8e1}]}"#,
                "backends.json:1:33: \"port\" must be an integer 1..=65535, got 80.0",
            ),
            (
                r#"{"backends":[{"host":"a","port":"80"}]}"#,
                "backends.json:1:33: \"port\" must be an integer 1..=65535, got \"80\"",
            ),
            (
                r#"{"backends":[{"host":"a","port":99999999999999999999999}]}"#,
                "backends.json:1:33: \"port\" must be an integer 1..=65535, got 1e23",
            ),
            (
                r#"{"backends":[{"host":"a","port":1,"weight":0}]}"#,
                "backends.json:1:44: \"weight\" must be an integer 1..=65535, got 0",
            ),
            (
                r#"{"backends":[{"host":"a","port":1,"weight":65536}]}"#,
                "backends.json:1:44: \"weight\" must be an integer 1..=65535, got 65536",
            ),
            (
                r#"{"backends":[{"host":"a","port":1,"tls":"yes"}]}"#,
                "backends.json:1:41: \"tls\" must be true or false, got \"yes\"",
            ),
            (
                r#"{"backends":[{"host":5,"port":1}]}"#,
                "backends.json:1:22: \"host\" must be a string, got 5",
            ),
            (
                r#"{"backends":[{"host":"","port":1}]}"#,
                "backends.json:1:22: \"host\" is empty",
            ),
            (
                r#"{"backends":[{"host":"https://","port":1}]}"#,
                "backends.json:1:22: \"host\" is empty",
            ),
            (
                &long,
                "backends.json:1:22: \"host\" is 254 bytes long, at most 253",
            ),
            (
                r#"{"backends":[{"host":"a b","port":1}]}"#,
                "backends.json:1:22: \"host\" contains ' '",
            ),
            (
                r#"{"backends":[{"host":"127.0.0.1:9001","port":1}]}"#,
                "backends.json:1:22: \"host\" has a ':' but is not an IPv6 address (give the port in \"port\")",
            ),
            (
                r#"{"backends":[{"host":"[h]","port":1}]}"#,
                "backends.json:1:22: \"host\" has a ':' but is not an IPv6 address (give the port in \"port\")",
            ),
            (
                r#"{"backends":[{"port":1}]}"#,
                "backends.json:1:14: backend has no \"host\"",
            ),
            (
                r#"{"backends":[{"host":"a"}]}"#,
                "backends.json:1:14: backend has no \"port\"",
            ),
            (
                r#"{"backends":[{"host":"a","prot":1}]}"#,
                "backends.json:1:33: unknown key \"prot\" in a backend (expected host, port, weight, tls, srv)",
            ),
            (
                r#"{"backends":[{"host":"a","port":1,"port":2}]}"#,
                "backends.json:1:42: duplicate key \"port\"",
            ),
            (
                r#"{"backends":["a:1"]}"#,
                "backends.json:1:14: each backend must be an object, got a string",
            ),
            (
                r#"{"backends":{"host":"a"}}"#,
                "backends.json:1:13: \"backends\" must be an array of backends, got an object",
            ),
            (
                r#"{"backends":[]}"#,
                "backends.json:1:13: \"backends\" is empty: list at least one backend",
            ),
            (
                &too_many,
                "backends.json:66:1: too many backends: 65, at most 64",
            ),
            (
                "{}",
                "backends.json:1:1: the config has no \"backends\"",
            ),
            (
                "[]",
                "backends.json:1:1: the config must be an object, got an array",
            ),
            (
                r#"{"backends":[{"host":"a","port":1}],"backend":[]}"#,
                "backends.json:1:47: unknown key \"backend\" in the config (expected backends, strategy, health, timeouts, forwarded, max_body_bytes, request_buffer_bytes, ca_file, admin, metrics_on_traffic_port, access_log, max_connections, pool_max_conn, trusted_client_headers, pid_file, tls_listener, redirect_http_to_https, resolver, dns_min_ttl_ms, dns_max_ttl_ms, unhealthy_threshold, healthy_threshold, probe_interval_ms, probe_timeout_ms, health_path)",
            ),
            (
                r#"{"backends":[{"host":"a","port":1}],"backends":[{"host":"a","port":1}]}"#,
                "backends.json:1:48: duplicate key \"backends\"",
            ),
            (
                r#"{"strategy":"fastest","backends":[{"host":"a","port":1}]}"#,
                "backends.json:1:13: \"strategy\" must be one of round_robin, weighted_round_robin, weighted, random, least_connections, least_conn, p2c, got \"fastest\"",
            ),
            (
                r#"{"strategy":null}"#,
                "backends.json:1:13: \"strategy\" must be one of round_robin, weighted_round_robin, weighted, random, least_connections, least_conn, p2c, got null",
            ),
            (
                r#"{"unhealthy_threshold":0}"#,
                "backends.json:1:24: \"unhealthy_threshold\" must be an integer 1..=1000, got 0",
            ),
            (
                r#"{"healthy_threshold":true}"#,
                "backends.json:1:22: \"healthy_threshold\" must be an integer 1..=1000, got true",
            ),
            (
                r#"{"probe_interval_ms":[]}"#,
                "backends.json:1:22: \"probe_interval_ms\" must be an integer 0..=86400000 (milliseconds; 0 turns active probing off), got an array",
            ),
            (
                r#"{"probe_timeout_ms":86400001}"#,
                "backends.json:1:21: \"probe_timeout_ms\" must be an integer 1..=86400000 (milliseconds), got 86400001",
            ),
            (
                r#"{"health_path":"health"}"#,
                "backends.json:1:16: \"health_path\" must be a path starting with '/', at most 1024 bytes of visible ASCII, got \"health\"",
            ),
            (
                r#"{"health_path":"/a b"}"#,
                "backends.json:1:16: \"health_path\" must be a path starting with '/', at most 1024 bytes of visible ASCII, got \"/a b\"",
            ),
            (
                r#"{"health_path":"/\r\nX-Evil: 1"}"#,
                "backends.json:1:16: \"health_path\" must be a path starting with '/', at most 1024 bytes of visible ASCII, got \"/\\r\\nX-Evil: 1\"",
            ),
            (
                r#"{"health":{"probe_interval":5}}"#,
                "backends.json:1:29: unknown key \"probe_interval\" in \"health\" (expected unhealthy_threshold, healthy_threshold, probe_interval_ms, probe_timeout_ms, health_path)",
            ),
            (
                r#"{"health":{"backends":[]}}"#,
                "backends.json:1:23: unknown key \"backends\" in \"health\" (expected unhealthy_threshold, healthy_threshold, probe_interval_ms, probe_timeout_ms, health_path)",
            ),
            (
                r#"{"probe_interval_ms":5,"health":{"probe_interval_ms":6}}"#,
                "backends.json:1:54: duplicate key \"probe_interval_ms\"",
            ),
            (
                r#"{"health":5}"#,
                "backends.json:1:11: \"health\" must be an object, got a number",
            ),
            (
                "{\"backends\": [\n  {\"host\": \"a\", \"port\": 1,}\n]}",
                "backends.json:2:26: trailing comma is not allowed",
            ),
            (
                "{\"backends\": [\n  {\"host\": \"a\" \"port\": 1}\n]}",
                "backends.json:2:16: expected ',' or '}'",
            ),
            ("", "backends.json:1:1: unexpected end of input, expected a JSON value"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.to_string(), *want, "for {text}");
            assert_eq!(err.path(), Path::new("backends.json"));
            assert!(err.pos().is_some());
        }
    }

    #[test]
    fn long_string_values_are_shortened() {
        let text = format!(r#"{{"strategy":"{}"}}"#, "x".repeat(100));
        let msg = parse(&text).unwrap_err().to_string();
        assert!(
            msg.ends_with(&format!("got \"{}\"...", "x".repeat(40))),
            "{msg}"
        );
    }

    #[test]
    fn size_limit() {
        let pad = " ".repeat(MAX_CONFIG_SIZE);
        let text = format!(r#"{{"backends":[{{"host":"a","port":1}}]}}{pad}"#);
        let err = parse(&text).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "backends.json: config file is {} bytes, larger than the limit of 65536",
                text.len()
            )
        );
        let fits = format!(
            r#"{{"backends":[{{"host":"a","port":1}}]}}{}"#,
            " ".repeat(MAX_CONFIG_SIZE - 36)
        );
        assert_eq!(fits.len(), MAX_CONFIG_SIZE);
        assert!(parse(&fits).is_ok());
    }

    /// A fresh file under the system temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &[u8]) -> TempFile {
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "lb-config-test-{}-{}.json",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn load_from_disk() {
        let f = TempFile::new(br#"{"backends":[{"host":"127.0.0.1","port":9001,"weight":3}]}"#);
        let cfg = load(&f.0).unwrap();
        assert_eq!(cfg.backends, [be("127.0.0.1", 9001, 3, false)]);

        let f = TempFile::new(b"{\"backends\":[{\"host\":\"a\",\"port\":0}]}");
        let msg = load(&f.0).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}:1:33: \"port\" must be an integer 1..=65535, got 0",
                f.0.display()
            )
        );

        let f = TempFile::new(b"{\"backends\":\n  [\"\xff\"]}");
        let err = load(&f.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:2:5: config file is not valid UTF-8", f.0.display())
        );

        let big = vec![b' '; MAX_CONFIG_SIZE + 1];
        let f = TempFile::new(&big);
        let err = load(&f.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: config file is 65537 bytes, larger than the limit of 65536",
                f.0.display()
            )
        );
    }

    #[test]
    fn io_errors_name_the_path() {
        let missing = std::env::temp_dir().join("lb-config-test-does-not-exist.json");
        let err = load(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot read config file {}: ", missing.display())),
            "{msg}"
        );
        assert!(msg.contains("No such file"), "{msg}");
        assert!(err.pos().is_none());

        let dir = std::env::temp_dir();
        let msg = load(&dir).unwrap_err().to_string();
        assert!(msg.starts_with("cannot read config file "), "{msg}");
    }
}
