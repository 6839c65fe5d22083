//! Receiving side of the engine: frame buffer, sync, sequence and window checks, window
//! writes and ACK/NACK requests.

use crate::axi_dma::{DmaAddr, DmaLen};
use crate::hsi_consts::*;
use rust_hdl::prelude::*;
use tandem_hsi::codes::{FrameType, NackReason};

/// Phases of the window writer of [`RxEngine`].
#[derive(Copy, Clone, PartialEq, Eq, Debug, LogicState)]
pub enum RxPhase {
    /// Waiting for a full buffer; its write command is offered.
    Idle,
    /// Buffer words to the DMA write stream.
    WrData,
}

/// The receiving half of the engine.
///
/// Each frame's payload goes into one of two buffers of `2^A` words (`MAX_PAYLOAD` bytes
/// each) while the deframer checks it; only when the verdict is good is anything
/// written. The buffers alternate: while one frame is DMA-written to the window the next
/// is received into the other buffer, and the writes are posted (the next starts before
/// the previous one's B responses). Frame
/// handling follows the HSI link protocol: a heartbeat from a new session sets the next
/// expected sequence (its `SEQUENCE`, at least 1) and asks for an ACK; a data frame
/// before any heartbeat is NACKed NotSynced once; a duplicate (below the expected
/// sequence) asks for an ACK again; a gap is NACKed SequenceGap with the expected
/// sequence, once per episode (a CRC error on a data frame shares the episode and is
/// NACKed Crc); the expected frame outside `[0, WINDOW_SIZE)` is NACKed Bounds with its
/// own sequence and not consumed; otherwise its payload is DMA-written at
/// `WINDOW_BASE + WINDOW_OFFSET` (nothing for a barrier), and once the write responses
/// are in the frame counts as received and a cumulative ACK is due (frames are accepted
/// in sequence order, so the ACK moves on in that order). A heartbeat that opens a
/// session and a barrier wait until every accepted frame is written. ACK and NACK
/// frames are passed to the sending side. A header or length error counts and drops
/// the stream's sync. Control frames leave through the sending side's framer
/// (`ctl_*`); a pending NACK goes before the ACK.
#[derive(LogicBlock)]
pub struct RxEngine<const W: usize, const K: usize, const A: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Mirror window base.
    pub window_base: Signal<In, DmaAddr>,
    /// Mirror window size.
    pub window_size: Signal<In, Bits<64>>,
    /// Payload from the deframer, data.
    pub s_pay_tdata: Signal<In, Bits<W>>,
    /// Payload from the deframer, valid.
    pub s_pay_tvalid: Signal<In, Bit>,
    /// Payload from the deframer, ready.
    pub s_pay_tready: Signal<Out, Bit>,
    /// Deframer status valid.
    pub st_valid: Signal<In, Bit>,
    /// Deframer status taken.
    pub st_ready: Signal<Out, Bit>,
    /// Header checks passed.
    pub st_header_ok: Signal<In, Bit>,
    /// Byte count matched.
    pub st_length_ok: Signal<In, Bit>,
    /// CRC matched.
    pub st_crc_ok: Signal<In, Bit>,
    /// `FRAME_TYPE`.
    pub st_type: Signal<In, Bits<FRAME_TYPE_BITS>>,
    /// `KIND`.
    pub st_kind: Signal<In, Bits<KIND_BITS>>,
    /// `LENGTH`.
    pub st_length: Signal<In, Bits<LENGTH_BITS>>,
    /// `SEQUENCE`.
    pub st_seq: Signal<In, Bits<SEQUENCE_BITS>>,
    /// `WINDOW_OFFSET`.
    pub st_offset: Signal<In, Bits<OFFSET_BITS>>,
    /// DMA write command valid.
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
    /// DMA write finished (one pulse per write command, in order).
    pub wr_done: Signal<In, Bit>,
    /// To the sending side: an ACK arrived.
    pub rx_ack: Signal<Out, Bit>,
    /// To the sending side: a NACK arrived.
    pub rx_nack: Signal<Out, Bit>,
    /// ACK/NACK `SEQUENCE`.
    pub rx_seq: Signal<Out, Bits<64>>,
    /// NACK reason.
    pub rx_reason: Signal<Out, Bits<8>>,
    /// The stream lost sync (header or length error).
    pub rx_desync: Signal<Out, Bit>,
    /// Control frame request.
    pub ctl_valid: Signal<Out, Bit>,
    /// Control frame request taken.
    pub ctl_ready: Signal<In, Bit>,
    /// Control frame `FRAME_TYPE`.
    pub ctl_type: Signal<Out, Bits<8>>,
    /// Control frame `KIND`.
    pub ctl_kind: Signal<Out, Bits<8>>,
    /// Control frame `SEQUENCE`.
    pub ctl_seq: Signal<Out, Bits<64>>,
    /// Next sequence expected from the partner.
    pub expected: Signal<Out, Bits<64>>,
    /// Pulse: a frame arrived whole and valid.
    pub inc_frames_rx: Signal<Out, Bit>,
    /// Pulse: a data frame was consumed (written, or a barrier).
    pub inc_data_rx: Signal<Out, Bit>,
    /// Pulse: an ACK arrived.
    pub inc_acks_rx: Signal<Out, Bit>,
    /// Pulse: a NACK arrived.
    pub inc_nacks_rx: Signal<Out, Bit>,
    /// Pulse: CRC error.
    pub inc_crc: Signal<Out, Bit>,
    /// Pulse: a data frame outside the window.
    pub inc_bounds: Signal<Out, Bit>,
    /// Pulse: a data frame after a gap.
    pub inc_seq_err: Signal<Out, Bit>,
    /// Pulse: a data frame already held.
    pub inc_dup: Signal<Out, Bit>,
    /// Pulse: header or length error.
    pub inc_hdr_err: Signal<Out, Bit>,
    /// Pulse: a heartbeat arrived.
    pub inc_hb_rx: Signal<Out, Bit>,
    buf0: RAM<Bits<W>, A>,
    buf1: RAM<Bits<W>, A>,
    phase: DFF<RxPhase>,
    wptr: DFF<Bits<A>>,
    rptr: DFF<Bits<32>>,
    wb: DFF<Bit>,
    rb: DFF<Bit>,
    full0: DFF<Bit>,
    full1: DFF<Bit>,
    addr0: DFF<DmaAddr>,
    addr1: DFF<DmaAddr>,
    len0: DFF<DmaLen>,
    len1: DFF<DmaLen>,
    words0: DFF<Bits<32>>,
    words1: DFF<Bits<32>>,
    wfull: Signal<Local, Bit>,
    rfull: Signal<Local, Bit>,
    rwords: Signal<Local, Bits<32>>,
    quiet: Signal<Local, Bit>,
    must_wait: Signal<Local, Bit>,
    exp: DFF<Bits<64>>,
    cexp: DFF<Bits<64>>,
    sess: DFF<Bits<64>>,
    have_sess: DFF<Bit>,
    synced: DFF<Bit>,
    gap_nacked: DFF<Bit>,
    ns_nacked: DFF<Bit>,
    ack_due: DFF<Bit>,
    nack_pending: DFF<Bit>,
    nack_reason: DFF<Bits<8>>,
    nack_seq: DFF<Bits<64>>,
    take: Signal<Local, Bit>,
    next_rptr: Signal<Local, Bits<32>>,
    base: Signal<Local, Bits<64>>,
    outside: Signal<Local, Bit>,
    t_data: Constant<Bits<8>>,
    t_ack: Constant<Bits<8>>,
    t_nack: Constant<Bits<8>>,
    t_hb: Constant<Bits<8>>,
    r_crc: Constant<Bits<8>>,
    r_gap: Constant<Bits<8>>,
    r_not_synced: Constant<Bits<8>>,
    r_bounds: Constant<Bits<8>>,
    lanes_m1: Constant<Bits<32>>,
    lane_bits: Constant<Bits<32>>,
}

impl<const W: usize, const K: usize, const A: usize> Default for RxEngine<W, K, A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const K: usize, const A: usize> RxEngine<W, K, A> {
    // <blank>
    /// Every field at its default; constants zero (overridden by `new`).
    fn blank() -> Self {
        Self {
            clock: Default::default(),
            window_base: Default::default(),
            window_size: Default::default(),
            s_pay_tdata: Default::default(),
            s_pay_tvalid: Default::default(),
            s_pay_tready: Default::default(),
            st_valid: Default::default(),
            st_ready: Default::default(),
            st_header_ok: Default::default(),
            st_length_ok: Default::default(),
            st_crc_ok: Default::default(),
            st_type: Default::default(),
            st_kind: Default::default(),
            st_length: Default::default(),
            st_seq: Default::default(),
            st_offset: Default::default(),
            wr_cmd_valid: Default::default(),
            wr_cmd_ready: Default::default(),
            wr_cmd_addr: Default::default(),
            wr_cmd_len: Default::default(),
            m_wr_tdata: Default::default(),
            m_wr_tvalid: Default::default(),
            m_wr_tready: Default::default(),
            wr_done: Default::default(),
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
            expected: Default::default(),
            inc_frames_rx: Default::default(),
            inc_data_rx: Default::default(),
            inc_acks_rx: Default::default(),
            inc_nacks_rx: Default::default(),
            inc_crc: Default::default(),
            inc_bounds: Default::default(),
            inc_seq_err: Default::default(),
            inc_dup: Default::default(),
            inc_hdr_err: Default::default(),
            inc_hb_rx: Default::default(),
            buf0: Default::default(),
            buf1: Default::default(),
            phase: Default::default(),
            wptr: Default::default(),
            rptr: Default::default(),
            wb: Default::default(),
            rb: Default::default(),
            full0: Default::default(),
            full1: Default::default(),
            addr0: Default::default(),
            addr1: Default::default(),
            len0: Default::default(),
            len1: Default::default(),
            words0: Default::default(),
            words1: Default::default(),
            wfull: Default::default(),
            rfull: Default::default(),
            rwords: Default::default(),
            quiet: Default::default(),
            must_wait: Default::default(),
            exp: Default::default(),
            cexp: Default::default(),
            sess: Default::default(),
            have_sess: Default::default(),
            synced: Default::default(),
            gap_nacked: Default::default(),
            ns_nacked: Default::default(),
            ack_due: Default::default(),
            nack_pending: Default::default(),
            nack_reason: Default::default(),
            nack_seq: Default::default(),
            take: Default::default(),
            next_rptr: Default::default(),
            base: Default::default(),
            outside: Default::default(),
            t_data: Constant::new(Default::default()),
            t_ack: Constant::new(Default::default()),
            t_nack: Constant::new(Default::default()),
            t_hb: Constant::new(Default::default()),
            r_crc: Constant::new(Default::default()),
            r_gap: Constant::new(Default::default()),
            r_not_synced: Constant::new(Default::default()),
            r_bounds: Constant::new(Default::default()),
            lanes_m1: Constant::new(Default::default()),
            lane_bits: Constant::new(Default::default()),
        }
    }
    // </blank>

    /// The receiving side for a `W`-bit datapath (`K = W / 8` lanes) with a frame buffer
    /// of `2^A` words, which must hold exactly `MAX_PAYLOAD` bytes.
    pub fn new() -> Self {
        assert_eq!(W, 8 * K, "RxEngine: K = {K} byte lanes must be W / 8 for W = {W}");
        assert!(matches!(W, 64 | 128 | 256 | 512), "RxEngine: datapath width W = {W} is not supported (64, 128, 256 or 512 bits)");
        assert_eq!(
            (1u64 << A) * K as u64,
            MAX_PAYLOAD,
            "RxEngine: a buffer of 2^{A} words of {K} bytes must hold MAX_PAYLOAD = {MAX_PAYLOAD} bytes"
        );
        fn c<const N: usize>(v: u64) -> Constant<Bits<N>> {
            Constant::new(v.into())
        }
        Self {
            t_data: c(FrameType::Data.code().into()),
            t_ack: c(FrameType::Ack.code().into()),
            t_nack: c(FrameType::Nack.code().into()),
            t_hb: c(FrameType::Heartbeat.code().into()),
            r_crc: c(NackReason::Crc.code().into()),
            r_gap: c(NackReason::SequenceGap.code().into()),
            r_not_synced: c(NackReason::NotSynced.code().into()),
            r_bounds: c(NackReason::Bounds.code().into()),
            lanes_m1: c(K as u64 - 1),
            lane_bits: c(K.trailing_zeros().into()),
            ..Self::blank()
        }
    }
}

impl<const W: usize, const K: usize, const A: usize> Logic for RxEngine<W, K, A> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            phase,
            wptr,
            rptr,
            wb,
            rb,
            full0,
            full1,
            addr0,
            addr1,
            len0,
            len1,
            words0,
            words1,
            exp,
            cexp,
            sess,
            have_sess,
            synced,
            gap_nacked,
            ns_nacked,
            ack_due,
            nack_pending,
            nack_reason,
            nack_seq
        );
        self.buf0.write_clock.next = self.clock.val();
        self.buf0.read_clock.next = self.clock.val();
        self.buf0.write_address.next = self.wptr.q.val();
        self.buf0.write_data.next = self.s_pay_tdata.val();
        self.buf0.write_enable.next = false;
        self.buf1.write_clock.next = self.clock.val();
        self.buf1.read_clock.next = self.clock.val();
        self.buf1.write_address.next = self.wptr.q.val();
        self.buf1.write_data.next = self.s_pay_tdata.val();
        self.buf1.write_enable.next = false;
        self.expected.next = self.cexp.q.val();
        // Buffer `wb` receives, buffer `rb` is written out; each is full from its frame's
        // good verdict until its last word left.
        self.wfull.next = self.full0.q.val();
        if self.wb.q.val() {
            self.wfull.next = self.full1.q.val();
        }
        self.rfull.next = self.full0.q.val();
        self.rwords.next = self.words0.q.val();
        self.wr_cmd_addr.next = self.addr0.q.val();
        self.wr_cmd_len.next = self.len0.q.val();
        self.m_wr_tdata.next = self.buf0.read_data.val();
        if self.rb.q.val() {
            self.rfull.next = self.full1.q.val();
            self.rwords.next = self.words1.q.val();
            self.wr_cmd_addr.next = self.addr1.q.val();
            self.wr_cmd_len.next = self.len1.q.val();
            self.m_wr_tdata.next = self.buf1.read_data.val();
        }
        // Every accepted frame is written (its write responses are in).
        self.quiet.next = self.exp.q.val() == self.cexp.q.val();
        self.inc_frames_rx.next = false;
        self.inc_data_rx.next = false;
        self.inc_acks_rx.next = false;
        self.inc_nacks_rx.next = false;
        self.inc_crc.next = false;
        self.inc_bounds.next = false;
        self.inc_seq_err.next = false;
        self.inc_dup.next = false;
        self.inc_hdr_err.next = false;
        self.inc_hb_rx.next = false;
        self.rx_ack.next = false;
        self.rx_nack.next = false;
        self.rx_desync.next = false;
        self.rx_seq.next = self.st_seq.val();
        self.rx_reason.next = self.st_kind.val();
        self.s_pay_tready.next = false;
        self.st_ready.next = false;
        self.wr_cmd_valid.next = false;
        self.m_wr_tvalid.next = false;
        self.take.next = false;
        // Control frame requests: a pending NACK first, then the cumulative ACK.
        self.ctl_valid.next = self.nack_pending.q.val() | self.ack_due.q.val();
        self.ctl_type.next = self.t_ack.val();
        self.ctl_kind.next = 0.into();
        self.ctl_seq.next = self.cexp.q.val() - 1;
        if self.nack_pending.q.val() {
            self.ctl_type.next = self.t_nack.val();
            self.ctl_kind.next = self.nack_reason.q.val();
            self.ctl_seq.next = self.nack_seq.q.val();
        }
        if self.ctl_ready.val() {
            if self.nack_pending.q.val() {
                self.nack_pending.d.next = false;
            } else {
                self.ack_due.d.next = false;
            }
        }
        self.base.next = self.st_seq.val();
        if self.st_seq.val() == 0 {
            self.base.next = 1.into();
        }
        self.outside.next = (self.st_offset.val() > self.window_size.val())
            | (bit_cast::<64, 32>(self.st_length.val()) > (self.window_size.val() - self.st_offset.val()));
        // A heartbeat (it may open a session) and a zero-length data frame (a barrier:
        // the window must be durable) wait until every accepted frame is written.
        self.must_wait.next = self.st_header_ok.val()
            & self.st_length_ok.val()
            & self.st_crc_ok.val()
            & ((self.st_type.val() == self.t_hb.val()) | ((self.st_type.val() == self.t_data.val()) & (self.st_length.val() == 0)))
            & !self.quiet.val();
        self.s_pay_tready.next = !self.wfull.val();
        if self.s_pay_tvalid.val() {
            if !self.wfull.val() {
                self.buf0.write_enable.next = !self.wb.q.val();
                self.buf1.write_enable.next = self.wb.q.val();
                self.wptr.d.next = self.wptr.q.val() + 1;
            }
        } else if self.st_valid.val() & !self.must_wait.val() {
            self.st_ready.next = true;
            self.wptr.d.next = 0.into();
            if !(self.st_header_ok.val() & self.st_length_ok.val()) {
                self.inc_hdr_err.next = true;
                self.rx_desync.next = true;
                self.synced.d.next = false;
            } else if !self.st_crc_ok.val() {
                self.inc_crc.next = true;
                if (self.st_type.val() == self.t_data.val()) & self.synced.q.val() & !self.gap_nacked.q.val() {
                    self.nack_pending.d.next = true;
                    self.nack_reason.d.next = self.r_crc.val();
                    self.nack_seq.d.next = self.exp.q.val();
                    self.gap_nacked.d.next = true;
                }
            } else {
                self.inc_frames_rx.next = true;
                if self.st_type.val() == self.t_hb.val() {
                    self.inc_hb_rx.next = true;
                    if !self.have_sess.q.val() | (self.sess.q.val() != self.st_offset.val()) {
                        self.sess.d.next = self.st_offset.val();
                        self.have_sess.d.next = true;
                        self.exp.d.next = self.base.val();
                        self.cexp.d.next = self.base.val();
                    }
                    self.synced.d.next = true;
                    self.gap_nacked.d.next = false;
                    self.ns_nacked.d.next = false;
                    self.ack_due.d.next = true;
                } else if self.st_type.val() == self.t_ack.val() {
                    self.inc_acks_rx.next = true;
                    self.rx_ack.next = true;
                } else if self.st_type.val() == self.t_nack.val() {
                    self.inc_nacks_rx.next = true;
                    self.rx_nack.next = true;
                } else if !self.synced.q.val() {
                    if !self.ns_nacked.q.val() {
                        self.nack_pending.d.next = true;
                        self.nack_reason.d.next = self.r_not_synced.val();
                        self.nack_seq.d.next = 0.into();
                        self.ns_nacked.d.next = true;
                    }
                } else if self.st_seq.val() < self.exp.q.val() {
                    self.inc_dup.next = true;
                    self.ack_due.d.next = true;
                } else if self.st_seq.val() > self.exp.q.val() {
                    self.inc_seq_err.next = true;
                    if !self.gap_nacked.q.val() {
                        self.nack_pending.d.next = true;
                        self.nack_reason.d.next = self.r_gap.val();
                        self.nack_seq.d.next = self.exp.q.val();
                        self.gap_nacked.d.next = true;
                    }
                } else {
                    self.gap_nacked.d.next = false;
                    if self.outside.val() {
                        // Neither written nor consumed: the sender answers with a
                        // barrier under this sequence.
                        self.inc_bounds.next = true;
                        self.nack_pending.d.next = true;
                        self.nack_reason.d.next = self.r_bounds.val();
                        self.nack_seq.d.next = self.st_seq.val();
                    } else if self.st_length.val() == 0 {
                        self.exp.d.next = self.exp.q.val() + 1;
                        self.cexp.d.next = self.cexp.q.val() + 1;
                        self.inc_data_rx.next = true;
                        self.ack_due.d.next = true;
                    } else {
                        // Accepted: the buffer goes to the writer.
                        self.exp.d.next = self.exp.q.val() + 1;
                        self.wb.d.next = !self.wb.q.val();
                        if self.wb.q.val() {
                            self.full1.d.next = true;
                            self.addr1.d.next = self.window_base.val() + self.st_offset.val();
                            self.len1.d.next = self.st_length.val();
                            self.words1.d.next = (self.st_length.val() + self.lanes_m1.val()) >> self.lane_bits.val();
                        } else {
                            self.full0.d.next = true;
                            self.addr0.d.next = self.window_base.val() + self.st_offset.val();
                            self.len0.d.next = self.st_length.val();
                            self.words0.d.next = (self.st_length.val() + self.lanes_m1.val()) >> self.lane_bits.val();
                        }
                    }
                }
            }
        }
        // Window writer: the oldest full buffer, command then words.
        match self.phase.q.val() {
            RxPhase::Idle => {
                self.wr_cmd_valid.next = self.rfull.val();
                if self.rfull.val() & self.wr_cmd_ready.val() {
                    self.phase.d.next = RxPhase::WrData;
                }
            }
            _ => {
                self.m_wr_tvalid.next = self.rptr.q.val() < self.rwords.val();
                self.take.next = self.m_wr_tvalid.val() & self.m_wr_tready.val();
                if self.take.val() & (self.rptr.q.val() + 1 == self.rwords.val()) {
                    self.phase.d.next = RxPhase::Idle;
                    self.rb.d.next = !self.rb.q.val();
                    if self.rb.q.val() {
                        self.full1.d.next = false;
                    } else {
                        self.full0.d.next = false;
                    }
                }
            }
        }
        // Write responses arrive in order: each one commits the oldest accepted frame.
        if self.wr_done.val() {
            self.cexp.d.next = self.cexp.q.val() + 1;
            self.inc_data_rx.next = true;
            self.ack_due.d.next = true;
        }
        // The buffers' read ports always show word `rptr` of both; a take moves it on,
        // the last take of a frame back to 0.
        self.next_rptr.next = self.rptr.q.val();
        if self.take.val() {
            self.next_rptr.next = self.rptr.q.val() + 1;
            if self.rptr.q.val() + 1 == self.rwords.val() {
                self.next_rptr.next = 0.into();
            }
        }
        self.rptr.d.next = self.next_rptr.val();
        self.buf0.read_address.next = bit_cast::<A, 32>(self.next_rptr.val());
        self.buf1.read_address.next = bit_cast::<A, 32>(self.next_rptr.val());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "must hold MAX_PAYLOAD")]
    fn rejects_a_buffer_of_the_wrong_size() {
        let _ = RxEngine::<64, 8, 12>::new();
    }

    #[test]
    fn synthesizes() {
        let mut uut = RxEngine::<64, 8, 13>::new();
        uut.connect_all();
        yosys_validate("tandem_rx_engine", &generate_verilog(&uut)).unwrap();
    }
}
