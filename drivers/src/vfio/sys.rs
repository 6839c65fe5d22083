//! Every system call of the vfio backend, and nothing else.
//!
//! VFIO calls sit behind the [`VfioSys`] trait: [`RealVfio`] issues them against
//! `/dev/vfio`, and the fake layer (`vfio::fake::FakeVfio`, tests and the `fake-device`
//! feature) answers them from a software model of the card. The memory, eventfd and
//! poll(2) calls that both need (DMA memory is real memory either way, and an interrupt is
//! an eventfd either way) are the free functions at the end of this module.
//!
//! The VFIO structures come from `vfio-bindings` (generated from the kernel's
//! `linux/vfio.h`); the ioctl request numbers are `_IO(VFIO_TYPE, VFIO_BASE + n)` as in
//! that header, which bindgen cannot express. `vfio-ioctls` (rust-vmm) is not used: its
//! container and device types are built for a VMM (KVM device fds, guest memory maps) and
//! bring in `kvm-ioctls`, `kvm-bindings` and `vm-memory`, none of which a user-space
//! driver needs.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;
use vfio_bindings::bindings::vfio as b;

/// A file descriptor number handed out by a [`VfioSys`] (a real one for [`RealVfio`], a
/// token for the fake). Closed with [`VfioSys::close`].
pub type RawFd = i32;

/// What sysfs says about a PCI device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsDevice {
    /// The IOMMU group number (`iommu_group` link), if the device has one.
    pub iommu_group: Option<u32>,
    /// The bound driver's name (`driver` link), if any.
    pub driver: Option<String>,
}

/// `VFIO_DEVICE_GET_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of interrupt indexes.
    pub num_irqs: u32,
}

/// `VFIO_DEVICE_GET_REGION_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region in the device file (for mmap).
    pub offset: u64,
}

/// 32-bit register access to a mapped BAR. Offsets are checked by the caller
/// ([`crate::vfio::regs::Bar0`]): an implementation may assume `offset + 4 <= len()` and
/// `offset % 4 == 0`.
pub trait Mmio: Send + Sync + fmt::Debug {
    /// Size of the BAR in bytes.
    fn len(&self) -> u64;
    /// True for an empty BAR.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the register at `offset`.
    fn read32(&self, offset: u64) -> u32;
    /// Writes the register at `offset`.
    fn write32(&self, offset: u64, value: u32);
}

/// The VFIO calls the backend makes, in the order it makes them. See the module docs.
pub trait VfioSys: Send + Sync + fmt::Debug {
    /// Looks the device up in `/sys/bus/pci/devices/<addr>`; `NotFound` when it is absent.
    fn sysfs_device(&self, pci_addr: &str) -> io::Result<SysfsDevice>;
    /// Opens `/dev/vfio/vfio` (a container).
    fn open_container(&self) -> io::Result<RawFd>;
    /// Opens `/dev/vfio/<group>`.
    fn open_group(&self, group: u32) -> io::Result<RawFd>;
    /// `VFIO_GET_API_VERSION`.
    fn api_version(&self, container: RawFd) -> io::Result<i32>;
    /// `VFIO_CHECK_EXTENSION`.
    fn check_extension(&self, container: RawFd, extension: u32) -> io::Result<bool>;
    /// `VFIO_GROUP_GET_STATUS`: the group's `VFIO_GROUP_FLAGS_*`.
    fn group_status(&self, group: RawFd) -> io::Result<u32>;
    /// `VFIO_GROUP_SET_CONTAINER`.
    fn group_set_container(&self, group: RawFd, container: RawFd) -> io::Result<()>;
    /// `VFIO_SET_IOMMU`.
    fn set_iommu(&self, container: RawFd, iommu_type: u32) -> io::Result<()>;
    /// `VFIO_GROUP_GET_DEVICE_FD`.
    fn group_device_fd(&self, group: RawFd, pci_addr: &str) -> io::Result<RawFd>;
    /// `VFIO_DEVICE_GET_INFO`.
    fn device_info(&self, device: RawFd) -> io::Result<DeviceInfo>;
    /// `VFIO_DEVICE_GET_REGION_INFO`.
    fn region_info(&self, device: RawFd, index: u32) -> io::Result<RegionInfo>;
    /// Maps a region (BAR0) for register access.
    fn map_region(&self, device: RawFd, info: &RegionInfo) -> io::Result<Box<dyn Mmio>>;
    /// `VFIO_IOMMU_MAP_DMA`: makes `[vaddr, vaddr + size)` visible to the device at `iova`.
    ///
    /// # Safety
    /// The memory must stay mapped, and must not be reused for anything else, until
    /// [`VfioSys::unmap_dma`] of the same range has returned: the device may read and
    /// write it at any time meanwhile.
    unsafe fn map_dma(&self, container: RawFd, vaddr: *mut u8, iova: u64, size: u64) -> io::Result<()>;
    /// `VFIO_IOMMU_UNMAP_DMA`: after it returns the device can no longer reach the range.
    fn unmap_dma(&self, container: RawFd, iova: u64, size: u64) -> io::Result<()>;
    /// `VFIO_DEVICE_SET_IRQS` with `DATA_EVENTFD | ACTION_TRIGGER`: vector `start + i`
    /// signals `eventfds[i]`; an empty list disables the index.
    fn set_irq_eventfds(&self, device: RawFd, index: u32, start: u32, eventfds: &[RawFd]) -> io::Result<()>;
    /// Closes a descriptor this trait handed out.
    fn close(&self, fd: RawFd);
}

/// `_IO(VFIO_TYPE, VFIO_BASE + n)` from `linux/vfio.h` (no direction, no size).
const fn vfio_io(n: u32) -> u32 {
    ((b::VFIO_TYPE as u32) << 8) | (b::VFIO_BASE + n)
}
const VFIO_GET_API_VERSION: u32 = vfio_io(0);
const VFIO_CHECK_EXTENSION: u32 = vfio_io(1);
const VFIO_SET_IOMMU: u32 = vfio_io(2);
const VFIO_GROUP_GET_STATUS: u32 = vfio_io(3);
const VFIO_GROUP_SET_CONTAINER: u32 = vfio_io(4);
const VFIO_GROUP_GET_DEVICE_FD: u32 = vfio_io(6);
const VFIO_DEVICE_GET_INFO: u32 = vfio_io(7);
const VFIO_DEVICE_GET_REGION_INFO: u32 = vfio_io(8);
const VFIO_DEVICE_SET_IRQS: u32 = vfio_io(10);
const VFIO_IOMMU_MAP_DMA: u32 = vfio_io(13);
const VFIO_IOMMU_UNMAP_DMA: u32 = vfio_io(14);

/// Result of an ioctl: the non-negative return value, or the OS error.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The kernel's VFIO, through `/dev/vfio`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealVfio;

fn link_name(p: &Path) -> io::Result<Option<String>> {
    match std::fs::read_link(p) {
        Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_rw(path: &Path) -> io::Result<RawFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated path that lives across the call.
    check(unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
}

impl VfioSys for RealVfio {
    fn sysfs_device(&self, pci_addr: &str) -> io::Result<SysfsDevice> {
        let dir = PathBuf::from("/sys/bus/pci/devices").join(pci_addr);
        std::fs::metadata(&dir)?;
        let group = link_name(&dir.join("iommu_group"))?.and_then(|n| n.parse().ok());
        Ok(SysfsDevice { iommu_group: group, driver: link_name(&dir.join("driver"))? })
    }

    fn open_container(&self) -> io::Result<RawFd> {
        open_rw(Path::new("/dev/vfio/vfio"))
    }

    fn open_group(&self, group: u32) -> io::Result<RawFd> {
        open_rw(&PathBuf::from(format!("/dev/vfio/{group}")))
    }

    fn api_version(&self, container: RawFd) -> io::Result<i32> {
        // SAFETY: VFIO_GET_API_VERSION takes no argument and only returns a number.
        check(unsafe { libc::ioctl(container, VFIO_GET_API_VERSION as _) })
    }

    fn check_extension(&self, container: RawFd, extension: u32) -> io::Result<bool> {
        // SAFETY: VFIO_CHECK_EXTENSION takes the extension number by value.
        Ok(check(unsafe { libc::ioctl(container, VFIO_CHECK_EXTENSION as _, extension as libc::c_ulong) })? > 0)
    }

    fn group_status(&self, group: RawFd) -> io::Result<u32> {
        let mut st = b::vfio_group_status { argsz: std::mem::size_of::<b::vfio_group_status>() as u32, flags: 0 };
        // SAFETY: the kernel writes at most `argsz` bytes into `st`, which is exactly that big.
        check(unsafe { libc::ioctl(group, VFIO_GROUP_GET_STATUS as _, &mut st) })?;
        Ok(st.flags)
    }

    fn group_set_container(&self, group: RawFd, container: RawFd) -> io::Result<()> {
        // SAFETY: the kernel reads one int (the container fd) from the pointer.
        check(unsafe { libc::ioctl(group, VFIO_GROUP_SET_CONTAINER as _, &container) })?;
        Ok(())
    }

    fn set_iommu(&self, container: RawFd, iommu_type: u32) -> io::Result<()> {
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
        check(unsafe { libc::ioctl(container, VFIO_SET_IOMMU as _, iommu_type as libc::c_ulong) })?;
        Ok(())
    }

    fn group_device_fd(&self, group: RawFd, pci_addr: &str) -> io::Result<RawFd> {
        let c = CString::new(pci_addr).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in PCI address"))?;
        // SAFETY: the kernel reads the NUL-terminated device name from `c`, which lives
        // across the call.
        check(unsafe { libc::ioctl(group, VFIO_GROUP_GET_DEVICE_FD as _, c.as_ptr()) })
    }

    fn device_info(&self, device: RawFd) -> io::Result<DeviceInfo> {
        let mut i = b::vfio_device_info { argsz: std::mem::size_of::<b::vfio_device_info>() as u32, ..Default::default() };
        // SAFETY: the kernel writes at most `argsz` bytes into `i`, which is exactly that big.
        check(unsafe { libc::ioctl(device, VFIO_DEVICE_GET_INFO as _, &mut i) })?;
        Ok(DeviceInfo { flags: i.flags, num_regions: i.num_regions, num_irqs: i.num_irqs })
    }

    fn region_info(&self, device: RawFd, index: u32) -> io::Result<RegionInfo> {
        let mut r = b::vfio_region_info { argsz: std::mem::size_of::<b::vfio_region_info>() as u32, index, ..Default::default() };
        // SAFETY: the kernel writes at most `argsz` bytes into `r`, which is exactly that
        // big (capability chains beyond it are reported, not written).
        check(unsafe { libc::ioctl(device, VFIO_DEVICE_GET_REGION_INFO as _, &mut r) })?;
        Ok(RegionInfo { flags: r.flags, size: r.size, offset: r.offset })
    }

    fn map_region(&self, device: RawFd, info: &RegionInfo) -> io::Result<Box<dyn Mmio>> {
        let len = usize::try_from(info.size).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
        // SAFETY: a fresh shared mapping of the device file at the region's offset; the
        // kernel checks offset and length against the region. No Rust reference is ever
        // formed to it: `MappedBar` only does volatile 32-bit accesses.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, device, info.offset as libc::off_t)
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Box::new(MappedBar { ptr, len }))
    }

    unsafe fn map_dma(&self, container: RawFd, vaddr: *mut u8, iova: u64, size: u64) -> io::Result<()> {
        let m = b::vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<b::vfio_iommu_type1_dma_map>() as u32,
            flags: b::VFIO_DMA_MAP_FLAG_READ | b::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: vaddr as u64,
            iova,
            size,
        };
        // SAFETY: the kernel reads `m`; the caller guarantees the memory stays valid until
        // unmap_dma (this function's contract). The kernel pins the pages.
        check(unsafe { libc::ioctl(container, VFIO_IOMMU_MAP_DMA as _, &m) })?;
        Ok(())
    }

    fn unmap_dma(&self, container: RawFd, iova: u64, size: u64) -> io::Result<()> {
        let mut u = b::vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<b::vfio_iommu_type1_dma_unmap>() as u32,
            flags: 0,
            iova,
            size,
            data: Default::default(),
        };
        // SAFETY: the kernel reads `u` and writes back the unmapped size into it.
        check(unsafe { libc::ioctl(container, VFIO_IOMMU_UNMAP_DMA as _, &mut u) })?;
        Ok(())
    }

    fn set_irq_eventfds(&self, device: RawFd, index: u32, start: u32, eventfds: &[RawFd]) -> io::Result<()> {
        #[repr(C)]
        struct IrqSet {
            hdr: b::vfio_irq_set,
            fds: [RawFd; 8],
        }
        if eventfds.len() > 8 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "at most 8 vectors"));
        }
        let mut s = IrqSet { hdr: b::vfio_irq_set::default(), fds: [-1; 8] };
        s.fds[..eventfds.len()].copy_from_slice(eventfds);
        s.hdr.argsz = (std::mem::size_of::<b::vfio_irq_set>() + std::mem::size_of_val(eventfds)) as u32;
        s.hdr.index = index;
        s.hdr.start = start;
        s.hdr.count = eventfds.len() as u32;
        s.hdr.flags = if eventfds.is_empty() {
            b::VFIO_IRQ_SET_DATA_NONE | b::VFIO_IRQ_SET_ACTION_TRIGGER
        } else {
            b::VFIO_IRQ_SET_DATA_EVENTFD | b::VFIO_IRQ_SET_ACTION_TRIGGER
        };
        // SAFETY: `IrqSet` is a `vfio_irq_set` header directly followed by the fd array
        // (repr(C), 4-byte aligned, no padding between); the kernel reads `argsz` bytes.
        check(unsafe { libc::ioctl(device, VFIO_DEVICE_SET_IRQS as _, &s) })?;
        Ok(())
    }

    fn close(&self, fd: RawFd) {
        // SAFETY: `fd` was opened by this type and is closed once, by its owner.
        unsafe { libc::close(fd) };
    }
}

/// A BAR mapped from the device file; register access is volatile, 32 bits at a time.
#[derive(Debug)]
pub struct MappedBar {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is device memory owned by this value; all access is volatile 32-bit
// loads and stores, which the device serialises.
unsafe impl Send for MappedBar {}
// SAFETY: as above; `&MappedBar` permits only volatile register accesses.
unsafe impl Sync for MappedBar {}

impl MappedBar {
    fn reg(&self, offset: u64) -> volatile::VolatilePtr<'_, u32> {
        debug_assert!(offset % 4 == 0 && offset + 4 <= self.len as u64);
        // SAFETY: the caller (Bar0) checked that `offset` is 4-aligned and inside the
        // mapping (Mmio contract); the mapping is page-aligned, so the pointer is aligned,
        // non-null, and valid while `self` lives. No reference to device memory is formed.
        unsafe { volatile::VolatilePtr::new(self.ptr.add(offset as usize).cast::<u32>()) }
    }
}

impl Mmio for MappedBar {
    fn len(&self) -> u64 {
        self.len as u64
    }
    fn read32(&self, offset: u64) -> u32 {
        u32::from_le(self.reg(offset).read())
    }
    fn write32(&self, offset: u64, value: u32) {
        self.reg(offset).write(value.to_le())
    }
}

impl Drop for MappedBar {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map_region`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// ---------------------------------------------------------------------------------
// Memory, eventfd and poll(2): real calls for the real and the fake layer alike.

/// Size of a huge page (x86-64 and arm64 default).
pub const HUGE_PAGE: usize = 2 << 20;

/// Maps `len` bytes of anonymous shared memory, populated; with huge pages when `huge`.
pub fn mmap_anon(len: usize, huge: bool) -> io::Result<NonNull<u8>> {
    let flags = libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | if huge { libc::MAP_HUGETLB } else { 0 };
    // SAFETY: a fresh anonymous mapping; nothing else refers to that address range.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

/// Maps `len` bytes of `file` shared, populated.
pub fn mmap_file(file: &std::fs::File, len: usize) -> io::Result<NonNull<u8>> {
    use std::os::fd::AsRawFd;
    let flags = libc::MAP_SHARED | libc::MAP_POPULATE;
    // SAFETY: a fresh shared mapping of an open file the caller sized to at least `len`.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, file.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

/// Unmaps memory from [`mmap_anon`] or [`mmap_file`].
///
/// # Safety
/// `ptr`/`len` must be a whole mapping made by this module, not used afterwards.
pub unsafe fn munmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

/// An eventfd (the MSI-X vector's signal), closed on drop.
#[derive(Debug)]
pub struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    /// A non-blocking, close-on-exec eventfd with count 0.
    pub fn new() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd takes no pointers.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(EventFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// The descriptor number (to hand to `VFIO_DEVICE_SET_IRQS`).
    pub fn raw(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// Adds 1 to the count (what the kernel does when the vector fires).
    pub fn signal(&self) -> io::Result<()> {
        signal_eventfd(self.raw())
    }

    /// Waits up to `timeout` for the count to be non-zero (poll(2)), then reads and
    /// clears it. Returns the count read, 0 on timeout.
    pub fn wait(&self, timeout: Duration) -> io::Result<u64> {
        let mut p = libc::pollfd { fd: self.raw(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        if n == 0 {
            return Ok(0);
        }
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into `v`, which is 8 bytes.
        let r = unsafe { libc::read(self.raw(), (&mut v as *mut u64).cast(), 8) };
        if r == 8 {
            Ok(v)
        } else {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            }
        }
    }
}

/// Duplicates a descriptor (close-on-exec): how the fake layer holds on to an eventfd
/// handed to `VFIO_DEVICE_SET_IRQS`, as the kernel holds a reference to it.
pub fn dup_fd(fd: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC takes no pointers; a bad descriptor only returns an error.
    let d = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `d` is a fresh descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(d) })
}

/// Adds 1 to an eventfd by descriptor number (the fake device's MSI-X message).
pub fn signal_eventfd(fd: RawFd) -> io::Result<()> {
    let one = 1u64;
    // SAFETY: writes the 8 bytes of `one`; a bad descriptor only returns an error.
    let r = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    if r == 8 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_vfio_h() {
        // _IO(';', 100) and _IO(';', 114) as the kernel header defines them.
        assert_eq!(VFIO_GET_API_VERSION, 0x3B64);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3B72);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3B6E);
    }

    #[test]
    fn eventfd_signals_and_times_out() {
        let e = EventFd::new().unwrap();
        let t = std::time::Instant::now();
        assert_eq!(e.wait(Duration::from_millis(20)).unwrap(), 0);
        assert!(t.elapsed() >= Duration::from_millis(15));
        e.signal().unwrap();
        signal_eventfd(e.raw()).unwrap();
        assert_eq!(e.wait(Duration::from_secs(1)).unwrap(), 2);
        assert_eq!(e.wait(Duration::ZERO).unwrap(), 0);
    }

    #[test]
    fn real_vfio_reports_a_missing_device() {
        let e = RealVfio.sysfs_device("ffff:ff:1f.7").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
