//! `POST {issuer}/introspect` (RFC 7662) and `POST {issuer}/revoke` (RFC 7009): authenticated
//! clients only, and each only for its own tokens; another client's token looks inactive.

use std::sync::Arc;

use oidc_core::OAuthError;
use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Json},
};
use serde_json::json;

use tenant_registry::Client;

use crate::{
    error::OAuthResponse,
    flows::{
        self,
        token::{Presented, authenticate, presented},
    },
    http::token::{credentials, form},
    routes::Site,
    state::AppState,
};

fn oauth_error(req: &Request, error: OAuthError) -> Response {
    OAuthResponse { error, basic_auth_used: req.header(header::AUTHORIZATION).is_some() }.into_response()
}

/// The calling client and what the presented `token` is to it.
async fn presented_token(
    req: &Request,
    body: poem::Body,
    state: &AppState,
    site: &Site,
) -> Result<(Arc<Client>, Presented), OAuthError> {
    let params = form(req, body).await?;
    let creds = credentials(req, &params)?;
    let (client, tenant) = authenticate(state, site.environment, &creds).await?;
    let token = params.iter().find(|(n, _)| n == "token").map(|(_, v)| v.as_str()).unwrap_or_default();
    let found = presented(state, site.environment, &client, &tenant, token).await?;
    Ok((client, found))
}

fn no_store(body: serde_json::Value) -> Response {
    Json(body).with_header(header::CACHE_CONTROL, "no-store").into_response()
}

/// `POST {issuer}/introspect`
#[handler]
pub(crate) async fn introspect(req: &Request, body: poem::Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match presented_token(req, body, &state, &site).await {
        Ok((_, Presented::Access { grant, sub, .. })) => {
            let mut answer = json!({
                "active": true,
                "scope": grant.scopes.join(" "),
                "client_id": grant.client_id.to_string(),
                "token_type": "Bearer",
                "exp": grant.expires_at,
                "iat": grant.issued_at,
                "iss": site.issuer,
            });
            if let Some(sub) = sub {
                answer["sub"] = json!(sub);
            }
            no_store(answer)
        }
        Ok((_, Presented::Refresh { record, live: true, sub })) => {
            let scopes: Vec<&str> =
                record.grant["scopes"].as_array().into_iter().flatten().filter_map(|s| s.as_str()).collect();
            let mut answer = json!({
                "active": true,
                "scope": scopes.join(" "),
                "client_id": record.client_id.to_string(),
                "token_type": "refresh_token",
                "exp": record.expires_at,
                "iat": record.created_at,
                "iss": site.issuer,
            });
            if let Some(sub) = sub {
                answer["sub"] = json!(sub);
            }
            no_store(answer)
        }
        Ok(_) => no_store(json!({ "active": false })),
        Err(error) => oauth_error(req, error),
    }
}

/// `POST {issuer}/revoke`: 200 whether or not the token was known (RFC 7009 §2.2). A refresh
/// token takes its family and the access tokens issued from it along.
#[handler]
pub(crate) async fn revoke(req: &Request, body: poem::Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    let revoked = match presented_token(req, body, &state, &site).await {
        Ok((client, found)) => flows::token::revoke(&state, &client, found).await,
        Err(error) => Err(error),
    };
    match revoked {
        Ok(()) => StatusCode::OK.with_header(header::CACHE_CONTROL, "no-store").into_response(),
        Err(error) => oauth_error(req, error),
    }
}
