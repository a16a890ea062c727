use std::time::Duration;

use async_trait::async_trait;

/// Short-lived shared state: authorization codes, sessions, activation tokens, rate-limit counters.
///
/// Every value has a time to live; nothing here outlives it. Implementations must be shared
/// between all nodes of a deployment (Redis in production), so that no node keeps state another
/// node would need.
#[async_trait]
pub trait EphemeralStore: Send + Sync {
    /// Stores `value` under `key` for `ttl`, replacing what was there.
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError>;

    /// Stores `value` only if `key` holds nothing; `true` when it was stored. For replay checks.
    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, EphemeralError>;

    /// The value under `key`, if it has not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError>;

    /// Removes and returns the value in one atomic step: of any number of concurrent callers on
    /// any number of nodes, at most one gets it (RFC 6749 §4.1.2: codes are single-use).
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError>;

    /// Removes `key`; `true` when something was there.
    async fn delete(&self, key: &str) -> Result<bool, EphemeralError>;

    /// Adds `by` to the counter under `key` and returns the new value. A counter that did not
    /// exist starts at zero and expires `ttl` after its creation (a fixed window).
    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, EphemeralError>;

    /// Checks that the store answers; for readiness probes.
    async fn ping(&self) -> Result<(), EphemeralError>;
}

/// What can go wrong with an ephemeral store.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    /// The store did not answer or refused the command.
    #[error("ephemeral store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The stored value is not what the caller expects (e.g. a counter holding text).
    #[error("ephemeral store holds a value of the wrong type under this key")]
    WrongType,
}
