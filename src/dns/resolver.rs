//! The resolver: lookups in, results out, driven from the caller's loop.
//!
//! Why a state machine and no thread: the supervisor already waits in one
//! `poll` for signals and children; the resolver adds its sockets to that
//! wait ([`Resolver::poll_fds`], [`Resolver::next_deadline`]) and
//! [`Resolver::drive`] does whatever is ready without blocking. No lookup
//! can hold up another or the caller.
//!
//! A lookup ([`Lookup::Addrs`]: A and AAAA at once; [`Lookup::Srv`]) goes
//! as glibc's would: an IP literal is its own answer, a name in the hosts
//! file is answered from it (no query), and otherwise the name is tried
//! with the search domains (`ndots` decides whether first or last, a
//! trailing dot means the name is absolute), moving to the next candidate
//! on NXDOMAIN, NODATA or SERVFAIL. A query tries the servers in order,
//! `attempts` rounds, `timeout` each, over UDP with EDNS0 from a fresh
//! socket (random source port, random id); a truncated answer is asked
//! again over TCP from the same server. A SERVFAIL, REFUSED or other error
//! code moves to the next server at once; FORMERR to an EDNS0 query asks
//! the same server again without it (RFC 6891 section 7). An answer that
//! fails the checks of [`parse_response`] on UDP is ignored: a forger's
//! datagram must not end a query the real server is still answering.
//!
//! Bounded: at most [`MAX_IN_FLIGHT`] queries have a socket at once (more
//! wait their turn), at most [`MAX_LOOKUPS`] lookups are pending, a TCP
//! answer is at most 64 KiB (its 2-byte length), an SRV answer makes at most
//! [`MAX_SRV_TARGETS`] follow-up lookups, and a CNAME chain is followed for
//! at most [`MAX_CNAMES`] queries.
#![forbid(unsafe_code)]

use super::conf::{Hosts, ResolvConf};
use super::message::{
    encode_query, parse_response, Name, QType, Response, SrvTarget, DEFAULT_NEGATIVE_TTL_MS,
    EDNS_UDP_SIZE, MAX_CNAMES, MAX_TTL_MS,
};
use super::DnsError;
use crate::sys::{self, RawAddr};
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Queries with a socket open at once; more wait in a queue.
pub const MAX_IN_FLIGHT: usize = 64;
/// Lookups pending at once (SRV targets' own lookups included); past it a
/// lookup fails with [`DnsError::Busy`].
pub const MAX_LOOKUPS: usize = 1024;
/// SRV targets (in priority order) whose addresses are looked up when the
/// answer did not carry them.
pub const MAX_SRV_TARGETS: usize = 16;
/// How long an answer from the hosts file is given for: the file has no
/// TTL; the caller looks again this often (with a hosts table it reloads).
pub const HOSTS_TTL_MS: u64 = 30 * 1000;
/// Datagrams read from one socket in one [`Resolver::drive`]: a flood of
/// forged answers cannot keep the caller's loop in here.
const MAX_DATAGRAMS: usize = 32;
/// 2-byte length + the largest DNS message.
const TCP_MAX: usize = 2 + 65535;

/// Names one lookup; its result comes back from [`Resolver::drive`] with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// What a lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A and AAAA records, asked at once.
    Addrs,
    /// SRV records, and their targets' addresses.
    Srv,
}

/// A lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `Addrs`: every address, IPv4 (A) first, without repeats. `Srv`: the
    /// addresses of the targets of the lowest priority value (the ones to
    /// use while any is up).
    pub addrs: Vec<IpAddr>,
    /// `Srv`: every record, by priority (lowest value first), each with its
    /// target's addresses (from the answer, the hosts file or a follow-up
    /// lookup; empty for a target past [`MAX_SRV_TARGETS`] or whose lookup
    /// failed).
    pub srv: Vec<SrvTarget>,
    /// How long this may be used: the smallest TTL of the records used.
    pub ttl_ms: u64,
    /// Answered from the hosts file, no query made.
    pub from_hosts: bool,
}

// ------------------------------------------------------------ the state ---

/// One A, AAAA or SRV question of a lookup, and where its CNAMEs led.
struct Part {
    qtype: QType,
    /// CNAME follow-up queries made.
    hops: usize,
    /// Smallest TTL of the CNAMEs followed.
    ttl_ms: u64,
    outcome: Option<Result<Response, DnsError>>,
}

impl Part {
    fn new(qtype: QType) -> Part {
        Part {
            qtype,
            hops: 0,
            ttl_ms: MAX_TTL_MS,
            outcome: None,
        }
    }
}

/// One lookup: the caller's, or an SRV target's (then `parent` is the SRV
/// lookup and the target is `candidates[0]`).
struct Job {
    token: Token,
    parent: Option<usize>,
    kind: Lookup,
    /// The names to try, in order (search list applied).
    candidates: Vec<String>,
    cand: usize,
    parts: Vec<Part>,
    /// Over the candidates so far, as glibc's `res_search` keeps them:
    /// which negative answer to give when every candidate failed.
    got_nodata: Option<u64>,
    got_servfail: bool,
    last_nx: Option<u64>,
    /// `Srv`: the records, and how many target lookups are outstanding.
    srv: Vec<SrvTarget>,
    ttl_ms: u64,
    pending: usize,
}

/// What a query's socket is doing.
enum Io {
    /// No socket: waiting for its turn, or between two tries.
    Idle,
    Udp(OwnedFd),
    Tcp(TcpIo),
}

struct TcpIo {
    fd: OwnedFd,
    connected: bool,
    /// The length-prefixed query and how much of it was written.
    out: Vec<u8>,
    sent: usize,
    /// The length-prefixed answer, read so far.
    got: Vec<u8>,
    filled: usize,
}

/// One question to the servers, with its retries.
struct Query {
    job: usize,
    part: usize,
    name: String,
    qtype: QType,
    /// Tries begun; try `i` goes to server `i % servers`.
    tries: usize,
    /// Whether it holds one of the [`MAX_IN_FLIGHT`] places.
    started: bool,
    edns: bool,
    id: u16,
    server: SocketAddr,
    deadline: u64,
    io: Io,
    /// The most telling failure so far (see [`rank`]); `Timeout` if none.
    failure: Option<DnsError>,
}

/// Which failure a query reports when every try failed: an answer's
/// verdict over a bad answer over a local error over silence.
fn rank(e: &DnsError) -> u8 {
    match e {
        DnsError::Timeout => 0,
        DnsError::Io(_) => 1,
        DnsError::Malformed(_) | DnsError::Mismatch(_) => 2,
        _ => 3,
    }
}

/// What to do with an answer just read.
enum Verdict {
    /// Ignore it and keep waiting (UDP only).
    Wait,
    /// The query moved on (finished, retried elsewhere, or over TCP).
    Moved,
}

/// The asynchronous resolver. See the module documentation.
pub struct Resolver {
    conf: ResolvConf,
    hosts: Hosts,
    jobs: Vec<Option<Job>>,
    free_jobs: Vec<usize>,
    live_jobs: usize,
    queries: Vec<Option<Query>>,
    free_queries: Vec<usize>,
    queue: VecDeque<usize>,
    in_flight: usize,
    done: Vec<(Token, Result<Resolved, DnsError>)>,
    next_token: u64,
    ids: [u8; 64],
    ids_left: usize,
    /// One datagram, read here (64 KiB: a datagram never arrives cut).
    buf: Vec<u8>,
    now: u64,
}

impl Resolver {
    /// A resolver asking `conf`'s name servers (set other ones with
    /// [`ResolvConf::with_servers`]) after looking in `hosts`.
    pub fn new(conf: ResolvConf, hosts: Hosts) -> Resolver {
        Resolver {
            conf,
            hosts,
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            live_jobs: 0,
            queries: Vec::new(),
            free_queries: Vec::new(),
            queue: VecDeque::new(),
            in_flight: 0,
            done: Vec::new(),
            next_token: 1,
            ids: [0; 64],
            ids_left: 0,
            buf: vec![0; 65536],
            now: 0,
        }
    }

    /// The settings in use.
    pub fn conf(&self) -> &ResolvConf {
        &self.conf
    }

    /// New settings and hosts table (a reload); lookups already begun keep
    /// their candidates, their next tries use the new servers.
    pub fn reconfigure(&mut self, conf: ResolvConf, hosts: Hosts) {
        self.conf = conf;
        self.hosts = hosts;
    }

    /// Lookups not yet answered (SRV targets' own lookups included).
    pub fn pending(&self) -> usize {
        self.live_jobs
    }

    /// Starts looking up `name`. The result comes back from a later
    /// [`drive`](Resolver::drive) with the token returned here (an answer
    /// known at once, such as a hosts file entry, from the next one).
    pub fn lookup(&mut self, name: &str, what: Lookup, now_ms: u64) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.now = now_ms;
        if what == Lookup::Addrs {
            if let Ok(ip) = name.parse::<IpAddr>() {
                let r = Resolved {
                    addrs: vec![ip],
                    srv: Vec::new(),
                    ttl_ms: MAX_TTL_MS,
                    from_hosts: false,
                };
                self.done.push((token, Ok(r)));
                return token;
            }
        }
        if let Err(e) = Name::from_text(name) {
            self.done.push((token, Err(e)));
            return token;
        }
        if what == Lookup::Addrs {
            if let Some(r) = self.hosts_answer(name) {
                self.done.push((token, Ok(r)));
                return token;
            }
        }
        if self.live_jobs >= MAX_LOOKUPS {
            self.done.push((token, Err(DnsError::Busy)));
            return token;
        }
        let candidates = self.candidates(name);
        let j = self.new_job(token, None, what, candidates);
        self.start_candidate(j);
        token
    }

    /// The descriptors to wait on, appended to `out`, and for what.
    pub fn poll_fds(&self, out: &mut Vec<libc::pollfd>) {
        for slot in 0..self.queries.len() {
            self.poll_fds_of(slot, out);
        }
    }

    /// When [`drive`](Resolver::drive) must run next even if no descriptor
    /// becomes ready (a deadline at or before now: at once); `None` when
    /// nothing is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.done.is_empty() || (!self.queue.is_empty() && self.in_flight < MAX_IN_FLIGHT) {
            return Some(self.now);
        }
        self.queries
            .iter()
            .flatten()
            .filter(|q| !matches!(q.io, Io::Idle))
            .map(|q| q.deadline)
            .min()
    }

    /// Does everything that can be done now without blocking: reads
    /// answers, sends queries, retries and times out. Returns the lookups
    /// finished since the last call.
    pub fn drive(&mut self, now_ms: u64) -> Vec<(Token, Result<Resolved, DnsError>)> {
        self.now = now_ms;
        let mut fds = Vec::new();
        let mut slots = Vec::new();
        for (slot, q) in self.queries.iter().enumerate() {
            if q.is_some() {
                let before = fds.len();
                self.poll_fds_of(slot, &mut fds);
                if fds.len() > before {
                    slots.push(slot);
                }
            }
        }
        if !fds.is_empty() && sys::poll(&mut fds, 0).is_err() {
            fds.iter_mut().for_each(|p| p.revents = 0);
        }
        // A slot finished here may be reused by a query that is only
        // queued (new queries start below), so a stale readiness finds an
        // idle query and does nothing.
        for (p, &slot) in fds.iter().zip(&slots) {
            if p.revents != 0 {
                self.ready(slot, p.revents);
            }
        }
        for slot in 0..self.queries.len() {
            let expired = self.queries[slot]
                .as_ref()
                .is_some_and(|q| !matches!(q.io, Io::Idle) && q.deadline <= now_ms);
            if expired {
                self.next_try(slot);
            }
        }
        self.start_queued();
        std::mem::take(&mut self.done)
    }

    fn poll_fds_of(&self, slot: usize, out: &mut Vec<libc::pollfd>) {
        let Some(q) = &self.queries[slot] else { return };
        let (fd, events) = match &q.io {
            Io::Idle => return,
            Io::Udp(fd) => (fd.as_raw_fd(), libc::POLLIN),
            Io::Tcp(t) if !t.connected || t.sent < t.out.len() => (t.fd.as_raw_fd(), libc::POLLOUT),
            Io::Tcp(t) => (t.fd.as_raw_fd(), libc::POLLIN),
        };
        out.push(libc::pollfd {
            fd,
            events,
            revents: 0,
        });
    }

    // --------------------------------------------------------- lookups ---

    fn hosts_answer(&self, name: &str) -> Option<Resolved> {
        let addrs = self.hosts.lookup(name);
        (!addrs.is_empty()).then_some(Resolved {
            addrs,
            srv: Vec::new(),
            ttl_ms: HOSTS_TTL_MS,
            from_hosts: true,
        })
    }

    /// The names to try for `name`, in order, as glibc's `res_search`: a
    /// trailing dot means only the name itself; a name with at least
    /// `ndots` dots is tried as it is first, then with each search domain;
    /// one with fewer dots with the search domains first.
    fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(abs) = name.strip_suffix('.') {
            return vec![abs.to_string()];
        }
        let as_is = name.matches('.').count() >= self.conf.ndots as usize;
        let mut out = Vec::with_capacity(self.conf.search.len() + 1);
        if as_is {
            out.push(name.to_string());
        }
        for domain in &self.conf.search {
            let full = format!("{name}.{domain}");
            if Name::from_text(&full).is_ok() {
                out.push(full);
            }
        }
        if !as_is {
            out.push(name.to_string());
        }
        out
    }

    fn new_job(
        &mut self,
        token: Token,
        parent: Option<usize>,
        kind: Lookup,
        candidates: Vec<String>,
    ) -> usize {
        let job = Job {
            token,
            parent,
            kind,
            candidates,
            cand: 0,
            parts: Vec::new(),
            got_nodata: None,
            got_servfail: false,
            last_nx: None,
            srv: Vec::new(),
            ttl_ms: MAX_TTL_MS,
            pending: 0,
        };
        self.live_jobs += 1;
        match self.free_jobs.pop() {
            Some(j) => {
                self.jobs[j] = Some(job);
                j
            }
            None => {
                self.jobs.push(Some(job));
                self.jobs.len() - 1
            }
        }
    }

    /// Asks the current candidate name: A and AAAA, or SRV.
    fn start_candidate(&mut self, j: usize) {
        let Some(job) = self.jobs[j].as_mut() else {
            return;
        };
        let name = job.candidates[job.cand].clone();
        job.parts = match job.kind {
            Lookup::Addrs => vec![Part::new(QType::A), Part::new(QType::Aaaa)],
            Lookup::Srv => vec![Part::new(QType::Srv)],
        };
        let qtypes: Vec<QType> = job.parts.iter().map(|p| p.qtype).collect();
        for (p, qtype) in qtypes.into_iter().enumerate() {
            self.new_query(j, p, name.clone(), qtype);
        }
    }

    /// A part's query ended: keep its outcome, or follow its CNAME.
    fn part_done(&mut self, j: usize, p: usize, result: Result<Response, DnsError>) {
        let Some(job) = self.jobs[j].as_mut() else {
            return;
        };
        let part = &mut job.parts[p];
        let outcome = match result {
            Ok(mut r) if !r.addrs.is_empty() || !r.srv.is_empty() => {
                r.ttl_ms = r.ttl_ms.min(part.ttl_ms);
                Ok(r)
            }
            Ok(Response {
                cname: Some(target),
                ttl_ms,
                ..
            }) => {
                part.ttl_ms = part.ttl_ms.min(ttl_ms);
                if part.hops >= MAX_CNAMES {
                    Err(DnsError::CnameChain)
                } else if Name::from_text(&target).is_err() {
                    // parse_response gives only names that can be asked;
                    // should one slip through, no try is wasted on it.
                    Err(DnsError::Malformed("CNAME target is not a host name"))
                } else {
                    part.hops += 1;
                    let qtype = part.qtype;
                    self.new_query(j, p, target, qtype);
                    return;
                }
            }
            Ok(r) => Err(DnsError::NoData {
                ttl_ms: r.ttl_ms.min(part.ttl_ms),
            }),
            Err(DnsError::NxDomain { ttl_ms }) => Err(DnsError::NxDomain {
                ttl_ms: ttl_ms.min(part.ttl_ms),
            }),
            Err(e) => Err(e),
        };
        part.outcome = Some(outcome);
        if job.parts.iter().all(|p| p.outcome.is_some()) {
            self.candidate_done(j);
        }
    }

    /// Every part of the current candidate has its outcome.
    fn candidate_done(&mut self, j: usize) {
        let Some(job) = self.jobs[j].as_mut() else {
            return;
        };
        let mut oks = Vec::new();
        let mut errs = Vec::new();
        for part in job.parts.drain(..) {
            match part.outcome {
                Some(Ok(r)) => oks.push(r),
                Some(Err(e)) => errs.push(e),
                None => {}
            }
        }
        if !oks.is_empty() {
            // One of A and AAAA answering is an answer: the other family
            // may be missing or its server slow, as with getaddrinfo.
            match job.kind {
                Lookup::Addrs => {
                    let mut addrs: Vec<IpAddr> = Vec::new();
                    let mut ttl_ms = MAX_TTL_MS;
                    for r in &oks {
                        ttl_ms = ttl_ms.min(r.ttl_ms);
                        for ip in &r.addrs {
                            if !addrs.contains(ip) {
                                addrs.push(*ip);
                            }
                        }
                    }
                    let r = Resolved {
                        addrs,
                        srv: Vec::new(),
                        ttl_ms,
                        from_hosts: false,
                    };
                    self.finish_job(j, Ok(r));
                }
                Lookup::Srv => {
                    let r = oks.swap_remove(0);
                    self.srv_found(j, r);
                }
            }
            return;
        }
        match combine(errs) {
            DnsError::NxDomain { ttl_ms } => job.last_nx = Some(ttl_ms),
            DnsError::NoData { ttl_ms } => {
                job.got_nodata = Some(job.got_nodata.map_or(ttl_ms, |t| t.min(ttl_ms)));
            }
            DnsError::ServFail => job.got_servfail = true,
            // A timeout or a local failure says nothing about the name: the
            // next candidate could answer where this one would have too.
            e => {
                self.finish_job(j, Err(e));
                return;
            }
        }
        job.cand += 1;
        if job.cand < job.candidates.len() {
            self.start_candidate(j);
            return;
        }
        let e = match (job.got_nodata, job.got_servfail) {
            (Some(ttl_ms), _) => DnsError::NoData { ttl_ms },
            (None, true) => DnsError::ServFail,
            (None, false) => DnsError::NxDomain {
                ttl_ms: job.last_nx.unwrap_or(DEFAULT_NEGATIVE_TTL_MS),
            },
        };
        self.finish_job(j, Err(e));
    }

    /// The SRV records came: their targets' addresses from the answer, the
    /// hosts file or lookups of their own.
    fn srv_found(&mut self, j: usize, r: Response) {
        let Some(job) = self.jobs[j].as_mut() else {
            return;
        };
        job.srv = r.srv;
        job.srv.sort_by_key(|s| s.priority);
        job.ttl_ms = r.ttl_ms;
        let mut need: Vec<String> = Vec::new();
        for s in job.srv.iter().take(MAX_SRV_TARGETS) {
            if s.addrs.is_empty() && !need.contains(&s.target) {
                need.push(s.target.clone());
            }
        }
        job.pending = need.len();
        let token = job.token;
        if need.is_empty() {
            self.finish_srv(j);
            return;
        }
        // Each may finish at once (hosts file, Busy); the job ends with the
        // last one, which is the last of this loop at the earliest.
        for target in need {
            if let Some(r) = self.hosts_answer(&target) {
                self.target_done(j, &target, Ok(r));
            } else if self.live_jobs >= MAX_LOOKUPS {
                self.target_done(j, &target, Err(DnsError::Busy));
            } else {
                // Targets are absolute names: no search list.
                let t = self.new_job(token, Some(j), Lookup::Addrs, vec![target]);
                self.start_candidate(t);
            }
        }
    }

    /// A target's lookup of SRV lookup `j` ended.
    fn target_done(&mut self, j: usize, target: &str, result: Result<Resolved, DnsError>) {
        let Some(job) = self.jobs[j].as_mut() else {
            return;
        };
        match result {
            Ok(r) => {
                job.ttl_ms = job.ttl_ms.min(r.ttl_ms);
                for s in job.srv.iter_mut().take(MAX_SRV_TARGETS) {
                    if s.target == target && s.addrs.is_empty() {
                        s.addrs.clone_from(&r.addrs);
                    }
                }
            }
            // A failed target is looked at again no later than a negative
            // answer would be.
            Err(e) => {
                let ttl = e.negative_ttl_ms().unwrap_or(DEFAULT_NEGATIVE_TTL_MS);
                job.ttl_ms = job.ttl_ms.min(ttl);
            }
        }
        job.pending = job.pending.saturating_sub(1);
        if job.pending == 0 {
            self.finish_srv(j);
        }
    }

    fn finish_srv(&mut self, j: usize) {
        let Some(job) = self.jobs[j].as_mut() else {
            return;
        };
        let srv = std::mem::take(&mut job.srv);
        let mut addrs: Vec<IpAddr> = Vec::new();
        if let Some(best) = srv.first().map(|s| s.priority) {
            for s in srv.iter().filter(|s| s.priority == best) {
                for ip in &s.addrs {
                    if !addrs.contains(ip) {
                        addrs.push(*ip);
                    }
                }
            }
        }
        let r = Resolved {
            addrs,
            srv,
            ttl_ms: job.ttl_ms,
            from_hosts: false,
        };
        self.finish_job(j, Ok(r));
    }

    fn finish_job(&mut self, j: usize, result: Result<Resolved, DnsError>) {
        let Some(job) = self.jobs[j].take() else {
            return;
        };
        self.free_jobs.push(j);
        self.live_jobs -= 1;
        match job.parent {
            Some(p) => self.target_done(p, &job.candidates[0], result),
            None => self.done.push((job.token, result)),
        }
    }

    // --------------------------------------------------------- queries ---

    fn new_query(&mut self, job: usize, part: usize, name: String, qtype: QType) {
        let q = Query {
            job,
            part,
            name,
            qtype,
            tries: 0,
            started: false,
            edns: true,
            id: 0,
            // Set by each try.
            server: SocketAddr::from(([0, 0, 0, 0], 0)),
            deadline: 0,
            io: Io::Idle,
            failure: None,
        };
        let slot = match self.free_queries.pop() {
            Some(s) => {
                self.queries[s] = Some(q);
                s
            }
            None => {
                self.queries.push(Some(q));
                self.queries.len() - 1
            }
        };
        self.queue.push_back(slot);
    }

    /// Starts queued queries while there is room. A query that fails at
    /// once makes room (and may queue others); each ends within its tries.
    fn start_queued(&mut self) {
        while self.in_flight < MAX_IN_FLIGHT {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            let Some(q) = self.queries[slot].as_mut() else {
                continue;
            };
            if q.started {
                continue;
            }
            q.started = true;
            self.in_flight += 1;
            self.next_try(slot);
        }
    }

    fn query_done(&mut self, slot: usize, result: Result<Response, DnsError>) {
        let Some(q) = self.queries[slot].take() else {
            return;
        };
        self.free_queries.push(slot);
        if q.started {
            self.in_flight -= 1;
        }
        self.part_done(q.job, q.part, result);
    }

    fn note(&mut self, slot: usize, e: DnsError) {
        let e = match e {
            DnsError::Mismatch(_) => DnsError::Malformed("answer to another question"),
            e => e,
        };
        if let Some(q) = self.queries[slot].as_mut() {
            if q.failure.as_ref().is_none_or(|f| rank(&e) >= rank(f)) {
                q.failure = Some(e);
            }
        }
    }

    /// Closes the current try and begins the next (the next server), or
    /// ends the query when every try is used.
    fn next_try(&mut self, slot: usize) {
        loop {
            let servers = self.conf.nameservers.len();
            let max = servers * self.conf.attempts as usize;
            let Some(q) = self.queries[slot].as_mut() else {
                return;
            };
            q.io = Io::Idle;
            if q.tries >= max {
                let e = q.failure.take().unwrap_or(DnsError::Timeout);
                self.query_done(slot, Err(e));
                return;
            }
            q.server = self.conf.nameservers[q.tries % servers];
            q.tries += 1;
            match self.send_udp(slot) {
                Ok(()) => return,
                Err(e) => self.note(slot, DnsError::Io(e.kind())),
            }
        }
    }

    /// Asks the query's current server again, over UDP, without using a
    /// try (after FORMERR to EDNS0).
    fn same_server(&mut self, slot: usize) {
        if let Err(e) = self.send_udp(slot) {
            self.note(slot, DnsError::Io(e.kind()));
            self.next_try(slot);
        }
    }

    fn random_id(&mut self) -> io::Result<u16> {
        if self.ids_left < 2 {
            sys::random_bytes(&mut self.ids)?;
            self.ids_left = self.ids.len();
        }
        self.ids_left -= 2;
        let i = self.ids_left;
        Ok(u16::from_ne_bytes([self.ids[i], self.ids[i + 1]]))
    }

    /// Sends the query from a fresh UDP socket to its current server.
    fn send_udp(&mut self, slot: usize) -> io::Result<()> {
        let id = self.random_id()?;
        let (now, timeout) = (self.now, self.conf.timeout_ms);
        let Some(q) = self.queries[slot].as_mut() else {
            return Ok(());
        };
        let edns = q.edns.then_some(EDNS_UDP_SIZE);
        let msg = encode_query(id, &q.name, q.qtype, edns).map_err(io::Error::other)?;
        let fd = sys::udp_connect(&RawAddr::new(q.server))?;
        sys::send(fd.as_fd(), &msg)?;
        q.id = id;
        q.io = Io::Udp(fd);
        q.deadline = now.saturating_add(timeout);
        Ok(())
    }

    /// Asks the query's current server over TCP (its UDP answer was
    /// truncated); the try gets a fresh `timeout`.
    fn open_tcp(&mut self, slot: usize) {
        let id = match self.random_id() {
            Ok(id) => id,
            Err(e) => {
                self.note(slot, DnsError::Io(e.kind()));
                return self.next_try(slot);
            }
        };
        let (now, timeout) = (self.now, self.conf.timeout_ms);
        let Some(q) = self.queries[slot].as_mut() else {
            return;
        };
        q.io = Io::Idle;
        let msg = match encode_query(id, &q.name, q.qtype, None) {
            Ok(m) => m,
            Err(e) => return self.query_done(slot, Err(e)),
        };
        let mut out = Vec::with_capacity(2 + msg.len());
        out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        out.extend_from_slice(&msg);
        match sys::connect(&RawAddr::new(q.server)) {
            Ok((fd, connected)) => {
                q.id = id;
                q.deadline = now.saturating_add(timeout);
                q.io = Io::Tcp(TcpIo {
                    fd,
                    connected,
                    out,
                    sent: 0,
                    got: vec![0; 2],
                    filled: 0,
                });
                if connected {
                    self.tcp_progress(slot, libc::POLLOUT);
                }
            }
            Err(e) => {
                self.note(slot, DnsError::Io(e.kind()));
                self.next_try(slot);
            }
        }
    }

    fn ready(&mut self, slot: usize, revents: libc::c_short) {
        match self.queries[slot].as_ref().map(|q| &q.io) {
            Some(Io::Udp(_)) => self.udp_readable(slot),
            Some(Io::Tcp(_)) => self.tcp_progress(slot, revents),
            _ => {}
        }
    }

    fn udp_readable(&mut self, slot: usize) {
        for _ in 0..MAX_DATAGRAMS {
            let Some(q) = self.queries[slot].as_ref() else {
                return;
            };
            let Io::Udp(fd) = &q.io else { return };
            let n = match sys::recv(fd.as_fd(), &mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNREFUSED: nothing listens there (an ICMP error on the
                // connected socket): no use waiting out the timeout.
                Err(e) => {
                    self.note(slot, DnsError::Io(e.kind()));
                    return self.next_try(slot);
                }
            };
            let result = parse_response(&self.buf[..n], q.id, &q.name, q.qtype);
            if let Verdict::Moved = self.judge(slot, result, false) {
                return;
            }
        }
    }

    /// Acts on an answer read from the query's socket.
    fn judge(&mut self, slot: usize, result: Result<Response, DnsError>, tcp: bool) -> Verdict {
        let edns = self.queries[slot].as_ref().is_some_and(|q| q.edns);
        match result {
            Ok(r) if r.truncated && !tcp => self.open_tcp(slot),
            Ok(r) if r.truncated => {
                self.note(slot, DnsError::Malformed("truncated over TCP"));
                self.next_try(slot);
            }
            Ok(r) => self.query_done(slot, Ok(r)),
            Err(e @ (DnsError::NxDomain { .. } | DnsError::CnameChain)) => {
                self.query_done(slot, Err(e))
            }
            Err(DnsError::Rcode(1)) if edns && !tcp => {
                if let Some(q) = self.queries[slot].as_mut() {
                    q.edns = false;
                }
                self.same_server(slot);
            }
            // Forged, late or broken: the real answer may still come.
            Err(e @ DnsError::Malformed(_)) if !tcp => {
                self.note(slot, e);
                return Verdict::Wait;
            }
            Err(DnsError::Mismatch(_)) if !tcp => return Verdict::Wait,
            // An error code, or a bad answer on a TCP connection (which
            // cannot be forged blindly): this server had its say.
            Err(e) => {
                self.note(slot, e);
                self.next_try(slot);
            }
        }
        Verdict::Moved
    }

    fn tcp_progress(&mut self, slot: usize, revents: libc::c_short) {
        let Some(q) = self.queries[slot].as_mut() else {
            return;
        };
        let Io::Tcp(t) = &mut q.io else { return };
        let failed = |this: &mut Resolver, e: io::Error| {
            this.note(slot, DnsError::Io(e.kind()));
            this.next_try(slot);
        };
        if !t.connected {
            if revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) == 0 {
                return;
            }
            match sys::take_error(t.fd.as_fd()) {
                Ok(None) => t.connected = true,
                Ok(Some(e)) | Err(e) => return failed(self, e),
            }
        }
        while t.sent < t.out.len() {
            match sys::write(t.fd.as_fd(), &t.out[t.sent..]) {
                Ok(n) => t.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return failed(self, e),
            }
        }
        loop {
            if t.filled == 2 && t.got.len() == 2 {
                let len = u16::from_be_bytes([t.got[0], t.got[1]]) as usize;
                t.got.resize((2 + len).min(TCP_MAX), 0);
            }
            if t.filled == t.got.len() && t.filled > 2 || t.filled == 2 && t.got[..2] == [0, 0] {
                break;
            }
            match sys::read(t.fd.as_fd(), &mut t.got[t.filled..]) {
                Ok(0) => return failed(self, io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => t.filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return failed(self, e),
            }
        }
        let result = parse_response(&t.got[2..t.filled], q.id, &q.name, q.qtype);
        self.judge(slot, result, true);
    }
}

/// One negative verdict from the parts of a candidate (none answered):
/// NXDOMAIN only if every part says so; NODATA if one does and the rest
/// are negative; SERVFAIL likewise; else the most telling other failure.
fn combine(errs: Vec<DnsError>) -> DnsError {
    let negative = |e: &DnsError| matches!(e, DnsError::NxDomain { .. } | DnsError::NoData { .. });
    if !errs.is_empty() && errs.iter().all(negative) {
        let ttl_ms = errs
            .iter()
            .filter_map(DnsError::negative_ttl_ms)
            .min()
            .unwrap_or(DEFAULT_NEGATIVE_TTL_MS);
        return if errs.iter().all(|e| matches!(e, DnsError::NxDomain { .. })) {
            DnsError::NxDomain { ttl_ms }
        } else {
            DnsError::NoData { ttl_ms }
        };
    }
    if errs.iter().all(|e| negative(e) || *e == DnsError::ServFail) && !errs.is_empty() {
        return DnsError::ServFail;
    }
    errs.into_iter()
        .filter(|e| !negative(e) && *e != DnsError::ServFail)
        .max_by_key(rank)
        .unwrap_or(DnsError::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, UdpSocket};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    const T_A: u16 = 1;
    const T_CNAME: u16 = 5;
    const T_AAAA: u16 = 28;
    const T_SRV: u16 = 33;

    /// A query as the fake server saw it.
    #[derive(Clone, Debug)]
    struct Q {
        raw: Vec<u8>,
        name: String,
        qtype: u16,
        edns: bool,
        tcp: bool,
        /// Where the question section ends.
        qend: usize,
    }

    fn read_query(raw: &[u8], tcp: bool) -> Option<Q> {
        let mut at = 12;
        let mut labels = Vec::new();
        while *raw.get(at)? != 0 {
            let n = raw[at] as usize;
            labels.push(String::from_utf8_lossy(raw.get(at + 1..at + 1 + n)?).into_owned());
            at += 1 + n;
        }
        Some(Q {
            raw: raw.to_vec(),
            name: labels.join("."),
            qtype: u16::from_be_bytes([*raw.get(at + 1)?, *raw.get(at + 2)?]),
            edns: raw[11] == 1,
            tcp,
            qend: at + 5,
        })
    }

    fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// A record: owner, type, TTL, rdata.
    type Rec = (&'static str, u16, u32, Vec<u8>);

    fn a(ip: &str) -> Vec<u8> {
        match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        }
    }

    fn srv(prio: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
        let mut r = [prio, weight, port].map(u16::to_be_bytes).concat();
        r.extend(wire(target));
        r
    }

    /// An answer to `q` with `flags` (QR is added) and answer/additional records.
    fn reply(q: &Q, flags: u16, an: &[Rec], ar: &[Rec]) -> Vec<u8> {
        let mut m = q.raw[..q.qend].to_vec();
        m[2..4].copy_from_slice(&(0x8180 | flags).to_be_bytes());
        m[4..12].copy_from_slice(&[0, 1, 0, an.len() as u8, 0, 0, 0, ar.len() as u8]);
        for (owner, t, ttl, rdata) in an.iter().chain(ar) {
            m.extend(wire(owner));
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    type Handler = dyn Fn(&Q) -> Vec<Vec<u8>> + Send + Sync;

    /// A name server on 127.0.0.1 (UDP and TCP on one port) answering
    /// with what `handler` returns for each query: any number of
    /// datagrams (over TCP, the first one). Stopped on drop.
    struct Fake {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Q>>>,
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl Fake {
        fn start(handler: impl Fn(&Q) -> Vec<Vec<u8>> + Send + Sync + 'static) -> Fake {
            let handler: Arc<Handler> = Arc::new(handler);
            let (udp, tcp) = loop {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                    break (udp, tcp);
                }
            };
            let addr = udp.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            udp.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            tcp.set_nonblocking(true).unwrap();
            let (h, s, st) = (handler.clone(), seen.clone(), stop.clone());
            let t1 = std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !st.load(Ordering::Relaxed) {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(q) = read_query(&buf[..n], false) else {
                        continue;
                    };
                    s.lock().unwrap().push(q.clone());
                    for d in h(&q) {
                        let _ = udp.send_to(&d, from);
                    }
                }
            });
            let (h, s, st) = (handler, seen.clone(), stop.clone());
            let t2 = std::thread::spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    let Ok((mut c, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut len = [0u8; 2];
                    if c.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut raw = vec![0; u16::from_be_bytes(len) as usize];
                    if c.read_exact(&mut raw).is_err() {
                        continue;
                    }
                    let Some(q) = read_query(&raw, true) else {
                        continue;
                    };
                    s.lock().unwrap().push(q.clone());
                    if let Some(d) = h(&q).into_iter().next() {
                        let _ = c.write_all(&(d.len() as u16).to_be_bytes());
                        let _ = c.write_all(&d);
                    }
                }
            });
            Fake {
                addr,
                seen,
                stop,
                threads: vec![t1, t2],
            }
        }

        fn seen(&self) -> Vec<Q> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    fn conf(servers: &[SocketAddr]) -> ResolvConf {
        ResolvConf {
            nameservers: servers.to_vec(),
            search: Vec::new(),
            ndots: 1,
            timeout_ms: 1000,
            attempts: 2,
        }
    }

    type Outcome = Result<Resolved, DnsError>;

    /// Drives `r` as a caller's loop would until every token is answered;
    /// fails after `limit` (and checks the in-flight bound on the way).
    fn run(r: &mut Resolver, tokens: &[Token], limit: Duration) -> Vec<Outcome> {
        let start = Instant::now();
        let mut got: Vec<Option<Outcome>> = vec![None; tokens.len()];
        while got.iter().any(Option::is_none) {
            assert!(
                start.elapsed() < limit,
                "no answer within {limit:?}: {got:?}"
            );
            let mut fds = Vec::new();
            r.poll_fds(&mut fds);
            assert!(fds.len() <= MAX_IN_FLIGHT, "{} sockets", fds.len());
            let now = sys::now_ms();
            let wait = r
                .next_deadline()
                .map_or(50, |d| d.saturating_sub(now).min(50));
            let _ = sys::poll(&mut fds, wait as i32);
            for (t, res) in r.drive(sys::now_ms()) {
                let i = tokens
                    .iter()
                    .position(|x| *x == t)
                    .expect("a token of ours");
                assert!(got[i].is_none(), "{t:?} answered twice");
                got[i] = Some(res);
            }
        }
        got.into_iter().map(Option::unwrap).collect()
    }

    fn one(r: &mut Resolver, name: &str, what: Lookup) -> Outcome {
        let t = r.lookup(name, what, sys::now_ms());
        run(r, &[t], Duration::from_secs(10)).pop().unwrap()
    }

    fn ips(s: &[&str]) -> Vec<IpAddr> {
        s.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn addresses_over_cname_followups() {
        // www -> real (CNAME without its records), real: A only.
        let fake = Fake::start(|q| {
            let an: Vec<Rec> = match (q.name.as_str(), q.qtype) {
                ("www.test", _) => vec![("www.test", T_CNAME, 50, wire("real.test"))],
                ("real.test", T_A) => vec![("real.test", T_A, 300, a("10.0.0.1"))],
                _ => vec![],
            };
            vec![reply(q, 0, &an, &[])]
        });
        let mut r = Resolver::new(conf(&[fake.addr]), Hosts::default());
        let got = one(&mut r, "www.test", Lookup::Addrs).unwrap();
        assert_eq!(got.addrs, ips(&["10.0.0.1"]));
        assert_eq!((got.ttl_ms, got.from_hosts), (50_000, false));
        let asked: Vec<_> = fake
            .seen()
            .iter()
            .map(|q| (q.name.clone(), q.edns))
            .collect();
        assert_eq!(asked.len(), 4, "{asked:?}");
        assert!(
            asked.iter().all(|(_, edns)| *edns),
            "EDNS0 on every UDP query"
        );
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn forged_and_broken_answers_are_ignored() {
        let fake = Fake::start(|q| {
            let good = reply(
                q,
                0,
                &[(
                    "x.test",
                    q.qtype,
                    60,
                    a(if q.qtype == T_A {
                        "10.0.0.2"
                    } else {
                        "fd00::2"
                    }),
                )],
                &[],
            );
            let mut wrong_id = good.clone();
            wrong_id[1] ^= 1;
            let mut wrong_name = good.clone();
            wrong_name[13] = b'y';
            let evil = reply(q, 0, &[("x.test", T_A, 60, a("6.6.6.6"))], &[]);
            let mut evil = evil;
            evil[0] ^= 0x80; // another id again
            vec![
                wrong_id,
                wrong_name,
                vec![0xFF; 5],
                good[..20].to_vec(),
                evil,
                good,
            ]
        });
        let mut r = Resolver::new(conf(&[fake.addr]), Hosts::default());
        let got = one(&mut r, "x.test", Lookup::Addrs).unwrap();
        assert_eq!(got.addrs, ips(&["10.0.0.2", "fd00::2"]));
        assert_eq!(fake.seen().len(), 2, "no retry: the real answer came");
    }

    #[test]
    fn servfail_moves_to_the_next_server_and_formerr_drops_edns() {
        let failing = Fake::start(|q| vec![reply(q, 2, &[], &[])]);
        // An old server: FORMERR (without the question, as BIND) to EDNS0.
        let old = Fake::start(|q| {
            if q.edns {
                let mut m = q.raw[..12].to_vec();
                m[2..4].copy_from_slice(&0x8181u16.to_be_bytes());
                m[4..12].fill(0);
                vec![m]
            } else {
                vec![reply(q, 0, &[("x.test", T_A, 60, a("10.0.0.3"))], &[])]
            }
        });
        let mut c = conf(&[failing.addr, old.addr]);
        c.timeout_ms = 5000; // a timeout would fail the time check below
        let mut r = Resolver::new(c, Hosts::default());
        let start = Instant::now();
        let got = one(&mut r, "x.test", Lookup::Addrs).unwrap();
        assert_eq!(got.addrs, ips(&["10.0.0.3"]));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let seen = old.seen();
        let a_queries: Vec<bool> = seen
            .iter()
            .filter(|q| q.qtype == T_A)
            .map(|q| q.edns)
            .collect();
        assert_eq!(a_queries, [true, false]);
        // Every server failing: SERVFAIL after attempts rounds.
        let mut r = Resolver::new(conf(&[failing.addr]), Hosts::default());
        assert_eq!(
            one(&mut r, "y.test", Lookup::Addrs),
            Err(DnsError::ServFail)
        );
        let y = failing.seen().iter().filter(|q| q.name == "y.test").count();
        assert_eq!(y, 4, "A and AAAA, two attempts each");
    }

    #[test]
    fn truncated_answers_are_asked_again_over_tcp() {
        let fake = Fake::start(|q| {
            let an: Vec<Rec> = (0..3)
                .map(|i| ("big.test", T_A, 60, vec![10, 0, 1, i]))
                .collect();
            match (q.tcp, q.qtype) {
                (false, T_A) => vec![reply(q, 0x0200, &an[..1], &[])],
                (true, T_A) => vec![reply(q, 0, &an, &[])],
                _ => vec![reply(q, 0, &[], &[])],
            }
        });
        let mut r = Resolver::new(conf(&[fake.addr]), Hosts::default());
        let got = one(&mut r, "big.test", Lookup::Addrs).unwrap();
        assert_eq!(got.addrs, ips(&["10.0.1.0", "10.0.1.1", "10.0.1.2"]));
        let tcp: Vec<_> = fake.seen().into_iter().filter(|q| q.tcp).collect();
        assert_eq!(tcp.len(), 1);
        assert!(!tcp[0].edns, "no OPT over TCP");
    }

    #[test]
    fn search_list_and_ndots_as_glibc() {
        let fake = Fake::start(|q| match (q.name.as_str(), q.qtype) {
            ("web.b.test" | "x.y", T_A) => {
                let owner: &'static str = Box::leak(q.name.clone().into_boxed_str());
                vec![reply(q, 0, &[(owner, T_A, 60, a("10.0.0.4"))], &[])]
            }
            ("web.b.test" | "x.y" | "nd.a.test", _) => vec![reply(q, 0, &[], &[])],
            _ => vec![reply(q, 3, &[], &[])],
        });
        let mut c = conf(&[fake.addr]);
        c.search = vec!["a.test".into(), "b.test".into()];
        let mut r = Resolver::new(c.clone(), Hosts::default());
        let names = |fake: &Fake| {
            let mut v: Vec<String> = fake
                .seen()
                .iter()
                .filter(|q| q.qtype == T_A)
                .map(|q| q.name.clone())
                .collect();
            v.dedup();
            fake.seen.lock().unwrap().clear();
            v
        };
        // Fewer dots than ndots: the search domains first.
        assert!(one(&mut r, "web", Lookup::Addrs).is_ok());
        assert_eq!(names(&fake), ["web.a.test", "web.b.test"]);
        // As many: as it is first; NXDOMAIN everywhere is NXDOMAIN.
        assert!(one(&mut r, "x.y", Lookup::Addrs).is_ok());
        assert_eq!(names(&fake), ["x.y"]);
        let nx = one(&mut r, "no.where", Lookup::Addrs);
        assert_eq!(nx, Err(DnsError::NxDomain { ttl_ms: 30_000 }));
        assert_eq!(
            names(&fake),
            ["no.where", "no.where.a.test", "no.where.b.test"]
        );
        // A trailing dot: only the name itself.
        assert!(one(&mut r, "web.", Lookup::Addrs).is_err());
        assert_eq!(names(&fake), ["web"]);
        // NODATA for one candidate wins over NXDOMAIN for the others
        // (glibc's got_nodata): the name exists, without an address.
        let nd = one(&mut r, "nd", Lookup::Addrs);
        assert_eq!(nd, Err(DnsError::NoData { ttl_ms: 30_000 }));
        assert_eq!(names(&fake), ["nd.a.test", "nd.b.test", "nd"]);
        // ndots 3: "x.y" goes through the search list first.
        c.ndots = 3;
        let mut r = Resolver::new(c, Hosts::default());
        assert!(one(&mut r, "x.y", Lookup::Addrs).is_ok());
        assert_eq!(names(&fake), ["x.y.a.test", "x.y.b.test", "x.y"]);
    }

    #[test]
    fn literals_hosts_and_bad_names_need_no_server() {
        // A server that would refuse: none of these may reach it.
        let fake = Fake::start(|q| vec![reply(q, 5, &[], &[])]);
        let hosts = Hosts::parse("10.0.0.5 web.internal web\nfd00::5 web.internal\n");
        let mut r = Resolver::new(conf(&[fake.addr]), hosts);
        let now = sys::now_ms();
        let t1 = r.lookup("WEB.internal", Lookup::Addrs, now);
        let t2 = r.lookup("192.0.2.1", Lookup::Addrs, now);
        let t3 = r.lookup("::1", Lookup::Addrs, now);
        let t4 = r.lookup("bad..name", Lookup::Addrs, now);
        let t5 = r.lookup(&"a".repeat(300), Lookup::Srv, now);
        assert_eq!(r.next_deadline(), Some(now), "answers are due at once");
        let got = r.drive(now);
        assert_eq!(got.len(), 5);
        let by = |t| got.iter().find(|(x, _)| *x == t).unwrap().1.clone();
        let web = by(t1).unwrap();
        assert_eq!(
            (web.addrs, web.from_hosts, web.ttl_ms),
            (ips(&["10.0.0.5", "fd00::5"]), true, HOSTS_TTL_MS)
        );
        assert_eq!(by(t2).unwrap().addrs, ips(&["192.0.2.1"]));
        assert_eq!(by(t3).unwrap().addrs, ips(&["::1"]));
        assert!(matches!(by(t4), Err(DnsError::BadName(_))));
        assert!(matches!(by(t5), Err(DnsError::BadName(_))));
        assert_eq!(r.next_deadline(), None);
        assert!(fake.seen().is_empty());
        // Refused from the only server.
        assert_eq!(one(&mut r, "other", Lookup::Addrs), Err(DnsError::Refused));
    }

    #[test]
    fn srv_targets_from_additional_hosts_and_followups() {
        let fake = Fake::start(|q| {
            let (an, ar): (Vec<Rec>, Vec<Rec>) = match (q.name.as_str(), q.qtype) {
                ("_h._tcp.test", T_SRV) => (
                    vec![
                        ("_h._tcp.test", T_SRV, 600, srv(20, 0, 9000, "backup.test")),
                        ("_h._tcp.test", T_SRV, 600, srv(10, 70, 8080, "a.test")),
                        ("_h._tcp.test", T_SRV, 600, srv(10, 30, 8081, "b.test")),
                        ("_h._tcp.test", T_SRV, 600, srv(10, 30, 8082, "local.test")),
                        ("_h._tcp.test", T_SRV, 600, srv(30, 0, 1, "gone.test")),
                    ],
                    vec![("a.test", T_A, 500, a("10.0.0.10"))],
                ),
                ("b.test", T_AAAA) => (vec![("b.test", T_AAAA, 400, a("fd00::11"))], vec![]),
                ("backup.test", T_A) => (vec![("backup.test", T_A, 300, a("10.0.0.12"))], vec![]),
                ("gone.test", _) => return vec![reply(q, 3, &[], &[])],
                _ => (vec![], vec![]),
            };
            vec![reply(q, 0, &an, &ar)]
        });
        let hosts = Hosts::parse("10.0.0.13 local.test\n");
        let mut r = Resolver::new(conf(&[fake.addr]), hosts);
        let got = one(&mut r, "_h._tcp.test", Lookup::Srv).unwrap();
        let srv: Vec<_> = got
            .srv
            .iter()
            .map(|s| (s.priority, s.port, s.target.as_str(), s.addrs.clone()))
            .collect();
        assert_eq!(
            srv,
            [
                (10, 8080, "a.test", ips(&["10.0.0.10"])),
                (10, 8081, "b.test", ips(&["fd00::11"])),
                (10, 8082, "local.test", ips(&["10.0.0.13"])),
                (20, 9000, "backup.test", ips(&["10.0.0.12"])),
                (30, 1, "gone.test", vec![]),
            ]
        );
        assert_eq!(got.addrs, ips(&["10.0.0.10", "fd00::11", "10.0.0.13"]));
        // gone.test's NXDOMAIN (30 s) is the shortest.
        assert_eq!(got.ttl_ms, 30_000);
        let asked: Vec<_> = fake.seen().iter().map(|q| q.name.clone()).collect();
        assert!(
            !asked.iter().any(|n| n == "a.test" || n == "local.test"),
            "{asked:?}"
        );
    }

    #[test]
    fn silence_times_out_after_every_server_and_attempt() {
        let quiet1 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let quiet2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c = conf(&[quiet1.local_addr().unwrap(), quiet2.local_addr().unwrap()]);
        c.timeout_ms = 150;
        let mut r = Resolver::new(c, Hosts::default());
        let start = Instant::now();
        assert_eq!(one(&mut r, "x.test", Lookup::Addrs), Err(DnsError::Timeout));
        let took = start.elapsed();
        // 2 servers × 2 attempts × 150 ms.
        // Deadlines are kept in whole milliseconds: up to 1 ms early a try.
        assert!(
            took >= Duration::from_millis(590) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        // Nothing listening: refused at once, not a timeout.
        let port = quiet1.local_addr().unwrap();
        drop(quiet1);
        let mut c = conf(&[port]);
        c.timeout_ms = 5000;
        let mut r = Resolver::new(c, Hosts::default());
        let start = Instant::now();
        let e = one(&mut r, "x.test", Lookup::Addrs);
        assert_eq!(e, Err(DnsError::Io(io::ErrorKind::ConnectionRefused)));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn many_lookups_stay_within_the_bounds() {
        let fake = Fake::start(|q| {
            let owner: &'static str = Box::leak(q.name.clone().into_boxed_str());
            let an: Vec<Rec> = match q.qtype {
                T_A => vec![(owner, T_A, 60, a("10.0.0.20"))],
                _ => vec![],
            };
            vec![reply(q, 0, &an, &[])]
        });
        let mut r = Resolver::new(conf(&[fake.addr]), Hosts::default());
        let now = sys::now_ms();
        let tokens: Vec<Token> = (0..150)
            .map(|i| r.lookup(&format!("n{i}.test"), Lookup::Addrs, now))
            .collect();
        let got = run(&mut r, &tokens, Duration::from_secs(20));
        assert!(got
            .iter()
            .all(|g| g.as_ref().is_ok_and(|r| r.addrs == ips(&["10.0.0.20"]))));
        assert_eq!(fake.seen().len(), 300);
        // Past MAX_LOOKUPS pending: Busy, at once.
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut r = Resolver::new(conf(&[quiet.local_addr().unwrap()]), Hosts::default());
        for i in 0..MAX_LOOKUPS {
            r.lookup(&format!("n{i}.test"), Lookup::Addrs, now);
        }
        let t = r.lookup("one.more", Lookup::Addrs, now);
        let got = r.drive(now);
        assert_eq!(got, [(t, Err(DnsError::Busy))]);
        let mut fds = Vec::new();
        r.poll_fds(&mut fds);
        assert_eq!(fds.len(), MAX_IN_FLIGHT);
    }
}
