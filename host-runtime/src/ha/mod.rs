//! High availability: who serves which service, and when.
//!
//! - [`types`]: the vocabulary shared by the engine and the runtime that executes it.
//! - [`engine`]: the pure HA state machine (events in, commands out, no I/O).
//! - [`witness`]: the lease table that decides who may serve ([`witness::Mediator`]), its
//!   UDP server (`tandem mediator`) and client.
//! - [`etcd`]: the same rules kept in etcd v3 ([`etcd::EtcdWitness`]).
//!
//! The rules and the reason for each are in `docs/ha.md`.

pub mod engine;
pub mod etcd;
pub mod types;
pub mod witness;

pub use engine::{HaConfig, HaConfigError, HaEngine, HaStatus, ServiceHome};
pub use etcd::EtcdWitness;
pub use types::*;
pub use witness::{run_mediator, Mediator, WitnessClient};
