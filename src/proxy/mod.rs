//! The proxy: the worker's event loop ([`worker`]) and its sessions
//! ([`session`]: [`downstream`] and [`upstream`] sides, [`body`] forwarding,
//! [`tunnel`]s), how a backend is chosen ([`balance`]) and the backend set
//! it chooses from ([`backends`]).
//!
//! A worker owns everything it touches (connections, pools, buffers) and
//! shares only the shared-memory region: backends, health, counters. It
//! does not care whether it runs in a thread or a process of its own.
#![forbid(unsafe_code)]

pub mod backends;
pub mod balance;
pub mod body;
pub mod deadlines;
pub mod downstream;
pub mod forward;
pub mod session;
pub mod tunnel;
pub mod upstream;
pub mod worker;

use crate::config::Config;
use crate::health::HealthState;
use crate::metrics::Metrics;
use crate::net::tls::TlsContext;
use crate::net::tls_listener::ListenerTls;
use crate::shm::Region;
use crate::sys;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// The listening sockets a worker serves: plain HTTP (`-p`, absent with
/// `-p 0`), HTTPS (`--tls-port`), admin (`--admin`).
#[derive(Debug, Default)]
pub struct Listeners {
    pub plain: Option<OwnedFd>,
    pub tls: Option<OwnedFd>,
    pub admin: Option<OwnedFd>,
}

impl Listeners {
    /// Close-on-exec duplicates (each worker owns its copies).
    pub fn dup(&self) -> io::Result<Listeners> {
        let d = |l: &Option<OwnedFd>| l.as_ref().map(|fd| sys::dup(fd.as_fd())).transpose();
        Ok(Listeners {
            plain: d(&self.plain)?,
            tls: d(&self.tls)?,
            admin: d(&self.admin)?,
        })
    }
}

/// What one worker is handed: the configuration it started with, and the
/// shared region (its own counter slot picked out).
pub struct Shared {
    pub config: Config,
    pub region: &'static Region,
    pub health: &'static HealthState,
    /// This worker's counter slot.
    pub metrics: &'static Metrics,
    /// Worker number: its slot in the region, its name in logs and `ps`.
    pub worker: usize,
    /// TLS to HTTPS backends (trust store, session cache).
    pub tls: Option<Arc<TlsContext>>,
    /// The TLS listener's certificates and server configuration, as loaded
    /// by the supervisor (a worker replaces its own copy on reload).
    pub listener_tls: Option<Arc<ListenerTls>>,
}

impl Shared {
    pub fn new(
        config: Config,
        region: &'static Region,
        worker: usize,
        tls: Option<Arc<TlsContext>>,
    ) -> Shared {
        Shared {
            config,
            region,
            health: &region.health,
            metrics: &region.workers[worker],
            worker,
            tls,
            listener_tls: None,
        }
    }
}
