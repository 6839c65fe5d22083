//! Shared wire test vectors: frames as bytes with their decoded meaning.
//!
//! [`generate`] builds them from the encoder; the committed copy in
//! `hsi/vectors/frames.json` is what other implementations (the RTL testbenches) read.
//! A test keeps the two equal.

use crate::codes::{NackReason, Opcode};
use crate::frame::{encode_frame, FrameHeader};

/// One vector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vector {
    /// What it shows.
    pub name: String,
    /// The frame bytes, lowercase hex.
    pub hex: String,
    /// The decoded header, for valid frames.
    pub header: Option<FrameHeader>,
    /// The payload, lowercase hex, for valid frames.
    pub payload_hex: Option<String>,
    /// The rejection reason ([`crate::FrameError::reason`]) for invalid frames.
    pub error: Option<String>,
}

/// The vector file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VectorFile {
    /// HSI version the vectors belong to.
    pub hsi_version: u32,
    /// The vectors.
    pub vectors: Vec<Vector>,
}

/// Lowercase hex of bytes.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes from hex; `None` on odd length or a non-hex digit.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn valid(name: &str, h: FrameHeader, payload: &[u8]) -> Vector {
    let mut out = Vec::new();
    encode_frame(&h, payload, &mut out);
    Vector { name: name.into(), hex: to_hex(&out), header: Some(h), payload_hex: Some(to_hex(payload)), error: None }
}

fn invalid(name: &str, bytes: Vec<u8>, error: &str) -> Vector {
    Vector { name: name.into(), hex: to_hex(&bytes), header: None, payload_hex: None, error: Some(error.into()) }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Builds the vector set.
pub fn generate() -> VectorFile {
    let mut v = vec![
        valid("log entry, 8 bytes", FrameHeader::data(Opcode::Log, 1, 1, 0x2000, 8), &pattern(8, 1)),
        valid("log entry, 61 bytes (not a multiple of 8)", FrameHeader::data(Opcode::Log, 7, 2, 0x2040, 61), &pattern(61, 2)),
        valid("tagged page, 4096 bytes", FrameHeader::data(Opcode::Page, 0xDEAD_BEEF, 3, 0x0010_0000, 4096), &pattern(4096, 3)),
        valid("barrier", FrameHeader::data(Opcode::Barrier, 0, 4, 0, 0), &[]),
        valid("ack", FrameHeader::ack(4), &[]),
        valid("nack crc", FrameHeader::nack(NackReason::Crc, 5), &[]),
        valid("nack bounds", FrameHeader::nack(NackReason::Bounds, 6), &[]),
        valid("heartbeat", FrameHeader::heartbeat(0x0123_4567_89AB_CDEF, 1), &[]),
        valid("large sequence and offset", FrameHeader::data(Opcode::Log, 2, 0x1_0000_0001, 0xFFFF_F000, 16), &pattern(16, 9)),
    ];
    let mut base = Vec::new();
    encode_frame(&FrameHeader::data(Opcode::Log, 1, 1, 0x2000, 8), &pattern(8, 1), &mut base);
    let mut bad_crc = base.clone();
    bad_crc[40] ^= 0x01;
    v.push(invalid("bad crc (payload bit flipped)", bad_crc, "bad_crc"));
    let mut bad_magic = base.clone();
    bad_magic[0] = b'X';
    v.push(invalid("bad magic", bad_magic, "bad_magic"));
    let mut bad_version = base.clone();
    bad_version[4] = 2;
    v.push(invalid("bad version", bad_version, "bad_version"));
    let mut bad_type = base.clone();
    bad_type[5] = 9;
    v.push(invalid("unknown frame type", bad_type, "unknown_code"));
    let mut bad_flags = base.clone();
    bad_flags[7] = 0x80;
    v.push(invalid("reserved flags set", bad_flags, "bad_flags"));
    let mut too_long = base.clone();
    crate::frame::header::LENGTH.put(&mut too_long, (crate::frame::MAX_PAYLOAD + 1) as u64);
    v.push(invalid("length above MAX_PAYLOAD", too_long, "too_long"));
    v.push(invalid("truncated header", base[..20].to_vec(), "truncated"));
    v.push(invalid("truncated payload", base[..36].to_vec(), "truncated"));
    VectorFile { hsi_version: crate::HSI_VERSION, vectors: v }
}

/// The committed vector file, as built into this crate.
pub const COMMITTED_JSON: &str = include_str!("../vectors/frames.json");

/// Parses the committed vectors.
pub fn committed() -> VectorFile {
    serde_json::from_str(COMMITTED_JSON).expect("hsi/vectors/frames.json parses")
}

/// Renders a vector file as committed (pretty JSON, trailing newline).
pub fn render(file: &VectorFile) -> String {
    let mut s = serde_json::to_string_pretty(file).expect("vectors serialize");
    s.push('\n');
    s
}
