//! Operations endpoints: liveness, readiness, metrics. Outside every issuer.

use std::time::Duration;

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json},
};
use serde_json::json;

use crate::state::AppState;

/// The outcome of probing both stores: `None` when it answered right, else why not.
pub(crate) struct Probes {
    pub(crate) database: Option<String>,
    pub(crate) ephemeral: Option<String>,
}

/// Probes the database with a query and the ephemeral store with a write-read-delete round trip
/// (a Redis that answers PING but refuses writes is not ready), each within the dependency
/// timeout, and records the outcome in `dependency_up`.
pub(crate) async fn probe(state: &AppState) -> Probes {
    let timeout = state.config.dependencies.timeout();
    let database = match tokio::time::timeout(timeout, state.database.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer within {} ms", timeout.as_millis())),
    };
    let ephemeral = match tokio::time::timeout(timeout, round_trip(state)).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(_) => Some(format!("no answer within {} ms", timeout.as_millis())),
    };
    let (database_name, ephemeral_name) = state.backends();
    state.metrics.dependency_up(database_name, database.is_none());
    state.metrics.dependency_up(ephemeral_name, ephemeral.is_none());
    Probes { database, ephemeral }
}

async fn round_trip(state: &AppState) -> Result<(), String> {
    let key = format!("ready:{}", oidc_core::random_token());
    let written = b"ready";
    state.ephemeral.put(&key, written, Duration::from_secs(10)).await.map_err(|e| cause(&e))?;
    let read = state.ephemeral.get(&key).await.map_err(|e| cause(&e))?;
    state.ephemeral.delete(&key).await.map_err(|e| cause(&e))?;
    if read.as_deref() == Some(written.as_slice()) { Ok(()) } else { Err("read back something else".to_owned()) }
}

/// The error with its source ("ephemeral store unavailable: OOM command not allowed …").
fn cause(error: &dyn std::error::Error) -> String {
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// How often each node probes its dependencies for the `dependency_up` gauge.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process is alive and serving (liveness only: it needs no dependency).
#[handler]
pub(crate) fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the database answers a query and the ephemeral store a round trip,
/// else 503 naming the part that failed and why.
#[handler]
pub(crate) async fn readyz(state: Data<&AppState>) -> Response {
    let probes = probe(&state).await;
    let (database_name, ephemeral_name) = state.backends();
    let check = |name: &str, failure: &Option<String>| match failure {
        None => json!({ "dependency": name, "status": "ok" }),
        Some(error) => {
            tracing::warn!(dependency = name, %error, "readiness: dependency unavailable");
            json!({ "dependency": name, "status": "unavailable", "error": error })
        }
    };
    let draining = state.is_draining();
    let ready = probes.database.is_none() && probes.ephemeral.is_none() && !draining;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if draining { "draining" } else if ready { "ready" } else { "unavailable" },
        "checks": {
            "database": check(database_name, &probes.database),
            "ephemeral_store": check(ephemeral_name, &probes.ephemeral),
        },
    });
    (status, Json(body)).with_header("cache-control", "no-store").into_response()
}

/// `GET /metrics` on the main listener: Prometheus text format for the configured bearer
/// token, or without one for a loopback peer that is not a proxy forwarding someone else.
#[handler]
pub(crate) fn metrics(req: &poem::Request, state: Data<&AppState>) -> Response {
    let allowed = match &state.config.metrics.bearer_token {
        Some(expected) => req
            .header(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| oidc_core::constant_time_eq(token.trim().as_bytes(), expected.expose().as_bytes())),
        None => {
            let loopback = req.remote_addr().as_socket_addr().is_some_and(|a| a.ip().is_loopback());
            loopback && req.header("x-forwarded-for").is_none() && req.header("forwarded").is_none()
        }
    };
    if !allowed {
        // As if there were nothing here: the metrics are not the public's business.
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "not_found", "error_description": "Diese Adresse gibt es nicht." })),
        )
            .into_response();
    }
    metrics_text(&state)
}

/// `GET /metrics` on the metrics listener of its own (`metrics.bind`).
#[handler]
pub(crate) fn metrics_listener(state: Data<&AppState>) -> Response {
    metrics_text(&state)
}

fn metrics_text(state: &AppState) -> Response {
    state.metrics.render().with_content_type("text/plain; version=0.0.4").into_response()
}
