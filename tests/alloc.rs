//! No allocation on the per-request path after warm-up: a worker runs
//! in-process under a counting global allocator that counts only the
//! worker's own thread, and 10,000 requests go through it.
// A counting global allocator is an `unsafe impl GlobalAlloc`.
#![allow(unsafe_code)]

use lb::config::{BackendSpec, Config};
use lb::proxy::worker::Worker;
use lb::proxy::Shared;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates every call to the system allocator unchanged; the only
// addition is a relaxed counter increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: p was allocated by System with layout l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn listener() -> (std::os::fd::OwnedFd, u16) {
    let l = lb::sys::listen("127.0.0.1:0".parse().unwrap(), 128).unwrap();
    let port = lb::sys::local_addr(l.as_fd()).unwrap().port();
    (l, port)
}

/// One GET on a kept-alive connection; returns the body.
fn get(r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> String {
    w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn ten_thousand_requests_allocate_nothing_after_warm_up() {
    let mut backends = Vec::new();
    for name in ["backend1", "backend2"] {
        let (l, port) = listener();
        std::thread::spawn(move || lb::demo::serve(name, l));
        backends.push(BackendSpec {
            host: "127.0.0.1".into(),
            port,
            weight: 1,
            tls: false,
            srv: false,
        });
    }
    let config = Config {
        backends,
        log_level: lb::config::LogLevel::Err,
        ..Config::default()
    };
    let (region, _memfd) = lb::shm::Region::create().unwrap();
    let entries = lb::proxy::backends::resolve_all(&config.backends).unwrap();
    let settings = lb::shm::Settings::new(config.strategy, &config.health);
    region.publish(&entries, &settings).unwrap();
    region.health.reset(entries.len());
    let shared = Arc::new(Shared::new(config, region, 0, None));
    let (l, port) = listener();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let worker = std::thread::spawn(move || {
        let listeners = lb::proxy::Listeners {
            plain: Some(l),
            ..Default::default()
        };
        let mut w = Worker::new(shared, listeners, stop2, 1).unwrap();
        COUNTED.with(|c| c.set(true));
        w.run().unwrap();
        COUNTED.with(|c| c.set(false));
    });
    let mut clients: Vec<(BufReader<TcpStream>, TcpStream)> = (0..4)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_nodelay(true).unwrap();
            (BufReader::new(s.try_clone().unwrap()), s)
        })
        .collect();
    // Warm-up: connections, pools, buffers and slabs reach their size.
    for i in 0..1000 {
        let (r, w) = &mut clients[i % 4];
        assert!(get(r, w).starts_with("Hello from backend"));
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    // The counter does see the worker: setting up allocated.
    assert!(
        before > 0,
        "the counting allocator saw no allocation in the worker at all"
    );
    let mut seen = [0usize; 2];
    for i in 0..10_000 {
        let (r, w) = &mut clients[i % 4];
        let body = get(r, w);
        seen[usize::from(body.contains("backend2"))] += 1;
    }
    let allocated = ALLOCS.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    println!("10,000 requests after warm-up: {allocated} allocations in the worker; backend1 {} / backend2 {}", seen[0], seen[1]);
    assert_eq!(seen, [5000, 5000], "round robin over both backends");
    assert_eq!(allocated, 0, "the per-request path allocated");
}
