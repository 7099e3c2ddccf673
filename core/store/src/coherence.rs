//! The invalidation message instances exchange over Redis pub/sub.
//!
//! Layout: `LDRI1 <instance id, 16 hex> <kind: K|T|P|A>` then netstring items
//! (`<len>:<bytes>`), so keys and tags may contain any byte. Each instance ignores
//! messages carrying its own id: it has already applied the invalidation locally.

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

#[cfg(test)]
mod tests {
    use super::*;

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
