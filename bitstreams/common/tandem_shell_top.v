// Shell wrapper for the Alveo recipes: joins the generated engine (`EngineTop` emitted as
// module `tandem_engine` by `emit-verilog engine 512 gen/engine.v tandem_engine`) to the
// interfaces the vendor shell IP offers. Board-independent; both alveo-u250 and
// alveo-u280 read it. NOT RUN through Vivado here (see bitstreams/README.md); it is
// linted against the generated engine by `bitstreams/lint-shell.sh`.
//
// - s_axil_*   : the PCIe IP's AXI4-Lite master (BAR0), 32-bit address, low 16 bits used.
// - m_axib_*   : the PCIe IP's AXI4 slave bridge (card-initiated access to host memory):
//                the engine's DMA master, 64-bit address, 512-bit data, ID 0, INCR only.
// - tx_axis_*  : to the 100G MAC's transmit AXI4-Stream (512 bits).
// - rx_axis_*  : from the 100G MAC's receive AXI4-Stream (512 bits). The MAC cannot be
//                stalled; rx_axis_tready goes to the clock-crossing FIFO the block design
//                puts between MAC and engine. Beats that arrive while that FIFO is full are
//                lost (not counted here); the engine sees a short frame whose CRC32C
//                fails and counts it in CRC_ERRORS.
// All ports are in the engine clock domain `clk`; clock crossing to the MAC's user clock
// is the block design's job (common/block_design.tcl: axis_data_fifo with independent
// clocks), not this wrapper's.
//
// In the block design this module is a module reference (cell `tandem`). Vivado infers
// one bus interface per port-name prefix: s_axil (AXI4-Lite slave), m_axib (AXI4
// master), tx_axis (AXI4-Stream master), rx_axis (AXI4-Stream slave); the attributes on
// clk and irq name the clock's interfaces and frequency and mark irq as a level
// interrupt. bitstreams/check-recipes.tcl checks that every pin and interface the block
// design names on `tandem` exists here.
module tandem_shell_top (
    (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 clk CLK" *)
    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axil:m_axib:tx_axis:rx_axis, FREQ_HZ 250000000" *)
    input  wire         clk,
    // AXI4-Lite slave (BAR0)
    input  wire [31:0]  s_axil_awaddr,
    input  wire         s_axil_awvalid,
    output wire         s_axil_awready,
    input  wire [31:0]  s_axil_wdata,
    input  wire [3:0]   s_axil_wstrb,
    input  wire         s_axil_wvalid,
    output wire         s_axil_wready,
    output wire [1:0]   s_axil_bresp,
    output wire         s_axil_bvalid,
    input  wire         s_axil_bready,
    input  wire [31:0]  s_axil_araddr,
    input  wire         s_axil_arvalid,
    output wire         s_axil_arready,
    output wire [31:0]  s_axil_rdata,
    output wire [1:0]   s_axil_rresp,
    output wire         s_axil_rvalid,
    input  wire         s_axil_rready,
    // AXI4 master to the slave bridge (host memory)
    output wire [3:0]   m_axib_awid,
    output wire [63:0]  m_axib_awaddr,
    output wire [7:0]   m_axib_awlen,
    output wire [2:0]   m_axib_awsize,
    output wire [1:0]   m_axib_awburst,
    output wire         m_axib_awlock,
    output wire [3:0]   m_axib_awcache,
    output wire [2:0]   m_axib_awprot,
    output wire         m_axib_awvalid,
    input  wire         m_axib_awready,
    output wire [511:0] m_axib_wdata,
    output wire [63:0]  m_axib_wstrb,
    output wire         m_axib_wlast,
    output wire         m_axib_wvalid,
    input  wire         m_axib_wready,
    input  wire [3:0]   m_axib_bid,
    input  wire [1:0]   m_axib_bresp,
    input  wire         m_axib_bvalid,
    output wire         m_axib_bready,
    output wire [3:0]   m_axib_arid,
    output wire [63:0]  m_axib_araddr,
    output wire [7:0]   m_axib_arlen,
    output wire [2:0]   m_axib_arsize,
    output wire [1:0]   m_axib_arburst,
    output wire         m_axib_arlock,
    output wire [3:0]   m_axib_arcache,
    output wire [2:0]   m_axib_arprot,
    output wire         m_axib_arvalid,
    input  wire         m_axib_arready,
    input  wire [3:0]   m_axib_rid,
    input  wire [511:0] m_axib_rdata,
    input  wire [1:0]   m_axib_rresp,
    input  wire         m_axib_rlast,
    input  wire         m_axib_rvalid,
    output wire         m_axib_rready,
    // Link to the MAC
    output wire [511:0] tx_axis_tdata,
    output wire [63:0]  tx_axis_tkeep,
    output wire         tx_axis_tlast,
    output wire         tx_axis_tvalid,
    input  wire         tx_axis_tready,
    output wire         tx_axis_tuser,
    input  wire [511:0] rx_axis_tdata,
    input  wire [63:0]  rx_axis_tkeep,
    input  wire         rx_axis_tlast,
    input  wire         rx_axis_tvalid,
    output wire         rx_axis_tready,
    // Interrupt (to the PCIe IP's user interrupt 0, sent as MSI-X vector 0). Level:
    // IRQ_STATUS & IRQ_ENABLE is not zero.
    (* X_INTERFACE_INFO = "xilinx.com:signal:interrupt:1.0 irq INTERRUPT" *)
    (* X_INTERFACE_PARAMETER = "SENSITIVITY LEVEL_HIGH" *)
    output wire         irq
);
    // Fixed AXI4 attributes: one ID, normal non-secure data, modifiable bufferable.
    assign m_axib_awid    = 4'd0;
    assign m_axib_arid    = 4'd0;
    assign m_axib_awlock  = 1'b0;
    assign m_axib_arlock  = 1'b0;
    assign m_axib_awcache = 4'b0011;
    assign m_axib_arcache = 4'b0011;
    assign m_axib_awprot  = 3'b010;
    assign m_axib_arprot  = 3'b010;
    assign tx_axis_tuser  = 1'b0;

    tandem_engine engine (
        .clock(clk),
        .s_axil_awaddr(s_axil_awaddr[15:0]), .s_axil_awvalid(s_axil_awvalid), .s_axil_awready(s_axil_awready),
        .s_axil_wdata(s_axil_wdata), .s_axil_wstrb(s_axil_wstrb), .s_axil_wvalid(s_axil_wvalid), .s_axil_wready(s_axil_wready),
        .s_axil_bresp(s_axil_bresp), .s_axil_bvalid(s_axil_bvalid), .s_axil_bready(s_axil_bready),
        .s_axil_araddr(s_axil_araddr[15:0]), .s_axil_arvalid(s_axil_arvalid), .s_axil_arready(s_axil_arready),
        .s_axil_rdata(s_axil_rdata), .s_axil_rresp(s_axil_rresp), .s_axil_rvalid(s_axil_rvalid), .s_axil_rready(s_axil_rready),
        .m_axi_awaddr(m_axib_awaddr), .m_axi_awlen(m_axib_awlen), .m_axi_awsize(m_axib_awsize), .m_axi_awburst(m_axib_awburst),
        .m_axi_awvalid(m_axib_awvalid), .m_axi_awready(m_axib_awready),
        .m_axi_wdata(m_axib_wdata), .m_axi_wstrb(m_axib_wstrb), .m_axi_wlast(m_axib_wlast),
        .m_axi_wvalid(m_axib_wvalid), .m_axi_wready(m_axib_wready),
        .m_axi_bresp(m_axib_bresp), .m_axi_bvalid(m_axib_bvalid), .m_axi_bready(m_axib_bready),
        .m_axi_araddr(m_axib_araddr), .m_axi_arlen(m_axib_arlen), .m_axi_arsize(m_axib_arsize), .m_axi_arburst(m_axib_arburst),
        .m_axi_arvalid(m_axib_arvalid), .m_axi_arready(m_axib_arready),
        .m_axi_rdata(m_axib_rdata), .m_axi_rresp(m_axib_rresp), .m_axi_rlast(m_axib_rlast),
        .m_axi_rvalid(m_axib_rvalid), .m_axi_rready(m_axib_rready),
        .m_axis_link_tdata(tx_axis_tdata), .m_axis_link_tkeep(tx_axis_tkeep), .m_axis_link_tlast(tx_axis_tlast),
        .m_axis_link_tvalid(tx_axis_tvalid), .m_axis_link_tready(tx_axis_tready),
        .s_axis_link_tdata(rx_axis_tdata), .s_axis_link_tkeep(rx_axis_tkeep), .s_axis_link_tlast(rx_axis_tlast),
        .s_axis_link_tvalid(rx_axis_tvalid), .s_axis_link_tready(rx_axis_tready),
        .irq(irq)
    );
endmodule
