//! Identity takeover between network namespaces the tests create themselves.
//!
//! Each test builds a small lab: a "switch" namespace with a bridge, and namespaces for
//! node A, node B and a client C, each joined to the bridge by a veth pair (`eth0` in the
//! node's namespace). Addresses are from the documentation ranges (192.0.2.0/24,
//! 2001:db8::/64) and exist only inside these namespaces; every namespace is deleted when
//! the test ends, also when it panics. The code under test runs on a thread that entered
//! the node's namespace with setns(2).
//!
//! The tests need root (CAP_NET_ADMIN and CAP_SYS_ADMIN): without it they fail with a
//! message saying so.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tandem::ha::{NodeId, ServiceId};
use tandem::identity::model::{FcSection, IdentitySection};
use tandem::identity::net::Netlink;
use tandem::identity::{AnnouncePolicy, Identities, MacAddr, ServiceIdentity};

/// Runs `ip` (or another command) and returns stdout; panics with the command and its
/// stderr on failure.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (install iproute2)"));
    assert!(out.status.success(), "`{cmd} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lab; deletes its namespaces on drop.
struct Lab {
    tag: String,
    created: Vec<String>,
}

impl Lab {
    fn new(test: &str) -> Lab {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the identity namespace tests need root to create network namespaces, veth pairs and a bridge (running as uid {euid}); run them as root"
        );
        let tag = format!("tdmid{}{test}", std::process::id());
        let mut lab = Lab { tag, created: Vec::new() };
        for n in ["sw", "a", "b", "c"] {
            let name = lab.ns(n);
            let out = Command::new("ip").args(["netns", "add", &name]).output().expect("cannot run ip (install iproute2)");
            assert!(
                out.status.success(),
                "cannot create network namespace {name} (root and a kernel with network namespaces are required): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            lab.created.push(name);
        }
        let sw = lab.ns("sw");
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"]);
        run("ip", &["-n", &sw, "link", "set", "br0", "up"]);
        for n in ["a", "b", "c"] {
            let ns = lab.ns(n);
            let port = format!("p{n}");
            run("ip", &["-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            run("ip", &["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            // Up, as a node's NIC is when it takes over (claiming brings a down link up
            // too: the idempotence test covers that).
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        }
        let c = lab.ns("c");
        run("ip", &["-n", &c, "addr", "add", "192.0.2.100/24", "dev", "eth0"]);
        run("ip", &["-n", &c, "-6", "addr", "add", "2001:db8::100/64", "dev", "eth0", "nodad"]);
        lab
    }

    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.tag)
    }

    /// Runs `f` on a thread inside namespace `n`.
    fn within<T: Send>(&self, n: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.ns(n));
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: `ns` is an open namespace file for the whole call; setns only
                // changes this thread's network namespace.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// `ip <args>` inside namespace `n`.
    fn ip(&self, n: &str, args: &[&str]) -> String {
        let ns = self.ns(n);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// The MAC of `dev` in namespace `n`.
    fn mac(&self, n: &str, dev: &str) -> MacAddr {
        self.within(n, || Netlink::open().unwrap().link(dev).unwrap().and_then(|l| l.mac).expect("interface with a MAC"))
    }

    /// The client's neighbour entry for `ip`: the link-layer address, if any.
    fn client_neigh(&self, ip: &str) -> Option<MacAddr> {
        let out = self.ip("c", &["neigh", "show", ip, "dev", "eth0"]);
        let words: Vec<&str> = out.split_whitespace().collect();
        words.iter().position(|w| *w == "lladdr").and_then(|i| words.get(i + 1)).map(|m| m.parse().expect("MAC"))
    }

    /// Waits (at most 3 s) until the client's entry for `ip` is `mac`.
    fn wait_client_neigh(&self, ip: &str, mac: MacAddr) {
        let start = Instant::now();
        loop {
            let now = self.client_neigh(ip);
            if now == Some(mac) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "client's neighbour entry for {ip} is {now:?}, expected {mac} (the announcement did not update it)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A TCP server on `addr` in namespace `n` that answers one connection with `reply`.
    fn serve_once(&self, n: &str, addr: SocketAddr, reply: &'static str) -> JoinHandle<()> {
        let path = format!("/run/netns/{}", self.ns(n));
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let ns = File::open(&path).unwrap();
            // SAFETY: as in `within`.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in {path}: {e}"));
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            let start = Instant::now();
            // Bounded: one connection within 5 s.
            while start.elapsed() < Duration::from_secs(5) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.write_all(reply.as_bytes()).unwrap();
                        return;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => panic!("accept: {e}"),
                }
            }
            panic!("no client connected to {addr} within 5 s");
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("server bound");
        h
    }

    /// Connects from the client to `addr` and returns what the server said.
    fn client_fetch(&self, addr: SocketAddr) -> String {
        self.within("c", || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("client cannot connect to {addr}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
    }

    /// Serves `addr` from node `n` once and checks that the client reaches that node.
    fn check_served_by(&self, n: &str, addr: SocketAddr) {
        let reply = if n == "a" { "node-a" } else { "node-b" };
        let server = self.serve_once(n, addr, reply);
        assert_eq!(self.client_fetch(addr), reply, "the client reached the wrong node");
        server.join().unwrap();
    }

    /// Whether namespace `n` holds `ip` on any interface.
    fn has_addr(&self, n: &str, ip: &str) -> bool {
        self.ip(n, &["-o", "addr", "show"]).split_whitespace().any(|w| w.split('/').next() == Some(ip))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn identity(service: u32, section: IdentitySection) -> ServiceIdentity {
    section.resolve(ServiceId(service)).unwrap()
}

fn node(id: u8, s: &ServiceIdentity) -> Identities {
    // One announcement round: the tests check that the first one does the work.
    Identities::new(NodeId(id), vec![s.clone()]).unwrap().with_announce(AnnouncePolicy { rounds: 1, interval: Duration::ZERO })
}

#[test]
fn ipv4_moves_with_gratuitous_arp() {
    let lab = Lab::new("v4");
    let s = ServiceId(1);
    let id = identity(1, IdentitySection { ips: vec!["192.0.2.10/24".into()], interface: Some("eth0".into()), ..Default::default() });
    let (a, b) = (node(0, &id), node(1, &id));
    let addr: SocketAddr = "192.0.2.10:7001".parse().unwrap();

    let r = lab.within("a", || a.claim(s, 1)).unwrap();
    assert_eq!(r.addresses_added.len(), 1);
    assert!(lab.ip("a", &["link", "show", "eth0"]).contains("state UP") || lab.ip("a", &["link", "show", "eth0"]).contains(",UP"));
    lab.check_served_by("a", addr);
    let mac_a = lab.mac("a", "eth0");
    let mac_b = lab.mac("b", "eth0");
    assert_ne!(mac_a, mac_b);
    assert_eq!(lab.client_neigh("192.0.2.10"), Some(mac_a));

    let rel = lab.within("a", || a.release(s)).unwrap();
    assert_eq!(rel.addresses_removed.len(), 1);
    assert!(!lab.has_addr("a", "192.0.2.10"));
    // The client still points at A until B announces.
    assert_eq!(lab.client_neigh("192.0.2.10"), Some(mac_a));

    lab.within("b", || b.claim(s, 2)).unwrap();
    assert!(lab.has_addr("b", "192.0.2.10"));
    // The gratuitous ARP, not the client asking again, moved the entry.
    lab.wait_client_neigh("192.0.2.10", mac_b);
    lab.check_served_by("b", addr);
}

#[test]
fn macvlan_with_fixed_mac_moves() {
    let lab = Lab::new("mv");
    let s = ServiceId(2);
    let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
    let id = identity(
        2,
        IdentitySection {
            ips: vec!["192.0.2.20/24".into()],
            interface: Some("eth0".into()),
            mac: Some(mac.to_string()),
            ..Default::default()
        },
    );
    assert_eq!(id.macvlan, "tdm2");
    let (a, b) = (node(0, &id), node(1, &id));
    let addr: SocketAddr = "192.0.2.20:7002".parse().unwrap();

    let r = lab.within("a", || a.claim(s, 1)).unwrap();
    assert!(r.macvlan_created);
    assert_eq!(lab.mac("a", "tdm2"), mac);
    let link = lab.ip("a", &["-d", "link", "show", "tdm2"]);
    assert!(link.contains("macvlan mode bridge") && link.contains("tdm2@eth0") && link.contains(",UP"), "{link}");
    assert!(lab.ip("a", &["-o", "addr", "show", "dev", "tdm2"]).contains("192.0.2.20/24"));
    let arp_ignore = run("ip", &["netns", "exec", &lab.ns("a"), "cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"]);
    assert_eq!(arp_ignore.trim(), "1", "the parent must not answer ARP for the child's address");
    lab.check_served_by("a", addr);
    assert_eq!(lab.client_neigh("192.0.2.20"), Some(mac), "the client sees the service's own MAC");

    lab.within("a", || a.release(s)).unwrap();
    assert!(!lab.ip("a", &["-o", "link", "show"]).contains("tdm2"), "macvlan child removed");
    lab.within("b", || b.claim(s, 2)).unwrap();
    assert_eq!(lab.mac("b", "tdm2"), mac);
    // The switch learned the MAC's new port (from B's announcement or its first frames).
    let start = Instant::now();
    loop {
        let fdb = run("bridge", &["-n", &lab.ns("sw"), "fdb", "show", "br", "br0"]);
        if fdb.lines().any(|l| l.starts_with("02:00:00:00:00:01 dev pb")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "bridge did not learn the MAC on B's port:\n{fdb}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Same MAC: the client's entry never had to change.
    assert_eq!(lab.client_neigh("192.0.2.20"), Some(mac));
    lab.check_served_by("b", addr);
    lab.within("b", || b.release(s)).unwrap();
    assert!(!lab.ip("b", &["-o", "link", "show"]).contains("tdm2"));
}

#[test]
fn ipv6_moves_with_unsolicited_neighbour_advertisement() {
    let lab = Lab::new("v6");
    let s = ServiceId(3);
    let id = identity(3, IdentitySection { ips: vec!["2001:db8::10/64".into()], interface: Some("eth0".into()), ..Default::default() });
    let (a, b) = (node(0, &id), node(1, &id));
    let addr: SocketAddr = "[2001:db8::10]:7003".parse().unwrap();

    lab.within("a", || a.claim(s, 1)).unwrap();
    let shown = lab.ip("a", &["-6", "-o", "addr", "show", "dev", "eth0"]);
    let line = shown.lines().find(|l| l.contains("2001:db8::10/64")).unwrap_or_else(|| panic!("address missing: {shown}"));
    assert!(!line.contains("tentative"), "usable at once, no DAD wait: {line}");
    lab.check_served_by("a", addr);
    let (mac_a, mac_b) = (lab.mac("a", "eth0"), lab.mac("b", "eth0"));
    assert_eq!(lab.client_neigh("2001:db8::10"), Some(mac_a));

    lab.within("a", || a.release(s)).unwrap();
    assert!(!lab.has_addr("a", "2001:db8::10"));
    lab.within("b", || b.claim(s, 2)).unwrap();
    lab.wait_client_neigh("2001:db8::10", mac_b);
    lab.check_served_by("b", addr);
}

#[test]
fn claim_and_release_are_idempotent_and_survive_a_crash_halfway() {
    let lab = Lab::new("idem");
    let s = ServiceId(4);
    let mac: MacAddr = "02:00:00:00:00:04".parse().unwrap();
    let id = identity(
        4,
        IdentitySection {
            ips: vec!["192.0.2.40/24".into(), "2001:db8::40/64".into()],
            interface: Some("eth0".into()),
            mac: Some(mac.to_string()),
            macvlan: Some("svc4".into()),
            fc: vec![],
        },
    );
    let a = node(0, &id);
    let count = |ip: &str| lab.ip("a", &["-o", "addr", "show"]).matches(&format!(" {ip}/")).count();

    let first = lab.within("a", || a.claim(s, 1)).unwrap();
    assert_eq!((first.addresses_added.len(), first.macvlan_created), (2, true));
    let second = lab.within("a", || a.claim(s, 1)).unwrap();
    assert_eq!((second.addresses_added.len(), second.addresses_present.len(), second.macvlan_created), (0, 2, false));
    assert_eq!((count("192.0.2.40"), count("2001:db8::40")), (1, 1));

    // Crash halfway through a release: one address and the child's state are gone.
    lab.ip("a", &["addr", "del", "192.0.2.40/24", "dev", "svc4"]);
    lab.ip("a", &["link", "set", "svc4", "down"]);
    let redo = lab.within("a", || a.claim(s, 1)).unwrap();
    // The kernel drops IPv6 addresses of a link that goes down: both come back.
    assert_eq!(redo.addresses_added.len(), 2);
    assert!(lab.ip("a", &["link", "show", "svc4"]).contains(",UP"));
    assert_eq!((count("192.0.2.40"), count("2001:db8::40")), (1, 1));

    // A child left with the wrong MAC (an earlier configuration) gets the service's.
    lab.ip("a", &["link", "set", "svc4", "address", "02:00:00:00:00:99"]);
    lab.within("a", || a.claim(s, 1)).unwrap();
    assert_eq!(lab.mac("a", "svc4"), mac);

    // A stale copy on the wrong interface (crash during a move) is moved to the child.
    lab.ip("a", &["addr", "del", "192.0.2.40/24", "dev", "svc4"]);
    lab.ip("a", &["addr", "add", "192.0.2.40/24", "dev", "eth0"]);
    lab.within("a", || a.claim(s, 1)).unwrap();
    assert!(lab.ip("a", &["-o", "addr", "show", "dev", "svc4"]).contains("192.0.2.40/24"));
    assert_eq!(count("192.0.2.40"), 1);

    let rel = lab.within("a", || a.release(s)).unwrap();
    assert_eq!((rel.addresses_removed.len(), rel.macvlan_deleted), (2, true));
    let again = lab.within("a", || a.release(s)).unwrap();
    assert_eq!((again.addresses_removed.len(), again.macvlan_deleted), (0, false));
    assert_eq!((count("192.0.2.40"), count("2001:db8::40")), (0, 0));
    // Half-released (child deleted by hand, an address left behind): the release finishes.
    lab.within("a", || a.claim(s, 1)).unwrap();
    lab.ip("a", &["link", "del", "svc4"]);
    lab.ip("a", &["addr", "add", "2001:db8::40/64", "dev", "eth0", "nodad"]);
    let rest = lab.within("a", || a.release(s)).unwrap();
    assert_eq!(rest.addresses_removed.len(), 1);
    assert_eq!(count("2001:db8::40"), 0);
    assert_eq!(a.db().holder(s), None);
}

#[test]
fn claim_refuses_a_foreign_interface_and_a_missing_parent() {
    let lab = Lab::new("bad");
    let s = ServiceId(5);
    let mk = |section: IdentitySection| node(0, &identity(5, section));
    // The macvlan name is taken by an interface that is not a macvlan child of eth0.
    lab.ip("a", &["link", "add", "svc5", "type", "bridge"]);
    let a = mk(IdentitySection {
        ips: vec!["192.0.2.50/24".into()],
        interface: Some("eth0".into()),
        mac: Some("02:00:00:00:00:05".into()),
        macvlan: Some("svc5".into()),
        fc: vec![],
    });
    let e = lab.within("a", || a.claim(s, 1)).unwrap_err();
    assert!(e.to_string().contains("svc5 exists and is not a macvlan on eth0"), "{e}");
    assert!(lab.ip("a", &["-d", "link", "show", "svc5"]).contains("bridge"), "the foreign interface is untouched");
    assert!(!lab.has_addr("a", "192.0.2.50"));
    // Release never deletes an interface that is not a macvlan.
    lab.within("a", || a.release(s)).unwrap();
    assert!(lab.ip("a", &["-d", "link", "show", "svc5"]).contains("bridge"));

    let missing = mk(IdentitySection {
        ips: vec!["192.0.2.50/24".into()],
        interface: Some("eth9".into()),
        fc: vec![FcSection { host: "host5".into(), wwpn: "2100001b32a1b2c3".into(), wwnn: "2000001b32a1b2c3".into() }],
        ..Default::default()
    });
    let e = lab.within("a", || missing.claim(s, 1)).unwrap_err();
    assert!(e.to_string().contains("looking up eth9"), "{e}");
}
