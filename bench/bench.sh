#!/usr/bin/env bash
# Benchmark this load balancer against nginx and HAProxy on loopback (run: make bench).
#
# Starts backend1, backend2, load_balancer (one worker: -m mp -w 1, a master
# and one worker process), nginx (one worker, keepalive upstream pool) and
# HAProxy (one thread, http-reuse always) on 127.0.0.1 and measures, for each
# proxy:
#   1. memory per idle keep-alive client connection (8,000 of them, VmRSS of
#      the worker process);
#   2. throughput and latency with wrk at each concurrency (50 and 500
#      connections), alternating runs across the proxies, medians of the runs:
#      requests/s, p50/p99/max latency, proxy CPU time per request (all the
#      proxy's processes: master and workers), ratios against nginx, and
#      where the machine's CPU went (proxy, backends, the rest, idle); then
#      the same again for each other worker count in BENCH_WORKERS_LIST (by
#      default 2): load_balancer -m mp -w N and -m sp -w N, nginx
#      worker_processes N, HAProxy nbthread N, started for their runs only,
#      same backends, same wrk settings. On a 2-core machine wrk, the two
#      backends and the proxy's workers share the 2 cores, which bounds those
#      figures; the section says so;
#   3. the access log's cost: load_balancer -m mp -w 1 twice, started for
#      these runs only, without and with --access-log bench/out/access.log,
#      and nginx (one worker) without and with access_log (its combined
#      format, buffer=64k flush=1s, to bench/out/access-nginx.log), the same
#      backends and wrk settings, at BENCH_ACCESSLOG_CONNS connections (by
#      default the first of BENCH_CONNS_LIST: 50), alternating runs; each
#      log is truncated before a run and its lines counted after it (against
#      wrk's request count); req/s, CPU µs/req and what the log adds;
#   4. TLS to the backend: the same wrk runs (one worker each, the same
#      connection counts, duration and runs) with every proxy forwarding the
#      plain-HTTP requests over TLS to one HTTPS backend, a separate nginx
#      with `ssl` (a private CA and a server certificate for localhost made
#      with openssl under bench/out/tls/): load_balancer -m mp -w 1 --ca-file
#      -b https://localhost:PORT, nginx proxy_pass https:// with a keepalive
#      upstream and session reuse, HAProxy `ssl verify required`; also counts
#      the connections (TLS handshakes) the backend accepted per run and how
#      many resumed a session. Skipped, with a message, without openssl;
#   5. syscalls per request (strace -c on the proxy's worker during a separate
#      wrk run, never used for the throughput figures);
#   6. a 1 GiB response streamed through the proxy versus directly from the
#      origin (a second nginx serving a sparse file): MB/s, peak proxy RSS.
# Prints all tables and writes bench/results.md and bench/results.svg (with
# bench/report.py); raw output of every run goes to bench/out/.
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
#   BENCH_SKIP="..."     any of: haproxy idle strace body sp tls plain
#                        accesslog accesslog-nginx
#                        (sp: no -m sp row; tls: no TLS-to-the-backend section;
#                        plain: none of the plain-HTTP throughput sections, at
#                        any worker count: a quick check of the rest; the
#                        access-log runs are not among them; accesslog: no
#                        access-log section; accesslog-nginx: that section
#                        without its nginx pair)
#   BENCH_NO_BUILD=1     skip `cargo build --release`
#   BENCH_BIN_DIR=DIR    where the binaries are (default target/release)
# Installs nothing: missing required tools are named with the apt command and
# exit 1; a missing haproxy, strace or openssl only skips its part, with a
# message.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

THREADS=${BENCH_THREADS:-1}
if [[ -n ${BENCH_CONNS_LIST:-} ]]; then
    CONNS_LIST=$BENCH_CONNS_LIST
elif [[ -n ${BENCH_CONNS:-} ]]; then
    CONNS_LIST=$BENCH_CONNS
else
    CONNS_LIST="50 500"
fi
WORKERS_LIST=${BENCH_WORKERS_LIST-"1 2"}
DURATION=${BENCH_DURATION:-10s}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-1s}
BASE=${BENCH_PORT_BASE:-19100}
IDLE_CONNS=${BENCH_IDLE_CONNS:-8000}
STRACE_DURATION=${BENCH_STRACE_DURATION:-3s}
STRACE_CONNS=${BENCH_STRACE_CONNS:-50}
BODY_SIZE=${BENCH_BODY_SIZE:-1G}
BODY_RUNS=${BENCH_BODY_RUNS:-3}
SKIP=" ${BENCH_SKIP:-} "
ALOG_CONNS_LIST=${BENCH_ACCESSLOG_CONNS:-}
BIN=${BENCH_BIN_DIR:-$ROOT/target/release}
OUT=$ROOT/bench/out
TLS_DIR=$OUT/tls
TLS_CA=$TLS_DIR/ca.pem
RESULTS=$ROOT/bench/results.md
SVG=$ROOT/bench/results.svg

P1=$((BASE + 1))
P2=$((BASE + 2))
ORIGIN_PORT=$((BASE + 3))
LB_PORT=$((BASE + 80))
NGX_PORT=$((BASE + 81))
HAP_PORT=$((BASE + 82))
LB_BODY_PORT=$((BASE + 83))
NGX_BODY_PORT=$((BASE + 84))
HAP_BODY_PORT=$((BASE + 85))
TLS_BE_PORT=$((BASE + 4))
TLS_BE_STATUS_PORT=$((BASE + 5))
# The access-log runs: load_balancer without and with --access-log, nginx
# without and with access_log.
LB_NOLOG_PORT=$((BASE + 6))
LB_ALOG_PORT=$((BASE + 7))
NGX_NOLOG_PORT=$((BASE + 8))
NGX_ALOG_PORT=$((BASE + 9))
LB_TLS_PORT=$((BASE + 86))
NGX_TLS_PORT=$((BASE + 87))
HAP_TLS_PORT=$((BASE + 88))
# The N-worker proxies (N != 1 in BENCH_WORKERS_LIST), the k-th of those
# counts (k = 0, 1, ...): load_balancer mp BASE+90+4k, load_balancer sp
# BASE+91+4k, nginx BASE+92+4k, haproxy BASE+93+4k.
set_port() { echo $((BASE + 90 + 4 * $1 + $2)); }

die() { echo "bench: $*" >&2; exit 1; }
skipped() { [[ $SKIP == *" $1 "* ]]; }

for v in THREADS RUNS BASE IDLE_CONNS STRACE_CONNS BODY_RUNS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a number, got '${!v}'"
done
read -r -a CONNS_ARR <<<"$CONNS_LIST"
((${#CONNS_ARR[@]})) || die "BENCH_CONNS_LIST is empty"
for c in "${CONNS_ARR[@]}"; do
    if ! [[ $c =~ ^[0-9]+$ ]] || ((c < 1)); then
        die "BENCH_CONNS_LIST must hold positive numbers, got '$c'"
    fi
done
[[ -n $ALOG_CONNS_LIST ]] || ALOG_CONNS_LIST=${CONNS_ARR[0]}
read -r -a ALOG_CONNS_ARR <<<"$ALOG_CONNS_LIST"
for c in "${ALOG_CONNS_ARR[@]}"; do
    if ! [[ $c =~ ^[0-9]+$ ]] || ((c < 1)); then
        die "BENCH_ACCESSLOG_CONNS must hold positive numbers, got '$c'"
    fi
done
read -r -a WORKERS_ARR <<<"$WORKERS_LIST"
((${#WORKERS_ARR[@]})) || die "BENCH_WORKERS_LIST is empty"
MULTI=()         # the worker counts other than 1, in order
for w in "${WORKERS_ARR[@]}"; do
    if ! [[ $w =~ ^[0-9]+$ ]] || ((w < 1 || w > 64)); then
        die "BENCH_WORKERS_LIST must hold worker counts 1..64, got '$w'"
    fi
    [[ " ${seen_w:-} " != *" $w "* ]] || die "BENCH_WORKERS_LIST has $w twice"
    seen_w+=" $w"
    ((w == 1)) || MULTI+=("$w")
done
for s in ${BENCH_SKIP:-}; do
    [[ $s =~ ^(haproxy|idle|strace|body|sp|tls|plain|accesslog|accesslog-nginx)$ ]] ||
        die "BENCH_SKIP: unknown part '$s' (haproxy idle strace body sp tls plain accesslog accesslog-nginx)"
done
((RUNS >= 1)) || die "BENCH_RUNS must be at least 1"
((BODY_RUNS >= 1)) || die "BENCH_BODY_RUNS must be at least 1"
MAX_PORT=$((BASE + 88))
((${#MULTI[@]})) && MAX_PORT=$(set_port $((${#MULTI[@]} - 1)) 3)
((BASE >= 1024 && MAX_PORT <= 65535)) || die "BENCH_PORT_BASE must be in 1024..$((65535 - MAX_PORT + BASE))"

# ---- 1. tools --------------------------------------------------------------
missing_pkgs=()
for tool in nginx:nginx wrk:wrk curl:curl python3:python3 pgrep:procps; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing_pkgs+=("${tool#*:}")
done
if ((${#missing_pkgs[@]})); then
    echo "bench: missing tools; install them with:" >&2
    echo "    apt-get install -y ${missing_pkgs[*]}" >&2
    exit 1
fi
HAVE_HAPROXY=1
if skipped haproxy; then
    HAVE_HAPROXY=0
    echo "bench: BENCH_SKIP has haproxy: HAProxy is left out"
elif ! command -v haproxy >/dev/null 2>&1; then
    HAVE_HAPROXY=0
    echo "bench: haproxy is not installed (apt-get install -y haproxy): skipping the HAProxy column" >&2
fi
HAVE_TLS=1
if skipped tls; then
    HAVE_TLS=0
elif ! command -v openssl >/dev/null 2>&1; then
    HAVE_TLS=0
    echo "bench: openssl is not installed (apt-get install -y openssl): skipping the TLS-to-the-backend section" >&2
fi
HAVE_STRACE=1
if skipped strace; then
    HAVE_STRACE=0
elif ! command -v strace >/dev/null 2>&1; then
    HAVE_STRACE=0
    echo "bench: strace is not installed (apt-get install -y strace): skipping syscalls per request" >&2
fi

# Every connection is a descriptor: wrk, the idle-connection client and the
# proxies (which inherit this) need more than the usual 1024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# nginx gets worker_connections 20000 / worker_rlimit_nofile 40000 and HAProxy
# maxconn 20000 (it needs 2 fds per connection) when the hard limit allows;
# otherwise what fits under it, since even root cannot raise it everywhere.
NGX_RLIMIT=40000
HAP_MAXCONN=20000
FD_NOTE=""
if [[ $NOFILE != unlimited ]] && ((NOFILE < 40100)); then
    NGX_RLIMIT=$NOFILE
    HAP_MAXCONN=$(((NOFILE - 100) / 2))
    FD_NOTE="open-file hard limit $NOFILE: nginx worker_rlimit_nofile $NGX_RLIMIT (not 40000)"
    ((HAVE_HAPROXY)) && FD_NOTE+=", HAProxy maxconn $HAP_MAXCONN (not 20000)"
    echo "bench: $FD_NOTE"
fi
if ! skipped idle && [[ $NOFILE != unlimited ]] && ((NOFILE < IDLE_CONNS + 100)); then
    echo "bench: open-file limit is $NOFILE (hard limit); the idle test uses $((NOFILE - 100)) connections instead of $IDLE_CONNS" >&2
    IDLE_CONNS=$((NOFILE - 100))
    ((IDLE_CONNS >= 100)) || die "open-file limit $NOFILE is too low for the idle-connection test (set BENCH_SKIP=idle)"
fi
if ! skipped idle && ((HAVE_HAPROXY && IDLE_CONNS > HAP_MAXCONN - 50)); then
    echo "bench: HAProxy maxconn is $HAP_MAXCONN; the idle test uses $((HAP_MAXCONN - 50)) connections instead of $IDLE_CONNS" >&2
    IDLE_CONNS=$((HAP_MAXCONN - 50))
fi

# ---- 2. build --------------------------------------------------------------
if [[ -z ${BENCH_NO_BUILD:-} ]]; then
    echo "building (cargo build --release) ..."
    cargo build --release -q || die "cargo build --release failed"
fi
for b in backend1 backend2 load_balancer; do
    [[ -x $BIN/$b ]] || die "$BIN/$b not found (build first or set BENCH_BIN_DIR)"
done

# ---- process bookkeeping ---------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lb-bench.XXXXXX")
PIDS=()          # long-running servers we started, killed on exit
WORKERS=()       # nginx workers (their masters are in PIDS)
STRACE_PID=""    # the transient ones: strace, wrk, python helpers
WRK_PID=""
HELPER_PID=""

cleanup() {
    local rc=$? pid i children=()
    trap - EXIT INT TERM
    # The children of the servers we started (load balancer workers and
    # prober, nginx workers) as they are now, so that a master that does not
    # take its children with it still leaves none behind.
    for pid in "${PIDS[@]}"; do
        # shellcheck disable=SC2207  # pids: split on newlines
        children+=($(pgrep -P "$pid" 2>/dev/null || true))
    done
    # strace first, so it detaches before its tracee goes.
    for pid in $STRACE_PID $HELPER_PID $WRK_PID "${PIDS[@]}" "${WORKERS[@]}" "${children[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for i in $(seq 30); do
        local alive=0
        for pid in $STRACE_PID $HELPER_PID $WRK_PID "${PIDS[@]}" "${WORKERS[@]}" "${children[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in $STRACE_PID $HELPER_PID $WRK_PID "${PIDS[@]}" "${WORKERS[@]}" "${children[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

SET_PORTS=()
for k in "${!MULTI[@]}"; do
    for i in 0 1 2 3; do SET_PORTS+=("$(set_port "$k" "$i")"); done
done
TLS_PORTS=()
((HAVE_TLS)) && TLS_PORTS=("$TLS_BE_PORT" "$TLS_BE_STATUS_PORT" "$LB_TLS_PORT" "$NGX_TLS_PORT" "$HAP_TLS_PORT")
ALOG_PORTS=()
skipped accesslog || ALOG_PORTS=("$LB_NOLOG_PORT" "$LB_ALOG_PORT")
skipped accesslog || skipped accesslog-nginx || ALOG_PORTS+=("$NGX_NOLOG_PORT" "$NGX_ALOG_PORT")
for p in $P1 $P2 $ORIGIN_PORT $LB_PORT $NGX_PORT $HAP_PORT $LB_BODY_PORT $NGX_BODY_PORT $HAP_BODY_PORT "${SET_PORTS[@]}" "${TLS_PORTS[@]}" "${ALOG_PORTS[@]}"; do
    if port_busy "$p"; then
        die "port $p on 127.0.0.1 is already in use (set BENCH_PORT_BASE to move the range)"
    fi
done

# wait_ready NAME PID PORT LOG: bounded curl retries; on failure show the log.
wait_ready() {
    local name=$1 pid=$2 port=$3 log=$4 i
    for i in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench: $name (pid $pid) exited before answering on :$port; last log lines:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench: $name did not answer on 127.0.0.1:$port within 10 s; last log lines:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

# run_bg NAME LOG CMD...: run CMD in the background and `wait` for it, so
# that a Ctrl-C interrupts `wait` and reaches our INT trap. On failure it
# says so and returns non-zero (these parts are not fatal).
run_bg() {
    local name=$1 log=$2 rc=0
    shift 2
    "$@" >"$log" 2>&1 &
    HELPER_PID=$!
    wait "$HELPER_PID" || rc=$?
    HELPER_PID=""
    ((rc == 0)) && return 0
    echo "bench: $name failed (exit $rc): $(tail -n 3 "$log")" >&2
    return 1
}

# run_wrk NAME LOG WRK-ARGS...: the same for wrk (which catches SIGINT and
# would exit 0 with partial results); dies if wrk fails.
run_wrk() {
    local name=$1 log=$2 rc=0
    shift 2
    wrk "$@" >"$log" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    ((rc == 0)) || die "wrk against $name failed (exit $rc): $(tail -n 5 "$log")"
}

# nginx_start NAME CONF PORT [N]: test the config, start nginx in the
# foreground (logs in $TMP/NAME*.log), wait until PORT answers, check for
# exactly N workers (default 1); sets NGINX_MASTER, NGINX_WORKERS (their pids,
# space-separated) and NGINX_WORKER (the first).
nginx_start() {
    local name=$1 conf=$2 port=$3 want=${4:-1} workers
    nginx -t -q -e "$TMP/$name-error.log" -c "$conf" -p "$TMP" >"$TMP/$name.log" 2>&1 || {
        echo "bench: $name (nginx) rejected its config:" >&2
        cat "$TMP/$name.log" "$TMP/$name-error.log" >&2 2>/dev/null
        exit 1
    }
    # -e (nginx >= 1.19.5) keeps the start-up error log out of /var/log too.
    nginx -e "$TMP/$name-error.log" -c "$conf" -p "$TMP" -g 'daemon off;' >>"$TMP/$name.log" 2>&1 &
    NGINX_MASTER=$!
    PIDS+=("$NGINX_MASTER")
    wait_ready "$name" "$NGINX_MASTER" "$port" "$TMP/$name-error.log"
    workers=$(pgrep -P "$NGINX_MASTER" | tr '\n' ' ' || true)
    [[ $(wc -w <<<"$workers") == "$want" ]] || die "expected $want $name worker(s) under master $NGINX_MASTER, found: '$workers'"
    NGINX_WORKERS=${workers% }
    NGINX_WORKER=${NGINX_WORKERS%% *}
    # shellcheck disable=SC2206  # pids: split on spaces
    WORKERS+=($NGINX_WORKERS)
}

# lb_start NAME LOG PORT MODE N BACKEND...: start the load balancer with
# -m MODE -w N (always explicit: the default is one worker per CPU) and the
# options in LB_EXTRA (an array, normally empty), wait
# until PORT answers and, in mp mode, until the master has its N worker
# processes (named "lb: worker I"; the master also forks "lb: prober");
# sets LB_STARTED (the pid we started: the master in mp mode, the only
# process in sp mode) and LB_STARTED_WORKER (mp: "lb: worker 0"; sp: the
# process itself, whose threads are the workers).
LB_EXTRA=()
lb_start() {
    local name=$1 log=$2 port=$3 mode=$4 n=$5 b args=() kids="" i
    shift 5
    for b in "$@"; do args+=(-b "$b"); done
    "$BIN/load_balancer" -m "$mode" -w "$n" -p "$port" -h 127.0.0.1 "${LB_EXTRA[@]}" "${args[@]}" -l warn >"$log" 2>&1 &
    LB_STARTED=$!
    PIDS+=("$LB_STARTED")
    wait_ready "$name" "$LB_STARTED" "$port" "$log"
    LB_STARTED_WORKER=$LB_STARTED
    [[ $mode == mp ]] || return 0
    for i in $(seq 50); do
        kids=$(pgrep -P "$LB_STARTED" '^lb: worker ' | tr '\n' ' ' || true)
        [[ $(wc -w <<<"$kids") == "$n" ]] && break
        sleep 0.1
    done
    [[ $(wc -w <<<"$kids") == "$n" ]] || die "expected $n $name worker process(es) under master $LB_STARTED, found: '$kids'"
    LB_STARTED_WORKER=$(pgrep -x -P "$LB_STARTED" 'lb: worker 0' || true)
    [[ -n $LB_STARTED_WORKER ]] || die "no 'lb: worker 0' process under $name master $LB_STARTED"
}

# ---- 3. helper scripts -----------------------------------------------------
# parse_wrk.py LOG NAME WORKERS CONNS RUN CPU-TICKS HZ BACKEND-TICKS
#   "BUSY IDLE STEAL" "BUSY IDLE STEAL" WALL-US -> one runs.tsv line
# (the two machine_ticks readings before and after the run)
cat >"$TMP/parse_wrk.py" <<'PY'
import re, sys
path, name, workers, conns, run, ticks, hz, bticks, m0, m1, wall_us = sys.argv[1:12]
ticks, hz, bticks = int(ticks), int(hz), int(bticks)
busy, idle, steal = (b - a for a, b in zip(map(int, m0.split()), map(int, m1.split())))
wall = int(wall_us) / 1e6
text = open(path).read()
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
def ms(v, u): return float(v) * UNIT[u]
rps = float(re.search(r"^\s*Requests/sec:\s*([\d.]+)", text, re.M).group(1))
total = int(re.search(r"^\s*(\d+) requests in", text, re.M).group(1))
lat = re.search(r"^\s*Latency\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)", text, re.M)
mx = ms(lat.group(5), lat.group(6))
dist = re.search(r"Latency Distribution(.*?)(?:\n\s*\d+ requests in)", text, re.S).group(1)
pct = {p: ms(v, u) for p, v, u in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", dist, re.M)}
non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
non2xx = int(non2xx.group(1)) if non2xx else 0
se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
sock = sum(map(int, se.groups())) if se else 0
cpu = ticks / hz
cpu_us = cpu * 1e6 / total if total else float("nan")
print(f"{name}\t{workers}\t{conns}\t{run}\t{rps:.2f}\t{pct['50']:.4f}\t{pct['99']:.4f}\t{mx:.4f}\t{cpu:.2f}\t{total}\t{non2xx}\t{sock}\t{cpu_us:.3f}"
      f"\t{bticks / hz:.2f}\t{busy / hz:.2f}\t{idle / hz:.2f}\t{steal / hz:.2f}\t{wall:.3f}")
PY

# idle.py PORT PID N: VmRSS of PID, open N keep-alive connections that each
# complete one request, VmRSS again, check some are still usable, close all.
cat >"$TMP/idle.py" <<'PY'
import resource, socket, sys, time
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard == resource.RLIM_INFINITY or hard > soft:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = hard
if soft != resource.RLIM_INFINITY and soft < n + 32:
    sys.exit(f"open-file limit {soft} is below {n} connections")
REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")

def response(s):
    """Reads one whole response (Content-Length or chunked); returns the status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise OSError("connection closed before the response head")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        hdrs[k.strip().lower()] = v.strip().lower()
    if b"content-length" in hdrs:
        want = int(hdrs[b"content-length"])
        while len(rest) < want:
            d = s.recv(4096)
            if not d:
                raise OSError("connection closed in the body")
            rest += d
    elif hdrs.get(b"transfer-encoding") == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            d = s.recv(4096)
            if not d:
                raise OSError("connection closed in the body")
            rest += d
    return status

def one(s):
    s.sendall(REQ)
    st = response(s)
    if st != 200:
        raise OSError(f"status {st}")

# Warm-up: pooled upstream connections and first buffers, as the proxy has
# them after its first requests.
for _ in range(20):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        one(s)
time.sleep(0.3)
before = rss_kib()
socks = []
t0 = time.time()
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        one(s)
    except OSError as e:
        sys.exit(f"connection {i + 1} of {n}: {e}")
    socks.append(s)
opened = time.time() - t0
time.sleep(0.5)
after = rss_kib()
# They must still be open and usable: one more request on every 97th.
checked = 0
for s in socks[::97]:
    one(s)
    checked += 1
for s in socks:
    s.close()
print(f"{before}\t{after}\t{n}\t{checked}\t{opened:.2f}")
PY

# body.py URL PID EXPECT-BYTES: curl the URL to /dev/null, sampling VmRSS of
# PID (the proxy; '-' for none) every 100 ms and its CPU time.
cat >"$TMP/body.py" <<'PY'
import os, subprocess, sys, time
url, pid, expect = sys.argv[1], sys.argv[2], int(sys.argv[3])
hz = os.sysconf("SC_CLK_TCK")
def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def ticks():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
track = pid != "-"
before = rss_kib() if track else 0
t0 = ticks() if track else 0
peak = before
p = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total} %{http_code}", url],
                     stdout=subprocess.PIPE, text=True)
while p.poll() is None:
    if track:
        peak = max(peak, rss_kib())
    time.sleep(0.1)
if track:
    peak = max(peak, rss_kib())
out = p.stdout.read().split()
if p.returncode != 0 or len(out) != 3:
    sys.exit(f"curl {url} failed: exit {p.returncode}, output {out}")
size, secs, code = int(out[0]), float(out[1]), out[2]
if code != "200" or size != expect:
    sys.exit(f"curl {url}: HTTP {code}, {size} bytes, expected 200 and {expect} bytes")
cpu = (ticks() - t0) / hz if track else 0.0
print(f"{size}\t{secs:.4f}\t{before}\t{peak}\t{cpu:.2f}")
PY

# tls_conns.py TLS-TSV CONN-LOG ERROR-LOG: adds to each run of TLS-TSV what
# the TLS backend logged about the connections it accepted during that run
# (numbers be_conn_from+1 .. be_conn_to-1; CONN-LOG has a line per
# connection, at its first request; ERROR-LOG, at level info, names the
# connection as *N): be_new (connections with a request, the load
# balancer's health probes apart), be_resumed (of those, how many resumed a
# TLS session), be_probes, be_tls (the protocol/cipher most of them
# negotiated), be_aborted (handshakes the client gave up: closed or reset
# the connection in the handshake); prints a line per run.
cat >"$TMP/tls_conns.py" <<'PY'
import bisect, collections, csv, re, sys
tsv, log, errlog = sys.argv[1:4]
conns = {}
for line in open(log):
    f = line.split()
    if len(f) >= 6:
        conns[int(f[0])] = (f[2], f[3], f[4], f[-1] == '"load_balancer-probe"')
nums = sorted(conns)
aborted = sorted(int(m.group(1)) for m in
                 (re.search(r" \*(\d+) .*in SSL handshake", l) for l in open(errlog, errors="replace")) if m)
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
if not rows:
    sys.exit(0)
fields = list(rows[0].keys()) + ["be_new", "be_resumed", "be_probes", "be_tls", "be_aborted"]
for r in rows:
    lo, hi = int(r["be_conn_from"]), int(r["be_conn_to"])
    new = resumed = probes = 0
    tls = collections.Counter()
    for n in nums[bisect.bisect_right(nums, lo):bisect.bisect_left(nums, hi)]:
        proto, cipher, reused, probe = conns[n]
        if probe:
            probes += 1
            continue
        new += 1
        resumed += reused == "r"
        tls[f"{proto}/{cipher}"] += 1
    ab = bisect.bisect_left(aborted, hi) - bisect.bisect_right(aborted, lo)
    r.update(be_new=new, be_resumed=resumed, be_probes=probes, be_tls=tls.most_common(1)[0][0] if tls else "-", be_aborted=ab)
    print(f"  {r['proxy']:<16} c{r['conns']:<4} run {r['run']}: TLS backend accepted {r['be_accepts']} connection(s): "
          f"{new} with a request, {resumed} of them resumed a session; {probes} probe(s); {ab} handshake(s) abandoned; {r['be_tls']}")
with open(tsv, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields, delimiter="\t", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
PY

# ---- 4. start servers ------------------------------------------------------
"$BIN/backend1" -p "$P1" >"$TMP/backend1.log" 2>&1 &
B1_PID=$!
PIDS+=("$B1_PID"); wait_ready backend1 "$B1_PID" "$P1" "$TMP/backend1.log"
"$BIN/backend2" -p "$P2" >"$TMP/backend2.log" 2>&1 &
B2_PID=$!
PIDS+=("$B2_PID"); wait_ready backend2 "$B2_PID" "$P2" "$TMP/backend2.log"

NGX_USER=""
# As root nginx would drop its worker to 'nobody', which cannot use the
# mktemp directory; keep it root. As non-root the directive is meaningless.
[[ $(id -u) == 0 ]] && NGX_USER="user root root;"

# The origin of the large response: a separate nginx (so it shares no worker
# with the nginx under test) serving a sparse file with sendfile.
mkdir -p "$TMP/www" "$TMP/origin-tmp" "$TMP/nginx-tmp"
truncate -s "$BODY_SIZE" "$TMP/www/big.bin" || die "BENCH_BODY_SIZE '$BODY_SIZE' is not a size truncate -s accepts"
BODY_BYTES=$(stat -c %s "$TMP/www/big.bin")
echo "ok" >"$TMP/www/index.html"
cat >"$TMP/origin.conf" <<CONF
$NGX_USER
worker_processes 1;
pid $TMP/origin.pid;
error_log $TMP/origin-error.log warn;
events {
    worker_connections 1024;
}
http {
    access_log off;
    sendfile on;
    client_body_temp_path $TMP/origin-tmp/client_body;
    proxy_temp_path       $TMP/origin-tmp/proxy;
    fastcgi_temp_path     $TMP/origin-tmp/fastcgi;
    uwsgi_temp_path       $TMP/origin-tmp/uwsgi;
    scgi_temp_path        $TMP/origin-tmp/scgi;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
    }
}
CONF
nginx_start origin "$TMP/origin.conf" "$ORIGIN_PORT"

# One worker: -m mp -w 1 is a master and one worker process (the default
# would be one worker per CPU).
lb_start load_balancer "$TMP/load_balancer.log" "$LB_PORT" mp 1 "127.0.0.1:$P1" "127.0.0.1:$P2"
LB_PID=$LB_STARTED
LB_WORKER=$LB_STARTED_WORKER

# A second load balancer instance for the large response only.
lb_start "load_balancer (large-response instance)" "$TMP/load_balancer-body.log" "$LB_BODY_PORT" mp 1 "127.0.0.1:$ORIGIN_PORT"
LB_BODY_WORKER=$LB_STARTED_WORKER

# nginx_conf NAME WORKERS PORT [BODY-PORT [tls]]: writes $TMP/NAME.conf, the
# nginx under test with worker_processes WORKERS in front of the backends on
# PORT and, with BODY-PORT, in front of the origin there (large-response
# test); with `tls` (and an empty BODY-PORT) in front of the TLS backend
# instead, over HTTPS, verified against the bench CA. Its access_log is
# NGX_ACCESS_LOG (off unless the access-log runs set it).
NGX_ACCESS_LOG=off
nginx_conf() {
    local name=$1 workers=$2 port=$3 body_port=${4:-} body_upstream="" body_server=""
    local upstream="backends" servers="
        server 127.0.0.1:$P1;
        server 127.0.0.1:$P2;" scheme=http tls_opts=""
    if [[ ${5:-} == tls ]]; then
        upstream="tls_upstream" scheme=https
        servers="
        server 127.0.0.1:$TLS_BE_PORT;"
        # nginx 1.22's default proxy_ssl_protocols is TLSv1 TLSv1.1 TLSv1.2;
        # TLSv1.3 as well, as the other proxies (and nginx >= 1.23.4) offer.
        tls_opts="
            proxy_ssl_session_reuse on;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $TLS_CA;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;"
    fi
    if [[ -n $body_port ]]; then
        body_upstream="
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 8;
    }"
        body_server="
    # Large-response test only (same worker, its own port).
    server {
        listen 127.0.0.1:$body_port;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
    fi
    mkdir -p "$TMP/$name-tmp"
    cat >"$TMP/$name.conf" <<CONF
$NGX_USER
worker_processes $workers;
worker_rlimit_nofile $NGX_RLIMIT;
pid $TMP/$name.pid;
error_log $TMP/$name-error.log warn;
events {
    worker_connections 20000;
}
http {
    access_log $NGX_ACCESS_LOG;
    client_body_temp_path $TMP/$name-tmp/client_body;
    proxy_temp_path       $TMP/$name-tmp/proxy;
    fastcgi_temp_path     $TMP/$name-tmp/fastcgi;
    uwsgi_temp_path       $TMP/$name-tmp/uwsgi;
    scgi_temp_path        $TMP/$name-tmp/scgi;
    upstream $upstream {$servers
        keepalive 128;
    }$body_upstream
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass $scheme://$upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";$tls_opts
        }
    }$body_server
}
CONF
}
nginx_conf nginx 1 "$NGX_PORT" "$NGX_BODY_PORT"
nginx_start nginx "$TMP/nginx.conf" "$NGX_PORT"
NGX_PID=$NGINX_MASTER
NGX_WORKER=$NGINX_WORKER

# haproxy_start NAME NBTHREAD PORT [BODY-PORT [tls]]: writes $TMP/NAME.cfg
# (the same shape as nginx_conf: with `tls` its one server is the TLS
# backend, over TLS), checks it and starts HAProxy in the foreground (-db: no
# daemon, no master process: one process, NBTHREAD threads); sets
# HAPROXY_PID.
haproxy_start() {
    local name=$1 threads=$2 port=$3 body_port=${4:-} cfg=$TMP/$1.cfg
    local servers="    server backend1 127.0.0.1:$P1
    server backend2 127.0.0.1:$P2"
    [[ ${5:-} != tls ]] ||
        servers="    server s1 127.0.0.1:$TLS_BE_PORT ssl verify required ca-file $TLS_CA sni str(localhost)"
    # No `log` line anywhere: HAProxy logs nothing.
    cat >"$cfg" <<CONF
global
    nbthread $threads
    maxconn $HAP_MAXCONN
    pidfile $TMP/$name.pid

defaults
    mode http
    maxconn $HAP_MAXCONN
    option http-keep-alive
    http-reuse always
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:$port
    default_backend be

backend be
    balance roundrobin
$servers
CONF
    [[ -z $body_port ]] || cat >>"$cfg" <<CONF

# Large-response test only (same process, its own port).
frontend fe_body
    bind 127.0.0.1:$body_port
    default_backend be_body

backend be_body
    server origin 127.0.0.1:$ORIGIN_PORT
CONF
    haproxy -c -q -f "$cfg" >"$TMP/$name.log" 2>&1 || {
        echo "bench: $name rejected its config:" >&2; cat "$TMP/$name.log" >&2; exit 1; }
    haproxy -f "$cfg" -db >>"$TMP/$name.log" 2>&1 &
    HAPROXY_PID=$!
    PIDS+=("$HAPROXY_PID")
    wait_ready "$name" "$HAPROXY_PID" "$port" "$TMP/$name.log"
}

PROXIES=(lb nginx)
if ((HAVE_HAPROXY)); then
    haproxy_start haproxy 1 "$HAP_PORT" "$HAP_BODY_PORT"
    HAP_PID=$HAPROXY_PID
    PROXIES+=(haproxy)
fi

# Proxies are keyed lb, nginx, haproxy (one worker) and lb@N, lbsp@N,
# nginx@N, haproxy@N (N workers, started and stopped around their runs),
# lb@tls ... (TLS to the backend), lb@nolog, lbalog@log, nginx@nolog,
# nginxalog@log (the access-log runs); NAME is by the part before the @.
declare -A NAME=([lb]=load_balancer [lbsp]="load_balancer sp" [nginx]=nginx [haproxy]=haproxy
                 [lbalog]="load_balancer access-log" [nginxalog]="nginx access-log")
declare -A URL=([lb]=http://127.0.0.1:$LB_PORT/ [nginx]=http://127.0.0.1:$NGX_PORT/ [haproxy]=http://127.0.0.1:$HAP_PORT/)
declare -A BODY_URL=([direct]=http://127.0.0.1:$ORIGIN_PORT/big.bin [lb]=http://127.0.0.1:$LB_BODY_PORT/big.bin
                     [nginx]=http://127.0.0.1:$NGX_BODY_PORT/big.bin [haproxy]=http://127.0.0.1:$HAP_BODY_PORT/big.bin)
declare -A PORT=([lb]=$LB_PORT [nginx]=$NGX_PORT [haproxy]=$HAP_PORT)
# CPU_ROOT: CPU time is that of this process and its children (all their
# threads): the load balancer's master, worker(s) and prober, nginx's master
# and worker(s), HAProxy's one process. WORKER_PID: the one process whose RSS
# (idle test) and syscalls (strace) are measured: the worker that holds the
# connections.
declare -A CPU_ROOT=([lb]=$LB_PID [nginx]=$NGX_PID [haproxy]=${HAP_PID:-})
declare -A WORKER_PID=([lb]=$LB_WORKER [nginx]=$NGX_WORKER [haproxy]=${HAP_PID:-})
declare -A BODY_PID=([direct]=- [lb]=$LB_BODY_WORKER [nginx]=$NGX_WORKER [haproxy]=${HAP_PID:-})
# What each proxy runs, per worker count (for the report).
declare -A SETUP=([lb]="\`-m mp -w 1\` (a master and one worker process)" [nginx]="\`worker_processes 1\`" [haproxy]="\`nbthread 1\`")

# check_proxy KEY [BODY]: the proxy really reaches the backends (its answer
# holds BODY, by default that of the demo backends).
check_proxy() {
    local body want=${2:-Hello from backend}
    body=$(curl -s --max-time 2 "${URL[$1]}" || true)
    [[ $body == *"$want"* ]] || die "${NAME[${1%@*}]} on ${URL[$1]} answered '$body', expected '$want…'"
}

# Sanity: every proxy really reaches the backends and the origin.
for proxy in "${PROXIES[@]}"; do
    check_proxy "$proxy"
done
for t in direct "${PROXIES[@]}"; do
    code=$(curl -s -o /dev/null -I --max-time 2 -w '%{http_code}' "${BODY_URL[$t]}" || true)
    [[ $code == 200 ]] || die "HEAD ${BODY_URL[$t]} answered '$code', expected 200"
done

# start_set N K: the N-worker proxies on their ports (the K-th set): the load
# balancer -m mp -w N and (unless BENCH_SKIP has sp) -m sp -w N, nginx
# worker_processes N, HAProxy nbthread N; sets SET_KEYS (their keys, lb@N ...)
# and SET_STOP (the pids to stop afterwards).
start_set() {
    local n=$1 k=$2 port
    SET_KEYS=() SET_STOP=()
    port=$(set_port "$k" 0)
    lb_start "load_balancer -m mp -w $n" "$TMP/load_balancer-w$n.log" "$port" mp "$n" "127.0.0.1:$P1" "127.0.0.1:$P2"
    URL[lb@$n]=http://127.0.0.1:$port/ CPU_ROOT[lb@$n]=$LB_STARTED
    SETUP[lb@$n]="\`-m mp -w $n\` (a master and $n worker processes sharing one listening socket, EPOLLEXCLUSIVE)"
    SET_KEYS+=("lb@$n") SET_STOP+=("$LB_STARTED")
    if ! skipped sp; then
        port=$(set_port "$k" 1)
        lb_start "load_balancer -m sp -w $n" "$TMP/load_balancer-sp-w$n.log" "$port" sp "$n" "127.0.0.1:$P1" "127.0.0.1:$P2"
        URL[lbsp@$n]=http://127.0.0.1:$port/ CPU_ROOT[lbsp@$n]=$LB_STARTED
        SETUP[lbsp@$n]="\`-m sp -w $n\` (one process, $n worker threads)"
        SET_KEYS+=("lbsp@$n") SET_STOP+=("$LB_STARTED")
    fi
    port=$(set_port "$k" 2)
    nginx_conf "nginx-w$n" "$n" "$port"
    nginx_start "nginx-w$n" "$TMP/nginx-w$n.conf" "$port" "$n"
    URL[nginx@$n]=http://127.0.0.1:$port/ CPU_ROOT[nginx@$n]=$NGINX_MASTER
    SETUP[nginx@$n]="\`worker_processes $n\`"
    SET_KEYS+=("nginx@$n")
    # shellcheck disable=SC2206  # pids: split on spaces
    SET_STOP+=("$NGINX_MASTER" $NGINX_WORKERS)
    if ((HAVE_HAPROXY)); then
        port=$(set_port "$k" 3)
        haproxy_start "haproxy-w$n" "$n" "$port"
        URL[haproxy@$n]=http://127.0.0.1:$port/ CPU_ROOT[haproxy@$n]=$HAPROXY_PID
        SETUP[haproxy@$n]="\`nbthread $n\` (one process)"
        SET_KEYS+=("haproxy@$n") SET_STOP+=("$HAPROXY_PID")
    fi
    local key
    for key in "${SET_KEYS[@]}"; do
        check_proxy "$key"
    done
}

# running PID: the process exists and is not a zombie.
running() {
    local stat
    # read, not $(<...): a failed $(<file) ends the script under set -e.
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# warn TEXT: to stderr and to bench/out/warnings.txt (results.md lists them).
warn() {
    echo "bench: warning: $*" >&2
    [[ ! -d $OUT ]] || echo "$*" >>"$OUT/warnings.txt"
}

# comm_of PID: the process name (what ps shows), or "?".
comm_of() { cat "/proc/$1/comm" 2>/dev/null || echo "?"; }

# stop_procs PID...: SIGTERM, up to 5 s to exit (for them and the children
# they had: a load balancer master's workers and prober), then SIGKILL for
# what is left, with a warning naming it (a child left running would
# outlive its master); forgets them (PIDS, WORKERS) so that cleanup does not
# signal reused pids.
stop_procs() {
    local pid i left keep=() all=("$@") late=""
    for pid in "$@"; do
        # shellcheck disable=SC2207  # pids: split on newlines
        all+=($(pgrep -P "$pid" 2>/dev/null || true))
    done
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 50); do
        left=0
        for pid in "${all[@]}"; do running "$pid" && left=1; done
        ((left)) || break
        sleep 0.1
    done
    for pid in "${all[@]}"; do
        running "$pid" || continue
        late+="${late:+, }$pid ($(comm_of "$pid"))"
        kill -KILL "$pid" 2>/dev/null || true
    done
    [[ -z $late ]] || warn "still running 5 s after SIGTERM, killed: $late"
    for pid in "${PIDS[@]}"; do
        [[ " $* " == *" $pid "* ]] && { wait "$pid" 2>/dev/null || true; continue; }
        keep+=("$pid")
    done
    PIDS=("${keep[@]}")
    keep=()
    for pid in "${WORKERS[@]}"; do
        [[ " $* " == *" $pid "* ]] || keep+=("$pid")
    done
    WORKERS=("${keep[@]}")
}

# ---- 5. measure ------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID: utime+stime (fields 14, 15) of a process, all its threads.
cpu_ticks() {
    local stat rest f
    read -r stat 2>/dev/null <"/proc/$1/stat" || die "process $1 is gone"
    rest=${stat##*) }          # drop "pid (comm) "; comm may contain spaces
    read -r -a f <<<"$rest"    # f[0] is field 3, so field 14 is f[11]
    echo $((f[11] + f[12]))
}

# tree_cpu ROOT: sets TREE_TICKS to utime+stime of ROOT and of each of its
# live child processes (a load balancer master's workers and prober, an nginx
# master's workers), all threads, and TREE_PIDS to those pids. A child's time reaches its parent's
# cutime only once it is reaped, so live children are read one by one; the
# caller compares TREE_PIDS before and after a run, since a worker that died
# and was replaced during it would take its CPU time with it.
# TREE_TICKS_OF[PID] keeps each one's ticks.
declare -A TREE_TICKS_OF=()
tree_cpu() {
    local pid t
    TREE_PIDS="$1 $(pgrep -P "$1" | sort -n | tr '\n' ' ' || true)"
    TREE_PIDS=${TREE_PIDS% }
    TREE_TICKS=0
    TREE_TICKS_OF=()
    for pid in $TREE_PIDS; do
        t=$(cpu_ticks "$pid")
        TREE_TICKS_OF[$pid]=$t
        TREE_TICKS=$((TREE_TICKS + t))
    done
}

# check_side_cpu NAME ROOT WALL-US: after a run (TREE_TICKS_OF from after it,
# SIDE_BEFORE "pid:ticks ..." from before), warns when a process that should
# be all but idle during a run used more than a tenth of a core: the master
# (ROOT, when it has children) or a load balancer prober. Such CPU time is
# in the proxy's CPU µs/req, so the figure would not be the workers' alone.
check_side_cpu() {
    local name=$1 root=$2 wall=$3 pt pid t0 used comm
    for pt in $SIDE_BEFORE; do
        pid=${pt%%:*} t0=${pt#*:}
        [[ -n ${TREE_TICKS_OF[$pid]:-} ]] || continue
        comm=$(comm_of "$pid")
        [[ ($pid == "$root" && $TREE_PIDS != "$root") || $comm == *prober* ]] || continue
        used=$((TREE_TICKS_OF[$pid] - t0))
        # used / CLK_TCK seconds over wall / 1e6 seconds > 0.1
        if ((used * 10000000 > wall * CLK_TCK)); then
            warn "$name: its process $pid ($comm) used $(awk -v u="$used" -v h="$CLK_TCK" -v w="$wall" 'BEGIN {printf "%.2f", u / h / (w / 1e6)}') cores during a measured run (it should be all but idle): the run's CPU µs/req includes it"
        fi
    done
}

alive() { kill -0 "$2" 2>/dev/null || die "$1 (pid $2) died"; }

rm -rf "$OUT"
mkdir -p "$OUT"
RUNS_TSV=$OUT/runs.tsv
IDLE_TSV=$OUT/idle.tsv
STRACE_TSV=$OUT/strace.tsv
BODY_TSV=$OUT/body.tsv
printf 'proxy\tworkers\tconns\trun\treq_s\tp50_ms\tp99_ms\tmax_ms\tcpu_s\trequests\tnon2xx\tsock_err\tcpu_us_req\tbackends_cpu_s\tbusy_s\tidle_s\tsteal_s\twall_s\n' >"$RUNS_TSV"
printf 'proxy\trss_before_kib\trss_after_kib\tconns\tchecked\topen_s\n' >"$IDLE_TSV"
printf 'proxy\trequests\tsyscalls\tfile\n' >"$STRACE_TSV"
printf 'target\trun\tbytes\tseconds\trss_before_kib\trss_peak_kib\tcpu_s\n' >"$BODY_TSV"

# 5a. Idle keep-alive connections, on the freshly started proxies.
if skipped idle; then
    echo "idle keep-alive memory: skipped (BENCH_SKIP)"
else
    echo
    echo "== idle keep-alive connections: $IDLE_CONNS per proxy, VmRSS before and after"
    for proxy in "${PROXIES[@]}"; do
        log=$OUT/idle-${NAME[$proxy]}.txt
        run_bg "idle-connection test against ${NAME[$proxy]}" "$log" \
            python3 "$TMP/idle.py" "${PORT[$proxy]}" "${WORKER_PID[$proxy]}" "$IDLE_CONNS" || continue
        alive "${NAME[$proxy]}" "${WORKER_PID[$proxy]}"
        printf '%s\t%s\n' "${NAME[$proxy]}" "$(tail -n 1 "$log")" >>"$IDLE_TSV"
        tail -n 1 "$IDLE_TSV" | awk -F'\t' '{printf "  %-13s RSS %7d KiB -> %7d KiB: %6.0f bytes per connection (%d opened in %.1f s)\n", $1, $2, $3, ($3-$2)*1024/$4, $4, $6}'
    done
    # Let the closes settle before measuring throughput.
    sleep 1
fi

# 5b. Throughput and latency, for each worker count.
WARM=1
[[ $WARMUP == 0 || $WARMUP == 0s ]] && WARM=0
NCPU=$(nproc)

# machine_ticks: "busy idle steal" ticks of all CPUs since boot (/proc/stat:
# busy = user nice system irq softirq, idle = idle iowait).
machine_ticks() {
    local u n s i w q sq st rest
    read -r _ u n s i w q sq st rest </proc/stat
    echo "$((u + n + s + q + sq)) $((i + w)) $st"
}

# limit_note N: what limits the N-worker figures on this machine.
limit_note() {
    local n=$1 busy=$((THREADS + 2 + $1)) cores="$NCPU CPU cores" wrk="$THREADS threads"
    ((NCPU == 1)) && cores="1 CPU core"
    ((THREADS == 1)) && wrk="one thread"
    if ((busy > NCPU)); then
        echo "What limits these figures: this machine has $cores, and wrk (-t$THREADS, $wrk), backend1 and backend2 (one thread each) and the proxy's $n workers all run on them: $busy threads that each want a core, on $NCPU. The proxy cannot have $n cores to itself; its extra workers only get what wrk and the backends leave, so req/s and latency here show this machine at full load, not how far each proxy scales with workers, and a proxy that spends less CPU per request leaves more to wrk and the backends. CPU µs/req (all the proxy's processes and threads) is the column to compare; the CPU-use table shows where the cores went."
    else
        echo "wrk (-t$THREADS, $wrk), backend1 and backend2 (one thread each) and the proxy's $n workers have $cores between them; wrk and the single-threaded backends can use at most one core per thread, so they may limit req/s before the proxy does: the CPU-use table shows where the cores went."
    fi
}

# backend_ticks: utime+stime of the processes in BACKEND_PIDS.
BACKEND_PIDS=()
backend_ticks() {
    local pid t=0
    for pid in "${BACKEND_PIDS[@]}"; do t=$((t + $(cpu_ticks "$pid"))); done
    echo "$t"
}

# tls_be_counts: the TLS backend's stub_status counters, for the TLS section
# (TP_TLS=1): BE_ACCEPTS connections accepted and BE_REQUESTS requests, each
# including the status request's own. nginx numbers its connections
# ($connection) with the same count, so the connections accepted between two
# readings A0 and A1 are those numbered A0+1 .. A1-1 (A1 is the second
# status request's).
tls_be_counts() {
    local status
    status=$(curl -s --max-time 2 "http://127.0.0.1:$TLS_BE_STATUS_PORT/") || die "no stub_status from the TLS backend"
    read -r BE_ACCEPTS _ BE_REQUESTS < <(sed -n 3p <<<"$status")
    [[ $BE_ACCEPTS =~ ^[0-9]+$ && $BE_REQUESTS =~ ^[0-9]+$ ]] || die "unexpected stub_status from the TLS backend: $status"
}

# throughput N KEY...: at each concurrency a warm-up per proxy, then RUNS
# runs alternating across the proxies KEY...; one line per run in TP_TSV
# (runs.tsv). CPU of the backends is that of BACKEND_PIDS; TP_LABEL heads
# the section, TP_TAG starts the names of the wrk logs. With TP_TLS=1 each
# line also gets the TLS backend's figures for the run: connections it
# accepted, requests it served, and the range of its connection numbers
# (tls_conns.py later adds what its log says about those connections).
# With TP_ALOG=1 (the access-log runs) the access log of a proxy that has one
# (ALOG_FILE_OF[KEY]) is truncated before each run and, once the proxy has
# flushed it, its lines counted after the run; each line gets the proxy
# without its log (ALOG_BASE[KEY]), whether it logged (off/on) and the
# log's lines (- when off). TP_CONNS (an array), when set, replaces
# BENCH_CONNS_LIST.
TP_TSV="" TP_LABEL="" TP_TAG="" TP_TLS=0 TP_ALOG=0 TP_CONNS=()
ALOG_LINES=0

# alog_settle FILE: waits until the proxy has written what it buffered (both
# write their buffer once it is a second old: the load balancer's sweep,
# every 100 ms, and nginx's flush=1s timer) and FILE's line count no longer
# grows; sets ALOG_LINES.
alog_settle() {
    local prev=-1 i
    sleep 1.2
    for i in $(seq 20); do
        ALOG_LINES=$(wc -l <"$1") || die "cannot read the access log $1"
        ((ALOG_LINES == prev)) && return 0
        prev=$ALOG_LINES
        sleep 0.3
    done
    warn "the access log $1 was still growing 7 s after the run"
}

# alog_check NAME CONNS RUN WRK-LOG: warns unless the access log has a line
# per request wrk completed (the last line of TP_TSV), plus at most one per
# connection: the requests still in flight when wrk stopped.
alog_check() {
    local reqs
    reqs=$(tail -n 1 "$TP_TSV" | cut -f10)
    if ((ALOG_LINES < reqs || ALOG_LINES > reqs + $2)); then
        warn "$1 c$2 run $3: its access log had $ALOG_LINES lines, wrk completed $reqs requests ($4): expected $reqs to $((reqs + $2)) (a line per request, those in flight when wrk stopped included)"
    fi
}
declare -A ALOG_FILE_OF=() ALOG_BASE=()
throughput() {
    local n=$1 conns run key name tag log line pid before before_pids after b0 b1 m0 m1 t0 t1 a0 r0 extra
    shift
    local keys=("$@") names=() conns_list=("${CONNS_ARR[@]}")
    ((${#TP_CONNS[@]} == 0)) || conns_list=("${TP_CONNS[@]}")
    for key in "${keys[@]}"; do names+=("${NAME[${key%@*}]// /-}"); done
    for conns in "${conns_list[@]}"; do
        echo
        echo "== ${TP_LABEL:-$n worker(s)}: wrk -t$THREADS -c$conns -d$DURATION --latency, $RUNS run(s) each, alternating: ${names[*]}"
        ((n == 1)) || echo "   $(limit_note "$n")" | fold -s -w 100 | sed '2,$s/^/   /'
        if ((WARM)); then
            for key in "${keys[@]}"; do
                name=${NAME[${key%@*}]}
                tag=$TP_TAG${name// /-}$( ((n == 1)) || echo "-w$n")
                run_wrk "$name (warm-up)" "$OUT/warmup-$tag-c$conns.txt" \
                    -t"$THREADS" -c"$conns" -d"$WARMUP" "${URL[$key]}"
                # Its last lines written before the next run truncates the log.
                [[ -z ${ALOG_FILE_OF[$key]:-} ]] || alog_settle "${ALOG_FILE_OF[$key]}"
            done
        fi
        for run in $(seq "$RUNS"); do
            for key in "${keys[@]}"; do
                name=${NAME[${key%@*}]}
                tag=$TP_TAG${name// /-}$( ((n == 1)) || echo "-w$n")
                log=$OUT/$tag-c$conns-run$run.txt
                if ((TP_TLS)); then
                    tls_be_counts
                    a0=$BE_ACCEPTS r0=$BE_REQUESTS
                fi
                # O_APPEND writers (both proxies open it so): the next write
                # lands at the new end.
                [[ -z ${ALOG_FILE_OF[$key]:-} ]] || : >"${ALOG_FILE_OF[$key]}"
                tree_cpu "${CPU_ROOT[$key]}"
                before=$TREE_TICKS before_pids=$TREE_PIDS SIDE_BEFORE=""
                for pid in "${!TREE_TICKS_OF[@]}"; do SIDE_BEFORE+="$pid:${TREE_TICKS_OF[$pid]} "; done
                b0=$(backend_ticks)
                m0=$(machine_ticks)
                t0=${EPOCHREALTIME//[.,]/}
                run_wrk "$name" "$log" -t"$THREADS" -c"$conns" -d"$DURATION" --latency "${URL[$key]}"
                t1=${EPOCHREALTIME//[.,]/}
                m1=$(machine_ticks)
                b1=$(backend_ticks)
                tree_cpu "${CPU_ROOT[$key]}"
                after=$TREE_TICKS
                # The same processes before and after, or the CPU figure is wrong.
                [[ $TREE_PIDS == "$before_pids" ]] || die "$name: its processes changed during the run (pids $before_pids, then $TREE_PIDS): a worker died?"
                check_side_cpu "$name" "${CPU_ROOT[$key]}" "$((t1 - t0))"
                extra=""
                if ((TP_TLS)); then
                    tls_be_counts
                    extra=$(printf '\t%d\t%d\t%d\t%d' $((BE_ACCEPTS - a0 - 1)) $((BE_REQUESTS - r0 - 1)) "$a0" "$BE_ACCEPTS")
                fi
                if ((TP_ALOG)); then
                    if [[ -n ${ALOG_FILE_OF[$key]:-} ]]; then
                        alog_settle "${ALOG_FILE_OF[$key]}"
                        extra=$(printf '\t%s\ton\t%d' "${ALOG_BASE[$key]}" "$ALOG_LINES")
                    else
                        extra=$(printf '\t%s\toff\t-' "${ALOG_BASE[$key]}")
                    fi
                fi
                line=$(python3 "$TMP/parse_wrk.py" "$log" "$name" "$n" "$conns" "$run" "$((after - before))" "$CLK_TCK" \
                    "$((b1 - b0))" "$m0" "$m1" "$((t1 - t0))") || die "could not parse wrk output $log"
                printf '%s%s\n' "$line" "$extra" >>"$TP_TSV"
                [[ $(tail -n 1 "$TP_TSV" | cut -f1) == "$name" ]] || die "no result parsed from $log"
                tail -n 1 "$TP_TSV" | awk -F'\t' -v tls="$TP_TLS" -v alog="$TP_ALOG" '{w = $18; printf "  %-" (alog ? 24 : 16) "s c%-4s run %s: %8.0f req/s  p50 %7.3f ms  p99 %7.3f ms  max %8.2f ms  CPU %5.2f s  %6.2f us/req  errors: non-2xx %s, socket %s\n%20s cores busy: proxy %.2f, backends %.2f, other %.2f; idle %.2f, steal %.2f\n", $1, $3, $4, $5, $6, $7, $8, $9, $13, $11, $12, "", $9 / w, $14 / w, ($15 - $9 - $14) / w, $16 / w, $17 / w
                    if (tls) printf "%20s TLS backend: %d connection(s) accepted, %d requests served\n", "", $19, $20
                    if (alog && $20 == "on") printf "%20s access log: %d lines, wrk completed %d requests (%+d)\n", "", $21, $10, $21 - $10}'
                if ((TP_ALOG)) && [[ -n ${ALOG_FILE_OF[$key]:-} ]]; then
                    alog_check "$name" "$conns" "$run" "$log"
                fi
            done
        done
    done
}

SECTIONS_TSV=$OUT/sections.tsv
printf 'workers\tsetup\tnote\n' >"$SECTIONS_TSV"
# section N KEY...: one sections.tsv line, what each proxy ran and the note.
section() {
    local n=$1 key setup="" note=""
    shift
    for key in "$@"; do setup+="${setup:+; }${NAME[${key%@*}]} ${SETUP[$key]}"; done
    ((n == 1)) || note=$(limit_note "$n")
    printf '%s\t%s\t%s\n' "$n" "$setup" "$note" >>"$SECTIONS_TSV"
}

TP_TSV=$RUNS_TSV
BACKEND_PIDS=("$B1_PID" "$B2_PID")
k=0
skipped plain && echo "plain-HTTP throughput: skipped (BENCH_SKIP)"
for n in "${WORKERS_ARR[@]}"; do
    skipped plain && break
    if ((n == 1)); then
        section 1 "${PROXIES[@]}"
        throughput 1 "${PROXIES[@]}"
        continue
    fi
    echo
    echo "== starting the $n-worker proxies"
    start_set "$n" "$k"
    section "$n" "${SET_KEYS[@]}"
    throughput "$n" "${SET_KEYS[@]}"
    stop_procs "${SET_STOP[@]}"
    k=$((k + 1))
done

# 5c. The access log's cost: the load balancer -m mp -w 1 without and with
# --access-log, and nginx (one worker) without and with access_log (its
# combined format, buffer=64k flush=1s), started for these runs only, in
# front of the same backends; the same wrk settings, at ALOG_CONNS_ARR.
ALOG_TSV=$OUT/accesslog.tsv
ALOG_LB_FILE=$OUT/access.log
ALOG_NGX_FILE=$OUT/access-nginx.log
if skipped accesslog; then
    echo "access log cost: skipped (BENCH_SKIP)"
else
    echo
    echo "== access log cost: load_balancer -m mp -w 1 without and with --access-log $ALOG_LB_FILE$(skipped accesslog-nginx ||
        echo ", nginx without and with access_log $ALOG_NGX_FILE combined buffer=64k flush=1s")"
    ALOG_STOP=()
    lb_start "load_balancer (no access log)" "$TMP/load_balancer-nolog.log" "$LB_NOLOG_PORT" mp 1 "127.0.0.1:$P1" "127.0.0.1:$P2"
    URL[lb@nolog]=http://127.0.0.1:$LB_NOLOG_PORT/ CPU_ROOT[lb@nolog]=$LB_STARTED ALOG_BASE[lb@nolog]=load_balancer
    ALOG_STOP+=("$LB_STARTED")
    LB_EXTRA=(--access-log "$ALOG_LB_FILE")
    lb_start "load_balancer (access log)" "$TMP/load_balancer-alog.log" "$LB_ALOG_PORT" mp 1 "127.0.0.1:$P1" "127.0.0.1:$P2"
    LB_EXTRA=()
    URL[lbalog@log]=http://127.0.0.1:$LB_ALOG_PORT/ CPU_ROOT[lbalog@log]=$LB_STARTED ALOG_BASE[lbalog@log]=load_balancer
    ALOG_FILE_OF[lbalog@log]=$ALOG_LB_FILE
    ALOG_STOP+=("$LB_STARTED")
    ALOG_KEYS=(lb@nolog lbalog@log)
    if ! skipped accesslog-nginx; then
        nginx_conf nginx-nolog 1 "$NGX_NOLOG_PORT"
        nginx_start nginx-nolog "$TMP/nginx-nolog.conf" "$NGX_NOLOG_PORT"
        URL[nginx@nolog]=http://127.0.0.1:$NGX_NOLOG_PORT/ CPU_ROOT[nginx@nolog]=$NGINX_MASTER ALOG_BASE[nginx@nolog]=nginx
        # shellcheck disable=SC2206  # pids: split on spaces
        ALOG_STOP+=("$NGINX_MASTER" $NGINX_WORKERS)
        NGX_ACCESS_LOG="$ALOG_NGX_FILE combined buffer=64k flush=1s"
        nginx_conf nginx-alog 1 "$NGX_ALOG_PORT"
        NGX_ACCESS_LOG=off
        nginx_start nginx-alog "$TMP/nginx-alog.conf" "$NGX_ALOG_PORT"
        URL[nginxalog@log]=http://127.0.0.1:$NGX_ALOG_PORT/ CPU_ROOT[nginxalog@log]=$NGINX_MASTER ALOG_BASE[nginxalog@log]=nginx
        ALOG_FILE_OF[nginxalog@log]=$ALOG_NGX_FILE
        # shellcheck disable=SC2206  # pids: split on spaces
        ALOG_STOP+=("$NGINX_MASTER" $NGINX_WORKERS)
        ALOG_KEYS+=(nginx@nolog nginxalog@log)
    fi
    for key in "${ALOG_KEYS[@]}"; do
        check_proxy "$key"
    done
    printf 'proxy\tworkers\tconns\trun\treq_s\tp50_ms\tp99_ms\tmax_ms\tcpu_s\trequests\tnon2xx\tsock_err\tcpu_us_req\tbackends_cpu_s\tbusy_s\tidle_s\tsteal_s\twall_s\tbase\tlog\tlog_lines\n' >"$ALOG_TSV"
    TP_TSV=$ALOG_TSV TP_LABEL="access log cost, 1 worker" TP_TAG=alog- TP_ALOG=1 TP_CONNS=("${ALOG_CONNS_ARR[@]}")
    throughput 1 "${ALOG_KEYS[@]}"
    TP_TSV=$RUNS_TSV TP_LABEL="" TP_TAG="" TP_ALOG=0 TP_CONNS=()
    stop_procs "${ALOG_STOP[@]}"
    # What the load balancers logged besides (at -l warn).
    for f in "$TMP/load_balancer-nolog.log" "$TMP/load_balancer-alog.log"; do
        n_lines=$(grep -c . "$f" 2>/dev/null || true)
        ((${n_lines:-0} == 0)) || echo "  note: $(basename "$f") has $n_lines line(s), the first: $(head -n 1 "$f")"
    done
fi

# 5d. TLS to the backend: the same runs, one worker each, with every proxy
# forwarding over TLS to one HTTPS backend (a separate nginx); the backend
# and these proxies are started for these runs only and stopped after them.

# tls_certs: a private CA and a server certificate for localhost (SAN
# DNS:localhost, IP:127.0.0.1), ECDSA P-256, in TLS_DIR.
tls_certs() {
    local d=$TLS_DIR
    mkdir -p "$d"
    cat >"$d/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = load_balancer bench
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
    {
        openssl req -x509 -config "$d/openssl.cnf" -extensions ca_ext -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 30 -subj "/CN=load_balancer bench CA" &&
        openssl req -new -config "$d/openssl.cnf" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -nodes -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" &&
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -CAserial "$d/ca.srl" \
            -days 30 -extfile "$d/openssl.cnf" -extensions server_ext -out "$d/server.pem" &&
        openssl verify -CAfile "$d/ca.pem" "$d/server.pem"
    } >"$d/openssl.log" 2>&1 || die "openssl could not make the bench CA and certificate: $(tail -n 5 "$d/openssl.log")"
}

TLS_TSV=$OUT/tls.tsv
if ((HAVE_TLS)); then
    echo
    echo "== TLS to the backend: a private CA and a certificate for localhost (openssl, in $TLS_DIR), the TLS backend, the proxies"
    tls_certs
    # The backend: its own nginx, one worker, TLS on TLS_BE_PORT, answering a
    # body the size of the demo backends' (20 bytes); keep-alive connections
    # are never closed for their request count (nginx's default closes them
    # after 1000 requests; the demo backends never do). stub_status on a
    # plain port counts the connections it accepts; the first request of
    # each connection is logged with its TLS protocol, cipher and whether
    # the handshake resumed a session.
    TLS_CONN_LOG=$TLS_DIR/backend-new-conns.log
    : >"$TLS_CONN_LOG"
    mkdir -p "$TMP/tls-backend-tmp"
    cat >"$TMP/tls-backend.conf" <<CONF
$NGX_USER
worker_processes 1;
worker_rlimit_nofile $NGX_RLIMIT;
pid $TMP/tls-backend.pid;
error_log $TMP/tls-backend-error.log info;
events {
    worker_connections 20000;
}
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000000;
    client_body_temp_path $TMP/tls-backend-tmp/client_body;
    proxy_temp_path       $TMP/tls-backend-tmp/proxy;
    fastcgi_temp_path     $TMP/tls-backend-tmp/fastcgi;
    uwsgi_temp_path       $TMP/tls-backend-tmp/uwsgi;
    scgi_temp_path        $TMP/tls-backend-tmp/scgi;
    map \$connection_requests \$first_request {
        1       1;
        default 0;
    }
    log_format newconn '\$connection \$msec \$ssl_protocol \$ssl_cipher \$ssl_session_reused "\$http_user_agent"';
    server {
        listen 127.0.0.1:$TLS_BE_PORT ssl;
        ssl_certificate     $TLS_DIR/server.pem;
        ssl_certificate_key $TLS_DIR/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        access_log $TLS_CONN_LOG newconn if=\$first_request;
        location / {
            return 200 "Hello from tlsnginx\n";
        }
    }
    server {
        listen 127.0.0.1:$TLS_BE_STATUS_PORT;
        location / {
            stub_status;
        }
    }
}
CONF
    nginx_start tls-backend "$TMP/tls-backend.conf" "$TLS_BE_STATUS_PORT"
    # shellcheck disable=SC2206  # pids: split on spaces
    BACKEND_PIDS=("$NGINX_MASTER" $NGINX_WORKERS)
    TLS_STOP=()      # the proxies of this section, stopped before the backend
    body=$(curl -s --max-time 2 --cacert "$TLS_CA" "https://localhost:$TLS_BE_PORT/" || true)
    [[ $body == "Hello from tlsnginx" ]] || die "the TLS backend on https://localhost:$TLS_BE_PORT/ answered '$body' (curl --cacert $TLS_CA)"

    LB_EXTRA=(--ca-file "$TLS_CA")
    lb_start "load_balancer (TLS backend)" "$TLS_DIR/load_balancer.log" "$LB_TLS_PORT" mp 1 "https://localhost:$TLS_BE_PORT"
    LB_EXTRA=()
    TLS_STOP=("$LB_STARTED" "${TLS_STOP[@]}")
    URL[lb@tls]=http://127.0.0.1:$LB_TLS_PORT/ CPU_ROOT[lb@tls]=$LB_STARTED
    SETUP[lb@tls]="\`-m mp -w 1 --ca-file ca.pem -b https://localhost:$TLS_BE_PORT\`"
    TLS_KEYS=(lb@tls)

    nginx_conf nginx-tls 1 "$NGX_TLS_PORT" "" tls
    nginx_start nginx-tls "$TMP/nginx-tls.conf" "$NGX_TLS_PORT"
    # shellcheck disable=SC2206  # pids: split on spaces
    TLS_STOP=("$NGINX_MASTER" $NGINX_WORKERS "${TLS_STOP[@]}")
    URL[nginx@tls]=http://127.0.0.1:$NGX_TLS_PORT/ CPU_ROOT[nginx@tls]=$NGINX_MASTER
    SETUP[nginx@tls]="\`worker_processes 1\`, \`proxy_pass https://\` to an upstream with \`keepalive 128\`, \`proxy_ssl_session_reuse on\`, \`proxy_ssl_verify on\`, \`proxy_ssl_protocols TLSv1.2 TLSv1.3\` (1.22's default lacks TLSv1.3), SNI localhost"
    TLS_KEYS+=(nginx@tls)

    if ((HAVE_HAPROXY)); then
        haproxy_start haproxy-tls 1 "$HAP_TLS_PORT" "" tls
        TLS_STOP=("$HAPROXY_PID" "${TLS_STOP[@]}")
        URL[haproxy@tls]=http://127.0.0.1:$HAP_TLS_PORT/ CPU_ROOT[haproxy@tls]=$HAPROXY_PID
        SETUP[haproxy@tls]="\`nbthread 1\`, \`server ... ssl verify required ca-file ca.pem sni str(localhost)\`, \`http-reuse always\`"
        TLS_KEYS+=(haproxy@tls)
    fi
    for key in "${TLS_KEYS[@]}"; do
        check_proxy "$key" "Hello from tlsnginx"
    done

    printf 'proxy\tworkers\tconns\trun\treq_s\tp50_ms\tp99_ms\tmax_ms\tcpu_s\trequests\tnon2xx\tsock_err\tcpu_us_req\tbackends_cpu_s\tbusy_s\tidle_s\tsteal_s\twall_s\tbe_accepts\tbe_requests\tbe_conn_from\tbe_conn_to\n' >"$TLS_TSV"
    setup=""
    for key in "${TLS_KEYS[@]}"; do setup+="${setup:+; }${NAME[${key%@*}]} ${SETUP[$key]}"; done
    printf 'setup\n%s\n' "$setup" >"$OUT/tls-setup.tsv"
    TP_TSV=$TLS_TSV TP_LABEL="TLS to the backend, 1 worker" TP_TAG=tls- TP_TLS=1
    throughput 1 "${TLS_KEYS[@]}"
    TP_TSV=$RUNS_TSV TP_LABEL="" TP_TAG="" TP_TLS=0
    # The proxies first, then the backend, so that no proxy logs a lost
    # backend while it stops.
    stop_procs "${TLS_STOP[@]}"
    stop_procs "${BACKEND_PIDS[@]}"
    BACKEND_PIDS=("$B1_PID" "$B2_PID")
    cp "$TMP/tls-backend-error.log" "$TLS_DIR/backend-error.log" 2>/dev/null || true
    cp "$TMP/nginx-tls-error.log" "$TLS_DIR/nginx-error.log" 2>/dev/null || true
    # The backend is stopped, so its logs are complete: what they say about
    # the connections of each run.
    python3 "$TMP/tls_conns.py" "$TLS_TSV" "$TLS_CONN_LOG" "$TLS_DIR/backend-error.log" \
        || die "could not match the TLS backend's logs to the runs"
    # What the proxies logged (the load balancer at -l warn, nginx at warn).
    for f in load_balancer.log nginx-error.log; do
        n_lines=$(grep -c . "$TLS_DIR/$f" 2>/dev/null || true)
        ((${n_lines:-0} == 0)) || echo "  note: $TLS_DIR/$f has $n_lines line(s), the first: $(head -n 1 "$TLS_DIR/$f")"
    done
fi

# 5e. Syscalls per request: separate runs under strace, not used above.
if ((HAVE_STRACE)); then
    echo
    echo "== syscalls per request: strace -c -f -p PID during wrk -t1 -c$STRACE_CONNS -d$STRACE_DURATION (separate runs)"
    for proxy in "${PROXIES[@]}"; do
        name=${NAME[$proxy]}
        pid=${WORKER_PID[$proxy]}
        sfile=$OUT/strace-$name.txt
        strace -c -f -p "$pid" -o "$sfile" 2>"$OUT/strace-$name.log" &
        STRACE_PID=$!
        # Attached once the tracee's TracerPid is strace.
        for i in $(seq 50); do
            [[ $(awk '/^TracerPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null) == "$STRACE_PID" ]] && break
            kill -0 "$STRACE_PID" 2>/dev/null || break
            sleep 0.1
        done
        if [[ $(awk '/^TracerPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null) != "$STRACE_PID" ]]; then
            echo "bench: strace could not attach to $name (pid $pid): $(tail -n 3 "$OUT/strace-$name.log")" >&2
            kill -TERM "$STRACE_PID" 2>/dev/null || true
            wait "$STRACE_PID" 2>/dev/null || true
            STRACE_PID=""
            continue
        fi
        sleep 0.2
        log=$OUT/strace-wrk-$name.txt
        run_wrk "$name (under strace)" "$log" -t1 -c"$STRACE_CONNS" -d"$STRACE_DURATION" "${URL[$proxy]}"
        kill -INT "$STRACE_PID" 2>/dev/null || true
        wait "$STRACE_PID" 2>/dev/null || true
        STRACE_PID=""
        alive "$name" "$pid"
        reqs=$(awk '/requests in/ {print $1; exit}' "$log")
        calls=$(awk '$NF == "total" {print $4; exit}' "$sfile")
        [[ -n $reqs && -n $calls ]] || { echo "bench: no strace summary for $name" >&2; continue; }
        printf '%s\t%s\t%s\t%s\n' "$name" "$reqs" "$calls" "$sfile" >>"$STRACE_TSV"
        awk -v n="$name" -v r="$reqs" -v c="$calls" 'BEGIN {printf "  %-13s %8d requests, %9d syscalls: %.2f per request\n", n, r, c, c / r}'
    done
fi

# 5f. Large response through each proxy versus directly from the origin.
if skipped body; then
    echo "large response: skipped (BENCH_SKIP)"
else
    echo
    echo "== $BODY_BYTES-byte response (curl to /dev/null), direct and through each proxy, $BODY_RUNS run(s) each, alternating"
    # Read the file once so the page cache holds it for every run.
    curl -s -o /dev/null "${BODY_URL[direct]}"
    for run in $(seq "$BODY_RUNS"); do
        for t in direct "${PROXIES[@]}"; do
            name=$([[ $t == direct ]] && echo direct || echo "${NAME[$t]}")
            log=$OUT/body-$name-run$run.txt
            run_bg "large response via $name" "$log" \
                python3 "$TMP/body.py" "${BODY_URL[$t]}" "${BODY_PID[$t]}" "$BODY_BYTES" || continue
            printf '%s\t%s\t%s\n' "$name" "$run" "$(tail -n 1 "$log")" >>"$BODY_TSV"
            tail -n 1 "$BODY_TSV" | awk -F'\t' '{printf "  %-13s run %s: %8.0f MB/s  (%.2f s)", $1, $2, $3 / $4 / 1e6, $4; if ($1 != "direct") printf "  proxy RSS %d KiB, peak %d KiB, CPU %.2f s", $5, $6, $7; printf "\n"}'
        done
    done
    if grep -q "buffered to a temporary file" "$TMP/nginx-error.log" 2>/dev/null; then
        echo "  note: nginx buffered part of the response to a temporary file (proxy_buffering on, its default)"
        NGX_SPOOLED=1
    fi
fi

# ---- 6. report ---------------------------------------------------------------
CPU_MODEL=$(grep -m1 -E '^(model name|Hardware|Processor)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
[[ -n $CPU_MODEL ]] || CPU_MODEL=unknown
# first_line CMD...: the first line CMD prints (stdout or stderr), never failing
# (wrk -v exits 1; a closed pipe may kill a chatty one).
first_line() { { "$@" 2>&1 || true; } | head -n 1 || true; }
VERSIONS="$(first_line rustc -V); $(first_line nginx -v | sed 's/^nginx version: //')"
((HAVE_HAPROXY)) && VERSIONS+="; $(first_line haproxy -v | sed 's/ - https.*//')"
VERSIONS+="; wrk $(first_line wrk -v | sed -n 's/^wrk \([^ ]*\).*/\1/p')"
((HAVE_STRACE)) && VERSIONS+="; $(first_line strace -V | sed 's/ -- version//')"
VERSIONS+="; $(first_line curl -V | cut -d' ' -f1-2); $(first_line python3 -V); kernel $(uname -r)"
MACHINE="$(nproc) CPU(s), $CPU_MODEL"
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
SETTINGS="wrk -t$THREADS -d$DURATION --latency at $(sed 's/ \([^ ]*\)$/ and \1/; s/ \([^ ]* and\)/, \1/g' <<<"${CONNS_ARR[*]}") connections, $RUNS alternating run(s) per proxy (after a $WARMUP warm-up each), medians"
NOTES=""
skipped idle || NOTES+="; idle: $IDLE_CONNS connections"
((HAVE_STRACE)) && NOTES+="; strace: wrk -t1 -c$STRACE_CONNS -d$STRACE_DURATION"
skipped accesslog || NOTES+="; access log cost: wrk at $(sed 's/ \([^ ]*\)$/ and \1/; s/ \([^ ]* and\)/, \1/g' <<<"${ALOG_CONNS_ARR[*]}") connections"
skipped body || NOTES+="; large response: $BODY_BYTES bytes, $BODY_RUNS run(s) each"
[[ -n $FD_NOTE ]] && NOTES+="; $FD_NOTE"
[[ -n ${NGX_SPOOLED:-} ]] && NOTES+="; nginx spooled part of the large response to a temporary file (proxy_buffering on, its default)"

# bench/report.py prints the tables and writes results.md and results.svg.
python3 "$ROOT/bench/report.py" "$OUT" "$RESULTS" "$SVG" "$DATE" "$MACHINE" "$VERSIONS" "$SETTINGS" "$NOTES" "${PROXIES[*]}"
echo
echo "wrote $RESULTS and $SVG (raw output in $OUT/)"
