//! Fixed newstyle negotiation: from the greeting to the choice of an export.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::net::Stream;
use crate::proto::*;
use crate::server::{Shared, MAX_EXPORT_NAME};
use crate::stats::Counters;

/// Largest option payload read into memory. `NBD_OPT_INFO`/`GO` carry a name of at most
/// 4096 bytes plus a short list of information requests.
const MAX_OPTION_LEN: u32 = 16 * 1024;
/// Larger option payloads up to this size are read and discarded (answered with
/// `NBD_REP_ERR_TOO_BIG`); anything larger closes the connection.
const MAX_DISCARD_LEN: u32 = 1024 * 1024;
/// Options accepted on one connection before it is closed.
const MAX_OPTIONS: usize = 256;

/// How the negotiation ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Enter transmission with this export (index into the server's exports).
    Transmission(usize),
    /// The client aborted, or the connection must be closed; already logged.
    Closed,
}

struct Ctx<'a> {
    shared: &'a Shared,
    stream: &'a mut Stream,
    peer: &'a str,
    deadline: Instant,
}

impl Ctx<'_> {
    fn read_full(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client closed the connection")),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn discard(&mut self, mut len: u64) -> io::Result<()> {
        let mut scratch = [0u8; 4096];
        while len > 0 {
            let n = len.min(scratch.len() as u64) as usize;
            self.read_full(&mut scratch[..n])?;
            len -= n as u64;
        }
        Ok(())
    }

    fn reply(&mut self, opt: u32, kind: u32, data: &[u8]) -> io::Result<()> {
        let mut m = Vec::with_capacity(20 + data.len());
        m.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.stream.write_all(&m)
    }

    fn error(&mut self, opt: u32, kind: u32, msg: &str) -> io::Result<()> {
        Counters::inc(&self.shared.counters.option_errors);
        info!(peer = self.peer, option = option_name(opt), opt, reply = format_args!("{kind:#x}"), "option refused: {msg}");
        self.reply(opt, kind, msg.as_bytes())
    }
}

/// Runs the negotiation on a fresh connection.
pub(crate) fn negotiate(shared: &Shared, stream: &mut Stream, peer: &str) -> Outcome {
    let mut ctx = Ctx { shared, stream, peer, deadline: Instant::now() + shared.config.handshake_timeout };
    match run(&mut ctx) {
        Ok(o) => o,
        Err(e) => {
            match e.kind() {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                    debug!(peer, "connection closed during the handshake: {e}")
                }
                _ => warn!(peer, "handshake failed: {e}"),
            }
            Outcome::Closed
        }
    }
}

fn run(ctx: &mut Ctx<'_>) -> io::Result<Outcome> {
    let mut hello = [0u8; 18];
    hello[0..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    hello[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    hello[16..18].copy_from_slice(&(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES).to_be_bytes());
    ctx.stream.write_all(&hello)?;

    let mut cf = [0u8; 4];
    ctx.read_full(&mut cf)?;
    let client_flags = u32::from_be_bytes(cf);
    if client_flags & !(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) != 0 {
        warn!(peer = ctx.peer, client_flags, "unknown client flags; closing");
        return Ok(Outcome::Closed);
    }
    if client_flags & NBD_FLAG_C_FIXED_NEWSTYLE == 0 {
        warn!(peer = ctx.peer, client_flags, "client does not speak fixed newstyle negotiation; closing");
        return Ok(Outcome::Closed);
    }
    let no_zeroes = client_flags & NBD_FLAG_C_NO_ZEROES != 0;

    for _ in 0..MAX_OPTIONS {
        let mut h = [0u8; 16];
        ctx.read_full(&mut h)?;
        if be64(&h[0..8]) != IHAVEOPT {
            warn!(peer = ctx.peer, "bad option magic {:#018x}; closing", be64(&h[0..8]));
            return Ok(Outcome::Closed);
        }
        let opt = be32(&h[8..12]);
        let len = be32(&h[12..16]);
        if len > MAX_OPTION_LEN {
            if opt == NBD_OPT_EXPORT_NAME || len > MAX_DISCARD_LEN {
                warn!(peer = ctx.peer, option = option_name(opt), len, "option data too large; closing");
                return Ok(Outcome::Closed);
            }
            ctx.discard(u64::from(len))?;
            ctx.error(opt, NBD_REP_ERR_TOO_BIG, "option data too large")?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        ctx.read_full(&mut data)?;
        debug!(peer = ctx.peer, option = option_name(opt), len, "option");

        if ctx.shared.stopping.load(Ordering::SeqCst) && opt != NBD_OPT_ABORT {
            if opt == NBD_OPT_EXPORT_NAME {
                info!(peer = ctx.peer, "server is shutting down; closing instead of entering transmission");
                return Ok(Outcome::Closed);
            }
            ctx.error(opt, NBD_REP_ERR_SHUTDOWN, "server is shutting down")?;
            continue;
        }

        match opt {
            NBD_OPT_EXPORT_NAME => {
                let Some(i) = ctx.shared.find_export(&data) else {
                    warn!(peer = ctx.peer, name = %String::from_utf8_lossy(&data), "NBD_OPT_EXPORT_NAME for an unknown export; closing");
                    return Ok(Outcome::Closed);
                };
                let e = &ctx.shared.exports[i];
                let mut m = Vec::with_capacity(134);
                m.extend_from_slice(&e.device.size().to_be_bytes());
                m.extend_from_slice(&ctx.shared.transmission_flags(i).to_be_bytes());
                if !no_zeroes {
                    m.extend_from_slice(&[0u8; 124]);
                }
                ctx.stream.write_all(&m)?;
                return Ok(Outcome::Transmission(i));
            }
            NBD_OPT_ABORT => {
                // The client may already have closed; an error here changes nothing.
                let _ = ctx.reply(opt, NBD_REP_ACK, &[]);
                debug!(peer = ctx.peer, "client aborted the negotiation");
                return Ok(Outcome::Closed);
            }
            NBD_OPT_LIST => {
                if !data.is_empty() {
                    ctx.error(opt, NBD_REP_ERR_INVALID, "NBD_OPT_LIST carries no data")?;
                    continue;
                }
                for e in &ctx.shared.exports {
                    let mut d = Vec::with_capacity(4 + e.name.len());
                    d.extend_from_slice(&(e.name.len() as u32).to_be_bytes());
                    d.extend_from_slice(e.name.as_bytes());
                    ctx.reply(opt, NBD_REP_SERVER, &d)?;
                }
                ctx.reply(opt, NBD_REP_ACK, &[])?;
            }
            NBD_OPT_INFO | NBD_OPT_GO => {
                let Some((name, infos)) = parse_info_request(&data) else {
                    ctx.error(opt, NBD_REP_ERR_INVALID, "malformed NBD_OPT_INFO/NBD_OPT_GO data")?;
                    continue;
                };
                let Some(i) = ctx.shared.find_export(name) else {
                    let msg = format!("unknown export {:?}", String::from_utf8_lossy(name));
                    ctx.error(opt, NBD_REP_ERR_UNKNOWN, &msg)?;
                    continue;
                };
                send_info(ctx, opt, i, &infos)?;
                ctx.reply(opt, NBD_REP_ACK, &[])?;
                if opt == NBD_OPT_GO {
                    return Ok(Outcome::Transmission(i));
                }
            }
            _ => {
                let msg = format!("option {} ({opt}) is not supported", option_name(opt));
                ctx.error(opt, NBD_REP_ERR_UNSUP, &msg)?;
            }
        }
    }
    warn!(peer = ctx.peer, "more than {MAX_OPTIONS} options; closing");
    Ok(Outcome::Closed)
}

/// Splits `NBD_OPT_INFO`/`NBD_OPT_GO` data into the export name and the requested
/// information types; `None` when the lengths do not add up.
pub(crate) fn parse_info_request(data: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    if data.len() < 6 {
        return None;
    }
    let name_len = be32(&data[0..4]) as usize;
    if name_len > MAX_EXPORT_NAME || name_len > data.len() - 6 {
        return None;
    }
    let name = &data[4..4 + name_len];
    let rest = &data[4 + name_len..];
    let n = be16(&rest[0..2]) as usize;
    let list = &rest[2..];
    if list.len() != n * 2 {
        return None;
    }
    Some((name, list.chunks_exact(2).map(be16).collect()))
}

fn send_info(ctx: &mut Ctx<'_>, opt: u32, i: usize, infos: &[u16]) -> io::Result<()> {
    let shared = ctx.shared;
    let e = &shared.exports[i];
    let mut d = Vec::with_capacity(12);
    d.extend_from_slice(&NBD_INFO_EXPORT.to_be_bytes());
    d.extend_from_slice(&e.device.size().to_be_bytes());
    d.extend_from_slice(&shared.transmission_flags(i).to_be_bytes());
    ctx.reply(opt, NBD_REP_INFO, &d)?;

    // The block sizes are always sent: clients ignore what they did not ask for, and
    // those that asked must get them.
    let mut d = Vec::with_capacity(14);
    d.extend_from_slice(&NBD_INFO_BLOCK_SIZE.to_be_bytes());
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&shared.preferred_block_size(i).to_be_bytes());
    d.extend_from_slice(&shared.config.max_payload.to_be_bytes());
    ctx.reply(opt, NBD_REP_INFO, &d)?;

    if infos.contains(&NBD_INFO_NAME) {
        let mut d = Vec::with_capacity(2 + e.name.len());
        d.extend_from_slice(&NBD_INFO_NAME.to_be_bytes());
        d.extend_from_slice(e.name.as_bytes());
        ctx.reply(opt, NBD_REP_INFO, &d)?;
    }
    if let (true, Some(desc)) = (infos.contains(&NBD_INFO_DESCRIPTION), &e.description) {
        let mut d = Vec::with_capacity(2 + desc.len());
        d.extend_from_slice(&NBD_INFO_DESCRIPTION.to_be_bytes());
        d.extend_from_slice(desc.as_bytes());
        ctx.reply(opt, NBD_REP_INFO, &d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_request_parsing() {
        let mut d = Vec::new();
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"abc");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&NBD_INFO_BLOCK_SIZE.to_be_bytes());
        d.extend_from_slice(&NBD_INFO_NAME.to_be_bytes());
        let (name, infos) = parse_info_request(&d).unwrap();
        assert_eq!(name, b"abc");
        assert_eq!(infos, vec![NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME]);

        // Count says 2 but only one item follows.
        assert!(parse_info_request(&d[..d.len() - 2]).is_none());
        // Name length beyond the data.
        let mut bad = d.clone();
        bad[0..4].copy_from_slice(&100u32.to_be_bytes());
        assert!(parse_info_request(&bad).is_none());
        // Name length that would wrap.
        bad[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_info_request(&bad).is_none());
        assert!(parse_info_request(&[0, 0, 0]).is_none());
        // Empty name, no requests: the default export.
        let (name, infos) = parse_info_request(&[0, 0, 0, 0, 0, 0]).unwrap();
        assert!(name.is_empty() && infos.is_empty());
    }
}
