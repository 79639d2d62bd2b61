# shellcheck shell=bash
# shellcheck disable=SC2034  # TP_*, LB_EXTRA, URL, ...: globals bench/lib.sh reads
# Scenario accesslog: the access log's cost. Started for these runs only, on
# ports of their own, in front of the same two backends: load_balancer -m mp
# -w 1 twice, without and with --access-log bench/out/access.log, and nginx
# worker_processes 1 twice, without and with access_log
# bench/out/access-nginx.log (its combined format, buffer=64k flush=1s;
# BENCH_SKIP=accesslog-nginx leaves the pair out). The throughput runs again
# (same duration, runs, warm-up and alternation), the four alternating, at
# BENCH_ACCESSLOG_CONNS connections (by default the first of
# BENCH_CONNS_LIST). Each log is truncated before a measured run (both
# proxies open it O_APPEND, so their next write lands at the new end) and its
# lines counted once the proxy has written them out, against wrk's request
# count. Writes bench/out/accesslog.tsv; results.md: "Access log cost".
# BENCH_SKIP=accesslog leaves it out.

# The maps of bench/lib.sh this file uses: declared there, and again here so
# that this file passes shellcheck on its own.
declare -gA NAME URL CPU_ROOT

SKIP_WORDS+=(accesslog-nginx)

# The access log of a proxy that has one (by key), and the proxy each key is
# without its log (the table's rows).
declare -gA ALOG_FILE_OF=() ALOG_BASE=()
ALOG_LINES=0

accesslog_setup() {
    local c
    ALOG_CONNS_LIST=${BENCH_ACCESSLOG_CONNS:-}
    [[ -n $ALOG_CONNS_LIST ]] || ALOG_CONNS_LIST=${CONNS_ARR[0]}
    read -r -a ALOG_CONNS_ARR <<<"$ALOG_CONNS_LIST"
    for c in "${ALOG_CONNS_ARR[@]}"; do
        if ! [[ $c =~ ^[0-9]+$ ]] || ((c < 1)); then
            die "BENCH_ACCESSLOG_CONNS must hold positive numbers, got '$c'"
        fi
    done
    skipped accesslog || need_ports "$LB_NOLOG_PORT" "$LB_ALOG_PORT"
    skipped accesslog || skipped accesslog-nginx || need_ports "$NGX_NOLOG_PORT" "$NGX_ALOG_PORT"
    return 0
}

accesslog_run() {
    local key f n_lines alog_stop=() alog_keys=()
    local lb_file=$OUT/access.log ngx_file=$OUT/access-nginx.log tsv=$OUT/accesslog.tsv
    if skipped accesslog; then
        echo "access log cost: skipped (BENCH_SKIP)"
        return 0
    fi
    NOTES+="; access log cost: wrk at $(and_list "${ALOG_CONNS_ARR[@]}") connections"
    echo
    echo "== access log cost: load_balancer -m mp -w 1 without and with --access-log $lb_file$(skipped accesslog-nginx ||
        echo ", nginx without and with access_log $ngx_file combined buffer=64k flush=1s")"
    lb_start "load_balancer (no access log)" "$TMP/load_balancer-nolog.log" "$LB_NOLOG_PORT" mp 1 "127.0.0.1:$P1" "127.0.0.1:$P2"
    URL[lb@nolog]=http://127.0.0.1:$LB_NOLOG_PORT/ CPU_ROOT[lb@nolog]=$LB_STARTED ALOG_BASE[lb@nolog]=load_balancer
    alog_stop+=("$LB_STARTED")
    LB_EXTRA=(--access-log "$lb_file")
    lb_start "load_balancer (access log)" "$TMP/load_balancer-alog.log" "$LB_ALOG_PORT" mp 1 "127.0.0.1:$P1" "127.0.0.1:$P2"
    LB_EXTRA=()
    URL[lbalog@log]=http://127.0.0.1:$LB_ALOG_PORT/ CPU_ROOT[lbalog@log]=$LB_STARTED ALOG_BASE[lbalog@log]=load_balancer
    ALOG_FILE_OF[lbalog@log]=$lb_file
    alog_stop+=("$LB_STARTED")
    alog_keys=(lb@nolog lbalog@log)
    if ! skipped accesslog-nginx; then
        nginx_conf nginx-nolog 1 "$NGX_NOLOG_PORT"
        nginx_start nginx-nolog "$TMP/nginx-nolog.conf" "$NGX_NOLOG_PORT"
        URL[nginx@nolog]=http://127.0.0.1:$NGX_NOLOG_PORT/ CPU_ROOT[nginx@nolog]=$NGINX_MASTER ALOG_BASE[nginx@nolog]=nginx
        # shellcheck disable=SC2206  # pids: split on spaces
        alog_stop+=("$NGINX_MASTER" $NGINX_WORKERS)
        NGX_ACCESS_LOG="$ngx_file combined buffer=64k flush=1s"
        nginx_conf nginx-alog 1 "$NGX_ALOG_PORT"
        NGX_ACCESS_LOG=off
        nginx_start nginx-alog "$TMP/nginx-alog.conf" "$NGX_ALOG_PORT"
        URL[nginxalog@log]=http://127.0.0.1:$NGX_ALOG_PORT/ CPU_ROOT[nginxalog@log]=$NGINX_MASTER ALOG_BASE[nginxalog@log]=nginx
        ALOG_FILE_OF[nginxalog@log]=$ngx_file
        # shellcheck disable=SC2206  # pids: split on spaces
        alog_stop+=("$NGINX_MASTER" $NGINX_WORKERS)
        alog_keys+=(nginx@nolog nginxalog@log)
    fi
    for key in "${alog_keys[@]}"; do
        check_proxy "$key"
    done
    printf '%s\tbase\tlog\tlog_lines\n' "$TP_COLUMNS" >"$tsv"
    TP_TSV=$tsv TP_LABEL="access log cost, 1 worker" TP_TAG=alog- TP_HOOK=accesslog_tp TP_NAME_WIDTH=24
    TP_CONNS=("${ALOG_CONNS_ARR[@]}")
    throughput 1 "${alog_keys[@]}"
    tp_reset
    stop_procs "${alog_stop[@]}"
    # What the load balancers logged besides (at -l warn).
    for f in "$TMP/load_balancer-nolog.log" "$TMP/load_balancer-alog.log"; do
        n_lines=$(grep -c . "$f" 2>/dev/null || true)
        ((${n_lines:-0} == 0)) || echo "  note: $(basename "$f") has $n_lines line(s), the first: $(head -n 1 "$f")"
    done
}

# accesslog_tp PHASE KEY [CONNS RUN LOG]: throughput's TP_HOOK for these runs
# (see throughput in lib.sh). For a proxy with a log: the log written out
# after a warm-up, truncated before a measured run, written out and counted
# after it and checked against wrk's count. Adds the columns base (the proxy
# without its log), log (off/on) and log_lines (- when off).
accesslog_tp() {
    local key=$2 file=${ALOG_FILE_OF[$2]:-}
    case $1 in
    warmed)
        # Its last lines written before the next run truncates the log.
        [[ -z $file ]] || alog_settle "$file"
        ;;
    before)
        # O_APPEND writers (both proxies open it so): the next write lands at
        # the new end.
        [[ -z $file ]] || : >"$file"
        ;;
    after)
        if [[ -n $file ]]; then
            alog_settle "$file"
            TP_EXTRA=$(printf '\t%s\ton\t%d' "${ALOG_BASE[$key]}" "$ALOG_LINES")
        else
            TP_EXTRA=$(printf '\t%s\toff\t-' "${ALOG_BASE[$key]}")
        fi
        ;;
    printed)
        [[ -n $file ]] || return 0
        tail -n 1 "$TP_TSV" | awk -F'\t' '{printf "%20s access log: %d lines, wrk completed %d requests (%+d)\n", "", $21, $10, $21 - $10}'
        alog_check "${NAME[${key%@*}]}" "$3" "$4" "$5"
        ;;
    esac
    return 0
}

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
