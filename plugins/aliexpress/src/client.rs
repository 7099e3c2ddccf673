//! The AliExpress Open Platform gateway client.
//!
//! Every call is a form-encoded `POST {base}/sync` with the system parameters (`app_key`,
//! `method`, `sign_method=sha256`, `timestamp` in ms, `format=json`, `v=2.0`), the
//! method's own parameters and the `sign` over all of them. A success nests as
//! `{"<method_with_underscores>_response":{"resp_result":{"resp_code":200,"result":{…}}}}`;
//! a gateway error is `{"error_response":{"code","msg","sub_code","sub_msg"}}`. One
//! `reqwest::Client` pools connections for every call.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::{Credentials, Settings};
use crate::model::UpstreamDetail;
use crate::sign::sign;

/// Why a gateway call produced no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// The gateway answered with `error_response` (bad signature, bad app key, throttled…).
    #[error("AliExpress gateway error {code}: {msg}")]
    Gateway {
        /// `error_response.code`.
        code: String,
        /// `error_response.msg`.
        msg: String,
        /// `error_response.sub_code`.
        sub_code: Option<String>,
        /// `error_response.sub_msg`.
        sub_msg: Option<String>,
    },
    /// The method answered with a `resp_code` other than 200.
    #[error("AliExpress API returned resp_code {code}: {msg}")]
    Business {
        /// `resp_result.resp_code`.
        code: i64,
        /// `resp_result.resp_msg`.
        msg: String,
    },
    /// No answer within the configured timeout.
    #[error("AliExpress gateway did not answer in time")]
    Timeout,
    /// Connection refused, reset, DNS failure…
    #[error("AliExpress gateway unreachable: {0}")]
    Unavailable(String),
    /// An HTTP error status without a readable `error_response`.
    #[error("AliExpress gateway answered HTTP {0}")]
    Http(u16),
    /// A 2xx answer that is not the documented shape.
    #[error("unexpected AliExpress gateway response: {0}")]
    Malformed(String),
}

impl UpstreamError {
    /// The detail put in an error envelope.
    pub fn detail(&self) -> UpstreamDetail {
        let plain = |code: String| UpstreamDetail {
            code,
            msg: self.to_string(),
            sub_code: None,
            sub_msg: None,
        };
        match self {
            UpstreamError::Gateway {
                code,
                msg,
                sub_code,
                sub_msg,
            } => UpstreamDetail {
                code: code.clone(),
                msg: msg.clone(),
                sub_code: sub_code.clone(),
                sub_msg: sub_msg.clone(),
            },
            UpstreamError::Business { code, msg } => UpstreamDetail {
                code: code.to_string(),
                msg: msg.clone(),
                sub_code: None,
                sub_msg: None,
            },
            UpstreamError::Timeout => plain("timeout".into()),
            UpstreamError::Unavailable(_) => plain("unavailable".into()),
            UpstreamError::Http(status) => plain(format!("http_{status}")),
            UpstreamError::Malformed(_) => plain("malformed_response".into()),
        }
    }
}

/// A signed-request client for one app key.
pub struct GatewayClient {
    http: reqwest::Client,
    sync_url: String,
    credentials: Credentials,
    /// The host context, for the W3C trace headers of the request being served.
    context: Option<larder_plugin::PluginContext>,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("sync_url", &self.sync_url)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// The real wall time, not the server's clock: the gateway rejects a signed request whose
/// `timestamp` is far from its own time, whatever instant Larder's clock was started at.
fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl GatewayClient {
    /// Sends the trace context of the request being served with every gateway call.
    pub fn with_context(mut self, context: larder_plugin::PluginContext) -> Self {
        self.context = Some(context);
        self
    }

    /// A client for the gateway in `settings`, with its credentials and timeouts.
    pub fn new(settings: &Settings, credentials: Credentials) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(16)
            .user_agent(concat!("larder-aliexpress/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            sync_url: format!("{}/sync", settings.api_url),
            credentials,
            context: None,
        })
    }

    /// The endpoint requests go to.
    pub fn sync_url(&self) -> &str {
        &self.sync_url
    }

    /// The full, signed parameter set for one call.
    pub fn signed_params(
        &self,
        method: &str,
        params: &[(&str, String)],
        timestamp_ms: u128,
    ) -> BTreeMap<String, String> {
        let mut all: BTreeMap<String, String> = params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        for (k, v) in [
            ("app_key", self.credentials.app_key.clone()),
            ("method", method.to_owned()),
            ("sign_method", "sha256".to_owned()),
            ("timestamp", timestamp_ms.to_string()),
            ("format", "json".to_owned()),
            ("v", "2.0".to_owned()),
        ] {
            all.insert(k.to_owned(), v);
        }
        let signature = sign(self.credentials.app_secret.expose(), &all);
        all.insert("sign".to_owned(), signature);
        all
    }

    /// Calls `method` and returns its `resp_result.result`.
    pub async fn call(
        &self,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<Value, UpstreamError> {
        let form = self.signed_params(method, params, now_millis());
        let started = std::time::Instant::now();
        let mut request = self.http.post(&self.sync_url).form(&form);
        if let Some(ctx) = &self.context {
            for (name, value) in ctx.trace_headers() {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.map_err(classify)?;
        let status = response.status();
        let body = response.bytes().await.map_err(classify)?;
        tracing::debug!(
            method,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "aliexpress gateway call"
        );
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if let Some(err) = parsed.as_ref().and_then(|v| v.get("error_response")) {
            return Err(UpstreamError::Gateway {
                code: text(err.get("code")).unwrap_or_else(|| "unknown".into()),
                msg: text(err.get("msg")).unwrap_or_default(),
                sub_code: text(err.get("sub_code")),
                sub_msg: text(err.get("sub_msg")),
            });
        }
        if !status.is_success() {
            return Err(UpstreamError::Http(status.as_u16()));
        }
        let parsed =
            parsed.ok_or_else(|| UpstreamError::Malformed("the body is not JSON".into()))?;
        extract_result(method, parsed)
    }
}

/// Unwraps `<method>_response.resp_result.result`.
pub fn extract_result(method: &str, mut body: Value) -> Result<Value, UpstreamError> {
    let wrapper = format!("{}_response", method.replace('.', "_"));
    let mut resp = body
        .get_mut(&wrapper)
        .and_then(|w| w.get_mut("resp_result"))
        .map(Value::take)
        .ok_or_else(|| UpstreamError::Malformed(format!("no `{wrapper}.resp_result`")))?;
    let code = resp
        .get("resp_code")
        .and_then(|c| c.as_i64().or_else(|| c.as_str()?.parse().ok()))
        .ok_or_else(|| UpstreamError::Malformed("no `resp_code`".into()))?;
    if code != 200 {
        return Err(UpstreamError::Business {
            code,
            msg: text(resp.get("resp_msg")).unwrap_or_default(),
        });
    }
    Ok(resp
        .get_mut("result")
        .map(Value::take)
        .unwrap_or(Value::Null))
}

fn classify(err: reqwest::Error) -> UpstreamError {
    if err.is_timeout() {
        UpstreamError::Timeout
    } else {
        // Without the URL: it is ours, and keeps the message short.
        UpstreamError::Unavailable(err.without_url().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_is_unwrapped_from_the_method_response() {
        let body = json!({"aliexpress_affiliate_category_get_response": {"resp_result": {
            "resp_code": 200, "resp_msg": "Call succeeds", "result": {"total_result_count": 0}}}});
        assert_eq!(
            extract_result("aliexpress.affiliate.category.get", body).unwrap(),
            json!({"total_result_count": 0})
        );
    }

    #[test]
    fn other_resp_codes_are_errors() {
        let body = json!({"aliexpress_affiliate_link_generate_response": {"resp_result": {
            "resp_code": 405, "resp_msg": "too frequently"}}});
        assert_eq!(
            extract_result("aliexpress.affiliate.link.generate", body),
            Err(UpstreamError::Business {
                code: 405,
                msg: "too frequently".into()
            })
        );
    }
}
