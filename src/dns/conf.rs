//! `/etc/resolv.conf` and `/etc/hosts`, read as glibc reads them, so a name
//! resolves here as `getaddrinfo` would resolve it on the same machine (the
//! operator's `dig`/`curl` checks tell the truth about the load balancer).
//!
//! Both parsers take text (for tests) and never fail: a line they do not
//! understand is skipped, as the C library skips it. `load` reads the real
//! files (a path can be given instead, for tests); a missing file means the
//! C library's defaults. What is read is bounded (three name servers, six
//! search domains, the first [`MAX_FILE_BYTES`] of a file).
//!
//! Not read (glibc reads them): the `LOCALDOMAIN` and `RES_OPTIONS`
//! environment variables, `sortlist`, and options other than `ndots`,
//! `timeout` and `attempts` (`rotate`, `use-vc`, `edns0`, ... are ignored:
//! EDNS0 is always used, TCP when an answer is truncated).
#![forbid(unsafe_code)]

use super::message::Name;
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::path::Path;

/// Name servers used (glibc's `MAXNS`); later `nameserver` lines are ignored.
pub const MAX_NAMESERVERS: usize = 3;
/// Search domains used (glibc's historical `MAXDNSRCH`).
pub const MAX_SEARCH: usize = 6;
/// Largest `ndots` (glibc's `RES_MAXNDOTS`).
pub const MAX_NDOTS: u32 = 15;
/// Largest `timeout`, in seconds (glibc's `RES_MAXRETRANS`).
pub const MAX_TIMEOUT_S: u64 = 30;
/// Largest `attempts` (glibc's `RES_MAXRETRY`).
pub const MAX_ATTEMPTS: u32 = 5;
/// Bytes read of either file at most: a hosts file of ad-blocking lists
/// reaches megabytes; nothing legitimate comes near this.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads at most [`MAX_FILE_BYTES`] of `path` as text (invalid UTF-8
/// replaced). `Ok(None)` if the file does not exist.
fn read_text(path: &Path) -> io::Result<Option<String>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The line without its comment: `#` or `;` starts one anywhere on the
/// line (glibc only at the start; neither can be part of an address or a
/// host name, so reading them anywhere changes no valid line).
fn uncomment(line: &str) -> &str {
    line.split(['#', ';']).next().unwrap_or("")
}

/// The resolver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Name servers, in order, at most [`MAX_NAMESERVERS`] (port 53).
    pub nameservers: Vec<SocketAddr>,
    /// Search domains, lowercase, without trailing dots.
    pub search: Vec<String>,
    /// Names with fewer dots than this are tried with the search domains
    /// first, then as they are.
    pub ndots: u32,
    /// How long to wait for one server's answer, in milliseconds.
    pub timeout_ms: u64,
    /// Rounds over the server list.
    pub attempts: u32,
}

impl Default for ResolvConf {
    /// The C library's defaults when there is no file: the local server.
    fn default() -> ResolvConf {
        ResolvConf {
            nameservers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)],
            search: Vec::new(),
            ndots: 1,
            timeout_ms: 5000,
            attempts: 2,
        }
    }
}

impl ResolvConf {
    pub const PATH: &'static str = "/etc/resolv.conf";

    /// Settings from `text` in resolv.conf(5) syntax. Without a `nameserver`
    /// line, the local server (127.0.0.1:53). The search list is the last
    /// `search` or `domain` line's (each replaces what came before).
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            ..ResolvConf::default()
        };
        for line in text.lines() {
            let mut words = uncomment(line).split_ascii_whitespace();
            let (Some(key), rest) = (words.next(), words) else {
                continue;
            };
            match key {
                "nameserver" => {
                    let server = rest.clone().next().and_then(parse_server);
                    if let Some(s) = server {
                        if conf.nameservers.len() < MAX_NAMESERVERS {
                            conf.nameservers.push(s);
                        }
                    }
                }
                "domain" | "search" => {
                    conf.search.clear();
                    for d in rest {
                        let d = d.strip_suffix('.').unwrap_or(d);
                        // "." (the root) as a search domain adds nothing.
                        if !d.is_empty() && Name::from_text(d).is_ok() {
                            if conf.search.len() == MAX_SEARCH {
                                break;
                            }
                            conf.search.push(d.to_ascii_lowercase());
                        }
                        if key == "domain" {
                            break;
                        }
                    }
                }
                "options" => {
                    for opt in rest {
                        let Some((k, v)) = opt.split_once(':') else {
                            continue;
                        };
                        let Ok(n) = v.parse::<u64>() else { continue };
                        match k {
                            "ndots" => conf.ndots = n.min(u64::from(MAX_NDOTS)) as u32,
                            // glibc waits at least a second even for 0.
                            "timeout" => conf.timeout_ms = n.clamp(1, MAX_TIMEOUT_S) * 1000,
                            "attempts" => {
                                conf.attempts = n.clamp(1, u64::from(MAX_ATTEMPTS)) as u32
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if conf.nameservers.is_empty() {
            conf.nameservers = ResolvConf::default().nameservers;
        }
        conf
    }

    /// Reads `path` (default [`ResolvConf::PATH`]). A missing file gives the
    /// defaults. Without `search` or `domain`, the search list is the domain
    /// of this host's name (what follows its first dot), as glibc does.
    pub fn load(path: Option<&Path>) -> io::Result<ResolvConf> {
        let path = path.unwrap_or(Path::new(ResolvConf::PATH));
        let text = read_text(path)?;
        let mut conf = text
            .as_deref()
            .map_or_else(ResolvConf::default, ResolvConf::parse);
        let named = text.as_deref().is_some_and(|t| {
            t.lines().any(|l| {
                let w = uncomment(l).split_ascii_whitespace().next();
                w == Some("search") || w == Some("domain")
            })
        });
        if !named {
            conf.search_from_hostname(crate::sys::hostname().as_deref());
        }
        Ok(conf)
    }

    /// Sets the search list to the domain of `hostname` (the part after its
    /// first dot), if it has one.
    pub fn search_from_hostname(&mut self, hostname: Option<&str>) {
        let domain = hostname.and_then(|h| h.split_once('.')).map(|(_, d)| d);
        if let Some(d) = domain {
            let d = d.strip_suffix('.').unwrap_or(d);
            if !d.is_empty() && Name::from_text(d).is_ok() {
                self.search = vec![d.to_ascii_lowercase()];
            }
        }
    }

    /// The same settings with other name servers (a `resolver` setting of
    /// the configuration), port included.
    pub fn with_servers(mut self, servers: Vec<SocketAddr>) -> ResolvConf {
        self.nameservers = servers;
        self
    }
}

/// A `nameserver` address: IPv4, or IPv6 with an optional numeric zone
/// (`fe80::1%2`; interface names would need `if_nametoindex`). Port 53.
fn parse_server(word: &str) -> Option<SocketAddr> {
    let (ip, zone) = match word.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone.parse::<u32>().ok()?)),
        None => (word, None),
    };
    match (ip.parse::<IpAddr>().ok()?, zone) {
        (IpAddr::V6(v6), Some(z)) => Some(SocketAddr::V6(SocketAddrV6::new(v6, 53, 0, z))),
        (ip, None) => Some(SocketAddr::new(ip, 53)),
        (IpAddr::V4(_), Some(_)) => None,
    }
}

/// The static table of `/etc/hosts`: names (and aliases) to addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// Lowercased name → addresses in file order, without repeats.
    by_name: HashMap<String, Vec<IpAddr>>,
}

impl Hosts {
    pub const PATH: &'static str = "/etc/hosts";

    /// The table from `text` in hosts(5) syntax: an address, then the
    /// canonical name and aliases. Lines with a bad address are skipped, and
    /// so are names that are not valid DNS names.
    pub fn parse(text: &str) -> Hosts {
        let mut by_name: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_ascii_whitespace();
            let Some(addr) = words.next() else { continue };
            // A zone (fe80::1%eth0) is dropped: an IpAddr cannot hold it.
            let addr = addr.split('%').next().unwrap_or(addr);
            let Ok(ip) = addr.parse::<IpAddr>() else {
                continue;
            };
            for name in words {
                let name = name.strip_suffix('.').unwrap_or(name);
                if Name::from_text(name).is_err() {
                    continue;
                }
                let list = by_name.entry(name.to_ascii_lowercase()).or_default();
                if !list.contains(&ip) {
                    list.push(ip);
                }
            }
        }
        Hosts { by_name }
    }

    /// Reads `path` (default [`Hosts::PATH`]); a missing file is an empty table.
    pub fn load(path: Option<&Path>) -> io::Result<Hosts> {
        let path = path.unwrap_or(Path::new(Hosts::PATH));
        Ok(read_text(path)?
            .as_deref()
            .map_or_else(Hosts::default, Hosts::parse))
    }

    /// The addresses of `name` (case-insensitive, one trailing dot allowed),
    /// in file order; empty if the file does not name it.
    pub fn lookup(&self, name: &str) -> Vec<IpAddr> {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.by_name
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// How many names (aliases included) the table has.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resolv_conf() {
        let c = ResolvConf::parse(
            "# generated by NetworkManager\n\
             ; another comment\n\
             domain ignored.example\n\
             search Corp.Example.  lab.example # trailing comment\n\
             nameserver 10.0.0.53\n\
             nameserver\tfd00::53\n\
             nameserver fe80::1%3\n\
             nameserver 10.0.0.99\n\
             nameserver not-an-address\n\
             options ndots:2 timeout:3 attempts:4 rotate edns0\n\
             sortlist 10.0.0.0/8\n",
        );
        assert_eq!(
            c.nameservers,
            [
                sa("10.0.0.53:53"),
                sa("[fd00::53]:53"),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 3)),
            ]
        );
        assert_eq!(c.search, ["corp.example", "lab.example"]);
        assert_eq!((c.ndots, c.timeout_ms, c.attempts), (2, 3000, 4));
    }

    #[test]
    fn resolv_conf_defaults_and_limits() {
        assert_eq!(ResolvConf::parse(""), ResolvConf::default());
        let d = ResolvConf::default();
        assert_eq!(d.nameservers, [sa("127.0.0.1:53")]);
        assert_eq!((d.ndots, d.timeout_ms, d.attempts), (1, 5000, 2));
        // The last of domain and search wins; domain takes one name.
        let c = ResolvConf::parse("search a.example b.example\ndomain c.example d.example\n");
        assert_eq!(c.search, ["c.example"]);
        let c = ResolvConf::parse("search s1 s2 s3 s4 s5 s6 s7 bad..name .\n");
        assert_eq!(c.search, ["s1", "s2", "s3", "s4", "s5", "s6"]);
        let c = ResolvConf::parse("options ndots:99 timeout:0 attempts:0\n");
        assert_eq!((c.ndots, c.timeout_ms, c.attempts), (15, 1000, 1));
        let c = ResolvConf::parse("options timeout:999 attempts:9 ndots:x\n");
        assert_eq!((c.ndots, c.timeout_ms, c.attempts), (1, 30_000, 5));
        // A keyword must be the line's first word; a v4 address has no zone.
        let c = ResolvConf::parse(
            " nameserver 10.0.0.1\nxnameserver 10.0.0.2\nnameserver 10.0.0.3%1\n",
        );
        assert_eq!(c.nameservers, [sa("10.0.0.1:53")]);
    }

    #[test]
    fn search_from_hostname() {
        let mut c = ResolvConf::default();
        c.search_from_hostname(Some("web1"));
        assert!(c.search.is_empty());
        c.search_from_hostname(Some("web1.Dc1.Example.com"));
        assert_eq!(c.search, ["dc1.example.com"]);
    }

    #[test]
    fn load_from_files() {
        let dir = std::env::temp_dir().join(format!("lb-dns-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing");
        let c = ResolvConf::load(Some(&missing)).unwrap();
        assert_eq!(c.nameservers, ResolvConf::default().nameservers);
        assert!(Hosts::load(Some(&missing)).unwrap().is_empty());
        let rc = dir.join("resolv.conf");
        std::fs::write(&rc, "nameserver 192.0.2.1\nsearch x.example\n").unwrap();
        let c = ResolvConf::load(Some(&rc)).unwrap();
        assert_eq!(
            (c.nameservers[0], c.search.clone()),
            (sa("192.0.2.1:53"), vec!["x.example".into()])
        );
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, b"192.0.2.7 web \xff\n").unwrap();
        assert_eq!(
            Hosts::load(Some(&hosts)).unwrap().lookup("web"),
            ["192.0.2.7".parse::<IpAddr>().unwrap()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hosts() {
        let h = Hosts::parse(
            "127.0.0.1\tlocalhost\n\
             ::1 localhost ip6-localhost # loopback\n\
             # 10.9.9.9 commented.example\n\
             10.0.0.5 Web.Example.com web www.\n\
             10.0.0.6 web.example.com\n\
             10.0.0.5 web.example.com\n\
             fe80::5%eth0 linklocal\n\
             300.1.1.1 bad-address\n\
             10.0.0.7 bad..name ok\n\
             10.0.0.8\n",
        );
        let ips = |s: &[&str]| {
            s.iter()
                .map(|a| a.parse::<IpAddr>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(h.lookup("localhost"), ips(&["127.0.0.1", "::1"]));
        assert_eq!(h.lookup("WEB.example.COM."), ips(&["10.0.0.5", "10.0.0.6"]));
        assert_eq!(h.lookup("web"), ips(&["10.0.0.5"]));
        assert_eq!(h.lookup("www"), ips(&["10.0.0.5"]));
        assert_eq!(h.lookup("linklocal"), ips(&["fe80::5"]));
        assert_eq!(h.lookup("ok"), ips(&["10.0.0.7"]));
        for absent in [
            "commented.example",
            "bad-address",
            "bad..name",
            "example.com",
            "",
        ] {
            assert!(h.lookup(absent).is_empty(), "{absent}");
        }
    }
}
