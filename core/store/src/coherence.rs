//! The invalidation message instances exchange over Redis, and the rules that keep an
//! instance's L1 honest when it may have missed some.
//!
//! Layout: `LDRI1 <instance id, 16 hex> <kind: K|T|P|A>` then netstring items
//! (`<len>:<bytes>`), so keys and tags may contain any byte. Each instance ignores
//! messages carrying its own id: it has already applied the invalidation locally.
//!
//! Every invalidation is appended to a Redis stream and published in one script; the
//! published copy is prefixed with its stream id (`LDRS <ms>-<seq> LDRI1 …`), so a
//! subscriber knows how far it has read and, after a gap, reads the stream from there.

use bytes::{BufMut, Bytes, BytesMut};

use crate::store::Purge;

const HEADER: &[u8] = b"LDRI1 ";

/// Encodes an invalidation from `instance`.
pub fn encode(instance: u64, target: &Purge) -> Bytes {
    let (kind, items): (u8, Vec<&str>) = match target {
        Purge::Keys(k) => (b'K', k.iter().map(String::as_str).collect()),
        Purge::Tags(t) => (b'T', t.iter().map(String::as_str).collect()),
        Purge::Pattern(p) => (b'P', vec![p.as_str()]),
        Purge::All => (b'A', Vec::new()),
    };
    let mut out = BytesMut::with_capacity(32 + items.iter().map(|i| i.len() + 8).sum::<usize>());
    out.put_slice(HEADER);
    out.put_slice(format!("{instance:016x} ").as_bytes());
    out.put_u8(kind);
    for item in items {
        out.put_slice(item.len().to_string().as_bytes());
        out.put_u8(b':');
        out.put_slice(item.as_bytes());
    }
    out.freeze()
}

/// Decodes a message; `None` for anything malformed (logged by the caller, never applied).
pub fn decode(msg: &[u8]) -> Option<(u64, Purge)> {
    let rest = msg.strip_prefix(HEADER)?;
    if rest.len() < 18 || rest[16] != b' ' {
        return None;
    }
    let instance = u64::from_str_radix(std::str::from_utf8(&rest[..16]).ok()?, 16).ok()?;
    let kind = rest[17];
    let mut body = &rest[18..];
    let mut items = Vec::new();
    while !body.is_empty() {
        let colon = body.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&body[..colon]).ok()?.parse().ok()?;
        let start = colon + 1;
        let item = body.get(start..start + len)?;
        items.push(String::from_utf8(item.to_vec()).ok()?);
        body = &body[start + len..];
    }
    let target = match kind {
        b'K' => Purge::Keys(items),
        b'T' => Purge::Tags(items),
        b'P' if items.len() == 1 => Purge::Pattern(items.pop()?),
        b'A' if items.is_empty() => Purge::All,
        _ => return None,
    };
    Some((instance, target))
}

const STREAMED: &[u8] = b"LDRS ";

/// A Redis stream entry id (`<ms>-<seq>`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// Before every entry: the baseline of an instance that saw an empty stream.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `<ms>-<seq>`.
    pub fn parse(s: &str) -> Option<StreamId> {
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Decodes a published message: the stream id when the message carries one (every
/// message written by the recording script does), then the invalidation.
pub fn decode_published(msg: &[u8]) -> Option<(Option<StreamId>, u64, Purge)> {
    match msg.strip_prefix(STREAMED) {
        Some(rest) => {
            let space = rest.iter().position(|&b| b == b' ')?;
            let id = StreamId::parse(std::str::from_utf8(&rest[..space]).ok()?)?;
            let (instance, target) = decode(&rest[space + 1..])?;
            Some((Some(id), instance, target))
        }
        None => decode(msg).map(|(instance, target)| (None, instance, target)),
    }
}

/// Whether an L1 entry may be served. While this instance is not subscribed (since
/// `unsubscribed_since_ms`, 0 when it is), it cannot hear other instances' purges, so an
/// entry is only trusted for `window_ms` after the later of that moment and its creation.
#[inline]
pub fn l1_servable(
    unsubscribed_since_ms: u64,
    created_at_ms: u64,
    now_ms: u64,
    window_ms: u64,
) -> bool {
    unsubscribed_since_ms == 0
        || now_ms.saturating_sub(unsubscribed_since_ms.max(created_at_ms)) < window_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_messages_carry_their_stream_id() {
        let target = Purge::Tags(vec!["slots:4".into()]);
        let mut msg = b"LDRS 1764547200000-3 ".to_vec();
        msg.extend_from_slice(&encode(7, &target));
        let id = StreamId {
            ms: 1_764_547_200_000,
            seq: 3,
        };
        assert_eq!(decode_published(&msg), Some((Some(id), 7, target.clone())));
        assert_eq!(
            decode_published(&encode(7, &target)),
            Some((None, 7, target))
        );
        assert_eq!(decode_published(b"LDRS nope LDRI1 "), None);
        assert!(StreamId::parse("5-1") < StreamId::parse("5-2"));
        assert!(StreamId::parse("5-9") < StreamId::parse("10-0"));
        assert_eq!(StreamId::parse("12-0").unwrap().to_string(), "12-0");
    }

    #[test]
    fn the_window_counts_from_the_later_of_disconnect_and_creation() {
        // Subscribed: always servable, however old.
        assert!(l1_servable(0, 0, 1_000_000, 5_000));
        // Unsubscribed at 10 s; an entry from before is trusted until 15 s.
        assert!(l1_servable(10_000, 1_000, 14_999, 5_000));
        assert!(!l1_servable(10_000, 1_000, 15_000, 5_000));
        // An entry created during the outage gets its own window.
        assert!(l1_servable(10_000, 20_000, 24_999, 5_000));
        assert!(!l1_servable(10_000, 20_000, 25_000, 5_000));
    }

    #[test]
    fn round_trip() {
        for target in [
            Purge::Keys(vec!["a:b".into(), "with:colon:12".into(), String::new()]),
            Purge::Tags(vec!["slots:4".into()]),
            Purge::Pattern("booking:*".into()),
            Purge::All,
        ] {
            let msg = encode(0xdead_beef, &target);
            assert_eq!(decode(&msg), Some((0xdead_beef, target)));
        }
        assert_eq!(decode(b"garbage"), None);
        assert_eq!(decode(b"LDRI1 00000000000000ff K5:ab"), None);
    }
}
