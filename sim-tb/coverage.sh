#!/usr/bin/env bash
# Line coverage of the generated RTL under the Verilator testbenches.
# Runs every sim-tb test with TANDEM_COVERAGE set, merges the per-instance .dat files and
# prints verilator_coverage's total (covered/all points and percent) per model (link
# datapath, whole engine) and width.
# Usage: sim-tb/coverage.sh [out-dir]   (default /tmp/tandem-coverage; about 20 s of tests once built)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/rtl}"
out="${1:-/tmp/tandem-coverage}"
rm -rf "$out"
mkdir -p "$out"
TANDEM_COVERAGE="$out" cargo test -q -p tandem-sim-tb --release > "$out/test.log" 2>&1 || { cat "$out/test.log"; exit 1; }
for kind in link engine; do
  for w in 64 512; do
    files=$(ls "$out"/"$kind$w"-*.dat 2>/dev/null || true)
    [ -n "$files" ] || continue
    # shellcheck disable=SC2086
    verilator_coverage --write "$out/merged-$kind$w.dat" $files > /dev/null
    # A line counts as covered when it ran at least once (--annotate-min 1). With the
    # default threshold (10 hits) lines of the big combinational always blocks count as
    # missed: Verilator records only a handful of entries into them however often they run.
    verilator_coverage --annotate-min 1 --annotate "$out/annotated-$kind$w" "$out/merged-$kind$w.dat" | sed -n "s/^Total coverage/$kind $w bits: total line coverage/p"
  done
done
