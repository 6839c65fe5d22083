//! The mirrored block device behind a service's NBD export.
//!
//! A write becomes one or more log records ([`MirroredLog::submit`]) and returns only when
//! the partner's window holds them, so an NBD client is answered after the write is
//! mirrored and before it reaches the disk. Until a consistency point writes a block back
//! to the service's backing image, reads find it in a block cache that holds the
//! acknowledged (and in-flight) contents; after the consistency point the cache drops it
//! ([`MirroredDevice::evict`]) and reads go to the image.

use crate::log::{Change, LogError, MirroredLog};
use crate::store::StoreReader;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tandem_nbd::{BlockDevice, DeviceError};

/// Cache granularity.
pub const BLOCK: u64 = 4096;
/// Largest record one write is split into.
const MAX_CHUNK: u64 = 1 << 20;

#[derive(Debug)]
struct Cached {
    /// `None`: all zeros (trimmed).
    data: Option<Box<[u8]>>,
    /// LSN of the newest write touching the block.
    lsn: u64,
}

/// See the module docs.
pub struct MirroredDevice {
    log: Arc<MirroredLog>,
    tag: u32,
    image: StoreReader,
    cache: RwLock<HashMap<u64, Cached>>,
    order: Mutex<()>,
    fenced: AtomicBool,
}

impl std::fmt::Debug for MirroredDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroredDevice").field("tag", &self.tag).field("size", &self.image.size()).finish()
    }
}

fn log_err(e: LogError) -> DeviceError {
    match e {
        LogError::Full { .. } => DeviceError::Io(format!("not acknowledged: {e}")),
        other => DeviceError::Io(format!("not acknowledged: {other}")),
    }
}

impl MirroredDevice {
    /// A device for service `tag` over `log`, reading unwritten-back blocks from `image`.
    pub fn new(log: Arc<MirroredLog>, tag: u32, image: StoreReader) -> Self {
        MirroredDevice { log, tag, image, cache: RwLock::new(HashMap::new()), order: Mutex::new(()), fenced: AtomicBool::new(false) }
    }

    /// Refuses every later request with `ESHUTDOWN` (the service is moving away).
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// Drops cached blocks that the backing image has now (their newest write's LSN is at
    /// or below the consistency point).
    pub fn evict(&self, cp_lsn: u64) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).retain(|_, c| c.lsn > cp_lsn);
    }

    /// Cached blocks.
    pub fn cached_blocks(&self) -> usize {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn check(&self, offset: u64, len: u64, beyond: DeviceError) -> Result<(), DeviceError> {
        if self.fenced.load(Ordering::SeqCst) {
            return Err(DeviceError::Shutdown);
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.image.size() => Ok(()),
            _ => Err(beyond),
        }
    }

    fn load(&self, block: u64) -> Result<Box<[u8]>, DeviceError> {
        let mut b = vec![0u8; BLOCK as usize].into_boxed_slice();
        let len = BLOCK.min(self.image.size() - block * BLOCK) as usize;
        self.image.read_at(block * BLOCK, &mut b[..len]).map_err(|e| DeviceError::Io(e.to_string()))?;
        Ok(b)
    }

    /// Applies `data` (or zeros) at `offset` to the cache, tagging blocks with `lsn`.
    fn overlay(&self, offset: u64, len: u64, data: Option<&[u8]>, lsn: u64) -> Result<(), DeviceError> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let mut pos = offset;
        while pos < offset + len {
            let block = pos / BLOCK;
            let in_block = pos % BLOCK;
            let n = (BLOCK - in_block).min(offset + len - pos);
            let whole = in_block == 0 && n == BLOCK;
            match data {
                None if whole => {
                    cache.insert(block, Cached { data: None, lsn });
                }
                Some(d) if whole => {
                    // A whole block: no need to read what it replaces.
                    let from = (pos - offset) as usize;
                    let bytes = d[from..from + BLOCK as usize].to_vec().into_boxed_slice();
                    let prev = cache.get(&block).map_or(0, |c| c.lsn);
                    cache.insert(block, Cached { data: Some(bytes), lsn: lsn.max(prev) });
                }
                _ => {
                    let c = match cache.entry(block) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => v.insert(Cached { data: Some(self.load(block)?), lsn }),
                    };
                    let buf = c.data.get_or_insert_with(|| vec![0u8; BLOCK as usize].into_boxed_slice());
                    let dst = &mut buf[in_block as usize..(in_block + n) as usize];
                    match data {
                        Some(d) => dst.copy_from_slice(&d[(pos - offset) as usize..(pos - offset + n) as usize]),
                        None => dst.fill(0),
                    }
                    c.lsn = c.lsn.max(lsn);
                }
            }
            pos += n;
        }
        Ok(())
    }

    fn change(&self, offset: u64, len: u64, data: Option<&[u8]>) -> Result<(), DeviceError> {
        let chunk = MAX_CHUNK.min(self.log.max_record_payload() / BLOCK * BLOCK).max(BLOCK);
        let mut pending = Vec::new();
        let mut pos = offset;
        while pos < offset + len {
            let n = chunk.min(offset + len - pos);
            let piece = data.map(|d| &d[(pos - offset) as usize..(pos - offset + n) as usize]);
            // Submission order is log order; the cache is updated in the same order.
            let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
            let a = match piece {
                Some(p) => self.log.submit(self.tag, Change::Write { offset: pos }, p),
                None => self.log.submit(self.tag, Change::Trim { offset: pos, len: n }, &[]),
            }
            .map_err(log_err)?;
            self.overlay(pos, n, piece, a.lsn)?;
            drop(_order);
            pending.push(a);
            pos += n;
        }
        for a in pending {
            self.log.wait(a).map_err(log_err)?;
        }
        Ok(())
    }
}

impl BlockDevice for MirroredDevice {
    fn size(&self) -> u64 {
        self.image.size()
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.check(offset, buf.len() as u64, DeviceError::Invalid("read beyond the end".into()))?;
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let block = pos / BLOCK;
            let in_block = pos % BLOCK;
            let n = (BLOCK - in_block).min(end - pos);
            let dst = &mut buf[(pos - offset) as usize..(pos - offset + n) as usize];
            match cache.get(&block) {
                Some(Cached { data: Some(d), .. }) => dst.copy_from_slice(&d[in_block as usize..(in_block + n) as usize]),
                Some(Cached { data: None, .. }) => dst.fill(0),
                None => self.image.read_at(pos, dst).map_err(|e| DeviceError::Io(e.to_string()))?,
            }
            pos += n;
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.check(offset, data.len() as u64, DeviceError::NoSpace)?;
        self.change(offset, data.len() as u64, Some(data))
    }

    fn flush(&self) -> Result<(), DeviceError> {
        // Every acknowledged write is already in both nodes' NVRAM-like regions.
        if self.fenced.load(Ordering::SeqCst) {
            return Err(DeviceError::Shutdown);
        }
        Ok(())
    }

    fn trim(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        self.check(offset, len, DeviceError::Invalid("trim beyond the end".into()))?;
        self.change(offset, len, None)
    }
}
