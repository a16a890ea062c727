//! Discovery and JWKS per environment, fetched by a real relying-party library.

use std::collections::{BTreeMap, BTreeSet};

use openidconnect::{IssuerUrl, JsonWebKey, core::CoreProviderMetadata};

use crate::support::{Backends, TestServer, http_client};

async fn discover(issuer: &str) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.to_owned()).unwrap(), &http_client())
        .await
        .unwrap_or_else(|e| panic!("discovery of {issuer} failed: {e:?}"))
}

fn kids(metadata: &CoreProviderMetadata) -> BTreeSet<String> {
    metadata.jwks().keys().iter().map(|k| k.key_id().unwrap().to_string()).collect()
}

#[tokio::test]
async fn both_environments_are_discoverable_with_their_own_issuer_and_keys() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let production_issuer = server.base_url.clone();
    let test_issuer = format!("{}/test", server.base_url);

    // openidconnect checks that `issuer` equals the URL it discovered from, and fetches the JWKS.
    let production = discover(&production_issuer).await;
    let test = discover(&test_issuer).await;
    assert_eq!(production.issuer().as_str(), production_issuer);
    assert_eq!(test.issuer().as_str(), test_issuer);
    assert_eq!(production.jwks_uri().url().as_str(), format!("{production_issuer}/jwks"));
    assert_eq!(test.jwks_uri().url().as_str(), format!("{test_issuer}/jwks"));

    let algorithms: Vec<String> = production
        .id_token_signing_alg_values_supported()
        .iter()
        .map(|a| serde_json::to_value(a).unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(algorithms, ["RS256", "ES256", "EdDSA"], "RS256 first: the default");

    // One key per algorithm and environment; environments share none.
    assert_eq!(production.jwks().keys().len(), 3);
    assert_eq!(test.jwks().keys().len(), 3);
    assert!(kids(&production).is_disjoint(&kids(&test)));

    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn discovery_and_jwks_carry_cache_headers_and_json() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let client = reqwest::Client::new();
    let mut tags = BTreeSet::new();
    for path in ["/.well-known/openid-configuration", "/jwks", "/test/.well-known/openid-configuration", "/test/jwks"] {
        let response = client.get(format!("{}{path}", server.base_url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["cache-control"], "public, max-age=300", "{path}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10, "{path}: a strong tag, is {etag}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body.is_object(), "{path}");

        // A relying party that has the document gets 304 without a body, weakly compared too.
        for tag in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}"), "*".to_owned()] {
            let again =
                client.get(format!("{}{path}", server.base_url)).header("if-none-match", &tag).send().await.unwrap();
            assert_eq!(again.status(), 304, "{path} with If-None-Match {tag}");
            assert_eq!(again.headers()["etag"], etag.as_str(), "{path}");
            assert_eq!(again.headers()["cache-control"], "public, max-age=300", "{path}");
            assert!(again.bytes().await.unwrap().is_empty(), "{path}: 304 has no body");
        }
        let stale =
            client.get(format!("{}{path}", server.base_url)).header("if-none-match", "\"other\"").send().await.unwrap();
        assert_eq!(stale.status(), 200, "{path}: another tag gets the document");
        tags.insert(etag);
    }
    // Every document has its own tag (production and test keys differ).
    assert_eq!(tags.len(), 4);
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn environments_are_told_apart_by_host_when_issuers_differ_in_host() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |config| {
        let port = config.http.bind.rsplit(':').next().unwrap().to_owned();
        // Both issuers at the root path; only the host tells them apart.
        config.environments.test.issuer = format!("http://localhost:{port}");
    })
    .await;
    let port = server.base_url.rsplit(':').next().unwrap().to_owned();
    let test = discover(&format!("http://localhost:{port}")).await;
    let production = discover(&server.base_url).await;
    assert_eq!(test.issuer().as_str(), format!("http://localhost:{port}"));
    assert_eq!(production.issuer().as_str(), server.base_url);
    assert!(kids(&production).is_disjoint(&kids(&test)));
    server.stop().await;
    backends.drop_now().await;
}

/// Discovery and the JWKS are answered before the app's layers (`routes::Documents`) unless a
/// request has a body; such a request goes the long way. Both ways must give the same answer:
/// the same status, body and headers (but `Date` and a fresh request id), and count in the
/// same metrics series.
#[tokio::test]
async fn the_documents_answer_alike_straight_from_the_head_and_through_the_app() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let client = reqwest::Client::new();
    let paths = ["/.well-known/openid-configuration", "/jwks", "/test/.well-known/openid-configuration", "/test/jwks"];
    let answer = |path: &str, long_way: bool, tag: Option<&str>, request_id: Option<&str>| {
        let mut request = client.get(format!("{}{path}", server.base_url));
        if long_way {
            request = request.body("{}");
        }
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let mut headers: BTreeMap<String, String> = response
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
                .collect();
            headers.remove("date");
            let id = headers.remove("x-request-id").expect("every answer names its request id");
            (status, headers, id, response.bytes().await.unwrap())
        }
    };
    for path in paths {
        let (status, headers, short_id, body) = answer(path, false, None, None).await;
        let (long_status, long_headers, long_id, long_body) = answer(path, true, None, None).await;
        assert_eq!((status, &headers, &body), (long_status, &long_headers, &long_body), "{path}");
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_ne!(short_id, long_id, "{path}: a fresh request id each");
        assert_eq!(short_id.len(), 36, "{path}: a UUID, is {short_id}");

        let etag = headers["etag"].clone();
        let (status, headers, id, body) = answer(path, false, Some(&etag), Some("req-0123456789abcdef")).await;
        let (long_status, long_headers, long_id, long_body) =
            answer(path, true, Some(&etag), Some("req-0123456789abcdef")).await;
        assert_eq!((status, &headers, &body), (long_status, &long_headers, &long_body), "{path} with If-None-Match");
        assert_eq!(status, 304, "{path}");
        assert_eq!((id.as_str(), long_id.as_str()), ("req-0123456789abcdef", "req-0123456789abcdef"), "{path}");
    }
    let metrics = client.get(format!("{}/metrics", server.base_url)).send().await.unwrap().text().await.unwrap();
    for path in paths {
        for status in [200, 304] {
            let line =
                format!(r#"servicekonto_http_requests_total{{method="GET",route="{path}",status="{status}"}} 2"#);
            assert!(metrics.contains(&line), "both ways count in one series: {line}\n{metrics}");
        }
        let line = format!(r#"servicekonto_http_request_duration_seconds_count{{method="GET",route="{path}"}} 4"#);
        assert!(metrics.contains(&line), "{line}\n{metrics}");
        // Of the four, the two bodiless ones were answered from the head: the short way was taken.
        let line = format!(r#"servicekonto_http_answered_from_head_total{{route="{path}"}} 2"#);
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
    server.stop().await;
    backends.drop_now().await;
}
