//! Running CRC32C over the beats of one frame.

use crate::crc32c_step::Crc32cStep;
use crate::crc32c_tail::Crc32cTail;
use crate::crc_matrix::INIT;
use rust_hdl::prelude::*;

/// Byte counts inside the engine (0 to 65535; lanes per beat are at most 128).
pub type Count = Bits<16>;

/// Accumulates the raw CRC32C register over a frame's beats. Every beat except the last
/// carries `W/8` bytes and takes one cycle; the last beat's `s_count` bytes go through
/// [`Crc32cTail`] eight per cycle, then `done` pulses for one cycle with the frame's raw
/// register on `crc` and the accumulator restarts from the initial value.
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
    /// The accumulator takes the beat (low while it works through a last beat).
    pub s_ready: Signal<Out, Bit>,
    /// Raw register of the finished frame, valid while `done` is high.
    pub crc: Signal<Out, Bits<32>>,
    /// One-cycle pulse: the frame's last byte is in.
    pub done: Signal<Out, Bit>,
    full: Crc32cStep<W>,
    tail: Crc32cTail,
    state: DFFWithInit<Bits<32>>,
    busy: DFF<Bit>,
    tail_data: DFF<Bits<W>>,
    tail_left: DFF<Count>,
    result: DFF<Bits<32>>,
    done_q: DFF<Bit>,
    init: Constant<Bits<32>>,
    eight: Constant<Count>,
}

impl<const W: usize> Default for Crc32cAccum<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize> Crc32cAccum<W> {
    /// A `W`-bit accumulator.
    pub fn new() -> Self {
        assert!(W % 64 == 0 && W >= 64, "Crc32cAccum: datapath width W = {W} must be a multiple of 64 bits");
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
            tail: Crc32cTail::default(),
            state: DFFWithInit::new(u64::from(INIT).into()),
            busy: Default::default(),
            tail_data: Default::default(),
            tail_left: Default::default(),
            result: Default::default(),
            done_q: Default::default(),
            init: Constant::new(u64::from(INIT).into()),
            eight: Constant::new(8.into()),
        }
    }
}

impl<const W: usize> Logic for Crc32cAccum<W> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, state, busy, tail_data, tail_left, result, done_q);
        self.full.crc_in.next = self.state.q.val();
        self.full.data.next = self.s_data.val();
        self.tail.crc_in.next = self.state.q.val();
        self.tail.data.next = self.tail_data.q.val().get_bits::<64>(0);
        if self.tail_left.q.val() > self.eight.val() {
            self.tail.count.next = 8.into();
        } else {
            self.tail.count.next = self.tail_left.q.val().get_bits::<4>(0);
        }
        self.s_ready.next = !self.busy.q.val();
        self.crc.next = self.result.q.val();
        self.done.next = self.done_q.q.val();
        self.done_q.d.next = false;
        if self.busy.q.val() {
            self.tail_data.d.next = self.tail_data.q.val() >> 64;
            if self.tail_left.q.val() > self.eight.val() {
                self.state.d.next = self.tail.crc_out.val();
                self.tail_left.d.next = self.tail_left.q.val() - self.eight.val();
            } else {
                self.state.d.next = self.init.val();
                self.result.d.next = self.tail.crc_out.val();
                self.busy.d.next = false;
                self.done_q.d.next = true;
            }
        } else if self.s_valid.val() {
            if self.s_last.val() {
                self.busy.d.next = true;
                self.tail_data.d.next = self.s_data.val();
                self.tail_left.d.next = self.s_count.val();
            } else {
                self.state.d.next = self.full.crc_out.val();
            }
        }
    }
}
