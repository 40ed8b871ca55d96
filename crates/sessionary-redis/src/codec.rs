//! Records to hash fields and back.
//!
//! A session is one Redis hash: `j` is the record as JSON without the fields
//! the scripts own, which live beside it so the scripts can read and write
//! them without decoding JSON: `ls` (last seen), `idle`, `ti` (touch
//! interval), `abs` (absolute expiry), `v` (version), `c` (created), `h`
//! (token hash, hex), `u` (user), `id` (hex), `d` (sealed data, raw bytes)
//! and `n:<name>` per counter. Decoding takes those fields over the JSON.

use std::sync::Arc;

use redis::Value;
use sessionary_core::record::{EndReason, Restorable, Tombstone};
use sessionary_core::refresh::{FamilyEnd, FamilyId, RefreshFamily};
use sessionary_core::{Sealed, SessionId, SessionRecord, Timestamp, TokenHash, UserId};

use crate::Error;

/// Lowercase hex (keys and hash members, so that lexical order is byte order).
pub(crate) fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 0xf)]));
    }
    s
}

fn digit(c: u8) -> Result<u8, Error> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(Error::Decode("bad hex digit")),
    }
}

/// Exactly `N` bytes of lowercase hex, without a buffer in between (every
/// id and hash the store writes in hex; token hashes and session ids are
/// decoded on every read of a session).
fn unhex_array<const N: usize>(s: &[u8], what: &'static str) -> Result<[u8; N], Error> {
    if s.len() != 2 * N {
        return Err(Error::Decode(what));
    }
    let mut out = [0u8; N];
    for (o, p) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = digit(p[0])? << 4 | digit(p[1])?;
    }
    Ok(out)
}

/// The bytes of a bulk string.
pub(crate) fn bytes(v: &Value) -> Result<&[u8], Error> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(Error::Decode("expected a string")),
    }
}

pub(crate) fn array(v: &Value) -> Result<&[Value], Error> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Nil => Ok(&[]),
        _ => Err(Error::Decode("expected an array")),
    }
}

pub(crate) fn int(v: &Value) -> Result<i64, Error> {
    match v {
        Value::Int(i) => Ok(*i),
        other => parse(bytes(other)?),
    }
}

fn parse<T: std::str::FromStr>(b: &[u8]) -> Result<T, Error> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::Decode("expected a number"))
}

/// The field/value pairs of a hash or a snapshot, in reply order. A record has
/// about a dozen fields: a linear search is cheaper than building a map, and
/// this runs on every verification that reads Redis.
pub(crate) struct Fields<'a>(Vec<(&'a [u8], &'a [u8])>);

impl<'a> Fields<'a> {
    fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    fn push(&mut self, k: &'a [u8], v: &'a [u8]) {
        self.0.push((k, v));
    }

    /// The value of `k` (the last one, should a field repeat).
    fn get(&self, k: &[u8]) -> Option<&'a [u8]> {
        self.0.iter().rev().find(|(f, _)| *f == k).map(|(_, v)| *v)
    }

    fn contains_key(&self, k: &[u8]) -> bool {
        self.get(k).is_some()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.0.iter().copied()
    }
}

/// A flat HGETALL reply.
pub(crate) fn fields(v: &Value) -> Result<Fields<'_>, Error> {
    let a = array(v)?;
    let mut m = Fields::with_capacity(a.len() / 2);
    for p in a.chunks(2) {
        if let [k, v] = p {
            m.push(bytes(k)?, bytes(v)?);
        }
    }
    Ok(m)
}

fn get<'a>(m: &Fields<'a>, k: &str) -> Result<&'a [u8], Error> {
    m.get(k.as_bytes()).ok_or(Error::Decode("missing field"))
}

fn ts(m: &Fields<'_>, k: &str) -> Result<Timestamp, Error> {
    parse(get(m, k)?).map(Timestamp)
}

fn user(b: &[u8]) -> Result<UserId, Error> {
    let s = std::str::from_utf8(b).map_err(|_| Error::Decode("user id is not UTF-8"))?;
    UserId::new(s).map_err(|_| Error::Decode("invalid user id"))
}

fn hash(b: &[u8]) -> Result<TokenHash, Error> {
    unhex_array(b, "token hash length").map(TokenHash)
}

fn sid(b: &[u8]) -> Result<SessionId, Error> {
    unhex_array(b, "session id length").map(SessionId)
}

/// The field pairs `create` writes (every field).
pub(crate) fn record_fields(r: &SessionRecord) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut v = mutable_fields(r)?;
    let mut push = |k: &str, b: Vec<u8>| v.push((k.to_owned(), b));
    push("ls", r.last_seen_at.0.to_string().into_bytes());
    push("v", r.version.to_string().into_bytes());
    push("c", r.created_at.0.to_string().into_bytes());
    push("h", hex(&r.token_hash.0).into_bytes());
    push("id", hex(&r.id.0).into_bytes());
    if let Some(u) = &r.user {
        push("u", u.as_str().as_bytes().to_vec());
    }
    for (name, n) in &r.counters {
        push(&format!("n:{name}"), n.to_string().into_bytes());
    }
    if r.exempt_from_limit {
        // Read by create.lua's limit count; set once, never rewritten.
        push("x", b"1".to_vec());
    }
    Ok(v)
}

/// The field pairs a compare-and-set write replaces (not the store-owned ones).
pub(crate) fn mutable_fields(r: &SessionRecord) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut stripped = r.clone();
    stripped.data = Sealed::default();
    stripped.counters.clear();
    stripped.exempt_from_limit = false; // field `x`, store-owned
    let j = serde_json::to_vec(&stripped).map_err(Error::Json)?;
    Ok(vec![
        ("j".to_owned(), j),
        ("d".to_owned(), r.data.as_bytes().to_vec()),
        (
            "idle".to_owned(),
            r.idle_timeout_ms.to_string().into_bytes(),
        ),
        (
            "ti".to_owned(),
            r.touch_interval_ms.to_string().into_bytes(),
        ),
        (
            "abs".to_owned(),
            r.absolute_expires_at.0.to_string().into_bytes(),
        ),
    ])
}

/// A session from its fields; `None` for an empty reply.
pub(crate) fn record(v: &Value) -> Result<Option<SessionRecord>, Error> {
    let m = fields(v)?;
    if m.is_empty() {
        return Ok(None);
    }
    record_of(&m).map(Some)
}

fn record_of(m: &Fields<'_>) -> Result<SessionRecord, Error> {
    let mut r: SessionRecord = serde_json::from_slice(get(m, "j")?).map_err(Error::Json)?;
    r.data = Sealed::from_bytes(get(m, "d").unwrap_or_default().to_vec());
    r.last_seen_at = ts(m, "ls")?;
    r.created_at = ts(m, "c")?;
    r.version = parse(get(m, "v")?)?;
    r.token_hash = hash(get(m, "h")?)?;
    r.user = m.get(b"u").map(user).transpose()?;
    r.exempt_from_limit = m.contains_key(b"x");
    r.counters = m
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(b"n:").map(|n| (n, v)))
        .map(|(n, v)| Ok((String::from_utf8_lossy(n).into_owned(), parse(v)?)))
        .collect::<Result<_, Error>>()?;
    Ok(r)
}

/// A tombstone from its fields.
pub(crate) fn tombstone(v: &Value) -> Result<Tombstone, Error> {
    tombstone_of(&fields(v)?)
}

fn tombstone_of(m: &Fields<'_>) -> Result<Tombstone, Error> {
    let reason = std::str::from_utf8(get(m, "r")?)
        .ok()
        .and_then(EndReason::parse)
        .ok_or(Error::Decode("unknown end reason"))?;
    Ok(Tombstone {
        session_id: sid(get(m, "sid")?)?,
        user: m.get(b"u").map(user).transpose()?,
        reason,
        ended_at: ts(m, "at")?,
        keep_until: ts(m, "k")?,
    })
}

/// What the token route `t:<hash>` holds on one server (see `snap` in
/// `lua/lib.lua`): `<tag> <id>`, then `\n`, `s` or `x`, and the session's or
/// the tombstone's fields, each as `<length>:<bytes>`.
#[derive(Debug)]
pub(crate) enum Snapshot {
    /// A route without a snapshot (written before snapshots existed): the
    /// caller asks the `load` script.
    RouteOnly,
    Session(Arc<SessionRecord>),
    Ended(Tombstone),
}

/// Decodes the value of a token route.
pub(crate) fn snapshot(v: &[u8]) -> Result<Snapshot, Error> {
    let Some(nl) = v.iter().position(|b| *b == b'\n') else {
        return Ok(Snapshot::RouteOnly);
    };
    let (kind, mut rest) = v[nl + 1..]
        .split_first()
        .ok_or(Error::Decode("empty snapshot"))?;
    let mut m = Fields::with_capacity(16);
    let mut key: Option<&[u8]> = None;
    while !rest.is_empty() {
        let colon = rest
            .iter()
            .position(|b| *b == b':')
            .ok_or(Error::Decode("snapshot field without length"))?;
        let len: usize = parse(&rest[..colon])?;
        let end = (colon + 1)
            .checked_add(len)
            .filter(|e| *e <= rest.len())
            .ok_or(Error::Decode("snapshot field past the end"))?;
        let item = &rest[colon + 1..end];
        rest = &rest[end..];
        match key.take() {
            None => key = Some(item),
            Some(k) => m.push(k, item),
        }
    }
    if key.is_some() {
        return Err(Error::Decode("snapshot field without value"));
    }
    match kind {
        b's' => record_of(&m).map(|r| Snapshot::Session(Arc::new(r))),
        b'x' => tombstone_of(&m).map(Snapshot::Ended),
        _ => Err(Error::Decode("unknown snapshot kind")),
    }
}

/// Restorable data from its fields; `None` for an empty reply.
pub(crate) fn restorable(v: &Value) -> Result<Option<Restorable>, Error> {
    let m = fields(v)?;
    if m.is_empty() {
        return Ok(None);
    }
    Ok(Some(Restorable {
        session_id: sid(get(&m, "sid")?)?,
        data: Sealed::from_bytes(get(&m, "d")?.to_vec()),
        keep_until: ts(&m, "k")?,
    }))
}

/// The field pairs of a new refresh family.
pub(crate) fn family_fields(f: &RefreshFamily) -> Vec<(&'static str, Vec<u8>)> {
    let mut v = vec![
        ("id", hex(&f.id.0).into_bytes()),
        ("sid", hex(&f.session_id.0).into_bytes()),
        ("u", f.user.as_str().as_bytes().to_vec()),
        ("c", f.created_at.0.to_string().into_bytes()),
        ("abs", f.absolute_expires_at.0.to_string().into_bytes()),
        ("gen", f.generation.to_string().into_bytes()),
        ("cur", hex(&f.current_hash.0).into_bytes()),
        ("rot", f.rotated_at.0.to_string().into_bytes()),
        ("hs", hex(&f.current_hash.0).into_bytes()),
    ];
    if let Some(p) = &f.previous_hash {
        v.push(("prev", hex(&p.0).into_bytes()));
    }
    if let Some(s) = &f.successor {
        v.push(("succ", s.as_bytes().to_vec()));
    }
    if let Some(r) = f.revoked {
        v.push(("rev", r.as_str().as_bytes().to_vec()));
    }
    v
}

/// A refresh family from its fields; `None` for an empty reply.
pub(crate) fn family(v: &Value) -> Result<Option<RefreshFamily>, Error> {
    let m = fields(v)?;
    if m.is_empty() {
        return Ok(None);
    }
    let opt = |k: &str| m.get(k.as_bytes()).filter(|b| !b.is_empty());
    Ok(Some(RefreshFamily {
        id: FamilyId(unhex_array(get(&m, "id")?, "family id length")?),
        session_id: sid(get(&m, "sid")?)?,
        user: user(get(&m, "u")?)?,
        created_at: ts(&m, "c")?,
        absolute_expires_at: ts(&m, "abs")?,
        generation: parse(get(&m, "gen")?)?,
        current_hash: hash(get(&m, "cur")?)?,
        rotated_at: ts(&m, "rot")?,
        previous_hash: opt("prev").map(hash).transpose()?,
        successor: opt("succ").map(|b| Sealed::from_bytes(b.to_vec())),
        revoked: opt("rev")
            .map(|b| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(FamilyEnd::parse)
                    .ok_or(Error::Decode("unknown family end"))
            })
            .transpose()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_sorts_like_bytes() {
        let a = [0x00, 0xff, 0x10];
        assert_eq!(hex(&a), "00ff10");
        assert_eq!(unhex_array::<3>(hex(&a).as_bytes(), "x").unwrap(), a);
        assert!(hex(&[0x0a]) < hex(&[0xa0]));
        assert!(unhex_array::<1>(b"0g", "x").is_err());
        assert_eq!(unhex_array::<3>(b"00ff10", "x").unwrap(), a);
        assert!(unhex_array::<3>(b"00ff1", "x").is_err());
        assert!(unhex_array::<3>(b"00ff1000", "x").is_err());
        assert!(unhex_array::<3>(b"00fF10", "x").is_err());
        assert_eq!(hex(&[0x01, 0xab, 0xff]), "01abff");
    }

    #[test]
    fn snapshots_decode_as_lib_lua_encodes_them() {
        let sid = format!("0a0b{}", "00".repeat(14));
        let tomb =
            format!("u:616c696365 {sid}\nx3:sid32:{sid}1:r15:revoked_by_user2:at2:101:k2:20");
        let tomb = tomb.as_bytes();
        let Snapshot::Ended(t) = snapshot(tomb).unwrap() else {
            panic!("a tombstone");
        };
        assert_eq!(t.session_id.0[..2], [0x0a, 0x0b]);
        assert_eq!(t.reason, EndReason::RevokedByUser);
        assert_eq!((t.ended_at, t.keep_until), (Timestamp(10), Timestamp(20)));
        assert!(matches!(
            snapshot(&tomb[..tomb.len() - 1]),
            Err(Error::Decode(_))
        ));
        assert!(matches!(snapshot(b"s:aa 0a0b"), Ok(Snapshot::RouteOnly)));
        assert!(matches!(snapshot(b"s:aa 0a0b\nq"), Err(Error::Decode(_))));
        assert!(matches!(
            snapshot(b"s:aa 0a0b\nx3:sid"),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            snapshot(b"s:aa 0a0b\nx99:sid"),
            Err(Error::Decode(_))
        ));
    }
}
