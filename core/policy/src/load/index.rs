//! The lookup tables of a [`PolicySet`]: rules by name, by operation, by plugin and by
//! path, and every catalog route resolved to its rule once, at load.

use super::matcher::covers;
use super::{Compiler, Origin};
use crate::path::PathPattern;
use crate::policy::{PolicySet, RouteInfo, route_info};
use crate::rule::{Rule, RuleMatch};
use std::sync::Arc;

impl Compiler<'_> {
    /// The catalog's routes, parsed once for every rule that checks against them.
    pub(super) fn catalog_routes(&self) -> Vec<Arc<RouteInfo>> {
        let mut routes: Vec<Arc<RouteInfo>> = Vec::new();
        if let Some(cat) = self.catalog {
            for r in &cat.routes {
                if let Some(info) = route_info(r) {
                    routes.push(Arc::new(info));
                }
            }
        }
        routes
    }

    /// Adds the compiled rules to `set`, resolves every catalog route to its rule and
    /// builds the lookup tables. `rules` carry where their `match` is written.
    pub(super) fn index_rules(
        &mut self,
        set: &mut PolicySet,
        rules: Vec<(Rule, Origin)>,
        routes: &[Arc<RouteInfo>],
    ) {
        let mut rule_at: Vec<Origin> = Vec::new();
        for (rule, at) in rules {
            set.by_name.insert(rule.name.clone(), set.rules.len());
            set.rules.push(Arc::new(rule));
            rule_at.push(at);
        }
        // Identical matchers are ambiguous: report and keep the first.
        let mut seen: Vec<(usize, &RuleMatch)> = Vec::new();
        let rules = set.rules.clone();
        for (i, r) in rules.iter().enumerate() {
            if r.matcher == RuleMatch::Code {
                continue;
            }
            if let Some((j, _)) = seen.iter().find(|(_, m)| **m == r.matcher) {
                let hint = Some(format!(
                    "rule `{}` at {} already matches the same routes; merge them or narrow one",
                    rules[*j].name,
                    self.where_is(&rule_at[*j])
                ));
                let (f, p) = rule_at[i].clone();
                self.err(
                    f,
                    &p,
                    format!(
                        "rule `{}` has the same `match` as `{}`",
                        r.name, rules[*j].name
                    ),
                    hint,
                );
                continue;
            }
            seen.push((i, &r.matcher));
            match &r.matcher {
                RuleMatch::Operation { plugin, operation } => {
                    set.operation_rules
                        .insert((plugin.clone(), operation.clone()), i);
                }
                RuleMatch::Plugin { plugin } => {
                    set.plugin_rules.insert(plugin.clone(), i);
                }
                RuleMatch::Path { pattern, .. } => set.path_rules.insert(pattern.clone(), i),
                RuleMatch::Code => {}
            }
        }
        // Path rules sorted most specific first, so the trie picks them in that order when
        // several share a node (method-specific before any-method).
        let mut entries: Vec<(PathPattern, usize)> = set.path_rules.entries().to_vec();
        entries.sort_by(|a, b| {
            rules[b.1]
                .matcher
                .precedence()
                .cmp(&rules[a.1].matcher.precedence())
                .then(a.1.cmp(&b.1))
        });
        set.path_rules = Default::default();
        for (p, i) in entries {
            set.path_rules.insert(p, i);
        }
        for ri in routes {
            let best = rules
                .iter()
                .enumerate()
                .filter(|(i, r)| covers(&r.matcher, ri) && seen.iter().any(|(j, _)| j == i))
                .max_by(|a, b| {
                    a.1.matcher
                        .precedence()
                        .cmp(&b.1.matcher.precedence())
                        .then(b.0.cmp(&a.0))
                })
                .map(|(i, _)| i);
            set.route_rule
                .entry(ri.plugin.clone())
                .or_default()
                .insert(ri.operation.clone(), best);
            set.routes.insert(ri.pattern.clone(), (ri.clone(), best));
        }
    }
}
