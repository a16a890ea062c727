//! ID token claims (OpenID Connect Core §2) and `at_hash` (§3.1.3.6).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;
use sha2::{Digest, Sha256, Sha512};

use crate::{JwkSet, SigningAlgorithm};

/// The claims of an ID token. Only what the client asked for: no personal data here; those come
/// from userinfo.
#[derive(Debug, Clone, Serialize)]
pub struct IdTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Pairwise subject.
    pub sub: String,
    /// The client id.
    pub aud: String,
    /// Authorized party (the client id).
    pub azp: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the citizen authenticated.
    pub auth_time: i64,
    /// The authorization request's nonce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The trust level reached, in the vocabulary the client asked in.
    pub acr: String,
    /// How the citizen authenticated (RFC 8176).
    pub amr: Vec<String>,
    /// Hash of the access token issued with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The session the citizen authenticated in (Front-/Back-Channel Logout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Personal claims the client asked for in the ID token itself (`claims` parameter) and the
    /// citizen released; empty otherwise, because userinfo is where claims come from.
    #[serde(flatten)]
    pub personal: serde_json::Map<String, serde_json::Value>,
}

/// The left half of the access token's hash with the ID token's hash function, base64url.
pub fn at_hash(access_token: &str, algorithm: SigningAlgorithm) -> String {
    let digest: Vec<u8> = match algorithm {
        // EdDSA with Ed25519 uses SHA-512 (OpenID Connect errata for EdDSA).
        SigningAlgorithm::EdDSA => Sha512::digest(access_token.as_bytes()).to_vec(),
        SigningAlgorithm::RS256 | SigningAlgorithm::PS256 | SigningAlgorithm::ES256 => {
            Sha256::digest(access_token.as_bytes()).to_vec()
        }
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// The claims of an ID token this issuer signed with a key of `jwks`, for `id_token_hint` at
/// logout: the signature and `iss` must hold; expiry does not matter (a hint may be old).
pub fn verify_id_token_hint(jwks: &JwkSet, token: &str, issuer: &str) -> Option<serde_json::Value> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let kid = header.kid?;
    let ours = jwks.keys.iter().find(|k| k.kid == kid)?;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::to_value(ours).ok().and_then(|v| serde_json::from_value(v).ok())?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).ok().map(|data| data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_the_left_half_of_sha256() {
        // OpenID Connect Core, appendix A.3's access token and at_hash.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", SigningAlgorithm::RS256),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash("x", SigningAlgorithm::EdDSA).len(), 43);
    }
}
