//! Compression, done once: a body is compressed when it is stored and served as stored to
//! every client that accepts its coding; a client that doesn't gets another coding (or
//! identity) made on first demand and kept with the entry. Answers that handlers build from
//! `get_or_load` values are compressed once per distinct answer ([`CodedBodies`]).

use async_compression::Level;
use async_compression::tokio::bufread::{
    BrotliDecoder, BrotliEncoder, DeflateDecoder, DeflateEncoder, GzipDecoder, GzipEncoder,
    ZstdDecoder, ZstdEncoder,
};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::telemetry::metrics::COMPRESSIONS;

// One vocabulary for codings: the store's. An entry records the [`BodyEncoding`] its body
// is in, and negotiation, compression and decoding speak the same enum.
pub(crate) use larder_store::BodyEncoding;

/// The coding a policy's compression algorithm stores bodies in (the one mapping from the
/// policy's vocabulary to the store's).
pub(crate) fn encoding_of(algorithm: larder_policy::Algorithm) -> BodyEncoding {
    use larder_policy::Algorithm::*;
    match algorithm {
        Br => BodyEncoding::Br,
        Zstd => BodyEncoding::Zstd,
        Gzip => BodyEncoding::Gzip,
        Deflate => BodyEncoding::Deflate,
    }
}

/// The level the rule compresses `coding` at (identity has none).
pub(crate) fn level_of(comp: &larder_policy::Compression, coding: BodyEncoding) -> i32 {
    use larder_policy::Algorithm::*;
    let alg = match coding {
        BodyEncoding::Identity => return 0,
        BodyEncoding::Br => Br,
        BodyEncoding::Zstd => Zstd,
        BodyEncoding::Gzip => Gzip,
        BodyEncoding::Deflate => Deflate,
    };
    comp.level_for(alg) as i32
}

/// What to do with a stored body for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Send the stored bytes with the stored `Content-Encoding`.
    AsStored,
    /// Send the body in this other coding (identity: decoded), made on the first such
    /// request and kept with the entry in L1 ([`larder_store::Variants`]).
    Variant(BodyEncoding),
}

/// Decides how to send a body stored with `stored` coding to a client that sent
/// `accept_encoding` (absent header: identity, the safe reading for clients like plain curl),
/// under the rule's compression settings `offered`: the stored coding if the client takes
/// it, else the rule's most preferred algorithm the client takes, else identity.
pub fn negotiate(
    accept_encoding: Option<&str>,
    stored: BodyEncoding,
    offered: &larder_policy::Compression,
) -> Delivery {
    if stored == BodyEncoding::Identity {
        return Delivery::AsStored;
    }
    let Some(header) = accept_encoding else {
        return Delivery::Variant(BodyEncoding::Identity);
    };
    if larder_policy::accept_weight(header, stored.token()) > 0.0 {
        return Delivery::AsStored;
    }
    match offered.enabled.then(|| offered.negotiate(header)).flatten() {
        Some(alg) => Delivery::Variant(encoding_of(alg)),
        None => Delivery::Variant(BodyEncoding::Identity),
    }
}

/// Why a body could not be coded.
#[derive(Debug, thiserror::Error)]
pub enum CodingError {
    /// Decoding would exceed the configured cap.
    #[error("decoded body exceeds the {limit}-byte limit")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The bytes are not valid for the coding.
    #[error("invalid {coding} data: {source}")]
    Invalid {
        /// The coding.
        coding: BodyEncoding,
        /// What the decoder said.
        source: std::io::Error,
    },
}

async fn drain(
    reader: impl AsyncRead + Unpin,
    limit: usize,
    coding: BodyEncoding,
) -> Result<Bytes, CodingError> {
    let mut out = Vec::new();
    // Read one byte past the limit so "exactly at the limit" is allowed and one more is not.
    let mut limited = reader.take(limit as u64 + 1);
    limited
        .read_to_end(&mut out)
        .await
        .map_err(|source| CodingError::Invalid { coding, source })?;
    if out.len() > limit {
        return Err(CodingError::TooLarge { limit });
    }
    Ok(out.into())
}

/// Compresses `body` with `coding` at `level` (codec-specific; clamped by the codec).
pub async fn compress(body: &[u8], coding: BodyEncoding, level: i32) -> Result<Bytes, CodingError> {
    let level = Level::Precise(level);
    let limit = usize::MAX - 1;
    match coding {
        BodyEncoding::Identity => Ok(Bytes::copy_from_slice(body)),
        BodyEncoding::Br => drain(BrotliEncoder::with_quality(body, level), limit, coding).await,
        BodyEncoding::Zstd => drain(ZstdEncoder::with_quality(body, level), limit, coding).await,
        BodyEncoding::Gzip => drain(GzipEncoder::with_quality(body, level), limit, coding).await,
        BodyEncoding::Deflate => {
            drain(DeflateEncoder::with_quality(body, level), limit, coding).await
        }
    }
}

/// Decodes `body` from `coding`, refusing to produce more than `limit` bytes (a stored
/// entry is trusted, but a cap keeps a corrupt or hostile one from exhausting memory).
pub async fn decompress(
    body: &[u8],
    coding: BodyEncoding,
    limit: usize,
) -> Result<Bytes, CodingError> {
    match coding {
        BodyEncoding::Identity => Ok(Bytes::copy_from_slice(body)),
        BodyEncoding::Br => drain(BrotliDecoder::new(body), limit, coding).await,
        BodyEncoding::Zstd => drain(ZstdDecoder::new(body), limit, coding).await,
        BodyEncoding::Gzip => drain(GzipDecoder::new(body), limit, coding).await,
        BodyEncoding::Deflate => drain(DeflateDecoder::new(body), limit, coding).await,
    }
}

/// The body of a stored entry in another coding: decoded from `stored` (at most `limit`
/// bytes; `plain` is the decoded form when one is at hand), then compressed with `coding`
/// at `level` unless identity is wanted.
pub async fn transcode(
    body: &[u8],
    stored: BodyEncoding,
    plain: Option<&Bytes>,
    coding: BodyEncoding,
    level: i32,
    limit: usize,
) -> Result<Bytes, CodingError> {
    let plain = match plain {
        Some(p) => p.clone(),
        None => decompress(body, stored, limit).await?,
    };
    if coding == BodyEncoding::Identity {
        return Ok(plain);
    }
    compress(&plain, coding, level).await
}

/// Compressed forms of answers that handlers build on every request from values they read
/// through `get_or_load` (AliExpress, products): the data is cached, the answer's bytes are
/// not. Keyed by the bytes' hash and the coding. An answer seen once is compressed at the
/// fastest level, since many answers are never seen again (AliExpress stamps each with a
/// request id and time); seen again, it is compressed at the rule's level and kept, and
/// every later copy costs one hash of the body. Bounded in bytes, apart from L1's budget
/// (it holds answers, not entries).
pub(crate) struct CodedBodies {
    cache: quick_cache::sync::Cache<(u128, BodyEncoding), Coded, CodedWeighter>,
}

/// What the memo knows of one answer in one coding.
#[derive(Clone)]
enum Coded {
    /// Seen once, not kept.
    Seen,
    /// Compressed at the rule's level; empty when that did not make it smaller.
    Kept(Bytes),
}

#[derive(Clone)]
struct CodedWeighter;

impl quick_cache::Weighter<(u128, BodyEncoding), Coded> for CodedWeighter {
    fn weight(&self, _: &(u128, BodyEncoding), coded: &Coded) -> u64 {
        // The key, the value and the cache's slot.
        let body = match coded {
            Coded::Seen => 0,
            Coded::Kept(b) => b.len(),
        };
        body as u64 + 96
    }
}

impl CodedBodies {
    /// A memo holding at most `capacity_bytes`.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        CodedBodies {
            cache: quick_cache::sync::Cache::with_weighter(
                (capacity_bytes / 4096).clamp(16, 1 << 16) as usize,
                capacity_bytes.max(1),
                CodedWeighter,
            ),
        }
    }

    /// `body` compressed with `coding` (at `level` once it is seen again); `None` when
    /// compressing does not make it smaller (then it is sent as it is).
    pub(crate) async fn get(&self, body: &[u8], coding: BodyEncoding, level: i32) -> Option<Bytes> {
        let key = (xxhash_rust::xxh3::xxh3_128(body), coding);
        let seen = match self.cache.get(&key) {
            Some(Coded::Kept(packed)) => return (!packed.is_empty()).then_some(packed),
            Some(Coded::Seen) => true,
            None => false,
        };
        let packed = match compress(body, coding, if seen { level } else { 1 }).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "compressing an answer failed; sent as it is");
                return None;
            }
        };
        COMPRESSIONS.fetch_add(1, Ordering::Relaxed);
        let packed = if packed.len() < body.len() {
            packed
        } else {
            Bytes::new()
        };
        // An empty value remembers "not worth it", so that is not tried again either.
        self.cache.insert(
            key,
            if seen {
                Coded::Kept(packed.clone())
            } else {
                Coded::Seen
            },
        );
        (!packed.is_empty()).then_some(packed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_and_the_rules_preference_decide() {
        use BodyEncoding::*;
        use Delivery::*;
        let rule = larder_policy::Compression::default(); // br, zstd, gzip
        let n = |ae: Option<&str>, stored| negotiate(ae, stored, &rule);
        assert_eq!(n(Some("br, gzip"), Br), AsStored);
        assert_eq!(n(Some("gzip;q=1.0, br;q=0"), Br), Variant(Gzip));
        assert_eq!(n(Some("gzip, deflate"), Br), Variant(Gzip));
        assert_eq!(
            n(Some("deflate"), Br),
            Variant(Identity),
            "not offered by the rule"
        );
        assert_eq!(n(Some("zstd, gzip"), Br), Variant(Zstd), "the rule's order");
        assert_eq!(n(Some("*"), Zstd), AsStored);
        assert_eq!(n(Some("*;q=0.5, zstd;q=0"), Zstd), Variant(Br));
        assert_eq!(n(Some("ZSTD;Q=0.3"), Zstd), AsStored);
        assert_eq!(n(Some("x-gzip"), Gzip), AsStored);
        assert_eq!(n(Some("identity"), Gzip), Variant(Identity));
        assert_eq!(n(None, Br), Variant(Identity));
        assert_eq!(n(None, Identity), AsStored);
        assert_eq!(n(Some("br;q=0.001"), Br), AsStored);
        let off = larder_policy::Compression {
            enabled: false,
            ..Default::default()
        };
        assert_eq!(negotiate(Some("gzip"), Br, &off), Variant(Identity));
    }

    #[tokio::test]
    async fn every_coding_round_trips() {
        let body: Vec<u8> = br#"{"items":[1,2,3],"name":"larder"}"#.repeat(100);
        for coding in [
            BodyEncoding::Br,
            BodyEncoding::Zstd,
            BodyEncoding::Gzip,
            BodyEncoding::Deflate,
        ] {
            let packed = compress(&body, coding, 6).await.unwrap();
            assert!(packed.len() < body.len() / 4, "{coding} did not compress");
            let unpacked = decompress(&packed, coding, body.len()).await.unwrap();
            assert_eq!(&unpacked[..], &body[..], "{coding}");
        }
    }

    #[tokio::test]
    async fn an_answer_seen_again_is_compressed_once_at_the_rules_level_and_kept() {
        let memo = CodedBodies::new(1 << 20);
        let body: Vec<u8> = br#"{"product":{"title":"phone case","price":"3.10"}}"#.repeat(200);
        let fast = memo.get(&body, BodyEncoding::Gzip, 9).await.unwrap();
        let kept = memo.get(&body, BodyEncoding::Gzip, 9).await.unwrap();
        assert!(kept.len() <= fast.len(), "{} > {}", kept.len(), fast.len());
        let again = memo.get(&body, BodyEncoding::Gzip, 9).await.unwrap();
        assert_eq!(
            again.as_ptr(),
            kept.as_ptr(),
            "the kept bytes, not a new compression"
        );
        let other = memo.get(&body, BodyEncoding::Zstd, 9).await.unwrap();
        assert_ne!(other, kept, "one entry per coding");
        assert!(
            memo.get(b"tiny", BodyEncoding::Gzip, 9).await.is_none(),
            "no gain, sent as it is"
        );
    }

    #[tokio::test]
    async fn decoding_is_capped() {
        let body = vec![b'a'; 100_000];
        let packed = compress(&body, BodyEncoding::Gzip, 6).await.unwrap();
        let err = decompress(&packed, BodyEncoding::Gzip, 99_999)
            .await
            .unwrap_err();
        assert!(matches!(err, CodingError::TooLarge { limit: 99_999 }));
        assert!(
            decompress(&packed, BodyEncoding::Gzip, 100_000)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn corrupt_data_is_an_error_not_a_panic() {
        let err = decompress(b"not brotli at all", BodyEncoding::Br, 1 << 20).await;
        assert!(err.is_err());
    }
}
