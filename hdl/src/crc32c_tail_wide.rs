//! CRC32C update over the first 0 to 64 bytes of a word, in one combinational pass.

use crate::crc32c_accum::Count;
use crate::crc32c_step::Crc32cStep;
use rust_hdl::prelude::*;

/// `crc_out` is the raw register after shifting in bytes `0..count` of `data`
/// (`count` = 0 passes `crc_in` through; `count` is at most `W/8`). The count is split
/// into its binary digits: a chain of whole-word steps of 64, 32, 16, 8, 4, 2 and 1
/// bytes, each bypassed when its digit is clear, each taking its bytes from the offset
/// the larger steps consumed. Steps wider than the datapath are tied off by a constant
/// mask, so synthesis removes them. Used for the last, partial beat of a frame.
#[derive(LogicBlock)]
pub struct Crc32cTailWide<const W: usize> {
    /// Register value before the bytes.
    pub crc_in: Signal<In, Bits<32>>,
    /// The word, byte 0 in bits 7:0.
    pub data: Signal<In, Bits<W>>,
    /// Number of bytes to shift in, 0 to `W/8`.
    pub count: Signal<In, Count>,
    /// Register value after the bytes.
    pub crc_out: Signal<Out, Bits<32>>,
    s64: Crc32cStep<512>,
    s32: Crc32cStep<256>,
    s16: Crc32cStep<128>,
    s8: Crc32cStep<64>,
    s4: Crc32cStep<32>,
    s2: Crc32cStep<16>,
    s1: Crc32cStep<8>,
    chain: [Signal<Local, Bits<32>>; 8],
    cnt: Signal<Local, Count>,
    lane_mask: Constant<Count>,
    above: [Constant<Count>; 7],
}

impl<const W: usize> Default for Crc32cTailWide<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize> Crc32cTailWide<W> {
    /// The tail network for a `W`-bit word.
    pub fn new() -> Self {
        assert!(
            W % 64 == 0 && (64..=512).contains(&W) && (W / 8).is_power_of_two(),
            "Crc32cTailWide: datapath width W = {W} must be 64, 128, 256 or 512 bits"
        );
        // Stage i handles 64 >> i bytes; its data starts after the bytes of the larger
        // digits, i.e. at count with this digit and the smaller ones cleared.
        let above = std::array::from_fn(|i| {
            let size = 64u64 >> i;
            Constant::new((0xFFFF & !(2 * size - 1)).into())
        });
        Self {
            crc_in: Default::default(),
            data: Default::default(),
            count: Default::default(),
            crc_out: Default::default(),
            s64: Crc32cStep::new(),
            s32: Crc32cStep::new(),
            s16: Crc32cStep::new(),
            s8: Crc32cStep::new(),
            s4: Crc32cStep::new(),
            s2: Crc32cStep::new(),
            s1: Crc32cStep::new(),
            chain: std::array::from_fn(|_| Signal::default()),
            cnt: Default::default(),
            lane_mask: Constant::new(((2 * W / 8 - 1) as u64).into()),
            above,
        }
    }
}

impl<const W: usize> Logic for Crc32cTailWide<W> {
    #[hdl_gen]
    fn update(&mut self) {
        self.cnt.next = self.count.val() & self.lane_mask.val();
        self.chain[0].next = self.crc_in.val();
        self.s64.crc_in.next = self.chain[0].val();
        self.s64.data.next = bit_cast::<512, W>(self.data.val() >> ((self.cnt.val() & self.above[0].val()) << 3));
        self.chain[1].next = self.chain[0].val();
        if self.cnt.val().get_bit(6) {
            self.chain[1].next = self.s64.crc_out.val();
        }
        self.s32.crc_in.next = self.chain[1].val();
        self.s32.data.next = bit_cast::<256, W>(self.data.val() >> ((self.cnt.val() & self.above[1].val()) << 3));
        self.chain[2].next = self.chain[1].val();
        if self.cnt.val().get_bit(5) {
            self.chain[2].next = self.s32.crc_out.val();
        }
        self.s16.crc_in.next = self.chain[2].val();
        self.s16.data.next = bit_cast::<128, W>(self.data.val() >> ((self.cnt.val() & self.above[2].val()) << 3));
        self.chain[3].next = self.chain[2].val();
        if self.cnt.val().get_bit(4) {
            self.chain[3].next = self.s16.crc_out.val();
        }
        self.s8.crc_in.next = self.chain[3].val();
        self.s8.data.next = bit_cast::<64, W>(self.data.val() >> ((self.cnt.val() & self.above[3].val()) << 3));
        self.chain[4].next = self.chain[3].val();
        if self.cnt.val().get_bit(3) {
            self.chain[4].next = self.s8.crc_out.val();
        }
        self.s4.crc_in.next = self.chain[4].val();
        self.s4.data.next = bit_cast::<32, W>(self.data.val() >> ((self.cnt.val() & self.above[4].val()) << 3));
        self.chain[5].next = self.chain[4].val();
        if self.cnt.val().get_bit(2) {
            self.chain[5].next = self.s4.crc_out.val();
        }
        self.s2.crc_in.next = self.chain[5].val();
        self.s2.data.next = bit_cast::<16, W>(self.data.val() >> ((self.cnt.val() & self.above[5].val()) << 3));
        self.chain[6].next = self.chain[5].val();
        if self.cnt.val().get_bit(1) {
            self.chain[6].next = self.s2.crc_out.val();
        }
        self.s1.crc_in.next = self.chain[6].val();
        self.s1.data.next = bit_cast::<8, W>(self.data.val() >> ((self.cnt.val() & self.above[6].val()) << 3));
        self.chain[7].next = self.chain[6].val();
        if self.cnt.val().get_bit(0) {
            self.chain[7].next = self.s1.crc_out.val();
        }
        self.crc_out.next = self.chain[7].val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc_matrix::step_serial;
    use crate::test_util::to_bits;

    fn check<const W: usize>() {
        let mut uut = Crc32cTailWide::<W>::new();
        uut.connect_all();
        let bytes: Vec<u8> = (0..W / 8).map(|i| (i as u8).wrapping_mul(37).wrapping_add(11)).collect();
        for count in 0..=W / 8 {
            uut.crc_in.next = 0x1357_9BDFu64.into();
            uut.data.next = to_bits::<W>(&bytes);
            uut.count.next = (count as u64).into();
            for _ in 0..200 {
                uut.update_all();
                if !uut.has_changed() {
                    break;
                }
            }
            assert_eq!(uut.crc_out.val().to_u32(), step_serial(0x1357_9BDF, &bytes[..count]), "W = {W}, count {count}");
        }
    }

    #[test]
    fn every_count_matches_serial_reference_at_64_and_512() {
        check::<64>();
        check::<512>();
    }

    #[test]
    #[should_panic(expected = "must be 64, 128, 256 or 512 bits")]
    fn rejects_1024_bits() {
        let _ = Crc32cTailWide::<1024>::new();
    }

    #[test]
    fn synthesizes() {
        let mut uut = Crc32cTailWide::<64>::new();
        uut.connect_all();
        yosys_validate("tandem_crc32c_tail_wide", &generate_verilog(&uut)).unwrap();
    }
}
