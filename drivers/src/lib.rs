//! Tandem engine backends behind one API.
//!
//! - [`api`]: the [`Engine`] trait every backend implements (post entries, ring the
//!   doorbell, poll or wait for completions, the local mirror window, link state).
//! - [`region`]: memory regions shared between the host and an engine: the host region
//!   the engine reads payloads from, and the mirror window it writes the partner's data to.
//! - [`soft`]: the software engine, speaking the HSI wire format over TCP.
//! - [`faultshim`]: a frame-aware TCP proxy that drops, corrupts, duplicates, reorders and
//!   delays frames and cuts the link, for tests.
//! - [`conformance`]: the suite every backend must pass.

pub mod api;
pub mod conformance;
pub mod faultshim;
pub mod mem;
pub mod region;
pub mod soft;
pub mod vfio;

pub use api::{CounterSnapshot, Engine, EngineError, EngineInfo};
pub use region::{MemRegion, OutOfBounds};
