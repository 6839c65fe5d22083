//! qemu-io (Debian package qemu-utils) against the server.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tandem_nbd::{BlockDevice, FileDevice, MemDevice};

const LIMIT: Duration = Duration::from_secs(30);

fn qemu_io(uri: &str, cmds: &[&str]) -> Output {
    let mut c = Command::new(require_tool("qemu-io", "qemu-utils"));
    c.args(["-f", "raw", uri]);
    for x in cmds {
        c.args(["-c", x]);
    }
    run(c, LIMIT)
}

#[test]
fn write_then_read_pattern_and_bad_pattern_fails() {
    let dev = Arc::new(MemDevice::new(8 << 20));
    let (h, addr) = serve("disk0", dev.clone());
    let uri = format!("nbd://{addr}/disk0");

    let o = qemu_io(&uri, &["write -P 0xab 0 64k", "read -P 0xab 0 64k", "write -P 0x5a 1M 4k", "flush"]);
    assert!(o.status.success(), "{}", o.all());
    assert!(o.stdout.contains("wrote 65536/65536 bytes at offset 0"), "{}", o.all());
    assert!(o.stdout.contains("read 65536/65536 bytes at offset 0"), "{}", o.all());
    assert!(!o.stdout.contains("Pattern verification failed"), "{}", o.all());
    let c = dev.contents();
    assert!(c[..65536].iter().all(|&b| b == 0xab));
    assert!(c[65536..(1 << 20)].iter().all(|&b| b == 0));
    assert!(c[(1 << 20)..(1 << 20) + 4096].iter().all(|&b| b == 0x5a));
    assert!(dev.flush_count() >= 1, "qemu-io flush must reach the device");

    // A read that expects another pattern must fail its verification.
    let o = qemu_io(&uri, &["read -P 0xcd 0 64k"]);
    assert!(o.stdout.contains("Pattern verification failed") || o.stderr.contains("Pattern verification failed"), "{}", o.all());

    // A read across the written/unwritten boundary sees both.
    let o = qemu_io(&uri, &["read -P 0xab 0 64k", "read -P 0 64k 64k", "read -P 0x5a 1M 4k"]);
    assert!(o.status.success() && !o.stdout.contains("Pattern verification failed"), "{}", o.all());

    let st = h.stats();
    assert!(st.writes >= 2 && st.reads >= 4 && st.flushes >= 1, "{st:?}");
    assert_eq!(st.protocol_errors, 0, "{st:?}");
    h.shutdown();
}

#[test]
fn pipelined_aio_and_file_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let dev = Arc::new(FileDevice::create(&path, 4 << 20).unwrap());
    let (h, addr) = serve("file", dev.clone());
    let uri = format!("nbd://{addr}/file");

    // Eight writes in flight at once (aio), then a flush, then pattern reads.
    let mut cmds: Vec<String> = (0..8).map(|i| format!("aio_write -P 0x{:02x} {}k 64k", 0x10 + i, i * 64)).collect();
    cmds.push("aio_flush".into());
    cmds.extend((0..8).map(|i| format!("read -P 0x{:02x} {}k 64k", 0x10 + i, i * 64)));
    // FUA write through the -f flag of qemu-io's write command.
    cmds.push("write -f -P 0x77 3M 4k".into());
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let o = qemu_io(&uri, &refs);
    assert!(o.status.success(), "{}", o.all());
    assert!(!o.stdout.contains("Pattern verification failed"), "{}", o.all());
    assert_eq!(o.stdout.matches("read 65536/65536").count(), 8, "{}", o.all());

    drop(h);
    let disk = std::fs::read(&path).unwrap();
    for i in 0..8 {
        let want = 0x10 + i as u8;
        assert!(disk[i * 65536..(i + 1) * 65536].iter().all(|&b| b == want), "block {i} on disk");
    }
    assert!(disk[3 << 20..(3 << 20) + 4096].iter().all(|&b| b == 0x77));
    assert_eq!(dev.size(), 4 << 20);
}

#[test]
fn unknown_export_is_refused() {
    let (h, addr) = serve("disk0", Arc::new(MemDevice::new(1 << 20)));
    let o = qemu_io(&format!("nbd://{addr}/nope"), &["read 0 4k"]);
    assert!(!o.status.success(), "{}", o.all());
    assert!(!o.stdout.contains("read 4096/4096"), "{}", o.all());
    assert!(h.stats().option_errors >= 1, "{:?}", h.stats());
    // The default (empty) name reaches the one export.
    let o = qemu_io(&format!("nbd://{addr}"), &["read -P 0 0 4k"]);
    assert!(o.status.success() && o.stdout.contains("read 4096/4096"), "{}", o.all());
    h.shutdown();
}
