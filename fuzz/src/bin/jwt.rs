//! Every signed JWT a client sends us: `private_key_jwt` assertions, request objects,
//! `id_token_hint`s — verified against a real public key, so signature paths are reached.

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"sig","kid":"1","alg":"ES256"}]}"#;

fn main() {
    let Ok(keys) = oidc_core::ClientJwks::from_slice(JWKS.as_bytes()) else { return };
    let Ok(jwks) = serde_json::from_str::<oidc_core::JwkSet>(JWKS) else { return };
    afl::fuzz!(|data: &[u8]| {
        let Ok(token) = std::str::from_utf8(data) else { return };
        let _ =
            oidc_core::verify_client_assertion(token, "client", &keys, &["https://konto.example/token"], 1_800_000_000);
        let _ = oidc_core::verify_request_object(token, "client", &keys, "https://konto.example", 1_800_000_000);
        let _ = oidc_core::assertion_subject(token);
        let _ = oidc_core::verify_id_token_hint(&jwks, token, "https://konto.example");
        let _ = oidc_core::ClientJwks::from_slice(data);
    });
}
