//! The admin API and the token endpoint as an operator, a tenant admin and an authority's back
//! end use them: tokens from a real OAuth client library, every call over HTTP.

use std::collections::BTreeSet;

use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl, basic::BasicClient};
use oidc_core::{Environment, TrustLevel};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenant_registry::{Actor, AdminRole, Branding, ClientSettings, GrantType, NewTenant, OperatorFlags};

use crate::support::{Backends, TestServer, http_client};

/// Creates an operator admin client (as `servicekonto admin bootstrap` does) and returns its
/// credentials.
pub(crate) async fn bootstrap_operator(server: &TestServer) -> (String, String) {
    let registry = server.state.registry();
    let actor = Actor::System("test");
    let tenant = registry
        .create_tenant(
            &actor,
            NewTenant {
                slug: "betreiber".into(),
                name: "Betreiber".into(),
                contact_email: "ops@example.org".into(),
                branding: Branding { display_name: "Betreiber".into(), logo_url: None },
                allowed_claims: BTreeSet::new(),
                min_trust_level: TrustLevel::Normal,
                sector: None,
            },
        )
        .await
        .unwrap();
    let mut settings = ClientSettings::confidential("Operator", Vec::new());
    settings.grant_types = BTreeSet::from([GrantType::ClientCredentials]);
    settings.scopes = BTreeSet::new();
    let flags = OperatorFlags { first_party: false, admin_role: Some(AdminRole::Operator) };
    let (client, secret) =
        registry.create_client(&actor, tenant.id, Environment::Production, settings, flags).await.unwrap();
    (client.client_id.to_string(), secret.unwrap().expose().to_owned())
}

/// A token from `{issuer}/token` via the `oauth2` crate's client-credentials grant.
pub(crate) async fn token(
    issuer: &str,
    client_id: &str,
    secret: &str,
    scope: Option<&str>,
    auth: AuthType,
) -> Result<String, String> {
    let client = BasicClient::new(ClientId::new(client_id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_auth_type(auth)
        .set_token_uri(TokenUrl::new(format!("{issuer}/token")).unwrap());
    let mut request = client.exchange_client_credentials();
    if let Some(scope) = scope {
        request = request.add_scope(Scope::new(scope.to_owned()));
    }
    request.request_async(&http_client()).await.map(|t| t.access_token().secret().clone()).map_err(|e| format!("{e:?}"))
}

pub(crate) struct Admin {
    base: String,
    pub(crate) token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request =
            self.http.request(method, format!("{}/admin/api/v1{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(tag) = if_match {
            request = request.header("If-Match", tag);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(response.headers()["content-type"], "application/problem+json", "{status}");
        }
        let text = response.text().await.unwrap();
        (status, etag, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Option<String>, Value) {
        self.call(Method::GET, path, None, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Option<String>, Value) {
        self.call(Method::POST, path, Some(body), None).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value, if_match: &str) -> (StatusCode, Option<String>, Value) {
        self.call(Method::PUT, path, Some(body), Some(if_match)).await
    }
}

pub(crate) async fn operator(server: &TestServer) -> Admin {
    let (id, secret) = bootstrap_operator(server).await;
    let token = token(&server.base_url, &id, &secret, Some("admin"), AuthType::BasicAuth).await.unwrap();
    Admin { base: server.base_url.clone(), token, http: reqwest::Client::new() }
}

pub(crate) fn tenant_body(slug: &str) -> Value {
    json!({
        "slug": slug,
        "name": format!("Stadt {slug}"),
        "contact_email": format!("it@{slug}.de"),
        "display_name": slug,
        "allowed_claims": ["given_name", "family_name", "email"],
    })
}

fn client_body(environment: &str, redirect: &str) -> Value {
    json!({
        "environment": environment,
        "name": "Hundesteuer online",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "client_credentials"],
        "scopes": ["openid", "email"],
        "claims": [{"claim": "given_name", "required": true}, {"claim": "email"}],
    })
}

#[tokio::test]
async fn client_credentials_at_the_token_endpoint_with_its_error_cases() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let test_issuer = format!("{}/test", server.base_url);
    let (id, secret) = ("demo-client", "demo-secret-only-for-local-use");

    // The demo client, through a real OAuth library, with both secret methods.
    token(&test_issuer, id, secret, Some("email"), AuthType::BasicAuth).await.unwrap();
    // Registered for client_secret_basic: the same secret in the body is refused.
    let refused = token(&test_issuer, id, secret, None, AuthType::RequestBody).await.unwrap_err();
    assert!(refused.contains("invalid_client"), "{refused}");
    let refused = token(&test_issuer, id, secret, Some("phone"), AuthType::BasicAuth).await.unwrap_err();
    assert!(refused.contains("invalid_scope"), "{refused}");
    let refused = token(&test_issuer, id, "wrong", None, AuthType::BasicAuth).await.unwrap_err();
    assert!(refused.contains("invalid_client"), "{refused}");
    // A test client does not exist in production.
    let refused = token(&server.base_url, id, secret, None, AuthType::BasicAuth).await.unwrap_err();
    assert!(refused.contains("invalid_client"), "{refused}");

    let http = reqwest::Client::new();
    let post = |body: &'static str, basic: Option<(&str, &str)>| {
        let mut request = http
            .post(format!("{test_issuer}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password));
        }
        request.send()
    };
    let check = |response: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code);
    };
    let wrong = post("grant_type=client_credentials", Some((id, "nope"))).await.unwrap();
    assert_eq!(wrong.headers()["www-authenticate"], "Basic realm=\"servicekonto\"");
    check(wrong, 401, "invalid_client").await;
    check(post("grant_type=password", Some((id, secret))).await.unwrap(), 400, "unsupported_grant_type").await;
    check(post("scope=email", Some((id, secret))).await.unwrap(), 400, "invalid_request").await;
    check(
        post("grant_type=client_credentials&grant_type=client_credentials", Some((id, secret))).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    check(
        post("grant_type=client_credentials&client_secret=x", Some((id, secret))).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    check(post("grant_type=client_credentials", None).await.unwrap(), 401, "invalid_client").await;
    let json_body = http
        .post(format!("{test_issuer}/token"))
        .basic_auth(id, Some(secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    check(json_body, 400, "invalid_request").await;

    let ok = post("grant_type=client_credentials", Some((id, secret))).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert!(body["access_token"].as_str().unwrap().len() >= 43, "at least 256 bits");

    let metrics = reqwest::get(format!("{}/metrics", server.base_url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"servicekonto_tokens_issued_total{environment="test",grant_type="client_credentials"} 2"#),
        "{metrics}"
    );

    let discovery: Value =
        reqwest::get(format!("{test_issuer}/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["token_endpoint"], format!("{test_issuer}/token"));
    assert_eq!(
        discovery["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn the_admin_api_refuses_missing_foreign_and_unprivileged_tokens() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let http = reqwest::Client::new();
    let url = format!("{}/admin/api/v1/tenants", server.base_url);

    let missing = http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["content-type"], "application/problem+json");
    assert!(missing.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(http.get(&url).bearer_auth("made-up").send().await.unwrap().status(), 401);

    // A real token, but from the test issuer and without an admin scope.
    let demo = token(
        &format!("{}/test", server.base_url),
        "demo-client",
        "demo-secret-only-for-local-use",
        None,
        AuthType::BasicAuth,
    )
    .await
    .unwrap();
    assert_eq!(http.get(&url).bearer_auth(&demo).send().await.unwrap().status(), 401);

    let spec: Value =
        http.get(format!("{}/admin/api/v1/openapi.json", server.base_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(spec["info"]["title"], "servicekonto admin API");
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn operators_manage_tenants_with_etags_and_tenant_admins_see_only_their_own() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let operator = operator(&server).await;

    let (status, etag, a) = operator.post("/tenants", tenant_body("aachen")).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::CREATED, Some("\"1\"")));
    let (_, _, b) = operator.post("/tenants", tenant_body("bonn")).await;
    let (status, _, problem) = operator.post("/tenants", tenant_body("aachen")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    // Validation errors name every field.
    let (status, _, problem) = operator
        .post("/tenants", json!({"slug": "Bad Slug", "name": "", "contact_email": "x", "display_name": "d"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["slug", "name", "contact_email"]);

    // ETag / If-Match.
    let a_id = a["id"].as_str().unwrap();
    let path = format!("/tenants/{a_id}");
    let update = json!({"name": "Stadt Aachen", "contact_email": "it@aachen.de", "display_name": "Aachen", "allowed_claims": ["given_name", "family_name", "email"], "min_trust_level": "normal"});
    let (status, _, _) = operator.call(Method::PUT, &path, Some(update.clone()), None).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    let (status, etag, renamed) = operator.call(Method::PUT, &path, Some(update.clone()), Some("\"1\"")).await;
    assert_eq!(
        (status, etag.as_deref(), renamed["name"].as_str()),
        (StatusCode::OK, Some("\"2\""), Some("Stadt Aachen"))
    );
    let (status, _, problem) = operator.call(Method::PUT, &path, Some(update.clone()), Some("\"1\"")).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "a second admin with the old version: {problem}");
    assert!(problem["detail"].as_str().unwrap().contains("\"2\""));

    // Listing, search, pagination (the demo and operator tenants exist too).
    let (_, _, page) = operator.get("/tenants?limit=2&offset=0").await;
    assert_eq!((page["total"].as_u64(), page["items"].as_array().unwrap().len()), (Some(4), 2));
    let (_, _, found) = operator.get("/tenants?search=BONN").await;
    assert_eq!(found["items"][0]["id"], b["id"]);

    // A tenant admin of Aachen.
    let (status, _, admin_client) = operator
        .post(&format!("/tenants/{a_id}/clients"), json!({"environment": "production", "name": "IT Aachen", "grant_types": ["client_credentials"], "scopes": [], "admin_role": "tenant_admin"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{admin_client}");
    let tenant_admin = Admin {
        base: server.base_url.clone(),
        token: token(
            &server.base_url,
            admin_client["client_id"].as_str().unwrap(),
            admin_client["client_secret"].as_str().unwrap(),
            Some("tenant-admin"),
            AuthType::BasicAuth,
        )
        .await
        .unwrap(),
        http: reqwest::Client::new(),
    };
    let b_id = b["id"].as_str().unwrap();
    let (_, _, b_client) =
        operator.post(&format!("/tenants/{b_id}/clients"), client_body("test", "http://localhost:3000/cb")).await;

    let (_, _, visible) = tenant_admin.get("/tenants").await;
    assert_eq!(visible["total"], 1);
    assert_eq!(visible["items"][0]["id"], a["id"]);
    assert_eq!(
        tenant_admin.get(&format!("/tenants/{b_id}")).await.0,
        StatusCode::NOT_FOUND,
        "not 403: tenants cannot be enumerated"
    );
    assert_eq!(
        tenant_admin.get(&format!("/clients/{}", b_client["client_id"].as_str().unwrap())).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        tenant_admin.post(&format!("/tenants/{b_id}/clients"), client_body("test", "http://localhost:3000/cb")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(tenant_admin.get(&format!("/clients?tenant_id={b_id}")).await.2["total"], 0);
    assert_eq!(tenant_admin.post("/tenants", tenant_body("koeln")).await.0, StatusCode::FORBIDDEN);

    let (status, _, own) =
        tenant_admin.post(&format!("/tenants/{a_id}/clients"), client_body("test", "http://localhost:3000/cb")).await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    let mut first_party = client_body("test", "http://localhost:3000/cb");
    first_party["first_party"] = json!(true);
    assert_eq!(tenant_admin.post(&format!("/tenants/{a_id}/clients"), first_party).await.0, StatusCode::FORBIDDEN);

    let (_, _, trail) = tenant_admin.get("/audit").await;
    assert!(trail["items"].as_array().unwrap().iter().all(|e| e["tenant_id"] == a["id"]), "{trail}");
    let (_, _, all) = operator.get(&format!("/audit?tenant_id={b_id}&action=client.create")).await;
    assert_eq!(all["total"], 1);
    assert!(!all.to_string().contains(b_client["client_secret"].as_str().unwrap()), "no secret in the audit log");

    // A tenant with clients cannot be deleted.
    let (status, _, _) = operator.call(Method::DELETE, &format!("/tenants/{b_id}"), None, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    operator.call(Method::DELETE, &format!("/clients/{}", b_client["client_id"].as_str().unwrap()), None, None).await;
    let (status, _, _) = operator.call(Method::DELETE, &format!("/tenants/{b_id}"), None, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(operator.get(&format!("/tenants/{b_id}")).await.0, StatusCode::NOT_FOUND);
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn secrets_rotate_with_overlap_promotion_checks_production_rules_and_suspension_stops_tokens() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let operator = operator(&server).await;
    let test_issuer = format!("{}/test", server.base_url);
    let (_, _, tenant) = operator.post("/tenants", tenant_body("coesfeld")).await;
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();

    let mut post_client = client_body("test", "https://formulare.coesfeld.de/cb");
    post_client["auth_method"] = json!("client_secret_post");
    let (status, _, posting) = operator.post(&format!("/tenants/{tenant_id}/clients"), post_client).await;
    assert_eq!(status, StatusCode::CREATED, "{posting}");
    let (posting_id, posting_secret) =
        (posting["client_id"].as_str().unwrap(), posting["client_secret"].as_str().unwrap());
    token(&test_issuer, posting_id, posting_secret, None, AuthType::RequestBody).await.unwrap();
    assert!(token(&test_issuer, posting_id, posting_secret, None, AuthType::BasicAuth).await.is_err());

    let (status, _, client) =
        operator.post(&format!("/tenants/{tenant_id}/clients"), client_body("test", "http://localhost:3000/cb")).await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let id = client["client_id"].as_str().unwrap().to_owned();
    let first = client["client_secret"].as_str().unwrap().to_owned();
    assert!(operator.get(&format!("/clients/{id}")).await.2.get("client_secret").is_none(), "shown once only");
    token(&test_issuer, &id, &first, None, AuthType::BasicAuth).await.unwrap();

    // Rotation with overlap: both secrets work; with none, only the new one.
    let (status, _, rotated) = operator.post(&format!("/clients/{id}/secret"), json!({"overlap_seconds": 3600})).await;
    assert_eq!(status, StatusCode::OK);
    let second = rotated["client_secret"].as_str().unwrap().to_owned();
    token(&test_issuer, &id, &first, None, AuthType::BasicAuth).await.unwrap();
    token(&test_issuer, &id, &second, None, AuthType::BasicAuth).await.unwrap();
    let (_, _, rotated) = operator.post(&format!("/clients/{id}/secret"), json!({"overlap_seconds": 0})).await;
    let third = rotated["client_secret"].as_str().unwrap().to_owned();
    assert!(token(&test_issuer, &id, &first, None, AuthType::BasicAuth).await.is_err());
    assert!(token(&test_issuer, &id, &second, None, AuthType::BasicAuth).await.is_err());
    token(&test_issuer, &id, &third, None, AuthType::BasicAuth).await.unwrap();
    assert_eq!(rotated["secrets"].as_array().unwrap().len(), 1);

    // Promotion re-checks production rules and explains each refusal.
    let (status, _, problem) = operator.post(&format!("/clients/{id}/promote"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "redirect_uris[0]");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("https"));
    let (_, etag, current) = operator.get(&format!("/clients/{id}")).await;
    let mut config = current.clone();
    for key in ["client_id", "tenant_id", "environment", "secrets", "version", "created_at", "updated_at"] {
        config.as_object_mut().unwrap().remove(key);
    }
    config["redirect_uris"] = json!(["https://hundesteuer.coesfeld.de/cb"]);
    config.as_object_mut().unwrap().remove("purpose");
    let (status, etag, updated) =
        operator.call(Method::PUT, &format!("/clients/{id}"), Some(config.clone()), etag.as_deref()).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    // A login client in production says why it wants the citizen's data.
    let (status, _, problem) = operator.post(&format!("/clients/{id}/promote"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "purpose", "{problem}");
    config["purpose"] = json!({"de": "Hundesteuer an- und abmelden", "en": "Dog tax registration"});
    let (status, _, updated) =
        operator.call(Method::PUT, &format!("/clients/{id}"), Some(config), etag.as_deref()).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["purpose"]["en"], "Dog tax registration");
    let (status, _, promoted) = operator.post(&format!("/clients/{id}/promote"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{promoted}");
    assert_eq!(promoted["environment"], "production");
    assert_ne!(promoted["client_id"].as_str().unwrap(), id);
    let production_id = promoted["client_id"].as_str().unwrap().to_owned();
    let production_secret = promoted["client_secret"].as_str().unwrap().to_owned();
    token(&server.base_url, &production_id, &production_secret, None, AuthType::BasicAuth).await.unwrap();
    assert!(
        token(&test_issuer, &production_id, &production_secret, None, AuthType::BasicAuth).await.is_err(),
        "environments stay apart"
    );

    // Suspension stops token issuance at once, for every client of the tenant; resume restores it.
    let (status, _, _) = operator.post(&format!("/tenants/{tenant_id}/suspend"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let refused = token(&test_issuer, &id, &third, None, AuthType::BasicAuth).await.unwrap_err();
    assert!(refused.contains("unauthorized_client"), "{refused}");
    assert!(token(&server.base_url, &production_id, &production_secret, None, AuthType::BasicAuth).await.is_err());
    operator.post(&format!("/tenants/{tenant_id}/resume"), json!({})).await;
    token(&test_issuer, &id, &third, None, AuthType::BasicAuth).await.unwrap();

    let (_, _, trail) = operator.get(&format!("/audit?tenant_id={tenant_id}")).await;
    let actions: Vec<&str> = trail["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "tenant.resume",
            "tenant.suspend",
            "client.create",
            "client.update",
            "client.update",
            "client.rotate_secret",
            "client.rotate_secret",
            "client.create",
            "client.create",
            "tenant.create"
        ]
    );
    let purpose = &trail["items"][3];
    assert!(purpose["before"]["settings"]["purpose"].is_null(), "{purpose}");
    assert_eq!(purpose["after"]["settings"]["purpose"]["de"], "Hundesteuer an- und abmelden");
    let update = &trail["items"][4];
    assert_eq!(update["before"]["settings"]["redirect_uris"][0], "http://localhost:3000/cb");
    assert_eq!(update["after"]["settings"]["redirect_uris"][0], "https://hundesteuer.coesfeld.de/cb");
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn suspension_on_one_node_stops_token_issuance_on_the_other_at_once() {
    let Some(backends) = Backends::shared("suspension_on_one_node_stops_token_issuance_on_the_other_at_once").await
    else {
        return;
    };
    let (a, b) = tokio::join!(TestServer::start(&backends, |_| {}), TestServer::start(&backends, |_| {}));
    let operator = operator(&a).await;
    let (_, _, tenant) = operator.post("/tenants", tenant_body("dueren")).await;
    let tenant_id = tenant["id"].as_str().unwrap();
    let (_, _, client) =
        operator.post(&format!("/tenants/{tenant_id}/clients"), client_body("test", "http://localhost:3000/cb")).await;
    let (id, secret) = (client["client_id"].as_str().unwrap(), client["client_secret"].as_str().unwrap());
    let b_test = format!("{}/test", b.base_url);
    token(&b_test, id, secret, None, AuthType::BasicAuth).await.unwrap();
    operator.post(&format!("/tenants/{tenant_id}/suspend"), json!({})).await;
    let refused = token(&b_test, id, secret, None, AuthType::BasicAuth).await.unwrap_err();
    assert!(refused.contains("unauthorized_client"), "{refused}");
    a.stop().await;
    b.stop().await;
    backends.drop_now().await;
}
