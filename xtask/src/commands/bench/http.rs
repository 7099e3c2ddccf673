//! Just enough HTTP/1.1 for the bench: response framing shared by the load generator, and
//! a blocking one-shot client for control calls (admin API, counters).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// A parsed response head.
#[derive(Debug, Default, Clone)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Bytes of the head (status line and headers).
    pub len: usize,
    /// `Content-Length`, when sent.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Cache-Status` value.
    pub cache_status: Option<String>,
    /// `Content-Encoding` value.
    pub content_encoding: Option<String>,
}

/// Parses a response head from `buf`; `None` while incomplete.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf).context("malformed response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        len,
        ..Head::default()
    };
    for h in resp.headers.iter() {
        let value = || String::from_utf8_lossy(h.value).into_owned();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = h.value.eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("cache-status") {
            head.cache_status = Some(value());
        } else if h.name.eq_ignore_ascii_case("content-encoding") {
            head.content_encoding = Some(value());
        }
    }
    Ok(Some(head))
}

/// For a chunked body starting at `buf[0]`: `Some((bytes consumed, payload bytes))` once
/// the last chunk and the final CRLF are in `buf`.
pub fn chunked_end(buf: &[u8]) -> Option<(usize, usize)> {
    let (mut at, mut payload) = (0usize, 0usize);
    loop {
        let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&buf[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
            return Some((end + 2, payload));
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        payload += size;
        at += size + 2;
    }
}

/// The payload of a chunked body (as far as it is complete).
pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..pos])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        body = &body[pos + 2..];
        if size == 0 || body.len() < size {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
    out
}

/// A complete response from [`request`].
#[derive(Debug)]
pub struct Reply {
    /// Its head.
    pub head: Head,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {}: not JSON: {}",
                self.head.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Whether `Cache-Status` says the response came from the cache.
    pub fn is_hit(&self) -> bool {
        self.head.cache_status.as_deref().is_some_and(is_hit)
    }
}

/// Whether a `Cache-Status` value is a hit (fresh or stale).
pub fn is_hit(cache_status: &str) -> bool {
    cache_status.split(';').any(|p| p.trim() == "hit")
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<Reply> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    s.write_all(&bytes)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .with_context(|| format!("{method} {path}"))?;
    let Some(head) = parse_head(&buf)? else {
        bail!("{method} {path}: incomplete response");
    };
    let rest = &buf[head.len..];
    let body = if head.chunked {
        dechunk(rest)
    } else {
        rest[..head.content_length.unwrap_or(rest.len()).min(rest.len())].to_vec()
    };
    Ok(Reply { head, body })
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    request(addr, "GET", path, &[], None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_framing() {
        let body = b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\nNEXT";
        assert_eq!(chunked_end(body), Some((body.len() - 4, 8)));
        assert_eq!(chunked_end(&body[..10]), None);
        assert_eq!(dechunk(body), b"helloabc");
    }

    #[test]
    fn head_fields() {
        let r =
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncache-status: larder; hit; ttl=5\r\n\r\nabc";
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(
            (h.status, h.content_length, h.len),
            (200, Some(3), r.len() - 3)
        );
        assert!(is_hit(h.cache_status.as_deref().unwrap()));
        assert!(!is_hit("larder; fwd=uri-miss; stored"));
    }
}
