//! `private_key_jwt` at the token and introspection endpoints: keys by value and from a
//! `jwks_uri` (served by this test on loopback, rotated mid-test), `jti` replay, wrong audience,
//! foreign key, expired assertion, client_id contradicting the assertion.

use std::{collections::BTreeSet, sync::Arc};

use oidc_core::{ClientId, Environment, JWT_BEARER_ASSERTION, SigningAlgorithm, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tenant_registry::{Actor, AuthMethod, ClientSettings, GrantType, OperatorFlags};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::Mutex,
};

use crate::support::{Backends, TestServer, tenant};

/// A loopback HTTP server answering every request with the current JWK Set; counts fetches.
async fn jwks_server(document: Arc<Mutex<(String, u32)>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let body = {
                let mut state = document.lock().await;
                state.1 += 1;
                state.0.clone()
            };
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    url
}

fn assertion(key: &SigningKey, client_id: &str, audience: &str, jti: &str, lifetime: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    key.sign(
        "JWT",
        &json!({ "iss": client_id, "sub": client_id, "aud": audience, "jti": jti, "iat": now, "exp": now + lifetime }),
    )
    .unwrap()
}

async fn token(base: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = reqwest::Client::new().post(format!("{base}/test/token")).form(form).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn clients_authenticate_with_signed_assertions_from_their_registered_keys() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let base = &server.base_url;
    let registry = server.state.registry();
    let actor = Actor::System("test");
    let tenant = tenant(&server, "jwt-kommune").await;
    let (first_key, first_jwk) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
    let (second_key, second_jwk) = SigningKey::generate(SigningAlgorithm::RS256).unwrap();
    let document = Arc::new(Mutex::new((json!({ "keys": [first_jwk] }).to_string(), 0)));
    let jwks_uri = jwks_server(document.clone()).await;

    let client = |jwks: Option<Value>, jwks_uri: Option<&str>| {
        let mut settings = ClientSettings::confidential("Fachverfahren", Vec::new());
        settings.auth_method = AuthMethod::PrivateKeyJwt;
        settings.grant_types = BTreeSet::from([GrantType::ClientCredentials]);
        settings.scopes = BTreeSet::new();
        settings.jwks = jwks;
        settings.jwks_uri = jwks_uri.map(|u| url::Url::parse(u).unwrap());
        settings
    };
    let by_uri = ClientId::parse("jwt-by-uri").unwrap();
    registry
        .create_client_with_id(
            &actor,
            tenant.id,
            Environment::Test,
            by_uri.clone(),
            client(None, Some(&jwks_uri)),
            OperatorFlags::default(),
            None,
        )
        .await
        .unwrap();
    let by_value = ClientId::parse("jwt-by-value").unwrap();
    registry
        .create_client_with_id(
            &actor,
            tenant.id,
            Environment::Test,
            by_value.clone(),
            client(Some(json!({ "keys": [second_jwk] })), None),
            OperatorFlags::default(),
            None,
        )
        .await
        .unwrap();

    let token_endpoint = format!("{base}/test/token");
    let grant = |assertion: String| {
        [
            ("grant_type", "client_credentials".to_owned()),
            ("client_assertion_type", JWT_BEARER_ASSERTION.to_owned()),
            ("client_assertion", assertion),
        ]
    };
    let as_refs = |form: &[(&'static str, String); 3]| form.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let send = |form: Vec<(&'static str, String)>| {
        let base = base.clone();
        async move {
            let refs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token(&base, &refs).await
        }
    };

    // The key from the jwks_uri; the token endpoint and the issuer are both accepted audiences.
    let first = grant(assertion(&first_key, "jwt-by-uri", &token_endpoint, "a-1", 60));
    let (status, body) = send(as_refs(&first)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access_token"].is_string());
    let (status, _) =
        send(as_refs(&grant(assertion(&first_key, "jwt-by-uri", &format!("{base}/test"), "a-2", 60)))).await;
    assert_eq!(status, StatusCode::OK);

    // Every refusal is invalid_client with 401.
    for (form, why) in [
        (as_refs(&first), "the same jti again"),
        (
            as_refs(&grant(assertion(&first_key, "jwt-by-uri", "https://elsewhere.example/token", "a-3", 60))),
            "audience",
        ),
        (as_refs(&grant(assertion(&first_key, "jwt-by-uri", &token_endpoint, "a-4", -5))), "expired"),
        (as_refs(&grant(assertion(&first_key, "jwt-by-uri", &token_endpoint, "a-5", 3600))), "lives too long"),
        (as_refs(&grant(assertion(&second_key, "jwt-by-uri", &token_endpoint, "a-6", 60))), "a key not registered"),
        (as_refs(&grant(assertion(&first_key, "jwt-by-value", &token_endpoint, "a-7", 60))), "another client's key"),
    ] {
        let (status, body) = send(form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
        assert_eq!(body["error"], "invalid_client", "{why}");
    }
    let mut contradicting = as_refs(&grant(assertion(&first_key, "jwt-by-uri", &token_endpoint, "a-8", 60)));
    contradicting.push(("client_id", "jwt-by-value".to_owned()));
    let (status, body) = send(contradicting).await;
    assert_eq!((status, &body["error"]), (StatusCode::UNAUTHORIZED, &json!("invalid_client")), "{body}");
    let mut wrong_type = as_refs(&grant(assertion(&first_key, "jwt-by-uri", &token_endpoint, "a-9", 60)));
    wrong_type[1].1 = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".to_owned();
    let (status, body) = send(wrong_type).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_request")), "{body}");

    // Keys by value; and the assertion authenticates at introspection too.
    let (status, body) =
        send(as_refs(&grant(assertion(&second_key, "jwt-by-value", &token_endpoint, "b-1", 60)))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let introspection = reqwest::Client::new()
        .post(format!("{base}/test/introspect"))
        .form(&[
            ("token", body["access_token"].as_str().unwrap()),
            ("client_assertion_type", JWT_BEARER_ASSERTION),
            (
                "client_assertion",
                &assertion(&second_key, "jwt-by-value", &format!("{base}/test/introspect"), "b-2", 60),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(introspection.status(), StatusCode::OK);
    assert_eq!(introspection.json::<Value>().await.unwrap()["active"], true);

    // The client rotates its key: an unknown kid makes the server fetch the jwks_uri again
    // (not more often than every 2 s).
    let fetches_before = document.lock().await.1;
    *document.lock().await = (json!({ "keys": [second_jwk] }).to_string(), fetches_before);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = send(as_refs(&grant(assertion(&second_key, "jwt-by-uri", &token_endpoint, "c-1", 60)))).await;
    assert_eq!(status, StatusCode::OK, "the rotated key is fetched: {body}");
    assert_eq!(document.lock().await.1, fetches_before + 1, "one fetch for the unknown kid");

    server.stop().await;
    backends.drop_now().await;
}
