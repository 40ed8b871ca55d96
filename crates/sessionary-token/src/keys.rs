//! Signing keys, the key ring with rotation, its text form and the JWKS document.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use serde_json::{Value, json};
use sessionary_core::Timestamp;

use crate::error::AccessTokenError;

/// Shortest HMAC secret accepted for HS256: 256 bits (RFC 7518 3.2).
pub const HS256_MIN_SECRET: usize = 32;

/// Longest key id accepted, in bytes. A longer `kid` in a token is refused
/// without a look-up.
pub const KID_MAX: usize = 64;

/// The algorithms a key can be pinned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlg {
    /// Ed25519 (`EdDSA`), the default.
    EdDsa,
    /// ECDSA on P-256 with SHA-256 (`ES256`).
    Es256,
    /// HMAC-SHA-256 (`HS256`) with a random secret of at least 256 bits. The
    /// verifier must know the secret, so it is never published in the JWKS.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`RS256`) on a 2048-bit key, for relying
    /// parties that know nothing else (the OpenID Connect provider's ID tokens).
    Rs256,
}

impl SigningAlg {
    /// The JOSE name (`EdDSA`, `ES256`, `HS256`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
        }
    }

    /// Parses the JOSE name, exactly (case-sensitive, as RFC 7515 requires).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EdDSA" => Some(Self::EdDsa),
            "ES256" => Some(Self::Es256),
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }

    pub(crate) const fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key, pinned to one algorithm, named by its `kid`.
///
/// `Debug` never prints the secret.
///
/// # Examples
///
/// ```
/// use sessionary_token::{SigningAlg, SigningKey};
///
/// let key = SigningKey::generate(SigningAlg::EdDsa)?;
/// assert_eq!(key.alg(), SigningAlg::EdDsa);
/// // The secret can be kept (in a 0600 file) and loaded again.
/// let again = SigningKey::from_secret(key.kid(), SigningAlg::EdDsa, key.secret_bytes())?;
/// assert_eq!(again.public_jwk(), key.public_jwk());
/// # Ok::<(), sessionary_token::AccessTokenError>(())
/// ```
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    /// PKCS#8 for EdDSA/ES256/RS256, the raw secret for HS256.
    secret: Vec<u8>,
    /// The raw public key (32 bytes for Ed25519, the 65-byte uncompressed point
    /// for P-256); empty for HS256; for RS256 the modulus (big-endian), the
    /// exponent being in `rsa_e`.
    public: Vec<u8>,
    rsa_e: Vec<u8>,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("secret", &"REDACTED")
            .finish()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AccessTokenError> {
    let mut b = [0u8; N];
    sessionary_core::token::fill_random(&mut b).map_err(|_| AccessTokenError::Random)?;
    Ok(b)
}

/// Whether `kid` is 1..=[`KID_MAX`] characters of `A-Z a-z 0-9 - _ .`.
pub(crate) fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= KID_MAX
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SigningKey {
    /// A new random key with a random `kid` (16 base64url characters).
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Random`] if the system refuses randomness.
    pub fn generate(alg: SigningAlg) -> Result<Self, AccessTokenError> {
        let kid = URL_SAFE_NO_PAD.encode(random_bytes::<12>()?);
        let rng = SystemRandom::new();
        let secret = match alg {
            SigningAlg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| AccessTokenError::Random)?
                .as_ref()
                .to_vec(),
            SigningAlg::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| AccessTokenError::Random)?
                    .as_ref()
                    .to_vec()
            }
            SigningAlg::Hs256 => random_bytes::<HS256_MIN_SECRET>()?.to_vec(),
            SigningAlg::Rs256 => {
                use aws_lc_rs::encoding::AsDer as _;
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| AccessTokenError::Random)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                    pair.as_der().map_err(|_| AccessTokenError::Random)?;
                der.as_ref().to_vec()
            }
        };
        Self::from_secret(&kid, alg, &secret)
    }

    /// Loads a key: PKCS#8 (v1 or v2) for `EdDsa`/`Es256`, PKCS#8 v1 for
    /// `Rs256` (2048 to 8192 bits), the raw secret for `Hs256`.
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Key`] for a bad `kid` (1-64 of `A-Z a-z 0-9 - _ .`), a
    /// document that is not a key of `alg`, or an HS256 secret under 256 bits (or
    /// one byte repeated, which is certainly not random).
    pub fn from_secret(
        kid: &str,
        alg: SigningAlg,
        secret: &[u8],
    ) -> Result<Self, AccessTokenError> {
        if !valid_kid(kid) {
            return Err(AccessTokenError::Key(
                "kid must be 1-64 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        let mut rsa_e = Vec::new();
        let (public, encoding, decoding) = match alg {
            SigningAlg::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(secret)
                    .map_err(|_| AccessTokenError::Key("not an Ed25519 PKCS#8 key"))?;
                let public = pair.public_key().as_ref().to_vec();
                let decoding = DecodingKey::from_ed_der(&public);
                (public, EncodingKey::from_ed_der(secret), decoding)
            }
            SigningAlg::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    secret,
                    &SystemRandom::new(),
                )
                .map_err(|_| AccessTokenError::Key("not a P-256 PKCS#8 key"))?;
                let public = pair.public_key().as_ref().to_vec();
                let decoding = DecodingKey::from_ec_der(&public);
                (public, EncodingKey::from_ec_der(secret), decoding)
            }
            SigningAlg::Hs256 => {
                if secret.len() < HS256_MIN_SECRET {
                    return Err(AccessTokenError::Key(
                        "an HS256 secret must be at least 256 bits",
                    ));
                }
                if secret.iter().all(|b| *b == secret[0]) {
                    return Err(AccessTokenError::Key("an HS256 secret must be random"));
                }
                (
                    Vec::new(),
                    EncodingKey::from_secret(secret),
                    DecodingKey::from_secret(secret),
                )
            }
            SigningAlg::Rs256 => {
                use aws_lc_rs::signature::KeyPair as _;
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(secret)
                    .map_err(|_| AccessTokenError::Key("not an RSA PKCS#8 key"))?;
                if pair.public_modulus_len() < 256 {
                    return Err(AccessTokenError::Key(
                        "an RS256 key must have at least 2048 bits",
                    ));
                }
                let public = pair.public_key();
                let n = public.modulus().big_endian_without_leading_zero().to_vec();
                rsa_e = public.exponent().big_endian_without_leading_zero().to_vec();
                // jsonwebtoken signs with the PKCS#1 key inside the PKCS#8 document.
                let pkcs1 = pkcs8_private_key(secret)
                    .ok_or(AccessTokenError::Key("not an RSA PKCS#8 key"))?;
                let decoding = DecodingKey::from_rsa_raw_components(&n, &rsa_e);
                (n, EncodingKey::from_rsa_der(pkcs1), decoding)
            }
        };
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            secret: secret.to_vec(),
            public,
            rsa_e,
            encoding,
            decoding,
        })
    }

    /// The key id, sent as `kid` in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key signs and verifies with.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The secret: PKCS#8 for `EdDsa`/`Es256`, the raw bytes for `Hs256`. Keep
    /// it in a file only its owner can read (mode 0600).
    pub fn secret_bytes(&self) -> &[u8] {
        &self.secret
    }

    /// The public key as a JWK (`OKP`/`Ed25519` with `x`, or `EC`/`P-256` with
    /// `x` and `y`; always `kid`, `alg` and `use: "sig"`). `None` for `Hs256`,
    /// whose secret is never published.
    pub fn public_jwk(&self) -> Option<Value> {
        match self.alg {
            SigningAlg::EdDsa => Some(json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(&self.public),
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            })),
            SigningAlg::Es256 => {
                // The uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                let (x, y) = self.public.get(1..)?.split_at_checked(32)?;
                Some(json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                    "kid": self.kid,
                    "alg": "ES256",
                    "use": "sig",
                }))
            }
            SigningAlg::Rs256 => Some(json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(&self.public),
                "e": URL_SAFE_NO_PAD.encode(&self.rsa_e),
                "kid": self.kid,
                "alg": "RS256",
                "use": "sig",
            })),
            SigningAlg::Hs256 => None,
        }
    }

    /// Signs `claims` as a compact JWS with this key: header `alg` (the key's
    /// one algorithm), `kid` and `typ` (when given).
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Signing`] if the claims do not serialise or the
    /// signature fails.
    pub fn sign<T: serde::Serialize>(
        &self,
        typ: Option<&str>,
        claims: &T,
    ) -> Result<String, AccessTokenError> {
        let mut header = jsonwebtoken::Header::new(self.alg.jwt());
        header.kid = Some(self.kid.clone());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(AccessTokenError::Signing)
    }
}

/// The `privateKey` octets of a PKCS#8 v1 `PrivateKeyInfo` (for RSA, the
/// PKCS#1 `RSAPrivateKey`): SEQUENCE { INTEGER version, SEQUENCE algorithm,
/// OCTET STRING privateKey, ... }. `None` if the DER does not have that shape.
fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    /// One DER element: (tag, contents, rest).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(n);
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        Some((tag, contents, rest))
    }
    let (0x30, info, _) = element(der)? else {
        return None;
    };
    let (0x02, _version, rest) = element(info)? else {
        return None;
    };
    let (0x30, _algorithm, rest) = element(rest)? else {
        return None;
    };
    let (0x04, key, _) = element(rest)? else {
        return None;
    };
    Some(key)
}

/// The keys of an issuer: one current key signs; retired keys keep verifying
/// until the tokens they signed have expired.
///
/// # Text form
///
/// [`KeyRing::to_text`] / `str::parse` keep the ring in a file (mode 0600), one
/// key per line: `KID:ALG:BASE64URL-SECRET` for the current key and
/// `KID:ALG:BASE64URL-SECRET:RETIRED-AT-MS` for retired ones; the secret is
/// PKCS#8 for `EdDSA`/`ES256` and the raw secret for `HS256`. Empty lines and lines
/// starting with `#` are skipped.
///
/// # Examples
///
/// ```
/// use sessionary_token::{KeyRing, SigningAlg, SigningKey};
/// use sessionary_core::Timestamp;
///
/// let mut ring = KeyRing::new(SigningKey::generate(SigningAlg::EdDsa)?);
/// let old = ring.current().kid().to_owned();
/// ring.rotate(SigningKey::generate(SigningAlg::Es256)?, Timestamp(1_000))?;
/// assert_ne!(ring.current().kid(), old);
/// let text = ring.to_text();
/// let loaded: KeyRing = text.parse()?;
/// assert_eq!(loaded.jwks(), ring.jwks());
/// assert_eq!(ring.jwks()["keys"].as_array().map(Vec::len), Some(2));
/// # Ok::<(), sessionary_token::AccessTokenError>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyRing {
    current: SigningKey,
    /// Retired keys by `kid`, with when they stopped signing.
    retired: HashMap<String, (SigningKey, Timestamp)>,
}

impl KeyRing {
    /// A ring whose only key is `current`.
    pub fn new(current: SigningKey) -> Self {
        Self {
            current,
            retired: HashMap::new(),
        }
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// A key by id, with when it was retired (`None` for the current key).
    pub fn get(&self, kid: &str) -> Option<(&SigningKey, Option<Timestamp>)> {
        if self.current.kid == kid {
            return Some((&self.current, None));
        }
        self.retired.get(kid).map(|(k, t)| (k, Some(*t)))
    }

    /// The number of keys (current and retired).
    pub fn len(&self) -> usize {
        self.retired.len() + 1
    }

    /// Always false: a ring holds at least its current key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Makes `new` the signing key; the previous one is retired at `now` and
    /// keeps verifying (see [`crate::AccessTokens::rotate`] for the window).
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Key`] if a key with the same `kid` is already in the ring.
    pub fn rotate(&mut self, new: SigningKey, now: Timestamp) -> Result<(), AccessTokenError> {
        if self.get(&new.kid).is_some() {
            return Err(AccessTokenError::Key(
                "a key with this kid is already in the ring",
            ));
        }
        let old = std::mem::replace(&mut self.current, new);
        self.retired.insert(old.kid.clone(), (old, now));
        Ok(())
    }

    /// Drops retired keys whose verification window (`retired_at + keep_for`)
    /// has passed; returns how many were dropped.
    pub fn prune(&mut self, now: Timestamp, keep_for: std::time::Duration) -> usize {
        let before = self.retired.len();
        self.retired.retain(|_, (_, t)| t.plus(keep_for) > now);
        before - self.retired.len()
    }

    /// Every key, current first, then retired ones from the most recent.
    fn entries(&self) -> Vec<(&SigningKey, Option<Timestamp>)> {
        let mut retired: Vec<(&SigningKey, Option<Timestamp>)> =
            self.retired.values().map(|(k, t)| (k, Some(*t))).collect();
        retired.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        let mut all = vec![(&self.current, None)];
        all.extend(retired);
        all
    }

    /// The JWKS document (`{"keys": [...]}`) of every public key in the ring,
    /// current first; HS256 secrets are never included.
    pub fn jwks(&self) -> Value {
        self.jwks_filtered(|_| true)
    }

    pub(crate) fn jwks_filtered(&self, keep: impl Fn(Option<Timestamp>) -> bool) -> Value {
        let keys: Vec<Value> = self
            .entries()
            .into_iter()
            .filter(|(_, t)| keep(*t))
            .filter_map(|(k, _)| k.public_jwk())
            .collect();
        json!({ "keys": keys })
    }

    /// The text form (see the type's docs). It holds secrets: write it to a file
    /// only its owner can read.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (key, retired_at) in self.entries() {
            out.push_str(&key.kid);
            out.push(':');
            out.push_str(key.alg.as_str());
            out.push(':');
            out.push_str(&URL_SAFE_NO_PAD.encode(&key.secret));
            if let Some(t) = retired_at {
                out.push(':');
                out.push_str(&t.0.to_string());
            }
            out.push('\n');
        }
        out
    }
}

impl KeyRing {
    /// Reads the ring kept at `path`; if there is no such file, generates a ring
    /// with one new `alg` key and saves it there (0600).
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Io`] if the file cannot be read or written,
    /// [`AccessTokenError::Key`] if it does not parse, [`AccessTokenError::Random`].
    pub fn load_or_generate(path: &Path, alg: SigningAlg) -> Result<Self, AccessTokenError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                #[cfg(unix)]
                if let Ok(md) = std::fs::metadata(path) {
                    use std::os::unix::fs::PermissionsExt as _;
                    if md.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(
                            target: "sessionary::token",
                            file = %path.display(),
                            "signing key file is readable by others; chmod 600 it"
                        );
                    }
                }
                text.parse()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ring = Self::new(SigningKey::generate(alg)?);
                ring.save(path)?;
                Ok(ring)
            }
            Err(e) => Err(AccessTokenError::Io(e)),
        }
    }

    /// Writes the text form to `path`, replacing it atomically: a new owner-only
    /// (0600 on Unix) file beside it, synced, then renamed over it.
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), AccessTokenError> {
        write_private_atomic(path, &self.to_text())
    }
}

/// Replaces the file at `path` with `text` atomically: a new owner-only (0600
/// on Unix) file beside it under a random name, synced, then renamed over it.
/// Key files of the token ring and of the ID token keys are written this way.
///
/// # Errors
///
/// [`AccessTokenError::Io`], [`AccessTokenError::Random`].
pub fn write_private_atomic(path: &Path, text: &str) -> Result<(), AccessTokenError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(
        ".{}.tmp",
        URL_SAFE_NO_PAD.encode(random_bytes::<6>()?)
    ));
    let tmp = std::path::PathBuf::from(tmp_name);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let written = o.open(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    let done = written.and_then(|()| std::fs::rename(&tmp, path));
    if done.is_err() {
        // Best effort: the temporary file may not even exist.
        let _ = std::fs::remove_file(&tmp);
    }
    done.map_err(AccessTokenError::Io)
}

impl FromStr for KeyRing {
    type Err = AccessTokenError;

    /// Parses the text form.
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Key`] for a malformed line, a bad key, a repeated
    /// `kid`, or not exactly one current key.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut current: Option<SigningKey> = None;
        let mut retired: HashMap<String, (SigningKey, Timestamp)> = HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split(':');
            let (Some(kid), Some(alg), Some(secret)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(AccessTokenError::Key(
                    "a key line is KID:ALG:SECRET[:RETIRED-AT]",
                ));
            };
            let retired_at = match parts.next() {
                None => None,
                Some(t) => Some(Timestamp(t.parse().map_err(|_| {
                    AccessTokenError::Key("retired-at must be milliseconds since the epoch")
                })?)),
            };
            if parts.next().is_some() {
                return Err(AccessTokenError::Key(
                    "a key line is KID:ALG:SECRET[:RETIRED-AT]",
                ));
            }
            let alg = SigningAlg::parse(alg).ok_or(AccessTokenError::Key(
                "unknown algorithm (EdDSA, ES256, HS256)",
            ))?;
            let secret = URL_SAFE_NO_PAD
                .decode(secret)
                .map_err(|_| AccessTokenError::Key("the secret must be base64url"))?;
            let key = SigningKey::from_secret(kid, alg, &secret)?;
            let seen = current.as_ref().is_some_and(|c| c.kid == kid);
            match retired_at {
                None if current.is_some() => {
                    return Err(AccessTokenError::Key("more than one current key"));
                }
                None => current = Some(key),
                Some(t) => {
                    if seen || retired.insert(kid.to_owned(), (key, t)).is_some() {
                        return Err(AccessTokenError::Key("a kid appears twice"));
                    }
                }
            }
        }
        let current = current.ok_or(AccessTokenError::Key("no current key"))?;
        if retired.contains_key(&current.kid) {
            return Err(AccessTokenError::Key("a kid appears twice"));
        }
        Ok(Self { current, retired })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_are_exact() {
        assert_eq!(SigningAlg::parse("EdDSA"), Some(SigningAlg::EdDsa));
        assert_eq!(SigningAlg::parse("ES256"), Some(SigningAlg::Es256));
        assert_eq!(SigningAlg::parse("HS256"), Some(SigningAlg::Hs256));
        assert_eq!(SigningAlg::parse("RS256"), Some(SigningAlg::Rs256));
        for bad in [
            "none", "eddsa", "EDDSA", "es256", "HS384", "rs256", "RS384", "",
        ] {
            assert_eq!(SigningAlg::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn rs256_keys_sign_verify_and_survive_their_text_form() -> Result<(), Box<dyn std::error::Error>>
    {
        let key = SigningKey::generate(SigningAlg::Rs256)?;
        let jwk = key.public_jwk().ok_or("a JWK")?;
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().ok_or("n")?)?;
        assert_eq!(n.len(), 256, "2048 bits");
        let token = key.sign(Some("JWT"), &json!({"sub": "alice"}))?;
        let header = jsonwebtoken::decode_header(&token)?;
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let decoding = DecodingKey::from_jwk(&serde_json::from_value(jwk)?)?;
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &v)?;
        assert_eq!(data.claims["sub"], "alice");
        // The text form keeps it; a short or foreign document is refused.
        let ring: KeyRing = KeyRing::new(key.clone()).to_text().parse()?;
        assert_eq!(ring.current().public_jwk(), key.public_jwk());
        assert!(
            SigningKey::from_secret("k", SigningAlg::Rs256, &[0x30, 0x03, 0x02, 0x01, 0x00])
                .is_err()
        );
        let ed = SigningKey::generate(SigningAlg::EdDsa)?;
        assert!(SigningKey::from_secret("k", SigningAlg::Rs256, ed.secret_bytes()).is_err());
        Ok(())
    }

    #[test]
    fn kids_are_short_and_plain() {
        assert!(valid_kid("k-1_a.B"));
        assert!(valid_kid(&"a".repeat(KID_MAX)));
        for bad in [
            "",
            "a:b",
            "../x",
            "a b",
            "a'b",
            "é",
            &"a".repeat(KID_MAX + 1),
        ] {
            assert!(!valid_kid(bad), "{bad}");
        }
    }

    #[test]
    fn generated_kids_differ() {
        let a = SigningKey::generate(SigningAlg::EdDsa).expect("key");
        let b = SigningKey::generate(SigningAlg::EdDsa).expect("key");
        assert_ne!(a.kid(), b.kid());
        assert_eq!(a.kid().len(), 16);
    }
}
