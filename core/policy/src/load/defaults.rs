//! The set-wide sections every rule inherits: `ttl_classes`, `defaults` and
//! `compression`. Each may be written in any file, but only once across the set.

use super::{Compiler, Origin};
use crate::compression::Compression;
use crate::diag::did_you_mean;
use crate::expr::Expr;
use crate::rule::{JsonOptions, Zone};
use crate::source::FieldPath;
use crate::spec::{Defaults, Method, PolicyFile, Scope, Store};
use crate::units::{Duration, Jitter, Size};
use std::collections::{BTreeMap, HashMap};

/// TTL of rules when neither the rule nor `defaults` set one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Largest cacheable body when neither the rule nor `defaults` set one.
pub const DEFAULT_MAX_SIZE: Size = Size::from_bytes(8 << 20);

/// `defaults` with the built-in values filled in, so a rule reads one place for each
/// setting it leaves out.
pub(super) struct ResolvedDefaults {
    pub(super) ttl: Duration,
    pub(super) ttl_source: String,
    pub(super) swr: Duration,
    pub(super) sie: Duration,
    pub(super) jitter: Option<Jitter>,
    pub(super) store: Store,
    pub(super) scope: Scope,
    pub(super) methods: Vec<Method>,
    pub(super) statuses: Vec<u16>,
    pub(super) max_size: Size,
    pub(super) bypass_no_cache: bool,
    pub(super) bypass_when: Option<Expr>,
    pub(super) json: JsonOptions,
    pub(super) timezone: Option<Zone>,
}

impl Compiler<'_> {
    /// TTL classes of all files in one table, reporting names defined twice.
    pub(super) fn ttl_classes(&mut self) -> BTreeMap<String, Duration> {
        let mut ttl_classes = BTreeMap::new();
        let mut class_origin: HashMap<String, Origin> = HashMap::new();
        for f in 0..self.files.len() {
            let classes: Vec<(String, Duration)> =
                self.files[f].spec.ttl_classes.clone().into_iter().collect();
            for (name, d) in classes {
                let at = FieldPath::root().at("ttl_classes").at(name.as_str());
                if let Some(first) = class_origin.get(&name) {
                    let hint = Some(format!("first defined at {}", self.where_is(first)));
                    self.err(f, &at, format!("TTL class `{name}` is defined twice"), hint);
                    continue;
                }
                class_origin.insert(name.clone(), (f, at));
                ttl_classes.insert(name, d);
            }
        }
        ttl_classes
    }

    /// The one file that has a set-wide section, reporting the others.
    pub(super) fn singleton(
        &mut self,
        has: impl Fn(&PolicyFile) -> bool,
        section: &str,
    ) -> Option<usize> {
        let mut first: Option<usize> = None;
        for f in 0..self.files.len() {
            if !has(&self.files[f].spec) {
                continue;
            }
            match first {
                None => first = Some(f),
                Some(g) => {
                    let hint = Some(format!(
                        "`{section}` is set-wide and already set at {}; keep one",
                        self.where_is(&(g, FieldPath::root().at(section)))
                    ));
                    self.err(
                        f,
                        &FieldPath::root().at(section),
                        format!("`{section}` defined in more than one file"),
                        hint,
                    );
                }
            }
        }
        first
    }

    /// A TTL written as a duration (`5m`) or a class name, with where it came from for
    /// `larder explain`.
    pub(super) fn ttl_value(
        &mut self,
        f: usize,
        at: &FieldPath,
        text: &str,
        classes: &BTreeMap<String, Duration>,
    ) -> Option<(Duration, String)> {
        let t = text.trim();
        if t.starts_with(|c: char| c.is_ascii_digit()) {
            return t.parse::<Duration>().ok().map(|d| (d, format!("{d}")));
        }
        match classes.get(t) {
            Some(d) => Some((*d, format!("class {t}"))),
            // Its definition's error is reported; the policy fails to load anyway.
            None if self.broken_ttl_classes.contains(t) => None,
            None => {
                let hint = did_you_mean(t, classes.keys().map(String::as_str)).or_else(|| {
                    if classes.is_empty() {
                        Some(
                            "define it under `ttl_classes:` or write a duration such as `5m`"
                                .into(),
                        )
                    } else {
                        Some(format!(
                            "known classes: {}",
                            classes.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    }
                });
                self.err(f, at, format!("unknown TTL class `{t}`"), hint);
                None
            }
        }
    }

    /// An IANA zone named at `at`; an unknown name is reported with the nearest known one.
    pub(super) fn zone(
        &mut self,
        f: usize,
        at: &FieldPath,
        name: &str,
        source: &str,
    ) -> Option<Zone> {
        match jiff::tz::TimeZone::get(name) {
            Ok(zone) => Some(Zone {
                zone,
                name: name.to_owned(),
                source: source.to_owned(),
            }),
            Err(_) => {
                let known: Vec<String> =
                    jiff::tz::db().available().map(|n| n.to_string()).collect();
                let hint = did_you_mean(name, known.iter().map(String::as_str)).or_else(|| {
                    Some("write an IANA zone name such as `America/New_York` or `UTC`".into())
                });
                self.err(f, at, format!("unknown time zone `{name}`"), hint);
                None
            }
        }
    }

    /// `defaults` of `file` (none: the built-in values).
    pub(super) fn resolve_defaults(
        &mut self,
        file: Option<usize>,
        classes: &BTreeMap<String, Duration>,
    ) -> ResolvedDefaults {
        let d: Defaults = file
            .and_then(|f| self.files[f].spec.defaults.clone())
            .unwrap_or_default();
        let at = FieldPath::root().at("defaults");
        let (ttl, ttl_source) = match (&d.ttl, file) {
            (Some(t), Some(f)) => self
                .ttl_value(f, &at.at("ttl"), &t.0, classes)
                .map(|(d, s)| (d, format!("defaults ({s})")))
                .unwrap_or((DEFAULT_TTL, "built-in default".into())),
            _ => (DEFAULT_TTL, "built-in default".into()),
        };
        let bypass_when = match (&d.bypass, file) {
            (Some(b), Some(f)) => b
                .when
                .as_ref()
                .and_then(|w| self.expr(f, &at.at("bypass").at("when"), &w.0, &[])),
            _ => None,
        };
        let timezone = match (&d.timezone, file) {
            (Some(z), Some(f)) => self.zone(f, &at.at("timezone"), &z.0, "defaults"),
            _ => None,
        };
        ResolvedDefaults {
            timezone,
            ttl,
            ttl_source,
            swr: d.stale_while_revalidate.unwrap_or(Duration::ZERO),
            sie: d.stale_if_error.unwrap_or(Duration::ZERO),
            jitter: d.jitter,
            store: d.store.unwrap_or(Store::Hybrid),
            scope: d.scope.unwrap_or(Scope::Public),
            methods: d.methods.unwrap_or_else(|| vec![Method::Get, Method::Head]),
            statuses: d.statuses.unwrap_or_else(|| vec![200]),
            max_size: d.max_size.unwrap_or(DEFAULT_MAX_SIZE),
            bypass_no_cache: d.bypass.as_ref().is_some_and(|b| b.no_cache),
            bypass_when,
            json: d
                .json
                .map(|j| JsonOptions {
                    compact: j.compact,
                    strip_nulls: j.strip_nulls,
                })
                .unwrap_or_default(),
        }
    }

    /// The `compression` section of `file` over the built-in settings.
    pub(super) fn global_compression(&self, file: Option<usize>) -> Compression {
        match file {
            Some(f) => Compression::default().overridden(
                self.files[f]
                    .spec
                    .compression
                    .as_ref()
                    .unwrap_or(&Default::default()),
            ),
            None => Compression::default(),
        }
    }
}
