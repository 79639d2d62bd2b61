//! Hostile clients kept off the backends, as an operator would check it:
//! slow request bodies are read whole before a backend is chosen (a slow
//! upload holds no backend connection), a body over `request_buffer_bytes`
//! streams as before, and a buffered body that does not arrive within
//! `client_body_ms` gets 408.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

fn lb_with(backends: &[String], extra: &str) -> (Lb, TempFile) {
    let list: Vec<String> = backends
        .iter()
        .map(|a| {
            let (h, p) = a.rsplit_once(':').unwrap();
            format!(r#"{{"host": "{h}", "port": {p}}}"#)
        })
        .collect();
    let cfg = format!(r#"{{"backends": [{}]{extra}}}"#, list.join(", "));
    let file = temp_file("operator.json", &cfg);
    let lb = Lb::start(&["-w", "2", "-c", file.to_str().unwrap()]);
    (lb, file)
}

#[test]
fn two_hundred_slow_body_clients_hold_no_backend_connection() {
    let be = Backend::spawn(|m| ok(&format!("got {}", m.body.len())));
    let (lb, _f) = lb_with(&[be.addr()], "");
    // 200 clients each announce a 100-byte body and send a byte a second.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
            s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nx")
                .unwrap();
            s
        })
        .collect();
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1000));
        for s in &mut slow {
            let _ = s.write_all(b"x");
        }
        // Meanwhile a normal client is served at once.
        let mut c = lb.conn();
        c.send(b"POST /quick HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
        let r = c.read_response(false);
        assert_eq!((r.status(), r.text()), (200, "got 5".to_string()));
    }
    let conns = be.connections.load(Ordering::Relaxed);
    let seen = be.received().len();
    eprintln!("200 slow-body clients: {conns} backend connections, {seen} requests at the backend");
    // Only the normal client's requests reached the backend, over at most
    // one pooled connection per worker.
    assert_eq!(seen, 3, "a slow body reached the backend");
    assert!(conns <= 2, "{conns} backend connections");
    drop(slow);
}

#[test]
fn a_body_over_request_buffer_bytes_streams_to_the_backend_as_it_comes() {
    let be = Backend::spawn(|m| ok(&format!("got {}", m.body.len())));
    let (lb, _f) = lb_with(&[be.addr()], r#", "request_buffer_bytes": 1024"#);
    let mut c = lb.conn();
    c.send(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    c.send(&vec![b'a'; 50_000]);
    // Half the body is in: the backend already has the request streaming in.
    assert!(
        eventually(Duration::from_secs(5), || be
            .connections
            .load(Ordering::Relaxed)
            == 1),
        "a body over the buffer did not stream"
    );
    c.send(&vec![b'b'; 50_000]);
    let r = c.read_response(false);
    assert_eq!((r.status(), r.text()), (200, "got 100000".to_string()));
}

#[test]
fn a_buffered_body_not_in_within_client_body_ms_gets_408_and_no_backend_sees_it() {
    let be = Backend::named("a");
    let (lb, _f) = lb_with(&[be.addr()], r#", "timeouts": {"client_body_ms": 300}"#);
    let mut c = lb.conn();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten!!");
    let rest = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    assert!(rest.starts_with("HTTP/1.1 408 "), "{rest:?}");
    assert_eq!(be.connections.load(Ordering::Relaxed), 0);
    assert!(lb.log_has("client_body_ms"), "{}", lb.log_text());
}

#[test]
fn a_body_cut_short_by_the_client_gets_400_and_never_reaches_a_backend() {
    let be = Backend::named("a");
    let (lb, _f) = lb_with(&[be.addr()], "");
    let mut c = lb.conn();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten!!");
    shutdown_write(&c);
    let rest = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    assert!(rest.starts_with("HTTP/1.1 400 "), "{rest:?}");
    assert_eq!(be.connections.load(Ordering::Relaxed), 0);
}
