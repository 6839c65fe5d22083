//! Constants and bit positions taken from `tandem_hsi`, in the forms the RTL needs.
//!
//! Nothing here is a number of its own: every value is computed from the HSI crate, so
//! the RTL, the drivers and `docs/hsi.md` cannot disagree.

use tandem_hsi::frame::{self, header};
use tandem_hsi::layout::Field;

/// Header length in bytes.
pub const HEADER_BYTES: usize = frame::HEADER_LEN;
/// Header length in bits.
pub const HEADER_BITS: usize = HEADER_BYTES * 8;
/// Trailer length in bytes.
pub const CRC_BYTES: usize = frame::CRC_LEN;
/// Largest payload.
pub const MAX_PAYLOAD: u64 = frame::MAX_PAYLOAD as u64;

/// Bit widths of the header fields (usable as const generics).
pub const MAGIC_BITS: usize = header::MAGIC.width * 8;
/// `VERSION` width.
pub const VERSION_BITS: usize = header::VERSION.width * 8;
/// `FRAME_TYPE` width.
pub const FRAME_TYPE_BITS: usize = header::FRAME_TYPE.width * 8;
/// `KIND` width.
pub const KIND_BITS: usize = header::KIND.width * 8;
/// `FLAGS` width.
pub const FLAGS_BITS: usize = header::FLAGS.width * 8;
/// `SERVICE_TAG` width.
pub const TAG_BITS: usize = header::SERVICE_TAG.width * 8;
/// `LENGTH` width.
pub const LENGTH_BITS: usize = header::LENGTH.width * 8;
/// `SEQUENCE` width.
pub const SEQUENCE_BITS: usize = header::SEQUENCE.width * 8;
/// `WINDOW_OFFSET` width.
pub const OFFSET_BITS: usize = header::WINDOW_OFFSET.width * 8;

/// First bit of a field, as a shift amount.
pub fn lo(f: Field) -> u64 {
    f.bit_lo() as u64
}

const _: () = assert!(HEADER_BITS == 256, "the framer packs the header into 256 bits");
