//! One module per `cargo xtask` command.

pub mod bench;
pub mod lint;
pub mod new_plugin;

use std::process::Command;

use anyhow::{Context, bail};

/// The cargo that runs us (so `cargo +toolchain xtask` stays on that toolchain).
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a command to completion, echoing it; fails on a non-zero exit.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    // `cargo run` gave us the package variables of xtask itself; some build scripts (ring's)
    // rerun when `CARGO_MANIFEST_DIR` differs, so passing it on would rebuild the TLS stack
    // and everything above it whenever a plain `cargo build` ran in between.
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n == "CARGO_MANIFEST_DIR" || n.starts_with("CARGO_PKG_"))
        {
            cmd.env_remove(name);
        }
    }
    let status = cmd
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed: {status}", args.join(" "));
    }
    Ok(())
}
