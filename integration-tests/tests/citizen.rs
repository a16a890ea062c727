//! The citizen's way through the pages over real HTTP, with mail through a real SMTP listener:
//! register in three steps, activate by the mailed link, log in, change data, export, reset the
//! password, delete the account.

use reqwest::{Client, StatusCode};

use crate::{
    mail::SmtpSink,
    support::{Backends, TestServer},
};

const EMAIL: &str = "erika.mustermann@example.de";
pub(crate) const PASSWORD: &str = "Korrekt Pferd Batterie Heftklammer";

/// A browser-like client: cookies kept, redirects followed.
pub(crate) fn browser() -> Client {
    Client::builder().cookie_store(true).build().unwrap()
}

/// The CSRF token in a page's form.
pub(crate) fn csrf(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

pub(crate) async fn page(client: &Client, url: &str) -> (StatusCode, String) {
    let response = client.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

pub(crate) async fn post(client: &Client, url: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
    let response = client.post(url).form(form).send().await.unwrap();
    let final_url = response.url().to_string();
    (response.status(), final_url, response.text().await.unwrap())
}

/// A browser that keeps cookies and follows redirects, except to a relying party's callback on
/// port 3000 (nothing listens there; tests read the redirect instead).
pub(crate) fn rp_browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().port() == Some(3000) { attempt.stop() } else { attempt.follow() }
        }))
        .build()
        .unwrap()
}

/// Registers `username` through the three steps and follows the activation link from the mail.
pub(crate) async fn register_activated(browser: &Client, issuer: &str, smtp: &SmtpSink, username: &str, email: &str) {
    let review = fill_in(browser, issuer, username, email).await;
    post(browser, &format!("{issuer}/registrierung/pruefen"), &[("csrf", &csrf(&review))]).await;
    let (status, _) = page(browser, &smtp.mail_to(email, 0).await.link()).await;
    assert_eq!(status, StatusCode::OK, "activated");
}

/// Logs `username` in at the login page; ends on "Mein Konto".
pub(crate) async fn log_in(browser: &Client, issuer: &str, username: &str) {
    let (_, login) = page(browser, &format!("{issuer}/anmelden")).await;
    let (status, url, _) = post(
        browser,
        &format!("{issuer}/anmelden"),
        &[("csrf", &csrf(&login)), ("username", username), ("password", PASSWORD), ("return_to", "/konto")],
    )
    .await;
    assert!(status == StatusCode::OK && url.ends_with("/konto"), "logged in: {status} {url}");
}

/// An authorization request of `client_id` (scope `openid`, PKCE with `challenge`) in a browser
/// with a session and, for a first-party client, no consent page: the code from the redirect.
pub(crate) async fn authorization_code(
    browser: &Client,
    issuer: &str,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", client_id),
            ("response_type", "code"),
            ("scope", "openid"),
            ("redirect_uri", redirect_uri),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let response = browser.get(format!("{issuer}/authorize?{query}")).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    location.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned()
}

/// Steps 1 to 3 up to the review page; returns its HTML.
pub(crate) async fn fill_in(client: &Client, base: &str, username: &str, email: &str) -> String {
    let (status, html) = page(client, &format!("{base}/registrierung")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("bei jeder späteren Anmeldung"), "the page says the username is needed for every login");
    let token = csrf(&html);
    let step1 = [
        ("csrf", token.as_str()),
        ("given_names", "  Erika  "),
        ("family_name", "Mustermann"),
        ("birth_name", "Gabler"),
        ("date_of_birth", "12.08.1964"),
        ("place_of_birth", "Berlin"),
        ("street_and_number", "Heidestr., 17"),
        ("postal_code", "51147"),
        ("city", "Köln"),
        ("country", "DE"),
        ("phone_number", "0221 / 123 45 67"),
        ("email", email),
        ("username", username),
    ];
    let (status, url, html) = post(client, &format!("{base}/registrierung"), &step1).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(url.ends_with("/registrierung/passwort"), "{url}");
    assert!(html.contains("Das Komma zwischen Straße und Hausnummer wurde entfernt."), "the hint is shown");
    assert!(html.contains("mindestens 10 Zeichen"), "the conditions are shown before typing");
    let token = csrf(&html);
    let weak = [("csrf", token.as_str()), ("password", "passwort123"), ("password_confirmation", "passwort123")];
    let (status, _, html) = post(client, &format!("{base}/registrierung/passwort"), &weak).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("zu leicht zu erraten"), "{html}");
    assert!(html.contains("Datenschutzerklärung"), "the privacy statement must be accepted");
    assert!(html.contains("aria-describedby=\"password-error"), "errors are tied to their field");
    let good = [
        ("csrf", token.as_str()),
        ("password", PASSWORD),
        ("password_confirmation", PASSWORD),
        ("privacy", "accepted"),
    ];
    let (status, url, html) = post(client, &format!("{base}/registrierung/passwort"), &good).await;
    assert_eq!(status, StatusCode::OK);
    assert!(url.ends_with("/registrierung/pruefen"), "{url}");
    assert!(html.contains("+492211234567"), "the phone number in E.164 form on the review page");
    html
}

#[tokio::test]
async fn a_citizen_registers_activates_logs_in_changes_data_resets_the_password_and_deletes_the_account() {
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| c.mail.smtp_url = Some(smtp.url.as_str().into())).await;
    let base = server.base_url.clone();
    let client = browser();

    // Registration: the review shows the normalised data; nothing is stored before "Sichern".
    let review = fill_in(&client, &base, "erika.m", EMAIL).await;
    // The address as a German address block (no country line for Germany).
    for expected in ["Heidestraße 17<br>51147 Köln", "Erika", "12.08.1964", "Ändern", "Sichern"] {
        assert!(review.contains(expected), "{expected} on the review page");
    }
    assert_eq!(smtp.count_to(EMAIL), 0, "no mail before Sichern");
    let other = browser();
    let (_, html) = page(&other, &format!("{base}/registrierung")).await;
    let lookalike = fill_in(&other, &base, "ERIKA.M", EMAIL).await;
    assert!(lookalike.contains("Sichern"), "nothing stored yet, so the name is still free");
    let (status, _, html2) = post(&client, &format!("{base}/registrierung/pruefen"), &[("csrf", &csrf(&review))]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html2.contains("Registrierung abgeschlossen"), "{html2}");
    drop(html);

    // The second registration with the same (case-insensitive) username is refused at Sichern,
    // back on step 1 with the message and every input kept; the e-mail address is not judged
    // (whether it has an account is its owner's business).
    let (status, _, html) =
        post(&other, &format!("{base}/registrierung/pruefen"), &[("csrf", &csrf(&lookalike))]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("Benutzername ist bereits vergeben"), "{html}");
    assert!(!html.contains("Zu dieser E-Mail-Adresse gibt es bereits"), "the address is not told");
    assert!(html.contains("value=\"Heidestr., 17\""), "the input is kept");

    // The activation mail: German and English, text and HTML, a single-use link.
    let mail = smtp.mail_to(EMAIL, 0).await;
    assert!(
        mail.subject.contains("Aktivieren Sie Ihr Servicekonto") && mail.subject.contains("Activate"),
        "{}",
        mail.subject
    );
    assert!(mail.text.contains("Guten Tag Erika Mustermann") && mail.text.contains("Hello Erika Mustermann"));
    let link = mail.link();
    let token = link.split("token=").nth(1).unwrap();
    assert!(mail.html.contains("<a href=") && mail.html.contains(token), "an HTML part with the link");
    assert!(link.starts_with(&format!("{base}/aktivierung?token=")), "{link}");

    // Not activated: a clear message and the offer to resend, but only with the right password.
    let (_, html) = page(&client, &format!("{base}/anmelden")).await;
    let login = |password: &'static str, token: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            post(
                &client,
                &format!("{base}/anmelden"),
                &[("csrf", &token), ("username", "Erika.M"), ("password", password), ("return_to", "/konto")],
            )
            .await
        }
    };
    let (status, _, html) = login(PASSWORD, csrf(&html)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("noch nicht aktiviert") && html.contains("Aktivierungsmail erneut senden"));

    let (status, html) = page(&client, &link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Servicekonto aktiviert"), "{html}");
    let (status, html) = page(&client, &link).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "single use");
    assert!(html.contains("ungültig") && html.contains("Aktivierungsmail erneut senden"));

    // Login: one generic message for a wrong password; then "Mein Konto".
    let (status, _, html) = login("falsches Passwort", csrf(&html)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Benutzername oder Passwort ist falsch."));
    let (status, url, html) = login(PASSWORD, csrf(&html)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(url.ends_with("/konto"), "{url}");
    assert!(html.contains("Mein Konto") && html.contains("Heidestraße") && html.contains("selbst angegeben"));
    assert!(html.contains("endet die Anmeldung nach 30 Minuten ohne Aktivität"), "the time limit is announced");

    // Change data: the city changes at once, a new e-mail address only after its confirmation.
    let (_, html) = page(&client, &format!("{base}/konto/daten")).await;
    assert!(html.contains("value=\"Heidestraße 17\""), "prefilled");
    let changed = [
        ("csrf", csrf(&html)),
        ("given_names", "Erika".into()),
        ("family_name", "Mustermann".into()),
        ("birth_name", "Gabler".into()),
        ("date_of_birth", "12.08.1964".into()),
        ("place_of_birth", "Berlin".into()),
        ("street_and_number", "Am Abdinghof 11".into()),
        ("postal_code", "33098".into()),
        ("city", "Paderborn".into()),
        ("country", "DE".into()),
        ("email", "erika.neu@example.de".into()),
    ];
    let form: Vec<(&str, &str)> = changed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = post(&client, &format!("{base}/konto/daten"), &form).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Paderborn") && html.contains("Bestätigungslink an erika.neu@example.de"), "{html}");
    assert!(html.contains(EMAIL), "the old address stays until confirmed");
    let confirm = smtp.mail_to("erika.neu@example.de", 0).await;
    let (status, html) = page(&client, &confirm.link()).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let notice = smtp.mail_to(EMAIL, 1).await;
    assert!(notice.text.contains("erika.neu@example.de"), "the old address is told");

    // Export: everything, with provenance.
    let export = client.get(format!("{base}/konto/export")).send().await.unwrap();
    assert!(export.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let export: serde_json::Value = export.json().await.unwrap();
    assert_eq!(export["master_data"]["city"]["value"], "Paderborn");
    assert_eq!(export["master_data"]["city"]["source"], "self_asserted");
    assert_eq!(export["email"]["value"], "erika.neu@example.de");
    assert!(export["events"].as_array().unwrap().iter().any(|e| e["kind"] == "login_failed"));
    let (_, html) = page(&client, &format!("{base}/konto/aktivitaet")).await;
    assert!(html.contains("Fehlgeschlagener Anmeldeversuch") && html.contains("Stammdaten geändert"));

    // Forgotten password from another browser: the same answer for unknown names; the link
    // ends every session.
    let stranger = browser();
    let (_, html) = page(&stranger, &format!("{base}/passwort-vergessen")).await;
    let token = csrf(&html);
    let (_, _, unknown) =
        post(&stranger, &format!("{base}/passwort-vergessen"), &[("csrf", &token), ("login", "niemand")]).await;
    let (_, _, known) =
        post(&stranger, &format!("{base}/passwort-vergessen"), &[("csrf", &token), ("login", "erika.neu@example.de")])
            .await;
    assert_eq!(unknown, known, "no account enumeration");
    let reset = smtp.mail_to("erika.neu@example.de", 1).await;
    let (status, html) = page(&stranger, &reset.link()).await;
    assert_eq!(status, StatusCode::OK);
    let new_password = "Drei Raben sitzen auf dem Zaun";
    let reset_token = reset.link().split("token=").nth(1).unwrap().to_owned();
    let (status, _, html) = post(
        &stranger,
        &format!("{base}/passwort-neu"),
        &[
            ("csrf", &csrf(&html)),
            ("token", &reset_token),
            ("password", new_password),
            ("password_confirmation", new_password),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Passwort gespeichert"));
    let response = client.get(format!("{base}/konto")).send().await.unwrap();
    assert!(response.url().path().ends_with("/anmelden"), "the old session ended: {}", response.url());

    // The test environment has no such account.
    let (_, html) = page(&client, &format!("{base}/test/anmelden")).await;
    let (status, _, _) = post(
        &client,
        &format!("{base}/test/anmelden"),
        &[("csrf", &csrf(&html)), ("username", "erika.m"), ("password", new_password), ("return_to", "/konto")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Delete: confirmed with the password; a mail confirms it; the login is gone.
    let (_, html) = page(&client, &format!("{base}/anmelden")).await;
    login(new_password, csrf(&html)).await;
    let (_, html) = page(&client, &format!("{base}/konto/loeschen")).await;
    assert!(html.contains("nicht rückgängig"));
    let (status, _, html) =
        post(&client, &format!("{base}/konto/loeschen"), &[("csrf", &csrf(&html)), ("password", new_password)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Servicekonto gelöscht"));
    let reset_done = smtp.mail_to("erika.neu@example.de", 2).await;
    assert!(reset_done.subject.contains("zurückgesetzt"), "the reset was confirmed by mail: {}", reset_done.subject);
    let goodbye = smtp.mail_to("erika.neu@example.de", 3).await;
    assert!(goodbye.subject.contains("gelöscht"));
    let (_, html) = page(&client, &format!("{base}/anmelden")).await;
    let (status, _, _) = login(new_password, csrf(&html)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_change_nothing_and_pages_carry_security_headers() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let base = &server.base_url;
    let client = browser();
    let response = client.get(format!("{base}/anmelden")).send().await.unwrap();
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let cookies: Vec<&str> = headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("sk_csrf=") && c.contains("HttpOnly") && c.contains("SameSite=Lax")));

    for (path, form) in [
        ("/anmelden", vec![("username", "x"), ("password", "y")]),
        ("/registrierung", vec![("given_names", "x")]),
        ("/passwort-vergessen", vec![("login", "x")]),
        ("/abmelden", vec![]),
    ] {
        let response = client.post(format!("{base}{path}")).form(&form).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(response.text().await.unwrap().contains("Formular abgelaufen"), "{path}");
    }
    // Pages behind a login send to the login and back.
    let response = client.get(format!("{base}/konto/daten")).send().await.unwrap();
    assert!(response.url().as_str().ends_with("/anmelden?return_to=%2Fkonto%2Fdaten"), "{}", response.url());
    // English on request, remembered by cookie.
    let (_, html) = page(&client, &format!("{base}/anmelden?return_to=%2Fkonto%2Fdaten&lang=en")).await;
    assert!(html.contains("<html lang=\"en\">") && html.contains("Log in"));
    assert!(html.contains("?return_to=%2Fkonto%2Fdaten&amp;lang=de"), "the switch keeps the page's parameters");
    let (_, html) = page(&client, &format!("{base}/registrierung")).await;
    assert!(html.contains("Personal data"), "the choice is remembered");
    let (status, _, html) =
        post(&client, &format!("{base}/registrierung"), &[("csrf", &csrf(&html)), ("postal_code", "123")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Please enter your family name.") && html.contains("A German postal code has five digits."));
    let summary = &html[html.find("error-summary").unwrap()..];
    assert!(summary.find("given names").unwrap() < summary.find("postal code").unwrap(), "in form order");
    let (_, html) = page(&browser(), &format!("{base}/barrierefreiheit")).await;
    assert!(html.contains("Erklärung zur Barrierefreiheit") && html.contains("mailto:"));

    server.stop().await;
    backends.drop_now().await;
}

/// A server on its own backends delivering mail to a real SMTP listener, with cheap password
/// hashing (these tests are about pages, not hashing).
async fn cheap_server() -> (Backends, SmtpSink, TestServer) {
    let backends = Backends::from_env().await;
    let smtp = SmtpSink::start().await;
    let server = TestServer::start(&backends, |c| {
        c.mail.smtp_url = Some(smtp.url.as_str().into());
        c.accounts.argon2_memory_kib = 1024;
        c.accounts.argon2_iterations = 1;
    })
    .await;
    (backends, smtp, server)
}

/// Registration never tells whether an e-mail address has an account: a second registration
/// with a taken address ends like any other, and the address's owner is mailed instead (a
/// pending owner gets the activation link again). Usernames may be told, so their checks are
/// limited per address.
#[tokio::test]
async fn registration_never_reveals_whether_an_address_has_an_account() {
    let (backends, smtp, server) = cheap_server().await;
    let base = format!("{}/test", server.base_url);
    let owner = "besitzerin@example.de";

    // A pending owner: the second registration gets the same answer, the owner her link again.
    let first = browser();
    let review = fill_in(&first, &base, "besitzerin", owner).await;
    post(&first, &format!("{base}/registrierung/pruefen"), &[("csrf", &csrf(&review))]).await;
    smtp.mail_to(owner, 0).await;
    let second = browser();
    let review = fill_in(&second, &base, "jemand.anderes", owner).await;
    let (status, _, html) = post(&second, &format!("{base}/registrierung/pruefen"), &[("csrf", &csrf(&review))]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Registrierung abgeschlossen"), "the same answer as any registration: {html}");
    let again = smtp.mail_to(owner, 1).await;
    assert!(again.subject.contains("Aktivieren Sie Ihr Servicekonto"), "{}", again.subject);
    let link = again.link();
    assert_eq!(page(&first, &link).await.0, StatusCode::OK, "the owner activates her own account");

    // An active owner: told that someone tried; still no second account.
    let third = browser();
    let review = fill_in(&third, &base, "noch.jemand", owner).await;
    let (status, _, html) = post(&third, &format!("{base}/registrierung/pruefen"), &[("csrf", &csrf(&review))]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Registrierung abgeschlossen"));
    let attempt = smtp.mail_to(owner, 2).await;
    assert!(attempt.subject.contains("Registrierungsversuch"), "{}", attempt.subject);
    assert!(attempt.link().ends_with("/test/anmelden"), "{}", attempt.link());
    for username in ["jemand.anderes", "noch.jemand"] {
        let login = page(&third, &format!("{base}/anmelden")).await.1;
        let form = [("csrf", csrf(&login)), ("username", username.into()), ("password", PASSWORD.into())];
        let (_, _, html) =
            post(&third, &format!("{base}/anmelden"), &form.each_ref().map(|(k, v)| (*k, v.as_str()))).await;
        assert!(html.contains("Benutzername oder Passwort ist falsch"), "{username} was never created");
    }

    // Username checks from one address are limited (30 an hour).
    let prober = browser();
    let (_, html) = page(&prober, &format!("{base}/registrierung")).await;
    let token = csrf(&html);
    let mut last = StatusCode::OK;
    for n in 0..32 {
        let username = format!("probe{n}");
        let form = [
            ("csrf", token.as_str()),
            ("given_names", "Erika"),
            ("family_name", "Mustermann"),
            ("date_of_birth", "12.08.1964"),
            ("place_of_birth", "Berlin"),
            ("street_and_number", "Heidestr. 17"),
            ("postal_code", "51147"),
            ("city", "Köln"),
            ("country", "DE"),
            ("email", "probe@example.de"),
            ("username", username.as_str()),
        ];
        last = prober.post(format!("{base}/registrierung")).form(&form).send().await.unwrap().status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "the 31st check in an hour waits");
    server.stop().await;
    backends.drop_now().await;
}

/// A login always issues a new session id and ends the one the browser had (no session
/// fixation): a cookie planted before the login, or kept from an earlier one, opens nothing.
#[tokio::test]
async fn every_login_issues_a_new_session_and_ends_the_old_one() {
    let (backends, smtp, server) = cheap_server().await;
    let base = format!("{}/test", server.base_url);
    crate::citizen::register_activated(&browser(), &base, &smtp, "fixiert", "fixiert@example.de").await;
    // A client that keeps cookies but does not follow redirects, so every Set-Cookie is seen.
    let client = Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = |client: Client| {
        let base = base.clone();
        async move {
            let page = client.get(format!("{base}/anmelden")).send().await.unwrap().text().await.unwrap();
            let form = [
                ("csrf", csrf(&page)),
                ("username", "fixiert".into()),
                ("password", PASSWORD.into()),
                ("return_to", "/konto".into()),
            ];
            let response = client.post(format!("{base}/anmelden")).form(&form).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
            response
                .cookies()
                .find(|c| c.name() == "sk_session_test")
                .map(|c| c.value().to_owned())
                .expect("a session cookie")
        }
    };
    let first = login(client.clone()).await;
    let second = login(client.clone()).await;
    assert_ne!(first, second, "a new session id at every login");
    let with_cookie = |value: String| {
        let base = base.clone();
        async move {
            Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(format!("{base}/konto"))
                .header("cookie", format!("sk_session_test={value}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(with_cookie(second).await, StatusCode::OK, "the new session works");
    assert_eq!(with_cookie(first).await, StatusCode::SEE_OTHER, "the old one was ended by the new login");
    server.stop().await;
    backends.drop_now().await;
}
