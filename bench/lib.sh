# shellcheck shell=bash
# shellcheck disable=SC2034  # the port map, PORT, WORKER_PID, SETUP, TP_COLUMNS: for the scenarios
# bench/lib.sh: what bench/bench.sh and its scenarios (bench/scenarios/*.sh)
# share. Sourced, not run: it defines functions and a few globals, starts
# nothing. bench.sh calls, in this order:
#
#   bench_settings    the shared BENCH_* settings (see bench.sh's header), the
#                     port map, BENCH_SKIP checked against SKIP_WORDS
#   bench_tools       nginx, wrk, curl, python3, pgrep required; HAProxy optional
#   bench_fd_limits   the open-file limit: nginx's and HAProxy's limits (FD_NOTE)
#   (each scenario's NAME_setup)
#   bench_port_range  BENCH_PORT_BASE leaves room for every port (MAX_PORT)
#   bench_build       cargo build --release unless BENCH_NO_BUILD
#   bench_tmp         the temporary directory, the cleanup trap
#   bench_ports_free  every port declared with need_ports is free
#   start_shared      backend1, backend2 and the one-worker proxies (lb, nginx,
#                     haproxy) every scenario may use
#   (each scenario's NAME_start, if it has one)
#   bench_out         a fresh bench/out/
#   (each scenario's NAME_run)
#   write_report      bench/results.md and bench/results.svg (bench/report.py)
#
# For the scenarios:
#   die, warn, skipped NAME, alive NAME PID, running PID, comm_of PID
#   need_ports PORT...          ports to check free before anything starts
#   wait_ready, run_bg, run_wrk  a server answering; a helper or wrk in the
#                                background (so that Ctrl-C reaches the trap)
#   lb_start, nginx_conf, nginx_start, haproxy_start, check_proxy, stop_procs
#                               start, check and stop proxies (PIDS and WORKERS
#                               are what cleanup stops)
#   throughput N KEY...         the alternating wrk runs with CPU accounting,
#                               a line per run in TP_TSV (see its comment)
#   tp_reset                    TP_* back to their defaults after a throughput
#   limit_note N                what limits N-worker figures on this machine
#   NOTES                       append "; ..." for results.md's settings line
# The shared proxies are keyed lb, nginx, haproxy (PROXIES: those running);
# NAME, URL, PORT, CPU_ROOT, WORKER_PID and SETUP are indexed by key (see
# start_shared), and a scenario adds its own keys (lb@N, nginx@tls, ...).

SKIP_WORDS=(haproxy)   # what BENCH_SKIP may hold: bench.sh adds each scenario's
                       # name, a scenario its finer parts (plain: sp, ...)
BENCH_PORTS=()         # need_ports: checked free by bench_ports_free
NOTES=""               # "; ..." parts of results.md's settings line
PIDS=()                # long-running servers we started, killed on exit
WORKERS=()             # nginx workers (their masters are in PIDS)
STRACE_PID=""          # the transient ones: strace, wrk, python helpers
WRK_PID=""
HELPER_PID=""

die() { echo "bench: $*" >&2; exit 1; }
skipped() { [[ $SKIP == *" $1 "* ]]; }

# warn TEXT: to stderr and to bench/out/warnings.txt (results.md lists them).
warn() {
    echo "bench: warning: $*" >&2
    [[ ! -d $OUT ]] || echo "$*" >>"$OUT/warnings.txt"
}

# comm_of PID: the process name (what ps shows), or "?".
comm_of() { cat "/proc/$1/comm" 2>/dev/null || echo "?"; }

# running PID: the process exists and is not a zombie.
running() {
    local stat
    # read, not $(<...): a failed $(<file) ends the script under set -e.
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

alive() { kill -0 "$2" 2>/dev/null || die "$1 (pid $2) died"; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- settings and ports -----------------------------------------------------
# bench_settings: the settings every scenario shares (a scenario reads its own
# in NAME_setup) and the port map. All ports are here, so that they never
# overlap; a scenario declares those it uses with need_ports.
bench_settings() {
    local v c s
    THREADS=${BENCH_THREADS:-1}
    if [[ -n ${BENCH_CONNS_LIST:-} ]]; then
        CONNS_LIST=$BENCH_CONNS_LIST
    elif [[ -n ${BENCH_CONNS:-} ]]; then
        CONNS_LIST=$BENCH_CONNS
    else
        CONNS_LIST="50 500"
    fi
    DURATION=${BENCH_DURATION:-10s}
    RUNS=${BENCH_RUNS:-3}
    WARMUP=${BENCH_WARMUP:-1s}
    BASE=${BENCH_PORT_BASE:-19100}
    SKIP=" ${BENCH_SKIP:-} "
    BIN=${BENCH_BIN_DIR:-$ROOT/target/release}
    OUT=$ROOT/bench/out
    RESULTS=$ROOT/bench/results.md
    SVG=$ROOT/bench/results.svg

    for v in THREADS RUNS BASE; do
        [[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a number, got '${!v}'"
    done
    read -r -a CONNS_ARR <<<"$CONNS_LIST"
    ((${#CONNS_ARR[@]})) || die "BENCH_CONNS_LIST is empty"
    for c in "${CONNS_ARR[@]}"; do
        if ! [[ $c =~ ^[0-9]+$ ]] || ((c < 1)); then
            die "BENCH_CONNS_LIST must hold positive numbers, got '$c'"
        fi
    done
    for s in ${BENCH_SKIP:-}; do
        [[ " ${SKIP_WORDS[*]} " == *" $s "* ]] ||
            die "BENCH_SKIP: unknown part '$s' (${SKIP_WORDS[*]})"
    done
    ((RUNS >= 1)) || die "BENCH_RUNS must be at least 1"
    WARM=1
    [[ $WARMUP == 0 || $WARMUP == 0s ]] && WARM=0

    # backend1, backend2, the origin of the large response (scenario body)
    P1=$((BASE + 1))
    P2=$((BASE + 2))
    ORIGIN_PORT=$((BASE + 3))
    # The TLS backend and its plain stub_status (scenario tls).
    TLS_BE_PORT=$((BASE + 4))
    TLS_BE_STATUS_PORT=$((BASE + 5))
    # Scenario accesslog: load_balancer without and with --access-log, nginx
    # without and with access_log.
    LB_NOLOG_PORT=$((BASE + 6))
    LB_ALOG_PORT=$((BASE + 7))
    NGX_NOLOG_PORT=$((BASE + 8))
    NGX_ALOG_PORT=$((BASE + 9))
    # Scenario tlsterm (TLS on the listener): the load balancer's plain port
    # (readiness, /metrics) and its TLS listener; nginx's plain port
    # (readiness, stub_status), its TLS port for the wrk runs and its TLS
    # port for the handshake runs (a server block that logs full handshakes).
    LB_TT_PORT=$((BASE + 10))
    LB_TT_TLS_PORT=$((BASE + 11))
    NGX_TT_PORT=$((BASE + 12))
    NGX_TT_TLS_PORT=$((BASE + 13))
    NGX_TT_HS_PORT=$((BASE + 14))
    # The shared one-worker proxies, and their twin ports (same process) for
    # the large response.
    LB_PORT=$((BASE + 80))
    NGX_PORT=$((BASE + 81))
    HAP_PORT=$((BASE + 82))
    LB_BODY_PORT=$((BASE + 83))
    NGX_BODY_PORT=$((BASE + 84))
    HAP_BODY_PORT=$((BASE + 85))
    # Scenario tls: the proxies in front of the TLS backend.
    LB_TLS_PORT=$((BASE + 86))
    NGX_TLS_PORT=$((BASE + 87))
    HAP_TLS_PORT=$((BASE + 88))
    # Scenario plain: set_port K I, from BASE+90 (below).
    MAX_PORT=$((BASE + 88))
    need_ports "$P1" "$P2" "$ORIGIN_PORT" "$LB_PORT" "$NGX_PORT" "$HAP_PORT" "$LB_BODY_PORT" "$NGX_BODY_PORT" "$HAP_BODY_PORT"
}

# set_port K I: the N-worker proxies (N != 1 in BENCH_WORKERS_LIST), the K-th
# of those counts (K = 0, 1, ...): I = 0 load_balancer mp BASE+90+4K,
# 1 load_balancer sp BASE+91+4K, 2 nginx BASE+92+4K, 3 haproxy BASE+93+4K.
set_port() { echo $((BASE + 90 + 4 * $1 + $2)); }

# need_ports PORT...: ports a scenario uses; bench_ports_free checks them.
need_ports() {
    local p
    for p in "$@"; do
        BENCH_PORTS+=("$p")
        ((p <= MAX_PORT)) || MAX_PORT=$p
    done
}

bench_port_range() {
    ((BASE >= 1024 && MAX_PORT <= 65535)) || die "BENCH_PORT_BASE must be in 1024..$((65535 - MAX_PORT + BASE))"
}

bench_ports_free() {
    local p
    for p in "${BENCH_PORTS[@]}"; do
        if port_busy "$p"; then
            die "port $p on 127.0.0.1 is already in use (set BENCH_PORT_BASE to move the range)"
        fi
    done
}

# ---- tools, limits, build ---------------------------------------------------
bench_tools() {
    local tool missing_pkgs=()
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
}

bench_fd_limits() {
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
}

bench_build() {
    local b
    if [[ -z ${BENCH_NO_BUILD:-} ]]; then
        echo "building (cargo build --release) ..."
        cargo build --release -q || die "cargo build --release failed"
    fi
    for b in backend1 backend2 load_balancer; do
        [[ -x $BIN/$b ]] || die "$BIN/$b not found (build first or set BENCH_BIN_DIR)"
    done
}

# ---- process bookkeeping ---------------------------------------------------
# bench_tmp: the temporary directory (removed on exit) and the traps that stop
# every process we started.
bench_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/lb-bench.XXXXXX")
    trap cleanup EXIT
    trap 'echo "bench: interrupted" >&2; exit 130' INT
    trap 'exit 143' TERM
    write_parse_wrk
}

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

# ---- proxies -----------------------------------------------------------------
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
# -m MODE -w N (always explicit: the default is one worker per CPU), -l LB_LOG
# (warn) and the options in LB_EXTRA (an array, normally empty), wait
# until PORT answers and, in mp mode, until the master has its N worker
# processes (named "lb: worker I"; the master also forks "lb: prober");
# sets LB_STARTED (the pid we started: the master in mp mode, the only
# process in sp mode) and LB_STARTED_WORKER (mp: "lb: worker 0"; sp: the
# process itself, whose threads are the workers).
LB_EXTRA=()
LB_LOG=warn
lb_start() {
    local name=$1 log=$2 port=$3 mode=$4 n=$5 b args=() kids="" i
    shift 5
    for b in "$@"; do args+=(-b "$b"); done
    "$BIN/load_balancer" -m "$mode" -w "$n" -p "$port" -h 127.0.0.1 "${LB_EXTRA[@]}" "${args[@]}" -l "$LB_LOG" >"$log" 2>&1 &
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

# nginx_conf NAME WORKERS PORT [BODY-PORT [tls]]: writes $TMP/NAME.conf, the
# nginx under test with worker_processes WORKERS in front of the backends on
# PORT and, with BODY-PORT, in front of the origin there (large-response
# test); with `tls` (and an empty BODY-PORT) in front of the TLS backend
# instead, over HTTPS, verified against the bench CA (TLS_CA). Its access_log is
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

# Proxies are keyed lb, nginx, haproxy (the shared ones, one worker each) and
# KIND@TAG for those a scenario starts (lb@2, lbsp@2, nginx@tls, lbalog@log,
# ...); NAME is by KIND, the part before the @: a scenario with a new kind of
# proxy adds it to NAME.
declare -gA NAME=([lb]=load_balancer [lbsp]="load_balancer sp" [nginx]=nginx [haproxy]=haproxy
                  [lbalog]="load_balancer access-log" [nginxalog]="nginx access-log")
# URL: where wrk sends its requests. PORT: the shared proxies' ports.
# CPU_ROOT: CPU time is that of this process and its children (all their
# threads): the load balancer's master, worker(s) and prober, nginx's master
# and worker(s), HAProxy's one process. WORKER_PID: the one process whose RSS
# (idle test) and syscalls (strace) are measured: the worker that holds the
# connections. SETUP: what each proxy runs (for the report).
declare -gA URL=() PORT=() CPU_ROOT=() WORKER_PID=() SETUP=()

# start_shared: backend1 and backend2, and in front of them the one-worker
# proxies every scenario may use: load_balancer -m mp -w 1, nginx
# worker_processes 1 and HAProxy nbthread 1 (unless left out), each with its
# twin port for the large response (scenario body) in the same process; sets
# PROXIES (their keys), B1_PID, B2_PID, BACKEND_PIDS (whose CPU time the
# throughput runs count as the backends'), LB_PID/LB_WORKER,
# NGX_PID/NGX_WORKER, HAP_PID.
start_shared() {
    local proxy
    NGX_USER=""
    # As root nginx would drop its worker to 'nobody', which cannot use the
    # mktemp directory; keep it root. As non-root the directive is meaningless.
    if [[ $(id -u) == 0 ]]; then NGX_USER="user root root;"; fi

    "$BIN/backend1" -p "$P1" >"$TMP/backend1.log" 2>&1 &
    B1_PID=$!
    PIDS+=("$B1_PID"); wait_ready backend1 "$B1_PID" "$P1" "$TMP/backend1.log"
    "$BIN/backend2" -p "$P2" >"$TMP/backend2.log" 2>&1 &
    B2_PID=$!
    PIDS+=("$B2_PID"); wait_ready backend2 "$B2_PID" "$P2" "$TMP/backend2.log"
    BACKEND_PIDS=("$B1_PID" "$B2_PID")

    # One worker: -m mp -w 1 is a master and one worker process (the default
    # would be one worker per CPU).
    lb_start load_balancer "$TMP/load_balancer.log" "$LB_PORT" mp 1 "127.0.0.1:$P1" "127.0.0.1:$P2"
    LB_PID=$LB_STARTED
    LB_WORKER=$LB_STARTED_WORKER

    nginx_conf nginx 1 "$NGX_PORT" "$NGX_BODY_PORT"
    nginx_start nginx "$TMP/nginx.conf" "$NGX_PORT"
    NGX_PID=$NGINX_MASTER
    NGX_WORKER=$NGINX_WORKER

    PROXIES=(lb nginx)
    HAP_PID=""
    if ((HAVE_HAPROXY)); then
        haproxy_start haproxy 1 "$HAP_PORT" "$HAP_BODY_PORT"
        HAP_PID=$HAPROXY_PID
        PROXIES+=(haproxy)
    fi

    URL=([lb]=http://127.0.0.1:$LB_PORT/ [nginx]=http://127.0.0.1:$NGX_PORT/ [haproxy]=http://127.0.0.1:$HAP_PORT/)
    PORT=([lb]=$LB_PORT [nginx]=$NGX_PORT [haproxy]=$HAP_PORT)
    CPU_ROOT=([lb]=$LB_PID [nginx]=$NGX_PID [haproxy]=$HAP_PID)
    WORKER_PID=([lb]=$LB_WORKER [nginx]=$NGX_WORKER [haproxy]=$HAP_PID)
    SETUP=([lb]="\`-m mp -w 1\` (a master and one worker process)" [nginx]="\`worker_processes 1\`" [haproxy]="\`nbthread 1\`")

    # Sanity: every proxy really reaches the backends.
    for proxy in "${PROXIES[@]}"; do
        check_proxy "$proxy"
    done
}

# check_proxy KEY [BODY]: the proxy really reaches the backends (its answer
# holds BODY, by default that of the demo backends).
check_proxy() {
    local body want=${2:-Hello from backend}
    body=$(curl -s --max-time 2 "${URL[$1]}" || true)
    [[ $body == *"$want"* ]] || die "${NAME[${1%@*}]} on ${URL[$1]} answered '$body', expected '$want…'"
}

# bench_out: a fresh bench/out/ for this run's raw output.
bench_out() {
    rm -rf "$OUT"
    mkdir -p "$OUT"
}

# ---- measure ---------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

# write_parse_wrk: $TMP/parse_wrk.py, which throughput runs after each wrk run:
# parse_wrk.py LOG NAME WORKERS CONNS RUN CPU-TICKS HZ BACKEND-TICKS
#   "BUSY IDLE STEAL" "BUSY IDLE STEAL" WALL-US -> one runs.tsv line
# (the two machine_ticks readings before and after the run)
write_parse_wrk() {
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
}

# The header of a TSV throughput writes to (printf '%s\n' "$TP_COLUMNS"; a
# scenario adds the names of the columns its TP_HOOK adds).
TP_COLUMNS=$'proxy\tworkers\tconns\trun\treq_s\tp50_ms\tp99_ms\tmax_ms\tcpu_s\trequests\tnon2xx\tsock_err\tcpu_us_req\tbackends_cpu_s\tbusy_s\tidle_s\tsteal_s\twall_s'

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
declare -gA TREE_TICKS_OF=()
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

# throughput N KEY...: at each concurrency a warm-up per proxy, then RUNS
# runs alternating across the proxies KEY...; one line per run in TP_TSV
# (a file with the header TP_COLUMNS, plus the hook's columns). CPU of the
# backends is that of BACKEND_PIDS; TP_LABEL heads the section (default:
# "N worker(s)"), TP_TAG starts the names of the wrk logs, TP_NAME_WIDTH is
# the width of the proxy's name in the lines printed per run. TP_CONNS (an
# array), when set, replaces BENCH_CONNS_LIST. TP_HOOK, when set, is a
# function called as
#   TP_HOOK warmed KEY        after KEY's warm-up run
#   TP_HOOK before KEY        before a measured run, before its CPU readings
#   TP_HOOK after KEY         after the run's CPU readings: sets TP_EXTRA,
#                             the columns it adds to the run's line (each
#                             led by a tab)
#   TP_HOOK printed KEY CONNS RUN LOG
#                             once the line is in TP_TSV and printed (LOG:
#                             wrk's output)
# (scenarios tls and accesslog: the TLS backend's counts, the access logs).
# tp_reset sets them back to their defaults.
tp_reset() { TP_TSV="" TP_LABEL="" TP_TAG="" TP_HOOK="" TP_EXTRA="" TP_NAME_WIDTH=16 TP_CONNS=(); }
tp_reset
throughput() {
    local n=$1 conns run key name tag log line pid before before_pids after b0 b1 m0 m1 t0 t1
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
                [[ -z $TP_HOOK ]] || "$TP_HOOK" warmed "$key"
            done
        fi
        for run in $(seq "$RUNS"); do
            for key in "${keys[@]}"; do
                name=${NAME[${key%@*}]}
                tag=$TP_TAG${name// /-}$( ((n == 1)) || echo "-w$n")
                log=$OUT/$tag-c$conns-run$run.txt
                [[ -z $TP_HOOK ]] || "$TP_HOOK" before "$key"
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
                TP_EXTRA=""
                [[ -z $TP_HOOK ]] || "$TP_HOOK" after "$key"
                line=$(python3 "$TMP/parse_wrk.py" "$log" "$name" "$n" "$conns" "$run" "$((after - before))" "$CLK_TCK" \
                    "$((b1 - b0))" "$m0" "$m1" "$((t1 - t0))") || die "could not parse wrk output $log"
                printf '%s%s\n' "$line" "$TP_EXTRA" >>"$TP_TSV"
                [[ $(tail -n 1 "$TP_TSV" | cut -f1) == "$name" ]] || die "no result parsed from $log"
                tail -n 1 "$TP_TSV" | awk -F'\t' -v nw="$TP_NAME_WIDTH" '{w = $18; printf "  %-" nw "s c%-4s run %s: %8.0f req/s  p50 %7.3f ms  p99 %7.3f ms  max %8.2f ms  CPU %5.2f s  %6.2f us/req  errors: non-2xx %s, socket %s\n%20s cores busy: proxy %.2f, backends %.2f, other %.2f; idle %.2f, steal %.2f\n", $1, $3, $4, $5, $6, $7, $8, $9, $13, $11, $12, "", $9 / w, $14 / w, ($15 - $9 - $14) / w, $16 / w, $17 / w}'
                [[ -z $TP_HOOK ]] || "$TP_HOOK" printed "$key" "$conns" "$run" "$log"
            done
        done
    done
}

# ---- report ------------------------------------------------------------------
# first_line CMD...: the first line CMD prints (stdout or stderr), never failing
# (wrk -v exits 1; a closed pipe may kill a chatty one).
first_line() { { "$@" 2>&1 || true; } | head -n 1 || true; }

# write_report: the head of results.md (date, machine, versions, settings with
# the scenarios' NOTES) and bench/report.py, which prints the tables and
# writes bench/results.md and bench/results.svg from bench/out/.
write_report() {
    local cpu_model versions machine date settings notes=$NOTES
    cpu_model=$(grep -m1 -E '^(model name|Hardware|Processor)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
    [[ -n $cpu_model ]] || cpu_model=unknown
    versions="$(first_line rustc -V); $(first_line nginx -v | sed 's/^nginx version: //')"
    ((HAVE_HAPROXY)) && versions+="; $(first_line haproxy -v | sed 's/ - https.*//')"
    versions+="; wrk $(first_line wrk -v | sed -n 's/^wrk \([^ ]*\).*/\1/p')"
    # strace's version when scenario strace ran under it.
    ((${HAVE_STRACE:-0})) && versions+="; $(first_line strace -V | sed 's/ -- version//')"
    versions+="; $(first_line curl -V | cut -d' ' -f1-2); $(first_line python3 -V); kernel $(uname -r)"
    machine="$(nproc) CPU(s), $cpu_model"
    date=$(date -u '+%Y-%m-%d %H:%M UTC')
    settings="wrk -t$THREADS -d$DURATION --latency at $(and_list "${CONNS_ARR[@]}") connections, $RUNS alternating run(s) per proxy (after a $WARMUP warm-up each), medians"
    [[ -z $FD_NOTE ]] || notes+="; $FD_NOTE"
    python3 "$ROOT/bench/report.py" "$OUT" "$RESULTS" "$SVG" "$date" "$machine" "$versions" "$settings" "$notes" "${PROXIES[*]}" ||
        die "bench/report.py failed"
    echo
    echo "wrote $RESULTS and $SVG (raw output in $OUT/)"
}

# and_list WORD...: "a", "a and b", "a, b and c".
and_list() { sed 's/ \([^ ]*\)$/ and \1/; s/ \([^ ]* and\)/, \1/g' <<<"$*"; }
