//! The command line: turns `argv` into a validated [`Config`] (or a request
//! for help or the version), by hand, since the crate takes no dependencies.
//!
//! It exists so that every mistake on the command line is caught before
//! anything binds or forks, with a message naming the flag and the bad value.
//! It also loads the `-c` config file, so that `--check` validates all of it.
//!
//! What it must never do: accept a flag and ignore it. Features that are not
//! built yet (TLS to backends and its flags) are refused with "not supported
//! yet", after the value itself has been checked, so a later version that
//! builds them changes no syntax.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;

use crate::config::file::{self, ConfigError};
use crate::config::{
    parse_backend_addr, parse_port, validate_host, BackendSpec, Config, LogLevel, Mode, Strategy,
    MAX_BACKENDS, MAX_CONNECTIONS_LIMIT,
};

/// The exit status for a usage or configuration error.
pub const EXIT_USAGE: i32 = 2;

/// The exit status the binary uses after printing a [`CliError`].
pub fn exit_code_for_error() -> i32 {
    EXIT_USAGE
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the load balancer.
    Run(Config),
    /// `--check`: the configuration is valid; report and exit (like `nginx -t`).
    Check(Config),
    Help,
    Version,
}

/// Why the command line was refused. Flags are named as the user spelled them.
#[derive(Debug)]
pub enum CliError {
    UnknownFlag(String),
    /// An argument that is not a flag: the load balancer takes none.
    UnexpectedArgument(String),
    MissingValue(String),
    /// `--trace=yes`: a flag without a value given one.
    TakesNoValue {
        flag: String,
        value: String,
    },
    InvalidValue {
        flag: String,
        value: String,
        reason: String,
    },
    /// A single-valued option given twice (`-p 80 -p 81`).
    Repeated(String),
    /// A `-b` value that is not a backend; `reason` quotes the value.
    BadBackend {
        flag: String,
        reason: String,
    },
    TooManyBackends {
        from_flags: usize,
        from_file: usize,
    },
    NoBackends,
    /// The same backend twice: both places named.
    DuplicateBackend(String),
    /// The `-c` file is unreadable or invalid (the error names the file).
    Config(ConfigError),
}

/// Shortens a value for an error message: enough to recognise it.
fn shown(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() > MAX {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}...")
    } else {
        value.to_string()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownFlag(flag) => write!(f, "unknown option '{}'", shown(flag)),
            CliError::UnexpectedArgument(arg) => write!(
                f,
                "unexpected argument '{}' (backends are given with -b HOST:PORT)",
                shown(arg)
            ),
            CliError::MissingValue(flag) if flag == "-h" => write!(
                f,
                "option '-h' needs a value (-h is the listen host; help is --help)"
            ),
            CliError::MissingValue(flag) => write!(f, "option '{flag}' needs a value"),
            CliError::TakesNoValue { flag, value } => {
                write!(f, "option '{flag}' takes no value, got '{}'", shown(value))
            }
            CliError::InvalidValue {
                flag,
                value,
                reason,
            } => write!(
                f,
                "invalid value '{}' for '{flag}': {reason}",
                shown(value)
            ),
            CliError::Repeated(flag) => write!(f, "option '{flag}' given more than once"),
            CliError::BadBackend { flag, reason } => {
                write!(f, "invalid value for '{flag}': {reason}")
            }
            CliError::TooManyBackends {
                from_flags,
                from_file,
            } => write!(
                f,
                "too many backends: {} ({from_flags} from -b, {from_file} from -c), at most {MAX_BACKENDS}",
                from_flags + from_file
            ),
            CliError::NoBackends => f.write_str("no backends: give -b HOST:PORT or -c FILE"),
            CliError::DuplicateBackend(why) => f.write_str(why),
            CliError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Config(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Mode,
    Workers,
    Port,
    Host,
    Backend,
    Strategy,
    Config,
    LogLevel,
    Insecure,
    CaFile,
    Admin,
    AccessLog,
    MaxConnections,
    PidFile,
    Resolver,
    TlsPort,
    TlsCert,
    TlsKey,
    Trace,
    TlsTrace,
    Check,
    Help,
    Version,
}

/// Every flag: short name, long name, whether it takes a value.
const FLAGS: &[(Option<char>, &str, bool, Opt)] = &[
    (Some('m'), "mode", true, Opt::Mode),
    (Some('w'), "workers", true, Opt::Workers),
    (Some('p'), "port", true, Opt::Port),
    (Some('h'), "host", true, Opt::Host),
    (Some('b'), "backend", true, Opt::Backend),
    (Some('s'), "strategy", true, Opt::Strategy),
    (Some('c'), "config", true, Opt::Config),
    (Some('l'), "loglevel", true, Opt::LogLevel),
    (Some('k'), "insecure", false, Opt::Insecure),
    (None, "ca-file", true, Opt::CaFile),
    (None, "admin", true, Opt::Admin),
    (None, "access-log", true, Opt::AccessLog),
    (None, "max-connections", true, Opt::MaxConnections),
    (None, "pid-file", true, Opt::PidFile),
    (None, "resolver", true, Opt::Resolver),
    (None, "tls-port", true, Opt::TlsPort),
    (None, "tls-cert", true, Opt::TlsCert),
    (None, "tls-key", true, Opt::TlsKey),
    (Some('t'), "trace", false, Opt::Trace),
    (None, "tls-trace", false, Opt::TlsTrace),
    (None, "check", false, Opt::Check),
    (None, "help", false, Opt::Help),
    (None, "version", false, Opt::Version),
];

/// Most workers: the shared region has this many counter slots.
const MAX_WORKERS: usize = crate::shm::MAX_WORKERS;

/// The whole of a `main`: parse the arguments (with `mode` forced for the
/// legacy binaries, unless `-m` says otherwise), run, exit with the code.
pub fn main_with_mode(mode: Option<Mode>) -> ! {
    let code = match parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", usage());
            0
        }
        Ok(Command::Version) => {
            println!("load_balancer {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::Check(cfg)) => crate::supervisor::check(&cfg),
        Ok(Command::Run(mut cfg)) => {
            if let Some(m) = mode.filter(|_| !cfg.mode_given) {
                cfg.mode = m;
            }
            crate::supervisor::run(cfg)
        }
        Err(e) => {
            eprintln!("load_balancer: {e}");
            eprintln!("try 'load_balancer --help'");
            EXIT_USAGE
        }
    };
    std::process::exit(code)
}

/// The help text, listing every flag with its default.
pub fn usage() -> &'static str {
    "\
Usage: load_balancer [OPTIONS] -b HOST:PORT [-b HOST:PORT ...]
       load_balancer [OPTIONS] -c FILE

An HTTP/1.1 load balancer.

Options:
  -m, --mode MODE      Run mode: mp (a master and worker processes) or sp
                       (one process, worker threads). Default: mp on Linux,
                       sp on macOS
  -w, --workers N      Worker count, at most 64 (default: 0 = one per CPU
                       this process may run on)
  -p, --port N         Listen port (default: 8080; 0: no plain listener,
                       with --tls-port)
  -h, --host HOST      Listen host (default: 0.0.0.0); help is --help
  -b, --backend H:P    Backend server (repeat for multiple, at most 64):
                       host:port, http://host:port or [::1]:port
  -s, --strategy S     Load balancing: round_robin, weighted_round_robin
                       (or weighted), random, least_connections (or
                       least_conn), p2c (default: round_robin)
  -c, --config FILE    JSON config file (at most 64 KiB): backends, strategy
                       and health settings; its backends follow those of -b,
                       its strategy applies unless -s is given
  -l, --loglevel LVL   Log level: err, warn, info, debug (default: info)
  -k, --insecure       Skip TLS certificate verification of HTTPS backends
      --ca-file FILE   Trust exactly the CA certificates in FILE (PEM) for
                       HTTPS backends (default: the system store)
  -t, --trace          Dump raw request/response payloads (hex + ASCII)
      --tls-trace      Show TLS handshake details
      --admin H:P      Admin listener: /metrics, /status (a live page) and
                       /status.json (default: off)
      --access-log F   One line per request to F, or - for standard output;
                       SIGUSR1 reopens it (default: off)
      --pid-file FILE  Write the master's pid to FILE (a successor rewrites
                       it once it took over); removed at exit
      --max-connections N  Client connections per worker; above it the
                       worker stops accepting until one closes (default:
                       from the descriptor limit, room left for upstreams)
      --resolver IP:PORT  DNS server for backend names, repeatable (default:
                       /etc/resolv.conf's); names are followed by TTL
      --tls-port N     Also serve HTTPS on port N (TLS 1.2 and 1.3, ALPN
                       http/1.1); needs --tls-cert and --tls-key
      --tls-cert FILE  PEM certificate chain for --tls-port; repeat with
      --tls-key FILE   one --tls-key each: SNI picks, the first is default.
                       HUP or a change of the files reloads them
      --check          Validate the configuration and exit (like nginx -t)
      --help           Show this help and exit
      --version        Show the version and exit

Long options also take the form --port=8080; short ones -p 8080 or -p8080.
HTTPS backends: an https:// prefix, port 443, or \"tls\": true in the config.
Signals: TERM/INT/QUIT stop gracefully, HUP reloads -c, USR2 upgrades the
binary, USR1 reopens the access log.
Exit status: 0 on success, 2 for a usage or configuration error.
"
}

/// Parses the arguments after `argv[0]`. `--help` and `--version` win as
/// soon as they are reached; errors before them are reported first.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, CliError> {
    let mut b = Builder::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (opt, flag, inline) = split_flag(&arg)?;
        let takes_value = FLAGS.iter().any(|&(_, _, v, o)| o == opt && v);
        let value = if takes_value {
            match inline {
                Some(v) => Some(v),
                None => Some(
                    args.next()
                        .ok_or_else(|| CliError::MissingValue(flag.clone()))?,
                ),
            }
        } else {
            if let Some(value) = inline {
                return Err(CliError::TakesNoValue { flag, value });
            }
            None
        };
        match opt {
            Opt::Help => return Ok(Command::Help),
            Opt::Version => return Ok(Command::Version),
            _ => b.apply(opt, flag, value.unwrap_or_default())?,
        }
    }
    b.finish()
}

/// Recognises one flag: `(which, as spelled, value given inline)`.
fn split_flag(arg: &str) -> Result<(Opt, String, Option<String>), CliError> {
    if let Some(long) = arg.strip_prefix("--") {
        let (name, inline) = match long.split_once('=') {
            Some((name, v)) => (name, Some(v.to_string())),
            None => (long, None),
        };
        let opt = FLAGS
            .iter()
            .find(|f| f.1 == name && !name.is_empty())
            .map(|f| f.3)
            .ok_or_else(|| CliError::UnknownFlag(format!("--{name}")))?;
        return Ok((opt, format!("--{name}"), inline));
    }
    if let Some(short) = arg.strip_prefix('-') {
        let mut chars = short.chars();
        if let Some(c) = chars.next() {
            let rest = chars.as_str();
            let (opt, takes_value) = FLAGS
                .iter()
                .find(|f| f.0 == Some(c))
                .map(|f| (f.3, f.2))
                .ok_or_else(|| CliError::UnknownFlag(arg.to_string()))?;
            let flag = format!("-{c}");
            return match (rest.is_empty(), takes_value) {
                (true, _) => Ok((opt, flag, None)),
                (false, true) => Ok((opt, flag, Some(rest.to_string()))),
                // `-tk`: short flags are not bundled.
                (false, false) => Err(CliError::UnknownFlag(arg.to_string())),
            };
        }
    }
    Err(CliError::UnexpectedArgument(arg.to_string()))
}

#[derive(Default)]
struct Builder {
    cfg: Config,
    /// Options given so far that may appear only once.
    seen: Vec<Opt>,
    backends: Vec<BackendSpec>,
    strategy: Option<Strategy>,
    config_path: Option<PathBuf>,
    check: bool,
    tls_port: Option<u16>,
    /// `-p` or `--port`, as given (for errors about `-p 0`).
    port_flag: Option<String>,
    tls_certs: Vec<PathBuf>,
    tls_keys: Vec<PathBuf>,
}

impl Builder {
    /// `--tls-port`, `--tls-cert`, `--tls-key`: they replace the file's
    /// `"tls_listener"` (its `redirect_http_to_https` kept), certificates
    /// and keys paired in order.
    fn tls_listener_flags(&mut self) -> Result<(), CliError> {
        let first = self
            .tls_certs
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let usage = |reason: String| CliError::InvalidValue {
            flag: "--tls-cert".into(),
            value: first.clone(),
            reason,
        };
        if self.tls_certs.len() != self.tls_keys.len() {
            return Err(usage(format!(
                "{} --tls-cert and {} --tls-key: give them in pairs, one key per certificate",
                self.tls_certs.len(),
                self.tls_keys.len()
            )));
        }
        let pairs: Vec<crate::config::CertPair> = self
            .tls_certs
            .drain(..)
            .zip(self.tls_keys.drain(..))
            .map(|(cert, key)| crate::config::CertPair { cert, key })
            .collect();
        match (
            self.tls_port,
            pairs.is_empty(),
            self.cfg.tls_listener.as_mut(),
        ) {
            (Some(port), false, l) => {
                let redirect_http = l.is_some_and(|l| l.redirect_http);
                self.cfg.tls_listener = Some(crate::config::TlsListener {
                    port,
                    certificates: pairs,
                    redirect_http,
                });
            }
            (Some(port), true, Some(l)) => l.port = port,
            (Some(_), true, None) => {
                return Err(usage(
                    "--tls-port needs --tls-cert FILE --tls-key FILE (or \"tls_listener\" in -c)"
                        .into(),
                ))
            }
            (None, false, Some(l)) => l.certificates = pairs,
            (None, false, None) => {
                return Err(usage(
                    "--tls-cert needs --tls-port (the port of the TLS listener)".into(),
                ))
            }
            (None, true, _) => {}
        }
        let port_flag = self.port_flag.clone().unwrap_or_else(|| "-p".into());
        if self.cfg.port == 0 && self.cfg.tls_listener.is_none() {
            return Err(CliError::InvalidValue {
                flag: port_flag,
                value: "0".into(),
                reason: "-p 0 turns the plain listener off, which needs --tls-port".into(),
            });
        }
        if let Some(l) = &self.cfg.tls_listener {
            if l.port == self.cfg.port {
                return Err(CliError::InvalidValue {
                    flag: "--tls-port".into(),
                    value: l.port.to_string(),
                    reason: "the TLS port must differ from the plain port (-p)".into(),
                });
            }
            if l.redirect_http && self.cfg.port == 0 {
                return Err(CliError::InvalidValue {
                    flag: port_flag,
                    value: "0".into(),
                    reason: "redirect_http_to_https needs the plain listener".into(),
                });
            }
        }
        Ok(())
    }

    fn apply(&mut self, opt: Opt, flag: String, value: String) -> Result<(), CliError> {
        let repeatable = matches!(
            opt,
            Opt::Backend
                | Opt::Insecure
                | Opt::Trace
                | Opt::TlsTrace
                | Opt::Check
                | Opt::TlsCert
                | Opt::TlsKey
                | Opt::Resolver
        );
        if !repeatable {
            if self.seen.contains(&opt) {
                return Err(CliError::Repeated(flag));
            }
            self.seen.push(opt);
        }
        let invalid = |reason: &str| CliError::InvalidValue {
            flag: flag.clone(),
            value: value.clone(),
            reason: reason.to_string(),
        };
        match opt {
            Opt::Mode => match value.as_str() {
                "sp" => {
                    self.cfg.mode = Mode::Sp;
                    self.cfg.mode_given = true;
                }
                "mp" => {
                    self.cfg.mode = Mode::Mp;
                    self.cfg.mode_given = true;
                }
                _ => return Err(invalid("expected mp or sp")),
            },
            Opt::Workers => {
                let n = Some(value.as_str())
                    .filter(|v| {
                        !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| n <= MAX_WORKERS)
                    .ok_or_else(|| invalid("expected an integer 0..=64 (0 = one per CPU core)"))?;
                self.cfg.workers = n;
            }
            Opt::Port => {
                self.port_flag = Some(flag.clone());
                self.cfg.port = match value.as_str() {
                    "0" => 0,
                    v => parse_port(v).ok_or_else(|| {
                        invalid("expected an integer 1..=65535 (0: no plain listener)")
                    })?,
                };
            }
            Opt::Resolver => {
                let addr = value
                    .parse()
                    .map_err(|_| invalid("expected IP:PORT, e.g. 10.0.0.2:53"))?;
                if self.cfg.resolvers.len() == 3 {
                    return Err(invalid("at most 3 resolvers"));
                }
                self.cfg.resolvers.push(addr);
            }
            Opt::TlsPort => {
                self.tls_port = Some(
                    parse_port(&value).ok_or_else(|| invalid("expected an integer 1..=65535"))?,
                );
            }
            Opt::TlsCert | Opt::TlsKey => {
                if value.is_empty() {
                    return Err(invalid("expected a file name"));
                }
                let list = if opt == Opt::TlsCert {
                    &mut self.tls_certs
                } else {
                    &mut self.tls_keys
                };
                list.push(PathBuf::from(value));
            }
            Opt::Host => {
                let host = value
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(&value);
                validate_host(host).map_err(|e| invalid(&e.to_string()))?;
                self.cfg.host = host.to_string();
            }
            Opt::Backend => {
                let spec = parse_backend_addr(&value).map_err(|reason| CliError::BadBackend {
                    flag: flag.clone(),
                    reason,
                })?;
                self.backends.push(spec);
            }
            Opt::Strategy => {
                self.strategy = Some(Strategy::parse(&value).ok_or_else(|| {
                    invalid("expected round_robin, weighted_round_robin, weighted, random, least_connections, least_conn or p2c")
                })?);
            }
            Opt::Config => {
                if value.is_empty() {
                    return Err(invalid("expected a file name"));
                }
                self.config_path = Some(PathBuf::from(value));
            }
            Opt::LogLevel => {
                self.cfg.log_level = LogLevel::parse(&value)
                    .ok_or_else(|| invalid("expected err, warn, info or debug"))?;
            }
            Opt::Insecure => self.cfg.insecure_tls = true,
            Opt::CaFile => {
                if value.is_empty() {
                    return Err(invalid("expected a file name"));
                }
                self.cfg.ca_file = Some(PathBuf::from(value));
            }
            Opt::Admin => {
                let addr = value
                    .parse()
                    .map_err(|_| invalid("expected HOST:PORT, e.g. 127.0.0.1:9090"))?;
                self.cfg.admin = Some(addr);
            }
            Opt::AccessLog => {
                if value.is_empty() {
                    return Err(invalid("expected a file name, or - for standard output"));
                }
                self.cfg.access_log = Some(PathBuf::from(value));
            }
            Opt::PidFile => {
                if value.is_empty() {
                    return Err(invalid("expected a file name"));
                }
                self.cfg.pid_file = Some(PathBuf::from(value));
            }
            Opt::MaxConnections => {
                self.cfg.max_connections = Some(value.as_str())
                    .filter(|v| {
                        !v.is_empty() && v.len() <= 7 && v.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| (1..=MAX_CONNECTIONS_LIMIT).contains(&n))
                    .ok_or_else(|| invalid("expected an integer 1..=1000000"))?;
            }
            Opt::Trace => self.cfg.trace = true,
            Opt::TlsTrace => self.cfg.tls_trace = true,
            Opt::Check => self.check = true,
            Opt::Help | Opt::Version => {}
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Command, CliError> {
        let from_flags = self.backends.len();
        self.cfg.flag_backends = from_flags;
        self.cfg.strategy_given = self.strategy.is_some();
        let mut strategy = self.strategy;
        let mut metrics_on_traffic_port = None;
        self.cfg.given = crate::config::FlagsGiven {
            access_log: self.cfg.access_log.is_some(),
            ca_file: self.cfg.ca_file.is_some(),
            admin: self.cfg.admin.is_some(),
            max_connections: self.cfg.max_connections != 0,
            pid_file: self.cfg.pid_file.is_some(),
            tls_listener: self.tls_port.is_some() || !self.tls_certs.is_empty(),
            resolvers: !self.cfg.resolvers.is_empty(),
        };
        if let Some(path) = &self.config_path {
            let fc = file::load(path).map_err(CliError::Config)?;
            let from_file = fc.backends.len();
            if from_flags + from_file > MAX_BACKENDS {
                return Err(CliError::TooManyBackends {
                    from_flags,
                    from_file,
                });
            }
            self.backends.extend(fc.backends);
            if let Some(why) = crate::config::duplicate_backend(
                &self.backends,
                from_flags,
                Some((path, &fc.backend_pos)),
            ) {
                return Err(CliError::DuplicateBackend(why));
            }
            strategy = strategy.or(fc.strategy);
            self.cfg.health = fc.health;
            self.cfg.timeouts = fc.timeouts;
            self.cfg.forwarded = fc.forwarded;
            self.cfg.max_body_bytes = fc.max_body_bytes;
            self.cfg.request_buffer_bytes = fc.request_buffer_bytes;
            if self.cfg.ca_file.is_none() {
                self.cfg.ca_file = fc.ca_file;
            }
            if self.cfg.admin.is_none() {
                self.cfg.admin = fc.admin;
            }
            if self.cfg.access_log.is_none() {
                self.cfg.access_log = fc.access_log;
            }
            metrics_on_traffic_port = fc.metrics_on_traffic_port;
            self.cfg.trusted_client_headers = fc.trusted_client_headers;
            if self.cfg.max_connections == 0 {
                self.cfg.max_connections = fc.max_connections;
            }
            self.cfg.pool_max_conn = fc.pool_max_conn;
            if self.cfg.pid_file.is_none() {
                self.cfg.pid_file = fc.pid_file;
            }
            self.cfg.tls_listener = fc.tls_listener;
            if self.cfg.resolvers.is_empty() {
                self.cfg.resolvers = fc.resolvers;
            }
            (self.cfg.dns_min_ttl_ms, self.cfg.dns_max_ttl_ms) = fc.dns_ttl_ms;
        }
        self.tls_listener_flags()?;
        if from_flags > MAX_BACKENDS {
            return Err(CliError::TooManyBackends {
                from_flags,
                from_file: 0,
            });
        }
        if self.backends.is_empty() {
            return Err(CliError::NoBackends);
        }
        if let Some(why) = crate::config::duplicate_backend(&self.backends, from_flags, None) {
            return Err(CliError::DuplicateBackend(why));
        }
        // `/metrics` on the traffic port only when nothing else serves it,
        // unless the file says so.
        self.cfg.metrics_on_traffic_port =
            metrics_on_traffic_port.unwrap_or(self.cfg.admin.is_none());
        self.cfg.strategy = strategy.unwrap_or(self.cfg.strategy);
        self.cfg.config_path = self.config_path;
        self.cfg.backends = self.backends;
        Ok(if self.check {
            Command::Check(self.cfg)
        } else {
            Command::Run(self.cfg)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthSettings;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn run(line: &str) -> Config {
        match parse(args(line)) {
            Ok(Command::Run(cfg)) => cfg,
            Ok(other) => panic!("{line}: got {other:?}"),
            Err(e) => panic!("{line}: {e}"),
        }
    }

    fn error(argv: Vec<String>) -> String {
        match parse(argv.clone()) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("{argv:?} was accepted: {c:?}"),
        }
    }

    fn be(host: &str, port: u16) -> BackendSpec {
        BackendSpec {
            host: host.to_string(),
            port,
            weight: 1,
            tls: false,
            srv: false,
        }
    }

    /// A config file under the system temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &str) -> TempFile {
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "lb-cli-test-{}-{}.json",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn defaults() {
        let cfg = run("-b 127.0.0.1:9001");
        assert_eq!(cfg.mode, Mode::DEFAULT);
        assert_eq!(
            cfg.mode,
            if cfg!(target_os = "linux") {
                Mode::Mp
            } else {
                Mode::Sp
            }
        );
        assert_eq!(cfg.workers, 0, "one per CPU");
        assert_eq!(cfg.host, "0.0.0.0");
        assert_eq!(cfg.port, 8080);
        assert_eq!(cfg.backends, [be("127.0.0.1", 9001)]);
        assert_eq!(cfg.strategy, Strategy::RoundRobin);
        assert_eq!(cfg.log_level, LogLevel::Info);
        assert_eq!(cfg.config_path, None);
        assert!(!cfg.trace && !cfg.insecure_tls && !cfg.tls_trace);
        assert_eq!(cfg.health, HealthSettings::default());
    }

    #[test]
    fn happy_paths() {
        type Check = fn(&Config) -> bool;
        let cases: &[(&str, Check)] = &[
            ("--port=8081 -b h:1", |c| c.port == 8081),
            ("--port 8082 -b h:1", |c| c.port == 8082),
            ("-p 8083 -b h:1", |c| c.port == 8083),
            ("-p8084 -b h:1", |c| c.port == 8084),
            ("-p 1 -b h:1", |c| c.port == 1),
            ("-p 65535 -b h:1", |c| c.port == 65535),
            ("-h 127.0.0.1 -b h:1", |c| c.host == "127.0.0.1"),
            ("--host=::1 -b h:1", |c| c.host == "::1"),
            ("--host [::] -b h:1", |c| c.host == "::"),
            ("-hlocalhost -b h:1", |c| c.host == "localhost"),
            ("-m sp -b h:1", |c| c.mode == Mode::Sp),
            ("--mode=sp -w 1 -b h:1", |c| {
                c.mode == Mode::Sp && c.workers == 1
            }),
            ("--workers 1 -b h:1", |c| c.workers == 1),
            ("-m mp -w 4 -b h:1", |c| {
                c.mode == Mode::Mp && c.workers == 4
            }),
            ("--mode=mp --workers=64 -b h:1", |c| {
                c.mode == Mode::Mp && c.workers == 64
            }),
            ("-w 0 -b h:1", |c| c.workers == 0),
            ("-k -b h:1", |c| c.insecure_tls),
            ("--insecure --tls-trace -b h:1", |c| {
                c.insecure_tls && c.tls_trace
            }),
            ("--ca-file ca.pem -b h:1", |c| {
                c.ca_file.as_deref() == Some(std::path::Path::new("ca.pem"))
            }),
            ("-b h:443", |c| c.backends[0].tls),
            ("-b https://h:8443 -b http://g:443", |c| {
                c.backends[0].tls && !c.backends[1].tls
            }),
            ("-s random -b h:1", |c| c.strategy == Strategy::Random),
            ("-s weighted -b h:1", |c| {
                c.strategy == Strategy::WeightedRoundRobin
            }),
            ("--strategy=weighted_round_robin -b h:1", |c| {
                c.strategy == Strategy::WeightedRoundRobin
            }),
            ("-s round_robin -b h:1", |c| {
                c.strategy == Strategy::RoundRobin
            }),
            ("-l debug -b h:1", |c| c.log_level == LogLevel::Debug),
            ("--loglevel=err -b h:1", |c| c.log_level == LogLevel::Err),
            ("-l warn -b h:1", |c| c.log_level == LogLevel::Warn),
            ("-t -b h:1", |c| c.trace),
            ("--trace --trace -b h:1", |c| c.trace),
            ("-b a:1 -b b:2 --backend=c:3 -bd:4 --backend [::1]:5", |c| {
                c.backends == [be("a", 1), be("b", 2), be("c", 3), be("d", 4), be("::1", 5)]
            }),
            ("-b http://a:80", |c| c.backends == [be("a", 80)]),
            ("-b a:1 -b a:2", |c| c.backends.len() == 2),
        ];
        for (line, check) in cases {
            let cfg = run(line);
            assert!(check(&cfg), "{line}: {cfg:?}");
        }
        let many: Vec<String> = (0..MAX_BACKENDS)
            .flat_map(|i| ["-b".to_string(), format!("h:{}", i + 1)])
            .collect();
        match parse(many) {
            Ok(Command::Run(cfg)) => assert_eq!(cfg.backends.len(), MAX_BACKENDS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_version_check() {
        let cases: &[(&str, &str)] = &[
            ("--help", "help"),
            ("--version", "version"),
            ("-b h:1 --help", "help"),
            ("--help --bogus", "help"),
            ("--version --help", "version"),
            ("-m mp --help", "help"),
            ("--check -b h:1", "check"),
            ("-b h:1 --check -p 81", "check"),
            ("", "error"),
            ("--bogus --help", "error"),
        ];
        for (line, want) in cases {
            let got = match parse(args(line)) {
                Ok(Command::Help) => "help",
                Ok(Command::Version) => "version",
                Ok(Command::Check(_)) => "check",
                Ok(Command::Run(_)) => "run",
                Err(_) => "error",
            };
            assert_eq!(got, *want, "{line}");
        }
        match parse(args("-b h:1 --check -p 81")) {
            Ok(Command::Check(cfg)) => assert_eq!(cfg.port, 81),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors() {
        let long_host = "a".repeat(254);
        let long_backend = format!("{long_host}:80");
        let cases: Vec<(Vec<String>, String)> = vec![
            (args(""), "no backends: give -b HOST:PORT or -c FILE".into()),
            (args("-p 8080"), "no backends: give -b HOST:PORT or -c FILE".into()),
            (args("--bogus -b h:1"), "unknown option '--bogus'".into()),
            (args("--bogus=1"), "unknown option '--bogus'".into()),
            (args("-x"), "unknown option '-x'".into()),
            (args("-tk -b h:1"), "unknown option '-tk'".into()),
            (args("--"), "unknown option '--'".into()),
            (args("--=5"), "unknown option '--'".into()),
            (args("--Port 80"), "unknown option '--Port'".into()),
            (args("-"), "unexpected argument '-' (backends are given with -b HOST:PORT)".into()),
            (
                args("h:1"),
                "unexpected argument 'h:1' (backends are given with -b HOST:PORT)".into(),
            ),
            (args("-p"), "option '-p' needs a value".into()),
            (args("-b h:1 --port"), "option '--port' needs a value".into()),
            (args("-b"), "option '-b' needs a value".into()),
            (args("-c"), "option '-c' needs a value".into()),
            (
                args("-h"),
                "option '-h' needs a value (-h is the listen host; help is --help)".into(),
            ),
            (args("--trace=yes"), "option '--trace' takes no value, got 'yes'".into()),
            (args("--help=1"), "option '--help' takes no value, got '1'".into()),
            (
                args("-p abc"),
                "invalid value 'abc' for '-p': expected an integer 1..=65535 (0: no plain listener)".into(),
            ),
            (
                args("--port=0"),
                "invalid value '0' for '--port': -p 0 turns the plain listener off, which needs --tls-port".into(),
            ),
            (
                args("--port 65536"),
                "invalid value '65536' for '--port': expected an integer 1..=65535 (0: no plain listener)".into(),
            ),
            (
                args("-p -1"),
                "invalid value '-1' for '-p': expected an integer 1..=65535 (0: no plain listener)".into(),
            ),
            (
                args("--port="),
                "invalid value '' for '--port': expected an integer 1..=65535 (0: no plain listener)".into(),
            ),
            (
                args("-p 80 -p 81 -b h:1"),
                "option '-p' given more than once".into(),
            ),
            (
                args("-p 80 --port=81 -b h:1"),
                "option '--port' given more than once".into(),
            ),
            (
                args("-s fastest -b h:1"),
                "invalid value 'fastest' for '-s': expected round_robin, weighted_round_robin, weighted, random, least_connections, least_conn or p2c"
                    .into(),
            ),
            (
                args("-l trace -b h:1"),
                "invalid value 'trace' for '-l': expected err, warn, info or debug".into(),
            ),
            (
                args("--mode=both -b h:1"),
                "invalid value 'both' for '--mode': expected mp or sp".into(),
            ),
            (
                args("-w abc -b h:1"),
                "invalid value 'abc' for '-w': expected an integer 0..=64 (0 = one per CPU core)"
                    .into(),
            ),
            (
                args("-w -1 -b h:1"),
                "invalid value '-1' for '-w': expected an integer 0..=64 (0 = one per CPU core)"
                    .into(),
            ),
            (
                args("-w 1025 -b h:1"),
                "invalid value '1025' for '-w': expected an integer 0..=64 (0 = one per CPU core)"
                    .into(),
            ),
            (
                args("-h a/b -b h:1"),
                "invalid value 'a/b' for '-h': host contains '/'".into(),
            ),
            (
                vec!["-h".into(), long_host.clone(), "-b".into(), "h:1".into()],
                format!(
                    "invalid value '{}...' for '-h': host is 254 bytes long, at most 253",
                    "a".repeat(64)
                ),
            ),
            (
                args("-b localhost"),
                "invalid value for '-b': backend \"localhost\" has no port".into(),
            ),
            (
                args("--backend=h:70000"),
                "invalid value for '--backend': backend \"h:70000\": port must be an integer 1..=65535, got \"70000\""
                    .into(),
            ),
            (
                args("-b :80"),
                "invalid value for '-b': backend \":80\" has an empty host".into(),
            ),
            (
                vec!["-b".into(), long_backend],
                "invalid value for '-b': backend host is 254 bytes long, at most 253".into(),
            ),
            (args("-c"), "option '-c' needs a value".into()),
            (
                args("--config="),
                "invalid value '' for '--config': expected a file name".into(),
            ),
            (
                args("-c a.json -c b.json"),
                "option '-c' given more than once".into(),
            ),
            (
                args("-w 65 -b h:1"),
                "invalid value '65' for '-w': expected an integer 0..=64 (0 = one per CPU core)"
                    .into(),
            ),
            // Invalid values are reported before anything else.
            (
                args("-m mp -p 0 -b h:1"),
                "invalid value '0' for '-p': -p 0 turns the plain listener off, which needs --tls-port".into(),
            ),
            (
                args("-k -b nope"),
                "invalid value for '-b': backend \"nope\" has no port".into(),
            ),
            (args("-m mp"), "no backends: give -b HOST:PORT or -c FILE".into()),
            (
                args("--ca-file= -b h:1"),
                "invalid value '' for '--ca-file': expected a file name".into(),
            ),
        ];
        for (argv, want) in cases {
            assert_eq!(error(argv.clone()), want, "{argv:?}");
        }
    }

    #[test]
    fn too_many_backends() {
        let mut argv: Vec<String> = (0..=MAX_BACKENDS)
            .flat_map(|i| ["-b".to_string(), format!("h:{}", i + 1)])
            .collect();
        assert_eq!(
            error(argv.clone()),
            "too many backends: 65 (65 from -b, 0 from -c), at most 64"
        );
        argv.truncate(2 * 60);
        let list: Vec<String> = (0..5)
            .map(|i| format!(r#"{{"host":"f","port":{}}}"#, i + 1))
            .collect();
        let f = TempFile::new(&format!(r#"{{"backends":[{}]}}"#, list.join(",")));
        argv.extend(["-c".to_string(), f.path()]);
        assert_eq!(
            error(argv),
            "too many backends: 65 (60 from -b, 5 from -c), at most 64"
        );
    }

    #[test]
    fn config_file() {
        let f = TempFile::new(
            r#"{"backends":[{"host":"127.0.0.1","port":9002,"weight":3},{"host":"b","port":9003}],
                "strategy":"random","probe_interval_ms":100,"health":{"health_path":"/up"}}"#,
        );
        let cfg = run(&format!("-b a:9001 -c {}", f.path()));
        assert_eq!(
            cfg.backends,
            [
                be("a", 9001),
                BackendSpec {
                    weight: 3,
                    ..be("127.0.0.1", 9002)
                },
                be("b", 9003),
            ]
        );
        assert_eq!(cfg.strategy, Strategy::Random);
        assert_eq!(cfg.health.probe_interval_ms, 100);
        assert_eq!(cfg.health.health_path, "/up");
        assert_eq!(cfg.health.unhealthy_threshold, 3);
        assert_eq!(cfg.config_path.as_deref(), Some(f.0.as_path()));

        // -s wins over the file's strategy, wherever it appears.
        let cfg = run(&format!("--config={} -s round_robin", f.path()));
        assert_eq!(cfg.strategy, Strategy::RoundRobin);
        assert_eq!(cfg.backends.len(), 2);

        // -c alone is enough; --check validates it too.
        match parse(args(&format!("--check -c {}", f.path()))) {
            Ok(Command::Check(cfg)) => assert_eq!(cfg.backends.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_file_errors() {
        let bad = TempFile::new("{\"backends\": [\n  {\"host\": \"a\", \"port\": 70000}\n]}");
        assert_eq!(
            error(args(&format!("-c {}", bad.path()))),
            format!(
                "{}:2:25: \"port\" must be an integer 1..=65535, got 70000",
                bad.path()
            )
        );
        let tls = TempFile::new(
            r#"{"backends":[{"host":"a","port":8443,"tls":true}],"ca_file":"private-ca.pem"}"#,
        );
        match parse(args(&format!("-b h:1 -c {}", tls.path()))) {
            Ok(Command::Run(cfg)) => {
                assert!(cfg.backends[1].tls);
                let ca = cfg.ca_file.expect("ca_file from the file");
                assert!(ca.ends_with("private-ca.pem"), "{ca:?}");
                let file = tls.path();
                assert_eq!(
                    ca.parent(),
                    std::path::Path::new(&file).parent(),
                    "relative to the file"
                );
            }
            other => panic!("{other:?}"),
        }
        let missing = std::env::temp_dir().join("lb-cli-test-missing.json");
        let msg = error(args(&format!("-b h:1 -c {}", missing.display())));
        assert!(
            msg.starts_with(&format!("cannot read config file {}: ", missing.display())),
            "{msg}"
        );
        // A config error is reported whatever the other flags.
        let msg = error(args(&format!("-m mp -c {}", bad.path())));
        assert!(msg.contains("\"port\" must be"), "{msg}");
    }

    #[test]
    fn usage_lists_every_flag() {
        let text = usage();
        for &(short, long, takes_value, _) in FLAGS {
            assert!(text.contains(&format!("--{long}")), "--{long} missing");
            if let Some(c) = short {
                assert!(text.contains(&format!("-{c}, --{long}")), "-{c} missing");
            }
            let _ = takes_value;
        }
        for default in ["8080", "0.0.0.0", "round_robin", "info", "HTTPS backends"] {
            assert!(text.contains(default), "{default} missing");
        }
        assert!(text.ends_with('\n'));
        assert!(text.lines().all(|l| l.len() <= 80));
    }

    #[test]
    fn exit_code() {
        assert_eq!(exit_code_for_error(), 2);
        assert_eq!(EXIT_USAGE, 2);
    }
}
