#!/usr/bin/env bash
# Starts the real portal-gateway binary in dev mode on free ports and runs the README's grpcurl
# examples against it, exactly as written there (only the address is swapped for the free port).
# Fails if any example fails or the minted link does not open the emulator's portal page.
#
# Usage: scripts/grpcurl-examples.sh [path/to/portal-gateway]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${1:-$root/target/debug/portal-gateway}"
"$root/scripts/ensure-clients.sh"
export PATH="$root/.venv-clients/bin:$PATH"
command -v grpcurl >/dev/null || { echo "grpcurl is missing from .venv-clients" >&2; exit 1; }

work="$(mktemp -d)"
"$binary" dev --listen 127.0.0.1:0 --emulator-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$work/stdout" 2>"$work/stderr" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Poll (no fixed sleep) until the binary prints where it listens.
address=""
for _ in $(seq 1 200); do
  address="$(sed -n 's/^portal-gateway listening on \([0-9.:]*\) .*/\1/p' "$work/stdout")"
  [[ -n "$address" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/stderr" >&2; echo "portal-gateway exited early" >&2; exit 1; }
  sleep 0.05  # poll interval, bounded by the loop count
done
[[ -n "$address" ]] || { echo "portal-gateway did not report its address" >&2; exit 1; }
emulator="$(sed -n 's|^WorkOS emulator listening on http://\([0-9.:]*\) .*|\1|p' "$work/stdout")"
[[ -n "$emulator" ]] || { echo "portal-gateway did not report the emulator's address" >&2; exit 1; }

# The examples block from the README, with the documented address replaced by the real one.
sed -n '/<!-- grpcurl-examples:start -->/,/<!-- grpcurl-examples:end -->/p' "$root/README.md" \
  | sed -e '/^<!--/d' -e '/^```/d' -e "s/127\.0\.0\.1:50051/$address/g" -e "s/127\.0\.0\.1:4100/$emulator/g" >"$work/examples.sh"
[[ -s "$work/examples.sh" ]] || { echo "no grpcurl examples found in README.md" >&2; exit 1; }

cd "$work"
bash -euo pipefail "$work/examples.sh" >"$work/out" 2>&1 || { cat "$work/out" >&2; echo "a README example failed" >&2; exit 1; }

# What the examples must have shown.
grep -q 'adminportal.v1.PortalService' "$work/out" || { echo "reflection did not list PortalService" >&2; exit 1; }
grep -q '"status": "SERVING"' "$work/out" || { echo "health check did not answer SERVING" >&2; exit 1; }
grep -q '"created": true' "$work/out" || { echo "EnsureOrganization did not create" >&2; exit 1; }
grep -q 'Admin Portal (WorkOS emulator)' "$work/out" || { echo "the link did not open the portal page" >&2; exit 1; }
grep -q '"intent": "INTENT_SSO"' "$work/out" || { echo "GenerateLink did not answer" >&2; exit 1; }
grep -q 'Code: NotFound' "$work/out" || { echo "the deleted organization was still found" >&2; exit 1; }
grep -q "SETUP_STATE_COMPLETE" "$work/out" || { echo "GetSetupStatus did not report the verified domain complete" >&2; exit 1; }
grep -q "SNAPSHOT_REASON_INITIAL" "$work/out" || { echo "WatchSetup did not start with a snapshot" >&2; exit 1; }
grep -q '"to":"it@acme.example"' "$work/out" || { echo "the invitation e-mail is not in the outbox" >&2; exit 1; }
echo "README grpcurl examples: all passed against $address"
