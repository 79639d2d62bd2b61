//! What the supervisor's DNS discovery (`discovery`) tells the workers,
//! which render `/metrics` and the status page: query counts, and for each
//! followed name its addresses, the time of its last answer and any
//! failure. One anonymous shared mapping made before the workers start;
//! one writer (the supervisor), readers copying under a sequence number
//! (retried while it moves), so a reader never sees half a update.
#![allow(unsafe_code)]

use crate::discovery::{Discovery, RESULTS};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

/// Bytes of the status text (one line per followed name).
const TEXT_MAX: usize = 32 * 1024;

#[repr(C, align(64))]
pub struct DnsShared {
    pub queries: [AtomicU64; RESULTS.len()],
    /// Odd while the supervisor writes.
    seq: AtomicU64,
    len: AtomicU32,
    text: [AtomicU8; TEXT_MAX],
}

// SAFETY: every field is an atomic.
unsafe impl Sync for DnsShared {}

static CURRENT: OnceLock<&'static DnsShared> = OnceLock::new();

/// One followed name as the workers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsName {
    pub name: String,
    pub addresses: Vec<String>,
    /// Wall-clock seconds of the last answer.
    pub answered_unix: Option<u64>,
    /// The last failure and since when (wall-clock seconds).
    pub failing: Option<(String, u64)>,
}

impl DnsShared {
    /// Maps the block and makes it this process's; before workers start.
    pub fn create() -> std::io::Result<&'static DnsShared> {
        // SAFETY: every field is an atomic (zero is a valid value) and the
        // alignment is 64 bytes, less than a page.
        let shared: &'static DnsShared = unsafe { crate::sys::map_shared_zeroed()? };
        let _ = CURRENT.set(shared);
        Ok(shared)
    }

    pub fn current() -> Option<&'static DnsShared> {
        CURRENT.get().copied()
    }

    /// The supervisor writes what discovery knows now.
    pub fn publish(&self, d: &Discovery) {
        for (c, n) in self.queries.iter().zip(d.counts) {
            c.store(n, Ordering::Relaxed);
        }
        let mut text = String::new();
        for s in d.status() {
            // Tabs and newlines cannot occur in names, addresses or the
            // resolver's messages; replaced anyway.
            let clean = |t: &str| t.replace(['\t', '\n'], " ");
            let addrs: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
            let (why, since) = match &s.failing {
                Some((w, since)) => (clean(w), since.to_string()),
                None => ("-".into(), "-".into()),
            };
            let line = format!(
                "{}\t{}\t{}\t{why}\t{since}\n",
                clean(&s.name),
                s.answered_unix.map_or("-".into(), |t| t.to_string()),
                if addrs.is_empty() {
                    "-".into()
                } else {
                    addrs.join(",")
                },
            );
            if text.len() + line.len() > TEXT_MAX {
                break;
            }
            text.push_str(&line);
        }
        self.seq.fetch_add(1, Ordering::AcqRel);
        for (d, b) in self.text.iter().zip(text.bytes()) {
            d.store(b, Ordering::Relaxed);
        }
        self.len.store(text.len() as u32, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// The names as last published (empty if a consistent copy could not
    /// be had in a few tries: the next scrape shows them).
    pub fn names(&self) -> Vec<DnsName> {
        for _ in 0..8 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let len = (self.len.load(Ordering::Relaxed) as usize).min(TEXT_MAX);
            let bytes: Vec<u8> = self.text[..len]
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            return parse(&String::from_utf8_lossy(&bytes));
        }
        Vec::new()
    }
}

fn parse(text: &str) -> Vec<DnsName> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let name = f.next()?.to_string();
            let answered_unix = f.next()?.parse().ok();
            let addresses = match f.next()? {
                "-" => Vec::new(),
                a => a.split(',').map(str::to_string).collect(),
            };
            let why = f.next()?;
            let since = f.next()?.parse().ok();
            let failing = match (why, since) {
                ("-", _) | (_, None) => None,
                (w, Some(s)) => Some((w.to_string(), s)),
            };
            Some(DnsName {
                name,
                addresses,
                answered_unix,
                failing,
            })
        })
        .collect()
}

/// Discovery's part of `/metrics`; nothing when no name is followed.
pub fn render_metrics(o: &mut String) {
    use std::fmt::Write;
    let Some(s) = DnsShared::current() else {
        return;
    };
    let names = s.names();
    if names.is_empty() && s.queries.iter().all(|q| q.load(Ordering::Relaxed) == 0) {
        return; // no backend name followed, ever
    }
    let _ = write!(
        o,
        "# HELP lb_dns_queries_total DNS lookups of backend names, by result.\n\
         # TYPE lb_dns_queries_total counter\n"
    );
    for (i, r) in RESULTS.iter().enumerate() {
        let _ = writeln!(
            o,
            "lb_dns_queries_total{{result=\"{r}\"}} {}",
            s.queries[i].load(Ordering::Relaxed)
        );
    }
    let _ = write!(
        o,
        "# HELP lb_dns_members Addresses (backends) a followed DNS name has now.\n\
         # TYPE lb_dns_members gauge\n"
    );
    for n in &names {
        let label: String = n
            .name
            .chars()
            .filter(|c| !matches!(c, '"' | '\\'))
            .collect();
        let _ = writeln!(
            o,
            "lb_dns_members{{name=\"{label}\"}} {}",
            n.addresses.len()
        );
    }
    let _ = write!(
        o,
        "# HELP lb_dns_last_answer_timestamp_seconds When a followed DNS name last answered (Unix time; 0: never).\n\
         # TYPE lb_dns_last_answer_timestamp_seconds gauge\n"
    );
    for n in &names {
        let label: String = n
            .name
            .chars()
            .filter(|c| !matches!(c, '"' | '\\'))
            .collect();
        let _ = writeln!(
            o,
            "lb_dns_last_answer_timestamp_seconds{{name=\"{label}\"}} {}",
            n.answered_unix.unwrap_or(0)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_read_back() {
        let t = "srv _http._tcp.x\t1700000000\t127.0.0.2:80,127.0.0.3:81\t-\t-\n\
                 b.example:80\t-\t-\tno name server answered in time\t1700000005\n";
        let n = parse(t);
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].addresses, vec!["127.0.0.2:80", "127.0.0.3:81"]);
        assert_eq!(n[0].answered_unix, Some(1_700_000_000));
        assert_eq!(n[1].failing.as_ref().unwrap().1, 1_700_000_005);
        assert!(n[1].addresses.is_empty());
    }
}
