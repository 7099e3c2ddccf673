//! Test fixture: `GET /items/{id}` fetches `http://{upstream}/items/{id}` and answers its
//! body. The upstream request carries `PluginContext::trace_headers()`, as a plugin calling
//! a real upstream API should, so a test can check the trace reaches the upstream.
//!
//! The HTTP/1.1 client is a few lines over tokio's `TcpStream`, to keep the fixture's build
//! small.

use std::io;

use larder_plugin::{Plugin, PluginApi, PluginContext, PluginError, PluginInit};
use poem_openapi::param::Path;
use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, OpenApi};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::net::TcpStream;

/// Settings under `plugins.traced.settings`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracedConfig {
    /// `host:port` of the upstream HTTP server.
    pub upstream: String,
}

/// The plugin.
pub struct TracedPlugin {
    config: TracedConfig,
    context: PluginContext,
}

struct TracedApi {
    upstream: String,
    context: PluginContext,
}

#[derive(ApiResponse)]
enum ItemResponse {
    /// The upstream's body.
    #[oai(status = 200)]
    Ok(PlainText<String>),
    /// The upstream could not be reached.
    #[oai(status = 502)]
    BadGateway(PlainText<String>),
}

#[OpenApi]
impl TracedApi {
    /// Fetches item `id` from the upstream, passing the trace context on.
    #[oai(path = "/items/:id", method = "get", operation_id = "get_item")]
    async fn get_item(&self, id: Path<String>) -> ItemResponse {
        let headers = self.context.trace_headers();
        match get(&self.upstream, &format!("/items/{}", id.0), &headers).await {
            Ok(body) => ItemResponse::Ok(PlainText(body)),
            Err(e) => ItemResponse::BadGateway(PlainText(e.to_string())),
        }
    }
}

/// `GET path` on `upstream` with `Connection: close`; returns the body.
async fn get(upstream: &str, path: &str, headers: &[(String, String)]) -> io::Result<String> {
    let stream = TcpStream::connect(upstream).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {upstream}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut rest = request.as_bytes();
    while !rest.is_empty() {
        stream.writable().await?;
        match stream.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let text = String::from_utf8_lossy(&response);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(io::Error::other(format!(
            "unexpected upstream answer: {text}"
        ))),
    }
}

impl Plugin for TracedPlugin {
    type Config = TracedConfig;
    const NAME: &'static str = "traced";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test fixture: calls an upstream with trace headers.";

    async fn new(init: PluginInit<TracedConfig>) -> Result<Self, PluginError> {
        Ok(Self {
            config: init.config,
            context: init.context,
        })
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(TracedApi {
            upstream: self.config.upstream.clone(),
            context: self.context.clone(),
        })
    }
}

larder_plugin::export_plugin!(TracedPlugin);
