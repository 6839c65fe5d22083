//! The block device behind an export: the [`BlockDevice`] trait, its error type and two
//! plain implementations ([`MemDevice`], [`FileDevice`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::proto;

/// Why a device operation failed. Each variant maps to one NBD error value
/// ([`DeviceError::errno`]), which is what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The device could not do the I/O (`EIO`).
    #[error("I/O error: {0}")]
    Io(String),
    /// The request is not valid for this device (`EINVAL`).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No space left (`ENOSPC`); also used for quota and file-size limits.
    #[error("no space left on device")]
    NoSpace,
    /// The device refuses changes (`EPERM`).
    #[error("device is read-only")]
    ReadOnly,
    /// The device is going away, for example during a takeover (`ESHUTDOWN`). Clients
    /// disconnect when they see it.
    #[error("device is shutting down")]
    Shutdown,
}

impl DeviceError {
    /// The NBD error value sent to the client for this error.
    pub fn errno(&self) -> u32 {
        match self {
            DeviceError::Io(_) => proto::EIO,
            DeviceError::Invalid(_) => proto::EINVAL,
            DeviceError::NoSpace => proto::ENOSPC,
            DeviceError::ReadOnly => proto::EPERM,
            DeviceError::Shutdown => proto::ESHUTDOWN,
        }
    }
}

impl From<io::Error> for DeviceError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc_errno) if libc_errno == nix::libc::ENOSPC || libc_errno == nix::libc::EDQUOT || libc_errno == nix::libc::EFBIG => {
                DeviceError::NoSpace
            }
            Some(libc_errno) if libc_errno == nix::libc::EROFS || libc_errno == nix::libc::EPERM || libc_errno == nix::libc::EACCES => {
                DeviceError::ReadOnly
            }
            Some(libc_errno) if libc_errno == nix::libc::EINVAL => DeviceError::Invalid(e.to_string()),
            _ => DeviceError::Io(e.to_string()),
        }
    }
}

/// A byte-addressed device that an NBD export serves.
///
/// The server checks every request against [`BlockDevice::size`] before calling the
/// device, so implementations only ever see `offset + len <= size()`, and never a
/// zero-length request. Calls arrive concurrently from several threads; the server never
/// runs two overlapping requests of one connection at the same time when either of them
/// changes data (see the crate docs), but requests from different connections may overlap.
pub trait BlockDevice: Send + Sync + 'static {
    /// Size of the device in bytes. Must not change while the device is exported.
    fn size(&self) -> u64;

    /// Reads `buf.len()` bytes at `offset` into `buf`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError>;

    /// Writes `data` at `offset`. Returns only once the write is durable by the device's
    /// own definition (for a mirrored device: held by the partner); the client is answered
    /// only after that. A later [`BlockDevice::read`] must return the new bytes.
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError>;

    /// Makes every write that has returned so far persistent (`NBD_CMD_FLUSH`, and the
    /// second half of a write with `NBD_CMD_FLAG_FUA`).
    fn flush(&self) -> Result<(), DeviceError>;

    /// Hints that `len` bytes at `offset` are no longer needed (`NBD_CMD_TRIM`). The
    /// device may discard them or ignore the hint; clients make no assumption about the
    /// contents afterwards.
    fn trim(&self, offset: u64, len: u64) -> Result<(), DeviceError>;

    /// Whether the export is read-only. The server then advertises `NBD_FLAG_READ_ONLY`
    /// and refuses writes and trims with `EPERM` without calling the device.
    fn read_only(&self) -> bool {
        false
    }

    /// Preferred I/O size advertised in `NBD_INFO_BLOCK_SIZE` (a power of two, at least
    /// 512). The minimum block size advertised is always 1: any alignment is accepted.
    fn preferred_block_size(&self) -> u32 {
        4096
    }
}

fn check_range(size: u64, offset: u64, len: u64) -> Result<(), DeviceError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DeviceError::Invalid(format!("range {offset}+{len} is beyond the device size {size}"))),
    }
}

/// An in-memory device, for tests and demos. Each write and trim is applied under one
/// lock, so no read ever sees half of a write. Trim zeroes the range.
#[derive(Debug)]
pub struct MemDevice {
    data: RwLock<Vec<u8>>,
    read_only: bool,
    flushes: AtomicU64,
}

impl MemDevice {
    /// A zero-filled device of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self::with_contents(vec![0; size])
    }

    /// A device holding `data`.
    pub fn with_contents(data: Vec<u8>) -> Self {
        MemDevice { data: RwLock::new(data), read_only: false, flushes: AtomicU64::new(0) }
    }

    /// A read-only device holding `data`.
    pub fn read_only(data: Vec<u8>) -> Self {
        MemDevice { data: RwLock::new(data), read_only: true, flushes: AtomicU64::new(0) }
    }

    /// A copy of the whole contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many times [`BlockDevice::flush`] was called.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        check_range(data.len() as u64, offset, buf.len() as u64)?;
        let start = offset as usize;
        buf.copy_from_slice(&data[start..start + buf.len()]);
        Ok(())
    }

    fn write(&self, offset: u64, src: &[u8]) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        check_range(data.len() as u64, offset, src.len() as u64)?;
        let start = offset as usize;
        data[start..start + src.len()].copy_from_slice(src);
        Ok(())
    }

    fn flush(&self) -> Result<(), DeviceError> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn trim(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        check_range(data.len() as u64, offset, len)?;
        let start = offset as usize;
        data[start..start + len as usize].fill(0);
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// A device backed by a plain file: `pread`/`pwrite`, `fdatasync` on flush, hole punching
/// on trim (ignored where the file system cannot punch holes). Writes return once the
/// kernel has the data (page cache); only flush makes them persistent.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    size: u64,
    read_only: bool,
}

impl FileDevice {
    /// Opens an existing file read-write; the device size is the file's length.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(FileDevice { file, size, read_only: false })
    }

    /// Opens an existing file read-only; the export is then read-only too.
    pub fn open_read_only(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(FileDevice { file, size, read_only: true })
    }

    /// Opens `path` read-write, creating it if missing, and sets its length to `size`
    /// (existing contents within `size` are kept; a new file is sparse).
    pub fn create(path: impl AsRef<Path>, size: u64) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        file.set_len(size)?;
        Ok(FileDevice { file, size, read_only: false })
    }
}

impl BlockDevice for FileDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(self.size, offset, buf.len() as u64)?;
        Ok(self.file.read_exact_at(buf, offset)?)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        check_range(self.size, offset, data.len() as u64)?;
        Ok(self.file.write_all_at(data, offset)?)
    }

    fn flush(&self) -> Result<(), DeviceError> {
        if self.read_only {
            return Ok(());
        }
        Ok(self.file.sync_data()?)
    }

    fn trim(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        use nix::errno::Errno;
        use nix::fcntl::{fallocate, FallocateFlags};
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        check_range(self.size, offset, len)?;
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(DeviceError::Invalid(format!("range {offset}+{len} does not fit off_t")));
        };
        match fallocate(self.file.as_raw_fd(), FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE, off, n) {
            Ok(()) => Ok(()),
            // Trim is a hint: a file system without hole punching simply keeps the data.
            Err(Errno::EOPNOTSUPP) | Err(Errno::ENOSYS) => Ok(()),
            Err(e) => Err(io::Error::from(e).into()),
        }
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_device_reads_writes_trims() {
        let d = MemDevice::new(4096);
        d.write(10, &[1, 2, 3]).unwrap();
        let mut b = [0u8; 5];
        d.read(9, &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3, 0]);
        d.trim(11, 1).unwrap();
        d.read(9, &mut b).unwrap();
        assert_eq!(b, [0, 1, 0, 3, 0]);
        assert!(matches!(d.write(4095, &[1, 2]), Err(DeviceError::Invalid(_))));
        assert!(matches!(d.read(u64::MAX, &mut b), Err(DeviceError::Invalid(_))));
        d.flush().unwrap();
        assert_eq!(d.flush_count(), 1);
    }

    #[test]
    fn read_only_mem_device_refuses_changes() {
        let d = MemDevice::read_only(vec![7; 16]);
        assert_eq!(d.write(0, &[1]), Err(DeviceError::ReadOnly));
        assert_eq!(d.trim(0, 1), Err(DeviceError::ReadOnly));
        assert!(d.read_only());
        assert_eq!(DeviceError::ReadOnly.errno(), proto::EPERM);
    }

    #[test]
    fn file_device_round_trip_and_punch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let d = FileDevice::create(&path, 1 << 20).unwrap();
        assert_eq!(d.size(), 1 << 20);
        d.write(8192, &[0xab; 8192]).unwrap();
        d.flush().unwrap();
        let mut b = vec![0u8; 8192];
        d.read(8192, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0xab));
        d.trim(8192, 4096).unwrap();
        d.read(8192, &mut b).unwrap();
        // Either punched (zeroes) or kept, never anything else.
        assert!(b[..4096].iter().all(|&x| x == 0) || b[..4096].iter().all(|&x| x == 0xab));
        assert!(b[4096..].iter().all(|&x| x == 0xab));
        assert!(matches!(d.write((1 << 20) - 1, &[1, 2]), Err(DeviceError::Invalid(_))));
        drop(d);
        let ro = FileDevice::open_read_only(&path).unwrap();
        assert_eq!(ro.write(0, &[1]), Err(DeviceError::ReadOnly));
    }

    #[test]
    fn io_errors_map_to_nbd_values() {
        let e: DeviceError = io::Error::from_raw_os_error(nix::libc::ENOSPC).into();
        assert_eq!(e.errno(), proto::ENOSPC);
        let e: DeviceError = io::Error::from_raw_os_error(nix::libc::EROFS).into();
        assert_eq!(e.errno(), proto::EPERM);
        let e: DeviceError = io::Error::from_raw_os_error(nix::libc::EBADF).into();
        assert_eq!(e.errno(), proto::EIO);
        assert_eq!(DeviceError::Shutdown.errno(), proto::ESHUTDOWN);
    }
}
