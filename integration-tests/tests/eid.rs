//! The eID flows over real HTTP through the test eID service of the test environment: register
//! with the card, log in with it, the refresh address bound to its browser and used once, step-up
//! of an OIDC request to "hoch" with `acr`/`amr` in the ID token, and raising a password account
//! by linking the card with the differing data side by side.

use base64::Engine as _;
use reqwest::{Client, StatusCode};

use crate::{
    citizen::{PASSWORD, browser, csrf, page, post, register_activated, rp_browser},
    mail::SmtpSink,
    support::{Backends, TestServer, first_party_client},
};

pub(crate) const CALLBACK: &str = "http://127.0.0.1:3000/callback";

/// A second test identity besides the specimen card, so two accounts can each have a card.
fn second_card() -> eid_bridge::TestIdentity {
    eid_bridge::TestIdentity {
        restricted_id: "7d1e0c5b2a4f4e8d9c3b6a5f1e2d7c8b9a0f1e2d3c4b5a697887766554433221".into(),
        ..eid_bridge::TestIdentity::specimen()
    }
}

/// Goes from the eID start page (`zweck`) through the test service with identity `n` to the
/// refresh address; returns the final page's URL and HTML, and the flow's reference.
pub(crate) async fn through_test_service(
    client: &Client,
    issuer: &str,
    zweck: &str,
    return_to: &str,
    n: usize,
) -> (String, String, String) {
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    let (status, start) = page(client, &format!("{issuer}/eid?zweck={zweck}&return_to={encoded}")).await;
    assert_eq!(status, StatusCode::OK, "{start}");
    assert!(start.contains("Zur Ausweis App") && start.contains("Voraussetzungen"), "{start}");
    assert!(start.contains("Test-eID-Dienst"), "a test system says so");
    let form = |checked: bool| {
        let mut form = vec![("csrf", csrf(&start)), ("zweck", zweck.to_owned()), ("return_to", return_to.to_owned())];
        if checked {
            form.extend(["app", "reader", "pin"].map(|c| (c, "ja".to_owned())));
        }
        form
    };
    let response = client.post(format!("{issuer}/eid")).form(&form(false)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "the prerequisites must be confirmed");
    assert!(response.text().await.unwrap().contains("Bitte bestätigen Sie alle Voraussetzungen"));
    let response = client.post(format!("{issuer}/eid")).form(&form(true)).send().await.unwrap();
    let url = response.url().clone();
    let html = response.text().await.unwrap();
    assert!(url.path().ends_with("/eid/test-dienst"), "{url}");
    let reference = url.query_pairs().find(|(k, _)| k == "ref").unwrap().1.into_owned();
    assert!(html.contains("Nur in der Testumgebung") && html.contains("24727&#x2f;eID-Client?tcTokenURL="), "{html}");

    let answer = |pin: &str| {
        vec![
            ("csrf", csrf(&html)),
            ("ref", reference.clone()),
            ("identity", n.to_string()),
            ("pin", pin.to_owned()),
            ("action", "identify".to_owned()),
        ]
    };
    let (status, _, wrong) = post_owned(client, &format!("{issuer}/eid/test-dienst"), &answer("000000")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(wrong.contains("Die PIN ist falsch"), "{wrong}");
    let (status, url, html) = post_owned(client, &format!("{issuer}/eid/test-dienst"), &answer("123456")).await;
    assert_eq!(status, StatusCode::OK, "{url}: {html}");
    (url, html, reference)
}

async fn post_owned(client: &Client, url: &str, form: &[(&str, String)]) -> (StatusCode, String, String) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post(client, url, &form).await
}

/// The token endpoint's answer to a code of client `(id, secret)` (`client_secret_basic`).
pub(crate) async fn redeem(issuer: &str, (id, secret): (&str, &str), code: &str, verifier: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The authorization request of the `eid-portal` test client (code flow, PKCE) for `acr_values`.
pub(crate) fn eid_portal_authorize(
    issuer: &str,
    challenge: &oauth2::PkceCodeChallenge,
    acr_values: &str,
    prompt: &str,
) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "eid-portal"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("redirect_uri", CALLBACK),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("acr_values", acr_values),
            ("prompt", prompt),
        ])
        .finish();
    format!("{issuer}/authorize?{query}")
}

pub(crate) fn id_token_claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn register_and_log_in_with_the_card_step_up_and_link_a_card_to_a_password_account() {
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| {
        c.mail.smtp_url = Some(smtp.url.as_str().into());
        c.eid.test.test_identities.push(second_card());
    })
    .await;
    let issuer = format!("{}/test", server.base_url);

    // Production has no eID by default: the page says so.
    let (status, html) = page(&browser(), &format!("{}/eid?zweck=anmelden", server.base_url)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("nicht eingerichtet"));

    // Register with the card: step 1 shows the card's data and asks only for e-mail and username.
    let erika = browser();
    let (url, step1, reference) = through_test_service(&erika, &issuer, "registrieren", "/konto", 0).await;
    assert!(url.ends_with("/registrierung/ausweis"), "{url}");
    for shown in ["ERIKA", "MUSTERMANN", "GABLER", "12.08.1964", "HEIDESTRASSE 17", "KÖLN"] {
        assert!(step1.contains(shown), "{shown} from the card");
    }
    // The test service has nothing to offer for a finished or unknown flow.
    for reference in [reference.as_str(), "unbekannt"] {
        let (status, html) = page(&erika, &format!("{issuer}/eid/test-dienst?ref={reference}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reference}");
        assert!(html.contains("abgelaufen oder wurde bereits abgeschlossen"), "{html}");
    }
    // The refresh address works once, and only in the browser that started.
    let (status, again) = page(&erika, &format!("{issuer}/eid/ergebnis?ref={reference}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "used once: {again}");
    let form = [("csrf", csrf(&step1)), ("email", "erika.eid@example.de".into()), ("username", "erika.eid".into())];
    let (status, url, step2) = post_owned(&erika, &format!("{issuer}/registrierung/ausweis"), &form).await;
    assert_eq!(status, StatusCode::OK, "{step2}");
    assert!(url.ends_with("/registrierung/passwort"), "{url}");
    let password = [
        ("csrf", csrf(&step2)),
        ("password", PASSWORD.into()),
        ("password_confirmation", PASSWORD.into()),
        ("privacy", "accepted".into()),
    ];
    let (_, url, review) = post_owned(&erika, &format!("{issuer}/registrierung/passwort"), &password).await;
    assert!(url.ends_with("/registrierung/pruefen") && review.contains("MUSTERMANN"), "{url}");
    let (status, _, saved) =
        post(&erika, &format!("{issuer}/registrierung/pruefen"), &[("csrf", &csrf(&review))]).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (status, _) = page(&erika, &smtp.mail_to("erika.eid@example.de", 0).await.link()).await;
    assert_eq!(status, StatusCode::OK, "activated");

    // Log in with the card in a fresh browser: "Mein Konto" at level hoch, data eID-verified.
    let citizen = rp_browser();
    let (url, konto, _) = through_test_service(&citizen, &issuer, "anmelden", "/konto", 0).await;
    assert!(url.ends_with("/konto"), "{url}");
    assert!(konto.contains("erika.eid") && konto.contains("hoch"), "{konto}");
    assert!(konto.contains("mit dem Online-Ausweis bestätigt am"), "provenance shown: {konto}");

    // A stolen refresh address is useless in another browser.
    let thief = browser();
    let (_, start) = page(&citizen, &format!("{issuer}/eid?zweck=anmelden&return_to=/konto")).await;
    let mut form = vec![("csrf", csrf(&start)), ("zweck", "anmelden".to_owned()), ("return_to", "/konto".to_owned())];
    form.extend(["app", "reader", "pin"].map(|c| (c, "ja".to_owned())));
    let response = citizen.post(format!("{issuer}/eid")).form(&form).send().await.unwrap();
    let reference = response.url().query_pairs().find(|(k, _)| k == "ref").unwrap().1.into_owned();
    // The TC token (it carries the PSK) is handed out once.
    let (status, token) = page(&thief, &format!("{issuer}/eid/tc-token?ref={reference}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(token.contains("<SessionIdentifier>") && token.contains("<PSK>"), "{token}");
    assert!(
        token.contains(&format!("<RefreshAddress>{issuer}/eid/ergebnis?ref={reference}</RefreshAddress>")),
        "{token}"
    );
    let (status, _) = page(&thief, &format!("{issuer}/eid/tc-token?ref={reference}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a second fetch gets nothing");
    let (status, html) = page(&thief, &format!("{issuer}/eid/ergebnis?ref={reference}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("anderen Browser"));
    // Cancelling in the test service ends the flow without data.
    let test_page = response.text().await.unwrap();
    let cancel = [("csrf", csrf(&test_page)), ("ref", reference.clone()), ("action", "cancel".into())];
    let (status, _, html) = post_owned(&citizen, &format!("{issuer}/eid/test-dienst"), &cancel).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("abgebrochen"), "{html}");

    // An OIDC request for "hoch" with the eID session: acr hoch, amr eid.
    first_party_client(&server, "eid-portal", "eid-portal-secret-0123", CALLBACK, |_| {}).await;
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let authorize = |prompt: &str| eid_portal_authorize(&issuer, &challenge, "http://eidas.europa.eu/LoA/high", prompt);
    let response = citizen.get(authorize("")).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned();
    let tokens = redeem(&issuer, ("eid-portal", "eid-portal-secret-0123"), &code, verifier.secret()).await;
    let claims = id_token_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], "http://eidas.europa.eu/LoA/high", "asked in eIDAS words, answered in them");
    assert_eq!(claims["amr"], serde_json::json!(["eid"]));

    // A password account and a request for "hoch": step-up to the eID login, never a lower level.
    let pwd = rp_browser();
    register_activated(&pwd, &issuer, &smtp, "erika.pwd", "erika.pwd@example.de").await;
    crate::citizen::log_in(&pwd, &issuer, "erika.pwd").await;
    let response = pwd.get(authorize("")).send().await.unwrap();
    let url = response.url().to_string();
    let html = response.text().await.unwrap();
    assert!(url.contains("/eid?zweck=anmelden&stufe=hoch"), "{url}");
    assert!(html.contains("verlangt das Vertrauensniveau hoch"), "{html}");

    // ... the same account raises its level by linking the second test card: the differing
    // spellings side by side, the citizen keeps the own spelling of the city.
    let (url, compare, _) = through_test_service(&pwd, &issuer, "hochstufen", "/konto", 1).await;
    assert!(url.ends_with("/eid/ergebnis") || url.contains("/eid/ergebnis?"), "{url}");
    for shown in ["Köln", "KÖLN", "Heidestraße", "HEIDESTRASSE", "Im Ausweis"] {
        assert!(compare.contains(shown), "{shown} side by side: {compare}");
    }
    let (status, _, linked) = post(
        &pwd,
        &format!("{issuer}/konto/ausweis"),
        &[("csrf", &csrf(&compare)), ("city", "own"), ("street", "card")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    assert!(linked.contains("Vertrauensniveau hochgestuft"), "{linked}");
    let export: serde_json::Value =
        pwd.get(format!("{issuer}/konto/export")).send().await.unwrap().json().await.unwrap();
    assert_eq!((export["trust_level"].as_str(), export["id_card_linked"].as_bool()), (Some("hoch"), Some(true)));
    assert_eq!(export["master_data"]["given_names"]["source"], "eid", "{export}");
    let (_, konto) = page(&pwd, &format!("{issuer}/konto")).await;
    assert!(konto.contains("hoch") && konto.contains("Köln") && konto.contains("HEIDESTRASSE"), "{konto}");
    // Now the request for "hoch" is answered at once.
    let response = pwd.get(authorize("none")).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(CALLBACK) && location.contains("code="), "{location}");

    // The first card is taken: linking it to this account is refused.
    let (_, html, _) = through_test_service(&pwd, &issuer, "hochstufen", "/konto", 0).await;
    let (status, _, refused) = post(&pwd, &format!("{issuer}/konto/ausweis"), &[("csrf", &csrf(&html))]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.contains("bereits ein anderes Servicekonto"));
    server.stop().await;
}

/// A client of another authority in the test environment that asks for name, birth date,
/// address (required) and e-mail (optional), and shows a consent page.
async fn authority_client(server: &TestServer) {
    use oidc_core::{ClaimName, ClientId, Environment, Scope, TrustLevel};
    use std::collections::BTreeSet;
    use tenant_registry::{
        Actor, Branding, ClaimRule, ClientSecret, ClientSettings, GrantType, NewTenant, OperatorFlags,
    };
    let registry = server.state.registry();
    let actor = Actor::System("test");
    let claims = ["given_name", "family_name", "birthdate", "address", "email"];
    let tenant = registry
        .create_tenant(
            &actor,
            NewTenant {
                slug: "kreis-lippe".into(),
                name: "Kreis Lippe".into(),
                contact_email: "it@lippe.example".into(),
                branding: Branding { display_name: "Kreis Lippe".into(), logo_url: None },
                allowed_claims: claims.iter().filter_map(|c| ClaimName::parse(c)).collect(),
                min_trust_level: TrustLevel::Normal,
                sector: None,
            },
        )
        .await
        .unwrap();
    let mut settings = ClientSettings::confidential("Wohngeld", vec![url::Url::parse(CALLBACK).unwrap()]);
    settings.grant_types = BTreeSet::from([GrantType::AuthorizationCode, GrantType::RefreshToken]);
    settings.scopes = ["openid", "profile", "address", "email"].iter().filter_map(|s| Scope::parse(s)).collect();
    settings.claims = claims
        .iter()
        .filter_map(|c| ClaimName::parse(c))
        .map(|claim| ClaimRule { required: claim.as_str() != "email", claim })
        .collect();
    registry
        .create_client_with_id(
            &actor,
            tenant.id,
            Environment::Test,
            ClientId::parse("wohngeld").unwrap(),
            settings,
            OperatorFlags { first_party: false, admin_role: None },
            Some(ClientSecret::from_configured("wohngeld-secret-0123456")),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn identify_once_with_the_card_without_an_account() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let issuer = format!("{}/test", server.base_url);
    authority_client(&server).await;
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "wohngeld"),
            ("response_type", "code"),
            ("scope", "openid profile address email"),
            ("redirect_uri", CALLBACK),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("acr_values", "hoch"),
            ("claims", r#"{"userinfo":{"verified_claims":{"verification":{"trust_framework":null},"claims":{"family_name":null}}}}"#),
        ])
        .finish();

    // No session, "hoch" asked: the eID login page, which also offers identifying once.
    let citizen = rp_browser();
    let response = citizen.get(format!("{issuer}/authorize?{query}")).send().await.unwrap();
    let landed = response.url().clone();
    let html = response.text().await.unwrap();
    assert!(html.contains("Ohne Servicekonto einmalig"), "{html}");
    let return_to = landed.query_pairs().find(|(k, _)| k == "return_to").unwrap().1.into_owned();
    assert!(return_to.starts_with("/authorize?"), "{return_to}");

    let (url, consent, _) = through_test_service(&citizen, &issuer, "identifizieren", &return_to, 0).await;
    assert!(url.contains("/eid/ergebnis"), "{url}");
    assert!(consent.contains("Einmalige Identifizierung") && consent.contains("Kreis Lippe"), "{consent}");
    for shown in ["MUSTERMANN", "ERIKA", "12.08.1964", "HEIDESTRASSE 17<br>51147 KÖLN"] {
        assert!(consent.contains(shown), "{shown} with its value on the consent page");
    }
    assert!(!consent.contains("claim-email"), "the card holds no e-mail address: nothing to offer");
    let request = consent.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let response = citizen
        .post(format!("{issuer}/zustimmung"))
        .form(&[("csrf", csrf(&consent).as_str()), ("request", request.as_str()), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned();

    let tokens = redeem(&issuer, ("wohngeld", "wohngeld-secret-0123456"), &code, verifier.secret()).await;
    let claims = id_token_claims(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(claims["acr"], "hoch");
    assert_eq!(claims["amr"], serde_json::json!(["eid"]));
    assert!(tokens.get("refresh_token").is_none(), "the data go once: nothing to renew");
    let userinfo: serde_json::Value = reqwest::Client::new()
        .get(format!("{issuer}/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], claims["sub"]);
    assert_eq!(userinfo["family_name"], "MUSTERMANN");
    assert_eq!(userinfo["address"]["locality"], "KÖLN");
    assert!(userinfo.get("email").is_none(), "{userinfo}");
    assert_eq!(userinfo["verified_claims"]["verification"]["trust_framework"], "eidas", "{userinfo}");

    // The operator sees that the client received claims once, never which values or whose.
    let operator = crate::admin::operator(&server).await;
    let (status, _, log) = operator.get("/clients/wohngeld/one-time-transfers").await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{log}");
    assert!(items[0]["claims"].as_array().unwrap().iter().any(|c| c == "family_name"), "{log}");
    assert!(!log.to_string().contains("MUSTERMANN"), "names of claims only: {log}");

    // Nothing was stored: the same card finds no account.
    let other = browser();
    let (url, html, _) = through_test_service(&other, &issuer, "anmelden", "/konto", 0).await;
    assert!(html.contains("Kein Servicekonto zu diesem Ausweis"), "{url}: {html}");
    server.stop().await;
}
