//! What an attacker with some access can reach: a tenant admin never climbs to operator, the
//! last operator client stays, and no token outlives its client, its tenant or its refresh
//! family — on every node at once.

use oauth2::AuthType;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    admin::{bootstrap_operator, operator, token},
    citizen::{log_in, register_activated, rp_browser},
    mail::SmtpSink,
    support::{Backends, TestServer, first_party_client, two_nodes},
};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// An admin API call; every write names the version it changes (`If-Match: *`).
async fn call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request =
        reqwest::Client::new().request(method.clone(), format!("{base}/admin/api/v1{path}")).bearer_auth(token);
    if method == reqwest::Method::PUT {
        request = request.header("If-Match", "*");
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An admin client of `role` in tenant `tenant_id` (production), made by `operator`: its id and
/// a token for `scope`.
async fn admin_client(base: &str, operator: &str, tenant_id: &str, role: &str, scope: &str) -> (String, String) {
    let body = json!({
        "environment": "production",
        "name": format!("{role} client"),
        "redirect_uris": [],
        "grant_types": ["client_credentials"],
        "scopes": [],
        "admin_role": role,
    });
    let (status, created) =
        call(base, operator, reqwest::Method::POST, &format!("/tenants/{tenant_id}/clients"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let token = token(base, &id, &secret, Some(scope), AuthType::BasicAuth).await.unwrap();
    (id, token)
}

#[tokio::test]
async fn a_tenant_admin_cannot_reach_an_operator_client_and_the_last_operator_client_stays() {
    use reqwest::Method;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let base = server.base_url.clone();
    let (operator_id, operator_secret) = bootstrap_operator(&server).await;
    let operator = token(&base, &operator_id, &operator_secret, Some("admin"), AuthType::BasicAuth).await.unwrap();
    // The operator's own tenant also has a tenant admin: the escalation of the report.
    let (_, tenants) = call(&base, &operator, Method::GET, "/tenants", None).await;
    let home = tenants["items"].as_array().unwrap().iter().find(|t| t["slug"] == "betreiber").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, tenant_admin) = admin_client(&base, &operator, &home, "tenant_admin", "tenant-admin").await;

    let path = format!("/clients/{operator_id}");
    for (method, path, body) in [
        (Method::GET, path.clone(), None),
        (Method::POST, format!("{path}/secret"), Some(json!({}))),
        (Method::PUT, path.clone(), Some(json!({"name": "mine now"}))),
        (Method::DELETE, path.clone(), None),
    ] {
        let (status, problem) = call(&base, &tenant_admin, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
    }
    let (status, listed) = call(&base, &tenant_admin, Method::GET, &format!("/clients?tenant_id={home}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = listed["items"].as_array().unwrap().iter().filter_map(|c| c["client_id"].as_str()).collect();
    assert!(!ids.contains(&operator_id.as_str()), "an operator client is not listed to a tenant admin: {ids:?}");
    assert_eq!(listed["total"], json!(ids.len()), "nor counted");
    let own_operator = json!({
        "environment": "production", "name": "mine", "redirect_uris": [],
        "grant_types": ["client_credentials"], "scopes": [], "admin_role": "operator",
    });
    let (status, _) =
        call(&base, &tenant_admin, Method::POST, &format!("/tenants/{home}/clients"), Some(own_operator)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no operator client from a tenant admin");

    // The last operator client can be neither deleted nor demoted; with a second, it can.
    let (status, problem) = call(&base, &operator, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let demoted = json!({"name": "Operator", "grant_types": ["client_credentials"], "scopes": [], "admin_role": null});
    let (status, problem) = call(&base, &operator, Method::PUT, &path, Some(demoted)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (second, _) = admin_client(&base, &operator, &home, "operator", "admin").await;
    let (status, _) = call(&base, &operator, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The deleted client's token died with it.
    let (status, _) = call(&base, &operator, Method::GET, "/tenants", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a token lives no longer than its client");
    assert!(!second.is_empty());
    server.stop().await;
    backends.drop_now().await;
}

/// Admin and access tokens are checked on use against their client and tenant: a suspension or
/// deletion on node A refuses them on node B at once. A replayed or revoked refresh token takes
/// the access tokens of its family along.
#[tokio::test]
async fn tokens_end_with_their_client_tenant_and_family_on_every_node() {
    use reqwest::Method;
    let test = "tokens_end_with_their_client_tenant_and_family_on_every_node";
    let Some(backends) = Backends::shared(test).await else { return };
    let smtp = SmtpSink::start().await;
    let (a, b) = two_nodes(&backends, &smtp.url).await;
    let operator = operator(&a).await;
    let (_, _, t) = operator.post("/tenants", crate::admin::tenant_body("viersen")).await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (tenant_admin_id, tenant_admin) =
        admin_client(&a.base_url, &operator.token, &tenant, "tenant_admin", "tenant-admin").await;
    assert_eq!(call(&b.base_url, &tenant_admin, Method::GET, "/clients", None).await.0, StatusCode::OK);

    // Deleting the tenant admin's client on A: its token is refused on B.
    let (status, _) =
        call(&a.base_url, &operator.token, Method::DELETE, &format!("/clients/{tenant_admin_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(call(&b.base_url, &tenant_admin, Method::GET, "/clients", None).await.0, StatusCode::UNAUTHORIZED);

    // Suspending the tenant on A: a new tenant admin's token is refused on B.
    let (_, fresh) = admin_client(&a.base_url, &operator.token, &tenant, "tenant_admin", "tenant-admin").await;
    assert_eq!(call(&b.base_url, &fresh, Method::GET, "/clients", None).await.0, StatusCode::OK);
    let (status, _) =
        call(&a.base_url, &operator.token, Method::POST, &format!("/tenants/{tenant}/suspend"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call(&b.base_url, &fresh, Method::GET, "/clients", None).await.0, StatusCode::UNAUTHORIZED);

    // A citizen's access token ends with its family: replay, and revocation of a refresh token.
    let issuer = format!("{}/test", a.base_url);
    let issuer_b = format!("{}/test", b.base_url);
    let callback = "http://127.0.0.1:3000/callback";
    first_party_client(&a, "family-rp", "family-rp-secret-0123456", callback, |settings| {
        settings.grant_types.insert(tenant_registry::GrantType::RefreshToken);
    })
    .await;
    let browser = rp_browser();
    register_activated(&browser, &issuer, &smtp, "familie", "familie@example.de").await;
    log_in(&browser, &issuer, "familie").await;
    let http = reqwest::Client::new();
    let tokens = |grant: Vec<(&'static str, String)>| {
        let http = http.clone();
        let issuer = issuer.clone();
        async move {
            let response = http
                .post(format!("{issuer}/token"))
                .basic_auth("family-rp", Some("family-rp-secret-0123456"))
                .form(&grant)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let code =
        || async { crate::citizen::authorization_code(&browser, &issuer, "family-rp", callback, CHALLENGE).await };
    let userinfo = |access: String| {
        let http = http.clone();
        let issuer_b = issuer_b.clone();
        async move { http.get(format!("{issuer_b}/userinfo")).bearer_auth(access).send().await.unwrap().status() }
    };
    let redeem = |code: String| {
        tokens(vec![
            ("grant_type", "authorization_code".into()),
            ("code", code),
            ("redirect_uri", callback.into()),
            ("code_verifier", VERIFIER.into()),
        ])
    };
    let (_, first) = redeem(code().await).await;
    let refresh1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (_, second) = tokens(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh1.clone())]).await;
    let access2 = second["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(access2.clone()).await, StatusCode::OK);
    // Another client presenting the used token is refused without touching the family.
    first_party_client(&a, "other-rp", "other-rp-secret-0123456", callback, |settings| {
        settings.grant_types.insert(tenant_registry::GrantType::RefreshToken);
    })
    .await;
    let foreign = http
        .post(format!("{issuer}/token"))
        .basic_auth("other-rp", Some("other-rp-secret-0123456"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::BAD_REQUEST);
    let refresh2 = second["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = tokens(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh2)]).await;
    assert_eq!(status, StatusCode::OK, "the family lives on after another client's attempt");
    let (status, replay) = tokens(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh1)]).await;
    assert_eq!((status, replay["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(userinfo(access2).await, StatusCode::UNAUTHORIZED, "the replay revoked the family's access tokens");

    let (_, third) = redeem(code().await).await;
    let (access3, refresh3) =
        (third["access_token"].as_str().unwrap().to_owned(), third["refresh_token"].as_str().unwrap().to_owned());
    let introspect = |token: String| {
        let http = http.clone();
        let issuer_b = issuer_b.clone();
        async move {
            http.post(format!("{issuer_b}/introspect"))
                .basic_auth("family-rp", Some("family-rp-secret-0123456"))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let live = introspect(refresh3.clone()).await;
    assert_eq!((live["active"].as_bool(), live["token_type"].as_str()), (Some(true), Some("refresh_token")), "{live}");
    assert_eq!(live["client_id"], "family-rp");
    let revoked = http
        .post(format!("{issuer_b}/revoke"))
        .basic_auth("family-rp", Some("family-rp-secret-0123456"))
        .form(&[("token", refresh3.as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(introspect(refresh3.clone()).await, json!({ "active": false }));
    assert_eq!(
        userinfo(access3.clone()).await,
        StatusCode::UNAUTHORIZED,
        "revoking the refresh token ended its access tokens"
    );
    let (status, _) = tokens(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh3)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Suspending the demo authority on A ends its citizens' access tokens on B.
    let (_, fourth) = redeem(code().await).await;
    let access4 = fourth["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(access4.clone()).await, StatusCode::OK);
    let demo = a.state.registry().find_tenant_by_slug("demo-kommune").await.unwrap().unwrap();
    a.state
        .registry()
        .set_tenant_status(
            &tenant_registry::Actor::System("test"),
            demo.id,
            tenant_registry::TenantStatus::Suspended,
            None,
        )
        .await
        .unwrap();
    assert_eq!(userinfo(access4).await, StatusCode::UNAUTHORIZED, "no token outlives its tenant");

    a.stop().await;
    b.stop().await;
    backends.drop_now().await;
}

/// Login throttling counts an attempt before the password is verified, atomically in the shared
/// store: of 200 parallel wrong passwords for one account, spread over two nodes, at most the
/// free five are verified.
#[tokio::test]
async fn two_hundred_parallel_guesses_over_two_nodes_verify_at_most_the_free_ones() {
    let test = "two_hundred_parallel_guesses_over_two_nodes_verify_at_most_the_free_ones";
    let Some(backends) = Backends::shared(test).await else { return };
    let smtp = SmtpSink::start().await;
    let (a, b) = two_nodes(&backends, &smtp.url).await;
    let issuer = format!("{}/test", a.base_url);
    register_activated(&rp_browser(), &issuer, &smtp, "geraten", "geraten@example.de").await;
    let attacker = rp_browser();
    let login = attacker.get(format!("{issuer}/anmelden")).send().await.unwrap().text().await.unwrap();
    let csrf = crate::citizen::csrf(&login);
    let mut guesses = Vec::new();
    for n in 0..200 {
        let node = if n % 2 == 0 { &a.base_url } else { &b.base_url };
        let request = attacker.post(format!("{node}/test/anmelden")).form(&[
            ("csrf", csrf.as_str()),
            ("username", "geraten"),
            ("password", &format!("falsch-{n}")),
        ]);
        guesses.push(tokio::spawn(async move { request.send().await.unwrap().text().await.unwrap() }));
    }
    let (mut verified, mut throttled) = (0, 0);
    for guess in guesses {
        let page = guess.await.unwrap();
        if page.contains("Benutzername oder Passwort ist falsch") {
            verified += 1;
        } else if page.contains("Zu viele fehlgeschlagene Anmeldeversuche") {
            throttled += 1;
        }
    }
    assert!(verified <= 5, "{verified} of 200 parallel guesses were verified");
    assert_eq!(verified + throttled, 200, "every guess is answered as one or the other");
    a.stop().await;
    b.stop().await;
    backends.drop_now().await;
}

/// Found by schemathesis: an offset past the databases' signed 64 bits closed the connection.
#[tokio::test]
async fn a_huge_listing_offset_finds_nothing_instead_of_failing() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let operator = operator(&server).await;
    for path in ["/tenants", "/clients", "/audit"] {
        let (status, _, page) = operator.get(&format!("{path}?offset=18446744073709551615")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(page["items"], json!([]), "{path}");
    }
    server.stop().await;
    backends.drop_now().await;
}
