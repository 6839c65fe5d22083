//! `tandem bench --engine sim`: mirrored appends through the sim backend (the Verilated
//! RTL engine), beside the soft engine measured in the same run.
//!
//! Two sim engines run in this process, joined by an in-process wire, each clocked by its
//! own simulation thread; `MirroredLog` runs on engine A exactly as in a node. Figures:
//! - simulated cycles per entry: engine A's clock advance over the run divided by the
//!   entries. It includes the host's own time between entries (the model keeps clocking
//!   while the runtime builds the next record), so it is an upper bound on the RTL's cost;
//!   the RTL alone is measured cycle-exactly by `tandem-sim-tb`'s `engine performance`
//!   test.
//! - wall-clock cycles per second: how fast the simulation runs on this machine.
//! - the soft engine's lone-append latency and pipelined append rate, same sizes, same
//!   run, for comparison.

use crate::bench::{bench_geometry, mirrored_latency, mirrored_throughput, soft_pair, MirroredPair};
use std::sync::Arc;
use std::time::Instant;
use tandem_drivers::MemRegion;
use tandem_sim_engine::{SimConfig, SimEngine, SimWire};

const SIZES: [usize; 2] = [64, 4096];
const WIDTHS: [usize; 2] = [64, 512];

struct SimPair {
    pair: MirroredPair,
    a: Arc<SimEngine>,
}

fn sim_pair(width: usize) -> anyhow::Result<SimPair> {
    let geo = bench_geometry()?;
    let wire = SimWire::new();
    let engine = |end, host_base, name: &str| -> anyhow::Result<Arc<SimEngine>> {
        let mut c = SimConfig::new(MemRegion::anonymous(geo.window_size, host_base)?, MemRegion::anonymous(geo.window_size, 0)?, end);
        c.width = width;
        c.name = name.into();
        Ok(Arc::new(SimEngine::start(c)?))
    };
    let a = engine(wire.end(0), 0x1_0000_0000, "bench-a")?;
    let b = engine(wire.end(1), 0x2_0000_0000, "bench-b")?;
    let pair = MirroredPair::new(a.clone(), b)?;
    Ok(SimPair { pair, a })
}

/// One row of the sim table.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SimRow {
    /// Datapath width, bits.
    pub width: usize,
    /// Payload bytes per entry.
    pub size: usize,
    /// Lone appends: simulated cycles per entry.
    pub lone_cycles: f64,
    /// Lone appends: wall-clock median, µs.
    pub lone_p50_us: f64,
    /// Pipelined appends: simulated cycles per entry.
    pub pipelined_cycles: f64,
    /// Pipelined appends per wall-clock second.
    pub pipelined_rate: f64,
    /// Simulated cycles per wall-clock second during the pipelined run.
    pub cycles_per_sec: f64,
}

fn measure(p: &SimPair, width: usize, size: usize, quick: bool) -> anyhow::Result<SimRow> {
    let scale = if quick { 4 } else { 1 };
    let lone = 400 / scale;
    let c0 = p.a.cycles();
    let lat = mirrored_latency(&p.pair, size, lone)?;
    // mirrored_latency runs a tenth more as warm-up.
    let lone_cycles = (p.a.cycles() - c0) as f64 / (lone + lone / 10) as f64;
    let count = (if size <= 64 { 4_000 } else { 2_000 }) / scale;
    let c0 = p.a.cycles();
    let t = Instant::now();
    let (rate, _) = mirrored_throughput(&p.pair, size, (count * size) as u64, 64, 256)?;
    let secs = t.elapsed().as_secs_f64();
    let cycles = (p.a.cycles() - c0) as f64;
    Ok(SimRow {
        width,
        size,
        lone_cycles,
        lone_p50_us: lat.p50,
        pipelined_cycles: cycles / count as f64,
        pipelined_rate: rate,
        cycles_per_sec: cycles / secs,
    })
}

/// Runs the sim figures and the soft ones beside them, and prints both tables.
pub fn run(quick: bool) -> anyhow::Result<Vec<SimRow>> {
    println!(
        "tandem bench --engine sim: mirrored appends through the Verilated RTL engine, {}",
        if quick { "quick run" } else { "full run" }
    );
    println!("(two sim engines in this process joined by an in-process wire; cycles are engine A's simulated clock at 250 MHz)");
    println!();
    println!(
        "{:>5} | {:>6} | {:>17} | {:>13} | {:>17} | {:>12} | {:>13}",
        "width", "size", "lone cycles/entry", "lone p50 us", "piped cycles/entry", "piped apps/s", "sim cycles/s"
    );
    let mut rows = Vec::new();
    for width in WIDTHS {
        let p = sim_pair(width)?;
        for size in SIZES {
            let r = measure(&p, width, size, quick)?;
            println!(
                "{:>5} | {:>6} | {:>17.0} | {:>13.1} | {:>18.0} | {:>12.0} | {:>13.0}",
                r.width, r.size, r.lone_cycles, r.lone_p50_us, r.pipelined_cycles, r.pipelined_rate, r.cycles_per_sec
            );
            rows.push(r);
        }
    }
    println!();
    println!("soft engine, same run:");
    println!("{:>6} | {:>13} | {:>12} | {:>22}", "size", "lone p50 us", "piped apps/s", "sim (512) / soft rate");
    let soft = soft_pair()?;
    let scale = if quick { 4 } else { 1 };
    for size in SIZES {
        let lat = mirrored_latency(&soft, size, 2_000 / scale)?;
        let count = 20_000 / scale;
        let (rate, _) = mirrored_throughput(&soft, size, (count * size) as u64, 64, 256)?;
        let sim512 = rows.iter().find(|r| r.width == 512 && r.size == size).map_or(0.0, |r| r.pipelined_rate);
        println!("{:>6} | {:>13.1} | {:>12.0} | {:>21.4}x", size, lat.p50, rate, sim512 / rate);
    }
    Ok(rows)
}
