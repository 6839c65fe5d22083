//! The vfio backend: the card driven from user space through Linux VFIO.
//!
//! Layers, bottom up: [`sys`] (every system call, behind the [`sys::VfioSys`] trait),
//! [`regs`] (checked volatile register access and the walk of the register chain),
//! [`dma`] (IOMMU-mapped memory, huge pages when available) and [`VfioEngine`] here,
//! which implements [`Engine`] over the rings and registers of `docs/hsi.md`.
//!
//! # On a machine with the card
//!
//! ```no_run
//! use tandem_drivers::vfio::{dma::DmaBacking, VfioConfig, VfioEngine};
//! let mut cfg = VfioConfig::new("0000:3b:00.0", 64 << 20, 64 << 20);
//! cfg.mirror_window = DmaBacking::File("/var/lib/tandem/window.nvram".into());
//! let engine = VfioEngine::open(cfg).expect("open the card");
//! ```
//!
//! `docs/vfio.md` lists the host set-up (IOMMU, vfio-pci binding, huge pages, limits).
//!
//! # Without hardware
//!
//! With the `fake-device` feature (always on in this crate's tests), `fake::FakeVfio`
//! answers the VFIO calls and models the card behind BAR0; its link is a soft engine, so
//! a vfio engine over the fake pairs with a soft engine or another fake:
//!
//! ```
//! use std::time::Duration;
//! use tandem_drivers::soft::{SoftConfig, SoftEngine};
//! use tandem_drivers::vfio::fake::{FakeLink, FakeVfio};
//! use tandem_drivers::vfio::{VfioConfig, VfioEngine};
//! use tandem_drivers::{Engine, MemRegion};
//! use tandem_hsi::{CompletionStatus, Opcode, SubmissionEntry};
//!
//! // A fake card (link on port la) and a soft engine (port lb) mirror into each other.
//! let la = SoftEngine::bind("127.0.0.1:0".parse().unwrap()).unwrap();
//! let lb = SoftEngine::bind("127.0.0.1:0".parse().unwrap()).unwrap();
//! let (addr_a, addr_b) = (la.local_addr(), lb.local_addr());
//! let fake = FakeVfio::new(FakeLink::new(la, addr_b));
//! let a = VfioEngine::open_with(fake, VfioConfig::new("0000:3b:00.0", 1 << 20, 1 << 20)).unwrap();
//! let region = || MemRegion::anonymous(1 << 20, 0x1000_0000).unwrap();
//! let b = SoftEngine::start(lb, SoftConfig::new(addr_b, addr_a, region(), region())).unwrap();
//!
//! a.host_region().write(0, b"mirror me").unwrap();
//! let host_addr = a.host_region().dma_base(); // an IOVA
//! let e = SubmissionEntry { opcode: Opcode::Log, service_tag: 1, host_addr, window_offset: 64, length: 9, cookie: 7 };
//! assert_eq!(a.post(&[e]).unwrap(), 1);
//! a.ring_doorbell().unwrap();
//! let mut done = Vec::new();
//! while done.is_empty() {
//!     assert!(a.wait_completions(Duration::from_secs(5)).unwrap());
//!     a.poll_completions(&mut done, 16).unwrap();
//! }
//! assert_eq!(done[0].status, CompletionStatus::Ok);
//! assert_eq!(b.mirror_window().read_vec(64, 9).unwrap(), b"mirror me");
//! ```
//!
//! # Rings
//!
//! Ring indices are slot numbers modulo the ring size (2^SIZE_LOG2); a ring of `n` slots
//! holds at most `n - 1` entries, so `HEAD == TAIL` always means empty. The driver sizes
//! both rings to the power of two above its configured depth and never has more than
//! that depth of entries outstanding (posted and their completion not yet consumed), so
//! neither ring can overflow. Completions are recognised by the phase bit: the engine
//! writes 1 on its first pass over the ring, 0 on the second and so on; the host returns
//! consumed slots by writing the completion ring `TAIL`.

pub mod dma;
#[cfg(any(test, feature = "fake-device"))]
pub mod fake;
pub mod regs;
pub mod rings;
pub mod sys;

use crate::api::{CounterSnapshot, Engine, EngineError, EngineInfo};
use crate::region::MemRegion;
use dma::{DmaBacking, DmaBuffer, Iommu};
use regs::{Bar0, Block, RegError, Registers};
use rings::{wait_status, CounterTotals, HostRings};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use sys::{EventFd, RawFd, VfioSys};
use tandem_hsi::entry::{completion, submission};
use tandem_hsi::regs::{self as hr, Control, Irq, Status};
use tandem_hsi::{CompletionEntry, LinkState, SubmissionEntry, HSI_VERSION, MAX_PAYLOAD};
use vfio_bindings::bindings::vfio as b;

/// How [`Engine::wait_completions`] learns about completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqMode {
    /// MSI-X vector 0 signals an eventfd (`VFIO_DEVICE_SET_IRQS`); the waiter sleeps in
    /// poll(2) on it.
    Msix,
    /// The waiter polls the completion ring's phase bit.
    Poll,
}

/// Default ring depth.
pub const DEFAULT_RING_DEPTH: u32 = 1024;

/// Everything [`VfioEngine::open`] needs. Build with [`VfioConfig::new`], then adjust.
#[derive(Debug, Clone)]
pub struct VfioConfig {
    /// PCI address, `domain:bus:device.function` (e.g. `0000:3b:00.0`).
    pub pci_addr: String,
    /// Where the host region's memory comes from.
    pub host_region: DmaBacking,
    /// Host region size in bytes.
    pub host_region_len: u64,
    /// Where the mirror window's memory comes from (a file, for NVRAM semantics).
    pub mirror_window: DmaBacking,
    /// Mirror window size in bytes.
    pub mirror_window_len: u64,
    /// Entries posted and not yet completed, at most (1 to 65535).
    pub ring_depth: u32,
    /// Data frames sent and not yet acknowledged, at most (`MAX_IN_FLIGHT`).
    pub max_in_flight: u32,
    /// `RETRANSMIT_US`.
    pub retransmit_timeout: Duration,
    /// `HEARTBEAT_US`.
    pub heartbeat_interval: Duration,
    /// Interrupts or polling.
    pub irq: IrqMode,
    /// Ask for huge pages for anonymous DMA memory (falls back to normal pages).
    pub huge_pages: bool,
}

impl VfioConfig {
    /// Defaults: anonymous memory on huge pages, MSI-X, the soft engine's tuning.
    pub fn new(pci_addr: &str, host_region_len: u64, mirror_window_len: u64) -> Self {
        VfioConfig {
            pci_addr: pci_addr.to_string(),
            host_region: DmaBacking::Anonymous,
            host_region_len,
            mirror_window: DmaBacking::Anonymous,
            mirror_window_len,
            ring_depth: DEFAULT_RING_DEPTH,
            max_in_flight: crate::soft::DEFAULT_MAX_IN_FLIGHT,
            retransmit_timeout: crate::soft::DEFAULT_RETRANSMIT_TIMEOUT,
            heartbeat_interval: crate::soft::DEFAULT_HEARTBEAT_INTERVAL,
            irq: IrqMode::Msix,
            huge_pages: true,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |field, reason: String| Err(EngineError::Config { field, reason });
        let a = &self.pci_addr;
        let ok_addr = a.len() == 12 && {
            let b = a.as_bytes();
            b[4] == b':'
                && b[7] == b':'
                && b[10] == b'.'
                && a.chars().enumerate().all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
        };
        if !ok_addr {
            return bad("pci_addr", format!("`{a}` is not a PCI address like 0000:3b:00.0 (see `lspci -D`)"));
        }
        if !(1..=65535).contains(&self.ring_depth) {
            return bad("ring_depth", format!("{} is not 1 to 65535", self.ring_depth));
        }
        if self.host_region_len == 0 || self.mirror_window_len == 0 {
            return bad("region length", "host region and mirror window must be non-empty".into());
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1".into());
        }
        for (field, d) in [("retransmit_timeout", self.retransmit_timeout), ("heartbeat_interval", self.heartbeat_interval)] {
            let us = d.as_micros();
            if us == 0 || us > u128::from(u32::MAX) {
                return bad(field, format!("{d:?} does not fit a microsecond register (1 us to ~71 min)"));
            }
        }
        Ok(())
    }

    /// Slots per ring: the power of two above the depth.
    fn ring_slots(&self) -> u32 {
        (self.ring_depth + 1).next_power_of_two()
    }
}

/// A descriptor from the VFIO layer, closed on drop.
#[derive(Debug)]
struct Handle {
    sys: Arc<dyn VfioSys>,
    fd: RawFd,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.sys.close(self.fd);
    }
}

/// The card, through VFIO. See the module docs.
#[derive(Debug)]
pub struct VfioEngine {
    rings: HostRings,
    counters: Mutex<CounterTotals>,
    info: EngineInfo,
    irq_mode: IrqMode,
    host: MemRegion,
    window: MemRegion,
    buffers: Vec<Arc<DmaBuffer>>,
    irq: Option<EventFd>,
    regs: Registers,
    device: Handle,
    _group: Handle,
    _iommu: Arc<Iommu>,
    sys: Arc<dyn VfioSys>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn reg_err(addr: &str) -> impl Fn(RegError) -> EngineError + '_ {
    move |e| EngineError::Backend(format!("{addr}: BAR0: {e}"))
}

fn bind_howto(addr: &str) -> String {
    format!(
        "bind it to vfio-pci: `echo vfio-pci > /sys/bus/pci/devices/{addr}/driver_override`, \
         `echo {addr} > /sys/bus/pci/devices/{addr}/driver/unbind` (if bound), \
         `echo {addr} > /sys/bus/pci/drivers_probe` (see docs/vfio.md)"
    )
}

impl VfioEngine {
    /// Opens the card at `config.pci_addr` through the kernel's VFIO.
    pub fn open(config: VfioConfig) -> Result<Self, EngineError> {
        Self::open_with(Arc::new(sys::RealVfio), config)
    }

    /// Opens the card through the given VFIO layer (the real one, or a fake).
    pub fn open_with(sys: Arc<dyn VfioSys>, config: VfioConfig) -> Result<Self, EngineError> {
        config.validate()?;
        let addr = config.pci_addr.as_str();
        let cfg_err = |reason: String| EngineError::Config { field: "pci_addr", reason };
        let dev = match sys.sysfs_device(addr) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(cfg_err(format!("no PCI device at /sys/bus/pci/devices/{addr} (list devices with `lspci -D`)")))
            }
            Err(source) => return Err(EngineError::Io { op: "read the device's sysfs entry", source }),
        };
        let Some(group) = dev.iommu_group else {
            return Err(cfg_err(format!(
                "{addr} has no IOMMU group: turn the IOMMU on (VT-d/AMD-Vi in firmware, `intel_iommu=on iommu=pt` on the kernel command line), then {}",
                bind_howto(addr)
            )));
        };
        if dev.driver.as_deref() != Some("vfio-pci") {
            let now = dev.driver.as_deref().map_or("no driver".to_string(), |d| format!("driver {d}"));
            return Err(cfg_err(format!("{addr} is bound to {now}, not vfio-pci: {}", bind_howto(addr))));
        }

        let container = sys.open_container().map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound { " (is the vfio-pci module loaded? `modprobe vfio-pci`)" } else { "" };
            EngineError::Backend(format!("open /dev/vfio/vfio: {e}{hint}"))
        })?;
        let iommu = Arc::new(Iommu::new(sys.clone(), container));
        let v = sys.api_version(container).map_err(|source| EngineError::Io { op: "VFIO_GET_API_VERSION", source })?;
        if v != b::VFIO_API_VERSION as i32 {
            return Err(EngineError::Backend(format!("VFIO API version {v}, expected {}", b::VFIO_API_VERSION)));
        }
        if !sys.check_extension(container, b::VFIO_TYPE1_IOMMU).map_err(|source| EngineError::Io { op: "VFIO_CHECK_EXTENSION", source })? {
            return Err(EngineError::Backend("the kernel's VFIO has no Type1 IOMMU support".into()));
        }
        let gfd = sys.open_group(group).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                format!(" (give the service user access: `chown <user> /dev/vfio/{group}`, and raise its memlock limit)")
            } else {
                String::new()
            };
            EngineError::Backend(format!("open /dev/vfio/{group}: {e}{hint}"))
        })?;
        let group_h = Handle { sys: sys.clone(), fd: gfd };
        let flags = sys.group_status(gfd).map_err(|source| EngineError::Io { op: "VFIO_GROUP_GET_STATUS", source })?;
        if flags & b::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(EngineError::Backend(format!(
                "IOMMU group {group} is not viable: every device in /sys/kernel/iommu_groups/{group}/devices must be bound to vfio-pci or to no driver"
            )));
        }
        sys.group_set_container(gfd, container).map_err(|source| EngineError::Io { op: "VFIO_GROUP_SET_CONTAINER", source })?;
        sys.set_iommu(container, b::VFIO_TYPE1_IOMMU).map_err(|source| EngineError::Io { op: "VFIO_SET_IOMMU", source })?;
        let dfd = sys.group_device_fd(gfd, addr).map_err(|source| EngineError::Io { op: "VFIO_GROUP_GET_DEVICE_FD", source })?;
        let device = Handle { sys: sys.clone(), fd: dfd };
        let di = sys.device_info(dfd).map_err(|source| EngineError::Io { op: "VFIO_DEVICE_GET_INFO", source })?;
        if di.flags & b::VFIO_DEVICE_FLAGS_PCI == 0 || di.num_regions < b::VFIO_PCI_BAR0_REGION_INDEX + 1 {
            return Err(EngineError::Backend(format!("{addr}: VFIO reports no PCI BAR0 (flags {:#x})", di.flags)));
        }
        let ri = sys
            .region_info(dfd, b::VFIO_PCI_BAR0_REGION_INDEX)
            .map_err(|source| EngineError::Io { op: "VFIO_DEVICE_GET_REGION_INFO(BAR0)", source })?;
        let need = b::VFIO_REGION_INFO_FLAG_READ | b::VFIO_REGION_INFO_FLAG_WRITE | b::VFIO_REGION_INFO_FLAG_MMAP;
        if ri.flags & need != need {
            return Err(EngineError::Backend(format!("{addr}: BAR0 cannot be mapped read/write (flags {:#x})", ri.flags)));
        }
        let mmio = sys.map_region(dfd, &ri).map_err(|source| EngineError::Io { op: "mmap BAR0", source })?;
        let regs = Registers::walk(Bar0::new(mmio)).map_err(reg_err(addr))?;
        let found = regs.hsi_version().map_err(reg_err(addr))?;
        if !tandem_hsi::hsi_compatible(found) {
            return Err(EngineError::HsiVersion {
                found,
                needed_major: tandem_hsi::hsi_major(HSI_VERSION),
                needed_minor: tandem_hsi::hsi_minor(HSI_VERSION),
            });
        }
        let card_max = regs.read(Block::Id, hr::id::MAX_PAYLOAD).map_err(reg_err(addr))?;
        // A card left running by an earlier process stops before its memory changes.
        regs.set_control(Control::ABORT).map_err(reg_err(addr))?;
        wait_status(&regs, |s| !s.contains(Status::RUNNING), Duration::from_secs(2));
        regs.set_control(Control::empty()).map_err(reg_err(addr))?;

        let slots = config.ring_slots();
        let alloc = |len: u64, backing: &DmaBacking, huge: bool, what: &'static str| {
            iommu.alloc(len, backing, huge, what).map_err(|source| EngineError::Io { op: what, source })
        };
        let host_b = alloc(config.host_region_len, &config.host_region, config.huge_pages, "host region DMA memory")?;
        let window_b = alloc(config.mirror_window_len, &config.mirror_window, config.huge_pages, "mirror window DMA memory")?;
        let sq_b = alloc(u64::from(slots) * submission::SIZE as u64, &DmaBacking::Anonymous, false, "submission ring")?;
        let cq_b = alloc(u64::from(slots) * completion::SIZE as u64, &DmaBacking::Anonymous, false, "completion ring")?;
        let view = |buf: &Arc<DmaBuffer>| -> Result<MemRegion, EngineError> {
            match buf.backing() {
                // A file-backed buffer is shown through its own shared mapping of the same
                // file (same pages), so the region reports itself persistent.
                DmaBacking::File(p) => MemRegion::file_backed(p, buf.len(), buf.iova())
                    .map_err(|source| EngineError::Io { op: "map the DMA file for the host", source }),
                // SAFETY: the device reaches this memory only as the HSI posting protocol
                // says: it reads payloads and entries the host posted and doorbelled, and
                // writes window ranges and completions that the host reads after the
                // engine reported them; `DmaBuffer::region`'s contract.
                DmaBacking::Anonymous => Ok(unsafe { buf.region() }),
            }
        };
        let (host, window) = (view(&host_b)?, view(&window_b)?);
        // SAFETY: as above: the rings are written by one side and read by the other
        // only across the doorbell and the phase bit.
        let (sq, cq) = unsafe { (sq_b.region(), cq_b.region()) };
        cq.zero(0, cq.len()).map_err(|e| EngineError::Backend(format!("completion ring: {e}")))?;

        let w = |blk, reg, v| regs.write(blk, reg, v).map_err(reg_err(addr));
        let w64 = |blk, reg, v| regs.write64(blk, reg, v).map_err(reg_err(addr));
        w64(Block::Memory, hr::memory::HOST_BASE_LO, host_b.iova())?;
        w64(Block::Memory, hr::memory::HOST_SIZE_LO, host_b.len())?;
        w64(Block::Memory, hr::memory::WINDOW_BASE_LO, window_b.iova())?;
        w64(Block::Memory, hr::memory::WINDOW_SIZE_LO, window_b.len())?;
        let log2 = slots.trailing_zeros();
        w64(Block::Sq, hr::sq::BASE_LO, sq_b.iova())?;
        w(Block::Sq, hr::sq::SIZE_LOG2, log2)?;
        w(Block::Sq, hr::sq::HEAD, 0)?;
        w64(Block::Cq, hr::cq::BASE_LO, cq_b.iova())?;
        w(Block::Cq, hr::cq::SIZE_LOG2, log2)?;
        w(Block::Cq, hr::cq::TAIL, 0)?;
        w(Block::Control, hr::control::MAX_IN_FLIGHT, config.max_in_flight)?;
        w(Block::Control, hr::control::RETRANSMIT_US, config.retransmit_timeout.as_micros() as u32)?;
        w(Block::Control, hr::control::HEARTBEAT_US, config.heartbeat_interval.as_micros() as u32)?;
        w(Block::Control, hr::control::IRQ_STATUS, Irq::all().bits())?;

        let irq = match config.irq {
            IrqMode::Msix => {
                let e = EventFd::new().map_err(|source| EngineError::Io { op: "eventfd", source })?;
                sys.set_irq_eventfds(dfd, b::VFIO_PCI_MSIX_IRQ_INDEX, 0, &[e.raw()])
                    .map_err(|source| EngineError::Io { op: "VFIO_DEVICE_SET_IRQS (MSI-X vector 0)", source })?;
                w(Block::Control, hr::control::IRQ_ENABLE, Irq::COMPLETION.bits())?;
                Some(e)
            }
            IrqMode::Poll => {
                w(Block::Control, hr::control::IRQ_ENABLE, 0)?;
                None
            }
        };
        regs.set_control(Control::ENABLE | Control::CLEAR_COUNTERS).map_err(reg_err(addr))?;
        let st = wait_status(&regs, |s| s.intersects(Status::RUNNING | Status::ERROR), Duration::from_secs(2));
        if st != Some(true) || regs.status().map_err(reg_err(addr))?.contains(Status::ERROR) {
            if irq.is_some() {
                let _ = sys.set_irq_eventfds(dfd, b::VFIO_PCI_MSIX_IRQ_INDEX, 0, &[]);
            }
            let _ = regs.set_control(Control::ABORT);
            return Err(EngineError::Backend(format!("{addr}: the engine did not start (STATUS {:?})", regs.status())));
        }
        let engine = VfioEngine {
            rings: HostRings::new(Arc::new(sq), Arc::new(cq), slots, config.ring_depth, format!("vfio: {addr}")),
            counters: Mutex::new(CounterTotals::default()),
            info: EngineInfo {
                backend: "vfio",
                hsi_version: found,
                max_payload: card_max.min(MAX_PAYLOAD as u32),
                ring_depth: config.ring_depth,
            },
            irq_mode: config.irq,
            host,
            window,
            buffers: vec![host_b, window_b, sq_b, cq_b],
            irq,
            regs,
            device,
            _group: group_h,
            _iommu: iommu,
            sys,
        };
        engine.counters(); // baseline right after CLEAR_COUNTERS
        Ok(engine)
    }

    /// The DMA buffers: host region, mirror window, submission ring, completion ring.
    pub fn dma_buffers(&self) -> &[Arc<DmaBuffer>] {
        &self.buffers
    }

    /// The registers (for diagnostics).
    pub fn registers(&self) -> &Registers {
        &self.regs
    }
}

impl Engine for VfioEngine {
    fn info(&self) -> EngineInfo {
        self.info.clone()
    }

    fn host_region(&self) -> &MemRegion {
        &self.host
    }

    fn mirror_window(&self) -> &MemRegion {
        &self.window
    }

    fn post(&self, entries: &[SubmissionEntry]) -> Result<usize, EngineError> {
        self.rings.post(entries)
    }

    fn ring_doorbell(&self) -> Result<(), EngineError> {
        self.rings.ring_doorbell(&self.regs)
    }

    fn poll_completions(&self, out: &mut Vec<CompletionEntry>, max: usize) -> Result<usize, EngineError> {
        self.rings.poll(&self.regs, out, max)
    }

    fn wait_completions(&self, timeout: Duration) -> Result<bool, EngineError> {
        if self.rings.is_shut() {
            return Err(EngineError::Shutdown);
        }
        if self.rings.ready() {
            return Ok(true);
        }
        let deadline = Instant::now() + timeout;
        match (&self.irq, self.irq_mode) {
            (Some(ev), IrqMode::Msix) => {
                // Clear the cause before looking, so a completion written after the look
                // raises a new interrupt (MSI-X is edge-triggered).
                self.regs.ack_irq(Irq::COMPLETION).map_err(reg_err(""))?;
                loop {
                    if self.rings.ready() {
                        return Ok(true);
                    }
                    if self.rings.is_shut() {
                        return Err(EngineError::Shutdown);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    let fired = ev.wait(left).map_err(|source| EngineError::Io { op: "poll the MSI-X eventfd", source })?;
                    if fired > 0 {
                        self.regs.ack_irq(Irq::COMPLETION).map_err(reg_err(""))?;
                    }
                }
            }
            _ => {
                let spin_until = Instant::now() + Duration::from_micros(20);
                loop {
                    if self.rings.ready() {
                        return Ok(true);
                    }
                    if self.rings.is_shut() {
                        return Err(EngineError::Shutdown);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(false);
                    }
                    if now < spin_until {
                        std::hint::spin_loop();
                    } else {
                        std::thread::sleep(Duration::from_micros(50).min(deadline - now));
                    }
                }
            }
        }
    }

    fn link_state(&self) -> LinkState {
        if self.rings.is_shut() {
            return LinkState::Down;
        }
        self.regs.link_state().unwrap_or(LinkState::Down)
    }

    fn counters(&self) -> CounterSnapshot {
        relock(&self.counters).update(&self.regs)
    }

    fn shutdown(&self) {
        if !self.rings.mark_shut() {
            return;
        }
        // The card completes everything it fetched, and everything doorbelled, Aborted;
        // what it never completed (never doorbelled, or lost) completes here.
        if let Err(e) = self.regs.set_control(Control::ABORT) {
            tracing::error!("vfio: ABORT: {e}");
        }
        self.rings.drain_after_abort(&self.regs, Duration::from_secs(5), || std::thread::sleep(Duration::from_micros(200)));
        if !wait_status(&self.regs, |s| !s.contains(Status::RUNNING), Duration::from_secs(2)).unwrap_or(false) {
            tracing::error!("vfio: the card still reports RUNNING after ABORT");
        }
        let _ = self.regs.write(Block::Control, hr::control::IRQ_ENABLE, 0);
        let _ = self.regs.set_control(Control::empty());
        if let Some(ev) = &self.irq {
            if let Err(e) = self.sys.set_irq_eventfds(self.device.fd, b::VFIO_PCI_MSIX_IRQ_INDEX, 0, &[]) {
                tracing::warn!("vfio: disabling MSI-X: {e}");
            }
            // Wakes threads sleeping in wait_completions.
            let _ = ev.signal();
        }
    }
}

impl Drop for VfioEngine {
    fn drop(&mut self) {
        // The card stops before its DMA memory is unmapped (the fields drop after this).
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
