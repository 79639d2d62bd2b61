#!/usr/bin/env bash
# Pool and balancing rows of `make bench` (run after bench.sh, or alone:
# bash bench/balance.sh). Writes the section "## Pool and balancing" of
# bench/results.md (replacing it; the rest of the file is kept).
#
#   1. 500 connections, one worker each: load_balancer -m mp -w 1, HAProxy
#      (nbthread 1, http-reuse always) and nginx (worker_processes 1,
#      keepalive 128, lib.sh's nginx_conf) in front of backend1 + backend2,
#      wrk -t1 -c500, alternating runs: req/s, p99, and the new backend
#      connections each made per run, counted the same way for every proxy:
#      by the backends themselves (the demo backends' GET /connections), so
#      the load balancer's health probes (one connection each) are in its
#      count.
#   2. One fast backend (backend1) and one that answers in 50 ms (a Python
#      server), 20 connections: load_balancer with each strategy of
#      STRATEGIES below (round_robin, least_connections, p2c; a row each):
#      req/s and the fast backend's share of the run's requests.
#
# Environment: BALANCE_DURATION (default 10s), BALANCE_RUNS (default 3),
# BALANCE_PORT_BASE (default 19500). Needs wrk, curl, python3; HAProxy and
# nginx for their rows (each skipped, with a note, without it). Starts, waits for and stops
# its servers (and their children, on any exit) with bench/lib.sh's helpers;
# what the runs leave is in bench/out/balance/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
die() { echo "bench/balance.sh: $*" >&2; exit 1; }

# The rows of the strategy table, in order; round_robin first: the others'
# req/s are compared with it.
STRATEGIES=(round_robin least_connections p2c)

DURATION=${BALANCE_DURATION:-10s}
RUNS=${BALANCE_RUNS:-3}
BASE=${BALANCE_PORT_BASE:-19500}
P1=$((BASE + 1)) P2=$((BASE + 2)) SLOW=$((BASE + 3)) LB=$((BASE + 10)) HAP=$((BASE + 11)) NGX=$((BASE + 14))
BIN=$ROOT/target/release
OUT=$ROOT/bench/out    # warn (lib.sh) appends to OUT/warnings.txt
DIR=$OUT/balance
mkdir -p "$DIR"
command -v wrk >/dev/null || die "needs wrk (apt-get install wrk)"
command -v python3 >/dev/null || die "needs python3"
command -v curl >/dev/null || die "needs curl (apt-get install curl)"
command -v pgrep >/dev/null || die "needs pgrep (apt-get install procps)"

backend_connects() { # connections backend1 and backend2 accepted so far
    local n1 n2
    n1=$(curl -sf "http://127.0.0.1:$P1/connections") || die "backend1: no /connections"
    n2=$(curl -sf "http://127.0.0.1:$P2/connections") || die "backend2: no /connections"
    # Each answer counts the connection that asked for it: not the proxy's.
    echo $((n1 + n2 - 2))
}

wrk_run() { # URL CONNS LOG: sets W_RPS (req/s) and W_P99 (p99 ms)
    run_wrk "$1" "$3" -t1 -c"$2" -d"$DURATION" --latency "$1"
    read -r W_RPS W_P99 < <(python3 - "$3" <<'PY'
import sys, re
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
print(f"{rps:.0f} {p99:.2f}")
PY
)
    [[ -n ${W_P99:-} ]] || die "could not parse wrk output $3"
}

# backend_requests PORT FAST-PORT: "FAST ALL", lb_backend_requests_total of
# the backend on FAST-PORT and of all backends.
backend_requests() {
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
port, fast = sys.argv[1], sys.argv[2]
v = {}
for l in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode().splitlines():
    if l.startswith("lb_backend_requests_total{"):
        v[l.split('"')[1]] = int(l.split()[1])
print(v.get("127.0.0.1:" + fast, 0), sum(v.values()))
PY
}

# start_server NAME LOG PORT CMD...: CMD in the background, until PORT answers.
start_server() {
    local name=$1 log=$2 port=$3
    shift 3
    "$@" >"$log" 2>&1 &
    PIDS+=("$!")
    wait_ready "$name" "$!" "$port" "$log"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cargo build --release -q
bench_tmp    # the temporary directory and the trap that stops what we start
start_server backend1 "$TMP/backend1.log" "$P1" "$BIN/backend1" -p "$P1"
start_server backend2 "$TMP/backend2.log" "$P2" "$BIN/backend2" -p "$P2"

# ---- 1. 500 connections: load_balancer, HAProxy and nginx --------------------
PROXIES=(load_balancer)
declare -A URL=([load_balancer]="http://127.0.0.1:$LB/")
LB_LOG=err
lb_start load_balancer "$DIR/lb.log" "$LB" mp 1 "127.0.0.1:$P1" "127.0.0.1:$P2"
HAVE_HAPROXY=0
command -v haproxy >/dev/null && HAVE_HAPROXY=1
bench_fd_limits    # NGX_RLIMIT for nginx_conf (and HAProxy's maxconn note)
if ((HAVE_HAPROXY)); then
    cat >"$DIR/hap.cfg" <<CONF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    maxconn 4000
    option http-keep-alive
    http-reuse always
    timeout connect 3s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$HAP
    default_backend be
backend be
    balance roundrobin
    server backend1 127.0.0.1:$P1
    server backend2 127.0.0.1:$P2
CONF
    start_server haproxy "$DIR/hap.log" "$HAP" haproxy -db -f "$DIR/hap.cfg"
    PROXIES+=(haproxy); URL[haproxy]="http://127.0.0.1:$HAP/"
else
    echo "bench/balance.sh: haproxy is not installed: its row is left out" >&2
fi
if command -v nginx >/dev/null; then
    NGX_USER=""
    # As root nginx would drop its worker to 'nobody', which cannot use the
    # temporary directory (lib.sh's start_shared does the same).
    if [[ $(id -u) == 0 ]]; then NGX_USER="user root root;"; fi
    nginx_conf nginx 1 "$NGX"
    nginx_start nginx "$TMP/nginx.conf" "$NGX"
    PROXIES+=(nginx); URL[nginx]="http://127.0.0.1:$NGX/"
else
    echo "bench/balance.sh: nginx is not installed: its row is left out" >&2
fi
declare -A RPS P99 CONN
for run in $(seq 1 "$RUNS"); do
    for p in "${PROXIES[@]}"; do
        before=$(backend_connects)
        wrk_run "${URL[$p]}" 500 "$DIR/$p-$run.txt"
        after=$(backend_connects)
        r=$W_RPS l=$W_P99
        echo "  $p c500 run $run: $r req/s, p99 $l ms, $((after - before)) new backend connections"
        RPS[$p]+="$r "; P99[$p]+="$l "; CONN[$p]+="$((after - before)) "
    done
done

# ---- 2. a fast and a slow backend ---------------------------------------------
cat >"$TMP/slow.py" <<'PY'
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(0.05)
        self.send_response(200); self.send_header("Content-Length", "4"); self.end_headers()
        self.wfile.write(b"slow")
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
start_server "slow backend" "$TMP/slow.log" "$SLOW" python3 "$TMP/slow.py" "$SLOW"
declare -A SRPS SSHARE
port=$((LB + 2))
for s in "${STRATEGIES[@]}"; do
    LB_EXTRA=(-s "$s")
    lb_start "load_balancer -s $s" "$DIR/lb-$s.log" "$port" mp 1 "127.0.0.1:$P1" "127.0.0.1:$SLOW"
    LB_EXTRA=()
    # The fast backend's share of the requests of the run (not of the
    # readiness check's).
    read -r f0 a0 < <(backend_requests "$port" "$P1")
    wrk_run "http://127.0.0.1:$port/" 20 "$DIR/strategy-$s.txt"
    read -r f1 a1 < <(backend_requests "$port" "$P1")
    share=$(awk -v f=$((f1 - f0)) -v a=$((a1 - a0)) 'BEGIN {printf "%.3f", f / (a ? a : 1)}')
    stop_procs "$LB_STARTED"
    echo "  $s: $W_RPS req/s, fast backend share $share"
    SRPS[$s]=$W_RPS; SSHARE[$s]=$share
done

# ---- the section ------------------------------------------------------------
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
{
    echo "## Pool and balancing"
    echo
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); wrk -t1 -d$DURATION, $RUNS alternating run(s), medians (bench/balance.sh)"
    echo
    echo "**500 connections, one worker each** (load_balancer \`-m mp -w 1\`; HAProxy \`nbthread 1\`, \`http-reuse always\`; nginx \`worker_processes 1\`, \`keepalive 128\`; backend1 + backend2). New backend connections: what backend1 and backend2 accepted during a run (their \`GET /connections\`), the load balancer's health probes included:"
    echo
    echo "| proxy | req/s | p99 ms | new backend connections per run | req/s vs HAProxy | p99 vs HAProxy |"
    echo "|---|---:|---:|---:|---:|---:|"
    hr="" hp=""
    if [[ -n ${RPS[haproxy]:-} ]]; then hr=$(med "${RPS[haproxy]}"); hp=$(med "${P99[haproxy]}"); fi
    for p in "${PROXIES[@]}"; do
        r=$(med "${RPS[$p]}"); l=$(med "${P99[$p]}"); c=$(med "${CONN[$p]}")
        if [[ -n $hr ]]; then
            echo "| $p | $r | $l | $c | $(awk "BEGIN{printf \"%.2fx\", $r/$hr}") | $(awk "BEGIN{printf \"%.2fx\", $l/$hp}") |"
        else
            echo "| $p | $r | $l | $c | – | – |"
        fi
    done
    [[ -n $hr ]] || { echo; echo "(HAProxy not installed: its row is left out.)"; }
    echo
    echo "**A fast backend and one that answers in 50 ms, 20 connections** (load_balancer \`-m mp -w 1\`):"
    echo
    echo "| strategy | req/s | vs round_robin | fast backend's share |"
    echo "|---|---:|---:|---:|"
    for s in "${STRATEGIES[@]}"; do
        echo "| $s | ${SRPS[$s]} | $(awk "BEGIN{printf \"%.1fx\", ${SRPS[$s]}/${SRPS[round_robin]}}") | ${SSHARE[$s]} |"
    done
} >"$DIR/section.md"
cat "$DIR/section.md"
python3 - bench/results.md "$DIR/section.md" <<'PY'
import sys, re
path, sec = sys.argv[1], open(sys.argv[2]).read()
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmark\n"
pat = re.compile(r"## Pool and balancing\n.*?(?=\n## |\Z)", re.S)
text = pat.sub(lambda _: sec.rstrip("\n"), text) if pat.search(text) else text.rstrip("\n") + "\n\n" + sec
open(path, "w").write(text)
PY
echo "wrote bench/results.md (## Pool and balancing)"
