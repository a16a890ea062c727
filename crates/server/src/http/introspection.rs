//! `POST {issuer}/introspect` (RFC 7662) and `POST {issuer}/revoke` (RFC 7009): authenticated
//! clients only, and each only for its own tokens; another client's token looks inactive.

use oidc_core::{AccessGrant, OAuthError};
use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Json},
};
use serde_json::json;

use crate::{
    error::{OAuthResponse, oauth_failure},
    flows::token::authenticate,
    http::token::{credentials, form},
    routes::Site,
    state::AppState,
};

fn oauth_error(req: &Request, error: OAuthError) -> Response {
    OAuthResponse { error, basic_auth_used: req.header(header::AUTHORIZATION).is_some() }.into_response()
}

/// The grant behind `token` if it belongs to the calling client.
async fn own_grant(
    req: &Request,
    body: poem::Body,
    state: &AppState,
    site: &Site,
) -> Result<(Option<(String, AccessGrant)>, String), OAuthError> {
    let params = form(req, body).await?;
    let creds = credentials(req, &params)?;
    let (client, _) = authenticate(state, site.environment, &creds).await?;
    let token = params.iter().find(|(n, _)| n == "token").map(|(_, v)| v.clone()).unwrap_or_default();
    let grant = state.access_tokens.find(&token).await.map_err(|e| oauth_failure(state, "introspection.lookup", &e))?;
    let own = grant.filter(|g| g.client_id == client.client_id && g.environment == site.environment);
    Ok((own.map(|g| (token, g)), client.client_id.to_string()))
}

/// `POST {issuer}/introspect`
#[handler]
pub(crate) async fn introspect(req: &Request, body: poem::Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match own_grant(req, body, &state, &site).await {
        Ok((Some((_, grant)), _)) => {
            let mut answer = json!({
                "active": true,
                "scope": grant.scopes.join(" "),
                "client_id": grant.client_id.to_string(),
                "token_type": "Bearer",
                "exp": grant.expires_at,
                "iat": grant.issued_at,
                "iss": site.issuer,
            });
            if let Some(citizen) = grant.citizen {
                answer["sub"] = json!(citizen.sub);
            }
            Json(answer).with_header(header::CACHE_CONTROL, "no-store").into_response()
        }
        Ok((None, _)) => {
            Json(json!({ "active": false })).with_header(header::CACHE_CONTROL, "no-store").into_response()
        }
        Err(error) => oauth_error(req, error),
    }
}

/// `POST {issuer}/revoke`: 200 whether or not the token was known (RFC 7009 §2.2).
#[handler]
pub(crate) async fn revoke(req: &Request, body: poem::Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match own_grant(req, body, &state, &site).await {
        Ok((Some((token, _)), _)) => match state.access_tokens.revoke(&token).await {
            Ok(_) => StatusCode::OK.into_response(),
            Err(e) => oauth_error(req, oauth_failure(&state, "revocation", &e)),
        },
        Ok((None, _)) => StatusCode::OK.into_response(),
        Err(error) => oauth_error(req, error),
    }
}
