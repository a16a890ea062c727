//! Refresh tokens: opaque, stored (hashed) durably, rotated on every use. A rotated token that
//! comes again means it was stolen or replayed: its whole family is revoked (OAuth 2.0 Security
//! BCP §4.14.2).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AccountId, ClientId, Environment, opaque::RANDOM_TOKEN_CHARS, random_token, token_digest};

/// Hex digits of the time prefix: milliseconds since 1970 fit into 48 bits until the year 10889.
const PREFIX_DIGITS: usize = 12;

/// A new refresh token or family id: the millisecond `now` of its making in 12 hex digits, then
/// 256 random bits (URL-safe base64).
///
/// Why the prefix: the stored rows are keyed by it (see [`refresh_token_key`]), and keys that
/// grow with time are inserted at the right edge of the B-tree — every insert of a moment shares
/// one leaf page — instead of on a random leaf page each. On SQLite a random page is a 4 KiB
/// write to the log per token, its copy at the next checkpoint, and a read once the index has
/// outgrown the page cache; on PostgreSQL a full-page image in the WAL after each checkpoint.
/// The time of issue is no secret (the ID token's `iat` carries it); the random part alone is
/// as strong as any other token of ours.
pub fn new_refresh_token(now: OffsetDateTime) -> String {
    let now_ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("{now_ms:0width$x}{}", random_token(), width = PREFIX_DIGITS)
}

/// The stored key of a presented refresh token: the time prefix of [`new_refresh_token`] in
/// clear, then the token's SHA-256 — the prefix keeps the order, the digest keeps a dump of the
/// store unusable. A token without the prefix (issued before it existed) is keyed by its digest
/// alone, as it was stored then.
pub fn refresh_token_key(token: &str) -> String {
    let digest = token_digest(token);
    match token.get(..PREFIX_DIGITS) {
        Some(prefix)
            if token.len() == PREFIX_DIGITS + RANDOM_TOKEN_CHARS
                && prefix.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            format!("{prefix}{digest}")
        }
        _ => digest,
    }
}

/// A stored refresh token (by the hash of its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The token's stored key ([`refresh_token_key`]).
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
    /// The presented token's stored key ([`refresh_token_key`]).
    pub old_hash: &'a str,
    /// Its successor's stored key.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_new_tokens_sort_by_their_making_and_reveal_no_token() {
        let at = |ms: i128| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).unwrap();
        let (earlier, later) = (new_refresh_token(at(1_764_900_000_000)), new_refresh_token(at(1_764_900_000_001)));
        assert_eq!(earlier.len(), 55, "{earlier}");
        assert!(earlier.starts_with("019aec3cd100"), "{earlier}");
        let (earlier_key, later_key) = (refresh_token_key(&earlier), refresh_token_key(&later));
        assert!(earlier_key < later_key, "{earlier_key} {later_key}");
        // Fits the column (64 characters), and holds the digest, not the random part.
        assert_eq!(earlier_key.len(), 12 + 43);
        assert_eq!(random_token().len(), RANDOM_TOKEN_CHARS);
        assert_eq!(earlier_key[12..], token_digest(&earlier));
        assert!(!earlier_key.contains(&earlier[12..]));
        // Two tokens of one millisecond differ.
        assert_ne!(new_refresh_token(at(5)), new_refresh_token(at(5)));
    }

    #[test]
    fn a_token_without_the_prefix_keeps_its_old_key() {
        let old = random_token();
        assert_eq!(refresh_token_key(&old), token_digest(&old));
        // A presented value of the new length whose prefix is no hex time is keyed by its digest.
        let odd = format!("0123456789aZ{}", random_token());
        assert_eq!(refresh_token_key(&odd), token_digest(&odd));
        // Nothing presented panics, whatever its length or characters.
        for presented in ["", "0", "ä", "0123456789ab", &"é".repeat(40)] {
            assert_eq!(refresh_token_key(presented), token_digest(presented));
        }
    }
}
