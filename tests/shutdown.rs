//! SIGTERM (and SIGINT, SIGQUIT): stop accepting, let the requests in flight
//! finish, close idle connections, exit 0.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    // Answers after a pause, so the request is in flight when the signal lands.
    let slow = Backend::spawn(|_| {
        std::thread::sleep(Duration::from_millis(600));
        ok("finished")
    });
    let mut lb = Lb::start(&["-b", &slow.addr()]);
    let mut idle = lb.conn();
    assert_eq!(idle.get("/").text(), "finished");
    let mut busy = lb.conn();
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(150));
    // SAFETY: kill(2) on a child process id we own.
    assert_eq!(unsafe { libc::kill(lb.pid() as i32, libc::SIGTERM) }, 0);
    let r = busy.read_response(false);
    assert_eq!(r.text(), "finished", "the request in flight was lost");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        idle.is_closed(),
        "an idle keep-alive connection was left open"
    );
    // New connections are refused, not left waiting.
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(code) = lb.try_wait() {
            break code;
        }
        assert!(Instant::now() < deadline, "still running after the drain");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, 0);
    assert!(TcpStream::connect(("127.0.0.1", lb.port)).is_err());
    let _ = busy.w.write_all(b"x");
    assert!(lb.log_has("shutdown complete"));
}
