//! TLS to Redis (`rediss://`, `rediss+cluster://`, `rediss+sentinel://`):
//! redis-rs over rustls (ring), the server's certificate always verified,
//! against the webpki roots or the CA of [`RedisOptions::with_tls_ca`](crate::RedisOptions::with_tls_ca).

use std::fmt;
use std::sync::Arc;

use redis::{ClientTlsConfig, ErrorKind, RedisError, TlsCertificates};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The PEM a TLS connection trusts and shows: a CA replacing the webpki
/// roots, and the client's certificate and key for `tls-auth-clients yes`.
#[derive(Clone, Default)]
pub(crate) struct TlsConfig {
    ca: Option<Arc<[u8]>>,
    identity: Option<Identity>,
}

/// A client certificate (chain) and its private key, PEM.
#[derive(Clone)]
struct Identity {
    cert: Arc<[u8]>,
    key: Arc<[u8]>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a secret; the rest is noise.
        f.debug_struct("TlsConfig")
            .field(
                "ca",
                &self
                    .ca
                    .as_ref()
                    .map(|c| format!("{} bytes of PEM", c.len())),
            )
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

/// Whether one node's URL (as [`crate::target::Target`] spells them) is a
/// TLS one: `rediss://`.
pub(crate) fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// Whether any of `urls` is a TLS one (a Target's nodes share one scheme).
pub(crate) fn any_tls(urls: &[String]) -> bool {
    urls.iter().any(|u| is_tls(u))
}

/// Whether `pem` is PEM holding at least one certificate.
pub(crate) fn has_certificates(pem: &[u8]) -> bool {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .is_ok_and(|certs| !certs.is_empty())
}

/// Whether `pem` holds a private key (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn has_private_key(pem: &[u8]) -> bool {
    PrivateKeyDer::from_pem_slice(pem).is_ok()
}

fn invalid(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what))
}

/// rustls needs a process-wide crypto provider when more than one is
/// compiled in; ring is the one this workspace uses. Installing fails only
/// when one is installed already, which is as good.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl TlsConfig {
    pub(crate) fn set_ca(&mut self, pem: Vec<u8>) {
        self.ca = Some(pem.into());
    }

    pub(crate) fn set_identity(&mut self, cert: Vec<u8>, key: Vec<u8>) {
        self.identity = Some(Identity {
            cert: cert.into(),
            key: key.into(),
        });
    }

    /// Whether anything is set (a non-TLS URL with TLS settings is refused).
    pub(crate) fn is_set(&self) -> bool {
        self.ca.is_some() || self.identity.is_some()
    }

    /// Checks the PEM: the CA holds at least one certificate, the identity a
    /// certificate and a private key. The messages never hold the PEM.
    pub(crate) fn check(&self) -> Result<(), RedisError> {
        if self.ca.as_deref().is_some_and(|ca| !has_certificates(ca)) {
            return Err(invalid("the TLS CA holds no valid PEM certificate"));
        }
        if let Some(Identity { cert, key }) = &self.identity {
            if !has_certificates(cert) {
                return Err(invalid(
                    "the TLS client certificate holds no valid PEM certificate",
                ));
            }
            if !has_private_key(key) {
                return Err(invalid("the TLS client key holds no PEM private key"));
            }
        }
        Ok(())
    }

    /// What redis-rs takes, or `None` for the defaults (webpki roots, no
    /// client certificate).
    pub(crate) fn certificates(&self) -> Option<TlsCertificates> {
        self.is_set().then(|| TlsCertificates {
            client_tls: self.identity.as_ref().map(|i| ClientTlsConfig {
                client_cert: i.cert.to_vec(),
                client_key: i.key.to_vec(),
            }),
            root_cert: self.ca.as_ref().map(|c| c.to_vec()),
        })
    }

    /// A client for one server: `rediss://` URLs get the certificates,
    /// `redis://` ones are opened as they are.
    pub(crate) fn client(&self, url: &str) -> Result<redis::Client, RedisError> {
        match (is_tls(url), self.certificates()) {
            (true, Some(certs)) => {
                install_crypto_provider();
                redis::Client::build_with_tls(url, certs)
            }
            (true, None) => {
                install_crypto_provider();
                redis::Client::open(url)
            }
            (false, _) => redis::Client::open(url),
        }
    }
}
