//! Pushed authorization requests (RFC 9126) and signed request objects (RFC 9101): the PAR
//! endpoint's answers and refusals, a client that must use PAR, `request_uri`s that are not the
//! caller's, request objects at the authorization and at the PAR endpoint, tampered ones.

use std::collections::BTreeSet;

use oidc_core::{ClientId, Environment, Scope, SigningAlgorithm, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenant_registry::{Actor, ClientSettings, GrantType, OperatorFlags};

use crate::support::{Backends, TestServer, tenant};

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn request_params(client_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", client_id.to_owned()),
        ("response_type", "code".to_owned()),
        ("scope", "openid".to_owned()),
        ("redirect_uri", CALLBACK.to_owned()),
        ("state", "s-par".to_owned()),
        ("code_challenge", CHALLENGE.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
    ]
}

#[tokio::test]
async fn pushed_and_signed_authorization_requests() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let issuer = format!("{}/test", server.base_url);
    let http = no_redirects();
    let registry = server.state.registry();
    let actor = Actor::System("test");
    let tenant = tenant(&server, "par-kommune").await;
    let (key, jwk) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
    let mut settings = ClientSettings::confidential("Strenger Dienst", vec![url::Url::parse(CALLBACK).unwrap()]);
    settings.grant_types = BTreeSet::from([GrantType::AuthorizationCode]);
    settings.scopes = BTreeSet::from([Scope::parse("openid").unwrap()]);
    settings.require_par = true;
    settings.jwks = Some(json!({ "keys": [jwk] }));
    let strict = ClientId::parse("par-required").unwrap();
    registry
        .create_client_with_id(
            &actor,
            tenant.id,
            Environment::Test,
            strict.clone(),
            settings,
            OperatorFlags::default(),
            Some(tenant_registry::ClientSecret::from_configured("par-secret-0123456789abcdefghijklmnop")),
        )
        .await
        .unwrap();
    let push = |form: Vec<(&'static str, String)>, client: &'static str, secret: &'static str| {
        let http = http.clone();
        let url = format!("{issuer}/par");
        async move {
            let response = http.post(url).basic_auth(client, Some(secret)).form(&form).send().await.unwrap();
            (
                response.status(),
                response.headers().get("cache-control").cloned(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let strict_secret = "par-secret-0123456789abcdefghijklmnop";

    // Without PAR the strict client is refused (at its redirect URI, with state and iss).
    let query: String =
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(request_params("par-required")).finish();
    let response = http.get(format!("{issuer}/authorize?{query}")).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(CALLBACK) && location.contains("error=invalid_request"), "{location}");

    // With PAR: 201, a request_uri, no-store; the browser then needs only client_id and it.
    let (status, cache, body) = push(request_params("par-required"), "par-required", strict_secret).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(cache.unwrap(), "no-store");
    let request_uri = body["request_uri"].as_str().unwrap().to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(body["expires_in"], 300);
    let authorize = |client_id: &str, request_uri: &str| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("client_id", client_id), ("request_uri", request_uri)])
            .finish();
        format!("{issuer}/authorize?{query}")
    };
    let response = http.get(authorize("par-required", &request_uri)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let login = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(login.contains("/anmelden?return_to="), "on to the login: {login}");
    assert!(login.contains("request_uri"), "and back to the pushed request after it: {login}");

    // A request_uri is the pushing client's only, and must be ours.
    for url in [
        authorize("demo-client", &request_uri),
        authorize("par-required", "urn:ietf:params:oauth:request_uri:erfunden"),
        authorize("par-required", "https://attacker.example/request.jwt"),
    ] {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(response.text().await.unwrap().contains("Anmeldeanfrage ist unbekannt"));
    }

    // Refusals at the PAR endpoint come as JSON, never as a redirect.
    let mut bad_redirect = request_params("par-required");
    bad_redirect[3].1 = "https://evil.example/cb".to_owned();
    let mut with_request_uri = request_params("par-required");
    with_request_uri.push(("request_uri", request_uri.clone()));
    let mut other_client = request_params("par-required");
    other_client[0].1 = "demo-client".to_owned();
    let mut plain_pkce = request_params("par-required");
    plain_pkce[6].1 = "plain".to_owned();
    for (form, error) in [
        (bad_redirect, "invalid_request"),
        (with_request_uri, "invalid_request"),
        (other_client, "invalid_request"),
        (plain_pkce, "invalid_request"),
    ] {
        let (status, _, body) = push(form, "par-required", strict_secret).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some(error)), "{body}");
    }
    let (status, _, body) = push(request_params("par-required"), "par-required", "falsch").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));

    // Signed request objects: at the authorization endpoint (a client not bound to PAR would use
    // it directly; this one must push it) and inside PAR.
    let object = |changes: Value| {
        let mut claims = json!({
            "iss": "par-required", "aud": issuer, "exp": now() + 120, "client_id": "par-required",
            "response_type": "code", "scope": "openid", "redirect_uri": CALLBACK, "state": "s-jar",
            "code_challenge": CHALLENGE, "code_challenge_method": "S256", "max_age": 600,
        });
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        key.sign("oauth-authz-req+jwt", &claims).unwrap()
    };
    let (status, _, body) =
        push(vec![("client_id", "par-required".into()), ("request", object(json!({})))], "par-required", strict_secret)
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let response = http.get(authorize("par-required", body["request_uri"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "the signed, pushed request is accepted");
    for (changes, why) in [
        (json!({"aud": "https://elsewhere.example"}), "audience"),
        (json!({"exp": now() - 10}), "expired"),
        (json!({"iss": "demo-client"}), "issuer"),
    ] {
        let (status, _, body) = push(
            vec![("client_id", "par-required".into()), ("request", object(changes))],
            "par-required",
            strict_secret,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request_object")),
            "{why}"
        );
    }
    let (other_key, _) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
    let foreign = other_key
        .sign("oauth-authz-req+jwt", &json!({"iss": "par-required", "aud": issuer, "exp": now() + 60}))
        .unwrap();
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("client_id", "par-required"), ("request", foreign.as_str())])
        .finish();
    let response = http.get(format!("{issuer}/authorize?{query}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "a request object signed by another key");
    assert!(response.text().await.unwrap().contains("signierte Anfrage"));

    // Discovery says all of it.
    let metadata: Value =
        http.get(format!("{issuer}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(metadata["pushed_authorization_request_endpoint"], format!("{issuer}/par"));
    assert_eq!(metadata["request_parameter_supported"], true);
    assert_eq!(metadata["request_uri_parameter_supported"], false, "no fetching of client URLs");

    server.stop().await;
    backends.drop_now().await;
}
