//! `tandem demo --netns`: the HA pair across network namespaces. A witness namespace runs
//! the mediator, two node namespaces run `tandem node`, a client namespace runs the
//! built-in NBD client; all are joined by veth pairs to a bridge in a switch namespace.
//! The service `vol1` has a fixed address ([`SERVICE_IP`]) in `[service.identity]`, which
//! the serving node puts on its `eth0` and its export listens on. The node serving it is
//! killed with SIGKILL; the partner gets the witness's lease, replays, claims the address
//! (gratuitous ARP) and serves; the client reconnects to the same address; the killed
//! node is restarted and gets `vol1` back (auto-giveback), address included.
//!
//! Addresses come from 192.0.2.0/24 and exist only inside the namespaces created here,
//! which are deleted on every path: on return, on error, on panic (drop) and on SIGINT,
//! SIGTERM or SIGHUP (a thread waits for them and cleans up). Needs root.

use crate::control::{request, Request};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_nbd::client::NbdClient;

/// The witness's address (namespace `w`).
pub const WITNESS_IP: &str = "192.0.2.1";
/// The nodes' own addresses (namespaces `n0`, `n1`): mirror links and heartbeats.
pub const NODE_IPS: [&str; 2] = ["192.0.2.10", "192.0.2.11"];
/// The client's address (namespace `c`).
pub const CLIENT_IP: &str = "192.0.2.50";
/// The address of service `vol1`, on whichever node serves it.
pub const SERVICE_IP: &str = "192.0.2.100";
/// The NBD port of `vol1`.
pub const NBD_PORT: u16 = 10809;
/// The namespaces joined to the bridge, with their addresses.
pub const HOSTS: [(&str, &str); 4] = [("w", WITNESS_IP), ("n0", NODE_IPS[0]), ("n1", NODE_IPS[1]), ("c", CLIENT_IP)];

/// Namespaces and child processes to remove when a signal ends the process.
static REGISTRY: Mutex<(Vec<String>, Vec<u32>)> = Mutex::new((Vec::new(), Vec::new()));

fn registry() -> std::sync::MutexGuard<'static, (Vec<String>, Vec<u32>)> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_cmd(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd).args(args).output().with_context(|| format!("cannot run {cmd} (install iproute2)"))?;
    if !out.status.success() {
        bail!("`{cmd} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Moves the calling thread into the network namespace `ns` (a name under /run/netns).
pub fn enter_netns(ns: &str) -> std::io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: `f` is an open namespace file for the whole call; setns changes only the
    // calling thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The lab: a switch namespace `sw` with bridge `br0`, and the namespaces of [`HOSTS`],
/// each with `eth0` (a veth whose peer is a bridge port) and its address. Deletes its
/// namespaces on drop.
#[derive(Debug)]
pub struct Lab {
    tag: String,
    created: Vec<String>,
}

impl Lab {
    /// Builds the lab; namespace names are `<prefix><pid><role>`. Namespaces left by an
    /// earlier process with the same prefix that is no longer running are deleted first.
    /// Fails with a clear message without root.
    pub fn new(prefix: &str) -> anyhow::Result<Lab> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            bail!("network namespaces, veth pairs and a bridge need root (running as uid {euid}); run as root");
        }
        if let Ok(list) = run_cmd("ip", &["netns", "list"]) {
            for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
                let Some(rest) = name.strip_prefix(prefix) else { continue };
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if !digits.is_empty() && !Path::new(&format!("/proc/{digits}")).exists() {
                    let _ = run_cmd("ip", &["netns", "del", name]);
                }
            }
        }
        let mut lab = Lab { tag: format!("{prefix}{}", std::process::id()), created: Vec::new() };
        for n in std::iter::once("sw").chain(HOSTS.iter().map(|h| h.0)) {
            let name = lab.ns(n);
            run_cmd("ip", &["netns", "add", &name])
                .context("cannot create a network namespace (root and a kernel with network namespaces are required)")?;
            registry().0.push(name.clone());
            lab.created.push(name);
        }
        lab.ip("sw", &["link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"])?;
        lab.ip("sw", &["link", "set", "br0", "up"])?;
        let sw = lab.ns("sw");
        for (n, addr) in HOSTS {
            let ns = lab.ns(n);
            let port = format!("p{n}");
            run_cmd("ip", &["-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            lab.ip("sw", &["link", "set", &port, "master", "br0", "up"])?;
            lab.ip(n, &["link", "set", "lo", "up"])?;
            lab.ip(n, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            lab.ip(n, &["link", "set", "eth0", "up"])?;
        }
        Ok(lab)
    }

    /// The full name of namespace `n` (`sw`, `w`, `n0`, `n1`, `c`).
    pub fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.tag)
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, n: &str, args: &[&str]) -> anyhow::Result<String> {
        let ns = self.ns(n);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        run_cmd("ip", &all)
    }

    /// A command running `program` inside namespace `n` (`ip netns exec`).
    pub fn command(&self, n: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(n)]).arg(program);
        c
    }

    /// Whether namespace `n` holds address `ip`.
    pub fn has_addr(&self, n: &str, ip: &str) -> bool {
        self.ip(n, &["-o", "addr", "show"]).is_ok_and(|o| o.split_whitespace().any(|w| w.split('/').next() == Some(ip)))
    }

    /// The MAC of `eth0` in namespace `n`.
    pub fn mac(&self, n: &str) -> anyhow::Result<String> {
        let out = self.ip(n, &["-o", "link", "show", "eth0"])?;
        let w: Vec<&str> = out.split_whitespace().collect();
        w.iter().position(|x| *x == "link/ether").and_then(|i| w.get(i + 1)).map(|m| m.to_string()).context("no MAC on eth0")
    }

    /// The client's neighbour entry for `ip` (its MAC), if any.
    pub fn client_neigh(&self, ip: &str) -> Option<String> {
        let out = self.ip("c", &["neigh", "show", ip, "dev", "eth0"]).ok()?;
        let w: Vec<&str> = out.split_whitespace().collect();
        w.iter().position(|x| *x == "lladdr").and_then(|i| w.get(i + 1)).map(|m| m.to_string())
    }

    /// Runs `f` on a thread inside namespace `n`.
    pub fn within<T: Send>(&self, n: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let ns = self.ns(n);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_netns(&ns).with_context(|| format!("setns {ns}"))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        registry().0.retain(|n| !self.created.contains(n));
    }
}

/// Child processes, killed (SIGKILL) and reaped when dropped.
#[derive(Debug, Default)]
pub struct Procs(pub Vec<Option<Child>>);

impl Procs {
    /// Starts `c` and keeps it (also for the signal cleanup).
    pub fn spawn(&mut self, mut c: Command) -> anyhow::Result<usize> {
        let child = c.spawn().context("spawning a process")?;
        registry().1.push(child.id());
        self.0.push(Some(child));
        Ok(self.0.len() - 1)
    }

    /// Puts a spawned child back into slot `i`.
    pub fn put(&mut self, i: usize, mut c: Command) -> anyhow::Result<()> {
        let child = c.spawn().context("spawning a process")?;
        registry().1.push(child.id());
        self.0[i] = Some(child);
        Ok(())
    }

    /// SIGKILLs the child in slot `i` and reaps it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let mut c = self.0[i].take().context("no such process")?;
        c.kill()?;
        c.wait()?;
        registry().1.retain(|p| *p != c.id());
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
            registry().1.retain(|p| *p != c.id());
        }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads it starts
/// later) and starts a thread that, on one of them, kills the registered children,
/// deletes the registered namespaces and exits with 128 + the signal.
pub fn cleanup_on_signals() {
    // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset, which initializes it;
    // sigaddset and pthread_sigmask only read and write that local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is an initialized signal set and `sig` a valid out-pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        let (names, pids) = registry().clone();
        for p in pids {
            // SAFETY: kill has no memory preconditions; the pids are children of this
            // process that were not reaped yet, so they cannot have been reused.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
        for n in names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        eprintln!("interrupted (signal {sig}): processes killed, namespaces deleted");
        std::process::exit(128 + sig);
    });
}

/// The TOML of node `id` (0 or 1) of the pair in the lab: mirror link, heartbeats and
/// the witness on the namespaces' own addresses; one service, `vol1` (home node 0),
/// whose address [`SERVICE_IP`] moves with it and whose export listens on it.
pub fn node_config(dir: &Path, id: u8, auto_giveback_ms: Option<u64>) -> String {
    let d = dir.display();
    let (me, other) = (id as usize, 1 - id as usize);
    let giveback = auto_giveback_ms.map(|ms| format!("auto_giveback_ms = {ms}\n")).unwrap_or_default();
    format!(
        r#"# An HA pair node in network namespace n{me}.
[node]
name = "n{me}"
control_socket = "{d}/n{me}.sock"

[engine]
kind = "soft"
listen = "{mine}:7700"
partner = "{theirs}:7700"
heartbeat_ms = 50
ack_timeout_ms = 2000
startup_timeout_ms = 20000

[mirror]
local_region = "{d}/n{me}.local.nvram"
mirror_window = "{d}/n{me}.mirror.nvram"
log_size = "16MiB"
page_count = 16

[store]
backing = "{d}/n{me}.unused.img"
partner_backing = "{d}/n{other}.unused.img"
size = "4KiB"
checkpoint_interval_ms = 200

[ha]
node_id = {me}
mgmt_listen = "{mine}:7710"
partner_mgmt = "{theirs}:7710"
witness = "mediator:{WITNESS_IP}:7800"
heartbeat_ms = 100
misses = 3
lease_ms = 400
boot_wait_ms = 1000
witness_timeout_ms = 50
{giveback}
[[service]]
id = 1
home = 0
export = "vol1"
nbd_listen = "{SERVICE_IP}:{NBD_PORT}"
backing = "{d}/vol1.img"
size = "32MiB"

[service.identity]
ips = ["{SERVICE_IP}/24"]
interface = "eth0"
"#,
        mine = NODE_IPS[me],
        theirs = NODE_IPS[other],
    )
}

/// The command that runs node `id` inside its namespace; `RUST_LOG` as given.
pub fn node_command(lab: &Lab, exe: &Path, dir: &Path, id: u8, log: &str) -> Command {
    let mut c = lab.command(&format!("n{id}"), exe);
    c.args(["node", "--config"]).arg(dir.join(format!("n{id}.toml"))).env("RUST_LOG", log).stdin(Stdio::null()).stdout(Stdio::null());
    c
}

/// The command that runs the mediator in namespace `w`.
pub fn mediator_command(lab: &Lab, exe: &Path) -> Command {
    let mut c = lab.command("w", exe);
    c.args(["mediator", "--listen", &format!("{WITNESS_IP}:7800")]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Node `id`'s HA status through its control socket `<dir>/n<id>.sock`.
pub fn ha_status(dir: &Path, id: u8) -> Option<serde_json::Value> {
    request(&dir.join(format!("n{id}.sock")), &Request::Status, Duration::from_millis(500)).ok().map(|v| v["ha"].clone())
}

/// The services node `id` serves, if it answers.
pub fn serving(dir: &Path, id: u8) -> Option<Vec<u64>> {
    ha_status(dir, id).and_then(|h| h["serving_exports"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).collect()))
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

const BLOCKS: u64 = 256;
const BLOCK: usize = 4096;

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
    /// A mark, and when the first write sent after it was acknowledged.
    mark: Option<(Instant, Option<Instant>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client: versioned 4 KiB writes to random blocks of `vol1`, reconnecting to the
/// same address after any error. Runs on a thread inside the client namespace.
fn writer(addr: SocketAddr, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>, reconnects: Arc<AtomicU64>) {
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
            let mut l = lock(&ledger);
            let v = l.issued.get(&b).copied().unwrap_or(0) + 1;
            l.issued.insert(b, v);
            v
        };
        let sent = Instant::now();
        match c.write(b * BLOCK as u64, &content(b, v)) {
            Ok(()) => {
                let mut l = lock(&ledger);
                l.acked.insert(b, v);
                l.acks += 1;
                // Only a write sent after the mark counts (not one the old server
                // acknowledged just before).
                if let Some((mark, first @ None)) = l.mark.as_mut() {
                    if sent >= *mark {
                        *first = Some(Instant::now());
                    }
                }
            }
            Err(_) => {
                client = None;
                reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn verify(lab: &Lab, addr: SocketAddr, ledger: &Ledger) -> anyhow::Result<(u64, u64)> {
    let buf = lab.within("c", || -> anyhow::Result<Vec<u8>> {
        let mut c = NbdClient::connect(addr, "vol1", Duration::from_secs(5)).context("connecting to verify")?;
        let mut buf = vec![0u8; BLOCKS as usize * BLOCK];
        c.read(0, &mut buf).context("reading back")?;
        c.disconnect();
        Ok(buf)
    })??;
    let mut bad = 0;
    for b in 0..BLOCKS {
        let a = ledger.acked.get(&b).copied().unwrap_or(0);
        let i = ledger.issued.get(&b).copied().unwrap_or(0);
        let found = version_of(b, &buf[b as usize * BLOCK..(b as usize + 1) * BLOCK]);
        if !found.is_some_and(|v| v >= a && v <= i) {
            bad += 1;
            eprintln!("  block {b}: found {found:?}, acknowledged {a}, issued {i}");
        }
    }
    Ok((BLOCKS, bad))
}

/// Lines of a node's log with the instant each was read, collected by a thread.
type LogLines = Arc<Mutex<Vec<(Instant, String)>>>;

fn collect_log(child: &mut Child) -> LogLines {
    let lines: LogLines = Arc::default();
    if let Some(err) = child.stderr.take() {
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lock(&l).push((Instant::now(), line));
            }
        });
    }
    lines
}

fn first_line(lines: &LogLines, after: Instant, pat: &str) -> Option<Instant> {
    lock(lines).iter().find(|(t, l)| *t >= after && l.contains(pat)).map(|(t, _)| *t)
}

/// Runs the demo, printing the timeline; returns whether verification passed. The
/// namespaces are deleted before it returns, whatever happens.
pub fn run(exe: Option<PathBuf>) -> anyhow::Result<bool> {
    let exe = match exe {
        Some(e) => e,
        None => std::env::current_exe()?,
    };
    cleanup_on_signals();
    let tmp = tempfile::Builder::new().prefix("tandem-demo-netns-").tempdir()?;
    let d = tmp.path();
    for id in 0..2u8 {
        std::fs::write(d.join(format!("n{id}.toml")), node_config(d, id, Some(1000)))?;
    }
    let lab = Lab::new("tdmdemo")?;
    // Declared after the lab: the processes are killed before the namespaces are deleted.
    let mut procs = Procs::default();
    procs.spawn(mediator_command(&lab, &exe))?;
    let node = |id: u8| {
        let mut c = node_command(&lab, &exe, d, id, "info");
        c.stderr(Stdio::piped());
        c
    };
    let n0 = procs.spawn(node(0))?;
    let mut logs0 = procs.0[n0].as_mut().map(collect_log).context("node 0")?;
    let n1 = procs.spawn(node(1))?;
    let logs1 = procs.0[n1].as_mut().map(collect_log).context("node 1")?;
    let macs = [lab.mac("n0")?, lab.mac("n1")?];
    println!("netns demo: namespaces {}{{sw,w,n0,n1,c}} joined by a bridge; 192.0.2.0/24 inside them only", lab.tag);
    println!(
        "  mediator on {WITNESS_IP} (w); node 0 on {} (n0, eth0 {}), node 1 on {} (n1, eth0 {}); client on {CLIENT_IP} (c)",
        NODE_IPS[0], macs[0], NODE_IPS[1], macs[1]
    );
    println!("  service vol1: address {SERVICE_IP}/24 on the serving node's eth0, NBD export nbd://{SERVICE_IP}:{NBD_PORT}/vol1");
    wait("node 0 to serve vol1", Duration::from_secs(30), || serving(d, 0) == Some(vec![1]) && serving(d, 1) == Some(vec![]))?;
    if !lab.has_addr("n0", SERVICE_IP) {
        bail!("node 0 serves vol1 but {SERVICE_IP} is not on its interface");
    }
    let addr: SocketAddr = format!("{SERVICE_IP}:{NBD_PORT}").parse()?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicU64::new(0));
    let client_ns = lab.ns("c");
    let w = {
        let (l, s, r) = (ledger.clone(), stop.clone(), reconnects.clone());
        std::thread::spawn(move || -> std::io::Result<()> {
            enter_netns(&client_ns)?;
            writer(addr, l, s, r);
            Ok(())
        })
    };
    let outcome = (|| -> anyhow::Result<bool> {
        wait("2000 writes acknowledged by node 0", Duration::from_secs(30), || lock(&ledger).acks >= 2000)?;
        let neigh0 = lab.client_neigh(SERVICE_IP);
        let acked_before = lock(&ledger).acks;
        let t0 = Instant::now();
        procs.kill(n0)?;
        // Node 0 is reaped: no write sent from here on can be acknowledged by it.
        lock(&ledger).mark = Some((Instant::now(), None));
        let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        println!(
            "timeline (ms after kill -9 of node 0, which served vol1; {acked_before} writes acknowledged before; client's neighbour entry for {SERVICE_IP}: {}):",
            neigh0.as_deref().unwrap_or("none")
        );
        println!("  {:>7.1}  kill -9 node 0 (its namespace keeps {SERVICE_IP}: nothing fences it)", 0.0);
        let mut neigh = None;
        wait("node 1 to serve vol1 and the client's entry to switch", Duration::from_secs(15), || {
            if neigh.is_none() && lab.client_neigh(SERVICE_IP).as_deref() == Some(macs[1].as_str()) {
                neigh = Some(Instant::now());
            }
            neigh.is_some() && first_line(&logs1, t0, "serving export").is_some()
        })?;
        wait("the client's first write on node 1", Duration::from_secs(15), || lock(&ledger).mark.is_some_and(|m| m.1.is_some()))?;
        let first = lock(&ledger).mark.and_then(|m| m.1).context("first write")?;
        let mut lines = vec![(ms(first), "client: first write acknowledged by node 1 (reconnected to the same address)".to_string())];
        let mut add = |t: Option<Instant>, what: &str| {
            if let Some(t) = t {
                lines.push((ms(t), what.to_string()));
            }
        };
        add(first_line(&logs1, t0, "partner lost"), "node 1: node 0 lost (no heartbeat on either path)");
        add(first_line(&logs1, t0, "service 1: lease granted"), "node 1: the witness granted the lease for vol1");
        add(first_line(&logs1, t0, "replayed the partner's log"), "node 1: replayed node 0's log");
        add(first_line(&logs1, t0, "identities claimed"), &format!("node 1: claimed {SERVICE_IP} on its eth0 (gratuitous ARP sent)"));
        add(neigh, &format!("client: neighbour entry for {SERVICE_IP} is node 1's MAC {} (seen by polling)", macs[1]));
        add(first_line(&logs1, t0, "serving export"), &format!("node 1: serving vol1 at {SERVICE_IP}:{NBD_PORT}"));
        lines.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (t, what) in &lines {
            println!("  {t:>7.1}  {what}");
        }
        println!("failover: kill -9 to the first acknowledged client write on node 1: {:.1} ms", ms(first));
        if !lab.has_addr("n1", SERVICE_IP) {
            bail!("node 1 serves vol1 but {SERVICE_IP} is not on its interface");
        }
        std::thread::sleep(Duration::from_millis(300));
        println!("restarting node 0: it removes the address its killed run left, resyncs, then vol1 goes home (auto-giveback after 1 s)");
        let t1 = Instant::now();
        lock(&ledger).mark = Some((t1, None));
        let acks_before_giveback = lock(&ledger).acks;
        procs.put(n0, node(0))?;
        logs0 = procs.0[n0].as_mut().map(collect_log).context("node 0")?;
        let back = wait("vol1 back on node 0 with its address", Duration::from_secs(30), || {
            serving(d, 0) == Some(vec![1])
                && serving(d, 1) == Some(vec![])
                && lab.has_addr("n0", SERVICE_IP)
                && !lab.has_addr("n1", SERVICE_IP)
                && lab.client_neigh(SERVICE_IP).as_deref() == Some(macs[0].as_str())
        })?;
        let claimed = first_line(&logs0, t1, "identities claimed");
        wait("client writes on node 0 after the giveback", Duration::from_secs(15), || lock(&ledger).acks > acks_before_giveback + 100)?;
        println!(
            "  vol1 and {SERVICE_IP} back on node 0 after {:.1} s (claimed at {:.1} s); client's entry is node 0's MAC {}; the client continued",
            back.as_secs_f64(),
            claimed.map(|t| t.duration_since(t1).as_secs_f64()).unwrap_or(f64::NAN),
            macs[0]
        );
        stop.store(true, Ordering::Relaxed);
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("client thread: setns: {e}"),
            Err(_) => bail!("client thread panicked"),
        }
        let l = lock(&ledger);
        let (checked, bad) = verify(&lab, addr, &l)?;
        println!(
            "verification on node 0: {checked} blocks, {bad} wrong ({} writes acknowledged in all, {} reconnects)",
            l.acks,
            reconnects.load(Ordering::Relaxed)
        );
        let pass = bad == 0;
        println!("verification: {}", if pass { "PASS: every acknowledged write survived the failover and the giveback" } else { "FAIL" });
        Ok(pass)
    })();
    stop.store(true, Ordering::Relaxed);
    drop(procs);
    drop(lab);
    outcome
}
