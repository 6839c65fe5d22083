//! AXI4 master for the engine's DMA: byte-addressed read and write commands over
//! `W`-bit INCR bursts.

use rust_hdl::prelude::*;

/// Byte address on the DMA bus.
pub type DmaAddr = Bits<64>;
/// Byte count of one command.
pub type DmaLen = Bits<32>;

/// Largest burst AXI4 allows for INCR, in beats.
pub const AXI_MAX_BEATS: u64 = 256;
/// Bursts never cross this boundary (AXI4 rule).
pub const AXI_BOUNDARY: u64 = 4096;

/// AXI4 master with two independent command channels.
///
/// Read: a command (`rd_cmd_*`, byte address and byte count, count >= 1) becomes INCR
/// bursts on AR; the R beats are realigned so that the first byte leaves in lane 0 of
/// the `m_rd_*` stream, exactly `len` bytes, `tlast` on the final beat. Three read
/// commands may be in progress: the next is taken as soon as every burst of the one
/// before is requested, so its read latency passes while the earlier data still flows
/// (the data comes back in command order, without a gap between commands). Write: a command (`wr_cmd_*`) takes exactly
/// `len` bytes from the `s_wr_*` stream (byte 0 in lane 0, `tkeep`/`tlast` not looked
/// at) and writes them with byte strobes at the address; writes are posted: the next
/// command is taken once every beat of the one before is formed, without waiting for
/// its B responses (at most two commands wait for them), and `wr_done` pulses, with the
/// command's `wr_cmd_tag`, once every burst of a command has its B response, in command
/// order. Bursts are at most `max_burst` beats (the `MAX_BURST` register; 0 counts as 1,
/// anything above 256 as 256) and never cross a 4 KiB boundary. Every channel honours
/// back-pressure. A non-OKAY RRESP or BRESP sets `error` (sticky until `clear_error`);
/// the data moves on regardless.
#[derive(LogicBlock)]
pub struct AxiDma<const W: usize, const K: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Largest burst in beats (`MAX_BURST`).
    pub max_burst: Signal<In, Bits<32>>,
    /// A response other than OKAY was seen.
    pub error: Signal<Out, Bit>,
    /// Clears `error`.
    pub clear_error: Signal<In, Bit>,
    /// Read command valid.
    pub rd_cmd_valid: Signal<In, Bit>,
    /// Read command taken (no read in progress).
    pub rd_cmd_ready: Signal<Out, Bit>,
    /// Read command: byte address.
    pub rd_cmd_addr: Signal<In, DmaAddr>,
    /// Read command: byte count (at least 1).
    pub rd_cmd_len: Signal<In, DmaLen>,
    /// Read data (source), first byte in lane 0.
    pub m_rd_tdata: Signal<Out, Bits<W>>,
    /// Read data byte enables (contiguous from lane 0).
    pub m_rd_tkeep: Signal<Out, Bits<K>>,
    /// Read data last beat of the command.
    pub m_rd_tlast: Signal<Out, Bit>,
    /// Read data valid.
    pub m_rd_tvalid: Signal<Out, Bit>,
    /// Read data ready.
    pub m_rd_tready: Signal<In, Bit>,
    /// Write command valid.
    pub wr_cmd_valid: Signal<In, Bit>,
    /// Write command taken (no write in progress).
    pub wr_cmd_ready: Signal<Out, Bit>,
    /// Write command: byte address.
    pub wr_cmd_addr: Signal<In, DmaAddr>,
    /// Write command: byte count (at least 1).
    pub wr_cmd_len: Signal<In, DmaLen>,
    /// Write command: a tag returned with its `wr_done`.
    pub wr_cmd_tag: Signal<In, Bit>,
    /// Write data (sink), first byte in lane 0.
    pub s_wr_tdata: Signal<In, Bits<W>>,
    /// Write data valid.
    pub s_wr_tvalid: Signal<In, Bit>,
    /// Write data ready.
    pub s_wr_tready: Signal<Out, Bit>,
    /// One-cycle pulse: a write command's last B response arrived (commands finish in
    /// the order they were taken).
    pub wr_done: Signal<Out, Bit>,
    /// The finished command's `wr_cmd_tag`, with `wr_done`.
    pub wr_done_tag: Signal<Out, Bit>,
    /// A write command's data is being taken (low again in the cycle its data ends).
    pub wr_active: Signal<Out, Bit>,
    /// AXI4 write address.
    pub m_axi_awaddr: Signal<Out, DmaAddr>,
    /// AXI4 write burst length minus one.
    pub m_axi_awlen: Signal<Out, Bits<8>>,
    /// AXI4 write beat size (log2 of bytes per beat).
    pub m_axi_awsize: Signal<Out, Bits<3>>,
    /// AXI4 write burst type (INCR).
    pub m_axi_awburst: Signal<Out, Bits<2>>,
    /// AXI4 write address valid.
    pub m_axi_awvalid: Signal<Out, Bit>,
    /// AXI4 write address ready.
    pub m_axi_awready: Signal<In, Bit>,
    /// AXI4 write data.
    pub m_axi_wdata: Signal<Out, Bits<W>>,
    /// AXI4 write strobes.
    pub m_axi_wstrb: Signal<Out, Bits<K>>,
    /// AXI4 write last beat of a burst.
    pub m_axi_wlast: Signal<Out, Bit>,
    /// AXI4 write data valid.
    pub m_axi_wvalid: Signal<Out, Bit>,
    /// AXI4 write data ready.
    pub m_axi_wready: Signal<In, Bit>,
    /// AXI4 write response.
    pub m_axi_bresp: Signal<In, Bits<2>>,
    /// AXI4 write response valid.
    pub m_axi_bvalid: Signal<In, Bit>,
    /// AXI4 write response ready (always 1).
    pub m_axi_bready: Signal<Out, Bit>,
    /// AXI4 read address.
    pub m_axi_araddr: Signal<Out, DmaAddr>,
    /// AXI4 read burst length minus one.
    pub m_axi_arlen: Signal<Out, Bits<8>>,
    /// AXI4 read beat size.
    pub m_axi_arsize: Signal<Out, Bits<3>>,
    /// AXI4 read burst type (INCR).
    pub m_axi_arburst: Signal<Out, Bits<2>>,
    /// AXI4 read address valid.
    pub m_axi_arvalid: Signal<Out, Bit>,
    /// AXI4 read address ready.
    pub m_axi_arready: Signal<In, Bit>,
    /// AXI4 read data.
    pub m_axi_rdata: Signal<In, Bits<W>>,
    /// AXI4 read response.
    pub m_axi_rresp: Signal<In, Bits<2>>,
    /// AXI4 read last beat of a burst.
    pub m_axi_rlast: Signal<In, Bit>,
    /// AXI4 read data valid.
    pub m_axi_rvalid: Signal<In, Bit>,
    /// AXI4 read data ready.
    pub m_axi_rready: Signal<Out, Bit>,
    // Shared.
    mb: Signal<Local, Bits<32>>,
    err: DFF<Bit>,
    // Read channel.
    rd_busy: DFF<Bit>,
    rd_off: DFF<Bits<16>>,
    rd_left: DFF<Bits<32>>,
    rd_first: DFF<Bit>,
    rd_in_left: DFF<Bits<32>>,
    rd_flush: DFF<Bit>,
    rd_carry: DFF<Bits<W>>,
    ar_addr: DFF<DmaAddr>,
    ar_left: DFF<Bits<32>>,
    ar_valid: DFF<Bit>,
    ar_out_addr: DFF<DmaAddr>,
    ar_out_len: DFF<Bits<8>>,
    ar_to4k: Signal<Local, Bits<32>>,
    ar_n1: Signal<Local, Bits<32>>,
    ar_n: Signal<Local, Bits<32>>,
    rd_out_data: DFF<Bits<W>>,
    rd_out_keep: DFF<Bits<K>>,
    rd_out_last: DFF<Bit>,
    rd_out_valid: DFF<Bit>,
    rd_out_free: Signal<Local, Bit>,
    rd_joined: Signal<Local, Bits<W>>,
    rd_last_keep: Signal<Local, Bits<K>>,
    rd_cmd_off: Signal<Local, Bits<16>>,
    rd_cmd_in: Signal<Local, Bits<32>>,
    rq_valid: DFF<Bit>,
    rq_off: DFF<Bits<16>>,
    rq_len: DFF<Bits<32>>,
    rq_in: DFF<Bits<32>>,
    rq1_valid: DFF<Bit>,
    rq1_off: DFF<Bits<16>>,
    rq1_len: DFF<Bits<32>>,
    rq1_in: DFF<Bits<32>>,
    rd_end: Signal<Local, Bit>,
    rd_load: Signal<Local, Bit>,
    // Write channel.
    wr_busy: DFF<Bit>,
    wr_off: DFF<Bits<16>>,
    wr_in_left: DFF<Bits<32>>,
    wr_out_left: DFF<Bits<32>>,
    wr_first: DFF<Bit>,
    wr_flush: DFF<Bit>,
    wr_carry: DFF<Bits<W>>,
    wr_end_mask: DFF<Bits<K>>,
    aw_addr: DFF<DmaAddr>,
    aw_left: DFF<Bits<32>>,
    aw_valid: DFF<Bit>,
    aw_out_addr: DFF<DmaAddr>,
    aw_out_len: DFF<Bits<8>>,
    aw_to4k: Signal<Local, Bits<32>>,
    aw_n1: Signal<Local, Bits<32>>,
    aw_n: Signal<Local, Bits<32>>,
    pend_valid: DFF<Bit>,
    pend_len: DFF<Bits<32>>,
    burst_left: DFF<Bits<32>>,
    b_issued: DFF<Bits<16>>,
    b_recv: DFF<Bits<16>>,
    d0_valid: DFF<Bit>,
    d0_at: DFF<Bits<16>>,
    d0_tag: DFF<Bit>,
    d1_valid: DFF<Bit>,
    d1_at: DFF<Bits<16>>,
    d1_tag: DFF<Bit>,
    d_pop: Signal<Local, Bit>,
    data_end: Signal<Local, Bit>,
    w_data: DFF<Bits<W>>,
    w_strb: DFF<Bits<K>>,
    w_last: DFF<Bit>,
    w_valid: DFF<Bit>,
    w_free: Signal<Local, Bit>,
    w_beat: Signal<Local, Bit>,
    w_take: Signal<Local, Bit>,
    w_fire: Signal<Local, Bit>,
    w_shifted: Signal<Local, Bits<W>>,
    w_mask: Signal<Local, Bits<K>>,
    aw_load: Signal<Local, Bit>,
    b_fire: Signal<Local, Bit>,
    wr_cmd_off: Signal<Local, Bits<16>>,
    wr_cmd_end: Signal<Local, Bits<16>>,
    done: DFF<Bit>,
    done_tag: DFF<Bit>,
    wr_tag: DFF<Bit>,
    // Constants.
    lanes: Constant<Bits<16>>,
    lane_mask64: Constant<DmaAddr>,
    lane_bits: Constant<Bits<16>>,
    size: Constant<Bits<3>>,
    boundary: Constant<DmaAddr>,
    boundary_mask: Constant<DmaAddr>,
    max_beats: Constant<Bits<32>>,
    ones_k: Constant<Bits<K>>,
}

impl<const W: usize, const K: usize> Default for AxiDma<W, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const K: usize> AxiDma<W, K> {
    /// A DMA master for a `W`-bit AXI4 bus with `K = W / 8` byte lanes.
    pub fn new() -> Self {
        assert_eq!(W, 8 * K, "AxiDma: K = {K} byte lanes must be W / 8 for W = {W}");
        assert!(matches!(W, 64 | 128 | 256 | 512), "AxiDma: data width W = {W} is not supported (64, 128, 256 or 512 bits)");
        let lane_bits = K.trailing_zeros() as u64;
        Self {
            clock: Default::default(),
            max_burst: Default::default(),
            error: Default::default(),
            clear_error: Default::default(),
            rd_cmd_valid: Default::default(),
            rd_cmd_ready: Default::default(),
            rd_cmd_addr: Default::default(),
            rd_cmd_len: Default::default(),
            m_rd_tdata: Default::default(),
            m_rd_tkeep: Default::default(),
            m_rd_tlast: Default::default(),
            m_rd_tvalid: Default::default(),
            m_rd_tready: Default::default(),
            wr_cmd_valid: Default::default(),
            wr_cmd_ready: Default::default(),
            wr_cmd_addr: Default::default(),
            wr_cmd_len: Default::default(),
            s_wr_tdata: Default::default(),
            s_wr_tvalid: Default::default(),
            s_wr_tready: Default::default(),
            wr_cmd_tag: Default::default(),
            wr_done: Default::default(),
            wr_done_tag: Default::default(),
            wr_active: Default::default(),
            m_axi_awaddr: Default::default(),
            m_axi_awlen: Default::default(),
            m_axi_awsize: Default::default(),
            m_axi_awburst: Default::default(),
            m_axi_awvalid: Default::default(),
            m_axi_awready: Default::default(),
            m_axi_wdata: Default::default(),
            m_axi_wstrb: Default::default(),
            m_axi_wlast: Default::default(),
            m_axi_wvalid: Default::default(),
            m_axi_wready: Default::default(),
            m_axi_bresp: Default::default(),
            m_axi_bvalid: Default::default(),
            m_axi_bready: Default::default(),
            m_axi_araddr: Default::default(),
            m_axi_arlen: Default::default(),
            m_axi_arsize: Default::default(),
            m_axi_arburst: Default::default(),
            m_axi_arvalid: Default::default(),
            m_axi_arready: Default::default(),
            m_axi_rdata: Default::default(),
            m_axi_rresp: Default::default(),
            m_axi_rlast: Default::default(),
            m_axi_rvalid: Default::default(),
            m_axi_rready: Default::default(),
            mb: Default::default(),
            err: Default::default(),
            rd_busy: Default::default(),
            rd_off: Default::default(),
            rd_left: Default::default(),
            rd_first: Default::default(),
            rd_in_left: Default::default(),
            rd_flush: Default::default(),
            rd_carry: Default::default(),
            ar_addr: Default::default(),
            ar_left: Default::default(),
            ar_valid: Default::default(),
            ar_out_addr: Default::default(),
            ar_out_len: Default::default(),
            ar_to4k: Default::default(),
            ar_n1: Default::default(),
            ar_n: Default::default(),
            rd_out_data: Default::default(),
            rd_out_keep: Default::default(),
            rd_out_last: Default::default(),
            rd_out_valid: Default::default(),
            rd_out_free: Default::default(),
            rd_joined: Default::default(),
            rd_last_keep: Default::default(),
            rd_cmd_off: Default::default(),
            rd_cmd_in: Default::default(),
            rq_valid: Default::default(),
            rq_off: Default::default(),
            rq_len: Default::default(),
            rq_in: Default::default(),
            rq1_valid: Default::default(),
            rq1_off: Default::default(),
            rq1_len: Default::default(),
            rq1_in: Default::default(),
            rd_end: Default::default(),
            rd_load: Default::default(),
            wr_busy: Default::default(),
            wr_off: Default::default(),
            wr_in_left: Default::default(),
            wr_out_left: Default::default(),
            wr_first: Default::default(),
            wr_flush: Default::default(),
            wr_carry: Default::default(),
            wr_end_mask: Default::default(),
            aw_addr: Default::default(),
            aw_left: Default::default(),
            aw_valid: Default::default(),
            aw_out_addr: Default::default(),
            aw_out_len: Default::default(),
            aw_to4k: Default::default(),
            aw_n1: Default::default(),
            aw_n: Default::default(),
            pend_valid: Default::default(),
            pend_len: Default::default(),
            burst_left: Default::default(),
            b_issued: Default::default(),
            b_recv: Default::default(),
            d0_valid: Default::default(),
            d0_at: Default::default(),
            d0_tag: Default::default(),
            d1_valid: Default::default(),
            d1_at: Default::default(),
            d1_tag: Default::default(),
            d_pop: Default::default(),
            data_end: Default::default(),
            w_data: Default::default(),
            w_strb: Default::default(),
            w_last: Default::default(),
            w_valid: Default::default(),
            w_free: Default::default(),
            w_beat: Default::default(),
            w_take: Default::default(),
            w_fire: Default::default(),
            w_shifted: Default::default(),
            w_mask: Default::default(),
            aw_load: Default::default(),
            b_fire: Default::default(),
            wr_cmd_off: Default::default(),
            wr_cmd_end: Default::default(),
            done: Default::default(),
            done_tag: Default::default(),
            wr_tag: Default::default(),
            lanes: Constant::new((K as u64).into()),
            lane_mask64: Constant::new((K as u64 - 1).into()),
            lane_bits: Constant::new(lane_bits.into()),
            size: Constant::new(lane_bits.into()),
            boundary: Constant::new(AXI_BOUNDARY.into()),
            boundary_mask: Constant::new((AXI_BOUNDARY - 1).into()),
            max_beats: Constant::new(AXI_MAX_BEATS.into()),
            ones_k: Constant::new(!Bits::<K>::default()),
        }
    }
}

impl<const W: usize, const K: usize> Logic for AxiDma<W, K> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            err,
            rd_busy,
            rd_off,
            rd_left,
            rd_first,
            rd_in_left,
            rd_flush,
            rd_carry,
            ar_addr,
            ar_left,
            ar_valid,
            ar_out_addr,
            ar_out_len,
            rd_out_data,
            rd_out_keep,
            rd_out_last,
            rd_out_valid,
            rq_valid,
            rq_off,
            rq_len,
            rq_in,
            rq1_valid,
            rq1_off,
            rq1_len,
            rq1_in,
            wr_busy,
            wr_off,
            wr_in_left,
            wr_out_left,
            wr_first,
            wr_flush,
            wr_carry,
            wr_end_mask,
            aw_addr,
            aw_left,
            aw_valid,
            aw_out_addr,
            aw_out_len,
            pend_valid,
            pend_len,
            burst_left,
            b_issued,
            b_recv,
            d0_valid,
            d0_at,
            d0_tag,
            d1_valid,
            d1_at,
            d1_tag,
            w_data,
            w_strb,
            w_last,
            w_valid,
            done,
            done_tag,
            wr_tag
        );
        // Burst limit from MAX_BURST, clamped to 1..=256.
        self.mb.next = self.max_burst.val();
        if self.max_burst.val() == 0 {
            self.mb.next = 1.into();
        }
        if self.max_burst.val() > self.max_beats.val() {
            self.mb.next = self.max_beats.val();
        }
        self.error.next = self.err.q.val();
        if self.clear_error.val() {
            self.err.d.next = false;
        }
        // ---------------------------------------------------------------- read
        self.m_axi_araddr.next = self.ar_out_addr.q.val();
        self.m_axi_arlen.next = self.ar_out_len.q.val();
        self.m_axi_arsize.next = self.size.val();
        self.m_axi_arburst.next = 1.into();
        self.m_axi_arvalid.next = self.ar_valid.q.val();
        self.ar_to4k.next =
            bit_cast::<32, 64>((self.boundary.val() - (self.ar_addr.q.val() & self.boundary_mask.val())) >> self.lane_bits.val());
        self.ar_n1.next = self.ar_left.q.val();
        if self.mb.val() < self.ar_left.q.val() {
            self.ar_n1.next = self.mb.val();
        }
        self.ar_n.next = self.ar_n1.val();
        if self.ar_to4k.val() < self.ar_n1.val() {
            self.ar_n.next = self.ar_to4k.val();
        }
        if self.m_axi_arready.val() {
            self.ar_valid.d.next = false;
        }
        if (!self.ar_valid.q.val() | self.m_axi_arready.val()) & (self.ar_left.q.val() != 0) {
            self.ar_out_addr.d.next = self.ar_addr.q.val();
            self.ar_out_len.d.next = bit_cast::<8, 32>(self.ar_n.val() - 1);
            self.ar_valid.d.next = true;
            self.ar_addr.d.next = self.ar_addr.q.val() + (bit_cast::<64, 32>(self.ar_n.val()) << self.lane_bits.val());
            self.ar_left.d.next = self.ar_left.q.val() - self.ar_n.val();
        }
        self.m_rd_tdata.next = self.rd_out_data.q.val();
        self.m_rd_tkeep.next = self.rd_out_keep.q.val();
        self.m_rd_tlast.next = self.rd_out_last.q.val();
        self.m_rd_tvalid.next = self.rd_out_valid.q.val();
        self.rd_out_free.next = !self.rd_out_valid.q.val() | self.m_rd_tready.val();
        if self.m_rd_tready.val() {
            self.rd_out_valid.d.next = false;
        }
        self.rd_joined.next = self.m_axi_rdata.val();
        if self.rd_off.q.val() != 0 {
            self.rd_joined.next = (self.rd_carry.q.val() >> (self.rd_off.q.val() << 3))
                | (self.m_axi_rdata.val() << ((self.lanes.val() - self.rd_off.q.val()) << 3));
        }
        self.rd_last_keep.next = !(self.ones_k.val() << self.rd_left.q.val());
        self.rd_end.next = false;
        self.m_axi_rready.next = self.rd_busy.q.val() & self.rd_out_free.val() & !self.rd_flush.q.val() & (self.rd_in_left.q.val() != 0);
        if self.m_axi_rvalid.val() & self.m_axi_rready.val() {
            if self.m_axi_rresp.val() != 0 {
                self.err.d.next = true;
            }
            self.rd_in_left.d.next = self.rd_in_left.q.val() - 1;
            self.rd_carry.d.next = self.m_axi_rdata.val();
            self.rd_first.d.next = false;
            if (self.rd_off.q.val() != 0) & self.rd_first.q.val() {
                // The first beat of an unaligned read only fills the carry.
                if self.rd_in_left.q.val() == 1 {
                    self.rd_flush.d.next = true;
                }
            } else {
                self.rd_out_data.d.next = self.rd_joined.val();
                self.rd_out_valid.d.next = true;
                if self.rd_left.q.val() <= bit_cast::<32, 16>(self.lanes.val()) {
                    self.rd_out_keep.d.next = self.rd_last_keep.val();
                    self.rd_out_last.d.next = true;
                    self.rd_left.d.next = 0.into();
                    self.rd_busy.d.next = false;
                    self.rd_end.next = true;
                } else {
                    self.rd_out_keep.d.next = self.ones_k.val();
                    self.rd_out_last.d.next = false;
                    self.rd_left.d.next = self.rd_left.q.val() - bit_cast::<32, 16>(self.lanes.val());
                    if self.rd_in_left.q.val() == 1 {
                        self.rd_flush.d.next = true;
                    }
                }
            }
        }
        if self.rd_flush.q.val() & self.rd_out_free.val() {
            self.rd_out_data.d.next = self.rd_carry.q.val() >> (self.rd_off.q.val() << 3);
            self.rd_out_keep.d.next = self.rd_last_keep.val();
            self.rd_out_last.d.next = true;
            self.rd_out_valid.d.next = true;
            self.rd_flush.d.next = false;
            self.rd_busy.d.next = false;
            self.rd_end.next = true;
            self.rd_left.d.next = 0.into();
        }
        // A command is taken when the AR side has issued every burst of the one before
        // and the queue has room: it starts at once when the R side is idle, else it
        // waits in `rq`/`rq1` (its bursts are already requested) and starts in the cycle
        // the one before it ends.
        self.rd_cmd_ready.next = (self.ar_left.q.val() == 0) & !self.rq1_valid.q.val();
        self.rd_cmd_off.next = bit_cast::<16, 64>(self.rd_cmd_addr.val() & self.lane_mask64.val());
        self.rd_cmd_in.next =
            (self.rd_cmd_len.val() + bit_cast::<32, 16>(self.rd_cmd_off.val() + self.lanes.val() - 1)) >> self.lane_bits.val();
        self.rd_load.next = (!self.rd_busy.q.val() | self.rd_end.val()) & self.rq_valid.q.val();
        if self.rd_load.val() {
            self.rd_busy.d.next = true;
            self.rd_off.d.next = self.rq_off.q.val();
            self.rd_left.d.next = self.rq_len.q.val();
            self.rd_first.d.next = true;
            self.rd_flush.d.next = false;
            self.rd_in_left.d.next = self.rq_in.q.val();
            self.rq_valid.d.next = self.rq1_valid.q.val();
            self.rq_off.d.next = self.rq1_off.q.val();
            self.rq_len.d.next = self.rq1_len.q.val();
            self.rq_in.d.next = self.rq1_in.q.val();
            self.rq1_valid.d.next = false;
        }
        if self.rd_cmd_valid.val() & self.rd_cmd_ready.val() {
            self.ar_left.d.next = self.rd_cmd_in.val();
            self.ar_addr.d.next = self.rd_cmd_addr.val() & !self.lane_mask64.val();
            if self.rq_valid.q.val() & !self.rd_load.val() {
                self.rq1_valid.d.next = true;
                self.rq1_off.d.next = self.rd_cmd_off.val();
                self.rq1_len.d.next = self.rd_cmd_len.val();
                self.rq1_in.d.next = self.rd_cmd_in.val();
            } else if self.rq_valid.q.val() | (self.rd_busy.q.val() & !self.rd_end.val()) {
                self.rq_valid.d.next = true;
                self.rq_off.d.next = self.rd_cmd_off.val();
                self.rq_len.d.next = self.rd_cmd_len.val();
                self.rq_in.d.next = self.rd_cmd_in.val();
            } else {
                self.rd_busy.d.next = true;
                self.rd_off.d.next = self.rd_cmd_off.val();
                self.rd_left.d.next = self.rd_cmd_len.val();
                self.rd_first.d.next = true;
                self.rd_flush.d.next = false;
                self.rd_in_left.d.next = self.rd_cmd_in.val();
            }
        }
        // --------------------------------------------------------------- write
        self.m_axi_awaddr.next = self.aw_out_addr.q.val();
        self.m_axi_awlen.next = self.aw_out_len.q.val();
        self.m_axi_awsize.next = self.size.val();
        self.m_axi_awburst.next = 1.into();
        self.m_axi_awvalid.next = self.aw_valid.q.val();
        self.m_axi_bready.next = true;
        self.aw_to4k.next =
            bit_cast::<32, 64>((self.boundary.val() - (self.aw_addr.q.val() & self.boundary_mask.val())) >> self.lane_bits.val());
        self.aw_n1.next = self.aw_left.q.val();
        if self.mb.val() < self.aw_left.q.val() {
            self.aw_n1.next = self.mb.val();
        }
        self.aw_n.next = self.aw_n1.val();
        if self.aw_to4k.val() < self.aw_n1.val() {
            self.aw_n.next = self.aw_to4k.val();
        }
        if self.m_axi_awready.val() {
            self.aw_valid.d.next = false;
        }
        // A burst's length waits in `pend` until the W side starts it (one burst ahead).
        self.aw_load.next = (!self.aw_valid.q.val() | self.m_axi_awready.val()) & (self.aw_left.q.val() != 0) & !self.pend_valid.q.val();
        if self.aw_load.val() {
            self.aw_out_addr.d.next = self.aw_addr.q.val();
            self.aw_out_len.d.next = bit_cast::<8, 32>(self.aw_n.val() - 1);
            self.aw_valid.d.next = true;
            self.aw_addr.d.next = self.aw_addr.q.val() + (bit_cast::<64, 32>(self.aw_n.val()) << self.lane_bits.val());
            self.aw_left.d.next = self.aw_left.q.val() - self.aw_n.val();
            self.pend_valid.d.next = true;
            self.pend_len.d.next = self.aw_n.val();
        }
        self.b_fire.next = self.m_axi_bvalid.val();
        if self.aw_load.val() {
            self.b_issued.d.next = self.b_issued.q.val() + 1;
        }
        if self.b_fire.val() {
            self.b_recv.d.next = self.b_recv.q.val() + 1;
        }
        if self.b_fire.val() & (self.m_axi_bresp.val() != 0) {
            self.err.d.next = true;
        }
        self.m_axi_wdata.next = self.w_data.q.val();
        self.m_axi_wstrb.next = self.w_strb.q.val();
        self.m_axi_wlast.next = self.w_last.q.val();
        self.m_axi_wvalid.next = self.w_valid.q.val();
        self.w_free.next = !self.w_valid.q.val() | self.m_axi_wready.val();
        if self.m_axi_wready.val() {
            self.w_valid.d.next = false;
        }
        // A new W beat can be formed when the slot frees and a burst is open.
        self.w_beat.next = self.wr_busy.q.val() & self.w_free.val() & (self.burst_left.q.val() != 0);
        self.s_wr_tready.next = self.w_beat.val() & !self.wr_flush.q.val() & (self.wr_in_left.q.val() != 0);
        self.w_take.next = self.s_wr_tready.val() & self.s_wr_tvalid.val();
        self.w_fire.next = self.w_take.val() | (self.w_beat.val() & self.wr_flush.q.val());
        self.w_shifted.next = self.s_wr_tdata.val();
        if self.wr_off.q.val() != 0 {
            self.w_shifted.next = (self.s_wr_tdata.val() << (self.wr_off.q.val() << 3))
                | (self.wr_carry.q.val() >> ((self.lanes.val() - self.wr_off.q.val()) << 3));
        }
        if self.wr_flush.q.val() {
            self.w_shifted.next = self.wr_carry.q.val() >> ((self.lanes.val() - self.wr_off.q.val()) << 3);
        }
        self.w_mask.next = self.ones_k.val();
        if self.wr_first.q.val() {
            self.w_mask.next = self.ones_k.val() << self.wr_off.q.val();
        }
        if self.wr_out_left.q.val() == 1 {
            self.w_mask.next = self.w_mask.val() & self.wr_end_mask.q.val();
        }
        if self.w_take.val() {
            self.wr_carry.d.next = self.s_wr_tdata.val();
            if self.wr_in_left.q.val() <= bit_cast::<32, 16>(self.lanes.val()) {
                self.wr_in_left.d.next = 0.into();
                if self.wr_out_left.q.val() != 1 {
                    self.wr_flush.d.next = true;
                }
            } else {
                self.wr_in_left.d.next = self.wr_in_left.q.val() - bit_cast::<32, 16>(self.lanes.val());
            }
        }
        if self.w_fire.val() {
            self.w_data.d.next = self.w_shifted.val();
            self.w_strb.d.next = self.w_mask.val();
            self.w_last.d.next = self.burst_left.q.val() == 1;
            self.w_valid.d.next = true;
            self.wr_first.d.next = false;
            self.wr_out_left.d.next = self.wr_out_left.q.val() - 1;
            self.burst_left.d.next = self.burst_left.q.val() - 1;
            if self.wr_flush.q.val() {
                self.wr_flush.d.next = false;
            }
        }
        // The next burst opens when none is open, or as the current one's last beat forms.
        if self.pend_valid.q.val() & ((self.burst_left.q.val() == 0) | (self.w_fire.val() & (self.burst_left.q.val() == 1))) {
            self.burst_left.d.next = self.pend_len.q.val();
            self.pend_valid.d.next = false;
        }
        // Posted writes: a command's data is done once every burst is requested and every
        // beat formed; the next command may start then. Its B responses are counted in
        // `d0`/`d1` (the burst count it must reach, in order) and `wr_done` follows.
        self.wr_done.next = self.done.q.val();
        self.wr_done_tag.next = self.done_tag.q.val();
        self.data_end.next =
            self.wr_busy.q.val() & (self.aw_left.q.val() == 0) & !self.pend_valid.q.val() & (self.wr_out_left.q.val() == 0);
        self.d_pop.next = self.d0_valid.q.val() & (self.b_recv.q.val() == self.d0_at.q.val());
        self.done.d.next = self.d_pop.val();
        self.done_tag.d.next = self.d0_tag.q.val();
        if self.d_pop.val() {
            self.d0_valid.d.next = self.d1_valid.q.val();
            self.d0_at.d.next = self.d1_at.q.val();
            self.d0_tag.d.next = self.d1_tag.q.val();
            self.d1_valid.d.next = false;
        }
        if self.data_end.val() {
            self.wr_busy.d.next = false;
            if self.d1_valid.q.val() | (self.d0_valid.q.val() & !self.d_pop.val()) {
                self.d1_valid.d.next = true;
                self.d1_at.d.next = self.b_issued.q.val();
                self.d1_tag.d.next = self.wr_tag.q.val();
            } else {
                self.d0_valid.d.next = true;
                self.d0_at.d.next = self.b_issued.q.val();
                self.d0_tag.d.next = self.wr_tag.q.val();
            }
        }
        // The next command may be taken in the cycle the current one's data ends, when
        // a slot is left for its own B count.
        self.wr_cmd_ready.next =
            !self.d1_valid.q.val() & (!self.wr_busy.q.val() | (self.data_end.val() & (!self.d0_valid.q.val() | self.d_pop.val())));
        self.wr_active.next = self.wr_busy.q.val() & !self.data_end.val();
        self.wr_cmd_off.next = bit_cast::<16, 64>(self.wr_cmd_addr.val() & self.lane_mask64.val());
        self.wr_cmd_end.next = bit_cast::<16, 32>(
            (self.wr_cmd_len.val() + bit_cast::<32, 16>(self.wr_cmd_off.val())) & bit_cast::<32, 64>(self.lane_mask64.val()),
        );
        if self.wr_cmd_valid.val() & self.wr_cmd_ready.val() {
            self.wr_busy.d.next = true;
            self.wr_tag.d.next = self.wr_cmd_tag.val();
            self.wr_off.d.next = self.wr_cmd_off.val();
            self.wr_in_left.d.next = self.wr_cmd_len.val();
            self.wr_out_left.d.next =
                (self.wr_cmd_len.val() + bit_cast::<32, 16>(self.wr_cmd_off.val() + self.lanes.val() - 1)) >> self.lane_bits.val();
            self.aw_left.d.next =
                (self.wr_cmd_len.val() + bit_cast::<32, 16>(self.wr_cmd_off.val() + self.lanes.val() - 1)) >> self.lane_bits.val();
            self.aw_addr.d.next = self.wr_cmd_addr.val() & !self.lane_mask64.val();
            self.wr_first.d.next = true;
            self.wr_flush.d.next = false;
            self.wr_end_mask.d.next = self.ones_k.val();
            if self.wr_cmd_end.val() != 0 {
                self.wr_end_mask.d.next = !(self.ones_k.val() << self.wr_cmd_end.val());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{from_bits, keep_of, settle, to_bits};
    use std::collections::VecDeque;

    const MEM: usize = 16 * 1024;

    struct Rng(u32);
    impl Rng {
        fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            self.0
        }
        fn pct(&mut self, p: u32) -> bool {
            self.next() % 100 < p
        }
    }

    /// AXI4 slave over a byte array with random stalls on every channel; checks the
    /// master's bursts (INCR, aligned, within `max_burst`, never across 4 KiB, WLAST only
    /// on the last beat).
    struct Mem<const K: usize> {
        bytes: Vec<u8>,
        max_burst: usize,
        ar: VecDeque<(usize, usize)>,
        aw: VecDeque<(usize, usize)>,
        w: VecDeque<(Vec<u8>, u64, bool)>,
        b_pending: usize,
        stall: u32,
        bursts: usize,
    }

    impl<const K: usize> Mem<K> {
        /// A memory of `MEM` bytes filled by `fill`, with the reference copy the test
        /// updates alongside.
        fn new(fill: impl Fn(usize) -> u8, max_burst: usize, stall: u32) -> (Self, Vec<u8>) {
            let bytes: Vec<u8> = (0..MEM).map(fill).collect();
            let reference = bytes.clone();
            let mem =
                Mem { bytes, max_burst, ar: VecDeque::new(), aw: VecDeque::new(), w: VecDeque::new(), b_pending: 0, stall, bursts: 0 };
            (mem, reference)
        }

        fn check_burst(&mut self, addr: usize, len: usize, size: u64, burst: u64) {
            assert_eq!(burst, 1, "INCR bursts only");
            assert_eq!(1usize << size, K, "beat size is the bus width");
            assert_eq!(addr % K, 0, "burst address is beat aligned");
            assert!(len <= self.max_burst.clamp(1, 256), "burst of {len} beats exceeds MAX_BURST {}", self.max_burst);
            assert_eq!(addr / 4096, (addr + len * K - 1) / 4096, "burst at {addr:#x} of {len} beats crosses 4 KiB");
            assert!(addr + len * K <= MEM, "burst outside the memory");
            self.bursts += 1;
        }

        fn drive<const W: usize>(&mut self, uut: &mut AxiDma<W, K>, r: &mut Rng) {
            uut.m_axi_arready.next = !r.pct(self.stall);
            uut.m_axi_awready.next = !r.pct(self.stall);
            uut.m_axi_wready.next = !r.pct(self.stall);
            uut.m_axi_rvalid.next = false;
            if let Some(&(addr, n)) = self.ar.front() {
                if !r.pct(self.stall) {
                    uut.m_axi_rdata.next = to_bits::<W>(&self.bytes[addr..addr + K]);
                    uut.m_axi_rlast.next = n == 1;
                    uut.m_axi_rresp.next = 0.into();
                    uut.m_axi_rvalid.next = true;
                }
            }
            uut.m_axi_bvalid.next = self.b_pending > 0 && !r.pct(self.stall);
            uut.m_axi_bresp.next = 0.into();
        }

        fn sample<const W: usize>(&mut self, uut: &AxiDma<W, K>) {
            if uut.m_axi_arvalid.val() && uut.m_axi_arready.val() {
                let (a, n) = (uut.m_axi_araddr.val().to_u64() as usize, uut.m_axi_arlen.val().to_u64() as usize + 1);
                self.check_burst(a, n, uut.m_axi_arsize.val().to_u64(), uut.m_axi_arburst.val().to_u64());
                self.ar.push_back((a, n));
            }
            if uut.m_axi_rvalid.val() && uut.m_axi_rready.val() {
                let f = self.ar.front_mut().unwrap();
                f.0 += K;
                f.1 -= 1;
                if f.1 == 0 {
                    self.ar.pop_front();
                }
            }
            if uut.m_axi_awvalid.val() && uut.m_axi_awready.val() {
                let (a, n) = (uut.m_axi_awaddr.val().to_u64() as usize, uut.m_axi_awlen.val().to_u64() as usize + 1);
                self.check_burst(a, n, uut.m_axi_awsize.val().to_u64(), uut.m_axi_awburst.val().to_u64());
                self.aw.push_back((a, n));
            }
            if uut.m_axi_wvalid.val() && uut.m_axi_wready.val() {
                let strb = uut.m_axi_wstrb.val();
                let mask = (0..K).fold(0u64, |m, i| m | (u64::from(strb.get_bit(i)) << i));
                self.w.push_back((from_bits::<W>(uut.m_axi_wdata.val(), K), mask, uut.m_axi_wlast.val()));
            }
            if uut.m_axi_bvalid.val() && uut.m_axi_bready.val() {
                self.b_pending -= 1;
            }
            while let (Some(&(addr, n)), Some(_)) = (self.aw.front(), self.w.front()) {
                let (data, mask, last) = self.w.pop_front().unwrap();
                for (i, b) in data.iter().enumerate() {
                    if (mask >> i) & 1 == 1 {
                        self.bytes[addr + i] = *b;
                    }
                }
                assert_eq!(last, n == 1, "WLAST exactly on a burst's last beat");
                let f = self.aw.front_mut().unwrap();
                f.0 += K;
                f.1 -= 1;
                if n == 1 {
                    self.aw.pop_front();
                    self.b_pending += 1;
                }
            }
        }
    }

    enum Op {
        Read(usize, usize),
        Write(usize, Vec<u8>),
    }

    fn clock<const W: usize, const K: usize>(uut: &mut AxiDma<W, K>) {
        uut.clock.next = Clock { clk: true };
        settle(uut);
        uut.clock.next = Clock { clk: false };
        settle(uut);
    }

    /// Runs `ops` one after another against the memory model; every read must return the
    /// reference bytes and every write must change exactly its range.
    fn run<const W: usize, const K: usize>(ops: &[Op], max_burst: usize, stall: u32, seed: u32) -> usize {
        let mut uut = AxiDma::<W, K>::new();
        uut.connect_all();
        let mut r = Rng(seed | 1);
        let (mut mem, mut reference) = Mem::<K>::new(|i| (i * 7 + i / 251) as u8, max_burst, stall);
        uut.max_burst.next = (max_burst as u64).into();
        let mut cycles = 0usize;
        for (n, op) in ops.iter().enumerate() {
            let mut issued = false;
            let mut got: Vec<u8> = vec![];
            let mut sent = 0usize;
            let mut finished = false;
            let budget = 40_000;
            for _ in 0..budget {
                cycles += 1;
                mem.drive(&mut uut, &mut r);
                uut.rd_cmd_valid.next = false;
                uut.wr_cmd_valid.next = false;
                uut.s_wr_tvalid.next = false;
                uut.m_rd_tready.next = !r.pct(stall);
                match op {
                    Op::Read(a, l) => {
                        uut.rd_cmd_valid.next = !issued;
                        uut.rd_cmd_addr.next = (*a as u64).into();
                        uut.rd_cmd_len.next = (*l as u64).into();
                    }
                    Op::Write(a, d) => {
                        uut.wr_cmd_valid.next = !issued;
                        uut.wr_cmd_addr.next = (*a as u64).into();
                        uut.wr_cmd_len.next = (d.len() as u64).into();
                        if issued && sent < d.len() && !r.pct(stall) {
                            let end = (sent + K).min(d.len());
                            uut.s_wr_tdata.next = to_bits::<W>(&d[sent..end]);
                            uut.s_wr_tvalid.next = true;
                        }
                    }
                }
                settle(&mut uut);
                mem.sample(&uut);
                if uut.rd_cmd_valid.val() && uut.rd_cmd_ready.val() || uut.wr_cmd_valid.val() && uut.wr_cmd_ready.val() {
                    issued = true;
                }
                if uut.s_wr_tvalid.val() && uut.s_wr_tready.val() {
                    sent = (sent + K).min(match op {
                        Op::Write(_, d) => d.len(),
                        Op::Read(..) => 0,
                    });
                }
                if uut.m_rd_tvalid.val() && uut.m_rd_tready.val() {
                    let keep = uut.m_rd_tkeep.val();
                    let k = (0..K).take_while(|i| keep.get_bit(*i)).count();
                    assert_eq!(keep, keep_of::<K>(k), "read keep is contiguous");
                    got.extend(from_bits::<W>(uut.m_rd_tdata.val(), k));
                    if uut.m_rd_tlast.val() {
                        finished = true;
                    }
                }
                if uut.wr_done.val() {
                    finished = true;
                }
                clock(&mut uut);
                if finished {
                    break;
                }
            }
            assert!(finished, "op {n} did not finish within {budget} cycles");
            match op {
                Op::Read(a, l) => assert_eq!(got, reference[*a..*a + *l].to_vec(), "op {n}: read {l} bytes at {a:#x}"),
                Op::Write(a, d) => {
                    assert_eq!(sent, d.len(), "op {n}: every byte taken");
                    reference[*a..*a + d.len()].copy_from_slice(d);
                    assert!(mem.bytes == reference, "op {n}: write of {} bytes at {a:#x} changed exactly its range", d.len());
                }
            }
            assert!(!uut.error.val(), "no error response was given");
        }
        assert!(mem.ar.is_empty() && mem.aw.is_empty() && mem.w.is_empty() && mem.b_pending == 0, "bus idle at the end");
        let _ = cycles;
        mem.bursts
    }

    /// Reads and writes issued back to back on both channels at once (each command as
    /// soon as the previous one is taken): reads return their bytes in command order,
    /// writes land and finish in order with their tags, whatever the stalls.
    fn run_pipelined<const W: usize, const K: usize>(
        reads: &[(usize, usize)],
        writes: &[(usize, Vec<u8>)],
        max_burst: usize,
        stall: u32,
        seed: u32,
    ) {
        let mut uut = AxiDma::<W, K>::new();
        uut.connect_all();
        let mut r = Rng(seed | 1);
        let (mut mem, mut reference) = Mem::<K>::new(|i| (i * 5 + i / 253) as u8, max_burst, stall);
        uut.max_burst.next = (max_burst as u64).into();
        // Reads see the memory before any write: the two sets of ranges do not overlap.
        let expected: Vec<Vec<u8>> = reads.iter().map(|&(a, l)| reference[a..a + l].to_vec()).collect();
        let stream: Vec<u8> = writes.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        let ends: Vec<usize> = writes
            .iter()
            .scan(0, |acc, (_, d)| {
                *acc += d.len();
                Some(*acc)
            })
            .collect();
        let cmd_end = |sent: usize| ends.iter().copied().find(|&e| e > sent).unwrap_or(0);
        let (mut rd_issued, mut wr_issued, mut sent, mut dones) = (0usize, 0usize, 0usize, 0usize);
        let mut got: Vec<Vec<u8>> = vec![vec![]];
        let mut w_end = 0usize;
        let mut max_outstanding_reads = 0usize;
        for _ in 0..200_000 {
            if got.len() > reads.len() && dones == writes.len() {
                break;
            }
            mem.drive(&mut uut, &mut r);
            uut.rd_cmd_valid.next = rd_issued < reads.len() && !r.pct(stall);
            if let Some(&(a, l)) = reads.get(rd_issued) {
                uut.rd_cmd_addr.next = (a as u64).into();
                uut.rd_cmd_len.next = (l as u64).into();
            }
            uut.wr_cmd_valid.next = wr_issued < writes.len() && !r.pct(stall);
            if let Some((a, d)) = writes.get(wr_issued) {
                uut.wr_cmd_addr.next = (*a as u64).into();
                uut.wr_cmd_len.next = (d.len() as u64).into();
                uut.wr_cmd_tag.next = wr_issued % 2 == 1;
            }
            // Write data of the commands taken so far, in order, never across a command end.
            uut.s_wr_tvalid.next = false;
            if sent < w_end && !r.pct(stall) {
                let end = (sent + K).min(cmd_end(sent));
                uut.s_wr_tdata.next = to_bits::<W>(&stream[sent..end]);
                uut.s_wr_tvalid.next = true;
            }
            uut.m_rd_tready.next = !r.pct(stall);
            settle(&mut uut);
            mem.sample(&uut);
            if uut.rd_cmd_valid.val() && uut.rd_cmd_ready.val() {
                rd_issued += 1;
            }
            if uut.wr_cmd_valid.val() && uut.wr_cmd_ready.val() {
                w_end += writes[wr_issued].1.len();
                wr_issued += 1;
            }
            if uut.s_wr_tvalid.val() && uut.s_wr_tready.val() {
                sent = (sent + K).min(cmd_end(sent));
            }
            if uut.m_rd_tvalid.val() && uut.m_rd_tready.val() {
                let keep = uut.m_rd_tkeep.val();
                let k = (0..K).take_while(|i| keep.get_bit(*i)).count();
                got.last_mut().unwrap().extend(from_bits::<W>(uut.m_rd_tdata.val(), k));
                if uut.m_rd_tlast.val() {
                    got.push(vec![]);
                }
            }
            max_outstanding_reads = max_outstanding_reads.max(rd_issued - (got.len() - 1));
            if uut.wr_done.val() {
                assert_eq!(uut.wr_done_tag.val(), dones % 2 == 1, "write {dones}: done carries its tag");
                let (a, d) = &writes[dones];
                reference[*a..*a + d.len()].copy_from_slice(d);
                dones += 1;
            }
            clock(&mut uut);
        }
        got.pop();
        assert_eq!(got.len(), reads.len(), "every read finished");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "read {i} returns its bytes, in command order");
        }
        assert_eq!(dones, writes.len(), "every write finished");
        assert!(mem.bytes == reference, "the writes changed exactly their ranges");
        assert!(max_outstanding_reads >= 2, "reads overlapped ({max_outstanding_reads} in progress at most)");
        assert!(!uut.error.val(), "no error response was given");
    }

    /// Reads (address, length) and writes (address, bytes).
    type Pipelined = (Vec<(usize, usize)>, Vec<(usize, Vec<u8>)>);

    fn pipelined_ops(seed: u32, n: usize) -> Pipelined {
        let mut r = Rng(seed | 1);
        let half = MEM / 2;
        let reads = (0..n)
            .map(|_| {
                let l = 1 + (r.next() as usize) % if r.pct(30) { 3000 } else { 100 };
                ((r.next() as usize) % (half - l), l)
            })
            .collect();
        let writes = (0..n)
            .map(|_| {
                let l = 1 + (r.next() as usize) % if r.pct(30) { 3000 } else { 100 };
                (half + (r.next() as usize) % (half - l), (0..l).map(|_| r.next() as u8).collect())
            })
            .collect();
        (reads, writes)
    }

    #[test]
    fn back_to_back_commands_at_64_bits() {
        for (seed, mb, stall) in [(21, 16, 0), (22, 256, 30), (23, 3, 15)] {
            let (reads, writes) = pipelined_ops(seed, 12);
            run_pipelined::<64, 8>(&reads, &writes, mb, stall, seed);
        }
    }

    #[test]
    fn back_to_back_commands_at_512_bits() {
        for (seed, mb, stall) in [(31, 256, 0), (32, 2, 25)] {
            let (reads, writes) = pipelined_ops(seed, 10);
            run_pipelined::<512, 64>(&reads, &writes, mb, stall, seed);
        }
    }

    fn random_ops<const K: usize>(seed: u32, n: usize) -> Vec<Op> {
        let mut r = Rng(seed | 1);
        let mut ops = vec![
            Op::Write(4096 - 3, vec![0xA5; 7]),
            Op::Read(4096 - 3, 7),
            Op::Write(1, vec![0x11]),
            Op::Read(K, K),
            Op::Write(3 * K + 5, (0..2 * K as u32).map(|i| i as u8).collect()),
            Op::Read(3 * K + 1, 3 * K),
        ];
        for _ in 0..n {
            let a = (r.next() as usize) % (MEM - 5000);
            let l = 1 + (r.next() as usize) % if r.pct(30) { 4500 } else { 200 };
            if r.pct(50) {
                ops.push(Op::Read(a, l));
            } else {
                ops.push(Op::Write(a, (0..l).map(|_| r.next() as u8).collect()));
            }
        }
        ops
    }

    #[test]
    fn random_reads_and_writes_at_64_bits() {
        for (seed, mb, stall) in [(1, 16, 30), (2, 1, 20), (3, 256, 40), (4, 0, 10), (5, 3, 50)] {
            let bursts = run::<64, 8>(&random_ops::<8>(seed, 14), mb, stall, seed);
            assert!(bursts > 20, "seed {seed}: {bursts} bursts");
        }
    }

    #[test]
    fn random_reads_and_writes_at_512_bits() {
        for (seed, mb, stall) in [(11, 4, 30), (12, 1000, 25), (13, 2, 0)] {
            let bursts = run::<512, 64>(&random_ops::<64>(seed, 10), mb, stall, seed);
            assert!(bursts > 10, "seed {seed}: {bursts} bursts");
        }
    }

    #[test]
    #[should_panic(expected = "is not supported")]
    fn rejects_unsupported_width() {
        let _ = AxiDma::<96, 12>::new();
    }

    #[test]
    fn synthesizes() {
        let mut uut = AxiDma::<64, 8>::new();
        uut.connect_all();
        yosys_validate("tandem_axi_dma", &generate_verilog(&uut)).unwrap();
    }
}
