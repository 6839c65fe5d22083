//! Shared test fixtures: a node's log over the in-process `mem` engine pair.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;
use tandem::log::MirroredLog;
use tandem::mirror::Mirror;
use tandem::store::{Store, StoreError};
use tandem_drivers::mem::{mem_pair, MemEngine};
use tandem_drivers::{Engine, MemRegion};
use tandem_hsi::window::RecordHeader;

pub const LOG_SIZE: u64 = 512 * 1024;
pub const PAGE_SIZE: u32 = 4096;
pub const PAGE_COUNT: u32 = 16;
pub const REGION: u64 = 1 << 20;

/// Node A (the primary, its log formatted) and engine B, whose mirror window receives A's copy.
pub struct Pair {
    pub a: Arc<MemEngine>,
    pub b: Arc<MemEngine>,
    pub log: MirroredLog,
}

pub fn pair() -> Pair {
    let r = |base| MemRegion::anonymous(REGION, base).unwrap();
    let (a, b) = mem_pair(r(0x4000_0000), r(0), r(0x8000_0000), r(0));
    let (a, b) = (Arc::new(a), Arc::new(b));
    let engine: Arc<dyn Engine> = a.clone();
    let mirror = Arc::new(Mirror::new(engine, Duration::from_secs(5)));
    let log = MirroredLog::format(mirror, LOG_SIZE, PAGE_SIZE, PAGE_COUNT).unwrap();
    Pair { a, b, log }
}

/// What happened to a store, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Applied(u64),
    Recorded(u64),
}

/// A store in memory that logs applications and can fail after a number of writes
/// (a crash in the middle of a consistency point).
#[derive(Debug, Default)]
pub struct ModelStore {
    pub data: Vec<u8>,
    pub applied: (u32, u64),
    pub events: Vec<Event>,
    pub writes_left: Option<u64>,
}

impl ModelStore {
    pub fn new(size: usize) -> Self {
        ModelStore { data: vec![0; size], ..Default::default() }
    }

    fn spend(&mut self) -> Result<(), StoreError> {
        match self.writes_left.as_mut() {
            Some(0) => Err(StoreError::Io { path: "model".into(), op: "write", source: std::io::Error::other("injected crash") }),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// True when no LSN has two applications that both count: an application counts
    /// unless the same LSN is applied again before any record of progress covers it.
    pub fn applied_at_most_once(&self) -> Result<(), String> {
        use std::collections::HashMap;
        let mut committed: HashMap<u64, usize> = HashMap::new();
        let mut open: Vec<u64> = Vec::new();
        for e in &self.events {
            match *e {
                Event::Applied(l) => {
                    open.retain(|x| *x != l);
                    open.push(l);
                }
                Event::Recorded(upto) => {
                    for l in open.iter().filter(|l| **l <= upto) {
                        *committed.entry(*l).or_default() += 1;
                    }
                    open.retain(|l| *l > upto);
                }
            }
        }
        match committed.iter().find(|(_, n)| **n > 1) {
            Some((l, n)) => Err(format!("LSN {l} applied and recorded {n} times")),
            None => Ok(()),
        }
    }
}

impl Store for ModelStore {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.spend()?;
        let end = offset as usize + data.len();
        if end > self.data.len() {
            return Err(StoreError::OutOfRange { offset, len: data.len() as u64, size: self.data.len() as u64 });
        }
        self.data[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn trim(&mut self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.spend()?;
        self.data[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    fn applied_lsn(&self, log_id: u32) -> u64 {
        if self.applied.0 == log_id {
            self.applied.1
        } else {
            0
        }
    }
    fn set_applied(&mut self, log_id: u32, lsn: u64) -> Result<(), StoreError> {
        self.spend()?;
        self.applied = (log_id, lsn);
        self.events.push(Event::Recorded(lsn));
        Ok(())
    }
    fn apply(&mut self, record: &RecordHeader, payload: &[u8]) -> Result<(), StoreError> {
        match record.op {
            tandem_hsi::window::RecordOp::Write => self.write_at(record.target_offset, payload)?,
            tandem_hsi::window::RecordOp::Trim => self.trim(record.target_offset, record.target_len)?,
            tandem_hsi::window::RecordOp::Wrap => {}
        }
        self.events.push(Event::Applied(record.lsn));
        Ok(())
    }
}

/// The `tandem` binary under test.
pub fn exe() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_tandem"))
}

/// Starts node `id` of an HA pair whose configs are in `dir`.
pub fn start_node(dir: &std::path::Path, id: u8) -> std::process::Child {
    tandem::demo_ha::start_node(&exe(), dir, id).unwrap()
}

/// Waits for `f`, failing the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, f: impl FnMut() -> bool) -> Duration {
    tandem::demo_ha::wait(what, limit, f).unwrap()
}
