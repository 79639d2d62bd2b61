//! Memory per idle keep-alive client connection, with 8,000 of them:
//! reported, not asserted (the figure depends on the allocator and the
//! machine); what is asserted is that every connection was served and is
//! still usable.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const CONNS: usize = 8000;

#[test]
fn rss_growth_per_idle_keep_alive_connection() {
    let be = Backend::named("a");
    // One worker thread: the process measured is the one holding the connections.
    let lb = Lb::start(&["-m", "sp", "-w", "1", "-b", &be.addr(), "-l", "warn"]);
    // Warm up: the pooled upstream connection and the first buffers.
    for _ in 0..10 {
        assert_eq!(get(lb.port, "/").text(), "a");
    }
    let before = lb.rss_kib();
    let req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let want = ok("a");
    let mut conns = Vec::with_capacity(CONNS);
    let mut buf = vec![0u8; want.len()];
    for _ in 0..CONNS {
        let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, want);
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = lb.rss_kib();
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / CONNS as f64;
    println!(
        "idle keep-alive connections: {CONNS}; load balancer RSS {before} KiB -> {after} KiB: {per_conn:.0} bytes per connection"
    );
    // Every one of them is still open and serves another request.
    for s in conns.iter_mut().step_by(97) {
        s.write_all(req).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, want);
    }
}
