//! The cached response ([`Entry`]), its versioned binary encoding and its freshness math.
//!
//! One encoding serves both layers' needs: L1 keeps decoded `Arc<Entry>` values (a hit
//! never decodes), L2 keeps the bytes from [`Entry::encode`]. The layout is hand-rolled and
//! length-prefixed so decoding is a bounds-checked walk with zero-copy `Bytes` slices, and
//! a trailing xxh3 checksum turns silent corruption into a [`DecodeError`].
//!
//! Layout (all integers little-endian), version 1:
//! ```text
//! "LDRE" magic | u8 version | u16 status | u8 encoding | u64 created_at_ms
//! u64 ttl_ms | u64 swr_ms | u64 sie_ms
//! u8 has_etag [u32 len, bytes]
//! u16 n_headers { u16 name_len, name, u32 value_len, value }
//! u16 n_tags { u16 len, tag }
//! u32 body_len, body
//! u64 xxh3 of everything before it
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Leading bytes of every encoded entry, so foreign values under our prefix are rejected early.
const MAGIC: &[u8; 4] = b"LDRE";
/// The only layout this build writes and reads. Bump it when the layout changes: older
/// instances then treat newer entries as misses instead of misreading them.
pub const ENCODING_VERSION: u8 = 1;

/// How the stored body bytes are encoded. Bodies are compressed once by the caller at
/// store time, so a hit can serve them as-is to clients that accept that encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum BodyEncoding {
    /// Uncompressed bytes.
    #[default]
    Identity = 0,
    /// Brotli.
    Br = 1,
    /// Zstandard.
    Zstd = 2,
    /// Gzip.
    Gzip = 3,
    /// Deflate (zlib).
    Deflate = 4,
}

impl BodyEncoding {
    /// The `Content-Encoding` token, or `None` for identity, so the HTTP layer can set the
    /// header without its own table.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            BodyEncoding::Identity => None,
            BodyEncoding::Br => Some("br"),
            BodyEncoding::Zstd => Some("zstd"),
            BodyEncoding::Gzip => Some("gzip"),
            BodyEncoding::Deflate => Some("deflate"),
        }
    }

    /// The coding's token as `Accept-Encoding` and `Content-Encoding` spell it.
    pub fn token(self) -> &'static str {
        self.content_encoding().unwrap_or("identity")
    }

    /// Parses a coding token (case-insensitive; `x-gzip` is gzip).
    pub fn from_token(token: &str) -> Option<Self> {
        let t = token.trim();
        [
            ("identity", BodyEncoding::Identity),
            ("br", BodyEncoding::Br),
            ("zstd", BodyEncoding::Zstd),
            ("gzip", BodyEncoding::Gzip),
            ("x-gzip", BodyEncoding::Gzip),
            ("deflate", BodyEncoding::Deflate),
        ]
        .into_iter()
        .find_map(|(name, e)| t.eq_ignore_ascii_case(name).then_some(e))
    }

    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => BodyEncoding::Identity,
            1 => BodyEncoding::Br,
            2 => BodyEncoding::Zstd,
            3 => BodyEncoding::Gzip,
            4 => BodyEncoding::Deflate,
            _ => return None,
        })
    }
}

impl std::fmt::Display for BodyEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.token())
    }
}

/// Where an entry stands in its life at a given instant. The windows are measured from the
/// end of the TTL: stale-while-revalidate and stale-if-error both start when freshness ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within its TTL: serve it.
    Fresh,
    /// Past its TTL but inside the stale-while-revalidate window: serve it and refresh once
    /// in the background.
    StaleWhileRevalidate,
    /// Past the SWR window but inside the stale-if-error window: only usable if the origin
    /// fails.
    StaleIfError,
    /// Past every window: useless, drop it.
    Expired,
}

/// A cached response as stored: everything a hit needs to answer without the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// HTTP status code.
    pub status: u16,
    /// The response headers worth replaying (the caller filters hop-by-hop and private ones).
    pub headers: Vec<(String, Bytes)>,
    /// The body exactly as stored, already encoded per [`Entry::encoding`].
    pub body: Bytes,
    /// How `body` is encoded.
    pub encoding: BodyEncoding,
    /// When the response was produced, unix milliseconds. The engine stamps it at store
    /// time so `Age` and freshness agree across instances sharing L2.
    pub created_at_ms: u64,
    /// Freshness lifetime.
    pub ttl: Duration,
    /// How long after the TTL a stale copy may be served while one refresh runs.
    pub stale_while_revalidate: Duration,
    /// How long after the TTL a stale copy may be served when the origin fails.
    pub stale_if_error: Duration,
    /// Invalidation tags; the stores index them so a tag purge never scans all keys.
    pub tags: Vec<String>,
    /// Strong validator for `If-None-Match`, computed once at store time.
    pub etag: Option<String>,
    /// `body` in other codings, each made once when a client that cannot take
    /// [`Entry::encoding`] first asked for it, and kept in L1 so later such clients get it
    /// with no decoding or compressing. Never written to L2 (a promoted entry makes its own
    /// on first demand); counted by [`Entry::weight`].
    pub variants: Variants,
}

/// The other codings of one entry's body, at most one per [`BodyEncoding`]; the first one
/// kept for a coding stays. Empty, it costs one pointer-sized slot: most entries are only
/// ever asked for in their stored coding, and small tagged entries are many.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Variants(OnceLock<Box<[OnceLock<Bytes>; 5]>>);

impl Variants {
    /// The body in `coding`, if a client asked for it before.
    #[inline]
    pub fn get(&self, coding: BodyEncoding) -> Option<&Bytes> {
        self.0.get()?[coding as usize].get()
    }

    /// Keeps `bytes` as the `coding` form unless one is kept already; true if it was kept.
    pub fn keep(&self, coding: BodyEncoding, bytes: Bytes) -> bool {
        self.0.get_or_init(Box::default)[coding as usize]
            .set(bytes)
            .is_ok()
    }

    /// Which codings are kept, in [`BodyEncoding`] order.
    pub fn codings(&self) -> Vec<BodyEncoding> {
        self.0.get().map_or_else(Vec::new, |slots| {
            slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.get().is_some())
                .filter_map(|(i, _)| BodyEncoding::from_u8(i as u8))
                .collect()
        })
    }

    /// Memory held: the bodies, and the slots once any is kept.
    pub fn weight(&self) -> usize {
        self.0.get().map_or(0, |slots| {
            std::mem::size_of::<[OnceLock<Bytes>; 5]>()
                + slots
                    .iter()
                    .filter_map(OnceLock::get)
                    .map(Bytes::len)
                    .sum::<usize>()
        })
    }
}

/// Why stored bytes could not be turned back into an [`Entry`]. The engine treats every
/// variant the same way (a miss, and the key is deleted); the variants exist for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not an entry at all (wrong magic): some other writer used our key prefix.
    #[error("not a larder cache entry (bad magic)")]
    BadMagic,
    /// Written by a build with another layout; it will be replaced on the next store.
    #[error("unsupported entry encoding version {0} (this build reads {ENCODING_VERSION})")]
    UnknownVersion(u8),
    /// Cut short or internally inconsistent.
    #[error("truncated or malformed entry")]
    Truncated,
    /// The checksum does not match: bytes were altered in storage or transit.
    #[error("entry checksum mismatch")]
    Checksum,
    /// A field holds a value this build does not know (e.g. body encoding).
    #[error("invalid field value in entry: {0}")]
    InvalidField(&'static str),
}

impl Entry {
    /// A fresh entry with the given status and body and every other field empty; the
    /// builder-style `with_*` methods fill the rest.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Entry {
            status,
            headers: Vec::new(),
            body: body.into(),
            encoding: BodyEncoding::Identity,
            created_at_ms: 0,
            ttl: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            tags: Vec::new(),
            etag: None,
            variants: Variants::default(),
        }
    }

    /// Sets the freshness lifetime.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the stale-while-revalidate window.
    pub fn with_swr(mut self, swr: Duration) -> Self {
        self.stale_while_revalidate = swr;
        self
    }

    /// Sets the stale-if-error window.
    pub fn with_sie(mut self, sie: Duration) -> Self {
        self.stale_if_error = sie;
        self
    }

    /// Sets the invalidation tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one header to replay on hits.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body encoding.
    pub fn with_encoding(mut self, encoding: BodyEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Sets the ETag.
    pub fn with_etag(mut self, etag: impl Into<String>) -> Self {
        self.etag = Some(etag.into());
        self
    }

    fn ttl_ms(&self) -> u64 {
        duration_ms(self.ttl)
    }

    /// When freshness ends, unix ms.
    pub fn expires_at_ms(&self) -> u64 {
        self.created_at_ms.saturating_add(self.ttl_ms())
    }

    /// When the entry stops being useful for anything (end of the longer stale window),
    /// unix ms. Stores keep it until then.
    pub fn retain_until_ms(&self) -> u64 {
        let window = self.stale_while_revalidate.max(self.stale_if_error);
        self.expires_at_ms().saturating_add(duration_ms(window))
    }

    /// How long a store should keep the entry from `now_ms` (zero if it is already useless).
    pub fn retention_from(&self, now_ms: u64) -> Duration {
        Duration::from_millis(self.retain_until_ms().saturating_sub(now_ms))
    }

    /// Classifies the entry at `now_ms`. An entry is fresh while `now < created + ttl`.
    #[inline]
    pub fn freshness(&self, now_ms: u64) -> Freshness {
        let expires = self.expires_at_ms();
        if now_ms < expires {
            return Freshness::Fresh;
        }
        let stale_for = now_ms - expires;
        if stale_for < duration_ms(self.stale_while_revalidate) {
            Freshness::StaleWhileRevalidate
        } else if stale_for < duration_ms(self.stale_if_error) {
            Freshness::StaleIfError
        } else {
            Freshness::Expired
        }
    }

    /// True while the entry can still stand in for a failed origin call: inside either stale
    /// window (a stale-while-revalidate copy whose refresh fails is served too).
    pub fn usable_on_error(&self, now_ms: u64) -> bool {
        let expires = self.expires_at_ms();
        if now_ms < expires {
            return true;
        }
        let stale_for = now_ms - expires;
        stale_for < duration_ms(self.stale_if_error)
            || stale_for < duration_ms(self.stale_while_revalidate)
    }

    /// Age for the `Age` header.
    pub fn age(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.created_at_ms))
    }

    /// Freshness left; negative once stale (how long ago it expired), for `Cache-Status`'s
    /// `ttl=` parameter which RFC 9211 allows to be negative.
    pub fn ttl_left_ms(&self, now_ms: u64) -> i64 {
        let expires = self.expires_at_ms() as i128;
        (expires - now_ms as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Approximate memory footprint, used as the L1 weight so the byte budget tracks real
    /// memory (the constant covers the struct, the `Arc` and the cache's own bookkeeping).
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 48)
            .sum();
        // Each tag is stored as a String here and indexed (a set slot) in L1's tag index.
        let tags: usize = self.tags.iter().map(|t| t.len() + 64).sum();
        let etag = self.etag.as_ref().map_or(0, |e| e.len() + 24);
        // The Arc, this struct, the cache slot and allocator rounding of each buffer.
        (self.body.len() + self.variants.weight() + headers + tags + etag + 320) as u64
    }

    /// Serialises into the versioned layout described in the module docs.
    pub fn encode(&self) -> Bytes {
        let mut len = 4 + 1 + 2 + 1 + 8 * 4 + 1 + 2 + 2 + 4 + self.body.len() + 8;
        len += self.etag.as_ref().map_or(0, |e| 4 + e.len());
        len += self
            .headers
            .iter()
            .map(|(n, v)| 2 + n.len() + 4 + v.len())
            .sum::<usize>();
        len += self.tags.iter().map(|t| 2 + t.len()).sum::<usize>();
        let mut out = BytesMut::with_capacity(len);
        out.put_slice(MAGIC);
        out.put_u8(ENCODING_VERSION);
        out.put_u16_le(self.status);
        out.put_u8(self.encoding as u8);
        out.put_u64_le(self.created_at_ms);
        out.put_u64_le(self.ttl_ms());
        out.put_u64_le(duration_ms(self.stale_while_revalidate));
        out.put_u64_le(duration_ms(self.stale_if_error));
        match &self.etag {
            Some(etag) => {
                out.put_u8(1);
                out.put_u32_le(etag.len() as u32);
                out.put_slice(etag.as_bytes());
            }
            None => out.put_u8(0),
        }
        // Counts and lengths are clamped by construction: header names, tags and counts
        // beyond u16 are not meaningful for HTTP responses; `encode` truncates the list
        // rather than writing a layout `decode` would reject.
        let headers = &self.headers[..self.headers.len().min(u16::MAX as usize)];
        out.put_u16_le(headers.len() as u16);
        for (name, value) in headers {
            let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
            out.put_u16_le(name.len() as u16);
            out.put_slice(name);
            out.put_u32_le(value.len() as u32);
            out.put_slice(value);
        }
        let tags = &self.tags[..self.tags.len().min(u16::MAX as usize)];
        out.put_u16_le(tags.len() as u16);
        for tag in tags {
            let tag = &tag.as_bytes()[..tag.len().min(u16::MAX as usize)];
            out.put_u16_le(tag.len() as u16);
            out.put_slice(tag);
        }
        out.put_u32_le(self.body.len() as u32);
        out.put_slice(&self.body);
        let sum = xxhash_rust::xxh3::xxh3_64(&out);
        out.put_u64_le(sum);
        out.freeze()
    }

    /// How many leading bytes of an encoded entry [`Entry::fresh_until_ms`] reads.
    pub const TIMES_PREFIX: usize = 4 + 1 + 2 + 1 + 8 + 8;

    /// When an encoded entry stops being fresh (unix ms), read from the first
    /// [`Entry::TIMES_PREFIX`] bytes alone, so a key listing need not fetch whole bodies.
    pub fn fresh_until_ms(prefix: &[u8]) -> Option<u64> {
        if prefix.len() < Self::TIMES_PREFIX
            || &prefix[..4] != MAGIC
            || prefix[4] != ENCODING_VERSION
        {
            return None;
        }
        let created = u64::from_le_bytes(prefix[8..16].try_into().ok()?);
        let ttl = u64::from_le_bytes(prefix[16..24].try_into().ok()?);
        Some(created.saturating_add(ttl))
    }

    /// Parses bytes written by [`Entry::encode`]. Header values and the body are zero-copy
    /// slices of `bytes`.
    pub fn decode(bytes: Bytes) -> Result<Entry, DecodeError> {
        if bytes.len() < 5 {
            return Err(DecodeError::Truncated);
        }
        if &bytes[..4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if bytes[4] != ENCODING_VERSION {
            return Err(DecodeError::UnknownVersion(bytes[4]));
        }
        if bytes.len() < 4 + 1 + 8 {
            return Err(DecodeError::Truncated);
        }
        let payload_len = bytes.len() - 8;
        let stored_sum = u64::from_le_bytes(bytes[payload_len..].try_into().expect("8 bytes"));
        if xxhash_rust::xxh3::xxh3_64(&bytes[..payload_len]) != stored_sum {
            return Err(DecodeError::Checksum);
        }
        let mut r = Reader {
            buf: bytes.slice(5..payload_len),
        };
        let status = r.u16()?;
        let encoding =
            BodyEncoding::from_u8(r.u8()?).ok_or(DecodeError::InvalidField("body encoding"))?;
        let created_at_ms = r.u64()?;
        let ttl = Duration::from_millis(r.u64()?);
        let stale_while_revalidate = Duration::from_millis(r.u64()?);
        let stale_if_error = Duration::from_millis(r.u64()?);
        let etag = match r.u8()? {
            0 => None,
            1 => {
                let len = r.u32()? as usize;
                Some(r.string(len)?)
            }
            _ => return Err(DecodeError::InvalidField("etag flag")),
        };
        let n_headers = r.u16()? as usize;
        let mut headers = Vec::with_capacity(n_headers);
        for _ in 0..n_headers {
            let name_len = r.u16()? as usize;
            let name = r.string(name_len)?;
            let value_len = r.u32()? as usize;
            headers.push((name, r.bytes(value_len)?));
        }
        let n_tags = r.u16()? as usize;
        let mut tags = Vec::with_capacity(n_tags);
        for _ in 0..n_tags {
            let len = r.u16()? as usize;
            tags.push(r.string(len)?);
        }
        let body_len = r.u32()? as usize;
        let body = r.bytes(body_len)?;
        if r.buf.has_remaining() {
            return Err(DecodeError::Truncated);
        }
        Ok(Entry {
            status,
            headers,
            body,
            encoding,
            created_at_ms,
            ttl,
            stale_while_revalidate,
            stale_if_error,
            tags,
            etag,
            variants: Variants::default(),
        })
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16_le())
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_u64_le())
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }
    fn string(&mut self, n: usize) -> Result<String, DecodeError> {
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidField("utf-8 text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        let mut e = Entry::new(200, &b"{\"hello\":\"world\"}"[..])
            .with_ttl(Duration::from_secs(60))
            .with_swr(Duration::from_secs(10))
            .with_sie(Duration::from_secs(600))
            .with_tags(["slots:42", "slots:42:2024-01-01"])
            .with_header("content-type", "application/json")
            .with_header("x-empty", "")
            .with_encoding(BodyEncoding::Zstd)
            .with_etag("\"abc\"");
        e.created_at_ms = 1_700_000_000_000;
        e
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let e = sample();
        assert_eq!(Entry::decode(e.encode()).unwrap(), e);
        let bare = Entry::new(204, Bytes::new());
        assert_eq!(Entry::decode(bare.encode()).unwrap(), bare);
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut raw = sample().encode().to_vec();
        raw[4] = 99;
        assert_eq!(
            Entry::decode(raw.into()),
            Err(DecodeError::UnknownVersion(99))
        );
    }

    #[test]
    fn corruption_and_truncation_are_rejected() {
        let raw = sample().encode();
        for cut in [0, 3, 5, 20, raw.len() - 1] {
            assert!(Entry::decode(raw.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut flipped = raw.to_vec();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        assert_eq!(Entry::decode(flipped.into()), Err(DecodeError::Checksum));
        assert_eq!(
            Entry::decode(Bytes::from_static(b"not an entry at all")),
            Err(DecodeError::BadMagic)
        );
    }

    #[test]
    fn freshness_windows() {
        let e = sample(); // ttl 60s, swr 10s, sie 600s
        let t0 = e.created_at_ms;
        assert_eq!(e.freshness(t0), Freshness::Fresh);
        assert_eq!(e.freshness(t0 + 59_999), Freshness::Fresh);
        assert_eq!(e.freshness(t0 + 60_000), Freshness::StaleWhileRevalidate);
        assert_eq!(e.freshness(t0 + 69_999), Freshness::StaleWhileRevalidate);
        assert_eq!(e.freshness(t0 + 70_000), Freshness::StaleIfError);
        assert_eq!(e.freshness(t0 + 659_999), Freshness::StaleIfError);
        assert_eq!(e.freshness(t0 + 660_000), Freshness::Expired);
        assert!(e.usable_on_error(t0 + 659_999));
        assert!(!e.usable_on_error(t0 + 660_000));
        assert_eq!(e.retain_until_ms(), t0 + 660_000);
        assert_eq!(e.retention_from(t0 + 60_000), Duration::from_secs(600));
        assert_eq!(e.retention_from(t0 + 700_000), Duration::ZERO);
        assert_eq!(e.age(t0 + 1_500), Duration::from_millis(1_500));
        assert_eq!(e.ttl_left_ms(t0 + 1_000), 59_000);
        assert_eq!(e.ttl_left_ms(t0 + 61_000), -1_000);
        // A clock behind the creation time (another instance's skew) reads as age zero.
        assert_eq!(e.age(t0 - 5), Duration::ZERO);
    }

    #[test]
    fn swr_longer_than_sie_still_serves_on_error() {
        let mut e = Entry::new(200, "x")
            .with_ttl(Duration::from_secs(1))
            .with_swr(Duration::from_secs(30));
        e.created_at_ms = 1_000;
        assert_eq!(e.freshness(2_500), Freshness::StaleWhileRevalidate);
        assert!(e.usable_on_error(2_500));
        assert_eq!(e.freshness(31_999), Freshness::StaleWhileRevalidate);
        assert_eq!(e.freshness(32_000), Freshness::Expired);
    }

    #[test]
    fn weight_grows_with_body() {
        let small = Entry::new(200, vec![0u8; 10]);
        let big = Entry::new(200, vec![0u8; 10_000]);
        assert!(big.weight() >= small.weight() + 9_990);
    }
}
