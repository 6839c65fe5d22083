//! The receiving side: accepts the partner's sender, checks each frame (header, CRC,
//! sequence, window bounds), writes good data into the mirror window and answers with
//! cumulative ACKs and NACKs.
//!
//! The receive state (the partner's session and the next expected sequence) lives in
//! [`RxState`], per engine, so it survives reconnections; each connection starts
//! unsynced until the partner's heartbeat arrives.

use super::wire::{self, FrameBuf, Next};
use super::Shared;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tandem_hsi::frame::{check_crc, FrameHeader, FrameKind};
use tandem_hsi::{Counter, NackReason, Opcode};

/// Receive buffer size: several maximal frames, so one read can bring many.
const RX_BUF: usize = 512 * 1024;
/// How often an idle acceptor checks for shutdown.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// Receive state, under [`Shared::rx`].
#[derive(Debug, Default)]
pub(crate) struct RxState {
    /// The partner sender's session, once a heartbeat named it.
    pub session: Option<u64>,
    /// Next sequence expected.
    pub expected: u64,
}

/// Accepts connections until shutdown; a new connection replaces the previous one.
pub(crate) fn run_acceptor(sh: Arc<Shared>, listener: TcpListener) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!(error = %e, "cannot make the listener non-blocking; the receiver is not running");
        return;
    }
    let mut current: Option<JoinHandle<()>> = None;
    while !sh.is_shutdown() {
        let stream = match listener.accept() {
            Ok((s, peer)) => {
                tracing::debug!(%peer, "partner connected");
                s
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        close_current(&sh, &mut current);
        let configured = stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_nodelay(true))
            .and_then(|_| stream.set_read_timeout(Some(Duration::from_millis(200))))
            .and_then(|_| stream.set_write_timeout(Some(sh.timing.io_timeout)))
            .and_then(|_| stream.try_clone());
        let killer = match configured {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "socket setup failed; dropping the connection");
                continue;
            }
        };
        *sh.lock_rx_conn() = Some(killer);
        if sh.is_shutdown() {
            break;
        }
        let sh2 = sh.clone();
        match std::thread::Builder::new().name("tandem-rx".into()).spawn(move || serve(&sh2, stream)) {
            Ok(h) => current = Some(h),
            Err(e) => tracing::error!(error = %e, "cannot start a receive thread"),
        }
    }
    close_current(&sh, &mut current);
}

fn close_current(sh: &Shared, current: &mut Option<JoinHandle<()>>) {
    if let Some(s) = sh.lock_rx_conn().take() {
        let _ = s.shutdown(Shutdown::Both);
    }
    if let Some(h) = current.take() {
        let _ = h.join();
    }
}

/// Per-connection flags.
#[derive(Debug, Default)]
struct Conn {
    synced: bool,
    /// A gap or CRC NACK was sent and the expected frame has not arrived since.
    gap_nacked: bool,
    not_synced_nacked: bool,
    ack_due: bool,
}

/// Serves one connection until it fails, closes or the engine stops, then closes it
/// (the acceptor's clone would otherwise keep it open).
fn serve(sh: &Shared, stream: TcpStream) {
    let closer = stream.try_clone();
    serve_until_done(sh, stream);
    if let Ok(s) = closer {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn serve_until_done(sh: &Shared, stream: TcpStream) {
    let mut reader = match stream.try_clone() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "socket clone failed");
            return;
        }
    };
    let mut writer = stream;
    let mut fb = FrameBuf::new(RX_BUF);
    let mut out = Vec::with_capacity(4096);
    let mut c = Conn::default();
    loop {
        if sh.is_shutdown() {
            return;
        }
        match fb.fill(&mut reader) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                return;
            }
        }
        let mut reset = false;
        {
            let mut st = sh.lock_rx();
            loop {
                match fb.next_frame() {
                    Next::NeedMore => break,
                    Next::Bad(e) => {
                        sh.counters.inc(Counter::HeaderErrors);
                        tracing::warn!(reason = e.reason(), error = %e, "bad frame header; closing the connection");
                        reset = true;
                        break;
                    }
                    Next::Frame { header, frame } => handle(sh, &mut st, &mut c, &mut out, &header, frame),
                }
            }
            if c.ack_due && c.synced {
                wire::push_control(&mut out, &FrameHeader::ack(st.expected.saturating_sub(1)));
                c.ack_due = false;
            }
        }
        if !out.is_empty() {
            let n = count_frames(&out);
            if let Err(e) = writer.write_all(&out) {
                tracing::debug!(error = %e, "sending ACK/NACK failed");
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            sh.counters.add(Counter::FramesTx, n);
            out.clear();
        }
        if reset {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Control frames all have the same length.
fn count_frames(out: &[u8]) -> u64 {
    (out.len() / (tandem_hsi::HEADER_LEN + tandem_hsi::frame::CRC_LEN)) as u64
}

fn nack(sh: &Shared, out: &mut Vec<u8>, reason: NackReason, seq: u64) {
    wire::push_control(out, &FrameHeader::nack(reason, seq));
    sh.counters.inc(Counter::NacksTx);
}

/// One whole frame (header already decoded).
fn handle(sh: &Shared, st: &mut RxState, c: &mut Conn, out: &mut Vec<u8>, header: &FrameHeader, frame: &[u8]) {
    if let Err(e) = check_crc(frame) {
        sh.counters.inc(Counter::CrcErrors);
        tracing::debug!(error = %e, seq = header.sequence, "CRC error");
        if matches!(header.kind, FrameKind::Data { .. }) && c.synced && !c.gap_nacked {
            nack(sh, out, NackReason::Crc, st.expected);
            c.gap_nacked = true;
        }
        return;
    }
    sh.counters.inc(Counter::FramesRx);
    match header.kind {
        FrameKind::Heartbeat { session } => {
            sh.counters.inc(Counter::HeartbeatsRx);
            let base = header.sequence.max(1);
            if st.session != Some(session) {
                tracing::debug!(session, base, "new sender session");
                st.session = Some(session);
                st.expected = base;
            }
            c.synced = true;
            c.gap_nacked = false;
            c.ack_due = true;
        }
        FrameKind::Ack | FrameKind::Nack { .. } => {
            tracing::debug!(kind = ?header.frame_type(), "unexpected frame on the receiving link; ignored");
        }
        FrameKind::Data { opcode, window_offset, .. } => {
            if !c.synced {
                if !c.not_synced_nacked {
                    nack(sh, out, NackReason::NotSynced, 0);
                    c.not_synced_nacked = true;
                }
                return;
            }
            let seq = header.sequence;
            if seq < st.expected {
                sh.counters.inc(Counter::Duplicates);
                c.ack_due = true;
                return;
            }
            if seq > st.expected {
                sh.counters.inc(Counter::SequenceErrors);
                if !c.gap_nacked {
                    nack(sh, out, NackReason::SequenceGap, st.expected);
                    c.gap_nacked = true;
                }
                return;
            }
            c.gap_nacked = false;
            let data = wire::payload(frame);
            if sh.window.check(window_offset, data.len() as u64).is_err() {
                // Not written and not consumed: the sender sends a barrier under this
                // sequence instead, so no later cumulative ACK can cover a rejected entry.
                sh.counters.inc(Counter::BoundsRejects);
                tracing::debug!(seq, window_offset, len = data.len(), "data frame outside the mirror window");
                nack(sh, out, NackReason::Bounds, seq);
                return;
            }
            c.ack_due = true;
            st.expected += 1;
            if opcode == Opcode::Barrier {
                if let Err(e) = sh.window.flush() {
                    tracing::error!(error = %e, "flushing the mirror window failed");
                }
            } else if let Err(e) = sh.window.write(window_offset, data) {
                // Checked just above; cannot happen.
                tracing::error!(error = %e, "mirror window write failed after the bounds check");
            }
            sh.counters.inc(Counter::DataRx);
        }
    }
}
