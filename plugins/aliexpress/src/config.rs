//! Settings: the typed `plugins.aliexpress.settings` block, and how it resolves against the
//! `ALIEXPRESS_*` environment into what the plugin runs with.

use std::fmt;
use std::time::Duration;

use larder_plugin::PluginError;
use schemars::JsonSchema;
use serde::Deserialize;

/// The AliExpress Open Platform gateway; the client posts to `{base}/sync`.
pub const DEFAULT_API_URL: &str = "https://api-sg.aliexpress.com";
/// Tracking id used when none is configured (the seed's default).
pub const DEFAULT_TRACKING_ID: &str = "gpt_chat";

/// Settings under `plugins.aliexpress.settings`. Every field is optional: an unset field
/// falls back to its environment variable, then to the default shown.
///
/// With no settings and no environment the plugin runs in mock mode on a generated catalog,
/// so it works with no credentials and no network.
///
/// Limits the core applies to every plugin, with the defaults this plugin wants (from the
/// seed): **rate limits** of 5 requests/s and 60 requests/min per client IP on `/api/*`
/// (429 with `Retry-After`), and **CORS** allowing `https://chat.openai.com` and
/// `https://chatgpt.com` (methods GET, POST; header `x-internal-key`), so GPT Actions can
/// call it.
#[derive(Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AliexpressConfig {
    /// `auto` (real when an app key and secret are set, mock otherwise), `real` or `mock`.
    /// Env: `ALIEXPRESS_MODE`. Default `auto`.
    pub mode: Option<Mode>,
    /// Open Platform app key. Env: `ALIEXPRESS_APP_KEY`.
    pub app_key: Option<String>,
    /// Open Platform app secret, the HMAC key of every request's `sign`. Never logged.
    /// Env: `ALIEXPRESS_APP_SECRET`.
    pub app_secret: Option<String>,
    /// Affiliate tracking id put on every product query and generated link.
    /// Env: `ALIEXPRESS_TRACKING_ID`. Default `gpt_chat`.
    pub tracking_id: Option<String>,
    /// Gateway base URL; requests go to `{api_url}/sync`. Env: `ALIEXPRESS_API_URL`.
    /// Default `https://api-sg.aliexpress.com`.
    pub api_url: Option<String>,
    /// Language of titles (`target_language`). Env: `ALIEXPRESS_LANGUAGE`. Default `EN`.
    pub language: Option<String>,
    /// Currency of prices (`target_currency`). Env: `ALIEXPRESS_CURRENCY`. Default `USD`.
    pub currency: Option<String>,
    /// Whole-request timeout for one gateway call, in milliseconds. Default `10000`.
    pub timeout_ms: Option<u64>,
    /// Connect timeout for the gateway, in milliseconds. Default `3000`.
    pub connect_timeout_ms: Option<u64>,
    /// When set, every `/api/*` request must carry it in `x-internal-key` (compared in
    /// constant time) or gets a 401. Env: `ALIEXPRESS_INTERNAL_KEY`. Default: no key.
    pub internal_key: Option<String>,
    /// Public base URL of this plugin (scheme, host and mount prefix, e.g.
    /// `https://api.example.com/aliexpress`), written as `servers[0].url` of
    /// `/openapi-gpt.json`. Set it in production. Default: derived from each request's
    /// `Host` and path (`X-Forwarded-Host`/`-Proto` count only when the core trusts proxy
    /// headers, `security.trust_forwarded_for`; otherwise it removes them).
    pub public_url: Option<String>,
}

/// Which data source answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Real when an app key and secret are configured, mock otherwise.
    Auto,
    /// Always the real gateway; start-up fails without credentials.
    Real,
    /// Always the generated catalog, even with credentials.
    Mock,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(Mode::Auto),
            "real" => Some(Mode::Real),
            "mock" => Some(Mode::Mock),
            _ => None,
        }
    }
}

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for signing and comparing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Real-gateway credentials.
#[derive(Clone)]
pub struct Credentials {
    /// App key (not secret, but kept out of logs all the same).
    pub app_key: String,
    /// App secret.
    pub app_secret: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("app_key", &"***")
            .field("app_secret", &self.app_secret)
            .finish()
    }
}

/// Settings after env fallbacks and defaults: what the plugin runs with.
#[derive(Clone)]
pub struct Settings {
    /// `Some` exactly when the plugin talks to the real gateway.
    pub credentials: Option<Credentials>,
    /// Gateway base URL (without `/sync`).
    pub api_url: String,
    /// Affiliate tracking id.
    pub tracking_id: String,
    /// `target_language`.
    pub language: String,
    /// `target_currency`.
    pub currency: String,
    /// One gateway call's timeout.
    pub timeout: Duration,
    /// Gateway connect timeout.
    pub connect_timeout: Duration,
    /// Required `x-internal-key` for `/api/*`.
    pub internal_key: Option<Secret>,
    /// `servers[0].url` of the GPT document.
    pub public_url: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("integration", &self.integration())
            .field("credentials", &self.credentials)
            .field("api_url", &self.api_url)
            .field("tracking_id", &self.tracking_id)
            .field("language", &self.language)
            .field("currency", &self.currency)
            .field("timeout", &self.timeout)
            .field("internal_key", &self.internal_key.as_ref().map(|_| "***"))
            .field("public_url", &self.public_url)
            .finish()
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Settings {
    /// Resolves settings: each unset field falls back to `env(NAME)`, then to its default.
    /// `env` is `std::env::var` in the server; tests pass their own.
    pub fn resolve(
        config: AliexpressConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, PluginError> {
        let pick =
            |value: Option<String>, var: &str| non_empty(value).or_else(|| non_empty(env(var)));
        let mode = match config.mode {
            Some(mode) => mode,
            None => match non_empty(env("ALIEXPRESS_MODE")) {
                None => Mode::Auto,
                Some(raw) => Mode::parse(&raw).ok_or_else(|| PluginError::Config {
                    path: "mode".into(),
                    message: format!("ALIEXPRESS_MODE is `{raw}`; use `auto`, `real` or `mock`"),
                })?,
            },
        };
        let app_key = pick(config.app_key, "ALIEXPRESS_APP_KEY");
        let app_secret = pick(config.app_secret, "ALIEXPRESS_APP_SECRET");
        let credentials = match (app_key, app_secret) {
            (Some(app_key), Some(secret)) => Some(Credentials {
                app_key,
                app_secret: Secret::new(secret),
            }),
            _ => None,
        };
        let credentials = match mode {
            Mode::Mock => None,
            Mode::Auto => credentials,
            Mode::Real => Some(credentials.ok_or_else(|| {
                PluginError::Config {
                    path: "mode".into(),
                    message: "mode is `real` but no app key and secret are configured: set \
                          `app_key` and `app_secret` (or ALIEXPRESS_APP_KEY and \
                          ALIEXPRESS_APP_SECRET), or use mode `auto`/`mock`"
                        .into(),
                }
            })?),
        };
        let api_url = pick(config.api_url, "ALIEXPRESS_API_URL")
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(PluginError::Config {
                path: "api_url".into(),
                message: format!("`{api_url}` is not an http(s) URL"),
            });
        }
        let millis = |value: Option<u64>, default: u64, path: &str| match value {
            Some(0) => Err(PluginError::Config {
                path: path.into(),
                message: "must be at least 1 millisecond".into(),
            }),
            Some(v) => Ok(Duration::from_millis(v)),
            None => Ok(Duration::from_millis(default)),
        };
        Ok(Settings {
            credentials,
            api_url: api_url.trim_end_matches('/').to_owned(),
            tracking_id: pick(config.tracking_id, "ALIEXPRESS_TRACKING_ID")
                .unwrap_or_else(|| DEFAULT_TRACKING_ID.to_owned()),
            language: pick(config.language, "ALIEXPRESS_LANGUAGE")
                .unwrap_or_else(|| "EN".to_owned()),
            currency: pick(config.currency, "ALIEXPRESS_CURRENCY")
                .unwrap_or_else(|| "USD".to_owned()),
            timeout: millis(config.timeout_ms, 10_000, "timeout_ms")?,
            connect_timeout: millis(config.connect_timeout_ms, 3_000, "connect_timeout_ms")?,
            internal_key: pick(config.internal_key, "ALIEXPRESS_INTERNAL_KEY").map(Secret::new),
            public_url: non_empty(config.public_url).map(|u| u.trim_end_matches('/').to_owned()),
        })
    }

    /// `real` or `mock`: what `metadata.api_integration` says.
    pub fn integration(&self) -> &'static str {
        if self.credentials.is_some() {
            "real"
        } else {
            "mock"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn auto_is_mock_without_credentials_and_real_with_them() {
        let s = Settings::resolve(AliexpressConfig::default(), &env(&[])).unwrap();
        assert_eq!(s.integration(), "mock");
        assert_eq!(s.api_url, DEFAULT_API_URL);
        let s = Settings::resolve(
            AliexpressConfig::default(),
            &env(&[("ALIEXPRESS_APP_KEY", "k"), ("ALIEXPRESS_APP_SECRET", "s")]),
        )
        .unwrap();
        assert_eq!(s.integration(), "real");
    }

    #[test]
    fn settings_win_over_env_and_mock_wins_over_credentials() {
        let config = AliexpressConfig {
            mode: Some(Mode::Mock),
            tracking_id: Some("mine".into()),
            ..Default::default()
        };
        let s = Settings::resolve(
            config,
            &env(&[
                ("ALIEXPRESS_APP_KEY", "k"),
                ("ALIEXPRESS_APP_SECRET", "s"),
                ("ALIEXPRESS_TRACKING_ID", "theirs"),
            ]),
        )
        .unwrap();
        assert_eq!(s.integration(), "mock");
        assert_eq!(s.tracking_id, "mine");
    }

    #[test]
    fn real_without_credentials_and_bad_env_mode_are_config_errors() {
        let config = AliexpressConfig {
            mode: Some(Mode::Real),
            ..Default::default()
        };
        let err = Settings::resolve(config, &env(&[])).err().unwrap();
        assert!(matches!(err, PluginError::Config { ref path, .. } if path == "mode"));
        let err = Settings::resolve(
            AliexpressConfig::default(),
            &env(&[("ALIEXPRESS_MODE", "sometimes")]),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = Settings::resolve(
            AliexpressConfig {
                internal_key: Some("internal-key-value".into()),
                ..Default::default()
            },
            &env(&[
                ("ALIEXPRESS_APP_KEY", "the-app-key"),
                ("ALIEXPRESS_APP_SECRET", "the-app-secret"),
            ]),
        )
        .unwrap();
        let shown = format!("{s:?}");
        for secret in ["the-app-key", "the-app-secret", "internal-key-value"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
