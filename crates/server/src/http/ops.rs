//! Operations endpoints: liveness, readiness, metrics. Outside every issuer.

use std::time::Duration;

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json},
};
use serde_json::json;

use crate::state::AppState;

/// A dependency that takes longer than this counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process is alive and serving.
#[handler]
pub(crate) fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the database and the ephemeral store answer, else 503 naming which
/// did not (the details go to the log, not to the caller).
#[handler]
pub(crate) async fn readyz(state: Data<&AppState>) -> Response {
    let database = match tokio::time::timeout(PROBE_TIMEOUT, state.database.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database unavailable");
            "unavailable"
        }
        Err(_) => "timeout",
    };
    let ephemeral = match tokio::time::timeout(PROBE_TIMEOUT, state.ephemeral.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: ephemeral store unavailable");
            "unavailable"
        }
        Err(_) => "timeout",
    };
    let ready = database == "ok" && ephemeral == "ok";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": { "database": database, "ephemeral_store": ephemeral },
    });
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
#[handler]
pub(crate) fn metrics(state: Data<&AppState>) -> Response {
    state.metrics.render().with_content_type("text/plain; version=0.0.4").into_response()
}
