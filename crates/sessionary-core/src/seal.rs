//! Data sealed at rest: AES-256-GCM under a key ring.
//!
//! Blob layout: `[1: format=1][4: key id, big-endian][12: nonce][ciphertext][16: tag]`.
//! The key id in each blob lets old blobs open after a new key is rotated in;
//! new blobs are always sealed with the current key. The associated data binds a
//! blob to its owner (the session id, or the user id), so a blob copied to another
//! session does not open.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::token::fill_random;

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + NONCE_LEN;
const TAG: usize = 16;

/// A sealed blob. Cheap to clone (shared bytes).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sealed(Arc<[u8]>);

impl Sealed {
    /// Wraps stored bytes (not checked until opened).
    pub fn from_bytes(b: impl Into<Arc<[u8]>>) -> Self {
        Self(b.into())
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether the blob is empty (no data was ever stored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key id this blob was sealed with, if it has a header.
    pub fn key_id(&self) -> Option<u32> {
        let b = self.0.get(1..5)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(|v| Self(v.into()))
            .map_err(serde::de::Error::custom)
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The blob names a key the ring does not hold.
    #[error("unknown data key id {0}")]
    UnknownKey(u32),
    /// The blob is truncated, tampered with, or sealed for another owner.
    #[error("sealed data does not open (tampered, truncated or foreign)")]
    Corrupt,
    /// A key given to the ring is not 32 bytes of base64.
    #[error("invalid data key: {0}")]
    InvalidKey(&'static str),
    /// The system refused randomness for a nonce.
    #[error("no randomness for a nonce")]
    Random,
}

/// AES-256-GCM keys by id; one of them is current. `Debug` prints no key material.
///
/// # Examples
///
/// ```
/// use sessionary_core::KeyRing;
///
/// let old = KeyRing::generate(1)?;
/// let blob = old.seal(b"owner", b"hello")?;
/// // Rotate: key 2 seals from now on, key 1 still opens old blobs.
/// let ring = KeyRing::generate(2)?.with_key(1, old.export_key(1).unwrap())?;
/// assert_eq!(ring.open(b"owner", &blob)?, b"hello");
/// assert_eq!(ring.seal(b"owner", b"x")?.key_id(), Some(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    current: u32,
    keys: Arc<BTreeMap<u32, (LessSafeKey, [u8; 32])>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("keys", &"REDACTED")
            .finish()
    }
}

fn make_key(bytes: [u8; 32]) -> Result<(LessSafeKey, [u8; 32]), SealError> {
    let unbound =
        UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::InvalidKey("rejected"))?;
    Ok((LessSafeKey::new(unbound), bytes))
}

impl KeyRing {
    /// A ring whose current key is `key` under `id`.
    ///
    /// # Errors
    ///
    /// [`SealError::InvalidKey`] if the key is refused.
    pub fn new(id: u32, key: [u8; 32]) -> Result<Self, SealError> {
        let mut keys = BTreeMap::new();
        keys.insert(id, make_key(key)?);
        Ok(Self {
            current: id,
            keys: Arc::new(keys),
        })
    }

    /// A ring with a fresh random current key under `id`.
    ///
    /// # Errors
    ///
    /// [`SealError::Random`] when the system refuses randomness.
    pub fn generate(id: u32) -> Result<Self, SealError> {
        let mut k = [0u8; 32];
        fill_random(&mut k).map_err(|_| SealError::Random)?;
        Self::new(id, k)
    }

    /// Adds an older key that still opens blobs but no longer seals.
    ///
    /// # Errors
    ///
    /// [`SealError::InvalidKey`] if the key is refused.
    pub fn with_key(mut self, id: u32, key: [u8; 32]) -> Result<Self, SealError> {
        let k = make_key(key)?;
        Arc::make_mut(&mut self.keys).insert(id, k);
        Ok(self)
    }

    /// Parses `"ID:BASE64KEY"` (standard or URL-safe base64 of 32 bytes).
    ///
    /// # Errors
    ///
    /// [`SealError::InvalidKey`] naming what is wrong.
    pub fn parse_key(spec: &str) -> Result<(u32, [u8; 32]), SealError> {
        let (id, b64) = spec
            .split_once(':')
            .ok_or(SealError::InvalidKey("expected ID:BASE64KEY"))?;
        let id: u32 = id
            .trim()
            .parse()
            .map_err(|_| SealError::InvalidKey("key id must be a number"))?;
        let b64 = b64.trim();
        let raw = STANDARD
            .decode(b64)
            .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
            .map_err(|_| SealError::InvalidKey("key must be base64"))?;
        let key = <[u8; 32]>::try_from(raw.as_slice())
            .map_err(|_| SealError::InvalidKey("key must be 32 bytes"))?;
        Ok((id, key))
    }

    /// Formats a key as `"ID:BASE64KEY"` for configuration files.
    pub fn format_key(id: u32, key: &[u8; 32]) -> String {
        format!("{id}:{}", STANDARD.encode(key))
    }

    /// The raw bytes of key `id` (to persist a generated ring).
    pub fn export_key(&self, id: u32) -> Option<[u8; 32]> {
        self.keys.get(&id).map(|(_, b)| *b)
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> u32 {
        self.current
    }

    /// Seals `plaintext` for `owner` with the current key.
    ///
    /// # Errors
    ///
    /// [`SealError::Random`] when no nonce can be drawn.
    pub fn seal(&self, owner: &[u8], plaintext: &[u8]) -> Result<Sealed, SealError> {
        let (key, _) = self
            .keys
            .get(&self.current)
            .ok_or(SealError::UnknownKey(self.current))?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce).map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + TAG);
        out.push(FORMAT);
        out.extend_from_slice(&self.current.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner),
                &mut out[HEADER..],
            )
            .map_err(|_| SealError::Corrupt)?;
        out.extend_from_slice(tag.as_ref());
        Ok(Sealed(out.into()))
    }

    /// Opens a blob sealed for `owner` by any key in the ring.
    ///
    /// # Errors
    ///
    /// [`SealError::UnknownKey`] for a key not in the ring, [`SealError::Corrupt`]
    /// for anything that does not authenticate.
    pub fn open(&self, owner: &[u8], blob: &Sealed) -> Result<Vec<u8>, SealError> {
        let b = blob.as_bytes();
        if b.len() < HEADER + TAG || b[0] != FORMAT {
            return Err(SealError::Corrupt);
        }
        let id = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        let (key, _) = self.keys.get(&id).ok_or(SealError::UnknownKey(id))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&b[5..HEADER]);
        let mut buf = b[HEADER..].to_vec();
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner),
                &mut buf,
            )
            .map_err(|_| SealError::Corrupt)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_owner_binding() {
        let ring = KeyRing::generate(7).unwrap();
        let blob = ring.seal(b"session-a", b"{\"cart\":[1]}").unwrap();
        assert_eq!(blob.key_id(), Some(7));
        assert!(!blob.as_bytes().windows(4).any(|w| w == b"cart"));
        assert_eq!(ring.open(b"session-a", &blob).unwrap(), b"{\"cart\":[1]}");
        assert_eq!(ring.open(b"session-b", &blob), Err(SealError::Corrupt));
    }

    #[test]
    fn tampering_is_detected() {
        let ring = KeyRing::generate(1).unwrap();
        let blob = ring.seal(b"o", b"secret").unwrap();
        let mut bytes = blob.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            ring.open(b"o", &Sealed::from_bytes(bytes)),
            Err(SealError::Corrupt)
        );
        assert_eq!(
            ring.open(b"o", &Sealed::from_bytes(&blob.as_bytes()[..10])),
            Err(SealError::Corrupt)
        );
    }

    #[test]
    fn rotation_keeps_old_blobs_open() {
        let r1 = KeyRing::generate(1).unwrap();
        let old = r1.seal(b"o", b"v1").unwrap();
        let r2 = KeyRing::generate(2)
            .unwrap()
            .with_key(1, r1.export_key(1).unwrap())
            .unwrap();
        assert_eq!(r2.open(b"o", &old).unwrap(), b"v1");
        let new = r2.seal(b"o", b"v2").unwrap();
        assert_eq!(new.key_id(), Some(2));
        assert_eq!(r1.open(b"o", &new), Err(SealError::UnknownKey(2)));
    }

    #[test]
    fn key_specs_parse() {
        let k = [9u8; 32];
        let spec = KeyRing::format_key(3, &k);
        assert_eq!(KeyRing::parse_key(&spec).unwrap(), (3, k));
        assert!(KeyRing::parse_key("3").is_err());
        assert!(KeyRing::parse_key("x:AAAA").is_err());
        assert!(KeyRing::parse_key("3:AAAA").is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let ring = KeyRing::new(1, [0x41; 32]).unwrap();
        let s = format!("{ring:?}");
        assert!(s.contains("REDACTED"));
        assert!(!s.contains("QUFB"));
    }
}
