#!/usr/bin/env bash
# Backpressure, measured: a burst of orders placed as fast as JetStream takes
# them, against the release binaries on a local nats-server, sampling each
# process's resident memory every 200 ms. Prints the peak RSS of each and
# sagactl's report (throughput, latency percentiles, outcomes).
#   scripts/burst-rss.sh [ORDERS]        (default 20000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

orders="${1:-20000}"
scripts/install-nats-server.sh
cargo build --release --bins

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 10000))
.tools/bin/nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/store" >"$work/nats.log" 2>&1 &
pids+=($!)
nats_pid=$!
url="nats://127.0.0.1:$port"
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done

declare -A service_pids
http=$((port + 1))
# All at once: each waits for the streams the others own.
for service in order-service inventory-service payment-service saga-orchestrator; do
    http=$((http + 1))
    NATS_URL="$url" HTTP_ADDR="127.0.0.1:$http" RUST_LOG=warn target/release/"$service" \
        >"$work/$service.log" 2>&1 &
    pids+=($!)
    service_pids[$service]=$!
done
for ((h = port + 2; h <= http; h++)); do
    until curl -fsS "http://127.0.0.1:$h/readyz" >/dev/null 2>&1; do sleep 0.05; done
done

target/release/sagactl --nats-url "$url" seed --skus 20 --stock 1000000 --customers 40 --balance 1000000000 >/dev/null

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
declare -A peak
sample() {
    while true; do
        for name in nats-server "${!service_pids[@]}"; do
            pid="${service_pids[$name]:-$nats_pid}"
            rss="$(rss_kib "$pid")"
            (( rss > ${peak[$name]:-0} )) && peak[$name]=$rss
        done
        printf '%s\n' "$(declare -p peak)" >"$work/peak"
        sleep 0.2
    done
}
sample &
sampler=$!

echo "burst: $orders orders, as fast as JetStream acknowledges them"
target/release/sagactl --nats-url "$url" load --count "$orders" --settle-seconds 120
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true

eval "$(cat "$work/peak")"
echo "peak RSS during the burst:"
for name in nats-server order-service inventory-service payment-service saga-orchestrator; do
    printf '  %-18s %6.1f MiB\n' "$name" "$(echo "${peak[$name]:-0} / 1024" | bc -l)"
done
