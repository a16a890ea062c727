//! Organisations (company accounts) over real HTTP: one citizen creates an organisation and
//! confirms its contact address by the mailed link, invites a second citizen, who accepts after
//! logging in and acts for it towards an authority's service whose relying party is built on the
//! `openidconnect` crate: the consent page asks "für wen", the ID token and userinfo carry the
//! organisation's claims with a pairwise id, the choice is remembered only when ticked, the
//! transfer logs of the person and of the organisation name the release. An operator verifies
//! the register entry and suspends the organisation through the admin API (audited); a
//! suspended organisation is no longer released. The last administrator cannot delete their
//! account.

use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IdTokenFields,
    IssuerUrl, Nonce, PkceCodeChallenge, RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse,
    TokenResponse,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
        CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
    },
};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    admin::operator,
    browser::{Audit, Driver, axe_source, chromium, click, tool, type_into, wait_for, wait_path, wait_url},
    citizen::{PASSWORD, csrf, log_in, page, post, register_activated},
    mail::SmtpSink,
    support::{Backends, TestServer, http_client},
};

const CALLBACK: &str = "https://formulare.example/callback";

/// The `organization` claim next to the standard ones, as a relying party declares it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrganisationClaims {
    #[serde(default)]
    organization: Option<Value>,
}

impl AdditionalClaims for OrganisationClaims {}

type IdTokenFieldsWithOrganisation = IdTokenFields<
    OrganisationClaims,
    openidconnect::EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<IdTokenFieldsWithOrganisation, CoreTokenType>;
type Rp = openidconnect::Client<
    OrganisationClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A browser that keeps cookies and stops at the client's callback (nothing listens there).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().host_str() == Some("formulare.example") { attempt.stop() } else { attempt.follow() }
        }))
        .build()
        .unwrap()
}

/// A production client of a new authority that may receive the given name and the organisation.
async fn authority_client(server: &TestServer) -> (String, String) {
    use oidc_core::{ClaimName, TrustLevel};
    use std::collections::BTreeSet;
    use tenant_registry::{Actor, Branding, ClaimRule, ClientSettings, GrantType, NewTenant, OperatorFlags};
    let registry = server.state.registry();
    let actor = Actor::System("test");
    let claims = ["given_name", "organization"];
    let tenant = registry
        .create_tenant(
            &actor,
            NewTenant {
                slug: "gewerbeamt-koeln".into(),
                name: "Stadt Köln".into(),
                contact_email: "it@koeln.example".into(),
                branding: Branding { display_name: "Stadt Köln".into(), logo_url: None },
                allowed_claims: claims.iter().filter_map(|c| ClaimName::parse(c)).collect(),
                min_trust_level: TrustLevel::Normal,
                sector: None,
            },
        )
        .await
        .unwrap();
    let mut settings = ClientSettings::confidential("Gewerbeanmeldung", vec![url::Url::parse(CALLBACK).unwrap()]);
    settings.grant_types = BTreeSet::from([GrantType::AuthorizationCode]);
    settings.purpose =
        Some(tenant_registry::Purpose { de: "Gewerbeanmeldung".into(), en: Some("Business registration".into()) });
    settings.scopes = ["openid", "profile", "organization"].iter().filter_map(|s| oidc_core::Scope::parse(s)).collect();
    settings.claims = claims
        .iter()
        .filter_map(|c| ClaimName::parse(c))
        .map(|claim| ClaimRule { required: claim.as_str() == "given_name", claim })
        .collect();
    let flags = OperatorFlags { first_party: false, admin_role: None };
    let (client, secret) =
        registry.create_client(&actor, tenant.id, oidc_core::Environment::Production, settings, flags).await.unwrap();
    (client.client_id.to_string(), secret.expect("a confidential client's secret").expose().to_owned())
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name}")) + marker.len();
    html[start..].split('"').next().unwrap().replace("&#x2f;", "/").replace("&amp;", "&").replace("&quot;", "\"")
}

/// The organisation id in a page's hidden `id` field.
fn organisation_id(html: &str) -> String {
    hidden(html, "id")
}

/// One code flow of `rp` in `citizen`'s session: the consent page answered with `answer` if it
/// comes (else `None` is passed); returns the verified ID token's organisation claim and the
/// userinfo response.
async fn code_flow(
    citizen: &reqwest::Client,
    base: &str,
    rp: &Rp,
    answer: Option<&[(&str, &str)]>,
) -> (Option<Value>, Value, bool) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("organization".into()))
        // The organisation in the ID token too (OIDC Core §5.5).
        .add_extra_param("claims", r#"{"id_token":{"organization":null}}"#)
        .set_pkce_challenge(challenge)
        .url();
    let response = citizen.get(url.as_str()).send().await.unwrap();
    let mut asked = false;
    let response = if response.status() == StatusCode::OK {
        let html = response.text().await.unwrap();
        assert!(html.contains("Für wen handeln Sie?"), "the consent page asks for whom: {html}");
        asked = true;
        let mut form = vec![("csrf", csrf(&html)), ("request", hidden(&html, "request")), ("decision", "allow".into())];
        form.extend(answer.expect("an answer to the consent page").iter().map(|(k, v)| (*k, (*v).to_owned())));
        citizen.post(format!("{base}/zustimmung")).form(&form).send().await.unwrap()
    } else {
        response
    };
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "back to the client");
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http_client())
        .await
        .expect("the code is redeemed");
    let claims = tokens.id_token().expect("an ID token").claims(&rp.id_token_verifier(), &nonce).expect("verifies");
    let in_id_token = claims.additional_claims().organization.clone();
    let userinfo: Value = reqwest::Client::new()
        .get(format!("{base}/userinfo"))
        .bearer_auth(openidconnect::OAuth2TokenResponse::access_token(&tokens).secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (in_id_token, userinfo, asked)
}

#[tokio::test]
async fn a_citizen_acts_for_an_organisation_that_another_created_and_invited_them_to() {
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| {
        c.mail.smtp_url = Some(smtp.url.as_str().into());
        // The creator registers with a password here; production keeps "hoch" (the ID card).
        c.accounts.organisation_trust_level = oidc_core::TrustLevel::Normal;
    })
    .await;
    let base = server.base_url.clone();
    let (client_id, secret) = authority_client(&server).await;

    // Anna creates the organisation; mistakes come back at their fields.
    let anna = browser();
    register_activated(&anna, &base, &smtp, "anna.admin", "anna@example.de").await;
    log_in(&anna, &base, "anna.admin").await;
    let (status, form) = page(&anna, &format!("{base}/konto/organisationen/neu")).await;
    assert_eq!(status, StatusCode::OK);
    let mut fields = vec![
        ("csrf", csrf(&form)),
        ("name", "Bäckerei Mustermann GmbH".to_owned()),
        ("legal_form", "gmbh".into()),
        ("register_kind", "HRB".into()),
        ("register_court", "Amtsgericht Köln".into()),
        ("register_number", "12345".into()),
        ("street", "Heidestraße".into()),
        ("house_number", "17".into()),
        ("postal_code", "5114".into()),
        ("city", "Köln".into()),
        ("country", "DE".into()),
        ("contact_email", "info@baeckerei.example".into()),
    ];
    let fields_ref: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = post(&anna, &format!("{base}/konto/organisationen/neu"), &fields_ref).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("gültige Postleitzahl"), "{html}");
    fields[8].1 = "51147".into();
    let fields_ref: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, url, html) = post(&anna, &format!("{base}/konto/organisationen/neu"), &fields_ref).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(url.contains("/konto/organisation?id="), "{url}");
    assert!(html.contains("Die Organisation ist angelegt") && html.contains("noch nicht bestätigt"), "{html}");
    let org = organisation_id(&html);
    let confirmation = smtp.mail_to("info@baeckerei.example", 0).await;
    let (status, html) = page(&reqwest::Client::new(), &confirmation.link()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Kontaktadresse bestätigt"), "{html}");

    // Anna invites Ben; Ben follows the link, logs in, accepts.
    let ben = browser();
    register_activated(&ben, &base, &smtp, "ben.member", "ben@example.de").await;
    let (_, detail) = page(&anna, &format!("{base}/konto/organisation?id={org}")).await;
    let invite =
        [("csrf", csrf(&detail)), ("id", org.clone()), ("email", "ben@example.de".into()), ("role", "member".into())];
    let invite: Vec<(&str, &str)> = invite.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = post(&anna, &format!("{base}/konto/organisation/einladen"), &invite).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Die Einladung an ben@example.de ist verschickt"), "{html}");
    let invitation = smtp.mail_to("ben@example.de", 1).await;
    assert!(invitation.subject.contains("Einladung"), "{}", invitation.subject);
    let (_, html) = page(&ben, &invitation.link()).await;
    assert!(html.contains("name=\"password\""), "the invitation asks for a login first");
    let login = [
        ("csrf", csrf(&html)),
        ("username", "ben.member".into()),
        ("password", PASSWORD.into()),
        ("return_to", hidden(&html, "return_to")),
    ];
    let login: Vec<(&str, &str)> = login.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = post(&ben, &format!("{base}/anmelden"), &login).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Einladung annehmen"), "{html}");
    let accept = [("csrf", csrf(&html)), ("token", hidden(&html, "token"))];
    let accept: Vec<(&str, &str)> = accept.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, url, html) = post(&ben, &format!("{base}/organisationen/einladung"), &accept).await;
    assert_eq!(status, StatusCode::OK);
    assert!(url.contains(&org) && html.contains("Bäckerei Mustermann GmbH") && html.contains("Mitglied"), "{html}");
    let (status, _, _) = post(&ben, &format!("{base}/organisationen/einladung"), &accept).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an invitation works once");

    // Ben acts for it towards the authority's service.
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(base.clone()).unwrap(), &http_client()).await.unwrap();
    let rp: Rp = openidconnect::Client::from_provider_metadata(
        metadata,
        ClientId::new(client_id.clone()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
    let for_it: &[(&str, &str)] = &[("acting_for", org.as_str())];
    let (in_id_token, userinfo, asked) = code_flow(&ben, &base, &rp, Some(for_it)).await;
    assert!(asked);
    let organization = userinfo["organization"].clone();
    assert_eq!(organization["name"], "Bäckerei Mustermann GmbH", "{userinfo}");
    assert_eq!(organization["legal_form"], "gmbh");
    assert_eq!(organization["register"], json!({"court": "Amtsgericht Köln", "type": "HRB", "number": "12345"}));
    assert_eq!(organization["role"], "member");
    assert_eq!(organization["email_verified"], true);
    assert_eq!(organization["address"]["locality"], "Köln");
    let pairwise = organization["id"].as_str().expect("a pairwise id").to_owned();
    assert_ne!(pairwise, org, "never the internal id");
    assert!(organization.get("verified_claims").is_none(), "nothing verified yet");
    assert_eq!(in_id_token.as_ref().map(|o| &o["id"]), Some(&organization["id"]), "in the ID token on request");
    assert_eq!(userinfo["given_name"], "Erika");

    // Not remembered: asked again; "für mich selbst" releases no organisation.
    let myself: &[(&str, &str)] = &[("acting_for", "self"), ("remember_choice", "1")];
    let (in_id_token, userinfo, asked) = code_flow(&ben, &base, &rp, Some(myself)).await;
    assert!(asked, "asked again: the first choice was not to be remembered");
    assert!(userinfo.get("organization").is_none() && in_id_token.is_none(), "{userinfo}");
    // Remembered now: no consent page.
    let (_, userinfo, asked) = code_flow(&ben, &base, &rp, None).await;
    assert!(!asked && userinfo.get("organization").is_none(), "remembered: for myself");
    let remember_org: &[(&str, &str)] = &[("acting_for", org.as_str()), ("remember_choice", "1")];
    // prompt=consent is the way to choose again; here: withdraw and ask anew.
    let (_, transfers) = page(&ben, &format!("{base}/konto/uebermittlungen")).await;
    assert!(transfers.contains("für Bäckerei Mustermann GmbH"), "the person's log names the organisation");
    let withdraw = [("csrf", csrf(&transfers)), ("client_id", client_id.clone())];
    let withdraw: Vec<(&str, &str)> = withdraw.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post(&ben, &format!("{base}/konto/zustimmungen/widerrufen"), &withdraw).await;
    let (_, userinfo, asked) = code_flow(&ben, &base, &rp, Some(remember_org)).await;
    assert!(asked);
    assert_eq!(userinfo["organization"]["id"], pairwise.as_str(), "the pairwise id is stable");
    let (_, userinfo, asked) = code_flow(&ben, &base, &rp, None).await;
    assert!(!asked && userinfo["organization"]["name"] == "Bäckerei Mustermann GmbH", "remembered: the organisation");

    // Anna (administrator) sees every transfer of the organisation's data, with the person.
    let (_, detail) = page(&anna, &format!("{base}/konto/organisation?id={org}")).await;
    assert!(detail.contains("Übermittlungen der Daten der Organisation"), "{detail}");
    assert!(
        detail.contains("Stadt Köln – Gewerbeanmeldung") && detail.contains("Organisation, für die Sie handeln"),
        "{detail}"
    );
    let (_, member_view) = page(&ben, &format!("{base}/konto/organisation?id={org}")).await;
    assert!(!member_view.contains("Übermittlungen der Daten der Organisation"), "members do not see them");

    // An operator verifies the register entry and suspends the organisation (both audited).
    let admin = operator(&server).await;
    let (status, _, listed) = admin.get("/organisations").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(listed["items"].as_array().unwrap().iter().any(|o| o["id"] == org.as_str()), "{listed}");
    let (status, _, problem) =
        admin.post(&format!("/organisations/{org}/verify"), json!({"field": "register", "evidence": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (status, _, verified) = admin
        .post(
            &format!("/organisations/{org}/verify"),
            json!({"field": "register", "evidence": "Registerauszug geprüft"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!(verified["verifications"][0]["evidence"], "Registerauszug geprüft");
    let (_, userinfo, _) = code_flow(&ben, &base, &rp, None).await;
    let verified = &userinfo["organization"]["verified_claims"][0];
    assert_eq!(verified["verification"]["evidence"][0]["description"], "Registerauszug geprüft", "{userinfo}");
    assert_eq!(verified["claims"]["register"]["number"], "12345", "{userinfo}");
    let (status, _, suspended) = admin.post(&format!("/organisations/{org}/suspend"), json!({})).await;
    assert_eq!((status, suspended["status"].as_str()), (StatusCode::OK, Some("suspended")), "{suspended}");
    let (_, userinfo, _) = code_flow(&ben, &base, &rp, None).await;
    assert!(userinfo.get("organization").is_none(), "a suspended organisation is not released: {userinfo}");
    let (_, _, audit) = admin.get("/audit?action=organisation.suspend").await;
    assert_eq!(audit["items"][0]["target"], org.as_str(), "{audit}");
    let (status, _, _) = admin.get("/organisations/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Anna, the only administrator, cannot delete her account; the page says how.
    let (_, form) = page(&anna, &format!("{base}/konto/loeschen")).await;
    let delete = [("csrf", csrf(&form)), ("password", PASSWORD.to_owned())];
    let delete: Vec<(&str, &str)> = delete.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = post(&anna, &format!("{base}/konto/loeschen"), &delete).await;
    assert_eq!(status, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("einzige Person in der Administration von Bäckerei Mustermann GmbH"), "{html}");
}

const CHROMIUM_TEST: &str = "organisations::organisation_pages_in_chromium_with_axe";

async fn chromium_log_in(browser: &fantoccini::Client, base: &str, username: &str) {
    browser.goto(&format!("{base}/anmelden")).await.unwrap();
    type_into(browser, "username", username).await;
    type_into(browser, "password", PASSWORD).await;
    click(browser, "main form[action$='/anmelden'] button[type=submit]").await;
    wait_path(browser, "/konto").await;
}

async fn chromium_log_out(browser: &fantoccini::Client, base: &str) {
    browser.goto(&format!("{base}/konto")).await.unwrap();
    click(browser, "header form button").await;
    wait_for(browser, "Sie sind abgemeldet.").await;
}

/// The same story in real headless Chromium, typing into the forms, with every page checked by
/// axe-core and for its layout: two citizens, the invitation, the consent page's choice, and
/// the relying party (`openidconnect`) reading the organisation from the ID token.
#[tokio::test]
async fn organisation_pages_in_chromium_with_axe() {
    let (Some(chromium_binary), Some(chromedriver)) =
        (tool("CHROME_BIN", "/usr/bin/chromium"), tool("CHROMEDRIVER", "/usr/bin/chromedriver"))
    else {
        return storage::testing::skip(
            CHROMIUM_TEST,
            "Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)",
        );
    };
    let Some(axe) = axe_source() else {
        return storage::testing::skip(
            CHROMIUM_TEST,
            "axe-core is not installed (npm ci in integration-tests/browser)",
        );
    };
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| {
        c.mail.smtp_url = Some(smtp.url.as_str().into());
        c.accounts.organisation_trust_level = oidc_core::TrustLevel::Normal;
    })
    .await;
    let base = server.base_url.clone();
    let (client_id, secret) = authority_client(&server).await;
    register_activated(
        &reqwest::Client::builder().cookie_store(true).build().unwrap(),
        &base,
        &smtp,
        "anna.admin",
        "anna@example.de",
    )
    .await;
    register_activated(
        &reqwest::Client::builder().cookie_store(true).build().unwrap(),
        &base,
        &smtp,
        "ben.member",
        "ben@example.de",
    )
    .await;

    let driver = Driver::start(&chromedriver).await;
    let browser = chromium(&chromium_binary, &driver).await;
    let mut audit = Audit::new(axe, "organisations");

    // Anna creates the organisation.
    chromium_log_in(&browser, &base, "anna.admin").await;
    click(&browser, "main a[href$='/konto/organisationen']").await;
    wait_for(&browser, "Sie gehören noch zu keiner Organisation.").await;
    audit.check(&browser, "my organisations, none").await;
    click(&browser, "main a[href$='/konto/organisationen/neu']").await;
    wait_for(&browser, "Registereintrag").await;
    audit.check(&browser, "create organisation").await;
    for (id, value) in [
        ("name", "Bäckerei Mustermann GmbH"),
        ("register_court", "Amtsgericht Köln"),
        ("register_number", "12345"),
        ("street", "Heidestraße"),
        ("house_number", "17"),
        ("postal_code", "5114"),
        ("city", "Köln"),
        ("contact_email", "info@baeckerei.example"),
    ] {
        type_into(&browser, id, value).await;
    }
    browser.find(fantoccini::Locator::Css("#register_kind option[value=HRB]")).await.unwrap().click().await.unwrap();
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "gültige Postleitzahl").await;
    audit.check(&browser, "create organisation with errors").await;
    type_into(&browser, "postal_code", "51147").await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Die Organisation ist angelegt").await;
    audit.check(&browser, "organisation, administrator's view").await;
    type_into(&browser, "invite-email", "ben@example.de").await;
    click(&browser, "main form[action$='/einladen'] button").await;
    wait_for(&browser, "Die Einladung an ben@example.de ist verschickt").await;
    chromium_log_out(&browser, &base).await;

    // Ben accepts after logging in.
    let invitation = smtp.mail_to("ben@example.de", 1).await;
    browser.goto(&invitation.link()).await.unwrap();
    type_into(&browser, "username", "ben.member").await;
    type_into(&browser, "password", PASSWORD).await;
    click(&browser, "main form[action$='/anmelden'] button[type=submit]").await;
    wait_for(&browser, "Einladung annehmen").await;
    audit.check(&browser, "accept invitation").await;
    click(&browser, "main form button[type=submit]").await;
    wait_for(&browser, "Mitglied").await;
    audit.check(&browser, "organisation, member's view").await;

    // Ben acts for it: the consent page's choice, in Chromium; the relying party reads the ID token.
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(base.clone()).unwrap(), &http_client()).await.unwrap();
    let rp: Rp = openidconnect::Client::from_provider_metadata(
        metadata,
        ClientId::new(client_id.clone()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = rp
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("organization".into()))
        .add_extra_param("claims", r#"{"id_token":{"organization":null}}"#)
        .set_pkce_challenge(challenge)
        .url();
    browser.goto(url.as_str()).await.unwrap();
    wait_for(&browser, "Für wen handeln Sie?").await;
    audit.check(&browser, "consent with the choice of organisation").await;
    click(&browser, "#acting-1").await;
    click(&browser, "main form button[value=allow]").await;
    let callback = wait_url(&browser, "code=").await;
    let code = callback.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http_client())
        .await
        .expect("the code is redeemed");
    let claims = tokens.id_token().expect("an ID token").claims(&rp.id_token_verifier(), &nonce).expect("verifies");
    let organization = claims.additional_claims().organization.clone().expect("the organisation in the ID token");
    assert_eq!(organization["name"], "Bäckerei Mustermann GmbH");
    assert_eq!(organization["role"], "member");
    chromium_log_out(&browser, &base).await;

    // Anna sees the release on the organisation's page.
    chromium_log_in(&browser, &base, "anna.admin").await;
    browser.goto(&format!("{base}/konto/organisationen")).await.unwrap();
    click(&browser, "main table a").await;
    wait_for(&browser, "Stadt Köln – Gewerbeanmeldung").await;
    audit.check(&browser, "organisation with its transfers").await;

    browser.close().await.unwrap();
    assert!(audit.problems.is_empty(), "accessibility problems:\n{}", audit.problems.join("\n"));
}
