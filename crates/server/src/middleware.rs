//! Per-request observation: latency and status into the metrics, one completion log line
//! (inside poem's request-id span, so it carries the request id).

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, PathPattern, Request, Response, Result};

use crate::state::AppState;

/// Records every request in the metrics and the log.
pub(crate) struct Observe;

impl<E: Endpoint> Middleware<E> for Observe {
    type Output = ObserveEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ObserveEndpoint { inner }
    }
}

pub(crate) struct ObserveEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for ObserveEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let started = Instant::now();
        let method = req.method().clone();
        let state = req.data::<AppState>().cloned();
        let response = match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        let elapsed = started.elapsed();
        // Unmatched paths share one label: raw paths would let anyone grow the label set.
        let route = response.data::<PathPattern>().map_or("unmatched", |p| &p.0);
        let status = response.status().as_u16();
        if let Some(state) = state {
            state.metrics.observe_request(route, method.as_str(), status, elapsed.as_secs_f64());
        }
        tracing::info!(%method, route, status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
        Ok(response)
    }
}
