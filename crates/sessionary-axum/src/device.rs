//! The [`ClientDevice`] extractor: what "manage sessions" shows about a session,
//! with the client IP taken from proxy headers only when the peer is a
//! configured [`TrustedProxies`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{HeaderMap, header};
use ipnet::IpNet;
use sessionary_core::Device;
use sessionary_core::binding::canonical;

/// The requesting device: the client IP address and the `User-Agent` header,
/// with a label such as "Chrome on Linux". Never fails: what is missing stays
/// `None`.
///
/// The IP is the peer's (axum's [`ConnectInfo<SocketAddr>`], so serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`). Only when the peer
/// is one of the [`TrustedProxies`] (an `Arc<TrustedProxies>` request
/// extension) is the client taken from `Forwarded: for=` or `X-Forwarded-For`:
/// the right-most address that is not itself a trusted proxy. Headers from
/// any other peer are ignored, so a client cannot choose its own IP.
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

/// The reverse proxies whose `Forwarded`/`X-Forwarded-For` headers are
/// believed, as networks (`10.0.0.0/8`, `127.0.0.1/32`, `::1/128`).
///
/// # Examples
///
/// ```
/// use sessionary_axum::TrustedProxies;
/// let proxies = TrustedProxies::parse(["10.0.0.0/8", "::1/128"])?;
/// assert!(proxies.contains("10.1.2.3".parse()?));
/// assert!(!proxies.contains("192.0.2.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From CIDR strings; a bare address means that one host.
    ///
    /// # Errors
    ///
    /// The first entry that is not an address or network, as text.
    pub fn parse<I, S>(nets: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        nets.into_iter()
            .map(|n| {
                let n = n.as_ref().trim();
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{n:?} is not an IP address or network"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer`: `peer` itself unless it is trusted, else the
    /// forwarded chain is walked from the right (the entries the trusted
    /// proxies appended) past every trusted proxy; the first other entry is the
    /// client. An entry that is not an address there ends the walk at the last
    /// trusted hop: nothing to its left was written by a proxy we trust.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.contains(client) {
            return client;
        }
        for entry in forwarded_chain(headers).iter().rev() {
            match entry {
                Some(ip) if self.contains(*ip) => client = *ip,
                Some(ip) => return *ip,
                None => return client,
            }
        }
        client
    }
}

/// The entries of `Forwarded` (RFC 7239 `for=`) if present, else of
/// `X-Forwarded-For`, left-most first; `None` for an entry that is not an IP
/// address (`unknown`, an obfuscated `_name`, garbage).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let parse = |s: &str| s.parse::<IpAddr>().ok().map(canonical);
    let forwarded: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                let value = element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
                })?;
                let v = value.trim_matches('"');
                // `[2001:db8::1]:4711`, `192.0.2.1:4711`, `192.0.2.1`.
                match v.strip_prefix('[') {
                    Some(rest) => parse(rest.split(']').next().unwrap_or("")),
                    None => parse(v).or_else(|| parse(v.rsplit_once(':')?.0)),
                }
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|part| parse(part.trim()))
        .collect()
}

/// The client IP of a request: the peer's (`ConnectInfo<SocketAddr>`), or the
/// forwarded client when the peer is one of `proxies`.
pub(crate) fn client_ip<B>(req: &http::Request<B>, proxies: &TrustedProxies) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    Some(proxies.client_ip(peer, req.headers()))
}

impl<S: Send + Sync> FromRequestParts<S> for ClientDevice {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        // An `Arc<TrustedProxies>` extension, else the session layer's.
        let layer = parts.extensions.get::<crate::Session>();
        let trusted = parts
            .extensions
            .get::<Arc<TrustedProxies>>()
            .map(|t| &**t)
            .or_else(|| layer.map(|s| s.config().trusted_proxies()));
        let ip = match (peer, trusted) {
            (Some(peer), Some(trusted)) => Some(trusted.client_ip(peer, &parts.headers)),
            (peer, _) => peer.map(canonical),
        };
        let ua = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Ok(Self(Device::new(ip, ua)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() -> Result<(), String> {
        let t = TrustedProxies::parse(["10.0.0.0/8", "::1"])?;
        let xff = headers(&[("x-forwarded-for", "198.51.100.7, 10.0.0.2")]);
        // An untrusted peer's header is ignored: it cannot choose its IP.
        assert_eq!(t.client_ip(ip("203.0.113.9"), &xff), ip("203.0.113.9"));
        // A trusted peer: the right-most address that is not a proxy.
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff), ip("198.51.100.7"));
        // A client-supplied left part cannot override the proxy's own entry.
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &spoof), ip("198.51.100.7"));
        // IPv4-mapped peers are IPv4.
        assert_eq!(t.client_ip(ip("::ffff:10.0.0.1"), &xff), ip("198.51.100.7"));
        // Garbage ends the walk at the last trusted hop; no header: the peer.
        let bad = headers(&[("x-forwarded-for", "nonsense")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &bad), ip("10.0.0.1"));
        // A client cannot hide the proxy's entry behind an unparsable one.
        let hidden = headers(&[("x-forwarded-for", "6.6.6.6, x, 198.51.100.7")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &hidden), ip("198.51.100.7"));
        let hidden = headers(&[("x-forwarded-for", "6.6.6.6, x")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &hidden), ip("10.0.0.1"));
        let via = headers(&[("x-forwarded-for", "6.6.6.6, x, 10.0.0.9")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &via), ip("10.0.0.9"));
        assert_eq!(t.client_ip(ip("::1"), &HeaderMap::new()), ip("::1"));
        Ok(())
    }

    #[test]
    fn rfc_7239_forwarded_wins_over_x_forwarded_for() -> Result<(), String> {
        let t = TrustedProxies::parse(["127.0.0.1"])?;
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=192.0.2.60:8080",
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(t.client_ip(ip("127.0.0.1"), &h), ip("192.0.2.60"));
        let h = headers(&[("forwarded", "for=\"[2001:db8::7]\"")]);
        assert_eq!(t.client_ip(ip("127.0.0.1"), &h), ip("2001:db8::7"));
        // `for=unknown` (RFC 7239) is not an address: the trusted hop stands.
        let h = headers(&[("forwarded", "for=6.6.6.6, for=unknown")]);
        assert_eq!(t.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        assert!(TrustedProxies::parse(["not-an-ip"]).is_err());
        Ok(())
    }
}
