//! `POST {issuer}/par`: pushed authorization requests (RFC 9126). The client sends the whole
//! authorization request (or a signed request object) over the back channel, authenticated as
//! at the token endpoint, and gets a `request_uri` for the browser.

use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Json},
};
use serde_json::json;
use tenant_registry::AuthMethod;

use crate::{
    error::OAuthResponse,
    flows::{
        authorize::{AuthorizeParams, push},
        token::{ClientCredentials, authenticate},
    },
    http::token::{credentials, form},
    routes::Site,
    state::AppState,
};

/// Parameters that authenticate the client; they are no part of the authorization request.
const CLIENT_AUTHENTICATION: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

async fn pushed(
    req: &Request,
    body: poem::Body,
    state: &AppState,
    site: &Site,
) -> Result<(String, u64), oidc_core::OAuthError> {
    let params = form(req, body).await?;
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let unauthenticated =
        req.header(header::AUTHORIZATION).is_none() && CLIENT_AUTHENTICATION.iter().all(|name| param(name).is_none());
    let creds = match param("client_id") {
        // A public client names itself; PKCE, required for it, proves the rest (RFC 9126 §2).
        Some(client_id) if unauthenticated => {
            ClientCredentials { client_id: client_id.to_owned(), secret: String::new(), method: AuthMethod::None }
        }
        _ => credentials(req, &params)?,
    };
    let (client, _) = authenticate(state, site.environment, &creds).await?;
    let request: std::collections::BTreeMap<&str, &str> = params
        .iter()
        .filter(|(name, _)| !CLIENT_AUTHENTICATION.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let request: AuthorizeParams = serde_json::to_value(request)
        .and_then(serde_json::from_value)
        .map_err(|_| oidc_core::OAuthError::new(oidc_core::OAuthErrorCode::InvalidRequest, "Parameter unlesbar"))?;
    push(state, site.environment, &site.issuer, &client, request).await
}

/// `POST {issuer}/par`
#[handler]
pub(crate) async fn par(req: &Request, body: poem::Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match pushed(req, body, &state, &site).await {
        Ok((request_uri, expires_in)) => Json(json!({ "request_uri": request_uri, "expires_in": expires_in }))
            .with_status(StatusCode::CREATED)
            .with_header(header::CACHE_CONTROL, "no-store")
            .into_response(),
        Err(error) => {
            OAuthResponse { error, basic_auth_used: req.header(header::AUTHORIZATION).is_some() }.into_response()
        }
    }
}
