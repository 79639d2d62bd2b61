//! Backends as a worker sees them: a snapshot of the shared region's live
//! backend array ([`BackendSet`]), refreshed when the region's generation
//! moves, and the resolver that turns configured backends into the region's
//! fixed-size entries.
//!
//! A backend is known by its stable `id` (its slot for health, counters and
//! pooled connections), never by its position in a set that a configuration
//! change rewrites.
#![forbid(unsafe_code)]

use crate::config::{BackendSpec, MAX_BACKENDS};
use crate::shm::{BackendEntry, Region};
use crate::sys::RawAddr;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves `host:port` once, preferring IPv4 (what `localhost` means to
/// most backends listening on 127.0.0.1).
pub fn resolve(spec: &BackendSpec) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = (spec.host.as_str(), spec.port)
        .to_socket_addrs()
        .map_err(|e| format!("backend {spec}: cannot resolve host: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("backend {spec}: host has no addresses"))
}

/// Resolves every configured backend into a region entry; ids follow the
/// configuration's order.
pub fn resolve_all(specs: &[BackendSpec]) -> Result<Vec<BackendEntry>, String> {
    if specs.len() > MAX_BACKENDS {
        return Err(format!("at most {MAX_BACKENDS} backends"));
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let addr = resolve(s)?;
            Ok(BackendEntry::new(
                &s.host,
                addr,
                s.weight.max(1),
                s.tls,
                i as u32,
            ))
        })
        .collect()
}

/// One backend of the live set.
pub struct Backend {
    /// Stable identity: slot of its health state, counters and pool.
    pub id: usize,
    /// `host:port`, for logs and metric labels.
    pub name: String,
    pub addr: RawAddr,
    pub weight: u16,
    pub tls: bool,
}

/// A worker's copy of the live backend set.
pub struct BackendSet {
    generation: u64,
    list: Vec<Backend>,
    weights: Vec<u16>,
    /// Position in `list` of each id, if the id is live.
    by_id: [Option<u8>; MAX_BACKENDS],
    scratch: Vec<BackendEntry>,
}

impl BackendSet {
    pub fn load(region: &Region) -> BackendSet {
        let mut set = BackendSet {
            generation: u64::MAX,
            list: Vec::new(),
            weights: Vec::new(),
            by_id: [None; MAX_BACKENDS],
            scratch: Vec::new(),
        };
        set.refresh(region);
        set
    }

    /// Copies the live set again if the region's generation moved; true if
    /// it did. One atomic load when nothing changed.
    #[inline]
    pub fn refresh(&mut self, region: &Region) -> bool {
        if region.generation() == self.generation {
            return false;
        }
        let mut entries = std::mem::take(&mut self.scratch);
        self.generation = region.read_backends(&mut entries);
        self.list.clear();
        self.by_id = [None; MAX_BACKENDS];
        for (i, e) in entries.iter().enumerate() {
            let id = (e.id as usize).min(MAX_BACKENDS - 1);
            self.by_id[id] = Some(i as u8);
            self.list.push(Backend {
                id,
                name: format!("{}:{}", e.host(), e.port),
                addr: RawAddr::new(e.addr()),
                weight: e.weight,
                tls: e.tls != 0,
            });
        }
        self.weights = self.list.iter().map(|b| b.weight).collect();
        self.scratch = entries;
        true
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// By position in the set (what the balancer picks).
    #[inline]
    pub fn at(&self, i: usize) -> &Backend {
        &self.list[i]
    }

    /// By stable id; `None` once a configuration change removed it.
    #[inline]
    pub fn get(&self, id: usize) -> Option<&Backend> {
        self.by_id
            .get(id)
            .copied()
            .flatten()
            .map(|i| &self.list[i as usize])
    }

    /// Name for logs; a removed backend is still named by its id.
    pub fn name(&self, id: usize) -> String {
        self.get(id)
            .map_or_else(|| format!("#{id}"), |b| b.name.clone())
    }

    pub fn weights(&self) -> &[u16] {
        &self.weights
    }

    pub fn iter(&self) -> impl Iterator<Item = &Backend> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_follows_the_region() {
        let (r, _fd) = Region::create().unwrap();
        let specs = [
            BackendSpec {
                host: "127.0.0.1".into(),
                port: 1,
                weight: 3,
                tls: false,
            },
            BackendSpec {
                host: "localhost".into(),
                port: 2,
                weight: 1,
                tls: false,
            },
        ];
        r.publish(&resolve_all(&specs).unwrap());
        let mut set = BackendSet::load(r);
        assert_eq!(set.len(), 2);
        assert_eq!(set.weights(), &[3, 1]);
        assert_eq!(set.get(1).unwrap().name, "localhost:2");
        assert!(!set.refresh(r), "same generation: nothing to copy");
        r.publish(&resolve_all(&specs[1..]).unwrap());
        assert!(set.refresh(r));
        assert_eq!(set.len(), 1);
        // ids follow the order of the list they were resolved from
        assert_eq!(set.at(0).id, 0);
        assert_eq!(set.name(5), "#5");
    }
}
