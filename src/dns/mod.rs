//! An asynchronous DNS resolver for backends named by DNS (issue 16).
//!
//! Why a resolver of our own: the C library's `getaddrinfo` blocks, and a
//! supervisor blocked on a slow name server handles no signal and reaps no
//! child meanwhile. This one never blocks: it runs on the project's own
//! non-blocking sockets and is driven from the caller's loop
//! ([`Resolver::poll_fds`], [`Resolver::drive`], [`Resolver::next_deadline`]).
//! It does what the C library would for the names a load balancer meets:
//! `/etc/hosts` first, then the name servers of `/etc/resolv.conf` with its
//! search list, `ndots`, `timeout` and `attempts`, A and AAAA together, SRV,
//! CNAME chains, UDP with EDNS0 and TCP when an answer is truncated.
//!
//! What it must never do: trust an answer it did not ask for. Every answer
//! is read as untrusted input by [`message::parse_response`] (the id, the
//! question, name compression bounded, only records about the name asked or
//! its CNAME chain), arrives on a connected socket with a random source
//! port and a random id, and is never allowed to panic the caller or make it
//! allocate without bound.
//!
//! - [`message`]: the wire format (queries out, answers checked and read).
//! - [`conf`]: `/etc/resolv.conf` and `/etc/hosts`.
//! - [`resolver`]: the state machine over sockets and time.
#![forbid(unsafe_code)]

pub mod conf;
pub mod message;
pub mod resolver;

pub use conf::{Hosts, ResolvConf};
pub use message::{encode_query, parse_response, QType, Response, SrvTarget};
pub use resolver::{Lookup, Resolved, Resolver, Token};

use std::fmt;
use std::io;

/// Why a lookup, a query or the reading of an answer failed.
///
/// A resolver caller sees `NxDomain`, `NoData`, `ServFail`, `Refused`,
/// `Rcode`, `Timeout`, `Malformed`, `CnameChain`, `BadName`, `Io` and
/// `Busy`; `Mismatch` only comes from [`parse_response`] (an answer to
/// some other question: the resolver ignores it and keeps waiting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name does not exist (RCODE 3). `ttl_ms`: how long that answer
    /// may be believed (the zone's SOA minimum, RFC 2308, or a default).
    NxDomain { ttl_ms: u64 },
    /// The name exists but has no record of the type asked (NODATA).
    NoData { ttl_ms: u64 },
    /// The server could not answer (RCODE 2): try again later.
    ServFail,
    /// The server will not answer this client (RCODE 5).
    Refused,
    /// Any other response code (FORMERR, NOTIMP, an extended one, ...).
    Rcode(u16),
    /// No server answered within `timeout` × `attempts`.
    Timeout,
    /// An answer broke the format (what is wrong, in words).
    Malformed(&'static str),
    /// An answer to another question (id, QR, opcode or question differ).
    Mismatch(&'static str),
    /// A name that cannot be asked (empty label, longer than 255, ...).
    BadName(&'static str),
    /// More than [`message::MAX_CNAMES`] aliases, or a loop of them.
    CnameChain,
    /// A local socket failure (out of descriptors, connection refused, ...).
    Io(io::ErrorKind),
    /// Too many lookups pending ([`resolver::MAX_LOOKUPS`]).
    Busy,
}

impl DnsError {
    /// How long a negative answer may be believed, if this is one.
    pub fn negative_ttl_ms(&self) -> Option<u64> {
        match self {
            DnsError::NxDomain { ttl_ms } | DnsError::NoData { ttl_ms } => Some(*ttl_ms),
            _ => None,
        }
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NxDomain { ttl_ms } => {
                write!(f, "no such name (NXDOMAIN, for {} s)", ttl_ms / 1000)
            }
            DnsError::NoData { ttl_ms } => {
                write!(
                    f,
                    "no address of that kind (NODATA, for {} s)",
                    ttl_ms / 1000
                )
            }
            DnsError::ServFail => f.write_str("the name server failed (SERVFAIL)"),
            DnsError::Refused => f.write_str("the name server refused (REFUSED)"),
            DnsError::Rcode(n) => write!(f, "the name server answered with error code {n}"),
            DnsError::Timeout => f.write_str("no name server answered in time"),
            DnsError::Malformed(why) => write!(f, "malformed DNS answer: {why}"),
            DnsError::Mismatch(why) => write!(f, "DNS answer to another question: {why}"),
            DnsError::BadName(why) => write!(f, "not a valid DNS name: {why}"),
            DnsError::CnameChain => f.write_str("CNAME chain too long or looping"),
            DnsError::Io(kind) => write!(f, "name server unreachable: {}", io::Error::from(*kind)),
            DnsError::Busy => f.write_str("too many DNS lookups pending"),
        }
    }
}

impl std::error::Error for DnsError {}
