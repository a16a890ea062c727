//! Back-Channel Logout 1.0: a citizen logs in to a client with a `backchannel_logout_uri`,
//! logs out at servicekonto, and the client receives a signed logout token with the ID token's
//! `sid` and `sub`; a client that answers 500 gets the token again. A password change, which ends
//! every session of the account, tells the clients of every session.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::Mutex,
};

use crate::{
    citizen::{authorization_code, csrf, log_in, page, post, register_activated, rp_browser},
    mail::SmtpSink,
    support::{Backends, TestServer, first_party_client},
};

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A loopback HTTP server recording each request body; the first answer is 500, then 200.
async fn receiver(bodies: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel-logout", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut raw = Vec::new();
            let mut buffer = [0u8; 8192];
            // Read the head, then as many body bytes as Content-Length says.
            loop {
                let n = socket.read(&mut buffer).await.unwrap_or(0);
                raw.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length || n == 0 {
                        let mut bodies = bodies.lock().await;
                        bodies.push(body.to_owned());
                        let status = if bodies.len() == 1 { "500 Internal Server Error" } else { "200 OK" };
                        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                        let _ = socket.write_all(answer.as_bytes()).await;
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
        }
    });
    url
}

/// The portal's tokens for `code` (`client_secret_basic`, the fixed PKCE verifier).
async fn redeem(issuer: &str, secret: &str, code: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("portal", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn logging_out_tells_every_client_of_the_session_with_a_signed_logout_token() {
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| c.mail.smtp_url = Some(smtp.url.as_str().into())).await;
    let issuer = format!("{}/test", server.base_url);
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let logout_uri = receiver(bodies.clone()).await;

    // A first-party client of the demo authority (no consent page) that wants to be told, with
    // its own algorithm for ID tokens (and so for its logout tokens).
    let secret = "portal-secret-0123456789abcdefghijklmn";
    first_party_client(&server, "portal", secret, CALLBACK, |settings| {
        settings.backchannel_logout_uri = Some(url::Url::parse(&logout_uri).unwrap());
        settings.id_token_signed_response_alg = oidc_core::SigningAlgorithm::ES256;
    })
    .await;

    // The citizen registers, logs in, and the portal gets a code and an ID token.
    let citizen = rp_browser();
    register_activated(&citizen, &issuer, &smtp, "erika.bcl", "erika.bcl@example.de").await;
    log_in(&citizen, &issuer, "erika.bcl").await;
    let code = authorization_code(&citizen, &issuer, "portal", CALLBACK, CHALLENGE).await;
    let tokens = redeem(&issuer, secret, &code).await;
    let id_token_jwt = tokens["id_token"].as_str().unwrap();
    assert_eq!(jsonwebtoken::decode_header(id_token_jwt).unwrap().alg, jsonwebtoken::Algorithm::ES256);
    let id_token = payload(id_token_jwt);

    // Logout at servicekonto.
    let (_, account) = page(&citizen, &format!("{issuer}/konto")).await;
    let (status, _, _) = post(&citizen, &format!("{issuer}/abmelden"), &[("csrf", &csrf(&account))]).await;
    assert_eq!(status, StatusCode::OK);

    // The first delivery is answered 500, the retry a second later succeeds.
    for _ in 0..100 {
        if bodies.lock().await.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = bodies.lock().await.clone();
    assert_eq!(delivered.len(), 2, "one retry after the 500, then no more: {delivered:?}");
    let token = url::form_urlencoded::parse(delivered[0].as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("a logout_token form field");
    assert!(delivered[1].contains(&token[..40]), "the same token again");

    // Signed with a key of the JWKS, typ logout+jwt, the ID token's sid and sub, the event, no nonce.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256, "the client's algorithm");
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{issuer}/jwks")).await.unwrap().json().await.unwrap();
    let key = jwks.find(header.kid.as_deref().unwrap()).expect("the signing key is published");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["portal"]);
    validation.set_issuer(&[&issuer]);
    let claims: Value =
        jsonwebtoken::decode(&token, &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(), &validation).unwrap().claims;
    assert_eq!(claims["sid"], id_token["sid"]);
    assert_eq!(claims["sub"], id_token["sub"]);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none() && claims["jti"].is_string());

    // A password change ends every session of the account at once: the portal is told about the
    // session on another device too.
    let other_device = rp_browser();
    log_in(&other_device, &issuer, "erika.bcl").await;
    let code = authorization_code(&other_device, &issuer, "portal", CALLBACK, CHALLENGE).await;
    let tokens = redeem(&issuer, secret, &code).await;
    let other_sid = payload(tokens["id_token"].as_str().unwrap())["sid"].clone();
    log_in(&citizen, &issuer, "erika.bcl").await;
    let (_, form) = page(&citizen, &format!("{issuer}/konto/passwort")).await;
    let new_password = "Neues Pferd Batterie Heftklammer Tulpe";
    let (status, _, _) = post(
        &citizen,
        &format!("{issuer}/konto/passwort"),
        &[
            ("csrf", &csrf(&form)),
            ("current_password", crate::citizen::PASSWORD),
            ("password", new_password),
            ("password_confirmation", new_password),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..100 {
        if bodies.lock().await.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = bodies.lock().await.clone();
    assert_eq!(delivered.len(), 3, "one more logout token: {delivered:?}");
    let token = url::form_urlencoded::parse(delivered[2].as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("a logout_token form field");
    assert_eq!(payload(&token)["sid"], other_sid, "the other device's session");

    server.stop().await;
    backends.drop_now().await;
}
