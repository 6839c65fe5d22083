//! Memory regions shared by the host runtime and an engine.
//!
//! A [`MemRegion`] is a fixed-size byte region with a DMA base address. The host region
//! holds the node's own log and pages (the engine reads payloads from it); the mirror
//! window receives the partner's copy (the engine writes into it). Both are usually
//! file-backed shared mappings, so their contents survive a restart of the process, as
//! NVRAM would. Every access is bounds-checked and returns [`OutOfBounds`] instead of
//! touching memory outside the region.
//!
//! Like DMA memory, a region is shared: the engine reads ranges that the host wrote
//! before posting an entry, and the host reads ranges the engine wrote before it
//! completed. Accesses to the same bytes from two threads at once are not synchronised
//! by the region; the posting protocol orders them.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

/// An access outside a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("access [{offset:#x}, +{len:#x}) is outside the {size:#x}-byte region")]
pub struct OutOfBounds {
    /// Requested offset.
    pub offset: u64,
    /// Requested length.
    pub len: u64,
    /// Region size.
    pub size: u64,
}

/// What keeps the memory alive; held for its `Drop`, read only to tell the kinds apart.
#[allow(dead_code)]
enum Backing {
    File(memmap2::MmapMut),
    Anon(memmap2::MmapMut),
    External(Box<dyn Send + Sync>),
}

/// A bounds-checked shared byte region. See the module docs.
pub struct MemRegion {
    ptr: *mut u8,
    len: usize,
    dma_base: u64,
    backing: Backing,
}

impl std::fmt::Debug for MemRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backing {
            Backing::File(_) => "file",
            Backing::Anon(_) => "anonymous",
            Backing::External(_) => "external",
        };
        f.debug_struct("MemRegion")
            .field("len", &self.len)
            .field("dma_base", &format_args!("{:#x}", self.dma_base))
            .field("backing", &kind)
            .finish()
    }
}

// SAFETY: the region owns (or keeps alive) its mapping for its whole lifetime, and all
// access goes through bounds-checked byte copies; concurrent access to the same bytes is
// ordered by the posting protocol, as for DMA memory (see the module docs).
unsafe impl Send for MemRegion {}
// SAFETY: as above; `&MemRegion` only permits bounds-checked byte copies.
unsafe impl Sync for MemRegion {}

impl MemRegion {
    /// Maps `path` shared, creating it and extending it to `len` bytes if needed. An
    /// existing file keeps its contents (that is the point: it models NVRAM). The pages are
    /// populated up front (as DMA memory is pinned), so the data path never waits for a
    /// page fault.
    pub fn file_backed(path: &Path, len: u64, dma_base: u64) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let cur = file.metadata()?.len();
        if cur < len {
            file.set_len(len)?;
        }
        // SAFETY: the file is opened read-write and is at least `len` bytes long. Other
        // processes may map it too (that is how a restarted node finds its data); this
        // type never hands out references into the mapping, only byte copies.
        let mut map = unsafe { memmap2::MmapOptions::new().len(len as usize).populate().map_mut(&file)? };
        let ptr = map.as_mut_ptr();
        Ok(MemRegion { ptr, len: len as usize, dma_base, backing: Backing::File(map) })
    }

    /// An anonymous zeroed region (not persistent), for tests and benchmarks.
    pub fn anonymous(len: u64, dma_base: u64) -> io::Result<Self> {
        let mut map = memmap2::MmapOptions::new().len(len as usize).populate().map_anon()?;
        let ptr = map.as_mut_ptr();
        Ok(MemRegion { ptr, len: len as usize, dma_base, backing: Backing::Anon(map) })
    }

    /// Wraps memory owned elsewhere (DMA memory of a device backend).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as `keepalive`
    /// lives, and nothing else may free or unmap it meanwhile.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize, dma_base: u64, keepalive: Box<dyn Send + Sync>) -> Self {
        MemRegion { ptr, len, dma_base, backing: Backing::External(keepalive) }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// True for a zero-length region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// DMA address of byte 0.
    pub fn dma_base(&self) -> u64 {
        self.dma_base
    }

    /// Checks `[offset, offset + len)` and returns it as a `usize` start.
    pub fn check(&self, offset: u64, len: u64) -> Result<usize, OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len as u64 => Ok(offset as usize),
            _ => Err(OutOfBounds { offset, len, size: self.len as u64 }),
        }
    }

    /// Translates a DMA address range into a region offset.
    pub fn dma_to_offset(&self, addr: u64, len: u64) -> Result<u64, OutOfBounds> {
        let off = addr.checked_sub(self.dma_base).ok_or(OutOfBounds { offset: addr, len, size: self.len as u64 })?;
        self.check(off, len)?;
        Ok(off)
    }

    /// Copies `data` into the region at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), OutOfBounds> {
        let start = self.check(offset, data.len() as u64)?;
        // SAFETY: `check` proved `[start, start + data.len())` lies inside the mapping,
        // which lives as long as `self`; `data` cannot overlap it because the region never
        // hands out references into itself.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(start), data.len()) };
        Ok(())
    }

    /// Copies bytes at `offset` into `out`.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), OutOfBounds> {
        let start = self.check(offset, out.len() as u64)?;
        // SAFETY: as in `write`, the source range is inside the live mapping and `out` is
        // a distinct buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(start), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Reads `len` bytes at `offset` into a new vector.
    pub fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>, OutOfBounds> {
        let mut v = vec![0u8; len];
        self.read(offset, &mut v)?;
        Ok(v)
    }

    /// Appends `len` bytes at `offset` to `out` (no zero-fill first).
    pub fn append_to(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), OutOfBounds> {
        let start = self.check(offset, len as u64)?;
        out.reserve(len);
        let old = out.len();
        // SAFETY: the source range is inside the live mapping; the destination is the
        // vector's spare capacity, reserved above, which the copy initialises fully
        // before `set_len` exposes it.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(start), out.as_mut_ptr().add(old), len);
            out.set_len(old + len);
        }
        Ok(())
    }

    /// Fills a range with zeros.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), OutOfBounds> {
        let start = self.check(offset, len)?;
        // SAFETY: the range is inside the live mapping (checked above).
        unsafe { std::ptr::write_bytes(self.ptr.add(start), 0, len as usize) };
        Ok(())
    }

    /// Makes the region durable (msync for file-backed regions; nothing otherwise).
    pub fn flush(&self) -> io::Result<()> {
        match &self.backing {
            Backing::File(m) => m.flush(),
            _ => Ok(()),
        }
    }

    /// True when the region is a file-backed mapping.
    pub fn is_persistent(&self) -> bool {
        matches!(self.backing, Backing::File(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced() {
        let r = MemRegion::anonymous(4096, 0x10_0000).unwrap();
        assert!(r.write(4090, &[1; 6]).is_ok());
        assert_eq!(r.write(4091, &[1; 6]), Err(OutOfBounds { offset: 4091, len: 6, size: 4096 }));
        assert!(r.write(u64::MAX, &[1]).is_err());
        assert!(r.read(u64::MAX - 1, &mut [0; 4]).is_err());
        assert_eq!(r.dma_to_offset(0x10_0010, 16), Ok(0x10));
        assert!(r.dma_to_offset(0x0f_ffff, 1).is_err());
        assert!(r.dma_to_offset(0x10_0000 + 4096, 1).is_err());
        assert_eq!(r.read_vec(4090, 6).unwrap(), vec![1; 6]);
    }

    #[test]
    fn file_backed_contents_survive_remap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.nvram");
        {
            let r = MemRegion::file_backed(&p, 8192, 0).unwrap();
            r.write(100, b"persist me").unwrap();
        }
        let r = MemRegion::file_backed(&p, 8192, 0).unwrap();
        assert_eq!(r.read_vec(100, 10).unwrap(), b"persist me");
        assert!(r.is_persistent());
    }
}
