//! Signed JWTs from clients. `private_key_jwt` (OpenID Connect Core §9, RFC 7523 §3): the client
//! proves itself with a JWT
//! signed by a key from its registered JWK Set; request objects (RFC 9101) carry the authorization
//! request signed the same way. The rules, without I/O: fetching the keys and
//! remembering `jti`s (replay) are the caller's.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use serde_json::Value;

/// The `client_assertion_type` of RFC 7523.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Algorithms a client may sign with: asymmetric only (no `none`, no HMAC with a public key).
pub const CLIENT_ASSERTION_ALGORITHMS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

/// Assertions that live longer than this are refused, so the `jti` memory stays bounded.
pub const MAX_ASSERTION_LIFETIME_SECONDS: i64 = 600;

/// Why an assertion is refused (all `invalid_client` on the wire; the reason is for the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a JWT, or an algorithm outside [`CLIENT_ASSERTION_ALGORITHMS`].
    #[error("malformed assertion or forbidden algorithm")]
    Malformed,
    /// No key of the client's JWK Set fits the header's `kid` and algorithm: the caller may
    /// re-fetch a `jwks_uri` once and try again.
    #[error("no key of the client fits the assertion")]
    UnknownKey,
    /// The signature or a claim does not hold.
    #[error("assertion invalid: {0}")]
    Invalid(&'static str),
}

/// A client's public JWK Set (registered by value or fetched from its `jwks_uri`).
#[derive(Debug, Clone)]
pub struct ClientJwks(JwkSet);

impl ClientJwks {
    /// Parses a JWK Set document.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map(Self).map_err(|e| format!("no JWK Set: {e}"))
    }

    /// Parses a JWK Set held as JSON.
    pub fn from_value(value: serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(value).map(Self).map_err(|e| format!("no JWK Set: {e}"))
    }
}

/// What a valid assertion leaves the caller to do: remember `jti` until `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The assertion's unique id.
    pub jti: String,
    /// Its expiry, Unix seconds.
    pub exp: i64,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// The `sub` an assertion claims, unverified: names the client when the request has no
/// `client_id`.
pub fn assertion_subject(assertion: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

/// Verifies `assertion` of `client_id` against its `keys`: signature, `iss` = `sub` =
/// `client_id`, `aud` one of `audiences` (the token endpoint or the issuer), `exp` in the future
/// but at most [`MAX_ASSERTION_LIFETIME_SECONDS`] away, `nbf`, and a `jti`.
pub fn verify_client_assertion(
    assertion: &str,
    client_id: &str,
    keys: &ClientJwks,
    audiences: &[&str],
    now: i64,
) -> Result<VerifiedAssertion, AssertionError> {
    let claims: AssertionClaims = decode_signed(assertion, client_id, keys, audiences, &["exp", "iss", "sub", "aud"])?;
    check_claims(claims, client_id, now)
}

/// Request objects live at most this long (RFC 9101 leaves it open; FAPI 2.0 says 60 min).
pub const MAX_REQUEST_OBJECT_LIFETIME_SECONDS: i64 = 3600;

/// Verifies a signed request object (RFC 9101) of `client_id`: signature with one of its keys,
/// `iss` = `client_id`, `aud` = our issuer, `exp` in the future (at most an hour away), `nbf`.
/// Its claims are the authorization request's parameters.
pub fn verify_request_object(
    request: &str,
    client_id: &str,
    keys: &ClientJwks,
    issuer: &str,
    now: i64,
) -> Result<serde_json::Map<String, Value>, AssertionError> {
    let claims: serde_json::Map<String, Value> =
        decode_signed(request, client_id, keys, &[issuer], &["exp", "iss", "aud"])?;
    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    let exp = time("exp").ok_or(AssertionError::Invalid("exp"))?;
    if exp <= now {
        return Err(AssertionError::Invalid("expired"));
    }
    if exp > now + MAX_REQUEST_OBJECT_LIFETIME_SECONDS {
        return Err(AssertionError::Invalid("exp too far in the future"));
    }
    if time("nbf").is_some_and(|nbf| nbf > now) {
        return Err(AssertionError::Invalid("not yet valid"));
    }
    if claims.get("client_id").is_some_and(|id| id.as_str() != Some(client_id)) {
        return Err(AssertionError::Invalid("client_id differs"));
    }
    Ok(claims)
}

/// Checks the signature with the client's keys (those fitting `kid` and the algorithm), `iss` =
/// `client_id`, `aud` one of `audiences`, and that `required` claims exist. Times are left to
/// the caller, who knows the injected clock.
fn decode_signed<T: serde::de::DeserializeOwned>(
    jwt: &str,
    client_id: &str,
    keys: &ClientJwks,
    audiences: &[&str],
    required: &[&str],
) -> Result<T, AssertionError> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| AssertionError::Malformed)?;
    let algorithm = header.alg;
    if !matches!(algorithm, Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA) {
        return Err(AssertionError::Malformed);
    }
    let candidates: Vec<DecodingKey> = keys
        .0
        .keys
        .iter()
        .filter(|jwk| header.kid.is_none() || jwk.common.key_id == header.kid)
        .filter(|jwk| {
            jwk.is_supported() && jwk.common.key_algorithm.is_none_or(|a| a.to_string() == format!("{algorithm:?}"))
        })
        .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
        .collect();
    if candidates.is_empty() {
        return Err(AssertionError::UnknownKey);
    }
    let mut validation = Validation::new(algorithm);
    validation.set_audience(audiences);
    validation.set_issuer(&[client_id]);
    validation.set_required_spec_claims(required);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let mut last = AssertionError::Invalid("signature");
    for key in &candidates {
        match jsonwebtoken::decode::<T>(jwt, key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(error) => {
                last = match error.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => AssertionError::Invalid("aud"),
                    jsonwebtoken::errors::ErrorKind::InvalidIssuer => AssertionError::Invalid("iss"),
                    jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => AssertionError::Invalid("claims"),
                    _ => AssertionError::Invalid("signature"),
                }
            }
        }
    }
    Err(last)
}

fn check_claims(claims: AssertionClaims, client_id: &str, now: i64) -> Result<VerifiedAssertion, AssertionError> {
    if claims.iss != client_id || claims.sub != client_id {
        return Err(AssertionError::Invalid("iss and sub must be the client_id"));
    }
    if claims.exp <= now {
        return Err(AssertionError::Invalid("expired"));
    }
    if claims.exp > now + MAX_ASSERTION_LIFETIME_SECONDS {
        return Err(AssertionError::Invalid("exp too far in the future"));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now) {
        return Err(AssertionError::Invalid("not yet valid"));
    }
    let jti = claims.jti.filter(|j| !j.is_empty()).ok_or(AssertionError::Invalid("jti missing"))?;
    Ok(VerifiedAssertion { jti, exp: claims.exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SigningAlgorithm, SigningKey};

    const NOW: i64 = 1_900_000_000;
    const TOKEN_ENDPOINT: &str = "https://konto.example/token";

    fn keys(jwk: &crate::Jwk) -> ClientJwks {
        ClientJwks::from_value(serde_json::json!({ "keys": [jwk] })).unwrap()
    }

    fn claims(changes: serde_json::Value) -> serde_json::Value {
        let mut claims = serde_json::json!({
            "iss": "c1", "sub": "c1", "aud": TOKEN_ENDPOINT, "exp": NOW + 60, "iat": NOW, "jti": "j1",
        });
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    #[test]
    fn every_algorithm_verifies_with_the_registered_key() {
        for algorithm in
            [SigningAlgorithm::RS256, SigningAlgorithm::PS256, SigningAlgorithm::ES256, SigningAlgorithm::EdDSA]
        {
            let (key, jwk) = SigningKey::generate(algorithm).unwrap();
            let assertion = key.sign("JWT", &claims(serde_json::json!({}))).unwrap();
            let verified = verify_client_assertion(&assertion, "c1", &keys(&jwk), &[TOKEN_ENDPOINT], NOW).unwrap();
            assert_eq!(verified, VerifiedAssertion { jti: "j1".into(), exp: NOW + 60 }, "{algorithm}");
            assert_eq!(assertion_subject(&assertion).as_deref(), Some("c1"));
        }
    }

    #[test]
    fn each_rule_refuses() {
        let (key, jwk) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
        let set = keys(&jwk);
        let check = |changes: serde_json::Value| {
            let assertion = key.sign("JWT", &claims(changes)).unwrap();
            verify_client_assertion(&assertion, "c1", &set, &[TOKEN_ENDPOINT, "https://konto.example"], NOW)
        };
        assert!(check(serde_json::json!({"aud": "https://konto.example"})).is_ok(), "the issuer is an audience too");
        assert_eq!(
            check(serde_json::json!({"aud": "https://other.example/token"})),
            Err(AssertionError::Invalid("aud"))
        );
        assert_eq!(check(serde_json::json!({"iss": "c2"})), Err(AssertionError::Invalid("iss")));
        assert!(matches!(check(serde_json::json!({"sub": "c2"})), Err(AssertionError::Invalid(_))));
        assert_eq!(check(serde_json::json!({"exp": NOW})), Err(AssertionError::Invalid("expired")));
        assert!(matches!(check(serde_json::json!({"exp": NOW + 3600})), Err(AssertionError::Invalid(_))));
        assert_eq!(check(serde_json::json!({"nbf": NOW + 30})), Err(AssertionError::Invalid("not yet valid")));
        assert_eq!(check(serde_json::json!({"jti": null})), Err(AssertionError::Invalid("jti missing")));
        assert!(matches!(check(serde_json::json!({"exp": null})), Err(AssertionError::Invalid(_))));

        // Another key of the same kind, or a tampered signature.
        let (other, _) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
        let foreign = other.sign("JWT", &claims(serde_json::json!({}))).unwrap();
        assert_eq!(
            verify_client_assertion(&foreign, "c1", &set, &[TOKEN_ENDPOINT], NOW),
            Err(AssertionError::UnknownKey),
            "its kid is not registered"
        );
        let good = key.sign("JWT", &claims(serde_json::json!({}))).unwrap();
        let tampered = format!("{}{}", &good[..good.len() - 2], if good.ends_with("AA") { "BB" } else { "AA" });
        assert!(verify_client_assertion(&tampered, "c1", &set, &[TOKEN_ENDPOINT], NOW).is_err());
    }

    #[test]
    fn request_objects_carry_the_parameters_and_are_checked() {
        let (key, jwk) = SigningKey::generate(SigningAlgorithm::EdDSA).unwrap();
        let set = keys(&jwk);
        let issuer = "https://konto.example/test";
        let sign = |changes: serde_json::Value| {
            let mut claims = serde_json::json!({
                "iss": "c1", "aud": issuer, "exp": NOW + 300, "client_id": "c1", "response_type": "code",
                "scope": "openid", "max_age": 60, "claims": {"id_token": {"given_name": null}},
            });
            for (k, v) in changes.as_object().unwrap() {
                claims[k] = v.clone();
            }
            key.sign("oauth-authz-req+jwt", &claims).unwrap()
        };
        let params = verify_request_object(&sign(serde_json::json!({})), "c1", &set, issuer, NOW).unwrap();
        assert_eq!(params["scope"], "openid");
        assert_eq!(params["max_age"], 60);
        assert_eq!(
            verify_request_object(&sign(serde_json::json!({"aud": "https://other"})), "c1", &set, issuer, NOW),
            Err(AssertionError::Invalid("aud"))
        );
        assert_eq!(
            verify_request_object(&sign(serde_json::json!({"exp": NOW - 1})), "c1", &set, issuer, NOW),
            Err(AssertionError::Invalid("expired"))
        );
        assert!(verify_request_object(&sign(serde_json::json!({"exp": NOW + 7200})), "c1", &set, issuer, NOW).is_err());
        assert_eq!(
            verify_request_object(&sign(serde_json::json!({"nbf": NOW + 60})), "c1", &set, issuer, NOW),
            Err(AssertionError::Invalid("not yet valid"))
        );
        assert_eq!(
            verify_request_object(&sign(serde_json::json!({"client_id": "c2"})), "c1", &set, issuer, NOW),
            Err(AssertionError::Invalid("client_id differs"))
        );
        assert_eq!(
            verify_request_object(&sign(serde_json::json!({"iss": "c2"})), "c1", &set, issuer, NOW),
            Err(AssertionError::Invalid("iss"))
        );
        let unsigned = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJjMSJ9.";
        assert_eq!(verify_request_object(unsigned, "c1", &set, issuer, NOW), Err(AssertionError::Malformed));
    }

    #[test]
    fn hmac_and_none_are_refused() {
        let (_, jwk) = SigningKey::generate(SigningAlgorithm::RS256).unwrap();
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(serde_json::json!({})),
            &jsonwebtoken::EncodingKey::from_secret(b"the public modulus as a secret"),
        )
        .unwrap();
        assert_eq!(
            verify_client_assertion(&hs, "c1", &keys(&jwk), &[TOKEN_ENDPOINT], NOW),
            Err(AssertionError::Malformed)
        );
        let none = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJjMSJ9.";
        assert_eq!(
            verify_client_assertion(none, "c1", &keys(&jwk), &[TOKEN_ENDPOINT], NOW),
            Err(AssertionError::Malformed)
        );
    }
}
