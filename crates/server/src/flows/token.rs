//! The token endpoint's grants. For now `client_credentials`: an authority's back end (or an
//! admin client) gets an access token for itself, no citizen involved.

use std::{sync::Arc, time::Duration};

use oidc_core::{
    AccessGrant, AssertionError, Environment, OAuthError, OAuthErrorCode, RefreshRecord, SigningAlgorithm, TenantTag,
    jwt_access_token_claims, random_token, refresh_token_key, token_digest, verify_client_assertion,
};
use serde::Serialize;
use tenant_registry::{AdminRole, AuthMethod, Client, ClientAuthError, GrantType, Tenant};

use crate::{error::oauth_failure, state::AppState};

/// How the client presented its credentials.
pub(crate) struct ClientCredentials {
    pub(crate) client_id: String,
    /// The secret, or with `private_key_jwt` the signed assertion.
    pub(crate) secret: String,
    pub(crate) method: AuthMethod,
}

/// RFC 6749 §5.1.
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
}

/// The scopes a client-credentials token of `client` may carry: its admin scope, and its
/// configured scopes that make sense without a citizen.
fn grantable_scopes(client: &Client) -> Vec<&str> {
    let admin = match client.admin_role {
        Some(AdminRole::Operator) => Some("admin"),
        Some(AdminRole::TenantAdmin) => Some("tenant-admin"),
        None => None,
    };
    let configured =
        client.settings.scopes.iter().map(|s| s.as_str()).filter(|s| !matches!(*s, "openid" | "offline_access"));
    admin.into_iter().chain(configured).collect()
}

/// Authenticates the client: by its secret, or, for a public client (`method` none), by its id
/// alone (PKCE then proves the caller).
pub(crate) async fn authenticate(
    state: &AppState,
    environment: Environment,
    credentials: &ClientCredentials,
) -> Result<(Arc<Client>, Arc<Tenant>), OAuthError> {
    let found = match credentials.method {
        AuthMethod::None => {
            state.registry.active_client(environment, &credentials.client_id).await.and_then(|(client, tenant)| {
                if client.settings.auth_method == AuthMethod::None {
                    Ok((client, tenant))
                } else {
                    Err(ClientAuthError::Failed)
                }
            })
        }
        AuthMethod::PrivateKeyJwt => {
            return match state.registry.active_client(environment, &credentials.client_id).await {
                Ok((client, tenant)) if client.settings.auth_method == AuthMethod::PrivateKeyJwt => {
                    verify_assertion(state, environment, &client, &credentials.secret).await?;
                    Ok((client, tenant))
                }
                Ok(_) => Err(ClientAuthError::Failed),
                Err(e) => Err(e),
            }
            .map_err(|e| auth_error(state, e));
        }
        method => {
            state.registry.authenticate_client(environment, &credentials.client_id, &credentials.secret, method).await
        }
    };
    found.map_err(|e| auth_error(state, e))
}

fn auth_error(state: &AppState, error: ClientAuthError) -> OAuthError {
    match error {
        ClientAuthError::Failed => {
            OAuthError::new(OAuthErrorCode::InvalidClient, "Client-Authentifizierung fehlgeschlagen")
        }
        ClientAuthError::TenantSuspended => {
            OAuthError::new(OAuthErrorCode::UnauthorizedClient, "Der Mandant dieses Clients ist gesperrt")
        }
        ClientAuthError::Store(e) => oauth_failure(state, "client_authentication", &e),
    }
}

/// Checks a `private_key_jwt` assertion against the client's keys (re-fetched once on an unknown
/// `kid`) and refuses a `jti` seen before (kept in the ephemeral store until the assertion
/// expires, so every node knows it).
async fn verify_assertion(
    state: &AppState,
    environment: Environment,
    client: &Client,
    assertion: &str,
) -> Result<(), OAuthError> {
    let failed = |reason: &dyn std::fmt::Display| {
        tracing::info!(client = %client.client_id, %reason, "private_key_jwt refused");
        OAuthError::new(OAuthErrorCode::InvalidClient, "Client-Authentifizierung fehlgeschlagen")
    };
    let issuer = state.config.environments.issuer(environment);
    let audiences =
        [issuer.to_owned(), format!("{issuer}/token"), format!("{issuer}/introspect"), format!("{issuer}/revoke")];
    let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
    let now = state.clock.now().unix_timestamp();
    let keys = state.client_keys.keys(client, false).await.map_err(|e| failed(&e))?;
    let verified = match verify_client_assertion(assertion, client.client_id.as_str(), &keys, &audiences, now) {
        Err(AssertionError::UnknownKey) => {
            let keys = state.client_keys.keys(client, true).await.map_err(|e| failed(&e))?;
            verify_client_assertion(assertion, client.client_id.as_str(), &keys, &audiences, now)
        }
        other => other,
    }
    .map_err(|e| failed(&e))?;
    let key = format!("jti:{}:{}:{}", environment.as_str(), client.client_id, token_digest(&verified.jti));
    let ttl = std::time::Duration::from_secs(u64::try_from(verified.exp - now).unwrap_or(1).max(1));
    match state.ephemeral.put_if_absent(&key, b"1", ttl).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(failed(&"jti replayed")),
        Err(e) => Err(oauth_failure(state, "token.verify_assertion", &e)),
    }
}

/// The access token for `grant`: an RFC 9068 JWT when the client names a resource server
/// (signed ES256, which costs a fraction of RS256, unless the environment keeps no ES256 key),
/// else opaque. Both kinds are kept in the ephemeral store, so introspection, userinfo and
/// revocation work the same for either.
///
/// `citizen_sub` is the pairwise `sub` of the grant's citizen, which a JWT names.
pub(crate) async fn issue_access_token(
    state: &AppState,
    environment: Environment,
    client: &Client,
    grant: &AccessGrant,
    citizen_sub: Option<&str>,
) -> Result<String, OAuthError> {
    let ttl = Duration::from_secs(u64::try_from(grant.expires_at - grant.issued_at).unwrap_or(0));
    let Some(audience) = &client.settings.access_token_audience else {
        return state
            .access_tokens
            .issue(grant, ttl)
            .await
            .map_err(|e| oauth_failure(state, "token.issue_access_token", &e));
    };
    let issuer = state.config.environments.issuer(environment);
    let claims = jwt_access_token_claims(grant, citizen_sub, issuer, audience, &random_token());
    let key = match state.keys.signing_key(environment, SigningAlgorithm::ES256).await {
        Ok(key) => key,
        Err(_) => state
            .keys
            .signing_key(environment, client.settings.id_token_signed_response_alg)
            .await
            .map_err(|e| oauth_failure(state, "token.issue_access_token", &e))?,
    };
    let token = key.sign("at+jwt", &claims).map_err(|e| oauth_failure(state, "token.issue_access_token", &e))?;
    state
        .access_tokens
        .register(&token, grant, ttl)
        .await
        .map_err(|e| oauth_failure(state, "token.issue_access_token", &e))?;
    Ok(token)
}

/// RFC 6749 §4.4: checks grant and scope, issues an access token.
pub(crate) async fn client_credentials(
    state: &AppState,
    environment: Environment,
    credentials: ClientCredentials,
    scope: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let (client, tenant) = authenticate(state, environment, &credentials).await?;
    if !client.settings.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "client_credentials ist für diesen Client nicht freigegeben",
        ));
    }
    let grantable = grantable_scopes(&client);
    let scopes: Vec<String> = match scope {
        // RFC 6749 §3.3: without `scope`, the client's default: everything it may have.
        None => grantable.iter().map(|s| (*s).to_owned()).collect(),
        Some(requested) => {
            let requested: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(refused) = requested.iter().find(|s| !grantable.contains(s)) {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidScope,
                    format!("Scope {refused:?} ist nicht erlaubt"),
                ));
            }
            let mut unique: Vec<String> = requested.iter().map(|s| (*s).to_owned()).collect();
            unique.sort();
            unique.dedup();
            unique
        }
    };
    let lifetime = client.settings.lifetimes.access_token;
    let now = state.clock.now().unix_timestamp();
    let grant = AccessGrant {
        environment,
        client_id: client.client_id.clone(),
        tenant: TenantTag::of(tenant.id),
        scopes: scopes.clone(),
        issued_at: now,
        expires_at: now + i64::from(lifetime),
        citizen: None,
        family: None,
    };
    let access_token = issue_access_token(state, environment, &client, &grant, None).await?;
    state.metrics.token_issued(environment, GrantType::ClientCredentials.as_str());
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        scope: scopes.join(" "),
        id_token: None,
        refresh_token: None,
    })
}

/// The `sub` the grant's client knows its citizen by: pairwise, derived from the account and
/// the client's `tenant` (a stored grant does not keep it); `None` for a `client_credentials`
/// grant.
pub(crate) fn citizen_sub(state: &AppState, grant: &AccessGrant, tenant: &Tenant) -> Option<String> {
    grant
        .citizen
        .as_ref()
        .map(|citizen| super::authorize::subject(state, grant.environment, tenant, citizen.account_id))
}

/// A live access token's grant, its client and the client's tenant.
pub(crate) struct LiveGrant {
    pub(crate) grant: AccessGrant,
    pub(crate) client: Arc<Client>,
    pub(crate) tenant: Arc<Tenant>,
}

/// The grant of a live access token together with its client — `None` when the token is
/// unknown, expired or revoked, or when its client no longer exists in that environment or its
/// tenant is suspended or gone: a token lives no longer than its source. The client comes from
/// the registry's per-node cache, which every registry write invalidates on every node.
pub(crate) async fn live_grant(
    state: &AppState,
    operation: &'static str,
    token: &str,
) -> Result<Option<LiveGrant>, OAuthError> {
    let Some(grant) = state.access_tokens.find(token).await.map_err(|e| oauth_failure(state, operation, &e))? else {
        return Ok(None);
    };
    match state.registry.active_client(grant.environment, grant.client_id.as_str()).await {
        Ok((client, tenant)) if grant.tenant.names(tenant.id) => Ok(Some(LiveGrant { grant, client, tenant })),
        Ok(_) | Err(ClientAuthError::Failed | ClientAuthError::TenantSuspended) => Ok(None),
        Err(ClientAuthError::Store(e)) => Err(oauth_failure(state, operation, &e)),
    }
}

/// A token presented to introspection or revocation, as far as the calling client may know it.
pub(crate) enum Presented {
    /// A live access token of the caller, and the `sub` of its citizen.
    Access { token: String, grant: AccessGrant, sub: Option<String> },
    /// A refresh token of the caller (used or not; `live` when it would still refresh), and the
    /// `sub` of its citizen.
    Refresh { record: RefreshRecord, live: bool, sub: Option<String> },
    /// Unknown, expired, or another client's: looks the same.
    Unknown,
}

/// What `token` is to `client` of `tenant` (RFC 7662 §2.2, RFC 7009 §2.1: a client learns only
/// about its own tokens).
pub(crate) async fn presented(
    state: &AppState,
    environment: Environment,
    client: &Client,
    tenant: &Tenant,
    token: &str,
) -> Result<Presented, OAuthError> {
    if let Some(LiveGrant { grant, .. }) = live_grant(state, "introspection.access", token).await?
        && grant.client_id == client.client_id
        && grant.environment == environment
    {
        let sub = citizen_sub(state, &grant, tenant);
        return Ok(Presented::Access { token: token.to_owned(), grant, sub });
    }
    let now = state.clock.now().unix_timestamp();
    let found = state
        .refresh_tokens
        .find_any(&refresh_token_key(token))
        .await
        .map_err(|e| oauth_failure(state, "introspection.refresh", &e))?;
    Ok(match found {
        Some(record) if record.client_id == client.client_id && record.environment == environment => {
            let live = record.expires_at > now
                && state
                    .refresh_tokens
                    .find(&record.token_hash, now)
                    .await
                    .map_err(|e| oauth_failure(state, "introspection.refresh", &e))?
                    .is_some();
            // A refresh token comes from the code flow: its record names the citizen's account.
            let sub = record
                .grant
                .get("citizen")
                .filter(|c| c.is_object())
                .map(|_| super::authorize::subject(state, environment, tenant, record.account_id));
            Presented::Refresh { record, live, sub }
        }
        _ => Presented::Unknown,
    })
}

/// Revokes what `presented` found: an access token alone; a refresh token with its whole family
/// and every access token issued from it.
pub(crate) async fn revoke(state: &AppState, client: &Client, presented: Presented) -> Result<(), OAuthError> {
    match presented {
        Presented::Access { token, .. } => {
            state.access_tokens.revoke(&token).await.map_err(|e| oauth_failure(state, "revocation", &e))?;
        }
        Presented::Refresh { record, .. } => {
            // Access tokens first: should the second step fail, the family can still be
            // revoked by presenting the token again.
            let ttl = Duration::from_secs(u64::from(client.settings.lifetimes.access_token));
            state
                .access_tokens
                .revoke_family(&record.family_id, ttl)
                .await
                .map_err(|e| oauth_failure(state, "revocation", &e))?;
            state
                .refresh_tokens
                .revoke_family(&record.family_id)
                .await
                .map_err(|e| oauth_failure(state, "revocation", &e))?;
        }
        Presented::Unknown => {}
    }
    Ok(())
}
