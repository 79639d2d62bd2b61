//! TLS test support: a private CA (rcgen) and TLS backends (rustls server
//! over blocking sockets, a thread per connection).

use super::*;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A private CA.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A server certificate for `names` (DNS names and IP addresses).
    pub fn leaf(
        &self,
        names: &[&str],
        expired: bool,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        for n in names {
            p.subject_alt_names.push(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            });
        }
        p.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone(), self.issuer.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    pub fn pem_file(&self, name: &str) -> TempFile {
        temp_file(name, &self.issuer.pem())
    }
}

/// What a TLS backend does with one connection after the handshake.
pub type Serve = dyn Fn(&mut StreamOwned<ServerConnection, TcpStream>) + Send + Sync;

/// A TLS backend: a thread per connection, counting connections (TCP
/// accepts) and requests.
pub struct TlsBackend {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl TlsBackend {
    pub fn start(
        cert: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        serve: Arc<Serve>,
    ) -> TlsBackend {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(cert.0, cert.1)
                .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                c.fetch_add(1, Ordering::Relaxed);
                let config = config.clone();
                let serve = serve.clone();
                thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let conn = ServerConnection::new(config).unwrap();
                    let mut tls = StreamOwned::new(conn, s);
                    serve(&mut tls);
                });
            }
        });
        TlsBackend {
            port,
            connections,
            requests: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Answers every request with `handler(request)`, keep-alive, and a
    /// `close_notify` when the client closes.
    pub fn http(
        cert: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        handler: impl Fn(&Message) -> Vec<u8> + Send + Sync + 'static,
    ) -> TlsBackend {
        let requests = Arc::new(AtomicUsize::new(0));
        let r = requests.clone();
        let serve: Arc<Serve> = Arc::new(move |tls| {
            loop {
                let mut reader = BufReader::new(&mut *tls);
                let Some((raw_head, start, headers)) = read_head(&mut reader) else {
                    break;
                };
                let framed = headers.iter().any(|(n, _)| {
                    n.eq_ignore_ascii_case("content-length")
                        || n.eq_ignore_ascii_case("transfer-encoding")
                });
                let (body, chunked) = read_body(&mut reader, &headers, !framed);
                drop(reader);
                let m = Message {
                    start,
                    headers,
                    body,
                    raw_head,
                    chunked,
                };
                r.fetch_add(1, Ordering::Relaxed);
                if tls.write_all(&handler(&m)).is_err() || tls.flush().is_err() {
                    return;
                }
            }
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
        let mut b = TlsBackend::start(cert, serve);
        b.requests = requests;
        b
    }

    pub fn https(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

// ---- the TLS listener: certificates as PEM files, an HTTPS client ----------

impl Ca {
    /// A server certificate for DNS `names` as PEM (chain with the CA, and a
    /// PKCS#8 key); `not_after` a year, else far ahead.
    pub fn leaf_pem(&self, names: &[&str], not_after: Option<(i32, u8, u8)>) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        for n in names {
            p.subject_alt_names
                .push(SanType::DnsName((*n).try_into().unwrap()));
        }
        p.distinguished_name.push(DnType::CommonName, names[0]);
        if let Some((y, m, d)) = not_after {
            p.not_before = date_time_ymd(y - 1, 1, 1);
            p.not_after = date_time_ymd(y, m, d);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            format!("{}{}", cert.pem(), self.issuer.pem()),
            key.serialize_pem(),
        )
    }
}

/// The leaf certificate of a PEM chain, DER (to compare with what a
/// client was shown).
pub fn leaf_der(chain_pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Accepts any server certificate and records the leaf it was shown.
#[derive(Debug)]
pub struct Recorder {
    pub seen: std::sync::Mutex<Vec<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.seen.lock().unwrap().push(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How an HTTPS client checks the listener.
pub enum Trust<'a> {
    /// Verified against this CA (names checked).
    Ca(&'a Ca),
    /// Not verified; the leaf certificates shown are recorded.
    Record(Arc<Recorder>),
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            seen: std::sync::Mutex::new(Vec::new()),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    pub fn last(&self) -> Vec<u8> {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// A client configuration: `versions` (e.g. `&[&rustls::version::TLS13]`),
/// ALPN `alpn`, its own session cache (so reconnects resume) unless it
/// records certificates.
pub fn client_config(
    trust: Trust<'_>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&str],
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap();
    let recording = matches!(trust, Trust::Record(_));
    let mut c = match trust {
        Trust::Ca(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).unwrap();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Record(r) => builder
            .dangerous()
            .with_custom_certificate_verifier(r)
            .with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // A resumed handshake shows no certificate: a recording client makes
    // full handshakes only.
    c.resumption = if recording {
        rustls::client::Resumption::disabled()
    } else {
        rustls::client::Resumption::in_memory_sessions(64)
    };
    Arc::new(c)
}

/// What one HTTPS exchange showed.
#[derive(Debug)]
pub struct Https {
    pub status: u16,
    pub head: String,
    pub body: String,
    pub resumed: bool,
    pub version: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
}

/// `GET path` over a new TLS connection to `127.0.0.1:port` with SNI
/// `sni` (an IP address sends none), `Connection: close`; the response
/// read to the end.
pub fn https_get(
    port: u16,
    sni: &str,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Https, String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, s);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match std::io::Read::read_to_end(&mut tls, &mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no response: {text:?}"))?;
    Ok(Https {
        status,
        head: head.to_string(),
        body: body.to_string(),
        resumed: tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        version: tls.conn.protocol_version(),
        alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
    })
}
