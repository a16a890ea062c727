//! The error paths a relying party can provoke, each with the OAuth error it must get and never a
//! 500: another client's code, an unknown or expired code, malformed bodies at every back-channel
//! endpoint.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    citizen::{authorization_code, log_in, register_activated, rp_browser},
    mail::SmtpSink,
    support::{Backends, TestServer, first_party_client},
};

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const DEMO_SECRET: &str = "demo-secret-only-for-local-use";

/// Endpoint, content type, body, Basic credentials.
type Case = (&'static str, Option<&'static str>, Vec<u8>, Option<(&'static str, &'static str)>);

#[tokio::test]
async fn codes_of_other_clients_and_malformed_requests_get_oauth_errors_never_a_500() {
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| c.mail.smtp_url = Some(smtp.url.as_str().into())).await;
    let issuer = format!("{}/test", server.base_url);
    let portal_secret = "portal-secret-0123456789abcdefghijklmn";
    first_party_client(&server, "portal", portal_secret, CALLBACK, |_| {}).await;
    let citizen = rp_browser();
    register_activated(&citizen, &issuer, &smtp, "erika.neg", "erika.neg@example.de").await;
    log_in(&citizen, &issuer, "erika.neg").await;
    let code = || authorization_code(&citizen, &issuer, "portal", CALLBACK, CHALLENGE);
    let http = reqwest::Client::new();
    let redeem = |client: &'static str, secret: &'static str, code: String| {
        let (http, url) = (http.clone(), format!("{issuer}/token"));
        async move {
            let response = http
                .post(url)
                .basic_auth(client, Some(secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", VERIFIER),
                ])
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };

    // Another client's code, a code that never was (or has expired: the store forgot it).
    let (status, body) = redeem("demo-client", DEMO_SECRET, code().await).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let (status, body) = redeem("portal", portal_secret, "erfundener-code".into()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let (status, body) = redeem("portal", portal_secret, code().await).await;
    assert_eq!(status, StatusCode::OK, "the portal's own code works: {body}");

    // Malformed bodies at every back-channel endpoint: 4xx with a JSON error, never 500.
    let big = "x".repeat(70 * 1024);
    let cases: Vec<Case> = vec![
        ("token", Some("application/json"), b"{\"grant_type\":\"client_credentials\"}".to_vec(), None),
        (
            "token",
            Some("application/x-www-form-urlencoded"),
            b"grant_type=client_credentials&grant_type=x".to_vec(),
            None,
        ),
        ("token", Some("application/x-www-form-urlencoded"), b"%%%&&&==".to_vec(), None),
        ("token", Some("application/x-www-form-urlencoded"), format!("grant_type={big}").into_bytes(), None),
        (
            "token",
            Some("application/x-www-form-urlencoded"),
            b"grant_type=password".to_vec(),
            Some(("demo-client", DEMO_SECRET)),
        ),
        ("token", Some("application/x-www-form-urlencoded"), b"code=abc".to_vec(), Some(("demo-client", DEMO_SECRET))),
        (
            "token",
            Some("application/x-www-form-urlencoded"),
            b"grant_type=refresh_token".to_vec(),
            Some(("demo-client", DEMO_SECRET)),
        ),
        ("token", None, Vec::new(), None),
        ("introspect", Some("text/plain"), b"token=x".to_vec(), None),
        ("revoke", Some("application/x-www-form-urlencoded"), b"token=x".to_vec(), None),
        ("par", Some("application/x-www-form-urlencoded"), b"\xff\xfe".to_vec(), None),
        (
            "par",
            Some("application/x-www-form-urlencoded"),
            b"client_id=demo-client&client_assertion=x.y.z".to_vec(),
            None,
        ),
        ("userinfo", None, Vec::new(), None),
    ];
    for (endpoint, content_type, body, basic) in cases {
        let mut request = http.post(format!("{issuer}/{endpoint}")).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
        assert!(status.is_client_error(), "{endpoint} {shown:?}: {status} {text}");
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{endpoint} {shown:?}: not JSON: {text}"));
        assert!(json["error"].is_string(), "{endpoint} {shown:?}: {json}");
    }
    // A Basic header that is no Basic credential.
    let response = http
        .post(format!("{issuer}/token"))
        .header("authorization", "Basic ###")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));

    server.stop().await;
    backends.drop_now().await;
}
