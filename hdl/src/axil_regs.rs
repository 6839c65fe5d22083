//! The engine's register file: AXI4-Lite slave with the self-describing block chain.

use rust_hdl::prelude::*;
use tandem_hsi::frame::MAX_PAYLOAD;
use tandem_hsi::regs::{self, control, counters, cq, id, link, memory, sq, Control, Counter, Irq, Status, BLOCKS};

/// Byte address on the register bus (BAR0 holds the blocks in its first 0x700 bytes).
pub type Addr = Bits<16>;

/// Read/write registers held in flip-flops, in this order (the port wiring in
/// [`AxilRegs::update`] uses these positions; a unit test checks this list against every
/// `RW` register of `tandem_hsi::regs::BLOCKS`).
pub const RW_REGS: [u32; 22] = [
    control::BASE + control::CONTROL,
    control::BASE + control::IRQ_ENABLE,
    control::BASE + control::MAX_BURST,
    control::BASE + control::RETRANSMIT_US,
    control::BASE + control::MAX_IN_FLIGHT,
    control::BASE + control::HEARTBEAT_US,
    sq::BASE + sq::BASE_LO,
    sq::BASE + sq::BASE_HI,
    sq::BASE + sq::SIZE_LOG2,
    sq::BASE + sq::HEAD,
    cq::BASE + cq::BASE_LO,
    cq::BASE + cq::BASE_HI,
    cq::BASE + cq::SIZE_LOG2,
    cq::BASE + cq::TAIL,
    memory::BASE + memory::HOST_BASE_LO,
    memory::BASE + memory::HOST_BASE_HI,
    memory::BASE + memory::HOST_SIZE_LO,
    memory::BASE + memory::HOST_SIZE_HI,
    memory::BASE + memory::WINDOW_BASE_LO,
    memory::BASE + memory::WINDOW_BASE_HI,
    memory::BASE + memory::WINDOW_SIZE_LO,
    memory::BASE + memory::WINDOW_SIZE_HI,
];

/// Read-only registers whose value comes from the engine, in this order.
pub const LIVE_REGS: [u32; 12] = [
    control::BASE + control::STATUS,
    sq::BASE + sq::TAIL,
    cq::BASE + cq::HEAD,
    link::BASE + link::STATE,
    link::BASE + link::NEXT_SEQ_LO,
    link::BASE + link::NEXT_SEQ_HI,
    link::BASE + link::ACKED_SEQ_LO,
    link::BASE + link::ACKED_SEQ_HI,
    link::BASE + link::RX_EXPECTED_LO,
    link::BASE + link::RX_EXPECTED_HI,
    link::BASE + link::SESSION_LO,
    link::BASE + link::SESSION_HI,
];

/// Constant registers: `TYPE`, `VERSION`, `NEXT` of every block and the ID block.
const N_CONST: usize = 3 * 7 + 6;

/// Parameters of the ID block, fixed when the bitstream is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildId {
    /// First 8 hex digits of the source revision, as a number (`BUILD_STAMP_LO`).
    pub revision: u32,
    /// Build date as decimal YYYYMMDD (`BUILD_STAMP_HI`).
    pub date: u32,
    /// Core clock in kHz (`CLOCK_KHZ`).
    pub clock_khz: u32,
    /// Datapath width in bits (`DATAPATH_BITS`): 64 or 512.
    pub datapath_bits: u32,
}

/// AXI4-Lite slave holding every register of `tandem_hsi::regs`: the constant header of
/// each block (`TYPE`, `VERSION`, `NEXT` from `BLOCKS`), the ID block, the RW registers
/// as ports for the engine, the engine's live values, `IRQ_STATUS` (RW1C, set by event
/// pulses) and the sixteen event counters in `Counter` order. Unmapped addresses read 0;
/// writes to read-only registers are ignored; both answer OKAY. Byte strobes apply to RW
/// registers. `CONTROL.CLEAR_COUNTERS` and `CONTROL.ABORT` are pulses and read 0; a write
/// to `SQ.HEAD` pulses `doorbell`, one to `CQ.TAIL` pulses `cq_tail_written`.
/// RW registers reset to 0.
#[derive(LogicBlock)]
pub struct AxilRegs {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Write address.
    pub s_axil_awaddr: Signal<In, Addr>,
    /// Write address valid.
    pub s_axil_awvalid: Signal<In, Bit>,
    /// Write address ready.
    pub s_axil_awready: Signal<Out, Bit>,
    /// Write data.
    pub s_axil_wdata: Signal<In, Bits<32>>,
    /// Write byte strobes.
    pub s_axil_wstrb: Signal<In, Bits<4>>,
    /// Write data valid.
    pub s_axil_wvalid: Signal<In, Bit>,
    /// Write data ready.
    pub s_axil_wready: Signal<Out, Bit>,
    /// Write response (always OKAY).
    pub s_axil_bresp: Signal<Out, Bits<2>>,
    /// Write response valid.
    pub s_axil_bvalid: Signal<Out, Bit>,
    /// Write response ready.
    pub s_axil_bready: Signal<In, Bit>,
    /// Read address.
    pub s_axil_araddr: Signal<In, Addr>,
    /// Read address valid.
    pub s_axil_arvalid: Signal<In, Bit>,
    /// Read address ready.
    pub s_axil_arready: Signal<Out, Bit>,
    /// Read data.
    pub s_axil_rdata: Signal<Out, Bits<32>>,
    /// Read response (always OKAY).
    pub s_axil_rresp: Signal<Out, Bits<2>>,
    /// Read data valid.
    pub s_axil_rvalid: Signal<Out, Bit>,
    /// Read data ready.
    pub s_axil_rready: Signal<In, Bit>,
    /// `CONTROL.ENABLE`.
    pub enable: Signal<Out, Bit>,
    /// One-cycle pulse: `CONTROL.CLEAR_COUNTERS` was written 1 (counters are cleared here).
    pub clear_counters: Signal<Out, Bit>,
    /// One-cycle pulse: `CONTROL.ABORT` was written 1.
    pub abort: Signal<Out, Bit>,
    /// Interrupt / event output: `IRQ_STATUS & IRQ_ENABLE` is not zero.
    pub irq: Signal<Out, Bit>,
    /// `MAX_BURST`.
    pub max_burst: Signal<Out, Bits<32>>,
    /// `RETRANSMIT_US`.
    pub retransmit_us: Signal<Out, Bits<32>>,
    /// `MAX_IN_FLIGHT`.
    pub max_in_flight: Signal<Out, Bits<32>>,
    /// `HEARTBEAT_US`.
    pub heartbeat_us: Signal<Out, Bits<32>>,
    /// Submission ring base (`BASE_HI:BASE_LO`).
    pub sq_base: Signal<Out, Bits<64>>,
    /// Submission ring `SIZE_LOG2`.
    pub sq_size_log2: Signal<Out, Bits<32>>,
    /// Submission ring `HEAD` (producer index).
    pub sq_head: Signal<Out, Bits<32>>,
    /// One-cycle pulse: the host wrote `SQ.HEAD`.
    pub doorbell: Signal<Out, Bit>,
    /// Completion ring base.
    pub cq_base: Signal<Out, Bits<64>>,
    /// Completion ring `SIZE_LOG2`.
    pub cq_size_log2: Signal<Out, Bits<32>>,
    /// Completion ring `TAIL` (consumer index).
    pub cq_tail: Signal<Out, Bits<32>>,
    /// One-cycle pulse: the host wrote `CQ.TAIL`.
    pub cq_tail_written: Signal<Out, Bit>,
    /// Host region base.
    pub host_base: Signal<Out, Bits<64>>,
    /// Host region size.
    pub host_size: Signal<Out, Bits<64>>,
    /// Mirror window base.
    pub window_base: Signal<Out, Bits<64>>,
    /// Mirror window size.
    pub window_size: Signal<Out, Bits<64>>,
    /// Engine: `STATUS.RUNNING`.
    pub running: Signal<In, Bit>,
    /// Engine: link state is Up (`STATUS.LINK_UP`).
    pub link_up: Signal<In, Bit>,
    /// Engine: fatal error (`STATUS.ERROR`); its rising edge sets `IRQ_STATUS.ERROR`.
    pub error: Signal<In, Bit>,
    /// Engine event: a completion was written (sets `IRQ_STATUS.COMPLETION`).
    pub ev_completion: Signal<In, Bit>,
    /// Engine event: the link state changed (sets `IRQ_STATUS.LINK_CHANGE`).
    pub ev_link_change: Signal<In, Bit>,
    /// Engine: `SQ.TAIL`.
    pub sq_tail: Signal<In, Bits<32>>,
    /// Engine: `CQ.HEAD`.
    pub cq_head: Signal<In, Bits<32>>,
    /// Engine: link state code (`LINK.STATE` bits 7:0).
    pub link_state: Signal<In, Bits<8>>,
    /// Engine: next transmit sequence.
    pub next_seq: Signal<In, Bits<64>>,
    /// Engine: highest acknowledged sequence.
    pub acked_seq: Signal<In, Bits<64>>,
    /// Engine: next sequence expected from the partner.
    pub rx_expected: Signal<In, Bits<64>>,
    /// Engine: transmit session id.
    pub session: Signal<In, Bits<64>>,
    /// Engine: one bit per `Counter` (bit `Counter as u8`), each a one-cycle increment.
    pub count_inc: Signal<In, Bits<16>>,
    rw: [DFF<Bits<32>>; 22],
    rw_addr: [Constant<Addr>; 22],
    rw_mask: [Constant<Bits<32>>; 22],
    live: [Signal<Local, Bits<32>>; 12],
    live_addr: [Constant<Addr>; 12],
    konst: [Constant<Bits<32>>; N_CONST],
    konst_addr: [Constant<Addr>; N_CONST],
    count: [DFF<Bits<32>>; 16],
    count_addr: [Constant<Addr>; 16],
    irq_status: DFF<Bits<32>>,
    error_q: DFF<Bit>,
    aw_full: DFF<Bit>,
    aw_addr: DFF<Addr>,
    w_full: DFF<Bit>,
    w_data: DFF<Bits<32>>,
    w_strb: DFF<Bits<4>>,
    b_valid: DFF<Bit>,
    r_valid: DFF<Bit>,
    r_data: DFF<Bits<32>>,
    clear_q: DFF<Bit>,
    abort_q: DFF<Bit>,
    doorbell_q: DFF<Bit>,
    cq_tail_q: DFF<Bit>,
    do_write: Signal<Local, Bit>,
    wmask: Signal<Local, Bits<32>>,
    m0: Signal<Local, Bits<32>>,
    m1: Signal<Local, Bits<32>>,
    m2: Signal<Local, Bits<32>>,
    m3: Signal<Local, Bits<32>>,
    rd: Signal<Local, Bits<32>>,
    irq_events: Signal<Local, Bits<32>>,
    ev0: Signal<Local, Bits<32>>,
    ev1: Signal<Local, Bits<32>>,
    ev2: Signal<Local, Bits<32>>,
    st_running: Signal<Local, Bits<32>>,
    st_link_up: Signal<Local, Bits<32>>,
    st_error: Signal<Local, Bits<32>>,
    a_control: Constant<Addr>,
    a_irq_status: Constant<Addr>,
    a_sq_head: Constant<Addr>,
    a_cq_tail: Constant<Addr>,
    b_clear: Constant<Bits<32>>,
    b_abort: Constant<Bits<32>>,
    b_enable: Constant<Bits<32>>,
    s_running: Constant<Bits<32>>,
    s_link_up: Constant<Bits<32>>,
    s_error: Constant<Bits<32>>,
    i_completion: Constant<Bits<32>>,
    i_link_change: Constant<Bits<32>>,
    i_error: Constant<Bits<32>>,
    i_all: Constant<Bits<32>>,
}

fn is_date(d: u32) -> bool {
    let (y, m, day) = (d / 10_000, d / 100 % 100, d % 100);
    (1970..=9999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&day)
}

impl AxilRegs {
    /// The register file for an engine described by `build`.
    ///
    /// # Panics
    /// On a datapath width other than 64 or 512, a build date that is not YYYYMMDD, or a
    /// clock of 0 kHz, naming the parameter.
    pub fn new(build: BuildId) -> Self {
        assert!(
            matches!(build.datapath_bits, 64 | 512),
            "AxilRegs: datapath_bits = {} is not an engine width (64 or 512)",
            build.datapath_bits
        );
        assert!(is_date(build.date), "AxilRegs: build date {} is not a decimal YYYYMMDD date", build.date);
        assert!(build.clock_khz > 0, "AxilRegs: clock_khz must be positive (the timers count core cycles per microsecond)");
        assert_eq!(BLOCKS.len(), 7, "AxilRegs: the constant table is sized for 7 blocks");
        assert_eq!(Counter::COUNT, 16, "AxilRegs: the counter bank is sized for 16 counters");
        let a = |x: u32| Constant::new(u64::from(x).into());
        let v = |x: u32| Constant::new(u64::from(x).into());
        let mut konst = vec![];
        for b in BLOCKS {
            konst.push((b.base + regs::TYPE, b.type_id));
            konst.push((b.base + regs::VERSION, b.version));
            konst.push((b.base + regs::NEXT, b.next()));
        }
        konst.push((id::BASE + id::HSI_VERSION, tandem_hsi::HSI_VERSION));
        konst.push((id::BASE + id::BUILD_STAMP_LO, build.revision));
        konst.push((id::BASE + id::BUILD_STAMP_HI, build.date));
        konst.push((id::BASE + id::DATAPATH_BITS, build.datapath_bits));
        konst.push((id::BASE + id::MAX_PAYLOAD, MAX_PAYLOAD as u32));
        konst.push((id::BASE + id::CLOCK_KHZ, build.clock_khz));
        assert_eq!(konst.len(), N_CONST);
        let rw_mask =
            std::array::from_fn(|i| if RW_REGS[i] == control::BASE + control::CONTROL { v(Control::ENABLE.bits()) } else { v(u32::MAX) });
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
            enable: Default::default(),
            clear_counters: Default::default(),
            abort: Default::default(),
            irq: Default::default(),
            max_burst: Default::default(),
            retransmit_us: Default::default(),
            max_in_flight: Default::default(),
            heartbeat_us: Default::default(),
            sq_base: Default::default(),
            sq_size_log2: Default::default(),
            sq_head: Default::default(),
            doorbell: Default::default(),
            cq_base: Default::default(),
            cq_size_log2: Default::default(),
            cq_tail: Default::default(),
            cq_tail_written: Default::default(),
            host_base: Default::default(),
            host_size: Default::default(),
            window_base: Default::default(),
            window_size: Default::default(),
            running: Default::default(),
            link_up: Default::default(),
            error: Default::default(),
            ev_completion: Default::default(),
            ev_link_change: Default::default(),
            sq_tail: Default::default(),
            cq_head: Default::default(),
            link_state: Default::default(),
            next_seq: Default::default(),
            acked_seq: Default::default(),
            rx_expected: Default::default(),
            session: Default::default(),
            count_inc: Default::default(),
            rw: std::array::from_fn(|_| Default::default()),
            rw_addr: std::array::from_fn(|i| a(RW_REGS[i])),
            rw_mask,
            live: std::array::from_fn(|_| Default::default()),
            live_addr: std::array::from_fn(|i| a(LIVE_REGS[i])),
            konst: std::array::from_fn(|i| v(konst[i].1)),
            konst_addr: std::array::from_fn(|i| a(konst[i].0)),
            count: std::array::from_fn(|_| Default::default()),
            count_addr: std::array::from_fn(|i| a(counters::BASE + Counter::ALL[i].offset())),
            irq_status: Default::default(),
            error_q: Default::default(),
            aw_full: Default::default(),
            aw_addr: Default::default(),
            w_full: Default::default(),
            w_data: Default::default(),
            w_strb: Default::default(),
            b_valid: Default::default(),
            r_valid: Default::default(),
            r_data: Default::default(),
            clear_q: Default::default(),
            abort_q: Default::default(),
            doorbell_q: Default::default(),
            cq_tail_q: Default::default(),
            do_write: Default::default(),
            wmask: Default::default(),
            m0: Default::default(),
            m1: Default::default(),
            m2: Default::default(),
            m3: Default::default(),
            rd: Default::default(),
            irq_events: Default::default(),
            ev0: Default::default(),
            ev1: Default::default(),
            ev2: Default::default(),
            st_running: Default::default(),
            st_link_up: Default::default(),
            st_error: Default::default(),
            a_control: a(control::BASE + control::CONTROL),
            a_irq_status: a(control::BASE + control::IRQ_STATUS),
            a_sq_head: a(sq::BASE + sq::HEAD),
            a_cq_tail: a(cq::BASE + cq::TAIL),
            b_clear: v(Control::CLEAR_COUNTERS.bits()),
            b_abort: v(Control::ABORT.bits()),
            b_enable: v(Control::ENABLE.bits()),
            s_running: v(Status::RUNNING.bits()),
            s_link_up: v(Status::LINK_UP.bits()),
            s_error: v(Status::ERROR.bits()),
            i_completion: v(Irq::COMPLETION.bits()),
            i_link_change: v(Irq::LINK_CHANGE.bits()),
            i_error: v(Irq::ERROR.bits()),
            i_all: v(Irq::all().bits()),
        }
    }
}

impl Logic for AxilRegs {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, irq_status, error_q, aw_full, aw_addr, w_full, w_data, w_strb, b_valid, r_valid, r_data, clear_q, abort_q,
            doorbell_q, cq_tail_q
        );
        for i in 0..22 {
            self.rw[i].clock.next = self.clock.val();
            self.rw[i].d.next = self.rw[i].q.val();
        }
        for i in 0..16 {
            self.count[i].clock.next = self.clock.val();
            self.count[i].d.next = self.count[i].q.val();
        }
        // Engine-facing values, in RW_REGS order.
        self.enable.next = (self.rw[0].q.val() & self.b_enable.val()).any();
        self.max_burst.next = self.rw[2].q.val();
        self.retransmit_us.next = self.rw[3].q.val();
        self.max_in_flight.next = self.rw[4].q.val();
        self.heartbeat_us.next = self.rw[5].q.val();
        self.sq_base.next = bit_cast::<64, 32>(self.rw[6].q.val()) | (bit_cast::<64, 32>(self.rw[7].q.val()) << 32);
        self.sq_size_log2.next = self.rw[8].q.val();
        self.sq_head.next = self.rw[9].q.val();
        self.cq_base.next = bit_cast::<64, 32>(self.rw[10].q.val()) | (bit_cast::<64, 32>(self.rw[11].q.val()) << 32);
        self.cq_size_log2.next = self.rw[12].q.val();
        self.cq_tail.next = self.rw[13].q.val();
        self.host_base.next = bit_cast::<64, 32>(self.rw[14].q.val()) | (bit_cast::<64, 32>(self.rw[15].q.val()) << 32);
        self.host_size.next = bit_cast::<64, 32>(self.rw[16].q.val()) | (bit_cast::<64, 32>(self.rw[17].q.val()) << 32);
        self.window_base.next = bit_cast::<64, 32>(self.rw[18].q.val()) | (bit_cast::<64, 32>(self.rw[19].q.val()) << 32);
        self.window_size.next = bit_cast::<64, 32>(self.rw[20].q.val()) | (bit_cast::<64, 32>(self.rw[21].q.val()) << 32);
        self.clear_counters.next = self.clear_q.q.val();
        self.abort.next = self.abort_q.q.val();
        self.doorbell.next = self.doorbell_q.q.val();
        self.cq_tail_written.next = self.cq_tail_q.q.val();
        self.irq.next = (self.irq_status.q.val() & self.rw[1].q.val() & self.i_all.val()).any();
        // Live values, in LIVE_REGS order.
        self.st_running.next = 0.into();
        self.st_link_up.next = 0.into();
        self.st_error.next = 0.into();
        if self.running.val() {
            self.st_running.next = self.s_running.val();
        }
        if self.link_up.val() {
            self.st_link_up.next = self.s_link_up.val();
        }
        if self.error.val() {
            self.st_error.next = self.s_error.val();
        }
        self.live[0].next = self.st_running.val() | self.st_link_up.val() | self.st_error.val();
        self.live[1].next = self.sq_tail.val();
        self.live[2].next = self.cq_head.val();
        self.live[3].next = bit_cast::<32, 8>(self.link_state.val());
        self.live[4].next = self.next_seq.val().get_bits::<32>(0);
        self.live[5].next = self.next_seq.val().get_bits::<32>(32);
        self.live[6].next = self.acked_seq.val().get_bits::<32>(0);
        self.live[7].next = self.acked_seq.val().get_bits::<32>(32);
        self.live[8].next = self.rx_expected.val().get_bits::<32>(0);
        self.live[9].next = self.rx_expected.val().get_bits::<32>(32);
        self.live[10].next = self.session.val().get_bits::<32>(0);
        self.live[11].next = self.session.val().get_bits::<32>(32);
        // AXI4-Lite write: address and data are taken independently, the write happens
        // when both are held and the previous response has been taken.
        self.s_axil_awready.next = !self.aw_full.q.val();
        self.s_axil_wready.next = !self.w_full.q.val();
        self.s_axil_bvalid.next = self.b_valid.q.val();
        self.s_axil_bresp.next = 0.into();
        if self.s_axil_awvalid.val() & !self.aw_full.q.val() {
            self.aw_full.d.next = true;
            self.aw_addr.d.next = self.s_axil_awaddr.val();
        }
        if self.s_axil_wvalid.val() & !self.w_full.q.val() {
            self.w_full.d.next = true;
            self.w_data.d.next = self.s_axil_wdata.val();
            self.w_strb.d.next = self.s_axil_wstrb.val();
        }
        if self.s_axil_bready.val() {
            self.b_valid.d.next = false;
        }
        self.do_write.next = self.aw_full.q.val() & self.w_full.q.val() & !self.b_valid.q.val();
        self.m0.next = 0.into();
        self.m1.next = 0.into();
        self.m2.next = 0.into();
        self.m3.next = 0.into();
        if self.w_strb.q.val().get_bit(0) {
            self.m0.next = 0xFF.into();
        }
        if self.w_strb.q.val().get_bit(1) {
            self.m1.next = 0xFF.into();
        }
        if self.w_strb.q.val().get_bit(2) {
            self.m2.next = 0xFF.into();
        }
        if self.w_strb.q.val().get_bit(3) {
            self.m3.next = 0xFF.into();
        }
        self.wmask.next = self.m0.val() | (self.m1.val() << 8) | (self.m2.val() << 16) | (self.m3.val() << 24);
        self.clear_q.d.next = false;
        self.abort_q.d.next = false;
        self.doorbell_q.d.next = false;
        self.cq_tail_q.d.next = false;
        // Interrupt causes: events set, a write of 1 clears (events win).
        self.error_q.d.next = self.error.val();
        self.ev0.next = 0.into();
        self.ev1.next = 0.into();
        self.ev2.next = 0.into();
        if self.ev_completion.val() {
            self.ev0.next = self.i_completion.val();
        }
        if self.ev_link_change.val() {
            self.ev1.next = self.i_link_change.val();
        }
        if self.error.val() & !self.error_q.q.val() {
            self.ev2.next = self.i_error.val();
        }
        self.irq_events.next = self.ev0.val() | self.ev1.val() | self.ev2.val();
        self.irq_status.d.next = self.irq_status.q.val() | self.irq_events.val();
        if self.do_write.val() {
            self.aw_full.d.next = false;
            self.w_full.d.next = false;
            self.b_valid.d.next = true;
            for i in 0..22 {
                if self.aw_addr.q.val() == self.rw_addr[i].val() {
                    self.rw[i].d.next =
                        (self.rw[i].q.val() & !self.wmask.val()) | (self.w_data.q.val() & self.wmask.val() & self.rw_mask[i].val());
                }
            }
            if self.aw_addr.q.val() == self.a_irq_status.val() {
                self.irq_status.d.next = (self.irq_status.q.val() & !(self.w_data.q.val() & self.wmask.val())) | self.irq_events.val();
            }
            if self.aw_addr.q.val() == self.a_control.val() {
                self.clear_q.d.next = (self.w_data.q.val() & self.wmask.val() & self.b_clear.val()).any();
                self.abort_q.d.next = (self.w_data.q.val() & self.wmask.val() & self.b_abort.val()).any();
            }
            if self.aw_addr.q.val() == self.a_sq_head.val() {
                self.doorbell_q.d.next = true;
            }
            if self.aw_addr.q.val() == self.a_cq_tail.val() {
                self.cq_tail_q.d.next = true;
            }
        }
        // Counters: wrapping increments; CLEAR_COUNTERS zeroes them.
        for i in 0..16 {
            if self.count_inc.val().get_bit(i) {
                self.count[i].d.next = self.count[i].q.val() + 1;
            }
            if self.clear_q.q.val() {
                self.count[i].d.next = 0.into();
            }
        }
        // AXI4-Lite read: one outstanding read, data registered.
        self.rd.next = 0.into();
        for i in 0..N_CONST {
            if self.s_axil_araddr.val() == self.konst_addr[i].val() {
                self.rd.next = self.konst[i].val();
            }
        }
        for i in 0..22 {
            if self.s_axil_araddr.val() == self.rw_addr[i].val() {
                self.rd.next = self.rw[i].q.val();
            }
        }
        for i in 0..12 {
            if self.s_axil_araddr.val() == self.live_addr[i].val() {
                self.rd.next = self.live[i].val();
            }
        }
        for i in 0..16 {
            if self.s_axil_araddr.val() == self.count_addr[i].val() {
                self.rd.next = self.count[i].q.val();
            }
        }
        if self.s_axil_araddr.val() == self.a_irq_status.val() {
            self.rd.next = self.irq_status.q.val();
        }
        self.s_axil_arready.next = !self.r_valid.q.val();
        self.s_axil_rvalid.next = self.r_valid.q.val();
        self.s_axil_rdata.next = self.r_data.q.val();
        self.s_axil_rresp.next = 0.into();
        if self.s_axil_rready.val() {
            self.r_valid.d.next = false;
        }
        if self.s_axil_arvalid.val() & !self.r_valid.q.val() {
            self.r_valid.d.next = true;
            self.r_data.d.next = self.rd.val();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::settle;
    use std::collections::BTreeSet;
    use tandem_hsi::regs::Access;

    const BUILD: BuildId = BuildId { revision: 0x45ea_54f0, date: 20_240_630, clock_khz: 250_000, datapath_bits: 512 };

    /// AXI4-Lite master model: random valid delays and ready back-pressure, every
    /// transaction bounded in cycles.
    struct Bus {
        uut: AxilRegs,
        rng: u32,
        /// Cycles with each pulse output high: clear_counters, abort, doorbell, cq_tail_written.
        pulses: [u32; 4],
    }

    impl Bus {
        fn new(seed: u32) -> Self {
            let mut uut = AxilRegs::new(BUILD);
            uut.connect_all();
            Bus { uut, rng: seed | 1, pulses: [0; 4] }
        }
        fn rand(&mut self) -> u32 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 17;
            self.rng ^= self.rng << 5;
            self.rng
        }
        fn clock(&mut self) {
            let u = &mut self.uut;
            for (i, p) in [u.clear_counters.val(), u.abort.val(), u.doorbell.val(), u.cq_tail_written.val()].iter().enumerate() {
                self.pulses[i] += u32::from(*p);
            }
            u.clock.next = Clock { clk: true };
            settle(u);
            u.clock.next = Clock { clk: false };
            settle(u);
        }
        fn write_strb(&mut self, addr: u32, data: u32, strb: u8) {
            let (mut aw, mut w) = (false, false);
            for _ in 0..100 {
                let (ra, rw, rb) = (self.rand() % 3 != 0, self.rand() % 3 != 0, self.rand() % 2 == 0);
                let u = &mut self.uut;
                u.s_axil_awaddr.next = u64::from(addr).into();
                u.s_axil_awvalid.next = !aw && ra;
                u.s_axil_wdata.next = u64::from(data).into();
                u.s_axil_wstrb.next = u64::from(strb).into();
                u.s_axil_wvalid.next = !w && rw;
                u.s_axil_bready.next = rb;
                settle(u);
                aw |= u.s_axil_awvalid.val() && u.s_axil_awready.val();
                w |= u.s_axil_wvalid.val() && u.s_axil_wready.val();
                let done = u.s_axil_bvalid.val() && u.s_axil_bready.val();
                if done {
                    assert!(aw && w, "write response before address and data were taken");
                    assert_eq!(u.s_axil_bresp.val().to_u32(), 0, "write {addr:#x}: OKAY");
                }
                self.clock();
                if done {
                    let u = &mut self.uut;
                    u.s_axil_awvalid.next = false;
                    u.s_axil_wvalid.next = false;
                    u.s_axil_bready.next = false;
                    return;
                }
            }
            panic!("write {addr:#x} did not complete in 100 cycles");
        }
        fn write(&mut self, addr: u32, data: u32) {
            self.write_strb(addr, data, 0xF);
        }
        fn read(&mut self, addr: u32) -> u32 {
            let mut ar = false;
            for _ in 0..100 {
                let (ra, rr) = (self.rand() % 3 != 0, self.rand() % 2 == 0);
                let u = &mut self.uut;
                u.s_axil_araddr.next = u64::from(addr).into();
                u.s_axil_arvalid.next = !ar && ra;
                u.s_axil_rready.next = ar && rr;
                settle(u);
                let took = u.s_axil_arvalid.val() && u.s_axil_arready.val();
                let done = u.s_axil_rvalid.val() && u.s_axil_rready.val();
                let data = u.s_axil_rdata.val().to_u32();
                if done {
                    assert_eq!(u.s_axil_rresp.val().to_u32(), 0, "read {addr:#x}: OKAY");
                }
                self.clock();
                ar |= took;
                if done {
                    let u = &mut self.uut;
                    u.s_axil_arvalid.next = false;
                    u.s_axil_rready.next = false;
                    return data;
                }
            }
            panic!("read {addr:#x} did not complete in 100 cycles");
        }
    }

    fn pattern(addr: u32) -> u32 {
        addr.wrapping_mul(0x9E37_79B1) ^ 0xA5A5_0000
    }

    /// Like a driver: walk from offset 0, refuse loops, and find every block of
    /// `tandem_hsi::regs::BLOCKS` in order with its TYPE and VERSION; then the ID block.
    #[test]
    fn the_chain_walks_like_the_hsi_and_the_id_block_reports_the_build() {
        let mut bus = Bus::new(7);
        let mut at = 0u32;
        let mut seen = vec![];
        for _ in 0..=BLOCKS.len() {
            assert!(!seen.contains(&at), "chain loops at {at:#x}");
            seen.push(at);
            let b = BLOCKS.iter().find(|b| b.base == at).unwrap_or_else(|| panic!("no block at {at:#x}"));
            assert_eq!(bus.read(at + regs::TYPE), b.type_id, "{} TYPE", b.name);
            assert_eq!(bus.read(at + regs::VERSION), b.version, "{} VERSION", b.name);
            at = bus.read(at + regs::NEXT);
            assert_eq!(at, b.next(), "{} NEXT", b.name);
            if at == 0 {
                break;
            }
        }
        assert_eq!(seen, BLOCKS.iter().map(|b| b.base).collect::<Vec<_>>(), "every block, in order");
        assert_eq!(bus.read(id::BASE + id::HSI_VERSION), tandem_hsi::HSI_VERSION);
        assert_eq!(bus.read(id::BASE + id::BUILD_STAMP_LO), BUILD.revision);
        assert_eq!(bus.read(id::BASE + id::BUILD_STAMP_HI), BUILD.date);
        assert_eq!(bus.read(id::BASE + id::DATAPATH_BITS), 512);
        assert_eq!(bus.read(id::BASE + id::MAX_PAYLOAD), MAX_PAYLOAD as u32);
        assert_eq!(bus.read(id::BASE + id::CLOCK_KHZ), BUILD.clock_khz);
        assert_eq!(bus.read(0x7F0), 0, "unmapped reads 0");
    }

    /// The RW table is exactly the HSI's RW registers; each one holds what was written
    /// (CONTROL only its ENABLE bit) and reaches its port; writes to RO registers change
    /// nothing.
    #[test]
    fn rw_registers_hold_values_and_ro_registers_ignore_writes() {
        let hsi_rw: BTreeSet<u32> =
            BLOCKS.iter().flat_map(|b| b.regs.iter().filter(|r| r.access == Access::Rw).map(move |r| b.base + r.offset)).collect();
        assert_eq!(RW_REGS.iter().copied().collect::<BTreeSet<_>>(), hsi_rw, "RW_REGS is the HSI's RW set");
        let mut bus = Bus::new(11);
        let mut before = vec![];
        for b in BLOCKS {
            for r in b.regs.iter().filter(|r| r.access == Access::Ro) {
                before.push((b.base + r.offset, bus.read(b.base + r.offset)));
            }
        }
        for a in RW_REGS {
            bus.write(a, pattern(a));
        }
        for (a, v) in &before {
            bus.write(*a, !v);
        }
        for a in RW_REGS {
            let want = if a == control::BASE + control::CONTROL { pattern(a) & Control::ENABLE.bits() } else { pattern(a) };
            assert_eq!(bus.read(a), want, "RW register {a:#x}");
        }
        for (a, v) in &before {
            assert_eq!(bus.read(*a), *v, "RO register {a:#x} ignores writes");
        }
        let u = &bus.uut;
        let pair = |lo: u32, hi: u32| u64::from(pattern(lo)) | (u64::from(pattern(hi)) << 32);
        assert_eq!(u.sq_base.val().to_u64(), pair(sq::BASE + sq::BASE_LO, sq::BASE + sq::BASE_HI));
        assert_eq!(u.cq_base.val().to_u64(), pair(cq::BASE + cq::BASE_LO, cq::BASE + cq::BASE_HI));
        let m = memory::BASE;
        assert_eq!(u.host_base.val().to_u64(), pair(m + memory::HOST_BASE_LO, m + memory::HOST_BASE_HI));
        assert_eq!(u.host_size.val().to_u64(), pair(m + memory::HOST_SIZE_LO, m + memory::HOST_SIZE_HI));
        assert_eq!(u.window_base.val().to_u64(), pair(m + memory::WINDOW_BASE_LO, m + memory::WINDOW_BASE_HI));
        assert_eq!(u.window_size.val().to_u64(), pair(m + memory::WINDOW_SIZE_LO, m + memory::WINDOW_SIZE_HI));
        assert_eq!(u.max_burst.val().to_u32(), pattern(control::BASE + control::MAX_BURST));
        assert_eq!(u.sq_head.val().to_u32(), pattern(sq::BASE + sq::HEAD));
        assert_eq!(u.cq_tail.val().to_u32(), pattern(cq::BASE + cq::TAIL));
        assert_eq!(u.enable.val(), pattern(control::BASE + control::CONTROL) & Control::ENABLE.bits() != 0);
    }

    #[test]
    fn byte_strobes_write_only_their_lanes() {
        let mut bus = Bus::new(3);
        let a = control::BASE + control::MAX_BURST;
        bus.write(a, 0x1122_3344);
        bus.write_strb(a, 0xAABB_CCDD, 0b0010);
        assert_eq!(bus.read(a), 0x1122_CC44);
    }

    /// CONTROL's command bits and the doorbells are one-cycle pulses, once per write.
    #[test]
    fn commands_and_doorbells_pulse_once_per_write() {
        let mut bus = Bus::new(5);
        bus.write(control::BASE + control::CONTROL, (Control::ENABLE | Control::CLEAR_COUNTERS | Control::ABORT).bits());
        bus.write(sq::BASE + sq::HEAD, 3);
        bus.write(sq::BASE + sq::HEAD, 4);
        bus.write(cq::BASE + cq::TAIL, 1);
        for _ in 0..3 {
            bus.clock();
        }
        assert_eq!(bus.pulses, [1, 1, 2, 1], "clear, abort, doorbell, cq tail pulses");
        assert!(bus.uut.enable.val());
        assert_eq!(bus.read(control::BASE + control::CONTROL), Control::ENABLE.bits(), "command bits read 0");
        assert_eq!(bus.uut.sq_head.val().to_u32(), 4);
    }

    /// Counter i counts its own increment bit, wraps at 32 bits, and CLEAR_COUNTERS
    /// zeroes every counter; offsets come from `Counter::offset`.
    #[test]
    fn counters_count_their_events_and_clear() {
        let mut bus = Bus::new(9);
        for round in 0..Counter::COUNT as u32 {
            let mut inc = 0u64;
            for (i, _) in Counter::ALL.iter().enumerate() {
                if (i as u32) >= round {
                    inc |= 1 << i;
                }
            }
            bus.uut.count_inc.next = inc.into();
            bus.clock();
        }
        bus.uut.count_inc.next = 0.into();
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(bus.read(counters::BASE + c.offset()), i as u32 + 1, "{}", c.name());
        }
        bus.write(control::BASE + control::CONTROL, Control::CLEAR_COUNTERS.bits());
        bus.clock();
        for c in Counter::ALL {
            assert_eq!(bus.read(counters::BASE + c.offset()), 0, "{} cleared", c.name());
        }
    }

    /// Events set IRQ_STATUS, the output follows IRQ_ENABLE, writing 1 clears a cause;
    /// STATUS and the link block show the engine's values.
    #[test]
    fn interrupts_status_and_live_values() {
        let mut bus = Bus::new(13);
        let irq = control::BASE + control::IRQ_STATUS;
        bus.uut.ev_completion.next = true;
        bus.clock();
        bus.uut.ev_completion.next = false;
        bus.uut.error.next = true;
        bus.clock();
        assert_eq!(bus.read(irq), (Irq::COMPLETION | Irq::ERROR).bits());
        assert!(!bus.uut.irq.val(), "nothing enabled");
        bus.write(control::BASE + control::IRQ_ENABLE, Irq::ERROR.bits());
        assert!(bus.uut.irq.val());
        bus.write(irq, Irq::ERROR.bits());
        assert_eq!(bus.read(irq), Irq::COMPLETION.bits(), "error held high does not re-raise: edge only");
        assert!(!bus.uut.irq.val());
        bus.uut.ev_link_change.next = true;
        bus.clock();
        bus.uut.ev_link_change.next = false;
        assert_eq!(bus.read(irq), (Irq::COMPLETION | Irq::LINK_CHANGE).bits());
        bus.uut.running.next = true;
        bus.uut.link_up.next = true;
        bus.uut.link_state.next = u64::from(tandem_hsi::codes::LinkState::Up.code()).into();
        bus.uut.next_seq.next = 0x1_0000_0002u64.into();
        bus.uut.acked_seq.next = 0x3_0000_0004u64.into();
        bus.uut.rx_expected.next = 0x5_0000_0006u64.into();
        bus.uut.session.next = 0xDEAD_BEEF_0BAD_F00Du64.into();
        bus.uut.sq_tail.next = 17u64.into();
        bus.uut.cq_head.next = 19u64.into();
        assert_eq!(bus.read(control::BASE + control::STATUS), (Status::RUNNING | Status::LINK_UP | Status::ERROR).bits());
        assert_eq!(bus.read(link::BASE + link::STATE), u32::from(tandem_hsi::codes::LinkState::Up.code()));
        let l = link::BASE;
        let got: Vec<u32> = [
            link::NEXT_SEQ_LO,
            link::NEXT_SEQ_HI,
            link::ACKED_SEQ_LO,
            link::ACKED_SEQ_HI,
            link::RX_EXPECTED_LO,
            link::RX_EXPECTED_HI,
            link::SESSION_LO,
            link::SESSION_HI,
        ]
        .iter()
        .map(|o| bus.read(l + o))
        .collect();
        assert_eq!(got, [2, 1, 4, 3, 6, 5, 0x0BAD_F00D, 0xDEAD_BEEF]);
        assert_eq!(bus.read(sq::BASE + sq::TAIL), 17);
        assert_eq!(bus.read(cq::BASE + cq::HEAD), 19);
    }

    #[test]
    #[should_panic(expected = "is not an engine width")]
    fn rejects_a_datapath_width_that_is_not_built() {
        let _ = AxilRegs::new(BuildId { datapath_bits: 128, ..BUILD });
    }

    #[test]
    #[should_panic(expected = "is not a decimal YYYYMMDD date")]
    fn rejects_a_build_date_that_is_not_a_date() {
        let _ = AxilRegs::new(BuildId { date: 20_241_301, ..BUILD });
    }

    #[test]
    fn synthesizes() {
        let mut uut = AxilRegs::new(BUILD);
        uut.connect_all();
        yosys_validate("tandem_axil_regs", &generate_verilog(&uut)).unwrap();
    }
}
