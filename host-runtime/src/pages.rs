//! Tagged page pool: memory pages allocated by file-service ID and mirrored with their tag.
//!
//! Each page slot has an entry in the window's page table (owner service, the page's
//! index within the service, a generation) and its data in the page area. Allocating,
//! writing and freeing a page change the node's own region and are mirrored to the same
//! offsets of the partner's window before the call returns, so the partner can list a
//! failed node's pages by service ID ([`pages_in_region`]) and a service's pages can be
//! moved by that ID.

use crate::log::page_table;
use crate::mirror::{Mirror, MirrorError, Span};
use std::sync::{Arc, Mutex, MutexGuard};
use tandem_drivers::MemRegion;
use tandem_hsi::window::{self, Geometry, PageEntry};
use tandem_hsi::Opcode;

/// A page slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PageId(pub u32);

/// Page pool errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// No free slot.
    #[error("page pool full: all {0} pages are allocated")]
    Full(u32),
    /// The slot is not allocated.
    #[error("page {0:?} is not allocated")]
    NotAllocated(PageId),
    /// The service already has a page with this index.
    #[error("service {service} already has page index {index} (slot {slot:?})")]
    Exists {
        /// Service.
        service: u32,
        /// Index.
        index: u64,
        /// Existing slot.
        slot: PageId,
    },
    /// Access beyond the page.
    #[error("access [{offset}, +{len}) is beyond the {page_size}-byte page")]
    OutOfPage {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Page size.
        page_size: u32,
    },
    /// Mirroring failed: the change is not acknowledged.
    #[error("page change not acknowledged: {0}")]
    Mirror(#[from] MirrorError),
}

#[derive(Debug)]
struct PoolState {
    slots: Vec<Option<PageEntry>>,
    next_generation: u64,
}

/// See the module docs.
pub struct PagePool {
    mirror: Arc<Mirror>,
    geo: Geometry,
    st: Mutex<PoolState>,
}

impl std::fmt::Debug for PagePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagePool").field("page_count", &self.geo.page_count).field("free", &self.free_count()).finish()
    }
}

/// Allocated pages of `service` in a region (a node's own region or a mirror window).
pub fn pages_in_region(region: &MemRegion, geo: &Geometry, service: u32) -> Vec<(PageId, PageEntry)> {
    page_table(region, geo).into_iter().filter(|(_, e)| e.service_tag == service).map(|(s, e)| (PageId(s), e)).collect()
}

impl PagePool {
    /// Opens the pool over the page table already in the node's region.
    pub fn open(mirror: Arc<Mirror>, geo: Geometry) -> Self {
        let mut slots = vec![None; geo.page_count as usize];
        let mut next_generation = 1;
        for (slot, e) in page_table(mirror.engine().host_region(), &geo) {
            next_generation = next_generation.max(e.generation + 1);
            slots[slot as usize] = Some(e);
        }
        PagePool { mirror, geo, st: Mutex::new(PoolState { slots, next_generation }) }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn region(&self) -> &MemRegion {
        self.mirror.engine().host_region()
    }

    /// Page size.
    pub fn page_size(&self) -> u32 {
        self.geo.page_size
    }

    /// Free slots.
    pub fn free_count(&self) -> u32 {
        self.lock().slots.iter().filter(|s| s.is_none()).count() as u32
    }

    fn entry_span(&self, slot: u32, service: u32) -> Span {
        Span { opcode: Opcode::Page, service_tag: service, offset: self.geo.page_entry_offset(slot), len: window::page_entry::SIZE as u64 }
    }

    /// Allocates a zeroed page for `service` with index `index`, mirrored.
    pub fn alloc(&self, service: u32, index: u64) -> Result<PageId, PageError> {
        let mut st = self.lock();
        if let Some(slot) = st.slots.iter().position(|s| s.is_some_and(|e| e.service_tag == service && e.page_index == index)) {
            return Err(PageError::Exists { service, index, slot: PageId(slot as u32) });
        }
        let slot = st.slots.iter().position(|s| s.is_none()).ok_or(PageError::Full(self.geo.page_count))? as u32;
        let entry = PageEntry { service_tag: service, page_index: index, generation: st.next_generation };
        let r = self.region();
        r.zero(self.geo.page_data_offset(slot), self.geo.page_size.into()).expect("page area lies inside the window");
        r.write(self.geo.page_entry_offset(slot), &entry.encode()).expect("page table lies inside the window");
        let data =
            Span { opcode: Opcode::Page, service_tag: service, offset: self.geo.page_data_offset(slot), len: self.geo.page_size.into() };
        self.mirror.mirror(&[data, self.entry_span(slot, service)])?;
        st.slots[slot as usize] = Some(entry);
        st.next_generation += 1;
        Ok(PageId(slot))
    }

    fn owner(&self, st: &PoolState, id: PageId) -> Result<PageEntry, PageError> {
        st.slots.get(id.0 as usize).copied().flatten().ok_or(PageError::NotAllocated(id))
    }

    fn check(&self, offset: u64, len: u64) -> Result<u64, PageError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.geo.page_size as u64 => Ok(offset),
            _ => Err(PageError::OutOfPage { offset, len, page_size: self.geo.page_size }),
        }
    }

    /// Writes into a page and mirrors the change.
    pub fn write(&self, id: PageId, offset: u64, data: &[u8]) -> Result<(), PageError> {
        let st = self.lock();
        let e = self.owner(&st, id)?;
        self.check(offset, data.len() as u64)?;
        let at = self.geo.page_data_offset(id.0) + offset;
        self.region().write(at, data).expect("page area lies inside the window");
        self.mirror.mirror(&[Span { opcode: Opcode::Page, service_tag: e.service_tag, offset: at, len: data.len() as u64 }])?;
        Ok(())
    }

    /// Reads from a page of this node.
    pub fn read(&self, id: PageId, offset: u64, out: &mut [u8]) -> Result<(), PageError> {
        let st = self.lock();
        self.owner(&st, id)?;
        self.check(offset, out.len() as u64)?;
        self.region().read(self.geo.page_data_offset(id.0) + offset, out).expect("page area lies inside the window");
        Ok(())
    }

    /// Frees a page, mirrored.
    pub fn free(&self, id: PageId) -> Result<(), PageError> {
        let mut st = self.lock();
        let e = self.owner(&st, id)?;
        self.region().write(self.geo.page_entry_offset(id.0), &PageEntry::FREE).expect("page table lies inside the window");
        self.mirror.mirror(&[self.entry_span(id.0, e.service_tag)])?;
        st.slots[id.0 as usize] = None;
        Ok(())
    }

    /// This node's pages of `service`: `(slot, index within the service)`, by index.
    pub fn pages_of(&self, service: u32) -> Vec<(PageId, u64)> {
        let st = self.lock();
        let mut v: Vec<_> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.filter(|e| e.service_tag == service).map(|e| (PageId(i as u32), e.page_index)))
            .collect();
        v.sort_by_key(|(_, idx)| *idx);
        v
    }
}
