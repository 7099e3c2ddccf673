//! A local OTLP/HTTP trace sink: the collector the `l1-hit-traced` scenario's Larder
//! exports to, so the bench measures export without anything beyond loopback.
//!
//! It listens on `127.0.0.1:0`, accepts `POST /v1/traces` with a protobuf body
//! (`Content-Type: application/x-protobuf`) and answers `200` with an empty
//! `ExportTraceServiceResponse`: zero body bytes, `Content-Type: application/x-protobuf`.
//! It counts export requests, body bytes, spans and root spans (spans without a parent:
//! with a `parentbased_*` sampler and clients sending no `traceparent`, one per sampled
//! request). Anything else gets a 4xx and is counted as rejected, so a misconfigured
//! exporter shows up in the report instead of looking like silence.
//!
//! Spans are counted by walking the protobuf wire format ([`count_spans`]), not by
//! decoding into OTLP types: it needs no dependency, copies nothing, and only four field
//! numbers of the schema matter. A body sent with a `Content-Encoding` (the exporter's
//! gzip option, off by default) is counted as an export but not looked into.
//!
//! It runs on its own thread with a current-thread tokio runtime, pinned like the load
//! generator and `redis-server` to the client cores: the server cores are what the bench
//! measures, and a collector would not share them in a deployment either. Its work, a few
//! export requests a second, is small next to the generator's.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use anyhow::Context;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{http, procs};

/// The OTLP/HTTP traces path.
pub const TRACES_PATH: &str = "/v1/traces";
/// Larger request heads are refused.
const MAX_HEAD: usize = 64 * 1024;
/// Larger bodies are refused (the SDK's default batch of 512 spans is far below this).
const MAX_BODY: usize = 64 << 20;

#[derive(Default)]
struct Counts {
    exports: AtomicU64,
    bytes: AtomicU64,
    spans: AtomicU64,
    root_spans: AtomicU64,
    undecoded: AtomicU64,
    malformed: AtomicU64,
    rejected: AtomicU64,
}

impl Counts {
    fn add(field: &AtomicU64, n: u64) {
        field.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the sink has received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// Export requests answered 200.
    pub exports: u64,
    /// Their body bytes (as sent, before any content decoding).
    pub bytes: u64,
    /// Spans in them.
    pub spans: u64,
    /// Of which without a parent span.
    pub root_spans: u64,
    /// Exports not looked into (a `Content-Encoding` other than identity): their spans are
    /// not counted.
    pub undecoded: u64,
    /// `POST /v1/traces` with a body that is not protobuf (answered 400).
    pub malformed: u64,
    /// Other requests (wrong path, method or content type; answered 4xx).
    pub rejected: u64,
}

impl SinkStats {
    /// What arrived since `earlier` (a snapshot of the same sink).
    pub fn since(self, earlier: Self) -> Self {
        Self {
            exports: self.exports.saturating_sub(earlier.exports),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            spans: self.spans.saturating_sub(earlier.spans),
            root_spans: self.root_spans.saturating_sub(earlier.root_spans),
            undecoded: self.undecoded.saturating_sub(earlier.undecoded),
            malformed: self.malformed.saturating_sub(earlier.malformed),
            rejected: self.rejected.saturating_sub(earlier.rejected),
        }
    }

    /// Whether spans evidently arrived: exports accepted, and spans counted in them (or
    /// bodies it could not look into).
    pub fn received_spans(&self) -> bool {
        self.exports > 0 && (self.spans > 0 || self.undecoded > 0)
    }
}

/// A running sink; stops (and joins its thread) on drop.
pub struct Sink {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts one on `127.0.0.1:0`, its thread pinned to `cores` if given.
    pub fn start(cores: Option<Vec<usize>>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the OTLP sink")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = counts.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-sink".into())
            .spawn(move || {
                if let Some(cores) = &cores {
                    let _ = procs::pin_current(cores);
                }
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("  otlp sink: no runtime: {e}");
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                rt.block_on(local.run_until(serve(listener, shared, stopped)));
            })
            .context("spawning the OTLP sink thread")?;
        Ok(Self {
            addr,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is appended by the
    /// exporter).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SinkStats {
        let c = &*self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkStats {
            exports: get(&c.exports),
            bytes: get(&c.bytes),
            spans: get(&c.spans),
            root_spans: get(&c.root_spans),
            undecoded: get(&c.undecoded),
            malformed: get(&c.malformed),
            rejected: get(&c.rejected),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    counts: Arc<Counts>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("  otlp sink: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(connection(stream, counts.clone()));
                }
                // Out of descriptors and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
        }
    }
}

/// What the sink needs of a request head.
#[derive(Debug, Default)]
struct Request {
    method: String,
    path: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_length: Option<usize>,
    chunked: bool,
    expect_continue: bool,
    close: bool,
    len: usize,
}

fn parse_request(buf: &[u8]) -> anyhow::Result<Option<Request>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf).context("malformed request")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let mut r = Request {
        method: req.method.unwrap_or_default().to_owned(),
        path: req.path.unwrap_or_default().to_owned(),
        // HTTP/1.0 closes unless asked to keep alive.
        close: req.version == Some(0),
        len,
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_owned();
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "content-type" => r.content_type = Some(value),
            "content-encoding" => r.content_encoding = Some(value),
            "content-length" => {
                r.content_length = Some(value.parse().context("bad Content-Length")?)
            }
            "transfer-encoding" => r.chunked = value.to_ascii_lowercase().contains("chunked"),
            "expect" => r.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    r.close = true;
                } else if v.contains("keep-alive") {
                    r.close = false;
                }
            }
            _ => {}
        }
    }
    Ok(Some(r))
}

/// Reads more bytes into `buf`; `false` at EOF or on an error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.reserve(64 * 1024);
    matches!(stream.read_buf(buf).await, Ok(n) if n > 0)
}

async fn respond(stream: &mut TcpStream, status: u16, extra: &str, close: bool) -> bool {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    stream.write_all(head.as_bytes()).await.is_ok()
}

/// One keep-alive connection: requests in order until the client closes.
async fn connection(mut stream: TcpStream, counts: Arc<Counts>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let req = loop {
            match parse_request(&buf) {
                Ok(Some(r)) => break r,
                Ok(None) if buf.len() > MAX_HEAD => {
                    Counts::add(&counts.rejected, 1);
                    respond(&mut stream, 431, "", true).await;
                    return;
                }
                Ok(None) => {
                    if !fill(&mut stream, &mut buf).await {
                        return;
                    }
                }
                Err(_) => {
                    Counts::add(&counts.rejected, 1);
                    respond(&mut stream, 400, "", true).await;
                    return;
                }
            }
        };
        if req.content_length.unwrap_or(0) > MAX_BODY {
            Counts::add(&counts.rejected, 1);
            respond(&mut stream, 413, "", true).await;
            return;
        }
        if req.expect_continue
            && stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        // The body, and where the next request starts.
        let (body, used) = if req.chunked {
            loop {
                if let Some((n, _)) = http::chunked_end(&buf[req.len..]) {
                    break (http::dechunk(&buf[req.len..req.len + n]), req.len + n);
                }
                if buf.len() > req.len + MAX_BODY {
                    Counts::add(&counts.rejected, 1);
                    respond(&mut stream, 413, "", true).await;
                    return;
                }
                if !fill(&mut stream, &mut buf).await {
                    return;
                }
            }
        } else {
            let end = req.len + req.content_length.unwrap_or(0);
            while buf.len() < end {
                if !fill(&mut stream, &mut buf).await {
                    return;
                }
            }
            (buf[req.len..end].to_vec(), end)
        };
        let (status, extra) = handle(&req, &body, &counts);
        if !respond(&mut stream, status, extra, req.close).await || req.close {
            return;
        }
        buf.drain(..used);
    }
}

/// The answer to one request: status and extra header lines; counts it.
fn handle(req: &Request, body: &[u8], counts: &Counts) -> (u16, &'static str) {
    let path = req.path.split('?').next().unwrap_or_default();
    if path != TRACES_PATH {
        Counts::add(&counts.rejected, 1);
        return (404, "");
    }
    if req.method != "POST" {
        Counts::add(&counts.rejected, 1);
        return (405, "Allow: POST\r\n");
    }
    let media = req
        .content_type
        .as_deref()
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/x-protobuf") {
        Counts::add(&counts.rejected, 1);
        return (415, "");
    }
    let encoded = req
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
    let spans = if encoded {
        None
    } else {
        match count_spans(body) {
            Some(s) => Some(s),
            None => {
                Counts::add(&counts.malformed, 1);
                return (400, "");
            }
        }
    };
    Counts::add(&counts.exports, 1);
    Counts::add(&counts.bytes, body.len() as u64);
    match spans {
        Some((spans, roots)) => {
            Counts::add(&counts.spans, spans);
            Counts::add(&counts.root_spans, roots);
        }
        None => Counts::add(&counts.undecoded, 1),
    }
    (200, "Content-Type: application/x-protobuf\r\n")
}

/// A field's value, as far as counting spans needs it.
enum Wire<'a> {
    /// Length-delimited: a message, string or bytes.
    Len(&'a [u8]),
    /// Varint, fixed32 or fixed64.
    Scalar,
}

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The fields of one protobuf message; an item is `None` (and the last) where the bytes
/// are not valid wire format.
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
    failed: bool,
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields {
        buf,
        at: 0,
        failed: false,
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Wire<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.buf.len() {
            return None;
        }
        let field = (|| {
            let key = varint(self.buf, &mut self.at)?;
            let (number, wire_type) = (key >> 3, key & 7);
            if number == 0 {
                return None;
            }
            let skip = |n: usize, at: &mut usize| {
                let end = at.checked_add(n).filter(|&e| e <= self.buf.len())?;
                *at = end;
                Some(Wire::Scalar)
            };
            let value = match wire_type {
                0 => varint(self.buf, &mut self.at).map(|_| Wire::Scalar)?,
                1 => skip(8, &mut self.at)?,
                5 => skip(4, &mut self.at)?,
                2 => {
                    let n = usize::try_from(varint(self.buf, &mut self.at)?).ok()?;
                    let start = self.at;
                    skip(n, &mut self.at)?;
                    Wire::Len(&self.buf[start..self.at])
                }
                // Groups (3, 4) are not used by OTLP; anything else is not protobuf.
                _ => return None,
            };
            Some((number, value))
        })();
        self.failed = field.is_none();
        Some(field)
    }
}

/// Spans and root spans (empty `parent_span_id`) in an `ExportTraceServiceRequest`;
/// `None` when the body is not valid protobuf.
///
/// The fields walked (opentelemetry-proto, `collector/trace/v1` and `trace/v1`):
/// `ExportTraceServiceRequest.resource_spans = 1`, `ResourceSpans.scope_spans = 2`,
/// `ScopeSpans.spans = 2`, `Span.parent_span_id = 4`. Other fields are skipped unread.
pub fn count_spans(body: &[u8]) -> Option<(u64, u64)> {
    let (mut spans, mut roots) = (0u64, 0u64);
    for f in fields(body) {
        let (1, Wire::Len(resource_spans)) = f? else {
            continue;
        };
        for f in fields(resource_spans) {
            let (2, Wire::Len(scope_spans)) = f? else {
                continue;
            };
            for f in fields(scope_spans) {
                let (2, Wire::Len(span)) = f? else {
                    continue;
                };
                spans += 1;
                let mut parent = false;
                for f in fields(span) {
                    if let (4, Wire::Len(id)) = f? {
                        parent = !id.is_empty();
                    }
                }
                if !parent {
                    roots += 1;
                }
            }
        }
    }
    Some((spans, roots))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn len_field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, number << 3 | 2);
        put_varint(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
        out
    }

    /// A span as the SDK encodes one: ids, name, kind (varint), start and end (fixed64),
    /// an attribute, flags (fixed32, a two-byte key: field 16).
    fn span(parent: Option<[u8; 8]>) -> Vec<u8> {
        let mut s = len_field(1, &[7; 16]);
        s.extend(len_field(2, &[9; 8]));
        if let Some(p) = parent {
            s.extend(len_field(4, &p));
        }
        s.extend(len_field(5, b"GET /bench/l1/{id}"));
        s.extend([6 << 3, 2]);
        s.push(7 << 3 | 1);
        s.extend(1_700_000_000_000_000_000u64.to_le_bytes());
        s.push(8 << 3 | 1);
        s.extend(1_700_000_000_000_100_000u64.to_le_bytes());
        let mut kv = len_field(1, b"cache.hit");
        kv.extend(len_field(2, &[1 << 3, 1]));
        s.extend(len_field(9, &kv));
        s.extend([0x85, 0x01, 1, 0, 0, 0]);
        s
    }

    /// Two resources: one with two scopes (1 root + 2 children, 1 child), one with one
    /// scope (1 root): 5 spans, 2 roots.
    fn request() -> Vec<u8> {
        let scope = |spans: &[Vec<u8>]| {
            let mut s = len_field(1, &len_field(1, b"larder"));
            for sp in spans {
                s.extend(len_field(2, sp));
            }
            s.extend(len_field(3, b"https://opentelemetry.io/schemas/1.0"));
            s
        };
        let resource = |scopes: &[Vec<u8>]| {
            let mut r = len_field(1, &len_field(1, &len_field(1, b"service.name")));
            for sc in scopes {
                r.extend(len_field(2, sc));
            }
            r
        };
        let child = Some([3; 8]);
        let mut body = len_field(
            1,
            &resource(&[
                scope(&[span(None), span(child), span(child)]),
                scope(&[span(child)]),
            ]),
        );
        body.extend(len_field(1, &resource(&[scope(&[span(None)])])));
        body
    }

    #[test]
    fn counts_spans_and_roots() {
        assert_eq!(count_spans(&request()), Some((5, 2)));
        assert_eq!(count_spans(&[]), Some((0, 0)));
        // An empty parent_span_id is a root too.
        let body = len_field(1, &len_field(2, &len_field(2, &len_field(4, &[]))));
        assert_eq!(count_spans(&body), Some((1, 1)));
        // Truncated, a bad wire type, text.
        let r = request();
        assert_eq!(count_spans(&r[..r.len() - 3]), None);
        assert_eq!(count_spans(&[0x0b, 0x00]), None);
        assert_eq!(count_spans(b"{\"resourceSpans\":[]}"), None);
    }

    fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn post(body: &[u8], content_type: &str, close: bool) -> Vec<u8> {
        let mut r = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: sink\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn sink_answers_exports_and_counts_them() {
        let sink = Sink::start(None).unwrap();
        let body = request();
        // Two exports on one keep-alive connection, the second closing it.
        let mut raw = post(&body, "application/x-protobuf", false);
        raw.extend(post(&body, "application/x-protobuf", true));
        let out = exchange(sink.addr(), &raw);
        let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 2, "{out}");
        for a in &answers {
            let a = a.to_ascii_lowercase();
            assert!(a.starts_with("200 ok\r\n"), "{out}");
            assert!(
                a.contains("content-type: application/x-protobuf\r\n"),
                "{out}"
            );
            assert!(a.contains("content-length: 0\r\n"), "{out}");
            assert!(a.ends_with("\r\n\r\n"), "an empty body: {out}");
        }
        // A chunked export.
        let mut chunked = b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        let (a, b) = body.split_at(10);
        for part in [a, b] {
            chunked.extend(format!("{:x}\r\n", part.len()).into_bytes());
            chunked.extend_from_slice(part);
            chunked.extend(b"\r\n");
        }
        chunked.extend(b"0\r\n\r\n");
        assert!(exchange(sink.addr(), &chunked).starts_with("HTTP/1.1 200 "));
        // OTLP/JSON, another path, garbage protobuf.
        let json = exchange(sink.addr(), &post(b"{}", "application/json", true));
        assert!(json.starts_with("HTTP/1.1 415 "), "{json}");
        let other = exchange(
            sink.addr(),
            b"GET /v1/metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
        let bad = exchange(
            sink.addr(),
            &post(&[0x0b, 0x00], "application/x-protobuf", true),
        );
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");

        let st = sink.stats();
        assert_eq!(
            st,
            SinkStats {
                exports: 3,
                bytes: 3 * body.len() as u64,
                spans: 15,
                root_spans: 6,
                undecoded: 0,
                malformed: 1,
                rejected: 2,
            }
        );
        assert!(st.received_spans());
        assert_eq!(st.since(st), SinkStats::default());
        assert!(!SinkStats::default().received_spans());
        assert!(sink.endpoint().starts_with("http://127.0.0.1:"));
        drop(sink);
    }
}
