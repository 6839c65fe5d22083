# Alveo U250 build recipe (Vivado, project mode). NOT RUN: no Vivado on the machine where
# this was written; treat it as a reviewed starting point, not a known-good build (see
# ../README.md for what was and was not checked).
#
# Usage (from any directory, with the Alveo U250 board files installed):
#   vivado -mode batch -source bitstreams/alveo-u250/build.tcl
# It generates the engine (gen/engine.v, build stamp from git HEAD and today's date, see
# ../common/engine_stamp.tcl), builds the block design of ../common/block_design.tcl,
# synthesizes, checks clocks and pins, implements and writes tandem_u250.bit here.
# Environment knobs: ../common/build_flow.tcl.
set here [file dirname [file normalize [info script]]]
source [file join $here .. common build_flow.tcl]

# Board facts. Interface names are the U250 board file's (board part
# xilinx.com:au250:part0:*); the GT sites are QSFP0's (GTY quad 231, CMAC site
# CMACE4_X0Y8), as in Xilinx's OpenNIC shell for this board.
set tandem_cfg [dict create \
    board u250 \
    board_dir $here \
    part xcu250-figd2104-2L-e \
    board_part_pattern xilinx.com:au250:part0:* \
    engine_mhz 250 \
    pcie_intf pci_express_x16 \
    pcie_refclk_intf pcie_refclk \
    pcie_perst_intf pcie_perstn \
    sysclk_intf default_300mhz_clk0 \
    sysclk_hz 300000000 \
    qsfp_intf qsfp0_4x \
    qsfp_clk_intf qsfp0_156mhz \
    qsfp_clk_mhz 156.25 \
    cmac_core CMACE4_X0Y8 \
    gt_group X1Y44~X1Y47 \
    gt_lanes {X1Y44 X1Y45 X1Y46 X1Y47} \
    cmac_extra {} \
    tie_low_outputs {} \
    tx_fifo_depth 512 \
    rx_fifo_depth 2048 \
    max_frame_bytes 16383 \
]
dict set tandem_cfg board_interfaces [list \
    [dict get $tandem_cfg pcie_intf] [dict get $tandem_cfg pcie_refclk_intf] \
    [dict get $tandem_cfg pcie_perst_intf] [dict get $tandem_cfg sysclk_intf] \
    [dict get $tandem_cfg qsfp_intf] [dict get $tandem_cfg qsfp_clk_intf]]
# Reference-clock pins the board flow must have placed (checked after synthesis; see
# constraints.xdc for the sources).
dict set tandem_cfg expected_pins [dict create \
    pcie_refclk_clk_p AM11 \
    qsfp0_156mhz_clk_p M11 \
]

tandem_build $tandem_cfg
