//! Client secrets: 256 random bits shown once, stored as a keyed hash (HMAC-SHA256), which is as
//! strong as a slow hash for random secrets and keeps the token endpoint fast.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::model::SecretHash;

/// A client secret in clear: returned once at creation or rotation, never stored or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret the operator chose (e.g. the demo client's); the same rules as generated ones
    /// apply at verification.
    pub fn from_configured(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// Hashes and checks client secrets under one deployment-wide key.
#[derive(Clone)]
pub struct SecretHasher {
    key: [u8; 32],
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHasher([redacted])")
    }
}

impl SecretHasher {
    /// A hasher keyed with `key` (derived from the KEK, so every node agrees).
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
    }

    /// A new random secret (256 bits) and its hash, current from `now` (Unix seconds).
    pub fn generate(&self, now: i64) -> (ClientSecret, SecretHash) {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = ClientSecret(URL_SAFE_NO_PAD.encode(bytes));
        let hash = self.hash(&secret, now);
        (secret, hash)
    }

    /// The stored form of `secret`.
    pub fn hash(&self, secret: &ClientSecret, now: i64) -> SecretHash {
        let mut mac = self.mac();
        mac.update(secret.0.as_bytes());
        SecretHash { hash: URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()), created_at: now, expires_at: None }
    }

    /// Whether `presented` matches one of `secrets` that has not expired at `now`. The
    /// comparison is constant-time.
    pub fn verify(&self, secrets: &[SecretHash], presented: &str, now: i64) -> bool {
        secrets.iter().filter(|s| s.expires_at.is_none_or(|e| e > now)).any(|stored| {
            let Ok(expected) = URL_SAFE_NO_PAD.decode(&stored.hash) else { return false };
            let mut mac = self.mac();
            mac.update(presented.as_bytes());
            mac.verify_slice(&expected).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_until_they_expire_and_never_under_another_key() {
        let hasher = SecretHasher::new([7; 32]);
        let (secret, mut hash) = hasher.generate(100);
        assert_eq!(secret.expose().len(), 43, "256 bits in base64url");
        assert!(hasher.verify(std::slice::from_ref(&hash), secret.expose(), 100));
        assert!(!hasher.verify(std::slice::from_ref(&hash), "wrong", 100));
        assert!(!SecretHasher::new([8; 32]).verify(std::slice::from_ref(&hash), secret.expose(), 100));
        hash.expires_at = Some(200);
        assert!(hasher.verify(std::slice::from_ref(&hash), secret.expose(), 199));
        assert!(!hasher.verify(&[hash], secret.expose(), 200));
        assert_eq!(format!("{secret:?}"), "ClientSecret([redacted])");
    }
}
