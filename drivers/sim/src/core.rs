//! The simulation thread: one verilated engine clocked in a loop, its AXI4 DMA port
//! served from host memory ([`MemRegion`]s), its AXI4-Lite port driven by a transactor
//! that the register layer talks to through [`SimBar`], and its link stream ports joined
//! to a [`FrameLink`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tandem_drivers::vfio::sys::Mmio;
use tandem_drivers::MemRegion;
use tandem_sim_tb::{keep_count, keep_words, lanes, Model};

/// Size of the register space (BAR0) the transactor answers for.
pub const BAR_LEN: u64 = 0x1000;
/// Cycles without any handshake after which the loop starts pacing itself.
const IDLE_CYCLES: u64 = 4096;
/// While idle, the loop sleeps this long (or until woken) after every [`IDLE_BATCH`] cycles.
const IDLE_SLEEP: Duration = Duration::from_micros(500);
/// Cycles simulated between idle sleeps and between updates of the shared cycle count.
const IDLE_BATCH: u64 = 1024;
/// Longest a register read waits for the simulation before it reads as all ones.
const REG_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wakes the simulation loop out of an idle sleep.
#[derive(Debug, Default)]
pub struct Wake {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    /// Something happened: the loop should run now.
    pub fn wake(&self) {
        *relock(&self.flag) = true;
        self.cv.notify_all();
    }

    fn sleep(&self, d: Duration) {
        let mut f = relock(&self.flag);
        if !*f {
            f = self.cv.wait_timeout(f, d).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        *f = false;
    }
}

/// Where the model's link port goes: whole frames out, whole frames in.
pub trait FrameLink: Send {
    /// A whole frame the engine sent.
    fn send(&mut self, frame: Vec<u8>);
    /// The next whole frame for the engine, if any.
    fn recv(&mut self) -> Option<Vec<u8>>;
}

/// One register transaction.
#[derive(Debug, Clone, Copy)]
enum Op {
    Write(u32, u32),
    Read(u32),
}

#[derive(Debug, Default)]
struct RegQueue {
    ops: VecDeque<(u64, Op)>,
    next_ticket: u64,
    results: HashMap<u64, u32>,
}

/// State shared between the simulation thread and the engine's handles.
#[derive(Debug, Default)]
pub(crate) struct Core {
    regs: Mutex<RegQueue>,
    regs_cv: Condvar,
    pending: AtomicUsize,
    stop: AtomicBool,
    stopped: AtomicBool,
    cq_writes: Mutex<u64>,
    cq_cv: Condvar,
    cycles: AtomicU64,
    dma_errors: AtomicU64,
    pub(crate) wake: Arc<Wake>,
}

impl Core {
    /// Simulated cycles so far (updated every [`IDLE_BATCH`] cycles and at the end).
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Relaxed)
    }

    /// DMA accesses the host memory refused (outside every region, or a write into a
    /// read-only one).
    pub fn dma_errors(&self) -> u64 {
        self.dma_errors.load(Ordering::Relaxed)
    }

    fn push(&self, op: Op) -> u64 {
        let mut q = relock(&self.regs);
        let t = q.next_ticket;
        q.next_ticket += 1;
        q.ops.push_back((t, op));
        self.pending.fetch_add(1, Ordering::Release);
        drop(q);
        self.wake.wake();
        t
    }

    /// Asks the loop to stop.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.wake();
    }

    /// True once the loop has ended.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Waits until the engine writes into the completion ring, at most `timeout`.
    pub fn wait_cq_write(&self, seen: u64, timeout: Duration) -> u64 {
        let g = relock(&self.cq_writes);
        if *g != seen || self.is_stopped() {
            return *g;
        }
        let (g, _) = self.cq_cv.wait_timeout(g, timeout).unwrap_or_else(|p| p.into_inner());
        *g
    }

    /// Completion-ring writes so far.
    pub fn cq_write_count(&self) -> u64 {
        *relock(&self.cq_writes)
    }
}

/// The engine's register space as the register layer sees it: every access is an
/// AXI4-Lite transaction on the model. Writes are posted (queued in order, as PCIe
/// memory writes are); a read waits for every earlier access and its own response.
/// Once the simulation has stopped, reads return all ones, as a device that is gone.
#[derive(Debug, Clone)]
pub struct SimBar(pub(crate) Arc<Core>);

impl Mmio for SimBar {
    fn len(&self) -> u64 {
        BAR_LEN
    }

    fn read32(&self, offset: u64) -> u32 {
        if self.0.is_stopped() {
            return u32::MAX;
        }
        let t = self.0.push(Op::Read(offset as u32));
        let deadline = Instant::now() + REG_TIMEOUT;
        let mut q = relock(&self.0.regs);
        loop {
            if let Some(v) = q.results.remove(&t) {
                return v;
            }
            let now = Instant::now();
            if self.0.is_stopped() || now >= deadline {
                tracing::warn!(offset, "sim: register read got no response");
                return u32::MAX;
            }
            q = self
                .0
                .regs_cv
                .wait_timeout(q, (deadline - now).min(Duration::from_millis(20)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn write32(&self, offset: u64, value: u32) {
        if !self.0.is_stopped() {
            self.0.push(Op::Write(offset as u32, value));
        }
    }
}

/// One mapped range of host memory on the model's AXI4 bus.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub region: Arc<MemRegion>,
    pub writable: bool,
    pub is_cq: bool,
}

/// Input port values already driven (the model holds inputs between cycles, so a port
/// is set only when its value changes).
struct Inputs {
    last: HashMap<&'static str, u64>,
}

impl Inputs {
    fn set(&mut self, m: &mut Model, port: &'static str, v: u64) {
        if self.last.get(port) != Some(&v) {
            m.set(port, v);
            self.last.insert(port, v);
        }
    }
}

/// AXI4 slave over the mappings: always ready for addresses and data, read data the
/// cycle after the address, one write response per burst.
struct AxiSlave {
    k: usize,
    ar: VecDeque<(u64, usize)>,
    r_loaded: bool,
    r_resp: u64,
    aw: VecDeque<(u64, usize, bool)>,
    w: VecDeque<(Vec<u8>, u64, bool)>,
    b: VecDeque<u64>,
    beat: Vec<u8>,
}

impl AxiSlave {
    fn find(maps: &[Mapping], addr: u64, len: u64) -> Option<(&Mapping, u64)> {
        maps.iter().find_map(|m| m.region.dma_to_offset(addr, len).ok().map(|off| (m, off)))
    }

    fn drive(&mut self, m: &mut Model, inp: &mut Inputs, maps: &[Mapping], core: &Core) {
        let rvalid = !self.ar.is_empty();
        if rvalid && !self.r_loaded {
            let (addr, n) = self.ar[0];
            self.r_resp = 0;
            match Self::find(maps, addr, self.k as u64) {
                Some((map, off)) if map.region.read(off, &mut self.beat).is_ok() => {}
                _ => {
                    self.beat.iter_mut().for_each(|b| *b = 0);
                    self.r_resp = 2;
                    core.dma_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            m.set_bytes("m_axi_rdata", &self.beat);
            inp.set(m, "m_axi_rlast", u64::from(n == 1));
            inp.set(m, "m_axi_rresp", self.r_resp);
            self.r_loaded = true;
        }
        inp.set(m, "m_axi_rvalid", u64::from(rvalid));
        let bvalid = !self.b.is_empty();
        if let Some(&resp) = self.b.front() {
            inp.set(m, "m_axi_bresp", resp);
        }
        inp.set(m, "m_axi_bvalid", u64::from(bvalid));
    }

    /// Samples the handshakes; returns whether any happened.
    fn sample(&mut self, m: &Model, maps: &[Mapping], core: &Core) -> bool {
        let mut any = false;
        if m.get("m_axi_arvalid") == 1 {
            self.ar.push_back((m.get("m_axi_araddr"), m.get("m_axi_arlen") as usize + 1));
            any = true;
        }
        if self.r_loaded && m.get("m_axi_rready") == 1 {
            let f = self.ar.front_mut().expect("R beat of a queued burst");
            f.0 += self.k as u64;
            f.1 -= 1;
            if f.1 == 0 {
                self.ar.pop_front();
            }
            self.r_loaded = false;
            any = true;
        }
        if m.get("m_axi_awvalid") == 1 {
            self.aw.push_back((m.get("m_axi_awaddr"), m.get("m_axi_awlen") as usize + 1, false));
            any = true;
        }
        if m.get("m_axi_wvalid") == 1 {
            let mut data = m.get_bytes("m_axi_wdata");
            data.truncate(self.k);
            self.w.push_back((data, m.get("m_axi_wstrb"), m.get("m_axi_wlast") == 1));
            any = true;
        }
        if !self.b.is_empty() && m.get("m_axi_bready") == 1 {
            self.b.pop_front();
            any = true;
        }
        while !self.aw.is_empty() && !self.w.is_empty() {
            let (data, strb, _last) = self.w.pop_front().expect("checked");
            let (addr, _, _) = self.aw[0];
            let mut ok = true;
            let mut cq = false;
            match Self::find(maps, addr, self.k as u64) {
                Some((map, off)) if map.writable => {
                    let full = if self.k == 64 { u64::MAX } else { (1u64 << self.k) - 1 };
                    if strb & full == full {
                        ok = map.region.write(off, &data).is_ok();
                    } else {
                        for (i, byte) in data.iter().enumerate() {
                            if (strb >> i) & 1 == 1 {
                                ok &= map.region.write(off + i as u64, std::slice::from_ref(byte)).is_ok();
                            }
                        }
                    }
                    cq = map.is_cq;
                }
                _ => ok = strb == 0,
            }
            if !ok {
                core.dma_errors.fetch_add(1, Ordering::Relaxed);
            }
            if cq {
                *relock(&core.cq_writes) += 1;
                core.cq_cv.notify_all();
            }
            let f = &mut self.aw[0];
            f.0 += self.k as u64;
            f.1 -= 1;
            f.2 |= !ok;
            if f.1 == 0 {
                let err = f.2;
                self.aw.pop_front();
                self.b.push_back(if err { 2 } else { 0 });
            }
        }
        any
    }
}

/// AXI4-Lite master: one transaction at a time, address and data offered together.
#[derive(Default)]
struct LiteMaster {
    cur: Option<(u64, Op)>,
    aw_done: bool,
    w_done: bool,
    ar_done: bool,
}

impl LiteMaster {
    fn drive(&mut self, m: &mut Model, inp: &mut Inputs) {
        let (mut awv, mut wv, mut arv) = (false, false, false);
        match self.cur {
            Some((_, Op::Write(a, d))) => {
                awv = !self.aw_done;
                wv = !self.w_done;
                inp.set(m, "s_axil_awaddr", u64::from(a));
                inp.set(m, "s_axil_wdata", u64::from(d));
            }
            Some((_, Op::Read(a))) => {
                arv = !self.ar_done;
                inp.set(m, "s_axil_araddr", u64::from(a));
            }
            None => {}
        }
        inp.set(m, "s_axil_awvalid", u64::from(awv));
        inp.set(m, "s_axil_wvalid", u64::from(wv));
        inp.set(m, "s_axil_arvalid", u64::from(arv));
    }

    fn sample(&mut self, m: &Model, core: &Core) {
        match self.cur {
            Some((_, Op::Write(a, _))) => {
                self.aw_done |= m.get("s_axil_awready") == 1;
                self.w_done |= m.get("s_axil_wready") == 1;
                if m.get("s_axil_bvalid") == 1 {
                    let resp = m.get("s_axil_bresp");
                    if resp != 0 {
                        tracing::warn!(addr = a, resp, "sim: register write answered with an error");
                    }
                    self.finish();
                }
            }
            Some((t, Op::Read(_))) => {
                self.ar_done |= m.get("s_axil_arready") == 1;
                if m.get("s_axil_rvalid") == 1 {
                    let v = m.get("s_axil_rdata") as u32;
                    relock(&core.regs).results.insert(t, v);
                    core.regs_cv.notify_all();
                    self.finish();
                }
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        self.cur = None;
        self.aw_done = false;
        self.w_done = false;
        self.ar_done = false;
    }
}

/// Frames out of `m_axis_link` (always ready) and into `s_axis_link`.
struct LinkPorts {
    k: usize,
    out: Vec<u8>,
    inp: Option<Vec<u8>>,
    pos: usize,
    offered: bool,
}

impl LinkPorts {
    fn drive(&mut self, m: &mut Model, inp: &mut Inputs) {
        self.offered = false;
        if let Some(f) = &self.inp {
            let end = (self.pos + self.k).min(f.len());
            m.set_bytes("s_axis_link_tdata", &f[self.pos..end]);
            m.set_words("s_axis_link_tkeep", &keep_words(end - self.pos, self.k));
            inp.set(m, "s_axis_link_tlast", u64::from(end == f.len()));
            self.offered = true;
        }
        inp.set(m, "s_axis_link_tvalid", u64::from(self.offered));
    }

    /// Returns a frame the engine finished sending, and whether any beat moved.
    fn sample(&mut self, m: &Model) -> (Option<Vec<u8>>, bool) {
        let mut any = false;
        if self.offered && m.get("s_axis_link_tready") == 1 {
            self.pos += self.k;
            if self.pos >= self.inp.as_ref().map_or(0, Vec::len) {
                self.inp = None;
                self.pos = 0;
            }
            any = true;
        }
        if m.get("m_axis_link_tvalid") == 1 {
            any = true;
            let n = keep_count(&m.get_words("m_axis_link_tkeep"), self.k);
            self.out.extend_from_slice(&m.get_bytes("m_axis_link_tdata")[..n]);
            if m.get("m_axis_link_tlast") == 1 {
                return (Some(std::mem::take(&mut self.out)), true);
            }
        }
        (None, any)
    }
}

/// Runs the model until [`Core::request_stop`]. Called on the simulation thread (the
/// model lives and dies there).
pub(crate) fn run(core: Arc<Core>, maps: Vec<Mapping>, mut link: Box<dyn FrameLink>, width: usize, name: String) {
    let mut m = Model::engine(width, &name);
    let k = lanes(width);
    let mut inp = Inputs { last: HashMap::new() };
    for (port, v) in [
        ("m_axi_arready", 1),
        ("m_axi_awready", 1),
        ("m_axi_wready", 1),
        ("m_axi_rvalid", 0),
        ("m_axi_bvalid", 0),
        ("m_axi_bresp", 0),
        ("m_axi_rresp", 0),
        ("s_axil_wstrb", 0xF),
        ("s_axil_bready", 1),
        ("s_axil_rready", 1),
        ("s_axil_awvalid", 0),
        ("s_axil_wvalid", 0),
        ("s_axil_arvalid", 0),
        ("m_axis_link_tready", 1),
        ("s_axis_link_tvalid", 0),
    ] {
        m.set(port, v);
        inp.last.insert(port, v);
    }
    let mut axi = AxiSlave {
        k,
        ar: VecDeque::new(),
        r_loaded: false,
        r_resp: 0,
        aw: VecDeque::new(),
        w: VecDeque::new(),
        b: VecDeque::new(),
        beat: vec![0; k],
    };
    let mut lite = LiteMaster::default();
    let mut ports = LinkPorts { k, out: Vec::new(), inp: None, pos: 0, offered: false };
    let mut idle = 0u64;
    let mut batch = 0u64;
    while !core.stop.load(Ordering::Acquire) {
        if lite.cur.is_none() && core.pending.load(Ordering::Acquire) > 0 {
            let mut q = relock(&core.regs);
            lite.cur = q.ops.pop_front();
            if lite.cur.is_some() {
                core.pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if ports.inp.is_none() {
            ports.inp = link.recv();
        }
        let busy = lite.cur.is_some() || ports.inp.is_some() || !axi.ar.is_empty() || !axi.aw.is_empty() || !axi.b.is_empty();
        axi.drive(&mut m, &mut inp, &maps, &core);
        lite.drive(&mut m, &mut inp);
        ports.drive(&mut m, &mut inp);
        m.eval();
        let mut any = axi.sample(&m, &maps, &core);
        lite.sample(&m, &core);
        let (frame, moved) = ports.sample(&m);
        any |= moved;
        m.tick();
        if let Some(f) = frame {
            link.send(f);
        }
        idle = if any || busy { 0 } else { idle + 1 };
        batch += 1;
        if batch == IDLE_BATCH {
            batch = 0;
            core.cycles.store(m.cycles(), Ordering::Relaxed);
            if idle >= IDLE_CYCLES {
                core.wake.sleep(IDLE_SLEEP);
            }
        }
    }
    core.cycles.store(m.cycles(), Ordering::Relaxed);
    core.stopped.store(true, Ordering::Release);
    core.regs_cv.notify_all();
    core.cq_cv.notify_all();
}
