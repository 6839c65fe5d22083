//! Sending side of the engine: submission ring fetch, entry checks, framing requests,
//! go-back-N retransmission, heartbeats and completions.

use crate::axi_dma::{DmaAddr, DmaLen};
use crate::hsi_consts::*;
use rust_hdl::prelude::*;
use tandem_hsi::codes::{CompletionStatus, FrameType, LinkState, NackReason, Opcode};
use tandem_hsi::entry::{completion, submission};

const _: () = assert!(
    completion::SEQUENCE.offset == 8 && completion::SEQUENCE.width == 8 && completion::PHASE.offset < 8,
    "TxEngine writes a completion as SEQUENCE (bytes 8..16), then bytes 0..8 with the phase bit"
);

/// In-flight table depth: entries fetched and not yet completed, at most.
pub const TABLE: usize = 8;

/// Heartbeat intervals (`HEARTBEAT_US`) without any valid frame from the partner after
/// which a link that was Up is Down (from the HSI).
pub const LINK_DEAD_HEARTBEATS: u64 = tandem_hsi::frame::LINK_DEAD_HEARTBEATS as u64;

/// Phases of the transmit sequencer ([`TxEngine`]).
#[derive(Copy, Clone, PartialEq, Eq, Debug, LogicState)]
pub enum TxPhase {
    /// Choosing the next job.
    Idle,
    /// Descriptor read command (its data is taken by the read-data side).
    FetchCmd,
    /// Header request of a data frame (its payload read was requested before).
    SendHdr,
    /// Payload read command.
    SendCmd,
    /// Header request of a control frame (ACK/NACK for the receiving side, heartbeat).
    CtlHdr,
}

/// Phases of the completion writer.
#[derive(Copy, Clone, PartialEq, Eq, Debug, LogicState)]
pub enum CplPhase {
    /// Waiting for the oldest entry to become completable.
    Idle,
    /// Write command for one part of the completion entry.
    Cmd,
    /// The part's single beat.
    Data,
    /// Waiting for the write response.
    Wait,
}

/// The sending half of the engine.
///
/// On the doorbell it fetches 32-byte submission entries from `SQ.TAIL` up to `SQ.HEAD`
/// (into an in-flight table of [`TABLE`] entries, ahead of sending: descriptor and
/// payload reads are requested in the order they are needed, two at a time, and a
/// separate read-data side gathers descriptors and passes payloads to the framer, so
/// one read's latency passes while the previous read's data flows), checks each (unknown opcode or
/// non-zero reserved fields, then `LENGTH` above `MAX_PAYLOAD`, then a barrier with a
/// length: `BadOpcode`/`TooLong`; a payload outside the host region: `HostBounds`, as
/// `drivers::api::check_entry`), gives every accepted entry the next sequence number
/// (from 1), and sends it as a data frame (header request to the framer, payload read by
/// DMA and passed through) while at most `MAX_IN_FLIGHT` sequences are unacknowledged.
/// Cumulative ACKs move `acked_seq`; the oldest entry is completed (Ok, RemoteBounds or
/// its local status, with the phase bit) into the completion ring as soon as it is
/// acknowledged or was rejected, always in submission order and never overtaking the
/// host's `CQ.TAIL` (two writes per entry: `SEQUENCE`, then the bytes holding the phase
/// bit). NACK Crc/SequenceGap/NotSynced and `RETRANSMIT_US` without progress
/// send again from the oldest unacknowledged entry (the payload is fetched again);
/// NotSynced, the timer and link start also send a heartbeat first. NACK Bounds marks its entry:
/// it is sent again as a zero-length barrier under the same sequence and completes
/// RemoteBounds once acknowledged. Heartbeats (session id, oldest unacknowledged
/// sequence) go out at start and after `HEARTBEAT_US` without a frame. Control frames
/// requested by the receiving side go first, between frames. Link loss: once the link
/// was Up, [`LINK_DEAD_HEARTBEATS`] heartbeat intervals without a valid frame from the
/// partner make it Down; the next valid frame starts a resync (heartbeat, go back) and
/// the next ACK makes it Up again, which counts a link reset. `abort` (CONTROL.ABORT)
/// fetches every doorbelled entry, completes every entry not yet acknowledged
/// `Aborted` in order (acknowledged ones Ok, locally rejected ones with their status;
/// the sequence is 0 for an entry never sent), resets the sequence state (the next
/// sequence is 1 again) and keeps the engine stopped (`running` low, link Down, no
/// frames) until `enable` falls and rises again.
#[derive(LogicBlock)]
pub struct TxEngine<const W: usize, const K: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// `CONTROL.ENABLE` (and a good configuration).
    pub enable: Signal<In, Bit>,
    /// Pulse: `CONTROL.ABORT` was written 1.
    pub abort: Signal<In, Bit>,
    /// A valid frame arrived from the partner.
    pub rx_frame: Signal<In, Bit>,
    /// The engine is running: enabled and not stopped by an abort.
    pub running: Signal<Out, Bit>,
    /// One-cycle pulse every microsecond.
    pub us_tick: Signal<In, Bit>,
    /// Session id to use from the next enable (a free-running value).
    pub session_seed: Signal<In, Bits<64>>,
    /// `MAX_IN_FLIGHT`.
    pub max_in_flight: Signal<In, Bits<32>>,
    /// `RETRANSMIT_US` (0: no timer).
    pub retransmit_us: Signal<In, Bits<32>>,
    /// `HEARTBEAT_US` (0: no idle heartbeats).
    pub heartbeat_us: Signal<In, Bits<32>>,
    /// Submission ring base.
    pub sq_base: Signal<In, DmaAddr>,
    /// Submission ring `SIZE_LOG2`.
    pub sq_size_log2: Signal<In, Bits<32>>,
    /// Submission ring `HEAD`.
    pub sq_head: Signal<In, Bits<32>>,
    /// Completion ring base.
    pub cq_base: Signal<In, DmaAddr>,
    /// Completion ring `SIZE_LOG2`.
    pub cq_size_log2: Signal<In, Bits<32>>,
    /// Completion ring `TAIL`.
    pub cq_tail: Signal<In, Bits<32>>,
    /// Host region base.
    pub host_base: Signal<In, DmaAddr>,
    /// Host region size.
    pub host_size: Signal<In, Bits<64>>,
    /// Submission ring `TAIL`.
    pub sq_tail: Signal<Out, Bits<32>>,
    /// Completion ring `HEAD`.
    pub cq_head: Signal<Out, Bits<32>>,
    /// Next sequence to assign.
    pub next_seq: Signal<Out, Bits<64>>,
    /// Highest acknowledged sequence.
    pub acked_seq: Signal<Out, Bits<64>>,
    /// Transmit session id.
    pub session: Signal<Out, Bits<64>>,
    /// Link state code.
    pub link_state: Signal<Out, Bits<8>>,
    /// Pulse: a completion was written.
    pub ev_completion: Signal<Out, Bit>,
    /// Pulse: the link state changed.
    pub ev_link_change: Signal<Out, Bit>,
    /// Pulse: a data frame was sent for the first time.
    pub inc_data_tx: Signal<Out, Bit>,
    /// Pulse: a data frame was sent again.
    pub inc_retransmit: Signal<Out, Bit>,
    /// Pulse: an entry completed with a local error.
    pub inc_local_reject: Signal<Out, Bit>,
    /// Pulse: a NACK frame was sent.
    pub inc_nack_tx: Signal<Out, Bit>,
    /// Pulse: the link went Up again after having been Up.
    pub inc_link_reset: Signal<Out, Bit>,
    /// Receiving side: an ACK arrived.
    pub rx_ack: Signal<In, Bit>,
    /// Receiving side: a NACK arrived.
    pub rx_nack: Signal<In, Bit>,
    /// Receiving side: the ACK/NACK `SEQUENCE`.
    pub rx_seq: Signal<In, Bits<64>>,
    /// Receiving side: the NACK reason.
    pub rx_reason: Signal<In, Bits<8>>,
    /// Receiving side: the stream from the partner lost sync (header error).
    pub rx_desync: Signal<In, Bit>,
    /// Control frame request from the receiving side.
    pub ctl_valid: Signal<In, Bit>,
    /// Control frame request taken.
    pub ctl_ready: Signal<Out, Bit>,
    /// Control frame `FRAME_TYPE`.
    pub ctl_type: Signal<In, Bits<8>>,
    /// Control frame `KIND`.
    pub ctl_kind: Signal<In, Bits<8>>,
    /// Control frame `SEQUENCE`.
    pub ctl_seq: Signal<In, Bits<64>>,
    /// Framer header request valid.
    pub hdr_valid: Signal<Out, Bit>,
    /// Framer header request taken.
    pub hdr_ready: Signal<In, Bit>,
    /// Framer `FRAME_TYPE`.
    pub hdr_type: Signal<Out, Bits<FRAME_TYPE_BITS>>,
    /// Framer `KIND`.
    pub hdr_kind: Signal<Out, Bits<KIND_BITS>>,
    /// Framer `SERVICE_TAG`.
    pub hdr_tag: Signal<Out, Bits<TAG_BITS>>,
    /// Framer `LENGTH`.
    pub hdr_length: Signal<Out, Bits<LENGTH_BITS>>,
    /// Framer `SEQUENCE`.
    pub hdr_seq: Signal<Out, Bits<SEQUENCE_BITS>>,
    /// Framer `WINDOW_OFFSET`.
    pub hdr_offset: Signal<Out, Bits<OFFSET_BITS>>,
    /// Payload to the framer, data.
    pub m_pay_tdata: Signal<Out, Bits<W>>,
    /// Payload to the framer, byte enables.
    pub m_pay_tkeep: Signal<Out, Bits<K>>,
    /// Payload to the framer, last beat.
    pub m_pay_tlast: Signal<Out, Bit>,
    /// Payload to the framer, valid.
    pub m_pay_tvalid: Signal<Out, Bit>,
    /// Payload to the framer, ready.
    pub m_pay_tready: Signal<In, Bit>,
    /// DMA read command valid.
    pub rd_cmd_valid: Signal<Out, Bit>,
    /// DMA read command taken.
    pub rd_cmd_ready: Signal<In, Bit>,
    /// DMA read address.
    pub rd_cmd_addr: Signal<Out, DmaAddr>,
    /// DMA read length.
    pub rd_cmd_len: Signal<Out, DmaLen>,
    /// DMA read data.
    pub s_rd_tdata: Signal<In, Bits<W>>,
    /// DMA read byte enables.
    pub s_rd_tkeep: Signal<In, Bits<K>>,
    /// DMA read last beat.
    pub s_rd_tlast: Signal<In, Bit>,
    /// DMA read valid.
    pub s_rd_tvalid: Signal<In, Bit>,
    /// DMA read ready.
    pub s_rd_tready: Signal<Out, Bit>,
    /// DMA write command valid (completion entries).
    pub wr_cmd_valid: Signal<Out, Bit>,
    /// DMA write command taken.
    pub wr_cmd_ready: Signal<In, Bit>,
    /// DMA write address.
    pub wr_cmd_addr: Signal<Out, DmaAddr>,
    /// DMA write length.
    pub wr_cmd_len: Signal<Out, DmaLen>,
    /// DMA write data.
    pub m_wr_tdata: Signal<Out, Bits<W>>,
    /// DMA write valid.
    pub m_wr_tvalid: Signal<Out, Bit>,
    /// DMA write ready.
    pub m_wr_tready: Signal<In, Bit>,
    /// DMA write finished.
    pub wr_done: Signal<In, Bit>,
    phase: DFF<TxPhase>,
    cphase: DFF<CplPhase>,
    enabled: DFF<Bit>,
    aborting: DFF<Bit>,
    halted: DFF<Bit>,
    dead: DFF<Bit>,
    quiet_us: DFF<Bits<32>>,
    missed: DFF<Bits<8>>,
    go: Signal<Local, Bit>,
    abort_done: Signal<Local, Bit>,
    st_aborted: Constant<Bits<8>>,
    sess: DFF<Bits<64>>,
    tail: DFF<Bits<32>>,
    chead: DFF<Bits<32>>,
    cphase_bit: DFF<Bit>,
    nseq: DFF<Bits<64>>,
    acked: DFF<Bits<64>>,
    max_sent: DFF<Bits<64>>,
    fetch_ptr: DFF<Bits<4>>,
    send_ptr: DFF<Bits<4>>,
    done_ptr: DFF<Bits<4>>,
    goback: DFF<Bit>,
    hb_due: DFF<Bit>,
    hb_sent: DFF<Bit>,
    up: DFF<Bit>,
    was_up: DFF<Bit>,
    state_q: DFF<Bits<8>>,
    rt_us: DFF<Bits<32>>,
    hb_us: DFF<Bits<32>>,
    desc: DFF<Bits<256>>,
    ftail: DFF<Bits<32>>,
    cur_rb: DFF<Bit>,
    fouts: DFF<Bits<4>>,
    chk: DFF<Bit>,
    rk0: DFF<Bit>,
    rk1: DFF<Bit>,
    rk2: DFF<Bit>,
    side_fetch: Signal<Local, Bit>,
    rcount: DFF<Bits<2>>,
    push_kind: Signal<Local, Bit>,
    r_push: Signal<Local, Bit>,
    r_pop: Signal<Local, Bit>,
    cpl: DFF<Bits<128>>,
    cpl_head: DFF<Bit>,
    ev_cpl: DFF<Bit>,
    t_op: [DFF<Bits<8>>; TABLE],
    t_tag: [DFF<Bits<32>>; TABLE],
    t_addr: [DFF<Bits<64>>; TABLE],
    t_off: [DFF<Bits<64>>; TABLE],
    t_len: [DFF<Bits<32>>; TABLE],
    t_cookie: [DFF<Bits<32>>; TABLE],
    t_seq: [DFF<Bits<64>>; TABLE],
    t_st: [DFF<Bits<8>>; TABLE],
    t_rb: [DFF<Bit>; TABLE],
    slot_id: [Constant<Bits<3>>; TABLE],
    s_slot: Signal<Local, Bits<3>>,
    s_op: Signal<Local, Bits<8>>,
    s_tag: Signal<Local, Bits<32>>,
    s_addr: Signal<Local, Bits<64>>,
    s_off: Signal<Local, Bits<64>>,
    s_len: Signal<Local, Bits<32>>,
    s_seq: Signal<Local, Bits<64>>,
    s_st: Signal<Local, Bits<8>>,
    s_rb: Signal<Local, Bit>,
    d_slot: Signal<Local, Bits<3>>,
    d_op: Signal<Local, Bits<8>>,
    d_cookie: Signal<Local, Bits<32>>,
    d_seq: Signal<Local, Bits<64>>,
    d_st: Signal<Local, Bits<8>>,
    d_rb: Signal<Local, Bit>,
    f_slot: Signal<Local, Bits<3>>,
    e_op: Signal<Local, Bits<8>>,
    e_flags: Signal<Local, Bits<8>>,
    e_res: Signal<Local, Bits<16>>,
    e_tag: Signal<Local, Bits<32>>,
    e_addr: Signal<Local, Bits<64>>,
    e_off: Signal<Local, Bits<64>>,
    e_len: Signal<Local, Bits<32>>,
    e_cookie: Signal<Local, Bits<32>>,
    e_st: Signal<Local, Bits<8>>,
    sq_mask: Signal<Local, Bits<32>>,
    cq_mask: Signal<Local, Bits<32>>,
    cq_next: Signal<Local, Bits<32>>,
    in_table: Signal<Local, Bits<4>>,
    mif: Signal<Local, Bits<64>>,
    can_send: Signal<Local, Bit>,
    can_fetch: Signal<Local, Bit>,
    cpl_ready: Signal<Local, Bit>,
    cpl_status: Signal<Local, Bits<8>>,
    cpl_seq: Signal<Local, Bits<64>>,
    dead_after: Constant<Bits<8>>,
    ack_ok: Signal<Local, Bit>,
    new_state: Signal<Local, Bits<8>>,
    t_data: Constant<Bits<8>>,
    t_hb: Constant<Bits<8>>,
    op_log: Constant<Bits<8>>,
    op_barrier: Constant<Bits<8>>,
    r_bounds: Constant<Bits<8>>,
    r_not_synced: Constant<Bits<8>>,
    st_remote_bounds: Constant<Bits<8>>,
    st_too_long: Constant<Bits<8>>,
    st_bad_opcode: Constant<Bits<8>>,
    st_host_bounds: Constant<Bits<8>>,
    ls_down: Constant<Bits<8>>,
    ls_connecting: Constant<Bits<8>>,
    ls_up: Constant<Bits<8>>,
    max_payload: Constant<Bits<32>>,
    at_op: Constant<Bits<16>>,
    at_flags: Constant<Bits<16>>,
    at_res: Constant<Bits<16>>,
    at_tag: Constant<Bits<16>>,
    at_addr: Constant<Bits<16>>,
    at_off: Constant<Bits<16>>,
    at_len: Constant<Bits<16>>,
    at_cookie: Constant<Bits<16>>,
    ac_cookie: Constant<Bits<16>>,
    ac_status: Constant<Bits<16>>,
    ac_op: Constant<Bits<16>>,
    ac_phase: Constant<Bits<16>>,
    ac_seq: Constant<Bits<16>>,
    desc_bytes: Constant<Bits<32>>,
    part_bytes: Constant<Bits<32>>,
    seq_at: Constant<Bits<64>>,
    desc_log2: Constant<Bits<16>>,
    cpl_log2: Constant<Bits<16>>,
    width: Constant<Bits<16>>,
    gshift: Constant<Bits<16>>,
    one32: Constant<Bits<32>>,
    t_ack: Constant<Bits<8>>,
    phase_one: Constant<Bits<128>>,
    phase_word: Signal<Local, Bits<128>>,
    ctl_sel: DFF<Bit>,
}

impl<const W: usize, const K: usize> Default for TxEngine<W, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const K: usize> TxEngine<W, K> {
    /// The sending side for a `W`-bit datapath with `K = W / 8` byte lanes.
    // <blank>
    /// Every field at its default; constants zero (overridden by `new`).
    fn blank() -> Self {
        Self {
            clock: Default::default(),
            enable: Default::default(),
            abort: Default::default(),
            rx_frame: Default::default(),
            running: Default::default(),
            us_tick: Default::default(),
            session_seed: Default::default(),
            max_in_flight: Default::default(),
            retransmit_us: Default::default(),
            heartbeat_us: Default::default(),
            sq_base: Default::default(),
            sq_size_log2: Default::default(),
            sq_head: Default::default(),
            cq_base: Default::default(),
            cq_size_log2: Default::default(),
            cq_tail: Default::default(),
            host_base: Default::default(),
            host_size: Default::default(),
            sq_tail: Default::default(),
            cq_head: Default::default(),
            next_seq: Default::default(),
            acked_seq: Default::default(),
            session: Default::default(),
            link_state: Default::default(),
            ev_completion: Default::default(),
            ev_link_change: Default::default(),
            inc_data_tx: Default::default(),
            inc_retransmit: Default::default(),
            inc_local_reject: Default::default(),
            inc_nack_tx: Default::default(),
            inc_link_reset: Default::default(),
            rx_ack: Default::default(),
            rx_nack: Default::default(),
            rx_seq: Default::default(),
            rx_reason: Default::default(),
            rx_desync: Default::default(),
            ctl_valid: Default::default(),
            ctl_ready: Default::default(),
            ctl_type: Default::default(),
            ctl_kind: Default::default(),
            ctl_seq: Default::default(),
            hdr_valid: Default::default(),
            hdr_ready: Default::default(),
            hdr_type: Default::default(),
            hdr_kind: Default::default(),
            hdr_tag: Default::default(),
            hdr_length: Default::default(),
            hdr_seq: Default::default(),
            hdr_offset: Default::default(),
            m_pay_tdata: Default::default(),
            m_pay_tkeep: Default::default(),
            m_pay_tlast: Default::default(),
            m_pay_tvalid: Default::default(),
            m_pay_tready: Default::default(),
            rd_cmd_valid: Default::default(),
            rd_cmd_ready: Default::default(),
            rd_cmd_addr: Default::default(),
            rd_cmd_len: Default::default(),
            s_rd_tdata: Default::default(),
            s_rd_tkeep: Default::default(),
            s_rd_tlast: Default::default(),
            s_rd_tvalid: Default::default(),
            s_rd_tready: Default::default(),
            wr_cmd_valid: Default::default(),
            wr_cmd_ready: Default::default(),
            wr_cmd_addr: Default::default(),
            wr_cmd_len: Default::default(),
            m_wr_tdata: Default::default(),
            m_wr_tvalid: Default::default(),
            m_wr_tready: Default::default(),
            wr_done: Default::default(),
            phase: Default::default(),
            cphase: Default::default(),
            enabled: Default::default(),
            aborting: Default::default(),
            halted: Default::default(),
            dead: Default::default(),
            quiet_us: Default::default(),
            missed: Default::default(),
            go: Default::default(),
            abort_done: Default::default(),
            st_aborted: Constant::new(Default::default()),
            sess: Default::default(),
            tail: Default::default(),
            chead: Default::default(),
            cphase_bit: Default::default(),
            nseq: Default::default(),
            acked: Default::default(),
            max_sent: Default::default(),
            fetch_ptr: Default::default(),
            send_ptr: Default::default(),
            done_ptr: Default::default(),
            goback: Default::default(),
            hb_due: Default::default(),
            hb_sent: Default::default(),
            up: Default::default(),
            was_up: Default::default(),
            state_q: Default::default(),
            rt_us: Default::default(),
            hb_us: Default::default(),
            desc: Default::default(),
            ftail: Default::default(),
            cur_rb: Default::default(),
            fouts: Default::default(),
            chk: Default::default(),
            rk0: Default::default(),
            rk1: Default::default(),
            rk2: Default::default(),
            side_fetch: Default::default(),
            rcount: Default::default(),
            push_kind: Default::default(),
            r_push: Default::default(),
            r_pop: Default::default(),
            cpl: Default::default(),
            cpl_head: Default::default(),
            ev_cpl: Default::default(),
            t_op: Default::default(),
            t_tag: Default::default(),
            t_addr: Default::default(),
            t_off: Default::default(),
            t_len: Default::default(),
            t_cookie: Default::default(),
            t_seq: Default::default(),
            t_st: Default::default(),
            t_rb: Default::default(),
            slot_id: std::array::from_fn(|_| Constant::new(Default::default())),
            s_slot: Default::default(),
            s_op: Default::default(),
            s_tag: Default::default(),
            s_addr: Default::default(),
            s_off: Default::default(),
            s_len: Default::default(),
            s_seq: Default::default(),
            s_st: Default::default(),
            s_rb: Default::default(),
            d_slot: Default::default(),
            d_op: Default::default(),
            d_cookie: Default::default(),
            d_seq: Default::default(),
            d_st: Default::default(),
            d_rb: Default::default(),
            f_slot: Default::default(),
            e_op: Default::default(),
            e_flags: Default::default(),
            e_res: Default::default(),
            e_tag: Default::default(),
            e_addr: Default::default(),
            e_off: Default::default(),
            e_len: Default::default(),
            e_cookie: Default::default(),
            e_st: Default::default(),
            sq_mask: Default::default(),
            cq_mask: Default::default(),
            cq_next: Default::default(),
            in_table: Default::default(),
            mif: Default::default(),
            can_send: Default::default(),
            can_fetch: Default::default(),
            cpl_ready: Default::default(),
            cpl_status: Default::default(),
            cpl_seq: Default::default(),
            dead_after: Constant::new(Default::default()),
            ack_ok: Default::default(),
            new_state: Default::default(),
            t_data: Constant::new(Default::default()),
            t_hb: Constant::new(Default::default()),
            op_log: Constant::new(Default::default()),
            op_barrier: Constant::new(Default::default()),
            r_bounds: Constant::new(Default::default()),
            r_not_synced: Constant::new(Default::default()),
            st_remote_bounds: Constant::new(Default::default()),
            st_too_long: Constant::new(Default::default()),
            st_bad_opcode: Constant::new(Default::default()),
            st_host_bounds: Constant::new(Default::default()),
            ls_down: Constant::new(Default::default()),
            ls_connecting: Constant::new(Default::default()),
            ls_up: Constant::new(Default::default()),
            max_payload: Constant::new(Default::default()),
            at_op: Constant::new(Default::default()),
            at_flags: Constant::new(Default::default()),
            at_res: Constant::new(Default::default()),
            at_tag: Constant::new(Default::default()),
            at_addr: Constant::new(Default::default()),
            at_off: Constant::new(Default::default()),
            at_len: Constant::new(Default::default()),
            at_cookie: Constant::new(Default::default()),
            ac_cookie: Constant::new(Default::default()),
            ac_status: Constant::new(Default::default()),
            ac_op: Constant::new(Default::default()),
            ac_phase: Constant::new(Default::default()),
            ac_seq: Constant::new(Default::default()),
            desc_bytes: Constant::new(Default::default()),
            part_bytes: Constant::new(Default::default()),
            seq_at: Constant::new(Default::default()),
            desc_log2: Constant::new(Default::default()),
            cpl_log2: Constant::new(Default::default()),
            width: Constant::new(Default::default()),
            gshift: Constant::new(Default::default()),
            one32: Constant::new(Default::default()),
            t_ack: Constant::new(Default::default()),
            phase_one: Constant::new(Default::default()),
            phase_word: Default::default(),
            ctl_sel: Default::default(),
        }
    }
    // </blank>

    pub fn new() -> Self {
        assert_eq!(W, 8 * K, "TxEngine: K = {K} byte lanes must be W / 8 for W = {W}");
        assert!(matches!(W, 64 | 128 | 256 | 512), "TxEngine: datapath width W = {W} is not supported (64, 128, 256 or 512 bits)");
        assert_eq!(submission::SIZE, 32, "TxEngine gathers 32-byte submission entries");
        assert_eq!(completion::SIZE, 16, "TxEngine writes 16-byte completion entries");
        fn c<const N: usize>(v: u64) -> Constant<Bits<N>> {
            Constant::new(v.into())
        }
        fn at(f: tandem_hsi::layout::Field) -> Constant<Bits<16>> {
            c(lo(f))
        }
        Self {
            slot_id: std::array::from_fn(|i| c(i as u64)),
            t_data: c(FrameType::Data.code().into()),
            t_hb: c(FrameType::Heartbeat.code().into()),
            op_log: c(Opcode::Log.code().into()),
            op_barrier: c(Opcode::Barrier.code().into()),
            r_bounds: c(NackReason::Bounds.code().into()),
            r_not_synced: c(NackReason::NotSynced.code().into()),
            st_remote_bounds: c(CompletionStatus::RemoteBounds.code().into()),
            st_too_long: c(CompletionStatus::TooLong.code().into()),
            st_bad_opcode: c(CompletionStatus::BadOpcode.code().into()),
            st_host_bounds: c(CompletionStatus::HostBounds.code().into()),
            ls_down: c(LinkState::Down.code().into()),
            ls_connecting: c(LinkState::Connecting.code().into()),
            ls_up: c(LinkState::Up.code().into()),
            max_payload: c(MAX_PAYLOAD),
            at_op: at(submission::OPCODE),
            at_flags: at(submission::FLAGS),
            at_res: at(submission::RESERVED),
            at_tag: at(submission::SERVICE_TAG),
            at_addr: at(submission::HOST_ADDR),
            at_off: at(submission::WINDOW_OFFSET),
            at_len: at(submission::LENGTH),
            at_cookie: at(submission::COOKIE),
            ac_cookie: at(completion::COOKIE),
            ac_status: at(completion::STATUS),
            ac_op: at(completion::OPCODE),
            ac_phase: at(completion::PHASE),
            ac_seq: at(completion::SEQUENCE),
            desc_bytes: c(submission::SIZE as u64),
            part_bytes: c(completion::SEQUENCE.offset as u64),
            seq_at: c(completion::SEQUENCE.offset as u64),
            desc_log2: c(submission::SIZE.trailing_zeros().into()),
            cpl_log2: c(completion::SIZE.trailing_zeros().into()),
            width: c(W as u64),
            gshift: c(256u64.saturating_sub(W as u64)),
            one32: c(1),
            t_ack: c(FrameType::Ack.code().into()),
            st_aborted: c(CompletionStatus::Aborted.code().into()),
            dead_after: c(LINK_DEAD_HEARTBEATS),
            phase_one: Constant::new(Bits::<128>::from(1u64) << lo(completion::PHASE)),
            ..Self::blank()
        }
    }
}

impl<const W: usize, const K: usize> Logic for TxEngine<W, K> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, phase, cphase, enabled, aborting, halted, dead, quiet_us, missed, sess, tail, chead, cphase_bit, nseq, acked,
            max_sent, fetch_ptr, send_ptr, done_ptr, goback, hb_due, hb_sent, up, was_up, state_q, rt_us, hb_us, desc, cpl, cpl_head,
            ev_cpl, ctl_sel, ftail, cur_rb, fouts, chk, rk0, rk1, rk2, rcount
        );
        for i in 0..8 {
            self.t_op[i].clock.next = self.clock.val();
            self.t_op[i].d.next = self.t_op[i].q.val();
            self.t_tag[i].clock.next = self.clock.val();
            self.t_tag[i].d.next = self.t_tag[i].q.val();
            self.t_addr[i].clock.next = self.clock.val();
            self.t_addr[i].d.next = self.t_addr[i].q.val();
            self.t_off[i].clock.next = self.clock.val();
            self.t_off[i].d.next = self.t_off[i].q.val();
            self.t_len[i].clock.next = self.clock.val();
            self.t_len[i].d.next = self.t_len[i].q.val();
            self.t_cookie[i].clock.next = self.clock.val();
            self.t_cookie[i].d.next = self.t_cookie[i].q.val();
            self.t_seq[i].clock.next = self.clock.val();
            self.t_seq[i].d.next = self.t_seq[i].q.val();
            self.t_st[i].clock.next = self.clock.val();
            self.t_st[i].d.next = self.t_st[i].q.val();
            self.t_rb[i].clock.next = self.clock.val();
            self.t_rb[i].d.next = self.t_rb[i].q.val();
        }
        // ------------------------------------------------------------- table reads
        self.s_slot.next = bit_cast::<3, 4>(self.send_ptr.q.val());
        self.d_slot.next = bit_cast::<3, 4>(self.done_ptr.q.val());
        self.f_slot.next = bit_cast::<3, 4>(self.fetch_ptr.q.val());
        self.s_op.next = 0.into();
        self.s_tag.next = 0.into();
        self.s_addr.next = 0.into();
        self.s_off.next = 0.into();
        self.s_len.next = 0.into();
        self.s_seq.next = 0.into();
        self.s_st.next = 0.into();
        self.s_rb.next = false;
        self.d_op.next = 0.into();
        self.d_cookie.next = 0.into();
        self.d_seq.next = 0.into();
        self.d_st.next = 0.into();
        self.d_rb.next = false;
        for i in 0..8 {
            if self.s_slot.val() == self.slot_id[i].val() {
                self.s_op.next = self.t_op[i].q.val();
                self.s_tag.next = self.t_tag[i].q.val();
                self.s_addr.next = self.t_addr[i].q.val();
                self.s_off.next = self.t_off[i].q.val();
                self.s_len.next = self.t_len[i].q.val();
                self.s_seq.next = self.t_seq[i].q.val();
                self.s_st.next = self.t_st[i].q.val();
                self.s_rb.next = self.t_rb[i].q.val();
            }
            if self.d_slot.val() == self.slot_id[i].val() {
                self.d_op.next = self.t_op[i].q.val();
                self.d_cookie.next = self.t_cookie[i].q.val();
                self.d_seq.next = self.t_seq[i].q.val();
                self.d_st.next = self.t_st[i].q.val();
                self.d_rb.next = self.t_rb[i].q.val();
            }
        }
        // ------------------------------------------------------- descriptor checks
        self.e_op.next = bit_cast::<8, 256>(self.desc.q.val() >> self.at_op.val());
        self.e_flags.next = bit_cast::<8, 256>(self.desc.q.val() >> self.at_flags.val());
        self.e_res.next = bit_cast::<16, 256>(self.desc.q.val() >> self.at_res.val());
        self.e_tag.next = bit_cast::<32, 256>(self.desc.q.val() >> self.at_tag.val());
        self.e_addr.next = bit_cast::<64, 256>(self.desc.q.val() >> self.at_addr.val());
        self.e_off.next = bit_cast::<64, 256>(self.desc.q.val() >> self.at_off.val());
        self.e_len.next = bit_cast::<32, 256>(self.desc.q.val() >> self.at_len.val());
        self.e_cookie.next = bit_cast::<32, 256>(self.desc.q.val() >> self.at_cookie.val());
        // Later checks take precedence: decode, length, barrier length, host region.
        self.e_st.next = 0.into();
        if (self.e_op.val() != self.op_barrier.val())
            & ((self.e_addr.val() < self.host_base.val())
                | ((self.e_addr.val() - self.host_base.val()) > self.host_size.val())
                | (bit_cast::<64, 32>(self.e_len.val()) > (self.host_size.val() - (self.e_addr.val() - self.host_base.val()))))
        {
            self.e_st.next = self.st_host_bounds.val();
        }
        if (self.e_op.val() == self.op_barrier.val()) & (self.e_len.val() != 0) {
            self.e_st.next = self.st_bad_opcode.val();
        }
        if self.e_len.val() > self.max_payload.val() {
            self.e_st.next = self.st_too_long.val();
        }
        if (self.e_flags.val() != 0)
            | (self.e_res.val() != 0)
            | (self.e_op.val() < self.op_log.val())
            | (self.e_op.val() > self.op_barrier.val())
        {
            self.e_st.next = self.st_bad_opcode.val();
        }
        // ------------------------------------------------------------ conditions
        self.sq_mask.next = (self.one32.val() << self.sq_size_log2.val()) - 1;
        self.cq_mask.next = (self.one32.val() << self.cq_size_log2.val()) - 1;
        self.cq_next.next = (self.chead.q.val() + 1) & self.cq_mask.val();
        self.in_table.next = self.fetch_ptr.q.val() - self.done_ptr.q.val();
        self.mif.next = bit_cast::<64, 32>(self.max_in_flight.val());
        if self.max_in_flight.val() == 0 {
            self.mif.next = 1.into();
        }
        self.can_fetch.next = (self.enabled.q.val() | self.aborting.q.val())
            & (self.ftail.q.val() != self.sq_head.val())
            & (self.sq_head.val() <= self.sq_mask.val())
            & ((self.in_table.val() + self.fouts.q.val()) < 8);
        self.can_send.next = self.enabled.q.val() & self.hb_sent.q.val() & (self.send_ptr.q.val() != self.fetch_ptr.q.val());
        // --------------------------------------------------------------- outputs
        self.sq_tail.next = self.tail.q.val();
        self.cq_head.next = self.chead.q.val();
        self.next_seq.next = self.nseq.q.val();
        self.acked_seq.next = self.acked.q.val();
        self.session.next = self.sess.q.val();
        self.ev_completion.next = self.ev_cpl.q.val();
        self.ev_cpl.d.next = false;
        self.inc_data_tx.next = false;
        self.inc_retransmit.next = false;
        self.inc_local_reject.next = false;
        self.inc_nack_tx.next = false;
        self.inc_link_reset.next = false;
        self.ctl_ready.next = false;
        self.hdr_valid.next = false;
        self.hdr_type.next = self.t_data.val();
        self.hdr_kind.next = 0.into();
        self.hdr_tag.next = 0.into();
        self.hdr_length.next = 0.into();
        self.hdr_seq.next = 0.into();
        self.hdr_offset.next = 0.into();
        self.rd_cmd_valid.next = false;
        self.rd_cmd_addr.next = self.s_addr.val();
        self.rd_cmd_len.next = self.s_len.val();
        self.s_rd_tready.next = false;
        self.m_pay_tdata.next = self.s_rd_tdata.val();
        self.m_pay_tkeep.next = self.s_rd_tkeep.val();
        self.m_pay_tlast.next = self.s_rd_tlast.val();
        self.m_pay_tvalid.next = false;
        self.r_push.next = false;
        self.push_kind.next = false;
        self.wr_cmd_valid.next = false;
        // A completion is written in two parts, `SEQUENCE` first and then the bytes with
        // the phase bit, so a host that sees the new phase sees the whole entry.
        self.wr_cmd_addr.next = self.cq_base.val() + (bit_cast::<64, 32>(self.chead.q.val()) << self.cpl_log2.val()) + self.seq_at.val();
        self.wr_cmd_len.next = self.part_bytes.val();
        self.m_wr_tdata.next = bit_cast::<W, 64>(bit_cast::<64, 128>(self.cpl.q.val() >> self.ac_seq.val()));
        if self.cpl_head.q.val() {
            self.wr_cmd_addr.next = self.cq_base.val() + (bit_cast::<64, 32>(self.chead.q.val()) << self.cpl_log2.val());
            self.m_wr_tdata.next = bit_cast::<W, 64>(bit_cast::<64, 128>(self.cpl.q.val()));
        }
        self.m_wr_tvalid.next = false;
        // ------------------------------------------------------- enable and link
        // ABORT: fetch what was doorbelled, complete every entry not yet acknowledged
        // Aborted (in order), reset the sequence state, then stay quiet (link Down, no
        // frames) until ENABLE is cleared and set again.
        if self.abort.val() {
            self.aborting.d.next = true;
        }
        self.abort_done.next = self.aborting.q.val()
            & (self.phase.q.val() == TxPhase::Idle)
            & (self.cphase.q.val() == CplPhase::Idle)
            & (self.rcount.q.val() == 0)
            & !self.chk.q.val()
            & ((self.ftail.q.val() == self.sq_head.val()) | (self.sq_head.val() > self.sq_mask.val()))
            & (self.done_ptr.q.val() == self.fetch_ptr.q.val());
        if self.abort_done.val() {
            self.aborting.d.next = false;
            self.halted.d.next = true;
            self.nseq.d.next = 1.into();
            self.acked.d.next = 0.into();
            self.max_sent.d.next = 0.into();
            self.send_ptr.d.next = self.done_ptr.q.val();
            self.goback.d.next = false;
        }
        if !self.enable.val() {
            self.halted.d.next = false;
        }
        self.go.next = self.enable.val() & !self.halted.q.val() & !self.aborting.q.val();
        self.running.next = self.enabled.q.val();
        self.enabled.d.next = self.go.val();
        if self.go.val() & !self.enabled.q.val() {
            self.sess.d.next = self.session_seed.val();
            self.hb_due.d.next = true;
            self.hb_sent.d.next = false;
            self.up.d.next = false;
            if self.nseq.q.val() == 0 {
                self.nseq.d.next = 1.into();
            }
        }
        if !self.go.val() {
            self.up.d.next = false;
            self.dead.d.next = false;
        }
        // Link loss: after having been Up, nothing valid received for
        // LINK_DEAD_HEARTBEATS heartbeat intervals makes the link Down; the next valid
        // frame makes it Connecting (and sync starts again), the next ACK Up.
        if self.rx_frame.val() | !self.enabled.q.val() | (self.heartbeat_us.val() == 0) {
            self.quiet_us.d.next = 0.into();
            if self.dead.q.val() & self.rx_frame.val() {
                self.dead.d.next = false;
                self.hb_due.d.next = true;
                self.goback.d.next = true;
            }
            self.missed.d.next = 0.into();
        } else if self.us_tick.val() & !self.dead.q.val() {
            self.quiet_us.d.next = self.quiet_us.q.val() + 1;
            if self.quiet_us.q.val() + 1 >= self.heartbeat_us.val() {
                self.quiet_us.d.next = 0.into();
                self.missed.d.next = self.missed.q.val() + 1;
                if self.was_up.q.val() & (self.missed.q.val() + 1 >= self.dead_after.val()) {
                    self.dead.d.next = true;
                    self.up.d.next = false;
                }
            }
        }
        self.new_state.next = self.ls_down.val();
        if self.enabled.q.val() & !self.dead.q.val() {
            self.new_state.next = self.ls_connecting.val();
            if self.up.q.val() {
                self.new_state.next = self.ls_up.val();
            }
        }
        self.link_state.next = self.state_q.q.val();
        self.state_q.d.next = self.new_state.val();
        self.ev_link_change.next = self.new_state.val() != self.state_q.q.val();
        if (self.new_state.val() == self.ls_up.val()) & (self.state_q.q.val() != self.ls_up.val()) {
            if self.was_up.q.val() {
                self.inc_link_reset.next = true;
            }
            self.was_up.d.next = true;
        }
        // ------------------------------------------------------------ ACK / NACK
        self.ack_ok.next = self.rx_ack.val() & (self.rx_seq.val() > self.acked.q.val()) & (self.rx_seq.val() <= self.max_sent.q.val());
        if self.rx_ack.val() & self.enabled.q.val() & !self.dead.q.val() {
            self.up.d.next = true;
        }
        if self.ack_ok.val() {
            self.acked.d.next = self.rx_seq.val();
        }
        if self.rx_nack.val() {
            self.goback.d.next = true;
            if self.rx_reason.val() == self.r_not_synced.val() {
                self.hb_due.d.next = true;
            }
            if (self.rx_reason.val() == self.r_bounds.val()) & (self.rx_seq.val() > self.acked.q.val()) {
                for i in 0..8 {
                    if (self.t_seq[i].q.val() == self.rx_seq.val()) & (self.t_st[i].q.val() == 0) {
                        self.t_rb[i].d.next = true;
                    }
                }
            }
        }
        if self.rx_desync.val() {
            self.hb_due.d.next = true;
        }
        // ---------------------------------------------------------------- timers
        if self.ack_ok.val() | (self.max_sent.q.val() <= self.acked.q.val()) | !self.enabled.q.val() {
            self.rt_us.d.next = 0.into();
        } else if self.us_tick.val() {
            self.rt_us.d.next = self.rt_us.q.val() + 1;
            if (self.retransmit_us.val() != 0) & (self.rt_us.q.val() + 1 >= self.retransmit_us.val()) {
                // Go back, and sync again first: the partner may have dropped the stream
                // (header error) and its one NotSynced NACK may have been lost.
                self.goback.d.next = true;
                self.hb_due.d.next = true;
                self.rt_us.d.next = 0.into();
            }
        }
        if self.us_tick.val() {
            self.hb_us.d.next = self.hb_us.q.val() + 1;
            if (self.heartbeat_us.val() != 0) & (self.hb_us.q.val() + 1 >= self.heartbeat_us.val()) & self.enabled.q.val() {
                self.hb_due.d.next = true;
                self.hb_us.d.next = 0.into();
            }
        }
        // ------------------------------------------------------------- sequencer
        match self.phase.q.val() {
            TxPhase::Idle => {
                if self.goback.q.val() | ((self.send_ptr.q.val() - self.done_ptr.q.val()) > self.in_table.val()) {
                    self.send_ptr.d.next = self.done_ptr.q.val();
                    self.goback.d.next = false;
                } else if self.ctl_valid.val() & !self.aborting.q.val() & !self.halted.q.val() {
                    self.ctl_sel.d.next = true;
                    self.phase.d.next = TxPhase::CtlHdr;
                } else if self.hb_due.q.val() & self.enabled.q.val() {
                    self.ctl_sel.d.next = false;
                    self.phase.d.next = TxPhase::CtlHdr;
                } else if self.can_send.val() & ((self.s_st.val() != 0) | (self.s_seq.val() <= self.acked.q.val())) {
                    self.send_ptr.d.next = self.send_ptr.q.val() + 1;
                } else if self.can_send.val() & ((self.s_seq.val() - self.acked.q.val()) <= self.mif.val()) {
                    // The payload read goes first, so its latency passes while the
                    // previous frame's payload still flows.
                    // What is sent is decided here: a Bounds NACK that marks the entry
                    // later takes effect on its next sending.
                    self.phase.d.next = TxPhase::SendCmd;
                    self.cur_rb.d.next = self.s_rb.val();
                    if self.s_rb.val() | (self.s_len.val() == 0) {
                        self.phase.d.next = TxPhase::SendHdr;
                    }
                } else if self.can_fetch.val() {
                    self.phase.d.next = TxPhase::FetchCmd;
                }
            }
            TxPhase::CtlHdr => {
                self.hdr_valid.next = true;
                if self.ctl_sel.q.val() {
                    self.hdr_type.next = self.ctl_type.val();
                    self.hdr_kind.next = self.ctl_kind.val();
                    self.hdr_seq.next = self.ctl_seq.val();
                } else {
                    self.hdr_type.next = self.t_hb.val();
                    self.hdr_seq.next = self.acked.q.val() + 1;
                    self.hdr_offset.next = self.sess.q.val();
                }
                if self.hdr_ready.val() {
                    self.phase.d.next = TxPhase::Idle;
                    if self.ctl_sel.q.val() {
                        self.ctl_ready.next = true;
                        if self.ctl_type.val() != self.t_ack.val() {
                            self.inc_nack_tx.next = true;
                        }
                    } else {
                        self.hb_due.d.next = false;
                        self.hb_sent.d.next = true;
                        self.hb_us.d.next = 0.into();
                    }
                }
            }
            TxPhase::SendHdr => {
                self.hdr_valid.next = true;
                self.hdr_kind.next = self.s_op.val();
                self.hdr_tag.next = self.s_tag.val();
                self.hdr_length.next = self.s_len.val();
                self.hdr_seq.next = self.s_seq.val();
                self.hdr_offset.next = self.s_off.val();
                if self.cur_rb.q.val() {
                    self.hdr_kind.next = self.op_barrier.val();
                    self.hdr_length.next = 0.into();
                    self.hdr_offset.next = 0.into();
                }
                if self.hdr_ready.val() {
                    self.hb_us.d.next = 0.into();
                    if self.s_seq.val() > self.max_sent.q.val() {
                        self.max_sent.d.next = self.s_seq.val();
                        self.inc_data_tx.next = true;
                    } else {
                        self.inc_retransmit.next = true;
                    }
                    self.send_ptr.d.next = self.send_ptr.q.val() + 1;
                    self.phase.d.next = TxPhase::Idle;
                }
            }
            TxPhase::SendCmd => {
                self.rd_cmd_valid.next = self.rcount.q.val() != 3;
                if self.rd_cmd_valid.val() & self.rd_cmd_ready.val() {
                    self.r_push.next = true;
                    self.push_kind.next = true;
                    self.phase.d.next = TxPhase::SendHdr;
                }
            }
            _ => {
                // FetchCmd: the descriptor at `ftail`.
                self.rd_cmd_valid.next = self.rcount.q.val() != 3;
                self.rd_cmd_addr.next = self.sq_base.val() + (bit_cast::<64, 32>(self.ftail.q.val()) << self.desc_log2.val());
                self.rd_cmd_len.next = self.desc_bytes.val();
                if self.rd_cmd_valid.val() & self.rd_cmd_ready.val() {
                    self.r_push.next = true;
                    self.ftail.d.next = (self.ftail.q.val() + 1) & self.sq_mask.val();
                    self.fouts.d.next = self.fouts.q.val() + 1;
                    self.phase.d.next = TxPhase::Idle;
                }
            }
        }
        // While a header waits for the framer, descriptors are fetched on the side, so
        // the table keeps entries ready behind the frames being sent; one read slot is
        // always left for the next payload.
        self.side_fetch.next = ((self.phase.q.val() == TxPhase::SendHdr) | (self.phase.q.val() == TxPhase::CtlHdr))
            & self.can_fetch.val()
            & (self.rcount.q.val() < 2);
        if self.side_fetch.val() {
            self.rd_cmd_valid.next = true;
            self.rd_cmd_addr.next = self.sq_base.val() + (bit_cast::<64, 32>(self.ftail.q.val()) << self.desc_log2.val());
            self.rd_cmd_len.next = self.desc_bytes.val();
            if self.rd_cmd_ready.val() {
                self.r_push.next = true;
                self.ftail.d.next = (self.ftail.q.val() + 1) & self.sq_mask.val();
                self.fouts.d.next = self.fouts.q.val() + 1;
            }
        }
        // ---------------------------------------------------------- read data side
        // Reads come back in request order; `rk0`/`rk1` remember what each is for (1: a
        // payload for the framer, 0: a descriptor).
        self.r_pop.next = false;
        self.chk.d.next = false;
        if self.rcount.q.val() != 0 {
            if self.rk0.q.val() {
                self.m_pay_tvalid.next = self.s_rd_tvalid.val();
                self.s_rd_tready.next = self.m_pay_tready.val();
                self.r_pop.next = self.s_rd_tvalid.val() & self.m_pay_tready.val() & self.s_rd_tlast.val();
            } else {
                self.s_rd_tready.next = true;
                if self.s_rd_tvalid.val() {
                    self.desc.d.next =
                        (self.desc.q.val() >> self.width.val()) | (bit_cast::<256, W>(self.s_rd_tdata.val()) << self.gshift.val());
                    self.r_pop.next = self.s_rd_tlast.val();
                    self.chk.d.next = self.s_rd_tlast.val();
                }
            }
        }
        if self.r_pop.val() {
            self.rk0.d.next = self.rk1.q.val();
            self.rk1.d.next = self.rk2.q.val();
            self.rcount.d.next = self.rcount.q.val() - 1;
        }
        if self.r_push.val() {
            self.rcount.d.next = self.rcount.q.val() + 1;
            if self.r_pop.val() {
                self.rcount.d.next = self.rcount.q.val();
            }
            if (self.rcount.q.val() == 0) | ((self.rcount.q.val() == 1) & self.r_pop.val()) {
                self.rk0.d.next = self.push_kind.val();
            } else if (self.rcount.q.val() == 1) | ((self.rcount.q.val() == 2) & self.r_pop.val()) {
                self.rk1.d.next = self.push_kind.val();
            } else {
                self.rk2.d.next = self.push_kind.val();
            }
        }
        // Check: the gathered entry enters the table.
        if self.chk.q.val() {
            self.fouts.d.next = self.fouts.q.val() - 1;
            if self.r_push.val() & !self.push_kind.val() {
                self.fouts.d.next = self.fouts.q.val();
            }
            self.fetch_ptr.d.next = self.fetch_ptr.q.val() + 1;
            self.tail.d.next = (self.tail.q.val() + 1) & self.sq_mask.val();
            if self.aborting.q.val() {
                // Fetched during an abort: completed Aborted, never sent.
            } else if self.e_st.val() == 0 {
                self.nseq.d.next = self.nseq.q.val() + 1;
            } else {
                self.inc_local_reject.next = true;
            }
        }
        for i in 0..8 {
            if self.chk.q.val() & (self.f_slot.val() == self.slot_id[i].val()) {
                self.t_op[i].d.next = self.e_op.val();
                self.t_tag[i].d.next = self.e_tag.val();
                self.t_addr[i].d.next = self.e_addr.val();
                self.t_off[i].d.next = self.e_off.val();
                self.t_len[i].d.next = self.e_len.val();
                self.t_cookie[i].d.next = self.e_cookie.val();
                self.t_st[i].d.next = self.e_st.val();
                self.t_rb[i].d.next = false;
                self.t_seq[i].d.next = 0.into();
                if self.e_st.val() == 0 {
                    self.t_seq[i].d.next = self.nseq.q.val();
                }
                if self.aborting.q.val() {
                    self.t_st[i].d.next = self.st_aborted.val();
                    self.t_seq[i].d.next = 0.into();
                }
            }
        }
        // ------------------------------------------------------- completion writer
        self.phase_word.next = 0.into();
        if !self.cphase_bit.q.val() {
            self.phase_word.next = self.phase_one.val();
        }
        self.cpl_status.next = self.d_st.val();
        self.cpl_seq.next = self.d_seq.val();
        if (self.d_st.val() == 0) & self.d_rb.val() {
            self.cpl_status.next = self.st_remote_bounds.val();
        }
        if self.aborting.q.val() & (self.d_st.val() == 0) & (self.d_seq.val() > self.acked.q.val()) {
            self.cpl_status.next = self.st_aborted.val();
            if self.d_seq.val() > self.max_sent.q.val() {
                self.cpl_seq.next = 0.into();
            }
        }
        self.cpl_ready.next = (self.done_ptr.q.val() != self.fetch_ptr.q.val())
            & ((self.d_st.val() != 0) | (self.d_seq.val() <= self.acked.q.val()) | self.aborting.q.val())
            & (self.cq_next.val() != self.cq_tail.val());
        match self.cphase.q.val() {
            CplPhase::Idle => {
                if self.cpl_ready.val() {
                    self.cpl.d.next = (bit_cast::<128, 32>(self.d_cookie.val()) << self.ac_cookie.val())
                        | (bit_cast::<128, 8>(self.cpl_status.val()) << self.ac_status.val())
                        | (bit_cast::<128, 8>(self.d_op.val()) << self.ac_op.val())
                        | self.phase_word.val()
                        | (bit_cast::<128, 64>(self.cpl_seq.val()) << self.ac_seq.val());
                    self.cpl_head.d.next = false;
                    self.cphase.d.next = CplPhase::Cmd;
                }
            }
            CplPhase::Cmd => {
                self.wr_cmd_valid.next = true;
                if self.wr_cmd_ready.val() {
                    self.cphase.d.next = CplPhase::Data;
                }
            }
            CplPhase::Data => {
                self.m_wr_tvalid.next = true;
                if self.m_wr_tready.val() {
                    self.cphase.d.next = CplPhase::Wait;
                }
            }
            _ => {
                if self.wr_done.val() & !self.cpl_head.q.val() {
                    self.cpl_head.d.next = true;
                    self.cphase.d.next = CplPhase::Cmd;
                }
                if self.wr_done.val() & self.cpl_head.q.val() {
                    self.chead.d.next = self.cq_next.val();
                    if self.cq_next.val() == 0 {
                        self.cphase_bit.d.next = !self.cphase_bit.q.val();
                    }
                    self.done_ptr.d.next = self.done_ptr.q.val() + 1;
                    self.ev_cpl.d.next = true;
                    self.cphase.d.next = CplPhase::Idle;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "is not supported")]
    fn rejects_unsupported_width() {
        let _ = TxEngine::<96, 12>::new();
    }

    #[test]
    fn table_loops_match_the_depth() {
        // `update` walks the table with literal `0..8` loops (rust-hdl needs constant ranges).
        assert_eq!(TABLE, 8);
    }

    #[test]
    fn synthesizes() {
        let mut uut = TxEngine::<64, 8>::new();
        uut.connect_all();
        yosys_validate("tandem_tx_engine", &generate_verilog(&uut)).unwrap();
    }
}
