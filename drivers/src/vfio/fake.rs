//! A software model of the card behind a fake VFIO layer, so the vfio backend runs end to
//! end without a kernel VFIO driver or a card.
//!
//! [`FakeVfio`] implements [`VfioSys`] with canned answers ([`FakeAnswers`]: a viable
//! group, a PCI device, a mappable BAR0, one MSI-X vector) and routes BAR0 register reads
//! and writes to a [`FakeDevice`]. The device keeps its register file as the HSI tables in
//! [`tandem_hsi::regs`] describe it (the chain headers, the ID block, RW, RO and RW1C
//! registers) and does what the card does with them:
//!
//! - `CONTROL.ENABLE` checks the ring and memory configuration, translates every
//!   configured IOVA range through its IOMMU table (filled by `VFIO_IOMMU_MAP_DMA`) and
//!   starts; a range that is not mapped sets `STATUS.ERROR`.
//! - A write to the submission ring `HEAD` (the doorbell) makes it fetch the entries from
//!   `TAIL` to `HEAD` out of ring memory, decode them (an undecodable entry completes
//!   `BadOpcode` in its place) and hand them to its link.
//! - Its link is a [`SoftEngine`] whose host region and mirror window are the same DMA
//!   memory (the IOMMU-mapped pages at the configured IOVAs), so it checks entries the
//!   way [`crate::api::check_entry`] says, speaks the HSI wire format and pairs with any
//!   soft engine or other fake device.
//! - Completions go into the completion ring memory at `HEAD` with the phase bit (which
//!   flips on every wrap), never overtaking the host's `TAIL`; then `IRQ_STATUS` gets
//!   `COMPLETION` and, when enabled, the MSI-X eventfd is signalled. Link state changes
//!   raise `LINK_CHANGE`.
//! - `CONTROL.ABORT` (or clearing `ENABLE`) fetches what was doorbelled, completes every
//!   outstanding entry `Aborted` and stops the link; `LINK`, `STATUS` and the counters
//!   block follow the soft engine.
//! - `VFIO_IOMMU_UNMAP_DMA` of a range the device is using stops it first (as an IOMMU
//!   fault would), so the device never touches memory after it was unmapped.
//!
//! What the model does not do: the link block's sequence registers only approximate the
//! card's (`NEXT_SEQ`/`ACKED_SEQ` from the completions seen, `RX_EXPECTED` reads 0), and
//! `MAX_BURST` and `CLOCK_KHZ` have no effect.

use super::sys::{DeviceInfo, Mmio, RawFd, RegionInfo, SysfsDevice, VfioSys};
use crate::api::{CounterSnapshot, Engine};
use crate::region::MemRegion;
use crate::soft::{SoftConfig, SoftEngine, SoftLink, SoftListener};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tandem_hsi::entry::{completion, submission};
use tandem_hsi::regs::{self as hr, Control, Irq, Status};
use tandem_hsi::{CompletionEntry, CompletionStatus, Counter, LinkState, SubmissionEntry};
use vfio_bindings::bindings::vfio as b;

/// BAR0 size the fake reports and models.
pub const FAKE_BAR0_LEN: u64 = 0x1000;

/// The fake card's physical port: where its link listens and whom it dials.
#[derive(Debug)]
pub struct FakeLink {
    /// The bound listener for the partner's frames (the port is kept across restarts of
    /// the link: the device binds the same address again after an abort).
    pub listener: SoftListener,
    /// The partner's listener.
    pub partner: SocketAddr,
    /// First redial wait.
    pub reconnect_backoff_min: Duration,
    /// Longest redial wait.
    pub reconnect_backoff_max: Duration,
}

impl FakeLink {
    /// A link with short redial waits (tests).
    pub fn new(listener: SoftListener, partner: SocketAddr) -> Self {
        FakeLink { listener, partner, reconnect_backoff_min: Duration::from_millis(2), reconnect_backoff_max: Duration::from_millis(50) }
    }
}

/// What the fake VFIO layer answers; change fields to model a misconfigured host.
#[derive(Debug, Clone)]
pub struct FakeAnswers {
    /// sysfs for the device; `None` models a device that is not there.
    pub sysfs: Option<SysfsDevice>,
    /// `VFIO_GET_API_VERSION`.
    pub api_version: i32,
    /// `VFIO_CHECK_EXTENSION(VFIO_TYPE1_IOMMU)`.
    pub type1_iommu: bool,
    /// `VFIO_GROUP_GET_STATUS` flags.
    pub group_flags: u32,
    /// `VFIO_DEVICE_GET_INFO`.
    pub device_info: DeviceInfo,
    /// `VFIO_DEVICE_GET_REGION_INFO` for BAR0.
    pub bar0: RegionInfo,
}

impl Default for FakeAnswers {
    fn default() -> Self {
        FakeAnswers {
            sysfs: Some(SysfsDevice { iommu_group: Some(42), driver: Some("vfio-pci".into()) }),
            api_version: b::VFIO_API_VERSION as i32,
            type1_iommu: true,
            group_flags: b::VFIO_GROUP_FLAGS_VIABLE,
            device_info: DeviceInfo {
                flags: b::VFIO_DEVICE_FLAGS_PCI,
                num_regions: b::VFIO_PCI_NUM_REGIONS,
                num_irqs: b::VFIO_PCI_NUM_IRQS,
            },
            bar0: RegionInfo {
                flags: b::VFIO_REGION_INFO_FLAG_READ | b::VFIO_REGION_INFO_FLAG_WRITE | b::VFIO_REGION_INFO_FLAG_MMAP,
                size: FAKE_BAR0_LEN,
                offset: 0,
            },
        }
    }
}

/// The fake VFIO layer. See the module docs.
#[derive(Debug)]
pub struct FakeVfio {
    answers: FakeAnswers,
    dev: Arc<FakeDevice>,
    next_fd: AtomicI32,
    calls: Mutex<Vec<String>>,
}

impl FakeVfio {
    /// A fake layer with default answers whose device's link is `link`.
    pub fn new(link: FakeLink) -> Arc<Self> {
        Self::with_answers(link, FakeAnswers::default())
    }

    /// A fake layer with the given answers.
    pub fn with_answers(link: FakeLink, answers: FakeAnswers) -> Arc<Self> {
        Arc::new(FakeVfio { answers, dev: FakeDevice::new(link), next_fd: AtomicI32::new(1000), calls: Mutex::new(Vec::new()) })
    }

    /// The device model behind BAR0.
    pub fn device(&self) -> &Arc<FakeDevice> {
        &self.dev
    }

    /// The calls made so far, by name (`open_container`, `map_dma`, ...), in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    fn note(&self, what: &str) {
        lock(&self.calls).push(what.to_string());
    }

    fn fd(&self) -> RawFd {
        self.next_fd.fetch_add(1, Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn einval(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

impl VfioSys for FakeVfio {
    fn sysfs_device(&self, _pci_addr: &str) -> io::Result<SysfsDevice> {
        self.note("sysfs_device");
        self.answers.sysfs.clone().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn open_container(&self) -> io::Result<RawFd> {
        self.note("open_container");
        Ok(self.fd())
    }
    fn open_group(&self, _group: u32) -> io::Result<RawFd> {
        self.note("open_group");
        Ok(self.fd())
    }
    fn api_version(&self, _container: RawFd) -> io::Result<i32> {
        self.note("api_version");
        Ok(self.answers.api_version)
    }
    fn check_extension(&self, _container: RawFd, extension: u32) -> io::Result<bool> {
        self.note("check_extension");
        Ok(extension == b::VFIO_TYPE1_IOMMU && self.answers.type1_iommu)
    }
    fn group_status(&self, _group: RawFd) -> io::Result<u32> {
        self.note("group_status");
        Ok(self.answers.group_flags)
    }
    fn group_set_container(&self, _group: RawFd, _container: RawFd) -> io::Result<()> {
        self.note("group_set_container");
        Ok(())
    }
    fn set_iommu(&self, _container: RawFd, iommu_type: u32) -> io::Result<()> {
        self.note("set_iommu");
        if iommu_type == b::VFIO_TYPE1_IOMMU && self.answers.type1_iommu {
            Ok(())
        } else {
            Err(einval("IOMMU type not supported"))
        }
    }
    fn group_device_fd(&self, _group: RawFd, _pci_addr: &str) -> io::Result<RawFd> {
        self.note("group_device_fd");
        Ok(self.fd())
    }
    fn device_info(&self, _device: RawFd) -> io::Result<DeviceInfo> {
        self.note("device_info");
        Ok(self.answers.device_info)
    }
    fn region_info(&self, _device: RawFd, index: u32) -> io::Result<RegionInfo> {
        self.note("region_info");
        if index == b::VFIO_PCI_BAR0_REGION_INDEX {
            Ok(self.answers.bar0)
        } else {
            Err(einval("only BAR0 is modelled"))
        }
    }
    fn map_region(&self, _device: RawFd, info: &RegionInfo) -> io::Result<Box<dyn Mmio>> {
        self.note("map_region");
        Ok(Box::new(FakeBar { dev: self.dev.clone(), len: info.size.min(FAKE_BAR0_LEN) }))
    }
    unsafe fn map_dma(&self, _container: RawFd, vaddr: *mut u8, iova: u64, size: u64) -> io::Result<()> {
        self.note("map_dma");
        self.dev.iommu_map(vaddr as usize, iova, size)
    }
    fn unmap_dma(&self, _container: RawFd, iova: u64, size: u64) -> io::Result<()> {
        self.note("unmap_dma");
        self.dev.iommu_unmap(iova, size)
    }
    fn set_irq_eventfds(&self, _device: RawFd, index: u32, start: u32, eventfds: &[RawFd]) -> io::Result<()> {
        self.note("set_irq_eventfds");
        if index != b::VFIO_PCI_MSIX_IRQ_INDEX || start != 0 || eventfds.len() > 1 {
            return Err(einval("the card has one MSI-X vector"));
        }
        let fd = eventfds.first().map(|&fd| super::sys::dup_fd(fd)).transpose()?;
        lock(&self.dev.st).eventfd = fd;
        Ok(())
    }
    fn close(&self, _fd: RawFd) {
        self.note("close");
    }
}

/// BAR0 of the fake: every access goes to the device model.
#[derive(Debug)]
struct FakeBar {
    dev: Arc<FakeDevice>,
    len: u64,
}

impl Mmio for FakeBar {
    fn len(&self) -> u64 {
        self.len
    }
    fn read32(&self, offset: u64) -> u32 {
        lock(&self.dev.st).read(offset as u32)
    }
    fn write32(&self, offset: u64, value: u32) {
        self.dev.mmio_write(offset as u32, value)
    }
}

/// One IOMMU mapping: process address and length of the pages at an IOVA.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    vaddr: usize,
    size: u64,
}

/// Register state and flags shared by the MMIO path and the worker.
#[derive(Debug)]
struct DevState {
    regs: Vec<u32>,
    eventfd: Option<OwnedFd>,
    /// The worker runs (between a good ENABLE and the end of an abort).
    running: bool,
    /// Stop at once (IOMMU unmap of memory in use).
    kill: bool,
    /// Complete everything Aborted and stop.
    abort: bool,
    kick: bool,
    /// IOVA ranges the running worker reads and writes.
    in_use: Vec<(u64, u64)>,
    link: Option<SoftLink>,
    /// The running link, for live counter and link-state reads.
    soft: Option<Arc<SoftEngine>>,
    /// Entries the device completed itself (LocalRejects beyond the link's).
    local_rejects: u64,
    /// Counter values at the last CLEAR_COUNTERS.
    baseline: CounterSnapshot,
    /// An abort is in progress: the link reads Down.
    stopping: bool,
}

impl DevState {
    fn raw_counters(&self) -> Option<CounterSnapshot> {
        let mut c = self.soft.as_ref()?.counters();
        c.0[Counter::LocalRejects as usize] += self.local_rejects;
        Some(c)
    }

    /// A register read: counters and the link state are live while the link runs, as on
    /// the card; everything else is the register file.
    fn read(&self, offset: u32) -> u32 {
        let cb = &hr::counters::BLOCK;
        if let Some(now) = self.raw_counters() {
            if let Some(c) = Counter::ALL.iter().find(|c| cb.base + c.offset() == offset) {
                return now.get(*c).wrapping_sub(self.baseline.get(*c)) as u32;
            }
            if offset == hr::link::BLOCK.base + hr::link::STATE && !self.stopping {
                return self.soft.as_ref().map_or(0, |s| s.link_state().code().into());
            }
        }
        self.regs[offset as usize / 4]
    }
}

/// The card model. See the module docs.
#[derive(Debug)]
pub struct FakeDevice {
    st: Mutex<DevState>,
    cv: Condvar,
    iommu: Mutex<BTreeMap<u64, Mapping>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    link: Mutex<LinkPort>,
}

#[derive(Debug)]
struct LinkPort {
    listener: Option<SoftListener>,
    addr: SocketAddr,
    partner: SocketAddr,
    backoff: (Duration, Duration),
}

fn reg_index(block: &hr::RegBlock, reg: u32) -> usize {
    (block.base + reg) as usize / 4
}

impl FakeDevice {
    fn new(link: FakeLink) -> Arc<Self> {
        let mut regs = vec![0u32; FAKE_BAR0_LEN as usize / 4];
        for blk in hr::BLOCKS {
            regs[reg_index(blk, hr::TYPE)] = blk.type_id;
            regs[reg_index(blk, hr::VERSION)] = blk.version;
            regs[reg_index(blk, hr::NEXT)] = blk.next();
        }
        regs[reg_index(&hr::id::BLOCK, hr::id::HSI_VERSION)] = tandem_hsi::HSI_VERSION;
        regs[reg_index(&hr::id::BLOCK, hr::id::DATAPATH_BITS)] = 64;
        regs[reg_index(&hr::id::BLOCK, hr::id::MAX_PAYLOAD)] = tandem_hsi::MAX_PAYLOAD as u32;
        regs[reg_index(&hr::control::BLOCK, hr::control::MAX_BURST)] = 16;
        let addr = link.listener.local_addr();
        Arc::new(FakeDevice {
            st: Mutex::new(DevState {
                regs,
                eventfd: None,
                running: false,
                kill: false,
                abort: false,
                kick: false,
                in_use: Vec::new(),
                link: None,
                soft: None,
                local_rejects: 0,
                baseline: CounterSnapshot::default(),
                stopping: false,
            }),
            cv: Condvar::new(),
            iommu: Mutex::new(BTreeMap::new()),
            worker: Mutex::new(None),
            link: Mutex::new(LinkPort {
                listener: Some(link.listener),
                addr,
                partner: link.partner,
                backoff: (link.reconnect_backoff_min, link.reconnect_backoff_max),
            }),
        })
    }

    /// Sets a register to a raw value, bypassing the access rules (tests that model a
    /// broken or different card: another HSI version, a looping chain).
    pub fn poke(&self, offset: u32, value: u32) {
        lock(&self.st).regs[offset as usize / 4] = value;
    }

    /// Reads a register as the device sees it.
    pub fn peek(&self, offset: u32) -> u32 {
        lock(&self.st).read(offset)
    }

    /// Closes the link's current connections (it reconnects by itself).
    pub fn cut_link(&self) {
        if let Some(l) = lock(&self.st).link.clone() {
            l.cut();
        }
    }

    /// True while the device runs (enabled, or draining an abort).
    pub fn is_running(&self) -> bool {
        lock(&self.st).running
    }

    /// Number of live IOMMU mappings.
    pub fn iommu_mappings(&self) -> usize {
        lock(&self.iommu).len()
    }

    fn iommu_map(&self, vaddr: usize, iova: u64, size: u64) -> io::Result<()> {
        let mut m = lock(&self.iommu);
        let end = iova.checked_add(size).ok_or_else(|| einval("IOVA range overflows"))?;
        if size == 0 || iova % 4096 != 0 || size % 4096 != 0 || vaddr % 4096 != 0 {
            return Err(einval("DMA mappings are page-aligned and non-empty"));
        }
        if m.range(..end).next_back().is_some_and(|(&a, mm)| a + mm.size > iova) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        m.insert(iova, Mapping { vaddr, size });
        Ok(())
    }

    fn iommu_unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        let overlaps = lock(&self.st).in_use.iter().any(|&(a, l)| a < iova.saturating_add(size) && iova < a + l);
        if overlaps {
            // Like an IOMMU fault: the device stops and reports an error before the pages go.
            lock(&self.st).kill = true;
            self.cv.notify_all();
            self.join_worker();
            let mut st = lock(&self.st);
            st.regs[reg_index(&hr::control::BLOCK, hr::control::STATUS)] = Status::ERROR.bits();
            st.regs[reg_index(&hr::control::BLOCK, hr::control::IRQ_STATUS)] |= Irq::ERROR.bits();
        }
        let mut m = lock(&self.iommu);
        match m.get(&iova) {
            Some(mm) if mm.size == size => {
                m.remove(&iova);
                Ok(())
            }
            _ => Err(einval("no DMA mapping with that IOVA and size")),
        }
    }

    /// Translates an IOVA range to a process address, if one mapping covers all of it.
    fn translate(&self, iova: u64, len: u64) -> Option<*mut u8> {
        let m = lock(&self.iommu);
        let (&base, mm) = m.range(..=iova).next_back()?;
        let end = iova.checked_add(len)?;
        (end <= base + mm.size).then(|| (mm.vaddr + (iova - base) as usize) as *mut u8)
    }

    fn join_worker(&self) {
        let h = lock(&self.worker).take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }

    fn mmio_write(self: &Arc<Self>, offset: u32, value: u32) {
        let c = &hr::control::BLOCK;
        let mut start = false;
        {
            let mut st = lock(&self.st);
            let i = offset as usize / 4;
            let Some((blk, reg)) = hr::BLOCKS
                .iter()
                .find(|blk| offset >= blk.base && offset < blk.base + hr::BLOCK_STRIDE)
                .and_then(|blk| blk.regs.iter().find(|r| r.offset == offset - blk.base).map(|r| (blk, r)))
            else {
                return; // headers and holes are read-only
            };
            match reg.access {
                hr::Access::Ro => return,
                hr::Access::Rw1c => st.regs[i] &= !value,
                hr::Access::Rw => {
                    if blk.type_id == c.type_id && reg.offset == hr::control::CONTROL {
                        let ctl = Control::from_bits_truncate(value);
                        let was = Control::from_bits_truncate(st.regs[i]).contains(Control::ENABLE);
                        st.regs[i] = (ctl & Control::ENABLE).bits();
                        if ctl.contains(Control::CLEAR_COUNTERS) {
                            st.baseline = st.raw_counters().unwrap_or_default();
                            for c in Counter::ALL {
                                st.regs[reg_index(&hr::counters::BLOCK, c.offset())] = 0;
                            }
                        }
                        if ctl.contains(Control::ABORT) || (was && !ctl.contains(Control::ENABLE)) {
                            st.abort = true;
                        } else if !was && ctl.contains(Control::ENABLE) {
                            start = true;
                        }
                    } else {
                        st.regs[i] = value;
                        st.kick = true;
                    }
                }
            }
        }
        self.cv.notify_all();
        if start {
            self.start();
        }
    }

    /// ENABLE: check the configuration, map the memory, start the link and the worker.
    fn start(self: &Arc<Self>) {
        self.join_worker(); // a previous run drains its abort first (bounded)
        let run = self.configure();
        let mut st = lock(&self.st);
        let status = reg_index(&hr::control::BLOCK, hr::control::STATUS);
        match run {
            Ok(run) => {
                st.running = true;
                st.kill = false;
                st.abort = false;
                st.in_use = run.ranges.clone();
                st.link = Some(run.soft.link());
                st.soft = Some(run.soft.clone());
                st.local_rejects = 0;
                st.baseline = CounterSnapshot::default();
                st.stopping = false;
                st.regs[status] = Status::RUNNING.bits();
                st.regs[reg_index(&hr::sq::BLOCK, hr::sq::TAIL)] = 0;
                st.regs[reg_index(&hr::cq::BLOCK, hr::cq::HEAD)] = 0;
                drop(st);
                let dev = self.clone();
                let h = std::thread::Builder::new().name("tandem-fakedev".into()).spawn(move || dev.run(run));
                match h {
                    Ok(h) => *lock(&self.worker) = Some(h),
                    Err(e) => {
                        tracing::error!("fake device: spawn: {e}");
                        let mut st = lock(&self.st);
                        st.running = false;
                        st.regs[status] = Status::ERROR.bits();
                    }
                }
            }
            Err(why) => {
                tracing::warn!("fake device: ENABLE refused: {why}");
                st.regs[status] = Status::ERROR.bits();
                st.regs[reg_index(&hr::control::BLOCK, hr::control::CONTROL)] = 0;
                st.regs[reg_index(&hr::control::BLOCK, hr::control::IRQ_STATUS)] |= Irq::ERROR.bits();
            }
        }
    }

    /// A DMA view of `[iova, iova + len)`, if the IOMMU maps it.
    fn view(&self, iova: u64, len: u64, what: &str) -> Result<MemRegion, String> {
        let p = self.translate(iova, len).ok_or_else(|| format!("{what}: IOVA range {iova:#x}+{len:#x} is not mapped"))?;
        let len = usize::try_from(len).map_err(|_| format!("{what}: too large"))?;
        // SAFETY: the IOMMU table says `[p, p + len)` is mapped memory, and the mapper
        // promised (VfioSys::map_dma) to keep it valid until unmap_dma, which stops this
        // device and drops every view before it removes the mapping.
        Ok(unsafe { MemRegion::from_raw(p, len, iova, Box::new(())) })
    }

    fn configure(&self) -> Result<Run, String> {
        let regs = lock(&self.st).regs.clone();
        let rd = |blk: &hr::RegBlock, reg: u32| regs[reg_index(blk, reg)];
        let rd64 = |blk: &hr::RegBlock, lo: u32| u64::from(rd(blk, lo)) | u64::from(rd(blk, lo + 4)) << 32;
        let ring = |blk: &hr::RegBlock, base_lo: u32, size_log2: u32, entry: usize, what: &str| -> Result<(MemRegion, u32), String> {
            let log2 = rd(blk, size_log2);
            if !(1..=16).contains(&log2) {
                return Err(format!("{what} SIZE_LOG2 {log2} is not 1 to 16"));
            }
            let base = rd64(blk, base_lo);
            if base % entry as u64 != 0 {
                return Err(format!("{what} BASE {base:#x} is not aligned to {entry} bytes"));
            }
            let n = 1u32 << log2;
            Ok((self.view(base, u64::from(n) * entry as u64, what)?, n))
        };
        let (sq, n_sq) = ring(&hr::sq::BLOCK, hr::sq::BASE_LO, hr::sq::SIZE_LOG2, submission::SIZE, "submission ring")?;
        let (cq, n_cq) = ring(&hr::cq::BLOCK, hr::cq::BASE_LO, hr::cq::SIZE_LOG2, completion::SIZE, "completion ring")?;
        let m = &hr::memory::BLOCK;
        let host = self.view(rd64(m, hr::memory::HOST_BASE_LO), rd64(m, hr::memory::HOST_SIZE_LO), "host region")?;
        let window = self.view(rd64(m, hr::memory::WINDOW_BASE_LO), rd64(m, hr::memory::WINDOW_SIZE_LO), "mirror window")?;
        let ranges =
            vec![(sq.dma_base(), sq.len()), (cq.dma_base(), cq.len()), (host.dma_base(), host.len()), (window.dma_base(), window.len())];
        let c = &hr::control::BLOCK;
        let us = |reg: u32, default: Duration| match rd(c, reg) {
            0 => default,
            v => Duration::from_micros(v.into()),
        };
        let mut port = lock(&self.link);
        let listener = match port.listener.take() {
            Some(l) => l,
            None => SoftEngine::bind(port.addr).map_err(|e| format!("link: {e}"))?,
        };
        let mut cfg = SoftConfig::new(port.addr, port.partner, host, window);
        cfg.ring_depth = n_sq;
        cfg.retransmit_timeout = us(hr::control::RETRANSMIT_US, crate::soft::DEFAULT_RETRANSMIT_TIMEOUT);
        cfg.heartbeat_interval = us(hr::control::HEARTBEAT_US, crate::soft::DEFAULT_HEARTBEAT_INTERVAL);
        cfg.max_in_flight = rd(c, hr::control::MAX_IN_FLIGHT).max(1);
        cfg.reconnect_backoff_min = port.backoff.0;
        cfg.reconnect_backoff_max = port.backoff.1;
        cfg.io_timeout = (cfg.heartbeat_interval * 4).max(Duration::from_secs(1));
        drop(port);
        let soft = Arc::new(SoftEngine::start(listener, cfg).map_err(|e| format!("link: {e}"))?);
        let session = soft.session();
        Ok(Run {
            soft,
            sq,
            cq,
            n_sq,
            n_cq,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            slots: VecDeque::new(),
            ready: VecDeque::new(),
            local_rejects: 0,
            last_link: LinkState::Down,
            acked: 0,
            session,
            ranges,
        })
    }

    /// The worker: fetch, send, complete, interrupt; until aborted or killed.
    fn run(self: Arc<Self>, mut run: Run) {
        let mut aborting: Option<Instant> = None;
        loop {
            let (head, cq_tail, kill, abort) = {
                let mut st = lock(&self.st);
                let r =
                    (st.regs[reg_index(&hr::sq::BLOCK, hr::sq::HEAD)], st.regs[reg_index(&hr::cq::BLOCK, hr::cq::TAIL)], st.kill, st.abort);
                st.kick = false;
                r
            };
            if kill {
                break;
            }
            run.fetch(head);
            lock(&self.st).local_rejects = run.local_rejects;
            if abort && aborting.is_none() {
                aborting = Some(Instant::now());
                lock(&self.st).stopping = true;
                // Everything fetched and not acknowledged completes Aborted, in order.
                run.soft.shutdown();
            }
            run.collect();
            let wrote = run.write_completions(cq_tail);
            let link = if aborting.is_some() { LinkState::Down } else { run.soft.link_state() };
            let mut irq = Irq::empty();
            if wrote > 0 {
                irq |= Irq::COMPLETION;
            }
            if link != run.last_link {
                run.last_link = link;
                irq |= Irq::LINK_CHANGE;
            }
            let done = aborting.is_some_and(|t| (run.slots.is_empty() && run.ready.is_empty()) || t.elapsed() > Duration::from_secs(10));
            self.publish(&run, link, irq);
            if done {
                break;
            }
            if !run.slots.is_empty() && aborting.is_none() {
                let _ = run.soft.wait_completions(Duration::from_micros(300));
            } else {
                let st = lock(&self.st);
                if !st.kick && !st.abort && !st.kill {
                    let _ = self.cv.wait_timeout(st, Duration::from_millis(2));
                }
            }
        }
        run.soft.shutdown();
        drop(run); // every DMA view goes before the device reports that it stopped
        let mut st = lock(&self.st);
        // Freeze the counters at their last values, then let go of the link.
        if let Some(now) = st.raw_counters() {
            for c in Counter::ALL {
                let v = now.get(*c).wrapping_sub(st.baseline.get(*c)) as u32;
                st.regs[reg_index(&hr::counters::BLOCK, c.offset())] = v;
            }
        }
        st.soft = None;
        st.running = false;
        st.in_use.clear();
        st.link = None;
        st.regs[reg_index(&hr::link::BLOCK, hr::link::STATE)] = LinkState::Down.code().into();
        let s = reg_index(&hr::control::BLOCK, hr::control::STATUS);
        st.regs[s] &= Status::ERROR.bits();
        st.regs[reg_index(&hr::control::BLOCK, hr::control::CONTROL)] = 0;
    }

    /// Makes the run's state visible in the registers and raises interrupts.
    fn publish(&self, run: &Run, link: LinkState, irq: Irq) {
        let mut st = lock(&self.st);
        let r = &mut st.regs;
        r[reg_index(&hr::sq::BLOCK, hr::sq::TAIL)] = run.sq_tail;
        r[reg_index(&hr::cq::BLOCK, hr::cq::HEAD)] = run.cq_head;
        let l = &hr::link::BLOCK;
        r[reg_index(l, hr::link::STATE)] = link.code().into();
        for (reg, v) in [(hr::link::NEXT_SEQ_LO, run.acked + 1), (hr::link::ACKED_SEQ_LO, run.acked), (hr::link::SESSION_LO, run.session)] {
            r[reg_index(l, reg)] = v as u32;
            r[reg_index(l, reg + 4)] = (v >> 32) as u32;
        }
        // RUNNING stays set until the worker has let go of the DMA memory (end of `run`).
        let mut status = Status::RUNNING;
        if link == LinkState::Up {
            status |= Status::LINK_UP;
        }
        r[reg_index(&hr::control::BLOCK, hr::control::STATUS)] = status.bits();
        let is = reg_index(&hr::control::BLOCK, hr::control::IRQ_STATUS);
        r[is] |= irq.bits();
        let enabled = Irq::from_bits_truncate(r[reg_index(&hr::control::BLOCK, hr::control::IRQ_ENABLE)]);
        if enabled.intersects(irq) {
            if let Some(fd) = &st.eventfd {
                if let Err(e) = super::sys::signal_eventfd(fd.as_raw_fd()) {
                    tracing::warn!("fake device: MSI-X eventfd: {e}");
                }
            }
        }
    }
}

/// Where a fetched entry's completion comes from.
#[derive(Debug)]
enum Slot {
    /// The link (soft engine) completes it.
    Link,
    /// Completed by the device itself (undecodable entry): the completion bytes.
    Local([u8; completion::SIZE]),
}

/// One enabled run of the device.
struct Run {
    soft: Arc<SoftEngine>,
    sq: MemRegion,
    cq: MemRegion,
    n_sq: u32,
    n_cq: u32,
    sq_tail: u32,
    cq_head: u32,
    phase: bool,
    slots: VecDeque<Slot>,
    ready: VecDeque<[u8; completion::SIZE]>,
    local_rejects: u64,
    last_link: LinkState,
    acked: u64,
    session: u64,
    ranges: Vec<(u64, u64)>,
}

impl Run {
    /// Fetches the entries from TAIL up to the doorbelled HEAD and hands them to the link.
    fn fetch(&mut self, head: u32) {
        if head >= self.n_sq {
            return; // a HEAD outside the ring is ignored, as the card ignores it
        }
        let mut batch = Vec::new();
        while self.sq_tail != head {
            let mut raw = [0u8; submission::SIZE];
            let off = u64::from(self.sq_tail) * submission::SIZE as u64;
            if self.sq.read(off, &mut raw).is_err() {
                break;
            }
            match SubmissionEntry::decode(&raw) {
                Ok(e) => {
                    batch.push(e);
                    self.slots.push_back(Slot::Link);
                }
                Err(_) => {
                    let mut c = [0u8; completion::SIZE];
                    completion::COOKIE.put(&mut c, submission::COOKIE.get(&raw));
                    completion::STATUS.put(&mut c, CompletionStatus::BadOpcode.code().into());
                    completion::OPCODE.put(&mut c, submission::OPCODE.get(&raw));
                    self.slots.push_back(Slot::Local(c));
                    self.local_rejects += 1;
                }
            }
            self.sq_tail = (self.sq_tail + 1) % self.n_sq;
        }
        if !batch.is_empty() {
            // The link's ring is as deep as ours, so it takes every entry.
            match self.soft.post(&batch) {
                Ok(n) if n == batch.len() => {}
                r => tracing::error!("fake device: link took {r:?} of {} entries", batch.len()),
            }
            let _ = self.soft.ring_doorbell();
        }
    }

    /// Moves the link's completions, and the local ones between them, to `ready` in order.
    fn collect(&mut self) {
        let mut got = Vec::new();
        let _ = self.soft.poll_completions(&mut got, usize::MAX);
        let mut got = got.into_iter();
        loop {
            match self.slots.front() {
                Some(Slot::Local(c)) => {
                    self.ready.push_back(*c);
                    self.slots.pop_front();
                }
                Some(Slot::Link) => match got.next() {
                    Some(c) => {
                        if c.status == CompletionStatus::Ok {
                            self.acked = self.acked.max(c.sequence);
                        }
                        self.ready.push_back(CompletionEntry::encode(&c, false));
                        self.slots.pop_front();
                    }
                    None => break,
                },
                None => break,
            }
        }
    }

    /// Writes ready completions at HEAD while the ring has room; returns how many.
    fn write_completions(&mut self, cq_tail: u32) -> usize {
        let mut n = 0;
        while let Some(c) = self.ready.front() {
            if (self.cq_head + 1) % self.n_cq == cq_tail % self.n_cq {
                break; // full: the host has not returned entries yet
            }
            let mut c = *c;
            let off = u64::from(self.cq_head) * completion::SIZE as u64;
            // Everything but the phase first, then the phase byte: a host that sees the
            // new phase sees the whole entry.
            completion::PHASE.put(&mut c, (!self.phase).into());
            let _ = self.cq.write(off, &c);
            std::sync::atomic::fence(Ordering::Release);
            let _ = self.cq.write(off + completion::PHASE.offset as u64, &[u8::from(self.phase)]);
            self.ready.pop_front();
            self.cq_head = (self.cq_head + 1) % self.n_cq;
            if self.cq_head == 0 {
                self.phase = !self.phase;
            }
            n += 1;
        }
        n
    }
}
