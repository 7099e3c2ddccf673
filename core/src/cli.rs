//! The `larder` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LoadedConfig;
use crate::diagnostics::Diagnostics;
use crate::plugins::PluginRegistry;
use crate::server::{self, App, StartError};
use crate::telemetry;

/// Larder: a policy-driven cache in front of API routes.
#[derive(Parser, Debug)]
#[command(name = "larder", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (embedded defaults when no config is given).
    Serve {
        /// Config file (YAML).
        #[arg(long, env = "LARDER_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:8080 (overrides the config and LARDER_LISTEN).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Validate a config file: every error with file:line:col; non-zero exit on any error.
    Check {
        /// Config file (YAML).
        #[arg(long, env = "LARDER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the merged OpenAPI document of every enabled plugin.
    Openapi {
        /// Config file (YAML).
        #[arg(long, env = "LARDER_CONFIG")]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Json,
    Yaml,
}

fn load(config: Option<&PathBuf>) -> Result<LoadedConfig, Diagnostics> {
    match config {
        Some(path) => LoadedConfig::load(path),
        None => LoadedConfig::defaults(),
    }
}

fn report(e: &StartError) -> ExitCode {
    eprintln!("{e}");
    match e {
        StartError::Invalid(d) => eprintln!("\n{} error(s); larder did not start", d.0.len()),
        StartError::Policy(d) => eprintln!("\n{} error(s); larder did not start", d.len()),
        _ => eprintln!("larder did not start"),
    }
    ExitCode::from(2)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Entry point of the `larder` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let registry = PluginRegistry::builtin();
    match cli.command {
        Command::Serve { config, listen } => {
            let mut loaded = match load(config.as_ref()) {
                Ok(c) => c,
                Err(d) => return report(&StartError::Invalid(d)),
            };
            if let Some(listen) = listen {
                loaded.config.listen = listen;
            }
            telemetry::init(&loaded.config.telemetry);
            match runtime().block_on(server::serve(loaded, &registry)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => report(&e),
            }
        }
        Command::Check { config } => {
            let loaded = match load(config.as_ref()) {
                Ok(c) => c,
                Err(d) => {
                    eprintln!("{d}");
                    return ExitCode::FAILURE;
                }
            };
            let name = loaded.file_name();
            let mut problems = loaded.check();
            let rt = runtime();
            if let Err(Diagnostics(mut more)) =
                rt.block_on(async { crate::plugins::resolve(&loaded, &registry).map(drop) })
            {
                problems.append(&mut more);
            }
            if problems.is_empty() {
                println!("{name}: ok");
                ExitCode::SUCCESS
            } else {
                eprintln!("{}", Diagnostics(problems.clone()));
                eprintln!("\n{} error(s)", problems.len());
                ExitCode::FAILURE
            }
        }
        Command::Openapi { config, format } => {
            let loaded = match load(config.as_ref()) {
                Ok(c) => c,
                Err(d) => return report(&StartError::Invalid(d)),
            };
            match runtime().block_on(App::build(loaded, &registry)) {
                Ok((app, _)) => {
                    match format {
                        Format::Json => println!("{}", app.openapi_json),
                        Format::Yaml => print!("{}", app.openapi_yaml),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e),
            }
        }
    }
}
