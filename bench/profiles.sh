#!/usr/bin/env bash
# Build-profile A/B: cold build time of the server binary and its gridX request rate with
# fat LTO, thin LTO and no LTO, each built from nothing in its own target directory.
#
#   bench/profiles.sh [fat|thin|none ...]     (default: all three; BENCH_SECONDS, BENCH_CONCURRENCY)
#
# Prints one line per profile: name, build seconds, binary size, requests/s, p99 latency.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
secs=${BENCH_SECONDS:-10}
conc=${BENCH_CONCURRENCY:-64}
profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(fat thin none)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

flags() {
    case $1 in
    fat) echo "--config profile.release.lto=\"fat\" --config profile.release.codegen-units=1" ;;
    thin) echo "--config profile.release.lto=\"thin\" --config profile.release.codegen-units=16" ;;
    none) echo "--config profile.release.lto=false --config profile.release.codegen-units=16" ;;
    *) echo "unknown profile $1" >&2; exit 2 ;;
    esac
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 500); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; echo "server did not start" >&2; return 1; }

loadgen=$work/loadgen-target/release/loadgen
CARGO_TARGET_DIR=$work/loadgen-target nice -n 19 cargo build --quiet --release --locked -p hookyard-bench --bin loadgen --config profile.release.lto=false --config profile.release.codegen-units=16

for p in "${profiles[@]}"; do
    target=$work/target-$p
    echo "== $p: cold build (load before: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    t0=$(date +%s)
    # shellcheck disable=SC2046 # the flags are words
    CARGO_TARGET_DIR=$target nice -n 19 cargo build --quiet --release --locked -p hookyard --bin hookyard $(flags "$p")
    build_s=$(( $(date +%s) - t0 ))
    bin=$target/release/hookyard
    port=$(free_port)
    mkdir -p "$work/run-$p"
    { echo "listen = \"127.0.0.1:$port\""; echo "data_dir = \"data\""; echo "spec_dir = \"$root/spec\""
      echo "scripts_dir = \"$root/scripts\""; "$loadgen" --print-config; } > "$work/run-$p/hookyard.toml"
    (cd "$work/run-$p" && exec "$bin" serve 2>"$work/run-$p/log") &
    pid=$!
    wait_up "http://127.0.0.1:$port/healthz"
    json=$("$loadgen" --base "http://127.0.0.1:$port" --scenario gridx --concurrency "$conc" \
           --seconds "$secs" --verify "$work/run-$p/data")
    kill -TERM $pid; wait $pid || true
    echo "$p build_s=$build_s size_bytes=$(stat -c %s "$bin") load_after=$(cut -d' ' -f1 /proc/loadavg) $json"
done
