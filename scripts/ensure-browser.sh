#!/usr/bin/env bash
# Makes sure Debian's Chromium and ChromeDriver are installed, for the browser test. Installs
# them with apt when they are missing and this runs as root; otherwise says what to install.
# Idempotent, and safe to run from parallel tests (a lock serialises the install).
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec 9>"$root/.browser-install.lock"
flock 9
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "the browser test needs Debian's chromium and chromium-driver packages: apt-get install chromium chromium-driver" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
echo "chromium and chromedriver installed" >&2
