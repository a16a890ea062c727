//! Opaque access tokens: 256 random bits handed to the client, the grant kept in the ephemeral
//! store under a hash of the token for exactly the token's lifetime. Lookup and revocation are
//! one store call each; a dump of the store holds no usable token.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{AccountId, ClientId, Environment, EphemeralError, EphemeralStore, TenantId, random_token, token_digest};

/// What an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGrant {
    /// The environment whose issuer issued it.
    pub environment: Environment,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// That client's tenant.
    pub tenant_id: TenantId,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The citizen it speaks for, with the claims they consented to release; `None` for
    /// `client_credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citizen: Option<CitizenGrant>,
}

/// The citizen side of an access token from the code flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitizenGrant {
    /// The account.
    pub account_id: AccountId,
    /// The pairwise `sub` the client knows the citizen by.
    pub sub: String,
    /// Claims the citizen consented to release to this client.
    pub claims: Vec<String>,
    /// The authority and service, as the citizen's transfer log names them.
    #[serde(default)]
    pub recipient: String,
    /// The consent the release rests on (for the transfer log).
    #[serde(default)]
    pub consent_ref: String,
}

/// Issues and resolves opaque access tokens.
#[derive(Clone)]
pub struct AccessTokens {
    store: Arc<dyn EphemeralStore>,
}

fn store_key(token: &str) -> String {
    format!("at:{}", token_digest(token))
}

/// What can go wrong with access tokens.
#[derive(Debug, thiserror::Error)]
pub enum AccessTokenError {
    /// The ephemeral store failed.
    #[error(transparent)]
    Store(#[from] EphemeralError),
    /// A stored grant could not be read or written.
    #[error("access-token grant encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl AccessTokens {
    /// Tokens kept in `store`.
    pub fn new(store: Arc<dyn EphemeralStore>) -> Self {
        Self { store }
    }

    /// A new token for `grant`, valid until `grant.expires_at` (`ttl` from now).
    pub async fn issue(&self, grant: &AccessGrant, ttl: Duration) -> Result<String, AccessTokenError> {
        let token = random_token();
        self.store.put(&store_key(&token), &serde_json::to_vec(grant)?, ttl).await?;
        Ok(token)
    }

    /// The grant of a live token; `None` for unknown, expired or revoked ones.
    pub async fn find(&self, token: &str) -> Result<Option<AccessGrant>, AccessTokenError> {
        match self.store.get(&store_key(token)).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Ends a token at once; `true` when it was live.
    pub async fn revoke(&self, token: &str) -> Result<bool, AccessTokenError> {
        Ok(self.store.delete(&store_key(token)).await?)
    }
}
