//! Per-request observation: latency and status into the metrics, one completion log line
//! (inside poem's request-id span, so it carries the request id); the request deadline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use poem::{
    Endpoint, IntoResponse, Middleware, PathPattern, Request, Response, Result,
    http::{HeaderMap, HeaderValue, StatusCode, header},
};

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
        // Unmatched paths share one label: raw paths would let anyone grow the label set.
        let route = response.data::<PathPattern>().map_or("unmatched", |p| &p.0);
        if let Some(state) = state {
            state.metrics.observe_request(route, method.as_str(), response.status(), started.elapsed().as_secs_f64());
        }
        log_request(&method, route, response.status(), started);
        Ok(response)
    }
}

/// The completion line of a request (metrics are the caller's: the direct answers keep theirs
/// bound to their labels).
pub(crate) fn log_request(method: &poem::http::Method, route: &str, status: StatusCode, started: Instant) {
    let status = status.as_u16();
    tracing::info!(%method, route, status, latency_ms = started.elapsed().as_secs_f64() * 1000.0, "request");
}

/// Bounds every request by `dependencies.request_deadline_ms`: a request still running then
/// (a database query that hung after it got its connection) is answered with 503 — a small
/// page for browsers, `temporarily_unavailable` JSON for everyone else. Every 503 carries
/// `Retry-After`.
pub(crate) struct Deadline;

impl<E: Endpoint> Middleware<E> for Deadline {
    type Output = DeadlineEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        DeadlineEndpoint { inner }
    }
}

pub(crate) struct DeadlineEndpoint<E> {
    inner: E,
}

/// Shown when the deadline cuts a browser's request; the pages' own 503 is richer, but this one
/// needs nothing that might be down.
const DEADLINE_PAGE: &str = "<!DOCTYPE html><html lang=\"de\"><head><meta charset=\"utf-8\"><title>Vorübergehend nicht erreichbar</title></head>\
<body><main><h1>Vorübergehend nicht erreichbar</h1><p>Der Dienst ist im Moment vorübergehend nicht erreichbar. Ihre Daten und Ihre \
Anmeldung bleiben erhalten; bitte versuchen Sie es in wenigen Augenblicken erneut.</p><p lang=\"en\">The service is temporarily \
unavailable. Your data and your login are kept; please try again in a few moments.</p></main></body></html>";

impl<E: Endpoint> Endpoint for DeadlineEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let Some(state) = req.data::<AppState>().cloned() else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        let deadline = std::time::Duration::from_millis(state.config.dependencies.request_deadline_ms);
        let browser = req.header(poem::http::header::ACCEPT).is_some_and(|a| a.contains("text/html"));
        let mut response = match tokio::time::timeout(deadline, self.inner.call(req)).await {
            Ok(Ok(response)) => response.into_response(),
            Ok(Err(error)) => error.into_response(),
            Err(_) => {
                state.metrics.dependency_error("unknown", "request_deadline");
                tracing::error!(
                    deadline_ms = deadline.as_millis() as u64,
                    "request cut at its deadline (a dependency hangs)"
                );
                if browser {
                    DEADLINE_PAGE
                        .with_status(StatusCode::SERVICE_UNAVAILABLE)
                        .with_content_type("text/html; charset=utf-8")
                        .into_response()
                } else {
                    let body = serde_json::json!({
                        "error": "temporarily_unavailable",
                        "error_description": "Der Dienst ist vorübergehend nicht erreichbar; bitte später erneut versuchen",
                    });
                    (StatusCode::SERVICE_UNAVAILABLE, poem::web::Json(body)).into_response()
                }
            }
        };
        if response.status() == StatusCode::SERVICE_UNAVAILABLE && !response.headers().contains_key(header::RETRY_AFTER)
        {
            let seconds = state.config.dependencies.retry_after_seconds.to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Ok(response)
    }
}

/// Refuses request bodies larger than the route class allows, before they are read: 413 at once
/// when `Content-Length` says so; a body without length is cut off at the limit while it is
/// read, so no extractor ever buffers more.
pub(crate) struct BodyLimit(pub(crate) usize);

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint { inner, limit: self.0 }
    }
}

pub(crate) struct BodyLimitEndpoint<E> {
    inner: E,
    limit: usize,
}

/// Body too large: German and English, for browsers and machines alike.
const TOO_LARGE: &str = "Die Anfrage ist zu groß. / The request is too large.";

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let declared =
            req.header(header::CONTENT_LENGTH).map(|length| length.trim().parse::<u64>().map_err(|_| ())).transpose();
        match declared {
            Ok(Some(length)) if length > self.limit as u64 => {
                let body = serde_json::json!({ "error": "invalid_request", "error_description": TOO_LARGE });
                // The client may still be sending; closing tells it to stop.
                return Ok((StatusCode::PAYLOAD_TOO_LARGE, poem::web::Json(body))
                    .with_header(header::CONNECTION, "close")
                    .into_response());
            }
            Err(()) => {
                let body = serde_json::json!({ "error": "invalid_request", "error_description": "Content-Length ist ungültig" });
                return Ok((StatusCode::BAD_REQUEST, poem::web::Json(body)).into_response());
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                use futures::StreamExt as _;
                let limit = self.limit;
                let mut seen = 0_usize;
                let stream = req.take_body().into_bytes_stream().map(move |chunk| {
                    let chunk = chunk?;
                    seen += chunk.len();
                    if seen > limit { Err(std::io::Error::other(TOO_LARGE)) } else { Ok(chunk) }
                });
                req.set_body(poem::Body::from_bytes_stream(stream));
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// Headers every response gets, whatever produced it (pages, OIDC endpoints, admin API, 404s):
/// `X-Content-Type-Options: nosniff`; `Strict-Transport-Security` when the request came for an
/// https issuer's host; `Allow` on a 405, from the methods the path has.
pub(crate) struct ResponseHeaders {
    pub(crate) hsts: Option<Arc<Hsts>>,
    /// Path patterns and their methods, for `Allow`.
    pub(crate) methods: Arc<MethodTable>,
}

/// `Strict-Transport-Security`, for the hosts of https issuers.
#[derive(Debug)]
pub(crate) struct Hsts {
    pub(crate) value: HeaderValue,
    /// `host[:port]` of each https issuer.
    pub(crate) hosts: Vec<String>,
}

impl Hsts {
    /// The header for a request to `host` (its `Host` header), if that is an https issuer's.
    pub(crate) fn for_host(&self, host: Option<&str>) -> Option<HeaderValue> {
        let host = host?;
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)).then(|| self.value.clone())
    }
}

/// What [`ResponseHeaders`] adds to every response but a 405's `Allow`: `nosniff`, and HSTS
/// when the request came for an https issuer's host.
pub(crate) fn set_response_headers(headers: &mut HeaderMap, hsts: Option<HeaderValue>) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(value) = hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
    }
}

/// While the node drains after SIGTERM (`http.drain_seconds`): every response closes its
/// connection, so that keep-alive clients reconnect to a node that stays; and a GET or HEAD that
/// comes through a trusted proxy is answered 503 at once, so that the proxy (nginx:
/// `proxy_next_upstream http_503`, `max_fails`) retries it on another node and stops sending new
/// connections here before the listener closes — a connection still in the listen backlog at
/// that moment would be reset, and a POST on it lost. Everything else is served as usual.
pub(crate) struct Drain {
    pub(crate) draining: Arc<AtomicBool>,
    pub(crate) trusted_proxies: Arc<Vec<std::net::IpAddr>>,
}

impl<E: Endpoint> Middleware<E> for Drain {
    type Output = DrainEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        DrainEndpoint { inner, draining: self.draining.clone(), trusted_proxies: self.trusted_proxies.clone() }
    }
}

pub(crate) struct DrainEndpoint<E> {
    inner: E,
    draining: Arc<AtomicBool>,
    trusted_proxies: Arc<Vec<std::net::IpAddr>>,
}

impl<E: Endpoint> Endpoint for DrainEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        if !self.draining.load(Ordering::Relaxed) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let retryable = matches!(*req.method(), poem::http::Method::GET | poem::http::Method::HEAD);
        let from_proxy = req.remote_addr().as_socket_addr().is_some_and(|a| self.trusted_proxies.contains(&a.ip()));
        let probe = matches!(req.uri().path(), "/readyz" | "/healthz");
        let mut response = if retryable && from_proxy && !probe {
            (StatusCode::SERVICE_UNAVAILABLE, "draining").with_header(header::RETRY_AFTER, "1").into_response()
        } else {
            match self.inner.call(req).await {
                Ok(response) => response.into_response(),
                Err(error) => error.into_response(),
            }
        };
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok(response)
    }
}

/// Which methods each path pattern answers; `:name` segments match any one segment.
#[derive(Debug, Default)]
pub(crate) struct MethodTable(Vec<(Vec<String>, String)>);

impl MethodTable {
    /// Adds `pattern` (e.g. `/test/register/:client_id`) with its methods (`GET, PUT, DELETE`).
    pub(crate) fn add(&mut self, pattern: &str, methods: &str) {
        let segments = pattern.trim_matches('/').split('/').map(str::to_owned).collect();
        self.0.push((segments, methods.to_owned()));
    }

    /// The methods of the first pattern that `path` matches.
    pub(crate) fn allowed(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.0
            .iter()
            .find(|(pattern, _)| {
                pattern.len() == segments.len()
                    && pattern.iter().zip(&segments).all(|(p, s)| p.starts_with(':') || p == s)
            })
            .map(|(_, methods)| methods.as_str())
    }
}

impl<E: Endpoint> Middleware<E> for ResponseHeaders {
    type Output = ResponseHeadersEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ResponseHeadersEndpoint { inner, hsts: self.hsts.clone(), methods: self.methods.clone() }
    }
}

pub(crate) struct ResponseHeadersEndpoint<E> {
    inner: E,
    hsts: Option<Arc<Hsts>>,
    methods: Arc<MethodTable>,
}

impl<E: Endpoint> Endpoint for ResponseHeadersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let hsts = self.hsts.as_ref().and_then(|hsts| hsts.for_host(req.header(header::HOST)));
        // Shares the request's bytes; the path is only read for a 405.
        let uri = req.uri().clone();
        let mut response = match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        set_response_headers(response.headers_mut(), hsts);
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allowed) = self.methods.allowed(uri.path()).and_then(|m| HeaderValue::from_str(m).ok())
        {
            response.headers_mut().insert(header::ALLOW, allowed);
        }
        Ok(response)
    }
}

/// Gives every request a span with its request id and trace id, so that every log line of the
/// request names both, and (with `traces.otlp_endpoint`) exports it as an OpenTelemetry span.
///
/// The request id is the incoming `X-Request-Id` when it looks like one (nginx sets
/// `$request_id`), else a fresh UUID; it is sent back in the answer. The trace continues an
/// incoming W3C `traceparent`; without one it starts here.
pub(crate) struct Trace;

impl<E: Endpoint> Middleware<E> for Trace {
    type Output = TraceEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        TraceEndpoint { inner }
    }
}

pub(crate) struct TraceEndpoint<E> {
    inner: E,
}

const REQUEST_ID: &str = "x-request-id";

/// An id a proxy made, not text a client smuggles into the logs.
fn plausible_id(value: &str) -> bool {
    (8..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads W3C trace context from poem's headers.
struct Headers<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(poem::http::HeaderName::as_str).collect()
    }
}

/// A random id for a request or a trace: from the thread's CSPRNG, seeded by the OS. `Uuid::new_v4`
/// makes a `getrandom` system call for every id (2 % of a discovery request's samples in a
/// profile); these ids only have to be unique and unguessable.
fn fresh_id() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, not all zeros).
fn incoming_trace_id(headers: &HeaderMap) -> Option<String> {
    let mut parts = headers.get("traceparent")?.to_str().ok()?.split('-');
    let (version, trace, span, _flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    (version == "00" && hex(trace, 32) && hex(span, 16) && trace.bytes().any(|b| b != b'0')).then(|| trace.to_owned())
}

/// The request's id: the incoming `X-Request-Id` when it looks like one, else a fresh one.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|id| id.to_str().ok())
        .filter(|id| plausible_id(id))
        .map_or_else(|| fresh_id().to_string(), str::to_owned)
}

/// The span a request runs in, named by its request id and trace id.
pub(crate) fn request_span(request_id: &str, headers: &HeaderMap) -> tracing::Span {
    use opentelemetry::trace::{TraceContextExt as _, TraceId};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::info_span!("request", %request_id, trace_id = tracing::field::Empty);
    // No layer logs or exports it (a filter above `info`): there is nothing to record.
    if span.is_disabled() {
        return span;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&Headers(headers)));
    let _ = span.set_parent(parent);
    // With the OTLP layer the span has its OpenTelemetry trace id (continued or new);
    // without it, the caller's or a fresh one, so that log lines still join across services.
    let exported = span.context().span().span_context().trace_id();
    let trace_id = if exported == TraceId::INVALID {
        incoming_trace_id(headers).unwrap_or_else(|| fresh_id().simple().to_string())
    } else {
        exported.to_string()
    };
    span.record("trace_id", trace_id.as_str());
    span
}

/// Sends the request id back; an id that is not a header value (cannot happen: it was one, or
/// is a UUID) is left out.
pub(crate) fn set_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
}

impl<E: Endpoint> Endpoint for TraceEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        use tracing::Instrument as _;
        let request_id = request_id(req.headers());
        let span = request_span(&request_id, req.headers());
        let mut response = match self.inner.call(req).instrument(span).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        set_request_id(response.headers_mut(), &request_id);
        Ok(response)
    }
}

#[cfg(test)]
mod trace_tests {
    use super::*;

    #[test]
    fn only_plausible_request_ids_and_valid_traceparents_are_taken() {
        assert!(plausible_id("0f8e3c2a9b7d4e1f0a2b3c4d5e6f7a8b"));
        assert!(!plausible_id("short"));
        assert!(!plausible_id("line\nbreak-injected-into-logs"));
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", HeaderValue::from_str(value).unwrap());
            headers
        };
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(incoming_trace_id(&with(valid)).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for invalid in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
        ] {
            assert_eq!(incoming_trace_id(&with(invalid)), None, "{invalid}");
        }
    }
}
