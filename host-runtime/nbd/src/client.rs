//! A minimal synchronous NBD client (fixed newstyle, `NBD_OPT_GO`, simple replies), for
//! the demo and the runtime's own checks. Interoperability is tested with real clients
//! (qemu-io, nbdsh, fio); this client speaks the same protocol from Rust, one request at a
//! time.

use crate::proto::*;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Client errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Socket failure (the server went away, a timeout).
    #[error("nbd connection: {0}")]
    Io(#[from] io::Error),
    /// The server broke the protocol.
    #[error("nbd protocol: {0}")]
    Protocol(String),
    /// The server refused the export.
    #[error("export refused by the server (reply {0:#x})")]
    Refused(u32),
    /// A request failed with an NBD error value.
    #[error("request failed with NBD error {0}")]
    Errno(u32),
}

/// A connection to one export.
#[derive(Debug)]
pub struct NbdClient {
    s: TcpStream,
    size: u64,
    flags: u16,
    handle: u64,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

impl NbdClient {
    /// Connects and opens `export` with `NBD_OPT_GO`.
    pub fn connect(addr: SocketAddr, export: &str, timeout: Duration) -> Result<NbdClient, ClientError> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello)?;
        if u64::from_be_bytes(hello[0..8].try_into().expect("8")) != NBD_MAGIC
            || u64::from_be_bytes(hello[8..16].try_into().expect("8")) != IHAVEOPT
        {
            return Err(ClientError::Protocol("bad server greeting".into()));
        }
        let server_flags = u16_at(&hello, 16);
        if server_flags & NBD_FLAG_FIXED_NEWSTYLE == 0 {
            return Err(ClientError::Protocol("server is not fixed newstyle".into()));
        }
        let client_flags = NBD_FLAG_C_FIXED_NEWSTYLE | if server_flags & NBD_FLAG_NO_ZEROES != 0 { NBD_FLAG_C_NO_ZEROES } else { 0 };
        s.write_all(&client_flags.to_be_bytes())?;
        // NBD_OPT_GO: name length, name, no info requests.
        let mut data = Vec::new();
        data.extend_from_slice(&(export.len() as u32).to_be_bytes());
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        let mut opt = Vec::new();
        opt.extend_from_slice(&IHAVEOPT.to_be_bytes());
        opt.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
        opt.extend_from_slice(&(data.len() as u32).to_be_bytes());
        opt.extend_from_slice(&data);
        s.write_all(&opt)?;
        let (mut size, mut flags) = (None, 0u16);
        for _ in 0..64 {
            let mut h = [0u8; 20];
            s.read_exact(&mut h)?;
            if u64::from_be_bytes(h[0..8].try_into().expect("8")) != OPTION_REPLY_MAGIC {
                return Err(ClientError::Protocol("bad option reply magic".into()));
            }
            let kind = u32::from_be_bytes(h[12..16].try_into().expect("4"));
            let len = u32::from_be_bytes(h[16..20].try_into().expect("4")) as usize;
            if len > 1 << 16 {
                return Err(ClientError::Protocol(format!("option reply of {len} bytes")));
            }
            let mut body = vec![0u8; len];
            s.read_exact(&mut body)?;
            match kind {
                NBD_REP_INFO if len >= 12 && u16_at(&body, 0) == NBD_INFO_EXPORT => {
                    size = Some(u64::from_be_bytes(body[2..10].try_into().expect("8")));
                    flags = u16_at(&body, 10);
                }
                NBD_REP_INFO => {}
                NBD_REP_ACK => {
                    let size = size.ok_or_else(|| ClientError::Protocol("no NBD_INFO_EXPORT before the ACK".into()))?;
                    return Ok(NbdClient { s, size, flags, handle: 0 });
                }
                other => return Err(ClientError::Refused(other)),
            }
        }
        Err(ClientError::Protocol("too many option replies".into()))
    }

    /// Export size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Transmission flags.
    pub fn flags(&self) -> u16 {
        self.flags
    }

    fn request(&mut self, cmd: u16, flags: u16, offset: u64, len: u32, payload: &[u8]) -> Result<(), ClientError> {
        self.handle += 1;
        let mut r = Vec::with_capacity(REQUEST_LEN + payload.len());
        r.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        r.extend_from_slice(&flags.to_be_bytes());
        r.extend_from_slice(&cmd.to_be_bytes());
        r.extend_from_slice(&self.handle.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
        r.extend_from_slice(payload);
        self.s.write_all(&r)?;
        let mut h = [0u8; SIMPLE_REPLY_LEN];
        self.s.read_exact(&mut h)?;
        if u32::from_be_bytes(h[0..4].try_into().expect("4")) != SIMPLE_REPLY_MAGIC
            || u64::from_be_bytes(h[8..16].try_into().expect("8")) != self.handle
        {
            return Err(ClientError::Protocol("bad reply magic or handle".into()));
        }
        match u32::from_be_bytes(h[4..8].try_into().expect("4")) {
            0 => Ok(()),
            e => Err(ClientError::Errno(e)),
        }
    }

    /// Writes `data` at `offset`; returns once the server acknowledged it.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let len = u32::try_from(data.len()).map_err(|_| ClientError::Protocol("write too large".into()))?;
        self.request(NBD_CMD_WRITE, 0, offset, len, data)
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        let len = u32::try_from(buf.len()).map_err(|_| ClientError::Protocol("read too large".into()))?;
        self.request(NBD_CMD_READ, 0, offset, len, &[])?;
        self.s.read_exact(buf)?;
        Ok(())
    }

    /// Flushes.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.request(NBD_CMD_FLUSH, 0, 0, 0, &[])
    }

    /// Disconnects politely.
    pub fn disconnect(mut self) {
        self.handle += 1;
        let mut r = Vec::with_capacity(REQUEST_LEN);
        r.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        r.extend_from_slice(&0u16.to_be_bytes());
        r.extend_from_slice(&NBD_CMD_DISC.to_be_bytes());
        r.extend_from_slice(&self.handle.to_be_bytes());
        r.extend_from_slice(&[0u8; 12]);
        let _ = self.s.write_all(&r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemDevice, NbdServer};
    use std::sync::Arc;

    #[test]
    fn round_trip_against_the_server() {
        let server = NbdServer::bind("127.0.0.1:0", "disk", Arc::new(MemDevice::new(1 << 20))).unwrap();
        let addr = server.local_addr().unwrap();
        let h = server.spawn().unwrap();
        let mut c = NbdClient::connect(addr, "disk", Duration::from_secs(5)).unwrap();
        assert_eq!(c.size(), 1 << 20);
        c.write(4096, &[7u8; 8192]).unwrap();
        c.flush().unwrap();
        let mut b = vec![0u8; 8192];
        c.read(4096, &mut b).unwrap();
        assert_eq!(b, vec![7u8; 8192]);
        assert!(matches!(c.write(1 << 20, &[1]), Err(ClientError::Errno(_))));
        c.disconnect();
        assert!(matches!(NbdClient::connect(addr, "nope", Duration::from_secs(5)), Err(ClientError::Refused(_))));
        h.shutdown();
    }
}
