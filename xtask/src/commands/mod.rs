//! One module per `cargo xtask` command.

pub mod bench;
pub mod lint;

use std::process::Command;

use anyhow::{Context, bail};

/// The cargo that runs us (so `cargo +toolchain xtask` stays on that toolchain).
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a command to completion, echoing it; fails on a non-zero exit.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed: {status}", args.join(" "));
    }
    Ok(())
}
