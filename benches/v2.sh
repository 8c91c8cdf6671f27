#!/usr/bin/env bash
# V2 throughput and CPU per message, the DESIGN.md workload: nsq-bench (the
# bench_writer/bench_reader equivalent) with MPUB batches of 200 messages of
# 200 bytes, RDY 2500, --mem-queue-size=1000000, 4-second runs, gateway and
# load generator on the same machine. Server CPU comes from /proc/<pid>/stat.
#
#   bash benches/v2.sh [runfor]        # default 4s
#   NSQD=/path/to/nsqd bash benches/v2.sh   # the same runs against a real nsqd
#   MEM_QUEUE_SIZE=0 SYNC_MODE=always bash benches/v2.sh   # through the disk path
#   GATEWAY_ARGS="--lookupd-tcp-address 127.0.0.1:4160" bash benches/v2.sh   # extra gateway flags
#   BATCH_SIZE=1 bash benches/v2.sh   # single PUBs instead of MPUBs of 200
#   GATEWAY=/path/to/nsq-gateway bash benches/v2.sh   # another build (e.g. a baseline)
#   TLS=1 bash benches/v2.sh          # every connection upgraded with IDENTIFY tls_v1 (a fresh
#                                     # self-signed certificate; works with NSQD= too)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNFOR=${1:-4s}
PORT=${PORT:-14150}
HTTP=$((PORT + 1))
MEMQ=${MEM_QUEUE_SIZE:-1000000}
SYNC_MODE=${SYNC_MODE:-batch}
BATCH=${BATCH_SIZE:-200}
DATA=$(mktemp -d)
stop_server() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap 'stop_server; rm -rf "$DATA"' EXIT
cargo build --release --quiet --bins
BENCH=target/release/nsq-bench
TLS_SERVER_ARGS=()
TLS_CLIENT_ARGS=()
if [ -n "${TLS:-}" ]; then
    CERTS=$(mktemp -d)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" 2>/dev/null
    TLS_SERVER_ARGS=(--tls-cert "$CERTS/cert.pem" --tls-key "$CERTS/key.pem"
        --https-address "127.0.0.1:$((PORT + 2))")
    # Unverified: verification costs once per handshake, not per message.
    TLS_CLIENT_ARGS=(--tls)
    trap 'stop_server; rm -rf "$DATA" "$CERTS"' EXIT
fi
start_server() {
    rm -rf "$DATA"/*
    if [ -n "${NSQD:-}" ]; then
        "$NSQD" --tcp-address 127.0.0.1:$PORT --http-address 127.0.0.1:$HTTP \
            --mem-queue-size=$MEMQ --data-path "$DATA" --log-level warn "${TLS_SERVER_ARGS[@]}" &
    else
        echo '{}' > "$DATA/empty.yaml"
        "${GATEWAY:-target/release/nsq-gateway}" --config "$DATA/empty.yaml" --tcp-address 127.0.0.1:$PORT \
            --http-address 127.0.0.1:$HTTP --mem-queue-size=$MEMQ --sync-mode "$SYNC_MODE" \
            --data-path "$DATA" --log-level warn "${TLS_SERVER_ARGS[@]}" ${GATEWAY_ARGS:-} &
    fi
    SERVER=$!
    for _ in $(seq 100); do curl -sf "127.0.0.1:$HTTP/ping" >/dev/null && break; sleep 0.1; done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
run() {
    local label=$1; shift
    local before after
    before=$(cpu_ticks)
    local out
    out=$("$BENCH" "$@" "${TLS_CLIENT_ARGS[@]}" --nsqd-tcp-address 127.0.0.1:$PORT --runfor "$RUNFOR" 2>&1)
    after=$(cpu_ticks)
    echo "$out"
    local msgs
    msgs=$(echo "$out" | grep -oE '\(([0-9]+) messages\)' | grep -oE '[0-9]+' | paste -sd+ | bc)
    local hz; hz=$(getconf CLK_TCK)
    echo "$label: server CPU $(echo "scale=2; ($after - $before) / $hz" | bc)s for $msgs messages = $(echo "scale=3; ($after - $before) * 1000000 / $hz / $msgs" | bc) us/msg"
}
start_server
run "publish" writer --topic bench --size 200 --batch-size $BATCH
# More backlog than a reader can take in one run, so consume is not capped by it.
"$BENCH" writer "${TLS_CLIENT_ARGS[@]}" --nsqd-tcp-address 127.0.0.1:$PORT --runfor "$RUNFOR" --topic bench --size 200 --batch-size $BATCH >/dev/null
run "consume" reader --topic bench --channel ch --size 200 --rdy 2500
stop_server
start_server
run "both" both --topic both --channel ch --size 200 --batch-size $BATCH --rdy 2500
