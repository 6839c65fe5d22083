//! Frame transmitter: header, payload, CRC32C trailer onto an AXI4-Stream.

use crate::crc32c_accum::Count;
use crate::crc_append::CrcAppend;
use crate::hsi_consts::*;
use crate::keep_count::KeepCount;
use rust_hdl::prelude::*;
use tandem_hsi::frame::{header, MAGIC, WIRE_VERSION};

/// Phases of [`Framer`].
#[derive(Copy, Clone, PartialEq, Eq, Debug, LogicState)]
pub enum FramerPhase {
    /// Waiting for a header request.
    Idle,
    /// Emitting whole header beats (datapaths up to 256 bits).
    Header,
    /// Passing payload beats, shifted behind the header.
    Payload,
    /// Emitting the payload bytes left over after the last input beat.
    Flush,
}

/// Builds one wire frame per header request: the 32-byte header (`MAGIC`, `VERSION`,
/// the request's fields, `FLAGS` = 0), then exactly `length` payload bytes from the
/// payload sink (nothing for `length` = 0), then the CRC32C trailer. Field positions come
/// from `tandem_hsi::frame::header`.
#[derive(LogicBlock)]
pub struct Framer<const W: usize, const K: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Header request valid.
    pub s_hdr_valid: Signal<In, Bit>,
    /// Header request taken (the framer is idle, or emitting the previous frame's last
    /// body bytes).
    pub s_hdr_ready: Signal<Out, Bit>,
    /// `FRAME_TYPE` of the frame.
    pub s_hdr_frame_type: Signal<In, Bits<FRAME_TYPE_BITS>>,
    /// `KIND` of the frame.
    pub s_hdr_kind: Signal<In, Bits<KIND_BITS>>,
    /// `SERVICE_TAG` of the frame.
    pub s_hdr_service_tag: Signal<In, Bits<TAG_BITS>>,
    /// `LENGTH`: payload bytes that follow on the payload sink.
    pub s_hdr_length: Signal<In, Bits<LENGTH_BITS>>,
    /// `SEQUENCE` of the frame.
    pub s_hdr_sequence: Signal<In, Bits<SEQUENCE_BITS>>,
    /// `WINDOW_OFFSET` of the frame.
    pub s_hdr_window_offset: Signal<In, Bits<OFFSET_BITS>>,
    /// Payload data (sink), byte 0 of the payload in lane 0 of the first beat.
    pub s_axis_tdata: Signal<In, Bits<W>>,
    /// Payload byte enables: all set except on the last beat, contiguous from lane 0.
    pub s_axis_tkeep: Signal<In, Bits<K>>,
    /// Payload last beat.
    pub s_axis_tlast: Signal<In, Bit>,
    /// Payload valid.
    pub s_axis_tvalid: Signal<In, Bit>,
    /// Payload ready.
    pub s_axis_tready: Signal<Out, Bit>,
    /// Link transmit data (source, to the MAC).
    pub m_axis_tdata: Signal<Out, Bits<W>>,
    /// Link transmit byte enables.
    pub m_axis_tkeep: Signal<Out, Bits<K>>,
    /// Link transmit last beat of a frame.
    pub m_axis_tlast: Signal<Out, Bit>,
    /// Link transmit valid.
    pub m_axis_tvalid: Signal<Out, Bit>,
    /// Link transmit ready.
    pub m_axis_tready: Signal<In, Bit>,
    append: CrcAppend<W, K>,
    keep_count: KeepCount<K>,
    phase: DFF<FramerPhase>,
    hdr: DFF<Bits<HEADER_BITS>>,
    zero_length: DFF<Bit>,
    beat: DFF<Count>,
    carry: DFF<Bits<W>>,
    carry_count: DFF<Count>,
    body_data: DFF<Bits<W>>,
    body_keep: DFF<Bits<K>>,
    body_last: DFF<Bit>,
    body_valid: DFF<Bit>,
    body_free: Signal<Local, Bit>,
    total: Signal<Local, Count>,
    take_hdr: Signal<Local, Bit>,
    hdr_word: Signal<Local, Bits<HEADER_BITS>>,
    magic: Constant<Bits<MAGIC_BITS>>,
    version: Constant<Bits<VERSION_BITS>>,
    at_type: Constant<Count>,
    at_kind: Constant<Count>,
    at_tag: Constant<Count>,
    at_length: Constant<Count>,
    at_sequence: Constant<Count>,
    at_offset: Constant<Count>,
    at_version: Constant<Count>,
    header_beats: Constant<Count>,
    header_tail: Constant<Count>,
    lanes: Constant<Count>,
    width: Constant<Count>,
    ones_k: Constant<Bits<K>>,
}

impl<const W: usize, const K: usize> Default for Framer<W, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const K: usize> Framer<W, K> {
    /// A framer for a `W`-bit link with `K = W / 8` keep lanes.
    pub fn new() -> Self {
        assert_eq!(W, 8 * K, "Framer: K = {K} keep lanes must be W / 8 for W = {W}");
        assert!(matches!(W, 64 | 128 | 256 | 512), "Framer: datapath width W = {W} is not supported (64, 128, 256 or 512 bits)");
        fn c<const N: usize>(v: u64) -> Constant<Bits<N>> {
            Constant::new(v.into())
        }
        Self {
            clock: Default::default(),
            s_hdr_valid: Default::default(),
            s_hdr_ready: Default::default(),
            s_hdr_frame_type: Default::default(),
            s_hdr_kind: Default::default(),
            s_hdr_service_tag: Default::default(),
            s_hdr_length: Default::default(),
            s_hdr_sequence: Default::default(),
            s_hdr_window_offset: Default::default(),
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
            append: CrcAppend::new(),
            keep_count: KeepCount::default(),
            phase: Default::default(),
            hdr: Default::default(),
            zero_length: Default::default(),
            beat: Default::default(),
            carry: Default::default(),
            carry_count: Default::default(),
            body_data: Default::default(),
            body_keep: Default::default(),
            body_last: Default::default(),
            body_valid: Default::default(),
            body_free: Default::default(),
            total: Default::default(),
            take_hdr: Default::default(),
            hdr_word: Default::default(),
            magic: c(MAGIC.into()),
            version: c(WIRE_VERSION.into()),
            at_type: c(lo(header::FRAME_TYPE)),
            at_kind: c(lo(header::KIND)),
            at_tag: c(lo(header::SERVICE_TAG)),
            at_length: c(lo(header::LENGTH)),
            at_sequence: c(lo(header::SEQUENCE)),
            at_offset: c(lo(header::WINDOW_OFFSET)),
            at_version: c(lo(header::VERSION)),
            header_beats: c((HEADER_BYTES / K) as u64),
            header_tail: c((HEADER_BYTES % K) as u64),
            lanes: c(K as u64),
            width: c(W as u64),
            ones_k: Constant::new(!Bits::<K>::default()),
        }
    }
}

impl<const W: usize, const K: usize> Logic for Framer<W, K> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, phase, hdr, zero_length, beat, carry, carry_count, body_data, body_keep, body_last, body_valid);
        clock!(self, clock, append);
        self.append.s_axis_tdata.next = self.body_data.q.val();
        self.append.s_axis_tkeep.next = self.body_keep.q.val();
        self.append.s_axis_tlast.next = self.body_last.q.val();
        self.append.s_axis_tvalid.next = self.body_valid.q.val();
        self.m_axis_tdata.next = self.append.m_axis_tdata.val();
        self.m_axis_tkeep.next = self.append.m_axis_tkeep.val();
        self.m_axis_tlast.next = self.append.m_axis_tlast.val();
        self.m_axis_tvalid.next = self.append.m_axis_tvalid.val();
        self.append.m_axis_tready.next = self.m_axis_tready.val();
        self.keep_count.keep.next = self.s_axis_tkeep.val();
        self.body_free.next = !self.body_valid.q.val() | self.append.s_axis_tready.val();
        if self.append.s_axis_tready.val() {
            self.body_valid.d.next = false;
        }
        self.total.next = self.carry_count.q.val() + self.keep_count.count.val();
        self.hdr_word.next = bit_cast::<HEADER_BITS, MAGIC_BITS>(self.magic.val())
            | (bit_cast::<HEADER_BITS, VERSION_BITS>(self.version.val()) << self.at_version.val())
            | (bit_cast::<HEADER_BITS, FRAME_TYPE_BITS>(self.s_hdr_frame_type.val()) << self.at_type.val())
            | (bit_cast::<HEADER_BITS, KIND_BITS>(self.s_hdr_kind.val()) << self.at_kind.val())
            | (bit_cast::<HEADER_BITS, TAG_BITS>(self.s_hdr_service_tag.val()) << self.at_tag.val())
            | (bit_cast::<HEADER_BITS, LENGTH_BITS>(self.s_hdr_length.val()) << self.at_length.val())
            | (bit_cast::<HEADER_BITS, SEQUENCE_BITS>(self.s_hdr_sequence.val()) << self.at_sequence.val())
            | (bit_cast::<HEADER_BITS, OFFSET_BITS>(self.s_hdr_window_offset.val()) << self.at_offset.val());
        // The next header is taken while idle or in the cycle the previous frame's
        // last bytes leave (no idle cycle between frames).
        self.s_hdr_ready.next =
            (self.phase.q.val() == FramerPhase::Idle) | ((self.phase.q.val() == FramerPhase::Flush) & self.body_free.val());
        self.take_hdr.next = self.s_hdr_valid.val() & self.s_hdr_ready.val();
        self.s_axis_tready.next = (self.phase.q.val() == FramerPhase::Payload) & self.body_free.val();
        match self.phase.q.val() {
            FramerPhase::Idle => {}
            FramerPhase::Header => {
                if self.beat.q.val() == self.header_beats.val() {
                    // The header's remaining bytes (wide datapaths) wait as carry.
                    self.carry.d.next = bit_cast::<W, HEADER_BITS>(self.hdr.q.val() >> (self.beat.q.val() * self.width.val()));
                    self.carry_count.d.next = self.header_tail.val();
                    if self.zero_length.q.val() {
                        self.phase.d.next = FramerPhase::Flush;
                    } else {
                        self.phase.d.next = FramerPhase::Payload;
                    }
                } else if self.body_free.val() {
                    self.body_data.d.next = bit_cast::<W, HEADER_BITS>(self.hdr.q.val() >> (self.beat.q.val() * self.width.val()));
                    self.body_keep.d.next = self.ones_k.val();
                    self.body_last.d.next = self.zero_length.q.val() & (self.beat.q.val() + 1 == self.header_beats.val());
                    self.body_valid.d.next = true;
                    self.beat.d.next = self.beat.q.val() + 1;
                    if self.zero_length.q.val() & (self.beat.q.val() + 1 == self.header_beats.val()) {
                        self.phase.d.next = FramerPhase::Idle;
                    }
                }
            }
            FramerPhase::Payload => {
                if self.s_axis_tvalid.val() & self.body_free.val() {
                    self.body_data.d.next = self.carry.q.val() | (self.s_axis_tdata.val() << (self.carry_count.q.val() << 3));
                    self.body_valid.d.next = true;
                    self.carry.d.next = self.s_axis_tdata.val() >> ((self.lanes.val() - self.carry_count.q.val()) << 3);
                    if !self.s_axis_tlast.val() {
                        self.body_keep.d.next = self.ones_k.val();
                        self.body_last.d.next = false;
                    } else if self.total.val() <= self.lanes.val() {
                        self.body_keep.d.next = !(self.ones_k.val() << self.total.val());
                        self.body_last.d.next = true;
                        self.phase.d.next = FramerPhase::Idle;
                    } else {
                        self.body_keep.d.next = self.ones_k.val();
                        self.body_last.d.next = false;
                        self.carry_count.d.next = self.total.val() - self.lanes.val();
                        self.phase.d.next = FramerPhase::Flush;
                    }
                }
            }
            _ => {
                if self.body_free.val() {
                    self.body_data.d.next = self.carry.q.val();
                    self.body_keep.d.next = !(self.ones_k.val() << self.carry_count.q.val());
                    self.body_last.d.next = true;
                    self.body_valid.d.next = true;
                    self.phase.d.next = FramerPhase::Idle;
                }
            }
        }
        if self.take_hdr.val() {
            self.hdr.d.next = self.hdr_word.val();
            self.zero_length.d.next = self.s_hdr_length.val() == 0;
            self.beat.d.next = 0.into();
            if self.header_beats.val() == 0 {
                // Wide datapaths: the whole header waits as carry in front of the payload.
                self.carry.d.next = bit_cast::<W, HEADER_BITS>(self.hdr_word.val());
                self.carry_count.d.next = self.header_tail.val();
                if self.s_hdr_length.val() == 0 {
                    self.phase.d.next = FramerPhase::Flush;
                } else {
                    self.phase.d.next = FramerPhase::Payload;
                }
            } else {
                self.carry.d.next = 0.into();
                self.carry_count.d.next = 0.into();
                self.phase.d.next = FramerPhase::Header;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{from_bits, keep_of, settle, to_bits};
    use tandem_hsi::vectors::{committed, from_hex};

    /// Sends each (header bytes, payload) through the framer under random back-pressure
    /// and returns the frames seen on the link side.
    fn run<const W: usize, const K: usize>(frames: &[(Vec<u8>, Vec<u8>)], seed: u32) -> Vec<Vec<u8>> {
        let mut uut = Framer::<W, K>::new();
        uut.connect_all();
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
        let (mut fi, mut pi, mut hdr_sent) = (0usize, 0usize, false);
        let mut out = vec![];
        let mut cur = vec![];
        for _ in 0..20_000 {
            if out.len() == frames.len() {
                break;
            }
            uut.s_hdr_valid.next = false;
            uut.s_axis_tvalid.next = false;
            if fi < frames.len() {
                let (h, p) = &frames[fi];
                uut.s_hdr_frame_type.next = (header::FRAME_TYPE.get(h)).into();
                uut.s_hdr_kind.next = (header::KIND.get(h)).into();
                uut.s_hdr_service_tag.next = (header::SERVICE_TAG.get(h)).into();
                uut.s_hdr_length.next = (header::LENGTH.get(h)).into();
                uut.s_hdr_sequence.next = (header::SEQUENCE.get(h)).into();
                uut.s_hdr_window_offset.next = (header::WINDOW_OFFSET.get(h)).into();
                uut.s_hdr_valid.next = !hdr_sent;
                if hdr_sent && pi < p.len() && next() % 4 != 0 {
                    let end = (pi + K).min(p.len());
                    uut.s_axis_tdata.next = to_bits::<W>(&p[pi..end]);
                    uut.s_axis_tkeep.next = keep_of::<K>(end - pi);
                    uut.s_axis_tlast.next = end == p.len();
                    uut.s_axis_tvalid.next = true;
                }
            }
            uut.m_axis_tready.next = next() % 3 != 0;
            settle(&mut uut);
            let hdr_took = uut.s_hdr_valid.val() && uut.s_hdr_ready.val();
            let pay_took = uut.s_axis_tvalid.val() && uut.s_axis_tready.val();
            if uut.m_axis_tvalid.val() && uut.m_axis_tready.val() {
                let keep = uut.m_axis_tkeep.val();
                let n = (0..K).take_while(|i| keep.get_bit(*i)).count();
                cur.extend(from_bits::<W>(uut.m_axis_tdata.val(), n));
                if uut.m_axis_tlast.val() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            uut.clock.next = Clock { clk: true };
            settle(&mut uut);
            uut.clock.next = Clock { clk: false };
            settle(&mut uut);
            if hdr_took {
                hdr_sent = true;
            }
            if pay_took {
                pi = (pi + K).min(frames[fi].1.len());
            }
            if fi < frames.len() && hdr_sent && pi == frames[fi].1.len() {
                fi += 1;
                pi = 0;
                hdr_sent = false;
            }
        }
        out
    }

    fn vectors_byte_for_byte<const W: usize, const K: usize>() {
        let file = committed();
        let valid: Vec<_> = file.vectors.iter().filter(|v| v.header.is_some()).collect();
        let frames: Vec<(Vec<u8>, Vec<u8>)> = valid
            .iter()
            .map(|v| {
                let bytes = from_hex(&v.hex).unwrap();
                (bytes[..HEADER_BYTES].to_vec(), from_hex(v.payload_hex.as_ref().unwrap()).unwrap())
            })
            .collect();
        let out = run::<W, K>(&frames, 99);
        assert_eq!(out.len(), valid.len(), "W = {W}: one frame out per request");
        for (v, o) in valid.iter().zip(&out) {
            assert_eq!(o, &from_hex(&v.hex).unwrap(), "W = {W}: vector {:?}", v.name);
        }
    }

    #[test]
    fn encodes_the_shared_vectors_at_64_bits() {
        vectors_byte_for_byte::<64, 8>();
    }

    #[test]
    fn encodes_the_shared_vectors_at_512_bits() {
        vectors_byte_for_byte::<512, 64>();
    }

    #[test]
    #[should_panic(expected = "is not supported")]
    fn rejects_unsupported_width() {
        let _ = Framer::<96, 12>::new();
    }

    #[test]
    fn synthesizes() {
        let mut uut = Framer::<64, 8>::new();
        uut.connect_all();
        yosys_validate("tandem_framer", &generate_verilog(&uut)).unwrap();
    }
}
