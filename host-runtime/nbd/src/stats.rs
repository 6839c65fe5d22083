//! Server counters.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters of one server, shared by all its connections.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A point-in-time copy of a server's counters ([`crate::NbdServer::stats`]).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct NbdStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> NbdStats {
                NbdStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Connections accepted (including those later refused in the handshake).
    connections_accepted,
    /// Connections closed at once because `max_connections` were open or the server was stopping.
    connections_refused,
    /// Connections open now.
    connections_active,
    /// Handshakes that entered transmission.
    handshakes_completed,
    /// Handshakes that ended without transmission (abort, error, timeout, unknown export).
    handshakes_failed,
    /// Options answered with an error reply (`NBD_REP_ERR_*`).
    option_errors,
    /// `NBD_CMD_READ` requests received.
    reads,
    /// `NBD_CMD_WRITE` requests received.
    writes,
    /// `NBD_CMD_FLUSH` requests received.
    flushes,
    /// `NBD_CMD_TRIM` requests received.
    trims,
    /// `NBD_CMD_DISC` requests received.
    disconnects,
    /// Requests of any other command type (refused with `EINVAL`).
    unsupported_commands,
    /// Bytes returned by successful reads.
    bytes_read,
    /// Bytes written by successful writes.
    bytes_written,
    /// Requests refused by the server without calling the device (bad range, flags, length,
    /// command, read-only export).
    requests_refused,
    /// Requests whose device call failed.
    device_errors,
    /// Error replies sent (refused requests plus device errors).
    error_replies,
    /// Connections closed for a protocol violation (bad magic, oversized write, truncated
    /// request, timeout in the middle of a request).
    protocol_errors,
}

impl Counters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn dec(c: &AtomicU64) {
        c.fetch_sub(1, Ordering::Relaxed);
    }
}
