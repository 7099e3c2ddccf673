//! Triggers: plugin events that purge entries. Their templates read the event, never a
//! request, and with a catalog every `{event.FIELD}` must be a field the event has.

use super::Compiler;
use super::templates::VarScope;
use crate::catalog::Catalog;
use crate::diag::did_you_mean;
use crate::policy::{PolicySet, Trigger};
use crate::rule::InvalidationTemplates;
use crate::source::FieldPath;
use crate::spec::TriggerSpec;
use crate::template::{TemplateContext, Var};
use std::sync::Arc;

impl Compiler<'_> {
    /// Adds the triggers of all files to `set`, indexed by the event that fires them.
    pub(super) fn compile_triggers(&mut self, set: &mut PolicySet) {
        for f in 0..self.files.len() {
            let specs = self.files[f].spec.triggers.clone();
            for (i, t) in specs.iter().enumerate() {
                let at = FieldPath::root().at("triggers").at(i);
                if let Some(trigger) = self.compile_trigger(f, &at, t) {
                    let key = (trigger.plugin.clone(), trigger.event.clone());
                    set.triggers_by_event
                        .entry(key)
                        .or_default()
                        .push(set.triggers.len());
                    set.triggers.push(Arc::new(trigger));
                }
            }
        }
    }

    fn compile_trigger(&mut self, f: usize, at: &FieldPath, t: &TriggerSpec) -> Option<Trigger> {
        let Some((plugin, event)) = t.on.split_once('.') else {
            self.err(
                f,
                &at.at("on"),
                format!("event `{}` must be written `plugin.event`", t.on),
                Some("e.g. `on: booking.payment_recorded`".into()),
            );
            return None;
        };
        let mut fields: Option<Vec<String>> = None;
        if let Some(cat) = self.catalog {
            fields = Some(self.event_fields(cat, f, &at.at("on"), plugin, event)?);
        }
        let inv_at = at.at("invalidate");
        let reads = VarScope {
            ctx: TemplateContext::Event,
            routes: &[],
        };
        let invalidate = self.invalidation(f, &inv_at, &t.invalidate, reads);
        if let Some(fields) = fields {
            self.check_event_fields(f, &inv_at, &t.on, &invalidate, &fields);
        }
        if invalidate.tags.is_empty()
            && invalidate.keys.is_empty()
            && invalidate.patterns.is_empty()
            && !invalidate.all
        {
            self.err(
                f,
                &inv_at,
                "the trigger purges nothing",
                Some("list `tags`, `keys` or `patterns`, or set `all: true`".into()),
            );
        }
        Some(Trigger {
            plugin: plugin.to_owned(),
            event: event.to_owned(),
            description: t.description.clone(),
            file: self.files[f].path.clone(),
            invalidate,
        })
    }

    /// The fields of the catalog event `plugin.event`; `None` once an unknown plugin or
    /// event is reported (or the plugin is disabled).
    fn event_fields(
        &mut self,
        cat: &Catalog,
        f: usize,
        at: &FieldPath,
        plugin: &str,
        event: &str,
    ) -> Option<Vec<String>> {
        if !self.check_plugin(f, at, plugin) {
            return None;
        }
        match cat
            .events
            .iter()
            .find(|e| e.plugin == plugin && e.name == event)
        {
            Some(e) => Some(e.fields.clone()),
            None => {
                let names: Vec<String> = cat
                    .events
                    .iter()
                    .filter(|e| e.plugin == plugin)
                    .map(|e| e.name.clone())
                    .collect();
                let hint = did_you_mean(event, names.iter().map(String::as_str))
                    .map(|h| h.replacen('`', &format!("`{plugin}."), 1))
                    .or_else(|| {
                        Some(if names.is_empty() {
                            format!("plugin `{plugin}` emits no events")
                        } else {
                            format!("events of `{plugin}`: {}", names.join(", "))
                        })
                    });
                self.err(f, at, format!("unknown event `{plugin}.{event}`"), hint);
                None
            }
        }
    }

    /// Every `{event.FIELD}` of the compiled templates names a field of event `on`.
    fn check_event_fields(
        &mut self,
        f: usize,
        inv_at: &FieldPath,
        on: &str,
        invalidate: &InvalidationTemplates,
        fields: &[String],
    ) {
        for (name, list) in [
            ("tags", &invalidate.tags),
            ("keys", &invalidate.keys),
            ("patterns", &invalidate.patterns),
        ] {
            for (i, tpl) in list.iter().enumerate() {
                for v in tpl.vars() {
                    if let Var::Event(p) = &v.var {
                        let top = p.trim_start_matches('/').split('/').next().unwrap_or("");
                        if !fields.iter().any(|x| x == top) {
                            let hint = did_you_mean(top, fields.iter().map(String::as_str))
                                .or_else(|| {
                                    Some(format!("fields of `{on}`: {}", fields.join(", ")))
                                });
                            self.err(
                                f,
                                &inv_at.at(name).at(i),
                                format!("event `{on}` has no field `{top}`"),
                                hint,
                            );
                        }
                    }
                }
            }
        }
    }
}
