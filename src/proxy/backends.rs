//! The backend table: the one interface through which workers see the
//! configured backends. Today it is built once at start-up from the
//! config; the shared-memory region (double-buffered arrays with a
//! generation) will back the same methods when hot reload lands.

use crate::config::BackendSpec;
use crate::sys::RawAddr;
use std::net::{SocketAddr, ToSocketAddrs};

pub struct Backend {
    /// `host:port`, for logs and metric labels.
    pub name: String,
    pub addr: RawAddr,
    pub weight: u16,
    pub tls: bool,
}

pub struct BackendTable {
    backends: Vec<Backend>,
    names: Vec<String>,
    generation: u64,
}

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

impl BackendTable {
    pub fn build(specs: &[BackendSpec]) -> Result<BackendTable, String> {
        let mut backends = Vec::with_capacity(specs.len());
        for s in specs {
            let addr = resolve(s)?;
            backends.push(Backend {
                name: s.to_string(),
                addr: RawAddr::new(addr),
                weight: s.weight.max(1),
                tls: s.tls,
            });
        }
        let names = backends.iter().map(|b| b.name.clone()).collect();
        Ok(BackendTable {
            backends,
            names,
            generation: 0,
        })
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> &Backend {
        &self.backends[i]
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Bumped by every reload; pooled connections from an older generation
    /// are not reused.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}
