//! Single-use links sent by mail: activation, password reset, e-mail change. The token is random
//! (256 bits), stored only as its hash in the account store (durable: a citizen keeps a link
//! for days), and taken atomically on use — in the same transaction as the change it makes, so
//! that a failed change never uses a link up.

use std::{sync::Arc, time::Duration};

use crate::{Account, AccountError, AccountEvent, AccountStore, StoredLink};
use oidc_core::{AccountId, Clock, Environment, random_token, token_digest};

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkKind {
    Activation,
    PasswordReset,
    EmailChange,
}

impl LinkKind {
    fn as_str(self) -> &'static str {
        match self {
            LinkKind::Activation => "activation",
            LinkKind::PasswordReset => "password_reset",
            LinkKind::EmailChange => "email_change",
        }
    }
}

/// What a link stands for.
#[derive(Debug, Clone)]
pub(crate) struct LinkGrant {
    /// For an e-mail change: the new address.
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
/// "unknown"; then the hourly purge removes them.
pub(crate) const GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

pub(crate) struct Links {
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
}

impl Links {
    pub(crate) fn new(store: Arc<dyn AccountStore>, clock: Arc<dyn Clock>) -> Self {
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
        let now = self.clock.now();
        let link = StoredLink {
            token_hash: token_digest(&token),
            kind: kind.as_str().to_owned(),
            environment,
            account_id,
            new_email,
            created_at: now,
            expires_at: now + ttl,
        };
        self.store.insert_link(&link).await?;
        Ok(token)
    }

    /// Uses up the link: of concurrent callers at most one succeeds.
    pub(crate) async fn take(
        &self,
        kind: LinkKind,
        environment: Environment,
        token: &str,
    ) -> Result<Result<(AccountId, LinkGrant), LinkError>, AccountError> {
        let found = self.store.take_link(&token_digest(token)).await?;
        Ok(self.check(kind, environment, found))
    }

    /// Saves `account` (with `event`) and uses up the link in the same step, so that a failure
    /// leaves the link usable — a retry, or the citizen's next click, still works. `false`, and
    /// nothing saved, when the link was used meanwhile. The link is to be checked by
    /// [`peek`](Self::peek) first.
    pub(crate) async fn take_with(
        &self,
        token: &str,
        account: &Account,
        event: Option<&AccountEvent>,
    ) -> Result<bool, AccountError> {
        Ok(self.store.update_taking_link(account, event, &token_digest(token)).await?)
    }

    /// Looks at the link without using it (to show the form behind a reset link, or to check it
    /// before [`take_with`](Self::take_with)).
    pub(crate) async fn peek(
        &self,
        kind: LinkKind,
        environment: Environment,
        token: &str,
    ) -> Result<Result<(AccountId, LinkGrant), LinkError>, AccountError> {
        let found = self.store.find_link(&token_digest(token)).await?;
        Ok(self.check(kind, environment, found))
    }

    /// Removes links past their grace.
    pub(crate) async fn purge(&self) -> Result<u64, AccountError> {
        let before = self.clock.now() - GRACE;
        Ok(self.store.purge_links(before).await?)
    }

    fn check(
        &self,
        kind: LinkKind,
        environment: Environment,
        found: Option<StoredLink>,
    ) -> Result<(AccountId, LinkGrant), LinkError> {
        let link = found.ok_or(LinkError::Invalid)?;
        // A link of another kind or environment is as good as unknown here.
        if link.kind != kind.as_str() || link.environment != environment {
            return Err(LinkError::Invalid);
        }
        if link.expires_at <= self.clock.now() {
            return Err(LinkError::Expired);
        }
        Ok((link.account_id, LinkGrant { new_email: link.new_email }))
    }
}
