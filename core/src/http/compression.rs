//! Stored compression: a body is compressed once, when it is stored, and served as stored to
//! every client that accepts its coding; clients that don't get it decoded (with a size cap).

use async_compression::Level;
use async_compression::tokio::bufread::{
    BrotliDecoder, BrotliEncoder, DeflateDecoder, DeflateEncoder, GzipDecoder, GzipEncoder,
    ZstdDecoder, ZstdEncoder,
};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

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

/// What to do with a stored body for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Send the stored bytes with the stored `Content-Encoding`.
    AsStored,
    /// Decode to identity first.
    Decode,
}

/// The client's weight (`q`) for `coding` under an `Accept-Encoding` header, per RFC 9110
/// §12.5.3: an explicit entry wins, then `*`; identity is acceptable unless refused.
fn weight(header: &str, coding: BodyEncoding) -> f32 {
    let mut star = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or("").trim();
        if token.is_empty() {
            continue;
        }
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())?
            })
            .next()
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if token == "*" {
            star = Some(q);
        } else if BodyEncoding::from_token(token) == Some(coding) {
            return q;
        }
    }
    match (star, coding) {
        (Some(q), _) => q,
        (None, BodyEncoding::Identity) => 1.0,
        (None, _) => 0.0,
    }
}

/// Decides how to send a body stored with `stored` coding to a client that sent
/// `accept_encoding` (absent header: identity, the safe reading for clients like plain curl).
pub fn negotiate(accept_encoding: Option<&str>, stored: BodyEncoding) -> Delivery {
    if stored == BodyEncoding::Identity {
        return Delivery::AsStored;
    }
    match accept_encoding {
        Some(h) if weight(h, stored) > 0.0 => Delivery::AsStored,
        _ => Delivery::Decode,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values_decide() {
        use Delivery::*;
        assert_eq!(negotiate(Some("br, gzip"), BodyEncoding::Br), AsStored);
        assert_eq!(
            negotiate(Some("gzip;q=1.0, br;q=0"), BodyEncoding::Br),
            Decode
        );
        assert_eq!(negotiate(Some("gzip"), BodyEncoding::Br), Decode);
        assert_eq!(negotiate(Some("*"), BodyEncoding::Zstd), AsStored);
        assert_eq!(
            negotiate(Some("*;q=0.5, zstd;q=0"), BodyEncoding::Zstd),
            Decode
        );
        assert_eq!(negotiate(Some("ZSTD;Q=0.3"), BodyEncoding::Zstd), AsStored);
        assert_eq!(negotiate(Some("x-gzip"), BodyEncoding::Gzip), AsStored);
        assert_eq!(negotiate(Some("identity"), BodyEncoding::Gzip), Decode);
        assert_eq!(negotiate(None, BodyEncoding::Br), Decode);
        assert_eq!(negotiate(None, BodyEncoding::Identity), AsStored);
        assert_eq!(negotiate(Some("br;q=0.001"), BodyEncoding::Br), AsStored);
    }

    #[test]
    fn identity_weight_follows_rfc() {
        assert_eq!(weight("gzip", BodyEncoding::Identity), 1.0);
        assert_eq!(weight("gzip, identity;q=0", BodyEncoding::Identity), 0.0);
        assert_eq!(weight("*;q=0", BodyEncoding::Identity), 0.0);
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
