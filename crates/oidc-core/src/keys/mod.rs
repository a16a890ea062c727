//! Signing keys: generation per algorithm, sealing under the key-encryption key, the store port,
//! and the rotation schedule.
//!
//! Rotation (see [`KeyService::rotate`]): a new key is published in the JWKS at once, signs only
//! after [`KeyPolicy::activation_delay`] (so every node and every relying party's JWKS cache knows
//! it first), and the key it replaces stays published for [`KeyPolicy::retention`] after it stops
//! signing (so tokens it signed still verify until they expire).

mod cipher;
mod material;
mod service;
mod store;

pub use cipher::{KeyEncryptionKey, KeyRing};
pub use material::{Jwk, JwkSet, SigningAlgorithm, SigningKey};
pub use service::{KeyInfo, KeyPolicy, KeyService, KeyStatus, PublishedJwks};
pub use store::{KeyStoreError, SigningKeyStore, StoredSigningKey};

/// What can go wrong with signing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    /// A sealed private key does not open under the configured key-encryption key: the wrong KEK,
    /// or a tampered row.
    #[error("private key {kid} cannot be decrypted with the configured key-encryption key")]
    Unseal {
        /// The key that failed.
        kid: String,
    },
    /// Key generation or encoding failed.
    #[error("key material: {0}")]
    Material(String),
    /// No key of this algorithm is active in this environment.
    #[error("no active {0} signing key")]
    NoActiveKey(SigningAlgorithm),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// A key cannot be withdrawn: unknown, gone already, or the only one that signs.
    #[error("cannot withdraw {kid}: {reason}")]
    Withdraw {
        /// The key asked for.
        kid: String,
        /// Why not.
        reason: &'static str,
    },
}
