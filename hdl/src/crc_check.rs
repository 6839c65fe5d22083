//! Checks the CRC32C trailer of each frame of an AXI4-Stream.

use crate::crc32c_accum::Crc32cAccum;
use crate::crc_matrix::residue;
use crate::keep_count::KeepCount;
use rust_hdl::prelude::*;

/// Passes whole frames (header, payload, trailer) through unchanged and holds each last
/// beat until the CRC is known; `m_axis_tuser` on the last beat is 1 when the CRC32C over
/// the frame, trailer included, leaves the constant residue (the trailer matches).
#[derive(LogicBlock)]
pub struct CrcCheck<const W: usize, const K: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Received stream data (sink).
    pub s_axis_tdata: Signal<In, Bits<W>>,
    /// Received stream byte enables, contiguous from lane 0.
    pub s_axis_tkeep: Signal<In, Bits<K>>,
    /// Received stream last beat.
    pub s_axis_tlast: Signal<In, Bit>,
    /// Received stream valid.
    pub s_axis_tvalid: Signal<In, Bit>,
    /// Received stream ready.
    pub s_axis_tready: Signal<Out, Bit>,
    /// Checked stream data (source).
    pub m_axis_tdata: Signal<Out, Bits<W>>,
    /// Checked stream byte enables.
    pub m_axis_tkeep: Signal<Out, Bits<K>>,
    /// Checked stream last beat.
    pub m_axis_tlast: Signal<Out, Bit>,
    /// On the last beat: 1 when the frame's CRC is good.
    pub m_axis_tuser: Signal<Out, Bit>,
    /// Checked stream valid.
    pub m_axis_tvalid: Signal<Out, Bit>,
    /// Checked stream ready.
    pub m_axis_tready: Signal<In, Bit>,
    accum: Crc32cAccum<W>,
    keep_count: KeepCount<K>,
    waiting: DFF<Bit>,
    out_data: DFF<Bits<W>>,
    out_keep: DFF<Bits<K>>,
    out_last: DFF<Bit>,
    out_user: DFF<Bit>,
    out_valid: DFF<Bit>,
    hold_data: DFF<Bits<W>>,
    hold_keep: DFF<Bits<K>>,
    pending: DFF<Bit>,
    pending_ok: DFF<Bit>,
    out_free: Signal<Local, Bit>,
    accept: Signal<Local, Bit>,
    residue: Constant<Bits<32>>,
}

impl<const W: usize, const K: usize> Default for CrcCheck<W, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const K: usize> CrcCheck<W, K> {
    /// A `W`-bit checker with `K = W / 8` keep lanes.
    pub fn new() -> Self {
        assert_eq!(W, 8 * K, "CrcCheck: K = {K} keep lanes must be W / 8 for W = {W}");
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
            m_axis_tuser: Default::default(),
            m_axis_tvalid: Default::default(),
            m_axis_tready: Default::default(),
            accum: Crc32cAccum::new(),
            keep_count: KeepCount::default(),
            waiting: Default::default(),
            out_data: Default::default(),
            out_keep: Default::default(),
            out_last: Default::default(),
            out_user: Default::default(),
            out_valid: Default::default(),
            hold_data: Default::default(),
            hold_keep: Default::default(),
            pending: Default::default(),
            pending_ok: Default::default(),
            out_free: Default::default(),
            accept: Default::default(),
            residue: Constant::new(u64::from(residue()).into()),
        }
    }
}

impl<const W: usize, const K: usize> Logic for CrcCheck<W, K> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, waiting, out_data, out_keep, out_last, out_user, out_valid, hold_data, hold_keep, pending, pending_ok);
        clock!(self, clock, accum);
        self.keep_count.keep.next = self.s_axis_tkeep.val();
        self.m_axis_tdata.next = self.out_data.q.val();
        self.m_axis_tkeep.next = self.out_keep.q.val();
        self.m_axis_tlast.next = self.out_last.q.val();
        self.m_axis_tuser.next = self.out_user.q.val();
        self.m_axis_tvalid.next = self.out_valid.q.val();
        self.out_free.next = !self.out_valid.q.val() | self.m_axis_tready.val();
        if self.m_axis_tready.val() {
            self.out_valid.d.next = false;
        }
        self.accum.s_data.next = self.s_axis_tdata.val();
        self.accum.s_count.next = self.keep_count.count.val();
        self.accum.s_last.next = self.s_axis_tlast.val();
        self.accept.next = self.s_axis_tvalid.val() & self.out_free.val() & self.accum.s_ready.val() & !self.waiting.q.val();
        self.s_axis_tready.next = self.out_free.val() & self.accum.s_ready.val() & !self.waiting.q.val();
        self.accum.s_valid.next = self.accept.val();
        if self.accept.val() {
            if self.s_axis_tlast.val() {
                self.hold_data.d.next = self.s_axis_tdata.val();
                self.hold_keep.d.next = self.s_axis_tkeep.val();
                self.waiting.d.next = true;
            } else {
                self.out_data.d.next = self.s_axis_tdata.val();
                self.out_keep.d.next = self.s_axis_tkeep.val();
                self.out_last.d.next = false;
                self.out_user.d.next = false;
                self.out_valid.d.next = true;
            }
        }
        if self.accum.done.val() {
            self.pending.d.next = true;
            self.pending_ok.d.next = self.accum.crc.val() == self.residue.val();
            // The verdict is known the cycle after the last beat: release it at once
            // when the output is free.
            if self.out_free.val() {
                self.out_data.d.next = self.hold_data.q.val();
                self.out_keep.d.next = self.hold_keep.q.val();
                self.out_last.d.next = true;
                self.out_user.d.next = self.accum.crc.val() == self.residue.val();
                self.out_valid.d.next = true;
                self.pending.d.next = false;
                self.waiting.d.next = false;
            }
        }
        if self.pending.q.val() & self.out_free.val() {
            self.out_data.d.next = self.hold_data.q.val();
            self.out_keep.d.next = self.hold_keep.q.val();
            self.out_last.d.next = true;
            self.out_user.d.next = self.pending_ok.q.val();
            self.out_valid.d.next = true;
            self.pending.d.next = false;
            self.waiting.d.next = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pattern, run_stream};

    fn check<const W: usize, const K: usize>() {
        let mut uut = CrcCheck::<W, K>::new();
        uut.connect_all();
        let mut frames = vec![];
        let mut good = vec![];
        for (i, len) in [32usize, 33, 40, K, K + 3, 3 * K - 4, 200].iter().enumerate() {
            let body = pattern(*len, i as u32 + 11);
            let mut f = body.clone();
            f.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            if i % 2 == 1 {
                let at = (i * 7) % f.len();
                f[at] ^= 1 << (i % 8);
            }
            good.push(i % 2 == 0);
            frames.push(f);
        }
        let out = run_stream!(uut, W, K, &frames, 3, 5000, Some(|u: &CrcCheck<W, K>| u.m_axis_tuser.val()));
        assert_eq!(out.len(), frames.len());
        for ((f, g), (o, ok)) in frames.iter().zip(&good).zip(&out) {
            assert_eq!(o, f, "W = {W}: bytes pass through unchanged");
            assert_eq!(ok, g, "W = {W}: CRC verdict for a {}-byte frame", f.len());
        }
    }

    #[test]
    fn flags_good_and_corrupt_frames_at_64_and_512_bits() {
        check::<64, 8>();
        check::<512, 64>();
    }

    #[test]
    fn synthesizes() {
        let mut uut = CrcCheck::<64, 8>::new();
        uut.connect_all();
        yosys_validate("tandem_crc_check", &generate_verilog(&uut)).unwrap();
    }
}
