//! Helpers shared by the integration tests: servers on 127.0.0.1, external clients run
//! with a time limit, and a small raw protocol client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_nbd::proto::*;
use tandem_nbd::{BlockDevice, Export, NbdConfig, NbdHandle, NbdServer};

/// Starts a server on 127.0.0.1 (any port) with one export.
pub fn serve(name: &str, device: Arc<dyn BlockDevice>) -> (NbdHandle, SocketAddr) {
    serve_with(vec![Export::new(name, device)], NbdConfig::default())
}

/// Starts a server on 127.0.0.1 (any port).
pub fn serve_with(exports: Vec<Export>, config: NbdConfig) -> (NbdHandle, SocketAddr) {
    let server = NbdServer::bind_with("127.0.0.1:0", exports, config).expect("bind");
    let addr = server.local_addr().unwrap();
    (server.spawn().expect("spawn"), addr)
}

/// Finds an executable on PATH (and in /usr/bin); fails the test naming the Debian
/// package to install when it is missing.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")]);
    for d in dirs {
        let p = d.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{tool}` is not installed: install the Debian package `{package}` (apt-get install -y {package}); ./scripts/test does this");
}

/// Output of a finished external command.
#[derive(Debug)]
pub struct Output {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("status: {}\n--- stdout\n{}\n--- stderr\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs a command, killing it and failing the test if it takes longer than `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{desc}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {limit:?}\nstdout: {}\nstderr: {}", t1.join().unwrap(), t2.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: t1.join().unwrap(), stderr: t2.join().unwrap() }
}

/// A command for `nbdsh`. nbdsh runs `python3 -m nbd`; the `nbd` module is installed for
/// the distribution's python3 (/usr/bin), which is put first on PATH in case another
/// python3 (a virtualenv, pyenv) comes earlier.
pub fn nbdsh() -> Command {
    let bin = require_tool("nbdsh", "python3-libnbd");
    let path = std::env::var("PATH").unwrap_or_default();
    let mut c = Command::new(bin);
    c.env("PATH", format!("/usr/bin:/bin:{path}"));
    c
}

/// A raw protocol client for tests that need to send what real clients never would.
pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { s }
    }

    /// Reads the greeting and checks it.
    pub fn greeting(&mut self) {
        let mut g = [0u8; 18];
        self.s.read_exact(&mut g).unwrap();
        assert_eq!(&g[0..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(be16(&g[16..18]), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    }

    /// Greeting plus client flags.
    pub fn hello(addr: SocketAddr, client_flags: u32) -> Raw {
        let mut r = Raw::connect(addr);
        r.greeting();
        r.s.write_all(&client_flags.to_be_bytes()).unwrap();
        r
    }

    pub fn send_option(&mut self, opt: u32, data: &[u8]) {
        let mut m = Vec::new();
        m.extend_from_slice(&IHAVEOPT.to_be_bytes());
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.s.write_all(&m).unwrap();
    }

    /// Reads one option reply: (option, reply type, data).
    pub fn option_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(be64(&h[0..8]), OPTION_REPLY_MAGIC);
        let len = be32(&h[16..20]) as usize;
        assert!(len < 1 << 20);
        let mut d = vec![0u8; len];
        self.s.read_exact(&mut d).unwrap();
        (be32(&h[8..12]), be32(&h[12..16]), d)
    }

    /// `NBD_OPT_GO` data for `name` with the given information requests.
    pub fn info_data(name: &str, infos: &[u16]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&(name.len() as u32).to_be_bytes());
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    /// Negotiates with `NBD_OPT_GO`; returns (size, transmission flags).
    pub fn go(addr: SocketAddr, name: &str) -> (Raw, u64, u16) {
        let mut r = Raw::hello(addr, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
        r.send_option(NBD_OPT_GO, &Raw::info_data(name, &[NBD_INFO_BLOCK_SIZE]));
        let (mut size, mut flags) = (None, 0);
        loop {
            let (opt, kind, d) = r.option_reply();
            assert_eq!(opt, NBD_OPT_GO);
            match kind {
                NBD_REP_INFO if be16(&d) == NBD_INFO_EXPORT => {
                    size = Some(be64(&d[2..10]));
                    flags = be16(&d[10..12]);
                }
                NBD_REP_INFO => {}
                NBD_REP_ACK => break,
                other => panic!("NBD_OPT_GO failed with reply {other:#x}: {}", String::from_utf8_lossy(&d)),
            }
        }
        (r, size.expect("NBD_INFO_EXPORT"), flags)
    }

    pub fn request(&mut self, kind: u16, flags: u16, handle: u64, offset: u64, len: u32, payload: &[u8]) {
        let mut m = Request { flags, kind, handle, offset, len }.encode().to_vec();
        m.extend_from_slice(payload);
        self.s.write_all(&m).unwrap();
    }

    /// Reads a simple reply header: (error, handle).
    pub fn reply(&mut self) -> (u32, u64) {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(be32(&h[0..4]), SIMPLE_REPLY_MAGIC);
        (be32(&h[4..8]), be64(&h[8..16]))
    }

    pub fn read_data(&mut self, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len];
        self.s.read_exact(&mut d).unwrap();
        d
    }

    /// Writes and waits for the reply; returns the error value.
    pub fn write(&mut self, handle: u64, offset: u64, data: &[u8]) -> u32 {
        self.request(NBD_CMD_WRITE, 0, handle, offset, data.len() as u32, data);
        let (err, h) = self.reply();
        assert_eq!(h, handle);
        err
    }

    /// Reads and waits for the reply; returns (error, data).
    pub fn read(&mut self, handle: u64, offset: u64, len: u32) -> (u32, Vec<u8>) {
        self.request(NBD_CMD_READ, 0, handle, offset, len, &[]);
        let (err, h) = self.reply();
        assert_eq!(h, handle);
        let data = if err == 0 { self.read_data(len as usize) } else { Vec::new() };
        (err, data)
    }

    /// True when the server has closed the connection (end of stream or reset) within the
    /// read timeout; any bytes still queued before the close are skipped.
    pub fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
                Err(_) => return true,
            }
        }
        false
    }
}

/// Polls `f` until it is true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}
