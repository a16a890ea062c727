//! Refresh tokens: opaque, stored (hashed) durably, rotated on every use. A rotated token that
//! comes again means it was stolen or replayed: its whole family is revoked (OAuth 2.0 Security
//! BCP §4.14.2).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{AccountId, ClientId, Environment};

/// A stored refresh token (by the hash of its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// All tokens rotated from one code share it.
    pub family_id: String,
    /// The environment.
    pub environment: Environment,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The citizen.
    pub account_id: AccountId,
    /// What a refreshed access token carries (scopes, sub, claims, …), as the issuer serialised it.
    pub grant: serde_json::Value,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live; it is used up now and the new one (same family) is stored.
    Rotated(RefreshRecord),
    /// The token was used already: the family (named) is revoked.
    Reused(String),
    /// Unknown, expired or revoked.
    Invalid,
}

/// What can go wrong in the refresh-token store.
#[derive(Debug, thiserror::Error)]
#[error("refresh-token store unavailable")]
pub struct RefreshStoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Durable storage of refresh tokens.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Stores a new token.
    async fn insert(&self, record: &RefreshRecord) -> Result<(), RefreshStoreError>;

    /// The live record behind `token_hash`, if any (not used, not expired at `now`).
    async fn find(&self, token_hash: &str, now: i64) -> Result<Option<RefreshRecord>, RefreshStoreError>;

    /// Uses up `old_hash` and stores its successor `new_hash` in one transaction; of concurrent
    /// callers at most one rotates. Presenting a used token revokes its family — unless it was
    /// used at most `grace_seconds` ago and its successor was never used: then that successor
    /// is replaced by `new_hash` (the answer carrying it may have been lost).
    async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
        grace_seconds: i64,
    ) -> Result<Rotation, RefreshStoreError>;

    /// The record behind `token_hash`, used or not, while it is stored (for revocation and
    /// introspection of a presented token).
    async fn find_any(&self, token_hash: &str) -> Result<Option<RefreshRecord>, RefreshStoreError>;

    /// Revokes the whole family (every token rotated from one code).
    async fn revoke_family(&self, family_id: &str) -> Result<u64, RefreshStoreError>;

    /// Revokes every token of `account_id` issued to `client_id` (consent withdrawn).
    async fn revoke_for_client(&self, account_id: AccountId, client_id: &ClientId) -> Result<u64, RefreshStoreError>;
}
