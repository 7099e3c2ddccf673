//! A plugin with one route that panics and one that works: the host must answer 500 for
//! the first and keep serving the second.

use larder_plugin::{Plugin, PluginApi, PluginError, PluginInit};
use poem_openapi::OpenApi;
use poem_openapi::payload::PlainText;

pub struct Faulty;

#[derive(poem_openapi::ApiResponse)]
enum CookieResponse {
    /// A response with a session cookie.
    #[oai(status = 200)]
    Ok(
        PlainText<&'static str>,
        #[oai(header = "set-cookie")] String,
    ),
}

struct Api;

#[OpenApi]
impl Api {
    /// Always panics.
    #[oai(path = "/boom", method = "get", operation_id = "faulty_boom")]
    async fn boom(&self) -> PlainText<String> {
        let items: Vec<u32> = Vec::new();
        PlainText(items[3].to_string())
    }

    /// Sets a cookie: a response that must never be stored in a shared cache.
    #[oai(path = "/cookie", method = "get", operation_id = "faulty_cookie")]
    async fn cookie(&self) -> CookieResponse {
        CookieResponse::Ok(PlainText("session set"), "session=secret; HttpOnly".into())
    }

    /// Always works.
    #[oai(path = "/ok", method = "get", operation_id = "faulty_ok")]
    async fn ok(&self) -> PlainText<&'static str> {
        PlainText("still here")
    }
}

impl Plugin for Faulty {
    type Config = ();
    const NAME: &'static str = "faulty";
    const VERSION: &'static str = "0.1.0";

    async fn new(_: PluginInit<()>) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(Api)
    }
}

larder_plugin::export_plugin!(Faulty);
