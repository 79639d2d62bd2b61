//! The demo backends (`backend1`, `backend2`): tiny HTTP/1.1 servers that
//! answer every request with their own name, so that round robin shows.
//!
//! Built on the project's own event loop and parser, single-threaded, with
//! keep-alive and pipelining, so they are not the bottleneck of a benchmark.
//! Request bodies (Content-Length or chunked) are read and discarded.
//! `GET /connections` answers with the number of connections accepted so
//! far (that one included): `bench/balance.sh` counts each proxy's new
//! backend connections with it, the same way for every proxy.
#![forbid(unsafe_code)]

use crate::buf::{Buf, BufPool};
use crate::config::MAX_HEADER_LINES;
use crate::event::{Events, Poller};
use crate::http::framing::request_meta;
use crate::http::{parse_request, BodyMode, ChunkedDecoder, HeaderRef, Status};
use crate::net::{Tcp, Transport};
use crate::slab::Slab;
use crate::sys;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

const LISTENER: u64 = u64::MAX;

struct Conn {
    io: Tcp,
    gen: u32,
    rbuf: Option<Buf>,
    out: Vec<u8>,
    out_off: usize,
    /// Body bytes of the current request still to skip.
    skip: u64,
    chunk: Option<ChunkedDecoder>,
    close_after: bool,
}

/// Entry point of a demo backend binary: `NAME [-p PORT | --port PORT]`.
pub fn main_for(name: &str, default_port: u16) -> i32 {
    let mut port = default_port;
    let mut host = "127.0.0.1".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |f: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{f} needs a value"))
        };
        let res: Result<(), String> = match flag.as_str() {
            "-p" | "--port" => value(&flag).and_then(|v| {
                v.parse()
                    .map(|p| port = p)
                    .map_err(|_| format!("{flag}: invalid port {v:?}"))
            }),
            "-h" | "--host" => value(&flag).map(|v| host = v),
            "--help" => {
                println!("usage: {name} [-p|--port PORT (default {default_port})] [-h|--host HOST (default 127.0.0.1)]");
                return 0;
            }
            other => Err(format!("unknown flag {other:?}")),
        };
        if let Err(e) = res {
            eprintln!("{name}: {e}");
            return 2;
        }
    }
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("{name}: --host: invalid address {host:?}");
            return 2;
        }
    };
    let listener = match sys::listen(addr, 1024) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    eprintln!("{name}: listening on {addr}");
    match serve(name, listener) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: {e}");
            1
        }
    }
}

/// Serves forever on `listener`, answering `Hello from NAME`.
pub fn serve(name: &str, listener: OwnedFd) -> io::Result<()> {
    sys::ignore_sigpipe();
    let body = format!("Hello from {name}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        body
    );
    let poller = Poller::new()?;
    poller.add_listener(listener.as_fd(), LISTENER)?;
    let mut events = Events::with_capacity(512);
    let mut conns: Slab<Conn> = Slab::default();
    let mut bufs = BufPool::default();
    let mut hdrs = vec![HeaderRef::default(); MAX_HEADER_LINES];
    let mut accepted: u64 = 0;
    loop {
        poller.wait(&mut events, -1)?;
        for k in 0..events.len() {
            let ev = events.get(k);
            if ev.token == LISTENER {
                while let Ok((fd, _)) = sys::accept(listener.as_fd()) {
                    accepted += 1;
                    let _ = sys::set_nodelay(fd.as_fd());
                    let (i, gen) = conns.insert(Conn {
                        io: Tcp::new(fd),
                        gen: 0,
                        rbuf: None,
                        out: Vec::new(),
                        out_off: 0,
                        skip: 0,
                        chunk: None,
                        close_after: false,
                    });
                    let c = conns.get_mut(i).expect("inserted");
                    c.gen = gen;
                    if poller
                        .add(c.io.fd(), (gen as u64) << 32 | i as u64)
                        .is_err()
                    {
                        conns.remove(i);
                    }
                }
                continue;
            }
            let (i, gen) = (ev.token as u32, (ev.token >> 32) as u32);
            let Some(c) = conns.get_mut_gen(i, gen) else {
                continue;
            };
            if !handle(
                c,
                &mut bufs,
                &mut hdrs,
                response.as_bytes(),
                accepted,
                ev.hup,
            ) {
                if let Some(mut c) = conns.remove(i) {
                    bufs.release(&mut c.rbuf);
                }
            }
        }
    }
}

/// Reads, answers and writes until the socket would block. False: close.
/// Edge-triggered: a short read means the socket is empty (unless the peer
/// hung up), so no read is wasted on `EAGAIN`.
fn handle(
    c: &mut Conn,
    bufs: &mut BufPool,
    hdrs: &mut [HeaderRef],
    response: &[u8],
    accepted: u64,
    hup: bool,
) -> bool {
    let mut drained = false;
    loop {
        // Flush what is owed first.
        while c.out_off < c.out.len() {
            match c.io.write_vectored(&[IoSlice::new(&c.out[c.out_off..])]) {
                Ok(n) => c.out_off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        c.out.clear();
        c.out_off = 0;
        if c.close_after {
            return false;
        }
        let b = c.rbuf.get_or_insert_with(|| bufs.take());
        // Answer every complete request already buffered (pipelining).
        loop {
            if c.skip > 0 {
                let n = (c.skip.min(b.len() as u64)) as usize;
                b.consume(n);
                c.skip -= n as u64;
                if c.skip > 0 {
                    break;
                }
            }
            if let Some(d) = c.chunk.as_mut() {
                match d.feed(b.filled()) {
                    Ok(p) => {
                        b.consume(p.consumed);
                        if !p.done {
                            break;
                        }
                        c.chunk = None;
                    }
                    Err(_) => return false,
                }
            }
            if b.is_empty() {
                break;
            }
            match parse_request(b.filled(), hdrs) {
                Ok(Status::Complete(head)) => {
                    let Ok(meta) = request_meta(b.filled(), &head, hdrs) else {
                        c.out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        c.close_after = true;
                        break;
                    };
                    let counting = head.target.of(b.filled()) == b"/connections";
                    b.consume(head.len);
                    match meta.body {
                        BodyMode::ContentLength(n) => c.skip = n,
                        BodyMode::Chunked => c.chunk = Some(ChunkedDecoder::new()),
                        _ => {}
                    }
                    if counting {
                        let n = format!("{accepted}\n");
                        c.out.extend_from_slice(
                            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", n.len()).as_bytes(),
                        );
                        if !meta.is_head {
                            c.out.extend_from_slice(n.as_bytes());
                        }
                    } else if meta.is_head {
                        let end = response
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map_or(response.len(), |p| p + 4);
                        c.out.extend_from_slice(&response[..end]);
                    } else {
                        c.out.extend_from_slice(response);
                    }
                    if !meta.conn.persistent(head.minor) {
                        c.close_after = true;
                        break;
                    }
                }
                Ok(Status::Partial) => break,
                Err(_) => {
                    c.out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    c.close_after = true;
                    break;
                }
            }
        }
        if !c.out.is_empty() {
            continue;
        }
        if drained {
            bufs.release_if_empty(&mut c.rbuf);
            return true;
        }
        let spare = b.spare();
        let want = spare.len();
        match c.io.read(spare) {
            Ok(0) => return false,
            Ok(n) => {
                b.commit(n);
                drained = n < want && !hup;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                bufs.release_if_empty(&mut c.rbuf);
                return true;
            }
            Err(_) => return false,
        }
    }
}
