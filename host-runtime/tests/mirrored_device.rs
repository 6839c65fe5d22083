//! The mirrored block device: reads see acknowledged writes before and after the
//! consistency point that writes them back; the partner's replay reproduces the image; a
//! real NBD client (qemu-io) writes through it.

mod support;

use std::sync::Arc;
use support::*;
use tandem::device::MirroredDevice;
use tandem::scan;
use tandem::store::{BackingStore, Store};
use tandem_drivers::Engine;
use tandem_nbd::{BlockDevice, DeviceError};

const SIZE: u64 = 4 << 20;

#[test]
fn reads_see_writes_before_and_after_write_back_and_replay_matches() {
    let p = pair();
    let dir = tempfile::tempdir().unwrap();
    let mut image = BackingStore::open(&dir.path().join("img"), SIZE).unwrap();
    let log = Arc::new(p.log);
    let dev = MirroredDevice::new(log.clone(), 7, image.reader().unwrap());
    let mut model = vec![0u8; SIZE as usize];
    let put = |off: usize, data: &[u8], model: &mut Vec<u8>| {
        dev.write(off as u64, data).unwrap();
        model[off..off + data.len()].copy_from_slice(data);
    };
    put(100, &[1; 5000], &mut model); // unaligned, spans two blocks
    put(4096 * 10, &[2; 4096], &mut model);
    put(4096 * 10 + 7, &[3; 3], &mut model);
    dev.trim(4096 * 10, 4096).unwrap();
    model[4096 * 10..4096 * 11].fill(0);
    put(1 << 20, &vec![4; 300_000], &mut model); // larger than one record
    let check = |dev: &MirroredDevice| {
        let mut got = vec![0u8; SIZE as usize];
        dev.read(0, &mut got).unwrap();
        assert!(got == model, "device contents differ from the model");
    };
    check(&dev);
    assert!(dev.cached_blocks() > 0);
    let cp = log.checkpoint(&mut image).unwrap();
    dev.evict(cp.cp_lsn);
    assert_eq!(dev.cached_blocks(), 0);
    check(&dev);
    // More writes after the consistency point, then the partner replays onto a copy of the image.
    put(50, &[9; 10], &mut model);
    let copy = dir.path().join("copy");
    std::fs::copy(dir.path().join("img"), &copy).unwrap();
    let mut replica = BackingStore::open(&copy, SIZE).unwrap();
    scan::replay(p.b.mirror_window(), &mut replica).unwrap();
    let mut got = vec![0u8; SIZE as usize];
    replica.read_at(0, &mut got).unwrap();
    assert!(got == model, "replayed image differs from the acknowledged writes");
    // Bounds and fencing.
    assert_eq!(dev.write(SIZE - 1, &[0; 2]), Err(DeviceError::NoSpace));
    assert!(matches!(dev.read(SIZE, &mut [0; 1]), Err(DeviceError::Invalid(_))));
    dev.fence();
    assert_eq!(dev.write(0, &[0; 1]), Err(DeviceError::Shutdown));
    let _ = image.sync();
}

#[test]
fn qemu_io_writes_through_the_mirrored_device() {
    let p = pair();
    let dir = tempfile::tempdir().unwrap();
    let image = BackingStore::open(&dir.path().join("img"), SIZE).unwrap();
    let log = Arc::new(p.log);
    let dev = Arc::new(MirroredDevice::new(log.clone(), 3, image.reader().unwrap()));
    let server = tandem_nbd::NbdServer::bind("127.0.0.1:0", "vol", dev.clone()).unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.spawn().unwrap();
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "raw", &format!("nbd://{addr}/vol")])
        .args(["-c", "write -P 0x5a 8192 64k", "-c", "read -P 0x5a 8192 64k", "-c", "flush"])
        .output()
        .expect("qemu-io (Debian package qemu-utils) must be installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !text.contains("Pattern verification failed"), "{text}");
    handle.shutdown();
    // The partner's window holds the write: replay it onto a fresh image.
    let mut other = BackingStore::open(&dir.path().join("other"), SIZE).unwrap();
    let r = scan::replay(p.b.mirror_window(), &mut other).unwrap();
    assert!(r.applied >= 1);
    let mut got = vec![0u8; 65536];
    other.read_at(8192, &mut got).unwrap();
    assert!(got.iter().all(|b| *b == 0x5a));
}
