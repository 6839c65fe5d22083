//! Tandem host runtime.
//!
//! - [`mirror`]: ticketed submission over an engine backend; the one place entries are
//!   posted and completions awaited.
//! - [`log`]: the mirrored write-ahead log, consistency points and local recovery.
//! - [`pages`]: the tagged page pool.
//! - [`scan`]: reading a log out of a region and replaying it exactly once.
//! - [`store`]: the backing store image.

pub mod bench;
#[cfg(feature = "sim")]
pub mod bench_sim;
pub mod config;
pub mod control;
pub mod demo;
pub mod demo_ha;
pub mod demo_netns;
pub mod device;
pub mod dirty;
pub mod engines;
pub mod ha;
pub mod hanode;
pub mod identity;
pub mod log;
pub mod mirror;
pub mod node;
pub mod pages;
pub mod scan;
pub mod store;
pub mod workload;
