//! Operator chaos under load: random sequences of what an operator (or a
//! bad day) does to a running load balancer, while wrk keeps requesting:
//! good and bad reloads (by rename and in place), SIGHUP, SIGUSR2 (also
//! twice in a row, also to a new build that fails to start), SIGKILL of a
//! worker or of the prober; each sequence ends with a TERM during a pending
//! upgrade, then a fresh start on the same port.
//!
//! After each sequence: no non-2xx answer; socket errors only as many as
//! the killed workers' own connections can explain; exactly one master
//! with `-w` workers and one prober; `lb_workers`, `lb_connections_active`
//! and `lb_requests_total` true; no process using CPU while idle.
//!
//! `make test` runs a fixed seed for about 40 s; `CHAOS_SEED` and
//! `CHAOS_SEQUENCES` run others and longer. Every action is printed, so a
//! failing sequence can be replayed.

mod common;
use common::*;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Action {
    ReloadRename,
    ReloadInPlace,
    BadReload,
    Hup,
    Upgrade,
    UpgradeTwice,
    FailedUpgrade,
    KillWorker,
    KillProber,
}

const ACTIONS: [Action; 9] = [
    Action::ReloadRename,
    Action::ReloadInPlace,
    Action::BadReload,
    Action::Hup,
    Action::Upgrade,
    Action::UpgradeTwice,
    Action::FailedUpgrade,
    Action::KillWorker,
    Action::KillProber,
];

/// Connections wrk keeps open (see `common::wrk`): a killed worker can cost
/// at most the requests in flight on its share of them.
const WRK_CONNS: u64 = 50;

/// The master serving now: the last successor named in the log, or the
/// first process.
fn current_master(lb: &Lb) -> u32 {
    let log = lb.log_text();
    let mut pid = lb.pid();
    for (i, _) in log.match_indices("upgrade: new process pid ") {
        let rest = &log[i + "upgrade: new process pid ".len()..];
        if let Some(p) = rest.split_whitespace().next().and_then(|p| p.parse().ok()) {
            pid = p;
        }
    }
    pid
}

fn write_config(path: &std::path::Path, a: &str, b: &str, weight: u32, in_place: bool) {
    let text = format!(
        r#"{{"backends": [{{"host": "127.0.0.1", "port": {}, "weight": {weight}}},
                         {{"host": "127.0.0.1", "port": {}}}],
            "strategy": "weighted_round_robin", "probe_interval_ms": 500}}"#,
        a.rsplit(':').next().unwrap(),
        b.rsplit(':').next().unwrap()
    );
    if in_place {
        std::fs::write(path, text).unwrap();
    } else {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

#[test]
fn operator_chaos_under_load_keeps_every_request_and_the_process_tree_true() {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1e55);
    let sequences: usize = std::env::var("CHAOS_SEQUENCES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut rng = Rng(seed | 1);
    let (a, b) = (demo_backend("a"), demo_backend("b"));
    let dir = std::env::temp_dir().join(format!("lb-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = binary_copy(&dir);
    let good = std::fs::read(&bin).unwrap();
    let cfg = dir.join("lb.json");
    write_config(&cfg, &a, &b, 1, false);
    // Sequences alternate between the modes, mp first.
    let mode_of = |seq: usize| ["mp", "sp"][seq % 2];
    let workers = 2;
    std::env::set_var("LB_UPGRADE_READY_TIMEOUT_MS", "3000");
    let mut lb = Lb::start_bin(
        &bin,
        &["-m", mode_of(0), "-w", "2", "-c", cfg.to_str().unwrap()],
    );
    let (mut total_actions, mut total_requests, mut total_errors) = (0, 0, 0);
    for seq in 0..sequences {
        let t0 = Instant::now();
        let mode = mode_of(seq);
        let port = lb.port;
        let before = metric(&scrape(port), "lb_requests_total").unwrap();
        let load = wrk(port, 10);
        thread::sleep(Duration::from_millis(500));
        let mut kills = 0u64;
        let mut log = Vec::new();
        for _ in 0..5 {
            let action = ACTIONS[rng.below(ACTIONS.len())];
            log.push(action);
            total_actions += 1;
            let master = current_master(&lb);
            let upgrades = lb.log_text().matches("is serving").count();
            match action {
                Action::ReloadRename | Action::ReloadInPlace => {
                    let gens = lb.log_text().matches("generation ").count();
                    let w = 1 + rng.below(4) as u32;
                    write_config(&cfg, &a, &b, w, matches!(action, Action::ReloadInPlace));
                    eventually(Duration::from_secs(3), || {
                        lb.log_text().matches("generation ").count() > gens
                    });
                }
                Action::BadReload => {
                    let tmp = cfg.with_extension("tmp");
                    std::fs::write(&tmp, "{\"backends\": [").unwrap();
                    let good_text = std::fs::read(&cfg).unwrap();
                    std::fs::rename(&tmp, &cfg).unwrap();
                    thread::sleep(Duration::from_millis(300));
                    std::fs::write(&tmp, good_text).unwrap();
                    std::fs::rename(&tmp, &cfg).unwrap();
                }
                Action::Hup => signal(master, 1),
                Action::Upgrade | Action::UpgradeTwice => {
                    signal(master, 12);
                    if matches!(action, Action::UpgradeTwice) {
                        signal(master, 12);
                    }
                    assert!(
                        eventually(Duration::from_secs(10), || lb
                            .log_text()
                            .matches("is serving")
                            .count()
                            > upgrades),
                        "seed {seed}: upgrade did not hand over\n{}",
                        lb.log_text()
                    );
                    // The old master drains and goes.
                    eventually(Duration::from_secs(12), || {
                        if master == lb.pid() {
                            lb.try_wait().is_some()
                        } else {
                            !std::path::Path::new(&format!("/proc/{master}")).exists()
                        }
                    });
                }
                Action::FailedUpgrade => {
                    let failures = lb.log_text().matches("upgrade failed").count();
                    replace_binary(&bin, b"#!/bin/sh\nexit 3\n", 0o755);
                    signal(master, 12);
                    assert!(
                        eventually(Duration::from_secs(6), || lb
                            .log_text()
                            .matches("upgrade failed")
                            .count()
                            > failures),
                        "seed {seed}: {}",
                        lb.log_text()
                    );
                    replace_binary(&bin, &good, 0o755);
                }
                Action::KillWorker if mode == "mp" => {
                    let ws = workers_of(master, workers);
                    signal(ws[rng.below(ws.len())].0, 9);
                    kills += 1;
                    thread::sleep(Duration::from_millis(300));
                }
                Action::KillProber if mode == "mp" => {
                    let prober = children(master)
                        .into_iter()
                        .find(|(_, c)| c == "lb: prober");
                    if let Some((p, _)) = prober {
                        signal(p, 9);
                    }
                    thread::sleep(Duration::from_millis(300));
                }
                Action::KillWorker | Action::KillProber => {
                    // sp: workers are threads; SIGHUP instead.
                    signal(master, 1);
                }
            }
            thread::sleep(Duration::from_millis(300));
        }
        let (done, failed, text) = wrk_result(load);
        // wrk's own connections are gone now: let the tree settle.
        thread::sleep(Duration::from_millis(1500));
        let master = current_master(&lb);
        eprintln!(
            "seed {seed} sequence {seq} ({mode}): {log:?}: {done} requests, {failed} failed, {kills} worker kills, {:?}",
            t0.elapsed()
        );
        let non2xx = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap());
        assert_eq!(
            non2xx,
            0,
            "seed {seed} {log:?}: non-2xx answers\n{text}\n{}",
            lb.log_text()
        );
        assert!(
            failed <= kills * WRK_CONNS,
            "seed {seed} {log:?}: {failed} socket errors with {kills} worker kills\n{text}\n{}",
            lb.log_text()
        );
        assert!(done > 500, "{text}");
        total_requests += done;
        total_errors += failed;
        // The process tree: one master, `workers` workers, one prober (mp).
        if mode == "mp" {
            let kids = workers_of(master, workers);
            assert_eq!(kids.len(), workers);
            assert!(
                eventually(Duration::from_secs(5), || children(master)
                    .iter()
                    .filter(|(_, c)| c == "lb: prober")
                    .count()
                    == 1),
                "seed {seed}: {:?}",
                children(master)
            );
        }
        let masters: Vec<u32> = running_with(dir.to_str().unwrap())
            .into_iter()
            .filter(|&p| !comm(p).starts_with("lb: worker") && !comm(p).starts_with("lb: prober"))
            .collect();
        assert_eq!(masters, [master], "seed {seed}: masters left running");
        let m = scrape(port);
        assert_eq!(
            metric(&m, "lb_workers"),
            Some(workers as u64),
            "seed {seed}: {m}"
        );
        let active = metric(&m, "lb_connections_active").unwrap();
        assert!(
            active <= 2,
            "seed {seed}: lb_connections_active {active}\n{m}"
        );
        let after = metric(&m, "lb_requests_total").unwrap();
        assert!(
            after >= before + done,
            "seed {seed}: lb_requests_total {before} -> {after} with {done} served"
        );
        // Idle: nobody spins.
        let mut pids = vec![master];
        pids.extend(children(master).into_iter().map(|(p, _)| p));
        let t: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
        thread::sleep(Duration::from_secs(1));
        let used: Vec<(u32, u64)> = pids
            .iter()
            .zip(&t)
            .map(|(&p, &t0)| (p, cpu_ticks(p).saturating_sub(t0)))
            .collect();
        assert!(
            used.iter().all(|&(_, d)| d <= 20),
            "seed {seed}: CPU ticks in 1 s while idle: {used:?}"
        );
        // The sequence ends with a stop during a pending upgrade, then a
        // fresh start on the same port.
        replace_binary(
            &bin,
            format!("#!/bin/sh\nsleep 1\nexec {}.real \"$@\"\n", bin).as_bytes(),
            0o755,
        );
        std::fs::write(format!("{bin}.real"), &good).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let p = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(format!("{bin}.real"), p).unwrap();
        }
        let served_by_first = master == lb.pid();
        signal(master, 12);
        thread::sleep(Duration::from_millis(200));
        signal(master, 15);
        assert!(
            eventually(Duration::from_secs(15), || {
                if served_by_first {
                    // Our own child: reaped here (a zombie still has /proc).
                    lb.try_wait().is_some()
                } else {
                    !std::path::Path::new(&format!("/proc/{master}")).exists()
                }
            }),
            "seed {seed}: the master did not stop\n{}",
            lb.log_text()
        );
        let gone = eventually(Duration::from_secs(12), || {
            running_with(dir.to_str().unwrap()).is_empty()
        });
        assert!(
            gone,
            "seed {seed}: processes left after the stop: {:?}",
            running_with(dir.to_str().unwrap())
        );
        replace_binary(&bin, &good, 0o755);
        drop(lb);
        lb = Lb::start_bin(
            &bin,
            &[
                "-m",
                mode_of(seq + 1),
                "-w",
                "2",
                "-c",
                cfg.to_str().unwrap(),
            ],
        );
        // (The harness may give the fresh start another port: the next
        // sequence follows `lb.port`.)
        assert_eq!(get(lb.port, "/").status(), 200);
    }
    std::env::remove_var("LB_UPGRADE_READY_TIMEOUT_MS");
    eprintln!(
        "chaos (seed {seed}): {sequences} sequences, {total_actions} actions, {total_requests} requests, {total_errors} socket errors"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
