//! Warming jobs: requests sent through the server itself (so through the caching layer)
//! at start-up, on a schedule, or on demand from the admin API.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use larder_plugin::WarmRun;
use larder_policy::{WarmJob, WarmSource};
use parking_lot::Mutex;
use poem::http::Method;
use poem::{Endpoint, Request};
use serde::Serialize;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cache::engine::Engine;
use crate::http::pipeline::Server;
use crate::plugins::LoadedPlugin;
use crate::plugins::host::WarmRunner;

/// One request of a warming job: method, URI, JSON body, and whom it is made as.
type WarmCall = (
    Method,
    String,
    Option<serde_json::Value>,
    Option<Arc<larder_plugin::Principal>>,
);

/// The outcome of a job's last run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// Runs so far.
    pub runs: u64,
    /// Whether a run is going on now.
    pub running: bool,
    /// Unix ms when the last run started.
    pub last_started_ms: Option<u64>,
    /// Duration of the last run, ms.
    pub last_duration_ms: Option<u64>,
    /// Requests of the last run that answered 2xx (entries now warm).
    pub last_entries: u64,
    /// Requests of the last run that failed.
    pub last_errors: u64,
    /// The first errors of the last run.
    pub last_error_samples: Vec<String>,
    /// Batches the last run sent (`batch_size` requests each, the last one fewer).
    pub last_batches: u64,
    /// Interval, seconds, for scheduled jobs.
    pub every_seconds: Option<u64>,
}

/// Why a job could not run.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// No job by that name in the policies in force.
    #[error("no warming job named `{0}`")]
    Unknown(String),
    /// The job does not allow on-demand runs.
    #[error("warming job `{0}` does not allow on-demand runs (`on_demand: false`)")]
    NotOnDemand(String),
    /// The server is not serving yet.
    #[error("the server is not ready to warm yet")]
    NotReady,
}

/// Runs warming jobs.
pub struct Warmer {
    engine: Arc<Engine>,
    endpoint: OnceLock<Arc<Server>>,
    plugins: BTreeMap<String, (Arc<dyn larder_plugin::DynPlugin>, String)>,
    status: Mutex<BTreeMap<String, JobStatus>>,
    /// Itself, for the `'static` futures of [`WarmRunner::run_source`].
    me: OnceLock<std::sync::Weak<Warmer>>,
}

impl Warmer {
    /// A warmer for these plugins (their warm sources and mount prefixes).
    pub fn new(engine: Arc<Engine>, plugins: &[LoadedPlugin]) -> Arc<Self> {
        let warmer = Arc::new(Self {
            engine,
            endpoint: OnceLock::new(),
            plugins: plugins
                .iter()
                .map(|p| (p.name.to_owned(), (p.plugin.clone(), p.prefix.clone())))
                .collect(),
            status: Mutex::default(),
            me: OnceLock::new(),
        });
        let _ = warmer.me.set(Arc::downgrade(&warmer));
        warmer
    }

    /// Gives the warmer the application's root endpoint (requests go through the router
    /// and the caching layer like any client's).
    pub fn set_endpoint(&self, endpoint: Arc<Server>) {
        let _ = self.endpoint.set(endpoint);
    }

    /// Status of every job in the policies in force.
    pub fn jobs(&self) -> Vec<JobStatus> {
        let policy = self.engine.policy();
        let status = self.status.lock();
        policy
            .warm_jobs()
            .iter()
            .map(|job| {
                let mut s = status.get(&job.name).cloned().unwrap_or_default();
                s.name = job.name.clone();
                s.every_seconds = job.every.map(|d| d.as_millis() / 1000);
                s
            })
            .collect()
    }

    /// Runs a job now (admin API).
    pub async fn run_named(&self, name: &str) -> Result<JobStatus, WarmError> {
        let job = self
            .engine
            .policy()
            .warm_job(name)
            .ok_or_else(|| WarmError::Unknown(name.to_owned()))?;
        if !job.on_demand {
            return Err(WarmError::NotOnDemand(name.to_owned()));
        }
        self.run(&job).await
    }

    /// Runs every `at_startup` job; returns when they finished.
    pub async fn run_startup(&self) {
        let jobs: Vec<Arc<WarmJob>> = self
            .engine
            .policy()
            .warm_jobs()
            .iter()
            .filter(|j| j.at_startup)
            .cloned()
            .collect();
        for job in jobs {
            if let Err(e) = self.run(&job).await {
                tracing::warn!(job = %job.name, error = %e, "start-up warming failed");
            }
        }
    }

    /// Starts the schedule loop: every job with `every` runs at its interval (the job list
    /// is re-read each tick, so a policy reload takes effect).
    pub fn schedule(
        self: &Arc<Self>,
        tasks: &TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let warmer = self.clone();
        tasks.spawn(async move {
            let mut last: BTreeMap<String, Instant> = BTreeMap::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let jobs: Vec<Arc<WarmJob>> = warmer.engine.policy().warm_jobs().to_vec();
                for job in jobs {
                    let Some(every) = job.every else { continue };
                    let every: Duration = every.into();
                    let due = last.get(&job.name).is_none_or(|t| t.elapsed() >= every);
                    if !due {
                        continue;
                    }
                    // The first tick after start counts from now: start-up runs are separate.
                    if !last.contains_key(&job.name) {
                        last.insert(job.name.clone(), Instant::now());
                        continue;
                    }
                    last.insert(job.name.clone(), Instant::now());
                    if let Err(e) = warmer.run(&job).await {
                        tracing::warn!(job = %job.name, error = %e, "scheduled warming failed");
                    }
                }
            }
        });
    }

    async fn requests(&self, job: &WarmJob) -> Result<Vec<WarmCall>, String> {
        match &job.source {
            WarmSource::Requests { .. } => Ok(job
                .expand(self.engine.clock())
                .into_iter()
                .map(|r| {
                    let mut uri = r.path.clone();
                    if !r.query.is_empty() {
                        let q: String = form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(r.query.iter())
                            .finish();
                        uri.push('?');
                        uri.push_str(&q);
                    }
                    let method = Method::from_bytes(r.method.as_bytes()).unwrap_or(Method::GET);
                    (method, uri, r.body, None)
                })
                .collect()),
            WarmSource::Plugin { plugin, name } => {
                let (p, prefix) = self
                    .plugins
                    .get(plugin)
                    .ok_or_else(|| format!("plugin `{plugin}` is not loaded"))?;
                let reqs = p.warm_source(name).await.map_err(|e| e.to_string())?;
                Ok(reqs
                    .into_iter()
                    .take(job.max_requests as usize)
                    .map(|r| {
                        let method = Method::from_bytes(r.method.as_bytes()).unwrap_or(Method::GET);
                        let principal = r.principal.map(|mut p| {
                            p.kind = larder_plugin::PrincipalKind::Warming;
                            Arc::new(p)
                        });
                        (method, format!("{prefix}{}", r.path), r.body, principal)
                    })
                    .collect())
            }
        }
    }

    /// Runs one job with its concurrency limit.
    pub async fn run(&self, job: &WarmJob) -> Result<JobStatus, WarmError> {
        let span = tracing::info_span!("cache.warm", job = %job.name);
        self.run_inner(job).instrument(span).await
    }

    async fn run_inner(&self, job: &WarmJob) -> Result<JobStatus, WarmError> {
        let endpoint = self.endpoint.get().cloned().ok_or(WarmError::NotReady)?;
        let started_ms = self.engine.cache.now_ms();
        let started = Instant::now();
        {
            let mut status = self.status.lock();
            let s = status.entry(job.name.clone()).or_default();
            s.name = job.name.clone();
            s.running = true;
            s.last_started_ms = Some(started_ms);
        }
        let mut batches = 0;
        let (entries, errors, samples) = match self.requests(job).await {
            Err(e) => (0, 1, vec![e]),
            Ok(requests) => {
                // Batch after batch (`batch_size`), each with at most `concurrency` in
                // flight: a big source never has more than one batch of requests queued
                // against the origin at once.
                let mut results: Vec<Result<(), String>> = Vec::with_capacity(requests.len());
                let mut requests = requests.into_iter().peekable();
                while requests.peek().is_some() {
                    let batch: Vec<WarmCall> = requests
                        .by_ref()
                        .take(job.batch_size.max(1) as usize)
                        .collect();
                    let done: Vec<Result<(), String>> = futures::stream::iter(batch)
                        .map(|(method, uri, body, principal)| {
                            let endpoint = endpoint.clone();
                            async move {
                                let mut req =
                                    Request::builder().method(method.clone()).uri_str(&uri);
                                if body.is_some() {
                                    req = req.content_type("application/json");
                                }
                                let mut req = match body {
                                    Some(b) => req.body(serde_json::to_vec(&b).unwrap_or_default()),
                                    None => req.finish(),
                                };
                                if let Some(p) = principal {
                                    req.extensions_mut().insert(crate::http::WarmAs(p));
                                }
                                match endpoint.call(req).await {
                                    Ok(resp) if resp.status().is_success() => Ok(()),
                                    Ok(resp) => Err(format!("{method} {uri}: {}", resp.status())),
                                    Err(e) => Err(format!("{method} {uri}: {e}")),
                                }
                            }
                        })
                        .buffer_unordered(job.concurrency.max(1) as usize)
                        .collect()
                        .await;
                    results.extend(done);
                    batches += 1;
                }
                let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
                let errs: Vec<String> = results.into_iter().filter_map(Result::err).collect();
                (ok, errs.len() as u64, errs.into_iter().take(5).collect())
            }
        };
        let duration = started.elapsed();
        tracing::info!(
            job = %job.name,
            entries,
            errors,
            duration_ms = duration.as_millis() as u64,
            "warming job finished"
        );
        let mut status = self.status.lock();
        let s = status.entry(job.name.clone()).or_default();
        s.running = false;
        s.runs += 1;
        s.last_duration_ms = Some(duration.as_millis() as u64);
        s.last_entries = entries;
        s.last_errors = errors;
        s.last_error_samples = samples;
        s.last_batches = batches;
        Ok(s.clone())
    }
}

/// A plugin's warm alias route runs its sources here: the policy's job for the source when
/// there is one (so `/admin/cache/jobs` shows the run), else a one-off job of the source
/// with the policy's default limits.
impl WarmRunner for Warmer {
    fn run_source(
        &self,
        plugin: String,
        source: String,
    ) -> BoxFuture<'static, Result<WarmRun, String>> {
        let Some(me) = self.me.get().and_then(std::sync::Weak::upgrade) else {
            return Box::pin(async { Err("the server is not ready to warm yet".to_owned()) });
        };
        Box::pin(async move {
            let known = me
                .plugins
                .get(&plugin)
                .is_some_and(|(p, _)| p.warm_sources().iter().any(|w| w.name == source));
            if !known {
                return Err(format!("plugin `{plugin}` has no warm source `{source}`"));
            }
            let wanted = WarmSource::Plugin {
                plugin: plugin.clone(),
                name: source.clone(),
            };
            let job = me
                .engine
                .policy()
                .warm_jobs()
                .iter()
                .find(|j| j.source == wanted)
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(WarmJob {
                        name: format!("{plugin}.{source}"),
                        description: None,
                        file: Default::default(),
                        at_startup: false,
                        ready_after: false,
                        every: None,
                        on_demand: true,
                        concurrency: 4,
                        batch_size: 100,
                        max_requests: 10_000,
                        source: wanted,
                        timezone: None,
                    })
                });
            let status = me.run(&job).await.map_err(|e| e.to_string())?;
            Ok(WarmRun {
                source: format!("{plugin}.{source}"),
                job: job.name.clone(),
                entries: status.last_entries,
                errors: status.last_errors,
                error_samples: status.last_error_samples,
                duration_ms: status.last_duration_ms.unwrap_or(0),
            })
        })
    }
}
