//! Typed register access over BAR0 and the walk of the self-describing block chain.
//!
//! Offsets, bits and block identities all come from [`tandem_hsi::regs`]; nothing here
//! re-types a number. [`Bar0`] checks every access (in bounds, 4-byte aligned) before it
//! reaches the [`Mmio`] below, which does the volatile load or store. [`Registers::walk`]
//! follows `NEXT` from offset 0, refuses loops, `NEXT` values outside BAR0 or off the
//! block grid and known blocks of versions this driver does not know, skips blocks of
//! unknown types (newer engines may add some), and finds every block the driver needs by
//! `TYPE`.

use super::sys::Mmio;
use std::collections::HashSet;
use tandem_hsi::regs::{self as hr, Control, Irq, RegBlock, Status, BLOCK_STRIDE};
use tandem_hsi::{Counter, LinkState};

/// A register access or register chain that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegError {
    /// The access lies (partly) outside BAR0.
    #[error("register offset {offset:#x} is outside BAR0 ({len:#x} bytes)")]
    OutOfBounds {
        /// Byte offset in BAR0.
        offset: u64,
        /// BAR0 size.
        len: u64,
    },
    /// The access is not 4-byte aligned.
    #[error("register offset {offset:#x} is not 4-byte aligned")]
    Misaligned {
        /// Byte offset in BAR0.
        offset: u64,
    },
    /// `NEXT` leads back to a block already visited.
    #[error("register chain loops: block at {from:#x} points NEXT back to {to:#x}")]
    Loop {
        /// The block whose NEXT loops.
        from: u64,
        /// Where it points.
        to: u64,
    },
    /// `NEXT` points outside BAR0 (or leaves no room for a whole block).
    #[error("block at {from:#x} points NEXT at {next:#x}, outside BAR0 ({len:#x} bytes)")]
    NextOutOfBounds {
        /// The block.
        from: u64,
        /// Its NEXT.
        next: u64,
        /// BAR0 size.
        len: u64,
    },
    /// `NEXT` is not a multiple of the block stride.
    #[error("block at {from:#x} points NEXT at {next:#x}, not on the {stride:#x}-byte block grid")]
    NextMisaligned {
        /// The block.
        from: u64,
        /// Its NEXT.
        next: u64,
        /// Block stride.
        stride: u32,
    },
    /// A known block type with a version this driver does not know.
    #[error("{name} block at {offset:#x} has version {version}; this driver knows version {known}")]
    UnknownVersion {
        /// Block name.
        name: &'static str,
        /// Where.
        offset: u64,
        /// Version found.
        version: u32,
        /// Version known.
        known: u32,
    },
    /// The same known block type appears twice.
    #[error("{name} block appears twice, at {first:#x} and {second:#x}")]
    Duplicate {
        /// Block name.
        name: &'static str,
        /// First offset.
        first: u64,
        /// Second offset.
        second: u64,
    },
    /// A block the driver needs is not in the chain.
    #[error("no {name} block (type {type_id:#010x}) in the register chain")]
    Missing {
        /// Block name.
        name: &'static str,
        /// Its type id.
        type_id: u32,
    },
    /// A register holds a value with no meaning.
    #[error("register {what} holds {value:#x}, which is not a valid encoding")]
    BadValue {
        /// Which register.
        what: &'static str,
        /// The raw value.
        value: u32,
    },
}

/// Bounds- and alignment-checked 32-bit access to BAR0 (offsets are `u64`).
#[derive(Debug)]
pub struct Bar0 {
    mmio: Box<dyn Mmio>,
}

impl Bar0 {
    /// Wraps a mapped BAR.
    pub fn new(mmio: Box<dyn Mmio>) -> Self {
        Bar0 { mmio }
    }

    /// BAR size in bytes.
    pub fn len(&self) -> u64 {
        self.mmio.len()
    }

    /// True for an empty BAR.
    pub fn is_empty(&self) -> bool {
        self.mmio.is_empty()
    }

    fn check(&self, offset: u64) -> Result<(), RegError> {
        if offset % 4 != 0 {
            return Err(RegError::Misaligned { offset });
        }
        match offset.checked_add(4) {
            Some(end) if end <= self.mmio.len() => Ok(()),
            _ => Err(RegError::OutOfBounds { offset, len: self.mmio.len() }),
        }
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32(&self, offset: u64) -> Result<u32, RegError> {
        self.check(offset)?;
        Ok(self.mmio.read32(offset))
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&self, offset: u64, value: u32) -> Result<(), RegError> {
        self.check(offset)?;
        self.mmio.write32(offset, value);
        Ok(())
    }
}

/// The blocks the driver uses, as [`tandem_hsi::regs`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// [`hr::id`].
    Id,
    /// [`hr::control`].
    Control,
    /// [`hr::sq`].
    Sq,
    /// [`hr::cq`].
    Cq,
    /// [`hr::memory`].
    Memory,
    /// [`hr::link`].
    Link,
    /// [`hr::counters`].
    Counters,
}

impl Block {
    /// Every block, in the order of [`Block::table`]'s index.
    pub const ALL: [Block; 7] = [Block::Id, Block::Control, Block::Sq, Block::Cq, Block::Memory, Block::Link, Block::Counters];

    /// The block's table in the HSI.
    pub fn table(self) -> &'static RegBlock {
        match self {
            Block::Id => &hr::id::BLOCK,
            Block::Control => &hr::control::BLOCK,
            Block::Sq => &hr::sq::BLOCK,
            Block::Cq => &hr::cq::BLOCK,
            Block::Memory => &hr::memory::BLOCK,
            Block::Link => &hr::link::BLOCK,
            Block::Counters => &hr::counters::BLOCK,
        }
    }

    fn by_type(type_id: u32) -> Option<Block> {
        Block::ALL.into_iter().find(|b| b.table().type_id == type_id)
    }
}

/// Where each block was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMap([u64; 7]);

impl BlockMap {
    /// Base offset of a block in BAR0.
    pub fn base(&self, b: Block) -> u64 {
        self.0[b as usize]
    }
}

/// Longest chain the walker follows (BAR0 cannot hold more blocks than this anyway for
/// any BAR a card would have; the visited set catches loops first).
const MAX_BLOCKS: usize = 4096;

/// Walks the chain from offset 0. See the module docs.
pub fn walk(bar: &Bar0) -> Result<BlockMap, RegError> {
    let mut found: [Option<u64>; 7] = [None; 7];
    let mut visited = HashSet::new();
    let mut at = 0u64;
    for _ in 0..MAX_BLOCKS {
        visited.insert(at);
        let type_id = bar.read32(at + u64::from(hr::TYPE))?;
        let version = bar.read32(at + u64::from(hr::VERSION))?;
        let next = u64::from(bar.read32(at + u64::from(hr::NEXT))?);
        if let Some(b) = Block::by_type(type_id) {
            let t = b.table();
            if version != t.version {
                return Err(RegError::UnknownVersion { name: t.name, offset: at, version, known: t.version });
            }
            if let Some(first) = found[b as usize] {
                return Err(RegError::Duplicate { name: t.name, first, second: at });
            }
            found[b as usize] = Some(at);
        }
        if next == 0 {
            let mut map = [0u64; 7];
            for b in Block::ALL {
                let t = b.table();
                map[b as usize] = found[b as usize].ok_or(RegError::Missing { name: t.name, type_id: t.type_id })?;
            }
            return Ok(BlockMap(map));
        }
        if next % u64::from(BLOCK_STRIDE) != 0 {
            return Err(RegError::NextMisaligned { from: at, next, stride: BLOCK_STRIDE });
        }
        if next + u64::from(BLOCK_STRIDE) > bar.len() {
            return Err(RegError::NextOutOfBounds { from: at, next, len: bar.len() });
        }
        if visited.contains(&next) {
            return Err(RegError::Loop { from: at, to: next });
        }
        at = next;
    }
    Err(RegError::Loop { from: at, to: at })
}

/// BAR0 with its blocks found: typed access to the registers the driver uses.
#[derive(Debug)]
pub struct Registers {
    bar: Bar0,
    map: BlockMap,
}

impl Registers {
    /// Walks the chain (see [`walk`]).
    pub fn walk(bar: Bar0) -> Result<Self, RegError> {
        let map = walk(&bar)?;
        Ok(Registers { bar, map })
    }

    /// Where the blocks are.
    pub fn map(&self) -> &BlockMap {
        &self.map
    }

    /// The BAR.
    pub fn bar(&self) -> &Bar0 {
        &self.bar
    }

    /// Reads register `reg` (an offset from [`tandem_hsi::regs`]) of `block`.
    pub fn read(&self, block: Block, reg: u32) -> Result<u32, RegError> {
        self.bar.read32(self.map.base(block) + u64::from(reg))
    }

    /// Writes register `reg` of `block`.
    pub fn write(&self, block: Block, reg: u32, value: u32) -> Result<(), RegError> {
        self.bar.write32(self.map.base(block) + u64::from(reg), value)
    }

    /// Writes a 64-bit value into a `_LO` register and the `_HI` register after it.
    pub fn write64(&self, block: Block, lo: u32, value: u64) -> Result<(), RegError> {
        self.write(block, lo, value as u32)?;
        self.write(block, lo + 4, (value >> 32) as u32)
    }

    /// Reads a `_LO`/`_HI` pair.
    pub fn read64(&self, block: Block, lo: u32) -> Result<u64, RegError> {
        let l = self.read(block, lo)?;
        let h = self.read(block, lo + 4)?;
        Ok(u64::from(h) << 32 | u64::from(l))
    }

    /// `ID.HSI_VERSION`.
    pub fn hsi_version(&self) -> Result<u32, RegError> {
        self.read(Block::Id, hr::id::HSI_VERSION)
    }

    /// `CONTROL.STATUS`, rejecting bits the HSI does not define.
    pub fn status(&self) -> Result<Status, RegError> {
        let v = self.read(Block::Control, hr::control::STATUS)?;
        Status::from_bits(v).ok_or(RegError::BadValue { what: "STATUS", value: v })
    }

    /// Writes `CONTROL.CONTROL`.
    pub fn set_control(&self, c: Control) -> Result<(), RegError> {
        self.write(Block::Control, hr::control::CONTROL, c.bits())
    }

    /// `CONTROL.IRQ_STATUS`, rejecting undefined bits.
    pub fn irq_status(&self) -> Result<Irq, RegError> {
        let v = self.read(Block::Control, hr::control::IRQ_STATUS)?;
        Irq::from_bits(v).ok_or(RegError::BadValue { what: "IRQ_STATUS", value: v })
    }

    /// Clears interrupt causes (write 1 to clear).
    pub fn ack_irq(&self, causes: Irq) -> Result<(), RegError> {
        self.write(Block::Control, hr::control::IRQ_STATUS, causes.bits())
    }

    /// `LINK.STATE` (low byte) through `LinkState`'s `TryFrom`.
    pub fn link_state(&self) -> Result<LinkState, RegError> {
        let v = self.read(Block::Link, hr::link::STATE)?;
        LinkState::try_from((v & 0xff) as u8).map_err(|_| RegError::BadValue { what: "LINK.STATE", value: v })
    }

    /// One 32-bit counter register.
    pub fn counter(&self, c: Counter) -> Result<u32, RegError> {
        self.read(Block::Counters, c.offset())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A BAR that is plain memory, for walker tests.
    #[derive(Debug)]
    pub(crate) struct MemBar(Mutex<Vec<u32>>);

    impl MemBar {
        /// The HSI chain, built from the tables.
        pub(crate) fn chain(len: usize) -> Self {
            let mut v = vec![0u32; len / 4];
            for b in hr::BLOCKS {
                let base = b.base as usize / 4;
                v[base] = b.type_id;
                v[base + 1] = b.version;
                v[base + 2] = b.next();
            }
            v[hr::id::HSI_VERSION as usize / 4] = tandem_hsi::HSI_VERSION;
            MemBar(Mutex::new(v))
        }
        fn poke(&self, off: u32, val: u32) {
            self.0.lock().unwrap()[off as usize / 4] = val;
        }
    }

    impl Mmio for MemBar {
        fn len(&self) -> u64 {
            self.0.lock().unwrap().len() as u64 * 4
        }
        fn read32(&self, offset: u64) -> u32 {
            self.0.lock().unwrap()[offset as usize / 4]
        }
        fn write32(&self, offset: u64, value: u32) {
            self.0.lock().unwrap()[offset as usize / 4] = value;
        }
    }

    fn bar_with(f: impl FnOnce(&MemBar)) -> Bar0 {
        let m = MemBar::chain(0x1000);
        f(&m);
        Bar0::new(Box::new(m))
    }

    #[test]
    fn walks_the_hsi_chain_and_finds_every_block() {
        let map = walk(&bar_with(|_| ())).unwrap();
        for b in Block::ALL {
            assert_eq!(map.base(b), u64::from(b.table().base), "{}", b.table().name);
        }
    }

    #[test]
    fn finds_blocks_by_type_wherever_they_are_and_skips_unknown_types() {
        // Move the counters block to 0x900 and put an unknown block at 0x700 before it.
        let bar = bar_with(|m| {
            let last = hr::counters::BASE;
            m.poke(hr::link::BASE + hr::NEXT, 0x700);
            m.poke(0x700, 0x5444_00FF);
            m.poke(0x704, 9);
            m.poke(0x708, 0x900);
            m.poke(0x900, hr::counters::TYPE_ID);
            m.poke(0x904, hr::counters::VERSION);
            m.poke(0x908, 0);
            m.poke(last, 0);
        });
        let map = walk(&bar).unwrap();
        assert_eq!(map.base(Block::Counters), 0x900);
        assert_eq!(map.base(Block::Link), u64::from(hr::link::BASE));
    }

    #[test]
    fn refuses_a_loop() {
        let bar = bar_with(|m| m.poke(hr::link::BASE + hr::NEXT, hr::control::BASE));
        assert_eq!(walk(&bar), Err(RegError::Loop { from: u64::from(hr::link::BASE), to: u64::from(hr::control::BASE) }));
        // A block pointing at itself.
        let bar = bar_with(|m| m.poke(hr::sq::BASE + hr::NEXT, hr::sq::BASE));
        assert!(matches!(walk(&bar), Err(RegError::Loop { .. })));
    }

    #[test]
    fn refuses_an_unknown_version_of_a_known_block() {
        let bar = bar_with(|m| m.poke(hr::cq::BASE + hr::VERSION, hr::cq::VERSION + 1));
        assert_eq!(
            walk(&bar),
            Err(RegError::UnknownVersion { name: "Completion ring", offset: u64::from(hr::cq::BASE), version: 2, known: 1 })
        );
    }

    #[test]
    fn refuses_next_outside_bar0_or_off_the_grid() {
        let bar = bar_with(|m| m.poke(hr::id::BASE + hr::NEXT, 0x1000));
        assert_eq!(walk(&bar), Err(RegError::NextOutOfBounds { from: 0, next: 0x1000, len: 0x1000 }));
        let bar = bar_with(|m| m.poke(hr::id::BASE + hr::NEXT, 0xFFFF_FF00));
        assert!(matches!(walk(&bar), Err(RegError::NextOutOfBounds { .. })));
        let bar = bar_with(|m| m.poke(hr::id::BASE + hr::NEXT, 0x104));
        assert_eq!(walk(&bar), Err(RegError::NextMisaligned { from: 0, next: 0x104, stride: BLOCK_STRIDE }));
    }

    #[test]
    fn reports_a_missing_or_duplicate_block() {
        let bar = bar_with(|m| m.poke(hr::link::BASE + hr::NEXT, 0));
        assert_eq!(walk(&bar), Err(RegError::Missing { name: "Counters", type_id: hr::counters::TYPE_ID }));
        let bar = bar_with(|m| m.poke(hr::memory::BASE + hr::TYPE, hr::sq::TYPE_ID));
        assert!(matches!(walk(&bar), Err(RegError::Duplicate { name: "Submission ring", .. })));
    }

    #[test]
    fn accesses_are_bounds_and_alignment_checked() {
        let bar = bar_with(|_| ());
        assert_eq!(bar.read32(0x1000), Err(RegError::OutOfBounds { offset: 0x1000, len: 0x1000 }));
        assert_eq!(bar.read32(u64::MAX - 3), Err(RegError::OutOfBounds { offset: u64::MAX - 3, len: 0x1000 }));
        assert_eq!(bar.write32(0x102, 1), Err(RegError::Misaligned { offset: 0x102 }));
        assert_eq!(bar.read32(0xFFC), Ok(0));
    }

    #[test]
    fn raw_values_enter_through_checked_conversions() {
        let r = Registers::walk(bar_with(|m| {
            m.poke(hr::link::BASE + hr::link::STATE, 7);
            m.poke(hr::control::BASE + hr::control::STATUS, 0x8);
        }))
        .unwrap();
        assert_eq!(r.link_state(), Err(RegError::BadValue { what: "LINK.STATE", value: 7 }));
        assert_eq!(r.status(), Err(RegError::BadValue { what: "STATUS", value: 8 }));
        r.bar().write32(u64::from(hr::link::BASE + hr::link::STATE), 2).unwrap();
        assert_eq!(r.link_state(), Ok(LinkState::Up));
        r.write64(Block::Memory, hr::memory::HOST_BASE_LO, 0x1234_5678_9abc_def0).unwrap();
        assert_eq!(r.read(Block::Memory, hr::memory::HOST_BASE_HI), Ok(0x1234_5678));
        assert_eq!(r.read64(Block::Memory, hr::memory::HOST_BASE_LO), Ok(0x1234_5678_9abc_def0));
    }
}
