# The Vivado flow both Alveo recipes share (project mode, because the block design needs a
# project): engine generation with its build stamp, board part, block design, synthesis,
# checks, implementation, bitstream. alveo-u250/build.tcl and alveo-u280/build.tcl set
# the board's parameters and call tandem_build. NOT RUN: written without Vivado (see
# bitstreams/README.md).
#
# Environment:
#   TANDEM_BOARD_PART   board part to use (default: the newest installed match of the
#                       board's pattern, e.g. xilinx.com:au250:part0:*)
#   TANDEM_BUILD_DIR    project directory (default: <board dir>/build)
#   TANDEM_JOBS         parallel jobs for the runs (default 4)
#   TANDEM_STOP_AFTER   bd | synth | impl (default: run through write_bitstream)
#   TANDEM_ENGINE_V     use this generated engine instead of running emit-verilog
#                       (its build stamp is still checked against TANDEM_BUILD_REV/DATE)
#   TANDEM_BUILD_REV, TANDEM_BUILD_DATE   see common/engine_stamp.tcl

set tandem_common [file dirname [file normalize [info script]]]
source [file join $tandem_common engine_stamp.tcl]
source [file join $tandem_common block_design.tcl]

proc tandem_env {name default} {
    if {[info exists ::env($name)] && $::env($name) ne ""} { return $::env($name) }
    return $default
}

# Post-synthesis checks: clocks the IP derived, and pins the board flow placed, against
# the values the recipe expects (cfg keys engine_mhz, expected_pins).
proc tandem_check_design {cfg} {
    set want [expr {1000.0 / [dict get $cfg engine_mhz]}]
    set engine [get_cells -hierarchical -filter {REF_NAME == tandem_engine}]
    if {[llength $engine] != 1} { error "check: expected one tandem_engine cell, found [llength $engine]" }
    set clk [get_clocks -of_objects [get_pins -of_objects $engine -filter {REF_PIN_NAME == clock}]]
    if {[llength $clk] != 1 || abs([get_property PERIOD $clk] - $want) > 0.001} {
        error "check: engine clock is '$clk' (period [get_property PERIOD $clk] ns), expected one clock of $want ns (XDMA axi_aclk)"
    }
    set ctl [get_cells -hierarchical -filter {REF_NAME =~ *tandem_link_ctl*}]
    set mac [get_clocks -of_objects [get_pins -of_objects $ctl -filter {REF_PIN_NAME == clk}]]
    set want_mac [expr {1000.0 / 322.265625}]
    if {[llength $mac] != 1 || abs([get_property PERIOD $mac] - $want_mac) > 0.01} {
        error "check: CMAC user clock is '$mac', expected one clock of [format %.3f $want_mac] ns"
    }
    dict for {port pin} [dict get $cfg expected_pins] {
        set p [get_ports -quiet $port]
        if {$p eq ""} { error "check: no top-level port $port" }
        set got [get_property PACKAGE_PIN $p]
        if {$got ne $pin} { error "check: port $port is on '$got', the board documentation says $pin" }
    }
    puts "tandem: clocks and pins as expected"
}

proc tandem_build {cfg} {
    set board [dict get $cfg board]
    set board_dir [dict get $cfg board_dir]
    set repo [file normalize [file join $board_dir .. ..]]
    set build_dir [tandem_env TANDEM_BUILD_DIR [file join $board_dir build]]
    set jobs [tandem_env TANDEM_JOBS 4]
    set stop [tandem_env TANDEM_STOP_AFTER bitstream]

    # Engine Verilog with the build stamp (ID block: BUILD_STAMP_LO/HI, CLOCK_KHZ).
    set stamp [tandem_build_stamp $repo [expr {[dict get $cfg engine_mhz] * 1000}]]
    set engine_v [tandem_env TANDEM_ENGINE_V [file join $board_dir gen engine.v]]
    if {[info exists ::env(TANDEM_ENGINE_V)]} {
        tandem_check_stamp $engine_v $stamp
    } else {
        tandem_emit_engine $repo $engine_v $stamp
    }
    puts "tandem: engine $engine_v, build stamp $stamp"

    create_project -force tandem_$board $build_dir -part [dict get $cfg part]
    set bp [tandem_env TANDEM_BOARD_PART ""]
    if {$bp eq ""} {
        set bp [lindex [lsort -dictionary [get_board_parts -quiet [dict get $cfg board_part_pattern]]] end]
    }
    if {$bp eq ""} {
        error "no board part matches [dict get $cfg board_part_pattern]: install the board files (README) or set TANDEM_BOARD_PART"
    }
    set_property board_part $bp [current_project]
    set have [get_board_part_interfaces -quiet]
    foreach intf [dict get $cfg board_interfaces] {
        if {[lsearch -exact $have $intf] < 0} {
            error "board part $bp has no interface $intf (board file version?)"
        }
    }
    set_property target_language Verilog [current_project]
    add_files -norecurse [list $engine_v \
        [file join $::tandem_common tandem_shell_top.v] \
        [file join $::tandem_common tandem_link_ctl.v]]
    update_compile_order -fileset sources_1

    tandem_block_design tandem_bd $cfg
    set bd [get_files tandem_bd.bd]
    generate_target all $bd
    add_files -norecurse [make_wrapper -files $bd -top]
    set_property top tandem_bd_wrapper [current_fileset]
    add_files -fileset constrs_1 -norecurse [file join $board_dir constraints.xdc]
    update_compile_order -fileset sources_1
    if {$stop eq "bd"} { puts "tandem: stopped after the block design"; return }

    launch_runs synth_1 -jobs $jobs
    wait_on_run synth_1
    if {[get_property PROGRESS [get_runs synth_1]] ne "100%"} { error "synthesis failed (see $build_dir)" }
    open_run synth_1
    tandem_check_design $cfg
    close_design
    if {$stop eq "synth"} { puts "tandem: stopped after synthesis"; return }

    launch_runs impl_1 -to_step write_bitstream -jobs $jobs
    wait_on_run impl_1
    if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} { error "implementation failed (see $build_dir)" }
    open_run impl_1
    report_timing_summary -file [file join $build_dir timing_summary.rpt]
    report_utilization -file [file join $build_dir utilization.rpt]
    report_cdc -file [file join $build_dir cdc.rpt]
    set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
    set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
    if {$wns < 0 || $whs < 0} { error "timing not met: WNS $wns ns, WHS $whs ns (see timing_summary.rpt)" }
    set bit [lindex [glob -directory [get_property DIRECTORY [get_runs impl_1]] *.bit] 0]
    file copy -force $bit [file join $board_dir tandem_$board.bit]
    puts "tandem: [file join $board_dir tandem_$board.bit] (WNS $wns ns, WHS $whs ns, stamp $stamp)"
}
