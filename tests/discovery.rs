//! Backends found through DNS, end to end, against a real DNS server:
//! dnsmasq (Debian `dnsmasq-base`, installed by .ci/run) on a loopback port
//! with a hosts file and SRV records, backends on 127.0.0.2, 127.0.0.3, …
//! What an operator checks: a record that moves under `wrk` (0 failed
//! requests), a name with two addresses (both get traffic), SRV weights 3:1
//! (the exact split with weighted round robin), a name that appears after
//! start, the DNS server killed (traffic continues on the last answer), a
//! name that disappears (NXDOMAIN: its members go), and an answer too large
//! for UDP (retried over TCP: every address arrives).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A dnsmasq on 127.0.0.1:PORT answering from `hosts` (names under
/// `.test`; anything else under `.test` is NXDOMAIN), with `extra` options
/// (SRV records). Killed on drop.
struct Dns {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Dns {
    fn start(hosts: &str, extra: &[String]) -> Dns {
        let dir =
            std::env::temp_dir().join(format!("lb-dns-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts_file = dir.join("hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(common::dnsmasq::dnsmasq_binary())
                .args([
                    "-k",
                    &format!("--port={port}"),
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    &format!("--addn-hosts={}", hosts_file.display()),
                    "--local=/test/",
                    "--pid-file=",
                    "--log-facility=-",
                    "--local-ttl=1",
                ])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("dnsmasq is needed for the DNS tests (apt-get install dnsmasq-base)");
            let up = eventually(Duration::from_secs(5), || {
                child.try_wait().ok().flatten().is_none()
                    && std::net::UdpSocket::bind("127.0.0.1:0")
                        .and_then(|s| {
                            s.set_read_timeout(Some(Duration::from_millis(200)))?;
                            s.send_to(&query("app.test"), ("127.0.0.1", port))?;
                            let mut b = [0u8; 512];
                            s.recv(&mut b)
                        })
                        .is_ok()
            });
            if up {
                return Dns { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Rewrites the hosts file and has dnsmasq read it again (SIGHUP).
    fn set_hosts(&self, hosts: &str) {
        let tmp = self.dir.join("hosts.new");
        std::fs::write(&tmp, hosts).unwrap();
        std::fs::rename(&tmp, self.dir.join("hosts")).unwrap();
        signal(self.child.id(), 1);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A DNS query for `name`'s A record (only to see that dnsmasq answers).
fn query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A config following `backends` (JSON items) through `dns`, re-resolving
/// every 200 ms (dnsmasq's answers from a hosts file have a TTL of 1 s).
fn config(dns: &Dns, backends: &str, extra: &str) -> TempFile {
    temp_file(
        "lb.json",
        &format!(
            r#"{{"backends": [{backends}], "resolver": "{}", "dns_min_ttl_ms": 200, "dns_max_ttl_ms": 500{extra}}}"#,
            dns.addr()
        ),
    )
}

fn bodies(port: u16, n: usize) -> Vec<String> {
    let mut c = Client::connect(port);
    (0..n).map(|_| c.get("/").text()).collect()
}

/// `n` GETs, each on a connection of its own (an error response closes one).
fn fresh_bodies(port: u16, n: usize) -> Vec<String> {
    (0..n).map(|_| get(port, "/").text()).collect()
}

fn count(v: &[String], what: &str) -> usize {
    v.iter().filter(|b| b.contains(what)).count()
}

#[test]
fn a_name_with_two_addresses_sends_to_both_and_a_moved_record_loses_nothing_under_load() {
    let two = Backend::named_on("127.0.0.2", 0, "two");
    let port = two.port;
    let three = Backend::named_on("127.0.0.3", port, "three");
    let dns = Dns::start("127.0.0.2 app.test\n127.0.0.3 app.test\n", &[]);
    let conf = config(
        &dns,
        &format!(r#"{{"host": "app.test", "port": {port}}}"#),
        "",
    );
    let lb = Lb::start(&["-w", "2", "-c", conf.to_str().unwrap()]);
    let got = bodies(lb.port, 40);
    assert_eq!(count(&got, "two") + count(&got, "three"), 40, "{got:?}");
    assert!(
        count(&got, "two") >= 10 && count(&got, "three") >= 10,
        "{got:?}"
    );
    let m = scrape(lb.port);
    let members = format!("lb_dns_members{{name=\"app.test:{port}\"}}");
    assert_eq!(metric(&m, &members), Some(2), "{m}");
    // One name, two backends: a series each, told apart by `address`.
    let per_address: u64 = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| {
            let s = format!(
                "lb_backend_requests_total{{backend=\"app.test:{port}\",address=\"{ip}:{port}\"}}"
            );
            metric(&m, &s).unwrap_or_else(|| panic!("no {s} in\n{m}"))
        })
        .sum();
    assert_eq!(per_address, 40, "{m}");

    // The record moves to 127.0.0.4 only, under load.
    let four = Backend::named_on("127.0.0.4", port, "four");
    let load = wrk(lb.port, 5);
    std::thread::sleep(Duration::from_millis(1500));
    dns.set_hosts("127.0.0.4 app.test\n");
    let moved = eventually(Duration::from_secs(10), || {
        bodies(lb.port, 6).iter().all(|b| b.contains("four"))
    });
    let (done, failed, text) = wrk_result(load);
    assert!(moved, "{}", lb.log_text());
    assert!(done > 200, "{text}");
    assert_eq!(
        failed,
        0,
        "requests lost while the record moved:\n{text}\n{}",
        lb.log_text()
    );
    drop((two, three, four));
}

#[test]
fn srv_weights_3_to_1_split_exactly_with_weighted_round_robin() {
    let a = Backend::named_on("127.0.0.2", 0, "heavy");
    let b = Backend::named_on("127.0.0.3", 0, "light");
    let dns = Dns::start(
        "127.0.0.2 heavy.test\n127.0.0.3 light.test\n",
        &[
            format!("--srv-host=_http._tcp.app.test,heavy.test,{},0,3", a.port),
            format!("--srv-host=_http._tcp.app.test,light.test,{},0,1", b.port),
        ],
    );
    let conf = config(
        &dns,
        r#"{"srv": "_http._tcp.app.test"}"#,
        r#", "strategy": "weighted_round_robin""#,
    );
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let lb = Lb::start(&[
        "-w",
        "1",
        "--admin",
        &admin_addr,
        "-c",
        conf.to_str().unwrap(),
    ]);
    let got = bodies(lb.port, 400);
    assert_eq!(count(&got, "heavy"), 300, "{}", lb.log_text());
    assert_eq!(count(&got, "light"), 100);
    // The status page names it with its addresses and the last answer.
    let status = get(admin, "/status.json").text();
    assert!(
        status.contains("\"name\":\"srv _http._tcp.app.test\""),
        "{status}"
    );
    assert!(
        status.contains(&format!("\"127.0.0.2:{}\"", a.port)),
        "{status}"
    );
    assert!(status.contains("\"last_answer_unix\":1"), "{status}");
}

#[test]
fn a_name_that_appears_after_start_then_the_dns_server_dies_then_the_name_goes() {
    let be = Backend::named_on("127.0.0.2", 0, "late");
    let other = Backend::named("other");
    let mut dns = Dns::start("127.0.0.9 placeholder.test\n", &[]);
    let conf = config(
        &dns,
        &format!(
            r#"{{"host": "late.test", "port": {}}}, {{"host": "127.0.0.1", "port": {}}}"#,
            be.port, other.port
        ),
        "",
    );
    // Starts without it (a warning), serving the other backend.
    let lb = Lb::start(&["-w", "1", "-c", conf.to_str().unwrap()]);
    assert!(lb.log_has("late.test"), "{}", lb.log_text());
    assert!(bodies(lb.port, 4).iter().all(|b| b.contains("other")));
    // It appears.
    dns.set_hosts("127.0.0.2 late.test\n");
    assert!(
        eventually(Duration::from_secs(10), || count(
            &bodies(lb.port, 4),
            "late"
        ) == 2),
        "{}",
        lb.log_text()
    );
    // The DNS server dies: the last answer keeps serving.
    dns.kill();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&bodies(lb.port, 8), "late"), 4, "{}", lb.log_text());
    assert!(lb.log_has("serving its last answer"), "{}", lb.log_text());
    // A dead server is a timeout, or a refusal (ICMP port unreachable).
    let m = scrape(lb.port);
    let failed = metric(&m, "lb_dns_queries_total{result=\"timeout\"}").unwrap()
        + metric(&m, "lb_dns_queries_total{result=\"error\"}").unwrap();
    assert!(failed >= 1, "{m}");
}

/// A reload to names that do not resolve (a typo) keeps the backends that
/// serve, as nginx keeps its old configuration when an upstream's host is
/// not found: under `wrk` no request fails, the reload counts as failed
/// and says why, the names followed before are still followed, and the
/// reload's other settings are not applied. A reload to a name whose
/// answer is slow (the DNS server paused past the 2 s a reload waits) is
/// not refused: it applies once the answer comes.
#[test]
fn a_reload_whose_names_do_not_resolve_keeps_the_backends_serving() {
    let kept = Backend::named_on("127.0.0.2", 0, "kept");
    let port = kept.port;
    let moved = Backend::named_on("127.0.0.3", port, "moved");
    let dns = Dns::start("127.0.0.2 app.test\n", &[]);
    let backend = |host: &str| format!(r#"{{"host": "{host}", "port": {port}}}"#);
    let conf = config(&dns, &backend("app.test"), "");
    let first = std::fs::read_to_string(&*conf).unwrap();
    let rewrite = |host: &str, extra: &str| {
        let text = first.replace("app.test", host).replace(
            "\"dns_max_ttl_ms\": 500",
            &format!("\"dns_max_ttl_ms\": 500{extra}"),
        );
        let tmp = conf.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &*conf).unwrap();
    };
    let reloads = |lb: &Lb, result: &str| {
        let series = format!("lb_config_reloads_total{{result=\"{result}\"}}");
        metric(&scrape(lb.port), &series).unwrap()
    };
    let lb = Lb::start(&["-w", "2", "-c", conf.to_str().unwrap()]);
    assert_eq!(count(&bodies(lb.port, 4), "kept"), 4);
    let load = wrk(lb.port, 4);
    std::thread::sleep(Duration::from_millis(1000));
    rewrite("typo.test", r#", "strategy": "random""#);
    let refused = eventually(Duration::from_secs(10), || {
        lb.log_has("no backend of the new configuration resolved")
    });
    let (done, failed, text) = wrk_result(load);
    assert!(refused, "{}", lb.log_text());
    assert!(lb.log_has("typo.test"), "{}", lb.log_text());
    assert!(done > 200, "{text}");
    assert_eq!(
        failed,
        0,
        "requests lost to the reload:\n{text}\n{}",
        lb.log_text()
    );
    assert_eq!(count(&bodies(lb.port, 4), "kept"), 4);
    assert_eq!((reloads(&lb, "failure"), reloads(&lb, "success")), (1, 0));

    // app.test is still followed: its record moves, traffic follows, and
    // the refused reload's strategy was not taken.
    dns.set_hosts("127.0.0.3 app.test\n127.0.0.2 good.test\n");
    assert!(
        eventually(Duration::from_secs(10), || bodies(lb.port, 4)
            .iter()
            .all(|b| b.contains("moved"))),
        "{}",
        lb.log_text()
    );
    let last = lb.log_text();
    let last = last
        .lines()
        .rfind(|l| l.contains("generation"))
        .unwrap_or("");
    assert!(last.contains("strategy round_robin"), "{last}");

    // The DNS server paused: a reload to good.test waits for the answer
    // past its 2 s, and applies when it comes.
    signal(dns.child.id(), 19); // SIGSTOP
    rewrite("good.test", "");
    std::thread::sleep(Duration::from_millis(2500));
    signal(dns.child.id(), 18); // SIGCONT
    assert!(
        eventually(Duration::from_secs(15), || bodies(lb.port, 4)
            .iter()
            .all(|b| b.contains("kept"))),
        "{}",
        lb.log_text()
    );
    assert_eq!((reloads(&lb, "failure"), reloads(&lb, "success")), (1, 1));
    drop((kept, moved));
}

/// A SIGUSR2 upgrade after a refused reload: the new process reads the
/// file as it is now (the typo), resolves nothing, and keeps serving the
/// backends it was handed (a hand-over never publishes an empty set while
/// some serve) until its names resolve. Under `wrk`, no request fails.
#[test]
fn an_upgrade_after_a_refused_reload_keeps_the_backends_it_was_handed() {
    let kept = Backend::named_on("127.0.0.2", 0, "kept");
    let port = kept.port;
    let dns = Dns::start("127.0.0.2 app.test\n", &[]);
    let conf = config(
        &dns,
        &format!(r#"{{"host": "app.test", "port": {port}}}"#),
        "",
    );
    let dir = std::env::temp_dir().join(format!("lb-dns-up-{}-{port}", std::process::id()));
    let bin = binary_copy(&dir);
    let mut lb = Lb::start_bin(&bin, &["-w", "2", "-c", conf.to_str().unwrap()]);
    assert_eq!(count(&bodies(lb.port, 4), "kept"), 4);
    let typo = std::fs::read_to_string(&*conf)
        .unwrap()
        .replace("app.test", "typo.test");
    let tmp = conf.with_extension("tmp");
    std::fs::write(&tmp, typo).unwrap();
    std::fs::rename(&tmp, &*conf).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || lb
            .log_has("no backend of the new configuration resolved")),
        "{}",
        lb.log_text()
    );
    let load = wrk(lb.port, 6);
    std::thread::sleep(Duration::from_millis(500));
    let successor = upgrade_and_wait(&mut lb, Duration::from_secs(10));
    // Past the 2 s a hand-over waits for its names' first answers: the
    // set it was handed kept (or, as before, none published).
    assert!(
        eventually(Duration::from_secs(10), || lb
            .log_has("no backend resolved yet")
            || lb.log_has("backends none")),
        "{}",
        lb.log_text()
    );
    let (done, failed, text) = wrk_result(load);
    assert!(done > 200, "{text}");
    assert_eq!(failed, 0, "requests lost:\n{text}\n{}", lb.log_text());
    assert!(lb.log_has("no backend resolved yet"), "{}", lb.log_text());
    assert_eq!(count(&bodies(lb.port, 4), "kept"), 4, "{}", lb.log_text());
    drop(successor);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A SIGUSR2 upgrade while the DNS server does not answer: the new
/// process starts its names from the members its predecessor published
/// (their last good answers), so a name beside a literal backend keeps its
/// share, as it would in a running process, instead of being published
/// without (all traffic to the literal backend until DNS came back).
#[test]
fn an_upgrade_while_dns_is_silent_keeps_the_names_last_answers() {
    let named = Backend::named_on("127.0.0.2", 0, "named");
    let literal = Backend::named("literal");
    let dns = Dns::start("127.0.0.2 app.test\n", &[]);
    let conf = config(
        &dns,
        &format!(
            r#"{{"host": "app.test", "port": {}}}, {{"host": "127.0.0.1", "port": {}}}"#,
            named.port, literal.port
        ),
        "",
    );
    let dir = std::env::temp_dir().join(format!(
        "lb-dns-quiet-{}-{}",
        std::process::id(),
        named.port
    ));
    let bin = binary_copy(&dir);
    let mut lb = Lb::start_bin(&bin, &["-w", "1", "-c", conf.to_str().unwrap()]);
    assert_eq!(count(&bodies(lb.port, 4), "named"), 2);
    signal(dns.child.id(), 19); // SIGSTOP: queries go unanswered
    let successor = upgrade_and_wait(&mut lb, Duration::from_secs(20));
    // Past the 2 s a hand-over waits for names it has no answer for.
    std::thread::sleep(Duration::from_millis(3000));
    let got = bodies(lb.port, 8);
    signal(dns.child.id(), 18); // SIGCONT
    assert_eq!(count(&got, "named"), 4, "{got:?}\n{}", lb.log_text());
    drop(successor);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_name_that_is_gone_loses_its_members_after_the_ttl() {
    let be = Backend::named_on("127.0.0.2", 0, "gone");
    let other = Backend::named("stays");
    let dns = Dns::start("127.0.0.2 gone.test\n", &[]);
    let conf = config(
        &dns,
        &format!(
            r#"{{"host": "gone.test", "port": {}}}, {{"host": "127.0.0.1", "port": {}}}"#,
            be.port, other.port
        ),
        "",
    );
    let lb = Lb::start(&["-w", "1", "-c", conf.to_str().unwrap()]);
    assert_eq!(count(&bodies(lb.port, 4), "gone"), 2);
    dns.set_hosts("127.0.0.9 placeholder.test\n");
    assert!(
        eventually(Duration::from_secs(10), || count(
            &bodies(lb.port, 4),
            "stays"
        ) == 4),
        "{}",
        lb.log_text()
    );
    assert!(lb.log_has("the name is gone"), "{}", lb.log_text());
    assert!(
        metric(
            &scrape(lb.port),
            "lb_dns_queries_total{result=\"nxdomain\"}"
        )
        .unwrap()
            >= 1
    );
}

#[test]
fn an_answer_too_large_for_udp_arrives_over_tcp() {
    // 40 addresses: more than a 512-byte UDP answer holds.
    let mut hosts = String::new();
    for i in 0..40 {
        hosts.push_str(&format!("127.0.1.{} many.test\n", i + 1));
    }
    let dns = Dns::start(&hosts, &[]);
    let conf = config(&dns, r#"{"host": "many.test", "port": 9}"#, "");
    let lb = Lb::start(&["-w", "1", "-c", conf.to_str().unwrap()]);
    let m = scrape(lb.port);
    assert_eq!(
        metric(&m, "lb_dns_members{name=\"many.test:9\"}"),
        Some(40),
        "{m}\n{}",
        lb.log_text()
    );
}

/// `--check` warns about a name that does not resolve, and still passes.
#[test]
fn check_warns_about_a_name_that_does_not_resolve() {
    let dns = Dns::start("127.0.0.2 app.test\n", &[]);
    let (code, out, err) = run_lb(&[
        "--resolver",
        &dns.addr(),
        "-b",
        "nowhere.test:80",
        "-b",
        "app.test:80",
        "--check",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: backend nowhere.test:80: no such name"),
        "{err}"
    );
}

/// SRV priorities: with every target of the lowest priority down, the next
/// one serves, steadily (no set published over and over).
#[test]
fn srv_priority_fallback_serves_the_next_priority_without_flapping() {
    let live = Backend::named_on("127.0.0.3", 0, "fallback");
    let dead_port = refused_port();
    let dns = Dns::start(
        "127.0.0.2 dead.test\n127.0.0.3 live.test\n",
        &[
            format!("--srv-host=_http._tcp.fb.test,dead.test,{dead_port},10,1"),
            format!("--srv-host=_http._tcp.fb.test,live.test,{},20,1", live.port),
        ],
    );
    let conf = config(
        &dns,
        r#"{"srv": "_http._tcp.fb.test"}"#,
        r#", "probe_interval_ms": 200, "unhealthy_threshold": 1"#,
    );
    let lb = Lb::start(&["-w", "1", "-c", conf.to_str().unwrap()]);
    assert!(
        eventually(Duration::from_secs(10), || {
            fresh_bodies(lb.port, 4)
                .iter()
                .all(|b| b.contains("fallback"))
        }),
        "{}",
        lb.log_text()
    );
    let gen = |lb: &Lb| metric(&scrape(lb.port), "lb_config_generation").unwrap();
    let before = gen(&lb);
    let got = fresh_bodies(lb.port, 30);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&got, "fallback"), 30, "{got:?}\n{}", lb.log_text());
    assert_eq!(
        gen(&lb),
        before,
        "the set keeps being published:\n{}",
        lb.log_text()
    );
}

/// 64 backends (the most) is not an overflow: no warning, let alone one
/// every tick.
#[test]
fn sixty_four_backends_log_no_overflow_warning() {
    let be = Backend::named("many");
    let ports: Vec<String> = (0..63)
        .map(|i| format!("127.0.0.{}:{}", i + 2, be.port))
        .collect();
    let mut args: Vec<&str> = vec!["-w", "1", "-b", "127.0.0.1:1"];
    for p in &ports {
        args.extend(["-b", p]);
    }
    let lb = Lb::start(&args);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!lb.log_has("at most 64 backends"), "{}", lb.log_text());
}
