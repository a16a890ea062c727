//! OpenID Connect Discovery and the JWKS, per environment: bytes serialised once (at start, and
//! per key snapshot), with an entity tag, so a relying party that has the document gets
//! `304 Not Modified`.

use std::sync::Arc;

use bytes::Bytes;
use oidc_core::PublishedJwks;
use poem::{
    Body, IntoResponse, Request, Response, handler,
    http::{HeaderMap, StatusCode, header},
    web::Data,
};

use crate::{error::HttpError, routes::Site, state::AppState};

/// Relying parties may cache both documents this long; key rotation waits far longer
/// (`keys.activation_delay_seconds`) before a new key signs.
const CACHE: &str = "public, max-age=300";

/// `GET {issuer}/.well-known/openid-configuration`
#[handler]
pub(crate) fn openid_configuration(req: &Request, site: Data<&Site>) -> Response {
    configuration_document(req.headers(), &site)
}

/// The discovery document, or 304 when the request names its tag.
pub(crate) fn configuration_document(headers: &HeaderMap, site: &Site) -> Response {
    document(headers, Bytes::from_owner(Arc::clone(&site.discovery)), &site.discovery_etag)
}

/// A published JWKS as a response body without a copy.
struct JwksBody(Arc<PublishedJwks>);

impl AsRef<[u8]> for JwksBody {
    fn as_ref(&self) -> &[u8] {
        &self.0.body
    }
}

/// `GET {issuer}/jwks`
#[handler]
pub(crate) async fn jwks(req: &Request, state: Data<&AppState>, site: Data<&Site>) -> Result<Response, HttpError> {
    let published = state.keys.published_jwks(site.environment).await?;
    Ok(jwks_document(req.headers(), published))
}

/// The JWKS, or 304 when the request names its tag.
pub(crate) fn jwks_document(headers: &HeaderMap, published: Arc<PublishedJwks>) -> Response {
    let etag = published.etag.clone();
    document(headers, Bytes::from_owner(JwksBody(published)), &etag)
}

/// `body` as JSON with `etag`, or 304 when the request's `If-None-Match` names it. The body is
/// shared with every other answer, not copied.
fn document(headers: &HeaderMap, body: Bytes, etag: &str) -> Response {
    let known = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|value| value.to_str().is_ok_and(|value| value.split(',').map(str::trim).any(|tag| names(tag, etag))));
    let response = if known {
        Response::builder().status(StatusCode::NOT_MODIFIED).finish()
    } else {
        Body::from_bytes(body).with_content_type("application/json").into_response()
    };
    response.with_header(header::ETAG, etag).with_header(header::CACHE_CONTROL, CACHE).into_response()
}

/// Whether the tag from `If-None-Match` names `etag`: `*`, or the same tag compared weakly
/// (RFC 9110 §13.1.2).
fn names(tag: &str, etag: &str) -> bool {
    tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn if_none_match_compares_weakly_and_knows_the_wildcard() {
        assert!(names("\"abc\"", "\"abc\""));
        assert!(names("W/\"abc\"", "\"abc\""));
        assert!(names("*", "\"abc\""));
        assert!(!names("\"abd\"", "\"abc\""));
        assert!(!names("abc", "\"abc\""));
    }
}
