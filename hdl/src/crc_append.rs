//! Appends the CRC32C trailer to each frame of an AXI4-Stream.

use crate::crc32c_accum::{Count, Crc32cAccum};
use crate::keep_count::KeepCount;
use rust_hdl::prelude::*;

/// Input: frame bodies (header and payload), every beat full except the last, `tkeep`
/// contiguous from lane 0. Output: the same bytes followed by the 4-byte little-endian
/// CRC32C of the body (initial value and final XOR all ones), in the next lanes of the
/// last beat or in one extra beat.
#[derive(LogicBlock)]
pub struct CrcAppend<const W: usize, const K: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Body stream data (sink).
    pub s_axis_tdata: Signal<In, Bits<W>>,
    /// Body stream byte enables, contiguous from lane 0.
    pub s_axis_tkeep: Signal<In, Bits<K>>,
    /// Body stream last beat of a frame.
    pub s_axis_tlast: Signal<In, Bit>,
    /// Body stream valid.
    pub s_axis_tvalid: Signal<In, Bit>,
    /// Body stream ready.
    pub s_axis_tready: Signal<Out, Bit>,
    /// Framed stream data (source).
    pub m_axis_tdata: Signal<Out, Bits<W>>,
    /// Framed stream byte enables.
    pub m_axis_tkeep: Signal<Out, Bits<K>>,
    /// Framed stream last beat.
    pub m_axis_tlast: Signal<Out, Bit>,
    /// Framed stream valid.
    pub m_axis_tvalid: Signal<Out, Bit>,
    /// Framed stream ready.
    pub m_axis_tready: Signal<In, Bit>,
    accum: Crc32cAccum<W>,
    keep_count: KeepCount<K>,
    phase: DFF<AppendPhase>,
    out_data: DFF<Bits<W>>,
    out_keep: DFF<Bits<K>>,
    out_last: DFF<Bit>,
    out_valid: DFF<Bit>,
    hold_data: DFF<Bits<W>>,
    hold_count: DFF<Count>,
    out_free: Signal<Local, Bit>,
    accept: Signal<Local, Bit>,
    with_crc: Signal<Local, Bits<W>>,
    ones_w: Constant<Bits<W>>,
    ones_k: Constant<Bits<K>>,
    lanes: Constant<Count>,
}

/// Phases of [`CrcAppend`].
#[derive(Copy, Clone, PartialEq, Eq, Debug, LogicState)]
pub enum AppendPhase {
    /// Passing body beats.
    Pass,
    /// Waiting for the CRC of the last beat.
    Wait,
    /// Emitting the last beat with the trailer (or its first bytes).
    Emit,
    /// Emitting the trailer bytes that did not fit.
    Emit2,
}

impl<const W: usize, const K: usize> Default for CrcAppend<W, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const K: usize> CrcAppend<W, K> {
    /// A `W`-bit appender with `K = W / 8` keep lanes.
    pub fn new() -> Self {
        assert_eq!(W, 8 * K, "CrcAppend: K = {K} keep lanes must be W / 8 for W = {W}");
        assert!(K >= 8, "CrcAppend: W = {W} must be at least 64 bits");
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
            accum: Crc32cAccum::new(),
            keep_count: KeepCount::default(),
            phase: Default::default(),
            out_data: Default::default(),
            out_keep: Default::default(),
            out_last: Default::default(),
            out_valid: Default::default(),
            hold_data: Default::default(),
            hold_count: Default::default(),
            out_free: Default::default(),
            accept: Default::default(),
            with_crc: Default::default(),
            ones_w: Constant::new(!Bits::<W>::default()),
            ones_k: Constant::new(!Bits::<K>::default()),
            lanes: Constant::new((K as u64).into()),
        }
    }
}

impl<const W: usize, const K: usize> Logic for CrcAppend<W, K> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, phase, out_data, out_keep, out_last, out_valid, hold_data, hold_count);
        clock!(self, clock, accum);
        self.keep_count.keep.next = self.s_axis_tkeep.val();
        self.m_axis_tdata.next = self.out_data.q.val();
        self.m_axis_tkeep.next = self.out_keep.q.val();
        self.m_axis_tlast.next = self.out_last.q.val();
        self.m_axis_tvalid.next = self.out_valid.q.val();
        self.out_free.next = !self.out_valid.q.val() | self.m_axis_tready.val();
        if self.m_axis_tready.val() {
            self.out_valid.d.next = false;
        }
        self.accum.s_data.next = self.s_axis_tdata.val();
        self.accum.s_count.next = self.keep_count.count.val();
        self.accum.s_last.next = self.s_axis_tlast.val();
        self.s_axis_tready.next = false;
        self.accept.next = false;
        if self.phase.q.val() == AppendPhase::Pass {
            self.s_axis_tready.next = self.out_free.val() & self.accum.s_ready.val();
            self.accept.next = self.s_axis_tvalid.val() & self.out_free.val() & self.accum.s_ready.val();
        }
        self.accum.s_valid.next = self.accept.val();
        if self.accept.val() {
            if self.s_axis_tlast.val() {
                self.hold_data.d.next = self.s_axis_tdata.val() & !(self.ones_w.val() << (self.keep_count.count.val() << 3));
                self.hold_count.d.next = self.keep_count.count.val();
                self.phase.d.next = AppendPhase::Wait;
            } else {
                self.out_data.d.next = self.s_axis_tdata.val();
                self.out_keep.d.next = self.s_axis_tkeep.val();
                self.out_last.d.next = false;
                self.out_valid.d.next = true;
            }
        }
        // The CRC arrives the cycle after the last beat; that beat leaves the same cycle
        // when the output is free and the trailer fits in it.
        self.with_crc.next = self.hold_data.q.val() | (bit_cast::<W, 32>(!self.accum.crc.val()) << (self.hold_count.q.val() << 3));
        if (self.phase.q.val() == AppendPhase::Wait) & self.accum.done.val() {
            self.hold_data.d.next = self.with_crc.val();
            self.hold_count.d.next = self.hold_count.q.val() + 4;
            self.phase.d.next = AppendPhase::Emit;
            if self.out_free.val() & (self.hold_count.q.val() + 4 <= self.lanes.val()) {
                self.out_data.d.next = self.with_crc.val();
                self.out_keep.d.next = !(self.ones_k.val() << (self.hold_count.q.val() + 4));
                self.out_last.d.next = true;
                self.out_valid.d.next = true;
                self.phase.d.next = AppendPhase::Pass;
            }
        }
        if (self.phase.q.val() == AppendPhase::Emit) & self.out_free.val() {
            self.out_data.d.next = self.hold_data.q.val();
            self.out_valid.d.next = true;
            if self.hold_count.q.val() > self.lanes.val() {
                self.out_keep.d.next = self.ones_k.val();
                self.out_last.d.next = false;
                self.hold_data.d.next = bit_cast::<W, 32>(!self.accum.crc.val()) >> ((self.lanes.val() + 4 - self.hold_count.q.val()) << 3);
                self.hold_count.d.next = self.hold_count.q.val() - self.lanes.val();
                self.phase.d.next = AppendPhase::Emit2;
            } else {
                self.out_keep.d.next = !(self.ones_k.val() << self.hold_count.q.val());
                self.out_last.d.next = true;
                self.phase.d.next = AppendPhase::Pass;
            }
        }
        if (self.phase.q.val() == AppendPhase::Emit2) & self.out_free.val() {
            self.out_data.d.next = self.hold_data.q.val();
            self.out_keep.d.next = !(self.ones_k.val() << self.hold_count.q.val());
            self.out_last.d.next = true;
            self.out_valid.d.next = true;
            self.phase.d.next = AppendPhase::Pass;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pattern, run_stream};

    fn check<const W: usize, const K: usize>() {
        let mut uut = CrcAppend::<W, K>::new();
        uut.connect_all();
        let lens = [1usize, 7, 8, 9, 32, 36, K - 4, K - 3, K - 1, K, K + 1, 2 * K + 5, 300];
        let frames: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, l)| pattern(*l, i as u32 + 1)).collect();
        let out = run_stream!(uut, W, K, &frames, 7, 5000, None);
        assert_eq!(out.len(), frames.len(), "W = {W}: every frame comes out");
        for (f, (o, _)) in frames.iter().zip(&out) {
            let mut want = f.clone();
            want.extend_from_slice(&crc32c::crc32c(f).to_le_bytes());
            assert_eq!(o, &want, "W = {W}, body length {}", f.len());
        }
    }

    #[test]
    fn appends_crc32c_at_64_and_512_bits() {
        check::<64, 8>();
        check::<512, 64>();
    }

    #[test]
    #[should_panic(expected = "keep lanes must be W / 8")]
    fn rejects_mismatched_keep_width() {
        let _ = CrcAppend::<64, 4>::new();
    }

    #[test]
    fn synthesizes() {
        let mut uut = CrcAppend::<64, 8>::new();
        uut.connect_all();
        yosys_validate("tandem_crc_append", &generate_verilog(&uut)).unwrap();
    }
}
