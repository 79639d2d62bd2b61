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
