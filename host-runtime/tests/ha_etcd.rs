//! `EtcdWitness` against a real etcd (Debian package `etcd-server`, binary `etcd`): each test
//! starts its own single-member etcd on loopback with free ports and a temporary data
//! directory, and kills it at the end (also when the test panics).
//!
//! etcd runs with a 50 ms heartbeat and a 500 ms election timeout, so its shortest lease
//! TTL is 1 s: a lease of 400 ms becomes a 1 s etcd lease, and takeovers wait for that.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command as Proc, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem::ha::engine::{HaConfig, HaEngine, ServiceHome};
use tandem::ha::etcd::EtcdWitness;
use tandem::ha::{Command, DenyReason, Event, Grant, HaState, Millis, NodeId, ServiceId, WitnessClient};

const A: NodeId = NodeId(0);
const B: NodeId = NodeId(1);
const S: ServiceId = ServiceId(7);
const LEASE: Millis = 400;
const TIMEOUT: Duration = Duration::from_millis(500);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One etcd process; killed on drop.
struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    fn start() -> Etcd {
        let bin = PathBuf::from("/usr/bin/etcd");
        let found = bin.exists() || Proc::new("etcd").arg("--version").stdout(Stdio::null()).status().is_ok();
        assert!(found, "etcd not found: install the Debian package etcd-server (scripts/test does)");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = Etcd { child: None, dir, client_port: free_port(), peer_port: free_port() };
        e.spawn();
        e
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("etcd.log")).expect("log");
        let child = Proc::new("etcd")
            .args(["--name", "w", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("w={peer}")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd not startable: install the Debian package etcd-server");
        self.child = Some(child);
        // Healthy = answers a read through the gateway.
        let mut w = self.witness(A);
        let t0 = Instant::now();
        while w.record(ServiceId(u32::MAX)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "etcd did not come up; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    fn witness(&self, _node: NodeId) -> EtcdWitness {
        EtcdWitness::new(&[&self.endpoint()], "test", TIMEOUT).expect("witness")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Milliseconds since the test started (the runtime clock of both nodes here).
fn ms(t0: Instant) -> Millis {
    t0.elapsed().as_millis() as Millis
}

fn epoch_of(g: Grant) -> u64 {
    match g {
        Grant::Granted { epoch, .. } => epoch,
        other => panic!("expected a grant, got {other:?}"),
    }
}

/// Polls `acquire` until granted (bounded); returns the grant's epoch and when it came.
fn acquire_until_granted(w: &mut EtcdWitness, node: NodeId, t0: Instant, bound: Duration) -> (u64, Duration) {
    let start = Instant::now();
    loop {
        match w.acquire(S, node, LEASE, ms(t0)) {
            Grant::Granted { epoch, .. } => return (epoch, start.elapsed()),
            Grant::Denied { reason: DenyReason::HeldByOther, .. } => {}
            other => panic!("unexpected answer while waiting: {other:?}"),
        }
        assert!(start.elapsed() < bound, "not granted within {bound:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Two nodes ask for a free service: exactly one gets it; the other is told who holds it.
#[test]
fn two_nodes_contend_one_wins() {
    let etcd = Etcd::start();
    let t0 = Instant::now();
    let (mut a, mut b) = (etcd.witness(A), etcd.witness(B));
    let ga = a.acquire(S, A, LEASE, ms(t0));
    let gb = b.acquire(S, B, LEASE, ms(t0));
    assert_eq!(epoch_of(ga), 1);
    assert!(matches!(ga, Grant::Granted { until, .. } if until <= ms(t0) + LEASE), "until never later than sent + lease");
    assert_eq!(gb, Grant::Denied { reason: DenyReason::HeldByOther, holder: Some(A) });
    // The holder renews, epoch unchanged; the record is what the rules say.
    assert_eq!(epoch_of(a.acquire(S, A, LEASE, ms(t0))), 1);
    let rec = a.record(S).expect("read").expect("record");
    assert_eq!((rec.holder, rec.epoch, rec.copy_current), (A, 1, true));
    assert!(a.lease_alive(rec.lease).expect("ttl"));
}

// After the holder stops renewing, the other node gets the service once etcd's lease is
// gone (not before), with the next epoch; the old holder is then refused.
#[test]
fn expiry_lets_the_other_take_over_when_copy_current() {
    let etcd = Etcd::start();
    let t0 = Instant::now();
    let (mut a, mut b) = (etcd.witness(A), etcd.witness(B));
    assert_eq!(epoch_of(a.acquire(S, A, LEASE, ms(t0))), 1);
    let (epoch, waited) = acquire_until_granted(&mut b, B, t0, Duration::from_secs(6));
    assert_eq!(epoch, 2);
    assert!(waited >= Duration::from_millis(LEASE), "taken over after {waited:?}, before the lease could end");
    assert_eq!(a.acquire(S, A, LEASE, ms(t0)), Grant::Denied { reason: DenyReason::HeldByOther, holder: Some(B) });
    println!("ha_etcd: takeover after expiry waited {waited:?}");
}

// A holder that marked the partner's copy stale keeps the service even after its lease
// expired: the other node is refused (CopyStale), the holder renews with its epoch; once
// the holder marks the copy current, the other node gets it after expiry.
#[test]
fn stale_copy_blocks_takeover() {
    let etcd = Etcd::start();
    let t0 = Instant::now();
    let (mut a, mut b) = (etcd.witness(A), etcd.witness(B));
    assert_eq!(epoch_of(a.acquire(S, A, LEASE, ms(t0))), 1);
    assert_eq!(a.mark_copy(S, A, false), Ok(()));
    let rec = a.record(S).expect("read").expect("record");
    assert!(!rec.copy_current);
    // Wait for etcd to drop the lease, then try.
    let start = Instant::now();
    while a.lease_alive(rec.lease).expect("ttl") {
        assert!(start.elapsed() < Duration::from_secs(6), "lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.acquire(S, B, LEASE, ms(t0)), Grant::Denied { reason: DenyReason::CopyStale, holder: Some(A) });
    // The holder renews after expiry (a new etcd lease), epoch unchanged.
    assert_eq!(epoch_of(a.acquire(S, A, LEASE, ms(t0))), 1);
    let rec2 = a.record(S).expect("read").expect("record");
    assert_ne!(rec2.lease, rec.lease);
    assert_eq!(a.mark_copy(S, A, true), Ok(()));
    let (epoch, _) = acquire_until_granted(&mut b, B, t0, Duration::from_secs(6));
    assert_eq!(epoch, 2);
}

// A release ends the lease at once: the other node is granted without waiting.
#[test]
fn release_frees_at_once() {
    let etcd = Etcd::start();
    let t0 = Instant::now();
    let (mut a, mut b) = (etcd.witness(A), etcd.witness(B));
    assert_eq!(epoch_of(a.acquire(S, A, LEASE, ms(t0))), 1);
    let start = Instant::now();
    assert_eq!(a.release(S, A), Ok(()));
    assert_eq!(epoch_of(b.acquire(S, B, LEASE, ms(t0))), 2);
    assert!(start.elapsed() < Duration::from_millis(LEASE), "release did not free the service at once");
    // The old holder may no longer release it.
    assert_eq!(a.release(S, A), Err(DenyReason::HeldByOther));
}

// Only the holder may mark or release; unknown services and nodes are invalid.
#[test]
fn only_the_holder_marks_or_releases() {
    let etcd = Etcd::start();
    let t0 = Instant::now();
    let (mut a, mut b) = (etcd.witness(A), etcd.witness(B));
    assert_eq!(b.mark_copy(S, B, false), Err(DenyReason::Invalid));
    assert_eq!(b.release(S, B), Err(DenyReason::Invalid));
    assert_eq!(a.acquire(S, NodeId(2), LEASE, ms(t0)), Grant::Denied { reason: DenyReason::Invalid, holder: None });
    assert_eq!(a.acquire(S, A, 0, ms(t0)), Grant::Denied { reason: DenyReason::Invalid, holder: None });
    assert_eq!(epoch_of(a.acquire(S, A, LEASE, ms(t0))), 1);
    assert_eq!(b.mark_copy(S, B, false), Err(DenyReason::HeldByOther));
    assert_eq!(b.release(S, B), Err(DenyReason::HeldByOther));
    let rec = a.record(S).expect("read").expect("record");
    assert!(rec.copy_current && rec.holder == A);
    assert!(a.lease_alive(rec.lease).expect("ttl"), "a refused release must not end the lease");
    assert_eq!(a.mark_copy(S, A, false), Ok(()));
    assert!(!a.record(S).expect("read").expect("record").copy_current);
}

// etcd down: every call answers Unreachable within the timeout. Back up (same data): works
// again with the record intact.
#[test]
fn etcd_stopped_is_unreachable_then_recovers() {
    let mut etcd = Etcd::start();
    let t0 = Instant::now();
    let mut a = etcd.witness(A);
    assert_eq!(epoch_of(a.acquire(S, A, LEASE, ms(t0))), 1);
    assert_eq!(a.mark_copy(S, A, false), Ok(()));
    etcd.stop();
    let start = Instant::now();
    assert_eq!(a.acquire(S, A, LEASE, ms(t0)), Grant::Denied { reason: DenyReason::Unreachable, holder: None });
    assert_eq!(a.mark_copy(S, A, true), Err(DenyReason::Unreachable));
    assert_eq!(a.release(S, A), Err(DenyReason::Unreachable));
    assert!(start.elapsed() < TIMEOUT * 3 + Duration::from_millis(300), "calls took {:?}", start.elapsed());
    // An endpoint list with a dead endpoint first still works once etcd is back.
    etcd.spawn();
    let dead = format!("127.0.0.1:{}", free_port());
    let mut a2 = EtcdWitness::new(&[&dead, &etcd.endpoint()], "test", TIMEOUT).expect("witness");
    let rec = a2.record(S).expect("read").expect("record survives the restart");
    assert_eq!((rec.holder, rec.epoch, rec.copy_current), (A, 1, false));
    assert_eq!(epoch_of(a2.acquire(S, A, LEASE, ms(t0))), 1);
    assert_eq!(a2.mark_copy(S, A, true), Ok(()));
    assert_eq!(epoch_of(a.acquire(S, A, LEASE, ms(t0))), 1);
}

/// A node's time as holder, on the shared test clock: from the grant's arrival to the end
/// of its view of the lease (or the release call, whichever is first).
#[derive(Debug, Clone, Copy)]
struct Held {
    node: NodeId,
    epoch: u64,
    from: Millis,
    to: Millis,
}

// Two threads hammer acquire (and sometimes release) on one service: no two holders'
// times ever overlap and the epoch moves whenever the holder changes.
#[test]
fn concurrent_acquires_never_overlap() {
    let etcd = Etcd::start();
    let t0 = Instant::now();
    let held: Arc<Mutex<Vec<Held>>> = Arc::default();
    let threads: Vec<_> = [A, B]
        .into_iter()
        .map(|node| {
            let mut w = etcd.witness(node);
            let held = held.clone();
            std::thread::spawn(move || {
                let mut grants = 0;
                let mut mine: Vec<Held> = Vec::new();
                for i in 0..60u64 {
                    let sent = ms(t0);
                    let g = w.acquire(S, node, LEASE, sent);
                    let got = ms(t0);
                    if let Grant::Granted { until, epoch } = g {
                        grants += 1;
                        mine.push(Held { node, epoch, from: got, to: until });
                        // Hold for a little while, then release every other time: the
                        // holder stops before it releases, which ends all its holds.
                        std::thread::sleep(Duration::from_millis(3 + (i * 7 + node.0 as u64 * 5) % 11));
                        if i % 2 == 0 {
                            let stop = ms(t0);
                            for h in mine.iter_mut() {
                                h.to = h.to.min(stop);
                            }
                            let _ = w.release(S, node);
                        }
                    } else {
                        std::thread::sleep(Duration::from_millis(2 + (i * 3) % 7));
                    }
                }
                held.lock().expect("lock").extend(mine);
                grants
            })
        })
        .collect();
    let grants: Vec<u32> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    let mut held = held.lock().expect("lock").clone();
    held.sort_by_key(|h| h.from);
    assert!(grants.iter().all(|g| *g > 0), "both nodes must win sometimes: {grants:?}");
    for (i, x) in held.iter().enumerate() {
        for y in &held[i + 1..] {
            if x.node != y.node {
                assert!(x.to <= y.from || y.to <= x.from, "overlapping holders: {x:?} and {y:?}");
            }
        }
    }
    for w in held.windows(2) {
        if w[0].node != w[1].node {
            assert!(w[1].epoch > w[0].epoch, "holder changed without a new epoch: {:?} -> {:?}", w[0], w[1]);
        }
    }
    println!("ha_etcd: concurrent grants per node {grants:?}, {} holds", held.len());
}

// ------------------------------------------------------------------ end to end

/// One node of the end-to-end pair: an engine, its witness client, what it serves.
struct Node {
    engine: HaEngine,
    witness: EtcdWitness,
    inbox: Vec<Event>,
}

fn ha_cfg() -> HaConfig {
    HaConfig {
        heartbeat_interval_ms: 100,
        misses: 3,
        lease_ms: LEASE,
        boot_wait_ms: 2_000,
        auto_giveback_ms: None,
        services: vec![ServiceHome { service: ServiceId(1), home: A }, ServiceHome { service: ServiceId(2), home: B }],
    }
}

/// Executes one node's commands: witness calls block (they are bounded by the timeout),
/// heartbeats go to the partner's inbox while `link` is up, data-path commands succeed at once.
fn exec(n: &mut Node, cmds: Vec<Command>, to_partner: &mut Vec<Event>, link: bool, t0: Instant) {
    let me = n.engine.node();
    let mut queue: std::collections::VecDeque<Command> = cmds.into();
    while let Some(c) = queue.pop_front() {
        let ev = match c {
            Command::SendHeartbeat { path, info } => {
                if link {
                    to_partner.push(Event::Heartbeat { path, info });
                }
                None
            }
            Command::Acquire { service, lease_ms } => {
                Some(Event::Acquired { service, grant: n.witness.acquire(service, me, lease_ms, ms(t0)) })
            }
            Command::Release { service } => Some(Event::Released { service, ok: n.witness.release(service, me).is_ok() }),
            Command::MarkCopy { service, current } => {
                Some(Event::CopyMarked { service, current, ok: n.witness.mark_copy(service, me, current).is_ok() })
            }
            Command::Replay { service } => Some(Event::Replayed { service, ok: true }),
            Command::Flush { service } => Some(Event::Flushed { service, ok: true }),
            Command::StartResync => Some(Event::ResyncDone { ok: true }),
            Command::SetMirrorMode { .. } | Command::StartServing { .. } | Command::StopServing { .. } | Command::Note { .. } => None,
        };
        if let Some(ev) = ev {
            let more = n.engine.step(ms(t0), ev);
            queue.extend(more);
        }
    }
}

// Two engines on one etcd, real time: both come up Mirrored on their home services; node 0
// "dies" (is no longer stepped); node 1 serves both services once etcd's lease of node 0
// is gone, and never while node 0's own view of its lease still runs.
#[test]
fn engines_take_over_through_etcd() {
    let etcd = Etcd::start();
    let t0 = Instant::now();
    let mut nodes: Vec<Node> = [A, B]
        .into_iter()
        .map(|id| Node { engine: HaEngine::new(ha_cfg(), id, 1).expect("cfg"), witness: etcd.witness(id), inbox: vec![] })
        .collect();
    for n in nodes.iter_mut() {
        n.inbox.push(Event::MirrorLink { up: true });
    }
    let mut alive = [true, true];
    let mut killed_at = None;
    let mut dead_lease_end = 0;
    let mut took_over_at = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let now = ms(t0);
        for i in 0..2 {
            if !alive[i] {
                continue;
            }
            let mut evs = std::mem::take(&mut nodes[i].inbox);
            evs.push(Event::Tick);
            let mut to_partner = Vec::new();
            for ev in evs {
                let cmds = nodes[i].engine.step(ms(t0), ev);
                exec(&mut nodes[i], cmds, &mut to_partner, alive[1 - i], t0);
            }
            if alive[1 - i] {
                nodes[1 - i].inbox.extend(to_partner);
            }
        }
        let steady = nodes[0].engine.state() == HaState::Mirrored
            && nodes[1].engine.state() == HaState::Mirrored
            && nodes[0].engine.is_serving(ServiceId(1))
            && nodes[1].engine.is_serving(ServiceId(2));
        if killed_at.is_none() && steady && now > 1_000 {
            alive[0] = false;
            killed_at = Some(now);
            dead_lease_end = nodes[0].engine.lease(ServiceId(1)).expect("node 0 holds its service").until;
            nodes[1].inbox.push(Event::MirrorLink { up: false });
        }
        if let Some(k) = killed_at {
            // One server: node 1 must not serve node 0's service while node 0's view of its
            // lease (the last it got before dying) still runs.
            if nodes[1].engine.is_serving(ServiceId(1)) {
                assert!(now >= dead_lease_end, "node 1 serves service 1 at {now} ms, node 0's lease runs to {dead_lease_end}");
                if nodes[1].engine.is_serving(ServiceId(2)) {
                    took_over_at = Some(now - k);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let k = killed_at.unwrap_or_else(|| panic!("never steady: states {:?} {:?}", nodes[0].engine.state(), nodes[1].engine.state()));
    let took = took_over_at.unwrap_or_else(|| panic!("node 1 did not take over; status {:?}", nodes[1].engine.status()));
    assert_eq!(nodes[1].engine.state(), HaState::ServingBoth);
    let rec = nodes[1].witness.record(ServiceId(1)).expect("read").expect("record");
    assert_eq!((rec.holder, rec.epoch), (B, 2));
    assert!(took < 6_000, "takeover took {took} ms");
    println!("ha_etcd: end to end: node 0 stopped at {k} ms, node 1 serves both {took} ms later (etcd lease TTL 1 s)");
}
