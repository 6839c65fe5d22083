//! The wire frame: what one engine sends its partner over the mirror link.
//!
//! A frame is a 32-byte header ([`header`]), `LENGTH` payload bytes and a 4-byte CRC32C
//! (Castagnoli) trailer computed over the header and the payload. All integers are
//! little-endian. Only data frames carry a payload; ACK, NACK and heartbeat frames have
//! `LENGTH = 0`.
//!
//! Decoding is split in two so that a streaming receiver (TCP or an AXI4-Stream deframer)
//! can check the header before it buffers the payload: [`FrameHeader::decode`] validates
//! everything the header alone can tell, then [`check_crc`] validates the whole frame.

use crate::codes::{FrameType, NackReason, Opcode, UnknownCode};

/// `MAGIC` value: the bytes `T N D M` on the wire.
pub const MAGIC: u32 = u32::from_le_bytes(*b"TNDM");
/// Wire format version carried in every frame.
pub const WIRE_VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = header::SIZE;
/// CRC trailer length in bytes.
pub const CRC_LEN: usize = 4;
/// Largest payload of one data frame, in bytes. Larger writes are split by the host.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Heartbeat intervals (`HEARTBEAT_US`) without a valid frame from the partner after
/// which an engine whose link was Up declares it Down (and counts a link reset when it is
/// Up again).
pub const LINK_DEAD_HEARTBEATS: u32 = 3;
/// Largest frame on the wire.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD + CRC_LEN;

crate::layout! {
    /// Wire frame header fields.
    pub mod header ("Wire frame header", size = 32) {
        MAGIC @ 0, 4 => "0x4D444E54, the ASCII bytes `TNDM`";
        VERSION @ 4, 1 => "wire format version, 1";
        FRAME_TYPE @ 5, 1 => "frame type (see Frame type)";
        KIND @ 6, 1 => "data: entry opcode; NACK: reason; ACK and heartbeat: 0";
        FLAGS @ 7, 1 => "reserved, 0; a receiver rejects any other value";
        SERVICE_TAG @ 8, 4 => "data: file-service ID of the entry; others: 0";
        LENGTH @ 12, 4 => "payload length in bytes, at most MAX_PAYLOAD; 0 for non-data frames";
        SEQUENCE @ 16, 8 => "data: sequence number (from 1); ACK: highest in-order sequence held; NACK: see reason; heartbeat: oldest unacknowledged sequence";
        WINDOW_OFFSET @ 24, 8 => "data: byte offset in the partner's mirror window; heartbeat: sender session id; others: 0";
    }
}

/// What a frame is, with the fields that depend on its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FrameKind {
    /// Payload for the partner's window.
    Data {
        /// Entry opcode.
        opcode: Opcode,
        /// Service tag.
        service_tag: u32,
        /// Destination offset in the partner's mirror window.
        window_offset: u64,
    },
    /// Cumulative acknowledgement.
    Ack,
    /// Negative acknowledgement.
    Nack {
        /// Why.
        reason: NackReason,
    },
    /// Liveness and stream sync.
    Heartbeat {
        /// The sender's session id (random per engine start).
        session: u64,
    },
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameHeader {
    /// Type-specific fields.
    pub kind: FrameKind,
    /// Sequence number (meaning depends on the type; see the header table).
    pub sequence: u64,
    /// Payload length.
    pub length: u32,
}

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Not enough bytes.
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Wrong magic.
    #[error("bad magic {found:#010x} (expected {MAGIC:#010x})")]
    BadMagic {
        /// Value found.
        found: u32,
    },
    /// Unsupported wire version.
    #[error("unsupported wire version {found} (this build speaks {WIRE_VERSION})")]
    BadVersion {
        /// Value found.
        found: u8,
    },
    /// Unknown frame type or kind.
    #[error("{0}")]
    UnknownCode(#[from] UnknownCode),
    /// Reserved bits set.
    #[error("reserved flags {found:#04x} set")]
    BadFlags {
        /// Value found.
        found: u8,
    },
    /// Length above the maximum.
    #[error("payload length {length} exceeds the maximum {MAX_PAYLOAD}")]
    TooLong {
        /// Length found.
        length: u32,
    },
    /// A field that must be zero for this frame type is not.
    #[error("{frame_type} frame has non-zero {field}")]
    NonZeroField {
        /// The frame type.
        frame_type: FrameType,
        /// The offending field.
        field: &'static str,
    },
    /// CRC mismatch.
    #[error("CRC32C mismatch: frame says {carried:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the trailer.
        carried: u32,
        /// CRC computed over header and payload.
        computed: u32,
    },
}

impl FrameError {
    /// Short stable name, for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::Truncated { .. } => "truncated",
            FrameError::BadMagic { .. } => "bad_magic",
            FrameError::BadVersion { .. } => "bad_version",
            FrameError::UnknownCode(_) => "unknown_code",
            FrameError::BadFlags { .. } => "bad_flags",
            FrameError::TooLong { .. } => "too_long",
            FrameError::NonZeroField { .. } => "non_zero_field",
            FrameError::BadCrc { .. } => "bad_crc",
        }
    }
}

impl FrameHeader {
    /// A data frame header.
    pub fn data(opcode: Opcode, service_tag: u32, sequence: u64, window_offset: u64, length: u32) -> Self {
        FrameHeader { kind: FrameKind::Data { opcode, service_tag, window_offset }, sequence, length }
    }

    /// An ACK of everything up to `sequence`.
    pub fn ack(sequence: u64) -> Self {
        FrameHeader { kind: FrameKind::Ack, sequence, length: 0 }
    }

    /// A NACK.
    pub fn nack(reason: NackReason, sequence: u64) -> Self {
        FrameHeader { kind: FrameKind::Nack { reason }, sequence, length: 0 }
    }

    /// A heartbeat: `base` is the oldest unacknowledged sequence (or the next to send).
    pub fn heartbeat(session: u64, base: u64) -> Self {
        FrameHeader { kind: FrameKind::Heartbeat { session }, sequence: base, length: 0 }
    }

    /// The frame type.
    pub fn frame_type(&self) -> FrameType {
        match self.kind {
            FrameKind::Data { .. } => FrameType::Data,
            FrameKind::Ack => FrameType::Ack,
            FrameKind::Nack { .. } => FrameType::Nack,
            FrameKind::Heartbeat { .. } => FrameType::Heartbeat,
        }
    }

    /// Total frame length on the wire (header, payload, CRC).
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.length as usize + CRC_LEN
    }

    /// Writes the header bytes.
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out.fill(0);
        let (kind, tag, offset) = match self.kind {
            FrameKind::Data { opcode, service_tag, window_offset } => (opcode.code(), service_tag, window_offset),
            FrameKind::Ack => (0, 0, 0),
            FrameKind::Nack { reason } => (reason.code(), 0, 0),
            FrameKind::Heartbeat { session } => (0, 0, session),
        };
        header::MAGIC.put(out, MAGIC.into());
        header::VERSION.put(out, WIRE_VERSION.into());
        header::FRAME_TYPE.put(out, self.frame_type().code().into());
        header::KIND.put(out, kind.into());
        header::SERVICE_TAG.put(out, tag.into());
        header::LENGTH.put(out, self.length.into());
        header::SEQUENCE.put(out, self.sequence);
        header::WINDOW_OFFSET.put(out, offset);
    }

    /// Decodes and validates a header from the first [`HEADER_LEN`] bytes of `buf`.
    /// Checks magic, version, type, kind, flags, the length bound and the fields that
    /// must be zero for the type. The CRC needs the payload: see [`check_crc`].
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        header::LAYOUT.check_len(buf.len())?;
        let magic = header::MAGIC.get(buf) as u32;
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let version = header::VERSION.get(buf) as u8;
        if version != WIRE_VERSION {
            return Err(FrameError::BadVersion { found: version });
        }
        let frame_type = FrameType::try_from(header::FRAME_TYPE.get(buf) as u8)?;
        let flags = header::FLAGS.get(buf) as u8;
        if flags != 0 {
            return Err(FrameError::BadFlags { found: flags });
        }
        let kind_byte = header::KIND.get(buf) as u8;
        let tag = header::SERVICE_TAG.get(buf) as u32;
        let length = header::LENGTH.get(buf) as u32;
        let sequence = header::SEQUENCE.get(buf);
        let offset = header::WINDOW_OFFSET.get(buf);
        if length as usize > MAX_PAYLOAD {
            return Err(FrameError::TooLong { length });
        }
        let must_be_zero = |field: &'static str, value: u64| {
            if value == 0 {
                Ok(())
            } else {
                Err(FrameError::NonZeroField { frame_type, field })
            }
        };
        let kind = match frame_type {
            FrameType::Data => {
                let opcode = Opcode::try_from(kind_byte)?;
                if opcode == Opcode::Barrier {
                    must_be_zero("LENGTH", length.into())?;
                }
                FrameKind::Data { opcode, service_tag: tag, window_offset: offset }
            }
            FrameType::Ack => {
                must_be_zero("KIND", kind_byte.into())?;
                must_be_zero("SERVICE_TAG", tag.into())?;
                must_be_zero("LENGTH", length.into())?;
                must_be_zero("WINDOW_OFFSET", offset)?;
                FrameKind::Ack
            }
            FrameType::Nack => {
                let reason = NackReason::try_from(kind_byte)?;
                must_be_zero("SERVICE_TAG", tag.into())?;
                must_be_zero("LENGTH", length.into())?;
                must_be_zero("WINDOW_OFFSET", offset)?;
                FrameKind::Nack { reason }
            }
            FrameType::Heartbeat => {
                must_be_zero("KIND", kind_byte.into())?;
                must_be_zero("SERVICE_TAG", tag.into())?;
                must_be_zero("LENGTH", length.into())?;
                FrameKind::Heartbeat { session: offset }
            }
        };
        Ok(FrameHeader { kind, sequence, length })
    }
}

/// CRC32C over the header bytes and the payload, as carried in the trailer.
pub fn frame_crc(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), payload)
}

/// Checks a whole frame's trailer: `frame` holds header, payload and CRC, exactly.
pub fn check_crc(frame: &[u8]) -> Result<(), FrameError> {
    if frame.len() < HEADER_LEN + CRC_LEN {
        return Err(FrameError::Truncated { need: HEADER_LEN + CRC_LEN, have: frame.len() });
    }
    let body = frame.len() - CRC_LEN;
    let carried = u32::from_le_bytes(frame[body..].try_into().expect("4 bytes"));
    let computed = frame_crc(&frame[..HEADER_LEN], &frame[HEADER_LEN..body]);
    if carried == computed {
        Ok(())
    } else {
        Err(FrameError::BadCrc { carried, computed })
    }
}

/// Appends a whole frame (header, payload, CRC) to `out`.
///
/// # Panics
/// If `payload.len()` differs from `header.length` (a programming error; receivers never
/// call this on untrusted input).
pub fn encode_frame(header: &FrameHeader, payload: &[u8], out: &mut Vec<u8>) {
    assert_eq!(payload.len(), header.length as usize, "payload length must match the header");
    let mut h = [0u8; HEADER_LEN];
    header.encode(&mut h);
    let crc = frame_crc(&h, payload);
    out.reserve(header.frame_len());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Decodes one whole frame from the start of `buf`: header checks, then CRC.
/// Returns the header, the payload and the number of bytes the frame occupies.
pub fn decode_frame(buf: &[u8]) -> Result<(FrameHeader, &[u8], usize), FrameError> {
    let header = FrameHeader::decode(buf)?;
    let len = header.frame_len();
    if buf.len() < len {
        return Err(FrameError::Truncated { need: len, have: buf.len() });
    }
    check_crc(&buf[..len])?;
    Ok((header, &buf[HEADER_LEN..len - CRC_LEN], len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn magic_is_tndm_on_the_wire() {
        let mut out = Vec::new();
        encode_frame(&FrameHeader::ack(7), &[], &mut out);
        assert_eq!(&out[..4], b"TNDM");
        assert_eq!(out.len(), HEADER_LEN + CRC_LEN);
    }

    #[test]
    fn crc_catches_a_flipped_payload_bit() {
        let mut out = Vec::new();
        encode_frame(&FrameHeader::data(Opcode::Log, 9, 1, 4096, 3), b"abc", &mut out);
        out[HEADER_LEN + 1] ^= 0x10;
        assert!(matches!(decode_frame(&out), Err(FrameError::BadCrc { .. })));
    }

    #[test]
    fn header_rejections_name_the_reason() {
        let mut out = Vec::new();
        encode_frame(&FrameHeader::data(Opcode::Page, 1, 1, 0, 0), &[], &mut out);
        let mut bad = out.clone();
        bad[0] = b'X';
        assert!(matches!(FrameHeader::decode(&bad), Err(FrameError::BadMagic { .. })));
        let mut bad = out.clone();
        bad[4] = 2;
        assert_eq!(FrameHeader::decode(&bad), Err(FrameError::BadVersion { found: 2 }));
        let mut bad = out.clone();
        bad[7] = 1;
        assert_eq!(FrameHeader::decode(&bad), Err(FrameError::BadFlags { found: 1 }));
        let mut bad = out.clone();
        header::LENGTH.put(&mut bad, (MAX_PAYLOAD + 1) as u64);
        assert!(matches!(FrameHeader::decode(&bad), Err(FrameError::TooLong { .. })));
        assert!(matches!(FrameHeader::decode(&out[..10]), Err(FrameError::Truncated { need: 32, have: 10 })));
        let mut bad = Vec::new();
        encode_frame(&FrameHeader::ack(1), &[], &mut bad);
        header::SERVICE_TAG.put(&mut bad, 5);
        assert!(matches!(FrameHeader::decode(&bad), Err(FrameError::NonZeroField { field: "SERVICE_TAG", .. })));
    }

    fn any_header() -> impl Strategy<Value = (FrameHeader, Vec<u8>)> {
        let data = (
            prop::sample::select(vec![Opcode::Log, Opcode::Page]),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(op, tag, seq, off, payload)| (FrameHeader::data(op, tag, seq, off, payload.len() as u32), payload));
        let ctl = (0u8..4, any::<u64>(), any::<u64>()).prop_map(|(k, seq, s)| {
            let h = match k {
                0 => FrameHeader::ack(seq),
                1 => FrameHeader::nack(NackReason::ALL[(s % 4) as usize], seq),
                2 => FrameHeader::heartbeat(s, seq),
                _ => FrameHeader::data(Opcode::Barrier, 0, seq, 0, 0),
            };
            (h, Vec::new())
        });
        prop_oneof![data, ctl]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip((h, payload) in any_header()) {
            let mut out = Vec::new();
            encode_frame(&h, &payload, &mut out);
            let (d, p, used) = decode_frame(&out).unwrap();
            prop_assert_eq!(d, h);
            prop_assert_eq!(p, &payload[..]);
            prop_assert_eq!(used, out.len());
        }

        #[test]
        fn decoder_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_frame(&bytes);
        }
    }
}
