#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for SECONDS (default 300) with one
# job, and prints each one's executions. New inputs go to fuzz/corpus/<target> (kept between
# runs, not committed), crashes to fuzz/artifacts/<target>, logs to fuzz/artifacts/logs.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly compiler; with a stable one, set
# RUSTC_BOOTSTRAP=1 to allow the sanitizer flags.
#
# Usage: scripts/fuzz.sh [seconds] [target...]
# Extra libFuzzer options go in FUZZ_OPTIONS, for example "-fork=1 -ignore_crashes=1" to go on
# past a crash already known.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
seconds="${1:-300}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(redirect_url mesh_identity tokens config policy request)
fi

# -a: debug assertions and overflow checks on, as in the tests. Built once, so that editing the
# crate while the targets run does not rebuild it between them.
cargo fuzz build -a
release="target/$(rustc -vV | sed -n 's/^host: //p')/release"
mkdir -p artifacts/logs
for target in "${targets[@]}"; do
  # -timeout: one input taking over 5 s is reported as a hang; no valid input comes near it.
  options=(-max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1)
  read -ra extra <<<"${FUZZ_OPTIONS:-}"
  options+=("${extra[@]}")
  case "$target" in
    config | policy) options+=(-dict=dicts/toml.dict) ;;
    mesh_identity) options+=(-dict=dicts/xfcc.dict) ;;
    redirect_url) options+=(-dict=dicts/url.dict) ;;
    # Room for a request to repeat a field thousands of times: where super-linear work shows.
    request) options+=(-max_len=65536) ;;
  esac
  inputs=("corpus/$target")
  [[ -d "seeds/$target" ]] && inputs+=("seeds/$target")
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "== $target"
  "$release/$target" -artifact_prefix="artifacts/$target/" "${options[@]}" "${inputs[@]}" \
    >"artifacts/logs/$target.log" 2>&1 ||
    echo "$target: FAILED, see fuzz/artifacts/logs/$target.log"
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|^Done|cov: .*corp" "artifacts/logs/$target.log" |
    tail -n 4
done
