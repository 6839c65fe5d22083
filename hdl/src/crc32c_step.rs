//! One combinational CRC32C register update over a whole `W`-bit word.

use crate::crc_matrix::Matrix;
use rust_hdl::prelude::*;

/// `crc_out` is the raw CRC32C register after shifting `data` (all `W` bits, byte 0 first)
/// into `crc_in`. Pure XOR network: 32 parity trees whose masks come from [`Matrix`].
#[derive(LogicBlock)]
pub struct Crc32cStep<const W: usize> {
    /// Register value before the word.
    pub crc_in: Signal<In, Bits<32>>,
    /// The data word, byte 0 in bits 7:0.
    pub data: Signal<In, Bits<W>>,
    /// Register value after the word.
    pub crc_out: Signal<Out, Bits<32>>,
    /// Data mask of each output bit.
    data_rows: [Constant<Bits<W>>; 32],
    /// Register mask of each output bit.
    crc_rows: [Constant<Bits<32>>; 32],
    /// Partial results: bit j is set in `acc[j + 1]`.
    acc: [Signal<Local, Bits<32>>; 33],
}

impl<const W: usize> Default for Crc32cStep<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize> Crc32cStep<W> {
    /// Builds the XOR network for `W` data bits.
    pub fn new() -> Self {
        assert!(W % 8 == 0 && W > 0, "Crc32cStep: data width W = {W} must be a positive multiple of 8");
        let m = Matrix::new(W);
        let data_rows = std::array::from_fn(|j| {
            let mut b = Bits::<W>::default();
            for (i, set) in m.data_rows[j].iter().enumerate() {
                if *set {
                    b = b.replace_bit(i, true);
                }
            }
            Constant::new(b)
        });
        let crc_rows = std::array::from_fn(|j| Constant::new(u64::from(m.crc_rows[j]).into()));
        Self {
            crc_in: Default::default(),
            data: Default::default(),
            crc_out: Default::default(),
            data_rows,
            crc_rows,
            acc: std::array::from_fn(|_| Signal::default()),
        }
    }
}

impl<const W: usize> Logic for Crc32cStep<W> {
    #[hdl_gen]
    fn update(&mut self) {
        self.acc[0].next = 0.into();
        for j in 0..32 {
            self.acc[j + 1].next = self.acc[j]
                .val()
                .replace_bit(j, (self.data.val() & self.data_rows[j].val()).xor() ^ (self.crc_in.val() & self.crc_rows[j].val()).xor());
        }
        self.crc_out.next = self.acc[32].val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc_matrix::step_serial;

    fn check<const W: usize>() {
        let mut uut = Crc32cStep::<W>::new();
        uut.connect_all();
        let mut seed = 0x9E37_79B9u32;
        for _ in 0..8 {
            let bytes: Vec<u8> = (0..W / 8)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as u8
                })
                .collect();
            let mut data = Bits::<W>::default();
            for (i, b) in bytes.iter().enumerate() {
                for k in 0..8 {
                    data = data.replace_bit(i * 8 + k, (b >> k) & 1 == 1);
                }
            }
            let crc = seed ^ 0x5A5A_0F0F;
            uut.crc_in.next = u64::from(crc).into();
            uut.data.next = data;
            // Settle the combinational network (bounded: one pass per chain stage).
            for _ in 0..40 {
                uut.update_all();
                if !uut.has_changed() {
                    break;
                }
            }
            assert_eq!(uut.crc_out.val().to_u32(), step_serial(crc, &bytes), "W = {W}");
        }
    }

    #[test]
    fn matches_serial_reference_at_8_64_512() {
        check::<8>();
        check::<64>();
        check::<512>();
    }

    #[test]
    fn synthesizes() {
        let mut uut = Crc32cStep::<64>::new();
        uut.connect_all();
        yosys_validate("tandem_crc32c_step", &generate_verilog(&uut)).unwrap();
    }
}
