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

/// A refresh token presented by a client, to be replaced by its successor.
#[derive(Debug, Clone, Copy)]
pub struct RotationRequest<'a> {
    /// SHA-256 of the presented token, hex.
    pub old_hash: &'a str,
    /// SHA-256 of its successor, hex.
    pub new_hash: &'a str,
    /// The client presenting it: another client's token is not touched.
    pub client_id: &'a ClientId,
    /// The environment it is presented in.
    pub environment: Environment,
    /// Unix seconds.
    pub now: i64,
    /// When the successor expires (Unix seconds).
    pub expires_at: i64,
    /// How long after its use a token may come again as a retry (0: never).
    pub grace_seconds: i64,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live; it is used up now and the new one (same family) is stored.
    Rotated(RefreshRecord),
    /// The token was used already: the family (named) is revoked.
    Reused(String),
    /// The token belongs to another client or environment; nothing was changed.
    Foreign,
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

    /// Uses up the presented token and stores its successor in one transaction; of concurrent
    /// callers at most one rotates. A token of another client or environment is left as it is
    /// ([`Rotation::Foreign`]). Presenting a used token revokes its family — unless it was used
    /// at most `grace_seconds` ago and its successor was never used: then that successor is
    /// replaced (the answer carrying it may have been lost).
    async fn rotate(&self, request: &RotationRequest<'_>) -> Result<Rotation, RefreshStoreError>;

    /// Takes back a rotation whose answer could not be made (the new access token could not
    /// be stored): deletes the successor `new_hash` while it is unused and makes `old_hash` live
    /// again, in one transaction. `false` when there was nothing to take back.
    async fn undo_rotation(&self, old_hash: &str, new_hash: &str) -> Result<bool, RefreshStoreError>;

    /// The record behind `token_hash`, used or not, while it is stored (for revocation and
    /// introspection of a presented token).
    async fn find_any(&self, token_hash: &str) -> Result<Option<RefreshRecord>, RefreshStoreError>;

    /// Revokes the whole family (every token rotated from one code).
    async fn revoke_family(&self, family_id: &str) -> Result<u64, RefreshStoreError>;

    /// Revokes every token of `account_id` issued to `client_id` (consent withdrawn).
    async fn revoke_for_client(&self, account_id: AccountId, client_id: &ClientId) -> Result<u64, RefreshStoreError>;
}
