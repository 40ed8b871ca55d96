//! Session identifiers and bearer tokens.
//!
//! A [`SessionToken`] is the bearer secret handed to the client (256 bits from
//! the operating system's CSPRNG, base64url without padding, 43 characters).
//! Stores only ever see its SHA-256, a [`TokenHash`]. A [`SessionId`] is a
//! public, random 128-bit handle used to list and revoke sessions and in logs;
//! it is not a credential.

use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of an encoded [`SessionToken`] in characters.
pub const TOKEN_LEN: usize = 43;
/// Length of an encoded [`SessionId`] in characters.
pub const SESSION_ID_LEN: usize = 22;

/// Why a token or id string was refused. Nothing is looked up for such input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The string has the wrong length.
    #[error("wrong length: expected {expected} characters, got {actual}")]
    Length {
        /// Characters expected.
        expected: usize,
        /// Characters received (capped report for huge input is not needed: only the count).
        actual: usize,
    },
    /// The string is not canonical base64url without padding.
    #[error("not canonical base64url")]
    Encoding,
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Errors
///
/// [`crate::Error::Random`] when the operating system refuses randomness.
pub fn fill_random(buf: &mut [u8]) -> Result<(), crate::Error> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| crate::Error::Random)
}

/// The base64url alphabet.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Marks a byte outside [`ALPHABET`] in [`DECODE`] (its top bit is never set by a
/// 6-bit value).
const INVALID: u8 = 0xFF;
/// The 6-bit value of each byte of [`ALPHABET`], [`INVALID`] for every other byte.
const DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Decodes exactly `expected` base64url characters, unpadded, into `N` bytes, with
/// the same acceptance as `base64`'s `URL_SAFE_NO_PAD` (canonical only: no
/// padding, no foreign alphabet, unused trailing bits zero), so every value has
/// exactly one accepted spelling. Hand-written because it runs on every request
/// (a session cookie), and is about three times cheaper than the general engine
/// for these fixed sizes. `expected` must be `ceil(N * 4 / 3)`.
fn decode_fixed<const N: usize>(s: &str, expected: usize) -> Result<[u8; N], TokenError> {
    decode_fixed_bytes(s.as_bytes(), expected)
}

/// [`decode_fixed`] for text still in bytes (anything but the alphabet is refused).
fn decode_fixed_bytes<const N: usize>(b: &[u8], expected: usize) -> Result<[u8; N], TokenError> {
    if b.len() != expected {
        return Err(TokenError::Length {
            expected,
            actual: b.len(),
        });
    }
    let mut out = [0u8; N];
    // The OR of every decoded value: its top bit is set if any byte was invalid.
    let mut seen = 0u8;
    let full = N / 3;
    for (quad, o) in b.chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let v = [
            DECODE[usize::from(quad[0])],
            DECODE[usize::from(quad[1])],
            DECODE[usize::from(quad[2])],
            DECODE[usize::from(quad[3])],
        ];
        seen |= v[0] | v[1] | v[2] | v[3];
        let n =
            u32::from(v[0]) << 18 | u32::from(v[1]) << 12 | u32::from(v[2]) << 6 | u32::from(v[3]);
        o.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let mut n = 0u32;
    for &c in &b[full * 4..] {
        let v = DECODE[usize::from(c)];
        seen |= v;
        n = n << 6 | u32::from(v & 0x3F);
    }
    let trailing_ok = match N % 3 {
        // Two characters: 12 bits, 8 used.
        1 => {
            out[N - 1] = (n >> 4) as u8;
            n & 0xF == 0
        }
        // Three characters: 18 bits, 16 used.
        2 => {
            out[N - 2] = (n >> 10) as u8;
            out[N - 1] = (n >> 2) as u8;
            n & 0x3 == 0
        }
        _ => true,
    };
    if seen & 0x80 != 0 || !trailing_ok {
        return Err(TokenError::Encoding);
    }
    Ok(out)
}

/// The bearer secret of a session. Never stored, never logged.
///
/// # Examples
///
/// ```
/// use sessionary_core::SessionToken;
///
/// let token = SessionToken::generate()?;
/// let text = token.encode();
/// assert_eq!(text.len(), 43);
/// let parsed = SessionToken::parse(&text)?;
/// assert_eq!(parsed.hash(), token.hash());
/// assert!(SessionToken::parse("not a token").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; 32]);

impl SessionToken {
    /// A new token from the CSPRNG.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Random`] when the system refuses randomness.
    pub fn generate() -> Result<Self, crate::Error> {
        let mut b = [0u8; 32];
        fill_random(&mut b)?;
        Ok(Self(b))
    }

    /// Parses the 43-character base64url form; anything else is refused
    /// without touching a store.
    ///
    /// # Errors
    ///
    /// [`TokenError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        decode_fixed::<32>(s, TOKEN_LEN).map(Self)
    }

    /// [`Self::parse`] for text in bytes, such as a header value, which need not
    /// be checked as UTF-8 first: exactly the same byte strings are accepted.
    ///
    /// # Errors
    ///
    /// [`TokenError`] naming what is wrong.
    pub fn parse_bytes(b: &[u8]) -> Result<Self, TokenError> {
        decode_fixed_bytes::<32>(b, TOKEN_LEN).map(Self)
    }

    /// The text form handed to the client.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The SHA-256 of the token: the only form a store sees.
    pub fn hash(&self) -> TokenHash {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut h = [0u8; 32];
        h.copy_from_slice(d.as_ref());
        TokenHash(h)
    }

    /// The raw secret bytes (for HMAC derivations such as CSRF tokens).
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// A token from secret bytes (an opened refresh successor).
    pub(crate) fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(REDACTED)")
    }
}

/// SHA-256 of a [`SessionToken`]; the key under which a store finds a session.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds from a stored digest.
    ///
    /// # Errors
    ///
    /// [`TokenError::Length`] unless `b` is 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, TokenError> {
        <[u8; 32]>::try_from(b)
            .map(Self)
            .map_err(|_| TokenError::Length {
                expected: 32,
                actual: b.len(),
            })
    }

    /// base64url text of the digest (for stores that key by text).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest is not the secret, but there is no reason to spread it in logs either.
        write!(f, "TokenHash({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// The public handle of a session: random, 128 bits, base64url (22 characters).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A new random id.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Random`] when the system refuses randomness.
    pub fn generate() -> Result<Self, crate::Error> {
        let mut b = [0u8; 16];
        fill_random(&mut b)?;
        Ok(Self(b))
    }

    /// Parses the 22-character text form.
    ///
    /// # Errors
    ///
    /// [`TokenError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        decode_fixed::<16>(s, SESSION_ID_LEN).map(Self)
    }

    /// Builds from stored bytes.
    ///
    /// # Errors
    ///
    /// [`TokenError::Length`] unless `b` is 16 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, TokenError> {
        <[u8; 16]>::try_from(b)
            .map(Self)
            .map_err(|_| TokenError::Length {
                expected: 16,
                actual: b.len(),
            })
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; SESSION_ID_LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl FromStr for SessionId {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode_fixed::<32>(&s, TOKEN_LEN)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// Who a session belongs to. At most 256 bytes, not empty, no control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

/// Longest accepted [`UserId`], in bytes.
pub const USER_ID_MAX: usize = 256;

impl UserId {
    /// Validates and wraps a user id.
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidInput`] for an empty, too long or control-character id.
    pub fn new(s: impl Into<String>) -> Result<Self, crate::Error> {
        let s = s.into();
        if s.is_empty() || s.len() > USER_ID_MAX || s.chars().any(char::is_control) {
            return Err(crate::Error::InvalidInput(
                "user id must be 1-256 bytes without control characters",
            ));
        }
        Ok(Self(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = crate::Error;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<UserId> for String {
    fn from(u: UserId) -> String {
        u.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", self.0)
    }
}

/// A hasher for keys that are already uniformly random ([`TokenHash`], [`SessionId`]):
/// their `Hash` impls write one `u64` taken from the key, which is used as is.
/// Other input is folded FNV-style so it stays correct, if slower.
#[derive(Default, Clone, Copy, Debug)]
pub struct RandomKeyHasher(u64);

impl Hasher for RandomKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by token hashes or session ids, hashed with [`RandomKeyHasher`].
pub type RandomKeyMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<RandomKeyHasher>>;

// Token hashes and session ids are uniformly random: hashing their first 8 bytes
// is as good as hashing all of them, and lets maps use a pass-through hasher.
impl Hash for TokenHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(b));
    }
}

impl Hash for SessionId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_256_bit() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose_secret().len(), 32);
        assert_eq!(a.encode().len(), TOKEN_LEN);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = SessionToken::generate().unwrap().encode();
        assert!(SessionToken::parse(&good).is_ok());
        assert!(matches!(
            SessionToken::parse(&good[..42]),
            Err(TokenError::Length { .. })
        ));
        assert!(matches!(
            SessionToken::parse(&"A".repeat(10_000)),
            Err(TokenError::Length { .. })
        ));
        let mut bad = good.clone();
        bad.replace_range(0..1, "+");
        assert_eq!(SessionToken::parse(&bad), Err(TokenError::Encoding));
        let mut padded = good[..42].to_string();
        padded.push('=');
        assert_eq!(SessionToken::parse(&padded), Err(TokenError::Encoding));
        // Non-canonical: the last character carries 4 unused bits that must be zero.
        let mut noncanon = good[..42].to_string();
        noncanon.push('B');
        if URL_SAFE_NO_PAD.decode(&noncanon).is_err() {
            assert_eq!(SessionToken::parse(&noncanon), Err(TokenError::Encoding));
        }
    }

    /// What the `base64` engine accepts, for comparison with [`decode_fixed`].
    fn engine<const N: usize>(s: &str) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut out) {
            Ok(n) if n == N => Some(out),
            _ => None,
        }
    }

    #[test]
    fn decode_accepts_exactly_what_the_engine_accepts() {
        fn check<const N: usize>(len: usize) {
            for _ in 0..16 {
                let mut raw = [0u8; N];
                fill_random(&mut raw).unwrap();
                let text = URL_SAFE_NO_PAD.encode(raw);
                assert_eq!(text.len(), len);
                assert_eq!(decode_fixed::<N>(&text, len).ok(), Some(raw));
                // Every ASCII byte at every position.
                for pos in 0..len {
                    for c in 0u8..128 {
                        let mut t = text.clone().into_bytes();
                        t[pos] = c;
                        let t = String::from_utf8(t).unwrap();
                        assert_eq!(decode_fixed::<N>(&t, len).ok(), engine::<N>(&t), "{t:?}");
                    }
                }
            }
            // Non-ASCII input of the right length in bytes.
            let mut t = "A".repeat(len - 2);
            t.push('é');
            assert_eq!(decode_fixed::<N>(&t, len), Err(TokenError::Encoding));
            for high in 128u8..=255 {
                let mut t = vec![b'A'; len];
                t[len / 2] = high;
                assert_eq!(decode_fixed_bytes::<N>(&t, len), Err(TokenError::Encoding));
            }
        }
        check::<32>(TOKEN_LEN);
        check::<16>(SESSION_ID_LEN);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = SessionToken::generate().unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains(&t.encode()));
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn session_id_round_trips() {
        let id = SessionId::generate().unwrap();
        let s = id.to_string();
        assert_eq!(s.len(), SESSION_ID_LEN);
        assert_eq!(SessionId::parse(&s).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
    }

    #[test]
    fn user_id_validation() {
        assert!(UserId::new("alice").is_ok());
        assert!(UserId::new("").is_err());
        assert!(UserId::new("a\nb").is_err());
        assert!(UserId::new("x".repeat(257)).is_err());
    }
}
