//! The proxy: the worker's event loop ([`worker`]), how a backend is chosen
//! ([`balance`]) and the table of backends it chooses from ([`backends`]).
//!
//! A worker owns everything it touches (connections, pools, buffers) and
//! shares only the [`Shared`] block: backend table, health, metrics. It does
//! not care whether it runs in a thread or a process of its own.

pub mod backends;
pub mod balance;
pub mod worker;

use crate::config::Config;
use crate::health::HealthState;
use crate::metrics::Metrics;
use backends::BackendTable;

/// What all workers of one load balancer share.
pub struct Shared {
    pub config: Config,
    pub table: BackendTable,
    pub health: HealthState,
    pub metrics: Metrics,
}

impl Shared {
    pub fn new(config: Config) -> Result<Shared, String> {
        let table = BackendTable::build(&config.backends)?;
        let health = HealthState::new(table.len());
        Ok(Shared {
            config,
            table,
            health,
            metrics: Metrics::default(),
        })
    }
}
