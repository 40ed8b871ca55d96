//! The ID tokens' signing keys: one per algorithm a client uses, kept in
//! `<data_dir>/oidc-keys` (mode 0600), one key per line in the text form of
//! [`sessionary_token::KeyRing`] (`KID:ALG:BASE64URL-PKCS8`).

use std::path::Path;

use serde_json::{Value, json};
use sessionary_token::{AccessTokenError, KeyRing, SigningAlg, SigningKey};

/// File in the data folder holding the ID token signing keys.
pub const OIDC_KEYS_FILE: &str = "oidc-keys";

/// One signing key per algorithm (EdDSA, ES256, RS256 as clients need them).
///
/// `Debug` never prints a secret (the keys' own `Debug` redacts them).
#[derive(Clone, Debug)]
pub struct IdTokenKeys {
    keys: Vec<SigningKey>,
}

impl IdTokenKeys {
    /// New random keys, one for each of `algs` (EdDSA always).
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Random`] if the system refuses randomness.
    pub fn generate(algs: &[SigningAlg]) -> Result<Self, AccessTokenError> {
        let mut keys = Self { keys: Vec::new() };
        keys.add_missing(algs)?;
        Ok(keys)
    }

    /// Reads the keys kept at `path`, generates the algorithms of `algs` (and
    /// EdDSA) that it lacks, and saves the file if anything was added.
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Io`] if the file cannot be read or written,
    /// [`AccessTokenError::Key`] if a line does not parse.
    pub fn load_or_generate(path: &Path, algs: &[SigningAlg]) -> Result<Self, AccessTokenError> {
        let mut keys = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut keys = Vec::new();
                for line in text.lines() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let ring: KeyRing = line.parse()?;
                    keys.push(ring.current().clone());
                }
                Self { keys }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self { keys: Vec::new() },
            Err(e) => return Err(AccessTokenError::Io(e)),
        };
        if keys.add_missing(algs)? {
            keys.save(path)?;
        }
        Ok(keys)
    }

    fn add_missing(&mut self, algs: &[SigningAlg]) -> Result<bool, AccessTokenError> {
        let mut added = false;
        for alg in std::iter::once(&SigningAlg::EdDsa).chain(algs) {
            if self.key(*alg).is_none() {
                self.keys.push(SigningKey::generate(*alg)?);
                added = true;
            }
        }
        Ok(added)
    }

    /// The key signing with `alg`.
    pub fn key(&self, alg: SigningAlg) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg() == alg)
    }

    /// A key by its `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid() == kid)
    }

    /// The algorithms there are keys for.
    pub fn algs(&self) -> Vec<SigningAlg> {
        self.keys.iter().map(SigningKey::alg).collect()
    }

    /// The JWKS document of every key.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .filter_map(SigningKey::public_jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// Writes the keys to `path` (`write_private_atomic`: 0600, renamed over it).
    fn save(&self, path: &Path) -> Result<(), AccessTokenError> {
        let text: String = self
            .keys
            .iter()
            .map(|k| KeyRing::new(k.clone()).to_text())
            .collect();
        sessionary_token::write_private_atomic(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_and_missing_algorithms_added() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("oidc-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(OIDC_KEYS_FILE);
        let _ = std::fs::remove_file(&path);
        let first = IdTokenKeys::load_or_generate(&path, &[SigningAlg::Es256])?;
        assert_eq!(first.algs(), [SigningAlg::EdDsa, SigningAlg::Es256]);
        let again = IdTokenKeys::load_or_generate(&path, &[SigningAlg::Rs256])?;
        assert_eq!(
            again.algs(),
            [SigningAlg::EdDsa, SigningAlg::Es256, SigningAlg::Rs256]
        );
        assert_eq!(
            again.key(SigningAlg::Es256).map(SigningKey::kid),
            first.key(SigningAlg::Es256).map(SigningKey::kid)
        );
        let jwks = again.jwks();
        let rsa = &jwks["keys"][2];
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["e"], "AQAB");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
