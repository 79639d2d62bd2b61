//! Nothing a client or a backend sends may take the load balancer down:
//! thousands of mutated requests, against a backend that answers with
//! mutated responses, cut connections and stalls. Afterwards the process is
//! alive and serves a clean request. Bounded in count and time.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GET /u HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nrest",
    b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nhi",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.below(4) {
        if v.is_empty() {
            break;
        }
        let i = rng.below(v.len());
        match rng.below(5) {
            0 => v[i] = rng.next() as u8,
            1 => {
                v.insert(i, b"\r\n\0 :;\t\x7f"[rng.below(8)]);
            }
            2 => {
                v.remove(i);
            }
            3 => v.truncate(i),
            _ => {
                let j = rng.below(v.len());
                let b = v[j];
                v.insert(i, b);
            }
        }
    }
    v
}

#[test]
fn mutated_traffic_from_both_sides_never_takes_the_process_down() {
    let be = Backend::raw(|mut s| {
        let seed = s.peer_addr().map(|a| a.port() as u64).unwrap_or(1) | 1;
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        for _ in 0..4 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            match rng.below(10) {
                0 => return,                                                           // hang up
                1 => std::thread::sleep(Duration::from_millis(rng.below(300) as u64)), // stall
                _ => {}
            }
            let r = RESPONSES[rng.below(RESPONSES.len())];
            let out = if rng.below(2) == 0 {
                r.to_vec()
            } else {
                mutate(&mut rng, r)
            };
            if s.write_all(&out).is_err() {
                return;
            }
        }
    });
    let cfg = format!(
        r#"{{"backends":[{{"host":"127.0.0.1","port":{}}}],"timeouts":{{"upstream_response_ms":400,"client_header_ms":400,"body_progress_ms":400}}}}"#,
        be.port
    );
    let path = temp_file("chaos.json", &cfg);
    let lb = Lb::start(&["-c", path.to_str().unwrap(), "-l", "err"]);
    // Eight clients at once, each with its own seed (CHAOS_SEED varies them).
    let port = lb.port;
    let base: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED);
    let sent: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8u64)
            .map(|t| {
                scope.spawn(move || {
                    let mut rng = Rng(base + t * 7919);
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let mut sent = 0;
                    while sent < 150 && Instant::now() < deadline {
                        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(150)))
                            .unwrap();
                        let r = REQUESTS[rng.below(REQUESTS.len())];
                        let req = if rng.below(3) == 0 {
                            r.to_vec()
                        } else {
                            mutate(&mut rng, r)
                        };
                        let _ = s.write_all(&req);
                        if rng.below(4) == 0 {
                            let _ = s.shutdown(std::net::Shutdown::Write);
                        }
                        let mut sink = [0u8; 4096];
                        if rng.below(5) != 0 {
                            let _ = s.read(&mut sink);
                        }
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    // Still alive, still answering.
    let r = lb.conn().get("/metrics");
    assert_eq!(
        r.status(),
        200,
        "the load balancer stopped answering after {sent} hostile exchanges"
    );
    assert!(!lb.log_text().contains("panicked"), "{}", lb.log_text());
    // And none of those connections is left hanging: every one was closed
    // (by its client or by a timeout), leaving only the one asking.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = lb.conn().get("/metrics").text();
        let active = text
            .lines()
            .find_map(|l| l.strip_prefix("lb_connections_active "))
            .unwrap()
            .to_string();
        if active == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{active} connections still open after the traffic stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("{sent} mutated exchanges; the load balancer is still serving");
}
