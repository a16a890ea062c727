//! Single-use links sent by mail: activation, password reset, e-mail change. The token is random
//! (256 bits), stored only as its hash in the ephemeral store, and taken atomically on use.

use std::{sync::Arc, time::Duration};

use oidc_core::{AccountId, Clock, Environment, EphemeralStore, random_token, token_digest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::AccountError;

/// What a link is for; each has its own key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkKind {
    Activation,
    PasswordReset,
    EmailChange,
}

impl LinkKind {
    /// The store key of a link token: its kind's prefix and the token's digest.
    fn key(self, token: &str) -> String {
        let prefix = match self {
            LinkKind::Activation => "act:",
            LinkKind::PasswordReset => "pwr:",
            LinkKind::EmailChange => "eml:",
        };
        format!("{prefix}{}", token_digest(token))
    }
}

/// What a link stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LinkGrant {
    pub(crate) environment: String,
    pub(crate) account_id: uuid::Uuid,
    #[serde(with = "time::serde::timestamp")]
    pub(crate) expires_at: OffsetDateTime,
    /// For an e-mail change: the new address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) new_email: Option<String>,
}

/// Why a link does not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Unknown, or used already.
    #[error("the link is unknown or was used already")]
    Invalid,
    /// Past its validity.
    #[error("the link has expired")]
    Expired,
}

/// Expired links stay readable this much longer, so the citizen is told "expired" rather than
/// "unknown".
const GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

pub(crate) struct Links {
    store: Arc<dyn EphemeralStore>,
    clock: Arc<dyn Clock>,
}

impl Links {
    pub(crate) fn new(store: Arc<dyn EphemeralStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// A new link token for `account_id`, valid for `ttl`.
    pub(crate) async fn issue(
        &self,
        kind: LinkKind,
        environment: Environment,
        account_id: AccountId,
        ttl: Duration,
        new_email: Option<String>,
    ) -> Result<String, AccountError> {
        let token = random_token();
        let grant = LinkGrant {
            environment: environment.as_str().to_owned(),
            account_id: account_id.as_uuid(),
            expires_at: self.clock.now() + ttl,
            new_email,
        };
        let value = serde_json::to_vec(&grant).map_err(AccountError::internal)?;
        self.store.put(&kind.key(&token), &value, ttl + GRACE).await.map_err(AccountError::internal)?;
        Ok(token)
    }

    /// Uses up the link: of concurrent callers at most one succeeds.
    pub(crate) async fn take(
        &self,
        kind: LinkKind,
        environment: Environment,
        token: &str,
    ) -> Result<Result<(AccountId, LinkGrant), LinkError>, AccountError> {
        let value = self.store.take(&kind.key(token)).await.map_err(AccountError::internal)?;
        Ok(self.check(environment, value))
    }

    /// Looks at the link without using it (to show the form behind a reset link).
    pub(crate) async fn peek(
        &self,
        kind: LinkKind,
        environment: Environment,
        token: &str,
    ) -> Result<Result<(AccountId, LinkGrant), LinkError>, AccountError> {
        let value = self.store.get(&kind.key(token)).await.map_err(AccountError::internal)?;
        Ok(self.check(environment, value))
    }

    fn check(&self, environment: Environment, value: Option<Vec<u8>>) -> Result<(AccountId, LinkGrant), LinkError> {
        let grant: LinkGrant = value.and_then(|v| serde_json::from_slice(&v).ok()).ok_or(LinkError::Invalid)?;
        // A link of the other environment is as good as unknown here.
        if grant.environment != environment.as_str() {
            return Err(LinkError::Invalid);
        }
        if grant.expires_at <= self.clock.now() {
            return Err(LinkError::Expired);
        }
        Ok((AccountId::from(grant.account_id), grant))
    }
}
