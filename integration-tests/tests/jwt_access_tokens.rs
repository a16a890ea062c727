//! RFC 9068 JWT access tokens for a client configured with a resource-server audience: the
//! resource server can verify them against the JWKS alone; introspection and revocation still
//! work, because the grant is kept like an opaque token's.

use std::collections::BTreeSet;

use oidc_core::{ClientId, Environment};
use reqwest::StatusCode;
use serde_json::Value;
use tenant_registry::{Actor, ClientSecret, ClientSettings, GrantType, OperatorFlags};

use crate::support::{Backends, TestServer};

#[tokio::test]
async fn a_client_with_a_resource_server_gets_verifiable_jwt_access_tokens() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let issuer = format!("{}/test", server.base_url);
    let registry = server.state.registry();
    let tenant = registry.find_tenant_by_slug("demo-kommune").await.unwrap().unwrap();
    let mut settings = ClientSettings::confidential("Fachverfahren-API", Vec::new());
    settings.grant_types = BTreeSet::from([GrantType::ClientCredentials]);
    settings.scopes = BTreeSet::new();
    settings.access_token_audience = Some("https://api.kommune.example".into());
    let secret = "api-secret-0123456789abcdefghijklmnopq";
    registry
        .create_client_with_id(
            &Actor::System("test"),
            tenant.id,
            Environment::Test,
            ClientId::parse("api-client").unwrap(),
            settings,
            OperatorFlags::default(),
            Some(ClientSecret::from_configured(secret)),
        )
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{issuer}/token"))
        .basic_auth("api-client", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["access_token"].as_str().unwrap();

    // The resource server's check: typ at+jwt, ES256, a key of the JWKS, its audience, our issuer.
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256, "ECDSA, not the costly RS256");
    let jwks: jsonwebtoken::jwk::JwkSet =
        http.get(format!("{issuer}/jwks")).send().await.unwrap().json().await.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["https://api.kommune.example"]);
    validation.set_issuer(&[&issuer]);
    let claims: Value = jsonwebtoken::decode(token, &key, &validation).unwrap().claims;
    assert_eq!(claims["client_id"], "api-client");
    assert_eq!(claims["sub"], "api-client", "client_credentials: the client is the subject");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    assert!(claims["jti"].is_string());

    // Introspection and revocation as for opaque tokens.
    let introspect = || {
        http.post(format!("{issuer}/introspect"))
            .basic_auth("api-client", Some(secret))
            .form(&[("token", token)])
            .send()
    };
    let active: Value = introspect().await.unwrap().json().await.unwrap();
    assert_eq!(active["active"], true, "{active}");
    let revoked = http
        .post(format!("{issuer}/revoke"))
        .basic_auth("api-client", Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let inactive: Value = introspect().await.unwrap().json().await.unwrap();
    assert_eq!(inactive["active"], false);

    server.stop().await;
    backends.drop_now().await;
}
