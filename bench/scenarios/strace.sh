# shellcheck shell=bash
# shellcheck disable=SC2034  # TP_*, LB_EXTRA, URL, ...: globals bench/lib.sh reads
# Scenario strace: syscalls per request. `strace -c -f -p PID` attached to
# each shared proxy (the load balancer and nginx: their worker process)
# during a separate wrk -t1 -cBENCH_STRACE_CONNS -dBENCH_STRACE_DURATION run
# (50 connections, 3 s): the calls counted divided by the requests wrk
# completed, and the five most frequent syscalls per request. strace slows
# the proxy a lot, so these runs are used for no other figure. Writes
# bench/out/strace.tsv and the strace summaries; results.md: "Syscalls per
# request". Skipped, with a message, without strace; BENCH_SKIP=strace leaves
# it out.

# The maps of bench/lib.sh this file uses: declared there, and again here so
# that this file passes shellcheck on its own.
declare -gA NAME URL WORKER_PID

strace_setup() {
    STRACE_DURATION=${BENCH_STRACE_DURATION:-3s}
    STRACE_CONNS=${BENCH_STRACE_CONNS:-50}
    [[ $STRACE_CONNS =~ ^[0-9]+$ ]] || die "BENCH_STRACE_CONNS must be a number, got '$STRACE_CONNS'"
    HAVE_STRACE=1
    if skipped strace; then
        HAVE_STRACE=0
    elif ! command -v strace >/dev/null 2>&1; then
        HAVE_STRACE=0
        echo "bench: strace is not installed (apt-get install -y strace): skipping syscalls per request" >&2
    fi
}

strace_run() {
    local proxy name pid sfile log i reqs calls tsv=$OUT/strace.tsv
    printf 'proxy\trequests\tsyscalls\tfile\n' >"$tsv"
    ((HAVE_STRACE)) || return 0
    NOTES+="; strace: wrk -t1 -c$STRACE_CONNS -d$STRACE_DURATION"
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
        printf '%s\t%s\t%s\t%s\n' "$name" "$reqs" "$calls" "$sfile" >>"$tsv"
        awk -v n="$name" -v r="$reqs" -v c="$calls" 'BEGIN {printf "  %-13s %8d requests, %9d syscalls: %.2f per request\n", n, r, c, c / r}'
    done
}
