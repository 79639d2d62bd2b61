# shellcheck shell=bash
# shellcheck disable=SC2034  # TP_*, LB_EXTRA, URL, ...: globals bench/lib.sh reads
# Scenario tlsterm: TLS on the listener. The load balancer and nginx, one
# worker each, terminate HTTPS in front of the same plain backends (backend1,
# backend2), with the same certificate: ECDSA P-256 for localhost, signed by
# the private CA of scenario tls (tls_certs, bench/out/tls/; made here if
# that scenario did not run). Started for these runs only, on ports of their
# own: load_balancer -m mp -w 1 --tls-port --tls-cert --tls-key (TLS 1.2 and
# 1.3, ALPN http/1.1, its session cache shared by the workers) and nginx
# worker_processes 1 with `listen ... ssl`, ssl_session_cache shared:SSL:10m,
# ssl_protocols TLSv1.2 TLSv1.3 and the usual keepalive upstream pool.
#   1. The throughput runs over HTTPS (wrk https://..., the same connection
#      counts, duration, runs, warm-up and alternation as plain HTTP): wrk
#      keeps its connections, so a run has one handshake per connection, at
#      its start; the TLS connections each proxy accepted during each run are
#      counted (the load balancer's /metrics, nginx's stub_status).
#   2. Handshake cost, RUNS alternating runs of BENCH_TLSTERM_HS_DURATION
#      (3 s) each: full TLS 1.3 handshakes (`openssl s_time -new`, one at a
#      time, no request), resumed TLS 1.2 handshakes (`s_time -reuse
#      -tls1_2`: the session of the first connection, each time), and a new
#      connection per request (wrk -c FIRST-CONNS -H 'Connection: close':
#      wrk resumes each with the TLS 1.3 ticket of the one before it on the
#      same slot): connections per second, proxy CPU µs per connection, and
#      how many resumed (the load balancer's counters; nginx: a log of the
#      requests on connections that did not resume, on a server block of its
#      own, so that the wrk runs log nothing).
# Writes bench/out/tlsterm.tsv (the wrk runs), tlsterm-hs.tsv (the handshake
# runs), tlsterm-setup.tsv, tlsterm-*.txt; results.md: "TLS termination".
# Skipped, with a message, without openssl; BENCH_SKIP=tlsterm leaves it out.

# The maps of bench/lib.sh this file uses: declared there, and again here so
# that this file passes shellcheck on its own.
declare -gA NAME URL CPU_ROOT SETUP

tlsterm_setup() {
    TT_HS_SECS=${BENCH_TLSTERM_HS_DURATION:-3}
    TT_HS_SECS=${TT_HS_SECS%s}
    if ! [[ $TT_HS_SECS =~ ^[0-9]+$ ]] || ((TT_HS_SECS < 1)); then
        die "BENCH_TLSTERM_HS_DURATION must be whole seconds (1 or more), got '${BENCH_TLSTERM_HS_DURATION:-}'"
    fi
    # The files of scenario tls (its certificates), whether it runs or not.
    TLS_DIR=$OUT/tls
    TLS_CA=$TLS_DIR/ca.pem
    HAVE_TLSTERM=1
    if skipped tlsterm; then
        HAVE_TLSTERM=0
    elif ! command -v openssl >/dev/null 2>&1; then
        HAVE_TLSTERM=0
        echo "bench: openssl is not installed (apt-get install -y openssl): skipping the TLS-termination section" >&2
    fi
    ((HAVE_TLSTERM)) || return 0
    need_ports "$LB_TT_PORT" "$LB_TT_TLS_PORT" "$NGX_TT_PORT" "$NGX_TT_TLS_PORT" "$NGX_TT_HS_PORT"
}

tlsterm_run() {
    local key port setup="" tls_info="" proto cipher tt_stop=() tsv=$OUT/tlsterm.tsv
    ((HAVE_TLSTERM)) || return 0
    echo
    echo "== TLS termination: load_balancer --tls-port and nginx listen ssl, one worker each, in front of backend1 + backend2"
    [[ -s $TLS_DIR/server.pem && -s $TLS_DIR/server.key ]] || tls_certs
    chmod 600 "$TLS_DIR/server.key"
    TT_FULL_LOG=$TLS_DIR/tlsterm-nginx-full.log
    : >"$TT_FULL_LOG"

    LB_EXTRA=(--tls-port "$LB_TT_TLS_PORT" --tls-cert "$TLS_DIR/server.pem" --tls-key "$TLS_DIR/server.key")
    lb_start "load_balancer (TLS listener)" "$TLS_DIR/tlsterm-load_balancer.log" "$LB_TT_PORT" mp 1 "127.0.0.1:$P1" "127.0.0.1:$P2"
    LB_EXTRA=()
    tt_stop+=("$LB_STARTED")
    URL[lb@tt]=https://127.0.0.1:$LB_TT_TLS_PORT/ CPU_ROOT[lb@tt]=$LB_STARTED
    TT_HS_PORT[lb@tt]=$LB_TT_TLS_PORT TT_WORKER[lb@tt]=$LB_STARTED_WORKER
    SETUP[lb@tt]="\`-m mp -w 1 --tls-port P --tls-cert server.pem --tls-key server.key\` (rustls with ring, TLS 1.2 and 1.3, ALPN http/1.1, a session cache shared by the workers, no session tickets)"

    mkdir -p "$TMP/nginx-tlsterm-tmp"
    cat >"$TMP/nginx-tlsterm.conf" <<CONF
$NGX_USER
worker_processes 1;
worker_rlimit_nofile $NGX_RLIMIT;
pid $TMP/nginx-tlsterm.pid;
error_log $TMP/nginx-tlsterm-error.log warn;
events {
    worker_connections 20000;
}
http {
    access_log off;
    client_body_temp_path $TMP/nginx-tlsterm-tmp/client_body;
    proxy_temp_path       $TMP/nginx-tlsterm-tmp/proxy;
    fastcgi_temp_path     $TMP/nginx-tlsterm-tmp/fastcgi;
    uwsgi_temp_path       $TMP/nginx-tlsterm-tmp/uwsgi;
    scgi_temp_path        $TMP/nginx-tlsterm-tmp/scgi;
    ssl_certificate     $TLS_DIR/server.pem;
    ssl_certificate_key $TLS_DIR/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    upstream backends {
        server 127.0.0.1:$P1;
        server 127.0.0.1:$P2;
        keepalive 128;
    }
    # Requests on connections that did not resume a session (handshake runs
    # only: their server block below).
    map \$ssl_session_reused \$tt_full {
        r       0;
        default 1;
    }
    log_format tt_full '\$connection \$ssl_protocol \$ssl_cipher';
    # Plain: readiness and stub_status (connections accepted).
    server {
        listen 127.0.0.1:$NGX_TT_PORT;
        location = /tt_status {
            stub_status;
        }
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    # The wrk runs.
    server {
        listen 127.0.0.1:$NGX_TT_TLS_PORT ssl;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    # The handshake runs.
    server {
        listen 127.0.0.1:$NGX_TT_HS_PORT ssl;
        access_log $TT_FULL_LOG tt_full if=\$tt_full;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
    nginx_start nginx-tlsterm "$TMP/nginx-tlsterm.conf" "$NGX_TT_PORT"
    # shellcheck disable=SC2206  # pids: split on spaces
    tt_stop+=("$NGINX_MASTER" $NGINX_WORKERS)
    URL[nginx@tt]=https://127.0.0.1:$NGX_TT_TLS_PORT/ CPU_ROOT[nginx@tt]=$NGINX_MASTER
    TT_HS_PORT[nginx@tt]=$NGX_TT_HS_PORT TT_WORKER[nginx@tt]=$NGINX_WORKER
    SETUP[nginx@tt]="\`worker_processes 1\`, \`listen ... ssl\`, \`ssl_protocols TLSv1.2 TLSv1.3\`, \`ssl_session_cache shared:SSL:10m\` (session tickets on, its default), \`keepalive 128\` upstream pool"
    TT_KEYS=(lb@tt nginx@tt)

    # Both answer over HTTPS, verified against the CA; what they negotiate
    # with OpenSSL's defaults (wrk's and s_time's library).
    for key in "${TT_KEYS[@]}"; do
        tt_check "${URL[$key]}"
        tt_check "https://127.0.0.1:${TT_HS_PORT[$key]}/"
        for port in "${URL[$key]}" "${TT_HS_PORT[$key]}"; do
            port=${port%/}
            port=${port##*:}
            read -r proto cipher < <(tt_negotiated "$port" "")
            [[ $proto == TLSv1.3 ]] || die "${NAME[${key%@*}]} on port $port negotiated '$proto $cipher' with openssl s_client, expected TLSv1.3"
        done
        tls_info+="${tls_info:+; }${NAME[${key%@*}]}: $proto $cipher"
        read -r proto cipher < <(tt_negotiated "${TT_HS_PORT[$key]}" -tls1_2)
        [[ $proto == TLSv1.2 ]] || die "${NAME[${key%@*}]} negotiated '$proto $cipher' with openssl s_client -tls1_2"
        tls_info+=", with -tls1_2 $proto $cipher"
        setup+="${setup:+; }${NAME[${key%@*}]} ${SETUP[$key]}"
    done
    printf 'setup\ttls\ths_conns\ths_secs\n%s\t%s\t%s\t%s\n' "$setup" "$tls_info" "${CONNS_ARR[0]}" "$TT_HS_SECS" >"$OUT/tlsterm-setup.tsv"
    echo "   negotiated (openssl $(openssl version | cut -d' ' -f2)): $tls_info"

    # 1. Throughput over HTTPS.
    printf '%s\tnew_conns\n' "$TP_COLUMNS" >"$tsv"
    TP_TSV=$tsv TP_LABEL="TLS termination (wrk over HTTPS), 1 worker" TP_TAG=tlsterm- TP_HOOK=tlsterm_tp
    throughput 1 "${TT_KEYS[@]}"
    tp_reset

    # 2. Handshakes.
    tlsterm_handshakes

    stop_procs "${tt_stop[@]}"
    cp "$TMP/nginx-tlsterm-error.log" "$TLS_DIR/tlsterm-nginx-error.log" 2>/dev/null || true
    NOTES+="; TLS termination: wrk over HTTPS as above, handshake runs ${TT_HS_SECS} s each"
}

declare -gA TT_HS_PORT=() TT_WORKER=()

# tt_check URL: the proxy answers over HTTPS, its certificate verified.
tt_check() {
    local body
    body=$(curl -s --max-time 2 --cacert "$TLS_CA" "$1" || true)
    [[ $body == *"Hello from backend"* ]] || die "$1 answered '$body' (curl --cacert $TLS_CA), expected 'Hello from backend…'"
}

# tt_negotiated PORT [OPTION]: "PROTOCOL CIPHER" that openssl s_client
# negotiates with 127.0.0.1:PORT.
tt_negotiated() {
    local out
    # shellcheck disable=SC2086  # $2: an option or nothing
    out=$(openssl s_client -brief -connect "127.0.0.1:$1" $2 </dev/null 2>&1 || true)
    awk -F': *' '/^Protocol version/ {p = $2} /^Ciphersuite/ {c = $2} END {print (p ? p : "?"), (c ? c : "?")}' <<<"$out"
}

# tt_counts KEY: the proxy's connection counters now. TT_CONNS: the load
# balancer's TLS handshakes completed on its listener (1.2 + 1.3), nginx's
# connections accepted (stub_status; every listener, this status request
# included); TT_RESUMED: the load balancer's resumed handshakes; TT_FULL:
# nginx's lines in its log of requests on connections that did not resume.
tt_counts() {
    local m
    case ${1%@*} in
    lb)
        m=$(curl -s --max-time 2 "http://127.0.0.1:$LB_TT_PORT/metrics") || die "no /metrics from the load balancer on :$LB_TT_PORT"
        TT_CONNS=$(awk '/^lb_tls_listener_handshakes_total\{/ {n += $2} END {print n + 0}' <<<"$m")
        TT_RESUMED=$(awk '/^lb_tls_listener_resumed_total / {n = $2} END {print n + 0}' <<<"$m")
        TT_FULL=0
        ;;
    nginx)
        m=$(curl -s --max-time 2 "http://127.0.0.1:$NGX_TT_PORT/tt_status") || die "no stub_status from nginx on :$NGX_TT_PORT"
        read -r TT_CONNS _ < <(sed -n 3p <<<"$m")
        [[ $TT_CONNS =~ ^[0-9]+$ ]] || die "unexpected stub_status from nginx: $m"
        TT_RESUMED=0
        TT_FULL=$(wc -l <"$TT_FULL_LOG")
        ;;
    esac
}

# tt_delta KEY C0: the connections since the reading C0 (nginx: less the
# status request of the reading after).
tt_delta() {
    if [[ ${1%@*} == nginx ]]; then echo $((TT_CONNS - $2 - 1)); else echo $((TT_CONNS - $2)); fi
}

# tlsterm_tp PHASE KEY ...: throughput's TP_HOOK for the wrk runs: adds the
# column new_conns, the TLS connections the proxy took during the run (each
# a handshake).
tlsterm_tp() {
    case $1 in
    before)
        tt_counts "$2"
        TT_C0=$TT_CONNS
        ;;
    after)
        tt_counts "$2"
        TP_EXTRA=$(printf '\t%d' "$(tt_delta "$2" "$TT_C0")")
        ;;
    printed)
        tail -n 1 "$TP_TSV" | awk -F'\t' '{printf "%20s new TLS connections (handshakes) during the run: %d\n", "", $19}'
        ;;
    esac
    return 0
}

# tlsterm_handshakes: the handshake runs (see the header), into
# tlsterm-hs.tsv: per run the connections made (s_time's count, wrk's
# requests), the wall time, the proxy's CPU time, connections/s, CPU µs per
# connection, the proxy's count of connections, full and resumed handshakes
# ("-" where it has none), errors (wrk's).
tlsterm_handshakes() {
    local tsv=$OUT/tlsterm-hs.tsv measure run key name tag log port n errs rate line
    local before before_pids after t0 t1 c0 r0 f0 conns full resumed wall cpu
    local hs_conns=${CONNS_ARR[0]}
    printf 'proxy\tmeasure\trun\tconns\twall_s\tcpu_s\tconns_s\tcpu_us_conn\tproxy_conns\tfull\tresumed\terrors\n' >"$tsv"
    for measure in new reuse12 close; do
        echo
        case $measure in
        new) echo "== TLS handshakes: full, TLS 1.3: openssl s_time -new -time $TT_HS_SECS (one connection at a time, no request), $RUNS run(s) each, alternating" ;;
        reuse12) echo "== TLS handshakes: resumed, TLS 1.2: openssl s_time -reuse -tls1_2 -time $TT_HS_SECS, $RUNS run(s) each, alternating" ;;
        close) echo "== TLS handshakes: a new connection per request: wrk -t$THREADS -c$hs_conns -d${TT_HS_SECS}s -H 'Connection: close', $RUNS run(s) each, alternating" ;;
        esac
        for run in $(seq "$RUNS"); do
            for key in "${TT_KEYS[@]}"; do
                name=${NAME[${key%@*}]}
                tag=${name// /-}
                port=${TT_HS_PORT[$key]}
                log=$OUT/tlsterm-hs-$measure-$tag-run$run.txt
                tt_counts "$key"
                c0=$TT_CONNS r0=$TT_RESUMED f0=$TT_FULL
                tree_cpu "${CPU_ROOT[$key]}"
                before=$TREE_TICKS before_pids=$TREE_PIDS
                t0=${EPOCHREALTIME//[.,]/}
                case $measure in
                new) run_bg "openssl s_time -new ($name)" "$log" openssl s_time -connect "127.0.0.1:$port" -new -time "$TT_HS_SECS" || die "openssl s_time failed" ;;
                reuse12) run_bg "openssl s_time -reuse ($name)" "$log" openssl s_time -connect "127.0.0.1:$port" -reuse -tls1_2 -time "$TT_HS_SECS" || die "openssl s_time failed" ;;
                close) run_wrk "$name" "$log" -t"$THREADS" -c"$hs_conns" -d"${TT_HS_SECS}s" --latency -H 'Connection: close' "https://127.0.0.1:$port/" ;;
                esac
                t1=${EPOCHREALTIME//[.,]/}
                tree_cpu "${CPU_ROOT[$key]}"
                after=$TREE_TICKS
                [[ $TREE_PIDS == "$before_pids" ]] || die "$name: its processes changed during the run (pids $before_pids, then $TREE_PIDS): a worker died?"
                tt_counts "$key"
                conns=$(tt_delta "$key" "$c0")
                wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e6}')
                cpu=$(awk -v t="$((after - before))" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", t / h}')
                if [[ $measure == close ]]; then
                    line=$(python3 "$TMP/parse_wrk.py" "$log" "$name" 1 "$hs_conns" "$run" "$((after - before))" "$CLK_TCK" 0 "0 0 0" "0 0 0" "$((t1 - t0))") ||
                        die "could not parse wrk output $log"
                    n=$(cut -f10 <<<"$line")
                    errs=$(awk -F'\t' '{print $11 + $12}' <<<"$line")
                    rate=$(cut -f5 <<<"$line")
                else
                    # The last "N connections in S real seconds" (s_time's
                    # own seconds are whole ones: the rate is N over the
                    # wall time measured here).
                    n=$(awk '/connections in .* real seconds/ {n = $1} END {print n + 0}' "$log")
                    errs=$(grep -c -i '^error' "$log" || true)
                    rate=$(awk -v n="$n" -v w="$wall" 'BEGIN {printf "%.2f", n / w}')
                fi
                ((n > 0)) || die "$name: no connections in $log: $(tail -n 3 "$log")"
                if [[ ${key%@*} == lb ]]; then
                    resumed=$((TT_RESUMED - r0))
                    full=$((conns - resumed))
                elif [[ $measure == close ]]; then
                    full=$((TT_FULL - f0))
                    resumed=$((conns - full))
                else
                    full=- resumed=-
                fi
                printf '%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\n' "$name" "$measure" "$run" "$n" "$wall" "$cpu" "$rate" \
                    "$(awk -v c="$cpu" -v n="$n" 'BEGIN {printf "%.1f", c * 1e6 / n}')" "$conns" "$full" "$resumed" "$errs" >>"$tsv"
                tail -n 1 "$tsv" | awk -F'\t' '{printf "  %-16s %-7s run %s: %7d connections in %6.2f s: %8.1f conn/s  CPU %5.2f s  %7.1f us/conn  (proxy: %d connections, full %s, resumed %s; errors %d)\n", $1, $2, $3, $4, $5, $7, $6, $8, $9, $10, $11, $12}'
            done
        done
    done
}
