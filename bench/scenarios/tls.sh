# shellcheck shell=bash
# shellcheck disable=SC2034  # TP_*, LB_EXTRA, URL, ...: globals bench/lib.sh reads
# Scenario tls: TLS to the backend. The throughput runs again (the same
# connection counts, duration, runs, warm-up and alternation), one worker
# each, with every proxy forwarding wrk's plain-HTTP requests over TLS to one
# HTTPS backend: a separate nginx with `ssl` and a certificate for localhost
# signed by a private CA, both made with openssl under bench/out/tls/. In
# front of it, started for these runs only on ports of their own:
# load_balancer -m mp -w 1 --ca-file -b https://localhost:PORT, nginx
# proxy_pass https:// with a keepalive upstream and session reuse, HAProxy
# `ssl verify required`. Also counts the connections (TLS handshakes) the
# backend accepted per run (its stub_status) and how many resumed a session
# (its log of each connection's first request). Writes bench/out/tls.tsv,
# tls-setup.tsv and tls/; results.md: "TLS to the backend". Skipped, with a
# message, without openssl; BENCH_SKIP=tls leaves it out.

# The maps of bench/lib.sh this file uses: declared there, and again here so
# that this file passes shellcheck on its own.
declare -gA NAME URL CPU_ROOT SETUP

tls_setup() {
    TLS_DIR=$OUT/tls
    TLS_CA=$TLS_DIR/ca.pem
    HAVE_TLS=1
    if skipped tls; then
        HAVE_TLS=0
    elif ! command -v openssl >/dev/null 2>&1; then
        HAVE_TLS=0
        echo "bench: openssl is not installed (apt-get install -y openssl): skipping the TLS-to-the-backend section" >&2
    fi
    ((HAVE_TLS)) || return 0
    need_ports "$TLS_BE_PORT" "$TLS_BE_STATUS_PORT" "$LB_TLS_PORT" "$NGX_TLS_PORT" "$HAP_TLS_PORT"
}

tls_run() {
    local body key setup="" f n_lines tls_stop=() tls_keys=() tsv=$OUT/tls.tsv
    ((HAVE_TLS)) || return 0
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
    body=$(curl -s --max-time 2 --cacert "$TLS_CA" "https://localhost:$TLS_BE_PORT/" || true)
    [[ $body == "Hello from tlsnginx" ]] || die "the TLS backend on https://localhost:$TLS_BE_PORT/ answered '$body' (curl --cacert $TLS_CA)"

    # The proxies of this section, stopped (tls_stop) before the backend.
    LB_EXTRA=(--ca-file "$TLS_CA")
    lb_start "load_balancer (TLS backend)" "$TLS_DIR/load_balancer.log" "$LB_TLS_PORT" mp 1 "https://localhost:$TLS_BE_PORT"
    LB_EXTRA=()
    tls_stop=("$LB_STARTED" "${tls_stop[@]}")
    URL[lb@tls]=http://127.0.0.1:$LB_TLS_PORT/ CPU_ROOT[lb@tls]=$LB_STARTED
    SETUP[lb@tls]="\`-m mp -w 1 --ca-file ca.pem -b https://localhost:$TLS_BE_PORT\`"
    tls_keys=(lb@tls)

    nginx_conf nginx-tls 1 "$NGX_TLS_PORT" "" tls
    nginx_start nginx-tls "$TMP/nginx-tls.conf" "$NGX_TLS_PORT"
    # shellcheck disable=SC2206  # pids: split on spaces
    tls_stop=("$NGINX_MASTER" $NGINX_WORKERS "${tls_stop[@]}")
    URL[nginx@tls]=http://127.0.0.1:$NGX_TLS_PORT/ CPU_ROOT[nginx@tls]=$NGINX_MASTER
    SETUP[nginx@tls]="\`worker_processes 1\`, \`proxy_pass https://\` to an upstream with \`keepalive 128\`, \`proxy_ssl_session_reuse on\`, \`proxy_ssl_verify on\`, \`proxy_ssl_protocols TLSv1.2 TLSv1.3\` (1.22's default lacks TLSv1.3), SNI localhost"
    tls_keys+=(nginx@tls)

    if ((HAVE_HAPROXY)); then
        haproxy_start haproxy-tls 1 "$HAP_TLS_PORT" "" tls
        tls_stop=("$HAPROXY_PID" "${tls_stop[@]}")
        URL[haproxy@tls]=http://127.0.0.1:$HAP_TLS_PORT/ CPU_ROOT[haproxy@tls]=$HAPROXY_PID
        SETUP[haproxy@tls]="\`nbthread 1\`, \`server ... ssl verify required ca-file ca.pem sni str(localhost)\`, \`http-reuse always\`"
        tls_keys+=(haproxy@tls)
    fi
    for key in "${tls_keys[@]}"; do
        check_proxy "$key" "Hello from tlsnginx"
    done

    printf '%s\tbe_accepts\tbe_requests\tbe_conn_from\tbe_conn_to\n' "$TP_COLUMNS" >"$tsv"
    for key in "${tls_keys[@]}"; do setup+="${setup:+; }${NAME[${key%@*}]} ${SETUP[$key]}"; done
    printf 'setup\n%s\n' "$setup" >"$OUT/tls-setup.tsv"
    TP_TSV=$tsv TP_LABEL="TLS to the backend, 1 worker" TP_TAG=tls- TP_HOOK=tls_tp
    throughput 1 "${tls_keys[@]}"
    tp_reset
    # The proxies first, then the backend, so that no proxy logs a lost
    # backend while it stops.
    stop_procs "${tls_stop[@]}"
    stop_procs "${BACKEND_PIDS[@]}"
    BACKEND_PIDS=("$B1_PID" "$B2_PID")
    cp "$TMP/tls-backend-error.log" "$TLS_DIR/backend-error.log" 2>/dev/null || true
    cp "$TMP/nginx-tls-error.log" "$TLS_DIR/nginx-error.log" 2>/dev/null || true
    # The backend is stopped, so its logs are complete: what they say about
    # the connections of each run.
    write_tls_conns_py
    python3 "$TMP/tls_conns.py" "$tsv" "$TLS_CONN_LOG" "$TLS_DIR/backend-error.log" \
        || die "could not match the TLS backend's logs to the runs"
    # What the proxies logged (the load balancer at -l warn, nginx at warn).
    for f in load_balancer.log nginx-error.log; do
        n_lines=$(grep -c . "$TLS_DIR/$f" 2>/dev/null || true)
        ((${n_lines:-0} == 0)) || echo "  note: $TLS_DIR/$f has $n_lines line(s), the first: $(head -n 1 "$TLS_DIR/$f")"
    done
}

# tls_tp PHASE KEY ...: throughput's TP_HOOK for these runs (see throughput
# in lib.sh): the TLS backend's counters before and after each run; adds the
# columns be_accepts and be_requests (the run's connections and requests at
# the backend) and be_conn_from, be_conn_to (the range of its connection
# numbers: tls_conns.py later adds what its log says about them).
tls_tp() {
    case $1 in
    before)
        tls_be_counts
        TLS_A0=$BE_ACCEPTS TLS_R0=$BE_REQUESTS
        ;;
    after)
        tls_be_counts
        TP_EXTRA=$(printf '\t%d\t%d\t%d\t%d' $((BE_ACCEPTS - TLS_A0 - 1)) $((BE_REQUESTS - TLS_R0 - 1)) "$TLS_A0" "$BE_ACCEPTS")
        ;;
    printed)
        tail -n 1 "$TP_TSV" | awk -F'\t' '{printf "%20s TLS backend: %d connection(s) accepted, %d requests served\n", "", $19, $20}'
        ;;
    esac
    return 0
}

# tls_be_counts: the TLS backend's stub_status counters: BE_ACCEPTS
# connections accepted and BE_REQUESTS requests, each including the status
# request's own. nginx numbers its connections ($connection) with the same
# count, so the connections accepted between two readings A0 and A1 are
# those numbered A0+1 .. A1-1 (A1 is the second status request's).
tls_be_counts() {
    local status
    status=$(curl -s --max-time 2 "http://127.0.0.1:$TLS_BE_STATUS_PORT/") || die "no stub_status from the TLS backend"
    read -r BE_ACCEPTS _ BE_REQUESTS < <(sed -n 3p <<<"$status")
    [[ $BE_ACCEPTS =~ ^[0-9]+$ && $BE_REQUESTS =~ ^[0-9]+$ ]] || die "unexpected stub_status from the TLS backend: $status"
}

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

# write_tls_conns_py: $TMP/tls_conns.py TLS-TSV CONN-LOG ERROR-LOG adds to
# each run of TLS-TSV what the TLS backend logged about the connections it
# accepted during that run (numbers be_conn_from+1 .. be_conn_to-1; CONN-LOG
# has a line per connection, at its first request; ERROR-LOG, at level info,
# names the connection as *N): be_new (connections with a request, the load
# balancer's health probes apart), be_resumed (of those, how many resumed a
# TLS session), be_probes, be_tls (the protocol/cipher most of them
# negotiated), be_aborted (handshakes the client gave up: closed or reset
# the connection in the handshake); prints a line per run.
write_tls_conns_py() {
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
}
