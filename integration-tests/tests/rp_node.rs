//! An independent, certified, non-Rust relying party: panva's `openid-client` on Node.js
//! (`rp-node/rp.mjs`), against the real server. The test plays the citizen's browser; the
//! library does discovery, PKCE, state and nonce checks, ID-token validation, userinfo with the
//! `sub` check, refresh with rotation, introspection, revocation and the logout URL, and reports
//! the errors a relying party meets. Needs Node.js and `npm ci` in `integration-tests/rp-node`
//! (`.ci/run` does both); without them the test says so and skips (fails in CI).

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use storage::testing::skip;

use crate::{
    citizen::{PASSWORD, csrf, page, register_activated, rp_browser},
    mail::SmtpSink,
    support::{Backends, TestServer},
};

const TEST: &str = "rp_node";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const LOGGED_OUT: &str = "http://127.0.0.1:3000/logged-out";

fn folder() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rp-node")
}

/// Why the Node relying party cannot run here, if it cannot.
fn unavailable() -> Option<&'static str> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !matches!(node, Ok(ref o) if o.status.success()) {
        return Some("Node.js is not installed");
    }
    if !folder().join("node_modules/openid-client/package.json").exists() {
        return Some("openid-client is not installed (npm ci in integration-tests/rp-node)");
    }
    None
}

/// One step of `rp.mjs`; its JSON answer.
async fn rp(command: &str, args: &Value) -> Value {
    let output = tokio::process::Command::new("node")
        .arg("rp.mjs")
        .arg(command)
        .arg(args.to_string())
        .current_dir(folder())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|_| panic!("rp.mjs {command}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)))
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name}")) + marker.len();
    html[start..].split('"').next().unwrap().replace("&#x2f;", "/").replace("&amp;", "&")
}

fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "a redirect to the client from {}", response.url());
    response.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn openid_client_on_node_logs_a_citizen_in_and_meets_the_errors_a_relying_party_meets() {
    if let Some(reason) = unavailable() {
        return skip(TEST, reason);
    }
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| c.mail.smtp_url = Some(smtp.url.as_str().into())).await;
    let issuer = format!("{}/test", server.base_url);
    let base = json!({
        "issuer": issuer, "client_id": "demo-client", "client_secret": "demo-secret-only-for-local-use",
        "redirect_uri": CALLBACK, "post_logout_redirect_uri": LOGGED_OUT,
    });
    let with = |extra: Value| {
        let mut args = base.clone();
        args.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        args
    };

    let citizen = rp_browser();
    let email = "erika.node@example.de";
    register_activated(&citizen, &issuer, &smtp, "erika.node", email).await;

    // The citizen declines: the library sees access_denied at the callback.
    let request = rp("start", &base).await;
    let (_, login) = page(&citizen, request["url"].as_str().unwrap()).await;
    let response = citizen
        .post(format!("{issuer}/anmelden"))
        .form(&[
            ("csrf", csrf(&login)),
            ("username", "erika.node".into()),
            ("password", PASSWORD.into()),
            ("return_to", hidden(&login, "return_to")),
        ])
        .send()
        .await
        .unwrap();
    let consent = response.text().await.unwrap();
    let response = citizen
        .post(format!("{issuer}/zustimmung"))
        .form(&[("csrf", csrf(&consent)), ("request", hidden(&consent, "request")), ("decision", "deny".into())])
        .send()
        .await
        .unwrap();
    let denied = with(json!({
        "callback": location(&response), "verifier": request["verifier"], "state": request["state"],
        "nonce": request["nonce"],
    }));
    assert_eq!(rp("finish", &denied).await["error"], "access_denied");

    // The citizen agrees; a wrong PKCE verifier is refused by the token endpoint, and the code
    // is then used up.
    let request = rp("start", &base).await;
    let (_, consent) = page(&citizen, request["url"].as_str().unwrap()).await;
    assert!(consent.contains("Datenübermittlung zustimmen"), "{consent}");
    let response = citizen
        .post(format!("{issuer}/zustimmung"))
        .form(&[
            ("csrf", csrf(&consent)),
            ("request", hidden(&consent, "request")),
            ("decision", "allow".into()),
            ("claim", "email".into()),
            ("claim", "address".into()),
            // birthdate and place_of_birth (optional) are left out: the next login must not
            // ask again.
        ])
        .send()
        .await
        .unwrap();
    let callback = location(&response);
    let args = |verifier: &Value| {
        with(json!({
            "callback": callback, "verifier": verifier, "state": request["state"], "nonce": request["nonce"],
        }))
    };
    let wrong = rp("finish", &args(&json!("x".repeat(43)))).await;
    assert_eq!(wrong["error"], "invalid_grant", "{wrong}");
    let reused = rp("finish", &args(&request["verifier"])).await;
    assert_eq!(reused["error"], "invalid_grant", "a code is single use: {reused}");

    // Single sign-on with the remembered consent: the whole flow as the library checks it.
    let request = rp("start", &base).await;
    let response = citizen.get(request["url"].as_str().unwrap()).send().await.unwrap();
    let done = rp(
        "finish",
        &with(json!({
            "callback": location(&response), "verifier": request["verifier"], "state": request["state"],
            "nonce": request["nonce"],
        })),
    )
    .await;
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(done["id_token"]["iss"], issuer.as_str());
    assert_eq!(done["id_token"]["aud"], "demo-client");
    assert_eq!(done["id_token"]["acr"], "normal");
    assert_eq!(done["id_token"]["amr"], json!(["pwd"]));
    assert!(done["id_token"]["sid"].is_string() && done["id_token"]["auth_time"].is_number());
    assert!(done["id_token"]["given_name"].is_null(), "no personal data in the ID token unasked");
    assert_eq!(done["userinfo"]["sub"], done["id_token"]["sub"]);
    assert_eq!(done["userinfo"]["given_name"], "Erika");
    assert_eq!(done["userinfo"]["email"], email);
    assert_eq!(done["userinfo"]["address"]["locality"], "Köln");
    assert!(done["userinfo"]["birthdate"].is_null(), "left out at the consent");
    assert_eq!(done["rotated"], true, "the refresh token is rotated");
    assert_eq!(done["active"], true);
    assert_eq!(done["active_after_revocation"], false);

    // The same through a pushed authorization request (RFC 9126): the library pushes, the
    // browser carries only client_id and request_uri.
    let request = rp("start", &with(json!({ "par": true }))).await;
    let url = request["url"].as_str().unwrap();
    assert!(url.contains("request_uri=urn") && !url.contains("code_challenge"), "{url}");
    let response = citizen.get(url).send().await.unwrap();
    let pushed = rp(
        "finish",
        &with(json!({
            "callback": location(&response), "verifier": request["verifier"], "state": request["state"],
            "nonce": request["nonce"],
        })),
    )
    .await;
    assert!(pushed["error"].is_null(), "{pushed}");
    assert_eq!(pushed["id_token"]["sub"], done["id_token"]["sub"]);

    // The logout URL the library built ends the session and returns with state.
    let response = citizen.get(done["end_session"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(location(&response), format!("{LOGGED_OUT}?state=tschuess"));
    let response = citizen.get(format!("{issuer}/konto")).send().await.unwrap();
    assert!(response.url().path().ends_with("/anmelden"), "the session ended");

    // A level the session does not have is an error, never a lower level.
    let request = rp("start", &with(json!({ "extra": { "acr_values": "hoch", "prompt": "none" } }))).await;
    let response = citizen.get(request["url"].as_str().unwrap()).send().await.unwrap();
    let refused = rp(
        "finish",
        &with(json!({
            "callback": location(&response), "verifier": request["verifier"], "state": request["state"],
            "nonce": request["nonce"],
        })),
    )
    .await;
    assert_eq!(refused["error"], "login_required", "no session after logout: {refused}");

    // Machine-to-machine, and a wrong secret.
    let granted = rp("client_credentials", &base).await;
    assert_eq!(granted["token_type"], "bearer", "{granted}");
    let wrong_secret = rp("client_credentials", &with(json!({ "client_secret": "falsch" }))).await;
    assert_eq!(wrong_secret["error"], "invalid_client", "{wrong_secret}");
    assert_eq!(wrong_secret["challenge"], "basic", "401 with WWW-Authenticate: {wrong_secret}");

    server.stop().await;
    backends.drop_now().await;
}
