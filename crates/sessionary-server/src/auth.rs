//! API-key authentication of the service API.
//!
//! Keys are kept only as SHA-256 digests. A presented key is hashed and
//! compared with **every** stored digest without an early exit, so neither the
//! key's length nor which key matched shows in the timing.

use std::fmt;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use subtle::{Choice, ConstantTimeEq as _};

use crate::AppState;
use crate::problem::Problem;

/// The accepted API keys (digests only). `Debug` prints `REDACTED`.
///
/// # Examples
///
/// ```
/// use sessionary_server::ApiKeys;
/// let keys = ApiKeys::new(["an-api-key-of-at-least-32-characters"]);
/// assert!(keys.verify("an-api-key-of-at-least-32-characters"));
/// assert!(!keys.verify("an-api-key-of-at-least-32-characterz"));
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl ApiKeys {
    /// Accepts each of `keys`.
    pub fn new<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        Self {
            digests: keys
                .into_iter()
                .map(|k| sha256(k.as_ref().as_bytes()))
                .collect(),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether no key is accepted (then every request is refused).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the keys (constant time in the key material).
    pub fn verify(&self, presented: &str) -> bool {
        let d = sha256(presented.as_bytes());
        let found = self
            .digests
            .iter()
            .fold(Choice::from(0), |found, k| found | k.ct_eq(&d));
        found.into()
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys, REDACTED)", self.digests.len())
    }
}

/// The bearer credential of `Authorization: Bearer <key>`, if well-formed.
pub(crate) fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|k| !k.is_empty())
}

/// Middleware: refuses requests without a valid API key with `401 unauthorized`.
pub(crate) async fn require_api_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match bearer(&req) {
        Some(k) if state.keys.verify(k) => next.run(req).await,
        _ => Problem::unauthorized().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_keys_pass() {
        let keys = ApiKeys::new(["a".repeat(40), "b".repeat(40)]);
        assert!(keys.verify(&"a".repeat(40)));
        assert!(keys.verify(&"b".repeat(40)));
        assert!(!keys.verify(&"a".repeat(39)));
        assert!(!keys.verify(""));
        assert!(!ApiKeys::default().verify(""));
        assert!(format!("{keys:?}").contains("REDACTED"));
    }
}
