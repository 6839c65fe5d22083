# Block design (IP integrator) for the Alveo recipes: the PCIe shell, the 100G MAC, the
# clock crossings and the engine. Board-independent; alveo-u250/build.tcl and
# alveo-u280/build.tcl call tandem_block_design with their board's parameters (see
# common/build_flow.tcl). NOT RUN: written without Vivado; bitstreams/check-recipes.tcl
# runs it here against stub commands (Tcl errors, and every pin named on the two RTL
# cells exists in their Verilog), nothing more.
#
# Structure (clock domains in brackets):
#
#   host --PCIe Gen3 x16-- shell_dma (XDMA, AXI Bridge mode) [axi_aclk, 250 MHz]
#     M_AXI_B (BAR0, 64 KiB) -> bar_smc (SmartConnect, AXI4 512 -> AXI4-Lite 32)
#                            -> tandem/s_axil   (engine registers)
#     S_AXI_B (slave bridge) <- tandem/m_axib   (engine DMA to host memory)
#     usr_irq_req[0]         <- tandem/irq      (MSI-X vector 0)
#   tandem (tandem_shell_top + generated tandem_engine) [axi_aclk]
#     tx_axis -> tx_fifo (axis_data_fifo, async, packet mode) -> link_cmac/axis_tx
#     rx_axis <- rx_fifo (axis_data_fifo, async)               <- link_cmac/axis_rx
#   link_cmac (CMAC UltraScale+, RS-FEC, QSFP0) [gt_txusrclk2, 322.265625 MHz]
#   link_ctl (tandem_link_ctl: CMAC bring-up) [init_clk 100 MHz / gt_txusrclk2]
#   sysclk_wiz (board system clock -> 100 MHz CMAC init/DRP clock)
#
# Why AXI Bridge mode: the engine is the bus master toward host memory (rings, payload
# reads, mirror-window writes), issuing AXI4 bursts at host IOVAs it was given through
# registers. Only the bridge's AXI slave (S_AXI_B) turns card-initiated AXI transactions
# into PCIe memory requests; XDMA's DMA mode moves data only through its own descriptor
# engines. The bridge's BAR0 master (M_AXI_B) replaces DMA mode's AXI4-Lite BAR master,
# so BAR0 reaches the engine's AXI4-Lite slave through a SmartConnect. MSI-X is the
# bridge's internal MSI-X table (in BAR2), vector 0 raised by usr_irq_req[0]: the driver
# (drivers/src/vfio) binds MSI-X vector 0 and maps BAR0 only.
#
# The same XDMA configuration serves U250 and U280 (the U280 could also use QDMA, whose
# slave bridge needs a different parameter set; one configuration is less to get wrong).

# --- helpers: every pin or interface is looked up through these, so a name that the
# IP version in use does not have stops the build with the name in the message.
proc tandem_pin {path} {
    set p [get_bd_pins $path]
    if {$p eq ""} { error "block design: no pin $path (IP port names differ in this Vivado version?)" }
    return $p
}
proc tandem_intf {path} {
    set p [get_bd_intf_pins $path]
    if {$p eq ""} { error "block design: no interface $path (IP interface names differ in this Vivado version?)" }
    return $p
}
proc tandem_net {from args} {
    set pins [list [tandem_pin $from]]
    foreach to $args { lappend pins [tandem_pin $to] }
    connect_bd_net {*}$pins
}
proc tandem_intf_net {a b} {
    connect_bd_intf_net [tandem_intf $a] [tandem_intf $b]
}

# CMAC control pins driven by tandem_link_ctl, same name on both sides.
set ::tandem_cmac_ctl_pins {
    ctl_tx_enable ctl_tx_send_rfi ctl_tx_send_lfi ctl_tx_send_idle ctl_tx_test_pattern
    ctl_rx_enable ctl_rx_force_resync ctl_rx_test_pattern
    ctl_tx_rsfec_enable ctl_rx_rsfec_enable ctl_rx_rsfec_enable_correction
    ctl_rx_rsfec_enable_indication ctl_rsfec_ieee_error_indication_mode
    core_tx_reset core_rx_reset core_drp_reset
    gtwiz_reset_tx_datapath gtwiz_reset_rx_datapath gt_loopback_in
    sys_reset
}

# Builds block design `name`. `cfg` is a dict (see alveo-*/build.tcl):
#   engine_mhz          engine clock = XDMA axi_aclk (250)
#   pcie_intf           board interface of the PCIe lanes (pci_express_x16)
#   pcie_refclk_intf    board interface of the PCIe reference clock (pcie_refclk)
#   pcie_perst_intf     board interface of PERST# (pcie_perstn)
#   sysclk_intf/_hz     board interface and frequency of a free-running system clock
#   qsfp_intf           board interface of the QSFP0 lanes (qsfp0_4x)
#   qsfp_clk_intf/_mhz  board interface and frequency of its GT reference clock
#   cmac_core, gt_group, gt_lanes   CMAC site and GT channels of QSFP0
#   cmac_extra          extra CMAC CONFIG.* settings (dict), may be empty
#   tie_low_outputs     board output pins that must be driven low (list), may be empty
#   tx_fifo_depth, rx_fifo_depth    clock-crossing FIFO depths in 64-byte words
#   max_frame_bytes     the CMAC's RX_MAX_PACKET_LEN
proc tandem_block_design {name cfg} {
    create_bd_design $name
    set mhz [dict get $cfg engine_mhz]

    # --- board-level ports, named after the board interfaces they carry -----------------
    set pcie_intf [dict get $cfg pcie_intf]
    set refclk_intf [dict get $cfg pcie_refclk_intf]
    set perst_intf [dict get $cfg pcie_perst_intf]
    set sysclk_intf [dict get $cfg sysclk_intf]
    set qsfp_intf [dict get $cfg qsfp_intf]
    set qsfp_clk_intf [dict get $cfg qsfp_clk_intf]

    create_bd_intf_port -mode Master -vlnv xilinx.com:interface:pcie_7x_mgt_rtl:1.0 $pcie_intf
    set_property CONFIG.FREQ_HZ 100000000 \
        [create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:diff_clock_rtl:1.0 $refclk_intf]
    set_property CONFIG.POLARITY ACTIVE_LOW [create_bd_port -dir I -type rst $perst_intf]
    set_property CONFIG.FREQ_HZ [dict get $cfg sysclk_hz] \
        [create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:diff_clock_rtl:1.0 $sysclk_intf]
    create_bd_intf_port -mode Master -vlnv xilinx.com:interface:gt_rtl:1.0 $qsfp_intf
    set_property CONFIG.FREQ_HZ [expr {round([dict get $cfg qsfp_clk_mhz] * 1000000)}] \
        [create_bd_intf_port -mode Slave -vlnv xilinx.com:interface:diff_clock_rtl:1.0 $qsfp_clk_intf]

    # --- PCIe: reference clock buffer and the XDMA in AXI Bridge mode -------------------
    set refbuf [create_bd_cell -type ip -vlnv xilinx.com:ip:util_ds_buf pcie_refclk_buf]
    set_property -dict [list \
        CONFIG.C_BUF_TYPE {IBUFDSGTE} \
        CONFIG.DIFF_CLK_IN_BOARD_INTERFACE $refclk_intf \
        CONFIG.USE_BOARD_FLOW {true} \
    ] $refbuf
    connect_bd_intf_net [get_bd_intf_ports $refclk_intf] [tandem_intf pcie_refclk_buf/CLK_IN_D]

    set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:xdma shell_dma]
    set_property -dict [list \
        CONFIG.PCIE_BOARD_INTERFACE $pcie_intf \
        CONFIG.SYS_RST_N_BOARD_INTERFACE $perst_intf \
        CONFIG.functional_mode {AXI_Bridge} \
        CONFIG.mode_selection {Advanced} \
        CONFIG.device_port_type {PCI_Express_Endpoint_device} \
        CONFIG.pl_link_cap_max_link_width {X16} \
        CONFIG.pl_link_cap_max_link_speed {8.0_GT/s} \
        CONFIG.axi_data_width {512_bit} \
        CONFIG.axisten_freq $mhz \
        CONFIG.axi_addr_width {64} \
        CONFIG.en_axi_slave_if {true} \
        CONFIG.en_axi_master_if {true} \
        CONFIG.xdma_axilite_slave {false} \
        CONFIG.pf0_bar0_enabled {true} \
        CONFIG.pf0_bar0_64bit {false} \
        CONFIG.pf0_bar0_prefetchable {false} \
        CONFIG.pf0_bar0_scale {Kilobytes} \
        CONFIG.pf0_bar0_size {64} \
        CONFIG.pciebar2axibar_0 {0x0000000000000000} \
        CONFIG.pf0_bar2_enabled {true} \
        CONFIG.pf0_bar2_64bit {true} \
        CONFIG.pf0_bar2_prefetchable {false} \
        CONFIG.pf0_bar2_scale {Kilobytes} \
        CONFIG.pf0_bar2_size {64} \
        CONFIG.pciebar2axibar_2 {0x0000000000010000} \
        CONFIG.axibar_num {1} \
        CONFIG.axibar2pciebar_0 {0x0000000000000000} \
        CONFIG.pf0_msi_enabled {false} \
        CONFIG.pf0_msix_enabled {true} \
        CONFIG.pf0_msix_impl_locn {Internal} \
        CONFIG.bar_indicator {BAR_3:2} \
        CONFIG.pf0_msix_cap_table_bir {BAR_3:2} \
        CONFIG.pf0_msix_cap_pba_bir {BAR_3:2} \
        CONFIG.pf0_msix_cap_table_size {01F} \
        CONFIG.xdma_num_usr_irq {1} \
        CONFIG.pf0_base_class_menu {Processing_accelerators} \
    ] $dma
    connect_bd_intf_net [tandem_intf shell_dma/pcie_mgt] [get_bd_intf_ports $pcie_intf]
    tandem_net pcie_refclk_buf/IBUF_DS_ODIV2 shell_dma/sys_clk
    tandem_net pcie_refclk_buf/IBUF_OUT shell_dma/sys_clk_gt
    connect_bd_net [get_bd_ports $perst_intf] [tandem_pin shell_dma/sys_rst_n]

    # --- the engine and its wrapper (module reference) ---------------------------------
    create_bd_cell -type module -reference tandem_shell_top tandem
    tandem_net shell_dma/axi_aclk tandem/clk
    tandem_net tandem/irq shell_dma/usr_irq_req
    tandem_intf_net tandem/m_axib shell_dma/S_AXI_B

    set smc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect bar_smc]
    set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] $smc
    tandem_intf_net shell_dma/M_AXI_B bar_smc/S00_AXI
    tandem_intf_net bar_smc/M00_AXI tandem/s_axil
    tandem_net shell_dma/axi_aclk bar_smc/aclk
    tandem_net shell_dma/axi_aresetn bar_smc/aresetn

    # --- free-running init clock for the CMAC -----------------------------------------
    set wiz [create_bd_cell -type ip -vlnv xilinx.com:ip:clk_wiz sysclk_wiz]
    set_property -dict [list \
        CONFIG.CLK_IN1_BOARD_INTERFACE $sysclk_intf \
        CONFIG.USE_BOARD_FLOW {true} \
        CONFIG.PRIM_SOURCE {Differential_clock_capable_pin} \
        CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {100.000} \
        CONFIG.USE_RESET {false} \
        CONFIG.USE_LOCKED {true} \
    ] $wiz
    connect_bd_intf_net [get_bd_intf_ports $sysclk_intf] [tandem_intf sysclk_wiz/CLK_IN1_D]

    # --- 100G MAC on QSFP0 ---------------------------------------------------------------
    set lanes [dict get $cfg gt_lanes]
    set cmac [create_bd_cell -type ip -vlnv xilinx.com:ip:cmac_usplus link_cmac]
    set cmac_props [list \
        CONFIG.CMAC_CAUI4_MODE {1} \
        CONFIG.NUM_LANES {4x25} \
        CONFIG.USER_INTERFACE {AXIS} \
        CONFIG.GT_REF_CLK_FREQ [dict get $cfg qsfp_clk_mhz] \
        CONFIG.GT_DRP_CLK {100.00} \
        CONFIG.INCLUDE_RS_FEC {1} \
        CONFIG.ENABLE_AXI_INTERFACE {0} \
        CONFIG.INCLUDE_STATISTICS_COUNTERS {0} \
        CONFIG.TX_FLOW_CONTROL {0} \
        CONFIG.RX_FLOW_CONTROL {0} \
        CONFIG.ENABLE_PIPELINE_REG {1} \
        CONFIG.RX_MAX_PACKET_LEN [dict get $cfg max_frame_bytes] \
        CONFIG.CMAC_CORE_SELECT [dict get $cfg cmac_core] \
        CONFIG.GT_GROUP_SELECT [dict get $cfg gt_group] \
        CONFIG.LANE1_GT_LOC [lindex $lanes 0] \
        CONFIG.LANE2_GT_LOC [lindex $lanes 1] \
        CONFIG.LANE3_GT_LOC [lindex $lanes 2] \
        CONFIG.LANE4_GT_LOC [lindex $lanes 3] \
        CONFIG.ETHERNET_BOARD_INTERFACE $qsfp_intf \
        CONFIG.DIFFCLK_BOARD_INTERFACE $qsfp_clk_intf \
    ]
    dict for {k v} [dict get $cfg cmac_extra] { lappend cmac_props $k $v }
    set_property -dict $cmac_props $cmac
    connect_bd_intf_net [tandem_intf link_cmac/gt_serial_port] [get_bd_intf_ports $qsfp_intf]
    connect_bd_intf_net [get_bd_intf_ports $qsfp_clk_intf] [tandem_intf link_cmac/gt_ref_clk]
    tandem_net sysclk_wiz/clk_out1 link_cmac/init_clk link_cmac/drp_clk
    # Receive user interface on the transmit user clock (CMAC example design).
    tandem_net link_cmac/gt_txusrclk2 link_cmac/rx_clk

    # --- CMAC bring-up control (module reference) ---------------------------------------
    create_bd_cell -type module -reference tandem_link_ctl link_ctl
    tandem_net sysclk_wiz/clk_out1 link_ctl/init_clk
    tandem_net sysclk_wiz/locked link_ctl/init_locked
    tandem_net link_cmac/gt_txusrclk2 link_ctl/clk
    tandem_net link_cmac/usr_tx_reset link_ctl/usr_tx_reset
    tandem_net link_cmac/usr_rx_reset link_ctl/usr_rx_reset
    tandem_net link_cmac/stat_rx_aligned link_ctl/stat_rx_aligned
    foreach p $::tandem_cmac_ctl_pins {
        tandem_net link_ctl/$p link_cmac/$p
    }

    # --- clock crossings between the engine (axi_aclk) and the CMAC (gt_txusrclk2) -------
    # axis_data_fifo with independent clocks (an xpm_fifo_axis inside; its XPM CDC
    # constraints come with the IP, so the XDC adds none for these paths). 64-byte words.
    # tx_fifo: packet mode, because the CMAC needs a frame's beats back to back once it
    #   has started (a gap is a transmit underflow); a frame leaves the FIFO only when
    #   its last beat is in, so the depth holds the largest frame the CMAC passes.
    # rx_fifo: the CMAC cannot be stalled (its receive side has no tready); the FIFO
    #   absorbs the engine's back-pressure for rx_fifo_depth words, beyond that beats are
    #   lost and the engine's CRC32C check rejects the frame.
    foreach {fifo depth mode} [list \
        tx_fifo [dict get $cfg tx_fifo_depth] 2 \
        rx_fifo [dict get $cfg rx_fifo_depth] 1] {
        set f [create_bd_cell -type ip -vlnv xilinx.com:ip:axis_data_fifo $fifo]
        set_property -dict [list \
            CONFIG.TDATA_NUM_BYTES {64} \
            CONFIG.HAS_TKEEP {1} \
            CONFIG.HAS_TLAST {1} \
            CONFIG.FIFO_DEPTH $depth \
            CONFIG.FIFO_MODE $mode \
            CONFIG.IS_ACLK_ASYNC {1} \
            CONFIG.SYNCHRONIZATION_STAGES {3} \
            CONFIG.FIFO_MEMORY_TYPE {block} \
        ] $f
    }
    tandem_intf_net tandem/tx_axis tx_fifo/S_AXIS
    tandem_intf_net tx_fifo/M_AXIS link_cmac/axis_tx
    tandem_net shell_dma/axi_aclk tx_fifo/s_axis_aclk
    tandem_net shell_dma/axi_aresetn tx_fifo/s_axis_aresetn
    tandem_net link_cmac/gt_txusrclk2 tx_fifo/m_axis_aclk

    tandem_intf_net link_cmac/axis_rx rx_fifo/S_AXIS
    tandem_intf_net rx_fifo/M_AXIS tandem/rx_axis
    tandem_net link_cmac/gt_txusrclk2 rx_fifo/s_axis_aclk
    tandem_net link_ctl/rx_fifo_aresetn rx_fifo/s_axis_aresetn
    tandem_net shell_dma/axi_aclk rx_fifo/m_axis_aclk

    # --- board pins that must be driven low (U280: HBM_CATTRIP) ------------------------
    set low [dict get $cfg tie_low_outputs]
    if {[llength $low]} {
        set zero [create_bd_cell -type ip -vlnv xilinx.com:ip:xlconstant board_low]
        set_property -dict [list CONFIG.CONST_VAL {0} CONFIG.CONST_WIDTH {1}] $zero
        foreach p $low {
            connect_bd_net [tandem_pin board_low/dout] [create_bd_port -dir O $p]
        }
    }

    # --- address map --------------------------------------------------------------------
    # BAR0 (64 KiB) -> the engine's registers at AXI address 0 (pciebar2axibar_0 = 0).
    assign_bd_address -target_address_space [get_bd_addr_spaces shell_dma/M_AXI_B] \
        -offset 0x0 -range 64K [get_bd_addr_segs -of_objects [tandem_intf tandem/s_axil]]
    # The engine's DMA addresses are host IOVAs: one window from AXI address 0 over the
    # low 2^48 bytes, translated 1:1 (axibar2pciebar_0 = 0) into PCIe memory addresses.
    assign_bd_address -target_address_space [get_bd_addr_spaces tandem/m_axib] \
        -offset 0x0 -range 256T [get_bd_addr_segs -of_objects [tandem_intf shell_dma/S_AXI_B]]

    validate_bd_design
    save_bd_design
    return $name
}
