//! OpenID Connect Discovery and the JWKS, per environment.

use poem::{
    IntoResponse, Response, handler,
    http::header,
    web::{Data, Json},
};

use crate::{error::HttpError, routes::Site, state::AppState};

/// Relying parties may cache both documents this long; key rotation waits far longer
/// (`keys.activation_delay_seconds`) before a new key signs.
const CACHE: &str = "public, max-age=300";

/// `GET {issuer}/.well-known/openid-configuration`
#[handler]
pub(crate) fn openid_configuration(site: Data<&Site>) -> Response {
    site.discovery
        .to_string()
        .with_content_type("application/json")
        .with_header(header::CACHE_CONTROL, CACHE)
        .into_response()
}

/// `GET {issuer}/jwks`
#[handler]
pub(crate) async fn jwks(state: Data<&AppState>, site: Data<&Site>) -> Result<Response, HttpError> {
    let jwks = state.keys.jwks(site.environment).await?;
    Ok(Json(jwks).with_header(header::CACHE_CONTROL, CACHE).into_response())
}
