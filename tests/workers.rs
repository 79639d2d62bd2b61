//! Many workers over one shared region: mp (a master and worker processes)
//! and sp (worker threads). What an operator checks: both serve, round robin
//! alternates exactly whichever worker serves, `/metrics` totals are the same
//! whichever worker answers the scrape, a killed worker is replaced under load
//! and costs only its own connections, SIGTERM drains, a second instance on
//! the same port is refused, and signals that are not shutdown cut nothing.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn mp_and_sp_serve_and_alternate_exactly_between_two_backends() {
    let (a, b) = (Backend::named("A"), Backend::named("B"));
    for (mode, workers) in [("mp", "2"), ("sp", "3")] {
        let lb = Lb::start(&["-m", mode, "-w", workers, "-b", &a.addr(), "-b", &b.addr()]);
        let bodies: Vec<String> = (0..10).map(|_| get(lb.port, "/").text()).collect();
        let first = bodies[0].clone();
        for (i, body) in bodies.iter().enumerate() {
            let want = if (i % 2 == 0) == (first == "A") {
                "A"
            } else {
                "B"
            };
            assert_eq!(body, want, "{mode}: request {i}: {bodies:?}");
        }
        let text = scrape(lb.port);
        assert_eq!(
            metric(&text, "lb_requests_total"),
            Some(10),
            "{mode}: {text}"
        );
        let n: u64 = workers.parse().unwrap();
        assert_eq!(metric(&text, "lb_workers"), Some(n), "{mode}");
        let per_worker: u64 = (0..n)
            .map(|w| {
                metric(
                    &text,
                    &format!("lb_worker_requests_total{{worker=\"{w}\"}}"),
                )
                .unwrap()
            })
            .sum();
        assert_eq!(per_worker, 10, "{mode}: per-worker counts add up");
        if mode == "mp" {
            assert_eq!(comm(lb.pid()), "lb: master");
            workers_of(lb.pid(), 2);
            let kids = children(lb.pid());
            let names: Vec<&str> = kids.iter().map(|(_, c)| c.as_str()).collect();
            assert_eq!(
                names,
                ["lb: worker 0", "lb: worker 1", "lb: prober"],
                "{kids:?}"
            );
        } else {
            assert!(children(lb.pid()).is_empty(), "sp forks nothing");
        }
    }
}

#[test]
fn request_totals_are_exact_whichever_worker_serves_the_scrape() {
    let a = demo_backend("a");
    let lb = Lb::start(&["-m", "mp", "-w", "2", "-b", &a]);
    // New connections, some concurrent, so that both workers take some.
    let port = lb.port;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..50 {
                    assert_eq!(get(port, "/").status(), 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for _ in 0..10 {
        let text = scrape(lb.port);
        assert_eq!(metric(&text, "lb_requests_total"), Some(200), "{text}");
        let series = format!("lb_backend_requests_total{{backend=\"{a}\"}}");
        assert_eq!(metric(&text, &series), Some(200), "{text}");
        let w0 = metric(&text, "lb_worker_requests_total{worker=\"0\"}").unwrap();
        let w1 = metric(&text, "lb_worker_requests_total{worker=\"1\"}").unwrap();
        assert_eq!(w0 + w1, 200);
    }
}

#[test]
fn a_second_instance_on_the_same_port_exits_1_with_address_in_use() {
    let a = Backend::named("A");
    let lb = Lb::start(&["-b", &a.addr()]);
    let (code, _out, err) = run_lb(&[
        "-h",
        "127.0.0.1",
        "-p",
        &lb.port.to_string(),
        "-b",
        &a.addr(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("address in use"), "{err}");
    // The first one still serves every request.
    for _ in 0..4 {
        assert!(get(lb.port, "/").text() == "A");
    }
}

#[test]
fn sigterm_to_the_master_lets_an_in_flight_request_finish_then_every_process_is_gone() {
    let slow = Backend::spawn(|_| {
        thread::sleep(Duration::from_secs(2));
        ok("slow but complete")
    });
    for mode in ["mp", "sp"] {
        let mut lb = Lb::start(&["-m", mode, "-w", "2", "-b", &slow.addr()]);
        let n = if mode == "mp" { 2 } else { 0 };
        let workers: Vec<u32> = workers_of(lb.pid(), n).iter().map(|(p, _)| *p).collect();
        let mut c = lb.conn();
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
        thread::sleep(Duration::from_millis(500));
        signal(lb.pid(), 15);
        let m = c.read_response(false);
        assert_eq!(m.status(), 200, "{mode}");
        assert_eq!(m.text(), "slow but complete");
        assert!(
            eventually(Duration::from_secs(15), || lb.try_wait().is_some()),
            "{mode}: master still running"
        );
        assert_eq!(lb.try_wait(), Some(0), "{mode}: {}", lb.log_text());
        for w in workers {
            assert!(
                !std::path::Path::new(&format!("/proc/{w}")).exists()
                    || std::fs::read_to_string(format!("/proc/{w}/stat"))
                        .is_ok_and(|s| s.contains(") Z ")),
                "{mode}: worker {w} outlived the master"
            );
        }
        // New connections are refused once it is gone.
        assert!(TcpStream::connect(("127.0.0.1", lb.port)).is_err());
    }
}

#[test]
fn sighup_and_sigusr1_are_logged_and_cut_no_download() {
    // 4 MiB sent in 64 KiB pieces over about a second.
    const PIECE: usize = 64 * 1024;
    const PIECES: usize = 64;
    let backend = Backend::raw(|mut s| {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            PIECE * PIECES
        );
        if s.write_all(head.as_bytes()).is_err() {
            return;
        }
        for i in 0..PIECES {
            if s.write_all(&vec![b'a' + (i % 26) as u8; PIECE]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(15));
        }
    });
    for mode in ["mp", "sp"] {
        let mut lb = Lb::start(&["-m", mode, "-w", "2", "-b", &backend.addr()]);
        let mut c = lb.conn();
        c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
        thread::sleep(Duration::from_millis(200));
        signal(lb.pid(), 1); // SIGHUP
        signal(lb.pid(), 10); // SIGUSR1
        let m = c.read_response(false);
        assert_eq!(m.status(), 200);
        assert_eq!(m.body.len(), PIECE * PIECES, "{mode}: download cut");
        for (i, piece) in m.body.chunks(PIECE).enumerate() {
            assert!(piece.iter().all(|&b| b == b'a' + (i % 26) as u8), "{mode}");
        }
        assert!(lb.log_has("SIGHUP"), "{mode}: {}", lb.log_text());
        assert!(lb.log_has("SIGUSR1"), "{mode}: {}", lb.log_text());
        assert_eq!(lb.try_wait(), None, "{mode}: still running");
        assert!(get(lb.port, "/").status() == 200);
    }
}

#[test]
fn a_killed_worker_is_respawned_under_load_and_costs_only_its_own_connections() {
    let (a, b) = (demo_backend("a"), demo_backend("b"));
    let lb = Lb::start(&["-m", "mp", "-w", "2", "-b", &a, "-b", &b]);
    let before = workers_of(lb.pid(), 2);
    let load = wrk(lb.port, 4);
    thread::sleep(Duration::from_millis(1500));
    let (victim, _) = before[0];
    signal(victim, 9);
    let killed = Instant::now();
    let respawned = eventually(Duration::from_secs(5), || {
        let now = children(lb.pid());
        let workers = now.iter().filter(|(_, c)| c.starts_with("lb: worker"));
        workers.clone().count() == 2 && workers.clone().all(|(p, _)| *p != victim)
    });
    let took = killed.elapsed();
    assert!(
        respawned,
        "no new worker: {:?}\n{}",
        children(lb.pid()),
        lb.log_text()
    );
    eprintln!("worker respawned after {took:?}");
    let (done, failed, text) = wrk_result(load);
    eprintln!("under load with a worker killed: {done} requests, {failed} failed");
    assert!(done > 1000, "{text}");
    // At most the dead worker's own connections (50 in all) fail.
    assert!(failed <= 50, "{failed} failed requests:\n{text}");
    assert!(lb.log_has("killed by signal 9"), "{}", lb.log_text());
    for _ in 0..50 {
        assert_eq!(get(lb.port, "/").status(), 200);
    }
    let text = scrape(lb.port);
    assert_eq!(metric(&text, "lb_worker_restarts_total"), Some(1), "{text}");
    assert_eq!(metric(&text, "lb_workers"), Some(2));
}

#[test]
fn a_worker_that_panics_is_logged_and_restarted_in_both_modes() {
    let a = Backend::named("A");
    for mode in ["sp", "mp"] {
        let port = free_port();
        let mut child = Command::new(LB)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", mode, "-w", "1", "-b", &a.addr()])
            .env("LB_TEST_PANIC_PATH", "/__panic")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(eventually(Duration::from_secs(10), || TcpStream::connect(
            ("127.0.0.1", port)
        )
        .is_ok()));
        let mut c = Client::connect(port);
        c.send(b"GET /__panic HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(
            c.is_closed(),
            "{mode}: the panicking worker's connection ends"
        );
        assert!(
            eventually(Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok() && get(port, "/").text() == "A"
            }),
            "{mode}: no worker serves after the panic"
        );
        let text = scrape(port);
        assert_eq!(
            metric(&text, "lb_worker_restarts_total"),
            Some(1),
            "{mode}: {text}"
        );
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("LB_TEST_PANIC_PATH"), "{mode}: {log}");
        assert!(log.contains("restart"), "{mode}: {log}");
    }
}
