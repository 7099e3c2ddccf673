//! The hit lane: fresh L1 hits answered ahead of the general request stack.
//!
//! A hit is a key render and a map lookup, yet through the full stack it also pays for the
//! request span, body-limit and CORS wrappers, poem's router and the OpenAPI operation
//! tree — on two cores, about a third of a hit's CPU. The lane sits outside all of them
//! and answers a GET whose path it has seen reach a cached route, when that route's rule
//! gives a key whose L1 copy is fresh. Anything else falls through to the full stack
//! unchanged: misses, stale copies, bypasses, other methods, CORS requests (`Origin`),
//! requests with a body, and every request while an OpenTelemetry exporter runs or the
//! server logs at `debug` (both want the request span, which the lane does not open).
//!
//! What a lane hit shares with the full path, so a client cannot tell them apart: the
//! rule and key ([`crate::layer::lane_hit`] uses the layer's own decision and response
//! code), the route's rate limits ([`RouteLimits`], charged only when the lane answers) and
//! its request metrics ([`Meter`]). A hit emits no log events, so the missing span hides
//! nothing from the text log.
//!
//! Paths are learned, not matched: when the full path answers a GET from L1, the layer
//! records the path with the route poem's router sent it to and the raw path parameters
//! the router extracted (so a path takes the lane from its third request on). Routing
//! is a pure function of the path, so a learned path always means the same route; the lane
//! never needs a second router that could disagree with poem's. The memo is small and
//! bounded (hot paths stay, the rest fall through and are learned again).

use std::sync::Arc;
use std::time::Instant;

use poem::http::{Method, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::engine::{Engine, RouteSlot};
use crate::layer::Limits;
use crate::limits::RouteLimits;
use crate::metrics::Meter;

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

#[derive(Clone)]
struct Learned {
    route: Arc<LaneRoute>,
    params: Arc<[String]>,
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

    /// Records that `req` (a GET answered from L1) reached `route`, with the path
    /// parameters poem's router set on it. Called by the layer on the full path.
    pub fn learn(&self, path: &str, route: &Arc<LaneRoute>, req: &Request) {
        if self.memo.get(path).is_some() {
            return;
        }
        let params: Option<Vec<String>> = (0..route.slot.params.len())
            .map(|i| {
                let name = route.slot.params.get(i)?;
                req.raw_path_param(route.slot.param_key(name)?)
                    .map(str::to_owned)
            })
            .collect();
        if let Some(params) = params {
            self.memo.insert(
                path.into(),
                Learned {
                    route: route.clone(),
                    params: params.into(),
                },
            );
        }
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

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.method() == Method::GET
            && Lane::open()
            && !req.headers().contains_key(header::ORIGIN)
            && !req.headers().contains_key(header::CONTENT_LENGTH)
            && !req.headers().contains_key(header::TRANSFER_ENCODING)
            && let Some(learned) = self.lane.memo.get(req.uri().path())
        {
            let started = Instant::now();
            if let Some(resp) =
                crate::layer::lane_hit(&learned.route, &req, &learned.params, started).await
            {
                learned.route.meter.record(resp.status(), started);
                return Ok(resp);
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}
