# shellcheck shell=bash
# shellcheck disable=SC2034  # TP_*, LB_EXTRA, URL, ...: globals bench/lib.sh reads
# Scenario idle: memory per idle keep-alive connection, on the freshly started
# shared proxies (one worker each). After 20 warm-up requests, the proxy
# worker's VmRSS (/proc/PID/status; for the load balancer and nginx their
# worker process, which holds the connections) is read, a Python client opens
# BENCH_IDLE_CONNS (8,000) connections that each complete one request and
# stay open, VmRSS is read again, every 97th connection is checked to still
# serve a request, and all are closed. Writes bench/out/idle.tsv; results.md:
# "Idle keep-alive connections". BENCH_SKIP=idle leaves it out.

# The maps of bench/lib.sh this file uses: declared there, and again here so
# that this file passes shellcheck on its own.
declare -gA NAME PORT WORKER_PID

idle_setup() {
    IDLE_CONNS=${BENCH_IDLE_CONNS:-8000}
    [[ $IDLE_CONNS =~ ^[0-9]+$ ]] || die "BENCH_IDLE_CONNS must be a number, got '$IDLE_CONNS'"
    if ! skipped idle && [[ $NOFILE != unlimited ]] && ((NOFILE < IDLE_CONNS + 100)); then
        echo "bench: open-file limit is $NOFILE (hard limit); the idle test uses $((NOFILE - 100)) connections instead of $IDLE_CONNS" >&2
        IDLE_CONNS=$((NOFILE - 100))
        ((IDLE_CONNS >= 100)) || die "open-file limit $NOFILE is too low for the idle-connection test (set BENCH_SKIP=idle)"
    fi
    if ! skipped idle && ((HAVE_HAPROXY && IDLE_CONNS > HAP_MAXCONN - 50)); then
        echo "bench: HAProxy maxconn is $HAP_MAXCONN; the idle test uses $((HAP_MAXCONN - 50)) connections instead of $IDLE_CONNS" >&2
        IDLE_CONNS=$((HAP_MAXCONN - 50))
    fi
    return 0
}

idle_run() {
    local proxy log
    IDLE_TSV=$OUT/idle.tsv
    printf 'proxy\trss_before_kib\trss_after_kib\tconns\tchecked\topen_s\n' >"$IDLE_TSV"
    if skipped idle; then
        echo "idle keep-alive memory: skipped (BENCH_SKIP)"
        return 0
    fi
    NOTES+="; idle: $IDLE_CONNS connections"
    write_idle_py
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
}

# write_idle_py: $TMP/idle.py PORT PID N: VmRSS of PID, open N keep-alive
# connections that each complete one request, VmRSS again, check some are
# still usable, close all.
write_idle_py() {
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
}
