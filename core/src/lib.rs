//! # Larder's library (`larder-core`)
//!
//! A policy-driven cache in front of API routes, hosting domain plugins. The `larder`
//! binary (`server/`) is this library's command line with the built-in plugins registered;
//! the library itself knows no domain plugin.
//!
//! ## Layout
//! Folders follow the request's path; each depends only on the ones listed before it.
//! - [`config`]: the config file, embedded defaults, `LARDER_*` overrides, and the
//!   `file:line:col` diagnostics users read (`config::diagnostics`).
//! - [`telemetry`]: logging set-up, OpenTelemetry export and head sampling
//!   (`telemetry::otel`), the Prometheus recorder and per-route meters
//!   (`telemetry::metrics`).
//! - [`cache`]: the cache engine joined with the policies (`cache::engine`: routes bound
//!   to rules, reloads, purges, the audit log) and the lookup → origin → store sequence of
//!   one cache call, shared by HTTP routes and plugins' `get_or_load`.
//! - [`plugins`]: the registry of plugin kinds (filled by the binary), the dynamic
//!   (`cdylib`) loader, the services
//!   plugins reach through their context (`plugins::host`), and the merge of every API
//!   into one OpenAPI document and route table (`plugins::openapi`).
//! - [`http`]: the request pipeline (`http::pipeline`) and its phases: admission,
//!   the policy's view of a request, answers from entries, storing, compression, errors.
//! - [`jobs`]: warming jobs and policy hot reload.
//! - [`admin`]: the `/admin` API, its key auth, the report, and the `/metrics` page.
//! - [`app`]: building the application in named steps, serving it, and the `larder`
//!   command line (`app::cli`).
//! - [`testing`]: a plugin mounted in the whole application in process, for its tests.
//!
//! ## A request's path
//! poem's router (one table for every plugin's and the core's routes, built in
//! `app`) picks the path's `PathEndpoint`, which hands the request to the `Pipeline` of its
//! method. The pipeline runs the phases in order: **admission** (body size, rate limits,
//! CORS: charged once, before the cache is consulted), **decision** (the route's rule →
//! a key, or a typed reason not to cache; the same function `larder explain` runs),
//! **lookup** (L1, then L2; a fresh copy is the short exit), **origin** (the plugin's
//! handler, once per key however many requests wait; its events' triggers run before the
//! answer leaves), **store** (the answer becomes an entry, compressed once), and
//! **finish** (CORS headers, `Server-Timing`, metrics, the span's status, the request log).
//! A plugin panic answers 500 (the plugin API guards every handler) and the server lives on.

pub mod admin;
pub mod app;
pub mod cache;
pub mod config;
pub mod http;
pub mod jobs;
pub mod plugins;
pub mod telemetry;
pub mod testing;
