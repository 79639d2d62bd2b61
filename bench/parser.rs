//! Head parser throughput, side by side with httparse (run: `make bench`, or
//! `cargo bench --bench parser`).
//!
//! Parses a fixed corpus of realistic request heads over and over and reports
//! bytes/s and heads/s for: this parser at the detected SIMD level, this
//! parser forced to the scalar path, this parser followed by `request_meta`
//! (the framing checks the proxy does on every request), and httparse, which
//! does the job comparable to `parse_request` alone (syntax only, no framing).
//! Each parser is timed in `ROUNDS` alternating rounds; the table shows the
//! medians. It is printed and written to `bench/results.md` under
//! `## Parser` (that section is replaced; the rest of the file is kept).
//!
//! Environment: `PARSER_BENCH_SECS` (seconds per parser per round, default
//! 0.6), `PARSER_BENCH_NO_WRITE=1` (print only).

use lb::http::framing::request_meta;
use lb::http::simd::{self, Level};
use lb::http::{parse_request, HeaderRef, Status};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
/// Header slots, for both parsers.
const SLOTS: usize = 64;

const CHROME: &[u8] = b"GET /products/shoes/running?color=blue&size=42&sort=price_asc HTTP/1.1\r\n\
Host: www.example-shop.com\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Windows\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Referer: https://www.example-shop.com/products/shoes\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n\
Cookie: session_id=3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e; _ga=GA1.2.1839204756.1714022931; _gid=GA1.2.902817364.1714022931; cart=eyJpdGVtcyI6W3siaWQiOjQyLCJxdHkiOjF9XX0; consent=analytics%3Dtrue%26ads%3Dfalse; theme=dark; _fbp=fb.1.1714022931234.1234567890; csrftoken=kR8vX2mQ9pL4nT7wY1zB6cF3hJ5dG0sA\r\n\
\r\n";

const FIREFOX: &[u8] = b"GET /blog/2024/05/http-parsing-at-line-rate.html HTTP/1.1\r\n\
Host: blog.example.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://news.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: _pk_id.1.1fff=8d2e4c6a1b3f5e7d.1714022931.; _pk_ses.1.1fff=1; wp-settings-time-1=1714022931; comment_author_email=reader%40example.com\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: cross-site\r\n\
Priority: u=0, i\r\n\
\r\n";

const API_POST: &[u8] = b"POST /api/v2/orders?idempotency=1 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: okhttp/4.12.0\r\n\
Accept: application/json\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjFlOWdkazcifQ.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20iLCJzdWIiOiIyNDgyODkiLCJhdWQiOiJhcGkiLCJleHAiOjE3MTQwMjY1MzEsImlhdCI6MTcxNDAyMjkzMSwic2NvcGUiOiJvcmRlcnM6d3JpdGUifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1rwW1gFWFOEjXk-Q\r\n\
Content-Length: 348\r\n\
X-Request-Id: 7f3c2a9e-4b1d-4e8a-9c6f-2d5b8e1a3c70\r\n\
Accept-Encoding: gzip\r\n\
Connection: keep-alive\r\n\
\r\n";

const CURL: &[u8] = b"GET /v1/status?verbose=1 HTTP/1.1\r\n\
Host: localhost:8080\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
\r\n";

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.12:8080\r\n\r\n";

const CORPUS: [(&str, &[u8]); 5] = [
    ("chrome", CHROME),
    ("firefox", FIREFOX),
    ("api-post", API_POST),
    ("curl", CURL),
    ("health", HEALTH),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Parser {
    Ours(Level),
    OursWithMeta(Level),
    Httparse,
}

impl Parser {
    fn name(self) -> String {
        match self {
            Parser::Ours(l) => format!("lb::http ({})", level_name(l)),
            Parser::OursWithMeta(l) => format!("lb::http ({}) + request_meta", level_name(l)),
            Parser::Httparse => "httparse".to_string(),
        }
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Scalar => "scalar",
        Level::Sse42 => "SSE4.2",
        Level::Avx2 => "AVX2",
    }
}

/// The heads to parse, each in its own allocation, in a fixed shuffled
/// order so the branch pattern is not a short cycle.
fn workload() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..16)
        .flat_map(|_| CORPUS.iter().map(|(_, h)| h.to_vec()))
        .collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..v.len()).rev() {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let j = (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33) as usize % (i + 1);
        v.swap(i, j);
    }
    v
}

/// Parses every head once; returns something derived from each result so
/// that nothing can be skipped.
#[inline(never)]
fn pass<'a>(
    p: Parser,
    heads: &'a [Vec<u8>],
    slots: &mut [HeaderRef],
    hp: &mut [httparse::Header<'a>],
) -> usize {
    let mut acc = 0usize;
    for buf in heads {
        let buf = black_box(&buf[..]);
        match p {
            Parser::Ours(_) => {
                if let Ok(Status::Complete(h)) = parse_request(buf, slots) {
                    acc += h.len + h.header_count;
                }
            }
            Parser::OursWithMeta(_) => {
                if let Ok(Status::Complete(h)) = parse_request(buf, slots) {
                    if let Ok(m) = request_meta(buf, &h, slots) {
                        acc += h.len + h.header_count + m.idempotent as usize;
                    }
                }
            }
            Parser::Httparse => {
                let mut req = httparse::Request::new(&mut *hp);
                if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
                    acc += n + req.headers.len();
                }
            }
        }
        black_box(&mut *slots);
    }
    black_box(acc)
}

/// Runs `p` for about `secs`; returns (bytes/s, heads/s).
fn measure(p: Parser, heads: &[Vec<u8>], secs: f64) -> (f64, f64) {
    match p {
        Parser::Ours(l) | Parser::OursWithMeta(l) => simd::set_level(l),
        Parser::Httparse => {}
    }
    let mut slots = vec![HeaderRef::default(); SLOTS];
    let mut hp = [httparse::EMPTY_HEADER; SLOTS];
    let bytes_per_pass: usize = heads.iter().map(Vec::len).sum();
    // Warm up caches and the branch predictor.
    for _ in 0..50 {
        pass(p, heads, &mut slots, &mut hp);
    }
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut passes = 0u64;
    let elapsed = loop {
        for _ in 0..100 {
            pass(p, heads, &mut slots, &mut hp);
        }
        passes += 100;
        let e = start.elapsed();
        if e >= budget {
            break e.as_secs_f64();
        }
    };
    (
        (passes as f64 * bytes_per_pass as f64) / elapsed,
        (passes as f64 * heads.len() as f64) / elapsed,
    )
}

/// Every head must parse completely, the same way, with both parsers.
fn check_corpus() {
    for (name, buf) in CORPUS {
        let mut slots = [HeaderRef::default(); SLOTS];
        let Ok(Status::Complete(h)) = parse_request(buf, &mut slots) else {
            panic!("lb::http does not parse the {name} head");
        };
        request_meta(buf, &h, &slots).unwrap_or_else(|e| panic!("{name}: request_meta: {e}"));
        let mut hp = [httparse::EMPTY_HEADER; SLOTS];
        let mut req = httparse::Request::new(&mut hp);
        let Ok(httparse::Status::Complete(n)) = req.parse(buf) else {
            panic!("httparse does not parse the {name} head");
        };
        assert_eq!(
            (n, req.headers.len()),
            (h.len, h.header_count),
            "{name}: the parsers disagree"
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The httparse version in Cargo.lock.
fn httparse_version() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"httparse\"" {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = ")) {
                return v.trim_matches('"').to_string();
            }
        }
    }
    "?".to_string()
}

fn date_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Replaces the `## Parser` section of `text` (up to the next `## ` heading
/// or the end) with `section`, or appends it.
fn replace_section(text: &str, section: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    let mut replaced = false;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "## Parser" {
            skipping = true;
            replaced = true;
            out.push_str(section);
            continue;
        }
        if skipping && line.starts_with("## ") {
            skipping = false;
            out.push('\n');
        }
        if !skipping {
            out.push_str(line);
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
        }
        out.push_str(section);
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; there are no other options.
    let secs: f64 = std::env::var("PARSER_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.6);
    let detected = simd::level();
    check_corpus();
    let heads = workload();
    let avg = heads.iter().map(Vec::len).sum::<usize>() as f64 / heads.len() as f64;
    // The detected level, then every slower one this CPU has, down to scalar.
    let mut parsers = vec![Parser::Ours(detected)];
    for l in simd::available().into_iter().rev() {
        if l != detected && (l as u8) < (detected as u8) {
            parsers.push(Parser::Ours(l));
        }
    }
    parsers.push(Parser::OursWithMeta(detected));
    parsers.push(Parser::Httparse);
    eprintln!(
        "parser bench: {} heads ({} distinct, {avg:.0} bytes on average), {} rounds of {secs} s per parser",
        heads.len(),
        CORPUS.len(),
        ROUNDS
    );
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); parsers.len()];
    for round in 1..=ROUNDS {
        for (k, &p) in parsers.iter().enumerate() {
            let (b, h) = measure(p, &heads, secs);
            eprintln!(
                "  round {round}: {:<34} {:>8.1} MB/s {:>7.2} Mheads/s",
                p.name(),
                b / 1e6,
                h / 1e6
            );
            results[k].push((b, h));
        }
    }
    simd::set_level(detected);
    let med: Vec<(f64, f64)> = results
        .iter()
        .map(|r| {
            (
                median(r.iter().map(|x| x.0).collect()),
                median(r.iter().map(|x| x.1).collect()),
            )
        })
        .collect();
    let base = med[parsers.len() - 1].0;
    let mut table =
        String::from("| parser | MB/s | Mheads/s | vs httparse |\n|---|---:|---:|---:|\n");
    for (p, (b, h)) in parsers.iter().zip(&med) {
        table.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2}x |\n",
            p.name(),
            b / 1e6,
            h / 1e6,
            b / base
        ));
    }
    let corpus: Vec<String> = CORPUS
        .iter()
        .map(|(n, h)| format!("{n} {} B", h.len()))
        .collect();
    let section = format!(
        "## Parser\n\n\
         machine: {} CPU(s), {}; SIMD level detected: {}; {}\n\n\
         corpus: {} request heads ({}), average {avg:.0} bytes; {SLOTS} header slots for both parsers; \
         medians of {ROUNDS} alternating rounds of {secs} s per parser. MB/s counts head bytes \
         (10^6 bytes/s). httparse {} (its own runtime SIMD detection) and `parse_request` check \
         syntax only; the `+ request_meta` line adds the framing checks the proxy does on every \
         request.\n\n\
         {table}\n\
         Produced by `make bench` (`cargo bench --bench parser`, bench/parser.rs).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        level_name(detected),
        date_utc(),
        CORPUS.len(),
        corpus.join(", "),
        httparse_version(),
    );
    println!("\n{table}");
    if std::env::var_os("PARSER_BENCH_NO_WRITE").is_none() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/results.md");
        let old = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, replace_section(&old, &section))
            .unwrap_or_else(|e| panic!("writing {path}: {e}"));
        eprintln!("wrote {path} (## Parser)");
    }
}
