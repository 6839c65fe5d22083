//! fio (Debian package fio) with its nbd engine against the server.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tandem_nbd::{BlockDevice, DeviceError, MemDevice};

/// A MemDevice that records how many calls run at once, holds each write a little so
/// that concurrency shows, and can corrupt what it returns.
struct Probe {
    inner: MemDevice,
    active: AtomicUsize,
    max_active: AtomicUsize,
    corrupt_reads: AtomicBool,
}

impl Probe {
    fn new(size: usize) -> Self {
        Probe {
            inner: MemDevice::new(size),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            corrupt_reads: AtomicBool::new(false),
        }
    }

    fn enter(&self) {
        let n = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(n, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BlockDevice for Probe {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.enter();
        let r = self.inner.read(offset, buf);
        if self.corrupt_reads.load(Ordering::SeqCst) {
            buf[buf.len() / 2] ^= 0x5a;
        }
        self.leave();
        r
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.enter();
        // Stands in for the mirror round trip.
        std::thread::sleep(Duration::from_micros(200));
        let r = self.inner.write(offset, data);
        self.leave();
        r
    }
    fn flush(&self) -> Result<(), DeviceError> {
        self.inner.flush()
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        self.inner.trim(offset, len)
    }
}

fn fio(addr: std::net::SocketAddr, name: &str, extra: &[&str]) -> Output {
    // fio may leave state files in its working directory: keep them out of the tree.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(require_tool("fio", "fio"));
    c.current_dir(dir.path());
    c.args([
        "--name",
        name,
        "--ioengine=nbd",
        &format!("--uri=nbd://{addr}/"),
        "--bs=4k",
        "--iodepth=32",
        "--size=16m",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--runtime=40",
        "--verify_state_save=0",
        "--output-format=json",
    ])
    .args(extra);
    run(c, Duration::from_secs(60))
}

#[test]
fn randwrite_iodepth32_verifies() {
    let dev = Arc::new(Probe::new(16 << 20));
    let (h, addr) = serve("fio", dev.clone());
    let o = fio(addr, "randwrite", &["--rw=randwrite"]);
    assert!(o.status.success(), "{}", o.all());
    assert!(o.stdout.contains("\"error\" : 0"), "{}", o.all());
    assert!(!o.stdout.contains("verify: bad") && !o.stderr.contains("verify: bad"), "{}", o.all());
    let st = h.stats();
    // Every 4 KiB block written once and read back once for verification.
    assert!(st.writes >= 4096 && st.reads >= 4096, "{st:?}");
    assert_eq!(st.bytes_written, 16 << 20, "{st:?}");
    assert_eq!((st.error_replies, st.protocol_errors), (0, 0), "{st:?}");
    let max = dev.max_active.load(Ordering::SeqCst);
    assert!(max >= 4, "requests were not served concurrently (max {max} at once)");
    h.shutdown();
}

#[test]
fn verification_catches_corrupted_reads() {
    // Proves the fio check can fail: the device flips one byte of every read.
    let dev = Arc::new(Probe::new(4 << 20));
    dev.corrupt_reads.store(true, Ordering::SeqCst);
    let (h, addr) = serve("fio", dev.clone());
    let o = fio(addr, "corrupt", &["--rw=randwrite", "--size=4m", "--iodepth=8"]);
    assert!(!o.status.success(), "fio accepted corrupted data\n{}", o.all());
    assert!(o.all().contains("verify"), "{}", o.all());
    h.shutdown();
}
