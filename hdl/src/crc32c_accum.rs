//! Running CRC32C over the beats of one frame.

use crate::crc32c_step::Crc32cStep;
use crate::crc32c_tail_wide::Crc32cTailWide;
use crate::crc_matrix::INIT;
use rust_hdl::prelude::*;

/// Byte counts inside the engine (0 to 65535; lanes per beat are at most 64).
pub type Count = Bits<16>;

/// Accumulates the raw CRC32C register over a frame's beats, one beat per cycle with no
/// gap between frames. Every beat except the last carries `W/8` bytes; the last beat's
/// `s_count` bytes are held with the register and finished the next cycle by
/// [`Crc32cTailWide`] (all bytes in one pass), while the accumulator already restarts
/// from the initial value for the next frame. `done` is high for that one cycle, with the
/// frame's raw register on `crc`.
#[derive(LogicBlock)]
pub struct Crc32cAccum<const W: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Beat data, byte 0 in bits 7:0.
    pub s_data: Signal<In, Bits<W>>,
    /// Valid bytes of a last beat (1 to W/8); ignored for other beats (all bytes count).
    pub s_count: Signal<In, Count>,
    /// The beat ends the frame.
    pub s_last: Signal<In, Bit>,
    /// A beat is offered.
    pub s_valid: Signal<In, Bit>,
    /// The accumulator takes the beat (always high: one beat per cycle).
    pub s_ready: Signal<Out, Bit>,
    /// Raw register of the finished frame, valid while `done` is high.
    pub crc: Signal<Out, Bits<32>>,
    /// One-cycle pulse, the cycle after the frame's last beat was taken.
    pub done: Signal<Out, Bit>,
    full: Crc32cStep<W>,
    tail: Crc32cTailWide<W>,
    state: DFFWithInit<Bits<32>>,
    busy: DFF<Bit>,
    tail_state: DFF<Bits<32>>,
    tail_data: DFF<Bits<W>>,
    tail_count: DFF<Count>,
    init: Constant<Bits<32>>,
}

impl<const W: usize> Default for Crc32cAccum<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize> Crc32cAccum<W> {
    /// A `W`-bit accumulator.
    pub fn new() -> Self {
        assert!(W % 64 == 0 && (64..=512).contains(&W), "Crc32cAccum: datapath width W = {W} must be a multiple of 64 bits from 64 to 512");
        Self {
            clock: Default::default(),
            s_data: Default::default(),
            s_count: Default::default(),
            s_last: Default::default(),
            s_valid: Default::default(),
            s_ready: Default::default(),
            crc: Default::default(),
            done: Default::default(),
            full: Crc32cStep::new(),
            tail: Crc32cTailWide::new(),
            state: DFFWithInit::new(u64::from(INIT).into()),
            busy: Default::default(),
            tail_state: Default::default(),
            tail_data: Default::default(),
            tail_count: Default::default(),
            init: Constant::new(u64::from(INIT).into()),
        }
    }
}

impl<const W: usize> Logic for Crc32cAccum<W> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, state, busy, tail_state, tail_data, tail_count);
        self.full.crc_in.next = self.state.q.val();
        self.full.data.next = self.s_data.val();
        self.tail.crc_in.next = self.tail_state.q.val();
        self.tail.data.next = self.tail_data.q.val();
        self.tail.count.next = self.tail_count.q.val();
        self.s_ready.next = true;
        self.crc.next = self.tail.crc_out.val();
        self.done.next = self.busy.q.val();
        self.busy.d.next = false;
        if self.s_valid.val() {
            if self.s_last.val() {
                self.busy.d.next = true;
                self.tail_state.d.next = self.state.q.val();
                self.tail_data.d.next = self.s_data.val();
                self.tail_count.d.next = self.s_count.val();
                self.state.d.next = self.init.val();
            } else {
                self.state.d.next = self.full.crc_out.val();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pattern, settle, to_bits};

    /// Frames of every length class, offered back to back with no idle cycle: each
    /// frame's register must equal the reference and `done` must follow each last beat.
    fn check<const W: usize, const K: usize>() {
        let mut uut = Crc32cAccum::<W>::new();
        uut.connect_all();
        let lens = [1usize, K - 1, K, K + 1, 3 * K, 3 * K + 7, 2];
        let mut beats = vec![];
        for (i, l) in lens.iter().enumerate() {
            let f = pattern(*l, i as u32 + 5);
            for (j, chunk) in f.chunks(K).enumerate() {
                beats.push((chunk.to_vec(), (j + 1) * K >= f.len()));
            }
        }
        let mut got = vec![];
        for cycle in 0..beats.len() + 3 {
            if let Some((chunk, last)) = beats.get(cycle) {
                uut.s_data.next = to_bits::<W>(chunk);
                uut.s_count.next = (chunk.len() as u64).into();
                uut.s_last.next = *last;
                uut.s_valid.next = true;
            } else {
                uut.s_valid.next = false;
            }
            settle(&mut uut);
            assert!(uut.s_ready.val(), "W = {W}: the accumulator never stalls");
            if uut.done.val() {
                got.push(uut.crc.val().to_u32());
            }
            uut.clock.next = Clock { clk: true };
            settle(&mut uut);
            uut.clock.next = Clock { clk: false };
            settle(&mut uut);
        }
        let want: Vec<u32> = lens.iter().enumerate().map(|(i, l)| !crc32c::crc32c(&pattern(*l, i as u32 + 5))).collect();
        assert_eq!(got, want, "W = {W}: raw register per frame, in order");
    }

    #[test]
    fn back_to_back_frames_at_64_and_512_bits() {
        check::<64, 8>();
        check::<512, 64>();
    }

    #[test]
    #[should_panic(expected = "must be a multiple of 64 bits from 64 to 512")]
    fn rejects_1024_bits() {
        let _ = Crc32cAccum::<1024>::new();
    }

    #[test]
    fn synthesizes() {
        let mut uut = Crc32cAccum::<64>::new();
        uut.connect_all();
        yosys_validate("tandem_crc32c_accum", &generate_verilog(&uut)).unwrap();
    }
}
