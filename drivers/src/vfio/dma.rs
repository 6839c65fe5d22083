//! DMA memory: allocated (huge pages when the system has them), mapped through the IOMMU
//! at an I/O virtual address (IOVA) from a simple allocator, and unmapped before it is
//! freed.
//!
//! The engine needs four buffers: the host region it reads payloads from, the mirror
//! window it writes the partner's data to, and the submission and completion rings. Each
//! is a [`DmaBuffer`]; [`DmaBuffer::region`] exposes one as a [`MemRegion`] whose DMA base
//! is its IOVA, so the addresses the host puts in submission entries are the ones the card
//! uses.
//!
//! Anonymous buffers try `MAP_HUGETLB` first (2 MiB pages: fewer IOMMU entries and TLB
//! misses) and fall back to normal pages with a warning when no huge pages are reserved
//! (`/proc/sys/vm/nr_hugepages` is 0). File-backed buffers map a file shared: on
//! hugetlbfs that is huge pages too, and on any file system the contents outlive the
//! process, which is how the mirror window models NVRAM.

use super::sys::{self, RawFd, VfioSys, HUGE_PAGE};
use crate::region::MemRegion;
use std::io;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// Where a DMA buffer's memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmaBacking {
    /// Anonymous memory, huge pages when available; lost when the process exits.
    Anonymous,
    /// A file mapped shared (a hugetlbfs file for huge pages); created and extended as
    /// needed, existing contents kept.
    File(PathBuf),
}

/// First IOVA handed out. Low IOVAs are left alone (some platforms reserve them).
pub const IOVA_BASE: u64 = 1 << 32;

/// A VFIO container with its IOMMU set up, and the IOVA allocator for it. Buffers hold
/// an `Arc` to it, so the container is closed only after every buffer is unmapped.
#[derive(Debug)]
pub struct Iommu {
    sys: Arc<dyn VfioSys>,
    container: RawFd,
    next_iova: Mutex<u64>,
}

impl Iommu {
    /// Takes ownership of an open container whose IOMMU type is set.
    pub fn new(sys: Arc<dyn VfioSys>, container: RawFd) -> Self {
        Iommu { sys, container, next_iova: Mutex::new(IOVA_BASE) }
    }

    /// The container descriptor.
    pub fn container(&self) -> RawFd {
        self.container
    }

    fn take_iova(&self, len: u64) -> io::Result<u64> {
        let mut next = self.next_iova.lock().unwrap_or_else(|p| p.into_inner());
        let iova = *next;
        // One unmapped huge page between buffers: a device access that runs off the end
        // of one buffer faults instead of landing in the next.
        let step = len.div_ceil(HUGE_PAGE as u64).checked_add(1).and_then(|p| p.checked_mul(HUGE_PAGE as u64));
        *next = step.and_then(|s| iova.checked_add(s)).ok_or_else(|| io::Error::other("IOVA space exhausted"))?;
        Ok(iova)
    }

    /// Allocates `len` bytes (zeroed for anonymous memory), maps them for the device and
    /// returns the buffer. `prefer_huge` asks for huge pages for anonymous memory.
    pub fn alloc(self: &Arc<Self>, len: u64, backing: &DmaBacking, prefer_huge: bool, what: &'static str) -> io::Result<Arc<DmaBuffer>> {
        let len_us = usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer too large"))?;
        if len_us == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: zero-length DMA buffer")));
        }
        let page = 4096usize;
        let (ptr, map_len, huge) = match backing {
            DmaBacking::Anonymous => {
                let huge_len = len_us.div_ceil(HUGE_PAGE) * HUGE_PAGE;
                match prefer_huge.then(|| sys::mmap_anon(huge_len, true)) {
                    Some(Ok(p)) => (p, huge_len, true),
                    other => {
                        if let Some(Err(e)) = other {
                            tracing::warn!(
                                "{what}: no huge pages ({e}); using normal pages. Reserve some with \
                                 `echo N > /proc/sys/vm/nr_hugepages` (N x 2 MiB)"
                            );
                        }
                        let l = len_us.div_ceil(page) * page;
                        (sys::mmap_anon(l, false)?, l, false)
                    }
                }
            }
            DmaBacking::File(path) => {
                let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
                if f.metadata()?.len() < len {
                    f.set_len(len)?;
                }
                let l = len_us.div_ceil(page) * page;
                (sys::mmap_file(&f, l)?, l, false)
            }
        };
        let iova = match self.take_iova(map_len as u64) {
            Ok(i) => i,
            Err(e) => {
                // SAFETY: the mapping was just made and nothing refers to it.
                unsafe { sys::munmap(ptr, map_len) };
                return Err(e);
            }
        };
        // SAFETY: `ptr`/`map_len` is a mapping this buffer owns; it is unmapped from the
        // IOMMU in `Drop` before it is unmapped from the process.
        if let Err(e) = unsafe { self.sys.map_dma(self.container, ptr.as_ptr(), iova, map_len as u64) } {
            // SAFETY: as above; the IOMMU mapping failed, so the device cannot reach it.
            unsafe { sys::munmap(ptr, map_len) };
            return Err(io::Error::new(e.kind(), format!("{what}: VFIO_IOMMU_MAP_DMA of {map_len} bytes at IOVA {iova:#x}: {e}")));
        }
        tracing::debug!("{what}: {len} bytes at IOVA {iova:#x}{}", if huge { " (huge pages)" } else { "" });
        Ok(Arc::new(DmaBuffer { iommu: self.clone(), ptr, len: len_us, map_len, iova, huge, backing: backing.clone() }))
    }
}

impl Drop for Iommu {
    fn drop(&mut self) {
        self.sys.close(self.container);
    }
}

/// Memory the device can read and write at [`DmaBuffer::iova`]. Unmapped from the IOMMU,
/// then freed, when the last `Arc` goes.
#[derive(Debug)]
pub struct DmaBuffer {
    iommu: Arc<Iommu>,
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
    iova: u64,
    huge: bool,
    backing: DmaBacking,
}

// SAFETY: the buffer owns its mapping; the pointer is only used to build `MemRegion`s
// (bounds-checked byte copies) and to unmap it in `Drop`.
unsafe impl Send for DmaBuffer {}
// SAFETY: as above; `&DmaBuffer` gives no access to the memory itself.
unsafe impl Sync for DmaBuffer {}

impl DmaBuffer {
    /// The device's address of byte 0.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Usable length in bytes (as requested).
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Length mapped for the device (whole pages).
    pub fn mapped_len(&self) -> u64 {
        self.map_len as u64
    }

    /// True for an empty buffer (never: allocation refuses zero lengths).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the buffer sits on huge pages.
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    /// Where the memory comes from.
    pub fn backing(&self) -> &DmaBacking {
        &self.backing
    }

    /// The buffer as a [`MemRegion`] with DMA base [`DmaBuffer::iova`]; it keeps the
    /// buffer alive.
    ///
    /// # Safety
    /// The memory is visible to the device: the device may read or write any byte of it
    /// at any time, outside Rust's aliasing rules. The caller must only let the device
    /// touch it as the HSI posting protocol says (the host writes a payload or an entry
    /// before it rings the doorbell and reads a window range or a completion only after
    /// the engine reported it written), so that the region's byte copies never race a
    /// device access to the same bytes.
    pub unsafe fn region(self: &Arc<Self>) -> MemRegion {
        // SAFETY: `ptr` is valid for `len` bytes for as long as the `Arc` lives (the
        // keepalive); the device-side races are the caller's contract above.
        unsafe { MemRegion::from_raw(self.ptr.as_ptr(), self.len, self.iova, Box::new(self.clone())) }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        if let Err(e) = self.iommu.sys.unmap_dma(self.iommu.container, self.iova, self.map_len as u64) {
            // The device might still reach the pages: leaking them is the only safe choice.
            tracing::error!("VFIO_IOMMU_UNMAP_DMA at IOVA {:#x} failed ({e}); leaking {} bytes", self.iova, self.map_len);
            return;
        }
        // SAFETY: the device can no longer reach the pages (unmapped above) and every
        // MemRegion over them held an Arc to this buffer, so none is left.
        unsafe { sys::munmap(self.ptr, self.map_len) };
    }
}
