# Alveo U280 constraints for the Tandem block design. NOT RUN (no Vivado here).
#
# Pins: PCIe lanes, PCIe reference clock, PERST#, QSFP0 lanes, the QSFP0 GT reference
# clock and the 100 MHz system clock come from the board file (board part
# xilinx.com:au280:part0:*) through the block design's board interfaces
# (pci_express_x16, pcie_refclk, pcie_perstn, qsfp0_4x, qsfp0_156mhz, sysclk0); they are
# not repeated here. build.tcl checks after synthesis that the reference clocks landed
# where the board's published constraints put them:
#   pcie_refclk_clk_p  AR15 (MGTREFCLK0P_225, the x16 PCIe refclk; AR14 = _n)
#   qsfp0_156mhz_clk_p T42  (MGTREFCLK0P_134, 156.25 MHz from the SI570; T43 = _n)
# Source of those values: Xilinx's OpenNIC shell (constr/au280/pins.xdc) and the
# Corundum project's U280 XDC, which agree. Not read from UG1314 on this machine.

# HBM_CATTRIP: the card's management controller treats this pin as an HBM
# over-temperature alarm and cuts power if it floats high; a design that does not use
# the HBM drives it low (block design port hbm_cattrip, tied to 0). Pin and standard as
# in the OpenNIC shell and Corundum U280 XDC; not a board-file interface.
set_property PACKAGE_PIN D32 [get_ports hbm_cattrip]
set_property IOSTANDARD LVCMOS18 [get_ports hbm_cattrip]

# QSFP0 side-band: not driven. The published U280 XDC (Corundum) has no QSFP0 control
# pins on the FPGA, only the SI546 clock enable/select; not cross-checked against UG1314. The SI546 reference-clock
# pins (R40/R41, select on G32) are not used: the recipe uses the 156.25 MHz SI570
# clock that the board file's qsfp0_156mhz interface names.
#
# Timing: as on the U250 (see ../alveo-u250/constraints.xdc): clocks come from the IPs,
# the crossings are constrained by the axis_data_fifo IPs' own XPM constraints, no
# set_clock_groups.

# PCIe reference clock (100 MHz). Also defined by the IP flow in some Vivado versions;
# a duplicate definition on the same port is harmless.
create_clock -period 10.000 -name pcie_refclk [get_ports pcie_refclk_clk_p]

# Configuration bank voltage (as in the board's published XDC).
set_property CFGBVS GND [current_design]
set_property CONFIG_VOLTAGE 1.8 [current_design]
set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]
