//! `cargo xtask <command>`: project automation that needs more than one cargo call.
//!
//! One module per command under `commands/`: `lint` (format, clippy, tests), `bench`
//! (the end-to-end benchmark, `commands/bench/`) and `new-plugin` (a plugin crate to start
//! from).

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
    /// Scaffolds a plugin crate under plugins/NAME (settings, a route, its policy, a test)
    /// and adds it to the workspace.
    NewPlugin(commands::new_plugin::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Lint => commands::lint::run(),
        Cmd::Bench(args) => commands::bench::run(args),
        Cmd::NewPlugin(args) => commands::new_plugin::run(args),
    }
}
