//! DNS messages (RFC 1035 section 4; EDNS0, RFC 6891): the query the
//! resolver sends, and the checks an answer passes before anything in it is
//! used.
//!
//! An answer is untrusted input: whoever can send a datagram to the
//! resolver's port can try to pass one off as the answer, and a forged
//! answer would steer traffic to the forger's backends. So an answer is read
//! only if it answers exactly the question asked (id, QR, opcode, the
//! question section), and of its records only those owned by the name asked,
//! or by a name the CNAME chain from it leads to, are used (plus, for SRV,
//! the addresses of the SRV targets in the additional section): whatever
//! else a server adds about other names is ignored (RFC 2181 section 5.4.1's
//! "data ranking": a resolver must not take in records it did not ask for).
//!
//! The parser never panics and allocates only within fixed bounds
//! ([`MAX_ADDRS`], [`MAX_SRV`], a name's 255 bytes on the stack), whatever
//! the bytes; names with compression pointers are followed only backwards and
//! at most [`MAX_JUMPS`] times, so no message makes it loop.
#![forbid(unsafe_code)]

use super::DnsError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// CNAMEs followed from the question name, in one answer and (by the
/// resolver) across queries: glibc and BIND stop at a similar depth.
pub const MAX_CNAMES: usize = 8;
/// Addresses kept from one answer (over every target, for SRV); the rest are
/// dropped. A load balancer has at most 64 backends, so this is far above
/// any use and still bounds what a 64 KiB answer can make us allocate.
pub const MAX_ADDRS: usize = 256;
/// SRV records kept from one answer.
pub const MAX_SRV: usize = 64;
/// Compression pointers followed in one name. Real names need two or three;
/// the bound (with pointers that must go backwards) stops any loop.
pub const MAX_JUMPS: usize = 32;
/// Longest a TTL is believed (one day): a backend's address is looked at
/// again at least daily, whatever a zone says (RFC 8767 caps at 7 days).
pub const MAX_TTL_MS: u64 = 86_400 * 1000;
/// Longest a negative answer is believed (RFC 2308 section 5: one to three
/// hours).
pub const MAX_NEGATIVE_TTL_MS: u64 = 3 * 3600 * 1000;
/// How long a negative answer without an SOA record is believed
/// (dnsmasq's local names come without one).
pub const DEFAULT_NEGATIVE_TTL_MS: u64 = 30 * 1000;
/// The UDP payload size the resolver advertises (the DNS flag day 2020
/// value: no IP fragmentation on any common path).
pub const EDNS_UDP_SIZE: u16 = 1232;

const HEADER_LEN: usize = 12;
/// The longest name in wire form without its final zero byte (255 with it).
const NAME_MAX: usize = 254;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

const RCODE_NOERROR: u16 = 0;
const RCODE_FORMERR: u16 = 1;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_REFUSED: u16 = 5;

/// The record types the resolver asks for (CNAME is followed internally).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    A,
    Aaaa,
    Srv,
}

impl QType {
    /// The type's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            QType::A => TYPE_A,
            QType::Aaaa => TYPE_AAAA,
            QType::Srv => TYPE_SRV,
        }
    }
}

/// One SRV record (RFC 2782) and the addresses known for its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, lowercase, without a trailing dot.
    pub target: String,
    /// Its addresses: from the answer's additional section (as parsed), or
    /// from follow-up lookups (as the resolver returns it).
    pub addrs: Vec<IpAddr>,
}

/// What a checked answer says about the question.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// TC was set: the answer did not fit, ask again over TCP. Nothing else
    /// of a truncated answer is read.
    pub truncated: bool,
    /// A or AAAA addresses of the name (or of its CNAME chain), in the order
    /// sent, of the type asked only.
    pub addrs: Vec<IpAddr>,
    /// SRV records of the name, with target "." ("no such service") left out.
    pub srv: Vec<SrvTarget>,
    /// The end of the CNAME chain when it ends without a record of the type
    /// asked and without a negative answer for it: the name to ask next.
    pub cname: Option<String>,
    /// How long this may be believed: the smallest TTL among the records
    /// used (CNAMEs included); for NODATA, the negative TTL.
    pub ttl_ms: u64,
}

// ------------------------------------------------------------------ names ---

/// A name in uncompressed wire form, lowercased, without the root's final
/// zero byte (so "." is empty). Fixed size: reading one never allocates.
#[derive(Clone, Copy)]
pub(crate) struct Name {
    len: u8,
    wire: [u8; NAME_MAX],
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.bytes() == other.bytes()
    }
}

/// Bytes a name may have in text form: printable ASCII but the label
/// separator and the escape character (so a name read from an answer and
/// written out as text reads back as the same name).
fn text_byte_ok(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'.' && b != b'\\'
}

impl Name {
    fn root() -> Name {
        Name {
            len: 0,
            wire: [0; NAME_MAX],
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.wire[..self.len as usize]
    }

    fn is_root(&self) -> bool {
        self.len == 0
    }

    /// Appends a label (lowercased); fails past 63 bytes or a 255-byte name.
    fn push_label(&mut self, label: &[u8]) -> Result<(), &'static str> {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("label longer than 63 bytes");
        }
        let at = self.len as usize;
        if at + 1 + label.len() > NAME_MAX {
            return Err("name longer than 255 bytes");
        }
        self.wire[at] = label.len() as u8;
        for (d, s) in self.wire[at + 1..at + 1 + label.len()]
            .iter_mut()
            .zip(label)
        {
            *d = s.to_ascii_lowercase();
        }
        self.len = (at + 1 + label.len()) as u8;
        Ok(())
    }

    /// A name from text (`www.example.com`, one trailing dot allowed).
    pub(crate) fn from_text(text: &str) -> Result<Name, DnsError> {
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Err(DnsError::BadName("empty name"));
        }
        let mut name = Name::root();
        for label in text.split('.') {
            if !label.bytes().all(text_byte_ok) {
                return Err(DnsError::BadName(
                    "a name has printable ASCII only, no space or backslash",
                ));
            }
            name.push_label(label.as_bytes())
                .map_err(DnsError::BadName)?;
        }
        Ok(name)
    }

    /// The name as text without a trailing dot, or `None` for the root and
    /// if a label has a byte a host name cannot carry in text (see
    /// [`text_byte_ok`]): what this returns can be asked.
    pub(crate) fn text(&self) -> Option<String> {
        let b = self.bytes();
        if b.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let n = b[i] as usize;
            let label = b.get(i + 1..i + 1 + n)?;
            if !label.iter().all(|&c| text_byte_ok(c)) {
                return None;
            }
            if i > 0 {
                out.push('.');
            }
            out.extend(label.iter().map(|&c| c as char));
            i += 1 + n;
        }
        Some(out)
    }

    /// True if `zone` is this name or one of its ancestors (label-wise).
    fn is_in(&self, zone: &Name) -> bool {
        let (b, z) = (self.bytes(), zone.bytes());
        let mut i = 0;
        loop {
            if b[i..] == *z {
                return true;
            }
            if i >= b.len() {
                return false;
            }
            i += 1 + b[i] as usize;
            if i > b.len() {
                return false;
            }
        }
    }
}

/// Reads the possibly compressed name at `pos`. Returns it and the offset
/// just after it where it sits (after its first pointer, if it has one).
///
/// A pointer must go strictly before the start of the stretch of labels it
/// ends (every honest encoder points at a name written earlier), and must
/// not point into the header: each jump then lands lower than the last, so
/// reading always ends; [`MAX_JUMPS`] bounds the work besides.
fn read_name(buf: &[u8], pos: usize) -> Result<(Name, usize), DnsError> {
    let mut name = Name::root();
    let mut at = pos;
    let mut stretch = pos;
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *buf
            .get(at)
            .ok_or(DnsError::Malformed("name runs past the end"))? as usize;
        match len & 0xC0 {
            0x00 if len == 0 => return Ok((name, after.unwrap_or(at + 1))),
            0x00 => {
                let label = buf
                    .get(at + 1..at + 1 + len)
                    .ok_or(DnsError::Malformed("label runs past the end"))?;
                name.push_label(label).map_err(DnsError::Malformed)?;
                at += 1 + len;
            }
            0xC0 => {
                let lo = *buf
                    .get(at + 1)
                    .ok_or(DnsError::Malformed("pointer runs past the end"))?;
                let target = (len & 0x3F) << 8 | lo as usize;
                if target >= stretch || target < HEADER_LEN {
                    return Err(DnsError::Malformed("compression pointer not backwards"));
                }
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return Err(DnsError::Malformed("too many compression pointers"));
                }
                after.get_or_insert(at + 2);
                stretch = target;
                at = target;
            }
            _ => return Err(DnsError::Malformed("unknown label type")),
        }
    }
}

// ----------------------------------------------------------------- query ---

/// A query for `name` (one trailing dot allowed) of type `qtype`, with RD
/// set (the server is a recursive resolver) and, when `edns_udp_size` is
/// given, an EDNS0 OPT record advertising that UDP payload size (at least
/// 512). The name is sent lowercased.
pub fn encode_query(
    id: u16,
    name: &str,
    qtype: QType,
    edns_udp_size: Option<u16>,
) -> Result<Vec<u8>, DnsError> {
    let name = Name::from_text(name)?;
    let mut out = Vec::with_capacity(HEADER_LEN + name.bytes().len() + 1 + 4 + 11);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // QR=0, opcode QUERY, RD
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&[0, 0, 0, 0]); // ANCOUNT, NSCOUNT
    out.extend_from_slice(&u16::from(edns_udp_size.is_some()).to_be_bytes());
    out.extend_from_slice(name.bytes());
    out.push(0);
    out.extend_from_slice(&qtype.code().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    if let Some(size) = edns_udp_size {
        out.push(0); // owner: the root
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&size.max(512).to_be_bytes()); // CLASS: payload size
        out.extend_from_slice(&[0, 0, 0, 0]); // extended RCODE, version 0, no DO
        out.extend_from_slice(&[0, 0]); // RDLENGTH
    }
    Ok(out)
}

// ---------------------------------------------------------------- answer ---

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// A TTL in milliseconds: RFC 2181 section 8 reads a TTL with the top bit
/// set as 0; at most [`MAX_TTL_MS`].
fn ttl_ms(ttl: u32) -> u64 {
    if ttl & 0x8000_0000 != 0 {
        0
    } else {
        (u64::from(ttl) * 1000).min(MAX_TTL_MS)
    }
}

/// One resource record: its owner and where its data is.
struct Rr {
    name: Name,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: usize,
    rdlen: usize,
}

impl Rr {
    /// The rdata's bytes (in the buffer: checked when the record was read).
    fn data<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.rdata..self.rdata + self.rdlen).unwrap_or(&[])
    }

    /// A name that must fill the rdata from `off` to its end.
    fn name_at_end(&self, buf: &[u8], off: usize) -> Result<Name, DnsError> {
        let (name, end) = read_name(buf, self.rdata + off)?;
        if end != self.rdata + self.rdlen {
            return Err(DnsError::Malformed("name does not fill the record"));
        }
        Ok(name)
    }
}

fn read_rr(buf: &[u8], pos: usize) -> Result<(Rr, usize), DnsError> {
    let (name, at) = read_name(buf, pos)?;
    let short = DnsError::Malformed("record runs past the end");
    let rtype = u16_at(buf, at).ok_or(short.clone())?;
    let class = u16_at(buf, at + 2).ok_or(short.clone())?;
    let ttl = u32_at(buf, at + 4).ok_or(short.clone())?;
    let rdlen = u16_at(buf, at + 8).ok_or(short.clone())? as usize;
    let rdata = at + 10;
    if rdata + rdlen > buf.len() {
        return Err(short);
    }
    let rr = Rr {
        name,
        rtype,
        class,
        ttl,
        rdata,
        rdlen,
    };
    Ok((rr, rdata + rdlen))
}

/// The records of one section, read one by one (an error ends it).
struct Section<'a> {
    buf: &'a [u8],
    pos: usize,
    left: u16,
}

impl Iterator for Section<'_> {
    type Item = Result<Rr, DnsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match read_rr(self.buf, self.pos) {
            Ok((rr, next)) => {
                self.pos = next;
                Some(Ok(rr))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

/// Checks `buf` as the answer to query `id` for `qname` of type `qtype`,
/// and reads what it says.
///
/// Errors: [`DnsError::Mismatch`] for an answer to another question (wrong
/// id, not a response, another opcode, another question),
/// [`DnsError::Malformed`] for broken bytes, and the answer's own verdicts:
/// [`DnsError::NxDomain`] (with its negative TTL), [`DnsError::ServFail`],
/// [`DnsError::Refused`], [`DnsError::Rcode`]; [`DnsError::CnameChain`] past
/// [`MAX_CNAMES`] aliases or on a loop. NODATA is `Ok` with nothing in it
/// and the negative TTL. A truncated answer is `Ok` with `truncated` set
/// once its header and question check out. Bytes after the last record are
/// ignored.
pub fn parse_response(
    buf: &[u8],
    id: u16,
    qname: &str,
    qtype: QType,
) -> Result<Response, DnsError> {
    let asked = Name::from_text(qname)?;
    if buf.len() < HEADER_LEN {
        return Err(DnsError::Malformed("shorter than a header"));
    }
    let head = |i: usize| u16::from_be_bytes([buf[2 * i], buf[2 * i + 1]]);
    let flags = head(1);
    if head(0) != id {
        return Err(DnsError::Mismatch("another id"));
    }
    if flags & 0x8000 == 0 {
        return Err(DnsError::Mismatch("not a response"));
    }
    if (flags >> 11) & 0xF != 0 {
        return Err(DnsError::Mismatch("not a standard query"));
    }
    let mut rcode = flags & 0xF;
    let (qdcount, ancount, nscount, arcount) = (head(2), head(3), head(4), head(5));
    if qdcount == 0 && rcode == RCODE_FORMERR {
        // A server that cannot read the query may not echo it (BIND does
        // not): the id is all there is to check.
        return Err(DnsError::Rcode(RCODE_FORMERR));
    }
    if qdcount != 1 {
        return Err(DnsError::Mismatch("not one question"));
    }
    let (name, at) = read_name(buf, HEADER_LEN)?;
    let (Some(t), Some(c)) = (u16_at(buf, at), u16_at(buf, at + 2)) else {
        return Err(DnsError::Malformed("question runs past the end"));
    };
    if name != asked || t != qtype.code() || c != CLASS_IN {
        return Err(DnsError::Mismatch("another question"));
    }
    if flags & 0x0200 != 0 {
        return Ok(Response {
            truncated: true,
            ..Response::default()
        });
    }

    // Walk every record once: the counts must match the bytes, and the
    // sections' offsets are known from then on.
    let an = at + 4;
    let mut pos = an;
    let mut starts = [an; 3];
    let mut opt_seen = false;
    for (s, count) in [ancount, nscount, arcount].into_iter().enumerate() {
        starts[s] = pos;
        for _ in 0..count {
            let (rr, next) = read_rr(buf, pos)?;
            if rr.rtype == TYPE_OPT {
                if s != 2 || opt_seen || !rr.name.is_root() {
                    return Err(DnsError::Malformed("misplaced OPT record"));
                }
                opt_seen = true;
                // The upper 8 bits of a 12-bit RCODE (RFC 6891 section 6.1.3).
                rcode |= ((rr.ttl >> 24) as u16) << 4;
            }
            pos = next;
        }
    }
    let section = |s: usize, left: u16| Section {
        buf,
        pos: starts[s],
        left,
    };
    match rcode {
        RCODE_NOERROR | RCODE_NXDOMAIN => {}
        RCODE_SERVFAIL => return Err(DnsError::ServFail),
        RCODE_REFUSED => return Err(DnsError::Refused),
        n => return Err(DnsError::Rcode(n)),
    }

    // The CNAME chain from the question name, inside the answer section.
    let mut chain = [Name::root(); MAX_CNAMES + 1];
    chain[0] = asked;
    let mut links = 0;
    let mut ttl = MAX_TTL_MS;
    loop {
        let mut next = None;
        for rr in section(0, ancount) {
            let rr = rr?;
            if rr.rtype == TYPE_CNAME && rr.class == CLASS_IN && rr.name == chain[links] {
                next = Some((rr.name_at_end(buf, 0)?, rr.ttl));
                break;
            }
        }
        let Some((target, t)) = next else { break };
        // The root has no address: an alias of it is no answer (and "" no
        // name to ask next).
        if target.is_root() {
            return Err(DnsError::Malformed("CNAME to the root"));
        }
        if chain[..=links].contains(&target) {
            return Err(DnsError::CnameChain);
        }
        if links == MAX_CNAMES {
            return Err(DnsError::CnameChain);
        }
        links += 1;
        chain[links] = target;
        ttl = ttl.min(ttl_ms(t));
    }
    let chain = &chain[..=links];
    let end = &chain[links];

    let mut out = Response::default();
    let mut targets: Vec<Name> = Vec::new();
    let mut used = MAX_TTL_MS;
    for rr in section(0, ancount) {
        let rr = rr?;
        if rr.class != CLASS_IN || rr.rtype != qtype.code() || !chain.contains(&rr.name) {
            continue;
        }
        let data = rr.data(buf);
        match qtype {
            QType::A | QType::Aaaa => {
                let ip = match (qtype, data.len()) {
                    (QType::A, 4) => IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
                    (QType::Aaaa, 16) => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(data);
                        IpAddr::V6(Ipv6Addr::from(o))
                    }
                    _ => return Err(DnsError::Malformed("address of the wrong length")),
                };
                if out.addrs.len() < MAX_ADDRS {
                    out.addrs.push(ip);
                    used = used.min(ttl_ms(rr.ttl));
                }
            }
            QType::Srv => {
                if data.len() < 7 {
                    return Err(DnsError::Malformed("SRV record too short"));
                }
                let target = rr.name_at_end(buf, 6)?;
                let text = match target.text() {
                    // "." says the service is not offered there (RFC 2782).
                    _ if target.is_root() => continue,
                    Some(text) => text,
                    None => continue,
                };
                if out.srv.len() < MAX_SRV {
                    out.srv.push(SrvTarget {
                        priority: u16::from_be_bytes([data[0], data[1]]),
                        weight: u16::from_be_bytes([data[2], data[3]]),
                        port: u16::from_be_bytes([data[4], data[5]]),
                        target: text,
                        addrs: Vec::new(),
                    });
                    targets.push(target);
                    used = used.min(ttl_ms(rr.ttl));
                }
            }
        }
    }

    // SRV targets' addresses, from the additional section: only for names
    // an SRV record just named.
    if !targets.is_empty() {
        let mut kept = 0;
        for rr in section(2, arcount) {
            let rr = rr?;
            if rr.class != CLASS_IN
                || (rr.rtype != TYPE_A && rr.rtype != TYPE_AAAA)
                || !targets.contains(&rr.name)
            {
                continue;
            }
            let data = rr.data(buf);
            let ip = match (rr.rtype, data.len()) {
                (TYPE_A, 4) => IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
                (TYPE_AAAA, 16) => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(data);
                    IpAddr::V6(Ipv6Addr::from(o))
                }
                _ => return Err(DnsError::Malformed("address of the wrong length")),
            };
            let mut took = false;
            for (srv, name) in out.srv.iter_mut().zip(&targets) {
                if *name == rr.name && kept < MAX_ADDRS && !srv.addrs.contains(&ip) {
                    srv.addrs.push(ip);
                    kept += 1;
                    took = true;
                }
            }
            if took {
                used = used.min(ttl_ms(rr.ttl));
            }
        }
    }

    if rcode == RCODE_NOERROR && (!out.addrs.is_empty() || !out.srv.is_empty()) {
        out.ttl_ms = ttl.min(used);
        return Ok(out);
    }

    // Negative: the SOA of the zone holding the chain's end, if one came.
    let mut negative = None;
    for rr in section(1, nscount) {
        let rr = rr?;
        if rr.rtype == TYPE_SOA && rr.class == CLASS_IN && end.is_in(&rr.name) {
            let (_mname, after_m) = read_name(buf, rr.rdata)?;
            let (_rname, after_r) = read_name(buf, after_m)?;
            if after_r + 20 != rr.rdata + rr.rdlen {
                return Err(DnsError::Malformed("SOA record of the wrong length"));
            }
            let minimum = u32_at(buf, after_r + 16).unwrap_or(0);
            negative = Some(ttl_ms(rr.ttl.min(minimum)).min(MAX_NEGATIVE_TTL_MS));
            break;
        }
    }
    if rcode == RCODE_NXDOMAIN {
        let neg = negative.unwrap_or(DEFAULT_NEGATIVE_TTL_MS);
        return Err(DnsError::NxDomain {
            ttl_ms: ttl.min(neg),
        });
    }
    if links > 0 && negative.is_none() {
        // The server gave the alias but not what it leads to: ask for it.
        out.cname = Some(
            end.text()
                .ok_or(DnsError::Malformed("CNAME target is not a host name"))?,
        );
        out.ttl_ms = ttl;
        return Ok(out);
    }
    out.ttl_ms = ttl.min(negative.unwrap_or(DEFAULT_NEGATIVE_TTL_MS));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers captured from dnsmasq 2.90 (id 0x1234, `--local-ttl=300`;
    /// tests/dns_resolver.rs runs dnsmasq with the same records). Also the
    /// `dns` fuzz target's seeds.
    macro_rules! captured {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fuzz/seeds/dns/dnsmasq-", $name)).as_slice()
        };
    }
    const ID: u16 = 0x1234;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A name in uncompressed wire form, final zero included.
    fn wire(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in text.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// Builds a message by hand; counts follow what was added unless set.
    struct B {
        buf: Vec<u8>,
        counts: [u16; 4],
    }

    impl B {
        fn new(id: u16, flags: u16) -> B {
            let mut buf = Vec::new();
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(&flags.to_be_bytes());
            buf.extend_from_slice(&[0; 8]);
            B {
                buf,
                counts: [0; 4],
            }
        }
        /// A standard answer (QR, RD, RA) to `qname`/`qtype`.
        fn answer(qname: &str, qtype: u16) -> B {
            B::new(ID, 0x8180).question(qname, qtype)
        }
        fn question(mut self, qname: &str, qtype: u16) -> B {
            self.buf.extend(wire(qname));
            self.buf.extend_from_slice(&qtype.to_be_bytes());
            self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
            self.counts[0] += 1;
            self
        }
        /// A record in section 1 (answer), 2 (authority) or 3 (additional).
        fn rr(mut self, sec: usize, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> B {
            self.buf.extend_from_slice(owner);
            self.buf.extend_from_slice(&rtype.to_be_bytes());
            self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            self.buf
                .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(rdata);
            self.counts[sec] += 1;
            self
        }
        fn raw(mut self, bytes: &[u8]) -> B {
            self.buf.extend_from_slice(bytes);
            self
        }
        fn count(mut self, sec: usize, n: u16) -> B {
            self.counts[sec] = n;
            self
        }
        fn len(&self) -> usize {
            self.buf.len()
        }
        fn done(mut self) -> Vec<u8> {
            for (i, c) in self.counts.iter().enumerate() {
                self.buf[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
            }
            self.buf
        }
    }

    /// The question name, compressed.
    const Q: &[u8] = &[0xC0, 12];

    fn soa(ttl_min: u32) -> Vec<u8> {
        let mut r = wire("ns.example.test");
        r.extend(wire("hostmaster.example.test"));
        for v in [1u32, 3600, 600, 86400, ttl_min] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        r
    }

    fn srv_rdata(prio: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
        let mut r = Vec::new();
        for v in [prio, weight, port] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        r.extend(wire(target));
        r
    }

    #[test]
    fn query_bytes() {
        let q = encode_query(0xBEEF, "Www.Example.COM.", QType::Aaaa, Some(1232)).unwrap();
        let mut want = vec![0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        want.extend(wire("www.example.com"));
        want.extend_from_slice(&[0, 28, 0, 1]);
        want.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(q, want);
        let q = encode_query(1, "_http._tcp.svc", QType::Srv, None).unwrap();
        assert_eq!(&q[10..12], &[0, 0], "no OPT record");
        assert_eq!(&q[q.len() - 4..], &[0, 33, 0, 1]);
        // The advertised size is never below 512 (RFC 6891 section 6.2.5).
        let q = encode_query(1, "a", QType::A, Some(100)).unwrap();
        assert_eq!(&q[q.len() - 8..q.len() - 6], &512u16.to_be_bytes());
    }

    #[test]
    fn query_names_refused() {
        let long_label = "a".repeat(64);
        let ok_label = "a".repeat(63);
        let too_long = [ok_label.as_str(); 4].join("."); // 4 × 64 = 256 bytes
        let longest = format!("{}.{}", [ok_label.as_str(); 3].join("."), "a".repeat(61));
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a b",
            "a\\b",
            "é.com",
            &long_label,
            &too_long,
        ] {
            assert!(
                matches!(
                    encode_query(1, bad, QType::A, None),
                    Err(DnsError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        assert!(encode_query(1, &ok_label, QType::A, None).is_ok());
        let q = encode_query(1, &longest, QType::A, None).unwrap();
        assert_eq!(q.len(), 12 + 255 + 4, "a 255-byte name is the longest");
    }

    #[test]
    fn dnsmasq_two_addresses() {
        let r = parse_response(captured!("two_a"), ID, "TWO.Example.test.", QType::A).unwrap();
        assert_eq!(r.addrs, [v4("10.0.0.1"), v4("10.0.0.2")]);
        assert_eq!(
            (r.ttl_ms, r.truncated, r.cname.as_deref()),
            (300_000, false, None)
        );
        let r = parse_response(captured!("two_aaaa"), ID, "two.example.test", QType::Aaaa).unwrap();
        assert_eq!(r.addrs, [v4("fd00::1"), v4("fd00::2")]);
        let r = parse_response(captured!("two_a_noedns"), ID, "two.example.test", QType::A);
        assert_eq!(r.unwrap().addrs.len(), 2);
    }

    #[test]
    fn dnsmasq_srv_with_additional_addresses() {
        let r =
            parse_response(captured!("srv"), ID, "_http._tcp.example.test", QType::Srv).unwrap();
        let got: Vec<_> = r
            .srv
            .iter()
            .map(|s| {
                (
                    s.priority,
                    s.weight,
                    s.port,
                    s.target.as_str(),
                    s.addrs.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (20, 0, 8082, "c.example.test", vec![]),
                (
                    10,
                    40,
                    8081,
                    "b.example.test",
                    vec![v4("10.0.1.2"), v4("fd00::12")]
                ),
                (10, 60, 8080, "a.example.test", vec![v4("10.0.1.1")]),
            ]
        );
        assert!(r.addrs.is_empty());
        assert_eq!(r.ttl_ms, 300_000);
    }

    #[test]
    fn dnsmasq_cname_nxdomain_nodata_truncated() {
        let r = parse_response(captured!("alias_a"), ID, "alias.example.test", QType::A).unwrap();
        assert_eq!((r.addrs.len(), r.cname), (2, None));
        assert_eq!(
            parse_response(captured!("nx"), ID, "nx.example.test", QType::A),
            Err(DnsError::NxDomain {
                ttl_ms: DEFAULT_NEGATIVE_TTL_MS
            })
        );
        let r = parse_response(captured!("nodata"), ID, "a.example.test", QType::Aaaa).unwrap();
        assert_eq!(
            r,
            Response {
                ttl_ms: DEFAULT_NEGATIVE_TTL_MS,
                ..Response::default()
            }
        );
        let r = parse_response(captured!("big_udp"), ID, "big.example.test", QType::A).unwrap();
        assert!(r.truncated && r.addrs.is_empty());
        let r = parse_response(captured!("big_tcp"), ID, "big.example.test", QType::A).unwrap();
        assert_eq!((r.truncated, r.addrs.len()), (false, 100));
    }

    #[test]
    fn answers_to_other_questions_are_mismatches() {
        let two = captured!("two_a");
        let mismatch = |buf: &[u8], id, name, t| {
            matches!(parse_response(buf, id, name, t), Err(DnsError::Mismatch(_)))
        };
        assert!(mismatch(two, ID + 1, "two.example.test", QType::A));
        assert!(mismatch(two, ID, "two.example.tes", QType::A));
        assert!(mismatch(two, ID, "wo.example.test", QType::A));
        assert!(mismatch(two, ID, "two.example.test", QType::Aaaa));
        // The query itself (QR clear), another opcode, another class.
        let query = encode_query(ID, "two.example.test", QType::A, Some(1232)).unwrap();
        assert!(mismatch(&query, ID, "two.example.test", QType::A));
        let mut b = two.to_vec();
        b[2] |= 0x10; // opcode 2 (STATUS)
        assert!(mismatch(&b, ID, "two.example.test", QType::A));
        let mut b = two.to_vec();
        b[12 + 18 + 3] = 3; // class CH
        assert!(mismatch(&b, ID, "two.example.test", QType::A));
        // Two questions.
        let b = B::answer("two.example.test", 1).question("two.example.test", 1);
        assert!(mismatch(&b.done(), ID, "two.example.test", QType::A));
        // A truncated answer to another question is still a mismatch.
        assert!(mismatch(
            captured!("big_udp"),
            ID,
            "two.example.test",
            QType::A
        ));
    }

    #[test]
    fn records_outside_the_chain_are_ignored() {
        let m = B::answer("www.example.test", 1)
            .rr(1, &wire("evil.example.test"), TYPE_A, 300, &[6, 6, 6, 6])
            .rr(1, Q, TYPE_A, 300, &[10, 0, 0, 1])
            .rr(1, Q, TYPE_AAAA, 300, &[0; 16]) // another type
            .rr(1, &wire("other.test"), TYPE_CNAME, 300, &wire("evil.test"))
            .rr(2, &wire("www.example.test"), TYPE_A, 300, &[6, 6, 6, 7])
            .rr(3, &wire("www.example.test"), TYPE_A, 300, &[6, 6, 6, 8])
            .done();
        let r = parse_response(&m, ID, "www.example.test", QType::A).unwrap();
        assert_eq!(r.addrs, [v4("10.0.0.1")]);
        // Additional addresses only for names an SRV record named.
        let m = B::answer("_x._tcp.example.test", TYPE_SRV)
            .rr(1, Q, TYPE_SRV, 300, &srv_rdata(1, 1, 80, "t.example.test"))
            .rr(3, &wire("evil.example.test"), TYPE_A, 300, &[6, 6, 6, 6])
            .rr(3, &wire("T.EXAMPLE.TEST"), TYPE_A, 100, &[10, 0, 0, 2])
            .rr(3, &wire("t.example.test"), TYPE_A, 100, &[10, 0, 0, 2]) // repeated
            .done();
        let r = parse_response(&m, ID, "_x._tcp.example.test", QType::Srv).unwrap();
        assert_eq!(r.srv[0].addrs, [v4("10.0.0.2")]);
        assert_eq!(r.ttl_ms, 100_000, "the additional record's TTL counts");
    }

    #[test]
    fn cname_chains() {
        // www -> a -> b (A), records in any order, compressed targets.
        let b = B::answer("www.example.test", 1);
        let a_at = b.len() + 12; // where the first CNAME's rdata starts
        let m = b.rr(1, Q, TYPE_CNAME, 600, &wire("a.example.test")).rr(
            1,
            &wire("b.example.test"),
            TYPE_A,
            500,
            &[10, 0, 0, 9],
        );
        let m = m.rr(
            1,
            &[0xC0, a_at as u8],
            TYPE_CNAME,
            400,
            &wire("b.example.test"),
        );
        let r = parse_response(&m.done(), ID, "www.example.test", QType::A).unwrap();
        assert_eq!((r.addrs, r.ttl_ms), (vec![v4("10.0.0.9")], 400_000));

        // A chain ending in no record and no SOA: the end is to be asked.
        let m = B::answer("www.example.test", 1)
            .rr(1, Q, TYPE_CNAME, 60, &wire("Far.Away.test"))
            .done();
        let r = parse_response(&m, ID, "www.example.test", QType::A).unwrap();
        assert_eq!(
            (r.cname.as_deref(), r.ttl_ms),
            (Some("far.away.test"), 60_000)
        );
        // ... with the SOA of the end's zone: NODATA, not worth asking.
        let m = B::answer("www.example.test", 1)
            .rr(1, Q, TYPE_CNAME, 60, &wire("far.away.test"))
            .rr(2, &wire("away.test"), TYPE_SOA, 50, &soa(40))
            .done();
        let r = parse_response(&m, ID, "www.example.test", QType::A).unwrap();
        assert_eq!((r.cname, r.addrs.len(), r.ttl_ms), (None, 0, 40_000));

        // Eight links are followed, nine are too many; a loop is refused.
        let chain = |links: usize| {
            let mut b = B::answer("c0.test", 1);
            for i in 0..links {
                let target = format!("c{}.test", i + 1);
                b = b.rr(
                    1,
                    &wire(&format!("c{i}.test")),
                    TYPE_CNAME,
                    300,
                    &wire(&target),
                );
            }
            b.rr(
                1,
                &wire(&format!("c{links}.test")),
                TYPE_A,
                300,
                &[1, 2, 3, 4],
            )
            .done()
        };
        assert_eq!(
            parse_response(&chain(8), ID, "c0.test", QType::A)
                .unwrap()
                .addrs
                .len(),
            1
        );
        assert_eq!(
            parse_response(&chain(9), ID, "c0.test", QType::A),
            Err(DnsError::CnameChain)
        );
        let m = B::answer("a.test", 1)
            .rr(1, Q, TYPE_CNAME, 300, &wire("b.test"))
            .rr(1, &wire("b.test"), TYPE_CNAME, 300, &wire("a.test"))
            .done();
        assert_eq!(
            parse_response(&m, ID, "a.test", QType::A),
            Err(DnsError::CnameChain)
        );
        // An alias of the root (found by the fuzzer: it came out as the
        // name "" to ask next).
        let m = B::answer("www.test", 28)
            .rr(1, Q, TYPE_CNAME, 9, &[0])
            .done();
        assert_eq!(
            parse_response(&m, ID, "www.test", QType::Aaaa),
            Err(DnsError::Malformed("CNAME to the root"))
        );
    }

    #[test]
    fn negative_answers_and_their_ttl() {
        let nx = |soa_owner: &str, ttl: u32, min: u32| {
            let m = B::new(ID, 0x8183)
                .question("gone.example.test", 1)
                .rr(2, &wire(soa_owner), TYPE_SOA, ttl, &soa(min))
                .done();
            parse_response(&m, ID, "gone.example.test", QType::A)
        };
        assert_eq!(
            nx("example.test", 900, 60),
            Err(DnsError::NxDomain { ttl_ms: 60_000 })
        );
        assert_eq!(
            nx("example.test", 30, 60),
            Err(DnsError::NxDomain { ttl_ms: 30_000 })
        );
        assert_eq!(
            nx(".", 30, 60),
            Err(DnsError::NxDomain { ttl_ms: 30_000 }),
            "the root"
        );
        // An SOA of a zone the name is not in says nothing about it.
        let unrelated = nx("evil.test", 5, 5);
        assert_eq!(
            unrelated,
            Err(DnsError::NxDomain {
                ttl_ms: DEFAULT_NEGATIVE_TTL_MS
            })
        );
        let m = nx("xample.test", 5, 5);
        assert_eq!(
            m,
            Err(DnsError::NxDomain {
                ttl_ms: DEFAULT_NEGATIVE_TTL_MS
            })
        );
        // Capped at three hours.
        assert_eq!(
            nx("example.test", 1 << 30, 1 << 30),
            Err(DnsError::NxDomain {
                ttl_ms: MAX_NEGATIVE_TTL_MS
            })
        );
        // NODATA with an SOA.
        let m = B::answer("www.example.test", 28)
            .rr(2, &wire("example.test"), TYPE_SOA, 900, &soa(120))
            .done();
        let r = parse_response(&m, ID, "www.example.test", QType::Aaaa).unwrap();
        assert_eq!((r.addrs.len(), r.ttl_ms), (0, 120_000));
        // An SOA whose rdata is cut is malformed.
        let mut bad = soa(1);
        bad.pop();
        let m = B::new(ID, 0x8183)
            .question("gone.example.test", 1)
            .rr(2, &wire("example.test"), TYPE_SOA, 1, &bad)
            .done();
        assert!(matches!(
            parse_response(&m, ID, "gone.example.test", QType::A),
            Err(DnsError::Malformed(_))
        ));
    }

    #[test]
    fn response_codes() {
        let with_rcode = |rcode: u16| {
            let m = B::new(ID, 0x8180 | rcode).question("x.test", 1).done();
            parse_response(&m, ID, "x.test", QType::A)
        };
        assert_eq!(with_rcode(2), Err(DnsError::ServFail));
        assert_eq!(with_rcode(5), Err(DnsError::Refused));
        assert_eq!(with_rcode(4), Err(DnsError::Rcode(4)));
        assert_eq!(with_rcode(1), Err(DnsError::Rcode(1)));
        // FORMERR without the question (BIND's way).
        let m = B::new(ID, 0x8181).done();
        assert_eq!(
            parse_response(&m, ID, "x.test", QType::A),
            Err(DnsError::Rcode(1))
        );
        let m = B::new(ID, 0x8180).done();
        assert!(matches!(
            parse_response(&m, ID, "x.test", QType::A),
            Err(DnsError::Mismatch(_))
        ));
        // BADVERS (16): the OPT record's upper bits.
        let m = B::answer("x.test", 1)
            .rr(3, &[0], TYPE_OPT, 1 << 24, &[])
            .done();
        assert_eq!(
            parse_response(&m, ID, "x.test", QType::A),
            Err(DnsError::Rcode(16))
        );
        // Two OPT records, or one in the answer section, are malformed.
        for m in [
            B::answer("x.test", 1)
                .rr(3, &[0], TYPE_OPT, 0, &[])
                .rr(3, &[0], TYPE_OPT, 0, &[]),
            B::answer("x.test", 1).rr(1, &[0], TYPE_OPT, 0, &[]),
        ] {
            assert!(matches!(
                parse_response(&m.done(), ID, "x.test", QType::A),
                Err(DnsError::Malformed(_))
            ));
        }
    }

    #[test]
    fn compression_is_bounded() {
        let malformed = |m: &[u8]| {
            matches!(
                parse_response(m, ID, "x.test", QType::A),
                Err(DnsError::Malformed(_))
            )
        };
        let base = || B::answer("x.test", 1);
        let end = base().len(); // where the first record starts
                                // A pointer to itself, forward, into the header, to the middle of
                                // the stretch it ends.
        assert!(malformed(
            &base().raw(&[0xC0, end as u8]).count(1, 1).done()
        ));
        assert!(malformed(
            &base().raw(&[0xC0, end as u8 + 2, 0]).count(1, 1).done()
        ));
        assert!(malformed(&base().raw(&[0xC0, 2]).count(1, 1).done()));
        let m = base()
            .raw(&[1, b'a', 0xC0, end as u8 + 1])
            .count(1, 1)
            .done();
        assert!(malformed(&m));
        // The 0x40 and 0x80 label types.
        assert!(malformed(&base().raw(&[0x41, 0]).count(1, 1).done()));
        assert!(malformed(&base().raw(&[0x81, 0]).count(1, 1).done()));
        // A chain of pointers, each to the one before, in an unknown
        // record's rdata; a record owned by a pointer to the last one.
        // k pointers mean k + 1 jumps (the owner's own, then one each).
        for (jumps, ok) in [(32, true), (33, false)] {
            let b = base();
            let rdata = b.len() + 2 + 10; // after owner Q and the fixed fields
            let mut stretch = Vec::new();
            let mut prev = 12; // the question name
            for i in 0..jumps - 1 {
                stretch.extend_from_slice(&[0xC0 | (prev >> 8) as u8, prev as u8]);
                prev = rdata + 2 * i;
            }
            let owner = [0xC0 | (prev >> 8) as u8, prev as u8];
            let m = b
                .rr(1, Q, 99, 0, &stretch)
                .rr(1, &owner, TYPE_A, 9, &[10, 0, 0, 3])
                .done();
            let r = parse_response(&m, ID, "x.test", QType::A);
            match ok {
                true => assert_eq!(r.unwrap().addrs, [v4("10.0.0.3")]),
                false => assert_eq!(r, Err(DnsError::Malformed("too many compression pointers"))),
            }
        }
        // A name of 256 bytes made of pointers to 63-byte labels.
        let l63 = "a".repeat(63);
        let long = [l63.as_str(); 3].join(".");
        let b = B::answer(&long, 1);
        // owner: a 63-byte label then the 3 × 64 + 1 of the question name.
        let mut owner = vec![63];
        owner.extend_from_slice(l63.as_bytes());
        owner.extend_from_slice(Q);
        let m = b.rr(1, &owner, TYPE_A, 9, &[1, 1, 1, 1]).done();
        assert!(matches!(
            parse_response(&m, ID, &long, QType::A),
            Err(DnsError::Malformed("name longer than 255 bytes"))
        ));
    }

    #[test]
    fn broken_records() {
        let malformed = |m: Vec<u8>, t| {
            matches!(
                parse_response(&m, ID, "x.test", t),
                Err(DnsError::Malformed(_))
            )
        };
        assert!(malformed(
            B::answer("x.test", 1)
                .rr(1, Q, TYPE_A, 1, &[1, 2, 3])
                .done(),
            QType::A
        ));
        assert!(malformed(
            B::answer("x.test", 28)
                .rr(1, Q, TYPE_AAAA, 1, &[1; 4])
                .done(),
            QType::Aaaa
        ));
        assert!(malformed(
            B::answer("x.test", 33)
                .rr(1, Q, TYPE_SRV, 1, &[0; 6])
                .done(),
            QType::Srv
        ));
        // SRV target that does not fill the rdata.
        let mut rd = srv_rdata(1, 1, 1, "t.test");
        rd.push(0);
        assert!(malformed(
            B::answer("x.test", 33).rr(1, Q, TYPE_SRV, 1, &rd).done(),
            QType::Srv
        ));
        // More records counted than sent; a header alone; a cut question.
        assert!(malformed(
            B::answer("x.test", 1)
                .count(1, 2)
                .rr(1, Q, TYPE_A, 1, &[1; 4])
                .done(),
            QType::A
        ));
        assert!(malformed(
            B::new(ID, 0x8180).done()[..11].to_vec(),
            QType::A
        ));
        let mut m = B::answer("x.test", 1).done();
        m.pop();
        assert!(malformed(m, QType::A));
        // A broken record anywhere is malformed, even one not used.
        let m = B::answer("x.test", 1)
            .rr(1, Q, TYPE_A, 1, &[1; 4])
            .rr(3, &[0x3F], TYPE_A, 1, &[1; 4])
            .done();
        assert!(malformed(m, QType::A));
        // Bytes after the last record are ignored.
        let m = B::answer("x.test", 1)
            .rr(1, Q, TYPE_A, 1, &[1; 4])
            .raw(b"junk")
            .done();
        assert_eq!(
            parse_response(&m, ID, "x.test", QType::A)
                .unwrap()
                .addrs
                .len(),
            1
        );
    }

    #[test]
    fn ttls() {
        let ttl_of = |ttls: &[u32]| {
            let mut b = B::answer("x.test", 1);
            for (i, t) in ttls.iter().enumerate() {
                b = b.rr(1, Q, TYPE_A, *t, &[10, 0, 0, i as u8]);
            }
            parse_response(&b.done(), ID, "x.test", QType::A)
                .unwrap()
                .ttl_ms
        };
        assert_eq!(ttl_of(&[300, 60, 900]), 60_000);
        assert_eq!(
            ttl_of(&[0x8000_0000]),
            0,
            "RFC 2181: the top bit set reads as 0"
        );
        assert_eq!(ttl_of(&[0x7FFF_FFFF]), MAX_TTL_MS);
        // SRV targets "." are left out, other odd bytes too.
        let m = B::answer("s.test", 33)
            .rr(1, Q, TYPE_SRV, 5, &srv_rdata(0, 0, 0, ""))
            .rr(1, Q, TYPE_SRV, 5, &srv_rdata(0, 0, 1, "a b.test"))
            .rr(1, Q, TYPE_SRV, 5, &srv_rdata(0, 0, 2, "ok.test"))
            .done();
        let r = parse_response(&m, ID, "s.test", QType::Srv).unwrap();
        assert_eq!(r.srv.len(), 1);
        assert_eq!((r.srv[0].port, r.srv[0].target.as_str()), (2, "ok.test"));
    }

    #[test]
    fn output_is_bounded() {
        // 4,000 addresses in a 64 KiB answer: MAX_ADDRS kept.
        let mut b = B::answer("x.test", 1);
        for i in 0..4000u32 {
            b = b.rr(1, Q, TYPE_A, 1, &i.to_be_bytes());
        }
        let m = b.done();
        assert!(m.len() < 65536);
        assert_eq!(
            parse_response(&m, ID, "x.test", QType::A)
                .unwrap()
                .addrs
                .len(),
            MAX_ADDRS
        );
        let mut b = B::answer("x.test", 33);
        for i in 0..1000u16 {
            b = b.rr(1, Q, TYPE_SRV, 1, &srv_rdata(i, 0, i, "t.test"));
        }
        for i in 0..1000u32 {
            b = b.rr(3, &wire("t.test"), TYPE_A, 1, &i.to_be_bytes());
        }
        let r = parse_response(&b.done(), ID, "x.test", QType::Srv).unwrap();
        assert_eq!(r.srv.len(), MAX_SRV);
        assert!(r.srv.iter().map(|s| s.addrs.len()).sum::<usize>() <= MAX_ADDRS);
    }

    // ---------------------------------------------- generated search ---

    /// xorshift64*, seeded: a failure replays.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// The id, question name and type a message asks, read by a simple
    /// decoder of its own (uncompressed names only).
    pub(crate) fn question_of(m: &[u8]) -> Option<(u16, String, QType)> {
        let id = u16::from_be_bytes([*m.first()?, *m.get(1)?]);
        let mut at = 12;
        let mut labels = Vec::new();
        loop {
            let n = *m.get(at)? as usize;
            if n == 0 || n > 63 {
                break;
            }
            labels.push(String::from_utf8_lossy(m.get(at + 1..at + 1 + n)?).into_owned());
            at += 1 + n;
        }
        let t = match u16::from_be_bytes([*m.get(at + 1)?, *m.get(at + 2)?]) {
            TYPE_A => QType::A,
            TYPE_AAAA => QType::Aaaa,
            _ => QType::Srv,
        };
        Some((id, labels.join("."), t))
    }

    fn check_bounds(m: &[u8], id: u16, name: &str, t: QType) {
        let r = parse_response(m, id, name, t);
        assert_eq!(r, parse_response(m, id, name, t), "deterministic");
        if let Ok(r) = r {
            assert!(r.addrs.len() <= MAX_ADDRS && r.srv.len() <= MAX_SRV);
            assert!(r.srv.iter().map(|s| s.addrs.len()).sum::<usize>() <= MAX_ADDRS);
            assert!(r.ttl_ms <= MAX_TTL_MS);
            assert!(r.addrs.iter().all(|a| a.is_ipv4() == (t == QType::A)));
            assert!(t != QType::Srv || r.addrs.is_empty());
            if r.truncated {
                assert_eq!(
                    r,
                    Response {
                        truncated: true,
                        ..Response::default()
                    }
                );
            }
            for name in r.srv.iter().map(|s| &s.target).chain(&r.cname) {
                assert!(encode_query(1, name, QType::A, None).is_ok(), "{name:?}");
            }
        }
    }

    #[test]
    fn generated_messages_never_panic_and_stay_bounded() {
        let seeds: Vec<Vec<u8>> = vec![
            captured!("two_a").to_vec(),
            captured!("two_aaaa").to_vec(),
            captured!("srv").to_vec(),
            captured!("alias_a").to_vec(),
            captured!("nx").to_vec(),
            captured!("nodata").to_vec(),
            captured!("big_tcp").to_vec(),
            B::answer("www.example.test", 1)
                .rr(1, Q, TYPE_CNAME, 60, &[1, b'a', 0xC0, 16])
                .rr(1, &[1, b'a', 0xC0, 16], TYPE_A, 60, &[1, 2, 3, 4])
                .rr(2, &[0xC0, 16], TYPE_SOA, 9, &soa(9))
                .done(),
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut oks = 0;
        for round in 0..30_000 {
            let mut m = seeds[rng.below(seeds.len())].clone();
            let question = question_of(&m).unwrap();
            for _ in 0..1 + rng.below(6) {
                let len = m.len().max(1);
                match rng.below(8) {
                    0 => {
                        let i = rng.below(len).min(m.len().saturating_sub(1));
                        if let Some(b) = m.get_mut(i) {
                            *b ^= 1 << rng.below(8);
                        }
                    }
                    1 => {
                        let i = rng.below(len);
                        if let Some(b) = m.get_mut(i) {
                            *b = rng.next() as u8;
                        }
                    }
                    2 => m.truncate(rng.below(len + 1)),
                    3 => {
                        let i = rng.below(m.len() + 1);
                        m.insert(i, rng.next() as u8);
                    }
                    4 => {
                        // A compression pointer anywhere, to anywhere.
                        let i = rng.below(len);
                        let to = rng.below(len.max(13));
                        if i + 1 < m.len() {
                            m[i] = 0xC0 | (to >> 8) as u8;
                            m[i + 1] = to as u8;
                        }
                    }
                    5 => {
                        // A count changed.
                        if m.len() >= 12 {
                            let c = 4 + 2 * rng.below(4);
                            m[c + 1] = rng.next() as u8;
                        }
                    }
                    6 => {
                        // A stretch repeated.
                        if !m.is_empty() {
                            let a = rng.below(m.len());
                            let b = (a + rng.below(64)).min(m.len());
                            let copy = m[a..b].to_vec();
                            let at = rng.below(m.len() + 1);
                            m.splice(at..at, copy);
                        }
                    }
                    _ => m.truncate(m.len().saturating_sub(1 + rng.below(8))),
                }
            }
            // Ask the question the seed asked, or the mutated one.
            let (id, name, t) = if round % 2 == 0 {
                question.clone()
            } else {
                question_of(&m).unwrap_or(question.clone())
            };
            check_bounds(&m, id, &name, t);
            if parse_response(&m, id, &name, t).is_ok() {
                oks += 1;
            }
        }
        // Random bytes after a good header and question.
        for _ in 0..10_000 {
            let mut m = B::answer("x.test", 1).done();
            // Up to 3 records in each section (low count bytes).
            for (c, b) in m[6..12].iter_mut().enumerate() {
                *b = if c % 2 == 1 { rng.below(4) as u8 } else { 0 };
            }
            for _ in 0..rng.below(300) {
                m.push(if rng.below(4) == 0 {
                    0xC0
                } else {
                    rng.next() as u8
                });
            }
            check_bounds(
                &m,
                ID,
                "x.test",
                [QType::A, QType::Aaaa, QType::Srv][rng.below(3)],
            );
        }
        assert!(oks > 1000, "the search reaches answers that parse ({oks})");
    }
}
