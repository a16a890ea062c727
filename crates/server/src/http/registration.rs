//! `{issuer}/register` (RFC 7591) and `{issuer}/register/{client_id}` (RFC 7592).

use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{Data, Json},
};

use crate::{error::RegistrationResponse, flows::registration, routes::Site, state::AppState};

fn bearer(req: &Request) -> &str {
    req.header(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default()
}

/// The `client_id` path segment. Read by name: the environment router's own catch-all
/// parameter is in the request too, so a positional `Path` extractor would see two.
fn client_id(req: &Request) -> &str {
    req.raw_path_param("client_id").unwrap_or_default()
}

async fn body_bytes(body: poem::Body) -> Vec<u8> {
    // An unreadable or oversized body reads as empty and fails as invalid metadata.
    body.into_bytes_limit(64 * 1024).await.map(|b| b.to_vec()).unwrap_or_default()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, Json(value))
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_header(header::PRAGMA, "no-cache")
        .into_response()
}

/// `POST {issuer}/register`
#[handler]
pub(crate) async fn register(req: &Request, body: poem::Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match registration::register(&state, site.environment, bearer(req), &body_bytes(body).await).await {
        Ok(value) => json(StatusCode::CREATED, value),
        Err(error) => RegistrationResponse(error).into_response(),
    }
}

/// `GET {issuer}/register/{client_id}`
#[handler]
pub(crate) async fn read(req: &Request, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match registration::read(&state, site.environment, client_id(req), bearer(req)).await {
        Ok(value) => json(StatusCode::OK, value),
        Err(error) => RegistrationResponse(error).into_response(),
    }
}

/// `PUT {issuer}/register/{client_id}`
#[handler]
pub(crate) async fn update(req: &Request, body: poem::Body, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match registration::update(&state, site.environment, client_id(req), bearer(req), &body_bytes(body).await).await {
        Ok(value) => json(StatusCode::OK, value),
        Err(error) => RegistrationResponse(error).into_response(),
    }
}

/// `DELETE {issuer}/register/{client_id}`
#[handler]
pub(crate) async fn delete(req: &Request, state: Data<&AppState>, site: Data<&Site>) -> Response {
    match registration::delete(&state, site.environment, client_id(req), bearer(req)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => RegistrationResponse(error).into_response(),
    }
}
