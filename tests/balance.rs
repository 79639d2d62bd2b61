//! Balancing that sees load: `least_connections` and `p2c` against one fast
//! backend and one that answers in 50 ms, 20 concurrent clients. Round robin
//! splits the requests evenly whatever the backends do; the load-aware
//! strategies send most of them to the fast one. The in-flight gauges they
//! read end at zero: nothing leaks, also after a worker is killed.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// 20 clients on kept-alive connections for `secs`; requests completed.
fn load(port: u16, secs: u64) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    assert_eq!(c.get("/").status(), 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn fast_share(strategy: &str, mode: &str) -> (f64, u64, String) {
    let fast = Backend::named("fast");
    let slow = Backend::spawn(|_| {
        thread::sleep(Duration::from_millis(50));
        ok("slow")
    });
    let lb = Lb::start(&[
        "-m",
        mode,
        "-w",
        "2",
        "-s",
        strategy,
        "-b",
        &fast.addr(),
        "-b",
        &slow.addr(),
    ]);
    let done = load(lb.port, 2);
    let (f, s) = (fast.received().len() as f64, slow.received().len() as f64);
    thread::sleep(Duration::from_millis(200));
    let m = scrape(lb.port);
    (f / (f + s), done, m)
}

#[test]
fn least_connections_and_p2c_send_most_requests_to_the_fast_backend() {
    let (rr, rr_done, _) = fast_share("round_robin", "mp");
    assert!((0.4..0.6).contains(&rr), "round robin split {rr}");
    for (strategy, mode) in [
        ("least_conn", "mp"),
        ("p2c", "mp"),
        ("least_connections", "sp"),
    ] {
        let (share, done, m) = fast_share(strategy, mode);
        eprintln!(
            "{strategy} ({mode}): fast share {share:.3}, {done} requests (round robin: {rr_done})"
        );
        assert!(
            share > 0.8,
            "{strategy}: the fast backend got {share} of the requests"
        );
        // Nothing left in flight once the clients are done.
        for l in m.lines().filter(|l| l.starts_with("lb_backend_inflight{")) {
            assert!(l.ends_with(" 0"), "{strategy}: {l}");
        }
    }
}

/// A worker killed with requests in flight: its share of the gauge goes
/// with it (the master zeroes its slot), the others' counts stay true.
#[test]
fn a_killed_workers_in_flight_requests_do_not_leak() {
    let slow = Backend::spawn(|_| {
        thread::sleep(Duration::from_millis(300));
        ok("slow")
    });
    let lb = Lb::start(&["-w", "2", "-s", "least_conn", "-b", &slow.addr()]);
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let port = lb.port;
            thread::spawn(move || {
                let mut c = Client::connect(port);
                c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                let _ = c.read_until_end(Duration::from_secs(3));
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    let ws = workers_of(lb.pid(), 2);
    signal(ws[0].0, 9);
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            let m = scrape(lb.port);
            m.lines()
                .filter(|l| l.starts_with("lb_backend_inflight{"))
                .all(|l| l.ends_with(" 0"))
        }),
        "{}",
        scrape(lb.port)
    );
}

/// The idle pool follows concurrency: after 200 requests at once, 200
/// backend connections stay pooled (not 128), the next burst reuses them
/// (no new connects), and once traffic stops they are closed after
/// `upstream_idle_ms`.
#[test]
fn the_pool_keeps_what_concurrency_needed_and_trims_when_idle() {
    const BURST: usize = 200;
    let be = Backend::spawn(|_| {
        thread::sleep(Duration::from_millis(300));
        ok("slow")
    });
    let cfg = temp_file(
        "lb.json",
        &format!(
            r#"{{"backends": [{{"host": "127.0.0.1", "port": {}}}], "probe_interval_ms": 0,
                 "timeouts": {{"upstream_idle_ms": 2000}}}}"#,
            be.port
        ),
    );
    let lb = Lb::start(&["-w", "1", "-c", cfg.to_str().unwrap()]);
    let burst = || assert!(concurrent_gets(lb.port, BURST).iter().all(|&s| s == 200));
    burst();
    thread::sleep(Duration::from_millis(300)); // a sweep updates the gauge
    let m = scrape(lb.port);
    let connects = metric(&m, "lb_upstream_connects_total").unwrap();
    let idle = metric(&m, "lb_upstream_idle_connections").unwrap();
    assert!(
        idle >= BURST as u64 - 5,
        "{idle} idle after {BURST} at once:\n{m}"
    );
    burst();
    let m = scrape(lb.port);
    let more = metric(&m, "lb_upstream_connects_total").unwrap() - connects;
    assert!(
        more <= 5,
        "{more} new backend connections for a burst the pool held"
    );
    // Quiet: trimmed after upstream_idle_ms.
    assert!(
        eventually(Duration::from_secs(6), || {
            metric(&scrape(lb.port), "lb_upstream_idle_connections") == Some(0)
        }),
        "{}",
        scrape(lb.port)
    );
}
