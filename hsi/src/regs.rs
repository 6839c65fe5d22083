//! The register map: a chain of self-describing 32-bit register blocks.
//!
//! Every block starts with `TYPE`, `VERSION` and `NEXT` (the byte offset of the next
//! block, 0 at the end). A driver walks the chain from offset 0, refuses loops and
//! unknown versions, and finds each block by type, so blocks can move or be added
//! without breaking older drivers. Each block occupies [`BLOCK_STRIDE`] bytes.
//! Registers are 32 bits wide (AXI4-Lite data width); 64-bit values are split into
//! `_LO`/`_HI` pairs.

/// Bytes between consecutive blocks.
pub const BLOCK_STRIDE: u32 = 0x100;
/// Largest ring `SIZE_LOG2` (rings hold 2^1 to 2^16 entries); an engine enabled with a
/// ring outside that range sets STATUS.ERROR and does not run.
pub const RING_SIZE_LOG2_MAX: u32 = 16;
/// Offset of the common `TYPE` register in every block.
pub const TYPE: u32 = 0x00;
/// Offset of the common `VERSION` register in every block.
pub const VERSION: u32 = 0x04;
/// Offset of the common `NEXT` register in every block.
pub const NEXT: u32 = 0x08;

/// How software may access a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Ro,
    /// Read/write.
    Rw,
    /// Read, write 1 to clear.
    Rw1c,
}

impl Access {
    /// Short name for tables.
    pub const fn name(self) -> &'static str {
        match self {
            Access::Ro => "RO",
            Access::Rw => "RW",
            Access::Rw1c => "RW1C",
        }
    }
}

/// One named bit of a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bit {
    /// Bit number.
    pub bit: u32,
    /// Name.
    pub name: &'static str,
    /// Meaning.
    pub doc: &'static str,
}

/// One register.
#[derive(Debug, Clone, Copy)]
pub struct Register {
    /// Name.
    pub name: &'static str,
    /// Byte offset within the block.
    pub offset: u32,
    /// Access.
    pub access: Access,
    /// Meaning.
    pub doc: &'static str,
    /// Named bits, if the register is a bit field.
    pub bits: &'static [Bit],
}

/// One register block.
#[derive(Debug, Clone, Copy)]
pub struct RegBlock {
    /// Name.
    pub name: &'static str,
    /// Value of the block's `TYPE` register.
    pub type_id: u32,
    /// Value of the block's `VERSION` register; bumped on any incompatible change.
    pub version: u32,
    /// Byte offset of the block in BAR0.
    pub base: u32,
    /// What the block is for.
    pub doc: &'static str,
    /// Registers after the common header, in offset order.
    pub regs: &'static [Register],
}

impl RegBlock {
    /// Offset of the next block in the chain (0 = last), as the hardware reports it.
    pub fn next(&self) -> u32 {
        let i = BLOCKS.iter().position(|b| b.type_id == self.type_id).expect("block is in BLOCKS");
        BLOCKS.get(i + 1).map_or(0, |b| b.base)
    }

    /// The register with this name.
    pub fn reg(&self, name: &str) -> Option<&'static Register> {
        self.regs.iter().find(|r| r.name == name)
    }
}

macro_rules! reg_block {
    (
        $(#[$meta:meta])*
        pub mod $name:ident ($title:literal, type_id = $ty:expr, version = $ver:expr, base = $base:expr, doc = $bdoc:literal) {
            $( $reg:ident @ $off:expr, $acc:ident $(, bits = $bits:expr)? => $doc:literal; )*
        }
    ) => {
        $(#[$meta])*
        pub mod $name {
            use super::*;
            /// Block type id.
            pub const TYPE_ID: u32 = $ty;
            /// Block version.
            pub const VERSION: u32 = $ver;
            /// Block base offset in BAR0.
            pub const BASE: u32 = $base;
            $(
                #[doc = $doc]
                pub const $reg: u32 = $off;
            )*
            /// The block's table.
            pub const BLOCK: RegBlock = RegBlock {
                name: $title,
                type_id: $ty,
                version: $ver,
                base: $base,
                doc: $bdoc,
                regs: &[$(Register { name: stringify!($reg), offset: $off, access: Access::$acc, doc: $doc, bits: reg_block!(@bits $($bits)?) }),*],
            };
        }
    };
    (@bits) => { &[] };
    (@bits $bits:expr) => { $bits };
}

/// Bits of the control block's `CONTROL` register.
pub const CONTROL_BITS: &[Bit] = &[
    Bit { bit: 0, name: "ENABLE", doc: "1 runs the engine; 0 stops it after the frame in progress" },
    Bit { bit: 1, name: "CLEAR_COUNTERS", doc: "write 1 to zero every counter; reads 0" },
    Bit { bit: 2, name: "ABORT", doc: "write 1 to complete every outstanding entry with status Aborted and reset sequence state; reads 0" },
];
/// Bits of the control block's `STATUS` register.
pub const STATUS_BITS: &[Bit] = &[
    Bit { bit: 0, name: "RUNNING", doc: "the engine is enabled and configured" },
    Bit { bit: 1, name: "LINK_UP", doc: "the link state is Up" },
    Bit { bit: 2, name: "ERROR", doc: "a fatal error stopped the engine (bad ring configuration, DMA error)" },
];
/// Bits of the control block's `IRQ_STATUS` and `IRQ_ENABLE` registers.
pub const IRQ_BITS: &[Bit] = &[
    Bit { bit: 0, name: "COMPLETION", doc: "the engine wrote at least one completion" },
    Bit { bit: 1, name: "LINK_CHANGE", doc: "the link state changed" },
    Bit { bit: 2, name: "ERROR", doc: "STATUS.ERROR was set" },
];

bitflags::bitflags! {
    /// The `CONTROL` register.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Control: u32 {
        /// See [`CONTROL_BITS`].
        const ENABLE = 1 << CONTROL_BITS[0].bit;
        /// See [`CONTROL_BITS`].
        const CLEAR_COUNTERS = 1 << CONTROL_BITS[1].bit;
        /// See [`CONTROL_BITS`].
        const ABORT = 1 << CONTROL_BITS[2].bit;
    }

    /// The `STATUS` register.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Status: u32 {
        /// See [`STATUS_BITS`].
        const RUNNING = 1 << STATUS_BITS[0].bit;
        /// See [`STATUS_BITS`].
        const LINK_UP = 1 << STATUS_BITS[1].bit;
        /// See [`STATUS_BITS`].
        const ERROR = 1 << STATUS_BITS[2].bit;
    }

    /// The `IRQ_STATUS`/`IRQ_ENABLE` registers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Irq: u32 {
        /// See [`IRQ_BITS`].
        const COMPLETION = 1 << IRQ_BITS[0].bit;
        /// See [`IRQ_BITS`].
        const LINK_CHANGE = 1 << IRQ_BITS[1].bit;
        /// See [`IRQ_BITS`].
        const ERROR = 1 << IRQ_BITS[2].bit;
    }
}

reg_block! {
    /// Identification: the first block, at offset 0.
    pub mod id ("ID", type_id = 0x5444_0001, version = 1, base = 0x000, doc = "Identifies the engine and the interface it implements.") {
        HSI_VERSION @ 0x0C, Ro => "HSI version implemented ([`crate::HSI_VERSION`]): major in bits 31:16, minor in bits 15:0";
        BUILD_STAMP_LO @ 0x10, Ro => "build stamp: first 8 hex digits of the source revision, as a 32-bit number";
        BUILD_STAMP_HI @ 0x14, Ro => "build stamp: build date as decimal YYYYMMDD";
        DATAPATH_BITS @ 0x18, Ro => "datapath width in bits (64 or 512)";
        MAX_PAYLOAD @ 0x1C, Ro => "largest data-frame payload in bytes";
        CLOCK_KHZ @ 0x20, Ro => "core clock in kHz, for converting timer registers (0 in software engines)";
    }
}

reg_block! {
    /// Control and status.
    pub mod control ("Control", type_id = 0x5444_0002, version = 1, base = 0x100, doc = "Runs and stops the engine; interrupt status; tuning.") {
        CONTROL @ 0x0C, Rw, bits = CONTROL_BITS => "control bits";
        STATUS @ 0x10, Ro, bits = STATUS_BITS => "status bits";
        IRQ_STATUS @ 0x14, Rw1c, bits = IRQ_BITS => "pending interrupt causes";
        IRQ_ENABLE @ 0x18, Rw, bits = IRQ_BITS => "interrupt causes that raise the event output / MSI-X vector 0";
        MAX_BURST @ 0x1C, Rw => "largest AXI4 burst the DMA master issues, in beats (1 to 256)";
        RETRANSMIT_US @ 0x20, Rw => "retransmission timeout in microseconds";
        MAX_IN_FLIGHT @ 0x24, Rw => "flow-control window: data frames sent and not yet acknowledged, at most";
        HEARTBEAT_US @ 0x28, Rw => "heartbeat interval on an idle link, in microseconds";
    }
}

reg_block! {
    /// Submission ring.
    pub mod sq ("Submission ring", type_id = 0x5444_0003, version = 1, base = 0x200, doc = "The ring of submission entries the host produces and the engine consumes.") {
        BASE_LO @ 0x0C, Rw => "ring DMA address, bits 31:0 (aligned to the entry size)";
        BASE_HI @ 0x10, Rw => "ring DMA address, bits 63:32";
        SIZE_LOG2 @ 0x14, Rw => "ring holds 2^SIZE_LOG2 entries (1 to 16)";
        HEAD @ 0x18, Rw => "producer index, written by the host: the doorbell";
        TAIL @ 0x1C, Ro => "consumer index: entries the engine has fetched";
    }
}

reg_block! {
    /// Completion ring.
    pub mod cq ("Completion ring", type_id = 0x5444_0004, version = 1, base = 0x300, doc = "The ring of completion entries the engine produces and the host consumes.") {
        BASE_LO @ 0x0C, Rw => "ring DMA address, bits 31:0 (aligned to the entry size)";
        BASE_HI @ 0x10, Rw => "ring DMA address, bits 63:32";
        SIZE_LOG2 @ 0x14, Rw => "ring holds 2^SIZE_LOG2 entries (1 to 16)";
        HEAD @ 0x18, Ro => "producer index, written by the engine";
        TAIL @ 0x1C, Rw => "consumer index, written by the host to return entries";
    }
}

reg_block! {
    /// Memory windows.
    pub mod memory ("Memory", type_id = 0x5444_0005, version = 1, base = 0x400, doc = "Where the engine may read payloads (host region) and write the partner's data (mirror window).") {
        HOST_BASE_LO @ 0x0C, Rw => "host region DMA address, bits 31:0: payload reads outside the host region complete with HostBounds";
        HOST_BASE_HI @ 0x10, Rw => "host region DMA address, bits 63:32";
        HOST_SIZE_LO @ 0x14, Rw => "host region size in bytes, bits 31:0";
        HOST_SIZE_HI @ 0x18, Rw => "host region size in bytes, bits 63:32";
        WINDOW_BASE_LO @ 0x1C, Rw => "mirror window DMA address, bits 31:0: where received data frames are written";
        WINDOW_BASE_HI @ 0x20, Rw => "mirror window DMA address, bits 63:32";
        WINDOW_SIZE_LO @ 0x24, Rw => "mirror window size in bytes, bits 31:0: frames outside it are NACKed with Bounds";
        WINDOW_SIZE_HI @ 0x28, Rw => "mirror window size in bytes, bits 63:32";
    }
}

reg_block! {
    /// Link state and sequence numbers.
    pub mod link ("Link", type_id = 0x5444_0006, version = 1, base = 0x500, doc = "State of the mirror link and both directions' sequence numbers.") {
        STATE @ 0x0C, Ro => "link state (see Link state) in bits 7:0";
        NEXT_SEQ_LO @ 0x10, Ro => "transmit: next sequence number to assign, bits 31:0";
        NEXT_SEQ_HI @ 0x14, Ro => "transmit: next sequence number to assign, bits 63:32";
        ACKED_SEQ_LO @ 0x18, Ro => "transmit: highest acknowledged sequence, bits 31:0";
        ACKED_SEQ_HI @ 0x1C, Ro => "transmit: highest acknowledged sequence, bits 63:32";
        RX_EXPECTED_LO @ 0x20, Ro => "receive: next sequence expected from the partner, bits 31:0";
        RX_EXPECTED_HI @ 0x24, Ro => "receive: next sequence expected from the partner, bits 63:32";
        SESSION_LO @ 0x28, Ro => "transmit session id, bits 31:0 (random per reset)";
        SESSION_HI @ 0x2C, Ro => "transmit session id, bits 63:32";
    }
}

macro_rules! counters {
    ($( $variant:ident = $idx:literal => $doc:literal; )*) => {
        /// Engine event counters. Each is a 32-bit wrapping register in the counters block
        /// at [`Counter::offset`]; software engines keep them as 64-bit values.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[repr(u8)]
        pub enum Counter {
            $( #[doc = $doc] $variant = $idx, )*
        }

        impl Counter {
            /// Every counter, in register order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant),*];
            /// Number of counters.
            pub const COUNT: usize = Counter::ALL.len();
            /// Register name.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => stringify!($variant)),* }
            }
            /// Register offset within the counters block.
            pub const fn offset(self) -> u32 {
                0x0C + 4 * self as u32
            }
        }

        reg_block! {
            /// Event counters (register constants named like the [`Counter`] variants).
            #[allow(non_upper_case_globals)]
            pub mod counters ("Counters", type_id = 0x5444_0007, version = 1, base = 0x600, doc = "Event counters, 32-bit, wrapping; cleared by CONTROL.CLEAR_COUNTERS.") {
                $( $variant @ 0x0C + 4 * $idx, Ro => $doc; )*
            }
        }
    };
}

counters! {
    FramesTx = 0 => "frames sent, every type, retransmissions included";
    FramesRx = 1 => "frames received whole and valid, every type";
    DataTx = 2 => "data frames sent for the first time";
    DataRx = 3 => "data frames written into the mirror window (first copy)";
    Retransmits = 4 => "data frames sent again (timeout, NACK or reconnect)";
    AcksRx = 5 => "ACK frames received";
    NacksRx = 6 => "NACK frames received";
    NacksTx = 7 => "NACK frames sent";
    CrcErrors = 8 => "frames whose CRC32C did not match";
    BoundsRejects = 9 => "data frames outside the mirror window, rejected unwritten";
    SequenceErrors = 10 => "data frames that arrived after a gap";
    Duplicates = 11 => "data frames already held (acknowledged again, not rewritten)";
    HeaderErrors = 12 => "frames with a bad magic, version, type, flags or length (the link is reset)";
    LinkResets = 13 => "times the link went down and was re-established";
    HeartbeatsRx = 14 => "heartbeat frames received";
    LocalRejects = 15 => "submission entries completed with an error before sending";
}

/// Every block, in chain order.
pub const BLOCKS: &[RegBlock] = &[id::BLOCK, control::BLOCK, sq::BLOCK, cq::BLOCK, memory::BLOCK, link::BLOCK, counters::BLOCK];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_ordered_non_overlapping_and_chain_to_zero() {
        for (i, b) in BLOCKS.iter().enumerate() {
            assert_eq!(b.base, i as u32 * BLOCK_STRIDE, "{} base", b.name);
            let mut last = NEXT;
            for r in b.regs {
                assert!(r.offset > last && r.offset % 4 == 0 && r.offset < BLOCK_STRIDE, "{}.{} offset {:#x}", b.name, r.name, r.offset);
                last = r.offset;
            }
        }
        assert_eq!(BLOCKS.last().unwrap().next(), 0);
        assert_eq!(id::BLOCK.next(), control::BASE);
        let types: std::collections::HashSet<_> = BLOCKS.iter().map(|b| b.type_id).collect();
        assert_eq!(types.len(), BLOCKS.len());
    }

    #[test]
    fn counters_block_matches_enum() {
        assert_eq!(counters::BLOCK.regs.len(), Counter::COUNT);
        for c in Counter::ALL {
            let r = counters::BLOCK.reg(c.name()).unwrap();
            assert_eq!(r.offset, c.offset());
        }
        assert_eq!(counters::CrcErrors, Counter::CrcErrors.offset());
    }

    #[test]
    fn bitflags_follow_bit_tables() {
        assert_eq!(Control::ABORT.bits(), 1 << 2);
        assert_eq!(Status::LINK_UP.bits(), 2);
        assert_eq!(Irq::all().bits(), 0b111);
    }
}
