//! No personal data in the log at any level up to `debug`: a node process with `RUST_LOG=debug`
//! goes through a citizen's whole journey (registration, activation, login, consent to every
//! claim, code, tokens, userinfo, refresh, introspection, "Mein Konto", the export, logout), and
//! then its log is searched for the citizen's values and for every secret that crossed the wire.
//!
//! A test binary of its own: the node is a process whose stderr is the log under test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

#[path = "process/mod.rs"]
#[allow(dead_code, reason = "shared by several test binaries, each uses a part")]
mod process;

#[path = "journey/mod.rs"]
#[allow(dead_code, reason = "shared by several test binaries, each uses a part")]
mod journey;

use journey::{CALLBACK, CHALLENGE, CLIENT, PASSWORD, SECRET, csrf};
use process::{Node, free_port};
use reqwest::StatusCode;
use serde_json::Value;

const USERNAME: &str = "erika.protokoll";
const EMAIL: &str = "erika.protokoll@example.de";

#[tokio::test]
async fn a_whole_journey_at_debug_level_logs_no_personal_data_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let env: Vec<(String, String)> = vec![
        ("SERVICEKONTO_DATABASE__URL".into(), format!("sqlite://{}/sk.db?mode=rwc", dir.path().display())),
        ("SERVICEKONTO_KEYS__KEK_PATH".into(), dir.path().join("kek").display().to_string()),
        ("SERVICEKONTO_MAIL__OUTBOX_DIR".into(), dir.path().join("outbox").display().to_string()),
        ("SERVICEKONTO_ENVIRONMENTS__PRODUCTION__ISSUER".into(), format!("{issuer}/prod")),
        ("SERVICEKONTO_ENVIRONMENTS__TEST__ISSUER".into(), issuer.clone()),
        ("SERVICEKONTO_LOG__FILTER".into(), "debug".into()),
        // JSON, as collectors get it: every field of every event is in the line.
        ("SERVICEKONTO_LOG__FORMAT".into(), "json".into()),
        // Overrides `log.filter`: the most an operator can switch on short of `trace`.
        ("RUST_LOG".into(), "debug".into()),
    ];
    let node = Node::start(env, port, dir.path().join("node.log")).await;
    let base = format!("{}/", node.base);
    assert!(base.starts_with(&issuer));

    // Registration, activation, login.
    // A browser whose cookies the test can read: the session cookie is a secret too.
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().port() == Some(3000) { attempt.stop() } else { attempt.follow() }
        }))
        .build()
        .unwrap();
    assert_eq!(journey::register(&browser, &issuer, USERNAME, EMAIL).await, Ok(true));
    let link = journey::activation_link(&dir.path().join("outbox"), EMAIL).await;
    assert_eq!(browser.get(&link).send().await.unwrap().status(), StatusCode::OK);
    let login = browser.get(format!("{issuer}/anmelden")).send().await.unwrap().text().await.unwrap();
    let form = [
        ("csrf", csrf(&login)),
        ("username", USERNAME.to_owned()),
        ("password", PASSWORD.to_owned()),
        ("return_to", "/konto".to_owned()),
    ];
    let response = browser.post(format!("{issuer}/anmelden")).form(&form).send().await.unwrap();
    assert!(response.url().path().ends_with("/konto"), "logged in");
    let session = browser.get(format!("{issuer}/konto")).send().await.unwrap();
    let account_page = session.text().await.unwrap();
    assert!(account_page.contains("Heidestr"), "Mein Konto shows the address");

    // Consent to every claim the demo client may ask for.
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.extend_pairs([
        ("client_id", CLIENT),
        ("response_type", "code"),
        ("scope", "openid profile email address"),
        ("redirect_uri", CALLBACK),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "state-value-0815"),
        ("nonce", "nonce-value-4711"),
    ]);
    let consent =
        browser.get(format!("{issuer}/authorize?{}", query.finish())).send().await.unwrap().text().await.unwrap();
    assert!(consent.contains("Heidestr"), "the consent page shows the address");
    let request = consent.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let mut answer = vec![("csrf", csrf(&consent)), ("request", request), ("decision", "allow".into())];
    for claim in consent.split("name=\"claim\" value=\"").skip(1) {
        answer.push(("claim", claim.split('"').next().unwrap().to_owned()));
    }
    let response = browser.post(format!("{issuer}/zustimmung")).form(&answer).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();

    // Tokens, userinfo, refresh, introspection.
    let http = reqwest::Client::new();
    let tokens: Value = journey::redeem_with(&http, &code, &issuer).await.unwrap().json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let userinfo: Value =
        http.get(format!("{issuer}/userinfo")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    assert_eq!(userinfo["family_name"], "Mustermann", "{userinfo}");
    assert_eq!(userinfo["address"]["postal_code"], "51147", "{userinfo}");
    let renewed: Value = journey::refresh_with(&http, &refresh, &issuer).await.unwrap().json().await.unwrap();
    let renewed_refresh = renewed["refresh_token"].as_str().unwrap().to_owned();
    let introspected: Value = http
        .post(format!("{issuer}/introspect"))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[("token", renewed["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true, "{introspected}");
    // A replayed refresh token (reuse detection logs what it revokes).
    let replay = journey::refresh_with(&http, &refresh, &issuer).await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);

    // "Mein Konto": transfers, export, a failed login, logout.
    for page in ["/konto/uebermittlungen", "/konto/aktivitaet", "/konto/export"] {
        let response = browser.get(format!("{issuer}{page}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{page}");
    }
    let other = journey::browser();
    let login = other.get(format!("{issuer}/anmelden")).send().await.unwrap().text().await.unwrap();
    let wrong = [("csrf", csrf(&login)), ("username", EMAIL.to_owned()), ("password", "falsch falsch".to_owned())];
    let failed = other.post(format!("{issuer}/anmelden")).form(&wrong).send().await.unwrap();
    assert!(failed.text().await.unwrap().contains("falsch"), "the failed login is answered");
    let cookies = {
        use reqwest::cookie::CookieStore as _;
        jar.cookies(&issuer.parse().unwrap()).unwrap().to_str().unwrap().to_owned()
    };
    let session_cookie =
        cookies.split("; ").find_map(|c| c.strip_prefix("sk_session_test=")).expect("a session cookie").to_owned();
    let logout = browser.get(format!("{issuer}/logout")).send().await.unwrap().text().await.unwrap();
    let response = browser.post(format!("{issuer}/abmelden")).form(&[("csrf", csrf(&logout))]).send().await.unwrap();
    assert!(response.status().is_success() || response.status().is_redirection());

    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.lines().count() > 50, "the node logged at debug level:\n{log}");
    for event in ["authorization code issued", "consent given", "userinfo claims released", "refresh token renewed"] {
        assert!(log.contains(event), "the debug event {event:?} is there to search:\n{}", node.log_tail());
    }
    let secrets = vec![
        ("given name", "Erika".to_owned()),
        ("family name", "Mustermann".to_owned()),
        ("birth name", "Gabler".to_owned()),
        ("birth date", "1964-08-12".to_owned()),
        ("birth date", "12.08.1964".to_owned()),
        ("place of birth", "Berlin".to_owned()),
        ("street", "Heidestr".to_owned()),
        ("postal code", "51147".to_owned()),
        ("city", "Köln".to_owned()),
        ("username", USERNAME.to_owned()),
        ("e-mail address", EMAIL.to_owned()),
        ("e-mail address (encoded)", EMAIL.replace('@', "%40")),
        ("password", PASSWORD.to_owned()),
        ("password (encoded)", PASSWORD.replace(' ', "+")),
        ("authorization code", code),
        ("access token", access),
        ("renewed access token", renewed["access_token"].as_str().unwrap().to_owned()),
        ("refresh token", refresh),
        ("renewed refresh token", renewed_refresh),
        ("ID token", id_token),
        ("activation link token", link.split("token=").nth(1).unwrap().to_owned()),
        ("client secret", SECRET.to_owned()),
        ("nonce", "nonce-value-4711".to_owned()),
        ("session cookie", session_cookie),
    ];
    let found: Vec<String> = secrets
        .iter()
        .filter(|(_, value)| log.contains(value.as_str()))
        .map(|(what, value)| {
            let line = log.lines().find(|l| l.contains(value.as_str())).unwrap_or_default();
            format!("{what} ({value}) in: {}", line.chars().take(400).collect::<String>())
        })
        .collect();
    assert!(found.is_empty(), "personal data or secrets in the debug log:\n{}", found.join("\n"));
}
