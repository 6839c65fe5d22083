# Build stamp of the generated engine. Plain Tcl (no Vivado command), so
# bitstreams/check-recipes.tcl runs it under tclsh as well as Vivado does in build.tcl.
#
# The stamp is not a Verilog parameter the recipe can override: emit-verilog
# (hdl/src/bin/emit-verilog.rs) bakes TANDEM_BUILD_REV, TANDEM_BUILD_DATE and
# TANDEM_CLOCK_KHZ into the register file's constant table (`localparam konst$N` values
# with their BAR0 offsets in `localparam konst_addr$N`). tandem_emit_engine runs the
# generator with those variables; tandem_check_stamp reads the values back out of the
# generated file, so a stale gen/engine.v (another revision, another clock) stops the
# build instead of reaching the card.

# BAR0 offsets of the ID block registers (hsi/src/regs.rs, block `id`, base 0x000).
set ::tandem_id_regs {BUILD_STAMP_LO 0x10 BUILD_STAMP_HI 0x14 CLOCK_KHZ 0x20}

# The stamp for the source tree at `repo`: the first 8 hex digits of HEAD, today's date
# (YYYYMMDD) and the engine clock. TANDEM_BUILD_REV / TANDEM_BUILD_DATE in the environment
# take precedence (reproducible rebuilds).
proc tandem_build_stamp {repo clock_khz} {
    if {[info exists ::env(TANDEM_BUILD_REV)]} {
        set rev $::env(TANDEM_BUILD_REV)
    } else {
        set rev [string trim [exec git -C $repo rev-parse --short=8 HEAD]]
    }
    if {[info exists ::env(TANDEM_BUILD_DATE)]} {
        set date $::env(TANDEM_BUILD_DATE)
    } else {
        set date [clock format [clock seconds] -format %Y%m%d]
    }
    if {![regexp {^[0-9a-fA-F]{1,8}$} $rev]} {
        error "build stamp: revision '$rev' is not 1 to 8 hex digits"
    }
    if {![regexp {^[0-9]{8}$} $date]} {
        error "build stamp: date '$date' is not YYYYMMDD"
    }
    if {![string is integer -strict $clock_khz] || $clock_khz <= 0} {
        error "build stamp: clock '$clock_khz' kHz is not a positive integer"
    }
    return [dict create rev [string tolower $rev] date $date clock_khz $clock_khz]
}

# Runs emit-verilog for the whole 512-bit engine as module `tandem_engine` into `out`,
# then checks the stamp in the result. `cargo` must be on PATH (the Rust toolchain of
# this repository); CARGO_TARGET_DIR is honoured.
proc tandem_emit_engine {repo out stamp} {
    file mkdir [file dirname $out]
    set saved [array get ::env]
    set ::env(TANDEM_BUILD_REV) [dict get $stamp rev]
    set ::env(TANDEM_BUILD_DATE) [dict get $stamp date]
    set ::env(TANDEM_CLOCK_KHZ) [dict get $stamp clock_khz]
    set rc [catch {
        exec -ignorestderr cargo run -q --manifest-path [file join $repo Cargo.toml] \
            -p tandem-hdl --bin emit-verilog -- engine 512 $out tandem_engine
    } msg]
    array unset ::env
    array set ::env $saved
    if {$rc} {
        error "emit-verilog failed: $msg"
    }
    tandem_check_stamp $out $stamp
}

# The ID block constants of a generated engine, as a dict BAR0 offset -> value.
proc tandem_id_constants {verilog} {
    set fd [open $verilog r]
    set text [read $fd]
    close $fd
    set values [dict create]
    set addrs [dict create]
    foreach {- n v} [regexp -all -inline {localparam\s+konst\$([0-9]+)\s*=\s*32'h([0-9a-fA-F_]+)\s*;} $text] {
        dict set values $n [expr {"0x[string map {_ {}} $v]" + 0}]
    }
    foreach {- n a} [regexp -all -inline {localparam\s+konst_addr\$([0-9]+)\s*=\s*16'h([0-9a-fA-F_]+)\s*;} $text] {
        dict set addrs $n [expr {"0x[string map {_ {}} $a]" + 0}]
    }
    set out [dict create]
    dict for {n a} $addrs {
        if {[dict exists $values $n]} {
            dict set out $a [dict get $values $n]
        }
    }
    return $out
}

# Fails unless the generated engine carries `stamp` in its ID block.
proc tandem_check_stamp {verilog stamp} {
    if {![file exists $verilog]} {
        error "build stamp: $verilog does not exist (run tandem_emit_engine first)"
    }
    set consts [tandem_id_constants $verilog]
    set want [dict create \
        BUILD_STAMP_LO [expr {"0x[dict get $stamp rev]" + 0}] \
        BUILD_STAMP_HI [expr {[scan [dict get $stamp date] %d]}] \
        CLOCK_KHZ [dict get $stamp clock_khz]]
    foreach {reg off} $::tandem_id_regs {
        set off [expr {$off + 0}]
        if {![dict exists $consts $off]} {
            error "build stamp: $verilog has no constant at BAR0 offset [format 0x%x $off] ($reg); the generator's output format changed"
        }
        set got [dict get $consts $off]
        if {$got != [dict get $want $reg]} {
            error "build stamp: $verilog has $reg = [format 0x%x $got], expected [format 0x%x [dict get $want $reg]] (stale gen/engine.v?)"
        }
    }
    return 1
}
