//! The `tandem` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tandem::config::Config;
use tandem::control::{self, Request};
use tandem::node::Node;

/// Tandem: an HA mirroring data plane for storage controller pairs.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a two-node pair on loopback, kill -9 the primary mid-workload, replay on the
    /// partner and verify every acknowledged write.
    Demo {
        /// Engine backend for both nodes: soft, or sim (the Verilated RTL engine; needs a
        /// tandem built with `--features sim`).
        #[arg(long, default_value = "soft")]
        engine: String,
        /// The partner's engine when it differs from the primary's (a mixed pair, e.g.
        /// `--engine sim --partner-engine soft`).
        #[arg(long)]
        partner_engine: Option<String>,
        /// Kill the primary after this many acknowledged writes [default: 20000, 2000 when
        /// either node runs the sim engine].
        #[arg(long)]
        kill_after: Option<u64>,
        /// Writer threads on the primary.
        #[arg(long, default_value_t = 4)]
        threads: u64,
        /// Keep the nodes' files in this directory instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Run the HA pair demo instead: NBD client, kill -9 of the serving node,
        /// takeover at the same address, giveback.
        #[arg(long)]
        ha: bool,
        /// Run the HA pair across network namespaces instead (root): mediator, nodes and
        /// client each in their own namespace; the service's address moves with it.
        #[arg(long)]
        netns: bool,
    },
    /// Run one node from a TOML configuration (see examples/).
    Node {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Run the verification workload with this many writes, printing JSON lines.
        #[arg(long, hide = true)]
        demo_workload: Option<u64>,
        #[arg(long, hide = true, default_value_t = 4)]
        workload_threads: u64,
        #[arg(long, hide = true, default_value_t = 512)]
        workload_blocks: u64,
    },
    /// Check a configuration file and print what it means.
    CheckConfig {
        /// Configuration file.
        config: PathBuf,
    },
    /// Show a node's state.
    Status {
        /// The node's control socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Run a consistency point on a node now.
    Checkpoint {
        /// The node's control socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Replay the partner's log from a node's mirror window onto the partner's image.
    ReplayPartner {
        /// The node's control socket.
        #[arg(long)]
        socket: PathBuf,
        /// Replay even though the mirror link is up.
        #[arg(long)]
        force: bool,
    },
    /// Ask a node to take over its partner's services (planned maintenance).
    Takeover {
        /// The node's control socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Ask a node to give its partner's services back.
    Giveback {
        /// The node's control socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Run the witness that grants service leases to HA nodes (UDP).
    Mediator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7800")]
        listen: String,
    },
    /// Write the configurations of an HA pair on loopback (free ports) into a directory and
    /// print the ports as shell assignments (used by scripts/bench-nbd).
    #[command(hide = true)]
    GenPairConfig {
        /// Directory for n0.toml, n1.toml and the nodes' files.
        #[arg(long)]
        dir: PathBuf,
        /// Auto-giveback delay, ms.
        #[arg(long)]
        auto_giveback_ms: Option<u64>,
    },
    /// Stop a node.
    Shutdown {
        /// The node's control socket.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Measure mirrored appends against raw TCP on loopback (see docs/PERFORMANCE.md).
    Bench {
        /// Fewer iterations (a smoke run).
        #[arg(long)]
        quick: bool,
        /// soft (against raw TCP), or sim (the Verilated RTL engine beside the soft one;
        /// needs a tandem built with `--features sim`).
        #[arg(long, default_value = "soft")]
        engine: String,
    },
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn ctl(socket: &std::path::Path, req: Request) -> anyhow::Result<()> {
    let v = control::request(socket, &req, Duration::from_secs(60))?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Demo { netns: true, .. } => {
            init_tracing("warn");
            if !tandem::demo_netns::run(None)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Demo { ha: true, .. } => {
            init_tracing("warn");
            if !tandem::demo_ha::run(None)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Demo { engine, partner_engine, kill_after, threads, keep, json, ha: false, netns: false } => {
            init_tracing("warn");
            let opts =
                tandem::demo::DemoOptions { engine, partner_engine, kill_after_acks: kill_after, threads, keep, ..Default::default() };
            let r = tandem::demo::run(&opts, |s| eprintln!("demo: {s}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("Tandem demo report");
                println!("  writes acknowledged        {}", r.acked);
                println!("  writes in flight at kill   {}", r.in_flight);
                println!("  mirrored append latency    p50 {:.1} us, p99 {:.1} us", r.p50_us, r.p99_us);
                println!("  entries replayed           {} (already on disk: {})", r.replay["applied"], r.replay["skipped"]);
                println!("  blocks verified            {}", r.blocks_checked);
                println!(
                    "  verification               {}",
                    if r.violations == 0 {
                        "PASS: every acknowledged write is on disk".to_string()
                    } else {
                        format!("FAIL: {} blocks wrong", r.violations)
                    }
                );
                println!("  elapsed                    {:.1} s", r.seconds);
            }
            if r.violations != 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Node { config, demo_workload, workload_threads, workload_blocks } => {
            init_tracing("info");
            let cfg = Config::load(&config)?;
            let ha = cfg.ha.is_some();
            let node = Node::start(cfg)?;
            let ha = if ha { Some(tandem::hanode::HaNode::start(node.clone())?) } else { None };
            if let Some(writes) = demo_workload {
                let out: Mutex<Box<dyn std::io::Write + Send>> = Mutex::new(Box::new(std::io::stdout()));
                let failed = node.run_workload(writes, workload_threads, workload_blocks, &out)?;
                if failed > 0 {
                    tracing::warn!("{failed} workload writes were not acknowledged");
                }
                node.shutdown();
                return Ok(());
            }
            node.run_until_stopped();
            if let Some(ha) = ha {
                ha.shutdown();
            }
            Ok(())
        }
        Cmd::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            let g = cfg.geometry()?;
            println!("{}: ok", config.display());
            println!("  node {} engine {} listen {} partner {}", cfg.node.name, cfg.engine.kind, cfg.engine.listen, cfg.engine.partner);
            println!("  window {} bytes: log {} bytes, {} pages of {} bytes", g.window_size, g.log_size, g.page_count, g.page_size);
            Ok(())
        }
        Cmd::Status { socket } => ctl(&socket, Request::Status),
        Cmd::Checkpoint { socket } => ctl(&socket, Request::Checkpoint),
        Cmd::ReplayPartner { socket, force } => ctl(&socket, Request::ReplayPartner { force }),
        Cmd::Shutdown { socket } => ctl(&socket, Request::Shutdown),
        Cmd::GenPairConfig { dir, auto_giveback_ms } => {
            std::fs::create_dir_all(&dir)?;
            let dir = dir.canonicalize()?;
            let ports = tandem::demo::PairPorts::pick()?;
            for id in 0..2u8 {
                std::fs::write(dir.join(format!("n{id}.toml")), tandem::demo::ha_node_config(&dir, id, &ports, auto_giveback_ms))?;
            }
            println!("WITNESS_PORT={} NBD1_PORT={} NBD2_PORT={}", ports.witness, ports.nbd[0], ports.nbd[1]);
            Ok(())
        }
        Cmd::Takeover { socket } => ctl(&socket, Request::Takeover),
        Cmd::Giveback { socket } => ctl(&socket, Request::Giveback),
        Cmd::Mediator { listen } => {
            init_tracing("info");
            tandem::ha::run_mediator(&listen)
        }
        Cmd::Bench { quick, engine } => {
            init_tracing("warn");
            match engine.as_str() {
                "soft" => tandem::bench::run(quick).context("benchmark"),
                #[cfg(feature = "sim")]
                "sim" => tandem::bench_sim::run(quick).map(drop).context("sim benchmark"),
                #[cfg(not(feature = "sim"))]
                "sim" => anyhow::bail!("--engine sim: this tandem was built without the sim backend: {}", tandem::engines::SIM_REBUILD),
                other => anyhow::bail!("--engine {other}: the benchmark runs \"soft\" or \"sim\""),
            }
        }
    }
}
