# Alveo U280 constraints for the Tandem engine. NOT RUN (no Vivado here).
# Pin locations of the PCIe reference clock, QSFP28 GT reference clocks and the board's
# status LEDs come from the board's master XDC published by the vendor; they are
# deliberately not copied here by hand. Only the engine's own timing intent is stated.

# Engine core clock: 250 MHz (CLOCK_KHZ = 250000 in the ID block), from the DMA shell's
# user clock (axi_aclk).
create_clock -period 4.000 -name engine_clk [get_pins -hierarchical -filter {NAME =~ *shell_dma*/axi_aclk}]
# CMAC user clock (322.265625 MHz) crosses to the engine clock through the link FIFOs.
set_clock_groups -asynchronous -group [get_clocks engine_clk] -group [get_clocks -of_objects [get_pins -hierarchical -filter {NAME =~ *link_cmac*/gt_txusrclk2}]]
