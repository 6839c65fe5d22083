//! The `sim` backend: the RTL engine (`tandem-hdl`'s `EngineTop`, verilated by
//! `tandem-sim-tb`) behind the [`Engine`] API, clocked inside the host process.
//!
//! A [`SimEngine`] owns one verilated engine (64-bit datapath unless configured) on its
//! own simulation thread, which clocks it in a loop and serves its ports:
//! - AXI4 (the DMA master) from host memory: the host region and mirror window given in
//!   [`SimConfig`] and the two rings the engine allocates are [`MemRegion`]s, each at its
//!   own DMA address (`dma_base`), so the runtime writes payloads into the host region and
//!   names them by DMA address exactly as with the other backends. Only the mirror window
//!   and the completion ring are writable by the engine; anything else is an error
//!   response (counted in [`SimEngine::dma_errors`]).
//! - AXI4-Lite (the register file) through the vfio backend's typed register layer
//!   ([`tandem_drivers::vfio::regs::Registers`], with its block-chain walk): the layer's
//!   [`Mmio`](tandem_drivers::vfio::sys::Mmio) is implemented by an AXI4-Lite transactor
//!   on the model ([`SimBar`]), as it is by the mapped BAR0 of a real card.
//! - the link stream ports (`m_axis_link`/`s_axis_link`, whole frames per `tlast`) to a
//!   second sim engine over an in-process [`SimWire`], or over TCP to a soft engine
//!   ([`SimLink::Tcp`]): the node listens for its partner's sender and dials its partner's
//!   listener like a soft node, and moves whole frames between the sockets and the ports.
//!
//! Time: the engine's timers count simulated cycles at [`tandem_sim_tb::ENGINE_CLOCK_KHZ`]
//! (250 MHz), and the simulation runs far slower than that (see [`SimEngine::cycles`] and
//! the `throughput` test, which prints simulated cycles per second), so the
//! microsecond settings in [`SimConfig`] are simulated time. When no port has moved for
//! a few thousand cycles the loop paces itself (short sleeps, woken by register accesses
//! and incoming frames), so an idle engine does not take a whole core.
//!
//! ```no_run
//! use std::time::Duration;
//! use tandem_drivers::{Engine, MemRegion};
//! use tandem_hsi::{Opcode, SubmissionEntry};
//! use tandem_sim_engine::{SimConfig, SimEngine, SimWire};
//!
//! let wire = SimWire::new();
//! let region = |base| MemRegion::anonymous(1 << 20, base).unwrap();
//! let a = SimEngine::start(SimConfig::new(region(0x1000_0000), region(0x2000_0000), wire.end(0))).unwrap();
//! let b = SimEngine::start(SimConfig::new(region(0x1000_0000), region(0x2000_0000), wire.end(1))).unwrap();
//! a.host_region().write(0, b"mirror me").unwrap();
//! let e = SubmissionEntry { opcode: Opcode::Log, service_tag: 1, host_addr: 0x1000_0000, window_offset: 64, length: 9, cookie: 7 };
//! a.post(&[e]).unwrap();
//! a.ring_doorbell().unwrap();
//! let mut done = Vec::new();
//! while done.is_empty() {
//!     a.wait_completions(Duration::from_secs(5)).unwrap();
//!     a.poll_completions(&mut done, 16).unwrap();
//! }
//! assert_eq!(b.mirror_window().read_vec(64, 9).unwrap(), b"mirror me");
//! ```

mod core;
mod link;

pub use crate::core::{FrameLink, SimBar, BAR_LEN};
pub use link::{BridgeCut, SimWire, TcpBridge, WireEnd};

use crate::core::{relock, Core, Mapping};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tandem_drivers::api::{CounterSnapshot, Engine, EngineError, EngineInfo};
use tandem_drivers::vfio::regs::{Bar0, Block, RegError, Registers};
use tandem_drivers::vfio::rings::{wait_status, CounterTotals, HostRings};
use tandem_drivers::MemRegion;
use tandem_hsi::entry::{completion, submission};
use tandem_hsi::regs::{self as hr, Control, Irq, Status};
use tandem_hsi::{CompletionEntry, LinkState, SubmissionEntry, HSI_VERSION, MAX_PAYLOAD};

/// Default ring depth.
pub const DEFAULT_RING_DEPTH: u32 = 256;

/// Where the engine's link port goes.
#[derive(Debug)]
pub enum SimLink {
    /// One side of an in-process wire to another sim engine.
    Wire(WireEnd),
    /// TCP, speaking the soft engine's connection protocol: accept the partner's sender on
    /// `listener`, dial the partner's listener at `partner`.
    Tcp {
        /// Where the partner's sender connects.
        listener: TcpListener,
        /// The partner's listener.
        partner: SocketAddr,
    },
}

impl From<WireEnd> for SimLink {
    fn from(e: WireEnd) -> Self {
        SimLink::Wire(e)
    }
}

/// Everything [`SimEngine::start`] needs. Build with [`SimConfig::new`], then adjust.
#[derive(Debug)]
pub struct SimConfig {
    /// The region payloads are read from (its `dma_base` is its bus address).
    pub host_region: MemRegion,
    /// The mirror window the partner's data is written into.
    pub mirror_window: MemRegion,
    /// The link.
    pub link: SimLink,
    /// Datapath width: 64 or 512 bits.
    pub width: usize,
    /// Entries posted and not yet completed, at most (1 to 32767).
    pub ring_depth: u32,
    /// `MAX_IN_FLIGHT`.
    pub max_in_flight: u32,
    /// `MAX_BURST` (beats).
    pub max_burst: u32,
    /// `RETRANSMIT_US`, simulated microseconds.
    pub retransmit_us: u32,
    /// `HEARTBEAT_US`, simulated microseconds.
    pub heartbeat_us: u32,
    /// Names the model's trace and coverage files (`TANDEM_VCD`, `TANDEM_COVERAGE`).
    pub name: String,
}

impl SimConfig {
    /// Defaults: 64-bit datapath, 256 ring entries, 8 frames in flight, bursts of up to
    /// 256 beats, retransmission after 40 us and heartbeats every 20 us of simulated time.
    pub fn new(host_region: MemRegion, mirror_window: MemRegion, link: impl Into<SimLink>) -> Self {
        SimConfig {
            host_region,
            mirror_window,
            link: link.into(),
            width: 64,
            ring_depth: DEFAULT_RING_DEPTH,
            max_in_flight: 8,
            max_burst: 256,
            retransmit_us: 40,
            heartbeat_us: 20,
            name: "sim".into(),
        }
    }

    fn validate(&self) -> Result<(), EngineError> {
        let bad = |field, reason: String| Err(EngineError::Config { field, reason });
        if self.width != 64 && self.width != 512 {
            return bad("width", format!("{} is not 64 or 512", self.width));
        }
        if !(1..=32767).contains(&self.ring_depth) {
            return bad("ring_depth", format!("{} is not 1 to 32767", self.ring_depth));
        }
        if self.max_in_flight == 0 || !(1..=256).contains(&self.max_burst) {
            return bad("max_in_flight/max_burst", "max_in_flight at least 1, max_burst 1 to 256".into());
        }
        if self.retransmit_us == 0 || self.heartbeat_us == 0 {
            return bad("retransmit_us/heartbeat_us", "must be at least 1".into());
        }
        let (h, w) = (&self.host_region, &self.mirror_window);
        if h.is_empty() || w.is_empty() {
            return bad("region length", "host region and mirror window must be non-empty".into());
        }
        let end = |r: &MemRegion| r.dma_base().checked_add(r.len());
        let (Some(he), Some(we)) = (end(h), end(w)) else {
            return bad("dma_base", "a region ends beyond the 64-bit bus".into());
        };
        if h.dma_base() < we && w.dma_base() < he {
            return bad(
                "dma_base",
                format!("host region [{:#x}, {he:#x}) and mirror window [{:#x}, {we:#x}) overlap", h.dma_base(), w.dma_base()),
            );
        }
        if he.max(we) > u64::MAX - (64 << 20) {
            return bad("dma_base", "no bus addresses left above the regions for the rings".into());
        }
        Ok(())
    }
}

/// The RTL engine, simulated in-process. See the crate docs.
#[derive(Debug)]
pub struct SimEngine {
    rings: HostRings,
    counters: Mutex<CounterTotals>,
    info: EngineInfo,
    host: Arc<MemRegion>,
    window: Arc<MemRegion>,
    regs: Registers,
    core: Arc<Core>,
    thread: Mutex<Option<JoinHandle<()>>>,
    bridge: Mutex<Option<TcpBridge>>,
    cutter: Option<BridgeCut>,
}

fn reg_err(e: RegError) -> EngineError {
    EngineError::Backend(format!("sim: registers: {e}"))
}

impl SimEngine {
    /// Starts the simulation, walks the register chain, programs rings, regions and
    /// tuning, and enables the engine.
    pub fn start(config: SimConfig) -> Result<Self, EngineError> {
        config.validate()?;
        let slots = (config.ring_depth + 1).next_power_of_two();
        let top =
            (config.host_region.dma_base() + config.host_region.len()).max(config.mirror_window.dma_base() + config.mirror_window.len());
        let sq_base = (top + 0xF_FFFF) & !0xF_FFFF;
        let sq_len = u64::from(slots) * submission::SIZE as u64;
        let cq_base = (sq_base + sq_len + 0xFFF) & !0xFFF;
        let cq_len = u64::from(slots) * completion::SIZE as u64;
        let io = |op| move |source| EngineError::Io { op, source };
        let sq = Arc::new(MemRegion::anonymous(sq_len, sq_base).map_err(io("allocate the submission ring"))?);
        let cq = Arc::new(MemRegion::anonymous(cq_len, cq_base).map_err(io("allocate the completion ring"))?);
        let host = Arc::new(config.host_region);
        let window = Arc::new(config.mirror_window);
        let maps = vec![
            Mapping { region: host.clone(), writable: false, is_cq: false },
            Mapping { region: window.clone(), writable: true, is_cq: false },
            Mapping { region: sq.clone(), writable: false, is_cq: false },
            Mapping { region: cq.clone(), writable: true, is_cq: true },
        ];
        let core = Arc::new(Core::default());
        let (port, bridge) = match config.link {
            SimLink::Wire(end) => (end.attach(core.wake.clone()), None),
            SimLink::Tcp { listener, partner } => {
                let b = TcpBridge::start(listener, partner, core.wake.clone()).map_err(io("start the link bridge threads"))?;
                (b.port(), Some(b))
            }
        };
        let cutter = bridge.as_ref().map(TcpBridge::cutter);
        let (c2, width, name) = (core.clone(), config.width, config.name.clone());
        let thread = std::thread::Builder::new()
            .name("tandem-sim".into())
            .spawn(move || core::run(c2, maps, port, width, name))
            .map_err(io("spawn the simulation thread"))?;
        let stop_sim = |core: &Core, thread: JoinHandle<()>| {
            core.request_stop();
            let _ = thread.join();
        };
        let regs = match Registers::walk(Bar0::new(Box::new(SimBar(core.clone())))) {
            Ok(r) => r,
            Err(e) => {
                stop_sim(&core, thread);
                return Err(reg_err(e));
            }
        };
        let setup = || -> Result<u32, EngineError> {
            let found = regs.hsi_version().map_err(reg_err)?;
            if !tandem_hsi::hsi_compatible(found) {
                return Err(EngineError::HsiVersion {
                    found,
                    needed_major: tandem_hsi::hsi_major(HSI_VERSION),
                    needed_minor: tandem_hsi::hsi_minor(HSI_VERSION),
                });
            }
            let bits = regs.read(Block::Id, hr::id::DATAPATH_BITS).map_err(reg_err)?;
            if bits as usize != width {
                return Err(EngineError::Backend(format!("sim: the model reports a {bits}-bit datapath, {width} was asked for")));
            }
            let w = |blk, reg, v| regs.write(blk, reg, v).map_err(reg_err);
            let w64 = |blk, reg, v| regs.write64(blk, reg, v).map_err(reg_err);
            w64(Block::Memory, hr::memory::HOST_BASE_LO, host.dma_base())?;
            w64(Block::Memory, hr::memory::HOST_SIZE_LO, host.len())?;
            w64(Block::Memory, hr::memory::WINDOW_BASE_LO, window.dma_base())?;
            w64(Block::Memory, hr::memory::WINDOW_SIZE_LO, window.len())?;
            let log2 = slots.trailing_zeros();
            w64(Block::Sq, hr::sq::BASE_LO, sq.dma_base())?;
            w(Block::Sq, hr::sq::SIZE_LOG2, log2)?;
            w(Block::Sq, hr::sq::HEAD, 0)?;
            w64(Block::Cq, hr::cq::BASE_LO, cq.dma_base())?;
            w(Block::Cq, hr::cq::SIZE_LOG2, log2)?;
            w(Block::Cq, hr::cq::TAIL, 0)?;
            w(Block::Control, hr::control::MAX_BURST, config.max_burst)?;
            w(Block::Control, hr::control::MAX_IN_FLIGHT, config.max_in_flight)?;
            w(Block::Control, hr::control::RETRANSMIT_US, config.retransmit_us)?;
            w(Block::Control, hr::control::HEARTBEAT_US, config.heartbeat_us)?;
            w(Block::Control, hr::control::IRQ_STATUS, Irq::all().bits())?;
            w(Block::Control, hr::control::IRQ_ENABLE, Irq::COMPLETION.bits())?;
            regs.set_control(Control::ENABLE | Control::CLEAR_COUNTERS).map_err(reg_err)?;
            let st = wait_status(&regs, |s| s.intersects(Status::RUNNING | Status::ERROR), Duration::from_secs(5));
            if st != Some(true) || regs.status().map_err(reg_err)?.contains(Status::ERROR) {
                return Err(EngineError::Backend(format!("sim: the engine did not start (STATUS {:?})", regs.status())));
            }
            Ok(found)
        };
        let found = match setup() {
            Ok(f) => f,
            Err(e) => {
                stop_sim(&core, thread);
                return Err(e);
            }
        };
        let card_max = regs.read(Block::Id, hr::id::MAX_PAYLOAD).map_err(reg_err)?;
        let engine = SimEngine {
            rings: HostRings::new(sq, cq, slots, config.ring_depth, "sim"),
            counters: Mutex::new(CounterTotals::default()),
            info: EngineInfo {
                backend: "sim",
                hsi_version: found,
                max_payload: card_max.min(MAX_PAYLOAD as u32),
                ring_depth: config.ring_depth,
            },
            host,
            window,
            regs,
            core,
            thread: Mutex::new(Some(thread)),
            bridge: Mutex::new(bridge),
            cutter,
        };
        engine.counters();
        Ok(engine)
    }

    /// Simulated clock cycles so far.
    pub fn cycles(&self) -> u64 {
        self.core.cycles()
    }

    /// DMA accesses refused by host memory so far (outside every region, or a write into
    /// the host region or the submission ring). Zero for a correct engine.
    pub fn dma_errors(&self) -> u64 {
        self.core.dma_errors()
    }

    /// The typed registers (over AXI4-Lite), for diagnostics.
    pub fn registers(&self) -> &Registers {
        &self.regs
    }

    /// A handle that cuts the TCP connections of a [`SimLink::Tcp`] engine (`None` for a
    /// wire; cut the [`SimWire`] instead).
    pub fn bridge_cut(&self) -> Option<BridgeCut> {
        self.cutter.clone()
    }

    fn stop_simulation(&self) {
        self.core.request_stop();
        if let Some(t) = relock(&self.thread).take() {
            let _ = t.join();
        }
        if let Some(mut b) = relock(&self.bridge).take() {
            b.stop();
        }
    }
}

impl Engine for SimEngine {
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
        let deadline = Instant::now() + timeout;
        loop {
            if self.rings.is_shut() {
                return Err(EngineError::Shutdown);
            }
            let seen = self.core.cq_write_count();
            if self.rings.ready() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.core.is_stopped() {
                return Ok(false);
            }
            // Woken by the next completion-ring write; the short bound also notices shutdown.
            self.core.wait_cq_write(seen, left.min(Duration::from_millis(20)));
        }
    }

    fn link_state(&self) -> LinkState {
        if self.rings.is_shut() {
            return LinkState::Down;
        }
        self.regs.link_state().unwrap_or(LinkState::Down)
    }

    fn counters(&self) -> CounterSnapshot {
        let mut acc = relock(&self.counters);
        if self.core.is_stopped() {
            return acc.last();
        }
        acc.update(&self.regs)
    }

    fn shutdown(&self) {
        if !self.rings.mark_shut() {
            return;
        }
        // Counters as they were at the end, for readers after shutdown.
        self.counters();
        if let Err(e) = self.regs.set_control(Control::ENABLE | Control::ABORT) {
            tracing::error!("sim: ABORT: {e}");
        }
        let core = &self.core;
        self.rings.drain_after_abort(&self.regs, Duration::from_secs(5), || {
            let seen = core.cq_write_count();
            core.wait_cq_write(seen, Duration::from_millis(5));
        });
        let _ = self.regs.write(Block::Control, hr::control::IRQ_ENABLE, 0);
        let _ = self.regs.set_control(Control::empty());
        if !wait_status(&self.regs, |s| !s.contains(Status::RUNNING), Duration::from_secs(2)).unwrap_or(false) {
            tracing::warn!("sim: the engine still reports RUNNING after ENABLE was cleared");
        }
        self.stop_simulation();
    }
}

impl Drop for SimEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
