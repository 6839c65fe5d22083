//! Two verilated engines (`EngineTop`) joined by a faulty link, each with its own host:
//! an AXI4 memory with random latency and back-pressure, an AXI4-Lite driver that
//! programs the rings and windows as a driver does, and host software that posts
//! submission entries and reaps completions. The scoreboard checks the HSI's promises:
//! the partner's window holds exactly what was posted (in order), every entry completes
//! once, in order, with the right status and sequence, nothing is written outside the
//! window or the completion ring, and the counters agree with what crossed the link.

mod bench;

use bench::{rng, StreamDriver, StreamMonitor};
use rand::rngs::SmallRng;
use rand::Rng;
use std::collections::VecDeque;
use tandem_hsi::codes::{CompletionStatus, FrameType, Opcode};
use tandem_hsi::entry::{completion, submission, CompletionEntry};
use tandem_hsi::frame::{decode_frame, FrameKind, MAX_PAYLOAD};
use tandem_hsi::regs::{control, counters, cq, id, link, memory, sq, Control, Counter, Irq, Status};
use tandem_hsi::vectors::{committed, from_hex};
use tandem_sim_tb::{Model, ENGINE_CLOCK_KHZ};

/// Host memory map of each node (byte addresses on its AXI4 bus).
const SQ_BASE: u64 = 0x1000;
const SQ_LOG2: u32 = 6;
const CQ_BASE: u64 = 0x2000;
const CQ_LOG2: u32 = 6;
const HOST_BASE: u64 = 0x1_0000;
const HOST_SIZE: u64 = 0x8_0000;
const WIN_BASE: u64 = 0x10_0000;
const WIN_SIZE: u64 = 0x20_0000;
const MEM_SIZE: usize = 0x30_1000;

/// The seed from `TANDEM_SEED` or a fresh one, with the line that reproduces it.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("TANDEM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed}; reproduce with: TANDEM_SEED={seed} cargo test -p tandem-sim-tb --release --test engine {test}");
    seed
}

/// AXI4 slave over host memory: random ready/valid stalls on every channel, random read
/// and write-response latency; checks every burst (INCR, aligned, within MAX_BURST,
/// inside one 4 KiB page) and that writes land only in the allowed ranges.
struct AxiMem {
    mem: Vec<u8>,
    k: usize,
    stall_pct: u32,
    max_latency: u64,
    max_burst: usize,
    allowed: Vec<(u64, u64)>,
    ar: VecDeque<(u64, usize, usize)>,
    aw: VecDeque<(usize, usize)>,
    w: VecDeque<(Vec<u8>, Vec<u32>, bool)>,
    b: VecDeque<u64>,
    arready: bool,
    awready: bool,
    wready: bool,
    rvalid: bool,
    bvalid: bool,
    bytes_written: u64,
}

impl AxiMem {
    fn new(k: usize, stall_pct: u32, max_latency: u64) -> Self {
        AxiMem {
            mem: vec![0; MEM_SIZE],
            k,
            stall_pct,
            max_latency,
            max_burst: 256,
            allowed: vec![],
            ar: VecDeque::new(),
            aw: VecDeque::new(),
            w: VecDeque::new(),
            b: VecDeque::new(),
            arready: false,
            awready: false,
            wready: false,
            rvalid: false,
            bvalid: false,
            bytes_written: 0,
        }
    }

    fn stall(&self, r: &mut SmallRng) -> bool {
        r.gen_range(0..100) < self.stall_pct
    }

    fn drive(&mut self, m: &mut Model, r: &mut SmallRng, now: u64) {
        self.arready = !self.stall(r);
        self.awready = !self.stall(r);
        self.wready = !self.stall(r);
        self.rvalid = false;
        if let Some(&(at, addr, n)) = self.ar.front() {
            if at <= now && !self.stall(r) {
                m.set_bytes("m_axi_rdata", &self.mem[addr..addr + self.k]);
                m.set("m_axi_rlast", u64::from(n == 1));
                m.set("m_axi_rresp", 0);
                self.rvalid = true;
            }
        }
        self.bvalid = self.b.front().is_some_and(|&at| at <= now) && !self.stall(r);
        m.set("m_axi_arready", u64::from(self.arready));
        m.set("m_axi_awready", u64::from(self.awready));
        m.set("m_axi_wready", u64::from(self.wready));
        m.set("m_axi_rvalid", u64::from(self.rvalid));
        m.set("m_axi_bvalid", u64::from(self.bvalid));
        m.set("m_axi_bresp", 0);
    }

    fn check_burst(&self, what: &str, addr: usize, beats: usize, m: &Model, size_port: &str, burst_port: &str) {
        assert_eq!(m.get(burst_port), 1, "{what}: INCR bursts only");
        assert_eq!(1usize << m.get(size_port), self.k, "{what}: full-width beats");
        assert_eq!(addr % self.k, 0, "{what}: beat-aligned address {addr:#x}");
        assert!(beats <= self.max_burst, "{what}: burst of {beats} beats above MAX_BURST {}", self.max_burst);
        assert_eq!(addr / 4096, (addr + beats * self.k - 1) / 4096, "{what}: burst at {addr:#x} of {beats} beats crosses 4 KiB");
        assert!(addr + beats * self.k <= MEM_SIZE, "{what}: burst at {addr:#x} outside host memory");
    }

    fn sample(&mut self, m: &Model, r: &mut SmallRng, now: u64) {
        if self.arready && m.get("m_axi_arvalid") == 1 {
            let (a, n) = (m.get("m_axi_araddr") as usize, m.get("m_axi_arlen") as usize + 1);
            self.check_burst("AR", a, n, m, "m_axi_arsize", "m_axi_arburst");
            self.ar.push_back((now + r.gen_range(1..=self.max_latency), a, n));
        }
        if self.rvalid && m.get("m_axi_rready") == 1 {
            let f = self.ar.front_mut().expect("R beat of a burst");
            f.1 += self.k;
            f.2 -= 1;
            if f.2 == 0 {
                self.ar.pop_front();
            }
        }
        if self.awready && m.get("m_axi_awvalid") == 1 {
            let (a, n) = (m.get("m_axi_awaddr") as usize, m.get("m_axi_awlen") as usize + 1);
            self.check_burst("AW", a, n, m, "m_axi_awsize", "m_axi_awburst");
            self.aw.push_back((a, n));
        }
        if self.wready && m.get("m_axi_wvalid") == 1 {
            self.w.push_back((m.get_bytes("m_axi_wdata")[..self.k].to_vec(), m.get_words("m_axi_wstrb"), m.get("m_axi_wlast") == 1));
        }
        if self.bvalid && m.get("m_axi_bready") == 1 {
            self.b.pop_front();
        }
        while let (Some(&(addr, n)), false) = (self.aw.front(), self.w.is_empty()) {
            let (data, strb, last) = self.w.pop_front().unwrap();
            for (i, byte) in data.iter().enumerate() {
                if (strb[i / 32] >> (i % 32)) & 1 == 1 {
                    let at = (addr + i) as u64;
                    assert!(
                        self.allowed.iter().any(|&(lo, len)| at >= lo && at < lo + len),
                        "write to {at:#x}, outside the completion ring and the mirror window"
                    );
                    self.mem[addr + i] = *byte;
                    self.bytes_written += 1;
                }
            }
            assert_eq!(last, n == 1, "WLAST exactly on a burst's last beat");
            let f = self.aw.front_mut().unwrap();
            f.0 += self.k;
            f.1 -= 1;
            if f.1 == 0 {
                self.aw.pop_front();
                self.b.push_back(now + r.gen_range(1..=self.max_latency));
            }
        }
    }
}

/// One AXI4-Lite transaction.
#[derive(Debug, Clone, Copy)]
enum Lite {
    Write(u32, u32),
    Read(u32),
}

/// AXI4-Lite master: one transaction at a time, address and data offered together,
/// responses taken with random delays.
#[derive(Default)]
struct LiteDriver {
    queue: VecDeque<Lite>,
    aw_done: bool,
    w_done: bool,
    ar_done: bool,
    bready: bool,
    rready: bool,
    reads: VecDeque<u32>,
    done: u64,
}

impl LiteDriver {
    fn drive(&mut self, m: &mut Model, r: &mut SmallRng) {
        let (mut awv, mut wv, mut arv) = (false, false, false);
        self.bready = r.gen_range(0..100) < 70;
        self.rready = r.gen_range(0..100) < 70;
        match self.queue.front() {
            Some(Lite::Write(a, d)) => {
                awv = !self.aw_done;
                wv = !self.w_done;
                m.set("s_axil_awaddr", u64::from(*a));
                m.set("s_axil_wdata", u64::from(*d));
                m.set("s_axil_wstrb", 0xF);
            }
            Some(Lite::Read(a)) => {
                arv = !self.ar_done;
                m.set("s_axil_araddr", u64::from(*a));
            }
            None => {}
        }
        m.set("s_axil_awvalid", u64::from(awv));
        m.set("s_axil_wvalid", u64::from(wv));
        m.set("s_axil_arvalid", u64::from(arv));
        m.set("s_axil_bready", u64::from(self.bready));
        m.set("s_axil_rready", u64::from(self.rready));
    }

    fn sample(&mut self, m: &Model) {
        match self.queue.front() {
            Some(Lite::Write(..)) => {
                if !self.aw_done && m.get("s_axil_awready") == 1 {
                    self.aw_done = true;
                }
                if !self.w_done && m.get("s_axil_wready") == 1 {
                    self.w_done = true;
                }
                if self.bready && m.get("s_axil_bvalid") == 1 {
                    assert_eq!(m.get("s_axil_bresp"), 0, "register write answered OKAY");
                    self.finish();
                }
            }
            Some(Lite::Read(..)) => {
                if !self.ar_done && m.get("s_axil_arready") == 1 {
                    self.ar_done = true;
                }
                if self.rready && m.get("s_axil_rvalid") == 1 {
                    self.reads.push_back(m.get("s_axil_rdata") as u32);
                    self.finish();
                }
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        self.queue.pop_front();
        self.aw_done = false;
        self.w_done = false;
        self.ar_done = false;
        self.done += 1;
    }
}

/// What the host software expects of one posted entry.
#[derive(Debug, Clone)]
struct Posted {
    cookie: u32,
    opcode: u8,
    status: CompletionStatus,
    window_offset: u64,
    payload: Vec<u8>,
}

/// Host software: builds entries, posts them, reaps completions and checks each.
struct HostSw {
    sq_head: u32,
    cq_tail: u32,
    phase: bool,
    pending: VecDeque<Posted>,
    completed: usize,
    posted: usize,
    accepted: u64,
    next_payload: u64,
    reference: Vec<u8>,
    cookie: u32,
    statuses: [usize; 6],
    doorbell_at: VecDeque<u64>,
    latencies: Vec<u64>,
    completed_at: Vec<u64>,
}

impl HostSw {
    fn new() -> Self {
        HostSw {
            sq_head: 0,
            cq_tail: 0,
            phase: true,
            pending: VecDeque::new(),
            completed: 0,
            posted: 0,
            accepted: 0,
            next_payload: HOST_BASE,
            reference: vec![0; WIN_SIZE as usize],
            cookie: 0x1000,
            statuses: [0; 6],
            doorbell_at: VecDeque::new(),
            latencies: vec![],
            completed_at: vec![],
        }
    }

    /// A random entry (valid data most of the time, every error kind sometimes).
    fn random_entry(&mut self, r: &mut SmallRng, big: bool) -> ([u8; 32], Vec<u8>) {
        let mut e = [0u8; 32];
        // The first entries take every error kind once, so each status occurs in every run.
        const FIRST: [u32; 8] = [0, 8, 12, 16, 19, 21, 22, 50];
        let pick = FIRST.get(self.posted).copied().unwrap_or_else(|| r.gen_range(0..100));
        let len: u32 = if big {
            4096
        } else {
            match r.gen_range(0..10) {
                0 => r.gen_range(1..8),
                1..=6 => r.gen_range(1..600),
                _ => r.gen_range(600..=4096),
            }
        };
        let mut opcode = if r.gen_bool(0.5) { Opcode::Log.code() } else { Opcode::Page.code() };
        let mut length = len;
        let mut window_offset = r.gen_range(0..WIN_SIZE - u64::from(len));
        if self.next_payload + u64::from(len) > HOST_BASE + HOST_SIZE {
            self.next_payload = HOST_BASE;
        }
        let mut host_addr = self.next_payload;
        self.next_payload += u64::from(len) + r.gen_range(0..64);
        let payload: Vec<u8> = (0..len).map(|_| r.gen()).collect();
        if !big {
            match pick {
                0..=7 => {
                    opcode = Opcode::Barrier.code();
                    length = 0;
                    window_offset = 0;
                }
                8..=11 => length = MAX_PAYLOAD as u32 + r.gen_range(1..5000),
                12..=15 => host_addr = HOST_BASE + HOST_SIZE - u64::from(len) + r.gen_range(1..100),
                16..=18 => {
                    opcode = Opcode::Barrier.code();
                    length = r.gen_range(1..100);
                }
                19..=20 => opcode = 9,
                21 => submission::FLAGS.put(&mut e, 1),
                22..=26 => window_offset = WIN_SIZE - u64::from(len) + r.gen_range(1..2000),
                _ => {}
            }
        }
        submission::OPCODE.put(&mut e, opcode.into());
        submission::SERVICE_TAG.put(&mut e, r.gen::<u32>().into());
        submission::HOST_ADDR.put(&mut e, host_addr);
        submission::WINDOW_OFFSET.put(&mut e, window_offset);
        submission::LENGTH.put(&mut e, length.into());
        self.cookie += 1;
        submission::COOKIE.put(&mut e, self.cookie.into());
        (e, payload)
    }

    /// The status the HSI promises for `e` (as `drivers::api::check_entry`, then the
    /// partner's window check).
    fn expected_status(e: &[u8; 32]) -> CompletionStatus {
        let op = submission::OPCODE.get(e) as u8;
        let len = submission::LENGTH.get(e);
        let addr = submission::HOST_ADDR.get(e);
        let off = submission::WINDOW_OFFSET.get(e);
        if submission::FLAGS.get(e) != 0 || submission::RESERVED.get(e) != 0 || Opcode::try_from(op).is_err() {
            return CompletionStatus::BadOpcode;
        }
        if len > MAX_PAYLOAD as u64 {
            return CompletionStatus::TooLong;
        }
        if op == Opcode::Barrier.code() {
            if len != 0 {
                return CompletionStatus::BadOpcode;
            }
        } else if addr < HOST_BASE || addr - HOST_BASE > HOST_SIZE || len > HOST_SIZE - (addr - HOST_BASE) {
            return CompletionStatus::HostBounds;
        }
        if off > WIN_SIZE || len > WIN_SIZE - off {
            return CompletionStatus::RemoteBounds;
        }
        CompletionStatus::Ok
    }

    /// Writes the entry (and its payload) into host memory; returns the new SQ.HEAD.
    fn post(&mut self, mem: &mut AxiMem, e: [u8; 32], payload: &[u8]) -> u32 {
        let addr = submission::HOST_ADDR.get(&e) as usize;
        let len = submission::LENGTH.get(&e) as usize;
        if len <= payload.len() && addr + len <= MEM_SIZE {
            mem.mem[addr..addr + len].copy_from_slice(&payload[..len]);
        }
        let slot = SQ_BASE as usize + self.sq_head as usize * submission::SIZE;
        mem.mem[slot..slot + submission::SIZE].copy_from_slice(&e);
        self.sq_head = (self.sq_head + 1) % (1 << SQ_LOG2);
        let status = Self::expected_status(&e);
        let data = if status == CompletionStatus::Ok { payload[..len].to_vec() } else { vec![] };
        self.pending.push_back(Posted {
            cookie: submission::COOKIE.get(&e) as u32,
            opcode: submission::OPCODE.get(&e) as u8,
            status,
            window_offset: submission::WINDOW_OFFSET.get(&e),
            payload: data,
        });
        self.posted += 1;
        self.sq_head
    }

    /// Reaps new completions from host memory; returns how many.
    fn reap(&mut self, mem: &AxiMem, seed: u64, now: u64) -> usize {
        let mut n = 0;
        loop {
            let at = CQ_BASE as usize + self.cq_tail as usize * completion::SIZE;
            let raw = &mem.mem[at..at + completion::SIZE];
            if (completion::PHASE.get(raw) & 1 == 1) != self.phase {
                return n;
            }
            // Raw fields: a BadOpcode completion echoes an opcode no decoder accepts.
            let cookie = completion::COOKIE.get(raw) as u32;
            let status = CompletionStatus::try_from(completion::STATUS.get(raw) as u8)
                .unwrap_or_else(|e| panic!("seed {seed}: completion status: {e}"));
            let sequence = completion::SEQUENCE.get(raw);
            assert_eq!(completion::RESERVED.get(raw), 0, "seed {seed}: reserved byte 0");
            let want = self.pending.pop_front().unwrap_or_else(|| panic!("seed {seed}: completion {cookie:#x} for no posted entry"));
            assert_eq!(cookie, want.cookie, "seed {seed}: completions in submission order, each once");
            assert_eq!(status, want.status, "seed {seed}: status of cookie {:#x}", want.cookie);
            assert_eq!(completion::OPCODE.get(raw) as u8, want.opcode, "seed {seed}: opcode echoed");
            if let Ok((c, _)) = CompletionEntry::decode(raw) {
                assert_eq!((c.cookie, c.sequence), (cookie, sequence), "seed {seed}: tandem_hsi decodes the same entry");
            }
            // An entry aborted after it was sent carries the sequence it was sent with.
            let sent = matches!(status, CompletionStatus::Ok | CompletionStatus::RemoteBounds)
                || (status == CompletionStatus::Aborted && sequence != 0);
            if sent {
                self.accepted += 1;
                assert_eq!(sequence, self.accepted, "seed {seed}: sequences consecutive from 1 over sent entries");
            } else {
                assert_eq!(sequence, 0, "seed {seed}: an entry never sent completes with sequence 0");
            }
            if status == CompletionStatus::Ok && !want.payload.is_empty() {
                let o = want.window_offset as usize;
                self.reference[o..o + want.payload.len()].copy_from_slice(&want.payload);
            }
            self.statuses[status.code() as usize] += 1;
            if let Some(t) = self.doorbell_at.pop_front() {
                self.latencies.push(now - t);
            }
            self.completed_at.push(now);
            self.completed += 1;
            self.cq_tail = (self.cq_tail + 1) % (1 << CQ_LOG2);
            if self.cq_tail == 0 {
                self.phase = !self.phase;
            }
            n += 1;
        }
    }
}

/// Link faults in one direction, in percent of frames.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    drop: u32,
    corrupt: u32,
    duplicate: u32,
    max_delay: u64,
}

/// What crossed one direction of the link, decoded with `tandem_hsi`.
#[derive(Debug, Default)]
struct LinkLog {
    frames: u64,
    data_first: u64,
    data_again: u64,
    max_seq: u64,
    nacks: u64,
    delivered_acks: u64,
    delivered_nacks: u64,
    delivered_heartbeats: u64,
    delivered_corrupt: u64,
    delivered_intact: u64,
}

/// Cycles each interface of one engine was busy (a beat moved) or held up, for finding
/// where throughput goes.
#[derive(Debug, Default, Clone, Copy)]
struct Busy {
    /// R beats taken.
    r: u64,
    /// Cycles the master waited for an R beat (RREADY without RVALID).
    r_wait: u64,
    /// Cycles an R beat was held up (RVALID without RREADY).
    r_held: u64,
    /// W beats taken.
    w: u64,
    /// AR bursts taken.
    ar: u64,
    /// Link beats sent.
    link_out: u64,
    /// Link beats received.
    link_in: u64,
    /// Cycles a received link beat was offered and not taken.
    link_in_held: u64,
}

impl Busy {
    fn sample(&mut self, m: &Model) {
        let (rv, rr) = (m.get("m_axi_rvalid"), m.get("m_axi_rready"));
        self.r += rv & rr;
        self.r_wait += rr & (1 - rv);
        self.r_held += rv & (1 - rr);
        self.w += m.get("m_axi_wvalid") & m.get("m_axi_wready");
        self.ar += m.get("m_axi_arvalid") & m.get("m_axi_arready");
        self.link_out += m.get("m_axis_link_tvalid") & m.get("m_axis_link_tready");
        let v = m.get("s_axis_link_tvalid");
        self.link_in += v & m.get("s_axis_link_tready");
        self.link_in_held += v & (1 - m.get("s_axis_link_tready"));
    }
}

/// One engine with its host.
struct Node {
    busy: Busy,
    m: Model,
    mem: AxiMem,
    lite: LiteDriver,
    out: StreamMonitor,
    inp: StreamDriver,
    host: HostSw,
    taken: usize,
}

impl Node {
    fn new(width: usize, name: &str, stall: u32, latency: u64) -> Self {
        let mut mem = AxiMem::new(width / 8, stall, latency);
        mem.allowed = vec![(CQ_BASE, (completion::SIZE << CQ_LOG2) as u64), (WIN_BASE, WIN_SIZE)];
        let mut out = StreamMonitor::new("m_axis_link");
        out.stall_pct = stall / 2;
        let mut inp = StreamDriver::new("s_axis_link");
        inp.idle_pct = stall / 2;
        Node {
            busy: Busy::default(),
            m: Model::engine(width, name),
            mem,
            lite: LiteDriver::default(),
            out,
            inp,
            host: HostSw::new(),
            taken: 0,
        }
    }
}

/// Two engines, their hosts and the link between them.
struct Pair {
    n: [Node; 2],
    r: SmallRng,
    faults: [Faults; 2],
    flight: [Vec<(u64, Vec<u8>, bool)>; 2],
    log: [LinkLog; 2],
    seed: u64,
}

impl Pair {
    fn new(width: usize, test: &str, seed: u64, stall: u32, latency: u64, faults: Faults) -> Self {
        Pair {
            n: [Node::new(width, &format!("{test}_a"), stall, latency), Node::new(width, &format!("{test}_b"), stall, latency)],
            r: rng(seed),
            faults: [faults; 2],
            flight: [vec![], vec![]],
            log: [LinkLog::default(), LinkLog::default()],
            seed,
        }
    }

    fn now(&self) -> u64 {
        self.n[0].m.cycles()
    }

    /// One clock cycle of both engines, their hosts and the link.
    fn step(&mut self) {
        let now = self.now();
        for node in &mut self.n {
            node.mem.drive(&mut node.m, &mut self.r, now);
            node.lite.drive(&mut node.m, &mut self.r);
            node.out.drive(&mut node.m, &mut self.r);
            node.inp.drive(&mut node.m, &mut self.r);
            node.m.eval();
            node.mem.sample(&node.m, &mut self.r, now);
            node.busy.sample(&node.m);
            node.lite.sample(&node.m);
            node.out.sample(&node.m);
            node.inp.sample(&node.m);
            node.m.tick();
        }
        for d in 0..2 {
            let seed = self.seed;
            while self.n[d].taken < self.n[d].out.frames.len() {
                let f = self.n[d].out.frames[self.n[d].taken].0.clone();
                self.n[d].taken += 1;
                let (h, _, _) = decode_frame(&f).unwrap_or_else(|e| panic!("seed {seed}: engine {d} sent an invalid frame: {e}"));
                let log = &mut self.log[d];
                log.frames += 1;
                match h.kind {
                    FrameKind::Data { .. } => {
                        if h.sequence > log.max_seq {
                            log.max_seq = h.sequence;
                            log.data_first += 1;
                        } else {
                            log.data_again += 1;
                        }
                    }
                    FrameKind::Nack { .. } => log.nacks += 1,
                    _ => {}
                }
                let fl = self.faults[d];
                let due = now + self.r.gen_range(0..=fl.max_delay);
                let roll = self.r.gen_range(0..100);
                if roll < fl.drop {
                    continue;
                }
                if roll < fl.drop + fl.corrupt {
                    let mut c = f.clone();
                    let at = self.r.gen_range(0..c.len());
                    c[at] ^= 1 << self.r.gen_range(0..8);
                    self.flight[d].push((due, c, true));
                    continue;
                }
                if roll < fl.drop + fl.corrupt + fl.duplicate {
                    self.flight[d].push((due + 1, f.clone(), false));
                }
                self.flight[d].push((due, f, false));
            }
            self.flight[d].sort_by_key(|x| x.0);
            while self.flight[d].first().is_some_and(|x| x.0 <= now) {
                let (_, f, corrupt) = self.flight[d].remove(0);
                let log = &mut self.log[d];
                if corrupt {
                    log.delivered_corrupt += 1;
                } else {
                    log.delivered_intact += 1;
                    match decode_frame(&f).map(|x| x.0.frame_type()) {
                        Ok(FrameType::Ack) => log.delivered_acks += 1,
                        Ok(FrameType::Nack) => log.delivered_nacks += 1,
                        Ok(FrameType::Heartbeat) => log.delivered_heartbeats += 1,
                        _ => {}
                    }
                }
                self.n[1 - d].inp.push(f);
            }
        }
    }

    /// Runs until `done` holds, at most `budget` cycles.
    fn run_until(&mut self, budget: u64, what: &str, mut done: impl FnMut(&mut Pair) -> bool) {
        for _ in 0..budget {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!("seed {}: {what} not reached within {budget} cycles", self.seed);
    }

    /// Register write through AXI4-Lite handshakes (completes before returning).
    fn write(&mut self, node: usize, addr: u32, value: u32) {
        self.n[node].lite.queue.push_back(Lite::Write(addr, value));
        let want = self.n[node].lite.done + self.n[node].lite.queue.len() as u64;
        self.run_until(1000, "register write", |p| p.n[node].lite.done >= want);
    }

    /// Register read through AXI4-Lite handshakes.
    fn read(&mut self, node: usize, addr: u32) -> u32 {
        self.n[node].lite.queue.push_back(Lite::Read(addr));
        self.run_until(1000, "register read", |p| !p.n[node].lite.reads.is_empty());
        self.n[node].lite.reads.pop_front().unwrap()
    }

    fn write64(&mut self, node: usize, lo: u32, v: u64) {
        self.write(node, lo, v as u32);
        self.write(node, lo + 4, (v >> 32) as u32);
    }

    /// Programs rings, regions and tuning as a driver does, then enables the engine.
    fn program(&mut self, node: usize, max_burst: u32, retransmit_us: u32, heartbeat_us: u32) {
        let width = self.n[node].m.width() as u32;
        assert_eq!(self.read(node, id::BASE + tandem_hsi::regs::TYPE), id::TYPE_ID, "ID block at 0");
        assert_eq!(self.read(node, id::BASE + id::DATAPATH_BITS), width, "DATAPATH_BITS");
        assert_eq!(self.read(node, id::BASE + id::CLOCK_KHZ), ENGINE_CLOCK_KHZ, "CLOCK_KHZ");
        self.write64(node, sq::BASE + sq::BASE_LO, SQ_BASE);
        self.write(node, sq::BASE + sq::SIZE_LOG2, SQ_LOG2);
        self.write64(node, cq::BASE + cq::BASE_LO, CQ_BASE);
        self.write(node, cq::BASE + cq::SIZE_LOG2, CQ_LOG2);
        self.write64(node, memory::BASE + memory::HOST_BASE_LO, HOST_BASE);
        self.write64(node, memory::BASE + memory::HOST_SIZE_LO, HOST_SIZE);
        self.write64(node, memory::BASE + memory::WINDOW_BASE_LO, WIN_BASE);
        self.write64(node, memory::BASE + memory::WINDOW_SIZE_LO, WIN_SIZE);
        self.write(node, control::BASE + control::MAX_BURST, max_burst);
        self.n[node].mem.max_burst = max_burst.clamp(1, 256) as usize;
        self.write(node, control::BASE + control::RETRANSMIT_US, retransmit_us);
        self.write(node, control::BASE + control::MAX_IN_FLIGHT, 8);
        self.write(node, control::BASE + control::HEARTBEAT_US, heartbeat_us);
        self.write(node, control::BASE + control::IRQ_ENABLE, 1);
        self.write(node, control::BASE + control::CONTROL, Control::ENABLE.bits());
    }

    fn counter(&mut self, node: usize, c: Counter) -> u64 {
        u64::from(self.read(node, counters::BASE + c.offset()))
    }

    /// Posts `count` random entries on each node in `senders`, doorbells in random
    /// batches, reaps completions (returning CQ entries), until everything completed.
    fn traffic(&mut self, senders: &[usize], count: usize, big: bool, budget: u64) {
        let mut left = [0usize; 2];
        for &s in senders {
            left[s] = count;
        }
        let outstanding_max = 32;
        let start = self.now();
        while self.now() - start < budget {
            for (node, left) in left.iter_mut().enumerate() {
                let n = &mut self.n[node];
                if *left > 0 && n.host.posted - n.host.completed < outstanding_max && n.lite.queue.is_empty() {
                    let batch = self.r.gen_range(1..=4).min(*left);
                    let mut head = 0;
                    for _ in 0..batch {
                        let (e, p) = n.host.random_entry(&mut self.r, big);
                        head = n.host.post(&mut n.mem, e, &p);
                        n.host.doorbell_at.push_back(n.m.cycles());
                    }
                    *left -= batch;
                    n.lite.queue.push_back(Lite::Write(sq::BASE + sq::HEAD, head));
                }
                let now = n.m.cycles();
                if n.host.reap(&n.mem, self.seed, now) > 0 {
                    n.lite.queue.push_back(Lite::Write(cq::BASE + cq::TAIL, n.host.cq_tail));
                }
            }
            if left == [0, 0] && self.n.iter().all(|n| n.host.pending.is_empty() && n.lite.queue.is_empty()) {
                return;
            }
            self.step();
        }
        panic!(
            "seed {}: traffic did not complete within {budget} cycles (completed {}/{} and {}/{})",
            self.seed, self.n[0].host.completed, self.n[0].host.posted, self.n[1].host.completed, self.n[1].host.posted
        );
    }

    /// The partner of `node` holds exactly what `node` posted and completed Ok.
    fn check_window(&self, node: usize) {
        let partner = &self.n[1 - node].mem.mem[WIN_BASE as usize..(WIN_BASE + WIN_SIZE) as usize];
        let reference = &self.n[node].host.reference;
        if partner != &reference[..] {
            let at = partner.iter().zip(reference.iter()).position(|(a, b)| a != b).unwrap();
            panic!("seed {}: partner window differs from what node {node} posted, first at offset {at:#x}", self.seed);
        }
    }
}

/// Seeded random descriptor streams both ways over a link with drops, corruption,
/// duplicates and delays, and AXI memories with random stalls and latency.
fn random_pair(width: usize, test: &str, count: usize) {
    let seed = seed(test);
    let faults = Faults { drop: 4, corrupt: 4, duplicate: 3, max_delay: 300 };
    let mut p = Pair::new(width, test, seed, 25, 40, faults);
    let max_burst = [1u32, 3, 16, 64, 300][(seed % 5) as usize];
    for node in 0..2 {
        p.program(node, max_burst, 30, 40);
    }
    p.run_until(100_000, "link up on both engines", |p| p.log[0].delivered_acks > 0 && p.log[1].delivered_acks > 0);
    for node in 0..2 {
        let mut state = 0;
        for _ in 0..200 {
            state = p.read(node, link::BASE + link::STATE) & 0xFF;
            if state == 2 {
                break;
            }
        }
        assert_eq!(state, 2, "seed {seed}: node {node} link Up after the heartbeat exchange");
    }
    p.traffic(&[0, 1], count, false, 3_000_000);
    // Stop idle heartbeats (nothing is outstanding, so no timer runs either), let the last
    // frames and their ACKs land, then compare: no frame crosses while counters are read.
    for node in 0..2 {
        p.write(node, control::BASE + control::HEARTBEAT_US, 0);
    }
    for _ in 0..3_000 {
        p.step();
    }
    p.run_until(5_000, "quiet link", |p| p.flight.iter().all(Vec::is_empty) && p.n.iter().all(|n| n.inp.pending() == 0));
    let frames = [p.log[0].frames, p.log[1].frames];
    for node in 0..2 {
        p.check_window(node);
        let h = &p.n[node].host;
        eprintln!("{test}: node {node} statuses (Ok, RemoteBounds, TooLong, BadOpcode, HostBounds, Aborted) = {:?}", h.statuses);
        assert!(
            h.statuses[0] > 0 && h.statuses[1] > 0 && h.statuses[2] > 0 && h.statuses[3] > 0 && h.statuses[4] > 0,
            "seed {seed}: every status occurred"
        );
    }
    check_counters(&mut p);
    assert_eq!([p.log[0].frames, p.log[1].frames], frames, "seed {seed}: the link stayed quiet while counters were read");
}

/// Counters against what the link model saw cross the link.
fn check_counters(p: &mut Pair) {
    let seed = p.seed;
    for node in 0..2 {
        let other = 1 - node;
        let local = {
            let s = &p.n[node].host.statuses;
            (s[2] + s[3] + s[4]) as u64
        };
        // Consumed frames: every Ok entry, and the barrier sent in place of each RemoteBounds one.
        let ok_from_other = (p.n[other].host.statuses[0] + p.n[other].host.statuses[1]) as u64;
        let accepted = p.n[node].host.accepted;
        let (frames, first, again, nacks) = (p.log[node].frames, p.log[node].data_first, p.log[node].data_again, p.log[node].nacks);
        let (acks_in, nacks_in, hbs_in, corrupt_in) =
            (p.log[other].delivered_acks, p.log[other].delivered_nacks, p.log[other].delivered_heartbeats, p.log[other].delivered_corrupt);
        let got = |p: &mut Pair, c| p.counter(node, c);
        assert_eq!(got(p, Counter::FramesTx), frames, "seed {seed}: node {node} FramesTx");
        assert_eq!(got(p, Counter::DataTx), first, "seed {seed}: node {node} DataTx");
        assert_eq!(first, accepted, "seed {seed}: node {node} sent every accepted entry once for the first time");
        assert_eq!(got(p, Counter::Retransmits), again, "seed {seed}: node {node} Retransmits");
        assert_eq!(got(p, Counter::NacksTx), nacks, "seed {seed}: node {node} NacksTx");
        assert_eq!(got(p, Counter::LocalRejects), local, "seed {seed}: node {node} LocalRejects");
        assert_eq!(got(p, Counter::DataRx), ok_from_other, "seed {seed}: node {node} DataRx");
        assert_eq!(got(p, Counter::AcksRx), acks_in, "seed {seed}: node {node} AcksRx");
        assert_eq!(got(p, Counter::NacksRx), nacks_in, "seed {seed}: node {node} NacksRx");
        assert_eq!(got(p, Counter::HeartbeatsRx), hbs_in, "seed {seed}: node {node} HeartbeatsRx");
        let errs = got(p, Counter::CrcErrors) + got(p, Counter::HeaderErrors);
        assert_eq!(errs, corrupt_in, "seed {seed}: node {node} CrcErrors + HeaderErrors = corrupted frames delivered");
        assert!(
            got(p, Counter::BoundsRejects) >= p.n[other].host.statuses[1] as u64,
            "seed {seed}: node {node} BoundsRejects at least the partner's RemoteBounds entries"
        );
        let intact = p.log[other].delivered_intact;
        assert_eq!(got(p, Counter::FramesRx), intact, "seed {seed}: node {node} FramesRx = intact frames delivered");
        assert_eq!(p.n[node].m.get("irq"), 1, "seed {seed}: node {node} interrupt raised by completions");
    }
}

#[test]
fn random_descriptors_over_a_faulty_link_at_64_bits() {
    random_pair(64, "random_descriptors_over_a_faulty_link_at_64_bits", 120);
}

#[test]
fn random_descriptors_over_a_faulty_link_at_512_bits() {
    random_pair(512, "random_descriptors_over_a_faulty_link_at_512_bits", 120);
}

/// Descriptor-to-completion latency (lone 4 KiB entry) and throughput of 4 KiB pages
/// from one engine to the other: no faults, no stalls, 20-cycle memory latency.
/// Returns bytes/cycle from the first doorbell to the last completion (pipeline fill
/// included), bytes/cycle in steady state (from the first completion to the last) and
/// the lone latency.
fn performance(width: usize) -> (f64, f64, u64) {
    let test = format!("performance_{width}");
    let mut p = Pair::new(width, &test, 7, 0, 20, Faults::default());
    p.n[0].mem.stall_pct = 0;
    for node in 0..2 {
        p.program(node, 256, 1000, 1000);
    }
    p.run_until(20_000, "link up", |p| p.log[0].delivered_acks > 0 && p.log[1].delivered_acks > 0);
    p.traffic(&[0], 1, true, 100_000);
    let lone = p.n[0].host.latencies[0];
    let start = p.now();
    let first_cpl = p.n[0].host.completed_at.len();
    let busy = [p.n[0].busy, p.n[1].busy];
    let pages = 48;
    p.traffic(&[0], pages, true, 1_000_000);
    let cycles = p.now() - start;
    if std::env::var("TANDEM_PERF_TRACE").is_ok() {
        let st = &p.n[0].out.starts;
        let gaps: Vec<u64> = st.windows(2).map(|w| w[1] - w[0]).collect();
        eprintln!("{width} bits: frame start intervals {gaps:?}");
        let f: Vec<u64> = p.n[0].out.frames.iter().map(|f| f.0.len() as u64).collect();
        eprintln!("{width} bits: frame lengths {f:?}");
    }
    let a = &p.n[0].busy;
    let b = &p.n[1].busy;
    eprintln!(
        "{width} bits, per page: sender R beats {:.1} (waited for {:.1}, held {:.1}), AR bursts {:.1}, link beats out {:.1}; receiver link beats in {:.1}, held {:.1}, W beats {:.1}; cycles {:.1}",
        (a.r - busy[0].r) as f64 / pages as f64,
        (a.r_wait - busy[0].r_wait) as f64 / pages as f64,
        (a.r_held - busy[0].r_held) as f64 / pages as f64,
        (a.ar - busy[0].ar) as f64 / pages as f64,
        (a.link_out - busy[0].link_out) as f64 / pages as f64,
        (b.link_in - busy[1].link_in) as f64 / pages as f64,
        (b.link_in_held - busy[1].link_in_held) as f64 / pages as f64,
        (b.w - busy[1].w) as f64 / pages as f64,
        cycles as f64 / pages as f64,
    );
    p.check_window(0);
    let bpc = (pages * 4096) as f64 / cycles as f64;
    let done = &p.n[0].host.completed_at[first_cpl..];
    let steady = ((pages - 1) * 4096) as f64 / (done[pages - 1] - done[0]) as f64;
    let lanes = (width / 8) as f64;
    eprintln!(
        "{width} bits: lone 4 KiB descriptor -> completion {lone} cycles; {pages} x 4 KiB pages in {cycles} cycles = {bpc:.2} bytes/cycle ({:.1} % of {lanes} bytes/cycle); steady state (first to last completion) {steady:.2} bytes/cycle ({:.1} %)",
        100.0 * bpc / lanes,
        100.0 * steady / lanes,
    );
    (bpc, steady, lone)
}

/// Guards the throughput: at least 90 % of the datapath in steady state at both widths
/// and from the first doorbell to the last completion at 64 bits. At 512 bits the
/// 48-page run also carries the pipeline fill (about 280 cycles, four frame times),
/// which keeps it below 90 % (about 88 %); it is held at 85 % so that it cannot slip.
#[test]
fn performance_at_64_and_512_bits() {
    let (b64, s64, l64) = performance(64);
    let (b512, s512, l512) = performance(512);
    assert!(b512 > b64, "wider datapath moves more: {b64:.2} vs {b512:.2} bytes/cycle");
    assert!(l64 > 0 && l512 > 0);
    for (width, steady) in [(64, s64), (512, s512)] {
        let pct = 100.0 * steady / (width / 8) as f64;
        assert!(pct >= 90.0, "{width} bits: steady-state 4 KiB page throughput {pct:.1} % is below 90 % of the datapath");
    }
    let pct64 = 100.0 * b64 / 8.0;
    assert!(pct64 >= 90.0, "64 bits: 4 KiB page throughput {pct64:.1} % is below 90 % of the datapath");
    let pct512 = 100.0 * b512 / 64.0;
    assert!(pct512 >= 85.0, "512 bits: 4 KiB page throughput {pct512:.1} % (fill included) is below 85 % of the datapath");
}

/// The shared vectors (the soft engine's encoder) into an RTL engine: a heartbeat opens
/// the stream, data vectors land in the window, the barrier is acknowledged, the large
/// sequence is a gap, and every invalid vector is counted and written nowhere.
fn shared_vectors(width: usize) {
    let mut p = Pair::new(width, &format!("shared_vectors_{width}"), 3, 10, 10, Faults::default());
    p.program(1, 16, 1000, 1000);
    let file = committed();
    let vec_of = |name: &str| file.vectors.iter().find(|v| v.name.starts_with(name)).unwrap_or_else(|| panic!("vector {name}"));
    // Node 0 stays disabled: its link output is not connected; frames go straight into node 1.
    let order = ["heartbeat", "log entry, 8 bytes", "log entry, 61 bytes", "tagged page, 4096 bytes", "barrier", "large sequence"];
    for name in order {
        p.n[1].inp.push(from_hex(&vec_of(name).hex).unwrap());
    }
    let invalid: Vec<_> = file.vectors.iter().filter(|v| v.header.is_none() && !v.name.starts_with("truncated")).collect();
    for v in &invalid {
        p.n[1].inp.push(from_hex(&v.hex).unwrap());
    }
    p.run_until(50_000, "vectors consumed", |p| p.n[1].inp.pending() == 0);
    p.run_until(5_000, "answers", |p| p.n[1].out.frames.len() >= 3);
    for _ in 0..500 {
        p.step();
    }
    let win = |p: &Pair, off: u64, len: usize| p.n[1].mem.mem[(WIN_BASE + off) as usize..(WIN_BASE + off) as usize + len].to_vec();
    for name in ["log entry, 8 bytes", "log entry, 61 bytes", "tagged page, 4096 bytes"] {
        let v = vec_of(name);
        let h = v.header.unwrap();
        let FrameKind::Data { window_offset, .. } = h.kind else { panic!("data vector") };
        assert_eq!(
            win(&p, window_offset, h.length as usize),
            from_hex(v.payload_hex.as_ref().unwrap()).unwrap(),
            "{width} bits: {name} in the window"
        );
    }
    let answers: Vec<_> = p.n[1].out.frames.iter().map(|(f, _)| decode_frame(f).unwrap().0).collect();
    assert!(
        answers.iter().any(|h| h.frame_type() == FrameType::Ack && h.sequence == 4),
        "{width} bits: barrier 4 acknowledged: {answers:?}"
    );
    assert!(
        answers.iter().any(|h| matches!(h.kind, FrameKind::Nack { reason: tandem_hsi::codes::NackReason::SequenceGap }) && h.sequence == 5),
        "{width} bits: the large sequence is a gap NACKed with 5: {answers:?}"
    );
    assert_eq!(p.counter(1, Counter::DataRx), 4, "{width} bits: three data vectors and the barrier consumed");
    assert_eq!(p.counter(1, Counter::HeartbeatsRx), 1);
    assert_eq!(p.counter(1, Counter::SequenceErrors), 1);
    let errs = p.counter(1, Counter::CrcErrors) + p.counter(1, Counter::HeaderErrors);
    assert_eq!(errs, invalid.len() as u64, "{width} bits: every invalid vector counted");
    assert_eq!(p.counter(1, Counter::CrcErrors), 1, "{width} bits: one CRC vector");
    assert_eq!(p.read(1, link::BASE + link::RX_EXPECTED_LO), 5, "{width} bits: expecting 5");
}

#[test]
fn shared_vectors_into_the_rtl_engine_at_64_bits() {
    shared_vectors(64);
}

#[test]
fn shared_vectors_into_the_rtl_engine_at_512_bits() {
    shared_vectors(512);
}

/// Posts `count` valid 4 KiB entries on `node` and rings the doorbell once.
fn post_pages(p: &mut Pair, node: usize, count: usize) {
    let n = &mut p.n[node];
    let mut head = 0;
    for _ in 0..count {
        let (e, pl) = n.host.random_entry(&mut p.r, true);
        head = n.host.post(&mut n.mem, e, &pl);
        n.host.doorbell_at.push_back(n.m.cycles());
    }
    p.write(node, sq::BASE + sq::HEAD, head);
}

fn status(p: &mut Pair, node: usize) -> Status {
    Status::from_bits_retain(p.read(node, control::BASE + control::STATUS))
}

/// CONTROL.ABORT (HSI control block): every outstanding entry, doorbelled and fetched or
/// not, completes Aborted, in order and once (the partner acknowledged none: its
/// direction of the link is cut); the sequence state restarts at 1; the engine then
/// stays quiet (not RUNNING, link Down, no frames, no completions) until ENABLE is
/// cleared and set again, after which entries complete Ok from sequence 1.
fn abort(width: usize) {
    let test = format!("abort_{width}");
    let mut p = Pair::new(width, &test, 11, 10, 20, Faults::default());
    for node in 0..2 {
        p.program(node, 64, 30, 40);
    }
    p.run_until(100_000, "link up", |p| p.log[0].delivered_acks > 0 && p.log[1].delivered_acks > 0);
    p.faults[0].drop = 100;
    // More than the in-flight table holds: some are still unfetched when ABORT comes.
    post_pages(&mut p, 0, 12);
    for _ in 0..4000 {
        p.step();
    }
    assert!(p.log[0].data_first > 0, "{width} bits: entries were sent before the abort");
    for e in p.n[0].host.pending.iter_mut() {
        e.status = CompletionStatus::Aborted;
        e.payload.clear();
    }
    p.write(0, control::BASE + control::CONTROL, (Control::ENABLE | Control::ABORT).bits());
    p.traffic(&[], 0, false, 200_000);
    assert_eq!(p.n[0].host.statuses[CompletionStatus::Aborted.code() as usize], 12, "{width} bits: all 12 aborted");
    // The abort ends once the last completion's write response is in.
    for _ in 0..200 {
        p.step();
    }
    assert_eq!(p.read(0, control::BASE + control::CONTROL) & Control::ABORT.bits(), 0, "{width} bits: ABORT reads 0");
    assert_eq!(p.read(0, sq::BASE + sq::TAIL), p.n[0].host.sq_head, "{width} bits: every doorbelled entry fetched");
    assert_eq!(p.read(0, link::BASE + link::NEXT_SEQ_LO), 1, "{width} bits: sequence state reset");
    let st = status(&mut p, 0);
    assert!(!st.contains(Status::RUNNING) && !st.contains(Status::ERROR), "{width} bits: stopped, no error: {st:?}");
    // Quiet: no frame and no completion for several heartbeat intervals, even with a
    // doorbell rung while stopped.
    let frames = p.log[0].frames;
    post_pages(&mut p, 0, 1);
    for _ in 0..30_000 {
        p.step();
    }
    assert_eq!(p.log[0].frames, frames, "{width} bits: no frame after the abort");
    assert_eq!(p.read(0, link::BASE + link::STATE) & 0xFF, 0, "{width} bits: link Down while stopped");
    let now = p.now();
    assert_eq!(p.n[0].host.reap(&p.n[0].mem, p.seed, now), 0, "{width} bits: no completion while stopped");
    // Re-enabled: the entry posted while stopped and new ones complete Ok from sequence 1.
    p.faults[0].drop = 0;
    p.n[0].host.accepted = 0;
    p.write(0, control::BASE + control::CONTROL, 0);
    p.write(0, control::BASE + control::CONTROL, Control::ENABLE.bits());
    assert!(status(&mut p, 0).contains(Status::RUNNING), "{width} bits: running again");
    post_pages(&mut p, 0, 3);
    p.traffic(&[], 0, false, 300_000);
    assert_eq!(p.n[0].host.statuses[0], 4, "{width} bits: entries after the restart complete Ok");
    assert_eq!(p.n[0].host.accepted, 4, "{width} bits: sequences 1 to 4 after the restart");
    p.check_window(0);
}

#[test]
fn abort_completes_every_outstanding_entry_at_64_bits() {
    abort(64);
}

#[test]
fn abort_completes_every_outstanding_entry_at_512_bits() {
    abort(512);
}

/// Link block and LinkResets (HSI counters block): with the link cut both ways for
/// longer than LINK_DEAD_HEARTBEATS heartbeat intervals each engine reports the link
/// Down; when frames flow again it is Up and LinkResets is 1; data flows afterwards.
fn link_cut(width: usize) {
    let test = format!("link_cut_{width}");
    let mut p = Pair::new(width, &test, 5, 10, 20, Faults::default());
    for node in 0..2 {
        p.program(node, 64, 30, 40);
    }
    p.run_until(100_000, "link up", |p| p.log[0].delivered_acks > 0 && p.log[1].delivered_acks > 0);
    let state = |p: &mut Pair, node| p.read(node, link::BASE + link::STATE) & 0xFF;
    for node in 0..2 {
        p.run_until(50_000, "Up", |p| state(p, node) == 2);
        assert_eq!(p.counter(node, Counter::LinkResets), 0, "{width} bits: node {node} no reset yet");
        p.write(node, control::BASE + control::IRQ_STATUS, Irq::all().bits());
    }
    p.faults = [Faults { drop: 100, ..Faults::default() }; 2];
    // Three 40 us intervals at 250 cycles/us, and some.
    for _ in 0..40_000 {
        p.step();
    }
    for node in 0..2 {
        assert_eq!(state(&mut p, node), 0, "{width} bits: node {node} link Down after the cut");
        let st = status(&mut p, node);
        assert!(st.contains(Status::RUNNING) && !st.contains(Status::LINK_UP), "{width} bits: node {node} {st:?}");
        let irq = p.read(node, control::BASE + control::IRQ_STATUS);
        assert_ne!(irq & Irq::LINK_CHANGE.bits(), 0, "{width} bits: node {node} LINK_CHANGE raised");
        assert_eq!(p.counter(node, Counter::LinkResets), 0, "{width} bits: node {node} not counted while Down");
    }
    p.faults = [Faults::default(); 2];
    for node in 0..2 {
        p.run_until(100_000, "Up again", |p| state(p, node) == 2);
    }
    for node in 0..2 {
        assert_eq!(p.counter(node, Counter::LinkResets), 1, "{width} bits: node {node} one link reset");
    }
    p.traffic(&[0, 1], 6, true, 500_000);
    for node in 0..2 {
        p.check_window(node);
    }
}

#[test]
fn link_cut_counts_one_link_reset_at_64_bits() {
    link_cut(64);
}

#[test]
fn link_cut_counts_one_link_reset_at_512_bits() {
    link_cut(512);
}

/// STATUS.ERROR (HSI control block): enabling with a bad ring or window configuration
/// sets ERROR (and IRQ_STATUS.ERROR), the engine does not run and fetches nothing; with
/// the configuration fixed, clearing and setting ENABLE runs it again.
fn bad_configuration(width: usize) {
    let test = format!("bad_configuration_{width}");
    let mut p = Pair::new(width, &test, 9, 10, 20, Faults::default());
    p.program(0, 64, 30, 40);
    assert_eq!(status(&mut p, 0) & (Status::RUNNING | Status::ERROR), Status::RUNNING, "{width} bits: a good configuration runs");
    let cases: [(&str, u32, u32, u32); 6] = [
        ("SQ.SIZE_LOG2 = 0", sq::BASE + sq::SIZE_LOG2, 0, SQ_LOG2),
        ("SQ.SIZE_LOG2 = 17", sq::BASE + sq::SIZE_LOG2, 17, SQ_LOG2),
        ("CQ.SIZE_LOG2 = 0", cq::BASE + cq::SIZE_LOG2, 0, CQ_LOG2),
        ("SQ.BASE not aligned", sq::BASE + sq::BASE_LO, SQ_BASE as u32 + 8, SQ_BASE as u32),
        ("CQ.BASE not aligned", cq::BASE + cq::BASE_LO, CQ_BASE as u32 + 4, CQ_BASE as u32),
        ("WINDOW_SIZE = 0", memory::BASE + memory::WINDOW_SIZE_LO, 0, WIN_SIZE as u32),
    ];
    let mut tail = 0;
    for (what, reg, bad, good) in cases {
        p.write(0, control::BASE + control::CONTROL, 0);
        p.write(0, control::BASE + control::IRQ_STATUS, Irq::all().bits());
        p.write(0, reg, bad);
        p.write(0, control::BASE + control::CONTROL, Control::ENABLE.bits());
        let st = status(&mut p, 0);
        assert!(st.contains(Status::ERROR) && !st.contains(Status::RUNNING), "{width} bits: {what}: {st:?}");
        assert_ne!(p.read(0, control::BASE + control::IRQ_STATUS) & Irq::ERROR.bits(), 0, "{width} bits: {what}: IRQ ERROR");
        post_pages(&mut p, 0, 1);
        for _ in 0..2000 {
            p.step();
        }
        assert_eq!(p.read(0, sq::BASE + sq::TAIL), tail, "{width} bits: {what}: nothing fetched");
        p.write(0, reg, good);
        p.write(0, control::BASE + control::CONTROL, 0);
        p.write(0, control::BASE + control::CONTROL, Control::ENABLE.bits());
        let st = status(&mut p, 0);
        assert_eq!(st & (Status::RUNNING | Status::ERROR), Status::RUNNING, "{width} bits: {what} fixed: {st:?}");
        tail += 1;
        let mut fetched = 0;
        for _ in 0..50 {
            fetched = p.read(0, sq::BASE + sq::TAIL);
            if fetched == tail {
                break;
            }
        }
        assert_eq!(fetched, tail, "{width} bits: {what} fixed: the entry is fetched");
    }
}

#[test]
fn bad_configuration_sets_error_at_64_bits() {
    bad_configuration(64);
}

#[test]
fn bad_configuration_sets_error_at_512_bits() {
    bad_configuration(512);
}
