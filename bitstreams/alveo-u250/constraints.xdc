# Alveo U250 constraints for the Tandem block design. NOT RUN (no Vivado here).
#
# Pins: PCIe lanes, PCIe reference clock, PERST#, QSFP0 lanes, the QSFP0 GT reference
# clock and the 300 MHz system clock come from the board file (board part
# xilinx.com:au250:part0:*) through the block design's board interfaces
# (pci_express_x16, pcie_refclk, pcie_perstn, qsfp0_4x, qsfp0_156mhz,
# default_300mhz_clk0); they are not repeated here. build.tcl checks after synthesis that
# the reference clocks landed where the board's published constraints put them:
#   pcie_refclk_clk_p  AM11 (MGTREFCLK0P_227 side of the x16 PCIe refclk; AM10 = _n)
#   qsfp0_156mhz_clk_p M11  (MGTREFCLK0P_231, 156.25 MHz; M10 = _n)
# Source of those values: Xilinx's OpenNIC shell (constr/au250/pins.xdc); the QSFP0
# value also matches the Corundum project's U250 XDC. Not read from UG1301 on this
# machine.
# QSFP0 side-band pins (MODSELL, RESETL, LPMODE, reference-clock select): not driven,
# as in the OpenNIC shell; the board's default strapping is relied on. Pins for them are
# published (Corundum's U250 XDC) but were not cross-checked against UG1301, so none
# are given here.
#
# Timing: every clock comes from an IP that constrains it (XDMA axi_aclk 250 MHz from
# the PCIe GT, CMAC gt_txusrclk2 322.265625 MHz, the clock wizard's 100 MHz init clock).
# The two engine <-> CMAC crossings are axis_data_fifo instances with independent
# clocks; their xpm_cdc synchronizers carry their own constraints (set_max_delay
# -datapath_only and set_bus_skew in the IP's XDC), which is the Xilinx recommendation.
# A set_clock_groups -asynchronous between those clocks would override those
# constraints, so there is none. build.tcl runs report_cdc after implementation.

# PCIe reference clock (100 MHz). Also defined by the IP flow in some Vivado versions;
# a duplicate definition on the same port is harmless.
create_clock -period 10.000 -name pcie_refclk [get_ports pcie_refclk_clk_p]

# Configuration bank voltage (as in the board's published XDC).
set_property CFGBVS GND [current_design]
set_property CONFIG_VOLTAGE 1.8 [current_design]
set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]
