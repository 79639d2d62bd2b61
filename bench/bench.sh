#!/usr/bin/env bash
# Benchmark this load balancer against nginx on loopback (run: make bench).
#
# Starts backend1, backend2, load_balancer (one worker) and nginx (one worker,
# keepalive upstream pool) on 127.0.0.1, drives both proxies with identical wrk
# settings in alternating runs, and prints the medians of requests/s, p50/p99
# latency and the proxy's CPU time per request. The table also goes to
# bench/results.md; raw wrk output of every run goes to bench/out/.
#
# Environment (all optional):
#   BENCH_THREADS=1  BENCH_CONNS=50  BENCH_DURATION=10s  BENCH_RUNS=3
#   BENCH_WARMUP=1s      unrecorded wrk run per proxy before measuring (0 = none)
#   BENCH_PORT_BASE=19100  backends BASE+1, BASE+2; load_balancer BASE+80; nginx BASE+81
#   BENCH_NO_BUILD=1     skip `cargo build --release`
#   BENCH_BIN_DIR=DIR    where the binaries are (default target/release)
# Installs nothing: missing tools are named with the apt command and exit 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

THREADS=${BENCH_THREADS:-1}
CONNS=${BENCH_CONNS:-50}
DURATION=${BENCH_DURATION:-10s}
RUNS=${BENCH_RUNS:-3}
WARMUP=${BENCH_WARMUP:-1s}
BASE=${BENCH_PORT_BASE:-19100}
BIN=${BENCH_BIN_DIR:-$ROOT/target/release}
OUT=$ROOT/bench/out
RESULTS=$ROOT/bench/results.md

P1=$((BASE + 1))
P2=$((BASE + 2))
LB_PORT=$((BASE + 80))
NGX_PORT=$((BASE + 81))

die() { echo "bench: $*" >&2; exit 1; }

for v in THREADS CONNS RUNS BASE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a number, got '${!v}'"
done
((RUNS >= 1)) || die "BENCH_RUNS must be at least 1"
((BASE >= 1024 && BASE + 81 <= 65535)) || die "BENCH_PORT_BASE must be in 1024..65454"

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
PIDS=()          # everything we started, killed on exit
NGX_WORKER=""
WRK_PID=""

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}" $NGX_WORKER $WRK_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for i in $(seq 30); do
        local alive=0
        for pid in "${PIDS[@]}" $NGX_WORKER $WRK_PID; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}" $NGX_WORKER $WRK_PID; do
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

for p in $P1 $P2 $LB_PORT $NGX_PORT; do
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

# ---- 2. start servers --------------------------------------------------------
"$BIN/backend1" -p "$P1" >"$TMP/backend1.log" 2>&1 &
PIDS+=($!); wait_ready backend1 $! "$P1" "$TMP/backend1.log"
"$BIN/backend2" -p "$P2" >"$TMP/backend2.log" 2>&1 &
PIDS+=($!); wait_ready backend2 $! "$P2" "$TMP/backend2.log"

"$BIN/load_balancer" -p "$LB_PORT" -h 127.0.0.1 \
    -b "127.0.0.1:$P1" -b "127.0.0.1:$P2" -l warn >"$TMP/load_balancer.log" 2>&1 &
LB_PID=$!
PIDS+=("$LB_PID")
wait_ready load_balancer "$LB_PID" "$LB_PORT" "$TMP/load_balancer.log"

NGX_CONF=$TMP/nginx.conf
NGX_USER=""
# As root nginx would drop its worker to 'nobody', which cannot use the
# mktemp directory; keep it root. As non-root the directive is meaningless.
[[ $(id -u) == 0 ]] && NGX_USER="user root root;"
mkdir -p "$TMP/nginx-tmp"
cat >"$NGX_CONF" <<EOF
$NGX_USER
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $TMP/nginx-tmp/client_body;
    proxy_temp_path       $TMP/nginx-tmp/proxy;
    fastcgi_temp_path     $TMP/nginx-tmp/fastcgi;
    uwsgi_temp_path       $TMP/nginx-tmp/uwsgi;
    scgi_temp_path        $TMP/nginx-tmp/scgi;
    upstream backends {
        server 127.0.0.1:$P1;
        server 127.0.0.1:$P2;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
# -e (nginx >= 1.19.5) keeps the start-up error log out of /var/log too.
nginx -t -q -e "$TMP/nginx-error.log" -c "$NGX_CONF" -p "$TMP" >"$TMP/nginx.log" 2>&1 || {
    echo "bench: nginx rejected its config:" >&2; cat "$TMP/nginx.log" "$TMP/nginx-error.log" >&2 2>/dev/null; exit 1; }
nginx -e "$TMP/nginx-error.log" -c "$NGX_CONF" -p "$TMP" -g 'daemon off;' >>"$TMP/nginx.log" 2>&1 &
NGX_PID=$!
PIDS+=("$NGX_PID")
wait_ready nginx "$NGX_PID" "$NGX_PORT" "$TMP/nginx-error.log"

workers=$(pgrep -P "$NGX_PID" || true)
[[ $(wc -w <<<"$workers") == 1 ]] || die "expected one nginx worker under master $NGX_PID, found: '${workers//$'\n'/ }'"
NGX_WORKER=$workers

# Sanity: both proxies really reach the backends.
for p in $LB_PORT $NGX_PORT; do
    body=$(curl -s --max-time 2 "http://127.0.0.1:$p/" || true)
    [[ $body == *"Hello from backend"* ]] || die "proxy on :$p answered '$body', expected 'Hello from backend…'"
done

# ---- 3. measure ------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID: utime+stime (fields 14, 15) of a process, all its threads.
cpu_ticks() {
    local stat rest f
    { stat=$(<"/proc/$1/stat"); } 2>/dev/null || die "process $1 is gone"
    rest=${stat##*) }          # drop "pid (comm) "; comm may contain spaces
    read -r -a f <<<"$rest"    # f[0] is field 3, so field 14 is f[11]
    echo $((f[11] + f[12]))
}

# run_wrk NAME LOG WRK-ARGS...: wrk runs in the background and we `wait` for
# it, because wrk catches SIGINT and exits 0 with partial results: a Ctrl-C
# must interrupt `wait` and reach our INT trap instead of being recorded.
run_wrk() {
    local name=$1 log=$2 rc=0
    shift 2
    wrk "$@" >"$log" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    ((rc == 0)) || die "wrk against $name failed (exit $rc): $(tail -n 5 "$log")"
}

rm -rf "$OUT"
mkdir -p "$OUT"
RUNS_TSV=$OUT/runs.tsv
printf 'proxy\trun\treq_s\tp50_ms\tp99_ms\tcpu_s\trequests\tnon2xx\tsock_err\tcpu_us_req\n' >"$RUNS_TSV"

URL_lb=http://127.0.0.1:$LB_PORT/
URL_nginx=http://127.0.0.1:$NGX_PORT/
CPU_PID_lb=$LB_PID
CPU_PID_nginx=$NGX_WORKER

echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $RUNS run(s) each, alternating"
if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
    for proxy in lb nginx; do
        url=URL_$proxy
        run_wrk "$proxy (warm-up)" "$OUT/warmup-$proxy.txt" -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${!url}"
    done
fi

for run in $(seq "$RUNS"); do
    for proxy in lb nginx; do
        url=URL_$proxy
        cpid=CPU_PID_$proxy
        name=$([[ $proxy == lb ]] && echo load_balancer || echo nginx)
        log=$OUT/$name-run$run.txt
        before=$(cpu_ticks "${!cpid}")
        run_wrk "$name" "$log" -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${!url}"
        after=$(cpu_ticks "${!cpid}")
        python3 - "$log" "$name" "$run" "$((after - before))" "$CLK_TCK" >>"$RUNS_TSV" <<'PY' \
            || die "could not parse wrk output $log"
import re, sys
path, name, run, ticks, hz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
text = open(path).read()
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
def ms(v, u): return float(v) * UNIT[u]
m = re.search(r"^\s*Requests/sec:\s*([\d.]+)", text, re.M)
rps = float(m.group(1))
total = int(re.search(r"^\s*(\d+) requests in", text, re.M).group(1))
dist = re.search(r"Latency Distribution(.*?)(?:\n\s*\d+ requests in)", text, re.S).group(1)
pct = {p: ms(v, u) for p, v, u in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", dist, re.M)}
non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
non2xx = int(non2xx.group(1)) if non2xx else 0
se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
sock = sum(map(int, se.groups())) if se else 0
cpu = ticks / hz
cpu_us = cpu * 1e6 / total if total else float("nan")
print(f"{name}\t{run}\t{rps:.2f}\t{pct['50']:.4f}\t{pct['99']:.4f}\t{cpu:.2f}\t{total}\t{non2xx}\t{sock}\t{cpu_us:.3f}")
PY
        tail -n 1 "$RUNS_TSV" | awk -F'\t' '{printf "  %-13s run %s: %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  CPU %5.2f s  %6.2f us/req  errors: non-2xx %s, socket %s\n", $1, $2, $3, $4, $5, $6, $10, $8, $9}'
        [[ $(tail -n 1 "$RUNS_TSV" | cut -f1) == "$name" ]] || die "no result parsed from $log"
        # The worker must still be the same process, or CPU numbers are wrong.
        kill -0 "${!cpid}" 2>/dev/null || die "$name (pid ${!cpid}) died during the run"
    done
done

# ---- 4. report ---------------------------------------------------------------
CPU_MODEL=$(grep -m1 -E '^(model name|Hardware|Processor)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
[[ -n $CPU_MODEL ]] || CPU_MODEL=unknown
NGX_VERSION=$(nginx -v 2>&1 | sed 's/^nginx version: //' || true)
WRK_OUT=$(wrk -v 2>&1 || true)
WRK_VERSION=$(sed -n '1s/^wrk \([^ ]*\).*/\1/p' <<<"$WRK_OUT")
MACHINE="machine: $(nproc) CPU(s), $CPU_MODEL; $NGX_VERSION; wrk $WRK_VERSION; $(date -u '+%Y-%m-%d %H:%M UTC')"
SETTINGS="wrk -t$THREADS -c$CONNS -d$DURATION --latency, $RUNS alternating run(s) per proxy, medians; both proxies one worker on 127.0.0.1"

python3 - "$RUNS_TSV" "$RESULTS" "$MACHINE" "$SETTINGS" <<'PY'
import csv, statistics, sys
tsv, results, machine, settings = sys.argv[1:5]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
names = ["load_balancer", "nginx"]
med, errs = {}, {}
for n in names:
    rs = [r for r in rows if r["proxy"] == n]
    med[n] = {k: statistics.median(float(r[k]) for r in rs)
              for k in ("req_s", "p50_ms", "p99_ms", "cpu_us_req")}
    errs[n] = (sum(int(r["non2xx"]) for r in rs), sum(int(r["sock_err"]) for r in rs),
               sum(int(r["requests"]) for r in rs))
def ratio(k):
    d = med["nginx"][k]
    return f"{med['load_balancer'][k] / d:.2f}x" if d else "n/a"
table = ["| proxy | req/s | p50 ms | p99 ms | CPU µs/req |", "|---|---:|---:|---:|---:|"]
for n in names:
    m = med[n]
    table.append(f"| {n} | {m['req_s']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['cpu_us_req']:.1f} |")
ratio_line = f"load_balancer / nginx: req/s {ratio('req_s')}, p99 {ratio('p99_ms')}, CPU/req {ratio('cpu_us_req')}"
err_line = "errors (all runs): " + "; ".join(
    f"{n} non-2xx {e[0]}, socket {e[1]} of {e[2]} requests" for n, e in errs.items())
body = "\n".join(table) + "\n\n" + ratio_line + "\n\n" + err_line + "\n"
print()
print(body + "\n" + machine)
with open(results, "w") as f:
    f.write("# Benchmark: load_balancer vs nginx\n\n")
    f.write(f"{machine}\n\n{settings}\n\n{body}\n")
    f.write("Produced by `make bench` (bench/bench.sh); see bench/README.md for what the columns mean.\n")
if any(e[0] or e[1] for e in errs.values()):
    print("\nWARNING: wrk reported errors; the numbers above include failed requests.", file=sys.stderr)
PY
echo
echo "wrote $RESULTS (raw wrk output in $OUT/)"
