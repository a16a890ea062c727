//! SAML 2.0 with a service provider nobody here wrote: a pysaml2 SP (`integration-tests/saml-sp`,
//! PyPI; its signatures checked by Debian's `xmlsec1`) is registered from its metadata URL
//! through the admin API and logs a citizen in over HTTP-Redirect and HTTP-POST (signed requests):
//! the shared login and consent pages, attributes after consent, the persistent NameID equal to
//! the OIDC `sub` of the tenant's sector, assertions encrypted for the SP, a transient one, the authentication context in our and
//! the eIDAS vocabulary, the transfer log, ForceAuthn, IsPassive without a session, a level that
//! cannot be met passively, step-up to "hoch" with the test eID service, Single Logout ending the session. And
//! IdP-initiated login once the tenant allows it. And
//! refusals: an unsigned request where signatures are required, a changed signed one, an unregistered ACS, a replayed
//! request, a tampered Response rejected by the SP.
//!
//! The SP runs from `$TEST_SAML_PYTHON` (a Python with pysaml2; `.ci/run` makes
//! `target/saml-venv`), else the test is skipped with the reason — a failure with
//! `TEST_REQUIRE_BACKENDS=1`.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    admin::{operator, tenant_body},
    citizen::{PASSWORD, csrf, page, register_activated},
    mail::SmtpSink,
    support::{Backends, TestServer},
};

/// A Python with pysaml2 (and Debian's xmlsec1 beside it), or `None` after saying why the test
/// skips — a failure under `TEST_REQUIRE_BACKENDS`.
fn python() -> Option<String> {
    let python = std::env::var("TEST_SAML_PYTHON").ok().or_else(|| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/saml-venv/bin/python");
        std::path::Path::new(venv).exists().then(|| venv.to_owned())
    });
    let has_pysaml2 = python
        .as_ref()
        .is_some_and(|python| Command::new(python).args(["-c", "import saml2"]).status().is_ok_and(|s| s.success()));
    let has_xmlsec = Command::new("xmlsec1").arg("--version").output().is_ok_and(|o| o.status.success());
    if has_pysaml2 && has_xmlsec {
        return python;
    }
    assert!(
        std::env::var_os("TEST_REQUIRE_BACKENDS").is_none(),
        "pysaml2 or xmlsec1 is missing, and TEST_REQUIRE_BACKENDS is set"
    );
    eprintln!(
        "saml: skipped: no Python with pysaml2 (TEST_SAML_PYTHON or target/saml-venv) or no xmlsec1 (apt-get install xmlsec1)"
    );
    None
}

/// The pysaml2 SP as a process on a loopback port of its choosing.
struct ServiceProvider {
    base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl ServiceProvider {
    fn start(python: &str, idp_metadata: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/saml-sp/sp.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(idp_metadata)
            .arg(dir.path())
            .arg("--sign")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("the SP started: {line:?}"));
        Self { base: format!("http://127.0.0.1:{port}"), child, _dir: dir }
    }
}

impl Drop for ServiceProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client's configuration as `PUT /clients/{id}` takes it (the view without its read-only
/// fields), and its ETag.
async fn client_config(admin: &crate::admin::Admin, client_id: &str) -> (String, Value) {
    let (_, etag, mut config) = admin.get(&format!("/clients/{client_id}")).await;
    for field in ["client_id", "tenant_id", "environment", "protocol", "secrets", "version", "created_at", "updated_at"]
    {
        config.as_object_mut().unwrap().remove(field);
    }
    (etag.expect("an ETag"), config)
}

fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).timeout(Duration::from_secs(20)).build().unwrap()
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(
        html[start..]
            .split('"')
            .next()?
            .replace("&#x2f;", "/")
            .replace("&#x2b;", "+")
            .replace("&#x3d;", "=")
            .replace("&amp;", "&")
            .replace("&quot;", "\""),
    )
}

/// The `action` of the form that carries the SAML message (the layout has forms of its own).
fn action(html: &str) -> String {
    let message = html.find("name=\"SAMLResponse\"").or_else(|| html.find("name=\"SAMLRequest\"")).expect("a message");
    let start = html[..message].rfind("action=\"").expect("a form") + 8;
    html[start..].split('"').next().unwrap().replace("&#x2f;", "/").replace("&amp;", "&")
}

/// Posts the auto-submitting form of `html` (our Response to the SP, or the SP's POST-binding
/// request to us) as a browser would.
async fn submit(browser: &reqwest::Client, html: &str) -> reqwest::Response {
    let mut fields = Vec::new();
    for name in ["SAMLResponse", "SAMLRequest", "RelayState"] {
        if let Some(value) = hidden(html, name) {
            fields.push((name, value));
        }
    }
    browser.post(action(html)).form(&fields).send().await.unwrap()
}

/// The SP's verdict on the Response in `html` (the form our IdP made).
async fn verdict(browser: &reqwest::Client, html: &str) -> (StatusCode, Value) {
    assert!(html.contains("SAMLResponse"), "a Response for the SP: {html}");
    let response = submit(browser, html).await;
    (response.status(), response.json().await.unwrap())
}

/// Registers `sp` from its metadata URL as "Bauportal" of a new tenant `tenant`, which may
/// release given and family name; the SP needs the given name.
async fn bauportal(admin: &crate::admin::Admin, tenant: &str, sp: &ServiceProvider) {
    let mut body = tenant_body(tenant);
    body["allowed_claims"] = json!(["given_name", "family_name"]);
    let (_, _, tenant) = admin.post("/tenants", body).await;
    let body = json!({
        "environment": "test",
        "name": "Bauportal",
        "metadata_url": format!("{}/metadata", sp.base),
        "claims": [{"claim": "given_name", "required": true}],
    });
    let (status, _, client) =
        admin.post(&format!("/tenants/{}/saml-clients", tenant["id"].as_str().unwrap()), body).await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
}

async fn log_in_on(browser: &reqwest::Client, html: &str, url: &str, username: &str) -> (StatusCode, String) {
    assert!(url.contains("/anmelden"), "the login page: {url}: {html}");
    let return_to = hidden(html, "return_to").expect("the way back");
    assert!(return_to.starts_with("/saml/weiter?anfrage="), "{return_to}");
    let form =
        [("csrf", csrf(html)), ("username", username.into()), ("password", PASSWORD.into()), ("return_to", return_to)];
    let response = browser.post(url.split('?').next().unwrap()).form(&form).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

// Several threads: the SP's start blocks one while it reads our metadata from the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pysaml2_service_provider_logs_citizens_in_and_out() {
    let Some(python) = python() else { return };
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| c.mail.smtp_url = Some(smtp.url.as_str().into())).await;
    let issuer = format!("{}/test", server.base_url);
    let (status, metadata) = page(&reqwest::Client::new(), &format!("{issuer}/saml/metadata")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(metadata.contains("IDPSSODescriptor") && metadata.contains(&format!("{issuer}/saml/sso")), "{metadata}");
    let sp = ServiceProvider::start(&python, &format!("{issuer}/saml/metadata"));

    // The operator registers the SP from its metadata URL.
    let admin = operator(&server).await;
    let mut tenant = tenant_body("bauamt-saml");
    tenant["allowed_claims"] = json!(["given_name", "family_name", "email", "birthdate"]);
    let (status, _, tenant) = admin.post("/tenants", tenant).await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let tenant_id = tenant["id"].as_str().unwrap();
    let body = json!({
        "environment": "test",
        "name": "Bauportal",
        "metadata_url": format!("{}/metadata", sp.base),
        "claims": [{"claim": "given_name", "required": true}, {"claim": "family_name", "required": true},
                   {"claim": "email"}, {"claim": "birthdate"}],
        "purpose": {"de": "Bauantrag stellen"},
    });
    let (status, _, client) = admin.post(&format!("/tenants/{tenant_id}/saml-clients"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    assert_eq!(client["protocol"], "saml");
    assert_eq!(client["saml"]["entity_id"], format!("{}/sp", sp.base));
    assert_eq!(client["saml"]["requests_signed"], true, "the SP's metadata says it signs");
    assert!(client.get("client_secret").is_none_or(Value::is_null), "no secret: {client}");
    let (status, _, twice) = admin.post(&format!("/tenants/{tenant_id}/saml-clients"), body).await;
    assert_eq!(status, StatusCode::CONFLICT, "one entity id per environment: {twice}");
    let client_id = client["client_id"].as_str().unwrap().to_owned();

    let erika = browser();
    register_activated(&erika, &issuer, &smtp, "erika.saml", "erika.saml@example.de").await;

    // HTTP-Redirect, signed: login page, consent page, Response verified by pysaml2.
    let response = erika.get(format!("{}/login", sp.base)).send().await.unwrap();
    let url = response.url().to_string();
    let html = response.text().await.unwrap();
    let (status, consent) = log_in_on(&erika, &html, &url, "erika.saml").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        consent.contains("Bauportal") && consent.contains("Bauantrag stellen"),
        "the shared consent page: {consent}"
    );
    let form = [
        ("csrf", csrf(&consent)),
        ("request", hidden(&consent, "request").unwrap()),
        ("decision", "allow".into()),
        ("claim", "email".into()),
    ];
    let response = erika.post(format!("{issuer}/saml/zustimmung")).form(&form).send().await.unwrap();
    let (status, account) = verdict(&erika, &response.text().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "pysaml2 accepts the Response: {account}");
    assert_eq!(account["name_id_format"], "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent");
    assert_eq!(account["attributes"]["given_name"], json!(["Erika"]));
    assert_eq!(account["attributes"]["family_name"], json!(["Mustermann"]));
    assert_eq!(account["attributes"]["email"], json!(["erika.saml@example.de"]));
    assert!(account["attributes"].get("birthdate").is_none(), "not ticked, not released: {account}");
    assert_eq!(account["authn_context"], "normal");
    assert_eq!(account["relay_state"], "relay-4711");
    assert_eq!(account["issuer"], issuer);
    let persistent = account["name_id"].as_str().unwrap().to_owned();
    let (_, transfers) = page(&erika, &format!("{issuer}/konto/uebermittlungen")).await;
    assert!(transfers.contains("Bauportal"), "the transfer log names the SP: {transfers}");

    // Unsigned although the SP must sign: refused on a page, nothing goes to the SP.
    let (status, html) = page(&erika, &format!("{}/login?unsigned=1", sp.base)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("nicht signiert"), "{html}");

    // An ACS the SP did not register.
    let (status, html) = page(&erika, &format!("{}/login?acs=http://127.0.0.1:9/acs", sp.base)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("nicht eingetragen"), "{html}");

    // A replayed request: the same signed URL twice.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let to_idp = no_redirects.get(format!("{}/login", sp.base)).send().await.unwrap();
    let location = to_idp.headers()["location"].to_str().unwrap().to_owned();
    let (status, first) = page(&erika, &location).await;
    assert_eq!(status, StatusCode::OK, "the session and the consent answer at once");
    assert!(first.contains("SAMLResponse"), "{first}");
    let (status, again) = page(&erika, &location).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(again.contains("bereits verwendet"), "{again}");

    // A tampered Response: the SP's signature check fails.
    let (status, tampered) = verdict(&erika, &{
        use base64::Engine as _;
        let value = hidden(&first, "SAMLResponse").unwrap();
        let xml = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&value).unwrap()).unwrap();
        // Encrypted for the SP (its metadata has an encryption key): nothing of Erika is
        // readable on the way.
        assert!(xml.contains("EncryptedAssertion") && !xml.contains("Erika"), "{xml}");
        let at = xml.find("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len() + 10;
        let flipped = if &xml[at..=at] == "A" { "B" } else { "A" };
        let changed = format!("{}{flipped}{}", &xml[..at], &xml[at + 1..]);
        first.replace(&value, &base64::engine::general_purpose::STANDARD.encode(changed))
    })
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "pysaml2 refuses a changed assertion: {tampered}");
    let (status, original) = verdict(&erika, &first).await;
    assert_eq!(status, StatusCode::OK, "{original}");

    // HTTP-POST, signed by pysaml2 (an enveloped XML signature): verified; a changed request
    // is refused on a page.
    let (status, form) = page(&erika, &format!("{}/login?binding=post", sp.base)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, account) = verdict(&erika, &submit(&erika, &form).await.text().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    let (_, form) = page(&erika, &format!("{}/login?binding=post", sp.base)).await;
    let tampered_request = {
        use base64::Engine as _;
        let value = hidden(&form, "SAMLRequest").unwrap();
        let xml = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&value).unwrap()).unwrap();
        assert!(xml.contains("Signature") && xml.contains("/acs"), "{xml}");
        let changed =
            base64::engine::general_purpose::STANDARD.encode(xml.replace("relay", "relax").replace("/acs", "/acs?x"));
        form.replace(&value, &changed)
    };
    let response = submit(&erika, &tampered_request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("Signatur der Anfrage"), "a changed signed request");

    // IdP-initiated login is off until the tenant allows it.
    let sp_entity = format!("{}/sp", sp.base);
    let unsolicited = format!("{issuer}/saml/anmelden?sp={}&RelayState=%2Fantrag", urlencoding(&sp_entity));
    let (status, html) = page(&erika, &unsolicited).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("erlaubt keine Anmeldung, die hier beginnt"), "{html}");

    // The tenant lets the SP send unsigned requests and start logins here: HTTP-POST binding,
    // transient NameID, the eIDAS vocabulary, an unsolicited Response.
    let (etag, mut config) = client_config(&admin, &client_id).await;
    config["saml"]["requests_signed"] = json!(false);
    config["saml"]["idp_initiated"] = json!(true);
    let (status, _, updated) = admin.put(&format!("/clients/{client_id}"), config, &etag).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (status, form) = page(
        &erika,
        &format!(
            "{}/login?binding=post&unsigned=1&nameid=transient&comparison=minimum&context=http://eidas.europa.eu/LoA/low",
            sp.base
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let response = submit(&erika, &form).await;
    let (status, account) = verdict(&erika, &response.text().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["name_id_format"], "urn:oasis:names:tc:SAML:2.0:nameid-format:transient");
    assert_ne!(account["name_id"], persistent.as_str());
    assert_eq!(account["authn_context"], "http://eidas.europa.eu/LoA/low");
    let (status, html) = page(&erika, &unsolicited).await;
    assert_eq!(status, StatusCode::OK);
    let (status, account) = verdict(&erika, &html).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!((account["in_response_to"].clone(), account["relay_state"].clone()), (Value::Null, json!("/antrag")));
    assert_eq!(account["name_id"], persistent.as_str());

    // The metadata is read again from its URL: it says "signed", so the requirement is back on.
    let (status, _, refreshed) = admin.post(&format!("/clients/{client_id}/saml-metadata"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["saml"]["requests_signed"], true);
    assert_eq!(refreshed["version"], updated["version"].as_i64().unwrap() + 1);
    let (status, _, problem) =
        admin.post(&format!("/clients/{client_id}/saml-metadata"), json!({"metadata": "<kein/>"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem.to_string().contains("SPSSODescriptor"), "{problem}");

    // The daily refresh does the same for every SP with a metadata URL, as the system, audited:
    // an encryption key removed by hand comes back from the metadata.
    let (etag, mut config) = client_config(&admin, &client_id).await;
    config["saml"]["encryption_certificate"] = Value::Null;
    let (status, _, updated) = admin.put(&format!("/clients/{client_id}"), config, &etag).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert!(updated["saml"].get("encryption_certificate").is_none_or(Value::is_null), "{updated}");
    let outcome = server::refresh_saml_metadata(&server.state).await.unwrap();
    assert_eq!((outcome.changed, outcome.failed), (1, 0), "{outcome:?}");
    let (_, _, after) = admin.get(&format!("/clients/{client_id}")).await;
    assert_eq!(after["saml"]["encryption_certificate"], refreshed["saml"]["encryption_certificate"]);
    let (_, _, audit) = admin.get("/audit").await;
    assert!(audit.to_string().contains("saml-metadata-refresh"), "audited as the system: {audit}");
    let outcome = server::refresh_saml_metadata(&server.state).await.unwrap();
    assert_eq!((outcome.changed, outcome.unchanged), (0, 1), "nothing new the second time");

    // Promotion to production holds the SP to production's rules: its http ACS is refused.
    let (status, _, refused) = admin.post(&format!("/clients/{client_id}/promote"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused.to_string().contains("saml.assertion_consumer_services[0]")
            && refused.to_string().contains("https in production"),
        "{refused}"
    );

    // ForceAuthn: the session is not enough, the login page comes again.
    let response = erika.get(format!("{}/login?force=1", sp.base)).send().await.unwrap();
    let url = response.url().to_string();
    let html = response.text().await.unwrap();
    let (status, posted) = log_in_on(&erika, &html, &url, "erika.saml").await;
    assert_eq!(status, StatusCode::OK);
    let (status, account) = verdict(&erika, &posted).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["name_id"], persistent.as_str(), "the same pairwise NameID again");

    // "hoch" passively cannot be met with a password login: NoAuthnContext. Not passively, the
    // ID card is offered (step-up).
    let (_, html) = page(&erika, &format!("{}/login?passive=1&context=hoch&comparison=minimum", sp.base)).await;
    let (status, error) = verdict(&erika, &html).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.to_string().contains("NoAuthnContext"), "{error}");
    let response = erika.get(format!("{}/login?context=hoch&comparison=minimum", sp.base)).send().await.unwrap();
    let url = response.url().clone();
    assert!(url.path().ends_with("/test/eid"), "step-up to the ID card: {url}");
    assert!(url.query().unwrap_or_default().contains("stufe=hoch"), "{url}");
    let back = url.query_pairs().find(|(k, _)| k == "return_to").expect("the way back").1.into_owned();
    assert!(back.starts_with("/saml/weiter?anfrage="), "{back}");
    // Erika links her ID card (the test eID service's specimen card): her session reaches
    // "hoch", and the waiting request is answered with it.
    let (_, compare, _) = crate::eid::through_test_service(&erika, &issuer, "hochstufen", "/konto", 0).await;
    let (status, _, linked) = crate::citizen::post(
        &erika,
        &format!("{issuer}/konto/ausweis"),
        &[("csrf", &csrf(&compare)), ("city", "own"), ("street", "own")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    let (status, html) = page(&erika, &format!("{issuer}{back}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, account) = verdict(&erika, &html).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["authn_context"], "hoch", "stepped up with the ID card");

    // IsPassive without a session: NoPassive, no page.
    let stranger = browser();
    let (status, html) = page(&stranger, &format!("{}/login?passive=1", sp.base)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, error) = verdict(&stranger, &html).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error.to_string().contains("NoPassive"), "{error}");

    // Single Logout: the SP's signed LogoutRequest ends the session; the SP verifies our answer.
    let to_idp = no_redirects.get(format!("{}/logout", sp.base)).send().await.unwrap();
    let logout_request = to_idp.headers()["location"].to_str().unwrap().to_owned();
    assert!(logout_request.contains("/saml/slo?SAMLRequest="), "{logout_request}");
    let response = erika.get(&logout_request).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let logout: Value = response.json().await.unwrap();
    assert_eq!(logout["success"], true, "{logout}");
    let response = erika.get(format!("{issuer}/konto")).send().await.unwrap();
    assert!(response.url().path().ends_with("/anmelden"), "logged out: {}", response.url());
    let (status, html) = page(&erika, &logout_request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a LogoutRequest counts once");
    assert!(html.contains("bereits verwendet"), "{html}");

    drop(sp);
    server.stop().await;
}

/// Two nodes behind one issuer on PostgreSQL and Redis: the AuthnRequest arrives at one node,
/// the login, the consent and the Response happen on the other; the request ID, once used, is
/// refused on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saml_login_continues_on_the_other_node() {
    let Some(python) = python() else { return };
    let Some(backends) = Backends::shared("saml on two nodes").await else { return };
    let smtp = SmtpSink::start().await;
    let (a, b) = crate::support::two_nodes(&backends, &smtp.url).await;
    let issuer = format!("{}/test", a.base_url);
    let on_b = |path: &str| format!("{}{path}", b.base_url);
    let sp = ServiceProvider::start(&python, &format!("{issuer}/saml/metadata"));
    bauportal(&operator(&a).await, "bauamt-zwei-knoten", &sp).await;

    let erika = browser();
    register_activated(&erika, &issuer, &smtp, "erika.zwei", "erika.zwei@example.de").await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let to_idp = no_redirects.get(format!("{}/login", sp.base)).send().await.unwrap();
    let request_url = to_idp.headers()["location"].to_str().unwrap().to_owned();
    // Node A checks and parks the request …
    let parked = no_redirects.get(&request_url).send().await.unwrap();
    assert_eq!(parked.status(), StatusCode::SEE_OTHER);
    let back = parked.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with("/test/anmelden?return_to=%2Fsaml%2Fweiter"), "to the login: {back}");
    // … node B continues it: login, consent, Response.
    let response = erika.get(on_b(&back)).send().await.unwrap();
    let url = response.url().to_string();
    let html = response.text().await.unwrap();
    assert!(url.starts_with(&b.base_url), "{url}");
    let (status, consent) = log_in_on(&erika, &html, &url, "erika.zwei").await;
    assert_eq!(status, StatusCode::OK);
    let form =
        [("csrf", csrf(&consent)), ("request", hidden(&consent, "request").unwrap()), ("decision", "allow".into())];
    // The consent page's answer reaches node A again.
    let response = erika.post(format!("{issuer}/saml/zustimmung")).form(&form).send().await.unwrap();
    let (status, account) = verdict(&erika, &response.text().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["attributes"]["given_name"], json!(["Erika"]));
    // The request, replayed at node B, is refused there too.
    let replayed = request_url.replacen(&a.base_url, &b.base_url, 1);
    let (status, html) = page(&erika, &replayed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("bereits verwendet"), "{html}");

    drop(sp);
    b.stop().await;
    a.stop().await;
}

/// An answer that fails on our side puts its request back: here the transfer log refuses the
/// write (a CHECK constraint that nothing meets, added to PostgreSQL under the running node), the
/// citizen sees the failure and no Response; once the log takes writes again, going back to
/// `/saml/weiter` answers the same request, and the SP accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saml_answer_that_failed_on_our_side_is_answered_when_the_citizen_tries_again() {
    let Some(python) = python() else { return };
    // PostgreSQL: a constraint can be added under the running node.
    let Some(backends) = Backends::shared("saml answer put back after a failure").await else { return };
    let smtp = SmtpSink::start().await;
    let server = TestServer::start(&backends, |c| c.mail.smtp_url = Some(smtp.url.as_str().into())).await;
    let issuer = format!("{}/test", server.base_url);
    let sp = ServiceProvider::start(&python, &format!("{issuer}/saml/metadata"));
    bauportal(&operator(&server).await, "bauamt-nochmal", &sp).await;

    let erika = browser();
    register_activated(&erika, &issuer, &smtp, "erika.nochmal", "erika.nochmal@example.de").await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let to_idp = no_redirects.get(format!("{}/login", sp.base)).send().await.unwrap();
    let request_url = to_idp.headers()["location"].to_str().unwrap().to_owned();
    let response = erika.get(&request_url).send().await.unwrap();
    let url = response.url().to_string();
    let html = response.text().await.unwrap();
    let resume = format!("{issuer}{}", hidden(&html, "return_to").expect("the way back"));
    let (status, consent) = log_in_on(&erika, &html, &url, "erika.nochmal").await;
    assert_eq!(status, StatusCode::OK);

    let psql = |statement: &str| {
        let output = Command::new("psql").args(["-d", &backends.database.url, "-qc", statement]).output().unwrap();
        assert!(output.status.success(), "{statement}: {}", String::from_utf8_lossy(&output.stderr));
    };
    psql("ALTER TABLE data_transfers ADD CONSTRAINT fault_injected CHECK (false) NOT VALID");
    let form =
        [("csrf", csrf(&consent)), ("request", hidden(&consent, "request").unwrap()), ("decision", "allow".into())];
    let response = erika.post(format!("{issuer}/saml/zustimmung")).form(&form).send().await.unwrap();
    let status = response.status();
    let failed = response.text().await.unwrap();
    assert!(status.is_server_error(), "{status}: {failed}");
    assert!(!failed.contains("SAMLResponse"), "no Response without the transfer logged: {failed}");

    psql("ALTER TABLE data_transfers DROP CONSTRAINT fault_injected");
    let response = erika.get(&resume).send().await.unwrap();
    let (status, account) = verdict(&erika, &response.text().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["attributes"]["given_name"], json!(["Erika"]));
    // Answered now: the same way back has nothing left to answer.
    let (status, _) = page(&erika, &resume).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    drop(sp);
    server.stop().await;
}

/// Whatever arrives at the SAML endpoints, the answer is a page in German with a 4xx status,
/// never a redirect to anywhere and never a 5xx (no SP is needed for this).
#[tokio::test]
async fn bad_input_at_the_saml_endpoints_gets_a_german_page() {
    use base64::Engine as _;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let issuer = format!("{}/test", server.base_url);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let deflated = |xml: &str| {
        use std::io::Write as _;
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(xml.as_bytes()).unwrap();
        urlencoding(&base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap()))
    };
    let unknown_sp = deflated(&format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="x1" Version="2.0" IssueInstant="{}"><saml:Issuer>https://unknown.example/sp</saml:Issuer></samlp:AuthnRequest>"#,
        saml_core::instant(time::OffsetDateTime::now_utc())
    ));
    let dtd = deflated(r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#);
    // Nine thousand levels in 63 KiB: refused before a parser recurses into them.
    let deep = deflated(&format!("{}{}", "<a>".repeat(9000), "</a>".repeat(9000)));
    let cases = [
        (format!("{issuer}/saml/sso"), "unvollständig oder fehlerhaft"),
        (format!("{issuer}/saml/sso?SAMLRequest=%%%"), "unvollständig oder fehlerhaft"),
        (format!("{issuer}/saml/sso?SAMLRequest=bm90IGRlZmxhdGU%3D"), "unvollständig oder fehlerhaft"),
        (format!("{issuer}/saml/sso?SAMLRequest={dtd}"), "unvollständig oder fehlerhaft"),
        (format!("{issuer}/saml/sso?SAMLRequest={deep}"), "unvollständig oder fehlerhaft"),
        (format!("{issuer}/saml/sso?SAMLRequest={unknown_sp}&RelayState=x"), "nicht bekannt"),
        (format!("{issuer}/saml/weiter"), "abgelaufen"),
        (format!("{issuer}/saml/weiter?anfrage=gibt-es-nicht"), "abgelaufen"),
        (format!("{issuer}/saml/anmelden"), "unvollständig oder fehlerhaft"),
        (format!("{issuer}/saml/anmelden?sp=https%3A%2F%2Funknown.example%2Fsp"), "nicht bekannt"),
        (format!("{issuer}/saml/slo?SAMLRequest={unknown_sp}"), "unvollständig oder fehlerhaft"),
    ];
    for (url, text) in cases {
        let response = http.get(&url).send().await.unwrap();
        let status = response.status();
        let html = response.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {html}");
        assert!(html.contains(text), "{url}: {text:?} in {html}");
    }
    for body in ["", "SAMLRequest=", "SAMLRequest=%%%", "SAMLRequest=PHgvPg%3D%3D"] {
        let response = http
            .post(format!("{issuer}/saml/sso"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let response = http.post(format!("{issuer}/saml/zustimmung")).form(&[("request", "x")]).send().await.unwrap();
    assert!(response.status().is_client_error(), "a consent answer without CSRF token: {}", response.status());
    server.stop().await;
}
