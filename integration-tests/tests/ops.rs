//! Operations endpoints: liveness, readiness, metrics, request ids, error bodies.

use crate::support::{Backends, TestServer};
use storage::testing::backend_url;

#[tokio::test]
async fn health_readiness_metrics_and_request_ids() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", server.base_url)).send();

    let health = get("/healthz").await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(!health.headers()["x-request-id"].is_empty(), "every response names its request id");

    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["cache-control"], "no-store");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["ephemeral_store"]["status"], "ok");
    let names =
        [body["checks"]["database"]["dependency"].clone(), body["checks"]["ephemeral_store"]["dependency"].clone()];
    assert!(names[0] == "sqlite" || names[0] == "postgres", "{names:?}");
    assert!(names[1] == "memory" || names[1] == "redis", "{names:?}");

    // Unknown paths: JSON error, counted under one label.
    let missing = get("/test/no-such-thing").await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let wrong_method = client.post(format!("{}/jwks", server.base_url)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);

    get("/test/jwks").await.unwrap();
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for line in [
        r#"servicekonto_http_requests_total{method="GET",route="/healthz",status="200"} 1"#,
        r#"servicekonto_http_requests_total{method="GET",route="/test/jwks",status="200"} 1"#,
        r#"servicekonto_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"servicekonto_http_request_duration_seconds_count{method="GET",route="/readyz"} 1"#,
    ] {
        assert!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }
    let up = format!(r#"servicekonto_dependency_up{{dependency="{}"}} 1"#, names[0].as_str().unwrap());
    assert!(metrics.contains(&up), "the probe reports the database up:\n{metrics}");
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn readiness_fails_with_503_naming_the_database_when_it_goes_away() {
    if backend_url("TEST_DATABASE_URL", "readiness_fails_with_503_naming_the_database_when_it_goes_away").is_none() {
        return;
    }
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    // Dropping the database (WITH FORCE) ends the server's connections under it.
    backends.drop_now().await;
    let response = reqwest::get(format!("{}/readyz", server.base_url)).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"]["status"], "unavailable");
    assert_eq!(body["checks"]["database"]["dependency"], "postgres");
    assert!(body["checks"]["database"]["error"].as_str().is_some_and(|e| !e.is_empty()), "says why: {body}");
    assert_eq!(body["checks"]["ephemeral_store"]["status"], "ok");
    // Liveness is about the process, not its dependencies.
    assert_eq!(reqwest::get(format!("{}/healthz", server.base_url)).await.unwrap().status(), 200);
    server.stop().await;
}
