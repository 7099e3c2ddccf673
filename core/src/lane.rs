//! The hit lane: fresh cache hits answered ahead of the general request stack.
//!
//! A hit is a key render and a map lookup (or one Redis GET), yet through the full stack it
//! also pays for the request span, body-limit and CORS wrappers, poem's router, the OpenAPI
//! operation tree and the loader a miss would need — on two cores, about a third of an L1
//! hit's CPU. The lane sits outside all of them and answers a GET whose path it has seen
//! reach a cached route, when that route's rule gives a key with a fresh copy in L1 or, if
//! the rule uses Redis and the breaker is closed, in L2. When L1 has no fresh copy and L2
//! has none either, the lane hands the request to the full stack with what it read (a
//! [`Handoff`]), so L2 is never read twice. Everything else falls through unchanged:
//! bypasses, other methods, CORS requests (`Origin`), requests with a body, and every
//! request while an OpenTelemetry exporter runs or the server logs at `debug` (both want
//! the request span, which the lane does not open).
//!
//! What a lane hit shares with the full path, so a client cannot tell them apart: the
//! rule and key ([`crate::layer::lane_hit`] uses the layer's own decision and response
//! code), the route's rate limits ([`RouteLimits`], charged once whichever path answers)
//! and its request metrics ([`Meter`]). A hit emits no log events of its own, so the
//! missing span hides little from the text log: only Redis trouble met on a lane read (the
//! breaker opening, a corrupt entry) is logged without the request's span. A handed-over
//! request's time in the lane is not in the full stack's `Server-Timing` or latency metric.
//!
//! Paths are learned, not matched: when the full path answers a GET from the cache, the
//! layer records the path with the route poem's router sent it to and the raw path
//! parameters the router extracted (so a path takes the lane from its third request on).
//! Routing is a pure function of the path, so a learned path always means the same route; the lane
//! never needs a second router that could disagree with poem's. The memo is small and
//! bounded (hot paths stay, the rest fall through and are learned again).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use poem::http::{Method, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::engine::{Engine, RouteSlot};
use crate::layer::Limits;
use crate::limits::RouteLimits;
use crate::metrics::Meter;

/// Requests the lane answered (`larder_lane_answers_total`): hits, and refusals by a rate
/// limit, since a request takes one path or the other.
pub static ANSWERS: AtomicU64 = AtomicU64::new(0);

/// Paths remembered; each costs about its length plus two hundred bytes (under 1 MB).
const MEMO_PATHS: usize = 4096;

/// What a cached route gives the lane.
pub struct LaneRoute {
    pub(crate) slot: Arc<RouteSlot>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) layer_limits: Limits,
    pub(crate) limits: Arc<RouteLimits>,
    pub(crate) meter: Arc<Meter>,
}

impl LaneRoute {
    /// The parts of a plugin route the lane answers for.
    pub fn new(
        slot: Arc<RouteSlot>,
        engine: Arc<Engine>,
        layer_limits: Limits,
        limits: Arc<RouteLimits>,
        meter: Arc<Meter>,
    ) -> Self {
        Self {
            slot,
            engine,
            layer_limits,
            limits,
            meter,
        }
    }
}

/// What the lane made of a request.
pub(crate) enum LaneAnswer {
    /// The lane's response: a fresh hit, or the route's rate limit refusing it.
    Answer(Response),
    /// No fresh copy; the lane read the layers and charged the rate limits already, and
    /// the full path takes it from there.
    Handoff(Handoff),
    /// Not for the lane; nothing was read, charged or counted.
    Pass,
}

/// A lane request passed on to the full path, as a request extension: the layers it read
/// (so the full path does not read L2 a second time) and, by its presence, that the
/// route's rate limits were charged (so [`crate::limits::Limited`] does not charge again).
#[derive(Clone, Debug)]
pub struct Handoff {
    /// The key the lane looked up; the full path uses the lookup only for the same key (a
    /// policy reload in between may have changed it).
    pub(crate) key: String,
    pub(crate) looked: larder_store::Looked,
}

#[derive(Clone)]
struct Learned {
    route: Arc<LaneRoute>,
    params: Arc<[String]>,
}

/// A path and how the router saw it, kept by [`Lane::learn`].
pub struct Lesson {
    path: Box<str>,
    learned: Learned,
}

/// The learned paths.
pub struct Lane {
    memo: quick_cache::sync::Cache<Box<str>, Learned>,
}

impl Lane {
    /// An empty lane.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            memo: quick_cache::sync::Cache::new(MEMO_PATHS),
        })
    }

    /// What to remember of `req` (a GET the full path is about to answer) should the cache
    /// answer it fresh: `None` when the path is known already (the common case, a map
    /// lookup) or the router's parameters are missing. Taken before the request moves into
    /// a loader; [`Lane::learn`] keeps it once the answer is known to be a hit.
    pub fn lesson(&self, route: &Arc<LaneRoute>, req: &Request) -> Option<Lesson> {
        let path = req.uri().path();
        if self.memo.get(path).is_some() {
            return None;
        }
        let params: Option<Vec<String>> = (0..route.slot.params.len())
            .map(|i| {
                let name = route.slot.params.get(i)?;
                req.raw_path_param(route.slot.param_key(name)?)
                    .map(str::to_owned)
            })
            .collect();
        Some(Lesson {
            path: path.into(),
            learned: Learned {
                route: route.clone(),
                params: params?.into(),
            },
        })
    }

    /// Remembers a path the full path answered from the cache.
    pub fn learn(&self, lesson: Lesson) {
        self.memo.insert(lesson.path, lesson.learned);
    }

    /// Whether the lane may answer now: nobody wants a request span.
    fn open() -> bool {
        !crate::otel::enabled()
            && !tracing::enabled!(target: "larder::server", tracing::Level::DEBUG)
    }
}

/// The lane in front of the whole application.
pub struct LaneEndpoint<E> {
    inner: E,
    lane: Arc<Lane>,
}

impl<E> LaneEndpoint<E> {
    /// Puts `lane` in front of `inner`.
    pub fn new(inner: E, lane: Arc<Lane>) -> Self {
        Self { inner, lane }
    }
}

impl<E: Endpoint> Endpoint for LaneEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if req.method() == Method::GET
            && Lane::open()
            && !req.headers().contains_key(header::ORIGIN)
            && !req.headers().contains_key(header::CONTENT_LENGTH)
            && !req.headers().contains_key(header::TRANSFER_ENCODING)
            && let Some(learned) = self.lane.memo.get(req.uri().path())
        {
            let started = Instant::now();
            match crate::layer::lane_hit(&learned.route, &req, &learned.params, started).await {
                LaneAnswer::Answer(resp) => {
                    ANSWERS.fetch_add(1, Ordering::Relaxed);
                    learned.route.meter.record(resp.status(), started);
                    return Ok(resp);
                }
                LaneAnswer::Handoff(handoff) => {
                    req.extensions_mut().insert(handoff);
                }
                LaneAnswer::Pass => {}
            }
        }
        // Boxed: poem boxes this future (twice, on the way in), copying all of it each time;
        // the full stack's future held inline would make every lane hit pay for its size.
        Box::pin(self.inner.call(req))
            .await
            .map(IntoResponse::into_response)
    }
}
