//! An NBD (Network Block Device) server over any [`BlockDevice`].
//!
//! The server speaks the protocol of the nbd project's `doc/proto.md`: fixed newstyle
//! negotiation only (`NBD_FLAG_FIXED_NEWSTYLE`, `NBD_FLAG_NO_ZEROES` honoured), the
//! options `NBD_OPT_EXPORT_NAME`, `NBD_OPT_GO`, `NBD_OPT_INFO` (answered with
//! `NBD_INFO_EXPORT`, `NBD_INFO_BLOCK_SIZE` and, on request, `NBD_INFO_NAME` and
//! `NBD_INFO_DESCRIPTION`), `NBD_OPT_LIST` and `NBD_OPT_ABORT`; every other option gets
//! `NBD_REP_ERR_UNSUP`, an unknown export `NBD_REP_ERR_UNKNOWN`. In transmission it
//! answers with simple replies to `NBD_CMD_READ`, `WRITE`, `FLUSH`, `TRIM` and `DISC`,
//! advertising `HAS_FLAGS`, `SEND_FLUSH`, `SEND_FUA` and `SEND_TRIM` (plus `READ_ONLY` for
//! read-only devices). A write with `NBD_CMD_FLAG_FUA` is a device write followed by a
//! device flush.
//!
//! # Refusals
//!
//! Requests are checked before the device is called ([`BlockDevice`] implementations
//! only ever see in-range, non-empty requests):
//!
//! | request | answer |
//! |---|---|
//! | read or trim beyond the end of the export (or with `offset + len` overflowing) | `EINVAL` |
//! | write beyond the end of the export | `ENOSPC` (what the protocol asks for) |
//! | read longer than the maximum payload (32 MiB by default) | `EINVAL` |
//! | write longer than the maximum payload | `EINVAL`, then the connection is closed (below) |
//! | unknown command, or a command the server does not advertise | `EINVAL` |
//! | unknown or unnegotiated command flags | `EINVAL` (a write's payload is still read) |
//! | write or trim on a read-only export | `EPERM` |
//! | zero-length read, write or trim within the export | success, device not called |
//! | bad request magic, truncated request | connection closed (the stream cannot be trusted) |
//!
//! A write longer than the maximum payload is answered with `EINVAL` and the connection is
//! then closed without reading the payload: skipping up to 4 GiB a client claims to send
//! costs unbounded time, and buffering it unbounded memory, while closing is always safe.
//! Requests that arrived before it are still completed and answered.
//!
//! # Concurrency
//!
//! Each connection has one reader thread and a fixed pool of worker threads
//! ([`NbdConfig::workers_per_connection`], 16 by default). The reader decodes and checks
//! each request, reads a write's payload into a buffer, and queues the request; workers
//! call the device and send the reply, so replies go out in completion order, matched to
//! requests by handle. A reply (header and read data) is written whole under one lock, so
//! replies never interleave on the socket. Requests that overlap and of which at least
//! one changes data run one after the other in the order the client sent them, so the bytes
//! of two writes never mix, whatever the device does; everything else runs in parallel.
//! What one connection holds in flight is bounded in count
//! ([`NbdConfig::max_requests_in_flight`]) and in buffer bytes
//! ([`NbdConfig::max_bytes_in_flight`]); when either is reached the reader stops reading
//! the socket until replies have gone out, so no client-supplied length ever makes the
//! server allocate more than that.
//!
//! Plain threads rather than an async runtime: [`BlockDevice`] is synchronous (a mirrored
//! write blocks until the partner acknowledges it), so with tokio every request would be
//! handed to `spawn_blocking` threads anyway, with an extra hop and a dependency, and
//! without a natural per-connection bound. A fixed pool per connection gives that bound,
//! keeps one slow client from starving others, and keeps the code small. The cost is a few
//! threads per connection, which is fine for the handful of clients an HA export serves
//! ([`NbdConfig::max_connections`], 32 by default).
//!
//! # Timeouts and shutdown
//!
//! The handshake must finish within [`NbdConfig::handshake_timeout`]; once a request has
//! started, each socket read must progress within [`NbdConfig::io_timeout`], as must each
//! reply write; an idle connection is kept unless [`NbdConfig::idle_timeout`] is set.
//! [`NbdHandle::shutdown`] stops accepting, stops reading requests, lets requests already
//! read finish and be answered within [`NbdConfig::shutdown_grace`], then closes every
//! connection.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use tandem_nbd::{MemDevice, NbdServer};
//!
//! let server = NbdServer::bind("127.0.0.1:0", "disk", Arc::new(MemDevice::new(16 << 20)))?;
//! let addr = server.local_addr()?;
//! let handle = server.spawn()?;
//! // qemu-io -f raw nbd://{addr}/disk -c 'write -P 0xab 0 64k'
//! # let _ = addr;
//! handle.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod client;
mod conn;
mod device;
mod handshake;
mod net;
pub mod proto;
mod server;
mod stats;

pub use device::{BlockDevice, DeviceError, FileDevice, MemDevice};
pub use net::ListenAddr;
pub use server::{Export, NbdConfig, NbdHandle, NbdServer, ShutdownHandle, MAX_EXPORT_NAME};
pub use stats::NbdStats;
