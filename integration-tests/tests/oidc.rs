//! The authorization code flow driven by the `openidconnect` crate as the relying party: discovery,
//! PKCE, nonce, login and consent in the browser, code exchange, ID-token verification, userinfo;
//! and the error paths a relying party meets.

use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
    core::{CoreClient, CoreProviderMetadata, CoreResponseType, CoreUserInfoClaims},
};
use reqwest::StatusCode;

use crate::{
    citizen::{PASSWORD, csrf, page, post, register_activated, rp_browser},
    mail::SmtpSink,
    support::{Backends, TestServer, http_client},
};

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const EMAIL: &str = "erika.oidc@example.de";

fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/").replace("&amp;", "&").replace("&quot;", "\"").replace("&#x27;", "'")
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name}")) + marker.len();
    unescape(html[start..].split('"').next().unwrap())
}

/// Where the browser was sent at the callback, with its query parameters.
fn callback(response: &reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "a redirect to the client");
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(CALLBACK), "{location}");
    url::Url::parse(location).unwrap().query_pairs().into_owned().collect()
}

/// The ID token's claims as JSON (already verified by the caller through `openidconnect`).
fn id_token_payload(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn a_relying_party_logs_a_citizen_in_with_the_code_flow() {
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| c.mail.smtp_url = Some(smtp.url.as_str().into())).await;
    let issuer = format!("{}/test", server.base_url);

    // A citizen of the test environment (where the demo client lives).
    let citizen = rp_browser();
    register_activated(&citizen, &issuer, &smtp, "erika.oidc", EMAIL).await;

    // The relying party: discovery, PKCE, nonce.
    let http = http_client();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.clone()).unwrap(), &http).await.unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("demo-client".into()),
        Some(ClientSecret::new("demo-secret-only-for-local-use".into())),
    )
    .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("address".into()))
        .set_pkce_challenge(challenge)
        .url();

    // Not logged in: the login page, then back to the request, then the consent page with values.
    let (status, html) = page(&citizen, url.as_str()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"password\""), "the login page");
    let response = citizen
        .post(format!("{issuer}/anmelden"))
        .form(&[
            ("csrf", csrf(&html)),
            ("username", "erika.oidc".into()),
            ("password", PASSWORD.into()),
            ("return_to", hidden(&html, "return_to")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let consent = response.text().await.unwrap();
    assert!(consent.contains("Datenübermittlung zustimmen") && consent.contains("Demo-Kommune"), "{consent}");
    assert!(consent.contains("Erika") && consent.contains("Heidestraße 17<br>51147 Köln"), "values are shown");
    assert!(consent.contains("12.08.1964"), "the birth date as on every page: {consent}");
    assert!(consent.contains("Diese Angaben braucht der Online-Dienst"), "required claims are listed as such");
    assert!(consent.contains("Anwohnerparkausweis"), "the purpose is shown");
    assert!(!consent.contains("name=\"claim\" value=\"given_name\""), "a required claim is no checkbox");
    for claim in ["birthdate", "place_of_birth", "address", "email"] {
        let checkbox = format!("id=\"claim-{claim}\" name=\"claim\" value=\"{claim}\">");
        assert!(consent.contains(&checkbox), "{claim} offered and not ticked in advance: {consent}");
    }
    let response = citizen
        .post(format!("{issuer}/zustimmung"))
        .form(&[
            ("csrf", csrf(&consent)),
            ("request", hidden(&consent, "request")),
            ("decision", "allow".into()),
            ("claim", "email".into()),
            ("claim", "address".into()),
        ])
        .send()
        .await
        .unwrap();
    let answer = callback(&response);
    assert_eq!(param(&answer, "state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(param(&answer, "iss").as_deref(), Some(issuer.as_str()), "RFC 9207");
    let code = param(&answer, "code").expect("a code");

    // Code → tokens; the ID token verifies against the JWKS with the nonce.
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code is redeemed");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token.claims(&client.id_token_verifier(), &nonce).expect("a valid ID token");
    assert_eq!(claims.issuer().as_str(), issuer);
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("normal"));
    assert!(claims.auth_time().is_some());
    assert!(claims.given_name().is_none(), "no personal data in the ID token");
    let first_payload = id_token_payload(&id_token.to_string());
    assert!(first_payload["sid"].is_string(), "a session id for logout: {first_payload}");

    // Userinfo: the consented claims, the same sub.
    let info: CoreUserInfoClaims =
        client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&http).await.unwrap();
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.given_name().and_then(|n| n.get(None)).map(|n| n.as_str()), Some("Erika"));
    assert_eq!(info.email().map(|e| e.as_str()), Some(EMAIL));
    assert_eq!(info.address().and_then(|a| a.locality.as_ref()).map(|l| l.as_str()), Some("Köln"));
    assert!(info.birthdate().is_none(), "birthdate was not in the scopes' consented set");

    // Refresh with rotation: the new token works, the used one revokes its whole family.
    let first = tokens.refresh_token().expect("a refresh token for a client allowed to refresh").clone();
    let refreshed = client.exchange_refresh_token(&first).unwrap().request_async(&http).await.expect("refreshed");
    let second_refresh = refreshed.refresh_token().expect("rotated").clone();
    assert_ne!(second_refresh.secret(), first.secret());
    let info: CoreUserInfoClaims =
        client.user_info(refreshed.access_token().clone(), None).unwrap().request_async(&http).await.unwrap();
    assert_eq!(info.subject(), claims.subject());
    let replay = client.exchange_refresh_token(&first).unwrap().request_async(&http).await;
    assert!(format!("{replay:?}").contains("invalid_grant"), "{replay:?}");
    let after_replay = client.exchange_refresh_token(&second_refresh).unwrap().request_async(&http).await;
    assert!(format!("{after_replay:?}").contains("invalid_grant"), "the family is revoked: {after_replay:?}");

    // The citizen sees the release in "Mein Konto" and in the export.
    let (_, html) = page(&citizen, &format!("{issuer}/konto/uebermittlungen")).await;
    assert!(html.contains("Demo-Kommune – Demo-Dienst") && html.contains("E-Mail-Adresse"), "{html}");
    let export: serde_json::Value =
        citizen.get(format!("{issuer}/konto/export")).send().await.unwrap().json().await.unwrap();
    let transfer = &export["data_transfers"][0];
    assert_eq!(transfer["client_id"], "demo-client");
    assert!(transfer["claims"].as_array().unwrap().iter().any(|c| c == "address"));
    assert!(!transfer.to_string().contains("Köln"), "names, never values");
    assert_eq!(export["consents"][0]["client_id"], "demo-client");

    // The code again: refused, and the token it gave is revoked.
    let raw = reqwest::Client::new();
    let again = raw
        .post(format!("{issuer}/token"))
        .basic_auth("demo-client", Some("demo-secret-only-for-local-use"))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CALLBACK)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
    let revoked =
        raw.get(format!("{issuer}/userinfo")).bearer_auth(tokens.access_token().secret()).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert!(revoked.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // id_token_hint: our own ID token for this citizen lets prompt=none through; a tampered one
    // is refused; select_account shows the login page although a session exists.
    let hint = tokens.id_token().unwrap().to_string();
    let tampered_hint = format!("{}x", &hint[..hint.len() - 1]);
    for (extra, expected) in [
        (vec![("id_token_hint", hint.as_str()), ("prompt", "none")], Some("code")),
        (vec![("id_token_hint", tampered_hint.as_str())], Some("error")),
        (vec![("prompt", "select_account"), ("display", "touch"), ("claims_locales", "de")], None),
    ] {
        let (challenge, _) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        for (name, value) in &extra {
            request = request.add_extra_param(*name, *value);
        }
        let (url, _, _) = request.url();
        let response = citizen.get(url.as_str()).send().await.unwrap();
        match expected {
            Some(field) => {
                let answer = callback(&response);
                assert!(param(&answer, field).is_some(), "{extra:?}: {answer:?}");
                if field == "error" {
                    assert_eq!(param(&answer, "error").as_deref(), Some("invalid_request"));
                }
            }
            None => {
                let html = response.text().await.unwrap();
                assert!(html.contains("name=\"password\""), "select_account: the login page");
            }
        }
    }

    // A level above the session's is never answered with a lower one: "hoch" (by acr_values or
    // its eIDAS URI) offers the eID login (step-up), except with prompt=none; a level no login
    // of ours reaches ("substantiell", asked by an essential acr in the claims parameter) is an
    // error.
    for (name, value, prompt) in [
        ("acr_values", "hoch", None),
        ("acr_values", "http://eidas.europa.eu/LoA/high", None),
        ("acr_values", "hoch", Some("none")),
        ("claims", r#"{"id_token":{"acr":{"essential":true,"values":["substantiell"]}}}"#, None),
    ] {
        let (challenge, _) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_extra_param(name, value)
            .set_pkce_challenge(challenge);
        if let Some(prompt) = prompt {
            request = request.add_extra_param("prompt", prompt);
        }
        let (url, _, _) = request.url();
        let response = citizen.get(url.as_str()).send().await.unwrap();
        if value != "hoch" && !value.ends_with("/high") || prompt.is_some() {
            let answer = callback(&response);
            assert_eq!(param(&answer, "error").as_deref(), Some("unmet_authentication_requirements"), "{value}");
        } else {
            let landed = response.url().to_string();
            assert!(landed.contains("/eid?zweck=anmelden&stufe=hoch&return_to=%2Fauthorize"), "step-up: {landed}");
        }
    }
    for (name, value) in [("claims", r#"{"id_token":{"acr":{"essential":true,"values":["substantiell"]}}}"#)] {
        let (challenge, _) = PkceCodeChallenge::new_random_sha256();
        let (url, _, _) = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_extra_param(name, value)
            .set_pkce_challenge(challenge)
            .url();
        let answer = callback(&citizen.get(url.as_str()).send().await.unwrap());
        assert_eq!(param(&answer, "error").as_deref(), Some("unmet_authentication_requirements"), "{value}");
    }

    // Single sign-on: the session and the remembered consent give a code at once. The claims
    // parameter asks for given_name in the ID token itself (and an essential acr the session has).
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_extra_param(
            "claims",
            r#"{"id_token":{"given_name":{"essential":true},"acr":{"essential":true,"values":["normal"]}},
                "userinfo":{"verified_claims":{"verification":{"trust_framework":null},"claims":{"given_name":null}}}}"#,
        )
        .set_pkce_challenge(challenge)
        .url();
    let answer = callback(&citizen.get(url.as_str()).send().await.unwrap());
    let code = param(&answer, "code").expect("a code without asking again");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let second = tokens.id_token().unwrap().claims(&client.id_token_verifier(), &nonce).unwrap();
    assert_eq!(second.subject(), claims.subject(), "pairwise sub is stable for one tenant");
    assert_eq!(second.given_name().and_then(|n| n.get(None)).map(|n| n.as_str()), Some("Erika"));
    assert!(second.email().is_none(), "only what the claims parameter put into the ID token");
    // verified_claims holds only claims read from the ID card; this citizen typed everything in
    // (the eID side is unit-tested in account-service until the eID login exists).
    let info: serde_json::Value = reqwest::Client::new()
        .get(format!("{issuer}/userinfo"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["given_name"], "Erika");
    assert!(info.get("verified_claims").is_none(), "typed-in data is never verified: {info}");
    let payload = id_token_payload(&tokens.id_token().unwrap().to_string());
    assert_eq!(payload["sid"], first_payload["sid"], "one session, one sid");
    assert_eq!(payload["sid"].as_str().map(str::len), Some(22));
    let export: serde_json::Value =
        citizen.get(format!("{issuer}/konto/export")).send().await.unwrap().json().await.unwrap();
    assert!(
        export["data_transfers"].as_array().unwrap().iter().any(|t| t["claims"] == serde_json::json!(["given_name"])),
        "the ID token's release is logged: {}",
        export["data_transfers"]
    );

    // prompt=consent shows the earlier choice as it was: what was ticked, ticked; nothing more.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("address".into()))
        .add_extra_param("prompt", "consent")
        .set_pkce_challenge(challenge)
        .url();
    let (status, html) = page(&citizen, url.as_str()).await;
    assert_eq!(status, StatusCode::OK);
    for (claim, ticked) in [("email", true), ("address", true), ("birthdate", false), ("place_of_birth", false)] {
        let checkbox =
            format!("id=\"claim-{claim}\" name=\"claim\" value=\"{claim}\"{}>", if ticked { " checked" } else { "" });
        assert!(html.contains(&checkbox), "{claim} ticked: {ticked}: {html}");
    }

    // Withdrawn consent: the next login asks again.
    let (_, html) = page(&citizen, &format!("{issuer}/konto/uebermittlungen")).await;
    let (status, _, html) = post(
        &citizen,
        &format!("{issuer}/konto/zustimmungen/widerrufen"),
        &[("csrf", &csrf(&html)), ("client_id", "demo-client")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Zustimmung ist widerrufen"));
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let (status, html) = page(&citizen, url.as_str()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Datenübermittlung zustimmen"), "asked again");

    // RP-initiated logout: a tampered hint gets a confirmation page, never a redirect; a valid one
    // ends the session and returns to the registered address with state.
    let hint = tokens.id_token().unwrap().to_string();
    let logout = |hint: &str| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("id_token_hint", hint),
                ("post_logout_redirect_uri", "http://127.0.0.1:3000/logged-out"),
                ("state", "bye"),
            ])
            .finish();
        format!("{issuer}/logout?{query}")
    };
    let tampered = format!("{}x", &hint[..hint.len() - 1]);
    let (status, html) = page(&citizen, &logout(&tampered)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Abmelden?"), "{html}");
    let response = citizen.get(logout(&hint)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "http://127.0.0.1:3000/logged-out?state=bye");
    let response = citizen.get(format!("{issuer}/konto")).send().await.unwrap();
    assert!(response.url().path().ends_with("/anmelden"), "the session ended");

    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn authorization_errors_go_to_the_client_only_when_its_redirect_uri_is_trusted() {
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let issuer = format!("{}/test", server.base_url);
    let citizen = rp_browser();
    let authorize = |changes: &[(&str, &str)]| {
        let mut params = vec![
            ("client_id", "demo-client"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s1"),
            ("redirect_uri", CALLBACK),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in changes {
            params.retain(|(n, _)| n != name);
            params.push((name, value));
        }
        let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        format!("{issuer}/authorize?{query}")
    };

    // Unknown client, foreign redirect URI, a parameter twice, a request object that is not
    // signed by the client, a request_uri that is not from our PAR: a page, never a redirect.
    for url in [
        authorize(&[("client_id", "nobody")]),
        authorize(&[("redirect_uri", "https://evil.example/cb")]),
        format!("{}&state=again", authorize(&[])),
        authorize(&[("request", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJkZW1vLWNsaWVudCJ9.")]),
        authorize(&[("request_uri", "https://evil.example/request.jwt")]),
    ] {
        let response = citizen.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(response.text().await.unwrap().contains("Anmeldung nicht möglich"));
    }
    // Everything else goes back with state and iss.
    for (changes, error) in [
        (vec![("prompt", "none")], "login_required"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("scope", "profile")], "invalid_scope"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("response_mode", "fragment")], "invalid_request"),
        (vec![("acr_values", "unbekannt")], "invalid_request"),
        (vec![("claims", "{kein json")], "invalid_request"),
        (vec![("display", "fernseher")], "invalid_request"),
        (vec![("claims", r#"{"id_token":{"email":5}}"#)], "invalid_request"),
    ] {
        let response = citizen.get(authorize(&changes)).send().await.unwrap();
        let answer = callback(&response);
        assert_eq!(param(&answer, "error").as_deref(), Some(error), "{changes:?}");
        assert_eq!(param(&answer, "state").as_deref(), Some("s1"));
        assert_eq!(param(&answer, "iss").as_deref(), Some(issuer.as_str()));
    }
    server.stop().await;
    backends.drop_now().await;
}

#[tokio::test]
async fn introspection_and_revocation_answer_only_for_the_callers_own_tokens() {
    use crate::admin::{bootstrap_operator, token};
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let base = &server.base_url;
    let (operator, secret) = bootstrap_operator(&server).await;
    let own = token(base, &operator, &secret, None, oauth2::AuthType::BasicAuth).await.unwrap();
    let demo = token(
        &format!("{base}/test"),
        "demo-client",
        "demo-secret-only-for-local-use",
        None,
        oauth2::AuthType::BasicAuth,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let introspect = |token: String, secret: String| {
        let http = http.clone();
        let operator = operator.clone();
        async move {
            http.post(format!("{base}/introspect"))
                .basic_auth(operator, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
        }
    };
    let answer: serde_json::Value = introspect(own.clone(), secret.clone()).await.json().await.unwrap();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], "admin");
    assert_eq!(answer["client_id"], operator.as_str());
    let foreign: serde_json::Value = introspect(demo.clone(), secret.clone()).await.json().await.unwrap();
    assert_eq!(foreign, serde_json::json!({ "active": false }), "another client's token looks inactive");
    let refused = introspect(own.clone(), "wrong".into()).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let revoked = http
        .post(format!("{base}/revoke"))
        .basic_auth(&operator, Some(&secret))
        .form(&[("token", own.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let answer: serde_json::Value = introspect(own, secret).await.json().await.unwrap();
    assert_eq!(answer["active"], false);
    server.stop().await;
    backends.drop_now().await;
}
