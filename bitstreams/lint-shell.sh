#!/usr/bin/env bash
# Static checks of the Alveo recipes that run without Vivado:
# 1. Lints the shell wrapper (bitstreams/common/tandem_shell_top.v) against the generated
#    512-bit engine: every port connected, widths matching (verilator --lint-only; any
#    warning or error located in the wrapper fails, e.g. PINMISSING, PINNOTFOUND, WIDTH).
# 2. Lints the CMAC bring-up module (bitstreams/common/tandem_link_ctl.v) the same way.
# 3. bitstreams/check-recipes.tcl (tclsh): every Tcl file complete, each board's build.tcl
#    dry-run through its block design against stub Vivado commands (the build stamp of the
#    generated engine checked on the way), every pin the block design names on the two RTL
#    cells present in their Verilog.
# Needs cargo, verilator and tclsh (Debian package tcl). Usage: bitstreams/lint-shell.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tclsh >/dev/null || { echo "lint-shell: tclsh not found (apt-get install tcl)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A fixed stamp, so the recipes' stamp check has a known answer.
export TANDEM_BUILD_REV=5eed1e55 TANDEM_BUILD_DATE=20240101 TANDEM_CLOCK_KHZ=250000
cargo run -q -p tandem-hdl --bin emit-verilog -- engine 512 "$work/engine.v" tandem_engine
verilator --lint-only -Wno-fatal -Wno-lint -Wno-style -Wwarn-PINMISSING -Wwarn-WIDTH -Wwarn-PINCONNECTEMPTY \
  --top-module tandem_shell_top bitstreams/common/tandem_shell_top.v "$work/engine.v" 2> "$work/lint.txt" || true
# Only findings in the wrapper count (the generated engine has its own lint waivers).
if grep -E "%(Warning|Error)" "$work/lint.txt" | grep "tandem_shell_top.v"; then
  echo "lint-shell: the wrapper does not match the engine's ports" >&2
  exit 1
fi
echo "lint-shell: tandem_shell_top matches tandem_engine (512 bits)"
verilator --lint-only -Wall --top-module tandem_link_ctl bitstreams/common/tandem_link_ctl.v 2> "$work/ctl.txt" || true
if grep -E "%(Warning|Error)" "$work/ctl.txt"; then
  echo "lint-shell: tandem_link_ctl.v has lint findings" >&2
  exit 1
fi
echo "lint-shell: tandem_link_ctl lints clean (verilator -Wall)"
(cd "$work" && tclsh "$OLDPWD/bitstreams/check-recipes.tcl" "$work/engine.v")
