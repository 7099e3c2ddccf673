//! A rule's `match`: by operation, by plugin, or by path template, checked against the
//! catalog when there is one.

use super::Compiler;
use crate::diag::did_you_mean;
use crate::path::PathPattern;
use crate::policy::RouteInfo;
use crate::rule::RuleMatch;
use crate::source::FieldPath;
use crate::spec::MatchSpec;

impl Compiler<'_> {
    pub(super) fn compile_match(
        &mut self,
        f: usize,
        at: &FieldPath,
        m: &MatchSpec,
    ) -> Option<RuleMatch> {
        if let Some(p) = &m.plugin
            && !self.check_plugin(f, &at.at("plugin"), p)
        {
            return None;
        }
        match (&m.plugin, &m.operation, &m.path) {
            (_, Some(_), Some(_)) => {
                self.err(
                    f,
                    &at.at("path"),
                    "match by `operation` or by `path`, not both",
                    None,
                );
                None
            }
            (None, Some(_), None) => {
                self.err(
                    f,
                    &at.at("operation"),
                    "`operation` needs `plugin`",
                    Some("write `{ plugin: NAME, operation: OP }`".into()),
                );
                None
            }
            (Some(plugin), Some(op), None) => {
                if m.method.is_some() {
                    self.err(f, &at.at("method"), "`method` applies to `path` matches only; an operation already has one method", None);
                }
                if let Some(cat) = self.catalog
                    && cat.find_route(plugin, op).is_none()
                {
                    let ops: Vec<&str> = cat
                        .routes
                        .iter()
                        .filter(|r| r.plugin == *plugin)
                        .map(|r| r.operation.as_str())
                        .collect();
                    let hint = did_you_mean(op, ops.iter().copied())
                        .or_else(|| Some(format!("operations of `{plugin}`: {}", ops.join(", "))));
                    self.err(
                        f,
                        &at.at("operation"),
                        format!("unknown operation `{op}` of plugin `{plugin}`"),
                        hint,
                    );
                    return None;
                }
                Some(RuleMatch::Operation {
                    plugin: plugin.clone(),
                    operation: op.clone(),
                })
            }
            (plugin, None, Some(path)) => match PathPattern::parse(path) {
                Ok(pattern) => Some(RuleMatch::Path {
                    method: m.method,
                    pattern,
                    plugin: plugin.clone(),
                }),
                Err(e) => {
                    self.err(f, &at.at("path"), e, None);
                    None
                }
            },
            (Some(plugin), None, None) => {
                if m.method.is_some() {
                    self.err(
                        f,
                        &at.at("method"),
                        "`method` applies to `path` matches only",
                        None,
                    );
                }
                Some(RuleMatch::Plugin {
                    plugin: plugin.clone(),
                })
            }
            (None, None, None) => {
                self.err(
                    f,
                    at,
                    "`match` needs `plugin` + `operation`, `path`, or `plugin`",
                    Some("e.g. `match: { plugin: booking, operation: available_slots }`".into()),
                );
                None
            }
        }
    }
}

/// Whether a rule's matcher covers a catalog route.
pub(super) fn covers(m: &RuleMatch, r: &RouteInfo) -> bool {
    match m {
        RuleMatch::Operation { plugin, operation } => {
            r.plugin == *plugin && r.operation == *operation
        }
        RuleMatch::Plugin { plugin } => r.plugin == *plugin,
        RuleMatch::Path {
            method,
            pattern,
            plugin,
        } => {
            method.is_none_or(|m| m.as_str() == r.method)
                && plugin.as_ref().is_none_or(|p| *p == r.plugin)
                && pattern.covers(&r.pattern)
        }
        RuleMatch::Code => false,
    }
}
