//! Tandem's hardware/software interface (HSI), written once.
//!
//! Everything that two implementations of the mirroring engine must agree on lives here
//! and only here: the register map ([`regs`]), the ring entries ([`entry`]), the wire
//! frame ([`frame`]), the codes they carry ([`codes`]) and the mirror window layout
//! ([`window`]). The software engine, the rust-hdl engine, the testbenches and
//! `docs/hsi.md` ([`doc::render`]) all derive from these tables.
//!
//! Shared wire test vectors ([`vectors`]) are committed as `hsi/vectors/frames.json`
//! and are read by every implementation's tests.

pub mod codes;
pub mod doc;
pub mod entry;
pub mod frame;
pub mod layout;
pub mod regs;
pub mod vectors;
pub mod window;

/// HSI version: major in bits 31:16, minor in bits 15:0. A driver accepts an engine with
/// the same major version and a minor version at least its own.
pub const HSI_VERSION: u32 = 0x0001_0000;

/// Major part of an HSI version.
pub const fn hsi_major(v: u32) -> u16 {
    (v >> 16) as u16
}

/// Minor part of an HSI version.
pub const fn hsi_minor(v: u32) -> u16 {
    v as u16
}

/// True when a driver built for [`HSI_VERSION`] can drive an engine reporting `engine`.
pub const fn hsi_compatible(engine: u32) -> bool {
    hsi_major(engine) == hsi_major(HSI_VERSION) && hsi_minor(engine) >= hsi_minor(HSI_VERSION)
}

pub use codes::{CompletionStatus, FrameType, LinkState, NackReason, Opcode};
pub use entry::{CompletionEntry, SubmissionEntry};
pub use frame::{FrameError, FrameHeader, FrameKind, HEADER_LEN, MAX_PAYLOAD};
pub use regs::Counter;
