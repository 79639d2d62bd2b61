//! TLS to HTTPS backends: a [`Transport`] over rustls's non-blocking
//! client (`read_tls` / `process_new_packets` / `write_tls`), driven by the
//! worker's edge-triggered readiness like plain TCP.
//!
//! What the edge-triggered contract needs from it, and how it keeps it:
//! - A short read means the socket is empty: `read` keeps pulling ciphertext
//!   until the caller's buffer is full or the socket says `EAGAIN` (a record
//!   that yields no plaintext, such as a handshake message or a TLS 1.3
//!   session ticket, never ends a read early).
//! - A write that cannot go out now is `WouldBlock`, never swallowed:
//!   plaintext is taken only when no ciphertext is left over from before;
//!   ciphertext left over after a write is flushed when the socket turns
//!   writable ([`Transport::on_writable`]), so a request never waits in
//!   rustls's buffer while the session waits for the response.
//! - A short write means the socket is full: rustls takes at most 64 KiB of
//!   records per write, so a larger write (a head with a buffered body, a
//!   large `/metrics` page) is fed to it again while the socket takes all.
//! - The end of a response is a `close_notify`; a TCP close without one is an
//!   error (`UnexpectedEof`), so a cut-off body is never taken for a whole one.
//!
//! Handshake and verification failures carry a [`TlsFailure`] with words an
//! operator understands, and whether anything could have reached the backend
//! (nothing did while handshaking: the next backend may be tried).
#![forbid(unsafe_code)]

use super::{Handshake, Tcp, Transport};
use crate::log;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    ServerConnection,
};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

/// How backend certificates are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The system's CA bundle (or webpki-roots where there is none).
    System,
    /// Exactly the certificates of `--ca-file`.
    Custom,
    /// `-k`: not checked at all.
    Insecure,
}

/// What every TLS connection of one load balancer shares: the rustls client
/// configuration (with its session cache, so new connections to a backend
/// resume) and what `--tls-trace` reports.
pub struct TlsContext {
    config: Arc<ClientConfig>,
    pub trust: Trust,
    /// CA certificates loaded (0 for `-k`).
    pub ca_count: usize,
    /// Where they came from, for the start-up log.
    pub ca_source: String,
    pub trace: bool,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsContext({:?}, {} CAs)", self.trust, self.ca_count)
    }
}

/// The usual places of a system CA bundle (Debian/Ubuntu, RHEL/Fedora,
/// OpenSUSE, Alpine/macOS/BSD). `SSL_CERT_FILE` comes first.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/ssl/cert.pem",
];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
fn load_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificates in it", path.display()));
    }
    Ok(certs)
}

impl TlsContext {
    /// `ca_file`: trust exactly these; `insecure`: trust anything (`-k`).
    pub fn new(ca_file: Option<&Path>, insecure: bool, trace: bool) -> Result<TlsContext, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut config, trust, ca_count, ca_source) = if insecure {
            let verifier = Arc::new(NoVerification(provider()));
            let c = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            (c, Trust::Insecure, 0, "none (-k)".to_string())
        } else {
            let mut roots = RootCertStore::empty();
            let (trust, source) = match ca_file {
                Some(path) => {
                    let certs = load_pem(path).map_err(|e| format!("--ca-file: {e}"))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!(
                            "--ca-file: {}: no usable CA certificate",
                            path.display()
                        ));
                    }
                    (Trust::Custom, path.display().to_string())
                }
                None => (Trust::System, system_roots(&mut roots)),
            };
            let n = roots.len();
            let c = builder.with_root_certificates(roots).with_no_client_auth();
            (c, trust, n, source)
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::store(Arc::new(TicketStore::default()));
        Ok(TlsContext {
            config: Arc::new(config),
            trust,
            ca_count,
            ca_source,
            trace,
        })
    }

    /// A client connection to `host` (SNI and the name checked; an IP
    /// address is checked as such and sends no SNI).
    pub fn connect(self: &Arc<Self>, tcp: Tcp, host: &str, name: &str) -> io::Result<Tls> {
        let server = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let conn = ClientConnection::new(Arc::clone(&self.config), server)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Tls {
            tcp,
            conn: rustls::Connection::Client(conn),
            role: Role::Backend(Arc::clone(self)),
            name: name.to_string(),
            handshaking: true,
            tcp_eof: false,
            closed: false,
            read_short: false,
        })
    }
}

/// TLS 1.3 tickets kept per backend name (rustls's own store keeps 8).
/// A ticket resumes one connection only, and a pool that follows
/// concurrency opens many at once after a quiet spell: with 8, a burst of
/// 500 new connections makes 492 full handshakes. Servers send one or two
/// tickets per connection, so the store refills as connections are made;
/// the bound is memory (a ticket is a few hundred bytes): 4096 per backend,
/// about a megabyte at most, per worker.
pub const TICKETS_PER_SERVER: usize = 4096;

/// The session store of [`TlsContext`]: per server name, the key exchange
/// hint, the last TLS 1.2 session, and up to [`TICKETS_PER_SERVER`] TLS 1.3
/// tickets (oldest dropped first; each handed out once, newest first).
#[derive(Debug, Default)]
struct TicketStore {
    servers: std::sync::Mutex<std::collections::HashMap<ServerName<'static>, Tickets>>,
}

#[derive(Debug, Default)]
struct Tickets {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<rustls::client::Tls12ClientSessionValue>,
    tls13: std::collections::VecDeque<rustls::client::Tls13ClientSessionValue>,
}

impl TicketStore {
    fn with<R>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut Tickets) -> R) -> Option<R> {
        let mut m = self.servers.lock().ok()?;
        m.get_mut(&name.to_owned()).map(f)
    }

    fn entry<R>(&self, name: ServerName<'static>, f: impl FnOnce(&mut Tickets) -> R) -> Option<R> {
        let mut m = self.servers.lock().ok()?;
        // Names are the configured backends' (at most 64 live); past 256,
        // some other name's tickets go.
        if m.len() >= 256 && !m.contains_key(&name) {
            let drop = m.keys().next().cloned();
            if let Some(k) = drop {
                m.remove(&k);
            }
        }
        Some(f(m.entry(name).or_default()))
    }
}

impl rustls::client::ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.entry(name, |t| t.kx_hint = Some(group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.with(name, |t| t.kx_hint).flatten()
    }

    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.entry(name, |t| t.tls12 = Some(v));
    }

    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.with(name, |t| t.tls12.clone()).flatten()
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.with(name, |t| t.tls12 = None);
    }

    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.entry(name, |t| {
            if t.tls13.len() == TICKETS_PER_SERVER {
                t.tls13.pop_front();
            }
            t.tls13.push_back(v);
        });
    }

    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.with(name, |t| t.tls13.pop_back()).flatten()
    }
}

/// The system bundle (`SSL_CERT_FILE`, then the usual paths), else the
/// webpki-roots copy of Mozilla's roots built into the binary.
fn system_roots(roots: &mut RootCertStore) -> String {
    let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let candidates = env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from));
    for path in candidates {
        if let Ok(certs) = load_pem(&path) {
            let (added, _) = roots.add_parsable_certificates(certs);
            if added > 0 {
                return path.display().to_string();
            }
        }
    }
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    "webpki-roots (built in)".to_string()
}

/// `-k`: accepts any certificate (signatures are still checked, so the
/// handshake is a real one).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS connection failed, in an operator's words. Carried inside the
/// `io::Error` a read or write returns.
#[derive(Debug, Clone)]
pub struct TlsFailure {
    /// Short label for the metric (`unknown_issuer`, `name_mismatch`, …).
    pub kind: &'static str,
    pub detail: String,
    /// Nothing can have reached the backend: the handshake never finished.
    pub during_handshake: bool,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for TlsFailure {}

/// The failure behind an I/O error, if it was a TLS one.
pub fn failure_of(e: &io::Error) -> Option<&TlsFailure> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsFailure>())
}

fn describe(e: &rustls::Error) -> (&'static str, String) {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => (
                "unknown_issuer",
                "certificate verification failed: unknown issuer (not signed by a trusted CA)".into(),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
                "name_mismatch",
                "certificate verification failed: name mismatch (the certificate is not for this host)".into(),
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
                "expired",
                "certificate verification failed: expired".into(),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                "not_yet_valid",
                "certificate verification failed: not valid yet".into(),
            ),
            CertificateError::Revoked => ("revoked", "certificate verification failed: revoked".into()),
            other => ("bad_certificate", format!("certificate verification failed: {other:?}")),
        },
        E::AlertReceived(alert) => (
            "alert",
            format!("handshake failure: the backend sent the alert {alert:?}"),
        ),
        E::PeerIncompatible(p) => (
            "incompatible",
            format!("handshake failure: no common protocol version or cipher suite ({p:?})"),
        ),
        E::InvalidMessage(m) => (
            "protocol",
            format!("handshake failure: not a TLS server, or a corrupt message ({m:?})"),
        ),
        other => ("protocol", format!("TLS error: {other}")),
    }
}

/// A TLS connection over TCP: to an HTTPS backend (rustls's client), or
/// from a client of the TLS listener (its server).
pub struct Tls {
    tcp: Tcp,
    conn: rustls::Connection,
    role: Role,
    /// `host:port` of a backend, for `--tls-trace`; a listener client's
    /// address, for log lines.
    name: String,
    handshaking: bool,
    tcp_eof: bool,
    /// The peer's `close_notify` was read.
    closed: bool,
    /// The last [`Tls::pull`] read less than it asked for.
    read_short: bool,
}

/// Which side of the connection this process is, and what it reports to.
enum Role {
    /// To a backend: `--tls-trace`, `lb_tls_handshakes_total`.
    Backend(Arc<TlsContext>),
    /// A client of the TLS listener: the listener's counters and log.
    Listener(Arc<super::tls_listener::ListenerTls>),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({})", self.name)
    }
}

/// `Read`/`Write` over the raw socket for rustls's `read_tls`/`write_tls`,
/// noting whether the last call moved less than it was offered: under the
/// edge-triggered contract that means the socket is empty (a read) or full
/// (a write), so no second syscall is needed to find `EAGAIN`.
struct Raw<'a> {
    tcp: &'a mut Tcp,
    short: bool,
}

impl<'a> Raw<'a> {
    fn new(tcp: &'a mut Tcp) -> Raw<'a> {
        Raw { tcp, short: false }
    }
}

impl Read for Raw<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

impl Write for Raw<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// rustls hands over every queued record at once (up to 64): one
    /// `writev` for all of them, not one `write` per record (the default
    /// `write_vectored` writes only the first buffer).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.tcp.write_vectored(bufs)?;
        self.short = n < bufs.iter().map(|b| b.len()).sum::<usize>();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Tls {
    /// A client of the TLS listener, its handshake begun.
    pub(super) fn accepted(
        tcp: Tcp,
        conn: ServerConnection,
        listener: Arc<super::tls_listener::ListenerTls>,
        peer: &str,
    ) -> Tls {
        Tls {
            tcp,
            conn: rustls::Connection::Server(conn),
            role: Role::Listener(listener),
            name: peer.to_string(),
            handshaking: true,
            tcp_eof: false,
            closed: false,
            read_short: false,
        }
    }

    /// A listener connection whose handshake has not finished (for the
    /// `timeout` failure count when its header deadline passes).
    pub fn listener_handshaking(&self) -> bool {
        self.handshaking && matches!(self.role, Role::Listener(_))
    }

    /// For the access log: `TLSv1.3` and the SNI name, on a listener
    /// connection.
    pub fn version_and_sni(&self) -> (&'static str, Option<&str>) {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "-",
        };
        let sni = match &self.conn {
            rustls::Connection::Server(s) => s.server_name(),
            rustls::Connection::Client(_) => None,
        };
        (version, sni)
    }

    fn fail(&self, e: &rustls::Error) -> io::Error {
        let (kind, detail) = describe(e);
        if let Role::Listener(l) = &self.role {
            l.handshake_failed(e, self.handshaking, &self.name);
        }
        io::Error::new(
            io::ErrorKind::InvalidData,
            TlsFailure {
                kind,
                detail,
                during_handshake: self.handshaking,
            },
        )
    }

    /// Writes buffered ciphertext, all queued records in one `writev`;
    /// `Ok(true)` when none is left. A short write means the socket is full:
    /// the rest waits for writable without another syscall to find `EAGAIN`.
    fn flush_tls(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            let mut raw = Raw::new(&mut self.tcp);
            match self.conn.write_tls(&mut raw) {
                Ok(_) if raw.short && self.conn.wants_write() => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// After each batch of records: note the end of the handshake.
    fn after_packets(&mut self) {
        if self.handshaking && !self.conn.is_handshaking() {
            self.handshaking = false;
            let resumed = matches!(
                self.conn.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed)
            );
            match &self.role {
                Role::Backend(ctx) => {
                    crate::metrics::tls_handshake_done(resumed);
                    if ctx.trace {
                        self.trace(ctx);
                    }
                }
                Role::Listener(l) => l.handshake_done(
                    self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
                    resumed,
                ),
            }
        }
    }

    /// `--tls-trace`: the spec's summary ("TLS Tracing" in its README), in
    /// its own spelling, a log line each, then what this build adds (ALPN,
    /// resumed).
    fn trace(&self, ctx: &TlsContext) {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "?".to_string(),
        };
        // `TLS13_AES_256_GCM_SHA384` is `AES_256_GCM_SHA384` in the spec;
        // TLS 1.2 suites keep their key exchange (`ECDHE_RSA_WITH_…`).
        let suite = self.conn.negotiated_cipher_suite().map_or("?".into(), |s| {
            let name = format!("{:?}", s.suite());
            name.strip_prefix("TLS13_")
                .or_else(|| name.strip_prefix("TLS_"))
                .unwrap_or(&name)
                .to_string()
        });
        let (ca, host) = match ctx.trust {
            Trust::System => ("system trust store", "enabled"),
            Trust::Custom => ("custom", "enabled"),
            Trust::Insecure => ("none", "disabled"),
        };
        let resumed = matches!(
            self.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
        let alpn = self
            .conn
            .alpn_protocol()
            .map_or("none".into(), |p| String::from_utf8_lossy(p).into_owned());
        let lines = [
            "=== TLS Handshake Complete ===".to_string(),
            format!("  Host: {}", self.name),
            format!("  Version: {version}"),
            format!("  Cipher Suite: {suite}"),
            format!("  CA Verification: {ca}"),
            format!("  Host Verification: {host}"),
            format!("  CA Certificates: {} loaded", ctx.ca_count),
            format!("  ALPN: {alpn}"),
            format!("  Resumed: {}", if resumed { "yes" } else { "no" }),
        ];
        for l in lines {
            log!(Info, "tls_trace", "{l}");
        }
    }

    /// Hands rustls `bufs` past their first `skip` bytes (at most four
    /// slices at once: the worker's writes have three); returns how many
    /// bytes it took.
    fn write_plaintext(&mut self, bufs: &[IoSlice<'_>], mut skip: usize) -> io::Result<usize> {
        let mut rest = [IoSlice::new(&[]); 4];
        let mut k = 0;
        for b in bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            if k == rest.len() {
                break;
            }
            rest[k] = IoSlice::new(&b[skip..]);
            skip = 0;
            k += 1;
        }
        self.conn.writer().write_vectored(&rest[..k])
    }

    /// Pulls ciphertext from the socket into rustls and processes it.
    /// `Ok(false)` when the socket is empty (`EAGAIN`). `read_short` says
    /// whether the read took less than rustls offered (the socket is empty
    /// now, as far as the edge-triggered contract goes).
    fn pull(&mut self) -> io::Result<bool> {
        self.read_short = false;
        if self.tcp_eof {
            return Ok(false);
        }
        let mut raw = Raw::new(&mut self.tcp);
        match self.conn.read_tls(&mut raw) {
            Ok(0) => self.tcp_eof = true,
            Ok(_) => self.read_short = raw.short,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Err(e) = self.conn.process_new_packets() {
            // Tell the backend why (an alert), best effort.
            let _ = self.flush_tls();
            return Err(self.fail(&e));
        }
        self.after_packets();
        Ok(true)
    }
}

impl Transport for Tls {
    fn fd(&self) -> BorrowedFd<'_> {
        self.tcp.fd()
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        // A pull of this call read the socket short: it is empty, so the
        // plaintext in hand goes back now, as a short read (which is what
        // tells the caller the socket is empty), without a second read to
        // find `EAGAIN`. Only a pull of this call counts: a short read
        // before the last readiness event says nothing about the socket now.
        let mut drained = false;
        loop {
            match self.conn.reader().read(&mut buf[filled..]) {
                // close_notify: what came before it now, the end at the
                // next call (`end_pending` says it is there to read).
                Ok(0) => {
                    self.closed = true;
                    return Ok(filled);
                }
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    if filled > 0 {
                        return Ok(filled);
                    }
                    let during_handshake = self.handshaking;
                    if let Role::Listener(l) = &self.role {
                        // Clients often close without close_notify; the
                        // request framing tells a cut one from a whole one.
                        if during_handshake {
                            l.handshake_closed();
                        }
                        return Ok(0);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        TlsFailure {
                            kind: if during_handshake {
                                "protocol"
                            } else {
                                "truncated"
                            },
                            detail: if during_handshake {
                                "handshake failure: the backend closed the connection".into()
                            } else {
                                "the backend closed the connection without close_notify".into()
                            },
                            during_handshake,
                        },
                    ));
                }
                Err(e) => return Err(e),
            }
            // The handshake (or a key update) may have something to send.
            self.flush_tls()?;
            if drained && filled > 0 {
                return Ok(filled);
            }
            if !self.pull()? {
                if filled > 0 {
                    return Ok(filled);
                }
                return Err(io::ErrorKind::WouldBlock.into());
            }
            drained = self.read_short;
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Old ciphertext first: plaintext is taken only when it can be sent.
        if !self.flush_tls()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // rustls takes at most its buffer limit (64 KiB of records) at a
        // time, whether the socket has room or not. A write taken short
        // must mean a full socket (the caller then waits for writable, an
        // edge that never comes for a socket that never filled): while the
        // socket takes every record, more plaintext is taken.
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut taken = 0;
        loop {
            let n = self.write_plaintext(bufs, taken)?;
            taken += n;
            // False: the socket is full; the rest goes on writable.
            if !self.flush_tls()? || taken == total || n == 0 {
                return Ok(taken);
            }
        }
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.tcp.take_error()
    }

    fn shutdown_write(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush_tls();
        self.tcp.shutdown_write();
    }

    fn peer_closed_or_dirty(&mut self) -> bool {
        // Records that arrived while idle: TLS 1.3 session tickets are
        // consumed here and are no reason to drop the connection; application
        // data, an alert or the end of the stream are.
        match self.pull() {
            Ok(_) => {}
            Err(_) => return true,
        }
        if self.tcp_eof {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.conn.reader().read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    fn splice_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn on_writable(&mut self) -> io::Result<()> {
        self.flush_tls().map(|_| ())
    }

    fn is_tls(&self) -> bool {
        true
    }

    fn end_pending(&self) -> bool {
        self.closed || self.tcp_eof
    }

    fn handshake(&mut self) -> io::Result<Handshake> {
        loop {
            if !self.flush_tls()? {
                return Ok(Handshake::WantWrite);
            }
            if !self.conn.is_handshaking() {
                self.after_packets();
                return Ok(Handshake::Done);
            }
            if !self.pull()? {
                if self.tcp_eof {
                    if let Role::Listener(l) = &self.role {
                        l.handshake_closed();
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        TlsFailure {
                            kind: "protocol",
                            detail: "handshake failure: the backend closed the connection".into(),
                            during_handshake: true,
                        },
                    ));
                }
                return Ok(Handshake::WantRead);
            }
        }
    }
}
