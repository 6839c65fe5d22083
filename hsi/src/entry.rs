//! Submission and completion ring entries.
//!
//! The host writes [`SubmissionEntry`]s into the submission ring and rings the doorbell;
//! the engine writes one [`CompletionEntry`] per submission entry into the completion
//! ring, in submission order.

use crate::codes::{CompletionStatus, Opcode, UnknownCode};

crate::layout! {
    /// Submission entry fields.
    pub mod submission ("Submission entry", size = 32) {
        OPCODE @ 0, 1 => "entry opcode (see Entry opcode)";
        FLAGS @ 1, 1 => "reserved, 0";
        RESERVED @ 2, 2 => "reserved, 0";
        SERVICE_TAG @ 4, 4 => "file-service ID the entry belongs to";
        HOST_ADDR @ 8, 8 => "DMA address of the payload in host memory";
        WINDOW_OFFSET @ 16, 8 => "destination byte offset in the partner's mirror window";
        LENGTH @ 24, 4 => "payload length in bytes, at most MAX_PAYLOAD; 0 for a barrier";
        COOKIE @ 28, 4 => "opaque host value echoed in the completion";
    }
}

crate::layout! {
    /// Completion entry fields.
    pub mod completion ("Completion entry", size = 16) {
        COOKIE @ 0, 4 => "the submission entry's COOKIE";
        STATUS @ 4, 1 => "completion status (see Completion status)";
        OPCODE @ 5, 1 => "the submission entry's opcode";
        PHASE @ 6, 1 => "phase bit in bit 0: flips each time the engine wraps the ring, so the host sees new entries without reading a register";
        RESERVED @ 7, 1 => "reserved, 0";
        SEQUENCE @ 8, 8 => "wire sequence number the entry was sent with; 0 if it was never sent";
    }
}

/// A submission entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubmissionEntry {
    /// What to mirror.
    pub opcode: Opcode,
    /// Service tag.
    pub service_tag: u32,
    /// Payload address in host memory (DMA address).
    pub host_addr: u64,
    /// Destination offset in the partner's window.
    pub window_offset: u64,
    /// Payload length.
    pub length: u32,
    /// Echoed in the completion.
    pub cookie: u32,
}

/// Why a raw entry was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Buffer too short.
    #[error("entry needs {need} bytes, have {have}")]
    Truncated {
        /// Needed.
        need: usize,
        /// Available.
        have: usize,
    },
    /// Unknown code.
    #[error("{0}")]
    UnknownCode(#[from] UnknownCode),
    /// Reserved field non-zero.
    #[error("reserved field {0} is not zero")]
    Reserved(&'static str),
}

impl SubmissionEntry {
    /// A barrier entry.
    pub fn barrier(cookie: u32) -> Self {
        SubmissionEntry { opcode: Opcode::Barrier, service_tag: 0, host_addr: 0, window_offset: 0, length: 0, cookie }
    }

    /// Encodes into ring bytes.
    pub fn encode(&self) -> [u8; submission::SIZE] {
        let mut b = [0u8; submission::SIZE];
        submission::OPCODE.put(&mut b, self.opcode.code().into());
        submission::SERVICE_TAG.put(&mut b, self.service_tag.into());
        submission::HOST_ADDR.put(&mut b, self.host_addr);
        submission::WINDOW_OFFSET.put(&mut b, self.window_offset);
        submission::LENGTH.put(&mut b, self.length.into());
        submission::COOKIE.put(&mut b, self.cookie.into());
        b
    }

    /// Decodes ring bytes, rejecting unknown opcodes and set reserved bits.
    pub fn decode(b: &[u8]) -> Result<Self, EntryError> {
        if b.len() < submission::SIZE {
            return Err(EntryError::Truncated { need: submission::SIZE, have: b.len() });
        }
        if submission::FLAGS.get(b) != 0 {
            return Err(EntryError::Reserved("FLAGS"));
        }
        if submission::RESERVED.get(b) != 0 {
            return Err(EntryError::Reserved("RESERVED"));
        }
        Ok(SubmissionEntry {
            opcode: Opcode::try_from(submission::OPCODE.get(b) as u8)?,
            service_tag: submission::SERVICE_TAG.get(b) as u32,
            host_addr: submission::HOST_ADDR.get(b),
            window_offset: submission::WINDOW_OFFSET.get(b),
            length: submission::LENGTH.get(b) as u32,
            cookie: submission::COOKIE.get(b) as u32,
        })
    }
}

/// A completion entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompletionEntry {
    /// The submission's cookie.
    pub cookie: u32,
    /// Outcome.
    pub status: CompletionStatus,
    /// The submission's opcode.
    pub opcode: Opcode,
    /// Wire sequence (0 if never sent).
    pub sequence: u64,
}

impl CompletionEntry {
    /// Encodes into ring bytes with the given phase bit.
    pub fn encode(&self, phase: bool) -> [u8; completion::SIZE] {
        let mut b = [0u8; completion::SIZE];
        completion::COOKIE.put(&mut b, self.cookie.into());
        completion::STATUS.put(&mut b, self.status.code().into());
        completion::OPCODE.put(&mut b, self.opcode.code().into());
        completion::PHASE.put(&mut b, phase.into());
        completion::SEQUENCE.put(&mut b, self.sequence);
        b
    }

    /// Decodes ring bytes; returns the entry and its phase bit.
    pub fn decode(b: &[u8]) -> Result<(Self, bool), EntryError> {
        if b.len() < completion::SIZE {
            return Err(EntryError::Truncated { need: completion::SIZE, have: b.len() });
        }
        let entry = CompletionEntry {
            cookie: completion::COOKIE.get(b) as u32,
            status: CompletionStatus::try_from(completion::STATUS.get(b) as u8)?,
            opcode: Opcode::try_from(completion::OPCODE.get(b) as u8)?,
            sequence: completion::SEQUENCE.get(b),
        };
        Ok((entry, completion::PHASE.get(b) & 1 == 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_round_trip_and_rejects() {
        let e =
            SubmissionEntry { opcode: Opcode::Page, service_tag: 42, host_addr: 0x1000, window_offset: 0x2000, length: 4096, cookie: 7 };
        let b = e.encode();
        assert_eq!(SubmissionEntry::decode(&b), Ok(e));
        let mut bad = b;
        bad[0] = 9;
        assert!(matches!(SubmissionEntry::decode(&bad), Err(EntryError::UnknownCode(_))));
        let mut bad = b;
        bad[1] = 1;
        assert_eq!(SubmissionEntry::decode(&bad), Err(EntryError::Reserved("FLAGS")));
        assert!(matches!(SubmissionEntry::decode(&b[..5]), Err(EntryError::Truncated { .. })));
    }

    #[test]
    fn completion_round_trip_with_phase() {
        let c = CompletionEntry { cookie: 3, status: CompletionStatus::RemoteBounds, opcode: Opcode::Log, sequence: 99 };
        assert_eq!(CompletionEntry::decode(&c.encode(true)), Ok((c, true)));
        assert_eq!(CompletionEntry::decode(&c.encode(false)), Ok((c, false)));
    }
}
