//! # `aliexpress`: the AliExpress affiliate API proxy
//!
//! A built-in Larder plugin (seeds 000 and 001): product search, details, hot products,
//! categories and affiliate links from the AliExpress Open Platform gateway, or from a
//! deterministic mock catalog when no credentials are configured. Every data route answers
//! in the envelope `{success, data, metadata{cache_hit, cache_enabled, processing_time_ms,
//! api_integration, request_id, timestamp}}`.
//!
//! The `larder` binary registers it with `registry.register::<larder_aliexpress::AliexpressPlugin>();`.
//!
//! ## Layout
//! - [`config`]: the typed settings and their `ALIEXPRESS_*` env fallbacks.
//! - [`api`]: the routes; each cached one goes through `PluginContext::get_or_load` under
//!   a named rule ([`api::rules`]).
//! - [`query`]: normalised inputs and canonical cache keys.
//! - [`source`]: real gateway or mock catalog; [`client`] + [`sign`] talk to the gateway,
//!   [`mock`] generates the catalog.
//! - [`reply`]: envelopes and error mapping (bad input → 400 naming the field, gateway
//!   failure → 502 with the gateway's code and message).
//! - [`frame`]: per-request metadata and the `x-internal-key` check.
//! - [`gpt`]: `/openapi-gpt.json` for GPT Actions.
//!
//! ## A request
//! `FramedEndpoint` sets the request id and start time and checks the internal key →
//! poem-openapi parses and validates (a failure becomes a 400 envelope through
//! [`reply::bad_request`]) → the handler normalises the input into a cache key →
//! `get_or_load(rule, key, loader)` → on a miss the loader calls the [`source::Source`] →
//! the envelope reports whether the data came from the cache.

pub mod api;
pub mod client;
pub mod config;
pub mod frame;
pub mod gpt;
pub mod mock;
pub mod model;
pub mod query;
pub mod reply;
pub mod sign;
pub mod source;

use std::sync::{Arc, OnceLock};

use larder_plugin::{
    CACHE_MANAGE, CACHE_READ, HttpDefaults, NamedRuleSpec, Plugin, PluginApi, PluginContext,
    PluginError, PluginInit, RoutePermission, WarmRequest, WarmSource, WarmSourceSpec,
};

use crate::api::{AliexpressApi, State};
use crate::client::GatewayClient;
use crate::config::{AliexpressConfig, Settings};
use crate::frame::Framed;
use crate::mock::MockCatalog;
use crate::source::Source;

/// Name of the warm source that loads the category tree.
pub const WARM_CATEGORIES: WarmSource = WarmSource::new(
    "categories",
    "Loads the category tree into the cache, then lists `GET /api/categories` and each \
     top-level category's children.",
);

/// Who the warming job's requests are made as.
const WARM_PRINCIPAL: &str = "warm:aliexpress";

/// The plugin.
pub struct AliexpressPlugin {
    state: Arc<State>,
}

impl std::fmt::Debug for AliexpressPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AliexpressPlugin")
            .field("settings", &self.state.settings)
            .finish_non_exhaustive()
    }
}

impl AliexpressPlugin {
    /// Builds the plugin, reading unset settings from `env` (the server passes the process
    /// environment; tests pass their own so the machine's variables cannot leak in).
    pub fn build(
        config: AliexpressConfig,
        context: PluginContext,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, PluginError> {
        let settings = Settings::resolve(config, env)?;
        let source = match &settings.credentials {
            Some(credentials) => Source::Real(
                GatewayClient::new(&settings, credentials.clone())
                    .map_err(PluginError::Failed)?
                    .with_context(context.clone()),
            ),
            None => Source::Mock(MockCatalog),
        };
        Ok(Self {
            state: Arc::new(State {
                settings,
                source,
                context,
                gpt_document: OnceLock::new(),
            }),
        })
    }

    /// The resolved settings (secrets hidden from `Debug`).
    pub fn settings(&self) -> &Settings {
        &self.state.settings
    }
}

impl Plugin for AliexpressPlugin {
    type Config = AliexpressConfig;
    const NAME: &'static str = "aliexpress";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "AliExpress affiliate API proxy: products, categories, affiliate links (real or mock).";
    // The shipped policy, kept in the repository's policy folder where operators read it.
    const DEFAULT_POLICY: Option<&'static str> =
        Some(include_str!("../../../policies/aliexpress.yaml"));

    async fn new(init: PluginInit<AliexpressConfig>) -> Result<Self, PluginError> {
        Self::build(init.config, init.context, &|name| std::env::var(name).ok())
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(Framed {
            inner: AliexpressApi {
                state: self.state.clone(),
            },
            integration: self.state.settings.integration(),
            internal_key: self.state.settings.internal_key.clone(),
            ctx: self.state.context.clone(),
        })
    }

    /// The seed's error envelope for the core's answers on these paths (429, 401, 403,
    /// 405, 413...), so clients parse one shape.
    fn core_error_body(
        &self,
        _status: u16,
        error: &str,
        message: &str,
    ) -> Option<serde_json::Value> {
        use poem_openapi::types::ToJSON;
        let frame = reply::Frame::new(
            None,
            self.state.settings.integration(),
            self.state.context.now(),
        );
        let envelope = model::ErrorEnvelope {
            success: false,
            error: model::ErrorBody {
                code: error.to_owned(),
                message: message.to_owned(),
                field: None,
                upstream: None,
            },
            metadata: frame.metadata(false, false),
        };
        envelope.to_json()
    }

    fn core_error_schema(&self) -> Option<String> {
        use poem_openapi::types::Type;
        Some(model::ErrorEnvelope::name().into_owned())
    }

    fn named_rules(&self) -> Vec<NamedRuleSpec> {
        use api::rules;
        vec![
            rules::SEARCH.spec(
                &[
                    "search_products",
                    "search_products_post",
                    "list_products",
                    "list_products_post",
                ],
                "`search:{real|mock}:` + an xxh3-128 of the sorted, non-empty search parameters (language and currency included), so GET and POST forms of one search share it",
            ),
            rules::HOT_PRODUCTS.spec(
                &["hot_products", "hot_products_post"],
                "`hot:{real|mock}:` + an xxh3-128 of the sorted, non-empty parameters",
            ),
            rules::PRODUCT_DETAILS.spec(
                &["get_product_details", "get_products_details"],
                "`details:` + the language and currency + the sorted, de-duplicated product ids",
            ),
            rules::CATEGORIES.spec(
                &["list_categories", "list_category_children"],
                "`categories:{real|mock}:{language}` (the children route reads the cached list)",
            ),
            rules::CATEGORY_CHILDREN.spec(
                &["list_category_children"],
                "`category-children:{real|mock}:{language}:{parent_id}`",
            ),
            rules::AFFILIATE_LINKS.spec(
                &["get_affiliate_link", "generate_affiliate_links"],
                "`affiliate-links:{real|mock}:` + an xxh3-128 of the tracking id and the canonical URLs",
            ),
        ]
    }

    /// The seed's limits (5 requests per second and 60 per minute per client IP) and CORS
    /// for ChatGPT's origins, which call the API from GPT Actions with `x-internal-key`.
    fn http_defaults(&self) -> HttpDefaults {
        HttpDefaults {
            rate_per_second: Some(5),
            rate_per_minute: Some(60),
            cors_origins: vec![
                "https://chat.openai.com".into(),
                "https://chatgpt.com".into(),
            ],
            cors_headers: vec!["x-internal-key".into()],
            ..HttpDefaults::default()
        }
    }

    /// The seed's cache aliases need the core's admin keys (or the permissions).
    fn permissions(&self) -> Vec<RoutePermission> {
        vec![
            RoutePermission::new("get_cache_stats", &[CACHE_READ]),
            RoutePermission::new("clear_cache", &[CACHE_MANAGE]),
        ]
    }

    fn warm_sources(&self) -> Vec<WarmSourceSpec> {
        vec![WARM_CATEGORIES.spec()]
    }

    async fn warm_source(&self, name: &str) -> Result<Vec<WarmRequest>, PluginError> {
        if name != WARM_CATEGORIES.name {
            return Err(PluginError::failed(format!(
                "plugin `aliexpress` has no warm source `{name}`; it has `{}`",
                WARM_CATEGORIES.name
            )));
        }
        let all = self
            .state
            .all_categories()
            .await
            .map_err(|e| PluginError::failed(format!("warming categories failed: {e}")))?;
        // Sent as the server's own warming principal, which the internal-key check lets
        // through (no client can present one: the core sets it only on its warm requests).
        let warm = |path: String| WarmRequest::get(path).as_principal(WARM_PRINCIPAL, None, &[]);
        let mut requests = vec![warm("/api/categories".into())];
        requests.extend(
            all.value
                .iter()
                .filter(|c| c.parent_category_id.is_none())
                .map(|c| warm(format!("/api/categories/{}/children", c.category_id))),
        );
        Ok(requests)
    }

    async fn start(&self) -> Result<(), PluginError> {
        let s = &self.state.settings;
        tracing::info!(
            integration = s.integration(),
            api_url = %s.api_url,
            internal_key = s.internal_key.is_some(),
            "aliexpress plugin ready"
        );
        Ok(())
    }
}
