#!/usr/bin/env bash
# Measures the WorkOS emulator's POST /portal/generate_link throughput on one core: the emulator
# pinned to core 0, the load generator (wrk, HTTP/1.1 keep-alive) pinned to core 1. The emulator
# must never be what limits a gateway benchmark; the aim is above 20,000 requests per second.
#
# Usage: scripts/bench-emulator.sh [path/to/release/portal-gateway] [seconds] [connections]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${1:-$root/target/release/portal-gateway}"
seconds="${2:-10}"
connections="${3:-64}"
if [[ ! -x "$binary" ]]; then
  (cd "$root" && cargo build --release --locked --bin portal-gateway)
fi
if ! command -v wrk >/dev/null; then
  if [[ "$(id -u)" == 0 ]]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; else
    echo "wrk is needed: apt-get install wrk" >&2; exit 1; fi
fi
pin() { if [[ "$(nproc)" -ge 2 ]]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }

work="$(mktemp -d)"
pin 0 "$binary" emulator --listen 127.0.0.1:0 --seed 1 >"$work/stdout" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
url=""
for _ in $(seq 1 200); do
  url="$(sed -n 's/^WorkOS emulator listening on //p' "$work/stdout")"
  [[ -n "$url" ]] && break
  sleep 0.05  # poll interval, bounded by the loop count
done
[[ -n "$url" ]] || { echo "the emulator did not start" >&2; exit 1; }

org="$(curl -sf -X POST "$url/organizations" -H 'Authorization: Bearer sk_test_emulator' \
  -H 'Content-Type: application/json' -d '{"name":"Bench Inc"}' | grep -o '"id":"org_[^"]*"' | cut -d'"' -f4)"
cat >"$work/generate_link.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer sk_test_emulator"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"organization":"$org","intent":"sso","return_url":"https://app.example.com/back","external_user_id":"admin-1"}'
LUA

echo "emulator generate_link, ${seconds}s, ${connections} connections, emulator on one core ($(nproc) cores here)"
pin 1 wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/generate_link.lua" "$url/portal/generate_link" | tee "$work/wrk.txt"
rps="$(awk '/^Requests\/sec/ {print int($2)}' "$work/wrk.txt")"
if grep -q 'Non-2xx' "$work/wrk.txt"; then echo "FAIL: some answers were not 201" >&2; exit 1; fi
echo "generate_link requests per second on one core: $rps (target: above 20000)"
