#!/usr/bin/env bash
# Makes sure Debian's redis-server is installed, for the tests of replicas sharing state. Installs
# it with apt when missing and this runs as root; otherwise says what to install. Tests start
# their own redis-server on a free port; no system service is used.
set -euo pipefail

command -v redis-server >/dev/null && exit 0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec 9>"$root/.redis-install.lock"
flock 9
command -v redis-server >/dev/null && exit 0
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "the cluster tests need Debian's redis-server package: apt-get install redis-server" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
echo "redis-server installed" >&2
