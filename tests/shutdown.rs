//! SIGTERM (and SIGINT, SIGQUIT): stop accepting, let the requests in flight
//! finish, close idle connections, exit 0.

mod common;
use common::*;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    // Answers /slow only once the gate opens, so the request is in flight
    // for as long as the test needs (10 s at most).
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let arrived = Arc::new(AtomicBool::new(false));
    let (g, a) = (gate.clone(), arrived.clone());
    let slow = Backend::spawn(move |m| {
        if m.target() == "/slow" {
            a.store(true, Ordering::SeqCst);
            let (open, cv) = &*g;
            let open = open.lock().unwrap();
            let _ = cv
                .wait_timeout_while(open, Duration::from_secs(10), |o| !*o)
                .unwrap();
        }
        ok("finished")
    });
    let mut lb = Lb::start(&["-b", &slow.addr()]);
    let mut idle = lb.conn();
    assert_eq!(idle.get("/").text(), "finished");
    let mut busy = lb.conn();
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !arrived.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "/slow never reached the backend");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGTERM. The idle connection is closed by the drain, while the process
    // is still running (the request in flight holds it), not by its exit.
    signal(lb.pid(), 15);
    idle.expect_closed_for("an idle keep-alive connection after SIGTERM");
    assert_eq!(
        lb.try_wait(),
        None,
        "exited with a request in flight (or the idle close was only the exit)"
    );
    // New connections are refused, or closed at once, not left waiting.
    if let Ok(s) = TcpStream::connect(("127.0.0.1", lb.port)) {
        let (got, end) = stream_until_end(&s, CLOSE_WAIT);
        assert!(
            end.closed() && got.is_empty(),
            "a connection accepted while draining: {end}, got {}",
            show(&got)
        );
    }
    {
        let (open, cv) = &*gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    let r = busy.read_response(false);
    assert_eq!(r.text(), "finished", "the request in flight was lost");
    assert_eq!(r.header("connection"), Some("close"));
    busy.expect_closed_for("the drained connection after its response");
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
    assert!(lb.log_has("shutdown complete"));
}
