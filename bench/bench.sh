#!/usr/bin/env bash
# Benchmark this load balancer against nginx and HAProxy on loopback (run: make bench).
#
# Starts backend1, backend2, load_balancer (one worker: -m mp -w 1, a master
# and one worker process), nginx (one worker, keepalive upstream pool) and
# HAProxy (one thread, http-reuse always) on 127.0.0.1, then runs the
# scenarios, each a file in bench/scenarios/ (its header says what it
# measures and how), in this order:
#   1. idle       memory per idle keep-alive client connection (8,000 of
#                 them, VmRSS of the worker process);
#   2. plain      throughput and latency with wrk at each concurrency (50 and
#                 500 connections), alternating runs across the proxies,
#                 medians of the runs: requests/s, p50/p99/max latency, proxy
#                 CPU time per request (all the proxy's processes: master and
#                 workers), ratios against nginx, and where the machine's CPU
#                 went (proxy, backends, the rest, idle); then the same for
#                 each other worker count in BENCH_WORKERS_LIST (by default
#                 2): load_balancer -m mp -w N and -m sp -w N, nginx
#                 worker_processes N, HAProxy nbthread N, started for their
#                 runs only. On a 2-core machine wrk, the two backends and the
#                 proxy's workers share the 2 cores, which bounds those
#                 figures; the section says so;
#   3. accesslog  the access log's cost: load_balancer without and with
#                 --access-log, nginx without and with access_log (combined,
#                 buffer=64k flush=1s), alternating runs, each log's lines
#                 counted against wrk's requests;
#   4. tls        TLS to the backend: the same wrk runs (one worker each) with
#                 every proxy forwarding over TLS to one HTTPS backend (an
#                 nginx with a certificate from a private CA made with
#                 openssl); also the backend's connections (handshakes) per
#                 run and how many resumed a session. Skipped, with a
#                 message, without openssl;
#   5. tlsterm    TLS on the listener: load_balancer --tls-port and nginx
#                 `listen ... ssl` (one worker each, the same ECDSA P-256
#                 certificate, from tls's CA) terminating HTTPS in front of
#                 backend1 + backend2: wrk over HTTPS (the same runs as
#                 plain; wrk keeps its connections, so one handshake per
#                 connection at the start of a run), then the handshake
#                 cost: full TLS 1.3 (openssl s_time -new), resumed TLS 1.2
#                 (s_time -reuse) and a new connection per request (wrk
#                 -H 'Connection: close'): connections/s, CPU µs each.
#                 Skipped, with a message, without openssl;
#   6. strace     syscalls per request (strace -c on the proxy's worker during
#                 a separate wrk run, never used for the throughput figures);
#   7. body       a 1 GiB response streamed through the proxy versus directly
#                 from the origin (a second nginx serving a sparse file):
#                 MB/s, peak proxy RSS.
# Prints all tables and writes bench/results.md and bench/results.svg
# (bench/report.py, sections in its own order); raw output of every run goes
# to bench/out/. The shared helpers (ports, starting and stopping processes,
# wrk runs with CPU accounting, the cleanup trap, the report's head) are in
# bench/lib.sh.
#
# Adding a scenario NAME (see plain.sh, tls.sh or tlsterm.sh):
#   1. bench/scenarios/NAME.sh with NAME_setup (check its BENCH_* settings and
#      tools; need_ports for its ports, new ones in lib.sh's port map) and
#      NAME_run (return early if `skipped NAME`; start its proxies with
#      lb_start, nginx_conf/nginx_start, haproxy_start; measure, e.g. with
#      throughput into its own TSV; stop_procs; NOTES+="; ..."), and NAME_start
#      if something must be up before any scenario runs; each returns 0
#      (set -e). BENCH_SKIP=NAME then works by itself.
#   2. Add NAME to SCENARIOS below, where it should run.
#   3. Its section of results.md: a function in bench/report.py, added to
#      SECTIONS (tput_tables gives the usual throughput tables and a row of
#      the chart); its paragraph in bench/README.md.
#
# Environment (all optional):
#   BENCH_THREADS=1  BENCH_DURATION=10s  BENCH_RUNS=3
#   BENCH_CONNS_LIST="50 500"   wrk connection counts (BENCH_CONNS=N alone means just N)
#   BENCH_WARMUP=1s      unrecorded wrk run per proxy and concurrency before measuring (0 = none)
#   BENCH_WORKERS_LIST="1 2"  worker counts for the throughput runs (1..64 each;
#                        1 is the one-worker comparison; idle, strace and the
#                        large response always use one worker)
#   BENCH_PORT_BASE=19100  backends BASE+1, BASE+2; file origin BASE+3;
#                        TLS backend BASE+4 (its plain stub_status BASE+5);
#                        access-log runs: load_balancer without/with BASE+6/+7,
#                        nginx without/with BASE+8/+9;
#                        TLS termination: load_balancer BASE+10 (plain:
#                        readiness, /metrics) and BASE+11 (TLS), nginx
#                        BASE+12 (plain: readiness, stub_status), BASE+13
#                        (TLS, wrk runs), BASE+14 (TLS, handshake runs);
#                        load_balancer BASE+80, nginx BASE+81, haproxy BASE+82;
#                        their 1 GiB-test twins BASE+83, BASE+84, BASE+85;
#                        their TLS-backend twins BASE+86, BASE+87, BASE+88;
#                        for the k-th worker count other than 1 (k = 0, 1, ...)
#                        load_balancer mp, sp, nginx, haproxy at BASE+90+4k .. +93+4k
#   BENCH_IDLE_CONNS=8000            idle keep-alive connections for the RSS test
#   BENCH_STRACE_DURATION=3s  BENCH_STRACE_CONNS=50   the strace run (wrk -t1)
#   BENCH_BODY_SIZE=1G  BENCH_BODY_RUNS=3   large-response test (truncate -s size)
#   BENCH_ACCESSLOG_CONNS="50"  wrk connection counts of the access-log runs
#                        (default: the first of BENCH_CONNS_LIST)
#   BENCH_TLSTERM_HS_DURATION=3  seconds of each handshake run (TLS termination)
#   BENCH_SKIP="..."     any of: haproxy idle strace body sp tls tlsterm
#                        plain accesslog accesslog-nginx
#                        (sp: no -m sp row; tls: no TLS-to-the-backend section;
#                        tlsterm: no TLS-termination section;
#                        plain: none of the plain-HTTP throughput sections, at
#                        any worker count: a quick check of the rest; the
#                        access-log runs are not among them; accesslog: no
#                        access-log section; accesslog-nginx: that section
#                        without its nginx pair)
#   BENCH_NO_BUILD=1     skip `cargo build --release`
#   BENCH_BIN_DIR=DIR    where the binaries are (default target/release)
# Installs nothing: missing required tools are named with the apt command and
# exit 1; a missing haproxy, strace or openssl only skips its part (openssl:
# tls and tlsterm), with a message.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source bench/lib.sh

# The scenarios, in the order they run.
SCENARIOS=(idle plain accesslog tls tlsterm strace body)
for s in "${SCENARIOS[@]}"; do
    # shellcheck source=/dev/null
    source "bench/scenarios/$s.sh"
    SKIP_WORDS+=("$s")
done

# lib.sh's header says what each step does.
bench_settings
bench_tools
bench_fd_limits
for s in "${SCENARIOS[@]}"; do "${s}_setup"; done
bench_port_range
bench_build
bench_tmp
bench_ports_free
start_shared
for s in "${SCENARIOS[@]}"; do
    if declare -F "${s}_start" >/dev/null; then "${s}_start"; fi
done
bench_out
for s in "${SCENARIOS[@]}"; do "${s}_run"; done
write_report
