//! `tandem demo --ha`: an HA pair on loopback (a mediator and two node processes) serving
//! NBD exports; an NBD client writes versioned blocks to `vol1`; the node serving it is
//! killed with SIGKILL; the partner detects it, gets the witness's grant, replays and
//! serves `vol1` at the same address; the client reconnects and carries on; every
//! acknowledged write is verified; the node is restarted and gets `vol1` back.

use crate::control::{request, Request};
use crate::demo::{ha_node_config, PairPorts};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_nbd::client::NbdClient;

const BLOCKS: u64 = 256;
const BLOCK: usize = 4096;

/// Child processes, killed when dropped.
#[derive(Debug)]
pub struct Procs(pub Vec<Option<Child>>);
impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn content(b: u64, v: u64) -> Vec<u8> {
    let mut d = vec![((b * 31 + v) & 0xff) as u8; BLOCK];
    d[..8].copy_from_slice(&b.to_le_bytes());
    d[8..16].copy_from_slice(&v.to_le_bytes());
    d
}

fn version_of(b: u64, d: &[u8]) -> Option<u64> {
    if d.iter().all(|x| *x == 0) {
        return Some(0);
    }
    let v = u64::from_le_bytes(d[8..16].try_into().ok()?);
    (d == content(b, v).as_slice()).then_some(v)
}

#[derive(Default)]
struct Ledger {
    issued: BTreeMap<u64, u64>,
    acked: BTreeMap<u64, u64>,
    acks: u64,
    first_ack_after_kill: Option<Instant>,
}

/// Starts `tandem node --config <dir>/n<id>.toml` (messages: errors only, unless RUST_LOG).
pub fn start_node(exe: &Path, dir: &Path, id: u8) -> anyhow::Result<Child> {
    Ok(Command::new(exe)
        .args(["node", "--config"])
        .arg(dir.join(format!("n{id}.toml")))
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?)
}

fn ha_status(dir: &Path, id: u8) -> Option<serde_json::Value> {
    request(&dir.join(format!("n{id}.sock")), &Request::Status, Duration::from_millis(500)).ok().map(|v| v["ha"].clone())
}

/// The services node `id` (control socket `<dir>/n<id>.sock`) serves, if it answers.
pub fn serving(dir: &Path, id: u8) -> Option<Vec<u64>> {
    ha_status(dir, id).and_then(|h| h["serving_exports"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).collect()))
}

fn serves(dir: &Path, id: u8, svc: u64) -> bool {
    serving(dir, id).is_some_and(|s| s.contains(&svc))
}

/// Polls `f` every 5 ms until it holds or `limit` passes; returns how long it took.
pub fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(t.elapsed())
}

fn writer(
    addr: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    killed_at: Arc<Mutex<Option<Instant>>>,
    reconnects: Arc<AtomicU64>,
) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut client: Option<NbdClient> = None;
    while !stop.load(Ordering::Relaxed) {
        let c = match client.as_mut() {
            Some(c) => c,
            None => match NbdClient::connect(addr, "vol1", Duration::from_secs(2)) {
                Ok(c) => client.insert(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let b = rng % BLOCKS;
        let v = {
            let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            let v = l.issued.get(&b).copied().unwrap_or(0) + 1;
            l.issued.insert(b, v);
            v
        };
        match c.write(b * BLOCK as u64, &content(b, v)) {
            Ok(()) => {
                let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
                l.acked.insert(b, v);
                l.acks += 1;
                if l.first_ack_after_kill.is_none() && killed_at.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                    l.first_ack_after_kill = Some(Instant::now());
                }
            }
            Err(_) => {
                client = None;
                reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn verify(addr: SocketAddr, ledger: &Ledger) -> anyhow::Result<(u64, u64)> {
    let mut c = NbdClient::connect(addr, "vol1", Duration::from_secs(5)).context("connecting to verify")?;
    let mut buf = vec![0u8; BLOCKS as usize * BLOCK];
    c.read(0, &mut buf).context("reading back")?;
    c.disconnect();
    let (mut checked, mut bad) = (0, 0);
    for b in 0..BLOCKS {
        let a = ledger.acked.get(&b).copied().unwrap_or(0);
        let i = ledger.issued.get(&b).copied().unwrap_or(0);
        let found = version_of(b, &buf[b as usize * BLOCK..(b as usize + 1) * BLOCK]);
        checked += 1;
        if !found.is_some_and(|v| v >= a && v <= i) {
            bad += 1;
            eprintln!("  block {b}: found {found:?}, acknowledged {a}, issued {i}");
        }
    }
    Ok((checked, bad))
}

/// Runs the demo, printing the timeline; returns whether verification passed.
pub fn run(exe: Option<PathBuf>) -> anyhow::Result<bool> {
    let exe = match exe {
        Some(e) => e,
        None => std::env::current_exe()?,
    };
    let tmp = tempfile::Builder::new().prefix("tandem-demo-ha-").tempdir()?;
    let d = tmp.path();
    let ports = PairPorts::pick()?;
    for id in 0..2u8 {
        std::fs::write(d.join(format!("n{id}.toml")), ha_node_config(d, id, &ports, Some(1000)))?;
    }
    let mut procs = Procs(vec![None, None, None]);
    procs.0[2] = Some(
        Command::new(&exe)
            .args(["mediator", "--listen", &format!("127.0.0.1:{}", ports.witness)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    procs.0[0] = Some(start_node(&exe, d, 0)?);
    procs.0[1] = Some(start_node(&exe, d, 1)?);
    println!(
        "HA demo: mediator on udp 127.0.0.1:{}, node 0 serves vol1 on 127.0.0.1:{}, node 1 serves vol2 on 127.0.0.1:{}",
        ports.witness, ports.nbd[0], ports.nbd[1]
    );
    wait("both nodes to serve their home services", Duration::from_secs(30), || serves(d, 0, 1) && serves(d, 1, 2))?;
    let addr: SocketAddr = format!("127.0.0.1:{}", ports.nbd[0]).parse()?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at = Arc::new(Mutex::new(None));
    let reconnects = Arc::new(AtomicU64::new(0));
    let w = {
        let (l, s, k, r) = (ledger.clone(), stop.clone(), killed_at.clone(), reconnects.clone());
        std::thread::spawn(move || writer(addr, l, s, k, r))
    };
    wait("writes to be acknowledged", Duration::from_secs(20), || ledger.lock().map(|l| l.acks >= 2000).unwrap_or(false))?;
    let acked_before = ledger.lock().map(|l| l.acks).unwrap_or(0);
    let t0 = Instant::now();
    let mut victim = procs.0[0].take().context("node 0")?;
    victim.kill()?;
    *killed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(t0);
    victim.wait()?;
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    println!("timeline (ms after kill -9 of node 0, which served vol1; {acked_before} writes acknowledged before):");
    println!("  {:>7.1}  kill -9 node 0", 0.0);
    let mut seen = (None, None, None);
    wait("node 1 to serve vol1", Duration::from_secs(15), || {
        if let Some(h) = ha_status(d, 1) {
            let now = Instant::now();
            if seen.0.is_none() && h["ha"]["partner"]["alive"] == false {
                seen.0 = Some(now);
            }
            if seen.1.is_none()
                && h["ha"]["services"].as_array().is_some_and(|a| a.iter().any(|s| s["service"] == 1 && s["lease"].is_object()))
            {
                seen.1 = Some(now);
            }
            if h["serving_exports"].as_array().is_some_and(|a| a.iter().any(|x| x.as_u64() == Some(1))) {
                seen.2 = Some(now);
                return true;
            }
        }
        false
    })?;
    wait("the client's first write on node 1", Duration::from_secs(15), || {
        ledger.lock().map(|l| l.first_ack_after_kill.is_some()).unwrap_or(false)
    })?;
    let first = ledger.lock().ok().and_then(|l| l.first_ack_after_kill).context("first ack")?;
    // Node 1's state is sampled through its control socket every few ms, so a line can
    // show an event a little after it happened; the client's line is exact.
    let mut lines = vec![(ms(first), "first client write acknowledged by node 1 (the client reconnected to the same address)".to_string())];
    if let Some(t) = seen.0 {
        lines.push((ms(t), "node 1 reports node 0 lost (no heartbeat on either path)".into()));
    }
    if let Some(t) = seen.1 {
        lines.push((ms(t), "node 1 reports the witness's lease for vol1 (then replays node 0's log)".into()));
    }
    if let Some(t) = seen.2 {
        lines.push((ms(t), format!("node 1 reports serving vol1 at 127.0.0.1:{}", ports.nbd[0])));
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, what) in lines {
        println!("  {t:>7.1}  {what}");
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let _ = w.join();
    let l = ledger.lock().unwrap_or_else(|e| e.into_inner());
    let (checked, bad1) = verify(addr, &l)?;
    println!("verification on node 1: {checked} blocks, {bad1} wrong ({} writes acknowledged in all)", l.acks);
    println!("restarting node 0: resync, then vol1 goes home (auto-giveback after 1 s)");
    procs.0[0] = Some(start_node(&exe, d, 0)?);
    let back = wait("vol1 back on node 0", Duration::from_secs(30), || serves(d, 0, 1) && !serves(d, 1, 1))?;
    let (_, bad2) = verify(addr, &l)?;
    println!("  vol1 served by node 0 again after {:.1} s; verification: {} wrong", back.as_secs_f64(), bad2);
    let pass = bad1 == 0 && bad2 == 0;
    println!("verification: {}", if pass { "PASS: every acknowledged write survived the failover and the giveback" } else { "FAIL" });
    Ok(pass)
}
