//! `cargo xtask <command>`: project automation that needs more than one cargo call.
//!
//! One module per command under `commands/`: `lint` (format, clippy, tests) and `bench`
//! (the end-to-end benchmark, `commands/bench/`).

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything a change must pass before it lands: format, lints, the whole test suite.
    Lint,
    /// Builds release, starts Redis and Larder, drives load and writes a report with charts.
    Bench(commands::bench::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Lint => commands::lint::run(),
        Cmd::Bench(args) => commands::bench::run(args),
    }
}
