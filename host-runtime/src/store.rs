//! The backing store: the disk image consistency points write changes back to.
//!
//! A store is a file: a 4 KiB superblock, then the data area that services address from
//! offset 0. The superblock has two slots (alternating by generation, each with a CRC) that
//! record "log `LOG_ID` is applied up to LSN N". Consistency points and replay write the
//! data, sync it, then record the new LSN and sync again; replay starts after the larger
//! of the mirror window's marker and this record, so an entry whose application was
//! recorded is never applied again.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tandem_hsi::window::{RecordHeader, RecordOp};

/// Bytes before the data area.
pub const SUPERBLOCK_SIZE: u64 = 4096;
const SLOT_SIZE: usize = 16 + MAX_LOGS * 12 + 8;
const MAGIC: u32 = u32::from_le_bytes(*b"TBSB");

/// Store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// I/O on the image failed.
    #[error("backing store {path}: {op}: {source}")]
    Io {
        /// Image path.
        path: PathBuf,
        /// Operation.
        op: &'static str,
        /// Error.
        #[source]
        source: io::Error,
    },
    /// Access beyond the data area.
    #[error("backing store access [{offset:#x}, +{len:#x}) is beyond its {size:#x}-byte data area")]
    OutOfRange {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Data size.
        size: u64,
    },
}

/// Something a change can be applied to. [`BackingStore`] is the file implementation;
/// tests wrap it to inject failures.
pub trait Store: Send {
    /// Writes data at an offset of the data area.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError>;
    /// Zeroes a range of the data area.
    fn trim(&mut self, offset: u64, len: u64) -> Result<(), StoreError>;
    /// Makes written data durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// The LSN up to which log `log_id` is applied (0 if none recorded for that log).
    fn applied_lsn(&self, log_id: u32) -> u64;
    /// Records that log `log_id` is applied up to `lsn`, durably.
    fn set_applied(&mut self, log_id: u32, lsn: u64) -> Result<(), StoreError>;
    /// Applies one log record (the only way records reach a store).
    fn apply(&mut self, record: &RecordHeader, payload: &[u8]) -> Result<(), StoreError> {
        match record.op {
            RecordOp::Write => self.write_at(record.target_offset, payload),
            RecordOp::Trim => self.trim(record.target_offset, record.target_len),
            RecordOp::Wrap => Ok(()),
        }
    }
    /// Takes exclusive use of the store across processes (the images are shared storage)
    /// for a batch of applications, and re-reads its recorded state. Default: nothing.
    fn lock(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Ends [`Store::lock`].
    fn unlock(&mut self) {}
    /// Makes `log_id` the only log whose records the store accepts (the log of the node
    /// that serves it from now on). Default: not supported, nothing recorded.
    fn set_owner(&mut self, _log_id: u32) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Runs `f` with the store locked ([`Store::lock`]), unlocking on every path.
pub fn locked<T, E: From<StoreError>>(store: &mut dyn Store, f: impl FnOnce(&mut dyn Store) -> Result<T, E>) -> Result<T, E> {
    store.lock()?;
    let r = f(store);
    store.unlock();
    r
}

/// Logs remembered per superblock slot (an image can receive records from the log of
/// each node that served it over time; the oldest entry is dropped when full).
const MAX_LOGS: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Applied {
    generation: u64,
    /// The log of the node that owns (serves) the image now; 0: none recorded. Records of
    /// any other log are not applied.
    owner: u32,
    /// `(log id, applied LSN)`, oldest first.
    logs: Vec<(u32, u64)>,
}

impl Applied {
    fn lsn(&self, log_id: u32) -> u64 {
        self.logs.iter().find(|(id, _)| *id == log_id).map_or(0, |(_, l)| *l)
    }

    fn with(&self, log_id: u32, lsn: u64) -> Applied {
        let mut logs: Vec<_> = self.logs.iter().copied().filter(|(id, _)| *id != log_id).collect();
        if logs.len() == MAX_LOGS {
            logs.remove(0);
        }
        logs.push((log_id, lsn));
        Applied { generation: self.generation + 1, owner: self.owner, logs }
    }

    // Slot: magic u32, count u32, generation u64, then MAX_LOGS x (log id u32, LSN u64),
    // owner log id u32, then CRC32C of everything before it.
    fn encode(&self) -> [u8; SLOT_SIZE] {
        let mut b = [0u8; SLOT_SIZE];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&(self.logs.len() as u32).to_le_bytes());
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        for (i, (id, lsn)) in self.logs.iter().enumerate() {
            let o = 16 + i * 12;
            b[o..o + 4].copy_from_slice(&id.to_le_bytes());
            b[o + 4..o + 12].copy_from_slice(&lsn.to_le_bytes());
        }
        b[SLOT_SIZE - 8..SLOT_SIZE - 4].copy_from_slice(&self.owner.to_le_bytes());
        let crc = crc32c::crc32c(&b[..SLOT_SIZE - 4]);
        b[SLOT_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < SLOT_SIZE {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let count = u32_at(4) as usize;
        if u32_at(0) != MAGIC || count > MAX_LOGS || u32_at(SLOT_SIZE - 4) != crc32c::crc32c(&b[..SLOT_SIZE - 4]) {
            return None;
        }
        let logs = (0..count).map(|i| (u32_at(16 + i * 12), u64_at(20 + i * 12))).collect();
        Some(Applied { generation: u64_at(8), owner: u32_at(SLOT_SIZE - 8), logs })
    }
}

/// A file-backed store. See the module docs.
#[derive(Debug)]
pub struct BackingStore {
    file: File,
    path: PathBuf,
    size: u64,
    applied: Applied,
}

impl BackingStore {
    /// Opens (creating if needed) an image with a data area of `size` bytes.
    pub fn open(path: &Path, size: u64) -> Result<Self, StoreError> {
        let io = |op| move |source| StoreError::Io { path: path.to_path_buf(), op, source };
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io("open"))?;
        let want = SUPERBLOCK_SIZE + size;
        if file.metadata().map_err(io("stat"))?.len() < want {
            file.set_len(want).map_err(io("extend"))?;
        }
        let mut s = BackingStore { file, path: path.to_path_buf(), size, applied: Applied::default() };
        s.reload()?;
        Ok(s)
    }

    /// Re-reads the superblock (another process may have changed it).
    fn reload(&mut self) -> Result<(), StoreError> {
        let mut sb = [0u8; 2 * SLOT_SIZE];
        self.file.read_exact_at(&mut sb, 0).map_err(self.io_err("read superblock"))?;
        let slots = [Applied::decode(&sb[..SLOT_SIZE]), Applied::decode(&sb[SLOT_SIZE..])];
        self.applied = slots.into_iter().flatten().max_by_key(|a| a.generation).unwrap_or_default();
        Ok(())
    }

    fn write_superblock(&mut self, next: Applied) -> Result<(), StoreError> {
        let slot = (next.generation % 2) * SLOT_SIZE as u64;
        self.file.write_all_at(&next.encode(), slot).map_err(self.io_err("write superblock"))?;
        self.file.sync_data().map_err(self.io_err("sync superblock"))?;
        self.applied = next;
        Ok(())
    }

    /// The log whose records the image accepts (0: any).
    pub fn owner(&self) -> u32 {
        self.applied.owner
    }

    /// Size of the data area.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Path of the image.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(StoreError::OutOfRange { offset, len, size: self.size }),
        }
    }

    fn io_err(&self, op: &'static str) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io { path: self.path.clone(), op, source }
    }

    /// Reads from the data area.
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), StoreError> {
        self.check(offset, out.len() as u64)?;
        self.file.read_exact_at(out, SUPERBLOCK_SIZE + offset).map_err(self.io_err("read"))
    }
}

impl Store for BackingStore {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.check(offset, data.len() as u64)?;
        self.file.write_all_at(data, SUPERBLOCK_SIZE + offset).map_err(self.io_err("write"))
    }

    fn trim(&mut self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.check(offset, len)?;
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64);
            self.file.write_all_at(&zeros[..n as usize], SUPERBLOCK_SIZE + offset + done).map_err(self.io_err("trim"))?;
            done += n;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(self.io_err("sync"))
    }

    fn applied_lsn(&self, log_id: u32) -> u64 {
        self.applied.lsn(log_id)
    }

    fn set_applied(&mut self, log_id: u32, lsn: u64) -> Result<(), StoreError> {
        let next = self.applied.with(log_id, lsn);
        self.write_superblock(next)
    }

    fn apply(&mut self, record: &RecordHeader, payload: &[u8]) -> Result<(), StoreError> {
        // Fencing: once another node's log owns the image, records of an earlier owner's
        // log (acknowledged ones were replayed by the new owner; the rest never were
        // acknowledged) must never be applied over its newer data.
        if self.applied.owner != 0 && self.applied.owner != record.log_id {
            return Ok(());
        }
        match record.op {
            RecordOp::Write => self.write_at(record.target_offset, payload),
            RecordOp::Trim => self.trim(record.target_offset, record.target_len),
            RecordOp::Wrap => Ok(()),
        }
    }

    fn lock(&mut self) -> Result<(), StoreError> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
        // SAFETY: `fd` is the open descriptor of `self.file`, which outlives the call;
        // flock only changes the lock state of that open file.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return Err(StoreError::Io { path: self.path.clone(), op: "lock", source: io::Error::last_os_error() });
        }
        self.reload()
    }

    fn unlock(&mut self) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
        // SAFETY: as in `lock`: a valid descriptor owned by `self.file`.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
    }

    fn set_owner(&mut self, log_id: u32) -> Result<(), StoreError> {
        let next = Applied { generation: self.applied.generation + 1, owner: log_id, logs: self.applied.logs.clone() };
        self.write_superblock(next)
    }
}

/// A read-only handle on a store's data area, usable from many threads at once.
#[derive(Debug)]
pub struct StoreReader {
    file: File,
    path: PathBuf,
    size: u64,
}

impl StoreReader {
    /// Size of the data area.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads from the data area.
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), StoreError> {
        match offset.checked_add(out.len() as u64) {
            Some(end) if end <= self.size => {}
            _ => return Err(StoreError::OutOfRange { offset, len: out.len() as u64, size: self.size }),
        }
        self.file.read_exact_at(out, SUPERBLOCK_SIZE + offset).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            op: "read",
            source,
        })
    }
}

impl BackingStore {
    /// A reader sharing this store's file.
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        let file = self.file.try_clone().map_err(|source| StoreError::Io { path: self.path.clone(), op: "dup", source })?;
        Ok(StoreReader { file, path: self.path.clone(), size: self.size })
    }
}

/// The stores of several services: each record is applied to the store of its service
/// tag, and skipped there if that store already recorded its LSN, so every store sees each
/// record at most once even if the stores' applied LSNs differ after a crash.
#[derive(Debug, Default)]
pub struct StoreSet {
    stores: std::collections::BTreeMap<u32, BackingStore>,
}

impl StoreSet {
    /// An empty set.
    pub fn new() -> Self {
        StoreSet::default()
    }

    /// Adds (or replaces) the store of a service.
    pub fn insert(&mut self, service_tag: u32, store: BackingStore) {
        self.stores.insert(service_tag, store);
    }

    /// Removes the store of a service.
    pub fn remove(&mut self, service_tag: u32) -> Option<BackingStore> {
        self.stores.remove(&service_tag)
    }

    /// The store of a service.
    pub fn get(&self, service_tag: u32) -> Option<&BackingStore> {
        self.stores.get(&service_tag)
    }

    fn no_tag() -> StoreError {
        StoreError::Io {
            path: PathBuf::from("(store set)"),
            op: "untagged access",
            source: io::Error::other("a store set is addressed by service tag"),
        }
    }
}

impl Store for StoreSet {
    fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), StoreError> {
        Err(Self::no_tag())
    }
    fn trim(&mut self, _: u64, _: u64) -> Result<(), StoreError> {
        Err(Self::no_tag())
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.stores.values_mut().try_for_each(|s| s.sync())
    }
    fn applied_lsn(&self, log_id: u32) -> u64 {
        self.stores.values().map(|s| s.applied_lsn(log_id)).min().unwrap_or(0)
    }
    fn set_applied(&mut self, log_id: u32, lsn: u64) -> Result<(), StoreError> {
        for s in self.stores.values_mut() {
            if s.applied_lsn(log_id) < lsn {
                s.set_applied(log_id, lsn)?;
            }
        }
        Ok(())
    }
    fn apply(&mut self, record: &RecordHeader, payload: &[u8]) -> Result<(), StoreError> {
        let Some(store) = self.stores.get_mut(&record.service_tag) else {
            return Err(StoreError::Io {
                path: PathBuf::from(format!("(service {})", record.service_tag)),
                op: "apply",
                source: io::Error::other("no backing store is configured for this service tag"),
            });
        };
        if record.lsn <= store.applied_lsn(record.log_id) {
            return Ok(());
        }
        store.apply(record, payload)
    }
    fn lock(&mut self) -> Result<(), StoreError> {
        // Always in tag order, so two processes locking overlapping sets cannot deadlock.
        let tags: Vec<u32> = self.stores.keys().copied().collect();
        for (i, t) in tags.iter().enumerate() {
            if let Err(e) = self.stores.get_mut(t).expect("listed").lock() {
                for u in &tags[..i] {
                    self.stores.get_mut(u).expect("listed").unlock();
                }
                return Err(e);
            }
        }
        Ok(())
    }
    fn unlock(&mut self) {
        self.stores.values_mut().for_each(|s| s.unlock());
    }
    fn set_owner(&mut self, log_id: u32) -> Result<(), StoreError> {
        self.stores.values_mut().try_for_each(|s| s.set_owner(log_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_set_routes_by_tag_and_skips_what_a_store_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = StoreSet::new();
        set.insert(1, BackingStore::open(&dir.path().join("one"), 8192).unwrap());
        set.insert(2, BackingStore::open(&dir.path().join("two"), 8192).unwrap());
        let rec = |tag, lsn| RecordHeader {
            op: RecordOp::Write,
            service_tag: tag,
            payload_len: 2,
            lsn,
            target_offset: 0,
            target_len: 2,
            log_id: 9,
        };
        set.apply(&rec(1, 1), b"aa").unwrap();
        set.apply(&rec(2, 2), b"bb").unwrap();
        set.set_applied(9, 2).unwrap();
        assert_eq!(set.applied_lsn(9), 2);
        // A record at or below a store's applied LSN is not applied again.
        set.apply(&rec(1, 1), b"zz").unwrap();
        let mut b = [0u8; 2];
        set.get(1).unwrap().read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"aa");
        set.get(2).unwrap().reader().unwrap().read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"bb");
        assert!(set.apply(&rec(3, 3), b"cc").is_err());
        assert!(set.write_at(0, b"x").is_err());
    }

    #[test]
    fn applied_lsn_persists_per_log_and_bounds_hold() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        {
            let mut s = BackingStore::open(&p, 1 << 16).unwrap();
            assert_eq!(s.applied_lsn(5), 0);
            s.write_at(100, b"data").unwrap();
            s.set_applied(5, 10).unwrap();
            s.set_applied(5, 12).unwrap();
            assert!(matches!(s.write_at((1 << 16) - 2, b"xyz"), Err(StoreError::OutOfRange { .. })));
            assert!(s.write_at(u64::MAX, b"x").is_err());
        }
        let mut s = BackingStore::open(&p, 1 << 16).unwrap();
        assert_eq!(s.applied_lsn(5), 12);
        assert_eq!(s.applied_lsn(6), 0);
        // Records from another node's log are tracked beside, not instead of, the first.
        s.set_applied(6, 3).unwrap();
        let s = BackingStore::open(&p, 1 << 16).unwrap();
        assert_eq!((s.applied_lsn(5), s.applied_lsn(6)), (12, 3));
        let mut b = [0u8; 4];
        s.read_at(100, &mut b).unwrap();
        assert_eq!(&b, b"data");
    }

    #[test]
    fn owner_fencing_and_lock_see_the_other_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let mut a = BackingStore::open(&p, 4096).unwrap();
        let mut b = BackingStore::open(&p, 4096).unwrap();
        let rec =
            |log_id| RecordHeader { op: RecordOp::Write, service_tag: 1, payload_len: 2, lsn: 5, target_offset: 0, target_len: 2, log_id };
        // No owner yet: any log's records apply.
        a.apply(&rec(10), b"aa").unwrap();
        // The partner takes the image over: its log owns it from now on.
        locked(&mut b, |b| b.set_owner(20)).unwrap();
        // The first handle still has the old view until it locks.
        locked(&mut a, |a| a.apply(&rec(10), b"xx")).unwrap();
        let mut buf = [0u8; 2];
        a.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"aa", "a record of the old owner's log must not land after a takeover");
        locked(&mut a, |a| a.apply(&rec(20), b"bb")).unwrap();
        a.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"bb");
        assert_eq!(a.owner(), 20);
    }

    #[test]
    fn torn_newest_slot_falls_back_to_older() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        {
            let mut s = BackingStore::open(&p, 4096).unwrap();
            s.set_applied(1, 3).unwrap(); // generation 1 -> slot 1
            s.set_applied(1, 4).unwrap(); // generation 2 -> slot 0
        }
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0xff; 8], 20).unwrap(); // tear slot 0
        let s = BackingStore::open(&p, 4096).unwrap();
        assert_eq!(s.applied_lsn(1), 3);
    }
}
