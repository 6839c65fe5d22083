#!/usr/bin/env bash
# Lints the shell wrapper (bitstreams/common/tandem_shell_top.v) against the generated
# 512-bit engine: every port connected, widths matching (verilator --lint-only; any
# warning or error located in the wrapper fails, e.g. PINMISSING, PINNOTFOUND, WIDTH). Usage: bitstreams/lint-shell.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-rtl}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo run -q -p tandem-hdl --bin emit-verilog -- engine 512 "$work/engine.v" tandem_engine
verilator --lint-only -Wno-fatal -Wno-lint -Wno-style -Wwarn-PINMISSING -Wwarn-WIDTH -Wwarn-PINCONNECTEMPTY \
  --top-module tandem_shell_top bitstreams/common/tandem_shell_top.v "$work/engine.v" 2> "$work/lint.txt" || true
# Only findings in the wrapper count (the generated engine has its own lint waivers).
if grep -E "%(Warning|Error)" "$work/lint.txt" | grep "tandem_shell_top.v"; then
  echo "lint-shell: the wrapper does not match the engine's ports" >&2
  exit 1
fi
echo "lint-shell: tandem_shell_top matches tandem_engine (512 bits)"
