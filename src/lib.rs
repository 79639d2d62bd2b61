//! A fast HTTP/1.1 load balancer. See ARCHITECTURE.md for the map.

pub mod access_log;
pub mod admin;
pub mod buf;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod dns;
pub mod dns_shared;
pub mod event;
pub mod health;
pub mod http;
pub mod log;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod probe;
pub mod proxy;
pub mod reload;
pub mod shm;
pub mod slab;
pub mod supervisor;
pub mod sys;
pub mod tls_shared;
pub mod upgrade;
