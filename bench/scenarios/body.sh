# shellcheck shell=bash
# shellcheck disable=SC2034  # TP_*, LB_EXTRA, URL, ...: globals bench/lib.sh reads
# Scenario body: a large response (BENCH_BODY_SIZE, 1 GiB, a sparse file)
# streamed through each proxy versus directly from its origin (a separate
# nginx, sendfile on): curl to /dev/null, alternating, BENCH_BODY_RUNS (3)
# runs each; MB/s, the proxy's CPU time and its VmRSS sampled every 100 ms.
# The proxies are the shared ones on their twin ports (same worker, same
# process), except the load balancer: a second instance (-m mp -w 1) in front
# of the origin. Writes bench/out/body.tsv; results.md: "Large response".
# BENCH_SKIP=body leaves out the runs.

# The maps of bench/lib.sh this file uses: declared there, and again here so
# that this file passes shellcheck on its own.
declare -gA NAME

body_setup() {
    BODY_SIZE=${BENCH_BODY_SIZE:-1G}
    BODY_RUNS=${BENCH_BODY_RUNS:-3}
    [[ $BODY_RUNS =~ ^[0-9]+$ ]] || die "BENCH_BODY_RUNS must be a number, got '$BODY_RUNS'"
    ((BODY_RUNS >= 1)) || die "BENCH_BODY_RUNS must be at least 1"
}

# body_start: the origin and the second load balancer. Started even with
# BENCH_SKIP=body, as the twin ports of the shared nginx and HAProxy are, so
# that the other scenarios run with the same processes either way.
body_start() {
    local t code
    # The origin of the large response: a separate nginx (so it shares no worker
    # with the nginx under test) serving a sparse file with sendfile.
    mkdir -p "$TMP/www" "$TMP/origin-tmp"
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

    # A second load balancer instance for the large response only.
    lb_start "load_balancer (large-response instance)" "$TMP/load_balancer-body.log" "$LB_BODY_PORT" mp 1 "127.0.0.1:$ORIGIN_PORT"
    LB_BODY_WORKER=$LB_STARTED_WORKER

    # Where curl downloads from, and whose VmRSS and CPU time it samples.
    declare -gA BODY_URL=([direct]=http://127.0.0.1:$ORIGIN_PORT/big.bin [lb]=http://127.0.0.1:$LB_BODY_PORT/big.bin
                          [nginx]=http://127.0.0.1:$NGX_BODY_PORT/big.bin [haproxy]=http://127.0.0.1:$HAP_BODY_PORT/big.bin)
    declare -gA BODY_PID=([direct]=- [lb]=$LB_BODY_WORKER [nginx]=$NGX_WORKER [haproxy]=$HAP_PID)

    # Sanity: the origin and every proxy's twin port serve the file.
    for t in direct "${PROXIES[@]}"; do
        code=$(curl -s -o /dev/null -I --max-time 2 -w '%{http_code}' "${BODY_URL[$t]}" || true)
        [[ $code == 200 ]] || die "HEAD ${BODY_URL[$t]} answered '$code', expected 200"
    done
}

body_run() {
    local run t name log tsv=$OUT/body.tsv
    printf 'target\trun\tbytes\tseconds\trss_before_kib\trss_peak_kib\tcpu_s\n' >"$tsv"
    if skipped body; then
        echo "large response: skipped (BENCH_SKIP)"
        return 0
    fi
    NOTES+="; large response: $BODY_BYTES bytes, $BODY_RUNS run(s) each"
    write_body_py
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
            printf '%s\t%s\t%s\n' "$name" "$run" "$(tail -n 1 "$log")" >>"$tsv"
            tail -n 1 "$tsv" | awk -F'\t' '{printf "  %-13s run %s: %8.0f MB/s  (%.2f s)", $1, $2, $3 / $4 / 1e6, $4; if ($1 != "direct") printf "  proxy RSS %d KiB, peak %d KiB, CPU %.2f s", $5, $6, $7; printf "\n"}'
        done
    done
    if grep -q "buffered to a temporary file" "$TMP/nginx-error.log" 2>/dev/null; then
        echo "  note: nginx buffered part of the response to a temporary file (proxy_buffering on, its default)"
        NOTES+="; nginx spooled part of the large response to a temporary file (proxy_buffering on, its default)"
    fi
}

# write_body_py: $TMP/body.py URL PID EXPECT-BYTES: curl the URL to
# /dev/null, sampling VmRSS of PID (the proxy; '-' for none) every 100 ms
# and its CPU time.
write_body_py() {
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
}
