//! The core's own liveness and readiness routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

/// Liveness and readiness.
pub(crate) struct SystemApi {
    pub(crate) ready: Arc<AtomicBool>,
}

/// Health or readiness answer.
#[derive(Object)]
#[oai(rename = "SystemStatus")]
struct Status {
    /// `ok`, `ready` or `starting`.
    status: String,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Plugins are started and start-up warm jobs are done.
    #[oai(status = 200)]
    Ready(Json<Status>),
    /// Still starting.
    #[oai(status = 503)]
    Starting(Json<Status>),
}

#[OpenApi]
impl SystemApi {
    /// Liveness: the process serves HTTP.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Json<Status> {
        Json(Status {
            status: "ok".into(),
        })
    }

    /// Readiness: plugins initialised and start-up warm jobs done.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self) -> ReadyResponse {
        if self.ready.load(Ordering::Acquire) {
            ReadyResponse::Ready(Json(Status {
                status: "ready".into(),
            }))
        } else {
            ReadyResponse::Starting(Json(Status {
                status: "starting".into(),
            }))
        }
    }
}
