//! Frame receiver: AXI4-Stream from the MAC to header fields, payload and verdicts.

use crate::crc32c_accum::Count;
use crate::crc_check::CrcCheck;
use crate::hsi_consts::*;
use crate::keep_count::KeepCount;
use rust_hdl::prelude::*;
use tandem_hsi::codes::{FrameType, NackReason, Opcode};
use tandem_hsi::frame::{header, MAGIC, WIRE_VERSION};

/// Phases of [`Deframer`].
#[derive(Copy, Clone, PartialEq, Eq, Debug, LogicState)]
pub enum DeframerPhase {
    /// Taking beats of a frame.
    Recv,
    /// Emitting payload bytes left over after the last beat.
    Flush,
    /// Presenting the frame's status.
    Status,
}

/// Splits each received frame into its header fields, its payload (data frames only,
/// byte 0 in lane 0, exactly `LENGTH` bytes, trailer removed) and a status with three
/// verdicts: header checks as in `tandem_hsi::frame::FrameHeader::decode`, byte count
/// equal to header + `LENGTH` + trailer, and CRC32C. The payload leaves before the CRC
/// is known: the consumer buffers it and commits only on a good status.
#[derive(LogicBlock)]
pub struct Deframer<const W: usize, const K: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Link receive data (sink, from the MAC).
    pub s_axis_tdata: Signal<In, Bits<W>>,
    /// Link receive byte enables, contiguous from lane 0.
    pub s_axis_tkeep: Signal<In, Bits<K>>,
    /// Link receive last beat of a frame.
    pub s_axis_tlast: Signal<In, Bit>,
    /// Link receive valid.
    pub s_axis_tvalid: Signal<In, Bit>,
    /// Link receive ready.
    pub s_axis_tready: Signal<Out, Bit>,
    /// Payload data (source).
    pub m_axis_tdata: Signal<Out, Bits<W>>,
    /// Payload byte enables.
    pub m_axis_tkeep: Signal<Out, Bits<K>>,
    /// Payload last beat.
    pub m_axis_tlast: Signal<Out, Bit>,
    /// Payload valid.
    pub m_axis_tvalid: Signal<Out, Bit>,
    /// Payload ready.
    pub m_axis_tready: Signal<In, Bit>,
    /// Frame status valid (after the frame's payload).
    pub m_status_valid: Signal<Out, Bit>,
    /// Frame status taken.
    pub m_status_ready: Signal<In, Bit>,
    /// Header passed every check (magic, version, type, kind, flags, zero fields, length bound).
    pub m_status_header_ok: Signal<Out, Bit>,
    /// The frame held exactly header + `LENGTH` + trailer bytes.
    pub m_status_length_ok: Signal<Out, Bit>,
    /// CRC32C trailer matched.
    pub m_status_crc_ok: Signal<Out, Bit>,
    /// `FRAME_TYPE` field.
    pub m_status_frame_type: Signal<Out, Bits<FRAME_TYPE_BITS>>,
    /// `KIND` field.
    pub m_status_kind: Signal<Out, Bits<KIND_BITS>>,
    /// `SERVICE_TAG` field.
    pub m_status_service_tag: Signal<Out, Bits<TAG_BITS>>,
    /// `LENGTH` field.
    pub m_status_length: Signal<Out, Bits<LENGTH_BITS>>,
    /// `SEQUENCE` field.
    pub m_status_sequence: Signal<Out, Bits<SEQUENCE_BITS>>,
    /// `WINDOW_OFFSET` field.
    pub m_status_window_offset: Signal<Out, Bits<OFFSET_BITS>>,
    check: CrcCheck<W, K>,
    keep_count: KeepCount<K>,
    phase: DFF<DeframerPhase>,
    beat: DFF<Count>,
    hdr: DFF<Bits<HEADER_BITS>>,
    seen: DFF<Bits<32>>,
    emitted: DFF<Bits<32>>,
    carry: DFF<Bits<W>>,
    carry_count: DFF<Count>,
    crc_ok: DFF<Bit>,
    out_data: DFF<Bits<W>>,
    out_keep: DFF<Bits<K>>,
    out_last: DFF<Bit>,
    out_valid: DFF<Bit>,
    out_free: Signal<Local, Bit>,
    accept: Signal<Local, Bit>,
    f_magic: Signal<Local, Bits<MAGIC_BITS>>,
    f_version: Signal<Local, Bits<VERSION_BITS>>,
    f_type: Signal<Local, Bits<FRAME_TYPE_BITS>>,
    f_kind: Signal<Local, Bits<KIND_BITS>>,
    f_flags: Signal<Local, Bits<FLAGS_BITS>>,
    f_tag: Signal<Local, Bits<TAG_BITS>>,
    f_length: Signal<Local, Bits<LENGTH_BITS>>,
    f_offset: Signal<Local, Bits<OFFSET_BITS>>,
    type_ok: Signal<Local, Bit>,
    pay_len: Signal<Local, Bits<32>>,
    remaining: Signal<Local, Bits<32>>,
    in_count: Signal<Local, Count>,
    gear_data: Signal<Local, Bits<W>>,
    gear_count: Signal<Local, Count>,
    new_carry_count: Signal<Local, Count>,
    take: Signal<Local, Count>,
    magic: Constant<Bits<MAGIC_BITS>>,
    version: Constant<Bits<VERSION_BITS>>,
    t_data: Constant<Bits<FRAME_TYPE_BITS>>,
    t_ack: Constant<Bits<FRAME_TYPE_BITS>>,
    t_nack: Constant<Bits<FRAME_TYPE_BITS>>,
    t_heartbeat: Constant<Bits<FRAME_TYPE_BITS>>,
    op_first: Constant<Bits<KIND_BITS>>,
    op_last: Constant<Bits<KIND_BITS>>,
    op_barrier: Constant<Bits<KIND_BITS>>,
    nack_first: Constant<Bits<KIND_BITS>>,
    nack_last: Constant<Bits<KIND_BITS>>,
    max_payload: Constant<Bits<LENGTH_BITS>>,
    overhead: Constant<Bits<32>>,
    at_version: Constant<Count>,
    at_type: Constant<Count>,
    at_kind: Constant<Count>,
    at_flags: Constant<Count>,
    at_tag: Constant<Count>,
    at_length: Constant<Count>,
    at_sequence: Constant<Count>,
    at_offset: Constant<Count>,
    header_beats: Constant<Count>,
    header_tail: Constant<Count>,
    lanes: Constant<Count>,
    width: Constant<Count>,
    ones_k: Constant<Bits<K>>,
}

fn c<const N: usize>(v: u64) -> Constant<Bits<N>> {
    Constant::new(v.into())
}

fn min_code(codes: &[u8]) -> u64 {
    codes.iter().copied().min().expect("code table is not empty").into()
}

fn max_code(codes: &[u8]) -> u64 {
    codes.iter().copied().max().expect("code table is not empty").into()
}

impl<const W: usize, const K: usize> Default for Deframer<W, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const K: usize> Deframer<W, K> {
    /// A deframer for a `W`-bit link with `K = W / 8` keep lanes.
    pub fn new() -> Self {
        assert_eq!(W, 8 * K, "Deframer: K = {K} keep lanes must be W / 8 for W = {W}");
        assert!(matches!(W, 64 | 128 | 256 | 512), "Deframer: datapath width W = {W} is not supported (64, 128, 256 or 512 bits)");
        let opcodes: Vec<u8> = Opcode::ALL.iter().map(|o| o.code()).collect();
        let reasons: Vec<u8> = NackReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(
            max_code(&opcodes) - min_code(&opcodes) + 1,
            opcodes.len() as u64,
            "Deframer: opcode range check assumes consecutive codes"
        );
        assert_eq!(
            max_code(&reasons) - min_code(&reasons) + 1,
            reasons.len() as u64,
            "Deframer: NACK reason range check assumes consecutive codes"
        );
        Self {
            clock: Default::default(),
            s_axis_tdata: Default::default(),
            s_axis_tkeep: Default::default(),
            s_axis_tlast: Default::default(),
            s_axis_tvalid: Default::default(),
            s_axis_tready: Default::default(),
            m_axis_tdata: Default::default(),
            m_axis_tkeep: Default::default(),
            m_axis_tlast: Default::default(),
            m_axis_tvalid: Default::default(),
            m_axis_tready: Default::default(),
            m_status_valid: Default::default(),
            m_status_ready: Default::default(),
            m_status_header_ok: Default::default(),
            m_status_length_ok: Default::default(),
            m_status_crc_ok: Default::default(),
            m_status_frame_type: Default::default(),
            m_status_kind: Default::default(),
            m_status_service_tag: Default::default(),
            m_status_length: Default::default(),
            m_status_sequence: Default::default(),
            m_status_window_offset: Default::default(),
            check: CrcCheck::new(),
            keep_count: KeepCount::default(),
            phase: Default::default(),
            beat: Default::default(),
            hdr: Default::default(),
            seen: Default::default(),
            emitted: Default::default(),
            carry: Default::default(),
            carry_count: Default::default(),
            crc_ok: Default::default(),
            out_data: Default::default(),
            out_keep: Default::default(),
            out_last: Default::default(),
            out_valid: Default::default(),
            out_free: Default::default(),
            accept: Default::default(),
            f_magic: Default::default(),
            f_version: Default::default(),
            f_type: Default::default(),
            f_kind: Default::default(),
            f_flags: Default::default(),
            f_tag: Default::default(),
            f_length: Default::default(),
            f_offset: Default::default(),
            type_ok: Default::default(),
            pay_len: Default::default(),
            remaining: Default::default(),
            in_count: Default::default(),
            gear_data: Default::default(),
            gear_count: Default::default(),
            new_carry_count: Default::default(),
            take: Default::default(),
            magic: c(MAGIC.into()),
            version: c(WIRE_VERSION.into()),
            t_data: c(FrameType::Data.code().into()),
            t_ack: c(FrameType::Ack.code().into()),
            t_nack: c(FrameType::Nack.code().into()),
            t_heartbeat: c(FrameType::Heartbeat.code().into()),
            op_first: c(min_code(&opcodes)),
            op_last: c(max_code(&opcodes)),
            op_barrier: c(Opcode::Barrier.code().into()),
            nack_first: c(min_code(&reasons)),
            nack_last: c(max_code(&reasons)),
            max_payload: c(MAX_PAYLOAD),
            overhead: c((HEADER_BYTES + CRC_BYTES) as u64),
            at_version: c(lo(header::VERSION)),
            at_type: c(lo(header::FRAME_TYPE)),
            at_kind: c(lo(header::KIND)),
            at_flags: c(lo(header::FLAGS)),
            at_tag: c(lo(header::SERVICE_TAG)),
            at_length: c(lo(header::LENGTH)),
            at_sequence: c(lo(header::SEQUENCE)),
            at_offset: c(lo(header::WINDOW_OFFSET)),
            header_beats: c((HEADER_BYTES / K) as u64),
            header_tail: c((HEADER_BYTES % K) as u64),
            lanes: c(K as u64),
            width: c(W as u64),
            ones_k: Constant::new(!Bits::<K>::default()),
        }
    }
}

impl<const W: usize, const K: usize> Logic for Deframer<W, K> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, phase, beat, hdr, seen, emitted, carry, carry_count, crc_ok, out_data, out_keep, out_last, out_valid);
        clock!(self, clock, check);
        // Link side through the CRC checker.
        self.check.s_axis_tdata.next = self.s_axis_tdata.val();
        self.check.s_axis_tkeep.next = self.s_axis_tkeep.val();
        self.check.s_axis_tlast.next = self.s_axis_tlast.val();
        self.check.s_axis_tvalid.next = self.s_axis_tvalid.val();
        self.s_axis_tready.next = self.check.s_axis_tready.val();
        self.keep_count.keep.next = self.check.m_axis_tkeep.val();
        self.in_count.next = self.keep_count.count.val();
        // Header fields.
        self.f_magic.next = self.hdr.q.val().get_bits::<MAGIC_BITS>(0);
        self.f_version.next = self.hdr.q.val().get_bits::<VERSION_BITS>(self.at_version.val().index());
        self.f_type.next = self.hdr.q.val().get_bits::<FRAME_TYPE_BITS>(self.at_type.val().index());
        self.f_kind.next = self.hdr.q.val().get_bits::<KIND_BITS>(self.at_kind.val().index());
        self.f_flags.next = self.hdr.q.val().get_bits::<FLAGS_BITS>(self.at_flags.val().index());
        self.f_tag.next = self.hdr.q.val().get_bits::<TAG_BITS>(self.at_tag.val().index());
        self.f_length.next = self.hdr.q.val().get_bits::<LENGTH_BITS>(self.at_length.val().index());
        self.f_offset.next = self.hdr.q.val().get_bits::<OFFSET_BITS>(self.at_offset.val().index());
        self.m_status_frame_type.next = self.f_type.val();
        self.m_status_kind.next = self.f_kind.val();
        self.m_status_service_tag.next = self.f_tag.val();
        self.m_status_length.next = self.f_length.val();
        self.m_status_sequence.next = self.hdr.q.val().get_bits::<SEQUENCE_BITS>(self.at_sequence.val().index());
        self.m_status_window_offset.next = self.f_offset.val();
        // Header checks, as FrameHeader::decode does them.
        self.type_ok.next = false;
        if self.f_type.val() == self.t_data.val() {
            self.type_ok.next = (self.f_kind.val() >= self.op_first.val())
                & (self.f_kind.val() <= self.op_last.val())
                & ((self.f_kind.val() != self.op_barrier.val()) | (self.f_length.val() == 0));
        }
        if self.f_type.val() == self.t_ack.val() {
            self.type_ok.next =
                (self.f_kind.val() == 0) & (self.f_tag.val() == 0) & (self.f_length.val() == 0) & (self.f_offset.val() == 0);
        }
        if self.f_type.val() == self.t_nack.val() {
            self.type_ok.next = (self.f_kind.val() >= self.nack_first.val())
                & (self.f_kind.val() <= self.nack_last.val())
                & (self.f_tag.val() == 0)
                & (self.f_length.val() == 0)
                & (self.f_offset.val() == 0);
        }
        if self.f_type.val() == self.t_heartbeat.val() {
            self.type_ok.next = (self.f_kind.val() == 0) & (self.f_tag.val() == 0) & (self.f_length.val() == 0);
        }
        self.m_status_header_ok.next = (self.f_magic.val() == self.magic.val())
            & (self.f_version.val() == self.version.val())
            & (self.f_flags.val() == 0)
            & (self.f_length.val() <= self.max_payload.val())
            & self.type_ok.val();
        self.m_status_length_ok.next = self.seen.q.val() == (self.overhead.val() + self.f_length.val());
        self.m_status_crc_ok.next = self.crc_ok.q.val();
        // The status follows the frame's last payload beat out of the register.
        self.m_status_valid.next = (self.phase.q.val() == DeframerPhase::Status) & !self.out_valid.q.val();
        // Payload bytes to deliver: data frames with a sane length only.
        self.pay_len.next = 0.into();
        if (self.f_type.val() == self.t_data.val()) & (self.f_length.val() <= self.max_payload.val()) {
            self.pay_len.next = self.f_length.val();
        }
        self.remaining.next = self.pay_len.val() - self.emitted.q.val();
        // Payload output register.
        self.m_axis_tdata.next = self.out_data.q.val();
        self.m_axis_tkeep.next = self.out_keep.q.val();
        self.m_axis_tlast.next = self.out_last.q.val();
        self.m_axis_tvalid.next = self.out_valid.q.val();
        self.out_free.next = !self.out_valid.q.val() | self.m_axis_tready.val();
        if self.m_axis_tready.val() {
            self.out_valid.d.next = false;
        }
        // Gearbox: bytes after the header move down by the header's share of a beat.
        if self.header_tail.val() == 0 {
            self.gear_data.next = self.check.m_axis_tdata.val();
            self.gear_count.next = self.in_count.val();
            self.new_carry_count.next = 0.into();
        } else {
            self.gear_data.next =
                self.carry.q.val() | (self.check.m_axis_tdata.val() << ((self.lanes.val() - self.header_tail.val()) << 3));
            if self.in_count.val() > self.header_tail.val() {
                self.gear_count.next = self.carry_count.q.val() + self.header_tail.val();
                self.new_carry_count.next = self.in_count.val() - self.header_tail.val();
            } else {
                self.gear_count.next = self.carry_count.q.val() + self.in_count.val();
                self.new_carry_count.next = 0.into();
            }
        }
        if self.phase.q.val() == DeframerPhase::Flush {
            self.gear_data.next = self.carry.q.val();
            self.gear_count.next = self.carry_count.q.val();
        }
        if bit_cast::<32, 16>(self.gear_count.val()) < self.remaining.val() {
            self.take.next = self.gear_count.val();
        } else {
            self.take.next = self.remaining.val().get_bits::<16>(0);
        }
        self.accept.next = (self.phase.q.val() == DeframerPhase::Recv) & self.check.m_axis_tvalid.val() & self.out_free.val();
        self.check.m_axis_tready.next = (self.phase.q.val() == DeframerPhase::Recv) & self.out_free.val();
        if self.accept.val() {
            self.seen.d.next = self.seen.q.val() + bit_cast::<32, 16>(self.in_count.val());
            self.beat.d.next = self.beat.q.val() + 1;
            if self.beat.q.val() < self.header_beats.val() {
                if self.beat.q.val() == 0 {
                    self.hdr.d.next = bit_cast::<HEADER_BITS, W>(self.check.m_axis_tdata.val());
                } else {
                    self.hdr.d.next = self.hdr.q.val()
                        | (bit_cast::<HEADER_BITS, W>(self.check.m_axis_tdata.val()) << (self.beat.q.val() * self.width.val()));
                }
            } else if (self.beat.q.val() == self.header_beats.val()) & (self.header_tail.val() != 0) {
                self.hdr.d.next = bit_cast::<HEADER_BITS, W>(self.check.m_axis_tdata.val());
                self.carry.d.next = self.check.m_axis_tdata.val() >> (self.header_tail.val() << 3);
                self.carry_count.d.next = self.new_carry_count.val();
            } else {
                self.carry.d.next = self.check.m_axis_tdata.val() >> (self.header_tail.val() << 3);
                self.carry_count.d.next = self.new_carry_count.val();
                if self.take.val() != 0 {
                    self.out_data.d.next = self.gear_data.val();
                    self.out_keep.d.next = !(self.ones_k.val() << self.take.val());
                    self.out_last.d.next = bit_cast::<32, 16>(self.take.val()) == self.remaining.val();
                    self.out_valid.d.next = true;
                    self.emitted.d.next = self.emitted.q.val() + bit_cast::<32, 16>(self.take.val());
                }
            }
            if self.check.m_axis_tlast.val() {
                self.crc_ok.d.next = self.check.m_axis_tuser.val();
                self.phase.d.next = DeframerPhase::Status;
                if (self.header_tail.val() != 0) & (self.beat.q.val() >= self.header_beats.val()) & (self.new_carry_count.val() != 0) {
                    self.phase.d.next = DeframerPhase::Flush;
                }
            }
        }
        if (self.phase.q.val() == DeframerPhase::Flush) & self.out_free.val() {
            if self.take.val() != 0 {
                self.out_data.d.next = self.gear_data.val();
                self.out_keep.d.next = !(self.ones_k.val() << self.take.val());
                self.out_last.d.next = bit_cast::<32, 16>(self.take.val()) == self.remaining.val();
                self.out_valid.d.next = true;
                self.emitted.d.next = self.emitted.q.val() + bit_cast::<32, 16>(self.take.val());
            }
            self.phase.d.next = DeframerPhase::Status;
        }
        if (self.phase.q.val() == DeframerPhase::Status) & !self.out_valid.q.val() & self.m_status_ready.val() {
            self.phase.d.next = DeframerPhase::Recv;
            self.beat.d.next = 0.into();
            self.seen.d.next = 0.into();
            self.emitted.d.next = 0.into();
            self.carry_count.d.next = 0.into();
            self.hdr.d.next = 0.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{from_bits, keep_of, settle, to_bits};
    use tandem_hsi::vectors::{committed, from_hex};

    /// What the deframer reported for one frame.
    #[derive(Debug)]
    struct Seen {
        payload: Vec<u8>,
        header_ok: bool,
        length_ok: bool,
        crc_ok: bool,
        sequence: u64,
        length: u64,
    }

    fn run<const W: usize, const K: usize>(frames: &[Vec<u8>], seed: u32) -> Vec<Seen> {
        let mut uut = Deframer::<W, K>::new();
        uut.connect_all();
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
        let beats: Vec<(Vec<u8>, bool)> = frames
            .iter()
            .flat_map(|f| {
                let n = f.len().div_ceil(K);
                (0..n).map(move |i| (f[i * K..((i + 1) * K).min(f.len())].to_vec(), i + 1 == n))
            })
            .collect();
        let (mut sent, mut out, mut payload) = (0usize, vec![], vec![]);
        for _ in 0..20_000 {
            if out.len() == frames.len() {
                break;
            }
            let offer = sent < beats.len() && next() % 4 != 0;
            if offer {
                uut.s_axis_tdata.next = to_bits::<W>(&beats[sent].0);
                uut.s_axis_tkeep.next = keep_of::<K>(beats[sent].0.len());
                uut.s_axis_tlast.next = beats[sent].1;
            }
            uut.s_axis_tvalid.next = offer;
            uut.m_axis_tready.next = next() % 3 != 0;
            uut.m_status_ready.next = next() % 2 == 0;
            settle(&mut uut);
            let took = offer && uut.s_axis_tready.val();
            if uut.m_axis_tvalid.val() && uut.m_axis_tready.val() {
                let keep = uut.m_axis_tkeep.val();
                let n = (0..K).take_while(|i| keep.get_bit(*i)).count();
                payload.extend(from_bits::<W>(uut.m_axis_tdata.val(), n));
            }
            if uut.m_status_valid.val() && uut.m_status_ready.val() {
                out.push(Seen {
                    payload: std::mem::take(&mut payload),
                    header_ok: uut.m_status_header_ok.val(),
                    length_ok: uut.m_status_length_ok.val(),
                    crc_ok: uut.m_status_crc_ok.val(),
                    sequence: uut.m_status_sequence.val().to_u64(),
                    length: uut.m_status_length.val().to_u64(),
                });
            }
            uut.clock.next = Clock { clk: true };
            settle(&mut uut);
            uut.clock.next = Clock { clk: false };
            settle(&mut uut);
            if took {
                sent += 1;
            }
        }
        out
    }

    fn vectors<const W: usize, const K: usize>() {
        let file = committed();
        let frames: Vec<Vec<u8>> = file.vectors.iter().map(|v| from_hex(&v.hex).unwrap()).collect();
        let seen = run::<W, K>(&frames, 5);
        assert_eq!(seen.len(), frames.len(), "W = {W}: one status per frame");
        for (v, s) in file.vectors.iter().zip(&seen) {
            let ctx = format!("W = {W}, vector {:?}: {s:?}", v.name);
            match (&v.header, v.error.as_deref()) {
                (Some(h), None) => {
                    assert!(s.header_ok && s.length_ok && s.crc_ok, "{ctx}");
                    assert_eq!(s.sequence, h.sequence, "{ctx}");
                    assert_eq!(s.length, u64::from(h.length), "{ctx}");
                    let want = from_hex(v.payload_hex.as_ref().unwrap()).unwrap();
                    let is_data = matches!(h.kind, tandem_hsi::FrameKind::Data { .. });
                    assert_eq!(s.payload, if is_data { want } else { vec![] }, "{ctx}");
                }
                (_, Some("bad_crc")) => assert!(s.header_ok && s.length_ok && !s.crc_ok, "{ctx}"),
                (_, Some("truncated")) => assert!(!s.length_ok, "{ctx}"),
                (_, Some(_)) => assert!(!s.header_ok, "{ctx}"),
                (None, None) => panic!("{ctx}: vector has neither header nor error"),
            }
        }
    }

    #[test]
    fn decodes_and_judges_the_shared_vectors_at_64_bits() {
        vectors::<64, 8>();
    }

    #[test]
    fn decodes_and_judges_the_shared_vectors_at_512_bits() {
        vectors::<512, 64>();
    }

    #[test]
    fn synthesizes() {
        let mut uut = Deframer::<64, 8>::new();
        uut.connect_all();
        yosys_validate("tandem_deframer", &generate_verilog(&uut)).unwrap();
    }
}
