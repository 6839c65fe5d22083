//! The whole engine as one top level (`top`): register file, DMA master, sending and
//! receiving sides, framer and deframer, with the ports vendor shells connect to.

use crate::axi_dma::{AxiDma, DmaAddr};
use crate::axil_regs::{Addr, AxilRegs, BuildId};
use crate::deframer::Deframer;
use crate::framer::Framer;
use crate::hsi_consts::MAX_PAYLOAD;
use crate::rx_engine::RxEngine;
use crate::tx_engine::TxEngine;
use rust_hdl::prelude::*;
use tandem_hsi::codes::LinkState;
use tandem_hsi::entry::{completion, submission};
use tandem_hsi::regs::Counter;

/// Largest ring `SIZE_LOG2` the HSI allows (rings hold 2^1 to 2^16 entries).
pub const RING_LOG2_MAX: u64 = tandem_hsi::regs::RING_SIZE_LOG2_MAX as u64;

/// Write-channel owner of the DMA master.
#[derive(Copy, Clone, PartialEq, Eq, Debug, LogicState)]
pub enum WriteOwner {
    /// No write in progress.
    Free,
    /// The sending side (completion entries).
    Tx,
    /// The receiving side (mirror window).
    Rx,
}

/// The Tandem engine: AXI4-Lite register slave (`s_axil_*`, every block of
/// `tandem_hsi::regs`), AXI4 DMA master (`m_axi_*`, submission/completion rings,
/// payload reads, mirror-window writes), the mirror link as AXI4-Stream to and from a
/// MAC (`m_axis_link_*`, `s_axis_link_*`) and the interrupt output `irq`. Datapath,
/// DMA and link are `W` bits wide (`K = W / 8` lanes); the receive frame buffer has
/// `2^A` words (`MAX_PAYLOAD` bytes). The DMA read channel belongs to the sending side;
/// the write channel is granted per command (window writes first, then completions).
/// Every counter of `tandem_hsi::regs::Counter` counts the event its doc names.
#[derive(LogicBlock)]
pub struct EngineTop<const W: usize, const K: usize, const A: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// AXI4-Lite register slave: `awaddr`.
    pub s_axil_awaddr: Signal<In, Addr>,
    /// AXI4-Lite register slave: `awvalid`.
    pub s_axil_awvalid: Signal<In, Bit>,
    /// AXI4-Lite register slave: `awready`.
    pub s_axil_awready: Signal<Out, Bit>,
    /// AXI4-Lite register slave: `wdata`.
    pub s_axil_wdata: Signal<In, Bits<32>>,
    /// AXI4-Lite register slave: `wstrb`.
    pub s_axil_wstrb: Signal<In, Bits<4>>,
    /// AXI4-Lite register slave: `wvalid`.
    pub s_axil_wvalid: Signal<In, Bit>,
    /// AXI4-Lite register slave: `wready`.
    pub s_axil_wready: Signal<Out, Bit>,
    /// AXI4-Lite register slave: `bresp`.
    pub s_axil_bresp: Signal<Out, Bits<2>>,
    /// AXI4-Lite register slave: `bvalid`.
    pub s_axil_bvalid: Signal<Out, Bit>,
    /// AXI4-Lite register slave: `bready`.
    pub s_axil_bready: Signal<In, Bit>,
    /// AXI4-Lite register slave: `araddr`.
    pub s_axil_araddr: Signal<In, Addr>,
    /// AXI4-Lite register slave: `arvalid`.
    pub s_axil_arvalid: Signal<In, Bit>,
    /// AXI4-Lite register slave: `arready`.
    pub s_axil_arready: Signal<Out, Bit>,
    /// AXI4-Lite register slave: `rdata`.
    pub s_axil_rdata: Signal<Out, Bits<32>>,
    /// AXI4-Lite register slave: `rresp`.
    pub s_axil_rresp: Signal<Out, Bits<2>>,
    /// AXI4-Lite register slave: `rvalid`.
    pub s_axil_rvalid: Signal<Out, Bit>,
    /// AXI4-Lite register slave: `rready`.
    pub s_axil_rready: Signal<In, Bit>,
    /// AXI4 DMA master: `awaddr`.
    pub m_axi_awaddr: Signal<Out, DmaAddr>,
    /// AXI4 DMA master: `awlen`.
    pub m_axi_awlen: Signal<Out, Bits<8>>,
    /// AXI4 DMA master: `awsize`.
    pub m_axi_awsize: Signal<Out, Bits<3>>,
    /// AXI4 DMA master: `awburst`.
    pub m_axi_awburst: Signal<Out, Bits<2>>,
    /// AXI4 DMA master: `awvalid`.
    pub m_axi_awvalid: Signal<Out, Bit>,
    /// AXI4 DMA master: `awready`.
    pub m_axi_awready: Signal<In, Bit>,
    /// AXI4 DMA master: `wdata`.
    pub m_axi_wdata: Signal<Out, Bits<W>>,
    /// AXI4 DMA master: `wstrb`.
    pub m_axi_wstrb: Signal<Out, Bits<K>>,
    /// AXI4 DMA master: `wlast`.
    pub m_axi_wlast: Signal<Out, Bit>,
    /// AXI4 DMA master: `wvalid`.
    pub m_axi_wvalid: Signal<Out, Bit>,
    /// AXI4 DMA master: `wready`.
    pub m_axi_wready: Signal<In, Bit>,
    /// AXI4 DMA master: `bresp`.
    pub m_axi_bresp: Signal<In, Bits<2>>,
    /// AXI4 DMA master: `bvalid`.
    pub m_axi_bvalid: Signal<In, Bit>,
    /// AXI4 DMA master: `bready`.
    pub m_axi_bready: Signal<Out, Bit>,
    /// AXI4 DMA master: `araddr`.
    pub m_axi_araddr: Signal<Out, DmaAddr>,
    /// AXI4 DMA master: `arlen`.
    pub m_axi_arlen: Signal<Out, Bits<8>>,
    /// AXI4 DMA master: `arsize`.
    pub m_axi_arsize: Signal<Out, Bits<3>>,
    /// AXI4 DMA master: `arburst`.
    pub m_axi_arburst: Signal<Out, Bits<2>>,
    /// AXI4 DMA master: `arvalid`.
    pub m_axi_arvalid: Signal<Out, Bit>,
    /// AXI4 DMA master: `arready`.
    pub m_axi_arready: Signal<In, Bit>,
    /// AXI4 DMA master: `rdata`.
    pub m_axi_rdata: Signal<In, Bits<W>>,
    /// AXI4 DMA master: `rresp`.
    pub m_axi_rresp: Signal<In, Bits<2>>,
    /// AXI4 DMA master: `rlast`.
    pub m_axi_rlast: Signal<In, Bit>,
    /// AXI4 DMA master: `rvalid`.
    pub m_axi_rvalid: Signal<In, Bit>,
    /// AXI4 DMA master: `rready`.
    pub m_axi_rready: Signal<Out, Bit>,
    /// Link to the MAC (source): `tdata`.
    pub m_axis_link_tdata: Signal<Out, Bits<W>>,
    /// Link to the MAC (source): `tkeep`.
    pub m_axis_link_tkeep: Signal<Out, Bits<K>>,
    /// Link to the MAC (source): `tlast`.
    pub m_axis_link_tlast: Signal<Out, Bit>,
    /// Link to the MAC (source): `tvalid`.
    pub m_axis_link_tvalid: Signal<Out, Bit>,
    /// Link to the MAC (source): `tready`.
    pub m_axis_link_tready: Signal<In, Bit>,
    /// Link from the MAC (sink): `tdata`.
    pub s_axis_link_tdata: Signal<In, Bits<W>>,
    /// Link from the MAC (sink): `tkeep`.
    pub s_axis_link_tkeep: Signal<In, Bits<K>>,
    /// Link from the MAC (sink): `tlast`.
    pub s_axis_link_tlast: Signal<In, Bit>,
    /// Link from the MAC (sink): `tvalid`.
    pub s_axis_link_tvalid: Signal<In, Bit>,
    /// Link from the MAC (sink): `tready`.
    pub s_axis_link_tready: Signal<Out, Bit>,
    /// Interrupt: `IRQ_STATUS & IRQ_ENABLE` is not zero.
    pub irq: Signal<Out, Bit>,
    regs: AxilRegs,
    dma: AxiDma<W, K>,
    framer: Framer<W, K>,
    deframer: Deframer<W, K>,
    tx: TxEngine<W, K>,
    rx: RxEngine<W, K, A>,
    owner: DFF<WriteOwner>,
    granted: DFF<Bit>,
    cfg_err: DFF<Bit>,
    cfg_bad: Signal<Local, Bit>,
    fatal: Signal<Local, Bit>,
    log2_max: Constant<Bits<32>>,
    sq_align: Constant<DmaAddr>,
    cq_align: Constant<DmaAddr>,
    wr_free: Signal<Local, Bit>,
    pick: Signal<Local, WriteOwner>,
    us_count: DFF<Bits<32>>,
    us_tick: DFF<Bit>,
    free_run: DFF<Bits<64>>,
    frame_sent: Signal<Local, Bit>,
    count_inc: Signal<Local, Bits<16>>,
    us_last: Constant<Bits<32>>,
    ls_up: Constant<Bits<8>>,
    c_frames_tx: Constant<Bits<16>>,
    c_frames_rx: Constant<Bits<16>>,
    c_data_tx: Constant<Bits<16>>,
    c_data_rx: Constant<Bits<16>>,
    c_retransmits: Constant<Bits<16>>,
    c_acks_rx: Constant<Bits<16>>,
    c_nacks_rx: Constant<Bits<16>>,
    c_nacks_tx: Constant<Bits<16>>,
    c_crc_errors: Constant<Bits<16>>,
    c_bounds_rejects: Constant<Bits<16>>,
    c_sequence_errors: Constant<Bits<16>>,
    c_duplicates: Constant<Bits<16>>,
    c_header_errors: Constant<Bits<16>>,
    c_link_resets: Constant<Bits<16>>,
    c_heartbeats_rx: Constant<Bits<16>>,
    c_local_rejects: Constant<Bits<16>>,
}

impl<const W: usize, const K: usize, const A: usize> EngineTop<W, K, A> {
    // <blank>
    /// Every field at its default; constants zero (overridden by `new`).
    fn blank(build: BuildId) -> Self {
        Self {
            clock: Default::default(),
            s_axil_awaddr: Default::default(),
            s_axil_awvalid: Default::default(),
            s_axil_awready: Default::default(),
            s_axil_wdata: Default::default(),
            s_axil_wstrb: Default::default(),
            s_axil_wvalid: Default::default(),
            s_axil_wready: Default::default(),
            s_axil_bresp: Default::default(),
            s_axil_bvalid: Default::default(),
            s_axil_bready: Default::default(),
            s_axil_araddr: Default::default(),
            s_axil_arvalid: Default::default(),
            s_axil_arready: Default::default(),
            s_axil_rdata: Default::default(),
            s_axil_rresp: Default::default(),
            s_axil_rvalid: Default::default(),
            s_axil_rready: Default::default(),
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
            m_axis_link_tdata: Default::default(),
            m_axis_link_tkeep: Default::default(),
            m_axis_link_tlast: Default::default(),
            m_axis_link_tvalid: Default::default(),
            m_axis_link_tready: Default::default(),
            s_axis_link_tdata: Default::default(),
            s_axis_link_tkeep: Default::default(),
            s_axis_link_tlast: Default::default(),
            s_axis_link_tvalid: Default::default(),
            s_axis_link_tready: Default::default(),
            irq: Default::default(),
            regs: AxilRegs::new(build),
            dma: Default::default(),
            framer: Default::default(),
            deframer: Default::default(),
            tx: Default::default(),
            rx: Default::default(),
            owner: Default::default(),
            granted: Default::default(),
            cfg_err: Default::default(),
            cfg_bad: Default::default(),
            fatal: Default::default(),
            log2_max: Constant::new(Default::default()),
            sq_align: Constant::new(Default::default()),
            cq_align: Constant::new(Default::default()),
            wr_free: Default::default(),
            pick: Default::default(),
            us_count: Default::default(),
            us_tick: Default::default(),
            free_run: Default::default(),
            frame_sent: Default::default(),
            count_inc: Default::default(),
            us_last: Constant::new(Default::default()),
            ls_up: Constant::new(Default::default()),
            c_frames_tx: Constant::new(Default::default()),
            c_frames_rx: Constant::new(Default::default()),
            c_data_tx: Constant::new(Default::default()),
            c_data_rx: Constant::new(Default::default()),
            c_retransmits: Constant::new(Default::default()),
            c_acks_rx: Constant::new(Default::default()),
            c_nacks_rx: Constant::new(Default::default()),
            c_nacks_tx: Constant::new(Default::default()),
            c_crc_errors: Constant::new(Default::default()),
            c_bounds_rejects: Constant::new(Default::default()),
            c_sequence_errors: Constant::new(Default::default()),
            c_duplicates: Constant::new(Default::default()),
            c_header_errors: Constant::new(Default::default()),
            c_link_resets: Constant::new(Default::default()),
            c_heartbeats_rx: Constant::new(Default::default()),
            c_local_rejects: Constant::new(Default::default()),
        }
    }
    // </blank>

    /// The engine at `W` bits with the ID block reporting `build` (whose
    /// `datapath_bits` must be `W`) and a `2^A`-word receive buffer.
    ///
    /// # Panics
    /// On a width other than 64 or 512, a `build` for another width, a clock below
    /// 1 MHz, or a buffer that does not hold exactly `MAX_PAYLOAD` bytes.
    pub fn new(build: BuildId) -> Self {
        assert!(matches!(W, 64 | 512), "EngineTop: datapath width W = {W} is not generated (64 or 512 bits)");
        assert_eq!(W, 8 * K, "EngineTop: K = {K} lanes must be W / 8 for W = {W}");
        assert_eq!(build.datapath_bits as usize, W, "EngineTop: the ID block must report the datapath width W = {W}");
        assert!(
            build.clock_khz >= 1000,
            "EngineTop: clock_khz = {} is below 1 MHz; the microsecond timers need at least one cycle per microsecond",
            build.clock_khz
        );
        assert_eq!(
            (1u64 << A) * K as u64,
            MAX_PAYLOAD,
            "EngineTop: the receive buffer of 2^{A} words of {K} bytes must hold MAX_PAYLOAD bytes"
        );
        fn c<const N: usize>(v: u64) -> Constant<Bits<N>> {
            Constant::new(v.into())
        }
        fn cb(x: Counter) -> Constant<Bits<16>> {
            c(1u64 << (x as u8))
        }
        Self {
            us_last: c(u64::from(build.clock_khz / 1000 - 1)),
            log2_max: c(RING_LOG2_MAX),
            sq_align: c(submission::SIZE as u64 - 1),
            cq_align: c(completion::SIZE as u64 - 1),
            ls_up: c(LinkState::Up.code().into()),
            c_frames_tx: cb(Counter::FramesTx),
            c_frames_rx: cb(Counter::FramesRx),
            c_data_tx: cb(Counter::DataTx),
            c_data_rx: cb(Counter::DataRx),
            c_retransmits: cb(Counter::Retransmits),
            c_acks_rx: cb(Counter::AcksRx),
            c_nacks_rx: cb(Counter::NacksRx),
            c_nacks_tx: cb(Counter::NacksTx),
            c_crc_errors: cb(Counter::CrcErrors),
            c_bounds_rejects: cb(Counter::BoundsRejects),
            c_sequence_errors: cb(Counter::SequenceErrors),
            c_duplicates: cb(Counter::Duplicates),
            c_header_errors: cb(Counter::HeaderErrors),
            c_link_resets: cb(Counter::LinkResets),
            c_heartbeats_rx: cb(Counter::HeartbeatsRx),
            c_local_rejects: cb(Counter::LocalRejects),
            ..Self::blank(build)
        }
    }
}

impl<const W: usize, const K: usize, const A: usize> Logic for EngineTop<W, K, A> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, owner, granted, cfg_err, us_count, us_tick, free_run);
        clock!(self, clock, regs, dma, framer, deframer, tx, rx);
        // Ports.
        self.regs.s_axil_awaddr.next = self.s_axil_awaddr.val();
        self.regs.s_axil_awvalid.next = self.s_axil_awvalid.val();
        self.s_axil_awready.next = self.regs.s_axil_awready.val();
        self.regs.s_axil_wdata.next = self.s_axil_wdata.val();
        self.regs.s_axil_wstrb.next = self.s_axil_wstrb.val();
        self.regs.s_axil_wvalid.next = self.s_axil_wvalid.val();
        self.s_axil_wready.next = self.regs.s_axil_wready.val();
        self.s_axil_bresp.next = self.regs.s_axil_bresp.val();
        self.s_axil_bvalid.next = self.regs.s_axil_bvalid.val();
        self.regs.s_axil_bready.next = self.s_axil_bready.val();
        self.regs.s_axil_araddr.next = self.s_axil_araddr.val();
        self.regs.s_axil_arvalid.next = self.s_axil_arvalid.val();
        self.s_axil_arready.next = self.regs.s_axil_arready.val();
        self.s_axil_rdata.next = self.regs.s_axil_rdata.val();
        self.s_axil_rresp.next = self.regs.s_axil_rresp.val();
        self.s_axil_rvalid.next = self.regs.s_axil_rvalid.val();
        self.regs.s_axil_rready.next = self.s_axil_rready.val();
        self.m_axi_awaddr.next = self.dma.m_axi_awaddr.val();
        self.m_axi_awlen.next = self.dma.m_axi_awlen.val();
        self.m_axi_awsize.next = self.dma.m_axi_awsize.val();
        self.m_axi_awburst.next = self.dma.m_axi_awburst.val();
        self.m_axi_awvalid.next = self.dma.m_axi_awvalid.val();
        self.dma.m_axi_awready.next = self.m_axi_awready.val();
        self.m_axi_wdata.next = self.dma.m_axi_wdata.val();
        self.m_axi_wstrb.next = self.dma.m_axi_wstrb.val();
        self.m_axi_wlast.next = self.dma.m_axi_wlast.val();
        self.m_axi_wvalid.next = self.dma.m_axi_wvalid.val();
        self.dma.m_axi_wready.next = self.m_axi_wready.val();
        self.dma.m_axi_bresp.next = self.m_axi_bresp.val();
        self.dma.m_axi_bvalid.next = self.m_axi_bvalid.val();
        self.m_axi_bready.next = self.dma.m_axi_bready.val();
        self.m_axi_araddr.next = self.dma.m_axi_araddr.val();
        self.m_axi_arlen.next = self.dma.m_axi_arlen.val();
        self.m_axi_arsize.next = self.dma.m_axi_arsize.val();
        self.m_axi_arburst.next = self.dma.m_axi_arburst.val();
        self.m_axi_arvalid.next = self.dma.m_axi_arvalid.val();
        self.dma.m_axi_arready.next = self.m_axi_arready.val();
        self.dma.m_axi_rdata.next = self.m_axi_rdata.val();
        self.dma.m_axi_rresp.next = self.m_axi_rresp.val();
        self.dma.m_axi_rlast.next = self.m_axi_rlast.val();
        self.dma.m_axi_rvalid.next = self.m_axi_rvalid.val();
        self.m_axi_rready.next = self.dma.m_axi_rready.val();
        self.m_axis_link_tdata.next = self.framer.m_axis_tdata.val();
        self.m_axis_link_tkeep.next = self.framer.m_axis_tkeep.val();
        self.m_axis_link_tlast.next = self.framer.m_axis_tlast.val();
        self.m_axis_link_tvalid.next = self.framer.m_axis_tvalid.val();
        self.framer.m_axis_tready.next = self.m_axis_link_tready.val();
        self.deframer.s_axis_tdata.next = self.s_axis_link_tdata.val();
        self.deframer.s_axis_tkeep.next = self.s_axis_link_tkeep.val();
        self.deframer.s_axis_tlast.next = self.s_axis_link_tlast.val();
        self.deframer.s_axis_tvalid.next = self.s_axis_link_tvalid.val();
        self.s_axis_link_tready.next = self.deframer.s_axis_tready.val();
        self.irq.next = self.regs.irq.val();
        // Microsecond tick and a free-running value for session ids.
        self.free_run.d.next = self.free_run.q.val() + 1;
        self.us_tick.d.next = false;
        self.us_count.d.next = self.us_count.q.val() + 1;
        if self.us_count.q.val() == self.us_last.val() {
            self.us_count.d.next = 0.into();
            self.us_tick.d.next = true;
        }
        // Register file <-> engine.
        self.dma.max_burst.next = self.regs.max_burst.val();
        self.dma.clear_error.next = self.regs.abort.val();
        // A bad configuration (a ring size outside 1..=16 entries as log2, a ring base not
        // aligned to its entry size, an empty mirror window) found while enabled is a
        // fatal error, as a DMA error response is: the engine stops until ENABLE is
        // cleared (a bad configuration) or ABORT is written (a DMA error).
        self.cfg_bad.next = (self.regs.sq_size_log2.val() == 0)
            | (self.regs.sq_size_log2.val() > self.log2_max.val())
            | (self.regs.cq_size_log2.val() == 0)
            | (self.regs.cq_size_log2.val() > self.log2_max.val())
            | ((self.regs.sq_base.val() & self.sq_align.val()) != 0)
            | ((self.regs.cq_base.val() & self.cq_align.val()) != 0)
            | (self.regs.window_size.val() == 0);
        if self.regs.enable.val() & self.cfg_bad.val() {
            self.cfg_err.d.next = true;
        }
        if !self.regs.enable.val() {
            self.cfg_err.d.next = false;
        }
        self.fatal.next = self.cfg_err.q.val() | self.dma.error.val();
        self.regs.running.next = self.tx.running.val();
        self.regs.link_up.next = self.tx.link_state.val() == self.ls_up.val();
        self.regs.error.next = self.fatal.val();
        self.regs.ev_completion.next = self.tx.ev_completion.val();
        self.regs.ev_link_change.next = self.tx.ev_link_change.val();
        self.regs.sq_tail.next = self.tx.sq_tail.val();
        self.regs.cq_head.next = self.tx.cq_head.val();
        self.regs.link_state.next = self.tx.link_state.val();
        self.regs.next_seq.next = self.tx.next_seq.val();
        self.regs.acked_seq.next = self.tx.acked_seq.val();
        self.regs.rx_expected.next = self.rx.expected.val();
        self.regs.session.next = self.tx.session.val();
        self.tx.enable.next = self.regs.enable.val() & !self.cfg_bad.val() & !self.fatal.val();
        self.tx.abort.next = self.regs.abort.val();
        self.tx.rx_frame.next = self.rx.inc_frames_rx.val();
        self.tx.us_tick.next = self.us_tick.q.val();
        self.tx.session_seed.next = self.free_run.q.val() + 1;
        self.tx.max_in_flight.next = self.regs.max_in_flight.val();
        self.tx.retransmit_us.next = self.regs.retransmit_us.val();
        self.tx.heartbeat_us.next = self.regs.heartbeat_us.val();
        self.tx.sq_base.next = self.regs.sq_base.val();
        self.tx.sq_size_log2.next = self.regs.sq_size_log2.val();
        self.tx.sq_head.next = self.regs.sq_head.val();
        self.tx.cq_base.next = self.regs.cq_base.val();
        self.tx.cq_size_log2.next = self.regs.cq_size_log2.val();
        self.tx.cq_tail.next = self.regs.cq_tail.val();
        self.tx.host_base.next = self.regs.host_base.val();
        self.tx.host_size.next = self.regs.host_size.val();
        self.rx.window_base.next = self.regs.window_base.val();
        self.rx.window_size.next = self.regs.window_size.val();
        // Sending side -> framer.
        self.framer.s_hdr_valid.next = self.tx.hdr_valid.val();
        self.tx.hdr_ready.next = self.framer.s_hdr_ready.val();
        self.framer.s_hdr_frame_type.next = self.tx.hdr_type.val();
        self.framer.s_hdr_kind.next = self.tx.hdr_kind.val();
        self.framer.s_hdr_service_tag.next = self.tx.hdr_tag.val();
        self.framer.s_hdr_length.next = self.tx.hdr_length.val();
        self.framer.s_hdr_sequence.next = self.tx.hdr_seq.val();
        self.framer.s_hdr_window_offset.next = self.tx.hdr_offset.val();
        self.framer.s_axis_tdata.next = self.tx.m_pay_tdata.val();
        self.framer.s_axis_tkeep.next = self.tx.m_pay_tkeep.val();
        self.framer.s_axis_tlast.next = self.tx.m_pay_tlast.val();
        self.framer.s_axis_tvalid.next = self.tx.m_pay_tvalid.val();
        self.tx.m_pay_tready.next = self.framer.s_axis_tready.val();
        self.frame_sent.next = self.framer.m_axis_tvalid.val() & self.m_axis_link_tready.val() & self.framer.m_axis_tlast.val();
        // Receiving side <- deframer; control frames and ACK/NACK between the sides.
        self.rx.s_pay_tdata.next = self.deframer.m_axis_tdata.val();
        self.rx.s_pay_tvalid.next = self.deframer.m_axis_tvalid.val();
        self.deframer.m_axis_tready.next = self.rx.s_pay_tready.val();
        self.rx.st_valid.next = self.deframer.m_status_valid.val();
        self.deframer.m_status_ready.next = self.rx.st_ready.val();
        self.rx.st_header_ok.next = self.deframer.m_status_header_ok.val();
        self.rx.st_length_ok.next = self.deframer.m_status_length_ok.val();
        self.rx.st_crc_ok.next = self.deframer.m_status_crc_ok.val();
        self.rx.st_type.next = self.deframer.m_status_frame_type.val();
        self.rx.st_kind.next = self.deframer.m_status_kind.val();
        self.rx.st_length.next = self.deframer.m_status_length.val();
        self.rx.st_seq.next = self.deframer.m_status_sequence.val();
        self.rx.st_offset.next = self.deframer.m_status_window_offset.val();
        self.tx.rx_ack.next = self.rx.rx_ack.val();
        self.tx.rx_nack.next = self.rx.rx_nack.val();
        self.tx.rx_seq.next = self.rx.rx_seq.val();
        self.tx.rx_reason.next = self.rx.rx_reason.val();
        self.tx.rx_desync.next = self.rx.rx_desync.val();
        self.tx.ctl_valid.next = self.rx.ctl_valid.val();
        self.rx.ctl_ready.next = self.tx.ctl_ready.val();
        self.tx.ctl_type.next = self.rx.ctl_type.val();
        self.tx.ctl_kind.next = self.rx.ctl_kind.val();
        self.tx.ctl_seq.next = self.rx.ctl_seq.val();
        // DMA read channel: the sending side.
        self.dma.rd_cmd_valid.next = self.tx.rd_cmd_valid.val();
        self.tx.rd_cmd_ready.next = self.dma.rd_cmd_ready.val();
        self.dma.rd_cmd_addr.next = self.tx.rd_cmd_addr.val();
        self.dma.rd_cmd_len.next = self.tx.rd_cmd_len.val();
        self.tx.s_rd_tdata.next = self.dma.m_rd_tdata.val();
        self.tx.s_rd_tkeep.next = self.dma.m_rd_tkeep.val();
        self.tx.s_rd_tlast.next = self.dma.m_rd_tlast.val();
        self.tx.s_rd_tvalid.next = self.dma.m_rd_tvalid.val();
        self.dma.m_rd_tready.next = self.tx.s_rd_tready.val();
        // DMA write channel: granted per command (window writes first); the grant ends
        // when the command's data is in (`wr_active` falls after it was taken), and each
        // side's B responses come back by tag (0: receiving side, 1: sending side).
        self.dma.wr_cmd_valid.next = false;
        self.dma.wr_cmd_addr.next = self.rx.wr_cmd_addr.val();
        self.dma.wr_cmd_len.next = self.rx.wr_cmd_len.val();
        self.dma.wr_cmd_tag.next = false;
        self.dma.s_wr_tdata.next = self.rx.m_wr_tdata.val();
        self.dma.s_wr_tvalid.next = false;
        self.rx.wr_cmd_ready.next = false;
        self.rx.m_wr_tready.next = false;
        self.tx.wr_cmd_ready.next = false;
        self.tx.m_wr_tready.next = false;
        self.rx.wr_done.next = self.dma.wr_done.val() & !self.dma.wr_done_tag.val();
        self.tx.wr_done.next = self.dma.wr_done.val() & self.dma.wr_done_tag.val();
        // Each side keeps the channel for its command's data; when that ends (or while
        // nobody holds it), the receiving side's window writes go first unless the
        // sending side was already waiting behind a receiving-side command.
        if self.granted.q.val() & !self.dma.wr_active.val() {
            self.owner.d.next = WriteOwner::Free;
            self.granted.d.next = false;
        }
        self.wr_free.next = (self.owner.q.val() == WriteOwner::Free) | (self.granted.q.val() & !self.dma.wr_active.val());
        self.pick.next = self.owner.q.val();
        if self.wr_free.val() {
            self.pick.next = WriteOwner::Free;
            if self.tx.wr_cmd_valid.val() & (!self.rx.wr_cmd_valid.val() | (self.owner.q.val() == WriteOwner::Rx)) {
                self.pick.next = WriteOwner::Tx;
            } else if self.rx.wr_cmd_valid.val() {
                self.pick.next = WriteOwner::Rx;
            }
        }
        match self.pick.val() {
            WriteOwner::Free => {}
            WriteOwner::Rx => {
                self.dma.wr_cmd_valid.next = self.rx.wr_cmd_valid.val() & self.wr_free.val();
                self.rx.wr_cmd_ready.next = self.dma.wr_cmd_ready.val() & self.wr_free.val();
                self.dma.s_wr_tvalid.next = self.rx.m_wr_tvalid.val();
                self.rx.m_wr_tready.next = self.dma.s_wr_tready.val();
            }
            _ => {
                self.dma.wr_cmd_valid.next = self.tx.wr_cmd_valid.val() & self.wr_free.val();
                self.dma.wr_cmd_addr.next = self.tx.wr_cmd_addr.val();
                self.dma.wr_cmd_len.next = self.tx.wr_cmd_len.val();
                self.dma.wr_cmd_tag.next = true;
                self.dma.s_wr_tdata.next = self.tx.m_wr_tdata.val();
                self.tx.wr_cmd_ready.next = self.dma.wr_cmd_ready.val() & self.wr_free.val();
                self.dma.s_wr_tvalid.next = self.tx.m_wr_tvalid.val();
                self.tx.m_wr_tready.next = self.dma.s_wr_tready.val();
            }
        }
        if self.dma.wr_cmd_valid.val() & self.dma.wr_cmd_ready.val() {
            self.owner.d.next = self.pick.val();
            self.granted.d.next = true;
        }
        // Counters: one increment bit per tandem_hsi::regs::Counter.
        self.count_inc.next = 0.into();
        if self.frame_sent.val() {
            self.count_inc.next = self.count_inc.val() | self.c_frames_tx.val();
        }
        if self.rx.inc_frames_rx.val() {
            self.count_inc.next = self.count_inc.val() | self.c_frames_rx.val();
        }
        if self.tx.inc_data_tx.val() {
            self.count_inc.next = self.count_inc.val() | self.c_data_tx.val();
        }
        if self.rx.inc_data_rx.val() {
            self.count_inc.next = self.count_inc.val() | self.c_data_rx.val();
        }
        if self.tx.inc_retransmit.val() {
            self.count_inc.next = self.count_inc.val() | self.c_retransmits.val();
        }
        if self.rx.inc_acks_rx.val() {
            self.count_inc.next = self.count_inc.val() | self.c_acks_rx.val();
        }
        if self.rx.inc_nacks_rx.val() {
            self.count_inc.next = self.count_inc.val() | self.c_nacks_rx.val();
        }
        if self.tx.inc_nack_tx.val() {
            self.count_inc.next = self.count_inc.val() | self.c_nacks_tx.val();
        }
        if self.rx.inc_crc.val() {
            self.count_inc.next = self.count_inc.val() | self.c_crc_errors.val();
        }
        if self.rx.inc_bounds.val() {
            self.count_inc.next = self.count_inc.val() | self.c_bounds_rejects.val();
        }
        if self.rx.inc_seq_err.val() {
            self.count_inc.next = self.count_inc.val() | self.c_sequence_errors.val();
        }
        if self.rx.inc_dup.val() {
            self.count_inc.next = self.count_inc.val() | self.c_duplicates.val();
        }
        if self.rx.inc_hdr_err.val() {
            self.count_inc.next = self.count_inc.val() | self.c_header_errors.val();
        }
        if self.tx.inc_link_reset.val() {
            self.count_inc.next = self.count_inc.val() | self.c_link_resets.val();
        }
        if self.rx.inc_hb_rx.val() {
            self.count_inc.next = self.count_inc.val() | self.c_heartbeats_rx.val();
        }
        if self.tx.inc_local_reject.val() {
            self.count_inc.next = self.count_inc.val() | self.c_local_rejects.val();
        }
        self.regs.count_inc.next = self.count_inc.val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(bits: u32) -> BuildId {
        BuildId { revision: 0x1234_5678, date: 20_240_101, clock_khz: 250_000, datapath_bits: bits }
    }

    #[test]
    #[should_panic(expected = "must report the datapath width")]
    fn rejects_a_build_stamp_of_another_width() {
        let _ = EngineTop::<64, 8, 13>::new(build(512));
    }

    #[test]
    #[should_panic(expected = "is not generated")]
    fn rejects_unsupported_width() {
        let _ = EngineTop::<128, 16, 12>::new(build(64));
    }

    #[test]
    #[should_panic(expected = "below 1 MHz")]
    fn rejects_a_slow_clock() {
        let _ = EngineTop::<64, 8, 13>::new(BuildId { clock_khz: 999, ..build(64) });
    }

    #[test]
    fn synthesizes() {
        let mut uut = EngineTop::<64, 8, 13>::new(build(64));
        uut.connect_all();
        yosys_validate("tandem_engine_top", &generate_verilog(&uut)).unwrap();
    }
}
