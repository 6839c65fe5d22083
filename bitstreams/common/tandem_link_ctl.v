// Bring-up control for the 100G MAC (CMAC UltraScale+, AXI4-Stream user interface, no
// AXI4-Lite configuration port): the block design (common/block_design.tcl) connects these
// outputs to the CMAC's ctl_* / reset pins by name. Board-independent. NOT RUN through
// Vivado here (see bitstreams/README.md); linted by bitstreams/lint-shell.sh.
//
// Two clock domains, no path between them:
// - init_clk: the free-running CMAC init/DRP clock (100 MHz from the board's system
//   clock through a clock wizard). sys_reset is held for 2^RESET_BITS init_clk cycles
//   after the wizard locks (CMAC user guide PG203: sys_reset must be asserted until
//   init_clk is stable).
// - clk: the CMAC's gt_txusrclk2 (322.265625 MHz). The block design also feeds it to the
//   CMAC's rx_clk, so the CMAC's receive user interface and stat_rx_aligned are in this
//   domain as well (as in the CMAC example design).
//
// Sequence (PG203 example design): the transmitter sends remote-fault indication and is
// not enabled until the receiver is aligned; then it is enabled and stops sending RFI.
// RS-FEC (Clause 91) is enabled in both directions, as 100GBASE-SR4/CR4 need; both ends
// of a Tandem link are Tandem cards, so they agree.
module tandem_link_ctl #(
    parameter integer RESET_BITS = 10
) (
    // init_clk domain
    input  wire        init_clk,
    input  wire        init_locked,
    output wire        sys_reset,
    // gt_txusrclk2 domain
    input  wire        clk,
    input  wire        usr_tx_reset,
    input  wire        usr_rx_reset,
    input  wire        stat_rx_aligned,
    output wire        ctl_tx_enable,
    output wire        ctl_tx_send_rfi,
    output wire        ctl_tx_send_lfi,
    output wire        ctl_tx_send_idle,
    output wire        ctl_tx_test_pattern,
    output wire        ctl_rx_enable,
    output wire        ctl_rx_force_resync,
    output wire        ctl_rx_test_pattern,
    output wire        ctl_tx_rsfec_enable,
    output wire        ctl_rx_rsfec_enable,
    output wire        ctl_rx_rsfec_enable_correction,
    output wire        ctl_rx_rsfec_enable_indication,
    output wire        ctl_rsfec_ieee_error_indication_mode,
    output wire        core_tx_reset,
    output wire        core_rx_reset,
    output wire        core_drp_reset,
    output wire        gtwiz_reset_tx_datapath,
    output wire        gtwiz_reset_rx_datapath,
    output wire [11:0] gt_loopback_in,
    // Active-low reset for the receive clock-crossing FIFO's write side (CMAC domain).
    output wire        rx_fifo_aresetn,
    // Receiver aligned and transmitter enabled (for an LED or a status register).
    output wire        link_up
);
    // --- init_clk domain: power-on reset for the CMAC -------------------------------------
    (* ASYNC_REG = "TRUE" *) reg [1:0] locked_sync = 2'b00;
    reg [RESET_BITS-1:0] hold = {RESET_BITS{1'b0}};
    reg                  sys_reset_r = 1'b1;
    always @(posedge init_clk) begin
        locked_sync <= {locked_sync[0], init_locked};
        if (!locked_sync[1]) begin
            hold        <= {RESET_BITS{1'b0}};
            sys_reset_r <= 1'b1;
        end else if (hold != {RESET_BITS{1'b1}}) begin
            hold        <= hold + 1'b1;
            sys_reset_r <= 1'b1;
        end else begin
            sys_reset_r <= 1'b0;
        end
    end
    assign sys_reset = sys_reset_r;

    // --- gt_txusrclk2 domain: transmitter enable after receive alignment ------------------
    // stat_rx_aligned is already in this domain (rx_clk = gt_txusrclk2); two flops anyway,
    // so the sequence does not depend on that wiring choice.
    (* ASYNC_REG = "TRUE" *) reg [1:0] aligned_sync = 2'b00;
    reg tx_en = 1'b0;
    always @(posedge clk) begin
        aligned_sync <= {aligned_sync[0], stat_rx_aligned};
        if (usr_tx_reset) tx_en <= 1'b0;
        else              tx_en <= aligned_sync[1];
    end
    assign ctl_tx_enable       = tx_en;
    assign ctl_tx_send_rfi     = ~tx_en;
    assign ctl_tx_send_lfi     = 1'b0;
    assign ctl_tx_send_idle    = 1'b0;
    assign ctl_tx_test_pattern = 1'b0;
    assign ctl_rx_enable       = 1'b1;
    assign ctl_rx_force_resync = 1'b0;
    assign ctl_rx_test_pattern = 1'b0;

    assign ctl_tx_rsfec_enable                  = 1'b1;
    assign ctl_rx_rsfec_enable                  = 1'b1;
    assign ctl_rx_rsfec_enable_correction       = 1'b1;
    assign ctl_rx_rsfec_enable_indication       = 1'b1;
    assign ctl_rsfec_ieee_error_indication_mode = 1'b0;

    assign core_tx_reset           = 1'b0;
    assign core_rx_reset           = 1'b0;
    assign core_drp_reset          = 1'b0;
    assign gtwiz_reset_tx_datapath = 1'b0;
    assign gtwiz_reset_rx_datapath = 1'b0;
    assign gt_loopback_in          = 12'd0;

    assign rx_fifo_aresetn = ~usr_rx_reset;
    assign link_up         = tx_en & aligned_sync[1];
endmodule
