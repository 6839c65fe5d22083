# Static checks of the Alveo recipes that run without Vivado (tclsh only). Run by
# bitstreams/lint-shell.sh; usage on its own:
#   TANDEM_BUILD_REV=<hex> TANDEM_BUILD_DATE=<YYYYMMDD> \
#     tclsh bitstreams/check-recipes.tcl <engine.v generated with that stamp, 250 MHz>
#
# 1. Every Tcl file under bitstreams/ is complete (balanced braces, brackets, quotes).
# 2. Each board's build.tcl runs, up to the end of the block design
#    (TANDEM_STOP_AFTER=bd), in a child interpreter whose Vivado commands are stubs that
#    record their arguments; any other unknown command is an error. That executes every
#    line of engine_stamp.tcl's check, build_flow.tcl up to the block design and all of
#    block_design.tcl, so Tcl errors (a misspelt variable or command, a wrong dict key)
#    and a wrong build stamp in the given engine fail here.
# 3. Every pin or interface the block design names on the RTL cells `tandem`
#    (common/tandem_shell_top.v) and `link_ctl` (common/tandem_link_ctl.v) exists in
#    that Verilog: a port, or (for the wrapper) a bus-interface prefix that Vivado infers
#    from port names, which must also be listed in clk's ASSOCIATED_BUSIF.
# What this cannot check: the Xilinx IPs' own pin, interface and CONFIG names (XDMA,
# CMAC, SmartConnect, axis_data_fifo, clk_wiz, util_ds_buf); they need Vivado.

set root [file dirname [file normalize [info script]]]
set failures 0
proc fail {msg} {
    puts stderr "check-recipes: FAIL: $msg"
    incr ::failures
}
proc slurp {path} {
    set fd [open $path r]
    set t [read $fd]
    close $fd
    return $t
}

if {[llength $argv] != 1} {
    puts stderr "usage: tclsh check-recipes.tcl <generated engine.v>"
    exit 2
}
set engine_v [file normalize [lindex $argv 0]]

# --- 1. every Tcl file is complete ---------------------------------------------------------
set tcl_files [lsort [concat [glob -directory $root *.tcl] \
    [glob -directory [file join $root common] *.tcl] \
    [glob -nocomplain -directory $root alveo-*/build.tcl]]]
foreach f $tcl_files {
    if {![info complete [slurp $f]]} { fail "$f: incomplete Tcl (unbalanced braces, brackets or quotes)" }
}
set boards [lsort [glob -directory $root -type d alveo-*]]
if {[llength $boards] == 0} { fail "no alveo-* recipe" }

# --- ports of the two RTL modules ---------------------------------------------------------
# The ANSI port list of `module` in `file`: dict name -> direction.
proc verilog_ports {file module} {
    set text [regsub -all {//[^\n]*} [slurp $file] {}]
    set start [string first "module $module" $text]
    set end [string first ");" $text $start]
    if {$start < 0 || $end < 0} { error "$file: no module $module" }
    # Attributes (* ... *) removed; the header ends at the first ");" after the name.
    set header [regsub -all {\(\*[^*]*\*\)} [string range $text $start $end] {}]
    set ports [dict create]
    foreach {- dir name} [regexp -all -inline {(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:\[[^\]]+\]\s*)?([A-Za-z_][A-Za-z0-9_]*)} $header] {
        dict set ports $name $dir
    }
    return $ports
}
set shell_v [file join $root common tandem_shell_top.v]
set ctl_v [file join $root common tandem_link_ctl.v]
set shell_ports [verilog_ports $shell_v tandem_shell_top]
set ctl_ports [verilog_ports $ctl_v tandem_link_ctl]
if {[dict size $shell_ports] < 10 || [dict size $ctl_ports] < 10} {
    fail "port lists of the RTL modules could not be read ([dict size $shell_ports], [dict size $ctl_ports] ports)"
}
set busif {}
if {![regexp {ASSOCIATED_BUSIF\s+([A-Za-z0-9_:]+)} [slurp $shell_v] - busif_text]} {
    fail "$shell_v: clk has no ASSOCIATED_BUSIF"
} else {
    set busif [split $busif_text :]
}

# --- 2. dry run of each board's build.tcl against stub Vivado commands ----------------------
set stub_cmds {
    create_project current_project set_property get_property get_board_parts
    get_board_part_interfaces add_files update_compile_order get_files generate_target
    make_wrapper current_fileset create_bd_design create_bd_cell create_bd_port
    create_bd_intf_port connect_bd_net connect_bd_intf_net get_bd_pins get_bd_intf_pins
    get_bd_ports get_bd_intf_ports get_bd_addr_spaces get_bd_addr_segs assign_bd_address
    validate_bd_design save_bd_design launch_runs wait_on_run get_runs open_run close_design
    report_timing_summary report_utilization report_cdc get_timing_paths get_cells get_clocks
    get_pins get_ports
}
# What a stub returns. Lookups return the name asked for (so the recipe's own "not found"
# checks pass and the name is recorded); constructors return the object's name.
proc stub {board cmd args} {
    lappend ::calls($board) [list $cmd {*}$args]
    switch -- $cmd {
        get_bd_pins - get_bd_intf_pins - get_bd_ports - get_bd_intf_ports - get_files -
        get_bd_addr_spaces {
            return [lindex $args end]
        }
        create_bd_cell - create_bd_port - create_bd_intf_port - create_bd_design {
            return [lindex $args end]
        }
        get_bd_addr_segs { return seg }
        get_board_parts { return [string map {* 1.0} [lindex $args end]] }
        get_board_part_interfaces { return $::board_intfs($board) }
        make_wrapper { return tandem_bd_wrapper.v }
        default { return "" }
    }
}

set saved_env [array get ::env]
foreach dir $boards {
    set board [file tail $dir]
    set build [file join $dir build.tcl]
    if {![file exists $build]} { fail "$board: no build.tcl"; continue }
    set ::calls($board) {}
    # The board interfaces the recipe names (values of its *_intf keys).
    set ::board_intfs($board) {}
    foreach {- v} [regexp -all -inline {_intf\s+(\S+)\s+\\} [slurp $build]] { lappend ::board_intfs($board) $v }
    set ::env(TANDEM_ENGINE_V) $engine_v
    set ::env(TANDEM_STOP_AFTER) bd
    set ::env(TANDEM_BUILD_DIR) [file join [pwd] dry-run-$board]
    set child [interp create]
    foreach c $stub_cmds { interp alias $child $c {} stub $board $c }
    # Nothing else from outside: a Vivado command missing from the stub list, or a typo,
    # is an unknown command in the child and fails the run.
    interp eval $child { proc exec {args} { error "exec not expected in the dry run: $args" } }
    if {[catch {interp eval $child [list source $build]} msg opts]} {
        fail "$board: build.tcl dry run: $msg\n[dict get $opts -errorinfo]"
        interp delete $child
        continue
    }
    interp delete $child
    set cmds [lmap c $::calls($board) { lindex $c 0 }]
    foreach need {create_bd_design validate_bd_design save_bd_design make_wrapper} {
        if {[lsearch -exact $cmds $need] < 0} { fail "$board: the dry run never called $need" }
    }

    # --- 3. names on the RTL cells ---------------------------------------------------------
    set checked 0
    foreach c $::calls($board) {
        set cmd [lindex $c 0]
        if {$cmd ni {get_bd_pins get_bd_intf_pins}} { continue }
        set path [lindex $c end]
        if {![regexp {^(tandem|link_ctl)/([A-Za-z0-9_]+)$} $path - cell name]} { continue }
        incr checked
        if {$cell eq "link_ctl"} {
            if {$cmd ne "get_bd_pins" || ![dict exists $ctl_ports $name]} {
                fail "$board: block design names link_ctl/$name, tandem_link_ctl has no such port"
            }
        } elseif {$cmd eq "get_bd_pins"} {
            if {![dict exists $shell_ports $name]} {
                fail "$board: block design names pin tandem/$name, tandem_shell_top has no such port"
            }
        } else {
            set members [lsearch -all -inline -glob [dict keys $shell_ports] ${name}_*]
            if {[llength $members] == 0} {
                fail "$board: block design names interface tandem/$name, tandem_shell_top has no ${name}_* ports"
            }
            if {$name ni $busif} {
                fail "$board: interface tandem/$name is not in clk's ASSOCIATED_BUSIF ($busif)"
            }
        }
    }
    if {$checked < 10} { fail "$board: only $checked pins or interfaces named on the RTL cells" }
    puts "check-recipes: $board: build.tcl dry run to the block design passed, $checked RTL pin/interface names checked"
}
array unset ::env
array set ::env $saved_env

if {$failures} {
    puts stderr "check-recipes: $failures failure(s)"
    exit 1
}
puts "check-recipes: [llength $tcl_files] Tcl files complete, [llength $boards] recipes checked"
