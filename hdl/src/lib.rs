//! The Tandem mirroring engine in rust-hdl.
#![allow(missing_debug_implementations)] // rust-hdl's LogicBlock types do not derive Debug.

pub mod crc32c_accum;
pub mod crc32c_step;
pub mod crc32c_tail;
pub mod crc_append;
pub mod crc_check;
pub mod crc_matrix;
pub mod deframer;
pub mod framer;
pub mod hsi_consts;
pub mod keep_count;
#[cfg(test)]
pub(crate) mod test_util;
