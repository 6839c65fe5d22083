//! CRC32C update over the first 0 to 8 bytes of a 64-bit word.

use crate::crc32c_step::Crc32cStep;
use rust_hdl::prelude::*;

/// `crc_out` is the raw register after shifting in bytes `0..count` of `data`
/// (`count` = 0 passes `crc_in` through). Eight chained one-byte steps, each bypassed
/// when its byte is past `count`. Used for the last, partial beat of a frame.
#[derive(LogicBlock)]
pub struct Crc32cTail {
    /// Register value before the bytes.
    pub crc_in: Signal<In, Bits<32>>,
    /// Up to eight bytes, byte 0 in bits 7:0.
    pub data: Signal<In, Bits<64>>,
    /// Number of bytes to shift in, 0 to 8.
    pub count: Signal<In, Bits<4>>,
    /// Register value after the bytes.
    pub crc_out: Signal<Out, Bits<32>>,
    steps: [Crc32cStep<8>; 8],
    chain: [Signal<Local, Bits<32>>; 9],
    enable: Signal<Local, Bits<8>>,
    ones: Constant<Bits<8>>,
}

impl Default for Crc32cTail {
    fn default() -> Self {
        Self {
            crc_in: Default::default(),
            data: Default::default(),
            count: Default::default(),
            crc_out: Default::default(),
            steps: std::array::from_fn(|_| Crc32cStep::new()),
            chain: std::array::from_fn(|_| Signal::default()),
            enable: Default::default(),
            ones: Constant::new(0xFF.into()),
        }
    }
}

impl Logic for Crc32cTail {
    #[hdl_gen]
    fn update(&mut self) {
        self.enable.next = !(self.ones.val() << self.count.val());
        self.chain[0].next = self.crc_in.val();
        for b in 0..8 {
            self.steps[b].crc_in.next = self.chain[b].val();
            self.steps[b].data.next = self.data.val().get_bits::<8>(b * 8);
            if self.enable.val().get_bit(b) {
                self.chain[b + 1].next = self.steps[b].crc_out.val();
            } else {
                self.chain[b + 1].next = self.chain[b].val();
            }
        }
        self.crc_out.next = self.chain[8].val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc_matrix::step_serial;

    #[test]
    fn every_count_matches_serial_reference() {
        let mut uut = Crc32cTail::default();
        uut.connect_all();
        let bytes = [0x10u8, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE];
        for count in 0..=8usize {
            uut.crc_in.next = 0xCAFE_F00Du64.into();
            uut.data.next = u64::from_le_bytes(bytes).into();
            uut.count.next = (count as u64).into();
            for _ in 0..64 {
                uut.update_all();
                if !uut.has_changed() {
                    break;
                }
            }
            assert_eq!(uut.crc_out.val().to_u32(), step_serial(0xCAFE_F00D, &bytes[..count]), "count {count}");
        }
    }

    #[test]
    fn synthesizes() {
        let mut uut = Crc32cTail::default();
        uut.connect_all();
        yosys_validate("tandem_crc32c_tail", &generate_verilog(&uut)).unwrap();
    }
}
