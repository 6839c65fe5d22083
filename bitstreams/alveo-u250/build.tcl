# Alveo U250 build recipe (Vivado, non-project mode). NOT RUN: no Vivado on the machine
# where this was written; treat as a checked-in starting point, not a known-good build.
#
# Board facts only: part, shell IP, constraints. The engine Verilog is generated:
#   TANDEM_BUILD_REV=$(git rev-parse --short=8 HEAD) TANDEM_BUILD_DATE=$(date +%Y%m%d) \
#   TANDEM_CLOCK_KHZ=250000 cargo run -p tandem-hdl --bin emit-verilog -- engine 512 gen/engine.v tandem_engine
# (the whole engine, module `tandem_engine`; the build stamp lands in the ID block:
# BUILD_STAMP_LO/HI, CLOCK_KHZ). ../common/tandem_shell_top.v wraps it with the shell's
# port names; ../lint-shell.sh checks the two agree.
#
# Usage: vivado -mode batch -source build.tcl
set part xcu250-figd2104-2L-e
set here [file dirname [file normalize [info script]]]
create_project -in_memory -part $part
set_property target_language Verilog [current_project]

# Shell: XDMA (PCIe Gen3 x16) for BAR0 (AXI4-Lite) and DMA (AXI4), CMAC (100G) for the link.
create_ip -name xdma -vendor xilinx.com -library ip -module_name shell_dma
set_property -dict [list CONFIG.pl_link_cap_max_link_width {X16} CONFIG.pl_link_cap_max_link_speed {8.0_GT/s} \
  CONFIG.axilite_master_en {true} CONFIG.axi_data_width {512_bit}] [get_ips shell_dma]
create_ip -name cmac_usplus -vendor xilinx.com -library ip -module_name link_cmac
set_property -dict [list CONFIG.USER_INTERFACE {AXIS} CONFIG.GT_REF_CLK_FREQ {161.1328125}] [get_ips link_cmac]
generate_target all [get_ips]

# The engine and its wrapper. tandem_shell_top's ports: s_axil_* <- the PCIe IP's
# M_AXI_LITE (BAR0); m_axib_* -> the PCIe IP's AXI slave bridge (card-initiated access to
# host memory); tx_axis_*/rx_axis_* <-> the CMAC's AXIS through xpm_fifo_axis clock
# crossings (CMAC user clock <-> engine clock); irq -> user interrupt 0. The block design
# (or top-level Verilog) that makes those connections is NOT written: it needs the IP
# port lists Vivado generates, and nothing here has been run through Vivado.
read_verilog $here/gen/engine.v
read_verilog $here/../common/tandem_shell_top.v
read_xdc $here/constraints.xdc

# synth_design -top tandem_shell_top -part $part   ;# synthesizes the engine and wrapper alone
# opt_design; place_design; route_design
# write_bitstream -force $here/tandem_u250.bit
puts "alveo-u250: IP generated, engine and wrapper read; synthesis and the IP connections are not enabled (see README)"
