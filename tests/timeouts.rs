//! Every timeout, with short settings from a config file. These check what
//! happens when a timeout passes (status, connection closed), never how long
//! it took: the machines are shared and noisy.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn lb_with(backends: &[String], timeouts: &str) -> Lb {
    lb_with_extra(backends, timeouts, "")
}

/// The same, with more top-level keys (`extra` starts with a comma).
fn lb_with_extra(backends: &[String], timeouts: &str, extra: &str) -> Lb {
    let list: Vec<String> = backends
        .iter()
        .map(|b| {
            let (h, p) = b.rsplit_once(':').unwrap();
            format!(r#"{{"host":"{h}","port":{p}}}"#)
        })
        .collect();
    let cfg = format!(
        r#"{{"backends":[{}],"timeouts":{{{timeouts}}}{extra}}}"#,
        list.join(",")
    );
    let path = temp_file("timeouts.json", &cfg);
    Lb::start(&["-c", path.to_str().unwrap()])
}

#[test]
fn a_backend_that_does_not_answer_gives_504() {
    let stall = Backend::raw(|s| {
        std::thread::sleep(Duration::from_secs(5));
        drop(s);
    });
    let lb = lb_with(&[stall.addr()], r#""upstream_response_ms": 300"#);
    let r = get(lb.port, "/");
    assert_eq!(r.status(), 504);
    assert!(lb.log_has("no response in time"), "{}", lb.log_text());
}

#[test]
fn a_slow_client_head_gets_408_and_is_closed() {
    let be = Backend::named("a");
    let lb = lb_with(&[be.addr()], r#""client_header_ms": 400"#);
    let mut c = lb.conn();
    // One byte every 100 ms: far slower than the header timeout allows.
    let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_off = false;
    for &b in head.iter() {
        if c.w.write_all(&[b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let rest = c.read_to_close();
    let text = String::from_utf8_lossy(&rest);
    assert!(cut_off || text.starts_with("HTTP/1.1 408 "), "{text:?}");
    assert_eq!(be.received().len(), 0);
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let be = Backend::named("a");
    let lb = lb_with(&[be.addr()], r#""client_idle_ms": 300"#);
    let mut c = lb.conn();
    assert_eq!(c.get("/").text(), "a");
    c.expect_closed_for("an idle keep-alive connection past client_idle_ms");
}

#[test]
fn a_connect_that_hangs_times_out_and_the_next_backend_answers() {
    // A listener whose accept queue is full: further SYNs are dropped, so a
    // connect to it neither succeeds nor fails.
    let full = lb::sys::listen("127.0.0.1:0".parse().unwrap(), 0).unwrap();
    let addr = lb::sys::local_addr(std::os::fd::AsFd::as_fd(&full)).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        if let Ok(s) = s {
            fillers.push(s);
        }
    }
    let good = Backend::named("good");
    let lb = lb_with(
        &[addr.to_string(), good.addr()],
        r#""upstream_connect_ms": 300"#,
    );
    for _ in 0..3 {
        assert_eq!(get(lb.port, "/").text(), "good");
    }
    assert!(lb.log_has("connect timed out"), "{}", lb.log_text());
}

#[test]
fn a_stalled_request_body_closes_the_connection() {
    let be = Backend::spawn(|m| ok(&m.body.len().to_string()));
    // Streamed bodies (no buffering before the backend): the body-progress
    // timeout is the one that runs. (Buffered bodies: tests/operator.rs.)
    let lb = lb_with_extra(
        &[be.addr()],
        r#""body_progress_ms": 300"#,
        r#", "request_buffer_bytes": 0"#,
    );
    let mut s = TcpStream::connect(("127.0.0.1", lb.port)).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten!!")
        .unwrap();
    let mut c = Client {
        r: std::io::BufReader::new(s.try_clone().unwrap()),
        w: s,
    };
    let rest = c.read_to_close();
    assert!(
        rest.is_empty() || String::from_utf8_lossy(&rest).contains(" 408 "),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    // The stall was the client's: the backend is not charged with it.
    let m = get(lb.port, "/metrics").text();
    assert!(
        m.contains(&format!(
            "lb_backend_failures_total{{backend=\"{}\"}} 0",
            be.addr()
        )),
        "{m}"
    );
}
