//! End to end in real headless Chromium over WebDriver (chromedriver + fantoccini): a citizen
//! registers, activates by the mailed link, logs in, changes data, exports, resets the password
//! and deletes the account, typing into the real forms. Every page on the way is checked with
//! axe-core for WCAG 2.1 A/AA violations, and its layout at 320, 375 and 1280 px from the DOM
//! (horizontal scrolling, header controls, box sizes, field edges, words broken in labels),
//! with screenshots under `target/screenshots/journey/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` and `npm ci` in `integration-tests/browser`
//! (`.ci/run` does all three); without them the test says so and skips (fails in CI).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use storage::testing::skip;

use crate::{
    mail::SmtpSink,
    support::{Backends, TestServer},
};

const TEST: &str = "browser::citizen_journey_in_chromium_with_axe";
const EMAIL: &str = "max.mustermann@example.de";
const EID_EMAIL: &str = "erika.eid@example.de";
const PASSWORD: &str = "Korrekt Pferd Batterie Heftklammer";
const NEW_PASSWORD: &str = "Drei Raben sitzen auf dem Zaun";

pub(crate) fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    path.exists().then_some(path)
}

pub(crate) fn axe_source() -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(path).ok()
}

/// chromedriver on a free loopback port, killed when dropped.
pub(crate) struct Driver(Child, u16);

impl Driver {
    pub(crate) async fn start(binary: &Path) -> Self {
        let port = storage::testing::free_port();
        // Owned by `Driver` at once, whose `Drop` kills and reaps it on every path.
        let driver = Self(
            Command::new(binary)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
            port,
        );
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not listen on {port} within 10 s");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs axe-core on the current page and checks its layout at 320, 375 and 1280 px (with a
/// screenshot of each under `target/screenshots/`); collects what fails.
pub(crate) struct Audit {
    axe: String,
    pub(crate) problems: Vec<String>,
    pages: usize,
    screenshots: PathBuf,
}

/// The layout rules, measured from the DOM (positions and sizes, not pixels): no horizontal
/// scrolling; header controls on one line aligned whether link or button; one size for every
/// checkbox and every radio button; the text fields of a form on one left edge with one width;
/// no word of a header, label, legend, heading or button broken across lines (at a hyphen is
/// allowed; words longer than 24 characters, e-mail addresses, may break).
const LAYOUT: &str = r#"
    const problems = [];
    // Shown to sighted users: not clipped away like the visually hidden texts for screen readers.
    const visible = e => {
        const r = e.getBoundingClientRect();
        if (r.width <= 0 || r.height <= 0 || getComputedStyle(e).visibility === 'hidden') return false;
        for (let a = e; a; a = a.parentElement) {
            if (getComputedStyle(a).clip !== 'auto') return false;
        }
        return true;
    };
    const px = v => Math.round(v * 10) / 10;
    if (document.documentElement.scrollWidth > window.innerWidth) {
        const wide = [...document.querySelectorAll('main *, header *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
            .filter(e => ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 0.5));
        const names = wide.slice(0, 3).map(e => '<' + e.tagName.toLowerCase() + '> "' + e.textContent.trim().slice(0, 40) + '"');
        problems.push('scrolls horizontally (' + document.documentElement.scrollWidth + ' px): ' + names.join(', '));
    }
    const controls = [...document.querySelectorAll('header nav li > a, header nav li > form > button')]
        .filter(visible).map(e => [e.textContent.trim(), e.getBoundingClientRect()]);
    for (let i = 0; i < controls.length; i++) {
        for (let j = i + 1; j < controls.length; j++) {
            const [na, a] = controls[i], [nb, b] = controls[j];
            const sameLine = a.top < b.bottom && b.top < a.bottom;
            if (sameLine && (Math.abs(a.top - b.top) > 1 || Math.abs(a.height - b.height) > 1)) {
                problems.push(`header: "${na}" top ${px(a.top)} height ${px(a.height)}, "${nb}" top ${px(b.top)} height ${px(b.height)}`);
            }
        }
    }
    for (const type of ['checkbox', 'radio']) {
        const sizes = new Set([...document.querySelectorAll(`main input[type=${type}]`)].filter(visible)
            .map(e => { const r = e.getBoundingClientRect(); return px(r.width) + 'x' + px(r.height); }));
        if (sizes.size > 1) problems.push(`${type} boxes in sizes ${[...sizes].join(', ')}`);
    }
    for (const form of document.querySelectorAll('main form')) {
        const fields = [...form.querySelectorAll('input[type=text], input[type=email], input[type=password], select')]
            .filter(visible).map(e => e.getBoundingClientRect());
        const lefts = new Set(fields.map(r => px(r.left))), widths = new Set(fields.map(r => px(r.width)));
        if (lefts.size > 1 || widths.size > 1) {
            problems.push(`form fields at left ${[...lefts].join('/')} with width ${[...widths].join('/')}`);
        }
    }
    for (const element of [...document.querySelectorAll('th, label, dt, legend, h1, h2, h3, button, header a')].filter(visible)) {
        const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const word = /[^\s‐-]+/g;
            for (let m = word.exec(node.data); m; m = word.exec(node.data)) {
                if (m[0].length > 24) continue;
                const range = document.createRange();
                range.setStart(node, m.index);
                range.setEnd(node, m.index + m[0].length);
                const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
                if (lines.size > 1) problems.push(`"${m[0]}" broken across lines in <${element.tagName.toLowerCase()}>`);
            }
        }
    }
    return problems;
"#;

impl Audit {
    /// An audit with axe-core's source, saving screenshots under `target/screenshots/{test}/`.
    pub(crate) fn new(axe: String, test: &str) -> Self {
        let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots").join(test);
        std::fs::create_dir_all(&screenshots).unwrap();
        Self { axe, problems: Vec::new(), pages: 0, screenshots }
    }

    pub(crate) async fn check(&mut self, browser: &Client, what: &str) {
        self.pages += 1;
        browser.execute(&self.axe, vec![]).await.unwrap();
        let script = r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
              .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
              .catch(e => done(['axe failed: ' + e]));
        "#;
        let violations = browser.execute_async(script, vec![]).await.unwrap();
        for violation in violations.as_array().cloned().unwrap_or_default() {
            self.problems.push(format!("{what}: {}", violation.as_str().unwrap_or_default()));
        }
        let lang = browser.execute("return document.documentElement.lang", vec![]).await.unwrap();
        if lang.as_str().unwrap_or_default().is_empty() {
            self.problems.push(format!("{what}: no lang attribute"));
        }
        self.layout(browser, what).await;
    }

    async fn layout(&mut self, browser: &Client, what: &str) {
        let name: String =
            what.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        for width in [320, 375, 1280] {
            browser.set_window_size(width, 900).await.unwrap();
            let found = browser.execute(LAYOUT, vec![]).await.unwrap();
            for problem in found.as_array().cloned().unwrap_or_default() {
                self.problems.push(format!("{what} at {width} px: {}", problem.as_str().unwrap_or_default()));
            }
            let png = browser.screenshot().await.unwrap();
            std::fs::write(self.screenshots.join(format!("{:02}-{name}-{width}.png", self.pages)), png).unwrap();
        }
        browser.set_window_size(1280, 900).await.unwrap();
    }
}

/// A headless Chromium session through `driver`, German first.
pub(crate) async fn chromium(binary: &Path, driver: &Driver) -> Client {
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": binary,
            // A German citizen's browser: the pages follow Accept-Language.
            "prefs": { "intl.accept_languages": "de-DE,de" },
            "args": ["--lang=de-DE", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }
    });
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a Chromium session")
}

/// A production client of a new authority that may receive name and e-mail address.
/// Returns its id and secret.
async fn authority_client(server: &TestServer, environment: oidc_core::Environment, slug: &str) -> (String, String) {
    use oidc_core::{ClaimName, Scope, TrustLevel};
    use std::collections::BTreeSet;
    use tenant_registry::{Actor, Branding, ClaimRule, ClientSettings, GrantType, NewTenant, OperatorFlags};
    let registry = server.state.registry();
    let actor = Actor::System("test");
    let claims = ["given_name", "family_name", "email"];
    let tenant = registry
        .create_tenant(
            &actor,
            NewTenant {
                slug: slug.into(),
                name: "Stadt Bielefeld".into(),
                contact_email: "it@bielefeld.example".into(),
                branding: Branding { display_name: "Stadt Bielefeld".into(), logo_url: None },
                allowed_claims: claims.iter().filter_map(|c| ClaimName::parse(c)).collect(),
                min_trust_level: TrustLevel::Normal,
                sector: None,
            },
        )
        .await
        .unwrap();
    let mut settings = ClientSettings::confidential(
        "Anwohnerparken",
        vec![url::Url::parse("https://formulare.example/callback").unwrap()],
    );
    settings.grant_types = BTreeSet::from([GrantType::AuthorizationCode]);
    settings.purpose = Some(tenant_registry::Purpose {
        de: "Antrag auf einen Anwohnerparkausweis".into(),
        en: Some("Application for a resident parking permit".into()),
    });
    settings.scopes = ["openid", "profile", "email"].iter().filter_map(|s| Scope::parse(s)).collect();
    settings.claims = claims
        .iter()
        .filter_map(|c| ClaimName::parse(c))
        .map(|claim| ClaimRule { required: claim.as_str() != "email", claim })
        .collect();
    let flags = OperatorFlags { first_party: false, admin_role: None };
    let (client, secret) = registry.create_client(&actor, tenant.id, environment, settings, flags).await.unwrap();
    (client.client_id.to_string(), secret.expect("a confidential client's secret").expose().to_owned())
}

pub(crate) async fn type_into(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("field {id}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

pub(crate) async fn click(browser: &Client, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

/// The main content once it contains `needle` (a click does not wait for the next page).
pub(crate) async fn wait_for(browser: &Client, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(main) = browser.find(Locator::Css("main")).await
            && let Ok(text) = main.text().await
        {
            if text.contains(needle) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never showed {needle:?}; it shows:\n{last}");
}

/// Waits until the browser is on `expected`.
/// Waits until the browser's address contains `needle` (a redirect to a client, which does not
/// answer here) and returns it.
pub(crate) async fn wait_url(browser: &Client, needle: &str) -> url::Url {
    for _ in 0..100 {
        let current = browser.current_url().await.unwrap();
        if current.as_str().contains(needle) {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser did not reach an address with {needle}: {}", browser.current_url().await.unwrap());
}

pub(crate) async fn wait_path(browser: &Client, expected: &str) {
    for _ in 0..100 {
        if browser.current_url().await.unwrap().path() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reached {expected}; at {}", browser.current_url().await.unwrap());
}

async fn log_in(browser: &Client, base: &str, password: &str) {
    browser.goto(&format!("{base}/anmelden")).await.unwrap();
    type_into(browser, "username", "max.m").await;
    type_into(browser, "password", password).await;
    click(browser, "main form button[type=submit]").await;
}

#[tokio::test]
async fn citizen_journey_in_chromium_with_axe() {
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
        let mut second_card = eid_bridge::TestIdentity::specimen();
        second_card.restricted_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0".into();
        c.eid.test.test_identities.push(second_card);
    })
    .await;
    let base = server.base_url.clone();
    let driver = Driver::start(&chromedriver).await;
    let browser = chromium(&chromium_binary, &driver).await;
    let mut audit = Audit::new(axe, "journey");

    browser.goto(&format!("{base}/")).await.unwrap();
    audit.check(&browser, "start").await;

    // Step 1, first with mistakes: errors at the fields and in the summary.
    click(&browser, "main a.secondary").await;
    wait_path(&browser, "/registrierung").await;
    audit.check(&browser, "registration step 1").await;
    type_into(&browser, "given_names", "Max").await;
    type_into(&browser, "postal_code", "1234").await;
    click(&browser, "main form button[type=submit]").await;
    let page = wait_for(&browser, "Bitte korrigieren Sie die folgenden Angaben").await;
    assert!(page.contains("Bitte geben Sie Ihren Familiennamen ein."), "{page}");
    audit.check(&browser, "registration step 1 with errors").await;
    for (id, value) in [
        ("family_name", "Mustermann"),
        ("date_of_birth", "01.02.1980"),
        ("street_and_number", "Am Abdinghof, 11"),
        ("postal_code", "33098"),
        ("city", "Paderborn"),
        ("email", EMAIL),
        ("username", "max.m"),
    ] {
        type_into(&browser, id, value).await;
    }
    click(&browser, "main form button[type=submit]").await;
    wait_path(&browser, "/registrierung/passwort").await;
    audit.check(&browser, "registration step 2").await;
    type_into(&browser, "password", PASSWORD).await;
    type_into(&browser, "password_confirmation", PASSWORD).await;
    click(&browser, "#privacy").await;
    click(&browser, "main form button[type=submit]").await;
    wait_path(&browser, "/registrierung/pruefen").await;
    let review = wait_for(&browser, "Am Abdinghof").await;
    assert!(review.contains("Paderborn"), "{review}");
    audit.check(&browser, "registration step 3").await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Registrierung abgeschlossen").await;
    audit.check(&browser, "registration done").await;

    // The mail's link, opened in the browser.
    let mail = smtp.mail_to(EMAIL, 0).await;
    browser.goto(&mail.link()).await.unwrap();
    wait_for(&browser, "Servicekonto aktiviert").await;
    audit.check(&browser, "activated").await;
    browser.goto(&mail.link()).await.unwrap();
    wait_for(&browser, "Aktivierungsmail erneut senden").await;
    audit.check(&browser, "used activation link").await;

    // Login, first wrong.
    log_in(&browser, &base, "falsch falsch falsch").await;
    wait_for(&browser, "Benutzername oder Passwort ist falsch.").await;
    audit.check(&browser, "login failed").await;
    log_in(&browser, &base, PASSWORD).await;
    wait_path(&browser, "/konto").await;
    wait_for(&browser, "Paderborn").await;
    audit.check(&browser, "Mein Konto").await;

    // Change data.
    browser.goto(&format!("{base}/konto/daten")).await.unwrap();
    audit.check(&browser, "change data").await;
    type_into(&browser, "city", "Bielefeld").await;
    type_into(&browser, "postal_code", "33602").await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Ihre Änderungen sind gespeichert.").await;
    browser.goto(&format!("{base}/konto/aktivitaet")).await.unwrap();
    wait_for(&browser, "Stammdaten geändert").await;
    audit.check(&browser, "activity").await;
    browser.goto(&format!("{base}/konto/uebermittlungen")).await.unwrap();
    wait_for(&browser, "Datenübermittlungen").await;
    audit.check(&browser, "data transfers").await;

    // Export with the browser's own session cookie (the page's CSP forbids script fetches).
    let cookies = browser.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "sk_session_production").expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    let export: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/konto/export"))
        .header("cookie", format!("sk_session_production={}", session.value()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(export["master_data"]["city"]["value"], "Bielefeld");
    browser.goto(&format!("{base}/konto/passwort")).await.unwrap();
    audit.check(&browser, "change password").await;

    // An authority's service asks for data: the consent page with the values.
    let (client_id, client_secret) =
        authority_client(&server, oidc_core::Environment::Production, "stadt-bielefeld").await;
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", client_id.as_str()),
            ("response_type", "code"),
            ("scope", "openid profile email"),
            ("redirect_uri", "https://formulare.example/callback"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    browser.goto(&format!("{base}/authorize?{query}")).await.unwrap();
    let consent = wait_for(&browser, "Datenübermittlung zustimmen").await;
    assert!(consent.contains("Bielefeld") || consent.contains("Max"), "{consent}");
    assert!(consent.contains("Antrag auf einen Anwohnerparkausweis"), "the purpose: {consent}");
    audit.check(&browser, "consent").await;
    // Nothing optional leaves without a tick: "Zustimmen" with the e-mail box as it came.
    let email_box = browser.find(Locator::Css("#claim-email")).await.unwrap();
    assert_eq!(email_box.prop("checked").await.unwrap().as_deref(), Some("false"), "unticked at first");
    click(&browser, "main form button[value=allow]").await;
    let callback = wait_url(&browser, "code=").await;
    let code = callback.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://formulare.example/callback"),
            ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let userinfo: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().expect("an access token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["family_name"], "Mustermann", "{userinfo}");
    assert!(userinfo.get("email").is_none(), "the e-mail address was not ticked: {userinfo}");
    browser.goto(&format!("{base}/konto/uebermittlungen")).await.unwrap();
    let log = wait_for(&browser, "Anwohnerparkausweis").await;
    assert!(log.contains("Familienname") && !log.contains("E-Mail-Adresse"), "what was released: {log}");
    browser.goto(&format!("{base}/logout")).await.unwrap();
    wait_for(&browser, "Abmelden?").await;
    audit.check(&browser, "logout confirmation").await;

    // Log out, forget the password, reset it by the mailed link.
    click(&browser, "header form button").await;
    wait_for(&browser, "Sie sind abgemeldet.").await;
    browser.goto(&format!("{base}/passwort-vergessen")).await.unwrap();
    audit.check(&browser, "forgotten password").await;
    type_into(&browser, "login", EMAIL).await;
    click(&browser, "main form button[type=submit]").await;
    let reset = smtp.mail_to(EMAIL, 1).await;
    browser.goto(&reset.link()).await.unwrap();
    audit.check(&browser, "new password").await;
    type_into(&browser, "password", NEW_PASSWORD).await;
    type_into(&browser, "password_confirmation", NEW_PASSWORD).await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Passwort gespeichert").await;

    // Delete the account.
    log_in(&browser, &base, NEW_PASSWORD).await;
    wait_path(&browser, "/konto").await;
    browser.goto(&format!("{base}/konto/loeschen")).await.unwrap();
    audit.check(&browser, "delete account").await;
    type_into(&browser, "password", NEW_PASSWORD).await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Servicekonto gelöscht").await;
    assert!(smtp.mail_to(EMAIL, 2).await.subject.contains("zurückgesetzt"), "the reset is confirmed by mail");
    assert!(smtp.mail_to(EMAIL, 3).await.subject.contains("gelöscht"));

    // The online ID function in the test environment: register with the (test) card, activate,
    // log in with the card from the login page's button.
    let test = format!("{base}/test");
    browser.goto(&format!("{test}/registrierung")).await.unwrap();
    click(&browser, "main a[href*='zweck=registrieren']").await;
    wait_for(&browser, "Voraussetzungen").await;
    audit.check(&browser, "eID start").await;
    async fn through_test_service(browser: &Client, audit: &mut Audit) {
        for id in ["eid_app", "eid_reader", "eid_pin"] {
            click(browser, &format!("#{id}")).await;
        }
        click(browser, "main form button[type=submit]").await;
        wait_for(browser, "Testidentität").await;
        audit.check(browser, "test eID service").await;
        type_into(browser, "pin", "123456").await;
        click(browser, "main form button[value=identify]").await;
    }
    through_test_service(&browser, &mut audit).await;
    wait_path(&browser, "/test/registrierung/ausweis").await;
    let from_card = wait_for(&browser, "MUSTERMANN").await;
    assert!(from_card.contains("HEIDESTRASSE 17") && from_card.contains("GABLER"), "{from_card}");
    audit.check(&browser, "registration step 1 from the card").await;
    type_into(&browser, "email", EID_EMAIL).await;
    type_into(&browser, "username", "erika.eid").await;
    click(&browser, "main form button[type=submit]").await;
    wait_path(&browser, "/test/registrierung/passwort").await;
    type_into(&browser, "password", PASSWORD).await;
    type_into(&browser, "password_confirmation", PASSWORD).await;
    click(&browser, "#privacy").await;
    click(&browser, "main form button[type=submit]").await;
    wait_path(&browser, "/test/registrierung/pruefen").await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Registrierung abgeschlossen").await;
    browser.goto(&smtp.mail_to(EID_EMAIL, 0).await.link()).await.unwrap();
    wait_for(&browser, "aktiviert").await;
    browser.goto(&format!("{test}/anmelden")).await.unwrap();
    click(&browser, "main a[href*='zweck=anmelden']").await;
    wait_for(&browser, "Voraussetzungen").await;
    through_test_service(&browser, &mut audit).await;
    wait_path(&browser, "/test/konto").await;
    let account = wait_for(&browser, "erika.eid").await;
    assert!(account.contains("hoch"), "{account}");
    audit.check(&browser, "Mein Konto after eID login").await;
    click(&browser, "header form button").await;
    wait_for(&browser, "Sie sind abgemeldet.").await;

    // A password account raises its level with the second test card: the differing data side
    // by side, the citizen keeps the own spelling of the city.
    crate::citizen::register_activated(&crate::citizen::browser(), &test, &smtp, "erika.pwd", "erika.pwd@example.de")
        .await;
    browser.goto(&format!("{test}/anmelden")).await.unwrap();
    type_into(&browser, "username", "erika.pwd").await;
    type_into(&browser, "password", PASSWORD).await;
    click(&browser, "main form button[type=submit]").await;
    wait_path(&browser, "/test/konto").await;
    click(&browser, "main a[href*='zweck=hochstufen']").await;
    wait_for(&browser, "Vertrauensniveau hochstufen").await;
    for id in ["eid_app", "eid_reader", "eid_pin"] {
        click(&browser, &format!("#{id}")).await;
    }
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Testidentität").await;
    click(&browser, "#identity_1").await;
    type_into(&browser, "pin", "123456").await;
    click(&browser, "main form button[value=identify]").await;
    let compare = wait_for(&browser, "Im Ausweis").await;
    assert!(compare.contains("Köln") && compare.contains("KÖLN"), "{compare}");
    audit.check(&browser, "eID data side by side").await;
    click(&browser, "#city_own").await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Vertrauensniveau hochgestuft").await;
    browser.goto(&format!("{test}/konto")).await.unwrap();
    let upgraded = wait_for(&browser, "erika.pwd").await;
    assert!(upgraded.contains("hoch") && upgraded.contains("Köln") && upgraded.contains("HEIDESTRASSE"), "{upgraded}");
    click(&browser, "header form button").await;
    wait_for(&browser, "Sie sind abgemeldet.").await;

    // One-time identification for an authority's request that needs "hoch", without an account.
    let (client_id, _) = authority_client(&server, oidc_core::Environment::Test, "kreis-lippe").await;
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", client_id.as_str()),
            ("response_type", "code"),
            ("scope", "openid profile email"),
            ("redirect_uri", "https://formulare.example/callback"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
            ("acr_values", "hoch"),
        ])
        .finish();
    browser.goto(&format!("{test}/authorize?{query}")).await.unwrap();
    wait_for(&browser, "verlangt das Vertrauensniveau hoch").await;
    click(&browser, "main a[href*='zweck=identifizieren']").await;
    wait_for(&browser, "Es wird kein Servicekonto angelegt").await;
    through_test_service(&browser, &mut audit).await;
    let consent = wait_for(&browser, "Einmalige Identifizierung").await;
    assert!(consent.contains("MUSTERMANN"), "{consent}");
    audit.check(&browser, "consent of a one-time identification").await;
    click(&browser, "main form button[value=allow]").await;
    let callback = wait_url(&browser, "code=").await;
    assert!(callback.as_str().starts_with("https://formulare.example/callback?code="), "{callback}");

    for page in ["/barrierefreiheit", "/datenschutz", "/anmelden?lang=en", "/registrierung", "/aktivierung/erneut"] {
        browser.goto(&format!("{base}{page}")).await.unwrap();
        audit.check(&browser, page).await;
    }
    browser.close().await.unwrap();
    drop(driver);
    server.stop().await;
    backends.drop_now().await;
    assert!(audit.pages >= 27, "checked {} pages", audit.pages);
    assert!(audit.problems.is_empty(), "accessibility problems:\n{}", audit.problems.join("\n"));
}
