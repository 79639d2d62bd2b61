//! The resolver (src/dns/) against a real name server: dnsmasq on a
//! loopback high port, one per test, killed at the end. What the unit tests
//! check against hand-made answers, here against the bytes a real server
//! sends: two-address names over A and AAAA, SRV with weights, ports and
//! additional records, CNAMEs, NXDOMAIN, a truncated UDP answer completed
//! over TCP; and a hosts file answering without a query, a silent server
//! timing out.
//!
//! dnsmasq is required: without it the tests fail saying how to install it
//! (CI installs it), they do not skip.

use lb::dns::{DnsError, Hosts, Lookup, QType, ResolvConf, Resolved, Resolver, Token};
use lb::sys;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/dnsmasq.rs"]
mod dnsmasq;
use dnsmasq::dnsmasq_binary;

/// Every wait in this file ends by then.
const LIMIT: Duration = Duration::from_secs(10);

/// The addresses of big.example.test: more than a 1232-byte UDP answer holds.
fn big_addrs() -> Vec<IpAddr> {
    (1..=100)
        .map(|i: u32| IpAddr::from([10, 1, (i / 250) as u8, (i % 250 + 1) as u8]))
        .collect()
}

/// A dnsmasq answering for example.test only (NXDOMAIN for unknown names
/// there, `--local`), every record with TTL 300. Killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Dnsmasq {
    fn start() -> Dnsmasq {
        let bin = dnsmasq_binary();
        let dir = std::env::temp_dir().join(format!(
            "lb-dns-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut hosts = String::new();
        for ip in ["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"] {
            hosts.push_str(&format!("{ip} two.example.test\n"));
        }
        for ip in big_addrs() {
            hosts.push_str(&format!("{ip} big.example.test\n"));
        }
        let hosts_file = dir.join("hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        let log = dir.join("dnsmasq.log");
        let mut last = String::new();
        // The port is free when picked; another process may take it before
        // dnsmasq binds it: then dnsmasq exits and another port is tried.
        for _ in 0..5 {
            let port = free_udp_and_tcp_port();
            let mut child = Command::new(&bin)
                .args([
                    "--no-daemon",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    &format!("--port={port}"),
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--local=/example.test/",
                    "--local-ttl=300",
                    &format!("--addn-hosts={}", hosts_file.display()),
                    "--host-record=a.example.test,10.0.1.1",
                    "--host-record=b.example.test,10.0.1.2,fd00::12",
                    "--cname=alias.example.test,two.example.test",
                    "--cname=c.example.test,two.example.test",
                    "--srv-host=_http._tcp.example.test,a.example.test,8080,10,60",
                    "--srv-host=_http._tcp.example.test,b.example.test,8081,10,40",
                    "--srv-host=_http._tcp.example.test,c.example.test,8082,20,0",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let start = Instant::now();
            while start.elapsed() < LIMIT {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "dnsmasq exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                if answers(addr) {
                    return Dnsmasq { child, addr, dir };
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            if start.elapsed() >= LIMIT {
                last = format!("dnsmasq on {addr} did not answer within {LIMIT:?}");
            }
        }
        panic!("{last}");
    }

    fn conf(&self) -> ResolvConf {
        ResolvConf {
            nameservers: vec![self.addr],
            search: Vec::new(),
            ndots: 1,
            timeout_ms: 2000,
            attempts: 2,
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Sends one query for two.example.test over UDP and waits 200 ms for
/// a checked answer.
fn answers(server: SocketAddr) -> bool {
    udp_exchange(
        server,
        "two.example.test",
        QType::A,
        Duration::from_millis(200),
    )
    .is_some()
}

/// One query over UDP with EDNS0 (1232), the answer read by the parser.
fn udp_exchange(
    server: SocketAddr,
    name: &str,
    qtype: QType,
    wait: Duration,
) -> Option<lb::dns::Response> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    let q = lb::dns::encode_query(0x4242, name, qtype, Some(1232)).unwrap();
    sock.send_to(&q, server).ok()?;
    let mut buf = [0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    lb::dns::parse_response(&buf[..n], 0x4242, name, qtype).ok()
}

type Outcome = Result<Resolved, DnsError>;

/// Drives the resolver as the supervisor's loop would (poll on its fds
/// until its deadline, then drive) until every token has its answer.
fn run(r: &mut Resolver, tokens: &[Token]) -> Vec<Outcome> {
    let start = Instant::now();
    let mut got: Vec<Option<Outcome>> = vec![None; tokens.len()];
    while got.iter().any(Option::is_none) {
        assert!(
            start.elapsed() < LIMIT,
            "no answer within {LIMIT:?}: {got:?}"
        );
        let mut fds = Vec::new();
        r.poll_fds(&mut fds);
        let now = sys::now_ms();
        let wait = r
            .next_deadline()
            .map_or(100, |d| d.saturating_sub(now).min(100));
        let _ = sys::poll(&mut fds, wait as i32);
        for (t, res) in r.drive(sys::now_ms()) {
            let i = tokens.iter().position(|x| *x == t).expect("our token");
            got[i] = Some(res);
        }
    }
    got.into_iter().map(Option::unwrap).collect()
}

fn one(r: &mut Resolver, name: &str, what: Lookup) -> Outcome {
    let t = r.lookup(name, what, sys::now_ms());
    run(r, &[t]).pop().unwrap()
}

fn set(addrs: &[IpAddr]) -> BTreeSet<IpAddr> {
    addrs.iter().copied().collect()
}

fn ips(s: &[&str]) -> Vec<IpAddr> {
    s.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn a_and_aaaa_of_a_name_with_two_of_each() {
    let d = Dnsmasq::start();
    let mut r = Resolver::new(d.conf(), Hosts::default());
    let got = one(&mut r, "two.example.test", Lookup::Addrs).unwrap();
    assert_eq!(
        set(&got.addrs),
        set(&ips(&["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"]))
    );
    assert!(got.addrs[..2].iter().all(IpAddr::is_ipv4), "A first");
    assert_eq!((got.ttl_ms, got.from_hosts), (300_000, false));
    assert!(got.srv.is_empty());
    // A name with A only: the AAAA NODATA does not make it fail.
    let got = one(&mut r, "a.example.test", Lookup::Addrs).unwrap();
    assert_eq!(got.addrs, ips(&["10.0.1.1"]));
    // The same through the search list (fewer dots than ndots).
    let mut conf = d.conf();
    conf.search = vec!["nowhere.example.test".into(), "example.test".into()];
    let mut r = Resolver::new(conf, Hosts::default());
    let got = one(&mut r, "two", Lookup::Addrs).unwrap();
    assert_eq!(got.addrs.len(), 4);
}

#[test]
fn srv_with_weights_ports_and_target_addresses() {
    let d = Dnsmasq::start();
    let mut r = Resolver::new(d.conf(), Hosts::default());
    let got = one(&mut r, "_http._tcp.example.test", Lookup::Srv).unwrap();
    let srv: Vec<_> = got
        .srv
        .iter()
        .map(|s| {
            (
                s.priority,
                s.weight,
                s.port,
                s.target.as_str(),
                set(&s.addrs),
            )
        })
        .collect();
    let two = set(&ips(&["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"]));
    let mut want = vec![
        (
            10,
            40,
            8081,
            "b.example.test",
            set(&ips(&["10.0.1.2", "fd00::12"])),
        ),
        (10, 60, 8080, "a.example.test", set(&ips(&["10.0.1.1"]))),
        // c is a CNAME dnsmasq gives no additional record for: looked up.
        (20, 0, 8082, "c.example.test", two),
    ];
    let mut have = srv.clone();
    have[..2].sort_by_key(|s| s.1);
    want[..2].sort_by_key(|s| s.1);
    assert_eq!(have, want);
    // The addresses to use: the lowest priority value's targets.
    assert_eq!(
        set(&got.addrs),
        set(&ips(&["10.0.1.1", "10.0.1.2", "fd00::12"]))
    );
    assert_eq!(got.ttl_ms, 300_000);
}

#[test]
fn cname_and_nxdomain() {
    let d = Dnsmasq::start();
    let mut r = Resolver::new(d.conf(), Hosts::default());
    let got = one(&mut r, "alias.example.test", Lookup::Addrs).unwrap();
    assert_eq!(got.addrs.len(), 4);
    assert_eq!(got.ttl_ms, 300_000);
    // dnsmasq sends no SOA with its NXDOMAIN: the default negative TTL.
    assert_eq!(
        one(&mut r, "nx.example.test", Lookup::Addrs),
        Err(DnsError::NxDomain { ttl_ms: 30_000 })
    );
    assert_eq!(
        one(&mut r, "_none._tcp.example.test", Lookup::Srv),
        Err(DnsError::NxDomain { ttl_ms: 30_000 })
    );
}

#[test]
fn hosts_file_answers_without_a_query() {
    let d = Dnsmasq::start();
    // dnsmasq says NXDOMAIN for db.example.test: the hosts file wins.
    let hosts = Hosts::parse("192.0.2.44 db.example.test db\n2001:db8::44 db.example.test\n");
    let mut r = Resolver::new(d.conf(), hosts);
    let now = sys::now_ms();
    let t = r.lookup("DB.example.test", Lookup::Addrs, now);
    let got = r.drive(now);
    assert_eq!(got.len(), 1, "answered by the first drive, no socket");
    let (tok, res) = &got[0];
    assert_eq!(*tok, t);
    let res = res.as_ref().unwrap();
    assert_eq!(res.addrs, ips(&["192.0.2.44", "2001:db8::44"]));
    assert!(res.from_hosts);
    // An alias, on the IPv4 line only.
    r.lookup("db", Lookup::Addrs, now);
    let got = r.drive(now);
    assert_eq!(got[0].1.as_ref().unwrap().addrs, ips(&["192.0.2.44"]));
    // A name the file does not have still goes to the server.
    assert!(
        !one(&mut r, "two.example.test", Lookup::Addrs)
            .unwrap()
            .from_hosts
    );
}

#[test]
fn a_silent_server_times_out_after_timeout_times_attempts() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let conf = ResolvConf {
        nameservers: vec![silent.local_addr().unwrap()],
        search: Vec::new(),
        ndots: 1,
        timeout_ms: 300,
        attempts: 2,
    };
    let mut r = Resolver::new(conf, Hosts::default());
    let start = Instant::now();
    assert_eq!(
        one(&mut r, "two.example.test", Lookup::Addrs),
        Err(DnsError::Timeout)
    );
    let took = start.elapsed();
    // Deadlines are kept in whole milliseconds: up to 1 ms early a try.
    assert!(
        took >= Duration::from_millis(590) && took < Duration::from_millis(1500),
        "timeout 300 ms × 2 attempts took {took:?}"
    );
}

#[test]
fn a_truncated_answer_is_completed_over_tcp() {
    let d = Dnsmasq::start();
    // Over UDP the answer does not fit in 1232 bytes: dnsmasq truncates it.
    let udp = udp_exchange(d.addr, "big.example.test", QType::A, LIMIT).expect("a UDP answer");
    assert!(udp.truncated, "dnsmasq should truncate: {udp:?}");
    let mut r = Resolver::new(d.conf(), Hosts::default());
    let got = one(&mut r, "big.example.test", Lookup::Addrs).unwrap();
    assert_eq!(got.addrs.len(), 100);
    assert_eq!(set(&got.addrs), set(&big_addrs()));
    assert_eq!(got.ttl_ms, 300_000);
}

#[test]
fn lookups_run_side_by_side() {
    let d = Dnsmasq::start();
    let mut r = Resolver::new(d.conf(), Hosts::default());
    let now = sys::now_ms();
    let names = [
        ("two.example.test", Lookup::Addrs),
        ("big.example.test", Lookup::Addrs),
        ("alias.example.test", Lookup::Addrs),
        ("nx.example.test", Lookup::Addrs),
        ("_http._tcp.example.test", Lookup::Srv),
    ];
    let tokens: Vec<Token> = names.iter().map(|(n, w)| r.lookup(n, *w, now)).collect();
    let got = run(&mut r, &tokens);
    let sizes: Vec<_> = got
        .iter()
        .map(|g| {
            g.as_ref()
                .map(|r| r.addrs.len() + r.srv.len())
                .map_err(Clone::clone)
        })
        .collect();
    assert_eq!(
        sizes,
        [
            Ok(4),
            Ok(100),
            Ok(4),
            Err(DnsError::NxDomain { ttl_ms: 30_000 }),
            Ok(3 + 3)
        ]
    );
    assert_eq!(r.pending(), 0);
    assert_eq!(r.next_deadline(), None);
}
