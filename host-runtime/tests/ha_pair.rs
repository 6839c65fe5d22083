//! An HA pair of real node processes with a mediator, serving two NBD exports; a real NBD
//! client (qemu-io) writes, the serving node is killed with SIGKILL, the partner takes
//! the service over at the same address, and every acknowledged write reads back; the
//! restarted node gets its service back (giveback).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tandem::demo::{ha_node_config, PairPorts};
use tandem::demo_ha::{serving, Procs};

mod support;
use support::{exe, start_node, wait_until};

fn qemu_io(port: u16, export: &str, cmds: &[&str]) -> Result<String, String> {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw", &format!("nbd://127.0.0.1:{port}/{export}")]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.output().expect("qemu-io (Debian package qemu-utils) must be installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && !text.contains("Pattern verification failed") && !text.contains("failed") {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn kill_the_serving_node_partner_takes_over_then_gives_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ports = PairPorts::pick().unwrap();
    for id in 0..2u8 {
        std::fs::write(d.join(format!("n{id}.toml")), ha_node_config(d, id, &ports, Some(500))).unwrap();
    }
    let mut procs = Procs(Vec::new());
    procs.0.push(Some(
        Command::new(exe())
            .args(["mediator", "--listen", &format!("127.0.0.1:{}", ports.witness)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    procs.0.push(Some(start_node(d, 0)));
    procs.0.push(Some(start_node(d, 1)));
    wait_until("each node to serve its home service", Duration::from_secs(30), || {
        serving(d, 0) == Some(vec![1]) && serving(d, 1) == Some(vec![2])
    });
    // Writes acknowledged by node 0 through a real NBD client.
    qemu_io(ports.nbd[0], "vol1", &["write -P 0x11 0 1M", "write -P 0x22 4M 64k", "flush"]).unwrap();
    qemu_io(ports.nbd[1], "vol2", &["write -P 0x33 0 64k"]).unwrap();

    // Kill node 0; node 1 takes vol1 over at the same address.
    let mut victim = procs.0[1].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let t = Instant::now();
    wait_until("node 1 to serve vol1", Duration::from_secs(10), || serving(d, 1).is_some_and(|s| s.contains(&1)));
    let mut first_io = None;
    wait_until("a client read on node 1", Duration::from_secs(10), || {
        let ok = qemu_io(ports.nbd[0], "vol1", &["read -P 0x11 0 1M", "read -P 0x22 4M 64k"]).is_ok();
        if ok {
            first_io = Some(t.elapsed());
        }
        ok
    });
    eprintln!("failover: kill -9 to first successful read {:?}", first_io.unwrap());
    // New writes on the survivor (unmirrored: the partner is down).
    qemu_io(ports.nbd[0], "vol1", &["write -P 0x44 8M 64k"]).unwrap();
    qemu_io(ports.nbd[1], "vol2", &["read -P 0x33 0 64k"]).unwrap();

    // Node 0 comes back: resync, then vol1 goes home (auto-giveback).
    procs.0[1] = Some(start_node(d, 0));
    wait_until("vol1 back on node 0", Duration::from_secs(30), || serving(d, 0) == Some(vec![1]) && serving(d, 1) == Some(vec![2]));
    wait_until("reads on node 0 after giveback", Duration::from_secs(10), || {
        qemu_io(ports.nbd[0], "vol1", &["read -P 0x11 0 1M", "read -P 0x22 4M 64k", "read -P 0x44 8M 64k"]).is_ok()
    });
}

#[test]
fn the_ha_demo_passes() {
    let out = Command::new(exe()).args(["demo", "--ha"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verification: PASS") && text.contains("first client write acknowledged by node 1"), "{text}");
}

/// The same takeover with etcd as the witness (Debian's etcd-server, started here).
#[test]
fn takeover_with_an_etcd_witness() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (client, peer) = (format!("http://127.0.0.1:{}", free()), format!("http://127.0.0.1:{}", free()));
    let log = std::fs::File::create(d.join("etcd.log")).unwrap();
    let etcd = Command::new("etcd")
        .args(["--name", "w", "--data-dir"])
        .arg(d.join("etcd"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer, "--initial-cluster", &format!("w={peer}")])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("etcd not found: install the Debian package etcd-server (scripts/test does)");
    let mut procs = Procs(vec![Some(etcd)]);
    let ports = PairPorts::pick().unwrap();
    for id in 0..2u8 {
        let cfg = ha_node_config(d, id, &ports, None)
            .replace(&format!("witness = \"mediator:127.0.0.1:{}\"", ports.witness), &format!("witness = \"etcd:{client}\""))
            .replace("witness_timeout_ms = 50", "witness_timeout_ms = 150");
        std::fs::write(d.join(format!("n{id}.toml")), cfg).unwrap();
    }
    procs.0.push(Some(start_node(d, 0)));
    procs.0.push(Some(start_node(d, 1)));
    wait_until("each node to serve its home service (etcd witness)", Duration::from_secs(40), || {
        serving(d, 0) == Some(vec![1]) && serving(d, 1) == Some(vec![2])
    });
    qemu_io(ports.nbd[0], "vol1", &["write -P 0x5e 0 256k"]).unwrap();
    let mut victim = procs.0[1].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    // etcd leases run in whole seconds: the takeover waits for etcd to expire node 0's lease.
    let took = wait_until("node 1 to serve vol1", Duration::from_secs(20), || serving(d, 1).is_some_and(|s| s.contains(&1)));
    eprintln!("takeover with the etcd witness after {took:?}");
    wait_until("the read on node 1", Duration::from_secs(10), || qemu_io(ports.nbd[0], "vol1", &["read -P 0x5e 0 256k"]).is_ok());
}

/// Planned takeover and giveback through the operator commands (maintenance of node 0).
#[test]
fn operator_takeover_and_giveback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ports = PairPorts::pick().unwrap();
    for id in 0..2u8 {
        std::fs::write(d.join(format!("n{id}.toml")), ha_node_config(d, id, &ports, None)).unwrap();
    }
    let mediator = Command::new(exe())
        .args(["mediator", "--listen", &format!("127.0.0.1:{}", ports.witness)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _procs = Procs(vec![Some(mediator), Some(start_node(d, 0)), Some(start_node(d, 1))]);
    wait_until("each node to serve its home service", Duration::from_secs(30), || {
        serving(d, 0) == Some(vec![1]) && serving(d, 1) == Some(vec![2])
    });
    qemu_io(ports.nbd[0], "vol1", &["write -P 0x61 0 256k"]).unwrap();
    let cli = |cmd: &str| {
        let out = Command::new(exe()).args([cmd, "--socket"]).arg(d.join("n1.sock")).output().unwrap();
        assert!(out.status.success(), "tandem {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    };
    cli("takeover");
    wait_until("node 1 to serve both", Duration::from_secs(15), || serving(d, 1) == Some(vec![1, 2]) && serving(d, 0) == Some(vec![]));
    wait_until("vol1 readable on node 1", Duration::from_secs(10), || qemu_io(ports.nbd[0], "vol1", &["read -P 0x61 0 256k"]).is_ok());
    qemu_io(ports.nbd[0], "vol1", &["write -P 0x62 256k 256k"]).unwrap();
    cli("giveback");
    wait_until("vol1 back on node 0", Duration::from_secs(15), || serving(d, 0) == Some(vec![1]) && serving(d, 1) == Some(vec![2]));
    wait_until("vol1 readable on node 0", Duration::from_secs(10), || {
        qemu_io(ports.nbd[0], "vol1", &["read -P 0x61 0 256k", "read -P 0x62 256k 256k"]).is_ok()
    });
}
