#!/usr/bin/env bash
# The meter page's data, timed: fills a fresh journal with one AI-on-the-edge series of
# 100,000 readings (5 minutes apart, the year up to now; every 500th round an error round) through
# the real route, 64 readings per request, then times `GET /api/series/:id/points` (default
# max_points) and `/daily` over the whole series. Not a timed test: it prints the figures.
#
#   bench/meters.sh              100,000 readings, 20 timed calls of each endpoint
#   READINGS=10000 bench/meters.sh
#   HOOKYARD_BIN=target/debug/hookyard READINGS=2000 bench/meters.sh   (a check of the script, no figures)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
readings=${READINGS:-100000}
calls=${CALLS:-20}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

bin=${HOOKYARD_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -p hookyard
  bin=$root/target/release/hookyard
fi
bin=$(realpath "$bin")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/hookyard.toml" <<EOF
listen = "127.0.0.1:$port"
data_dir = "data"
spec_dir = "$root/spec"
scripts_dir = "$root/scripts"
[admin]
token = "bench-admin"
[journal]
max_age_days = 3650
[protocols.ai-on-the-edge]
api_keys = { "bench-key" = "ferienhaus" }
EOF
(cd "$work" && exec "$bin" serve 2>"$work/hookyard.log") &
for _ in $(seq 1 500); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.01; done

python3 - "$port" "$readings" "$calls" <<'EOF'
import http.client, json, statistics, sys, time

port, readings, calls = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)

def call(method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    res = conn.getresponse()
    data = res.read()
    if res.status != 200:
        sys.exit(f"{method} {path}: {res.status} {data[:200]!r}")
    return data

# The year up to now: readings older than [journal] readings_retention_days would be pruned.
start, value, rounds = int(time.time()) - 300 * readings, 1000.0, []
for i in range(readings):
    error = i % 500 == 499
    if not error:
        value += 0.0125 * (1 + i % 7)
    rounds.append({"timestamp": "", "timestampLong": str(start + 300 * i), "name": "main",
                   "rawValue": "" if error else f"{value:.4f}", "value": "" if error else f"{value:.4f}",
                   "preValue": "", "rate": "", "changeAbsolute": "",
                   "error": "Rate too high" if error else "no error"})
t0 = time.monotonic()
for n in range(0, readings, 64):
    call("POST", "/ai-on-the-edge/webhook", json.dumps(rounds[n:n + 64]),
         {"APIKEY": "bench-key", "Content-Type": "application/json"})
fill = time.monotonic() - t0
auth = {"Authorization": "Bearer bench-admin"}
series = json.loads(call("GET", "/api/series", headers=auth))
[main] = [s for s in series if s["name"] == "ferienhaus / main"]
print(f"filled {main['count']} readings in {fill:.1f} s ({main['count'] / fill:.0f} readings/s, 64 per request)")

def timed(path):
    times, size = [], 0
    for _ in range(calls):
        t = time.monotonic()
        size = len(call("GET", path, headers=auth))
        times.append((time.monotonic() - t) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"GET {path.split('?')[0].replace(main['id'], ':id')}: median {statistics.median(times):.1f} ms, "
          f"p95 {p95:.1f} ms, max {times[-1]:.1f} ms ({size} bytes, {calls} calls)")

timed(f"/api/series/{main['id']}/points")
points = json.loads(call("GET", f"/api/series/{main['id']}/points", headers=auth))
print(f"  {len(points['points'])} of {points['total']} points, downsampled: {points['downsampled']}")
timed(f"/api/series/{main['id']}/daily")
timed(f"/api/series/{main['id']}")
EOF
