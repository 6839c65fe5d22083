//! A raw socket client sending what real clients never would: garbage, bad magic,
//! truncated requests, huge lengths, unknown options and commands. Each refusal must be
//! clear, and the server must keep serving other clients.

mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tandem_nbd::proto::*;
use tandem_nbd::{BlockDevice, DeviceError, Export, MemDevice, NbdConfig};

const FIXED: u32 = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/// A fresh client can still negotiate, write and read back.
fn still_serves(addr: SocketAddr) {
    let (mut r, _, _) = Raw::go(addr, "");
    assert_eq!(r.write(1, 0, b"alive"), 0);
    assert_eq!(r.read(2, 0, 5), (0, b"alive".to_vec()));
    r.request(NBD_CMD_DISC, 0, 3, 0, 0, &[]);
    assert!(r.closed_by_server());
}

#[test]
fn garbage_in_the_handshake_closes_only_that_connection() {
    let (h, addr) = serve("disk", Arc::new(MemDevice::new(1 << 20)));

    // An HTTP request instead of client flags: unknown flag bits.
    let mut r = Raw::connect(addr);
    r.greeting();
    r.s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(r.closed_by_server());

    // Old (non-fixed) newstyle client.
    let mut r = Raw::hello(addr, 0);
    assert!(r.closed_by_server());

    // Bad option magic.
    let mut r = Raw::hello(addr, FIXED);
    r.s.write_all(&[0xde; 16]).unwrap();
    assert!(r.closed_by_server());

    // Option length of 4 GiB: closed without reading (or allocating) it.
    let mut r = Raw::hello(addr, FIXED);
    let mut m = IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
    m.extend_from_slice(&u32::MAX.to_be_bytes());
    r.s.write_all(&m).unwrap();
    assert!(r.closed_by_server());

    // Truncated option, then the client goes away.
    let mut r = Raw::hello(addr, FIXED);
    r.s.write_all(&IHAVEOPT.to_be_bytes()[..5]).unwrap();
    r.s.shutdown(Shutdown::Write).unwrap();
    assert!(r.closed_by_server());

    // Unknown export through NBD_OPT_EXPORT_NAME: the protocol has no error reply, so close.
    let mut r = Raw::hello(addr, FIXED);
    r.send_option(NBD_OPT_EXPORT_NAME, b"nope");
    assert!(r.closed_by_server());

    still_serves(addr);
    let st = h.stats();
    assert!(st.handshakes_failed >= 6, "{st:?}");
    h.shutdown();
}

#[test]
fn options_are_answered_or_refused_clearly() {
    let dev = Arc::new(MemDevice::new(1 << 20));
    let (h, addr) = serve_with(vec![Export::new("disk", dev), Export::new("other", Arc::new(MemDevice::new(4096)))], NbdConfig::default());
    let mut r = Raw::hello(addr, FIXED);

    for opt in [NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, 9, 10, 11, 0x1234_5678] {
        r.send_option(opt, &[]);
        let (o, kind, msg) = r.option_reply();
        assert_eq!((o, kind), (opt, NBD_REP_ERR_UNSUP), "option {opt}");
        assert!(String::from_utf8_lossy(&msg).contains("not supported"));
    }

    // NBD_OPT_LIST: one NBD_REP_SERVER per export, then ACK; with data it is invalid.
    r.send_option(NBD_OPT_LIST, &[]);
    let mut names = Vec::new();
    loop {
        let (o, kind, d) = r.option_reply();
        assert_eq!(o, NBD_OPT_LIST);
        if kind == NBD_REP_ACK {
            break;
        }
        assert_eq!(kind, NBD_REP_SERVER);
        let n = be32(&d) as usize;
        names.push(String::from_utf8(d[4..4 + n].to_vec()).unwrap());
    }
    assert_eq!(names, ["disk", "other"]);
    r.send_option(NBD_OPT_LIST, b"x");
    assert_eq!(r.option_reply().1, NBD_REP_ERR_INVALID);

    // NBD_OPT_INFO: unknown export, malformed data, then a good one.
    r.send_option(NBD_OPT_INFO, &Raw::info_data("nope", &[]));
    let (_, kind, msg) = r.option_reply();
    assert_eq!(kind, NBD_REP_ERR_UNKNOWN);
    assert!(String::from_utf8_lossy(&msg).contains("nope"));
    r.send_option(NBD_OPT_INFO, &[0, 0, 0, 9, b'd']);
    assert_eq!(r.option_reply().1, NBD_REP_ERR_INVALID);
    r.send_option(NBD_OPT_INFO, &Raw::info_data("other", &[NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE, 0x7777]));
    let mut got = Vec::new();
    loop {
        let (o, kind, d) = r.option_reply();
        assert_eq!(o, NBD_OPT_INFO);
        if kind == NBD_REP_ACK {
            break;
        }
        assert_eq!(kind, NBD_REP_INFO);
        match be16(&d) {
            NBD_INFO_EXPORT => {
                assert_eq!(d.len(), 12);
                assert_eq!(be64(&d[2..10]), 4096);
                assert_eq!(be16(&d[10..12]), NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM);
            }
            NBD_INFO_BLOCK_SIZE => assert_eq!((be32(&d[2..]), be32(&d[6..]), be32(&d[10..])), (1, 4096, 32 << 20)),
            NBD_INFO_NAME => assert_eq!(&d[2..], b"other"),
            other => panic!("unexpected info {other}"),
        }
        got.push(be16(&d));
    }
    got.sort();
    assert_eq!(got, [NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE]);

    // Option data above the in-memory limit but small enough to skip: refused, still in step.
    r.send_option(NBD_OPT_INFO, &vec![0u8; 100 * 1024]);
    assert_eq!(r.option_reply().1, NBD_REP_ERR_TOO_BIG);

    // NBD_OPT_ABORT: ACK, then the server closes.
    r.send_option(NBD_OPT_ABORT, &[]);
    assert_eq!(r.option_reply(), (NBD_OPT_ABORT, NBD_REP_ACK, vec![]));
    assert!(r.closed_by_server());
    assert!(h.stats().option_errors >= 10);
    h.shutdown();
}

#[test]
fn export_name_honours_no_zeroes() {
    let (h, addr) = serve("disk", Arc::new(MemDevice::new(1 << 20)));
    for (flags, extra) in [(FIXED, 0usize), (NBD_FLAG_C_FIXED_NEWSTYLE, 124)] {
        let mut r = Raw::hello(addr, flags);
        r.send_option(NBD_OPT_EXPORT_NAME, b"disk");
        let d = r.read_data(10 + extra);
        assert_eq!(be64(&d), 1 << 20);
        assert!(d[10..].iter().all(|&b| b == 0));
        // The next bytes are the reply to our first request, not more padding.
        assert_eq!(r.write(7, 0, b"x"), 0);
        assert_eq!(r.read(8, 0, 1), (0, b"x".to_vec()));
    }
    h.shutdown();
}

#[test]
fn bad_requests_get_clear_refusals() {
    let dev = Arc::new(MemDevice::new(1 << 20));
    let (h, addr) = serve("disk", dev.clone());
    let (mut r, size, flags) = Raw::go(addr, "disk");
    assert_eq!(size, 1 << 20);
    assert_eq!(flags & NBD_FLAG_READ_ONLY, 0);

    // Huge read: EINVAL, no data, the connection stays usable.
    r.request(NBD_CMD_READ, 0, 1, 0, u32::MAX, &[]);
    assert_eq!(r.reply(), (EINVAL, 1));
    // Unknown commands, including ones other servers implement.
    for (i, kind) in [5u16, 6, 7, 8, 77, 0xffff].into_iter().enumerate() {
        r.request(kind, 0, 100 + i as u64, 0, 4096, &[]);
        assert_eq!(r.reply(), (EINVAL, 100 + i as u64), "command {kind}");
    }
    // Unknown flags on a write: refused, and its payload is skipped so the stream stays in step.
    r.request(NBD_CMD_WRITE, 1 << 7, 2, 0, 8, b"IGNORED!");
    assert_eq!(r.reply(), (EINVAL, 2));
    // Out of range, and offset + length overflowing.
    r.request(NBD_CMD_WRITE, 0, 3, size - 4, 8, b"PASTEND!");
    assert_eq!(r.reply(), (ENOSPC, 3));
    r.request(NBD_CMD_READ, 0, 4, u64::MAX - 2, 8, &[]);
    assert_eq!(r.reply(), (EINVAL, 4));
    r.request(NBD_CMD_TRIM, 0, 5, size, 1, &[]);
    assert_eq!(r.reply(), (EINVAL, 5));
    // Zero length: success, no data.
    r.request(NBD_CMD_READ, 0, 6, 0, 0, &[]);
    assert_eq!(r.reply(), (0, 6));
    r.request(NBD_CMD_WRITE, 0, 7, size, 0, &[]);
    assert_eq!(r.reply(), (0, 7));
    // Still usable.
    assert_eq!(r.write(8, 10, b"ok"), 0);
    assert_eq!(r.read(9, 10, 2), (0, b"ok".to_vec()));
    let c = dev.contents();
    assert!(!c.windows(8).any(|w| w == b"IGNORED!" || w == b"PASTEND!"), "refused writes reached the device");

    // A write longer than the maximum payload: EINVAL, then the connection is closed
    // without reading the claimed 4 GiB.
    r.request(NBD_CMD_WRITE, 0, 10, 0, u32::MAX, &[0u8; 1000]);
    assert_eq!(r.reply(), (EINVAL, 10));
    assert!(r.closed_by_server());

    let st = h.stats();
    assert_eq!(st.unsupported_commands, 6, "{st:?}");
    assert!(st.requests_refused >= 11, "{st:?}");
    assert_eq!(st.protocol_errors, 1, "{st:?}");
    still_serves(addr);
    h.shutdown();
}

#[test]
fn bad_magic_and_truncated_requests_close_the_connection() {
    let (h, addr) = serve("disk", Arc::new(MemDevice::new(1 << 20)));

    // Bad magic after a good request: the good one is answered, then the server closes.
    let (mut r, _, _) = Raw::go(addr, "");
    r.request(NBD_CMD_WRITE, 0, 1, 0, 4, b"good");
    r.s.write_all(&[0x41; 28]).unwrap();
    assert_eq!(r.reply(), (0, 1));
    assert!(r.closed_by_server());

    // Header cut short.
    let (mut r, _, _) = Raw::go(addr, "");
    r.s.write_all(&Request { flags: 0, kind: NBD_CMD_READ, handle: 1, offset: 0, len: 4 }.encode()[..20]).unwrap();
    r.s.shutdown(Shutdown::Write).unwrap();
    assert!(r.closed_by_server());

    // Write payload cut short.
    let (mut r, _, _) = Raw::go(addr, "");
    r.request(NBD_CMD_WRITE, 0, 1, 4096, 4096, &[0xee; 100]);
    r.s.shutdown(Shutdown::Write).unwrap();
    assert!(r.closed_by_server());

    // Pure garbage right after NBD_OPT_GO.
    let (mut r, _, _) = Raw::go(addr, "");
    r.s.write_all(&[0xff; 4096]).unwrap();
    assert!(r.closed_by_server());

    still_serves(addr);
    let st = h.stats();
    assert!(st.protocol_errors >= 4, "{st:?}");
    // The truncated write never reached the device.
    let (mut r, _, _) = Raw::go(addr, "");
    assert_eq!(r.read(1, 4096, 100), (0, vec![0u8; 100]));
    h.shutdown();
}

/// Reads at offset 0 take 300 ms; everything else is immediate.
struct SlowStart(MemDevice);

impl BlockDevice for SlowStart {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        if offset == 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        self.0.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.0.write(offset, data)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        self.0.flush()
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        self.0.trim(offset, len)
    }
}

#[test]
fn pipelined_requests_are_answered_out_of_order_by_handle() {
    let (h, addr) = serve("disk", Arc::new(SlowStart(MemDevice::with_contents((0..=255u8).cycle().take(1 << 20).collect()))));
    let (mut r, _, _) = Raw::go(addr, "");
    r.request(NBD_CMD_READ, 0, 0xaaaa, 0, 16, &[]);
    r.request(NBD_CMD_READ, 0, 0xbbbb, 4096, 16, &[]);
    // The fast read overtakes the slow one.
    assert_eq!(r.reply(), (0, 0xbbbb));
    assert_eq!(r.read_data(16), (0..16u8).collect::<Vec<_>>());
    assert_eq!(r.reply(), (0, 0xaaaa));
    assert_eq!(r.read_data(16), (0..16u8).collect::<Vec<_>>());

    // 200 requests sent before any reply is read; every handle answered exactly once.
    let n = 200u64;
    let mut batch = Vec::new();
    for i in 0..n {
        let off = 4096 + i * 4096;
        let mut m = Request { flags: 0, kind: NBD_CMD_WRITE, handle: i, offset: off, len: 4096 }.encode().to_vec();
        m.extend(std::iter::repeat_n(i as u8, 4096));
        batch.extend(m);
    }
    let mut w = r.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || w.write_all(&batch).unwrap());
    let mut seen = vec![false; n as usize];
    for _ in 0..n {
        let (err, hd) = r.reply();
        assert_eq!(err, 0);
        assert!(!std::mem::replace(&mut seen[hd as usize], true), "handle {hd} answered twice");
    }
    sender.join().unwrap();
    for i in [0u64, 57, 199] {
        assert_eq!(r.read(1000 + i, 4096 + i * 4096, 4096), (0, vec![i as u8; 4096]));
    }
    h.shutdown();
}

/// Writes in 512-byte pieces with a pause between them, so two concurrent overlapping
/// writes would interleave if the server let them run together.
struct Chunky(MemDevice);

impl BlockDevice for Chunky {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.0.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        for (i, piece) in data.chunks(512).enumerate() {
            self.0.write(offset + (i * 512) as u64, piece)?;
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), DeviceError> {
        self.0.flush()
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        self.0.trim(offset, len)
    }
}

#[test]
fn overlapping_writes_never_interleave_and_apply_in_order() {
    let dev = Arc::new(Chunky(MemDevice::new(1 << 20)));
    let (h, addr) = serve("disk", dev.clone());
    let (mut r, _, _) = Raw::go(addr, "");
    // 40 pipelined 8 KiB writes to overlapping places, each with its own byte value.
    let mut batch = Vec::new();
    for i in 0..40u64 {
        let off = (i % 4) * 2048;
        let mut m = Request { flags: 0, kind: NBD_CMD_WRITE, handle: i, offset: off, len: 8192 }.encode().to_vec();
        m.extend(std::iter::repeat_n(i as u8 + 1, 8192));
        batch.extend(m);
    }
    r.s.write_all(&batch).unwrap();
    for _ in 0..40 {
        assert_eq!(r.reply().0, 0);
    }
    // Last writers: i = 36 at 0, 37 at 2048, 38 at 4096, 39 at 6144 (through 14335).
    let c = dev.0.contents();
    let expect = |range: std::ops::Range<usize>, v: u8| assert!(c[range.clone()].iter().all(|&b| b == v), "{range:?} should be {v}");
    expect(0..2048, 37);
    expect(2048..4096, 38);
    expect(4096..6144, 39);
    expect(6144..14336, 40);
    h.shutdown();
}

#[test]
fn read_only_export_and_device_errors() {
    let ro = Arc::new(MemDevice::read_only(vec![9u8; 65536]));
    let failing = Arc::new(Failing { fail: AtomicBool::new(true) });
    let (h, addr) = serve_with(vec![Export::new("ro", ro), Export::new("bad", failing.clone())], NbdConfig::default());

    let (mut r, _, flags) = Raw::go(addr, "ro");
    assert_ne!(flags & NBD_FLAG_READ_ONLY, 0);
    assert_eq!(r.write(1, 0, b"no"), EPERM);
    r.request(NBD_CMD_TRIM, 0, 2, 0, 10, &[]);
    assert_eq!(r.reply(), (EPERM, 2));
    assert_eq!(r.read(3, 0, 4), (0, vec![9; 4]));

    let (mut r, _, _) = Raw::go(addr, "bad");
    assert_eq!(r.read(1, 0, 4).0, EIO);
    assert_eq!(r.write(2, 0, b"x"), ENOSPC);
    r.request(NBD_CMD_FLUSH, 0, 3, 0, 0, &[]);
    assert_eq!(r.reply(), (ESHUTDOWN, 3));
    failing.fail.store(false, Ordering::SeqCst);
    assert_eq!(r.read(4, 0, 4), (0, vec![0; 4]));
    let st = h.stats();
    assert_eq!(st.device_errors, 3, "{st:?}");
    h.shutdown();
}

struct Failing {
    fail: AtomicBool,
}

impl BlockDevice for Failing {
    fn size(&self) -> u64 {
        1 << 20
    }
    fn read(&self, _: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(DeviceError::Io("media error".into()));
        }
        buf.fill(0);
        Ok(())
    }
    fn write(&self, _: u64, _: &[u8]) -> Result<(), DeviceError> {
        Err(DeviceError::NoSpace)
    }
    fn flush(&self) -> Result<(), DeviceError> {
        Err(DeviceError::Shutdown)
    }
    fn trim(&self, _: u64, _: u64) -> Result<(), DeviceError> {
        Ok(())
    }
}

#[test]
fn timeouts_and_connection_limit() {
    let config = NbdConfig {
        max_connections: 2,
        handshake_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(300),
        idle_timeout: Some(Duration::from_millis(600)),
        ..NbdConfig::default()
    };
    let (h, addr) = serve_with(vec![Export::new("d", Arc::new(MemDevice::new(1 << 20)))], config);

    // A client that never finishes the handshake is dropped.
    let t = Instant::now();
    let mut silent = Raw::connect(addr);
    silent.greeting();
    assert!(silent.closed_by_server());
    assert!(t.elapsed() < Duration::from_secs(5));

    // A request header that stops half way is dropped after io_timeout.
    let (mut half, _, _) = Raw::go(addr, "");
    half.s.write_all(&[0x25, 0x60]).unwrap();
    assert!(half.closed_by_server());

    // An idle connection is closed after idle_timeout.
    let (mut idle, _, _) = Raw::go(addr, "");
    let t = Instant::now();
    assert!(idle.closed_by_server());
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());

    // With two connections open, a third is refused at once.
    assert!(eventually(Duration::from_secs(5), || h.stats().connections_active == 0));
    let (mut a, _, _) = Raw::go(addr, "");
    let (_b, _, _) = Raw::go(addr, "");
    let mut c = Raw::connect(addr);
    assert!(c.closed_by_server());
    assert!(h.stats().connections_refused >= 1);
    assert_eq!(a.write(1, 0, b"a"), 0);
    h.shutdown();
}

#[test]
fn shutdown_answers_in_flight_requests_then_closes_everything() {
    let dev = Arc::new(SlowStart(MemDevice::new(1 << 20)));
    let (h, addr) = serve("disk", dev);
    let (mut busy, _, _) = Raw::go(addr, "");
    let mut negotiating = Raw::connect(addr);
    negotiating.greeting();
    // A slow read in flight when the shutdown starts.
    busy.request(NBD_CMD_READ, 0, 42, 0, 512, &[]);
    std::thread::sleep(Duration::from_millis(50));
    let stopper = std::thread::spawn(move || {
        let t = Instant::now();
        h.shutdown();
        t.elapsed()
    });
    assert_eq!(busy.reply(), (0, 42), "request in flight must be answered");
    assert_eq!(busy.read_data(512), vec![0u8; 512]);
    assert!(busy.closed_by_server());
    assert!(negotiating.closed_by_server());
    let took = stopper.join().unwrap();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
