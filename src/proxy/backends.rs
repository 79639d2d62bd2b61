//! Backends as a worker sees them: a snapshot of the shared region's live
//! backend array ([`BackendSet`]), refreshed when the region's generation
//! moves, and the resolver that turns configured backends into the region's
//! fixed-size entries.
//!
//! A backend is known by its stable `id` (its slot for health, counters and
//! pooled connections), never by its position in a set that a configuration
//! change rewrites.
#![forbid(unsafe_code)]

use crate::config::{BackendSpec, HealthSettings, Strategy, MAX_BACKENDS};
use crate::shm::{BackendEntry, Region, Runtime};
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

/// Gives each entry of a new set its stable id: the id it had in `old` if
/// the same backend was there ([`BackendEntry::same_backend`]: host,
/// address, port, TLS), so it keeps its health state, counters and pooled
/// connections; else the lowest id free in both sets (a backend switched to
/// TLS is a new one: its old plaintext connections are not reused). Returns
/// the ids taken into use and the ids given up.
pub fn assign_ids(new: &mut [BackendEntry], old: &[BackendEntry]) -> (Vec<u32>, Vec<u32>) {
    let same = |a: &BackendEntry, b: &BackendEntry| a.same_backend(b);
    let mut used = 0u64;
    for e in new.iter_mut() {
        if let Some(o) = old.iter().find(|o| same(o, e) && used & (1 << o.id) == 0) {
            e.id = o.id;
            used |= 1 << o.id;
        } else {
            e.id = u32::MAX;
        }
    }
    let old_ids = old.iter().fold(0u64, |m, o| m | 1 << o.id);
    let mut added = Vec::new();
    for e in new.iter_mut().filter(|e| e.id == u32::MAX) {
        let free = (!(used | old_ids)).trailing_zeros();
        // More than 64 ids in use at once cannot happen: 64 backends at most
        // per set, and ids of `old` not kept are free again once given up.
        let id = if free < 64 {
            free
        } else {
            (!used).trailing_zeros()
        };
        e.id = id;
        used |= 1 << id;
        added.push(id);
    }
    let removed = old
        .iter()
        .map(|o| o.id)
        .filter(|&id| used & (1 << id) == 0 || added.contains(&id))
        .collect();
    (added, removed)
}

/// One backend of the live set.
pub struct Backend {
    /// Stable identity: slot of its health state, counters and pool.
    pub id: usize,
    /// `host:port`, for logs and metric labels.
    pub name: String,
    /// The configured host name: SNI and the name its certificate must carry.
    pub host: String,
    pub addr: RawAddr,
    /// The same address, for logs.
    pub sock: SocketAddr,
    pub weight: u16,
    pub tls: bool,
}

/// A worker's copy of the live backend set.
pub struct BackendSet {
    generation: u64,
    strategy: Strategy,
    health: HealthSettings,
    list: Vec<Backend>,
    weights: Vec<u16>,
    /// Position in `list` of each id, if the id is live.
    by_id: [Option<u8>; MAX_BACKENDS],
    scratch: Vec<BackendEntry>,
    /// The runtime settings published with this generation.
    runtime: Box<Runtime>,
}

impl BackendSet {
    pub fn load(region: &Region) -> BackendSet {
        let mut set = BackendSet {
            generation: u64::MAX,
            strategy: Strategy::RoundRobin,
            health: HealthSettings::default(),
            list: Vec::new(),
            weights: Vec::new(),
            by_id: [None; MAX_BACKENDS],
            scratch: Vec::new(),
            // Zeroed: `set == 0`, "nothing published", until the first read.
            runtime: Box::new(Runtime::from_config(&crate::config::Config::default())),
        };
        set.runtime.set = 0;
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
        let (generation, settings) = region.read_all(&mut entries, Some(&mut self.runtime));
        self.generation = generation;
        self.strategy = settings.strategy();
        self.health = settings.health();
        self.list.clear();
        self.by_id = [None; MAX_BACKENDS];
        for (i, e) in entries.iter().enumerate() {
            let id = (e.id as usize).min(MAX_BACKENDS - 1);
            self.by_id[id] = Some(i as u8);
            self.list.push(Backend {
                id,
                name: e.display_name(),
                host: e.host().to_string(),
                addr: RawAddr::new(e.addr()),
                sock: e.addr(),
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

    /// The runtime settings of the live generation (`set == 0`: none
    /// published, the start configuration holds).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The strategy of the live configuration.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The health thresholds of the live configuration.
    #[inline]
    pub fn health_settings(&self) -> &HealthSettings {
        &self.health
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
                srv: false,
            },
            BackendSpec {
                host: "localhost".into(),
                port: 2,
                weight: 1,
                tls: false,
                srv: false,
            },
        ];
        let st = crate::shm::Settings::new(Strategy::Random, &HealthSettings::default());
        r.publish(&resolve_all(&specs).unwrap(), &st).unwrap();
        let mut set = BackendSet::load(r);
        assert_eq!(set.len(), 2);
        assert_eq!(set.weights(), &[3, 1]);
        // A backend given by name is logged with the address it stands for.
        assert_eq!(set.get(1).unwrap().name, "localhost:2 (127.0.0.1:2)");
        assert_eq!(set.strategy(), Strategy::Random);
        assert!(!set.refresh(r), "same generation: nothing to copy");
        r.publish(&resolve_all(&specs[1..]).unwrap(), &st).unwrap();
        assert!(set.refresh(r));
        assert_eq!(set.len(), 1);
        // ids follow the order of the list they were resolved from
        assert_eq!(set.at(0).id, 0);
        assert_eq!(set.name(5), "#5");
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    fn entry(host: &str, port: u16) -> BackendEntry {
        BackendEntry::new(host, ([127, 0, 0, 1], port).into(), 1, false, 0)
    }

    #[test]
    fn a_backend_keeps_its_id_across_a_change_and_new_ones_take_free_ids() {
        let mut old = vec![entry("a", 1), entry("b", 2), entry("c", 3)];
        let (added, removed) = assign_ids(&mut old, &[]);
        assert_eq!(added, [0, 1, 2]);
        assert!(removed.is_empty());
        // b removed, d added, c and a reordered.
        let mut new = vec![entry("c", 3), entry("d", 4), entry("a", 1)];
        let (added, removed) = assign_ids(&mut new, &old);
        let ids: Vec<u32> = new.iter().map(|e| e.id).collect();
        assert_eq!(ids, [2, 3, 0], "c and a keep theirs; d takes a free id");
        assert_eq!(added, [3]);
        assert_eq!(removed, [1]);
        // Same host, other port: another backend.
        let mut other = vec![entry("a", 9)];
        let (added, removed) = assign_ids(&mut other, &new);
        assert_eq!(added, [1]);
        assert_eq!(removed, [2, 3, 0]);
    }

    #[test]
    fn sixty_four_new_backends_replace_sixty_four_old_ones() {
        let mut old: Vec<BackendEntry> = (0..64).map(|i| entry("old", 1000 + i)).collect();
        assign_ids(&mut old, &[]);
        let mut new: Vec<BackendEntry> = (0..64).map(|i| entry("new", 2000 + i)).collect();
        let (added, removed) = assign_ids(&mut new, &old);
        assert_eq!(added.len(), 64);
        assert_eq!(removed.len(), 64);
        let mut ids: Vec<u32> = new.iter().map(|e| e.id).collect();
        ids.sort();
        assert_eq!(ids, (0..64).collect::<Vec<u32>>(), "every id once");
    }
}
