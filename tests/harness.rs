//! The test helpers themselves: "closed" means EOF or a reset, never a read
//! that timed out. Each helper is run against tiny in-test peers that stay
//! silent, close, or reset, and must be able to fail.
// A reset needs SO_LINGER 0, which std does not expose: one setsockopt.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What the peer does with the one connection it accepts.
#[derive(Clone, Copy)]
enum Then {
    /// Keeps it open and says nothing more.
    StaySilent,
    /// Closes it (FIN).
    Close,
    /// Resets it: SO_LINGER 0, then close.
    Reset,
}

/// A one-connection peer on loopback: writes `first`, then does `then`.
/// A silent peer holds its connection until dropped (20 s at most).
struct Peer {
    port: u16,
    _hold: mpsc::Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Peer {
    fn start(first: &'static [u8], then: Then) -> Peer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(first).unwrap();
            match then {
                Then::StaySilent => {
                    // Ends when the Peer is dropped (the sender goes away).
                    let _ = rx.recv_timeout(Duration::from_secs(20));
                }
                Then::Close => {}
                Then::Reset => set_linger_zero(&s),
            }
            drop(s);
        });
        Peer {
            port,
            _hold: tx,
            thread: Some(thread),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Dropping the sender first releases a silent peer.
        let (tx, _) = mpsc::channel();
        self._hold = tx;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SO_LINGER with a zero timeout: close(2) then sends RST, not FIN.
fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket we own, with a pointer to a
    // live `linger` and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(l).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
}

/// The panic message of `f`, or None if it did not panic.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let err = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

#[test]
fn a_silent_open_connection_is_not_closed() {
    let peer = Peer::start(b"", Then::StaySilent);
    let mut c = Client::connect(peer.port);
    let t = Instant::now();
    assert!(
        !c.is_closed(),
        "a silent, open connection counted as closed"
    );
    let waited = t.elapsed();
    assert!(
        waited >= CLOSE_WAIT - Duration::from_millis(100) && waited < CLOSE_WAIT * 2,
        "is_closed waited {waited:?}"
    );
    let msg =
        panic_message(|| c.expect_closed()).expect("expect_closed passed on an open connection");
    assert!(
        msg.contains("still open after")
            && msg.contains("read timed out")
            && msg.contains("got 0 bytes"),
        "{msg}"
    );
}

#[test]
fn read_to_close_panics_on_a_silent_connection_with_what_it_read() {
    let peer = Peer::start(b"HTTP/1.1 200 OK\r\n", Then::StaySilent);
    let mut c = Client::connect(peer.port);
    let t = Instant::now();
    let msg = panic_message(|| {
        c.read_to_close();
    })
    .expect("read_to_close returned on an open connection");
    let waited = t.elapsed();
    assert!(
        msg.contains("still open after")
            && msg.contains("read timed out")
            && msg.contains("17 bytes")
            && msg.contains("HTTP/1.1 200 OK"),
        "{msg}"
    );
    assert!(
        waited < IO_TIMEOUT + Duration::from_secs(3),
        "read_to_close is bounded, yet waited {waited:?}"
    );
}

#[test]
fn data_before_silence_is_not_a_close() {
    let peer = Peer::start(b"surprise", Then::StaySilent);
    let mut c = Client::connect(peer.port);
    let msg = panic_message(|| c.expect_closed()).expect("expect_closed passed");
    assert!(
        msg.contains("got 8 bytes") && msg.contains("surprise"),
        "{msg}"
    );
}

#[test]
fn data_then_close_is_read_to_close_but_not_is_closed() {
    let peer = Peer::start(b"bye", Then::Close);
    let mut c = Client::connect(peer.port);
    assert_eq!(c.read_to_close(), b"bye");
    let peer = Peer::start(b"bye", Then::Close);
    let mut c = Client::connect(peer.port);
    assert!(!c.is_closed(), "unexpected bytes before the close");
    let peer = Peer::start(b"bye", Then::Close);
    let mut c = Client::connect(peer.port);
    let msg = panic_message(|| c.expect_closed()).expect("expect_closed passed");
    assert!(
        msg.contains("closed (EOF)") && msg.contains("got 3 bytes"),
        "{msg}"
    );
}

#[test]
fn a_closed_connection_is_closed() {
    let peer = Peer::start(b"", Then::Close);
    let mut c = Client::connect(peer.port);
    let t = Instant::now();
    assert!(c.is_closed());
    assert!(
        t.elapsed() < CLOSE_WAIT,
        "a close was seen only after the wait"
    );
    let peer = Peer::start(b"", Then::Close);
    Client::connect(peer.port).expect_closed();
    let peer = Peer::start(b"", Then::Close);
    assert_eq!(Client::connect(peer.port).read_to_close(), b"");
}

#[test]
fn a_reset_connection_is_closed() {
    let peer = Peer::start(b"", Then::Reset);
    let mut c = Client::connect(peer.port);
    drop(peer); // the reset has happened
    let (got, end) = c.read_until_end(CLOSE_WAIT);
    assert_eq!(got, b"");
    assert!(
        matches!(end, End::Reset(_)),
        "SO_LINGER 0 then close should read as a reset, got {end}"
    );
    let peer = Peer::start(b"", Then::Reset);
    let mut c = Client::connect(peer.port);
    drop(peer);
    assert!(c.is_closed());
    let peer = Peer::start(b"", Then::Reset);
    let mut c = Client::connect(peer.port);
    drop(peer);
    c.expect_closed();
    let peer = Peer::start(b"", Then::Reset);
    let mut c = Client::connect(peer.port);
    drop(peer);
    assert_eq!(c.read_to_close(), b"");
}

#[test]
fn a_response_head_that_never_comes_is_reported_as_silence() {
    let peer = Peer::start(b"HTTP/1.1 200 OK\r\nContent-", Then::StaySilent);
    let mut c = Client::connect(peer.port);
    c.w.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let msg = panic_message(|| {
        c.read_head();
    })
    .expect("read_head returned");
    assert!(
        msg.contains("connection still open") && msg.contains("25 bytes"),
        "{msg}"
    );
    let peer = Peer::start(b"", Then::Close);
    let mut c = Client::connect(peer.port);
    let msg = panic_message(|| {
        c.read_head();
    })
    .expect("read_head returned");
    assert!(msg.contains("closed (EOF) before a response head"), "{msg}");
}

#[test]
fn stream_until_end_sees_eof_reset_and_silence() {
    for (then, want) in [
        (Then::Close, "closed (EOF)"),
        (Then::Reset, "reset"),
        (Then::StaySilent, "still open"),
    ] {
        let peer = Peer::start(b"x", then);
        let s = TcpStream::connect(("127.0.0.1", peer.port)).unwrap();
        let limit = match then {
            Then::StaySilent => Duration::from_millis(500),
            Then::Close | Then::Reset => CLOSE_WAIT,
        };
        let (got, end) = stream_until_end(&s, limit);
        assert!(end.to_string().contains(want), "{end} for {want}");
        // A reset may discard the byte that came before it.
        assert!(got == b"x" || matches!(end, End::Reset(_)), "{got:?}");
    }
}
