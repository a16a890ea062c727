//! Property tests of every parser of untrusted input in oidc-core: whatever arrives, the answer
//! is a value or an error, never a panic. Inputs are arbitrary text and, to get past the first
//! checks, JWT-shaped text (three base64url segments of JSON headers with the algorithms and
//! `kid`s an attacker would choose).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use oidc_core::{
    ClaimsRequest, ClientJwks, JwkSet, assertion_subject, authorize, verify_client_assertion, verify_id_token_hint,
    verify_request_object,
};
use proptest::prelude::*;

/// A public EC P-256 key (the RFC 7517 appendix A.1 example), so signature paths are reached.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"sig","kid":"1","alg":"ES256"}]}"#;

fn jwt_like() -> impl Strategy<Value = String> {
    let alg =
        prop_oneof![Just("ES256"), Just("RS256"), Just("none"), Just("HS256"), Just("EdDSA"), Just("PS256"), Just(""),];
    let kid = prop_oneof![Just("1".to_owned()), ".{0,12}"];
    (alg, kid, proptest::collection::vec(any::<u8>(), 0..200), proptest::collection::vec(any::<u8>(), 0..96)).prop_map(
        |(alg, kid, payload, signature)| {
            let header = serde_json::json!({ "alg": alg, "kid": kid, "typ": "JWT" }).to_string();
            let claims = String::from_utf8_lossy(&payload).into_owned();
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims),
                URL_SAFE_NO_PAD.encode(signature)
            )
        },
    )
}

fn untrusted() -> impl Strategy<Value = String> {
    prop_oneof![".{0,300}", jwt_like(), "[A-Za-z0-9_.-]{0,300}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn signed_jwts_from_clients_never_panic(token in untrusted(), now in any::<i64>()) {
        let keys = ClientJwks::from_slice(JWKS.as_bytes()).unwrap();
        let _ = verify_client_assertion(&token, "client", &keys, &["https://konto.example/token"], now);
        let _ = verify_request_object(&token, "client", &keys, "https://konto.example", now);
        let _ = assertion_subject(&token);
        let jwks: JwkSet = serde_json::from_str(JWKS).unwrap();
        let _ = verify_id_token_hint(&jwks, &token, "https://konto.example");
    }

    #[test]
    fn client_key_sets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = ClientJwks::from_slice(&bytes);
    }

    #[test]
    fn the_claims_parameter_never_panics(text in prop_oneof![".{0,300}", json_text()]) {
        let _ = ClaimsRequest::parse(&text);
    }

    #[test]
    fn authorization_parameters_never_panic(value in proptest::option::of(".{0,80}")) {
        let value = value.as_deref();
        let _ = authorize::response_mode(value);
        let _ = authorize::response_type(value);
        let _ = authorize::scopes(value);
        let _ = authorize::prompt(value);
        let _ = authorize::display(value);
        let _ = authorize::max_age(value);
    }
}

/// JSON of the shape the `claims` parameter has, with arbitrary leaves.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("essential".to_owned()),
                    Just("value".to_owned()),
                    Just("values".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map(prop_oneof![Just("userinfo"), Just("id_token"), Just("x")], value, 0..3)
        .prop_map(|m| serde_json::json!(m).to_string())
}
