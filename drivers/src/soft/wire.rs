//! Frame reading and writing over a byte stream.
//!
//! [`FrameBuf`] buffers what a socket delivers and cuts it into frames using
//! [`FrameHeader::decode`]; the writers append whole frames (header, payload, CRC32C) to
//! a batch buffer that is sent with one `write_all`. Layouts and the CRC come from
//! `tandem_hsi::frame`; nothing here re-derives them.

use crate::region::{MemRegion, OutOfBounds};
use std::io::{self, Read};
use tandem_hsi::frame::{encode_frame, frame_crc, FrameError, FrameHeader, CRC_LEN, HEADER_LEN, MAX_FRAME_LEN};

/// One step of cutting the buffered bytes into frames.
#[derive(Debug)]
pub enum Next<'a> {
    /// A whole frame (header, payload and CRC, CRC not yet checked) and its header.
    Frame {
        /// The decoded header.
        header: FrameHeader,
        /// The whole frame's bytes.
        frame: &'a [u8],
    },
    /// The next frame is not complete yet.
    NeedMore,
    /// The header at the current position does not decode: the stream can't be trusted.
    Bad(FrameError),
}

/// A receive buffer that hands out whole frames.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameBuf {
    /// A buffer of `capacity` bytes (at least one maximal frame).
    pub fn new(capacity: usize) -> Self {
        FrameBuf { buf: vec![0; capacity.max(MAX_FRAME_LEN)], start: 0, end: 0 }
    }

    /// Bytes buffered and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Reads once from `r` into the free tail (compacting first when the tail is short).
    /// `Ok(0)` means end of stream.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < MAX_FRAME_LEN {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// The next whole frame, if buffered.
    pub fn next_frame(&mut self) -> Next<'_> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < HEADER_LEN {
            return Next::NeedMore;
        }
        let header = match FrameHeader::decode(&avail[..HEADER_LEN]) {
            Ok(h) => h,
            Err(e) => return Next::Bad(e),
        };
        let len = header.frame_len();
        if avail.len() < len {
            return Next::NeedMore;
        }
        let from = self.start;
        self.start += len;
        Next::Frame { header, frame: &self.buf[from..from + len] }
    }

    /// Hands out every buffered byte, frame or not (for raw forwarding).
    pub fn take_raw(&mut self) -> &[u8] {
        let (from, to) = (self.start, self.end);
        self.start = self.end;
        &self.buf[from..to]
    }
}

/// The payload of a whole frame (between header and CRC).
pub fn payload(frame: &[u8]) -> &[u8] {
    &frame[HEADER_LEN..frame.len() - CRC_LEN]
}

/// Appends a frame without payload (ACK, NACK, heartbeat).
pub fn push_control(out: &mut Vec<u8>, header: &FrameHeader) {
    debug_assert_eq!(header.length, 0);
    encode_frame(header, &[], out);
}

/// Appends a data frame whose payload is read from `host` at `host_offset`
/// (`header.length` bytes). On error `out` is left as it was.
pub fn push_data_from_region(out: &mut Vec<u8>, header: &FrameHeader, host: &MemRegion, host_offset: u64) -> Result<(), OutOfBounds> {
    let start = out.len();
    let mut h = [0u8; HEADER_LEN];
    header.encode(&mut h);
    out.reserve(header.frame_len());
    out.extend_from_slice(&h);
    if let Err(e) = host.append_to(host_offset, header.length as usize, out) {
        out.truncate(start);
        return Err(e);
    }
    let crc = frame_crc(&out[start..start + HEADER_LEN], &out[start + HEADER_LEN..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_hsi::frame::decode_frame;
    use tandem_hsi::{NackReason, Opcode};

    struct Chunks(Vec<Vec<u8>>);
    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let c = &mut self.0[0];
            let n = c.len().min(out.len());
            out[..n].copy_from_slice(&c[..n]);
            c.drain(..n);
            if c.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let host = MemRegion::anonymous(4096, 0).unwrap();
        host.write(10, b"hello world").unwrap();
        let mut bytes = Vec::new();
        push_control(&mut bytes, &FrameHeader::heartbeat(7, 1));
        push_data_from_region(&mut bytes, &FrameHeader::data(Opcode::Log, 3, 1, 100, 11), &host, 10).unwrap();
        push_control(&mut bytes, &FrameHeader::nack(NackReason::Bounds, 9));
        let (h, p, _) = decode_frame(&bytes[36..]).unwrap();
        assert_eq!((h.sequence, p), (1, &b"hello world"[..]));
        let chunks: Vec<Vec<u8>> = bytes.chunks(5).map(|c| c.to_vec()).collect();
        let mut r = Chunks(chunks);
        let mut fb = FrameBuf::new(0);
        let mut seen = Vec::new();
        while fb.fill(&mut r).unwrap() > 0 {
            while let Next::Frame { header, frame } = fb.next_frame() {
                tandem_hsi::frame::check_crc(frame).unwrap();
                seen.push((header.frame_type(), payload(frame).to_vec()));
            }
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].1, b"hello world");
        assert_eq!(fb.buffered(), 0);
    }

    #[test]
    fn bad_header_is_reported_and_out_of_region_payload_leaves_out_untouched() {
        let mut fb = FrameBuf::new(0);
        let mut r = Chunks(vec![vec![0xAB; 40]]);
        fb.fill(&mut r).unwrap();
        assert!(matches!(fb.next_frame(), Next::Bad(FrameError::BadMagic { .. })));
        let host = MemRegion::anonymous(16, 0).unwrap();
        let mut out = vec![1, 2, 3];
        assert!(push_data_from_region(&mut out, &FrameHeader::data(Opcode::Log, 0, 1, 0, 32), &host, 0).is_err());
        assert_eq!(out, vec![1, 2, 3]);
    }
}
