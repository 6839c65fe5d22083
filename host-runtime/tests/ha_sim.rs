//! Deterministic simulation of a pair: two HA engines, the witness, a simulated network and
//! a model of the data path, in virtual time, driven by one seeded RNG.
//!
//! Reproduce a failing seed: `TANDEM_SIM_SEED=1234 cargo test -p tandem --test ha_sim -- --nocapture`
//! (runs that seed only, printing its trace). More seeds: `TANDEM_SIM_SEEDS=5000`.
//!
//! Invariants, checked after every simulated step (each with the reason it must hold):
//! - (a) `one_server`: never two nodes serving one service at the same virtual time (judged
//!   by the engines' own serving sets). Two servers would acknowledge diverging writes to
//!   one service; neither copy would hold all of them.
//! - (b) `no_lost_ack`: whenever a node starts serving a service, its state (the backing
//!   store plus its copy of the log) holds every write acknowledged so far, and a write is
//!   acknowledged unmirrored only while the witness records the partner's copy stale. An
//!   acknowledged write is a promise to the client; takeover must keep it.
//! - (c) `applied_once`: every log entry is applied to the store at most once; replay and
//!   consistency points apply only LSNs above what the store recorded. Applying a change
//!   twice would corrupt non-idempotent updates.
//! - (d) liveness at the end of every run: once every fault is healed and both nodes run,
//!   every service is served by exactly one node within 10 s. A pair that stays safe by
//!   serving nothing is of no use; seed 201 once found a history where both nodes let go of
//!   a service for good (see docs/ha.md, "Partner dropped a yielded service").

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use tandem::ha::engine::{HaConfig, HaEngine, ServiceHome};
use tandem::ha::witness::Mediator;
use tandem::ha::{Command, DenyReason, Event, Grant, HaState, Millis, NodeId, Path, ServiceId};

const INTERVAL: Millis = 100;
const MISSES: u32 = 3;
const LEASE: Millis = 400;
const TICK: Millis = INTERVAL / 4;
const RPC_TIMEOUT: Millis = 60;
const SVCS: [ServiceId; 2] = [ServiceId(1), ServiceId(2)];

fn cfg() -> HaConfig {
    HaConfig {
        heartbeat_interval_ms: INTERVAL,
        misses: MISSES,
        lease_ms: LEASE,
        boot_wait_ms: 1000,
        auto_giveback_ms: None,
        services: vec![ServiceHome { service: SVCS[0], home: NodeId(0) }, ServiceHome { service: SVCS[1], home: NodeId(1) }],
    }
}

fn si(s: ServiceId) -> usize {
    SVCS.iter().position(|x| *x == s).expect("known service")
}

/// Network links. `Wit(n)`: node n <-> witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Link {
    Mgmt,
    Mirror,
    Wit(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rpc {
    Acquire(ServiceId),
    Release(ServiceId),
    Mark(ServiceId, bool),
}

/// Operator or fault actions, scripted or random.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Cut(Link),
    Heal(Link),
    Drop(Link, u32),
    Isolate(u8),
    IsolateWitness,
    HealAll,
    Crash(u8),
    Restart(u8),
    Op(u8, Event),
}

#[derive(Debug)]
enum Ev {
    Tick(u8, u64),
    Deliver(u8, u64, Event),
    Heartbeat(u8, Path, tandem::ha::PeerInfo),
    WitnessArrive { node: u8, inc: u64, id: u64, sent: Millis, rpc: Rpc },
    RpcReply { node: u8, inc: u64, id: u64, ev: Event },
    Write(usize),
    Checkpoint(u8, usize),
    Act(Action),
    ReplayDone(u8, u64, ServiceId),
    FlushDone(u8, u64, ServiceId),
    ResyncDone(u8, u64),
}

#[derive(Debug, Default)]
struct Store {
    applied: u64,
    data: BTreeMap<u64, u64>,
    applies: BTreeMap<u64, u32>,
}

#[derive(Debug)]
struct Node {
    engine: Option<HaEngine>,
    inc: u64,
    /// Runtime side: what the commands made it do.
    serving: BTreeSet<ServiceId>,
    mirrored: bool,
    /// This node's copy of each service's log (its own region or its mirror window; both
    /// survive a process crash, as the mapped files do).
    copy: [BTreeMap<u64, u64>; 2],
    link_reported: Option<bool>,
}

struct Sim {
    rng: SmallRng,
    now: Millis,
    seq: u64,
    q: BinaryHeap<Reverse<(Millis, u64)>>,
    evs: BTreeMap<u64, Ev>,
    nodes: [Node; 2],
    witness: Mediator,
    cut: BTreeSet<Link>,
    drop_pct: BTreeMap<Link, u32>,
    max_delay: Millis,
    stores: [Store; 2],
    acked: [BTreeMap<u64, u64>; 2],
    rpc_done: BTreeSet<u64>,
    next_id: u64,
    trace: VecDeque<String>,
    /// (virtual time, node, service) of every StartServing.
    starts: Vec<(Millis, u8, ServiceId)>,
    crashed_at: [Option<Millis>; 2],
    acked_count: u64,
}

type SimResult<T> = Result<T, String>;

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let max_delay = [2, 10, 30][rng.gen_range(0..3)];
        let node =
            |_| Node { engine: None, inc: 0, serving: BTreeSet::new(), mirrored: true, copy: Default::default(), link_reported: None };
        let mut s = Sim {
            rng,
            now: 0,
            seq: 0,
            q: BinaryHeap::new(),
            evs: BTreeMap::new(),
            nodes: [node(0), node(1)],
            witness: Mediator::new(),
            cut: BTreeSet::new(),
            drop_pct: BTreeMap::new(),
            max_delay,
            stores: Default::default(),
            acked: Default::default(),
            rpc_done: BTreeSet::new(),
            next_id: 0,
            trace: VecDeque::new(),
            starts: Vec::new(),
            crashed_at: [None, None],
            acked_count: 0,
        };
        for n in 0..2 {
            let at = s.rng.gen_range(0..50);
            s.schedule(at, Ev::Act(Action::Restart(n)));
        }
        for svc in 0..2 {
            let at = s.rng.gen_range(0..10);
            s.schedule(at, Ev::Write(svc));
        }
        s
    }

    fn log(&mut self, line: String) {
        if self.trace.len() >= 400 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>6} {line}", self.now));
    }

    fn schedule(&mut self, at: Millis, ev: Ev) {
        self.seq += 1;
        self.q.push(Reverse((at, self.seq)));
        self.evs.insert(self.seq, ev);
    }

    fn delay(&mut self) -> Millis {
        let m = self.max_delay;
        self.rng.gen_range(1..=m)
    }

    fn link_up(&self, l: Link) -> bool {
        !self.cut.contains(&l)
    }

    /// A message over `l` gets through (cut links and random drops lose it).
    fn passes(&mut self, l: Link) -> bool {
        if !self.link_up(l) {
            return false;
        }
        let p = self.drop_pct.get(&l).copied().unwrap_or(0);
        p == 0 || self.rng.gen_range(0..100) >= p
    }

    fn alive(&self, n: u8) -> bool {
        self.nodes[n as usize].engine.is_some()
    }

    fn mirror_up_for(&self, n: u8) -> bool {
        self.alive(n) && self.alive(1 - n) && self.link_up(Link::Mirror)
    }

    fn report_links(&mut self) {
        for n in 0..2u8 {
            if !self.alive(n) {
                continue;
            }
            let up = self.mirror_up_for(n);
            if self.nodes[n as usize].link_reported != Some(up) {
                self.nodes[n as usize].link_reported = Some(up);
                let inc = self.nodes[n as usize].inc;
                let at = self.now + 1;
                self.schedule(at, Ev::Deliver(n, inc, Event::MirrorLink { up }));
            }
        }
    }

    /// Runs until virtual time `end`, checking the invariants after every step.
    fn run_until(&mut self, end: Millis) -> SimResult<()> {
        let mut steps = 0u64;
        while let Some(Reverse((at, id))) = self.q.peek().copied() {
            if at > end {
                break;
            }
            steps += 1;
            if steps > 5_000_000 {
                return Err("step bound exceeded".into());
            }
            self.q.pop();
            self.now = at;
            let ev = self.evs.remove(&id).expect("event");
            self.process(ev)?;
            self.check_one_server()?;
        }
        self.now = end;
        Ok(())
    }

    fn process(&mut self, ev: Ev) -> SimResult<()> {
        match ev {
            Ev::Tick(n, inc) => {
                if self.alive(n) && self.nodes[n as usize].inc == inc {
                    self.feed(n, Event::Tick)?;
                    let at = self.now + TICK;
                    self.schedule(at, Ev::Tick(n, inc));
                }
            }
            Ev::Deliver(n, inc, e) => {
                if self.alive(n) && self.nodes[n as usize].inc == inc {
                    self.feed(n, e)?;
                }
            }
            Ev::Heartbeat(n, _, info) if !self.alive(n) => drop(info),
            Ev::Heartbeat(n, path, info) => self.feed(n, Event::Heartbeat { path, info })?,
            Ev::WitnessArrive { node, inc, id, sent, rpc } => {
                let nid = NodeId(node);
                let ev = match rpc {
                    Rpc::Acquire(s) => {
                        let g = self.witness.acquire(s, nid, self.now, LEASE);
                        let grant = match g {
                            Grant::Granted { epoch, .. } => Grant::Granted { until: sent + LEASE, epoch },
                            d => d,
                        };
                        Event::Acquired { service: s, grant }
                    }
                    Rpc::Release(s) => Event::Released { service: s, ok: self.witness.release(s, nid, self.now).is_ok() },
                    Rpc::Mark(s, c) => Event::CopyMarked { service: s, current: c, ok: self.witness.mark_copy(s, nid, c).is_ok() },
                };
                if self.passes(Link::Wit(node)) {
                    let at = self.now + self.delay();
                    if at < sent + RPC_TIMEOUT {
                        self.schedule(at, Ev::RpcReply { node, inc, id, ev });
                    }
                }
            }
            Ev::RpcReply { node, inc, id, ev } => {
                if self.rpc_done.insert(id) && self.alive(node) && self.nodes[node as usize].inc == inc {
                    self.feed(node, ev)?;
                }
            }
            Ev::Write(svc) => {
                self.write(svc)?;
                let at = self.now + self.rng.gen_range(3..12);
                self.schedule(at, Ev::Write(svc));
            }
            Ev::Checkpoint(n, svc) => {
                if self.nodes[n as usize].serving.contains(&SVCS[svc]) {
                    self.apply_from(n, svc, "checkpoint")?;
                }
            }
            Ev::Act(a) => self.act(a)?,
            Ev::ReplayDone(n, inc, s) => {
                if self.alive(n) && self.nodes[n as usize].inc == inc {
                    self.apply_from(n, si(s), "replay")?;
                    self.feed(n, Event::Replayed { service: s, ok: true })?;
                }
            }
            Ev::FlushDone(n, inc, s) => {
                if self.alive(n) && self.nodes[n as usize].inc == inc {
                    self.apply_from(n, si(s), "flush")?;
                    self.feed(n, Event::Flushed { service: s, ok: true })?;
                }
            }
            Ev::ResyncDone(n, inc) => {
                if self.alive(n) && self.nodes[n as usize].inc == inc {
                    let ok = self.mirror_up_for(n);
                    if ok {
                        for s in self.nodes[n as usize].serving.clone() {
                            let c = self.nodes[n as usize].copy[si(s)].clone();
                            self.nodes[1 - n as usize].copy[si(s)] = c;
                        }
                    }
                    self.feed(n, Event::ResyncDone { ok })?;
                }
            }
        }
        Ok(())
    }

    /// The data path: a write to a service at whichever node's runtime serves it.
    fn write(&mut self, svc: usize) -> SimResult<()> {
        let s = SVCS[svc];
        for n in 0..2u8 {
            let nd = &self.nodes[n as usize];
            if !nd.serving.contains(&s) {
                continue;
            }
            let lsn = nd.copy[svc].keys().next_back().copied().unwrap_or(0).max(self.stores[svc].applied) + 1;
            let val: u64 = self.rng.gen();
            if self.nodes[n as usize].mirrored {
                if !self.mirror_up_for(n) {
                    continue; // waits for the mirror; never acknowledged unmirrored
                }
                self.nodes[1 - n as usize].copy[svc].insert(lsn, val);
            } else {
                // (b) An unmirrored acknowledgement needs the witness to have recorded the
                // partner's copy stale (with this node as holder), or a takeover by the
                // partner could lose it.
                let rec = self.witness.record(s);
                if !rec.is_some_and(|r| r.holder == NodeId(n) && !r.copy_current) {
                    return Err(format!("no_lost_ack: node {n} acknowledged an unmirrored write to {s:?} while the witness has {rec:?}"));
                }
            }
            self.nodes[n as usize].copy[svc].insert(lsn, val);
            self.acked[svc].insert(lsn, val);
            self.acked_count += 1;
        }
        Ok(())
    }

    /// Replay / consistency point: apply the node's copy above the store's recorded LSN.
    fn apply_from(&mut self, n: u8, svc: usize, why: &str) -> SimResult<()> {
        let copy = self.nodes[n as usize].copy[svc].clone();
        let st = &mut self.stores[svc];
        for (lsn, val) in copy.range(st.applied + 1..) {
            st.data.insert(*lsn, *val);
            let c = st.applies.entry(*lsn).or_insert(0);
            *c += 1;
            // (c) applied_once: replay and consistency points skip what the store recorded.
            if *c > 1 {
                return Err(format!("applied_once: LSN {lsn} of {:?} applied twice ({why} on node {n})", SVCS[svc]));
            }
            st.applied = *lsn;
        }
        Ok(())
    }

    /// (b) no_lost_ack at a service start: the new server's state holds every acked write.
    fn check_state_has_acked(&self, n: u8, s: ServiceId) -> SimResult<()> {
        let svc = si(s);
        for (lsn, val) in &self.acked[svc] {
            let in_store = self.stores[svc].data.get(lsn) == Some(val);
            let in_copy = self.nodes[n as usize].copy[svc].get(lsn) == Some(val);
            if !in_store && !in_copy {
                return Err(format!("no_lost_ack: node {n} starts serving {s:?} without acknowledged write LSN {lsn}"));
            }
        }
        Ok(())
    }

    /// (a) one_server, judged by the engines' own serving sets.
    fn check_one_server(&self) -> SimResult<()> {
        for s in SVCS {
            let servers: Vec<u8> = (0..2u8).filter(|n| self.nodes[*n as usize].engine.as_ref().is_some_and(|e| e.is_serving(s))).collect();
            if servers.len() > 1 {
                return Err(format!("one_server: {s:?} served by both nodes"));
            }
            for n in 0..2u8 {
                let eng = self.nodes[n as usize].engine.as_ref().is_some_and(|e| e.is_serving(s));
                if eng != self.nodes[n as usize].serving.contains(&s) {
                    return Err(format!("runtime and engine of node {n} disagree about {s:?}"));
                }
            }
        }
        Ok(())
    }

    fn feed(&mut self, n: u8, ev: Event) -> SimResult<()> {
        let now = self.now;
        let cmds = match self.nodes[n as usize].engine.as_mut() {
            Some(e) => e.step(now, ev),
            None => return Ok(()),
        };
        for c in cmds {
            self.exec(n, c)?;
        }
        Ok(())
    }

    fn rpc(&mut self, n: u8, rpc: Rpc) {
        self.next_id += 1;
        let id = self.next_id;
        let inc = self.nodes[n as usize].inc;
        let sent = self.now;
        let timeout_ev = match &rpc {
            Rpc::Acquire(s) => Event::Acquired { service: *s, grant: Grant::Denied { reason: DenyReason::Unreachable, holder: None } },
            Rpc::Release(s) => Event::Released { service: *s, ok: false },
            Rpc::Mark(s, c) => Event::CopyMarked { service: *s, current: *c, ok: false },
        };
        self.schedule(sent + RPC_TIMEOUT, Ev::RpcReply { node: n, inc, id, ev: timeout_ev });
        if self.passes(Link::Wit(n)) {
            let at = sent + self.delay();
            self.schedule(at, Ev::WitnessArrive { node: n, inc, id, sent, rpc });
        }
    }

    fn exec(&mut self, n: u8, c: Command) -> SimResult<()> {
        let inc = self.nodes[n as usize].inc;
        match c {
            Command::Note { text } => self.log(format!("node {n}: {text}")),
            Command::SendHeartbeat { path, info } => {
                let l = if path == Path::Mirror { Link::Mirror } else { Link::Mgmt };
                if self.passes(l) {
                    let at = self.now + self.delay();
                    self.schedule(at, Ev::Heartbeat(1 - n, path, info));
                }
            }
            Command::Acquire { service, .. } => self.rpc(n, Rpc::Acquire(service)),
            Command::Release { service } => self.rpc(n, Rpc::Release(service)),
            Command::MarkCopy { service, current } => self.rpc(n, Rpc::Mark(service, current)),
            Command::SetMirrorMode { mirrored } => self.nodes[n as usize].mirrored = mirrored,
            Command::Replay { service } => {
                let at = self.now + self.rng.gen_range(5..30);
                self.schedule(at, Ev::ReplayDone(n, inc, service));
            }
            Command::StartServing { service } => {
                self.log(format!("node {n}: START {service:?}"));
                self.check_state_has_acked(n, service)?;
                self.nodes[n as usize].serving.insert(service);
                self.starts.push((self.now, n, service));
                let at = self.now + self.rng.gen_range(100..300);
                self.schedule(at, Ev::Checkpoint(n, si(service)));
            }
            Command::StopServing { service } => {
                self.log(format!("node {n}: STOP {service:?}"));
                self.nodes[n as usize].serving.remove(&service);
            }
            Command::Flush { service } => {
                let at = self.now + self.rng.gen_range(5..30);
                self.schedule(at, Ev::FlushDone(n, inc, service));
            }
            Command::StartResync => {
                let at = self.now + self.rng.gen_range(20..200);
                self.schedule(at, Ev::ResyncDone(n, inc));
            }
        }
        Ok(())
    }

    fn act(&mut self, a: Action) -> SimResult<()> {
        self.log(format!("ACTION {a:?}"));
        match a {
            Action::Cut(l) => {
                self.cut.insert(l);
            }
            Action::Heal(l) => {
                self.cut.remove(&l);
                self.drop_pct.remove(&l);
            }
            Action::Drop(l, p) => {
                self.drop_pct.insert(l, p);
            }
            Action::Isolate(n) => {
                self.cut.extend([Link::Mgmt, Link::Mirror, Link::Wit(n)]);
            }
            Action::IsolateWitness => {
                self.cut.extend([Link::Wit(0), Link::Wit(1)]);
            }
            Action::HealAll => {
                self.cut.clear();
                self.drop_pct.clear();
            }
            Action::Crash(n) => {
                if self.alive(n) {
                    let nd = &mut self.nodes[n as usize];
                    nd.engine = None;
                    nd.serving.clear();
                    nd.link_reported = None;
                    self.crashed_at[n as usize] = Some(self.now);
                }
            }
            Action::Restart(n) => {
                if !self.alive(n) {
                    let nd = &mut self.nodes[n as usize];
                    nd.inc += 1;
                    nd.mirrored = true;
                    nd.engine = Some(HaEngine::new(cfg(), NodeId(n), nd.inc).map_err(|e| e.to_string())?);
                    let inc = nd.inc;
                    self.feed(n, Event::Tick)?;
                    let at = self.now + TICK;
                    self.schedule(at, Ev::Tick(n, inc));
                }
            }
            Action::Op(n, ev) => self.feed(n, ev)?,
        }
        self.report_links();
        Ok(())
    }

    fn at(&mut self, t: Millis, a: Action) {
        self.schedule(t, Ev::Act(a));
    }

    fn server_of(&self, s: ServiceId) -> Option<u8> {
        (0..2u8).find(|n| self.nodes[*n as usize].engine.as_ref().is_some_and(|e| e.is_serving(s)))
    }

    fn state(&self, n: u8) -> Option<HaState> {
        self.nodes[n as usize].engine.as_ref().map(|e| e.state())
    }

    fn dump(&self) -> String {
        let mut s = String::new();
        for l in &self.trace {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Runs to `end`, then checks (d): within `settle` ms every service has a server.
    fn settle(&mut self, end: Millis, settle: Millis) -> SimResult<()> {
        self.run_until(end)?;
        let mut t = end;
        while t < end + settle {
            t += 100;
            self.run_until(t)?;
            if SVCS.iter().all(|s| self.server_of(*s).is_some()) {
                return Ok(());
            }
        }
        Err(format!(
            "liveness: after healing, services still unserved: {:?}",
            SVCS.iter().filter(|s| self.server_of(**s).is_none()).collect::<Vec<_>>()
        ))
    }
}

fn fail(name: &str, seed: u64, sim: &Sim, err: &str) -> ! {
    panic!(
        "{name}: seed {seed}: {err}\n--- last trace lines ---\n{}\nreproduce: TANDEM_SIM_SEED={seed} cargo test -p tandem --test ha_sim -- --nocapture",
        sim.dump()
    )
}

// ------------------------------------------------------------------ random schedules

const RANDOM_END: Millis = 20_000;

fn random_run(seed: u64) -> Result<Box<Sim>, Box<(Sim, String)>> {
    let mut sim = Sim::new(seed);
    let mut t = 2_000;
    let mut bound = 0;
    while t < RANDOM_END - 6_000 && bound < 100 {
        bound += 1;
        let dur = sim.rng.gen_range(100..3_000);
        let n = sim.rng.gen_range(0..2u8);
        let links = [Link::Mgmt, Link::Mirror, Link::Wit(0), Link::Wit(1)];
        let l = links[sim.rng.gen_range(0..4)];
        match sim.rng.gen_range(0..9) {
            0 => {
                sim.at(t, Action::Cut(l));
                sim.at(t + dur, Action::Heal(l));
            }
            1 => {
                let p = sim.rng.gen_range(5..50);
                sim.at(t, Action::Drop(l, p));
                sim.at(t + dur, Action::Heal(l));
            }
            2 => {
                sim.at(t, Action::Isolate(n));
                sim.at(t + dur, Action::HealAll);
            }
            3 => {
                sim.at(t, Action::IsolateWitness);
                sim.at(t + dur, Action::HealAll);
            }
            4 | 5 => {
                sim.at(t, Action::Crash(n));
                sim.at(t + dur + 200, Action::Restart(n));
            }
            6 => sim.at(t, Action::Op(n, Event::OperatorTakeover)),
            7 => sim.at(t, Action::Op(n, Event::OperatorGiveback)),
            _ => {
                sim.at(t, Action::Cut(Link::Mirror));
                sim.at(t, Action::Cut(Link::Mgmt));
                sim.at(t + dur, Action::HealAll);
            }
        }
        t += sim.rng.gen_range(200..2_000);
    }
    sim.at(RANDOM_END - 5_000, Action::HealAll);
    sim.at(RANDOM_END - 5_000, Action::Restart(0));
    sim.at(RANDOM_END - 5_000, Action::Restart(1));
    match sim.settle(RANDOM_END, 10_000) {
        Ok(()) => Ok(Box::new(sim)),
        Err(e) => Err(Box::new((sim, e))),
    }
}

/// Random fault schedules over many seeds (500 by default; `TANDEM_SIM_SEEDS` for more,
/// `TANDEM_SIM_SEED` for one).
#[test]
fn random_fault_schedules() {
    let seeds: Vec<u64> = match std::env::var("TANDEM_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("TANDEM_SIM_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("TANDEM_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
            (0..n).collect()
        }
    };
    let single = seeds.len() == 1;
    let mut acked = 0;
    let mut takeovers = 0;
    for seed in &seeds {
        match random_run(*seed) {
            Ok(sim) => {
                if single {
                    println!("{}", sim.dump());
                }
                acked += sim.acked_count;
                takeovers += sim.starts.iter().filter(|(_, n, s)| *n != si(*s) as u8).count();
            }
            Err(b) => fail("random_fault_schedules", *seed, &b.0, &b.1),
        }
    }
    println!("ha_sim: {} seeds, {acked} acknowledged writes, {takeovers} services started away from home", seeds.len());
    assert!(acked > 0 && takeovers > 0, "the runs must exercise writes and takeovers");
}

// ------------------------------------------------------------------ named scenarios

fn run_named(name: &str, seed: u64, f: impl FnOnce(&mut Sim) -> SimResult<()>) -> Sim {
    let mut sim = Sim::new(seed);
    if let Err(e) = f(&mut sim) {
        fail(name, seed, &sim, &e);
    }
    sim
}

/// Both nodes up and mirrored, each serving its home service.
fn steady(sim: &mut Sim) -> SimResult<()> {
    sim.run_until(3_000)?;
    for n in 0..2u8 {
        if sim.server_of(SVCS[n as usize]) != Some(n) || sim.state(n) != Some(HaState::Mirrored) {
            return Err(format!("not steady at 3 s: node {n} {:?}", sim.state(n)));
        }
    }
    Ok(())
}

/// Kill the primary: the partner serves its service within a bound; returns the virtual
/// ms from the kill to the partner serving.
fn kill_primary(sim: &mut Sim) -> SimResult<Millis> {
    steady(sim)?;
    let t0 = 3_000;
    sim.act(Action::Crash(0))?;
    sim.run_until(t0 + 3_000)?;
    let at = sim.starts.iter().find(|(t, n, s)| *t >= t0 && *n == 1 && *s == SVCS[0]).map(|x| x.0);
    match at {
        Some(t) => Ok(t - t0),
        None => Err("partner never took over".into()),
    }
}

#[test]
fn kill_primary_bounded_unavailability() {
    let mut worst = 0;
    let mut best = Millis::MAX;
    for seed in 0..50 {
        let mut out = 0;
        run_named("kill_primary", seed, |sim| {
            out = kill_primary(sim)?;
            Ok(())
        });
        worst = worst.max(out);
        best = best.min(out);
    }
    println!("ha_sim: kill primary -> partner serving: {best}..{worst} virtual ms (heartbeat {INTERVAL} ms x {MISSES}, lease {LEASE} ms)");
    // Detection (300) overlaps the lease (400); the retry waits for the lease after the last
    // heartbeat heard, plus replay and a witness round trip.
    assert!(worst <= LEASE + INTERVAL * 3, "unavailability {worst} ms exceeds its bound");
    assert!(best >= INTERVAL * MISSES as u64, "taken over before the partner could have been declared lost: {best}");
}

#[test]
fn cut_mirror_link_only_no_takeover() {
    for seed in 0..20 {
        run_named("cut_mirror_only", seed, |sim| {
            steady(sim)?;
            let before = sim.acked_count;
            sim.act(Action::Cut(Link::Mirror))?;
            sim.run_until(6_000)?;
            for n in 0..2u8 {
                if sim.server_of(SVCS[n as usize]) != Some(n) {
                    return Err(format!("node {n} lost its own service with only the mirror link cut"));
                }
                if sim.state(n) != Some(HaState::Degraded) {
                    return Err(format!("node {n} is {:?}, expected Degraded", sim.state(n)));
                }
            }
            if sim.starts.iter().any(|(t, n, s)| *t > 3_000 && *n != si(*s) as u8) {
                return Err("takeover although the partner was alive on the management path".into());
            }
            if sim.acked_count <= before + 100 {
                return Err("writes stopped while degraded".into());
            }
            sim.act(Action::Heal(Link::Mirror))?;
            sim.run_until(8_000)?;
            for n in 0..2u8 {
                if sim.state(n) != Some(HaState::Mirrored) {
                    return Err(format!("node {n} is {:?} after the link healed", sim.state(n)));
                }
            }
            Ok(())
        });
    }
}

#[test]
fn isolate_each_node() {
    for seed in 0..20 {
        for victim in 0..2u8 {
            let other = 1 - victim;
            run_named(&format!("isolate_node_{victim}"), seed, |sim| {
                steady(sim)?;
                sim.act(Action::Isolate(victim))?;
                sim.run_until(6_000)?;
                // The isolated node stopped (its lease lapsed); the other serves both.
                if sim.server_of(SVCS[victim as usize]) != Some(other) || sim.server_of(SVCS[other as usize]) != Some(other) {
                    return Err(format!("after isolating {victim}: servers {:?} {:?}", sim.server_of(SVCS[0]), sim.server_of(SVCS[1])));
                }
                sim.act(Action::HealAll)?;
                sim.run_until(9_000)?;
                if sim.state(victim) != Some(HaState::TakenOver) || sim.state(other) != Some(HaState::ServingBoth) {
                    return Err(format!("after healing: {:?} {:?}", sim.state(victim), sim.state(other)));
                }
                sim.act(Action::Op(other, Event::OperatorGiveback))?;
                sim.run_until(11_000)?;
                steady_again(sim)
            });
        }
    }
}

fn steady_again(sim: &Sim) -> SimResult<()> {
    for n in 0..2u8 {
        if sim.server_of(SVCS[n as usize]) != Some(n) || sim.state(n) != Some(HaState::Mirrored) {
            return Err(format!(
                "not back home: node {n} {:?}, servers {:?} {:?}",
                sim.state(n),
                sim.server_of(SVCS[0]),
                sim.server_of(SVCS[1])
            ));
        }
    }
    Ok(())
}

#[test]
fn isolate_the_witness() {
    for seed in 0..20 {
        run_named("isolate_witness", seed, |sim| {
            steady(sim)?;
            sim.act(Action::IsolateWitness)?;
            sim.run_until(5_000)?;
            // No lease can be renewed: both stop serving (availability is given up rather
            // than risk two servers), and nobody takes anything over.
            if SVCS.iter().any(|s| sim.server_of(*s).is_some()) {
                return Err("a node serves without a renewable lease".into());
            }
            sim.act(Action::HealAll)?;
            sim.run_until(7_000)?;
            steady_again(sim)
        });
    }
}

#[test]
fn partition_during_resync() {
    for seed in 0..20 {
        run_named("partition_during_resync", seed, |sim| {
            steady(sim)?;
            sim.act(Action::Crash(0))?;
            sim.run_until(5_000)?;
            if sim.server_of(SVCS[0]) != Some(1) {
                return Err("node 1 did not take over".into());
            }
            sim.act(Action::Restart(0))?;
            // Node 1 starts resyncing once it hears node 0; cut everything in the middle.
            sim.run_until(5_060)?;
            sim.act(Action::Cut(Link::Mirror))?;
            sim.act(Action::Cut(Link::Mgmt))?;
            sim.run_until(8_000)?;
            sim.act(Action::HealAll)?;
            sim.run_until(11_000)?;
            if sim.state(1) != Some(HaState::ServingBoth) {
                return Err(format!("node 1 is {:?} after healing", sim.state(1)));
            }
            sim.act(Action::Op(1, Event::OperatorGiveback))?;
            sim.run_until(13_000)?;
            steady_again(sim)
        });
    }
}

#[test]
fn planned_takeover_and_giveback() {
    for seed in 0..20 {
        run_named("planned_takeover_giveback", seed, |sim| {
            steady(sim)?;
            sim.act(Action::Op(1, Event::OperatorTakeover))?;
            sim.run_until(4_000)?;
            if sim.server_of(SVCS[0]) != Some(1) || sim.state(0) != Some(HaState::TakenOver) || sim.state(1) != Some(HaState::ServingBoth) {
                return Err(format!(
                    "planned takeover: servers {:?}, states {:?} {:?}",
                    sim.server_of(SVCS[0]),
                    sim.state(0),
                    sim.state(1)
                ));
            }
            let before = sim.acked_count;
            sim.act(Action::Op(1, Event::OperatorGiveback))?;
            sim.run_until(5_000)?;
            steady_again(sim)?;
            if sim.acked_count <= before {
                return Err("no writes across the giveback".into());
            }
            Ok(())
        });
    }
}
