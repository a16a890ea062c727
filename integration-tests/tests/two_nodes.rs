//! Two server instances on one PostgreSQL and one Redis, as behind a load balancer.

use std::time::{Duration, Instant};

use oidc_core::Environment;
use serde_json::Value;

use crate::support::{Backends, TestServer, two_nodes};

async fn kids(base_url: &str, path: &str) -> Vec<String> {
    let jwks: Value = reqwest::get(format!("{base_url}{path}")).await.unwrap().json().await.unwrap();
    let mut kids: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    kids.sort();
    kids
}

#[tokio::test]
async fn two_nodes_share_keys_and_a_rotation_on_one_reaches_the_other() {
    let Some(backends) = Backends::shared("two_nodes_share_keys_and_a_rotation_on_one_reaches_the_other").await else {
        return;
    };
    let fast_refresh = |config: &mut server::Config| {
        config.keys.refresh_interval_seconds = 1;
        config.keys.activation_delay_seconds = 1;
    };
    // Both start at once on an empty database: key generation races and must settle on one set.
    let (a, b) = tokio::join!(TestServer::start(&backends, fast_refresh), TestServer::start(&backends, fast_refresh));
    for path in ["/jwks", "/test/jwks"] {
        let on_a = kids(&a.base_url, path).await;
        assert_eq!(on_a.len(), 3, "{path}: one key per algorithm, not one per node");
        assert_eq!(on_a, kids(&b.base_url, path).await, "{path}: both nodes publish the same keys");
    }

    let before = kids(&b.base_url, "/jwks").await;
    let rotated = a.state.keys().rotate(Environment::Production).await.unwrap();
    let new_kids: Vec<String> = rotated.iter().map(|k| k.kid.clone()).collect();
    let on_a = kids(&a.base_url, "/jwks").await;
    assert!(new_kids.iter().all(|kid| on_a.contains(kid)), "the rotating node publishes at once");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let on_b = kids(&b.base_url, "/jwks").await;
        if new_kids.iter().all(|kid| on_b.contains(kid)) {
            assert!(before.iter().all(|kid| on_b.contains(kid)), "old keys stay published during retention");
            break;
        }
        assert!(Instant::now() < deadline, "node B never published the rotated keys: {on_b:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(kids(&b.base_url, "/test/jwks").await.len(), 3, "rotating production leaves test alone");

    a.stop().await;
    b.stop().await;
    backends.drop_now().await;
}

/// The citizen's browser and a relying party hop between two nodes behind one issuer: nothing a
/// login, consent, code, refresh token or logout needs may live in one node's memory.
#[tokio::test]
async fn a_login_on_one_node_is_redeemed_refreshed_and_ended_on_the_other() {
    let test = "a_login_on_one_node_is_redeemed_refreshed_and_ended_on_the_other";
    let Some(backends) = Backends::shared(test).await else { return };
    login_hops_between_nodes(backends).await;
}

/// The same on a Redis Cluster of three masters (started here): every key of the ephemeral
/// store is one key, so sessions, codes and throttles spread over the slots.
#[tokio::test]
async fn a_login_hops_between_two_nodes_on_a_redis_cluster() {
    let test = "a_login_hops_between_two_nodes_on_a_redis_cluster";
    let Some(mut backends) = Backends::shared(test).await else { return };
    let cluster = match storage::testing::RedisCluster::start() {
        Ok(cluster) => cluster,
        Err(problem) => {
            storage::testing::skip(test, &format!("no local Redis Cluster: {problem}"));
            return;
        }
    };
    backends.redis_url = Some(cluster.url());
    backends.redis_cluster = true;
    login_hops_between_nodes(backends).await;
    drop(cluster);
}

async fn login_hops_between_nodes(backends: Backends) {
    use crate::{
        citizen::{PASSWORD, csrf, fill_in, page, post},
        mail::SmtpSink,
    };
    let smtp = SmtpSink::start().await;
    let (a, b) = two_nodes(&backends, &smtp.url).await;
    let on = |server: &TestServer| format!("{}/test", server.base_url);
    let email = "zwei.knoten@example.de";

    // Register on A, activate on B.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().port() == Some(3000) { attempt.stop() } else { attempt.follow() }
        }))
        .build()
        .unwrap();
    let review = fill_in(&browser, &on(&a), "zwei.knoten", email).await;
    post(&browser, &format!("{}/registrierung/pruefen", on(&a)), &[("csrf", &csrf(&review))]).await;
    let link = smtp.mail_to(email, 0).await.link().replace(&a.base_url, &b.base_url);
    let (status, html) = page(&browser, &link).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{html}");

    // Log in on A; the authorization request and the consent go to B, the answer comes back on A.
    let (_, html) = page(&browser, &format!("{}/anmelden", on(&a))).await;
    post(
        &browser,
        &format!("{}/anmelden", on(&a)),
        &[("csrf", &csrf(&html)), ("username", "zwei.knoten"), ("password", PASSWORD), ("return_to", "/konto")],
    )
    .await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "demo-client"),
            ("response_type", "code"),
            ("scope", "openid email"),
            ("redirect_uri", "http://127.0.0.1:3000/callback"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let (status, consent) = page(&browser, &format!("{}/authorize?{query}", on(&b))).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let request = {
        let start = consent.find("name=\"request\" value=\"").unwrap() + 22;
        consent[start..].split('"').next().unwrap().to_owned()
    };
    let response = browser
        .post(format!("{}/zustimmung", on(&a)))
        .form(&[
            ("csrf", csrf(&consent)),
            ("request", request),
            ("decision", "allow".into()),
            ("claim", "email".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();

    // Redeem on B, refresh on A, userinfo on B.
    let rp = reqwest::Client::new();
    let tokens: Value = rp
        .post(format!("{}/token", on(&b)))
        .basic_auth("demo-client", Some("demo-secret-only-for-local-use"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:3000/callback"),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().expect("tokens from node B").to_owned();
    let again = rp
        .post(format!("{}/token", on(&a)))
        .basic_auth("demo-client", Some("demo-secret-only-for-local-use"))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("code_verifier", verifier)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::BAD_REQUEST, "the code was taken on B, so A refuses it");
    let refreshed: Value = rp
        .post(format!("{}/token", on(&a)))
        .basic_auth("demo-client", Some("demo-secret-only-for-local-use"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = refreshed["access_token"].as_str().expect("refreshed on node A");
    let info: Value =
        rp.get(format!("{}/userinfo", on(&b))).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["email"], email);

    // Log out on B; A knows the session is gone.
    let (_, html) = page(&browser, &format!("{}/konto", on(&a))).await;
    let (status, _, _) = post(&browser, &format!("{}/abmelden", on(&b)), &[("csrf", &csrf(&html))]).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let response = browser.get(format!("{}/konto", on(&a))).send().await.unwrap();
    assert!(response.url().path().ends_with("/anmelden"), "ended on every node: {}", response.url());

    a.stop().await;
    b.stop().await;
    backends.drop_now().await;
}
