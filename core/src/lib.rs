//! # Larder
//!
//! A policy-driven cache in front of API routes, hosting domain plugins.
//!
//! ## Layout
//! - [`cli`]: the `larder` command (`serve`, `check`, `openapi`).
//! - [`config`]: the config file, embedded defaults and `LARDER_*` overrides.
//! - [`diagnostics`]: `file:line:col` errors with hints for everything users write.
//! - [`plugins`]: built-in plugin registry and the dynamic (`cdylib`) loader.
//! - [`openapi`]: merges every plugin's API into one document and one route table.
//! - [`server`]: builds the app (plugins, admin, docs) and serves it with graceful shutdown.
//! - [`admin`]: the `/admin` API and its key-based auth.
//! - [`host`]: the services plugins reach through their context.
//! - [`telemetry`]: logging set-up.
//! - [`otel`]: OpenTelemetry trace export (OTLP/HTTP) and W3C trace-context propagation.
//!
//! ## A request's path
//! The router (one table for every plugin, built by [`openapi::merge`]) picks the plugin
//! endpoint; a span wraps the request so plugin logs land inside it; the endpoint runs
//! guarded, so a plugin panic answers 500 and the server lives on.

pub mod admin;
pub mod cli;
pub mod compression;
pub mod config;
pub mod diagnostics;
pub mod engine;
pub mod host;
pub mod lane;
pub mod layer;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod otel;
pub mod plugins;
pub mod reload;
pub mod report;
pub mod server;
pub mod telemetry;
pub mod warming;
