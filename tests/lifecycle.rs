//! A lifecycle that cannot lose the service (issue: upgrades, region
//! ownership, systemd). Each test is an operator's bad day found from
//! outside; each fails on the build before its fix. Fault tests run under
//! wrk and count every failed request.

mod common;
use common::*;
use std::thread;
use std::time::{Duration, Instant};

/// An upgrade whose successor cannot start its workers (its access log's
/// directory was removed) does not take over: the old process keeps
/// serving, nothing is lost, the failure is counted, and the region is as
/// it was (the successor wrote nothing to it).
#[test]
fn an_upgrade_whose_workers_cannot_start_does_not_take_over() {
    let a = demo_backend("a");
    for mode in ["mp", "sp"] {
        let dir = std::env::temp_dir().join(format!("lb-life-nolog-{}-{mode}", std::process::id()));
        let bin = binary_copy(&dir);
        let logdir = dir.join("logs");
        std::fs::create_dir_all(&logdir).unwrap();
        let log = logdir.join("access.log");
        std::env::set_var("LB_UPGRADE_READY_TIMEOUT_MS", "3000");
        let mut lb = Lb::start_bin(
            &bin,
            &[
                "-m",
                mode,
                "-w",
                "2",
                "--access-log",
                log.to_str().unwrap(),
                "-b",
                &a,
            ],
        );
        std::env::remove_var("LB_UPGRADE_READY_TIMEOUT_MS");
        let before = scrape(lb.port);
        let gen = metric(&before, "lb_config_generation");
        let load = wrk(lb.port, 6);
        thread::sleep(Duration::from_millis(1000));
        std::fs::remove_dir_all(&logdir).unwrap();
        signal(lb.pid(), 12); // SIGUSR2
        assert!(
            eventually(Duration::from_secs(10), || lb.log_has("upgrade failed")),
            "{mode}: {}",
            lb.log_text()
        );
        let (done, failed, text) = wrk_result(load);
        assert!(done > 500, "{text}");
        assert_eq!(
            failed,
            0,
            "{mode}: requests lost:\n{text}\n{}",
            lb.log_text()
        );
        assert_eq!(
            lb.try_wait(),
            None,
            "{mode}: the old process must keep serving"
        );
        assert_eq!(get(lb.port, "/").status(), 200);
        let m = scrape(lb.port);
        assert_eq!(
            metric(&m, "lb_upgrades_total{result=\"failure\"}"),
            Some(1),
            "{m}"
        );
        assert_eq!(
            metric(&m, "lb_upgrades_total{result=\"success\"}"),
            Some(0),
            "{m}"
        );
        assert_eq!(metric(&m, "lb_workers"), Some(2), "{mode}: {m}");
        assert_eq!(
            metric(&m, "lb_config_generation"),
            gen,
            "{mode}: the successor published"
        );
        // The successor and its workers are gone.
        let needle = dir.to_str().unwrap().to_string();
        let old: Vec<u32> = std::iter::once(lb.pid())
            .chain(children(lb.pid()).into_iter().map(|(p, _)| p))
            .collect();
        let others = || -> Vec<u32> {
            running_with(&needle)
                .into_iter()
                .filter(|p| !old.contains(p))
                .collect()
        };
        assert!(
            eventually(Duration::from_secs(10), || others().is_empty()),
            "{mode}: successor processes left: {:?}",
            others()
        );
        drop(lb);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// After an sp upgrade the old threads' exit does not touch the gauges the
/// successor now owns: `lb_workers` stays right and `lb_connections_active`
/// never wraps below zero.
#[test]
fn an_sp_upgrade_keeps_the_gauges_true() {
    let a = demo_backend("a");
    let dir = std::env::temp_dir().join(format!("lb-life-sp-{}", std::process::id()));
    let bin = binary_copy(&dir);
    let mut lb = Lb::start_bin(&bin, &["-m", "sp", "-w", "2", "-b", &a]);
    // Connections held across the upgrade, closed after it.
    let mut held: Vec<Client> = (0..4).map(|_| lb.conn()).collect();
    for c in &mut held {
        assert_eq!(c.get("/").status(), 200);
    }
    let successor = upgrade_and_wait(&mut lb, Duration::from_secs(10));
    drop(held);
    for _ in 0..20 {
        assert_eq!(get(lb.port, "/").status(), 200);
    }
    thread::sleep(Duration::from_millis(200));
    let m = scrape(lb.port);
    assert_eq!(metric(&m, "lb_workers"), Some(2), "{m}");
    let active = metric(&m, "lb_connections_active").unwrap();
    assert!(active <= 2, "lb_connections_active {active}:\n{m}");
    drop(successor);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kill -USR2` then `kill -TERM` (a restart script, systemd stopping the
/// unit): the upgrade is cancelled, the old process drains and exits 0,
/// nothing is left running or spinning, and the port is free for a fresh
/// start.
#[test]
fn a_stop_during_a_pending_upgrade_cancels_it_and_frees_the_port() {
    let a = demo_backend("a");
    for mode in ["mp", "sp"] {
        let dir = std::env::temp_dir().join(format!("lb-life-term-{}-{mode}", std::process::id()));
        let bin = binary_copy(&dir);
        let real = format!("{bin}.real");
        std::fs::copy(&bin, &real).unwrap();
        let mut lb = Lb::start_bin(&bin, &["-m", mode, "-w", "2", "-b", &a]);
        let port = lb.port;
        // The new build takes a moment to start: the stop lands meanwhile.
        replace_binary(
            &bin,
            format!("#!/bin/sh\nsleep 1\nexec {real} \"$@\"\n").as_bytes(),
            0o755,
        );
        signal(lb.pid(), 12); // SIGUSR2
        assert!(eventually(Duration::from_secs(5), || lb
            .log_has("waiting for it to be ready")));
        signal(lb.pid(), 15); // SIGTERM
        assert!(
            eventually(Duration::from_secs(15), || lb.try_wait().is_some()),
            "{mode}: the old process did not exit\n{}",
            lb.log_text()
        );
        assert_eq!(lb.try_wait(), Some(0), "{mode}: {}", lb.log_text());
        assert!(lb.log_has("upgrade cancelled"), "{mode}: {}", lb.log_text());
        let needle = dir.to_str().unwrap().to_string();
        thread::sleep(Duration::from_millis(1500)); // past the wrapper's sleep
        let left = running_with(&needle);
        let spinning: Vec<(u32, u64)> = left
            .iter()
            .map(|&p| {
                let t0 = cpu_ticks(p);
                thread::sleep(Duration::from_millis(500));
                (p, cpu_ticks(p) - t0)
            })
            .collect();
        assert!(
            eventually(Duration::from_secs(12), || running_with(&needle).is_empty()),
            "{mode}: left running: {left:?}, CPU ticks in 0.5 s: {spinning:?}"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{mode}: the port still accepts after the stop"
        );
        // A fresh start on the same port.
        let mut fresh = std::process::Command::new(LB)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-w",
                "1",
                "-b",
                &a,
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let served = eventually(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let status = served.then(|| get(port, "/").status());
        let _ = fresh.kill();
        let _ = fresh.wait();
        assert_eq!(status, Some(200), "{mode}: a fresh start on the port");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Two publishers (an old supervisor's reload racing a successor's
/// publish) cannot interleave: a non-owner is refused, and the owner's
/// publishes never leave `seq` odd or an array torn.
#[test]
fn only_the_owner_publishes() {
    use lb::config::{HealthSettings, Strategy};
    use lb::shm::{BackendEntry, Region, Settings};
    let (r, _fd) = Region::create().unwrap();
    let st = Settings::new(Strategy::RoundRobin, &HealthSettings::default());
    let e = BackendEntry::new("a", "127.0.0.1:1".parse().unwrap(), 1, false, 0);
    assert!(r.publish(&[e], &st).is_ok());
    let me = std::process::id();
    assert!(r.hand_over(me, me + 1));
    assert!(
        r.publish(&[e], &st).is_err(),
        "a process that handed over still publishes"
    );
    assert!(!r.hand_over(me, me), "handed over twice");
    let t0 = Instant::now();
    let mut out = Vec::new();
    let (g, _) = r.read_backends(&mut out);
    assert_eq!((g, out.len()), (1, 1));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// A reload that changes how a backend is reached (here: TLS switched on,
/// same host and port) makes it a new backend: the pooled plaintext
/// connections are not reused, the next request goes over TLS.
#[test]
fn a_reload_that_switches_a_backend_to_tls_drops_its_plaintext_connections() {
    use std::io::{BufReader, Read, Write};
    use std::sync::{Arc, Mutex};
    let firsts = Arc::new(Mutex::new(Vec::<u8>::new()));
    let seen = firsts.clone();
    let be = Backend::raw(move |s| {
        let mut first = [0u8; 1];
        if s.peek(&mut first).unwrap_or(0) == 0 {
            return;
        }
        seen.lock().unwrap().push(first[0]);
        if first[0] == 0x16 {
            return; // a TLS ClientHello: this backend speaks plain HTTP only
        }
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        while read_head(&mut r).is_some() {
            if w.write_all(&ok("plain")).is_err() {
                return;
            }
        }
        let _ = r.read(&mut first);
    });
    let text = |tls: bool| {
        format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}, "tls": {tls}}}], "probe_interval_ms": 600000}}"#,
            be.port
        )
    };
    let cfg = temp_file("lb.json", &text(false));
    let lb = Lb::start(&["-w", "1", "-k", "-c", cfg.to_str().unwrap()]);
    let mut c = lb.conn();
    assert_eq!(c.get("/").text(), "plain");
    let tmp = cfg.with_extension("new");
    std::fs::write(&tmp, text(true)).unwrap();
    std::fs::rename(&tmp, &*cfg).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || lb.log_has("generation 2")),
        "{}",
        lb.log_text()
    );
    let m = lb.conn().get("/");
    assert_ne!(
        (m.status(), m.text().as_str()),
        (200, "plain"),
        "served over the pooled plaintext connection after the switch to TLS"
    );
    assert!(
        firsts.lock().unwrap().contains(&0x16),
        "no TLS handshake was tried after the switch: {:?}",
        firsts.lock().unwrap()
    );
}

/// One GET's body; on a failed exchange, the load balancer's log with the
/// panic (a reset seen once under the full suite's load, not reproduced).
fn body_of(lb: &Lb) -> String {
    let port = lb.port;
    match std::panic::catch_unwind(move || get(port, "/").text()) {
        Ok(t) => t,
        Err(_) => panic!("GET / failed; load balancer log:\n{}", lb.log_text()),
    }
}

/// A config reached through symlinks, updated the way Kubernetes updates a
/// mounted ConfigMap (a new `..data` link renamed over the old), is
/// reloaded without a signal.
#[test]
fn a_config_behind_a_kubernetes_style_symlink_swap_is_reloaded() {
    use std::os::unix::fs::symlink;
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let dir = std::env::temp_dir().join(format!("lb-life-k8s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |gen: &str, be: &Backend| {
        let d = dir.join(gen);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("lb.json"),
            format!(
                r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}]}}"#,
                be.port
            ),
        )
        .unwrap();
    };
    write("..2026_12_04_a", &a);
    symlink("..2026_12_04_a", dir.join("..data")).unwrap();
    symlink("..data/lb.json", dir.join("lb.json")).unwrap();
    let cfg = dir.join("lb.json");
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    assert_eq!(body_of(&lb), "a");
    // The update: a new directory, a new link, renamed over `..data`.
    write("..2026_12_04_b", &b);
    symlink("..2026_12_04_b", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_12_04_a")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || lb.log_has("generation 2")),
        "the symlink swap was not seen:\n{}",
        lb.log_text()
    );
    assert_eq!(body_of(&lb), "b");
    // And again (the watch follows the new chain).
    write("..2026_12_04_c", &a);
    symlink("..2026_12_04_c", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || lb.log_has("generation 3")),
        "{}",
        lb.log_text()
    );
    assert_eq!(body_of(&lb), "a");
    drop(lb);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sd_notify protocol, to a socket the test owns, and the pid file:
/// READY at start, RELOADING/READY around a reload, MAINPID of the
/// successor at an upgrade's hand-over (so a `Type=notify` unit survives
/// `kill -USR2 $MAINPID`), STOPPING at shutdown; the pid file names the
/// serving master and is removed at exit.
#[test]
fn systemd_notify_and_the_pid_file_follow_start_reload_upgrade_and_stop() {
    use std::os::unix::net::UnixDatagram;
    let a = demo_backend("a");
    let dir = std::env::temp_dir().join(format!("lb-life-notify-{}", std::process::id()));
    let bin = binary_copy(&dir);
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let pid_file = dir.join("lb.pid");
    let cfg = dir.join("lb.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}]}}"#,
            a.rsplit(':').next().unwrap()
        ),
    )
    .unwrap();
    let mut lb = Lb::start_with_env(
        &bin,
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
        &[
            "-w",
            "2",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "-c",
            cfg.to_str().unwrap(),
        ],
    );
    let next = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("an sd_notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    assert_eq!(read_pid(), Some(lb.pid()));
    signal(lb.pid(), 1); // SIGHUP
    let m = next();
    assert!(m.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{m:?}");
    assert_eq!(next(), "READY=1");
    signal(lb.pid(), 12); // SIGUSR2
    let m = next();
    assert!(
        eventually(Duration::from_secs(10), || lb.log_has("is serving")),
        "{}",
        lb.log_text()
    );
    let successor = successor_pid(&lb.log_text()).unwrap();
    let _stop = Successor(Some(successor));
    // The successor takes over first, then the old process, told so,
    // names it to the service manager and drains.
    assert_eq!(m, format!("MAINPID={successor}\nREADY=1"));
    assert_eq!(next(), format!("MAINPID={successor}"));
    assert!(eventually(Duration::from_secs(15), || lb
        .try_wait()
        .is_some()));
    assert_eq!(
        read_pid(),
        Some(successor),
        "the pid file after the hand-over"
    );
    signal(successor, 15);
    assert_eq!(next(), "STOPPING=1");
    assert!(
        eventually(Duration::from_secs(15), || read_pid().is_none()),
        "the pid file is left after the exit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reload applies what it can without a restart (timeouts, forwarding,
/// trusted headers, `/metrics` on the traffic port, the access log's path)
/// and names what it cannot ("needs a restart: admin") instead of
/// reporting success and changing nothing.
#[test]
fn a_reload_applies_timeouts_forwarding_and_the_access_log_and_names_the_rest() {
    let be = Backend::spawn(|m| {
        if m.target() == "/slow" {
            thread::sleep(Duration::from_millis(1500));
        }
        let xfp = m.header("x-forwarded-proto").unwrap_or("-").to_string();
        let rip = m.header("x-real-ip").unwrap_or("-").to_string();
        ok(&format!("{xfp} {rip}"))
    });
    let dir = std::env::temp_dir().join(format!("lb-life-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("lb.json");
    let write = |extra: &str| {
        let tmp = dir.join("lb.json.tmp");
        std::fs::write(
            &tmp,
            format!(
                r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "probe_interval_ms": 600000{extra}}}"#,
                be.port
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &cfg).unwrap();
    };
    write(r#", "access_log": "a.log""#);
    let lb = Lb::start(&["-w", "2", "-c", cfg.to_str().unwrap()]);
    let req = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Real-IP: 6.6.6.6\r\n\r\n";
    assert_eq!(lb.conn().roundtrip(req).text(), "http -");
    assert_eq!(get(lb.port, "/slow").status(), 200);
    write(
        r#", "access_log": "b.log", "timeouts": {"upstream_response_ms": 300},
           "forwarded": {"x_forwarded_proto": "off"}, "trusted_client_headers": ["X-Real-IP"],
           "metrics_on_traffic_port": false, "admin": "127.0.0.1:1""#,
    );
    assert!(
        eventually(Duration::from_secs(5), || lb.log_has("generation 2")),
        "{}",
        lb.log_text()
    );
    assert!(
        lb.log_has("needs a restart (or an upgrade, SIGUSR2): admin"),
        "{}",
        lb.log_text()
    );
    // Every worker follows (several connections: both workers serve).
    for _ in 0..6 {
        assert_eq!(lb.conn().roundtrip(req).text(), "- 6.6.6.6");
        assert_eq!(
            get(lb.port, "/slow").status(),
            504,
            "the new upstream_response_ms"
        );
    }
    assert_eq!(
        get(lb.port, "/metrics").text(),
        "- -",
        "/metrics still answered here"
    );
    thread::sleep(Duration::from_millis(1500)); // the access log is flushed each second
    let b = std::fs::read_to_string(dir.join("b.log")).unwrap_or_default();
    assert!(
        b.contains("GET /x"),
        "nothing logged to the new access log: {b:?}"
    );
    drop(lb);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every exchange gets an access log line, as nginx does: one a backend
/// cut mid-body, and one answered before its whole body was sent, whose
/// upstream response time is measured from the request's first byte (not
/// the machine's uptime).
#[test]
fn cut_and_early_answered_exchanges_are_logged_truly() {
    use std::io::{BufReader, Read, Write};
    let be = Backend::raw(|s| {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let Some((_, start, _)) = read_head(&mut r) else {
            return;
        };
        if start[1] == "/cut" {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        } else {
            let _ = w.write_all(
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let mut sink = [0u8; 4096];
            while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    let dir = std::env::temp_dir().join(format!("lb-life-alog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let lb = Lb::start(&[
        "-w",
        "1",
        "--access-log",
        log.to_str().unwrap(),
        "-b",
        &be.addr(),
    ]);
    let mut c = lb.conn();
    c.send(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n");
    let _ = c.read_until_end(Duration::from_secs(5));
    let mut c = lb.conn();
    c.send(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    let _ = c.w.write_all(&vec![b'x'; 200_000]);
    let m = c.read_response(false);
    assert_eq!(m.status(), 413);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(5), || text().contains("/cut")
            && text().contains("/early")),
        "{}",
        text()
    );
    let t = text();
    let early = t.lines().find(|l| l.contains("/early")).unwrap();
    let urt: f64 = early
        .split_whitespace()
        .find_map(|f| f.strip_prefix("urt="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no urt: {early}"));
    assert!(urt < 5.0, "upstream response time {urt} s: {early}");
    let cut = t.lines().find(|l| l.contains("/cut")).unwrap();
    assert!(cut.contains("\" 200 10 "), "{cut}");
    drop(lb);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pid an upgrade started, from the old process's log.
fn started_pid(log: &str) -> Option<u32> {
    let i = log.rfind(" as pid ")? + " as pid ".len();
    log[i..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The old master killed while its successor starts: the successor takes
/// the region over from the dead owner (reloads, probes and counts work),
/// rather than serve for ever without owning it.
#[test]
fn a_successor_whose_predecessor_dies_takes_over() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let dir = std::env::temp_dir().join(format!("lb-life-orphan-{}", std::process::id()));
    let bin = binary_copy(&dir);
    let cfg = dir.join("lb.json");
    let write = |be: &Backend| {
        let tmp = dir.join("lb.tmp");
        std::fs::write(
            &tmp,
            format!(
                r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}]}}"#,
                be.port
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &cfg).unwrap();
    };
    write(&a);
    let mut lb = Lb::start_bin(&bin, &["-w", "2", "-c", cfg.to_str().unwrap()]);
    signal(lb.pid(), 12);
    assert!(eventually(Duration::from_secs(5), || lb
        .log_has("waiting for it to be ready")));
    let successor = started_pid(&lb.log_text()).expect("successor pid");
    let _stop = Successor(Some(successor));
    signal(lb.pid(), 9);
    let _ = lb.try_wait();
    assert!(
        eventually(Duration::from_secs(10), || lb
            .log_has("taking over the region")),
        "{}",
        lb.log_text()
    );
    assert!(eventually(Duration::from_secs(5), || get(lb.port, "/")
        .status()
        == 200));
    write(&b);
    assert!(
        eventually(Duration::from_secs(5), || get(lb.port, "/").text() == "b"),
        "the successor does not apply reloads:\n{}",
        lb.log_text()
    );
    let m = scrape(lb.port);
    assert_eq!(metric(&m, "lb_workers"), Some(2), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A successor that dies right after reporting ready (before it took
/// over) is not handed the service: the old process takes the region back
/// and keeps serving.
#[test]
fn a_successor_that_dies_after_reporting_ready_is_not_handed_the_service() {
    let a = demo_backend("a");
    for mode in ["mp", "sp"] {
        let dir = std::env::temp_dir().join(format!("lb-life-dead-{}-{mode}", std::process::id()));
        let bin = binary_copy(&dir);
        let mut lb = Lb::start_bin(&bin, &["-m", mode, "-w", "2", "-b", &a]);
        let master = lb.pid();
        signal(master, 12);
        assert!(eventually(Duration::from_secs(5), || lb
            .log_has("waiting for it to be ready")));
        let successor = started_pid(&lb.log_text()).expect("successor pid");
        signal(master, 19); // SIGSTOP: the old one does not see "ready" yet
        let ready = eventually(Duration::from_secs(10), || {
            lb.log_has("telling the old process")
        });
        signal(successor, 9);
        signal(master, 18); // SIGCONT
        assert!(ready, "{mode}: {}", lb.log_text());
        assert!(
            eventually(Duration::from_secs(10), || lb.log_has("upgrade failed")),
            "{mode}: {}",
            lb.log_text()
        );
        thread::sleep(Duration::from_millis(500));
        assert_eq!(
            lb.try_wait(),
            None,
            "{mode}: the old process stopped:\n{}",
            lb.log_text()
        );
        assert_eq!(get(lb.port, "/").status(), 200);
        let m = scrape(lb.port);
        assert_eq!(
            metric(&m, "lb_upgrades_total{result=\"failure\"}"),
            Some(1),
            "{m}"
        );
        drop(lb);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A reload naming an access log that cannot be opened is refused like
/// any invalid file (counted, the old one kept): a worker restarted later
/// still starts.
#[test]
fn a_reload_to_an_unwritable_access_log_is_refused() {
    let be = Backend::named("a");
    let dir = std::env::temp_dir().join(format!("lb-life-badlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("lb.json");
    let write = |log: &str| {
        let tmp = dir.join("lb.tmp");
        std::fs::write(
            &tmp,
            format!(
                r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "access_log": "{log}"}}"#,
                be.port
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, &cfg).unwrap();
    };
    write("a.log");
    let lb = Lb::start(&["-w", "2", "-c", cfg.to_str().unwrap()]);
    write("nodir/b.log");
    assert!(
        eventually(Duration::from_secs(5), || lb.log_has("access_log")),
        "{}",
        lb.log_text()
    );
    let m = scrape(lb.port);
    assert_eq!(
        metric(&m, "lb_config_reloads_total{result=\"failure\"}"),
        Some(1),
        "{m}"
    );
    let ws = workers_of(lb.pid(), 2);
    signal(ws[0].0, 9);
    thread::sleep(Duration::from_millis(500));
    let ws = workers_of(lb.pid(), 2);
    assert_eq!(ws.len(), 2);
    assert_eq!(metric(&scrape(lb.port), "lb_workers"), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The config's directory deleted and made again, or replaced by a rename:
/// the watch follows (it is armed afresh on every event).
#[test]
fn the_config_watch_survives_its_directory_being_replaced() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let root = std::env::temp_dir().join(format!("lb-life-redir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let conf = root.join("conf");
    let write = |dir: &std::path::Path, be: &Backend| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("lb.json"),
            format!(
                r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}]}}"#,
                be.port
            ),
        )
        .unwrap();
    };
    write(&conf, &a);
    let cfg = conf.join("lb.json");
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    assert_eq!(get(lb.port, "/").text(), "a");
    // Deleted and made again.
    std::fs::remove_dir_all(&conf).unwrap();
    thread::sleep(Duration::from_millis(300));
    write(&conf, &b);
    assert!(
        eventually(Duration::from_secs(5), || get(lb.port, "/").text() == "b"),
        "{}",
        lb.log_text()
    );
    // Replaced by a rename, then edited in place.
    write(&root.join("conf.new"), &a);
    std::fs::rename(&conf, root.join("conf.old")).unwrap();
    std::fs::rename(root.join("conf.new"), &conf).unwrap();
    assert!(eventually(Duration::from_secs(5), || get(lb.port, "/")
        .text()
        == "a"));
    write(&conf, &b);
    assert!(
        eventually(Duration::from_secs(5), || get(lb.port, "/").text() == "b"),
        "{}",
        lb.log_text()
    );
    let _ = std::fs::remove_dir_all(&root);
}
