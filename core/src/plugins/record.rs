//! What the host did for its plugins, written down for their tests.
//!
//! [`crate::testing::mount`] attaches a [`Recorder`] to the [`CoreHost`]; the host then
//! notes each event a plugin emits, each purge it asks for (and what the purge removed),
//! each warm source it runs and each `get_or_load` (and whether the cache answered), after
//! doing the real thing. A server never attaches one, so serving pays one empty
//! `OnceLock` read per call.
//!
//! [`CoreHost`]: super::host::CoreHost

use std::sync::Arc;

use larder_plugin::{Event, Invalidation, WarmRun};
use larder_store::Outcome;
use parking_lot::Mutex;

/// A purge a plugin asked for ([`larder_plugin::PluginContext::invalidate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalidated {
    /// The plugin that asked.
    pub plugin: String,
    /// What it asked to drop, as it wrote it (before the host puts it in its namespace).
    pub what: Invalidation,
    /// How many entries the purge removed, or why the host refused it.
    pub removed: Result<u64, String>,
}

/// A warm source a plugin ran ([`larder_plugin::PluginContext::warm`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Warmed {
    /// The plugin that asked.
    pub plugin: String,
    /// The source's name, as the plugin declares it (`slots_next_7_days`).
    pub source: String,
    /// The run (requests answered, errors), or why it did not run.
    pub run: Result<WarmRun, String>,
}

/// One [`larder_plugin::PluginContext::get_or_load`] call, once it finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// The plugin that asked.
    pub plugin: String,
    /// The policy rule it named.
    pub rule: String,
    /// The key as the plugin gave it (the host stores it under `<plugin>:<key>`).
    pub key: String,
    /// Where the value came from.
    pub outcome: LoadOutcome,
}

/// Where a `get_or_load` value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// A fresh entry.
    Hit,
    /// An entry past its TTL, inside its stale-while-revalidate window.
    Stale,
    /// The loader failed; an entry inside its stale-if-error window stood in.
    StaleIfError,
    /// Another call's load, waited for.
    Coalesced,
    /// The loader ran and its value was stored.
    Loaded,
    /// The loader ran and nothing was stored: no policy rule has that name.
    Uncached,
    /// The loader failed and nothing stood in.
    Failed(String),
}

impl LoadOutcome {
    /// What the plugin was told as `cache_hit`.
    pub fn cache_hit(&self) -> bool {
        matches!(self, Self::Hit | Self::Stale | Self::StaleIfError)
    }

    pub(crate) fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Hit => Self::Hit,
            Outcome::Stale => Self::Stale,
            Outcome::StaleIfError => Self::StaleIfError,
            Outcome::Coalesced => Self::Coalesced,
            Outcome::Miss | Outcome::PassThrough => Self::Loaded,
        }
    }
}

/// Called with each event at the moment a plugin emits it.
pub type EventObserver = Arc<dyn Fn(&Event) + Send + Sync>;

/// The notes, in the order things happened.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    observers: Mutex<Vec<EventObserver>>,
    invalidations: Mutex<Vec<Invalidated>>,
    warms: Mutex<Vec<Warmed>>,
    loads: Mutex<Vec<Load>>,
}

impl Recorder {
    pub(crate) fn event(&self, event: &Event) {
        // Observers run outside the lock: one may read the recorder itself.
        let observers = self.observers.lock().clone();
        for observe in observers {
            observe(event);
        }
        self.events.lock().push(event.clone());
    }

    pub(crate) fn invalidated(&self, note: Invalidated) {
        self.invalidations.lock().push(note);
    }

    pub(crate) fn warmed(&self, note: Warmed) {
        self.warms.lock().push(note);
    }

    pub(crate) fn loaded(&self, note: Load) {
        self.loads.lock().push(note);
    }

    /// Runs `observe` on every event emitted from now on, on the emitting task, before the
    /// event is queued.
    pub fn observe_events(&self, observe: EventObserver) {
        self.observers.lock().push(observe);
    }

    /// The events emitted so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    /// The purges asked for so far, oldest first.
    pub fn invalidations(&self) -> Vec<Invalidated> {
        self.invalidations.lock().clone()
    }

    /// The warm sources run so far, oldest first.
    pub fn warms(&self) -> Vec<Warmed> {
        self.warms.lock().clone()
    }

    /// The `get_or_load` calls finished so far, in the order they finished.
    pub fn loads(&self) -> Vec<Load> {
        self.loads.lock().clone()
    }
}
