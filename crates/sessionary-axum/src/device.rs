//! The [`ClientDevice`] extractor: what "manage sessions" shows about a session.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::header;
use http::request::Parts;
use sessionary_core::Device;

/// The requesting device: the peer's IP address (from axum's
/// [`ConnectInfo<SocketAddr>`], so serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`) and the `User-Agent`
/// header, with a label such as "Chrome on Linux". Never fails: what is
/// missing stays `None`.
///
/// Behind a reverse proxy the peer is the proxy; build the [`Device`] from the
/// header your proxy sets (and only trusts) instead.
///
/// # Examples
///
/// ```
/// use sessionary_axum::{ClientDevice, Session, SessionRejection};
/// use sessionary_core::{NewSession, UserId};
///
/// async fn sign_in(session: Session, ClientDevice(device): ClientDevice)
///     -> Result<(), SessionRejection> {
///     let new = NewSession::user(UserId::new("alice")?).with_device(device);
///     session.login(new).await?;
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientDevice(pub Device);

impl<S: Send + Sync> FromRequestParts<S> for ClientDevice {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let ua = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Ok(Self(Device::new(ip, ua)))
    }
}
