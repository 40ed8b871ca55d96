//! Access tokens for API clients: the [`Bearer`] extractor verifies
//! `Authorization: Bearer <access token>` with [`AccessTokens`] (from
//! `sessionary-token`), and [`Caller`] takes either transport, a bearer token
//! or the session cookie.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use sessionary_core::{SessionId, UserId};
use sessionary_token::{AccessClaims, AccessTokenError, AccessTokens};

use crate::extract::{CurrentUser, Session};
use crate::rejection::{PROBLEM_JSON, SessionRejection};

/// The verified claims of the request's `Authorization: Bearer` access token.
///
/// The verifier is an `Arc<AccessTokens>` request extension: add it with
/// `Router::layer(axum::Extension(tokens))`. Rejects with [`BearerRejection`]:
/// `401` problem+json with `WWW-Authenticate: Bearer error="invalid_token"` and
/// the `reason` (`expired`, `revoked`, `bad_signature`, ...).
///
/// # Examples
///
/// ```
/// use sessionary_axum::Bearer;
///
/// async fn me(Bearer(claims): Bearer) -> String {
///     format!("{} in session {}", claims.sub, claims.sid)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Bearer(pub AccessClaims);

/// Why a bearer token was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum BearerRejection {
    /// No `Authorization: Bearer` header.
    Missing,
    /// The token failed verification.
    Invalid(AccessTokenError),
    /// No `Arc<AccessTokens>` extension: a programming error (500).
    VerifierMissing,
}

/// What the `Authorization` header says about a bearer token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BearerHeader<'a> {
    /// No `Authorization: Bearer` header.
    Absent,
    /// `Bearer <token>`.
    Token(&'a str),
    /// A `Bearer` header whose credentials are empty or not visible ASCII.
    Malformed,
}

/// Reads `Authorization` once for both the extractors and the CSRF exemption
/// ([`crate::csrf`]), so "exempt because of a bearer token" and "judged by the
/// bearer token" are always the same requests.
pub(crate) fn bearer_header(headers: &http::HeaderMap) -> BearerHeader<'_> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return BearerHeader::Absent;
    };
    let b = v.as_bytes().trim_ascii_start();
    let is_bearer =
        b.len() > 6 && b[..6].eq_ignore_ascii_case(b"bearer") && b[6].is_ascii_whitespace();
    if !is_bearer {
        return BearerHeader::Absent;
    }
    match std::str::from_utf8(b[7..].trim_ascii()) {
        Ok(t) if !t.is_empty() && t.bytes().all(|c| c.is_ascii_graphic()) => BearerHeader::Token(t),
        _ => BearerHeader::Malformed,
    }
}

fn verify(parts: &Parts) -> Result<Bearer, BearerRejection> {
    let token = match bearer_header(&parts.headers) {
        BearerHeader::Absent => return Err(BearerRejection::Missing),
        BearerHeader::Malformed => {
            return Err(BearerRejection::Invalid(AccessTokenError::Malformed(
                "the bearer credentials are empty or not visible ASCII",
            )));
        }
        BearerHeader::Token(t) => t,
    };
    let tokens = parts
        .extensions
        .get::<Arc<AccessTokens>>()
        .ok_or(BearerRejection::VerifierMissing)?;
    tokens
        .verify(token)
        .map(Bearer)
        .map_err(BearerRejection::Invalid)
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        verify(parts)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Bearer {
    type Rejection = BearerRejection;

    /// `None` without an `Authorization: Bearer` header; a refusal for a bad one.
    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match verify(parts) {
            Ok(b) => Ok(Some(b)),
            Err(BearerRejection::Missing) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let (status, name, reason, detail) = match &self {
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                "not-signed-in",
                None,
                "an `Authorization: Bearer <access token>` header is required".to_owned(),
            ),
            Self::Invalid(e) => {
                let internal = e.reason().is_none();
                if internal {
                    tracing::error!(error = %e, "access token verification failed");
                }
                (
                    if internal {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::UNAUTHORIZED
                    },
                    e.problem_type(),
                    e.reason(),
                    if internal {
                        "internal error".to_owned()
                    } else {
                        e.to_string()
                    },
                )
            }
            Self::VerifierMissing => {
                tracing::error!("Bearer extractor used without an Arc<AccessTokens> extension");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    None,
                    "internal error".to_owned(),
                )
            }
        };
        let mut doc = serde_json::json!({
            "type": format!("/problems/{name}"),
            "title": "Access token refused",
            "status": status.as_u16(),
            "detail": detail,
        });
        if let Some(r) = reason {
            doc["reason"] = r.into();
        }
        let mut res = (status, doc.to_string()).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 section 3.
            let challenge = if matches!(self, Self::Missing) {
                "Bearer"
            } else {
                "Bearer error=\"invalid_token\""
            };
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        res
    }
}

/// A signed-in caller by either transport: a valid bearer access token
/// (API clients) or the session cookie (browsers, behind
/// [`crate::SessionLayer`]). A request that presents a bearer token is judged
/// by it alone; without one, the cookie session must be signed in.
///
/// Handlers reach the session's data through the manager by
/// [`Caller::session_id`] either way.
///
/// # Examples
///
/// ```
/// use sessionary_axum::Caller;
///
/// async fn whoami(caller: Caller) -> String {
///     format!("{} ({})", caller.user(), if caller.is_bearer() { "token" } else { "cookie" })
/// }
/// ```
#[derive(Clone, Debug)]
pub enum Caller {
    /// Authenticated by an access token.
    Bearer(AccessClaims),
    /// Authenticated by the session cookie.
    Cookie(CurrentUser),
}

impl Caller {
    /// The user.
    pub fn user(&self) -> &UserId {
        match self {
            Self::Bearer(c) => &c.sub,
            Self::Cookie(u) => &u.user,
        }
    }

    /// The session behind the request.
    pub fn session_id(&self) -> SessionId {
        match self {
            Self::Bearer(c) => c.sid,
            Self::Cookie(u) => u.record.id,
        }
    }

    /// The roles (the token's, or the session's).
    pub fn roles(&self) -> &[String] {
        match self {
            Self::Bearer(c) => &c.roles,
            Self::Cookie(u) => &u.record.roles,
        }
    }

    /// Whether the request came with a bearer token.
    pub fn is_bearer(&self) -> bool {
        matches!(self, Self::Bearer(_))
    }

    /// The cookie session, for cookie callers.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Self::Bearer(_) => None,
            Self::Cookie(u) => Some(&u.session),
        }
    }
}

/// Why neither transport identified the caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallerRejection {
    /// A bearer token was presented and refused.
    Bearer(BearerRejection),
    /// No bearer token, and no signed-in cookie session.
    Session(SessionRejection),
}

impl IntoResponse for CallerRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Bearer(r) => r.into_response(),
            Self::Session(r) => r.into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = CallerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match verify(parts) {
            Ok(Bearer(claims)) => Ok(Self::Bearer(claims)),
            Err(BearerRejection::Missing) => {
                <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state)
                    .await
                    .map(Self::Cookie)
                    .map_err(CallerRejection::Session)
            }
            Err(e) => Err(CallerRejection::Bearer(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn auth(v: &'static [u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(v) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn bearer_headers_are_read_one_way() {
        assert_eq!(bearer_header(&HeaderMap::new()), BearerHeader::Absent);
        assert_eq!(bearer_header(&auth(b"Basic abc")), BearerHeader::Absent);
        assert_eq!(bearer_header(&auth(b"Bearerx abc")), BearerHeader::Absent);
        assert_eq!(
            bearer_header(&auth(b"bearer a.b.c")),
            BearerHeader::Token("a.b.c")
        );
        assert_eq!(
            bearer_header(&auth(b"Bearer\ta.b.c ")),
            BearerHeader::Token("a.b.c")
        );
        // A bearer header that cannot be read is refused, never taken as absent
        // (which would fall back to the cookie while CSRF is exempted).
        assert_eq!(bearer_header(&auth(b"Bearer ")), BearerHeader::Malformed);
        assert_eq!(
            bearer_header(&auth(b"Bearer \xc3\xa9")),
            BearerHeader::Malformed
        );
    }
}
