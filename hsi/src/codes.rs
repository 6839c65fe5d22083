//! Enumerated codes carried in frames, ring entries and registers.
//!
//! Each enum is declared once with [`code_enum!`], which derives `TryFrom<u8>` (rejecting
//! unknown encodings), the list of all values and the table rendered into `docs/hsi.md`.

/// One documented value of a code enum, for tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeDoc {
    /// Variant name.
    pub name: &'static str,
    /// Encoded value.
    pub value: u8,
    /// Meaning.
    pub doc: &'static str,
}

/// A code enum's table for the docs.
#[derive(Debug, Clone, Copy)]
pub struct CodeTable {
    /// Title of the table.
    pub title: &'static str,
    /// Where the code is carried.
    pub carried_in: &'static str,
    /// The values.
    pub values: &'static [CodeDoc],
}

/// Error for a raw value that names no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} code {value:#04x}")]
pub struct UnknownCode {
    /// Which enum.
    pub what: &'static str,
    /// The rejected value.
    pub value: u8,
}

/// Declares a `u8` code enum with docs. See the module docs.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($title:literal, carried_in = $where:literal) {
            $( $variant:ident = $value:literal => $doc:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[repr(u8)]
        pub enum $name {
            $( #[doc = $doc] $variant = $value, )*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The table rendered into the docs.
            pub const TABLE: CodeTable = CodeTable {
                title: $title,
                carried_in: $where,
                values: &[$(CodeDoc { name: stringify!($variant), value: $value, doc: $doc }),*],
            };
            /// Encoded value.
            pub const fn code(self) -> u8 {
                self as u8
            }
            /// Variant name.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),* }
            }
        }

        impl TryFrom<u8> for $name {
            type Error = UnknownCode;
            fn try_from(value: u8) -> Result<Self, UnknownCode> {
                match value {
                    $( $value => Ok($name::$variant), )*
                    _ => Err(UnknownCode { what: stringify!($name), value }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

code_enum! {
    /// Type of a wire frame.
    pub enum FrameType ("Frame type", carried_in = "frame header `FRAME_TYPE`") {
        Data = 1 => "a submission entry's payload for the partner's mirror window",
        Ack = 2 => "cumulative acknowledgement: every data frame up to `SEQUENCE` is in the window",
        Nack = 3 => "negative acknowledgement; `KIND` holds the reason",
        Heartbeat = 4 => "liveness and stream sync; `SEQUENCE` is the sender's oldest unacknowledged sequence, `WINDOW_OFFSET` its session id",
    }
}

code_enum! {
    /// Kind of a submission entry, also carried in data frames.
    pub enum Opcode ("Entry opcode", carried_in = "submission entry `OPCODE`, completion entry `OPCODE`, data frame `KIND`") {
        Log = 1 => "log descriptor: a write-ahead log record to mirror",
        Page = 2 => "tagged page: a memory page of the service named by the tag",
        Barrier = 3 => "barrier/flush: no payload; completes after every earlier entry and after the partner made its window durable",
    }
}

code_enum! {
    /// Reason carried by a NACK frame.
    pub enum NackReason ("NACK reason", carried_in = "NACK frame `KIND`") {
        Crc = 1 => "CRC32C mismatch; resend from `SEQUENCE` (the receiver's next expected sequence)",
        SequenceGap = 2 => "a frame arrived after a gap; resend from `SEQUENCE`",
        NotSynced = 3 => "data arrived before a heartbeat opened the stream; send a heartbeat, then resend from `SEQUENCE`",
        Bounds = 4 => "the frame at `SEQUENCE` addressed bytes outside the window; it was not written and is still expected: the sender sends a barrier under that sequence instead",
    }
}

code_enum! {
    /// Status of a completion entry.
    pub enum CompletionStatus ("Completion status", carried_in = "completion entry `STATUS`") {
        Ok = 0 => "the partner's window holds the entry",
        RemoteBounds = 1 => "the partner rejected the entry: outside its mirror window; nothing was written",
        TooLong = 2 => "the entry's length exceeds `MAX_PAYLOAD`; it was not sent",
        BadOpcode = 3 => "the entry's opcode or flags are unknown; it was not sent",
        HostBounds = 4 => "the entry's host address range is outside the engine's DMA region; it was not sent",
        Aborted = 5 => "the engine was stopped or reset before the partner acknowledged the entry",
    }
}

code_enum! {
    /// State of the mirror link.
    pub enum LinkState ("Link state", carried_in = "link block `STATE` register (low byte)") {
        Down = 0 => "no connection to the partner",
        Connecting = 1 => "a connection is being made or the stream is not yet synced",
        Up = 2 => "synced: data frames flow and are acknowledged",
    }
}

/// Every code table, in the order the docs show them.
pub const ALL_TABLES: &[CodeTable] = &[FrameType::TABLE, Opcode::TABLE, NackReason::TABLE, CompletionStatus::TABLE, LinkState::TABLE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_from_round_trips_and_rejects_unknown() {
        for t in FrameType::ALL {
            assert_eq!(FrameType::try_from(t.code()), Ok(*t));
        }
        let e = FrameType::try_from(0).unwrap_err();
        assert_eq!(e, UnknownCode { what: "FrameType", value: 0 });
        assert!(Opcode::try_from(4).is_err());
        assert_eq!(NackReason::try_from(4), Ok(NackReason::Bounds));
        assert_eq!(e.to_string(), "unknown FrameType code 0x00");
    }

    #[test]
    fn tables_match_variants() {
        for table in ALL_TABLES {
            let mut seen = std::collections::HashSet::new();
            for v in table.values {
                assert!(seen.insert(v.value), "{}: duplicate value {}", table.title, v.value);
            }
        }
        assert_eq!(CompletionStatus::TABLE.values.len(), CompletionStatus::ALL.len());
    }
}
