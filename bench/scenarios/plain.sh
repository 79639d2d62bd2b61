# shellcheck shell=bash
# shellcheck disable=SC2034  # TP_*, LB_EXTRA, URL, ...: globals bench/lib.sh reads
# Scenario plain: throughput and latency over plain HTTP, for each worker count
# in BENCH_WORKERS_LIST ("1 2"), in its order. At 1: the shared proxies
# (load_balancer -m mp -w 1, nginx worker_processes 1, HAProxy nbthread 1).
# At N >= 2, started for their runs only, on ports of their own (set_port):
# load_balancer -m mp -w N and -m sp -w N (BENCH_SKIP=sp leaves it out),
# nginx worker_processes N, HAProxy nbthread N, the same backends. At each
# concurrency a warm-up run per proxy, then runs alternating across the
# proxies; results.md gets a section per worker count ("Throughput and
# latency: one worker each", "... 2 workers each") with the ratios against
# nginx and where the machine's CPU went. Writes bench/out/runs.tsv and
# sections.tsv. BENCH_SKIP=plain leaves out every worker count.

# The maps of bench/lib.sh this file uses: declared there, and again here so
# that this file passes shellcheck on its own.
declare -gA NAME URL CPU_ROOT SETUP

SKIP_WORDS+=(sp)

plain_setup() {
    local w k i seen_w=""
    WORKERS_LIST=${BENCH_WORKERS_LIST-"1 2"}
    read -r -a WORKERS_ARR <<<"$WORKERS_LIST"
    ((${#WORKERS_ARR[@]})) || die "BENCH_WORKERS_LIST is empty"
    MULTI=()         # the worker counts other than 1, in order
    for w in "${WORKERS_ARR[@]}"; do
        if ! [[ $w =~ ^[0-9]+$ ]] || ((w < 1 || w > 64)); then
            die "BENCH_WORKERS_LIST must hold worker counts 1..64, got '$w'"
        fi
        [[ " $seen_w " != *" $w "* ]] || die "BENCH_WORKERS_LIST has $w twice"
        seen_w+=" $w"
        ((w == 1)) || MULTI+=("$w")
    done
    for k in "${!MULTI[@]}"; do
        for i in 0 1 2 3; do need_ports "$(set_port "$k" "$i")"; done
    done
}

plain_run() {
    local n k=0
    RUNS_TSV=$OUT/runs.tsv
    SECTIONS_TSV=$OUT/sections.tsv
    printf '%s\n' "$TP_COLUMNS" >"$RUNS_TSV"
    printf 'workers\tsetup\tnote\n' >"$SECTIONS_TSV"
    if skipped plain; then
        echo "plain-HTTP throughput: skipped (BENCH_SKIP)"
        return 0
    fi
    TP_TSV=$RUNS_TSV
    for n in "${WORKERS_ARR[@]}"; do
        if ((n == 1)); then
            plain_section 1 "${PROXIES[@]}"
            throughput 1 "${PROXIES[@]}"
            continue
        fi
        echo
        echo "== starting the $n-worker proxies"
        start_set "$n" "$k"
        plain_section "$n" "${SET_KEYS[@]}"
        throughput "$n" "${SET_KEYS[@]}"
        stop_procs "${SET_STOP[@]}"
        k=$((k + 1))
    done
    tp_reset
}

# plain_section N KEY...: one sections.tsv line, what each proxy ran and the note.
plain_section() {
    local n=$1 key setup="" note=""
    shift
    for key in "$@"; do setup+="${setup:+; }${NAME[${key%@*}]} ${SETUP[$key]}"; done
    ((n == 1)) || note=$(limit_note "$n")
    printf '%s\t%s\t%s\n' "$n" "$setup" "$note" >>"$SECTIONS_TSV"
}

# start_set N K: the N-worker proxies on their ports (the K-th set): the load
# balancer -m mp -w N and (unless BENCH_SKIP has sp) -m sp -w N, nginx
# worker_processes N, HAProxy nbthread N; sets SET_KEYS (their keys, lb@N ...)
# and SET_STOP (the pids to stop afterwards).
start_set() {
    local n=$1 k=$2 port key
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
    for key in "${SET_KEYS[@]}"; do
        check_proxy "$key"
    done
}
