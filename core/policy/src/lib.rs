//! # larder-policy
//!
//! The policy language of Larder: YAML files that say, per route, whether and how a
//! response is cached.
//!
//! ## Layout
//! - [`spec`]: the file format (serde + schemars types; the JSON Schema comes from here).
//! - [`source`]: YAML → a tree with line/column for every node.
//! - [`schema`]: validates a tree against the generated schema, collecting every violation.
//! - [`load`]: the loader: files → trees → schema check → specs → compiled [`PolicySet`],
//!   with all catalog-aware checks; every problem becomes a [`Diagnostic`].
//! - [`policy`]: the compiled, immutable [`PolicySet`] (share it as `Arc`, swap it on
//!   reload): route → rule resolution, request matching, triggers, warming, `explain`.
//! - [`rule`]: a compiled [`Rule`] and the per-request work: key, tags, TTL, bypass,
//!   invalidation.
//! - [`template`], [`expr`]: key/tag templates and the condition language, parsed at load.
//! - [`path`]: path templates and the segment trie used for matching.
//! - [`units`]: durations, sizes, jitter. [`compression`]: compression settings.
//! - [`warming`]: warming jobs and their expansion. [`catalog`]: what the server offers.
//! - [`request`]: the [`RequestView`] the HTTP layer implements.
//!
//! ## Flow
//! At start-up the core builds a [`Catalog`] from its plugins, calls
//! [`PolicySet::load_dir`], prints the [`Diagnostics`] and refuses to start if there are
//! any, then resolves each route's rule once with [`PolicySet::rule_for_route`]. Per
//! request it calls [`Rule::decide`] (key, tags, TTL) or the finer-grained [`Rule::key`],
//! [`Rule::ttl`], [`Rule::tags`], and after a 2xx response [`Rule::invalidation`]. Plugin
//! events go through [`PolicySet::on_event`].

pub mod catalog;
pub mod compression;
pub mod diag;
pub mod expr;
pub mod load;
pub mod path;
pub mod policy;
pub mod request;
pub mod rule;
pub mod schema;
pub mod source;
pub mod spec;
pub mod template;
pub mod units;
pub mod warming;

pub use catalog::{Catalog, CatalogEvent, CatalogNamedRule, CatalogRoute, CatalogWarmSource};
pub use compression::{Compression, accept_weight};
pub use diag::{Diagnostic, Diagnostics, Location};
pub use expr::{Clock, Expr};
pub use policy::{Explanation, PolicySet, RequestMatch, RouteInfo, Trigger};
pub use request::{CREDENTIAL_HEADERS, Request, RequestView};
pub use rule::{
    ClientCache, Decision, Invalidation, Rule, RuleMatch, RuleTag, Skip, TagVerdict, TtlCondition,
    TtlDecision, Zone,
};
pub use spec::{Algorithm, Method, Scope, Store, json_schema};
pub use template::Template;
pub use units::{Duration, Jitter, Size};
pub use warming::{WarmJob, WarmSource};
