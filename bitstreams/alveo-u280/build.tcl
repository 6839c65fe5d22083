# Alveo U280 build recipe (Vivado, project mode). NOT RUN: no Vivado on the machine where
# this was written; treat it as a reviewed starting point, not a known-good build (see
# ../README.md for what was and was not checked).
#
# Usage (from any directory, with the Alveo U280 board files installed):
#   vivado -mode batch -source bitstreams/alveo-u280/build.tcl
# It generates the engine (gen/engine.v, build stamp from git HEAD and today's date, see
# ../common/engine_stamp.tcl), builds the block design of ../common/block_design.tcl,
# synthesizes, checks clocks and pins, implements and writes tandem_u280.bit here.
# Environment knobs: ../common/build_flow.tcl.
#
# PCIe IP: XDMA in AXI Bridge mode, as on the U250 (the U280 also supports QDMA, whose
# slave bridge would need a different configuration; see ../common/block_design.tcl).
set here [file dirname [file normalize [info script]]]
source [file join $here .. common build_flow.tcl]

# Board facts. Interface names are the U280 board file's (board part
# xilinx.com:au280:part0:*); sysclk0 is the 100 MHz system clock. The GT sites are
# QSFP0's (GTY quad 134, CMAC site CMACE4_X0Y6), as in Xilinx's OpenNIC shell for this
# board, which also enables the GT receive buffer there.
set tandem_cfg [dict create \
    board u280 \
    board_dir $here \
    part xcu280-fsvh2892-2L-e \
    board_part_pattern xilinx.com:au280:part0:* \
    engine_mhz 250 \
    pcie_intf pci_express_x16 \
    pcie_refclk_intf pcie_refclk \
    pcie_perst_intf pcie_perstn \
    sysclk_intf sysclk0 \
    sysclk_hz 100000000 \
    qsfp_intf qsfp0_4x \
    qsfp_clk_intf qsfp0_156mhz \
    qsfp_clk_mhz 156.25 \
    cmac_core CMACE4_X0Y6 \
    gt_group X0Y40~X0Y43 \
    gt_lanes {X0Y40 X0Y41 X0Y42 X0Y43} \
    cmac_extra {CONFIG.RX_GT_BUFFER 1 CONFIG.GT_RX_BUFFER_BYPASS 0} \
    tie_low_outputs {hbm_cattrip} \
    tx_fifo_depth 512 \
    rx_fifo_depth 2048 \
    max_frame_bytes 16383 \
]
dict set tandem_cfg board_interfaces [list \
    [dict get $tandem_cfg pcie_intf] [dict get $tandem_cfg pcie_refclk_intf] \
    [dict get $tandem_cfg pcie_perst_intf] [dict get $tandem_cfg sysclk_intf] \
    [dict get $tandem_cfg qsfp_intf] [dict get $tandem_cfg qsfp_clk_intf]]
# Pins the board flow (and constraints.xdc for hbm_cattrip) must have placed, checked
# after synthesis; see constraints.xdc for the sources.
dict set tandem_cfg expected_pins [dict create \
    pcie_refclk_clk_p AR15 \
    qsfp0_156mhz_clk_p T42 \
    hbm_cattrip D32 \
]

tandem_build $tandem_cfg
