//! The TLS listener (`--tls-port`, `"tls_listener"`): certificates loaded
//! from PEM files and chosen by SNI, the rustls server configuration over
//! the session cache shared by every worker (`tls_shared`), the listener's
//! counters and its part of `/metrics`.
//!
//! A worker holds one [`ListenerTls`] and replaces it whole when the
//! certificates are reloaded: connections already made keep the
//! configuration they started with (rustls holds it by `Arc`).
#![forbid(unsafe_code)]

use super::tls::Tls;
use super::{x509, Tcp};
use crate::config::CertPair;
use crate::log;
use crate::log::Kind;
use crate::tls_shared::{SessionStore, TlsShared, FAILURE_REASONS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerConnection};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

/// One certificate chain and its key, and what was read from it.
#[derive(Debug)]
pub struct Certificate {
    /// DNS names (lowercase; `*.` wildcards as written).
    pub names: Vec<String>,
    /// `notAfter` (Unix seconds), if it could be read.
    pub not_after: Option<i64>,
    pub cert_path: std::path::PathBuf,
    key: Arc<CertifiedKey>,
}

/// Every certificate of the listener, in configuration order (the first
/// is the default).
#[derive(Debug)]
pub struct CertSet {
    pub certs: Vec<Certificate>,
}

/// A certificate file and its key file as read (the bytes the supervisor
/// checked are the bytes every worker loads: files changing in between
/// cannot give workers different certificates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    pub paths: CertPair,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// The shared block's fields for `pems` (paths and bytes, in order).
pub fn fields(pems: &[PemPair]) -> Vec<&[u8]> {
    pems.iter()
        .flat_map(|p| {
            [
                p.paths.cert.as_os_str().as_encoded_bytes(),
                p.paths.key.as_os_str().as_encoded_bytes(),
                &p.cert[..],
                &p.key[..],
            ]
        })
        .collect()
}

/// `pems` back from the shared block's fields.
pub fn from_fields(fields: Vec<Vec<u8>>) -> Vec<PemPair> {
    use std::os::unix::ffi::OsStringExt;
    let path = |b: Vec<u8>| std::path::PathBuf::from(std::ffi::OsString::from_vec(b));
    let mut it = fields.into_iter();
    let mut out = Vec::new();
    while let (Some(c), Some(k), Some(cert), Some(key)) =
        (it.next(), it.next(), it.next(), it.next())
    {
        out.push(PemPair {
            paths: CertPair {
                cert: path(c),
                key: path(k),
            },
            cert,
            key,
        });
    }
    out
}

/// Reads every certificate and key file (an error names the file).
pub fn read_files(pairs: &[CertPair]) -> Result<Vec<PemPair>, String> {
    pairs
        .iter()
        .map(|p| {
            let read =
                |f: &std::path::Path| std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()));
            Ok(PemPair {
                paths: p.clone(),
                cert: read(&p.cert)?,
                key: read(&p.key)?,
            })
        })
        .collect()
}

impl CertSet {
    /// Loads every pair; the first error names the file and what is wrong.
    /// With `warn`, warnings (expired, a key readable by others) are logged.
    pub fn load(pems: &[PemPair], warn: bool) -> Result<CertSet, String> {
        if pems.is_empty() {
            return Err("the TLS listener has no certificate (--tls-cert and --tls-key)".into());
        }
        let provider = rustls::crypto::ring::default_provider();
        let mut certs = Vec::with_capacity(pems.len());
        for (i, pem) in pems.iter().enumerate() {
            let p = &pem.paths;
            if pems[..i].iter().any(|o| o.paths.cert == p.cert) {
                // It would be served as the first one only, and repeat its
                // expiry series.
                return Err(format!(
                    "{}: given twice as a certificate",
                    p.cert.display()
                ));
            }
            let cert_name = p.cert.display();
            let chain: Result<Vec<CertificateDer<'static>>, _> =
                CertificateDer::pem_slice_iter(&pem.cert).collect();
            let chain = chain.map_err(|e| format!("{cert_name}: {}", pem_error(&e)))?;
            if chain.is_empty() {
                return Err(format!("{cert_name}: no PEM certificate in it"));
            }
            let key_name = p.key.display();
            let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound
                    if String::from_utf8_lossy(&pem.key).contains("ENCRYPTED PRIVATE KEY") =>
                {
                    format!(
                        "{key_name}: the key is encrypted; give it decrypted (openssl pkey -in KEY -out KEY.plain), readable by this user only"
                    )
                }
                rustls::pki_types::pem::Error::NoItemsFound => format!(
                    "{key_name}: no private key in it (PKCS#8, PKCS#1 or SEC1 PEM expected)"
                ),
                e => format!("{key_name}: {}", pem_error(&e)),
            })?;
            let names = x509::names(&chain[0]);
            let not_after = x509::not_after(&chain[0]);
            let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "{key_name}: this key does not match the certificate in {cert_name} (the server's own certificate must come first in it)"
                ),
                rustls::Error::InvalidCertificate(e) => {
                    format!("{cert_name}: the first certificate cannot be read ({e:?})")
                }
                e => format!("{key_name}: unusable key: {e}"),
            })?;
            if let Some(t) = not_after.filter(|_| warn) {
                if t < crate::sys::unix_time() as i64 {
                    log!(
                        Warn,
                        "tls",
                        "{cert_name}: the certificate expired on {} (served anyway; clients will refuse it)",
                        x509::date(t)
                    );
                }
            }
            if warn {
                warn_if_readable(&p.key);
            }
            certs.push(Certificate {
                names,
                not_after,
                cert_path: p.cert.clone(),
                key: Arc::new(certified),
            });
        }
        Ok(CertSet { certs })
    }

    /// The certificate for an SNI name: one naming it exactly, else one
    /// whose wildcard covers it, else any. Where several qualify (an RSA
    /// and an ECDSA certificate for one name, as nginx and HAProxy
    /// operators give both), the first whose key signs with a scheme the
    /// client offers; else the first of them.
    pub fn pick(&self, sni: Option<&str>, offered: &[SignatureScheme]) -> &Certificate {
        let name = sni.map(|n| n.to_ascii_lowercase());
        let name = name.as_deref().map(|n| n.trim_end_matches('.'));
        let exact = |c: &&Certificate| name.is_some_and(|s| c.names.iter().any(|n| n == s));
        let wildcard =
            |c: &&Certificate| name.is_some_and(|s| c.names.iter().any(|n| x509::matches(n, s)));
        self.first_fit(exact, offered)
            .or_else(|| self.first_fit(wildcard, offered))
            .or_else(|| self.first_fit(|_| true, offered))
            .expect("a CertSet holds at least one certificate")
    }

    /// Of the certificates `qualifies` keeps, the first the client can
    /// verify a signature of, else the first (the handshake then fails
    /// with the client's own complaint, as it would with one certificate).
    /// Schemes TLS 1.3 allows are tried first: a client offers PKCS#1 RSA
    /// for TLS 1.2, and an RSA key chosen for it would have nothing to sign
    /// with if the handshake turns out TLS 1.3 (a key that signs in TLS 1.3
    /// signs in TLS 1.2 as well).
    fn first_fit(
        &self,
        qualifies: impl Fn(&&Certificate) -> bool,
        offered: &[SignatureScheme],
    ) -> Option<&Certificate> {
        let mut tier = self.certs.iter().filter(&qualifies);
        let first = tier.next()?;
        if tier.next().is_none() {
            return Some(first); // no choice: nothing allocated, no signer made
        }
        let tls13: Vec<SignatureScheme> = offered
            .iter()
            .copied()
            .filter(|s| allowed_in_tls13(*s))
            .collect();
        let fit = [&tls13[..], offered].into_iter().find_map(|schemes| {
            self.certs
                .iter()
                .filter(&qualifies)
                .find(|c| c.key.key.choose_scheme(schemes).is_some())
        });
        fit.or(Some(first))
    }
}

/// Whether TLS 1.3 allows `s` (RFC 8446 4.2.3: no PKCS#1 RSA, no SHA-1):
/// of the schemes rustls's keys sign with, those are the ones it refuses.
fn allowed_in_tls13(s: SignatureScheme) -> bool {
    use SignatureScheme as S;
    !matches!(
        s,
        S::RSA_PKCS1_SHA1
            | S::RSA_PKCS1_SHA256
            | S::RSA_PKCS1_SHA384
            | S::RSA_PKCS1_SHA512
            | S::ECDSA_SHA1_Legacy
    )
}

impl ResolvesServerCert for CertSet {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cert = self.pick(hello.server_name(), hello.signature_schemes());
        Some(Arc::clone(&cert.key))
    }
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        e => format!("not a valid PEM file ({e:?})"),
    }
}

/// A private key others may read is worth a warning (nginx and sshd
/// operators expect one); the key itself is never logged.
fn warn_if_readable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            log!(
                Warn,
                "tls",
                "{}: the private key is readable by every user (mode {mode:o}); chmod 600 it",
                path.display()
            );
        }
    }
}

/// The certificates the `/metrics` page reports expiry for: the last set
/// this process loaded.
static LOADED: Mutex<Option<Arc<CertSet>>> = Mutex::new(None);

/// What a worker's TLS listener connections share.
pub struct ListenerTls {
    config: Arc<ServerConfig>,
    pub certs: Arc<CertSet>,
    shared: Option<&'static TlsShared>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListenerTls({} certificates)", self.certs.certs.len())
    }
}

impl ListenerTls {
    /// Loads the certificates and builds the server configuration: TLS 1.2
    /// and 1.3, ALPN `http/1.1` only, sessions in the shared cache. With
    /// `warn`, what deserves a warning is logged (once, by the supervisor).
    pub fn new(pairs: &[CertPair], warn: bool) -> Result<ListenerTls, String> {
        ListenerTls::from_pem(&read_files(pairs)?, warn)
    }

    /// The same from the files' bytes (a worker loads what the supervisor
    /// checked, from the shared block).
    pub fn from_pem(pems: &[PemPair], warn: bool) -> Result<ListenerTls, String> {
        let certs = Arc::new(CertSet::load(pems, warn)?);
        let shared = TlsShared::current();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS listener: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if let Some(s) = shared {
            config.session_storage = Arc::new(SessionStore(s));
        }
        if let Ok(mut l) = LOADED.lock() {
            *l = Some(Arc::clone(&certs));
        }
        Ok(ListenerTls {
            config: Arc::new(config),
            certs,
            shared,
        })
    }

    /// A TLS session for a connection the listener accepted (`peer`: its
    /// address, for log lines).
    pub fn accept(self: &Arc<Self>, tcp: Tcp, peer: &str) -> io::Result<Tls> {
        let conn = ServerConnection::new(Arc::clone(&self.config))
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Tls::accepted(tcp, conn, Arc::clone(self), peer))
    }

    pub(super) fn handshake_done(&self, tls13: bool, resumed: bool) {
        if let Some(s) = self.shared {
            s.handshakes[usize::from(tls13)].fetch_add(1, Relaxed);
            if resumed {
                s.resumed.fetch_add(1, Relaxed);
            }
        }
    }

    fn count_failure(&self, reason: &str) {
        if let (Some(s), Some(i)) = (
            self.shared,
            FAILURE_REASONS.iter().position(|r| *r == reason),
        ) {
            s.failures[i].fetch_add(1, Relaxed);
        }
    }

    /// A handshake (or a record after it) rustls refused: counted, and a
    /// line at most (rate-limited); the connection closes.
    pub(super) fn handshake_failed(&self, e: &rustls::Error, handshaking: bool, peer: &str) {
        use rustls::Error as E;
        let reason = match e {
            E::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
                | rustls::InvalidMessage::UnknownProtocolVersion,
            ) if handshaking => "not_tls",
            E::PeerIncompatible(_) => "no_common_protocol",
            E::AlertReceived(_) => "alert",
            _ => "protocol",
        };
        if handshaking {
            self.count_failure(reason);
        }
        let what = if reason == "not_tls" {
            "not TLS (plain HTTP sent to the TLS port?)".to_string()
        } else {
            e.to_string()
        };
        crate::log_limited!(
            Kind::TlsHandshake,
            Info,
            "TLS listener: {} from {peer}: {what}; closed",
            if handshaking {
                "handshake failed"
            } else {
                "bad record"
            }
        );
    }

    /// The client closed before the handshake finished.
    pub(super) fn handshake_closed(&self) {
        self.count_failure("closed");
    }

    /// The handshake had not finished by the header deadline.
    pub fn handshake_timed_out(&self) {
        self.count_failure("timeout");
    }
}

/// The listener's part of `/metrics`; nothing without a TLS listener.
pub fn render_metrics(o: &mut String) {
    use std::fmt::Write;
    let Some(s) = TlsShared::current() else {
        return;
    };
    let Some(certs) = LOADED.lock().ok().and_then(|l| l.clone()) else {
        return;
    };
    let _ = write!(
        o,
        "# HELP lb_tls_listener_handshakes_total TLS handshakes completed on the TLS listener, by version.\n\
         # TYPE lb_tls_listener_handshakes_total counter\n\
         lb_tls_listener_handshakes_total{{version=\"1.2\"}} {}\n\
         lb_tls_listener_handshakes_total{{version=\"1.3\"}} {}\n\
         # HELP lb_tls_listener_resumed_total Of those, handshakes that resumed a session.\n\
         # TYPE lb_tls_listener_resumed_total counter\n\
         lb_tls_listener_resumed_total {}\n\
         # HELP lb_tls_listener_handshake_failures_total TLS handshakes on the TLS listener that failed, by reason.\n\
         # TYPE lb_tls_listener_handshake_failures_total counter\n",
        s.handshakes[0].load(Relaxed),
        s.handshakes[1].load(Relaxed),
        s.resumed.load(Relaxed),
    );
    for (i, r) in FAILURE_REASONS.iter().enumerate() {
        let _ = writeln!(
            o,
            "lb_tls_listener_handshake_failures_total{{reason=\"{r}\"}} {}",
            s.failures[i].load(Relaxed)
        );
    }
    let _ = write!(
        o,
        "# HELP lb_tls_session_cache_total The TLS session cache shared by the workers: lookups that hit or missed, sessions stored.\n\
         # TYPE lb_tls_session_cache_total counter\n\
         lb_tls_session_cache_total{{result=\"hit\"}} {}\n\
         lb_tls_session_cache_total{{result=\"miss\"}} {}\n\
         lb_tls_session_cache_total{{result=\"store\"}} {}\n\
         # HELP lb_tls_certificate_reloads_total Reloads of the TLS listener's certificates, by result (a failure keeps the old ones).\n\
         # TYPE lb_tls_certificate_reloads_total counter\n\
         lb_tls_certificate_reloads_total{{result=\"success\"}} {}\n\
         lb_tls_certificate_reloads_total{{result=\"failure\"}} {}\n\
         # HELP lb_tls_certificate_expiry_seconds Seconds until a listener certificate's notAfter (negative: expired).\n\
         # TYPE lb_tls_certificate_expiry_seconds gauge\n",
        s.cache_hits.load(Relaxed),
        s.cache_misses.load(Relaxed),
        s.cache_stores.load(Relaxed),
        s.cert_reloads_ok.load(Relaxed),
        s.cert_reloads_failed.load(Relaxed),
    );
    let now = crate::sys::unix_time() as i64;
    for c in &certs.certs {
        let Some(t) = c.not_after else { continue };
        let name = c
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| c.cert_path.display().to_string());
        // `file` as well: one name can have two certificates (RSA and
        // ECDSA), and a series must not repeat.
        let clean = |s: &str| -> String {
            s.chars()
                .filter(|ch| !matches!(ch, '"' | '\\' | '\n'))
                .collect()
        };
        let (name, file) = (clean(&name), clean(&c.cert_path.display().to_string()));
        let _ = writeln!(
            o,
            "lb_tls_certificate_expiry_seconds{{name=\"{name}\",file=\"{file}\"}} {}",
            t - now
        );
    }
}
