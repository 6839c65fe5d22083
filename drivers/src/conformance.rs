//! The conformance suite every engine backend must pass.
//!
//! Each check is a public function taking a [`PairFactory`] and a seed, so the soft, sim
//! and vfio backends run the same suite; [`conformance_tests!`](crate::conformance_tests)
//! expands to one `#[test]` per check. A factory makes a connected [`Pair`]: engine A
//! mirrors into B's window and B into A's. Checks that need to cut the link or restart
//! B use the pair's optional hooks and fail with a clear message when a factory does not
//! provide them.
//!
//! Requirements on the pair: host regions of at least [`MIN_HOST_REGION`] bytes, mirror
//! windows of at least [`MIN_WINDOW`] bytes; B's window must be persistent across
//! [`Pair::restart_b`] (a file-backed mapping).
//!
//! Seeds: every check derives its data from a seed (default: fixed per check, or the
//! `TANDEM_SEED` environment variable). A failing check prints its seed and the command
//! that reruns it.

use crate::api::{CounterSnapshot, Engine, EngineError};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use std::time::{Duration, Instant};
use tandem_hsi::{CompletionEntry, CompletionStatus, Counter, LinkState, Opcode, SubmissionEntry, MAX_PAYLOAD};

/// Smallest host region a pair must give each engine.
pub const MIN_HOST_REGION: u64 = 8 << 20;
/// Smallest mirror window a pair must give each engine.
pub const MIN_WINDOW: u64 = 1 << 20;
/// Bound on any one wait for completions in the suite.
pub const WAIT: Duration = Duration::from_secs(60);

/// Cuts the link between the two engines of a [`Pair`] (both directions). The engines
/// must reconnect by themselves.
pub trait LinkControl: Send + Sync {
    /// Closes the current connections now.
    fn cut(&self);
}

impl<F: Fn() + Send + Sync> LinkControl for F {
    fn cut(&self) {
        self()
    }
}

/// Makes engine B again over the same (persistent) mirror window and addresses.
pub type RestartFn = Box<dyn FnMut() -> Result<Box<dyn Engine>, EngineError> + Send>;

/// Two connected engines: A mirrors into B's window, B into A's.
pub struct Pair {
    /// Engine A.
    pub a: Box<dyn Engine>,
    /// Engine B.
    pub b: Box<dyn Engine>,
    /// Cuts the link, when the backend can.
    pub link: Option<Box<dyn LinkControl>>,
    /// Recreates B after the suite shut it down, when the backend can.
    pub restart_b: Option<RestartFn>,
    /// Whatever must outlive the engines (temporary directories, proxies); dropped last.
    pub keep: Vec<Box<dyn std::any::Any + Send>>,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("a", &self.a.info())
            .field("b", &self.b.info())
            .field("link", &self.link.is_some())
            .field("restart_b", &self.restart_b.is_some())
            .finish()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.a.shutdown();
        self.b.shutdown();
    }
}

/// Makes pairs for the suite.
pub trait PairFactory {
    /// A fresh connected pair; `seed` may drive fault injection.
    fn pair(&self, seed: u64) -> Pair;
}

impl<F: Fn(u64) -> Pair> PairFactory for F {
    fn pair(&self, seed: u64) -> Pair {
        self(seed)
    }
}

/// A suite check.
pub type Check = fn(&dyn PairFactory, u64);

/// Every check, by name.
pub const ALL: &[(&str, Check)] = &[
    ("single_entry", single_entry),
    ("many_entries", many_entries),
    ("pipelined", pipelined),
    ("local_validation", local_validation),
    ("remote_bounds", remote_bounds),
    ("barrier_after_earlier_entries", barrier_after_earlier_entries),
    ("ring_full_back_pressure", ring_full_back_pressure),
    ("link_cut_recovery", link_cut_recovery),
    ("partner_restart", partner_restart),
    ("counters_agree", counters_agree),
    ("shutdown_aborts_outstanding", shutdown_aborts_outstanding),
];

/// The seed for a check: `TANDEM_SEED` (decimal or `0x` hex) or a fixed value per check.
pub fn seed_for(check: &str) -> u64 {
    if let Ok(s) = std::env::var("TANDEM_SEED") {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        };
        if let Some(v) = parsed {
            return v;
        }
        panic!("TANDEM_SEED={s:?} is not a number");
    }
    // FNV-1a of the name: stable across runs and toolchains.
    check.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Runs one check with its seed; on failure prints the seed and the command to rerun.
pub fn run(check: &str, package: &str, test_binary: &str, factory: &dyn PairFactory, f: Check) {
    struct Report<'a> {
        check: &'a str,
        package: &'a str,
        bin: &'a str,
        seed: u64,
    }
    impl Drop for Report<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!(
                    "conformance check `{}` failed with seed {}; rerun with:\n  TANDEM_SEED={} cargo test -p {} --test {} -- {} --exact",
                    self.check, self.seed, self.seed, self.package, self.bin, self.check
                );
            }
        }
    }
    let seed = seed_for(check);
    let _report = Report { check, package, bin: test_binary, seed };
    f(factory, seed);
}

/// Expands to one `#[test]` per suite check, each running against `$factory` (anything
/// implementing [`PairFactory`], e.g. a `fn(u64) -> Pair`).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            single_entry, many_entries, pipelined, local_validation, remote_bounds,
            barrier_after_earlier_entries, ring_full_back_pressure, link_cut_recovery,
            partner_restart, counters_agree, shutdown_aborts_outstanding);
    };
    (@each $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::run(stringify!($check), env!("CARGO_PKG_NAME"), env!("CARGO_CRATE_NAME"), &$factory, $crate::conformance::$check);
            }
        )*
    };
}

// ---------------------------------------------------------------------------------
// Helpers

/// Hands out host-region space for payloads and builds entries.
struct Host<'a> {
    engine: &'a dyn Engine,
    next: u64,
    cookie: u32,
}

impl<'a> Host<'a> {
    fn new(engine: &'a dyn Engine) -> Self {
        let len = engine.host_region().len();
        assert!(len >= MIN_HOST_REGION, "the suite needs host regions of at least {MIN_HOST_REGION} bytes, got {len}");
        assert!(engine.mirror_window().len() >= MIN_WINDOW, "the suite needs mirror windows of at least {MIN_WINDOW} bytes");
        Host { engine, next: 0, cookie: 0 }
    }

    fn cookie(&mut self) -> u32 {
        self.cookie += 1;
        self.cookie
    }

    /// True when `len` more bytes fit before the end of the host region.
    fn fits(&self, len: usize) -> bool {
        self.next + len as u64 <= self.engine.host_region().len()
    }

    /// Starts handing out space from the beginning again (only when nothing is in flight).
    fn reset(&mut self) {
        self.next = 0;
    }

    /// Writes `data` into the host region and returns an entry that mirrors it to
    /// `window_offset`.
    fn entry(&mut self, opcode: Opcode, data: &[u8], window_offset: u64) -> SubmissionEntry {
        assert!(self.fits(data.len()), "host region exhausted");
        let off = self.next;
        self.engine.host_region().write(off, data).expect("host write");
        self.next = (off + data.len() as u64 + 63) & !63;
        let cookie = self.cookie();
        SubmissionEntry {
            opcode,
            service_tag: cookie.wrapping_mul(7),
            host_addr: self.engine.host_region().dma_base() + off,
            window_offset,
            length: data.len() as u32,
            cookie,
        }
    }
}

fn random_bytes(rng: &mut SmallRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// The partner's window as it should be: a snapshot plus every entry completed `Ok`.
struct Shadow(Vec<u8>);

impl Shadow {
    fn of(engine: &dyn Engine) -> Self {
        let w = engine.mirror_window();
        Shadow(w.read_vec(0, w.len() as usize).expect("window read"))
    }
    fn apply(&mut self, window_offset: u64, data: &[u8]) {
        let o = window_offset as usize;
        self.0[o..o + data.len()].copy_from_slice(data);
    }
    fn assert_matches(&self, engine: &dyn Engine, what: &str) {
        let got = Shadow::of(engine);
        if let Some(i) = got.0.iter().zip(&self.0).position(|(g, e)| g != e) {
            panic!(
                "{what}: partner window differs from what was mirrored, first at offset {i:#x}: got {:#04x}, expected {:#04x}",
                got.0[i], self.0[i]
            );
        }
    }
}

fn describe(e: &dyn Engine) -> String {
    format!("link {:?}; counters: {}", e.link_state(), e.counters())
}

/// Collects exactly `n` completions (bounded by [`WAIT`] without progress, and by three
/// times that in all).
fn collect(engine: &dyn Engine, mut got: Vec<CompletionEntry>, n: usize) -> Vec<CompletionEntry> {
    let mut last = Instant::now();
    let hard = last + 3 * WAIT;
    while got.len() < n {
        assert!(Instant::now() < hard, "only {} of {n} completions after {:?}; {}", got.len(), 3 * WAIT, describe(engine));
        let before = got.len();
        let _ = engine.wait_completions(Duration::from_millis(100));
        let want = n - got.len();
        engine.poll_completions(&mut got, want).expect("poll");
        if got.len() > before {
            last = Instant::now();
        } else if last.elapsed() > WAIT {
            panic!("only {} of {n} completions after {WAIT:?} without progress; {}", got.len(), describe(engine));
        }
    }
    got
}

/// Posts every entry (waiting for ring space), rings the doorbell and collects one
/// completion per entry.
fn run_entries(engine: &dyn Engine, entries: &[SubmissionEntry]) -> Vec<CompletionEntry> {
    let mut got = Vec::new();
    engine.post_all(entries, &mut got, WAIT).unwrap_or_else(|e| panic!("post_all: {e}; {}", describe(engine)));
    collect(engine, got, entries.len())
}

/// Completions come one per entry, in submission order, with the entry's cookie and
/// opcode; sent entries carry increasing sequence numbers.
fn assert_in_order(entries: &[SubmissionEntry], done: &[CompletionEntry]) {
    assert_eq!(done.len(), entries.len(), "one completion per entry");
    let mut last_seq = 0;
    for (i, (e, c)) in entries.iter().zip(done).enumerate() {
        assert_eq!(c.cookie, e.cookie, "completion {i} out of order: cookie {} where {} was submitted", c.cookie, e.cookie);
        assert_eq!(c.opcode, e.opcode, "completion {i}: opcode");
        if c.sequence != 0 {
            assert!(c.sequence > last_seq, "completion {i}: sequence {} not above {last_seq}", c.sequence);
            last_seq = c.sequence;
        }
    }
}

fn assert_all_ok(done: &[CompletionEntry], engine: &dyn Engine) {
    for (i, c) in done.iter().enumerate() {
        assert_eq!(c.status, CompletionStatus::Ok, "completion {i} (cookie {}): {:?}; {}", c.cookie, c.status, describe(engine));
        assert!(c.sequence >= 1, "completion {i}: an Ok entry was sent, so it has a sequence");
    }
}

fn delta(after: &CounterSnapshot, before: &CounterSnapshot, c: Counter) -> u64 {
    after.get(c) - before.get(c)
}

/// A size drawn from a mix: mostly small, some pages, some maximal.
fn mixed_len(rng: &mut SmallRng) -> usize {
    match rng.gen_range(0..10) {
        0..=4 => rng.gen_range(1..=256),
        5..=7 => rng.gen_range(257..=8192),
        8 => MAX_PAYLOAD,
        _ => rng.gen_range(8193..=MAX_PAYLOAD),
    }
}

/// Mirrors `count` random entries from `from` into `to`'s window in batches that fit the
/// host region; checks order, status and the window contents.
fn mirror_random(from: &dyn Engine, to: &dyn Engine, rng: &mut SmallRng, count: usize, max_len: usize) {
    let mut host = Host::new(from);
    let mut shadow = Shadow::of(to);
    let wlen = to.mirror_window().len();
    let mut left = count;
    while left > 0 {
        host.reset();
        let mut batch = Vec::new();
        let mut datas = Vec::new();
        while left > 0 {
            let len = mixed_len(rng).min(max_len);
            if !host.fits(len + 64) {
                break;
            }
            let off = rng.gen_range(0..=wlen - len as u64);
            let data = random_bytes(rng, len);
            let op = if rng.gen_bool(0.5) { Opcode::Log } else { Opcode::Page };
            batch.push(host.entry(op, &data, off));
            datas.push(data);
            left -= 1;
        }
        let done = run_entries(from, &batch);
        assert_in_order(&batch, &done);
        assert_all_ok(&done, from);
        for (e, d) in batch.iter().zip(&datas) {
            shadow.apply(e.window_offset, d);
        }
    }
    shadow.assert_matches(to, "after random entries");
}

// ---------------------------------------------------------------------------------
// Checks

/// One entry is mirrored byte-exact into the partner's window and completes `Ok` with a
/// sequence number; the same holds in the other direction.
pub fn single_entry(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let mut rng = SmallRng::seed_from_u64(seed);
    for (from, to) in [(&*pair.a, &*pair.b), (&*pair.b, &*pair.a)] {
        let mut host = Host::new(from);
        let mut shadow = Shadow::of(to);
        let data = random_bytes(&mut rng, 4096);
        let off = rng.gen_range(0..to.mirror_window().len() / 4096) * 4096;
        let e = host.entry(Opcode::Log, &data, off);
        let done = run_entries(from, &[e]);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].cookie, e.cookie);
        assert_eq!(done[0].status, CompletionStatus::Ok, "{}", describe(from));
        assert_eq!(done[0].opcode, Opcode::Log);
        assert!(done[0].sequence >= 1);
        assert_eq!(to.mirror_window().read_vec(off, 4096).expect("read"), data, "bytes in the partner's window");
        shadow.apply(off, &data);
        shadow.assert_matches(to, "single entry");
        let mut extra = Vec::new();
        assert_eq!(from.poll_completions(&mut extra, 10).expect("poll"), 0, "exactly one completion");
    }
}

/// Many entries of mixed sizes (1 byte to MAX_PAYLOAD), log and page opcodes, random
/// offsets: all complete `Ok`, in order, once each; the partner's window equals what was
/// posted, later writes to the same bytes winning.
pub fn many_entries(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let mut rng = SmallRng::seed_from_u64(seed);
    mirror_random(&*pair.a, &*pair.b, &mut rng, 300, MAX_PAYLOAD);
    mirror_random(&*pair.b, &*pair.a, &mut rng, 60, MAX_PAYLOAD);
}

/// Many small entries posted before any completion is awaited, in both directions at
/// once: all complete in order and land.
pub fn pipelined(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let (a, b) = (&*pair.a, &*pair.b);
    std::thread::scope(|s| {
        for (i, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed ^ i as u64);
                let mut host = Host::new(from);
                let mut shadow = Shadow::of(to);
                let n = 3000;
                let mut entries = Vec::with_capacity(n);
                let mut datas = Vec::with_capacity(n);
                for k in 0..n {
                    let data = random_bytes(&mut rng, 64);
                    let off = (k as u64 * 64) % (to.mirror_window().len() - 64);
                    entries.push(host.entry(Opcode::Log, &data, off));
                    datas.push(data);
                }
                let done = run_entries(from, &entries);
                assert_in_order(&entries, &done);
                assert_all_ok(&done, from);
                for (e, d) in entries.iter().zip(&datas) {
                    shadow.apply(e.window_offset, d);
                }
                shadow.assert_matches(to, "pipelined");
            });
        }
    });
}

/// Entries the engine must reject before sending (too long, host range outside the host
/// region, a barrier with a length) complete with their error status, in order among
/// good entries, and nothing is sent for them.
pub fn local_validation(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let (a, b) = (&*pair.a, &*pair.b);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut host = Host::new(a);
    let mut shadow = Shadow::of(b);
    let hr = a.host_region();
    let base = hr.dma_base();
    let good = |host: &mut Host, rng: &mut SmallRng, off: u64| {
        let d = random_bytes(rng, 512);
        (host.entry(Opcode::Log, &d, off), Some(d))
    };
    let bad = |host: &mut Host, opcode: Opcode, host_addr: u64, length: u32, window_offset: u64| {
        let cookie = host.cookie();
        (SubmissionEntry { opcode, service_tag: 1, host_addr, window_offset, length, cookie }, None)
    };
    let list: Vec<(SubmissionEntry, Option<Vec<u8>>)> = vec![
        good(&mut host, &mut rng, 0),
        bad(&mut host, Opcode::Log, base, MAX_PAYLOAD as u32 + 1, 8192),
        good(&mut host, &mut rng, 1024),
        bad(&mut host, Opcode::Page, base + hr.len() - 16, 32, 16384),
        bad(&mut host, Opcode::Barrier, base, 8, 0),
        bad(&mut host, Opcode::Log, base.wrapping_sub(4096), 16, 20480),
        bad(&mut host, Opcode::Log, u64::MAX - 8, 16, 24576),
        good(&mut host, &mut rng, 2048),
    ];
    let expected = [
        CompletionStatus::Ok,
        CompletionStatus::TooLong,
        CompletionStatus::Ok,
        CompletionStatus::HostBounds,
        CompletionStatus::BadOpcode,
        CompletionStatus::HostBounds,
        CompletionStatus::HostBounds,
        CompletionStatus::Ok,
    ];
    let entries: Vec<_> = list.iter().map(|(e, _)| *e).collect();
    let (ca, cb) = (a.counters(), b.counters());
    let done = run_entries(a, &entries);
    assert_in_order(&entries, &done);
    for (i, (c, want)) in done.iter().zip(expected).enumerate() {
        assert_eq!(c.status, want, "entry {i}");
        if want != CompletionStatus::Ok {
            assert_eq!(c.sequence, 0, "entry {i} was rejected locally, so it was never sent");
        }
    }
    let (ca2, cb2) = (a.counters(), b.counters());
    assert_eq!(delta(&ca2, &ca, Counter::LocalRejects), 5, "LocalRejects");
    assert_eq!(delta(&ca2, &ca, Counter::DataTx), 3, "only the good entries were sent");
    assert_eq!(delta(&cb2, &cb, Counter::DataRx), 3, "the partner received only the good entries");
    for (e, d) in &list {
        if let Some(d) = d {
            shadow.apply(e.window_offset, d);
        }
    }
    shadow.assert_matches(b, "after local rejects");
}

/// Entries outside the partner's window (past the end, straddling the end, offset+length
/// overflowing u64) complete `RemoteBounds`, in order, and write nothing.
pub fn remote_bounds(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let (a, b) = (&*pair.a, &*pair.b);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut host = Host::new(a);
    let mut shadow = Shadow::of(b);
    let wlen = b.mirror_window().len();
    let d = |rng: &mut SmallRng| random_bytes(rng, 64);
    let specs: Vec<(u64, bool)> =
        vec![(0, true), (wlen, false), (4096, true), (wlen - 32, false), (u64::MAX - 16, false), (wlen - 64, true), (u64::MAX, false)];
    let mut entries = Vec::new();
    let mut datas = Vec::new();
    for (off, _) in &specs {
        let data = d(&mut rng);
        entries.push(host.entry(Opcode::Page, &data, *off));
        datas.push(data);
    }
    let cb = b.counters();
    let done = run_entries(a, &entries);
    assert_in_order(&entries, &done);
    for (i, ((off, ok), c)) in specs.iter().zip(&done).enumerate() {
        let want = if *ok { CompletionStatus::Ok } else { CompletionStatus::RemoteBounds };
        assert_eq!(c.status, want, "entry {i} at window offset {off:#x}");
        assert!(c.sequence >= 1, "entry {i} was sent");
    }
    let cb2 = b.counters();
    assert!(delta(&cb2, &cb, Counter::BoundsRejects) >= 4, "BoundsRejects on the partner (a frame sent again is rejected again)");
    for ((off, ok), data) in specs.iter().zip(&datas) {
        if *ok {
            shadow.apply(*off, data);
        }
    }
    shadow.assert_matches(b, "after remote-bounds entries");
}

/// A barrier completes `Ok` after every earlier entry, with a later sequence number, and
/// the earlier entries are in the partner's window when it does.
pub fn barrier_after_earlier_entries(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let (a, b) = (&*pair.a, &*pair.b);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut host = Host::new(a);
    let mut shadow = Shadow::of(b);
    let mut entries = Vec::new();
    for k in 0..20u64 {
        let data = random_bytes(&mut rng, 4096);
        entries.push(host.entry(Opcode::Page, &data, k * 4096));
        shadow.apply(k * 4096, &data);
    }
    let c = host.cookie();
    entries.push(SubmissionEntry::barrier(c));
    let data = random_bytes(&mut rng, 100);
    entries.push(host.entry(Opcode::Log, &data, 200_000));
    let mut got = Vec::new();
    a.post_all(&entries, &mut got, WAIT).expect("post_all");
    // Wait for the barrier's completion alone, then look at the window.
    let done = collect(a, got, 21);
    assert_in_order(&entries[..21], &done);
    assert_all_ok(&done, a);
    assert_eq!(done[20].opcode, Opcode::Barrier);
    // The entry after the barrier may already have landed; the earlier ones must have.
    let earlier = b.mirror_window().read_vec(0, 20 * 4096).expect("read");
    assert!(earlier == shadow.0[..20 * 4096], "entries before the barrier are in the window when it completes");
    let done = collect(a, done, 22);
    assert_in_order(&entries, &done);
    assert_all_ok(&done, a);
    shadow.apply(200_000, &data);
    shadow.assert_matches(b, "after the barrier and the entry behind it");
}

/// `post` takes no more than the ring holds, and `post_all` gets a long list through a
/// full ring.
pub fn ring_full_back_pressure(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let (a, b) = (&*pair.a, &*pair.b);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut host = Host::new(a);
    let mut shadow = Shadow::of(b);
    let depth = a.info().ring_depth as usize;
    assert!(depth >= 1);
    let data = random_bytes(&mut rng, 64);
    let mk = |host: &mut Host, k: usize| host.entry(Opcode::Log, &data, (k as u64 * 64) % (MIN_WINDOW - 64));
    let first: Vec<_> = (0..depth + 10).map(|k| mk(&mut host, k)).collect();
    // Without a doorbell nothing can complete, so the ring fills exactly.
    let taken = a.post(&first).expect("post");
    assert_eq!(taken, depth, "post takes exactly the ring depth when the ring is empty");
    assert_eq!(a.post(&first[taken..]).expect("post"), 0, "a full ring takes nothing");
    a.ring_doorbell().expect("doorbell");
    let done = collect(a, Vec::new(), depth);
    assert_in_order(&first[..depth], &done);
    assert_all_ok(&done, a);
    host.reset();
    let n = (3 * depth).min(20_000);
    let second: Vec<_> = (0..n).map(|k| mk(&mut host, k)).collect();
    let done = run_entries(a, &second);
    assert_in_order(&second, &done);
    assert_all_ok(&done, a);
    for e in first[..depth].iter().chain(&second) {
        shadow.apply(e.window_offset, &data);
    }
    shadow.assert_matches(b, "after back-pressure");
}

/// The link is cut several times mid-stream: every entry still completes `Ok` once, in
/// order, and the data is right.
pub fn link_cut_recovery(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let link = pair.link.as_ref().expect("link_cut_recovery needs a pair with link control (Pair::link)");
    let (a, b) = (&*pair.a, &*pair.b);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut host = Host::new(a);
    let mut shadow = Shadow::of(b);
    let resets = a.counters().get(Counter::LinkResets);
    let mut all = Vec::new();
    let mut datas = Vec::new();
    let mut got = Vec::new();
    for _round in 0..4 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let len = rng.gen_range(1..=16384);
            let data = random_bytes(&mut rng, len);
            let off = rng.gen_range(0..=MIN_WINDOW - len as u64);
            batch.push(host.entry(Opcode::Log, &data, off));
            datas.push(data);
        }
        a.post_all(&batch, &mut got, WAIT).expect("post_all");
        all.extend(batch);
        link.cut();
        // Let some of it through before the next cut.
        let want = (got.len() + 20).min(all.len());
        got = collect(a, got, want);
    }
    let done = collect(a, got, all.len());
    assert_in_order(&all, &done);
    assert_all_ok(&done, a);
    for (e, d) in all.iter().zip(&datas) {
        shadow.apply(e.window_offset, d);
    }
    shadow.assert_matches(b, "after link cuts");
    let deadline = Instant::now() + WAIT;
    while a.link_state() != LinkState::Up {
        assert!(Instant::now() < deadline, "link did not come back up; {}", describe(a));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(a.counters().get(Counter::LinkResets) > resets, "LinkResets counts the reconnections");
}

/// B is shut down and recreated over the same persistent window while A has entries in
/// flight: every entry completes `Ok`, the data is intact, and the new B mirrors back.
pub fn partner_restart(factory: &dyn PairFactory, seed: u64) {
    let mut pair = factory.pair(seed);
    assert!(pair.restart_b.is_some(), "partner_restart needs a pair that can restart B (Pair::restart_b)");
    assert!(pair.b.mirror_window().is_persistent(), "partner_restart needs B's window to be persistent");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut shadow = Shadow::of(&*pair.b);
    let mut entries = Vec::new();
    let mut datas = Vec::new();
    {
        let mut host = Host::new(&*pair.a);
        for _ in 0..300 {
            let len = rng.gen_range(1..=8192);
            let data = random_bytes(&mut rng, len);
            let off = rng.gen_range(0..=MIN_WINDOW - len as u64);
            entries.push(host.entry(Opcode::Page, &data, off));
            datas.push(data);
        }
    }
    let mut got = Vec::new();
    pair.a.post_all(&entries, &mut got, WAIT).expect("post_all");
    got = collect(&*pair.a, got, 10);
    pair.b.shutdown();
    let restart = pair.restart_b.as_mut().expect("checked above");
    pair.b = restart().expect("restart B");
    let done = collect(&*pair.a, got, entries.len());
    assert_in_order(&entries, &done);
    assert_all_ok(&done, &*pair.a);
    for (e, d) in entries.iter().zip(&datas) {
        shadow.apply(e.window_offset, d);
    }
    shadow.assert_matches(&*pair.b, "after B restarted");
    // The new B (a new session) mirrors into A.
    let mut host = Host::new(&*pair.b);
    let mut back = Shadow::of(&*pair.a);
    let data = random_bytes(&mut rng, 3000);
    let e = host.entry(Opcode::Log, &data, 777);
    let done = run_entries(&*pair.b, &[e]);
    assert_all_ok(&done, &*pair.b);
    back.apply(777, &data);
    back.assert_matches(&*pair.a, "mirrored by the restarted B");
}

/// Counters agree with what happened: local rejects, data sent and received, bounds
/// rejects, ACK/NACK and heartbeat traffic.
pub fn counters_agree(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let (a, b) = (&*pair.a, &*pair.b);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut host = Host::new(a);
    let wlen = b.mirror_window().len();
    let (ca, cb) = (a.counters(), b.counters());
    let mut entries = Vec::new();
    let (mut ok, mut remote, mut local) = (0u64, 0u64, 0u64);
    for k in 0..60u64 {
        let data = random_bytes(&mut rng, 256);
        match k % 12 {
            3 => {
                entries.push(host.entry(Opcode::Log, &data, wlen + k));
                remote += 1;
            }
            7 => {
                let c = host.cookie();
                entries.push(SubmissionEntry {
                    opcode: Opcode::Log,
                    service_tag: 0,
                    host_addr: 0,
                    window_offset: 0,
                    length: u32::MAX,
                    cookie: c,
                });
                local += 1;
            }
            _ => {
                entries.push(host.entry(Opcode::Log, &data, k * 256));
                ok += 1;
            }
        }
    }
    entries.push(SubmissionEntry::barrier(host.cookie()));
    ok += 1;
    let done = run_entries(a, &entries);
    assert_in_order(&entries, &done);
    let count = |s: CompletionStatus| done.iter().filter(|c| c.status == s).count() as u64;
    assert_eq!((count(CompletionStatus::Ok), count(CompletionStatus::RemoteBounds), count(CompletionStatus::TooLong)), (ok, remote, local));
    let (ca2, cb2) = (a.counters(), b.counters());
    let d = |after: &CounterSnapshot, before: &CounterSnapshot, c| delta(after, before, c);
    assert_eq!(d(&ca2, &ca, Counter::LocalRejects), local, "A LocalRejects");
    assert_eq!(d(&ca2, &ca, Counter::DataTx), ok + remote, "A DataTx: every sent entry once");
    assert!(d(&ca2, &ca, Counter::FramesTx) >= ok + remote, "A FramesTx covers every data frame");
    assert!(d(&ca2, &ca, Counter::AcksRx) >= 1, "A AcksRx");
    assert!(d(&ca2, &ca, Counter::NacksRx) >= remote, "A NacksRx: one Bounds NACK per remote reject at least");
    // A rejected frame sent again before its NACK arrived (timeout) is rejected again.
    assert!(d(&cb2, &cb, Counter::BoundsRejects) >= remote, "B BoundsRejects");
    assert_eq!(
        d(&cb2, &cb, Counter::DataRx),
        ok + remote,
        "B DataRx: first copies taken (barriers included, one in place of each rejected frame)"
    );
    assert!(d(&cb2, &cb, Counter::NacksTx) >= remote, "B NacksTx");
    assert!(d(&cb2, &cb, Counter::FramesRx) >= ok + remote, "B FramesRx");
    // Heartbeats run on their own timer (simulated time for the RTL), so on a loaded
    // machine the first one may still be on its way: wait for it, bounded.
    let deadline = Instant::now() + WAIT;
    while b.counters().get(Counter::HeartbeatsRx) == 0 {
        assert!(Instant::now() < deadline, "B received no heartbeat from A in {WAIT:?}; {}", describe(b));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Shutdown with entries outstanding completes every one `Aborted` (in order, once),
/// returns promptly, and the engine refuses new work afterwards.
pub fn shutdown_aborts_outstanding(factory: &dyn PairFactory, seed: u64) {
    let pair = factory.pair(seed);
    let (a, b) = (&*pair.a, &*pair.b);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut host = Host::new(a);
    // With B gone nothing can be acknowledged.
    b.shutdown();
    let mut entries = Vec::new();
    for k in 0..50u64 {
        let data = random_bytes(&mut rng, 1000);
        entries.push(host.entry(Opcode::Log, &data, k * 1024));
    }
    assert_eq!(a.post(&entries[..40]).expect("post"), 40);
    a.ring_doorbell().expect("doorbell");
    // Posted without a doorbell: outstanding too.
    assert_eq!(a.post(&entries[40..]).expect("post"), 10);
    let t = Instant::now();
    a.shutdown();
    assert!(t.elapsed() < Duration::from_secs(10), "shutdown took {:?}", t.elapsed());
    let mut done = Vec::new();
    a.poll_completions(&mut done, usize::MAX).expect("poll after shutdown");
    assert_in_order(&entries, &done);
    for (i, c) in done.iter().enumerate() {
        assert_eq!(c.status, CompletionStatus::Aborted, "entry {i}");
    }
    for c in &done[40..] {
        assert_eq!(c.sequence, 0, "never doorbelled, never sent");
    }
    assert!(matches!(a.post(&entries[..1]), Err(EngineError::Shutdown)), "post after shutdown");
    assert!(matches!(a.ring_doorbell(), Err(EngineError::Shutdown)), "doorbell after shutdown");
    let t = Instant::now();
    let r = a.wait_completions(Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(1) && !matches!(r, Ok(true)), "wait after shutdown returns at once: {r:?}");
    assert_eq!(a.link_state(), LinkState::Down);
    a.shutdown();
}
