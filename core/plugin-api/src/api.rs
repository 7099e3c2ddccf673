//! [`PluginApi`]: a plugin's poem-openapi API with its type erased.
//!
//! poem-openapi's `OpenApi` trait is not object-safe (its metadata functions take no
//! `self`), so one `OpenApiService` cannot hold a list of plugins' APIs. A [`PluginApi`] is
//! built *inside* the plugin's code: it keeps function pointers to the API type's metadata
//! and registration functions and a boxed closure that adds its routes. The core calls those
//! to merge every plugin into one document and one route tree, whether the plugin is
//! compiled in or loaded from a dynamic library.

use std::collections::HashMap;
use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::{Method, StatusCode};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use poem_openapi::__private::UrlQuery;
use poem_openapi::OpenApi;
use poem_openapi::registry::{MetaApi, Registry};

use crate::abi::{catch, guard};
use crate::plugin::PluginError;

/// Routes by path (poem syntax) and method, as poem-openapi produces them.
pub type RouteTable = HashMap<String, HashMap<Method, BoxEndpoint<'static>>>;

/// Produces an API's operations; see [`PluginApi::meta_fn`].
pub type MetaFn = fn() -> Result<Vec<MetaApi>, PluginError>;
/// Registers an API's schemas; see [`PluginApi::register_fn`].
pub type RegisterFn = fn(&mut Registry) -> Result<(), PluginError>;
type RoutesFn = Box<dyn FnOnce(Arc<str>) -> Result<RouteTable, PluginError> + Send>;

/// A plugin's API, ready for the core to merge. Build it with [`PluginApi::new`].
pub struct PluginApi {
    meta: MetaFn,
    register: RegisterFn,
    routes: RoutesFn,
}

impl std::fmt::Debug for PluginApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginApi").finish_non_exhaustive()
    }
}

fn meta_of<T: OpenApi>() -> Result<Vec<MetaApi>, PluginError> {
    catch(T::meta)
}

fn register_of<T: OpenApi>(registry: &mut Registry) -> Result<(), PluginError> {
    catch(|| T::register(registry))
}

impl PluginApi {
    /// Erases a poem-openapi API (a type with `#[OpenApi] impl`, or a tuple of them).
    pub fn new<T: OpenApi + Send + 'static>(api: T) -> Self {
        Self {
            meta: meta_of::<T>,
            register: register_of::<T>,
            routes: Box::new(move |plugin| {
                catch(move || {
                    let mut table = RouteTable::new();
                    api.add_routes(&mut table);
                    for methods in table.values_mut() {
                        for endpoint in methods.values_mut() {
                            let inner = std::mem::replace(endpoint, placeholder());
                            *endpoint = GuardedEndpoint {
                                inner,
                                plugin: plugin.clone(),
                            }
                            .boxed();
                        }
                    }
                    table
                })
            }),
        }
    }

    /// The API's operations, paths as the plugin wrote them (without the mount prefix).
    /// Callable any number of times.
    pub fn meta(&self) -> Result<Vec<MetaApi>, PluginError> {
        (self.meta)()
    }

    /// The metadata function itself, for building documents more than once.
    pub fn meta_fn(&self) -> MetaFn {
        self.meta
    }

    /// The registration function itself, for building documents more than once.
    pub fn register_fn(&self) -> RegisterFn {
        self.register
    }

    /// Registers the API's schemas, tags and security schemes.
    pub fn register(&self, registry: &mut Registry) -> Result<(), PluginError> {
        (self.register)(registry)
    }

    /// The API's endpoints, each guarded so that a panic answers 500 and the server lives on.
    pub fn into_routes(self, plugin: &str) -> Result<RouteTable, PluginError> {
        (self.routes)(plugin.into())
    }
}

fn placeholder() -> BoxEndpoint<'static> {
    poem::endpoint::make_sync(|_| StatusCode::INTERNAL_SERVER_ERROR)
        .map_to_response()
        .boxed()
}

/// Runs a plugin endpoint inside the host runtime and answers 500 if it panics.
struct GuardedEndpoint {
    inner: BoxEndpoint<'static>,
    plugin: Arc<str>,
}

impl Endpoint for GuardedEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        // poem-openapi's own service adds the parsed query before its endpoints run; the
        // core builds the router itself, so each plugin endpoint does it here.
        let query: Vec<(String, String)> = req.params().unwrap_or_default();
        req.extensions_mut().insert(UrlQuery(query));
        match guard(self.inner.call(req)).await {
            Ok(result) => result,
            Err(err) => {
                tracing::error!(plugin = %self.plugin, error = %err, "plugin handler panicked");
                let body = serde_json::json!({
                    "error": "internal_error",
                    "message": format!("plugin `{}` failed while handling this request", self.plugin),
                });
                Ok((StatusCode::INTERNAL_SERVER_ERROR, poem::web::Json(body)).into_response())
            }
        }
    }
}
