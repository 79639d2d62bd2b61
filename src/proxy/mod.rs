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
use crate::shm::Region;
use std::sync::Arc;

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
        }
    }
}
