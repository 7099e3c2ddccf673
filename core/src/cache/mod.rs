//! The cache engine joined with the policies ([`engine`]), and the lookup → origin → store
//! sequence of one cache call ([`lookup`]), shared by the HTTP pipeline and by plugins'
//! `get_or_load`, so both read the layers alike and produce the same `cache.*` spans.

pub(crate) mod engine;

pub(crate) use engine::{BoundRule, Engine, RouteSlot, entry_tag, plugin_tag};

use std::future::Future;

use larder_store::{Loaded, Looked, OriginError, Served};
use tracing::Instrument;

use crate::telemetry::otel::{self, LoadParent};

/// A lookup under way: the `cache.lookup` span its result is recorded on.
pub(crate) struct Lookup {
    span: tracing::Span,
}

/// A lookup that found no fresh copy: what was read, for [`Miss::load`].
pub(crate) struct Miss {
    span: tracing::Span,
    looked: Looked,
}

/// The lookup phase, first half: a fresh copy in L1 (synchronous: a hit's whole cache
/// work), else a [`Lookup`] to go on with in L2. `traced` says whether this request records
/// `cache.*` spans (see [`otel::cache_spans`]).
pub(crate) fn lookup(
    engine: &Engine,
    bound: &BoundRule,
    key: &str,
    traced: bool,
) -> Result<Served, Lookup> {
    let span = if traced {
        otel::lookup_span(&bound.rule.name)
    } else {
        tracing::Span::none()
    };
    match engine.cache.l1_hit(key, &bound.opts) {
        Some(hit) => {
            otel::record_served(&span, &hit);
            Ok(hit)
        }
        None => Err(Lookup { span }),
    }
}

impl Lookup {
    /// The lookup phase, second half: L1 again (it may have been filled meanwhile), then L2
    /// when the rule uses it (promoting a hit into L1).
    pub(crate) async fn rest(
        self,
        engine: &Engine,
        bound: &BoundRule,
        key: &str,
    ) -> Result<Served, Miss> {
        match engine
            .cache
            .look(key, &bound.opts)
            .instrument(self.span.clone())
            .await
        {
            Ok(hit) => {
                otel::record_served(&self.span, &hit);
                Ok(hit)
            }
            Err(looked) => Err(Miss {
                span: self.span,
                looked,
            }),
        }
    }
}

impl Miss {
    /// What the origin and store spans of this miss's load hang from.
    pub(crate) fn parent(&self) -> LoadParent {
        otel::load_parent(&self.span)
    }

    /// The origin and store phases: a stale copy while one refresh runs, or `load` (once
    /// per key however many requests wait; once across instances with the lock).
    pub(crate) async fn load<F, Fut>(
        self,
        engine: &Engine,
        bound: &BoundRule,
        key: &str,
        load: F,
    ) -> Result<Served, OriginError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Loaded> + Send + 'static,
    {
        let served = engine
            .cache
            .load_after(self.looked, key, &bound.opts, load)
            .instrument(self.span.clone())
            .await;
        otel::record_lookup(&self.span, &served);
        served
    }
}
