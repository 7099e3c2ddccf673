//! Templates and conditions, parsed at load and checked against what they may read: a
//! rule's request (and the path parameters of every route it covers), or a trigger's
//! event. A variable that cannot exist fails here, never on a request.

use super::Compiler;
use crate::diag::did_you_mean;
use crate::expr::Expr;
use crate::policy::RouteInfo;
use crate::rule::InvalidationTemplates;
use crate::source::FieldPath;
use crate::spec::InvalidateSpec;
use crate::template::{Template, TemplateContext, Var};

/// A route's parameter names, for template checks.
pub(super) struct RouteParams {
    pub(super) label: String,
    pub(super) params: Vec<String>,
}

impl RouteParams {
    pub(super) fn of(r: &RouteInfo) -> RouteParams {
        RouteParams {
            label: format!("{}.{} ({} {})", r.plugin, r.operation, r.method, r.pattern),
            params: r.pattern.params().map(str::to_owned).collect(),
        }
    }
}

/// What a template may read: a request or an event, and for a request the routes whose
/// path parameters it names (it must work for each of them).
#[derive(Clone, Copy)]
pub(super) struct VarScope<'a> {
    pub(super) ctx: TemplateContext,
    pub(super) routes: &'a [&'a RouteParams],
}

impl Compiler<'_> {
    /// Parses a template and checks its variables against the context and route params.
    pub(super) fn template(
        &mut self,
        f: usize,
        at: &FieldPath,
        text: &str,
        scope: VarScope,
    ) -> Option<Template> {
        let t = match Template::parse(text) {
            Ok(t) => t,
            Err(e) => {
                self.err(f, at, format!("bad template `{text}`: {}", e.message), None);
                return None;
            }
        };
        let vars: Vec<Var> = t.vars().map(|v| v.var.clone()).collect();
        let ok = self.check_vars(f, at, text, &vars, scope);
        ok.then_some(t)
    }

    /// Parses a condition; conditions are evaluated on requests only.
    pub(super) fn expr(
        &mut self,
        f: usize,
        at: &FieldPath,
        text: &str,
        routes: &[&RouteParams],
    ) -> Option<Expr> {
        let e = match Expr::parse(text) {
            Ok(e) => e,
            Err(e) => {
                self.err(
                    f,
                    at,
                    format!(
                        "bad condition `{text}`: {} (at character {})",
                        e.message,
                        e.offset + 1
                    ),
                    None,
                );
                return None;
            }
        };
        let vars: Vec<Var> = e.vars().into_iter().cloned().collect();
        let scope = VarScope {
            ctx: TemplateContext::Request,
            routes,
        };
        let ok = self.check_vars(f, at, text, &vars, scope);
        ok.then_some(e)
    }

    fn check_vars(
        &mut self,
        f: usize,
        at: &FieldPath,
        text: &str,
        vars: &[Var],
        scope: VarScope,
    ) -> bool {
        let mut ok = true;
        for v in vars {
            if !v.allowed_in(scope.ctx) {
                ok = false;
                let (msg, hint) = match scope.ctx {
                    TemplateContext::Event => (
                        format!(
                            "`{{{v}}}` in `{text}`: a trigger has no request; it can read event fields only"
                        ),
                        Some("write `{event.FIELD}`".to_owned()),
                    ),
                    TemplateContext::Request => (
                        format!("`{{{v}}}` in `{text}`: event fields exist only in `triggers:`"),
                        None,
                    ),
                };
                self.err(f, at, msg, hint);
                continue;
            }
            let Some(p) = v.path_param() else { continue };
            for r in scope.routes {
                if !r.params.iter().any(|x| x == p) {
                    ok = false;
                    let hint = did_you_mean(p, r.params.iter().map(String::as_str)).or_else(|| {
                        Some(if r.params.is_empty() {
                            "that route has no path parameters".to_owned()
                        } else {
                            format!("its parameters: {}", r.params.join(", "))
                        })
                    });
                    self.err(
                        f,
                        at,
                        format!(
                            "`{{path.{p}}}` in `{text}`: route {} has no path parameter `{p}`",
                            r.label
                        ),
                        hint,
                    );
                    break;
                }
            }
        }
        ok
    }

    /// An `invalidate` section, shared by rules (after a write) and triggers (on an
    /// event). A pattern of wildcards alone is refused: purging everything takes
    /// `all: true`, written on purpose.
    pub(super) fn invalidation(
        &mut self,
        f: usize,
        at: &FieldPath,
        spec: &InvalidateSpec,
        scope: VarScope,
    ) -> InvalidationTemplates {
        let mut out = InvalidationTemplates {
            all: spec.all,
            ..Default::default()
        };
        for (name, list) in [
            ("tags", &spec.tags),
            ("keys", &spec.keys),
            ("patterns", &spec.patterns),
        ] {
            for (i, t) in list.iter().enumerate() {
                let p = at.at(name).at(i);
                let Some(tpl) = self.template(f, &p, &t.0, scope) else {
                    continue;
                };
                if name == "patterns" {
                    let lit = tpl.literal_text();
                    let only_wild = tpl
                        .segments()
                        .iter()
                        .all(|s| matches!(s, crate::template::Segment::Lit(_)))
                        && lit.chars().all(|c| matches!(c, '*' | '?' | ':' | ' '));
                    if only_wild {
                        self.err(
                            f,
                            &p,
                            format!("pattern `{}` would purge everything", t.0),
                            Some("write `all: true` to purge everything on purpose".into()),
                        );
                        continue;
                    }
                }
                match name {
                    "tags" => out.tags.push(tpl),
                    "keys" => out.keys.push(tpl),
                    _ => out.patterns.push(tpl),
                }
            }
        }
        if spec.all && !(spec.tags.is_empty() && spec.keys.is_empty() && spec.patterns.is_empty()) {
            self.err(
                f,
                &at.at("all"),
                "`all: true` purges everything; the other targets are redundant",
                Some("remove `tags`/`keys`/`patterns`, or `all`".into()),
            );
        }
        out
    }
}
