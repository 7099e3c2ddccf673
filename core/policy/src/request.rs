//! The request as the policy sees it.
//!
//! The HTTP layer implements [`RequestView`] over its own request type (no copying needed);
//! [`Request`] is an owned implementation for tests, warming and `larder explain`.

use serde_json::Value;

/// The headers that make a request credentialed (lower case): such a request is never
/// answered from, nor stored in, a `public` entry, and `user` scope keys by them.
pub const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "cookie"];

/// What a policy may read from a request. Every method is cheap and allocation-free; the
/// policy only borrows.
pub trait RequestView {
    /// The HTTP method in upper case (`GET`).
    fn method(&self) -> &str;
    /// The request path without the query string (`/api/v2/barbers/7/slots`).
    fn path(&self) -> &str;
    /// The value of a path parameter of the matched route (`{barber_id}`), percent-decoded.
    fn path_param(&self, name: &str) -> Option<&str>;
    /// The first value of a query parameter, percent-decoded.
    fn query_param(&self, name: &str) -> Option<&str>;
    /// Calls `visit` once per query pair, in any order (the policy sorts when it needs to).
    fn visit_query<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str));
    /// A request header; `name` is lower case, the lookup must be case-insensitive.
    fn header(&self, name: &str) -> Option<&str>;
    /// The parsed JSON body, when the request has one.
    fn body(&self) -> Option<&Value> {
        None
    }
    /// The authenticated tenant, if any.
    fn tenant(&self) -> Option<&str> {
        None
    }
    /// The authenticated user, if any.
    fn user(&self) -> Option<&str> {
        None
    }
    /// The plugin that serves this route, if the caller knows it.
    fn plugin(&self) -> Option<&str> {
        None
    }
    /// The operation id of this route, if the caller knows it.
    fn operation(&self) -> Option<&str> {
        None
    }
    /// Whether the request has a header, whatever its value (even one that is not text).
    fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
    /// Whether the request carries any of the [`CREDENTIAL_HEADERS`].
    fn has_credentials(&self) -> bool {
        CREDENTIAL_HEADERS.iter().any(|h| self.has_header(h))
    }
}

/// An owned request: for tests, warming jobs and `larder explain`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Path parameters of the matched route.
    pub path_params: Vec<(String, String)>,
    /// Query pairs in arrival order.
    pub query: Vec<(String, String)>,
    /// Headers; names are matched case-insensitively.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON body.
    pub body: Option<Value>,
    /// Authenticated tenant.
    pub tenant: Option<String>,
    /// Authenticated user.
    pub user: Option<String>,
    /// Plugin serving the route.
    pub plugin: Option<String>,
    /// Operation id of the route.
    pub operation: Option<String>,
    /// Whether the request counts as credentialed, when the caller knows better than the
    /// default [`CREDENTIAL_HEADERS`] (the server's configured credential headers).
    pub credentialed: Option<bool>,
}

impl Request {
    /// A request with `method` and a target that may carry a query string
    /// (`/api/products?q=x&page=2`). Query components are percent-decoded.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, parse_query(q)),
            None => (target, Vec::new()),
        };
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query,
            ..Request::default()
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the JSON body.
    pub fn with_body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (as a space, form style). Invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RequestView for Request {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn path_param(&self, name: &str) -> Option<&str> {
        self.path_params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn visit_query<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str)) {
        for (k, v) in &self.query {
            visit(k, v);
        }
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn body(&self) -> Option<&Value> {
        self.body.as_ref()
    }
    fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    fn plugin(&self) -> Option<&str> {
        self.plugin.as_deref()
    }
    fn operation(&self) -> Option<&str> {
        self.operation.as_deref()
    }
    fn has_credentials(&self) -> bool {
        self.credentialed
            .unwrap_or_else(|| CREDENTIAL_HEADERS.iter().any(|h| self.has_header(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let r = Request::new("get", "/a/b?x=1&y=hello%20world&z=a+b&w");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/a/b");
        assert_eq!(r.query_param("y"), Some("hello world"));
        assert_eq!(r.query_param("z"), Some("a b"));
        assert_eq!(r.query_param("w"), Some(""));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
