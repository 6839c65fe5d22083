//! Partition tests of the HA pair with real node processes (issue: "Partition tests
//! isolate each node, the mirror link and the witness in turn: no split brain, and
//! bounded unavailability"). Every path between the processes goes through a relay the
//! test controls: the mirror links through the frame-aware fault shim, the management
//! heartbeats and each node's witness traffic through UDP relays. While a fault is on, the
//! test samples both nodes' status every few milliseconds and fails if both ever report
//! serving the same service; writes acknowledged to a real NBD client (qemu-io) must read
//! back afterwards.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem::control::{request, Request};
use tandem::demo::{ha_node_config, PairPorts};
use tandem_drivers::faultshim::FaultShim;

/// A UDP relay: datagrams to `front` go to `target`; replies come back to the last sender.
struct Relay {
    front: SocketAddr,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(target).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        }
        let (blocked, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let addr = front.local_addr().unwrap();
        let last = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let (f2, b2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        for dir in 0..2 {
            let (blocked, stop, last) = (blocked.clone(), stop.clone(), last.clone());
            let (f, b) = (f2.try_clone().unwrap(), b2.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if dir == 0 {
                        if let Ok((n, from)) = f.recv_from(&mut buf) {
                            *last.lock().unwrap() = Some(from);
                            if !blocked.load(Ordering::Relaxed) {
                                let _ = b.send(&buf[..n]);
                            }
                        }
                    } else if let Ok(n) = b.recv(&mut buf) {
                        let to = *last.lock().unwrap();
                        if let (false, Some(to)) = (blocked.load(Ordering::Relaxed), to) {
                            let _ = f.send_to(&buf[..n], to);
                        }
                    }
                }
            });
        }
        Relay { front: addr, blocked, stop }
    }

    fn block(&self, b: bool) {
        self.blocked.store(b, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Pair {
    dir: tempfile::TempDir,
    procs: Vec<Child>,
    mirror: [FaultShim; 2],
    mgmt: [Relay; 2],
    witness: [Relay; 2],
    nbd: [u16; 2],
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tandem"))
}

impl Pair {
    fn start() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let ports = PairPorts::pick().unwrap();
        let at = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
        // Node i dials its partner's mirror listener through mirror[i].
        let mirror = [FaultShim::passthrough(at(ports.mirror[1])).unwrap(), FaultShim::passthrough(at(ports.mirror[0])).unwrap()];
        let mgmt = [Relay::start(at(ports.mgmt[1])), Relay::start(at(ports.mgmt[0]))];
        let witness = [Relay::start(at(ports.witness)), Relay::start(at(ports.witness))];
        for id in 0..2usize {
            let cfg = ha_node_config(&d, id as u8, &ports, Some(500))
                .replace(
                    &format!("partner = \"127.0.0.1:{}\"", ports.mirror[1 - id]),
                    &format!("partner = \"{}\"", mirror[id].local_addr()),
                )
                .replace(&format!("partner_mgmt = \"127.0.0.1:{}\"", ports.mgmt[1 - id]), &format!("partner_mgmt = \"{}\"", mgmt[id].front))
                .replace(
                    &format!("witness = \"mediator:127.0.0.1:{}\"", ports.witness),
                    &format!("witness = \"mediator:{}\"", witness[id].front),
                );
            std::fs::write(d.join(format!("n{id}.toml")), cfg).unwrap();
        }
        let mut procs = vec![Command::new(exe())
            .args(["mediator", "--listen", &format!("127.0.0.1:{}", ports.witness)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()];
        for id in 0..2 {
            procs.push(
                Command::new(exe())
                    .args(["node", "--config"])
                    .arg(d.join(format!("n{id}.toml")))
                    .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
        let p = Pair { dir, procs, mirror, mgmt, witness, nbd: ports.nbd };
        p.wait_settled("start-up", Duration::from_secs(30));
        p
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn serving(&self, id: u8) -> Option<Vec<u64>> {
        let v = request(&self.path().join(format!("n{id}.sock")), &Request::Status, Duration::from_secs(1)).ok()?;
        v["ha"]["serving_exports"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
    }

    fn wait_settled(&self, what: &str, limit: Duration) -> Duration {
        self.watch(what, limit, |a, b| a == [1] && b == [2])
    }

    /// Samples both nodes until `done(serving0, serving1)`; fails on a service served by
    /// both at once. Returns how long it took.
    fn watch(&self, what: &str, limit: Duration, mut done: impl FnMut(&[u64], &[u64]) -> bool) -> Duration {
        let t = Instant::now();
        loop {
            let (a, b) = (self.serving(0).unwrap_or_default(), self.serving(1).unwrap_or_default());
            if let Some(s) = a.iter().find(|s| b.contains(s)) {
                panic!("{what}: service {s} served by both nodes at once ({a:?} / {b:?})");
            }
            if done(&a, &b) {
                return t.elapsed();
            }
            assert!(t.elapsed() < limit, "{what}: not done after {limit:?} (serving {a:?} / {b:?})");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn isolate_node(&self, id: usize, on: bool) {
        self.mirror[id].set_blocked(on);
        self.mirror[1 - id].set_blocked(on);
        if on {
            self.mirror[id].cut();
            self.mirror[1 - id].cut();
        }
        self.mgmt[0].block(on);
        self.mgmt[1].block(on);
        self.witness[id].block(on);
    }
}

/// qemu-io against an export: true when every command succeeded (a write returns only
/// when the server acknowledged it; a read with -P checks the pattern).
fn qemu_io(port: u16, export: &str, cmd: &str) -> bool {
    let out = Command::new("qemu-io")
        .args(["-f", "raw", &format!("nbd://127.0.0.1:{port}/{export}"), "-c", cmd])
        .output()
        .expect("qemu-io (Debian package qemu-utils) must be installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    out.status.success() && !text.contains("failed") && !text.contains("error")
}

/// Writes `n` 4 KiB blocks of `fill`; returns how many were acknowledged (all or none).
fn write_blocks(port: u16, export: &str, fill: u8, n: u64) -> u64 {
    if qemu_io(port, export, &format!("write -P {fill} 0 {}", n * 4096)) {
        n
    } else {
        0
    }
}

/// True when the first `n` blocks all hold `fill`.
fn holds(port: u16, export: &str, fill: u8, n: u64) -> bool {
    qemu_io(port, export, &format!("read -P {fill} 0 {}", n * 4096))
}

#[test]
fn mirror_link_cut_no_takeover_and_writes_continue() {
    let p = Pair::start();
    assert_eq!(write_blocks(p.nbd[0], "vol1", 1, 32), 32);
    for m in &p.mirror {
        m.set_blocked(true);
        m.cut();
    }
    // Both nodes keep their own service (the management path says the partner is alive)
    // and, once the witness recorded the copies stale, acknowledge writes unmirrored.
    let t = Instant::now();
    let mut acked = 0;
    while t.elapsed() < Duration::from_secs(3) && acked < 32 {
        acked = write_blocks(p.nbd[0], "vol1", 2, 32);
    }
    assert_eq!(acked, 32, "writes on vol1 while the mirror link is cut");
    p.watch("mirror link cut", Duration::from_secs(2), |a, b| t.elapsed() > Duration::from_secs(1) && a == [1] && b == [2]);
    for m in &p.mirror {
        m.set_blocked(false);
    }
    p.wait_settled("after the link healed", Duration::from_secs(20));
    assert!(holds(p.nbd[0], "vol1", 2, 32));
}

#[test]
fn isolated_node_is_fenced_and_its_service_moves_without_split_brain() {
    let p = Pair::start();
    assert_eq!(write_blocks(p.nbd[0], "vol1", 7, 32), 32);
    let t = Instant::now();
    p.isolate_node(0, true);
    // Node 0 cannot renew its lease: it stops serving vol1; node 1 takes it over once the
    // lease has run out. Never both at once.
    let moved = p.watch("node 0 isolated", Duration::from_secs(15), |_, b| b.contains(&1));
    eprintln!("vol1 unavailable for at most {:?} after isolating node 0", moved);
    assert!(holds(p.nbd[0], "vol1", 7, 32), "acknowledged writes survive the move");
    assert_eq!(write_blocks(p.nbd[0], "vol1", 8, 32), 32);
    p.isolate_node(0, false);
    // Healed: resync, then auto-giveback sends vol1 home.
    p.watch("after healing", Duration::from_secs(30), |a, b| a == [1] && b == [2]);
    assert!(holds(p.nbd[0], "vol1", 8, 32));
    assert!(t.elapsed() < Duration::from_secs(60));
}

#[test]
fn isolated_witness_stops_service_safely_and_it_comes_back() {
    let p = Pair::start();
    for w in &p.witness {
        w.block(true);
    }
    // Leases cannot be renewed: each node stops serving before its lease ends; nobody
    // can take over either. Safety over availability.
    p.watch("witness isolated", Duration::from_secs(5), |a, b| a.is_empty() && b.is_empty());
    for w in &p.witness {
        w.block(false);
    }
    let back = p.wait_settled("witness reachable again", Duration::from_secs(20));
    eprintln!("services back {:?} after the witness returned", back);
    assert_eq!(write_blocks(p.nbd[1], "vol2", 3, 8), 8);
}
