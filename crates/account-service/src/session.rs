//! Login sessions: an opaque random cookie value; the session itself lives in the ephemeral store
//! (shared by all nodes) under the value's hash, with an idle and an absolute timeout.

use std::{sync::Arc, time::Duration};

use oidc_core::{AccountId, Clock, Environment, EphemeralStore, TrustLevel, random_token, token_digest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AccountError, AuthMethod};

/// Session timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ends after this long without a request.
    pub idle_timeout: Duration,
    /// Ends this long after the login, however active.
    pub absolute_timeout: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self { idle_timeout: Duration::from_secs(30 * 60), absolute_timeout: Duration::from_secs(12 * 3600) }
    }
}

/// A logged-in citizen: who, and when and how they authenticated (for `auth_time`, `amr`, `acr`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The account.
    pub account_id: AccountId,
    /// The environment it belongs to.
    pub environment: Environment,
    /// When the citizen last authenticated.
    #[serde(with = "time::serde::timestamp")]
    pub auth_time: OffsetDateTime,
    /// How.
    pub method: AuthMethod,
    /// The trust level that authentication reached.
    pub trust_level: TrustLevel,
    /// The account's session epoch at login; a raised epoch ends this session.
    pub epoch: i64,
    #[serde(with = "time::serde::timestamp")]
    last_seen: OffsetDateTime,
}

/// Writes of `last_seen` are skipped when the last one is younger than this, so a burst of
/// requests costs one write.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) struct Sessions {
    store: Arc<dyn EphemeralStore>,
    clock: Arc<dyn Clock>,
    policy: SessionPolicy,
}

fn key(environment: Environment, token: &str) -> String {
    format!("sess:{}:{}", environment.as_str(), token_digest(token))
}

impl Sessions {
    pub(crate) fn new(store: Arc<dyn EphemeralStore>, clock: Arc<dyn Clock>, policy: SessionPolicy) -> Self {
        Self { store, clock, policy }
    }

    /// Starts a session; returns the cookie value and the session.
    pub(crate) async fn start(
        &self,
        environment: Environment,
        account_id: AccountId,
        method: AuthMethod,
        trust_level: TrustLevel,
        epoch: i64,
    ) -> Result<(String, Session), AccountError> {
        let now = self.clock.now();
        let session = Session { account_id, environment, auth_time: now, method, trust_level, epoch, last_seen: now };
        let token = random_token();
        self.save(&key(environment, &token), &session, now).await?;
        Ok((token, session))
    }

    /// The live session behind `token`, its idle time restarted.
    pub(crate) async fn find(&self, environment: Environment, token: &str) -> Result<Option<Session>, AccountError> {
        let key = key(environment, token);
        let Some(value) = self.store.get(&key).await.map_err(AccountError::internal)? else { return Ok(None) };
        let Ok(mut session) = serde_json::from_slice::<Session>(&value) else { return Ok(None) };
        let now = self.clock.now();
        if session.environment != environment
            || now - session.last_seen >= self.policy.idle_timeout
            || now - session.auth_time >= self.policy.absolute_timeout
        {
            self.store.delete(&key).await.map_err(AccountError::internal)?;
            return Ok(None);
        }
        if now - session.last_seen >= TOUCH_INTERVAL {
            session.last_seen = now;
            // The session is valid either way: a store that refuses writes for a while costs at
            // most an earlier idle timeout, never a request.
            if let Err(error) = self.save(&key, &session, now).await {
                tracing::warn!(%error, "session idle time not restarted");
            }
        }
        Ok(Some(session))
    }

    /// Ends the session behind `token`.
    pub(crate) async fn end(&self, environment: Environment, token: &str) -> Result<(), AccountError> {
        self.store.delete(&key(environment, token)).await.map_err(AccountError::internal)?;
        Ok(())
    }

    async fn save(&self, key: &str, session: &Session, now: OffsetDateTime) -> Result<(), AccountError> {
        let remaining = (session.auth_time + self.policy.absolute_timeout - now).unsigned_abs();
        let ttl = self.policy.idle_timeout.min(remaining).max(Duration::from_secs(1));
        let value = serde_json::to_vec(session).map_err(AccountError::internal)?;
        self.store.put(key, &value, ttl).await.map_err(AccountError::internal)
    }
}
