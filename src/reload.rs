//! Configuration reload: the supervisor watches the `-c` file and, when it
//! changes (or on SIGHUP), parses, validates and resolves the whole file off
//! the request path, then publishes the new backend set to the region:
//! inactive array written, `generation` bumped, `active_index` flipped.
//! Workers pick the new set up on their next request, without locks.
//!
//! What a reload changes: the backends (from the file; `-b` backends are
//! kept, first), their weights, the strategy (unless `-s` was given), and the
//! health settings. A backend present before and after (same `host:port`)
//! keeps its id, hence its health state, counters and pooled connections.
//! Other keys (`timeouts`, `forwarded`, `max_body_bytes`) are read at start;
//! a change to them is logged as needing a restart or a binary upgrade.
//!
//! A file that fails to parse or validate changes nothing: the error is
//! logged with file, line and column and counted as a failed reload.
#![forbid(unsafe_code)]

use crate::config::file::{self, FileConfig};
use crate::config::{BackendSpec, Config, HealthSettings, Strategy, MAX_BACKENDS};
use crate::proxy::backends::assign_ids;
#[cfg(test)]
use crate::proxy::backends::resolve_all;
use crate::shm::{BackendEntry, NotOwner, Region, Runtime, Settings};
use crate::sys;
use std::path::{Path, PathBuf};

/// What the supervisor needs to rebuild the configuration from the file.
pub struct Reloader {
    path: PathBuf,
    flag_backends: Vec<BackendSpec>,
    strategy_flag: Option<Strategy>,
    /// The configuration at start: flags, and what only a restart changes.
    base: Config,
    watch: Watch,
}

/// What the workers should run with: the backends as configured (names
/// not yet resolved), the strategy, health and runtime settings.
#[derive(Clone)]
pub struct Desired {
    pub specs: Vec<BackendSpec>,
    pub strategy: Strategy,
    pub health: HealthSettings,
    /// `None`: the runtime block in the region stays as it is.
    pub runtime: Option<Runtime>,
}

impl Desired {
    /// The configuration a process started with.
    pub fn of(cfg: &Config) -> Desired {
        Desired {
            specs: cfg.backends.clone(),
            strategy: cfg.strategy,
            health: cfg.health.clone(),
            runtime: Some(Runtime::from_config(cfg)),
        }
    }
}

/// What changed, for the log line.
pub struct Applied {
    pub generation: u64,
    pub backends: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub strategy: Strategy,
}

impl Reloader {
    /// `None` without `-c`: there is nothing to reload.
    pub fn new(cfg: &Config) -> Option<Reloader> {
        let path = cfg.config_path.clone()?;
        let watch = Watch::new(&path);
        Some(Reloader {
            path,
            flag_backends: cfg.backends[..cfg.flag_backends].to_vec(),
            strategy_flag: cfg.strategy_given.then_some(cfg.strategy),
            base: cfg.clone(),
            watch,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file changed since the last call (never blocks).
    pub fn changed(&mut self) -> bool {
        self.watch.changed()
    }

    /// Reads and checks the file: what the workers should run with. Its
    /// backend names are resolved (and the result published) by the
    /// supervisor's DNS discovery, never blocking here; on any error nothing
    /// changes.
    pub fn load(&self) -> Result<Desired, String> {
        let fc = file::load(&self.path).map_err(|e| e.to_string())?;
        let runtime = Runtime::from_config(&self.runtime_config(&fc)?);
        let (specs, strategy, health) = self.combine(fc)?;
        Ok(Desired {
            specs,
            strategy,
            health,
            runtime: Some(runtime),
        })
    }

    /// The configuration the workers run with after this file: the start
    /// configuration with the file's timeouts, forwarding, buffering,
    /// limits, `/metrics` placement, trusted headers, access log and CA
    /// file (each unless a flag gave it). What needs a restart (the admin
    /// listener, the pid file) is named in a warning when it changed.
    fn runtime_config(&self, fc: &FileConfig) -> Result<Config, String> {
        let mut cfg = self.base.clone();
        let given = self.base.given;
        cfg.timeouts = fc.timeouts;
        cfg.forwarded = fc.forwarded;
        cfg.max_body_bytes = fc.max_body_bytes;
        cfg.request_buffer_bytes = fc.request_buffer_bytes;
        cfg.trusted_client_headers = fc.trusted_client_headers.clone();
        if !given.access_log {
            cfg.access_log = fc.access_log.clone();
        }
        if !given.ca_file {
            cfg.ca_file = fc.ca_file.clone();
        }
        if !given.max_connections {
            cfg.max_connections = fc.max_connections;
        }
        cfg.pool_max_conn = fc.pool_max_conn;
        cfg.metrics_on_traffic_port = fc.metrics_on_traffic_port.unwrap_or(cfg.admin.is_none());
        let mut restart = Vec::new();
        if !given.admin && fc.admin != self.base.admin {
            restart.push("admin");
        }
        if !given.pid_file && fc.pid_file != self.base.pid_file {
            restart.push("pid_file");
        }
        // The resolver and the TTL bounds are the supervisor's from start.
        if !self.base.given_resolvers() && fc.resolvers != self.base.resolvers {
            restart.push("resolver");
        }
        if fc.dns_ttl_ms != (self.base.dns_min_ttl_ms, self.base.dns_max_ttl_ms) {
            restart.push("dns_min_ttl_ms/dns_max_ttl_ms");
        }
        // The TLS listener's port and certificate list are bound at start
        // (the certificates' contents reload on their own).
        if fc.tls_listener != self.base.tls_listener && self.base.given_tls_listener_from_file() {
            restart.push("tls_listener");
        }
        // Checked here as at start: a reload never hands the workers an
        // access log they cannot open or a CA file that does not load (a
        // worker restarted later would not start with it).
        if cfg.access_log != self.base.access_log {
            if let Some(p) = cfg.access_log.as_deref().filter(|p| p.as_os_str() != "-") {
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(p)
                    .map_err(|e| {
                        format!("{}: access_log {}: {e}", self.path.display(), p.display())
                    })?;
            }
        }
        if cfg.ca_file != self.base.ca_file {
            crate::net::tls::TlsContext::new(cfg.ca_file.as_deref(), cfg.insecure_tls, false)
                .map_err(|e| format!("{}: ca_file: {e}", self.path.display()))?;
        }
        if !restart.is_empty() {
            crate::log!(
                Warn,
                "reload",
                "{}: needs a restart (or an upgrade, SIGUSR2): {}",
                self.path.display(),
                restart.join(", ")
            );
        }
        Ok(cfg)
    }

    fn combine(
        &self,
        fc: FileConfig,
    ) -> Result<(Vec<BackendSpec>, Strategy, HealthSettings), String> {
        let mut specs = self.flag_backends.clone();
        specs.extend(fc.backends);
        if let Some(why) = crate::config::duplicate_backend(
            &specs,
            self.flag_backends.len(),
            Some((&self.path, &fc.backend_pos)),
        ) {
            return Err(why);
        }
        if specs.is_empty() {
            return Err(format!("{}: no backends", self.path.display()));
        }
        if specs.len() > MAX_BACKENDS {
            return Err(format!(
                "{}: {} backends with those of -b, at most {MAX_BACKENDS}",
                self.path.display(),
                specs.len()
            ));
        }
        let strategy = self
            .strategy_flag
            .or(fc.strategy)
            .unwrap_or(Strategy::RoundRobin);
        Ok((specs, strategy, fc.health))
    }
}

/// Replaces the live set in the region. Ids of backends that stay are kept;
/// ids taken into use start healthy with zero counters (in every worker's
/// slot), ids given up are marked down.
pub fn publish_change(
    region: &Region,
    mut entries: Vec<BackendEntry>,
    strategy: Strategy,
    health: &HealthSettings,
    runtime: Option<&Runtime>,
) -> Result<Applied, NotOwner> {
    // Checked before the health and counter resets below, not only by
    // `publish`: a process that does not own the region writes none of it.
    region.check_owner()?;
    let mut old = Vec::new();
    region.read_backends(&mut old);
    let (added, removed) = assign_ids(&mut entries, &old);
    let name = |e: &BackendEntry| e.display_name();
    let removed_names = old
        .iter()
        .filter(|o| removed.contains(&o.id))
        .map(name)
        .collect();
    for &id in &added {
        let id = id as usize;
        region.health.reset_one(id, true);
        for w in &region.workers {
            w.reset_backend(id);
        }
    }
    let added_names = entries
        .iter()
        .filter(|e| added.contains(&e.id))
        .map(name)
        .collect();
    let generation = region.publish_all(&entries, &Settings::new(strategy, health), runtime)?;
    // Only now: a worker still on the old set must not see every backend
    // of it down at once (all members of a moved DNS name are removed
    // together), or it answers 503 until it picks up the new set.
    for &id in &removed {
        region.health.reset_one(id as usize, false);
    }
    Ok(Applied {
        generation,
        backends: entries.iter().map(name).collect(),
        added: added_names,
        removed: removed_names,
        strategy,
    })
}

/// Watches one file, through symlinks. Linux: inotify on the directory of
/// every link on the path and of what each points to (a Kubernetes ConfigMap
/// is `lb.json -> ..data/lb.json`, `..data -> ..2026_12_04…/`, updated by
/// renaming a new `..data` over the old), so an in-place write
/// (`IN_CLOSE_WRITE`), a rename over the file (`IN_MOVED_TO`, what editors
/// and `mv` do) and a link swapped anywhere on the chain are seen. On every
/// event the chain is resolved again (the watched directories follow it),
/// and the file counts as changed when what the path leads to now (device,
/// inode, size, modification time) differs from before. Elsewhere (and if
/// inotify fails): the same comparison on every call.
pub struct Watch {
    inotify: Option<sys::Inotify>,
    dirs: Vec<PathBuf>,
    stamp: Option<Stamp>,
    path: PathBuf,
}

/// What the path leads to: device, inode, size, modification time.
type Stamp = (u64, u64, u64, i64, i64);

impl Watch {
    pub fn new(path: &Path) -> Watch {
        let dirs = link_dirs(path);
        let inotify = sys::Inotify::watch_dirs(&dirs)
            .map_err(|e| {
                crate::log!(
                    Warn,
                    "reload",
                    "{}: cannot watch with inotify ({e}); checking its modification time instead",
                    path.display()
                )
            })
            .ok();
        Watch {
            inotify,
            dirs,
            stamp: stamp(path),
            path: path.to_path_buf(),
        }
    }

    /// Whether what the path leads to changed since the last call (never
    /// blocks).
    pub fn changed(&mut self) -> bool {
        let event = match self.inotify.as_mut() {
            Some(i) => i.file_changed(),
            // Not armed (a directory on the path was gone): compare stamps
            // on every call, and try to arm again.
            None => true,
        };
        if !event {
            return false;
        }
        // Armed afresh on every event: a watched directory may have been
        // deleted, renamed or replaced (its watch is then gone), and the
        // chain of links may lead elsewhere now.
        self.dirs = link_dirs(&self.path);
        self.inotify = sys::Inotify::watch_dirs(&self.dirs).ok();
        let now = stamp(&self.path);
        if now.is_some() && now != self.stamp {
            self.stamp = now;
            return true;
        }
        false
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// The directories to watch for `path`: its own, and for each symlink met
/// while resolving it (the file itself or a directory on the way), the
/// directory the link lives in and the one its target lives in. At most 32
/// links are followed (a loop ends there).
fn link_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |d: PathBuf| {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut todo = vec![path.to_path_buf()];
    let mut hops = 0;
    while let Some(p) = todo.pop() {
        add(parent(&p));
        // Each prefix of the path that is a link, the file included.
        let mut prefix = PathBuf::new();
        for comp in p.components() {
            prefix.push(comp);
            if hops < 32 {
                if let Ok(target) = std::fs::read_link(&prefix) {
                    hops += 1;
                    add(parent(&prefix));
                    let abs = parent(&prefix).join(target);
                    add(parent(&abs));
                    // Resolve through the target, then the rest of the path.
                    let rest = p.strip_prefix(&prefix).unwrap_or(Path::new(""));
                    todo.push(if rest.as_os_str().is_empty() {
                        abs
                    } else {
                        abs.join(rest)
                    });
                    break;
                }
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn spec(port: u16) -> BackendSpec {
        BackendSpec {
            host: "127.0.0.1".into(),
            port,
            weight: 1,
            tls: false,
            srv: false,
        }
    }

    #[test]
    fn a_change_keeps_ids_and_state_of_backends_that_stay() {
        let (r, _fd) = Region::create().unwrap();
        let h = HealthSettings::default();
        publish_change(
            r,
            resolve_all(&[spec(1), spec(2)]).unwrap(),
            Strategy::RoundRobin,
            &h,
            None,
        )
        .unwrap();
        r.workers[0].backend_requests[1].store(7, Relaxed);
        // Left over from a backend that had id 2 long ago.
        r.workers[1].backend_requests[2].store(9, Relaxed);
        r.workers[1].observe_upstream(2, 1_000);
        r.workers[1].backend_error(2, crate::metrics::ErrorKind::Reset);
        r.workers[0].observe_upstream(1, 1_000);
        let applied = publish_change(
            r,
            resolve_all(&[spec(2), spec(3)]).unwrap(),
            Strategy::Random,
            &h,
            None,
        )
        .unwrap();
        assert_eq!(applied.generation, 2);
        assert_eq!(applied.added, ["127.0.0.1:3"]);
        assert_eq!(applied.removed, ["127.0.0.1:1"]);
        let mut live = Vec::new();
        let (_, settings) = r.read_backends(&mut live);
        assert_eq!(settings.strategy(), Strategy::Random);
        let ids: Vec<u32> = live.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            [1, 2],
            "port 2 keeps id 1; port 3 takes an id free in both sets"
        );
        assert_eq!(r.workers[0].backend_requests[1].load(Relaxed), 7, "kept");
        assert_eq!(
            r.workers[1].backend_requests[2].load(Relaxed),
            0,
            "new backend starts at 0"
        );
        let w = &r.workers[1];
        assert_eq!(w.upstream_response[2].buckets[1].load(Relaxed), 0);
        assert_eq!(w.upstream_response[2].sum_us.load(Relaxed), 0);
        assert_eq!(w.backend_errors[2][2].load(Relaxed), 0);
        let kept = &r.workers[0].upstream_response[1];
        assert_eq!(kept.buckets[1].load(Relaxed), 1, "kept");
        assert!(!r.health.is_healthy(0), "the removed backend's id is down");
        assert!(r.health.is_healthy(1) && r.health.is_healthy(2));
    }
}
