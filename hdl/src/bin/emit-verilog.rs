//! Writes the generated Verilog of the link datapath: `emit-verilog <64|512> <out.v>`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(width), Some(out)) = (args.get(1).and_then(|w| w.parse::<usize>().ok()), args.get(2)) else {
        eprintln!("usage: emit-verilog <64|512> <out.v>");
        return ExitCode::from(2);
    };
    if !tandem_hdl::WIDTHS.contains(&width) {
        eprintln!("emit-verilog: width {width} is not one of {:?}", tandem_hdl::WIDTHS);
        return ExitCode::from(2);
    }
    match std::fs::write(out, tandem_hdl::link_verilog(width)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emit-verilog: cannot write {out}: {e}");
            ExitCode::FAILURE
        }
    }
}
