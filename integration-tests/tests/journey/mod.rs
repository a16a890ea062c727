//! A citizen's journey through the pages and the demo client's code flow, driven over HTTP like a
//! browser: shared by the test binaries that run server processes of their own.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::Value;

pub const PASSWORD: &str = "Korrekt Pferd Batterie Heftklammer";

pub const CLIENT: &str = "demo-client";
pub const SECRET: &str = "demo-secret-only-for-local-use";
pub const CALLBACK: &str = "http://127.0.0.1:3000/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The value of a page's CSRF field.
pub fn csrf(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

/// The activation link of the latest mail to `to` in the nodes' shared outbox.
pub async fn activation_link(outbox: &std::path::Path, to: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for entry in std::fs::read_dir(outbox).into_iter().flatten().flatten() {
            let raw = std::fs::read(entry.path()).unwrap_or_default();
            let Some(mail) = mail_parser::MessageParser::default().parse(&raw) else { continue };
            let addressed = mail.to().and_then(|a| a.first()).and_then(|a| a.address()).is_some_and(|a| a == to);
            let text = mail.body_text(0).unwrap_or_default();
            if addressed && let Some(start) = text.find("https://").or_else(|| text.find("http://")) {
                return text[start..].split_whitespace().next().unwrap().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "no mail to {to} in {}", outbox.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A citizen in the middle of a refresh chain, with a logged-in browser.
pub struct Citizen {
    pub browser: Client,
    pub refresh: Mutex<String>,
    pub username: String,
    /// The ID token of the first code redemption.
    pub id_token: String,
}

/// A browser with cookies that stops at the client's callback.
pub fn browser() -> Client {
    browser_with(Client::builder())
}

/// [`browser`] from `builder` (e.g. with a private CA's root).
pub fn browser_with(builder: reqwest::ClientBuilder) -> Client {
    builder
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().port() == Some(3000) { attempt.stop() } else { attempt.follow() }
        }))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Steps 1 to 3 and "Sichern"; `Ok(true)` when the page acknowledged the registration.
pub async fn register(browser: &Client, issuer: &str, username: &str, email: &str) -> Result<bool, String> {
    let step = |response: reqwest::Response| async move {
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status == StatusCode::OK { Ok(text) } else { Err(format!("{status}")) }
    };
    let html = step(browser.get(format!("{issuer}/registrierung")).send().await.map_err(|e| e.to_string())?).await?;
    let step1 = [
        ("csrf", csrf(&html)),
        ("given_names", "Erika".into()),
        ("family_name", "Mustermann".into()),
        ("birth_name", "Gabler".into()),
        ("date_of_birth", "12.08.1964".into()),
        ("place_of_birth", "Berlin".into()),
        ("street_and_number", "Heidestr. 17".into()),
        ("postal_code", "51147".into()),
        ("city", "Köln".into()),
        ("country", "DE".into()),
        ("phone_number", "".into()),
        ("email", email.into()),
        ("username", username.into()),
    ];
    let html =
        step(browser.post(format!("{issuer}/registrierung")).form(&step1).send().await.map_err(|e| e.to_string())?)
            .await?;
    let step2 = [
        ("csrf", csrf(&html)),
        ("password", PASSWORD.into()),
        ("password_confirmation", PASSWORD.into()),
        ("privacy", "accepted".into()),
    ];
    let html = step(
        browser
            .post(format!("{issuer}/registrierung/passwort"))
            .form(&step2)
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await?;
    let saved = browser
        .post(format!("{issuer}/registrierung/pruefen"))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = saved.status();
    let text = saved.text().await.map_err(|e| e.to_string())?;
    if status != StatusCode::OK {
        return Err(format!("{status}"));
    }
    Ok(text.contains("Registrierung abgeschlossen"))
}

/// Registers, activates, logs in, consents and redeems a code: a citizen in the middle of a
/// refresh chain.
pub async fn citizen(issuer: &str, outbox: &std::path::Path, n: usize) -> Citizen {
    citizen_with(browser(), &Client::new(), issuer, outbox, &format!("fault.citizen{n}")).await
}

/// [`citizen`] with its browser and the relying party's HTTP client given.
pub async fn citizen_with(
    browser: Client,
    http: &Client,
    issuer: &str,
    outbox: &std::path::Path,
    username: &str,
) -> Citizen {
    let username = username.to_owned();
    let email = format!("{username}@example.de");
    assert_eq!(register(&browser, issuer, &username, &email).await, Ok(true));
    let link = activation_link(outbox, &email).await;
    assert_eq!(browser.get(&link).send().await.unwrap().status(), StatusCode::OK, "activated");
    let login = browser.get(format!("{issuer}/anmelden")).send().await.unwrap().text().await.unwrap();
    let form = [
        ("csrf", csrf(&login)),
        ("username", username.clone()),
        ("password", PASSWORD.into()),
        ("return_to", "/konto".into()),
    ];
    let response = browser.post(format!("{issuer}/anmelden")).form(&form).send().await.unwrap();
    assert!(response.url().path().ends_with("/konto"), "logged in");
    let consent = browser.get(authorize_url(issuer, false)).send().await.unwrap().text().await.unwrap();
    let request = {
        let start = consent.find("name=\"request\" value=\"").unwrap() + 22;
        consent[start..].split('"').next().unwrap().to_owned()
    };
    let answer =
        [("csrf", csrf(&consent)), ("request", request), ("decision", "allow".into()), ("claim", "email".into())];
    let response = browser.post(format!("{issuer}/zustimmung")).form(&answer).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens: Value = redeem_with(http, &code, issuer).await.unwrap().json().await.unwrap();
    Citizen {
        browser,
        refresh: Mutex::new(tokens["refresh_token"].as_str().unwrap().to_owned()),
        username,
        id_token: tokens["id_token"].as_str().unwrap().to_owned(),
    }
}

/// Redeems `code` (of the demo client, PKCE with [`VERIFIER`]) at `issuer`.
pub async fn redeem(code: &str, issuer: &str) -> reqwest::Result<reqwest::Response> {
    redeem_with(&Client::new(), code, issuer).await
}

/// Redeems the demo client's `refresh_token` at `issuer` through `http`.
pub async fn refresh_with(http: &Client, refresh_token: &str, issuer: &str) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{issuer}/token"))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
}

/// [`redeem`] through `http`.
pub async fn redeem_with(http: &Client, code: &str, issuer: &str) -> reqwest::Result<reqwest::Response> {
    http.post(format!("{issuer}/token"))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .timeout(Duration::from_secs(10))
        .send()
        .await
}

pub fn authorize_url(issuer: &str, silent: bool) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.extend_pairs([
        ("client_id", CLIENT),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("redirect_uri", CALLBACK),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    if silent {
        query.append_pair("prompt", "none");
    }
    format!("{issuer}/authorize?{}", query.finish())
}

/// The claims of `id_token` after checking its signature against `issuer`'s JWKS (fetched with
/// `http`), its issuer and its audience (the demo client).
pub async fn verify_id_token(http: &Client, issuer: &str, id_token: &str) -> Value {
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet =
        http.get(format!("{issuer}/jwks")).send().await.unwrap().json().await.unwrap();
    let key = jwks.find(header.kid.as_deref().unwrap()).expect("the signing key is still published");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[CLIENT]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(id_token, &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(), &validation)
        .expect("the ID token verifies")
        .claims
}
