//! Dynamic client registration (RFC 7591) and its management (RFC 7592), as an authority's
//! deployment pipeline uses it.

use oauth2::AuthType;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    admin::{Admin, operator, tenant_body, token},
    support::{Backends, TestServer},
};

async fn initial_token(operator: &Admin, tenant_id: &str, environment: &str) -> String {
    let (status, _, body) = operator
        .post(&format!("/tenants/{tenant_id}/initial-access-tokens"), json!({"environment": environment}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["initial_access_token"].as_str().unwrap().to_owned()
}

async fn register(issuer: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().post(format!("{issuer}/register")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    assert_eq!(response.headers()["cache-control"], "no-store");
    (status, response.json().await.unwrap())
}

/// Serves `body` as JSON on a loopback port for one request after another, until dropped.
async fn serve_json(body: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sector.json", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (url, task)
}

#[tokio::test]
async fn rfc7591_registration_and_rfc7592_management() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let operator = operator(&server).await;
    let (_, _, tenant) = operator.post("/tenants", tenant_body("guetersloh")).await;
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let production = server.base_url.clone();

    let discovery: Value =
        reqwest::get(format!("{production}/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["registration_endpoint"], format!("{production}/register"));

    // The request of RFC 7591 §3.1, with its unknown and language-tagged fields ignored.
    let example = json!({
        "redirect_uris": ["https://client.example.org/callback", "https://client.example.org/callback2"],
        "client_name": "My Example Client",
        "client_name#ja-Jpan-JP": "クライアント名",
        "token_endpoint_auth_method": "client_secret_basic",
        "logo_uri": "https://client.example.org/logo.png",
        "jwks_uri": "https://client.example.org/my_public_keys.jwks",
        "example_extension_parameter": "example_value"
    });
    let (status, _) = register(&production, None, example.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no initial access token");
    let iat = initial_token(&operator, &tenant_id, "production").await;
    let (status, _) = register(&format!("{production}/test"), Some(&iat), example.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a production token does not work at the test issuer (and is spent)");

    // Production wants the purpose the consent page shows.
    let iat = initial_token(&operator, &tenant_id, "production").await;
    let (status, refused) = register(&production, Some(&iat), example.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_client_metadata", "{refused}");
    assert!(refused["error_description"].as_str().unwrap().contains("purpose"), "{refused}");
    let mut example = example;
    example["purpose"] = json!("Hundesteuer an- und abmelden");
    example["purpose#en"] = json!("Registering and deregistering a dog for the dog tax");
    let iat = initial_token(&operator, &tenant_id, "production").await;
    let (status, registered) = register(&production, Some(&iat), example.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!(registered["purpose"], example["purpose"]);
    assert_eq!(registered["purpose#en"], example["purpose#en"]);
    for field in
        ["client_id", "client_secret", "registration_access_token", "registration_client_uri", "client_id_issued_at"]
    {
        assert!(registered.get(field).is_some(), "{field} missing: {registered}");
    }
    assert_eq!(registered["client_secret_expires_at"], 0);
    assert_eq!(registered["client_name"], "My Example Client");
    assert_eq!(registered["grant_types"], json!(["authorization_code"]), "RFC 7591 default");
    assert_eq!(registered["redirect_uris"], example["redirect_uris"]);
    assert!(registered.get("example_extension_parameter").is_none());
    let (status, _) = register(&production, Some(&iat), example.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "initial access tokens are single-use");
    let (_, _, trail) = operator.get(&format!("/audit?tenant_id={tenant_id}&action=initial_access_token.issue")).await;
    assert_eq!(trail["total"], 3, "every issued token is audited: {trail}");
    assert!(!trail.to_string().contains(&iat), "never the token itself");

    // RFC 7592: read, update, delete with the registration access token.
    let uri = registered["registration_client_uri"].as_str().unwrap().to_owned();
    let rat = registered["registration_access_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let read = http.get(&uri).bearer_auth(&rat).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let current: Value = read.json().await.unwrap();
    assert_eq!(current["client_id"], registered["client_id"]);
    assert!(current.get("client_secret").is_none(), "the secret is not shown again");
    assert_eq!(http.get(&uri).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(http.get(&uri).send().await.unwrap().status(), 401);

    // The tenant admin turns on JWT access tokens and PAR, which self-registration cannot set.
    {
        let registry = server.state.registry();
        let actor = tenant_registry::Actor::System("test");
        let id = oidc_core::ClientId::parse(registered["client_id"].as_str().unwrap()).unwrap();
        let client = registry.get_client(&actor, &id).await.unwrap();
        let mut settings = client.settings.clone();
        settings.access_token_audience = Some("https://api.example/wohngeld".into());
        settings.require_par = true;
        let flags = tenant_registry::OperatorFlags { first_party: client.first_party, admin_role: client.admin_role };
        registry.update_client(&actor, &id, client.version, settings, flags).await.unwrap();
    }
    let mut changed = example.clone();
    changed["client_name"] = json!("Renamed Client");
    let without_id = http.put(&uri).bearer_auth(&rat).json(&changed).send().await.unwrap();
    assert_eq!(without_id.status(), 400, "RFC 7592 §2.2: the body names the client_id");
    changed["client_id"] = registered["client_id"].clone();
    let updated = http.put(&uri).bearer_auth(&rat).json(&changed).send().await.unwrap();
    let status = updated.status();
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["client_name"], "Renamed Client");

    // The admin API sees the registration, by whom it was made.
    let client_id = registered["client_id"].as_str().unwrap();
    let (_, _, trail) = operator.get(&format!("/audit?tenant_id={tenant_id}&actor=dynamic-registration")).await;
    let actions: Vec<&str> = trail["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["client.update", "client.create"]);
    let admin_view = operator.get(&format!("/clients/{client_id}")).await.2;
    assert_eq!(admin_view["name"], "Renamed Client");
    assert_eq!(admin_view["access_token_audience"], "https://api.example/wohngeld", "kept: {admin_view}");
    assert_eq!(admin_view["require_par"], true, "kept: {admin_view}");

    assert_eq!(http.delete(&uri).bearer_auth(&rat).send().await.unwrap().status(), 204);
    assert_eq!(http.get(&uri).bearer_auth(&rat).send().await.unwrap().status(), 401);
    assert_eq!(operator.get(&format!("/clients/{client_id}")).await.0, StatusCode::NOT_FOUND);
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn registration_refuses_bad_metadata_with_rfc7591_error_codes() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let operator = operator(&server).await;
    let (_, _, tenant) = operator.post("/tenants", tenant_body("lippe")).await;
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let issuer = format!("{}/test", server.base_url);

    for (body, code) in [
        (json!({"redirect_uris": ["https://a.de/cb#fragment"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["not a url"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["http://evil.example/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://a.de/cb"], "grant_types": ["implicit"]}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["https://a.de/cb"], "response_types": ["token"]}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["https://a.de/cb"], "scope": "openid root"}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["https://a.de/cb"], "token_endpoint_auth_method": "none"}), "created"),
        (json!("not an object"), "invalid_client_metadata"),
    ] {
        let iat = initial_token(&operator, &tenant_id, "test").await;
        let (status, answer) = register(&issuer, Some(&iat), body.clone()).await;
        if code == "created" {
            assert_eq!(status, StatusCode::CREATED, "{body}: {answer}");
            assert!(answer.get("client_secret").is_none(), "public clients get no secret");
        } else {
            assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{body}: {answer}");
        }
    }

    // A dynamically registered machine client gets tokens like any other.
    let iat = initial_token(&operator, &tenant_id, "test").await;
    let (_, machine) =
        register(&issuer, Some(&iat), json!({"grant_types": ["client_credentials"], "scope": "email"})).await;
    let (id, secret) = (machine["client_id"].as_str().unwrap(), machine["client_secret"].as_str().unwrap());
    token(&issuer, id, secret, None, AuthType::BasicAuth).await.unwrap();
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn sector_identifier_uri_must_list_every_redirect_uri() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let operator = operator(&server).await;
    let (_, _, tenant) = operator.post("/tenants", tenant_body("minden")).await;
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let issuer = format!("{}/test", server.base_url);
    let (sector, task) = serve_json(r#"["http://localhost:3000/cb", "https://minden.de/cb"]"#.to_owned()).await;

    let iat = initial_token(&operator, &tenant_id, "test").await;
    let listed = json!({"redirect_uris": ["http://localhost:3000/cb"], "sector_identifier_uri": sector});
    let (status, body) = register(&issuer, Some(&iat), listed).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["sector_identifier_uri"], sector.as_str());

    let iat = initial_token(&operator, &tenant_id, "test").await;
    let unlisted = json!({"redirect_uris": ["http://localhost:4000/cb"], "sector_identifier_uri": sector});
    let (status, body) = register(&issuer, Some(&iat), unlisted).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")), "{body}");

    let iat = initial_token(&operator, &tenant_id, "test").await;
    let unreachable =
        json!({"redirect_uris": ["http://localhost:3000/cb"], "sector_identifier_uri": "http://127.0.0.1:9/none.json"});
    let (status, body) = register(&issuer, Some(&iat), unreachable).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_client_metadata")), "{body}");
    task.abort();
    server.stop().await;
    backends.drop_now().await;
}
