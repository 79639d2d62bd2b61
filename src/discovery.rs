//! Backends followed through DNS: the supervisor's side of issue 16.
//!
//! Every backend whose host is a name (not an IP literal), and every
//! `{"srv": …}` entry, is *followed*: looked up with the project's own
//! resolver (`dns`), again when its answer's TTL runs out (clamped to
//! `dns_min_ttl_ms..=dns_max_ttl_ms`). Each address of a name is a member
//! (identity: name, port, address) with the entry's weight and TLS; an SRV
//! name's members are its lowest-priority targets' addresses with the
//! records' ports and weights (the next priority is used while every member
//! of the lower one is unhealthy).
//!
//! The supervisor drives it from its loop ([`Discovery::tick`], never
//! blocking) and publishes [`Discovery::entries`] through the same path as a
//! config reload whenever they change: members appear and disappear like a
//! reloaded backend (ids kept for the unchanged ones, nothing in flight lost,
//! a removed member's pooled connections closed by the workers).
//!
//! Failure semantics, as HAProxy's and Envoy's users expect:
//! - a name that never resolved has no members (the rest serve; with no
//!   backend at all, 503);
//! - SERVFAIL, REFUSED, a timeout or a malformed answer: the last good
//!   answer keeps serving, and a warning says since when;
//! - NXDOMAIN (or NODATA) for a name that had members: they are removed
//!   once the last good answer's TTL has run out.
#![forbid(unsafe_code)]

use crate::config::{BackendSpec, Config, MAX_BACKENDS};
use crate::dns::conf::{Hosts, ResolvConf};
use crate::dns::resolver::{Lookup, Resolved, Resolver, Token};
use crate::dns::DnsError;
use crate::log;
use crate::shm::BackendEntry;
use std::net::{IpAddr, SocketAddr};

/// How soon a lookup that failed (not NXDOMAIN) is tried again.
const RETRY_MS: u64 = 5_000;

/// One address of a followed name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    addr: SocketAddr,
    weight: u16,
    /// SRV priority (0 for A/AAAA names).
    priority: u16,
    /// The SRV target it came from (its TLS name, and the host of its
    /// entry); `None` for a member of an A/AAAA name.
    target: Option<String>,
}

/// A followed name.
#[derive(Debug, Clone)]
struct Follow {
    /// Index of its entry in `specs`.
    spec: usize,
    members: Vec<Member>,
    /// Wall-clock seconds of the last answer, and when (monotonic ms) it
    /// stops being believed.
    answered_unix: Option<u64>,
    expires_ms: u64,
    /// The last failure and since when (wall-clock seconds).
    failing: Option<(String, u64)>,
    /// Answered or failed at least once since it was added.
    settled: bool,
    due_ms: u64,
    token: Option<Token>,
}

/// Query outcomes, for `lb_dns_queries_total{result}`.
pub const RESULTS: [&str; 5] = ["success", "nxdomain", "servfail", "timeout", "error"];

pub struct Discovery {
    resolver: Option<Resolver>,
    specs: Vec<BackendSpec>,
    follows: Vec<Follow>,
    min_ttl_ms: u64,
    max_ttl_ms: u64,
    /// Query outcomes by [`RESULTS`], since start.
    pub counts: [u64; RESULTS.len()],
    /// Members left out at the last `entries` (over [`MAX_BACKENDS`]): the
    /// warning is given when this changes, not on every tick.
    dropped: std::cell::Cell<usize>,
    /// What was followed before a reload's change, until it is kept or
    /// given up (`begin_change`).
    before_change: Option<(Vec<BackendSpec>, Vec<Follow>)>,
}

/// What the status page and `/metrics` show of one followed name.
#[derive(Debug, Clone)]
pub struct NameStatus {
    pub name: String,
    pub addresses: Vec<SocketAddr>,
    pub answered_unix: Option<u64>,
    pub failing: Option<(String, u64)>,
}

fn is_literal(spec: &BackendSpec) -> Option<IpAddr> {
    if spec.srv {
        return None;
    }
    spec.host.parse().ok()
}

fn unix_now() -> u64 {
    crate::sys::unix_time()
}

impl Discovery {
    /// Servers from `--resolver` / `"resolver"`, else /etc/resolv.conf;
    /// names in /etc/hosts are answered from it.
    pub fn new(cfg: &Config) -> Discovery {
        let mut d = Discovery {
            resolver: None,
            specs: Vec::new(),
            follows: Vec::new(),
            // At least 100 ms between lookups of a name, whatever its TTL.
            min_ttl_ms: cfg.dns_min_ttl_ms.max(100),
            max_ttl_ms: cfg.dns_max_ttl_ms.max(cfg.dns_min_ttl_ms).max(100),
            counts: [0; RESULTS.len()],
            dropped: std::cell::Cell::new(0),
            before_change: None,
        };
        d.set_specs(&cfg.backends, &cfg.resolvers);
        d
    }

    fn resolver(&mut self, servers: &[SocketAddr]) -> &mut Resolver {
        self.resolver.get_or_insert_with(|| {
            let conf = ResolvConf::load(None).unwrap_or_else(|_| ResolvConf::parse(""));
            let conf = if servers.is_empty() {
                conf
            } else {
                conf.with_servers(servers.to_vec())
            };
            let hosts = Hosts::load(None).unwrap_or_else(|_| Hosts::parse(""));
            Resolver::new(conf, hosts)
        })
    }

    /// A new set of backends (start, reload): names already followed keep
    /// their answers; new ones are looked up at the next tick.
    pub fn set_specs(&mut self, specs: &[BackendSpec], servers: &[SocketAddr]) {
        let mut old = std::mem::take(&mut self.follows);
        let mut follows = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            if is_literal(s).is_some() {
                continue;
            }
            let same = |specs: &[BackendSpec], f: &Follow| {
                let o = &specs[f.spec];
                o.host.eq_ignore_ascii_case(&s.host) && o.srv == s.srv && o.port == s.port
            };
            // A name followed before a reload still waiting to publish (a
            // typo then its revert) keeps its answers too.
            let kept = || {
                let (specs, follows) = self.before_change.as_ref()?;
                let mut f = follows.iter().find(|f| same(specs, f))?.clone();
                f.token = None; // that lookup was answered, or is the current set's
                f.due_ms = 0;
                Some(f)
            };
            let found = match old.iter().position(|f| same(&self.specs, f)) {
                Some(k) => Some(old.swap_remove(k)),
                None => kept(),
            };
            let f = match found {
                Some(mut f) => {
                    f.spec = i;
                    // Weight and TLS may have changed: members follow.
                    for m in &mut f.members {
                        if !s.srv {
                            m.weight = s.weight.max(1);
                        }
                    }
                    f
                }
                None => Follow {
                    spec: i,
                    members: Vec::new(),
                    answered_unix: None,
                    expires_ms: 0,
                    failing: None,
                    settled: false,
                    due_ms: 0,
                    token: None,
                },
            };
            follows.push(f);
        }
        self.specs = specs.to_vec();
        self.follows = follows;
        if !self.follows.is_empty() {
            self.resolver(servers);
        }
    }

    /// Keeps what is followed now, names and answers, so that a reload's
    /// new names can be given up (`give_up_change`) and these followed on
    /// as they were. Kept once until `keep_change`: reloads that follow one
    /// another before a publish go back to what was last published.
    pub fn begin_change(&mut self) {
        if self.before_change.is_none() {
            self.before_change = Some((self.specs.clone(), self.follows.clone()));
        }
    }

    /// The change is published: what came before it is dropped.
    pub fn keep_change(&mut self) {
        self.before_change = None;
    }

    /// Follows again what `begin_change` kept, with its members; each name
    /// is asked again now (a lookup it had out was the change's).
    pub fn give_up_change(&mut self, now_ms: u64) {
        if let Some((specs, mut follows)) = self.before_change.take() {
            for f in &mut follows {
                f.token = None;
                f.due_ms = now_ms;
            }
            self.specs = specs;
            self.follows = follows;
        }
    }

    /// A successor's names that have not answered yet start from what its
    /// predecessor published for them (`live`, their last good answers): a
    /// name that times out then keeps them, as a running process keeps its
    /// last good answer, and one that is gone loses them after their TTL.
    /// SRV names are not seeded (their members carry their targets' names).
    pub fn seed(&mut self, live: &[BackendEntry], now_ms: u64) {
        let ttl = self.min_ttl_ms;
        for f in &mut self.follows {
            let s = &self.specs[f.spec];
            if s.srv || !f.members.is_empty() {
                continue;
            }
            let mut members: Vec<Member> = live
                .iter()
                .filter(|e| e.port == s.port && e.host().eq_ignore_ascii_case(&s.host))
                .map(|e| Member {
                    addr: e.addr(),
                    weight: s.weight.max(1),
                    priority: 0,
                    target: None,
                })
                .collect();
            if members.is_empty() {
                continue;
            }
            members.sort_by_key(|m| m.addr);
            members.dedup_by_key(|m| m.addr);
            f.members = members;
            f.settled = true;
            f.expires_ms = now_ms + ttl;
        }
    }

    /// Every name answered or failed at least once.
    pub fn settled(&self) -> bool {
        self.follows.iter().all(|f| f.settled)
    }

    /// Starts due lookups and takes in answers; never blocks. True when
    /// the members changed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let Some(resolver) = self.resolver.as_mut() else {
            return false;
        };
        for f in &mut self.follows {
            if f.token.is_none() && f.due_ms <= now_ms {
                let s = &self.specs[f.spec];
                let what = if s.srv { Lookup::Srv } else { Lookup::Addrs };
                f.token = Some(resolver.lookup(&s.host, what, now_ms));
            }
        }
        let mut changed = false;
        for (token, result) in resolver.drive(now_ms) {
            let Some(k) = self.follows.iter().position(|f| f.token == Some(token)) else {
                continue;
            };
            changed |= self.answered(k, result, now_ms);
        }
        // A negative answer's members go once the last good answer expired.
        for f in &mut self.follows {
            if f.failing.is_some() && !f.members.is_empty() && f.expires_ms <= now_ms {
                let s = &self.specs[f.spec];
                if matches!(&f.failing, Some((why, _)) if why.starts_with("no such name") || why.starts_with("no address"))
                {
                    log!(
                        Warn,
                        "dns",
                        "{}: removing its {} members: the name is gone and its last answer expired",
                        s.host,
                        f.members.len()
                    );
                    f.members.clear();
                    changed = true;
                }
            }
        }
        changed
    }

    fn answered(&mut self, k: usize, result: Result<Resolved, DnsError>, now_ms: u64) -> bool {
        let (min, max) = (self.min_ttl_ms, self.max_ttl_ms);
        let f = &mut self.follows[k];
        let s = &self.specs[f.spec];
        f.token = None;
        f.settled = true;
        let idx = match &result {
            Ok(_) => 0,
            Err(DnsError::NxDomain { .. } | DnsError::NoData { .. }) => 1,
            Err(DnsError::ServFail | DnsError::Refused) => 2,
            Err(DnsError::Timeout) => 3,
            Err(_) => 4,
        };
        self.counts[idx] += 1;
        match result {
            Ok(r) => {
                let mut members: Vec<Member> = if s.srv {
                    let mut out = Vec::new();
                    // Port 0 is no service (RFC 2782's "not available").
                    for t in r.srv.iter().filter(|t| t.port != 0) {
                        if t.addrs.is_empty() {
                            // Its address lookup failed: what it had stays
                            // (the last good answer, as for a name).
                            out.extend(
                                f.members
                                    .iter()
                                    .filter(|m| m.target.as_deref() == Some(&t.target))
                                    .cloned(),
                            );
                        }
                        out.extend(t.addrs.iter().map(|&a| Member {
                            addr: SocketAddr::new(a, t.port),
                            weight: t.weight.max(1),
                            priority: t.priority,
                            target: Some(t.target.clone()),
                        }));
                    }
                    out
                } else {
                    // An /etc/hosts answer for a name with IPv4 addresses
                    // uses those (as the C library's first answer did:
                    // `localhost` is not also [::1]).
                    let v4 = r.from_hosts && r.addrs.iter().any(IpAddr::is_ipv4);
                    r.addrs
                        .iter()
                        .filter(|a| !v4 || a.is_ipv4())
                        .map(|&a| Member {
                            addr: SocketAddr::new(a, s.port),
                            weight: s.weight.max(1),
                            priority: 0,
                            target: None,
                        })
                        .collect()
                };
                if s.srv && members.is_empty() && !f.members.is_empty() && !r.srv.is_empty() {
                    // No target's addresses answered: a failure, not an
                    // empty service.
                    return self.answered(k, Err(DnsError::Timeout), now_ms);
                }
                members.sort_by_key(|m| (m.priority, m.addr));
                members.dedup_by_key(|m| m.addr);
                let ttl = r.ttl_ms.clamp(min, max);
                f.due_ms = now_ms + ttl;
                f.expires_ms = now_ms + ttl;
                f.answered_unix = Some(unix_now());
                if let Some((why, since)) = f.failing.take() {
                    log!(
                        Info,
                        "dns",
                        "{}: answering again ({} members) after failing since {} ({why})",
                        s.host,
                        members.len(),
                        crate::log::utc_text(since)
                    );
                }
                let changed = members != f.members;
                if changed {
                    let list: Vec<String> = members.iter().map(|m| m.addr.to_string()).collect();
                    log!(
                        Info,
                        "dns",
                        "{}: {} (next lookup in {} s)",
                        s.host,
                        if list.is_empty() {
                            "no addresses".to_string()
                        } else {
                            list.join(", ")
                        },
                        ttl / 1000
                    );
                }
                f.members = members;
                changed
            }
            Err(e) => {
                let negative = e.negative_ttl_ms();
                f.due_ms = now_ms
                    + match negative {
                        Some(t) => t.clamp(min, max),
                        None => RETRY_MS.clamp(min.max(1), max.max(RETRY_MS)),
                    };
                let why = e.to_string();
                let since = match &f.failing {
                    Some((_, since)) => *since,
                    None => {
                        let keep = if f.members.is_empty() {
                            "no members yet".to_string()
                        } else if negative.is_some() {
                            format!(
                                "its {} members stay until their last answer expires",
                                f.members.len()
                            )
                        } else {
                            format!("serving its last answer ({} members)", f.members.len())
                        };
                        log!(Warn, "dns", "{}: {why}; {keep}", s.host);
                        unix_now()
                    }
                };
                f.failing = Some((why, since));
                false
            }
        }
    }

    /// What the poller should wait on, and until when.
    pub fn poll_fds(&self, out: &mut Vec<libc::pollfd>) {
        if let Some(r) = &self.resolver {
            r.poll_fds(out);
        }
    }

    /// Lookups at start (and for `--check`): waits (polling) until every
    /// name answered or failed, at most `limit_ms`.
    pub fn settle(&mut self, limit_ms: u64) {
        let deadline = crate::sys::now_ms() + limit_ms;
        loop {
            let now = crate::sys::now_ms();
            self.tick(now);
            if self.settled() || now >= deadline || crate::sys::shutdown_requested() {
                return;
            }
            let mut fds = Vec::new();
            self.poll_fds(&mut fds);
            let wait = deadline.saturating_sub(now).min(50) as i32;
            let _ = crate::sys::poll(&mut fds, wait);
        }
    }

    /// Names that have no members, with why (for the start-up warning and
    /// `--check`).
    pub fn unresolved(&self) -> Vec<String> {
        self.follows
            .iter()
            .filter(|f| f.members.is_empty())
            .map(|f| {
                let s = &self.specs[f.spec];
                let why = f
                    .failing
                    .as_ref()
                    .map_or("no answer yet".to_string(), |(w, _)| w.clone());
                format!("backend {s}: {why}")
            })
            .collect()
    }

    /// The backend set: each entry of the configuration in order, a name
    /// expanded into its members. `down(addr, host)` says a member is
    /// unhealthy (for SRV priority fallback). At most [`MAX_BACKENDS`].
    pub fn entries(&self, down: &dyn Fn(&str, SocketAddr) -> bool) -> Vec<BackendEntry> {
        let mut out = Vec::new();
        let mut dropped = 0;
        let mut push = |out: &mut Vec<BackendEntry>, host: &str, addr, weight, tls| {
            if out.len() < MAX_BACKENDS {
                let id = out.len() as u32;
                out.push(BackendEntry::new(host, addr, weight, tls, id));
            } else {
                dropped += 1;
            }
        };
        // Literals first: a name with many addresses never crowds out a
        // backend given by address.
        for s in &self.specs {
            if let Some(ip) = is_literal(s) {
                push(
                    &mut out,
                    &s.host,
                    SocketAddr::new(ip, s.port),
                    s.weight.max(1),
                    s.tls,
                );
            }
        }
        for f in &self.follows {
            let s = &self.specs[f.spec];
            // SRV: every priority up to the first with a member up. The
            // lower ones stay published while down, so their health (the
            // prober's) is known and traffic returns to them when they are
            // up, without flapping.
            let mut priorities: Vec<u16> = f.members.iter().map(|m| m.priority).collect();
            priorities.dedup();
            let host = |m: &Member| m.target.clone().unwrap_or_else(|| s.host.clone());
            let last = priorities
                .iter()
                .copied()
                .find(|&p| {
                    f.members
                        .iter()
                        .any(|m| m.priority == p && !down(&host(m), m.addr))
                })
                .or(priorities.last().copied());
            for m in f.members.iter().filter(|m| Some(m.priority) <= last) {
                push(&mut out, &host(m), m.addr, m.weight, s.tls);
            }
        }
        if dropped != self.dropped.replace(dropped) && dropped > 0 {
            log!(
                Warn,
                "dns",
                "at most {MAX_BACKENDS} backends: {dropped} members of followed names are left out"
            );
        }
        out
    }

    /// Each followed name: its addresses and the time of its last answer.
    pub fn status(&self) -> Vec<NameStatus> {
        self.follows
            .iter()
            .map(|f| NameStatus {
                name: self.specs[f.spec].to_string(),
                addresses: f.members.iter().map(|m| m.addr).collect(),
                answered_unix: f.answered_unix,
                failing: f.failing.clone(),
            })
            .collect()
    }

    /// Something is followed (a resolver runs).
    pub fn active(&self) -> bool {
        !self.follows.is_empty()
    }
}
