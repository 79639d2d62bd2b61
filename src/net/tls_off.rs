//! Built without the `tls` feature: the same names as `tls.rs`, and no TLS.
//! Only for type-checking other targets (`make lint` for macOS and FreeBSD,
//! where ring's C code cannot be cross-compiled on this machine): an HTTPS
//! backend is refused at start-up with a message saying why.
#![forbid(unsafe_code)]

use super::{Tcp, Transport};
use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    System,
    Custom,
    Insecure,
}

#[derive(Debug)]
pub struct TlsContext {
    pub trust: Trust,
    pub ca_count: usize,
    pub ca_source: String,
    pub trace: bool,
}

impl TlsContext {
    pub fn new(_ca_file: Option<&Path>, insecure: bool, trace: bool) -> Result<TlsContext, String> {
        Ok(TlsContext {
            trust: if insecure {
                Trust::Insecure
            } else {
                Trust::System
            },
            ca_count: 0,
            ca_source: "none (built without the tls feature)".into(),
            trace,
        })
    }

    pub fn connect(self: &Arc<Self>, _tcp: Tcp, host: &str, _name: &str) -> io::Result<Tls> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{host}: this build has no TLS (the `tls` feature is off)"),
        ))
    }
}

/// No value of it exists.
#[derive(Debug)]
pub enum Tls {}

#[derive(Debug, Clone)]
pub struct TlsFailure {
    pub kind: &'static str,
    pub detail: String,
    pub during_handshake: bool,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

pub fn failure_of(_e: &io::Error) -> Option<&TlsFailure> {
    None
}

impl Transport for Tls {
    fn fd(&self) -> BorrowedFd<'_> {
        match *self {}
    }
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }
    fn write_vectored(&mut self, _bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match *self {}
    }
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match *self {}
    }
    fn shutdown_write(&mut self) {
        match *self {}
    }
    fn peer_closed_or_dirty(&mut self) -> bool {
        match *self {}
    }
    fn splice_fd(&self) -> Option<BorrowedFd<'_>> {
        match *self {}
    }
}

impl Tls {
    pub fn listener_handshaking(&self) -> bool {
        match *self {}
    }

    pub fn end_pending(&self) -> bool {
        match *self {}
    }
}

/// No TLS listener in this build: refused at start-up.
#[derive(Debug)]
pub struct ListenerTls {
    pub certs: CertSet,
}

#[derive(Debug)]
pub struct CertSet {
    pub certs: Vec<Certificate>,
}

#[derive(Debug)]
pub struct Certificate {
    pub names: Vec<String>,
}

impl ListenerTls {
    pub fn new(_pairs: &[crate::config::CertPair], _warn: bool) -> Result<ListenerTls, String> {
        Err("this build has no TLS listener (the `tls` feature is off)".into())
    }

    pub fn accept(self: &Arc<Self>, _tcp: Tcp, _peer: &str) -> io::Result<Tls> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn handshake_timed_out(&self) {}
}

#[derive(Clone, Debug)]
pub struct PemPair;

pub fn read_files(_pairs: &[crate::config::CertPair]) -> Result<Vec<PemPair>, String> {
    Err("this build has no TLS listener (the `tls` feature is off)".into())
}

pub fn fields(_pems: &[PemPair]) -> Vec<&[u8]> {
    Vec::new()
}

pub fn from_fields(_fields: Vec<Vec<u8>>) -> Vec<PemPair> {
    Vec::new()
}

impl ListenerTls {
    pub fn from_pem(_pems: &[PemPair], _warn: bool) -> Result<ListenerTls, String> {
        Err("this build has no TLS listener (the `tls` feature is off)".into())
    }
}
