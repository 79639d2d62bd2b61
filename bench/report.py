#!/usr/bin/env python3
"""Prints the tables of `make bench` and writes bench/results.md and
bench/results.svg from the raw output in bench/out/ (run by bench.sh's
write_report, in bench/lib.sh).

    report.py OUT RESULTS SVG DATE MACHINE VERSIONS SETTINGS NOTES PROXIES

results.md: a head (date, machine, versions, settings), then a Warnings
section if bench/out/warnings.txt has any, then the sections of SECTIONS
below, in that order: a function per scenario, each returning its
sections as (title, markdown), none when the scenario did not run. It
rewrites only the part above `## Parser` (cargo bench --bench parser's).
results.svg: two bar charts (req/s, CPU µs per request) per throughput
section (tput_tables with a chart label), one scale for the plain-HTTP
worker counts and one of its own for each other.
"""
import csv, os, re, statistics, sys

out, results, svg_path, date, machine, versions, settings, notes, proxies = sys.argv[1:10]
SHORT = {"lb": "load_balancer", "nginx": "nginx", "haproxy": "haproxy"}
names = [SHORT[p] for p in proxies.split()]


def rows(f):
    p = os.path.join(out, f)
    return list(csv.DictReader(open(p), delimiter="\t")) if os.path.exists(p) else []


def fx(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


# The throughput runs (throughput in lib.sh) of every scenario whose section
# has the throughput tables: their proxies and connection counts, in order,
# are the rows and groups of every such table and chart.
runs = rows("runs.tsv")          # scenario plain
tls_runs = rows("tls.tsv")       # scenario tls
tt_runs = rows("tlsterm.tsv")    # scenario tlsterm: the wrk runs over HTTPS
tt_hs = rows("tlsterm-hs.tsv")   # and its handshake runs
TPUT_RUNS = runs + tls_runs + tt_runs
alog = rows("accesslog.tsv")     # scenario accesslog
st = rows("strace.tsv")          # scenario strace
idle = rows("idle.tsv")          # scenario idle
body = rows("body.tsv")          # scenario body

ncpu = os.cpu_count() or 1
workers_list, conns_list, all_names = [], [], []
for r in runs:
    if int(r["workers"]) not in workers_list:
        workers_list.append(int(r["workers"]))
for r in TPUT_RUNS:
    for lst, v in ((conns_list, int(r["conns"])), (all_names, r["proxy"])):
        if v not in lst:
            lst.append(v)
ORDER = ["load_balancer", "load_balancer sp", "nginx", "haproxy"]
all_names.sort(key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
med = {}              # (chart key, proxy, conns) -> the medians of its runs
chart_rows = []       # (chart key, label): a row of the SVG each
errors = False        # wrk reported errors somewhere
image_placed = False  # the chart's link, in the first throughput section


def chart_image():
    """The link to results.svg, for the first throughput section only."""
    global image_placed
    if image_placed:
        return []
    image_placed = True
    return ["![req/s and CPU µs per request](results.svg)"]


def tput_tables(rs_all, wk, backends, label):
    """The throughput tables (one per concurrency) and the CPU-use table of
    the runs rs_all; medians go to med[(wk, proxy, conns)] and the runs get
    a row of the chart, labelled `label`. With the TLS backend's columns
    (be_accepts ...) in the runs, the tables get them."""
    global errors
    chart_rows.append((wk, label))
    tls = bool(rs_all) and "be_accepts" in rs_all[0]
    tput = []
    wnames = [n for n in all_names if any(r["proxy"] == n for r in rs_all)]
    cpu_t = [f"CPU use during the measured runs, in cores of this machine's {ncpu} (CPU seconds per second of the run, medians): "
             f"**proxy** is all the proxy's processes and threads, **backends** {backends}, **other** the rest of the "
             "busy time (wrk, the kernel's network work not charged to a process, anything else running), **steal** time the "
             "hypervisor gave to other machines.", "",
             "| proxy | conns | proxy | backends | other | idle | steal |", "|---|---:|---:|---:|---:|---:|---:|"]
    for c in conns_list:
        for n in wnames:
            rs = [r for r in rs_all if r["proxy"] == n and int(r["conns"]) == c]
            if not rs:
                continue
            m = {k: statistics.median(float(r[k]) for r in rs)
                 for k in ("req_s", "p50_ms", "p99_ms", "max_ms", "cpu_us_req")}
            m["errors"] = sum(int(r["non2xx"]) + int(r["sock_err"]) for r in rs)
            m["requests"] = sum(int(r["requests"]) for r in rs)
            if tls:
                m["be_accepts"] = statistics.median(int(r["be_accepts"]) for r in rs)
                m["be_new"] = sum(int(r["be_new"]) for r in rs)
                m["be_resumed"] = sum(int(r["be_resumed"]) for r in rs)
                m["be_probes"] = sum(int(r["be_probes"]) for r in rs)
                m["be_requests"] = sum(int(r["be_requests"]) for r in rs)
                m["be_aborted"] = sum(int(r["be_aborted"]) for r in rs)
                tlsv = [r["be_tls"] for r in rs if r["be_tls"] != "-"]
                m["be_tls"] = max(set(tlsv), key=tlsv.count) if tlsv else "–"
            errors |= m["errors"] > 0
            med[(wk, n, c)] = m
            cores = {k: statistics.median(float(r[k]) / float(r["wall_s"]) for r in rs)
                     for k in ("cpu_s", "backends_cpu_s", "busy_s", "idle_s", "steal_s")}
            cpu_t.append(f"| {n} | {c} | {cores['cpu_s']:.2f} | {cores['backends_cpu_s']:.2f} | "
                         f"{max(0.0, cores['busy_s'] - cores['cpu_s'] - cores['backends_cpu_s']):.2f} | "
                         f"{cores['idle_s']:.2f} | {cores['steal_s']:.2f} |")
        head = "| proxy | req/s | p50 ms | p99 ms | max ms | CPU µs/req | req/s vs nginx | p99 vs nginx | CPU/req vs nginx |"
        rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        if tls:
            head += " backend conns/run | resumed | abandoned | TLS |"
            rule += "---:|---:|---:|---|"
        t = [f"**{c} connections**", "", head + " errors |", rule + "---:|"]
        ng = med.get((wk, "nginx", c))
        vs = lambda m, k: fx(m[k], ng[k]) if ng else "n/a"
        for n in wnames:
            m = med.get((wk, n, c))
            if not m:
                continue
            row = (f"| {n} | {m['req_s']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['max_ms']:.2f} | "
                   f"{m['cpu_us_req']:.1f} | {vs(m, 'req_s')} | {vs(m, 'p99_ms')} | {vs(m, 'cpu_us_req')} |")
            if tls:
                res = f"{m['be_resumed']} of {m['be_new']}" if m["be_new"] else "–"
                row += f" {m['be_accepts']:.0f} | {res} | {m['be_aborted']} | {m['be_tls']} |"
            t.append(row + f" {m['errors']} of {m['requests']} |")
        tput.append("\n".join(t))
    return tput, cpu_t


def plain():
    """Throughput and latency: a section per worker count, a table per concurrency."""
    sections = []
    setups = {int(r["workers"]): r for r in rows("sections.tsv")}
    for w in workers_list:
        tput, cpu_t = tput_tables([r for r in runs if int(r["workers"]) == w], w, "backend1 + backend2",
                                  "1 worker" if w == 1 else f"{w} workers")
        intro = chart_image()
        s = setups.get(w)
        if s:
            intro.append(f"Each proxy: {s['setup']}.")
            if s["note"]:
                intro.append(s["note"])
        title = "Throughput and latency: " + ("one worker each" if w == 1 else f"{w} workers each")
        sections.append((title, "\n\n".join(intro + tput + ["\n".join(cpu_t)])))
    return sections


def accesslog():
    """The access log's cost: each proxy without and with its access log."""
    global errors
    if not alog:
        return []
    t = ["Each proxy twice, started for these runs only, in front of the same backends, with the same wrk settings, "
         "the runs alternating: the load balancer `-m mp -w 1` without and with `--access-log bench/out/access.log` "
         "(nginx `combined` plus timings, buffered per worker, written at 64 KiB or once a second)"
         + (", nginx `worker_processes 1` without and with `access_log bench/out/access-nginx.log combined buffer=64k "
            "flush=1s`" if any(r["base"] == "nginx" for r in alog) else "")
         + ". Each log is truncated before a run and its lines counted once the proxy has written them out; a line per "
         "request wrk completed is expected, plus at most one per connection for the requests in flight when wrk stopped. "
         "**CPU added** is CPU µs/req with the log minus without (the medians), and that as a share of the figure without; "
         "**req/s change** the same for req/s. The last buffer, written after the run, is not in the run's CPU time: one "
         "`write` of at most 64 KiB.", "",
         "| proxy | conns | req/s, no log | req/s, log | req/s change | CPU µs/req, no log | CPU µs/req, log "
         "| CPU added µs/req | CPU added | log lines / wrk requests, all runs | errors |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    bases = []
    for r in alog:
        if r["base"] not in bases:
            bases.append(r["base"])
    aconns = []
    for r in alog:
        if int(r["conns"]) not in aconns:
            aconns.append(int(r["conns"]))
    pct = lambda a, b: f"{(a / b - 1) * 100:+.1f}%" if b else "n/a"
    for c in aconns:
        for b in bases:
            off = [r for r in alog if r["base"] == b and int(r["conns"]) == c and r["log"] == "off"]
            on = [r for r in alog if r["base"] == b and int(r["conns"]) == c and r["log"] == "on"]
            if not off or not on:
                continue
            m = {side: {k: statistics.median(float(r[k]) for r in rs) for k in ("req_s", "cpu_us_req")}
                 for side, rs in (("off", off), ("on", on))}
            errs = sum(int(r["non2xx"]) + int(r["sock_err"]) for r in off + on)
            reqs = sum(int(r["requests"]) for r in off + on)
            errors |= errs > 0
            lines = sum(int(r["log_lines"]) for r in on)
            on_reqs = sum(int(r["requests"]) for r in on)
            t.append(f"| {b} | {c} | {m['off']['req_s']:.0f} | {m['on']['req_s']:.0f} | {pct(m['on']['req_s'], m['off']['req_s'])} | "
                     f"{m['off']['cpu_us_req']:.2f} | {m['on']['cpu_us_req']:.2f} | "
                     f"{m['on']['cpu_us_req'] - m['off']['cpu_us_req']:+.2f} | {pct(m['on']['cpu_us_req'], m['off']['cpu_us_req'])} | "
                     f"{lines} / {on_reqs} | {errs} of {reqs} |")
    return [("Access log cost", "\n".join(t))]


def tls():
    """TLS to the backend: the same tables, the TLS backend's columns added."""
    if not tls_runs:
        return []
    tput, cpu_t = tput_tables(tls_runs, "tls", "the TLS backend nginx (master and worker)", "TLS backend")
    setup = rows("tls-setup.tsv")
    intro = chart_image()
    intro.append(
        "wrk sends plain HTTP to each proxy (one worker each), which forwards every request over TLS to one HTTPS "
        "backend: a separate nginx (one worker, `listen ... ssl`, TLSv1.2 and TLSv1.3, session tickets on and no "
        "session cache, its defaults) answering `return 200` with a 20-byte body, the size of the demo backends', "
        "its keep-alive connections never closed for their request count. Its certificate (ECDSA P-256, for "
        "localhost: SAN DNS:localhost and IP:127.0.0.1) is signed by a private CA the script makes with openssl "
        "(bench/out/tls/); every proxy verifies it against that CA and sends SNI localhost.")
    if setup:
        intro.append(f"Each proxy: {setup[0]['setup']}.")
    intro.append(
        "**backend conns/run**: TCP connections the TLS backend accepted during a measured run (its stub_status), "
        "the median of the runs; each is a full or resumed TLS handshake. The load balancer's health probes (a new "
        "connection per probe, every 5 s) are among its connections. **resumed**: of the connections that carried a "
        "request (probes apart), over all runs, how many resumed a TLS session (`$ssl_session_reused`). **abandoned**: "
        "handshakes the proxy gave up (closed or reset the connection during the handshake), over all runs. **TLS**: the "
        "protocol and cipher most of them negotiated. The other columns are those of the plain-HTTP tables.")
    return [("TLS to the backend", "\n\n".join(intro + tput + ["\n".join(cpu_t)]))]


def tlsterm():
    """TLS termination: wrk over HTTPS, then the handshake runs."""
    if not tt_runs and not tt_hs:
        return []
    setup = rows("tlsterm-setup.tsv")
    intro = chart_image() if tt_runs else []
    intro.append(
        "The load balancer and nginx, one worker each, terminate HTTPS in front of the same plain backends (backend1 + "
        "backend2), with the same certificate: ECDSA P-256 for localhost (SAN DNS:localhost and IP:127.0.0.1), signed by "
        "the private CA the script makes with openssl (bench/out/tls/), served without its CA. Both offer TLS 1.2 and 1.3 and "
        "ALPN http/1.1.")
    if setup:
        intro.append(f"Each proxy: {setup[0]['setup']}.")
        intro.append(f"Negotiated with OpenSSL's defaults (wrk's and `openssl s_time`'s library): {setup[0]['tls']}.")
    parts = list(intro)
    if tt_runs:
        tput, cpu_t = tput_tables(tt_runs, "tlsterm", "backend1 + backend2", "TLS listener")
        nc = {}
        for r in tt_runs:
            nc.setdefault((r["proxy"], int(r["conns"])), []).append(int(r["new_conns"]))
        counts = "; ".join(f"{n} at {c}: {', '.join(map(str, v))}" for (n, c), v in nc.items())
        parts.append(
            "**wrk over HTTPS** (`wrk https://127.0.0.1:PORT/`, the runs, warm-up and alternation of the plain-HTTP "
            "tables). wrk opens its connections when a run starts and keeps them (keep-alive), so TLS handshakes "
            "happen only when a connection starts: one per connection at the start of a run, and one more each time "
            "the proxy closes a connection (nginx closes a client connection after 1000 requests, its "
            "`keepalive_requests` default, as in the plain-HTTP runs; wrk then reconnects, resuming its session; the "
            "load balancer closes none). These figures are the cost of the records (decrypting each request, "
            "encrypting each response: AES-256-GCM) plus proxying, next to almost no handshakes; the handshake table "
            "below measures those. TLS connections each proxy took during each measured run (the load balancer's "
            f"`lb_tls_listener_handshakes_total`, nginx's `stub_status` accepts): {counts}.")
        parts += tput + ["\n".join(cpu_t)]
    if tt_hs:
        label = {"new": "full handshake, TLS 1.3: `openssl s_time -new`, one at a time, no request",
                 "reuse12": "resumed, TLS 1.2: `openssl s_time -reuse -tls1_2`, one at a time, no request",
                 "close": "a new connection per request: `wrk -H 'Connection: close'`"}
        close_conns = setup[0]["hs_conns"] if setup else ""
        secs = f"{setup[0]['hs_secs']} s" if setup else "a few seconds"
        t = [f"**Handshakes.** Runs of {secs} each, alternating between the proxies, medians of the runs. "
             "`s_time -new`: a TCP connection and a full TLS 1.3 handshake (X25519, an ECDSA P-256 signature), then "
             "close_notify, one after another: the rate includes s_time's own work (its half of the handshake, on the "
             "other core). `s_time -reuse -tls1_2`: the same with TLS 1.2, each connection resuming the session of the "
             "first (the load balancer: its session cache; nginx: a session ticket, its default). "
             f"`wrk -H 'Connection: close'` at {close_conns or 'the first connection count'}: every request on a "
             "new connection, which the proxy closes after the response; wrk keeps the session of each connection for "
             "the next on the same slot, so these are TLS 1.3 resumptions (PSK with a new X25519 exchange, no "
             "signature), with the request proxied to a pooled backend connection. **CPU µs/conn**: the proxy's CPU "
             "time (all its processes) over the connections made. **full / resumed**: the proxy's own count over all "
             "runs (the load balancer's listener counters; nginx: a log of requests on connections that did not resume, "
             "so only for the wrk runs).", "",
             "| handshakes | proxy | conn/s | CPU µs/conn | conn/s vs nginx | CPU/conn vs nginx | full / resumed | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
        hm = {}
        for meas in ("new", "reuse12", "close"):
            for n in all_names or ["load_balancer", "nginx"]:
                rs = [r for r in tt_hs if r["measure"] == meas and r["proxy"] == n]
                if not rs:
                    continue
                hm[(meas, n)] = {
                    "rate": statistics.median(float(r["conns_s"]) for r in rs),
                    "cpu": statistics.median(float(r["cpu_us_conn"]) for r in rs),
                    "full": sum(int(r["full"]) for r in rs) if all(r["full"] != "-" for r in rs) else None,
                    "resumed": sum(int(r["resumed"]) for r in rs) if all(r["resumed"] != "-" for r in rs) else None,
                    "errors": sum(int(r["errors"]) for r in rs),
                }
        for (meas, n), m in hm.items():
            ng = hm.get((meas, "nginx"))
            fr = f"{m['full']} / {m['resumed']}" if m["full"] is not None else "–"
            what = label[meas] + (f", {close_conns} connections" if meas == "close" and close_conns else "")
            t.append(f"| {what} | {n} | {m['rate']:.0f} | {m['cpu']:.1f} | {fx(m['rate'], ng['rate']) if ng else 'n/a'} | "
                     f"{fx(m['cpu'], ng['cpu']) if ng else 'n/a'} | {fr} | {m['errors']} |")
        parts.append("\n".join(t))
    return [("TLS termination", "\n\n".join(parts))]


def strace():
    """Syscalls per request."""
    if not st:
        return []
    t = ["| proxy | requests | syscalls | syscalls/req | top 5 syscalls (calls per request) |", "|---|---:|---:|---:|---|"]
    for r in st:
        reqs, calls = int(r["requests"]), int(r["syscalls"])
        per = []
        for line in open(r["file"]):
            f = line.split()
            if len(f) in (5, 6) and re.match(r"^[\d.]+$", f[0]) and f[-1] != "total":
                per.append((int(f[3]), f[-1]))
        per.sort(reverse=True)
        top = ", ".join(f"{s} {c / reqs:.2f}" for c, s in per[:5])
        t.append(f"| {r['proxy']} | {reqs} | {calls} | {calls / reqs:.2f} | {top} |")
    return [("Syscalls per request", "\n".join(t))]


def idle_conns():
    """Idle keep-alive connections."""
    if not idle:
        return []
    t = ["| proxy | connections | RSS before KiB | RSS after KiB | bytes per connection |", "|---|---:|---:|---:|---:|"]
    for r in idle:
        b, a, n = int(r["rss_before_kib"]), int(r["rss_after_kib"]), int(r["conns"])
        t.append(f"| {r['proxy']} | {n} | {b} | {a} | {(a - b) * 1024 / n:.0f} |")
    return [("Idle keep-alive connections", "\n".join(t))]


def large_response():
    """Large response, direct and through each proxy."""
    if not body:
        return []
    targets = []
    for r in body:
        if r["target"] not in targets:
            targets.append(r["target"])
    bm = {}
    for tg in targets:
        rs = [r for r in body if r["target"] == tg]
        bm[tg] = {
            "mbs": statistics.median(int(r["bytes"]) / float(r["seconds"]) / 1e6 for r in rs),
            "secs": statistics.median(float(r["seconds"]) for r in rs),
            "before": statistics.median(int(r["rss_before_kib"]) for r in rs),
            "peak": max(int(r["rss_peak_kib"]) for r in rs),
            "cpu": statistics.median(float(r["cpu_s"]) for r in rs),
            "bytes": int(rs[0]["bytes"]),
        }
    size = bm[targets[0]]["bytes"]
    t = [f"{size} bytes (`curl -o /dev/null`), medians; peak RSS is the highest 100 ms sample of the proxy's VmRSS over all runs.", "",
         "| path | MB/s | vs direct | seconds | proxy CPU s | proxy RSS before KiB | proxy peak RSS KiB |",
         "|---|---:|---:|---:|---:|---:|---:|"]
    d = bm.get("direct")
    for tg in targets:
        m = bm[tg]
        if tg == "direct":
            t.append(f"| direct (origin nginx, sendfile) | {m['mbs']:.0f} | 1.00x | {m['secs']:.2f} | – | – | – |")
        else:
            t.append(f"| via {tg} | {m['mbs']:.0f} | {fx(m['mbs'], d['mbs']) if d else 'n/a'} | {m['secs']:.2f} | "
                     f"{m['cpu']:.2f} | {m['before']:.0f} | {m['peak']} |")
    return [("Large response", "\n".join(t))]


# The sections of results.md, in this order (not the order the scenarios run
# in: the throughput sections first).
SECTIONS = [plain, accesslog, tls, tlsterm, strace, idle_conns, large_response]
sections = [s for f in SECTIONS for s in f()]

# What the script warned about during the runs (bench/out/warnings.txt).
wpath = os.path.join(out, "warnings.txt")
if os.path.exists(wpath):
    warns = [l.strip() for l in open(wpath) if l.strip()]
    if warns:
        sections.insert(0, ("Warnings", "\n".join(f"- {w}" for w in warns)))

# SVG: req/s and CPU µs/req per proxy at each concurrency, a row of two
# panels per chart row: per worker count (the same scale in every row), one
# for TLS to the backend and one for TLS termination (a scale of its own each).
COLORS = {"load_balancer": "#1f77b4", "load_balancer sp": "#9467bd", "nginx": "#2ca02c", "haproxy": "#ff7f0e"}
def nice_max(v):
    if v <= 0:
        return 1
    mag = 10 ** (len(str(int(v))) - 1) if v >= 1 else 0.1
    for s in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if s * mag >= v * 1.08:
            return s * mag
    return 10 * mag
def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
def same_scale(w, wk):
    """Worker counts (plain HTTP) share a scale; any other row has its own."""
    return isinstance(w, int) if isinstance(wk, int) else w == wk
def panel(x0, y0, w, h, title, key, fmt, wk):
    g = []
    vals = [m[key] for (w, _, _), m in med.items() if same_scale(w, wk)]
    top = nice_max(max(vals) if vals else 1)
    names = [n for n in all_names if any((wk, n, c) in med for c in conns_list)]
    g.append(f'<text x="{x0 + w / 2}" y="{y0 - 12}" text-anchor="middle" font-size="14" font-weight="bold">{esc(title)}</text>')
    for i in range(5):
        v = top * i / 4
        y = y0 + h - h * i / 4
        g.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" stroke="#ddd"/>')
        g.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{fmt(v)}</text>')
    gw = w / max(1, len(conns_list))
    bw = min(40, gw * 0.7 / max(1, len(names)))
    for gi, c in enumerate(conns_list):
        gx = x0 + gi * gw + (gw - bw * len(names)) / 2
        for ni, n in enumerate(names):
            if (wk, n, c) not in med:
                continue
            v = med[(wk, n, c)][key]
            bh = h * v / top
            x = gx + ni * bw
            g.append(f'<rect x="{x:.1f}" y="{y0 + h - bh:.1f}" width="{bw - 3:.1f}" height="{bh:.1f}" fill="{COLORS.get(n, "#888")}"/>')
            g.append(f'<text x="{x + (bw - 3) / 2:.1f}" y="{y0 + h - bh - 4:.1f}" text-anchor="middle" font-size="10">{fmt(v)}</text>')
        g.append(f'<text x="{x0 + gi * gw + gw / 2:.1f}" y="{y0 + h + 18}" text-anchor="middle" font-size="12">{c} connections</text>')
    g.append(f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="#333"/>')
    return g
if med:
    W, H = 900, 60 + 340 * len(chart_rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">',
             f'<rect width="{W}" height="{H}" fill="white"/>']
    for i, (wk, each) in enumerate(chart_rows):
        parts += panel(70, 70 + 340 * i, 340, 260, f"requests/s, {each} (higher is better)", "req_s",
                       lambda v: f"{v / 1000:.0f}k" if v >= 1000 else f"{v:.0f}", wk)
        parts += panel(540, 70 + 340 * i, 340, 260, f"CPU µs per request, {each} (lower is better)", "cpu_us_req",
                       lambda v: f"{v:.1f}", wk)
    lx = 70
    for n in all_names:
        parts.append(f'<rect x="{lx}" y="14" width="12" height="12" fill="{COLORS.get(n, "#888")}"/>')
        parts.append(f'<text x="{lx + 16}" y="25" font-size="12">{esc(n)}</text>')
        lx += 30 + 8 * len(n)
    parts.append(f'<text x="{W - 10}" y="{H - 10}" text-anchor="end" font-size="10" fill="#777">{esc(machine)}; {esc(date)}; wrk medians</text>')
    parts.append("</svg>")
    with open(svg_path, "w") as f:
        f.write("\n".join(parts) + "\n")

# The head: what ran, on which machine, with which settings.
ws = [str(w) for w in workers_list]
ws = " and ".join([", ".join(ws[:-1]), ws[-1]] if len(ws) > 1 else ws)
one = "one worker each" + (" (HAProxy one thread)" if "haproxy" in names else "")
tput_workers = "; ".join(
    ([f"throughput at {ws} worker(s) per proxy (each section says how each proxy ran them)"] if workers_list else [])
    + (["the same with TLS to the backend at one worker each"] if tls_runs else [])
    + (["TLS termination (HTTPS from wrk) at one worker each"] if tt_runs or tt_hs else [])
    + (["the access log's cost at one worker each"] if alog else [])
    + ([f"idle, syscall and large-response tests with {one}"] if idle or st or body else []))
head = [f"date: {date}", f"machine: {machine}", f"versions: {versions}", "",
        f"settings: {settings}; {tput_workers + '; ' if tput_workers else ''}all on 127.0.0.1{notes}"]
body_md = "\n\n".join(f"## {t}\n\n{s}" for t, s in sections)
print()
print("\n".join(head))
print()
print(body_md)

# Keep the `## Parser` section (and anything after it) that
# `cargo bench --bench parser` writes; rewrite only what is above it.
kept = ""
if os.path.exists(results):
    m = re.search(r"^## Parser\n.*", open(results).read(), re.M | re.S)
    if m:
        kept = "\n" + m.group(0).rstrip("\n") + "\n"
with open(results, "w") as f:
    f.write("# Benchmark: load_balancer vs nginx vs HAProxy\n\n")
    f.write("  \n".join(head[:3]) + "\n\n" + head[4] + "\n\n")
    f.write(body_md + "\n\n")
    f.write("Produced by `make bench` (bench/bench.sh); see bench/README.md for what the columns mean.\n")
    f.write(kept)
if errors:
    print("\nWARNING: wrk reported errors; the numbers above include failed requests.", file=sys.stderr)
