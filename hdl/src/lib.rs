//! The Tandem mirroring engine in rust-hdl.
#![allow(missing_debug_implementations)] // rust-hdl's LogicBlock types do not derive Debug.

pub mod axi_dma;
pub mod axil_regs;
pub mod crc32c_accum;
pub mod crc32c_step;
pub mod crc32c_tail;
pub mod crc32c_tail_wide;
pub mod crc_append;
pub mod crc_check;
pub mod crc_matrix;
pub mod deframer;
pub mod engine_top;
pub mod framer;
pub mod hsi_consts;
pub mod keep_count;
pub mod link_top;
pub mod rx_engine;
#[cfg(test)]
pub(crate) mod test_util;
pub mod tx_engine;

use rust_hdl::prelude::{generate_verilog, Block};

/// Datapath widths the generator emits.
pub const WIDTHS: [usize; 2] = [64, 512];

/// Verilog of the link datapath ([`link_top::LinkTop`], module `top`) at `width` bits.
///
/// # Panics
/// On a width other than 64 or 512, naming the width.
pub fn link_verilog(width: usize) -> String {
    match width {
        64 => {
            let mut uut = link_top::LinkTop::<64, 8>::new();
            uut.connect_all();
            generate_verilog(&uut)
        }
        512 => {
            let mut uut = link_top::LinkTop::<512, 64>::new();
            uut.connect_all();
            generate_verilog(&uut)
        }
        other => panic!("link_verilog: datapath width {other} is not generated (64 or 512)"),
    }
}

/// Verilog of the register file ([`axil_regs::AxilRegs`], module `top`) with the ID block
/// reporting `build`.
///
/// # Panics
/// On impossible build parameters (see [`axil_regs::AxilRegs::new`]).
pub fn regs_verilog(build: axil_regs::BuildId) -> String {
    let mut uut = axil_regs::AxilRegs::new(build);
    uut.connect_all();
    generate_verilog(&uut)
}

/// Verilog of the whole engine ([`engine_top::EngineTop`], module `top`) at
/// `build.datapath_bits` (64 or 512).
///
/// # Panics
/// On another width or impossible build parameters (see [`engine_top::EngineTop::new`]).
pub fn engine_verilog(build: axil_regs::BuildId) -> String {
    match build.datapath_bits {
        64 => {
            let mut uut = engine_top::EngineTop::<64, 8, 13>::new(build);
            uut.connect_all();
            generate_verilog(&uut)
        }
        512 => {
            let mut uut = engine_top::EngineTop::<512, 64, 10>::new(build);
            uut.connect_all();
            generate_verilog(&uut)
        }
        other => panic!("engine_verilog: datapath width {other} is not generated (64 or 512)"),
    }
}
