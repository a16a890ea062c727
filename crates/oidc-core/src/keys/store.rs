use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Jwk, SigningAlgorithm};
use crate::Environment;

/// A signing key as stored: public JWK in clear, private key sealed under the KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The environment whose issuer signs with it.
    pub environment: Environment,
    /// The one algorithm it signs with.
    pub algorithm: SigningAlgorithm,
    /// 1 for the first key of this algorithm and environment, +1 per rotation; unique per
    /// (environment, algorithm), which makes concurrent rotations on two nodes conflict.
    pub generation: i32,
    /// The public key.
    pub public_jwk: Jwk,
    /// Nonce and AES-256-GCM ciphertext of the private key.
    pub sealed_private_key: Vec<u8>,
    /// When it was generated.
    pub created_at: OffsetDateTime,
    /// From when it signs.
    pub activates_at: OffsetDateTime,
    /// When it leaves the JWKS; `None` while it has no successor.
    pub expires_at: Option<OffsetDateTime>,
}

/// Durable storage of signing keys. Implemented in `storage` (sea-orm).
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// All keys of `environment`, expired ones included.
    async fn list(&self, environment: Environment) -> Result<Vec<StoredSigningKey>, KeyStoreError>;

    /// Atomically inserts `new` and sets the expiry of each `(kid, expires_at)` in `retire`.
    ///
    /// Fails with [`KeyStoreError::Conflict`] and changes nothing when a key with the same
    /// environment, algorithm and generation exists (another node rotated first).
    async fn rotate(&self, new: &[StoredSigningKey], retire: &[(String, OffsetDateTime)]) -> Result<(), KeyStoreError>;

    /// Replaces the sealed private key of `kid` (a KEK rotation; the key itself is unchanged).
    async fn reseal(&self, kid: &str, sealed_private_key: &[u8]) -> Result<(), KeyStoreError>;
}

/// What can go wrong with a signing-key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Another writer got there first; reload and decide again.
    #[error("a signing key of this generation exists already")]
    Conflict,
    /// The database did not answer or failed.
    #[error("signing-key store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}
