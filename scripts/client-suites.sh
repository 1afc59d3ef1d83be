#!/usr/bin/env bash
# Runs the Python and Node client suites (clients/python/tests, clients/node/test) against the
# real gateway binary named by PORTAL_GATEWAY_BIN, installing what they need first (the Python
# venv through ensure-clients.sh, `npm ci` in clients/node), each only when its inputs changed.
#
# Usage: PORTAL_GATEWAY_BIN=target/debug/portal-gateway scripts/client-suites.sh [--no-watch] [python|node]
#   python|node   run only that suite (default: both)
#   --no-watch    leave out the WatchSetup tests (test_watch.py, watch.test.js)
# Exits non-zero when any suite fails; runs every selected suite either way.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '6,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

suites=(python node)
watch=1
for arg in "$@"; do
  case "$arg" in
    python | node) suites=("$arg") ;;
    --no-watch) watch=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 64 ;;
  esac
done

if [[ -z "${PORTAL_GATEWAY_BIN:-}" || ! -x "${PORTAL_GATEWAY_BIN}" ]]; then
  echo "client-suites: set PORTAL_GATEWAY_BIN to the portal-gateway binary" >&2
  exit 64
fi
PORTAL_GATEWAY_BIN="$(realpath "$PORTAL_GATEWAY_BIN")"
export PORTAL_GATEWAY_BIN

# The suites run as `suite || ...`, where bash ignores `set -e`: each step is chained by hand.

# npm ci only when package-lock.json changed since the last install; a lock serialises runs.
ensure_node() {
  local dir="$root/clients/node"
  (
    flock 8 || exit 1
    cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-from" && exit 0
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) &&
      cp "$dir/package-lock.json" "$dir/node_modules/.installed-from"
  ) 8>"$dir/.npm-ci.lock"
}

python_suite() {
  "$root/scripts/ensure-clients.sh" || return 1
  local args=(-p no:cacheprovider)
  ((watch)) || args+=(-m "not watch")
  "$root/.venv-clients/bin/pytest" "${args[@]}" "$root/clients/python/tests"
}

node_suite() {
  ensure_node || return 1
  local files=(test/client.test.js)
  ((watch)) && files+=(test/watch.test.js)
  (cd "$root/clients/node" && node --test "${files[@]}")
}

failed=()
for suite in "${suites[@]}"; do
  echo "== $suite client suite" >&2
  "${suite}_suite" || failed+=("$suite")
done
if ((${#failed[@]})); then
  echo "client-suites: failed: ${failed[*]}" >&2
  exit 1
fi
echo "client-suites: passed: ${suites[*]}" >&2
