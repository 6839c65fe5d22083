//! nbdsh (libnbd's Python shell; Debian package python3-libnbd, libnbd-bin on newer
//! releases) against the server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tandem_nbd::{Export, MemDevice, NbdConfig, NbdServer};

const LIMIT: Duration = Duration::from_secs(30);

fn nbdsh_script(args: &[&str], script: &str) -> Output {
    let mut c = nbdsh();
    c.args(args).args(["-c", script]);
    run(c, LIMIT)
}

#[test]
fn read_write_flush_trim_fua() {
    let dev = Arc::new(MemDevice::new(4 << 20));
    let (h, addr) = serve("disk0", dev.clone());
    let script = r#"
assert h.get_size() == 4 * 1024 * 1024
assert h.can_flush() and h.can_fua() and h.can_trim()
assert not h.is_read_only()
assert not h.can_multi_conn()
assert not h.get_structured_replies_negotiated()
h.pwrite(b"\xab" * 65536, 0)
assert h.pread(65536, 0) == b"\xab" * 65536
h.pwrite(b"tandem", 1000000, nbd.CMD_FLAG_FUA)
assert h.pread(6, 1000000) == b"tandem"
h.flush()
h.trim(8192, 4096)
assert h.pread(4096, 0) == b"\xab" * 4096
assert h.pread(4096, 61440) == b"\xab" * 4096
print("ok-done")
"#;
    let o = nbdsh_script(&["-u", &format!("nbd://{addr}/disk0")], script);
    assert!(o.status.success() && o.stdout.contains("ok-done"), "{}", o.all());
    let c = dev.contents();
    assert!(c[..4096].iter().all(|&b| b == 0xab));
    // MemDevice zeroes trimmed ranges.
    assert!(c[4096..12288].iter().all(|&b| b == 0));
    assert!(c[12288..65536].iter().all(|&b| b == 0xab));
    assert_eq!(&c[1000000..1000006], b"tandem");
    // One explicit flush and one for the FUA write.
    assert!(dev.flush_count() >= 2, "flushes {}", dev.flush_count());
    let st = h.stats();
    assert_eq!((st.trims, st.flushes), (1, 1), "{st:?}");
    assert_eq!(st.error_replies, 0, "{st:?}");
    h.shutdown();
}

#[test]
fn out_of_range_gets_errors_and_connection_stays_usable() {
    let dev = Arc::new(MemDevice::new(1 << 20));
    let (h, addr) = serve("disk0", dev.clone());
    // Strict mode off, so that libnbd sends what it would otherwise refuse itself.
    let script = r#"
import errno
h.set_strict_mode(0)
size = h.get_size()
def expect(errnum, f):
    try:
        f()
    except nbd.Error as e:
        got = e.errno if isinstance(e.errno, int) else getattr(errno, e.errno)
        assert got == errnum, (e.errno, e)
        return
    raise AssertionError("no error")
expect(errno.EINVAL, lambda: h.pread(4096, size - 2048))
expect(errno.EINVAL, lambda: h.pread(512, size + 4096))
expect(errno.ENOSPC, lambda: h.pwrite(b"x" * 4096, size - 1024))
expect(errno.EINVAL, lambda: h.trim(8192, size - 4096))
h.pwrite(b"still-usable", 100)
assert h.pread(12, 100) == b"still-usable"
assert h.pread(0, 0) == b""
print("ok-done")
"#;
    let o = nbdsh_script(&["-u", &format!("nbd://{addr}/disk0")], script);
    assert!(o.status.success() && o.stdout.contains("ok-done"), "{}", o.all());
    let c = dev.contents();
    assert_eq!(&c[100..112], b"still-usable");
    assert!(c[(1 << 20) - 1024..].iter().all(|&b| b == 0), "refused write touched the device");
    let st = h.stats();
    assert_eq!(st.requests_refused, 4, "{st:?}");
    assert_eq!(st.protocol_errors, 0, "{st:?}");
    h.shutdown();
}

#[test]
fn option_mode_list_info_go() {
    let a = Arc::new(MemDevice::new(1 << 20));
    let b = Arc::new(MemDevice::new(2 << 20));
    let exports = vec![Export::new("alpha", a.clone()).with_description("first export"), Export::new("beta", b.clone())];
    let (h, addr) = serve_with(exports, NbdConfig::default());
    let script = r#"
names = []
n = h.opt_list(lambda name, desc: names.append(name))
assert n == 2 and names == ["alpha", "beta"], (n, names)
h.set_full_info(True)
h.set_export_name("beta")
h.opt_info()
assert h.get_size() == 2 * 1024 * 1024
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * 1024 * 1024
assert h.get_canonical_export_name() == "beta"
h.set_export_name("nope")
try:
    h.opt_info()
    raise AssertionError("unknown export accepted")
except nbd.Error as e:
    pass
h.set_export_name("alpha")
h.opt_info()
assert h.get_size() == 1024 * 1024
assert h.get_export_description() == "first export"
h.opt_go()
h.pwrite(b"A" * 512, 0)
print("ok-done")
"#;
    let o = nbdsh_script(&["--opt-mode", "-u", &format!("nbd://{addr}/alpha")], script);
    assert!(o.status.success() && o.stdout.contains("ok-done"), "{}", o.all());
    assert_eq!(&a.contents()[..512], &[b'A'; 512][..]);
    assert!(b.contents().iter().all(|&x| x == 0));
    assert!(h.stats().option_errors >= 1, "{:?}", h.stats());

    // opt_abort ends the negotiation cleanly.
    let o = nbdsh_script(&["--opt-mode", "-u", &format!("nbd://{addr}/alpha")], "h.opt_abort()\nprint('ok-done')");
    assert!(o.status.success() && o.stdout.contains("ok-done"), "{}", o.all());
    h.shutdown();
}

#[test]
fn unix_socket_export() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    let dev = Arc::new(MemDevice::new(1 << 20));
    let server = NbdServer::bind_unix(&sock, vec![Export::new("u", dev.clone())], NbdConfig::default()).unwrap();
    assert!(server.local_addr().is_err());
    let h = server.spawn().unwrap();
    let script = "h.pwrite(b'unix' * 1024, 4096)\nassert h.pread(4096, 4096) == b'unix' * 1024\nprint('ok-done')";
    let o = nbdsh_script(&["-u", &format!("nbd+unix:///u?socket={}", sock.display())], script);
    assert!(o.status.success() && o.stdout.contains("ok-done"), "{}", o.all());
    assert_eq!(&dev.contents()[4096..4100], b"unix");
    h.shutdown();
    assert!(!sock.exists(), "socket file removed on shutdown");
}
