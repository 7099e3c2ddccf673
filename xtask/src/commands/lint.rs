//! `cargo xtask lint`: format check, clippy with warnings denied, the whole test suite.

use super::{cargo, run as exec};

/// Runs the checks a change must pass.
pub fn run() -> anyhow::Result<()> {
    let cargo = cargo();
    exec(&cargo, &["fmt", "--all", "--", "--check"])?;
    exec(
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    exec(&cargo, &["nextest", "run", "--workspace"])
}
