//! CRC32C (Castagnoli) as a linear map, computed once at elaboration.
//!
//! The reflected CRC register update over `W` data bits is linear in the register and the
//! data: `next = C * crc ^ D * data` over GF(2). [`Matrix::new`] derives both matrices by
//! pushing unit vectors through the bit-serial definition, so the RTL never hard-codes a
//! table: the polynomial is the only input.

/// The reflected CRC32C polynomial (0x1EDC6F41 bit-reversed), as in `docs/hsi.md`.
pub const POLY_REFLECTED: u32 = 0x82F6_3B78;
/// Initial register value and final XOR of the frame CRC.
pub const INIT: u32 = 0xFFFF_FFFF;

/// Bit-serial reference update of the raw register: `data` bits LSB first, byte 0 first.
pub fn step_serial(mut crc: u32, data: &[u8]) -> u32 {
    for byte in data {
        for bit in 0..8 {
            let b = u32::from((byte >> bit) & 1);
            let fb = (crc ^ b) & 1;
            crc >>= 1;
            if fb == 1 {
                crc ^= POLY_REFLECTED;
            }
        }
    }
    crc
}

/// Raw register value left after a whole frame and its little-endian CRC trailer have
/// been shifted in from [`INIT`]: the same for every frame, so a receiver checks a frame
/// by comparing one register with this constant instead of locating the trailer.
pub fn residue() -> u32 {
    let body_crc = !step_serial(INIT, &[]);
    step_serial(INIT, &body_crc.to_le_bytes())
}

/// Row masks of the update over `width` data bits: output bit `j` is the parity of
/// `data & data_rows[j]` XOR the parity of `crc & crc_rows[j]`.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Per output bit, which data bits feed it (little-endian bit order, `width` bits).
    pub data_rows: Vec<Vec<bool>>,
    /// Per output bit, which register bits feed it.
    pub crc_rows: Vec<u32>,
}

impl Matrix {
    /// Derives the matrices for `width` data bits (a multiple of 8).
    pub fn new(width: usize) -> Self {
        assert!(width % 8 == 0 && width > 0, "CRC data width {width} must be a positive multiple of 8");
        let zeros = vec![0u8; width / 8];
        let mut data_rows = vec![vec![false; width]; 32];
        let mut crc_rows = vec![0u32; 32];
        for k in 0..32 {
            let col = step_serial(1 << k, &zeros);
            for (j, row) in crc_rows.iter_mut().enumerate() {
                if (col >> j) & 1 == 1 {
                    *row |= 1 << k;
                }
            }
        }
        for i in 0..width {
            let mut d = zeros.clone();
            d[i / 8] = 1 << (i % 8);
            let col = step_serial(0, &d);
            for (j, row) in data_rows.iter_mut().enumerate() {
                row[i] = (col >> j) & 1 == 1;
            }
        }
        Matrix { data_rows, crc_rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_reference_matches_crc32c_crate() {
        let msg = b"123456789";
        assert_eq!(!step_serial(INIT, msg), crc32c::crc32c(msg));
        assert_eq!(!step_serial(INIT, msg), 0xE306_9283);
    }

    #[test]
    fn residue_holds_for_any_frame() {
        let r = residue();
        for len in [0usize, 1, 7, 36, 61, 4128] {
            let body: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
            let mut framed = body.clone();
            framed.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            assert_eq!(step_serial(INIT, &framed), r, "len {len}");
        }
    }

    #[test]
    fn matrix_equals_serial_update() {
        let m = Matrix::new(64);
        let crc = 0x1234_5678u32;
        let data = [0xA5u8, 0x01, 0xFF, 0x00, 0x3C, 0x77, 0x80, 0x12];
        let mut out = 0u32;
        for j in 0..32 {
            let mut p = (crc & m.crc_rows[j]).count_ones() & 1;
            for i in 0..64 {
                if m.data_rows[j][i] && (data[i / 8] >> (i % 8)) & 1 == 1 {
                    p ^= 1;
                }
            }
            out |= p << j;
        }
        assert_eq!(out, step_serial(crc, &data));
    }
}
