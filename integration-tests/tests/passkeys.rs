//! Passkeys in real headless Chromium with chromedriver's WebAuthn virtual authenticator (a
//! CTAP2 authenticator with resident keys and user verification, W3C WebAuthn §11): a citizen
//! adds a passkey in "Mein Konto", logs out, logs in with the passkey alone (no username typed),
//! and an authority's relying party built on the `openidconnect` crate gets `amr` pop/user/mfa;
//! then "Passwort und Passkey": the password alone no longer suffices, the passkey alone is
//! refused, both together give `amr` pwd/pop/user/mfa; a password reset keeps the passkey and
//! says so by mail; the last passkey cannot go while the account needs it; removing one is
//! mailed. Every new page is checked with axe-core.
//!
//! The issuer is `http://localhost:…`: browsers refuse an IP address as WebAuthn relying-party
//! id, and `localhost` is a secure context over plain HTTP.

use fantoccini::{Client, Locator, wd::WebDriverCompatibleCommand};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    RedirectUrl, TokenResponse,
    core::{CoreClient, CoreProviderMetadata, CoreResponseType},
};
use serde_json::{Value, json};
use storage::testing::skip;

use crate::{
    browser::{Audit, Driver, axe_source, chromium, click, tool, type_into, wait_for, wait_path, wait_url},
    citizen::{PASSWORD, register_activated, rp_browser},
    mail::SmtpSink,
    support::{Backends, TestServer, http_client},
};

const TEST: &str = "passkeys::passkeys_in_chromium_with_a_virtual_authenticator";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const EMAIL: &str = "paula.passkey@example.de";
const NEW_PASSWORD: &str = "Sieben Schwaene ziehen nach Sueden";

/// A WebDriver extension command (chromedriver implements the WebAuthn ones).
#[derive(Debug)]
struct WebAuthnCommand {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for WebAuthnCommand {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/webauthn/{}", session_id.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (self.method.clone(), self.body.as_ref().map(Value::to_string))
    }
}

/// Adds a virtual platform authenticator that stores resident keys and verifies its user (as a
/// phone's screen lock would); returns its id.
async fn virtual_authenticator(browser: &Client) -> String {
    let options = json!({
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": true,
        "hasUserVerification": true,
        "isUserConsenting": true,
        "isUserVerified": true,
    });
    let command = WebAuthnCommand { method: http::Method::POST, path: "authenticator".into(), body: Some(options) };
    let answer = browser.issue_cmd(command).await.expect("chromedriver adds a virtual authenticator");
    answer.as_str().expect("an authenticator id").to_owned()
}

/// The credentials the virtual authenticator holds.
async fn credentials(browser: &Client, authenticator: &str) -> Vec<Value> {
    let path = format!("authenticator/{authenticator}/credentials");
    let command = WebAuthnCommand { method: http::Method::GET, path, body: None };
    browser.issue_cmd(command).await.unwrap().as_array().cloned().unwrap_or_default()
}

/// Logs out through the header's button.
async fn log_out(browser: &Client, base: &str) {
    browser.goto(&format!("{base}/konto")).await.unwrap();
    click(browser, "header form button").await;
    wait_for(browser, "Sie sind abgemeldet.").await;
}

/// One code flow of the demo client through `rp` in the browser's session: the ID token's
/// claims, verified by `openidconnect` (signature, issuer, audience, nonce).
async fn code_flow(
    browser: &Client,
    rp: &CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
) -> Value {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    // Ends at the callback, where nothing listens: the navigation "fails" there, as intended.
    let _ = browser.goto(url.as_str()).await;
    // The demo client asks for consent the first time; later it is remembered.
    for _ in 0..50 {
        let here = browser.current_url().await.unwrap();
        if here.as_str().starts_with(CALLBACK) {
            break;
        }
        if let Ok(allow) = browser.find(Locator::Css("main form button[value=allow]")).await {
            allow.click().await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let callback = wait_url(browser, "code=").await;
    let code = callback.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http_client())
        .await
        .expect("the code is redeemed");
    let id_token = tokens.id_token().expect("an ID token");
    id_token.claims(&rp.id_token_verifier(), &nonce).expect("the ID token verifies");
    let payload = id_token.to_string().split('.').nth(1).unwrap().to_owned();
    use base64::Engine as _;
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn passkeys_in_chromium_with_a_virtual_authenticator() {
    let (Some(chromium_binary), Some(chromedriver)) =
        (tool("CHROME_BIN", "/usr/bin/chromium"), tool("CHROMEDRIVER", "/usr/bin/chromedriver"))
    else {
        return skip(TEST, "Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)");
    };
    let Some(axe) = axe_source() else {
        return skip(TEST, "axe-core is not installed (npm ci in integration-tests/browser)");
    };
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| {
        c.mail.smtp_url = Some(smtp.url.as_str().into());
        for issuer in [&mut c.environments.production.issuer, &mut c.environments.test.issuer] {
            *issuer = issuer.replace("127.0.0.1", "localhost");
        }
    })
    .await;
    // The demo client lives in the test environment.
    let base = format!("{}/test", server.base_url.replace("127.0.0.1", "localhost"));

    register_activated(&rp_browser(), &base, &smtp, "paula.p", EMAIL).await;
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(base.clone()).unwrap(), &http_client())
        .await
        .expect("discovery");
    let rp = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("demo-client".into()),
        Some(ClientSecret::new("demo-secret-only-for-local-use".into())),
    )
    .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());

    let driver = Driver::start(&chromedriver).await;
    let browser = chromium(&chromium_binary, &driver).await;
    let authenticator = virtual_authenticator(&browser).await;
    let mut audit = Audit::new(axe, "passkeys");

    // Log in with the password; add a passkey after typing the password again.
    browser.goto(&format!("{base}/anmelden")).await.unwrap();
    type_into(&browser, "username", "paula.p").await;
    type_into(&browser, "password", PASSWORD).await;
    click(&browser, "main form button[type=submit]").await;
    wait_path(&browser, "/test/konto").await;
    click(&browser, "main a[href$='/konto/passkeys']").await;
    wait_for(&browser, "Sie haben noch keinen Passkey.").await;
    audit.check(&browser, "passkeys, none yet").await;
    type_into(&browser, "name", "Mein Handy").await;
    type_into(&browser, "password", "falsch falsch falsch").await;
    click(&browser, "main form[action$='/konto/passkeys/neu'] button").await;
    wait_for(&browser, "Das Passwort ist nicht richtig.").await;
    type_into(&browser, "name", "Mein Handy").await;
    type_into(&browser, "password", PASSWORD).await;
    click(&browser, "main form[action$='/konto/passkeys/neu'] button").await;
    // The ceremony page runs navigator.credentials.create; the virtual authenticator answers.
    let list = wait_for(&browser, "Der Passkey „Mein Handy“ ist hinzugefügt.").await;
    assert!(list.contains("noch nie"), "not used yet: {list}");
    audit.check(&browser, "passkeys, one added").await;
    let held = credentials(&browser, &authenticator).await;
    assert_eq!(held.len(), 1, "the authenticator holds one credential: {held:?}");
    assert_eq!(held[0]["isResidentCredential"], true, "a discoverable credential: {held:?}");
    let added = smtp.mail_to(EMAIL, 1).await;
    assert!(added.subject.contains("Neuer Passkey") && added.text.contains("Mein Handy"), "{}", added.text);

    // Log out, log in with the passkey alone: no username typed.
    log_out(&browser, &base).await;
    browser.goto(&format!("{base}/anmelden")).await.unwrap();
    audit.check(&browser, "login with the passkey button").await;
    click(&browser, "main form[action$='/anmelden/passkey'] button").await;
    wait_path(&browser, "/test/konto").await;
    browser.goto(&format!("{base}/konto/aktivitaet")).await.unwrap();
    wait_for(&browser, "Angemeldet (mit Passkey)").await;

    // A relying party sees how: amr pop, user, mfa at trust level normal.
    let claims = code_flow(&browser, &rp).await;
    assert_eq!(claims["amr"], json!(["pop", "user", "mfa"]), "{claims}");
    assert_eq!(claims["acr"], "normal", "{claims}");

    // "Passwort und Passkey".
    browser.goto(&format!("{base}/konto/passkeys")).await.unwrap();
    click(&browser, "#factors-both").await;
    click(&browser, "main form[action$='/anmeldeverfahren'] button").await;
    wait_for(&browser, "Ihr Anmeldeverfahren ist gespeichert.").await;
    // The last passkey stays while the account needs it.
    click(&browser, "main form[action$='/entfernen'] button").await;
    wait_for(&browser, "Das ist Ihr letzter Passkey").await;
    audit.check(&browser, "passkeys, last one refused").await;

    // The passkey alone is refused now, with the way explained.
    log_out(&browser, &base).await;
    browser.goto(&format!("{base}/anmelden")).await.unwrap();
    click(&browser, "main form[action$='/anmelden/passkey'] button").await;
    wait_for(&browser, "Bitte melden Sie sich zuerst mit Benutzername und Passwort an").await;
    audit.check(&browser, "passkey alone refused").await;

    // The password first, then the passkey.
    type_into(&browser, "username", "paula.p").await;
    type_into(&browser, "password", PASSWORD).await;
    click(&browser, "main form[action$='/anmelden'] button[type=submit]").await;
    wait_path(&browser, "/test/konto").await;
    let claims = code_flow(&browser, &rp).await;
    assert_eq!(claims["amr"], json!(["pwd", "pop", "user", "mfa"]), "{claims}");

    // A password reset keeps the passkey and says so.
    log_out(&browser, &base).await;
    browser.goto(&format!("{base}/passwort-vergessen")).await.unwrap();
    type_into(&browser, "login", EMAIL).await;
    click(&browser, "main form button[type=submit]").await;
    let reset = smtp.mail_to(EMAIL, 2).await;
    browser.goto(&reset.link()).await.unwrap();
    type_into(&browser, "password", NEW_PASSWORD).await;
    type_into(&browser, "password_confirmation", NEW_PASSWORD).await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Passwort gespeichert").await;
    let done = smtp.mail_to(EMAIL, 3).await;
    assert!(done.text.contains("Ihre Passkeys (1) bleiben gültig"), "{}", done.text);
    // Still password and passkey, with the new password.
    browser.goto(&format!("{base}/anmelden")).await.unwrap();
    type_into(&browser, "username", "paula.p").await;
    type_into(&browser, "password", NEW_PASSWORD).await;
    click(&browser, "main form[action$='/anmelden'] button[type=submit]").await;
    wait_path(&browser, "/test/konto").await;

    // Back to either factor; rename; remove (mailed); the passkey no longer logs in.
    browser.goto(&format!("{base}/konto/passkeys")).await.unwrap();
    click(&browser, "#factors-either").await;
    click(&browser, "main form[action$='/anmeldeverfahren'] button").await;
    wait_for(&browser, "Ihr Anmeldeverfahren ist gespeichert.").await;
    type_into(&browser, "rename-1", "Altes Handy").await;
    click(&browser, "main form[action$='/umbenennen'] button").await;
    let list = wait_for(&browser, "Der Passkey ist umbenannt.").await;
    assert!(list.contains("Altes Handy"), "{list}");
    click(&browser, "main form[action$='/entfernen'] button").await;
    wait_for(&browser, "Der Passkey ist entfernt.").await;
    let removed = smtp.mail_to(EMAIL, 4).await;
    assert!(removed.subject.contains("Passkey entfernt") && removed.text.contains("Altes Handy"), "{}", removed.text);
    log_out(&browser, &base).await;
    browser.goto(&format!("{base}/anmelden")).await.unwrap();
    click(&browser, "main form[action$='/anmelden/passkey'] button").await;
    wait_for(&browser, "Dieser Passkey gehört zu keinem Servicekonto").await;

    browser.close().await.unwrap();
    assert!(audit.problems.is_empty(), "accessibility problems:\n{}", audit.problems.join("\n"));
}
