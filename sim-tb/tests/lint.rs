//! The generated Verilog passes `verilator --lint-only -Wall` with only the waivers in
//! sim-tb/verilator/waivers.vlt (each names the rust-hdl output pattern it covers).

use std::process::Command;

fn lint(path: &str) {
    let waivers = concat!(env!("CARGO_MANIFEST_DIR"), "/verilator/waivers.vlt");
    let out =
        Command::new("verilator").args(["--lint-only", "-Wall", "--top-module", "top", waivers, path]).output().expect("verilator runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("%Warning"), "lint of {path}:\n{stderr}");
}

#[test]
fn generated_verilog_is_lint_clean_at_64_bits() {
    lint(tandem_sim_tb::LINK64_VERILOG);
}

#[test]
fn generated_verilog_is_lint_clean_at_512_bits() {
    lint(tandem_sim_tb::LINK512_VERILOG);
}
