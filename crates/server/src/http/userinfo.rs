//! `GET|POST {issuer}/userinfo` (OpenID Connect Core §5.3): the claims the citizen consented to
//! release to the token's client, with the same pairwise `sub` as the ID token.

use account_service::{DataTransfer, claim_value, verified_claims};
use poem::{
    Body, IntoResponse, Request, Response, handler,
    http::{Method, StatusCode, header},
    web::{Data, Json},
};
use serde_json::{Map, Value};

use crate::{
    error::{oauth_failure, oauth_status},
    flows::{
        authorize::{recipient_of, subject},
        token::{LiveGrant, live_grant},
    },
    routes::Site,
    state::AppState,
};

/// RFC 6750 §3: the error in `WWW-Authenticate`.
fn bearer_error(status: StatusCode, code: &str, description: &str) -> Response {
    // Header values are ASCII: the (German) description goes only into the body.
    let challenge = format!("Bearer error=\"{code}\"");
    Json(serde_json::json!({ "error": code, "error_description": description }))
        .with_status(status)
        .with_header(header::WWW_AUTHENTICATE, challenge)
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response()
}

/// The bearer token from the header, or (POST) from the form body (RFC 6750 §2.2).
async fn bearer(req: &Request, body: Body) -> Option<String> {
    if let Some(value) = req.header(header::AUTHORIZATION) {
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        return value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
    }
    if req.method() == Method::POST {
        let raw = body.into_bytes_limit(16 * 1024).await.ok()?;
        return url::form_urlencoded::parse(&raw).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned());
    }
    None
}

/// A failure on our side in RFC 6750 style: 503 `temporarily_unavailable` for an outage.
fn failed(state: &AppState, operation: &'static str, error: &(dyn std::error::Error + 'static)) -> Response {
    let error = oauth_failure(state, operation, error);
    bearer_error(oauth_status(error.code), error.code.as_str(), &error.description)
}

/// `GET|POST {issuer}/userinfo`
#[handler]
pub(crate) async fn userinfo(req: &Request, body: Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    let Some(token) = bearer(req, body).await else {
        return bearer_error(StatusCode::UNAUTHORIZED, "invalid_request", "Bearer-Token fehlt");
    };
    let LiveGrant { grant, client, tenant } = match live_grant(&state, "userinfo.token", &token).await {
        Ok(Some(live)) if live.grant.environment == site.environment => live,
        Ok(_) => return bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", "Token ungültig oder abgelaufen"),
        Err(error) => return bearer_error(oauth_status(error.code), error.code.as_str(), &error.description),
    };
    let Some(citizen) = grant.citizen.as_ref().filter(|_| grant.scopes.iter().any(|s| s == "openid")) else {
        return bearer_error(StatusCode::FORBIDDEN, "insufficient_scope", "Token ohne openid-Scope");
    };
    let mut claims = Map::new();
    let sub = subject(&state, site.environment, &tenant, citizen.account_id);
    claims.insert("sub".to_owned(), Value::String(sub));
    let mut released = Vec::new();
    let mut acted_for = None;
    // Whose transfer log: the account's, or the one-time log when there is no account.
    let account_id = match &citizen.values {
        // A one-time identification: the values travelled with the grant.
        Some(values) => {
            for claim in &citizen.claims {
                if let Some(value) = values.get(claim) {
                    claims.insert(claim.clone(), value.clone());
                    released.push(claim.clone());
                }
            }
            if let Some(verified) = values.get("verified_claims") {
                claims.insert("verified_claims".to_owned(), verified.clone());
            }
            None
        }
        None => {
            let account = match state.accounts.account(site.environment, citizen.account_id).await {
                Ok(account) => account,
                Err(account_service::AccountError::NotFound) => {
                    return bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", "Das Konto besteht nicht mehr");
                }
                Err(e) => return failed(&state, "userinfo.account", &e),
            };
            for claim in &citizen.claims {
                if let Some(value) = claim_value(&account, claim) {
                    claims.insert(claim.clone(), value);
                    released.push(claim.clone());
                }
            }
            if citizen.claims.iter().any(|c| c == "organization")
                && let Some(id) = &citizen.organisation
            {
                match crate::flows::organisation::organisation_claim(
                    &state,
                    site.environment,
                    tenant.id,
                    account.id,
                    id,
                )
                .await
                {
                    Ok(Some((value, note))) => {
                        claims.insert("organization".to_owned(), value);
                        released.push("organization".to_owned());
                        acted_for = Some(note);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        return bearer_error(oauth_status(error.code), error.code.as_str(), &error.description);
                    }
                }
            }
            // The same claims again, with evidence, where they came from the ID card.
            if citizen.verified_claims
                && let Some(verified) = verified_claims(&account, &released)
            {
                claims.insert("verified_claims".to_owned(), verified);
            }
            Some(account.id)
        }
    };
    tracing::debug!(client = %grant.client_id, claims = ?released, "userinfo claims released");
    // Every release is logged before it happens; no log, no release.
    if !released.is_empty() {
        let transfer = DataTransfer {
            client_id: grant.client_id.to_string(),
            recipient: recipient_of(&client, &tenant),
            claims: released,
            at: state.clock.now(),
            consent_ref: citizen.consent_ref.clone(),
            organisation: acted_for,
        };
        if let Err(e) = crate::flows::release::record_transfer(&state, site.environment, account_id, transfer).await {
            // No log, no release.
            return failed(&state, "userinfo.transfer_log", &e);
        }
    }
    Json(Value::Object(claims)).with_header(header::CACHE_CONTROL, "no-store").into_response()
}
