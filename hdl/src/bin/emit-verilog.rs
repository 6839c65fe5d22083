//! Writes generated Verilog (module `top`):
//! `emit-verilog <64|512> <out.v>` for the link datapath, or
//! `emit-verilog regs <64|512> <out.v>` for the register file, or
//! `emit-verilog engine <64|512> <out.v> [module]` for the whole engine (`EngineTop`;
//! with `module`, the top module and its submodules are renamed from `top`). The ID
//! block takes its build stamp from the environment: `TANDEM_BUILD_REV` (8 hex digits of
//! the source revision), `TANDEM_BUILD_DATE` (YYYYMMDD) and `TANDEM_CLOCK_KHZ`; unset,
//! they are 0, 19700101 and 250000.

use std::process::ExitCode;
use tandem_hdl::axil_regs::BuildId;

fn env_num(name: &str, radix: u32, default: u32) -> Result<u32, String> {
    match std::env::var(name) {
        Ok(v) => u32::from_str_radix(v.trim(), radix).map_err(|e| format!("{name}={v:?}: {e}")),
        Err(_) => Ok(default),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let regs = args.get(1).map(String::as_str) == Some("regs");
    let engine = args.get(1).map(String::as_str) == Some("engine");
    let rest = if regs || engine { &args[2..] } else { &args[1..] };
    let (Some(width), Some(out)) = (rest.first().and_then(|w| w.parse::<usize>().ok()), rest.get(1)) else {
        eprintln!("usage: emit-verilog [regs|engine] <64|512> <out.v> [module, engine only]");
        return ExitCode::from(2);
    };
    if !tandem_hdl::WIDTHS.contains(&width) {
        eprintln!("emit-verilog: width {width} is not one of {:?}", tandem_hdl::WIDTHS);
        return ExitCode::from(2);
    }
    let verilog = if regs || engine {
        let build = (|| -> Result<BuildId, String> {
            Ok(BuildId {
                revision: env_num("TANDEM_BUILD_REV", 16, 0)?,
                date: env_num("TANDEM_BUILD_DATE", 10, 19_700_101)?,
                clock_khz: env_num("TANDEM_CLOCK_KHZ", 10, 250_000)?,
                datapath_bits: width as u32,
            })
        })();
        match build {
            Ok(b) if engine => tandem_hdl::engine_verilog(b),
            Ok(b) => tandem_hdl::regs_verilog(b),
            Err(e) => {
                eprintln!("emit-verilog: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        tandem_hdl::link_verilog(width)
    };
    let verilog = match rest.get(2) {
        Some(name) if engine => verilog.replace("module top(", &format!("module {name}(")).replace("top$", &format!("{name}$")),
        _ => verilog,
    };
    match std::fs::write(out, verilog) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emit-verilog: cannot write {out}: {e}");
            ExitCode::FAILURE
        }
    }
}
