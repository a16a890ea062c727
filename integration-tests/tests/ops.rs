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
        // The inactivity policy's counts (unit-tested with a manual clock in storage's tests).
        r#"servicekonto_inactive_accounts_total{action="reminded"} 0"#,
        r#"servicekonto_inactive_accounts_total{action="deleted"} 0"#,
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

#[tokio::test]
async fn every_response_has_nosniff_405_names_allow_admin_is_never_cached_and_https_issuers_get_hsts() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| {
        let port = c.http.bind.rsplit(':').next().unwrap().to_owned();
        c.environments.production.issuer = format!("https://127.0.0.1:{port}");
    })
    .await;
    let base = &server.base_url;
    let http = reqwest::Client::new();
    for (method, path, allow) in [
        (reqwest::Method::POST, "/jwks", "GET"),
        (reqwest::Method::PUT, "/test/token", "POST"),
        (reqwest::Method::DELETE, "/test/anmelden", "GET, POST"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::DELETE, "/admin/api/v1/tenants", "POST, GET"),
    ] {
        let response = http.request(method.clone(), format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        let mut named: Vec<&str> = response.headers()["allow"].to_str().unwrap().split(", ").collect();
        let mut expected: Vec<&str> = allow.split(", ").collect();
        named.sort_unstable();
        expected.sort_unstable();
        assert_eq!(named, expected, "{method} {path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    for path in [
        "/nowhere",
        "/admin/api/v1/tenants",
        "/healthz",
        "/jwks",
        "/.well-known/openid-configuration",
        "/test/jwks",
        "/test/anmelden",
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains",
            "{path}: the host of an https issuer"
        );
    }
    let admin = http.get(format!("{base}/admin/api/v1/tenants")).send().await.unwrap();
    assert_eq!(admin.headers()["cache-control"], "no-store", "admin answers are never cached");
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn metrics_are_for_prometheus_only() {
    let backends = Backends::from_env().await;
    // With a bearer token: nothing without it.
    let token = "prometheus-token-0123456789";
    let server = TestServer::start(&backends, |c| c.metrics.bearer_token = Some(token.into())).await;
    let url = format!("{}/metrics", server.base_url);
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(http.get(&url).bearer_auth("wrong-token-0123456789").send().await.unwrap().status(), 404);
    let ok = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("servicekonto_http_requests_total"));
    server.stop().await;

    // Without a token: loopback only, and not through a proxy.
    let server = TestServer::start(&backends, |_| {}).await;
    let url = format!("{}/metrics", server.base_url);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let proxied = http.get(&url).header("x-forwarded-for", "203.0.113.7").send().await.unwrap();
    assert_eq!(proxied.status(), 404, "a request through a proxy is the public's");
    server.stop().await;

    // A listener of its own: the main listener has no /metrics.
    let metrics_port = storage::testing::free_port();
    let server = TestServer::start(&backends, |c| c.metrics.bind = Some(format!("127.0.0.1:{metrics_port}"))).await;
    assert_eq!(http.get(format!("{}/metrics", server.base_url)).send().await.unwrap().status(), 404);
    let own = http.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.unwrap();
    assert_eq!(own.status(), 200);
    server.stop().await;
    backends.drop_now().await;
}

/// An operator's change to the demo tenant stands, and the next start goes through.
#[tokio::test]
async fn a_changed_demo_tenant_does_not_stop_the_next_start() {
    use tenant_registry::{Actor, TenantChanges};
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let registry = server.state.registry();
    let actor = Actor::System("test");
    let demo = registry.find_tenant_by_slug("demo-kommune").await.unwrap().unwrap();
    let client = oidc_core::ClientId::parse("demo-client").unwrap();
    registry.delete_client(&actor, &client, None).await.unwrap();
    let changes = TenantChanges {
        name: demo.name.clone(),
        contact_email: demo.contact_email.clone(),
        branding: demo.branding.clone(),
        allowed_claims: std::collections::BTreeSet::new(),
        min_trust_level: demo.min_trust_level,
    };
    registry.update_tenant(&actor, demo.id, demo.version, changes).await.unwrap();
    server.stop().await;
    let again = TestServer::start(&backends, |_| {}).await;
    let health = reqwest::get(format!("{}/healthz", again.base_url)).await.unwrap();
    assert_eq!(health.status(), 200);
    let kept = again.state.registry().find_tenant_by_slug("demo-kommune").await.unwrap().unwrap();
    assert!(kept.allowed_claims.is_empty(), "the operator's change stands");
    again.stop().await;
    backends.drop_now().await;
}

/// Every metric the shipped alert rules and the Grafana dashboard query is one the server really
/// exports (after a request, a token, a failed login, a probe and a failed mail delivery).
#[tokio::test]
async fn the_monitoring_files_query_only_metrics_the_server_exports() {
    use crate::citizen::{csrf, fill_in, page, post};
    let backends = Backends::from_env().await;
    // The mail relay refuses connections: delivering the activation mail fails, counted.
    let closed = storage::testing::free_port();
    let server =
        TestServer::start(&backends, |c| c.mail.smtp_url = Some(format!("smtp://127.0.0.1:{closed}").as_str().into()))
            .await;
    let base = format!("{}/test", server.base_url);
    let http = reqwest::Client::new();
    let token = http
        .post(format!("{base}/token"))
        .basic_auth("demo-client", Some("demo-secret-only-for-local-use"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let browser = crate::citizen::rp_browser();
    let (_, login) = page(&browser, &format!("{base}/anmelden")).await;
    post(&browser, &format!("{base}/anmelden"), &[("csrf", &csrf(&login)), ("username", "niemand"), ("password", "x")])
        .await;
    let review = fill_in(&browser, &base, "metrik.test", "metrik.test@example.de").await;
    post(&browser, &format!("{base}/registrierung/pruefen"), &[("csrf", &csrf(&review))]).await;

    let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy/monitoring");
    let queried: std::collections::BTreeSet<String> = ["alerts.yml", "grafana-dashboard.json"]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(repository.join(file)).unwrap();
            let mut names = Vec::new();
            let mut rest = text.as_str();
            while let Some(start) = rest.find("servicekonto_") {
                let name: String =
                    rest[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[start + name.len()..];
                names.push(name);
            }
            names
        })
        .collect();
    assert!(queried.len() >= 5, "the files query the server's metrics: {queried:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let exported = http.get(format!("{}/metrics", server.base_url)).send().await.unwrap().text().await.unwrap();
        let series: std::collections::BTreeSet<&str> =
            exported.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
        let missing: Vec<&String> = queried.iter().filter(|name| !series.contains(name.as_str())).collect();
        if missing.is_empty() {
            break;
        }
        // The failed mail delivery comes from the background worker, a moment later.
        assert!(std::time::Instant::now() < deadline, "queried but not exported: {missing:?}\n{exported}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.stop().await;
    backends.drop_now().await;
}
