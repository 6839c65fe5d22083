//! Torture run of the HA pair (issue: "kill -9 the serving node at random points; the
//! partner takes over; the client reconnects and reads back every acknowledged write"):
//! each iteration, a real NBD client (nbdsh, libnbd) writes versioned 4 KiB blocks to
//! `vol1` and reports each write the server acknowledged; the node serving `vol1` is
//! killed with SIGKILL after a random delay; once the partner serves `vol1` at the same
//! address, a second client reads every block back; the killed node is restarted and
//! takes `vol1` back (auto-giveback), and the blocks are read back again.
//!
//! Lost writes (a block older than its last acknowledged version) and duplicated writes (a
//! block that went back to an older version after a newer one was read) are counted and
//! must both be 0. `TANDEM_TORTURE_ITERATIONS` sets the number of iterations (default
//! 100; the documented long run is 1000) and `TANDEM_SEED` the random seed.

use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tandem::demo::{ha_node_config, PairPorts};
use tandem::demo_ha::{serving, Procs};

mod support;
use support::{exe, start_node, wait_until};

const BLOCKS: u64 = 128;

/// nbdsh runs its script with the system Python, which has the libnbd module.
fn nbdsh(uri: &str, script: &str) -> Command {
    let mut c = Command::new("nbdsh");
    c.env("PATH", format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default())).args(["-u", uri, "-c", script]);
    c
}

/// Block contents: block and version as little-endian u64s, then a fill byte.
const PY_HELPERS: &str = r#"
import struct, sys, random
def content(b, v):
    return struct.pack('<QQ', b, v) + bytes([(b * 31 + v) & 0xff]) * 4080
"#;

/// Starts a writer that writes random blocks with increasing versions (continuing from
/// `versions`) and prints `ACK block version` after each acknowledged write.
fn start_writer(port: u16, seed: u64, versions: &BTreeMap<u64, u64>) -> Child {
    let start: Vec<String> = (0..BLOCKS).map(|b| versions.get(&b).copied().unwrap_or(0).to_string()).collect();
    let script = format!(
        "{PY_HELPERS}\nver = [{}]\nrnd = random.Random({seed})\nfor i in range(200000):\n    b = rnd.randrange({BLOCKS})\n    ver[b] += 1\n    print('ISSUE', b, ver[b], flush=True)\n    h.pwrite(content(b, ver[b]), b * 4096)\n    print('ACK', b, ver[b], flush=True)\n",
        start.join(",")
    );
    nbdsh(&format!("nbd://127.0.0.1:{port}/vol1"), &script)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nbdsh (Debian package python3-libnbd)")
}

/// Reads every block and returns its version (`None`: contents are not any version).
fn read_back(port: u16) -> Result<Vec<Option<u64>>, String> {
    let script = format!(
        "{PY_HELPERS}\ndata = h.pread({BLOCKS} * 4096, 0)\nfor b in range({BLOCKS}):\n    blk = data[b*4096:(b+1)*4096]\n    bb, v = struct.unpack('<QQ', blk[:16])\n    if blk == bytes(4096):\n        print(0)\n    elif bb == b and blk == content(b, v):\n        print(v)\n    else:\n        print('BAD')\n"
    );
    let out = nbdsh(&format!("nbd://127.0.0.1:{port}/vol1"), &script).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().parse().ok()).collect())
}

#[derive(Default, Debug)]
struct Tally {
    acked: u64,
    lost: u64,
    duplicated: u64,
    corrupt: u64,
    failover_ms: Vec<u64>,
}

fn check(
    found: &[Option<u64>],
    acked: &BTreeMap<u64, u64>,
    issued: &BTreeMap<u64, u64>,
    seen: &mut BTreeMap<u64, u64>,
    t: &mut Tally,
    when: &str,
) {
    for (b, f) in found.iter().enumerate() {
        let b = b as u64;
        let a = acked.get(&b).copied().unwrap_or(0);
        let i = issued.get(&b).copied().unwrap_or(0);
        match f {
            None => {
                t.corrupt += 1;
                eprintln!("{when}: block {b} holds no version (acked {a}, issued {i})");
            }
            Some(v) if *v < a => {
                t.lost += 1;
                eprintln!("{when}: block {b} holds version {v}, but {a} was acknowledged");
            }
            Some(v) if *v > i => {
                t.corrupt += 1;
                eprintln!("{when}: block {b} holds version {v}, never issued (issued up to {i})");
            }
            Some(v) => {
                if seen.get(&b).is_some_and(|s| v < s) {
                    t.duplicated += 1;
                    eprintln!("{when}: block {b} went back to version {v} after {} was read", seen[&b]);
                }
                seen.insert(b, *v);
            }
        }
    }
}

#[test]
fn torture_kill_the_server_of_vol1_repeatedly() {
    let iterations: u64 = std::env::var("TANDEM_TORTURE_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seed: u64 = std::env::var("TANDEM_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("torture: {iterations} iterations, seed {seed} (rerun: TANDEM_SEED={seed} TANDEM_TORTURE_ITERATIONS={iterations} cargo test -p tandem --test ha_torture -- --nocapture)");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ports = PairPorts::pick().unwrap();
    for id in 0..2u8 {
        std::fs::write(d.join(format!("n{id}.toml")), ha_node_config(d, id, &ports, Some(200))).unwrap();
    }
    let mut procs = Procs(vec![None, None, None]);
    procs.0[2] = Some(
        Command::new(exe())
            .args(["mediator", "--listen", &format!("127.0.0.1:{}", ports.witness)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    procs.0[0] = Some(start_node(d, 0));
    procs.0[1] = Some(start_node(d, 1));
    wait_until("the pair to serve its home services", Duration::from_secs(30), || {
        serving(d, 0) == Some(vec![1]) && serving(d, 1) == Some(vec![2])
    });
    let (mut acked, mut issued, mut seen) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut t = Tally::default();
    let port = ports.nbd[0];
    let started = Instant::now();
    for it in 0..iterations {
        // Who serves vol1 now (node 0 after each giveback).
        let victim: u8 = if serving(d, 0).is_some_and(|s| s.contains(&1)) { 0 } else { 1 };
        let mut w = start_writer(port, seed ^ it, &issued);
        let out = w.stdout.take().unwrap();
        let reader = std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).collect::<Vec<String>>());
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..600)));
        let mut child = procs.0[victim as usize].take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let killed = Instant::now();
        let _ = w.kill();
        let _ = w.wait();
        for line in reader.join().unwrap() {
            let mut p = line.split_whitespace();
            let (kind, b, v) = (p.next(), p.next().and_then(|x| x.parse::<u64>().ok()), p.next().and_then(|x| x.parse::<u64>().ok()));
            if let (Some(kind), Some(b), Some(v)) = (kind, b, v) {
                let e = if kind == "ACK" { &mut acked } else { &mut issued };
                let cur = e.entry(b).or_insert(0);
                *cur = (*cur).max(v);
                if kind == "ACK" {
                    t.acked += 1;
                    let i = issued.entry(b).or_insert(0);
                    *i = (*i).max(v);
                }
            }
        }
        let other = 1 - victim;
        wait_until("the partner to serve vol1", Duration::from_secs(15), || serving(d, other).is_some_and(|s| s.contains(&1)));
        let found = {
            let mut r = None;
            wait_until("a read-back on the partner", Duration::from_secs(15), || {
                r = read_back(port).ok();
                r.is_some()
            });
            r.unwrap()
        };
        t.failover_ms.push(killed.elapsed().as_millis() as u64);
        check(&found, &acked, &issued, &mut seen, &mut t, &format!("iteration {it} after takeover"));
        // Restart the victim; vol1 comes home.
        procs.0[victim as usize] = Some(start_node(d, victim));
        wait_until("vol1 home on node 0", Duration::from_secs(30), || serving(d, 0) == Some(vec![1]) && serving(d, 1) == Some(vec![2]));
        let mut r = None;
        wait_until("a read-back after giveback", Duration::from_secs(15), || {
            r = read_back(port).ok();
            r.is_some()
        });
        check(&r.unwrap(), &acked, &issued, &mut seen, &mut t, &format!("iteration {it} after giveback"));
        assert!(t.lost == 0 && t.duplicated == 0 && t.corrupt == 0, "iteration {it}: {t:?} (seed {seed})");
    }
    t.failover_ms.sort_unstable();
    let p = |q: f64| t.failover_ms[((t.failover_ms.len() - 1) as f64 * q) as usize];
    eprintln!(
        "torture: {iterations} iterations in {:.0} s: {} writes acknowledged, {} lost, {} duplicated, {} corrupt; kill to verified read on the partner p50 {} ms, max {} ms",
        started.elapsed().as_secs_f64(),
        t.acked,
        t.lost,
        t.duplicated,
        t.corrupt,
        p(0.5),
        p(1.0)
    );
    assert!(t.acked > iterations, "the client got too few acknowledgements to prove anything: {t:?}");
}
