//! FC NPIV virtual ports over a fake fc_host sysfs tree.
//!
//! The tree has the real file names and formats (`class/fc_host/hostN/port_name` as
//! `0x` + 16 hex digits, decimal `max_npiv_vports` and `npiv_vports_inuse`). Its
//! `vport_create` and `vport_delete` are named pipes read by a fake kernel thread that,
//! like `scsi_transport_fc`, parses `WWPN:WWNN` (16 hex digits each), creates or removes
//! `class/fc_vports/vport-N:0-K` and adjusts `npiv_vports_inuse`. Malformed writes are
//! recorded and fail the test.

use nix::sys::stat::Mode;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tandem::ha::{NodeId, ServiceId};
use tandem::identity::fc::{Created, Deleted, FcError, FcSysfs};
use tandem::identity::model::{FcSection, IdentitySection};
use tandem::identity::{HoldState, Identities, IdentityError, VportDb, VportDbError, Wwn};

const WWPN: &str = "2100001b32a1b2c3";
const WWNN: &str = "2000001b32a1b2c3";

/// A fake sysfs root with fc_hosts whose control files are served by fake kernel threads.
struct FakeSysfs {
    dir: tempfile::TempDir,
    fifos: Vec<PathBuf>,
    threads: Vec<JoinHandle<()>>,
    /// Writes the fake kernel rejected (the real one answers EINVAL).
    rejected: Arc<Mutex<Vec<String>>>,
    /// Every accepted write, as written.
    writes: Arc<Mutex<Vec<(String, String)>>>,
}

fn parse_names(s: &str) -> Option<(u64, u64)> {
    // scsi_transport_fc: an optional trailing newline, then exactly 16 hex, ':', 16 hex.
    let s = s.strip_suffix('\n').unwrap_or(s);
    let (p, n) = s.split_once(':')?;
    let hex = |x: &str| (x.len() == 16 && x.bytes().all(|b| b.is_ascii_hexdigit())).then(|| u64::from_str_radix(x, 16).ok()).flatten();
    Some((hex(p)?, hex(n)?))
}

fn read_count(p: &Path) -> u64 {
    fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

/// Replaces a file's content at once (a reader never sees it empty), as a sysfs read of a
/// kernel attribute always gets a whole value.
fn write_atomic(p: &Path, content: &str) {
    let tmp = p.with_extension("tmp");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, p).unwrap();
}

impl FakeSysfs {
    fn new() -> Self {
        FakeSysfs {
            dir: tempfile::tempdir().unwrap(),
            fifos: Vec::new(),
            threads: Vec::new(),
            rejected: Arc::default(),
            writes: Arc::default(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn host_dir(&self, n: u32) -> PathBuf {
        self.root().join(format!("class/fc_host/host{n}"))
    }

    fn inuse(&self, n: u32) -> u64 {
        read_count(&self.host_dir(n).join("npiv_vports_inuse"))
    }

    /// Adds fc_host `host<n>` with the physical names and NPIV capacity `max`.
    fn add_host(&mut self, n: u32, port_name: u64, node_name: u64, max: u64) {
        let h = self.host_dir(n);
        fs::create_dir_all(&h).unwrap();
        fs::create_dir_all(self.root().join("class/fc_vports")).unwrap();
        fs::write(h.join("port_name"), format!("0x{port_name:016x}\n")).unwrap();
        fs::write(h.join("node_name"), format!("0x{node_name:016x}\n")).unwrap();
        fs::write(h.join("max_npiv_vports"), format!("{max}\n")).unwrap();
        fs::write(h.join("npiv_vports_inuse"), "0\n").unwrap();
        fs::write(h.join("port_state"), "Online\n").unwrap();
        for (file, create) in [("vport_create", true), ("vport_delete", false)] {
            let fifo = h.join(file);
            nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
            self.fifos.push(fifo.clone());
            let root = self.root().to_path_buf();
            let rejected = self.rejected.clone();
            let writes = self.writes.clone();
            self.threads.push(std::thread::spawn(move || {
                let mut next = 0u32;
                // Ends on the "quit" the drop writes; every iteration waits for one write.
                loop {
                    let Ok(s) = fs::read_to_string(&fifo) else { return };
                    if s == "quit" {
                        return;
                    }
                    let Some((wwpn, wwnn)) = parse_names(&s) else {
                        rejected.lock().unwrap().push(format!("{file}: {s:?}"));
                        continue;
                    };
                    writes.lock().unwrap().push((file.to_string(), s.clone()));
                    let vports = root.join("class/fc_vports");
                    let inuse = root.join(format!("class/fc_host/host{n}/npiv_vports_inuse"));
                    // The count changes before the vport becomes visible (the code under test
                    // waits for the vport), so both are done when it sees the vport, as
                    // they are when the kernel's write returns.
                    if create {
                        write_atomic(&inuse, &format!("{}\n", read_count(&inuse) + 1));
                        let d = vports.join(format!("vport-{n}:0-{next}"));
                        next += 1;
                        fs::create_dir_all(&d).unwrap();
                        fs::write(d.join("node_name"), format!("0x{wwnn:016x}\n")).unwrap();
                        fs::write(d.join("vport_state"), "Active\n").unwrap();
                        // port_name last: a reader that sees it sees a complete vport.
                        write_atomic(&d.join("port_name"), &format!("0x{wwpn:016x}\n"));
                    } else {
                        let found = fs::read_dir(&vports).unwrap().flatten().find(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            name.starts_with(&format!("vport-{n}:"))
                                && fs::read_to_string(e.path().join("port_name")).ok().as_deref().map(str::trim)
                                    == Some(&format!("0x{wwpn:016x}"))
                                && fs::read_to_string(e.path().join("node_name")).ok().as_deref().map(str::trim)
                                    == Some(&format!("0x{wwnn:016x}"))
                        });
                        match found {
                            Some(e) => {
                                write_atomic(&inuse, &format!("{}\n", read_count(&inuse) - 1));
                                fs::remove_dir_all(e.path()).unwrap();
                            }
                            None => rejected.lock().unwrap().push(format!("{file}: no such vport {s:?}")),
                        }
                    }
                }
            }));
        }
    }

    /// A virtual port made outside the code under test (another tool, a previous run).
    fn add_vport(&self, host: u32, k: u32, wwpn: u64, wwnn: u64) {
        let d = self.root().join(format!("class/fc_vports/vport-{host}:0-{k}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("port_name"), format!("0x{wwpn:016x}\n")).unwrap();
        fs::write(d.join("node_name"), format!("0x{wwnn:016x}\n")).unwrap();
        let inuse = self.host_dir(host).join("npiv_vports_inuse");
        write_atomic(&inuse, &format!("{}\n", read_count(&inuse) + 1));
    }

    fn sysfs(&self) -> FcSysfs {
        FcSysfs::new(self.root()).with_wait(Duration::from_secs(2))
    }

    fn vport_dirs(&self) -> usize {
        fs::read_dir(self.root().join("class/fc_vports")).map(|d| d.count()).unwrap_or(0)
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        // Each fifo has one thread, in the order they were added.
        for (f, t) in self.fifos.iter().zip(self.threads.drain(..)) {
            // Non-blocking open: it fails (ENXIO) until the thread has the fifo open for
            // reading, which it may not have yet; retry for at most 2 s while it lives.
            let start = std::time::Instant::now();
            while !t.is_finished() && start.elapsed() < Duration::from_secs(2) {
                match fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(f) {
                    Ok(mut w) => {
                        let _ = w.write_all(b"quit");
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            if t.is_finished() || start.elapsed() < Duration::from_secs(2) {
                let _ = t.join();
            }
        }
        if !std::thread::panicking() {
            assert!(self.rejected.lock().unwrap().is_empty(), "the fake kernel rejected writes: {:?}", self.rejected.lock().unwrap());
        }
    }
}

fn port(host: &str) -> tandem::identity::FcPort {
    tandem::identity::FcPort { host: host.into(), wwpn: WWPN.parse().unwrap(), wwnn: WWNN.parse().unwrap() }
}

#[test]
fn create_is_idempotent_and_written_in_kernel_format() {
    let mut fake = FakeSysfs::new();
    fake.add_host(5, 0x2100_0024_ff3d_0001, 0x2000_0024_ff3d_0001, 4);
    let fc = fake.sysfs();
    let info = fc.host_info("host5").unwrap();
    assert_eq!((info.port_name, info.max_npiv_vports, info.npiv_vports_inuse), (Wwn(0x2100_0024_ff3d_0001), 4, 0));

    assert_eq!(fc.create(&port("host5")).unwrap(), Created::New);
    assert_eq!(fake.writes.lock().unwrap().as_slice(), &[("vport_create".to_string(), format!("{WWPN}:{WWNN}"))]);
    assert_eq!(fake.inuse(5), 1);
    let v = fc.find_vport(WWPN.parse().unwrap()).unwrap().expect("vport listed");
    assert_eq!((v.name.as_str(), v.host_no, v.wwnn, v.state.as_deref()), ("vport-5:0-0", 5, WWNN.parse().unwrap(), Some("Active")));

    // Claiming what is there: no second write, no second vport.
    assert_eq!(fc.create(&port("host5")).unwrap(), Created::AlreadyPresent);
    assert_eq!(fake.writes.lock().unwrap().len(), 1);
    assert_eq!((fake.inuse(5), fake.vport_dirs()), (1, 1));

    assert_eq!(fc.delete(&port("host5")).unwrap(), Deleted::Deleted);
    assert_eq!(fake.writes.lock().unwrap()[1], ("vport_delete".to_string(), format!("{WWPN}:{WWNN}")));
    assert_eq!((fake.inuse(5), fake.vport_dirs()), (0, 0));
    // Releasing what is gone.
    assert_eq!(fc.delete(&port("host5")).unwrap(), Deleted::Absent);
    assert_eq!(fake.writes.lock().unwrap().len(), 2);
}

#[test]
fn refuses_without_npiv_capacity() {
    let mut fake = FakeSysfs::new();
    fake.add_host(5, 0x2100_0024_ff3d_0001, 0x2000_0024_ff3d_0001, 1);
    fake.add_vport(5, 0, 0x2100_0000_0000_00aa, 0x2000_0000_0000_00aa);
    let e = fake.sysfs().create(&port("host5")).unwrap_err();
    assert!(matches!(e, FcError::NoCapacity { max: 1, inuse: 1, .. }), "{e:?}");
    assert_eq!(e.to_string(), "fc_host host5 has no NPIV capacity left: 1 of 1 virtual ports in use");
    assert!(fake.writes.lock().unwrap().is_empty(), "nothing written to vport_create");
}

#[test]
fn refuses_conflicts_and_hosts_without_npiv() {
    let mut fake = FakeSysfs::new();
    fake.add_host(5, 0x2100_0024_ff3d_0001, 0x2000_0024_ff3d_0001, 8);
    fake.add_host(6, 0x2100_0024_ff3d_0002, 0x2000_0024_ff3d_0002, 0);
    let fc = fake.sysfs();
    // Same WWPN with another WWNN already there.
    fake.add_vport(5, 7, WWPN.parse::<Wwn>().unwrap().0, 0x2000_0000_0000_0bad);
    assert!(matches!(fc.create(&port("host5")), Err(FcError::Conflict { host_no: 5, .. })));
    // The WWPN on another host is a conflict too: one identity, one port.
    fs::remove_dir_all(fake.root().join("class/fc_vports/vport-5:0-7")).unwrap();
    fake.add_vport(5, 8, WWPN.parse::<Wwn>().unwrap().0, WWNN.parse::<Wwn>().unwrap().0);
    assert!(matches!(fc.create(&port("host6")), Err(FcError::Conflict { host_no: 5, .. })));
    fs::remove_dir_all(fake.root().join("class/fc_vports/vport-5:0-8")).unwrap();
    assert!(matches!(fc.create(&port("host6")), Err(FcError::NoNpiv { .. })));
    assert!(matches!(fc.create(&port("host9")), Err(FcError::NoHost { .. })));
    let physical = tandem::identity::FcPort { host: "host5".into(), wwpn: Wwn(0x2100_0024_ff3d_0001), wwnn: WWNN.parse().unwrap() };
    assert!(matches!(fc.create(&physical), Err(FcError::IsPhysical { .. })));
    assert!(fake.writes.lock().unwrap().is_empty());
}

fn fc_only(service: u32, host: &str) -> tandem::identity::ServiceIdentity {
    IdentitySection { fc: vec![FcSection { host: host.into(), wwpn: WWPN.into(), wwnn: WWNN.into() }], ..Default::default() }
        .resolve(ServiceId(service))
        .unwrap()
}

/// Two nodes, each with its own HBA (host5 on A, host7 on B) on the same fabric: the
/// service's virtual port moves from A to B and back, the database follows.
#[test]
fn virtual_port_moves_between_nodes() {
    let mut fake_a = FakeSysfs::new();
    fake_a.add_host(5, 0x2100_0024_ff3d_000a, 0x2000_0024_ff3d_000a, 64);
    let mut fake_b = FakeSysfs::new();
    fake_b.add_host(7, 0x2100_0024_ff3d_000b, 0x2000_0024_ff3d_000b, 64);
    let s = ServiceId(3);
    let a = Identities::new(NodeId(0), vec![fc_only(3, "host5")]).unwrap().with_fc(fake_a.sysfs());
    let b = Identities::new(NodeId(1), vec![fc_only(3, "host7")]).unwrap().with_fc(fake_b.sysfs());

    let r = a.claim(s, 1).unwrap();
    assert_eq!(r.vports_created, vec![WWPN.parse::<Wwn>().unwrap()]);
    assert_eq!(a.db().entry(s).unwrap().state, HoldState::Held);
    // The claim retried (after a crash or a lost answer) changes nothing.
    let r = a.claim(s, 1).unwrap();
    assert!(r.vports_created.is_empty());
    assert_eq!(r.vports_present.len(), 1);
    assert_eq!(fake_a.inuse(5), 1);

    // B learns A's database through the mirror; a claim under A's epoch is refused.
    let page = a.db().encode().unwrap();
    b.merge_db(&VportDb::decode(&page).unwrap());
    assert!(matches!(b.claim(s, 1), Err(IdentityError::Db(VportDbError::HeldByOther { holder: 0, .. }))));
    assert_eq!(fake_b.inuse(7), 0, "a refused claim touches nothing");

    // Planned move: A releases (twice: idempotent), B claims under the next epoch.
    assert_eq!(a.release(s).unwrap().vports_deleted.len(), 1);
    assert!(a.release(s).unwrap().vports_deleted.is_empty());
    assert_eq!(fake_a.inuse(5), 0);
    b.merge_db(&a.db());
    assert_eq!(b.db().holder(s), None);
    b.claim(s, 2).unwrap();
    assert_eq!(fake_b.inuse(7), 1);
    let v = b.db();
    let e = v.entry(s).unwrap();
    assert_eq!((e.holder, e.state, e.epoch), (Some(NodeId(1)), HoldState::Held, 2));
    assert_eq!((e.ports[0].wwpn, e.ports[0].wwnn), (WWPN.parse().unwrap(), WWNN.parse().unwrap()));

    // A comes back with its old view: its stale epoch cannot claim.
    a.merge_db(&b.db());
    assert!(matches!(a.claim(s, 1), Err(IdentityError::Db(VportDbError::Stale { .. }))));
    // Giveback.
    b.release(s).unwrap();
    a.merge_db(&b.db());
    a.claim(s, 3).unwrap();
    assert_eq!((fake_a.inuse(5), fake_b.inuse(7)), (1, 0));
    a.release(s).unwrap();
}

/// A node that crashed after creating the virtual port but before recording the claim
/// finds it at the retry; a release that finds the port gone (deleted by an operator)
/// succeeds.
#[test]
fn retry_after_a_crash_halfway() {
    let mut fake = FakeSysfs::new();
    fake.add_host(5, 0x2100_0024_ff3d_0001, 0x2000_0024_ff3d_0001, 8);
    let s = ServiceId(4);
    {
        let crashed = Identities::new(NodeId(0), vec![fc_only(4, "host5")]).unwrap().with_fc(fake.sysfs());
        crashed.claim(s, 1).unwrap();
        // The process dies here: the database page it mirrored said "claiming".
    }
    let mut db = VportDb::new();
    db.begin_claim(&fc_only(4, "host5"), NodeId(0), 1).unwrap();
    let restarted = Identities::new(NodeId(0), vec![fc_only(4, "host5")]).unwrap().with_fc(fake.sysfs()).with_db(db);
    assert_eq!(restarted.db().unfinished(NodeId(0)), vec![(s, HoldState::Claiming)]);
    assert!(restarted.release_all().is_empty());
    assert_eq!(fake.inuse(5), 0);
    assert!(restarted.db().unfinished(NodeId(0)).is_empty());
    assert_eq!(restarted.db().holder(s), None);

    restarted.claim(s, 2).unwrap();
    // Deleted behind the runtime's back (the fake kernel's own path).
    fc_only(4, "host5").fc.iter().for_each(|p| {
        fake.sysfs().delete(p).unwrap();
    });
    let r = restarted.release(s).unwrap();
    assert!(r.vports_deleted.is_empty());
    assert_eq!(restarted.db().holder(s), None);
}
