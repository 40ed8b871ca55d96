//! Extractors whose failures are problem documents instead of axum's plain text.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use sessionary_core::{SessionId, UserId};

use crate::problem::Problem;

/// A JSON body (`application/json` or any `+json` type). Syntax errors and values
/// of the wrong shape are `400`, a missing JSON content type `415`, a body over the
/// limit `413`; each an `invalid-request` problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

fn json_rejection(r: &JsonRejection) -> Problem {
    let status = match r.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        s if s.is_client_error() => s,
        _ => StatusCode::BAD_REQUEST,
    };
    let detail = match r {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body with `Content-Type: application/json`".to_owned()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES)
        }
        other => other.body_text(),
    };
    Problem::new(status, "invalid-request", detail)
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(r) => Err(json_rejection(&r)),
        }
    }
}

/// Like [`ApiJson`], but an empty body without a content type means `T::default()`
/// (so `POST /v1/sessions` and `.../regenerate` work with no body at all).
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    status,
                    "invalid-request",
                    format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
                )
            } else {
                Problem::invalid_request(r.body_text())
            }
        })?;
        if bytes.is_empty() && !has_type {
            return Ok(Self(T::default()));
        }
        if !is_json(&headers) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid-request",
                "expected a JSON body with `Content-Type: application/json`",
            ));
        }
        Json::<T>::from_bytes(&bytes)
            .map(|Json(v)| Self(v))
            .map_err(|r| json_rejection(&r))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Query parameters; a bad one is a `400 invalid-request` problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|r| Problem::invalid_request(r.body_text()))
    }
}

/// The `{id}` path segment as a [`SessionId`]; a malformed id is `400`.
#[derive(Debug, Clone, Copy)]
pub struct IdPath(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|r| Problem::invalid_request(r.body_text()))?;
        let id = SessionId::parse(&raw).map_err(|_| {
            Problem::invalid_request("a session id is 22 base64url characters (128 bits)")
        })?;
        tracing::Span::current().record("sid", tracing::field::display(&id));
        Ok(Self(id))
    }
}

/// The `{user}` path segment (percent-decoded) as a [`UserId`]; an invalid one is `400`.
#[derive(Debug, Clone)]
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|r| Problem::invalid_request(r.body_text()))?;
        UserId::new(raw)
            .map(Self)
            .map_err(|e| Problem::invalid_request(e.to_string()))
    }
}

/// The `If-Match` precondition: `None` when absent or `*`, else the version in
/// `"<version>"`. Weak or malformed tags are a `400`.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        Problem::invalid_request(
            "If-Match must be \"*\" or one strong ETag \"<version>\" as returned in ETag",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s == "*" {
        return Ok(None);
    }
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(bad)?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    inner.parse().map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::IF_MATCH, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn if_match_parses_strong_versions_only() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&h("*")).unwrap(), None);
        assert_eq!(if_match(&h("\"7\"")).unwrap(), Some(7));
        for bad in ["7", "W/\"7\"", "\"a\"", "\"\"", "\"1\", \"2\"", "\"-1\""] {
            assert!(if_match(&h(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_content_types() {
        let mut m = HeaderMap::new();
        assert!(!is_json(&m));
        m.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&m));
        m.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/merge-patch+json"),
        );
        assert!(is_json(&m));
        m.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&m));
    }
}
