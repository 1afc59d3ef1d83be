#!/usr/bin/env bash
# Installs the buf CLI (for `buf lint`, `buf breaking` and `buf curl`) from the npm registry into
# .tools/buf at the repository root, pinned, and prints the path of the binary. Idempotent and
# safe to run from parallel tests.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="1.75.0"
prefix="$root/.tools/buf"
binary="$prefix/node_modules/.bin/buf"

mkdir -p "$root/.tools"
exec 9>"$root/.tools/buf.lock"
flock 9
if [[ ! -x "$binary" ]] || [[ "$("$binary" --version 2>/dev/null)" != "$version" ]]; then
  npm install --silent --no-audit --no-fund --prefix "$prefix" "@bufbuild/buf@$version" >/dev/null
fi
echo "$binary"
