//! OpenID Connect Back-Channel Logout 1.0: when a citizen's session ends, every client that got
//! a code in it and registered a `backchannel_logout_uri` receives a signed logout token
//! naming the session (`sid`) and the citizen (`sub`), so it can end its own session too.

use std::time::Duration;

use oidc_core::{AccountId, Environment, random_token};
use serde::{Deserialize, Serialize};
use tenant_registry::Client;

use crate::{flows::authorize::session_id, state::AppState};

/// The event a logout token carries (§2.4).
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token is valid this long; it is sent at once.
const TOKEN_LIFETIME_SECONDS: i64 = 120;
/// Waits before the second and third attempt; then the delivery is given up (and logged).
const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

/// A client to tell when the session ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recipient {
    client_id: String,
    sub: String,
}

fn key(environment: Environment, sid: &str) -> String {
    format!("bcl:{}:{sid}", environment.as_str())
}

/// The sessions of an account that have clients to tell, for the ends that reach every session
/// at once (password change or reset, deletion).
fn account_key(environment: Environment, account: AccountId) -> String {
    format!("bcl-acct:{}:{account}", environment.as_str())
}

/// Notes that `client` received a code for `sub` in session `sid` (nothing to note when it has
/// no `backchannel_logout_uri`). Two codes issued in the same instant of one browser session
/// could race here; the later write wins and one client may miss the notice.
pub(crate) async fn remember(
    state: &AppState,
    environment: Environment,
    sid: &str,
    account: AccountId,
    client: &Client,
    sub: &str,
) {
    if client.settings.backchannel_logout_uri.is_none() {
        return;
    }
    remember_session(state, environment, account, sid).await;
    let key = key(environment, sid);
    let mut recipients: Vec<Recipient> = match state.ephemeral.get(&key).await {
        Ok(found) => found.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout list unreadable; this client will not be told");
            return;
        }
    };
    let recipient = Recipient { client_id: client.client_id.to_string(), sub: sub.to_owned() };
    if recipients.contains(&recipient) {
        return;
    }
    recipients.push(recipient);
    let ttl = Duration::from_secs(state.config.accounts.session_absolute_hours.saturating_mul(3600));
    let stored = serde_json::to_vec(&recipients).unwrap_or_default();
    if let Err(e) = state.ephemeral.put(&key, &stored, ttl).await {
        tracing::error!(error = %e, "back-channel logout list not stored");
    }
}

/// Adds `sid` to the account's list of sessions with clients to tell (same race as above).
async fn remember_session(state: &AppState, environment: Environment, account: AccountId, sid: &str) {
    let key = account_key(environment, account);
    let mut sids: Vec<String> = match state.ephemeral.get(&key).await {
        Ok(found) => found.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default(),
        Err(e) => return tracing::error!(error = %e, "back-channel session list unreadable"),
    };
    if sids.iter().any(|s| s == sid) {
        return;
    }
    sids.push(sid.to_owned());
    let ttl = Duration::from_secs(state.config.accounts.session_absolute_hours.saturating_mul(3600));
    if let Err(e) = state.ephemeral.put(&key, &serde_json::to_vec(&sids).unwrap_or_default(), ttl).await {
        tracing::error!(error = %e, "back-channel session list not stored");
    }
}

/// Every session of `account` ended at once (its session epoch was raised: password change or
/// reset, deletion): tell the clients of each, in the background.
pub(crate) async fn account_sessions_ended(state: &AppState, environment: Environment, account: AccountId) {
    let sids: Vec<String> = match state.ephemeral.take(&account_key(environment, account)).await {
        Ok(found) => found.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default(),
        Err(e) => return tracing::error!(error = %e, "back-channel session list unreadable; clients are not told"),
    };
    for sid in sids {
        notify(state, environment, sid).await;
    }
}

/// Ends the browser session `session_token` on every node and tells its clients. Every logout
/// goes through here.
pub(crate) async fn end_session(
    state: &AppState,
    environment: Environment,
    session_token: &str,
) -> Result<(), account_service::AccountError> {
    state.accounts.logout(environment, session_token).await?;
    session_ended(state, environment, session_token).await;
    Ok(())
}

/// The session with cookie value `session_token` ended: tell its clients, in the background.
async fn session_ended(state: &AppState, environment: Environment, session_token: &str) {
    notify(state, environment, session_id(session_token)).await;
}

/// Tells the clients of session `sid` (once: their list is taken).
async fn notify(state: &AppState, environment: Environment, sid: String) {
    let recipients: Vec<Recipient> = match state.ephemeral.take(&key(environment, &sid)).await {
        Ok(found) => found.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout list unreadable; clients are not told");
            return;
        }
    };
    for recipient in recipients {
        let (state, sid) = (state.clone(), sid.clone());
        tokio::spawn(async move { deliver(&state, environment, &sid, recipient).await });
    }
}

async fn deliver(state: &AppState, environment: Environment, sid: &str, recipient: Recipient) {
    let client = match state.registry.active_client(environment, &recipient.client_id).await {
        Ok((client, _)) => client,
        Err(e) => {
            return tracing::info!(client = %recipient.client_id, error = %e, "no back-channel logout: client gone");
        }
    };
    let Some(uri) = client.settings.backchannel_logout_uri.clone() else { return };
    let now = state.clock.now().unix_timestamp();
    let claims = serde_json::json!({
        "iss": state.config.environments.issuer(environment),
        "aud": recipient.client_id,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECONDS,
        "jti": random_token(),
        "sub": recipient.sub,
        "sid": sid,
        "events": { EVENT: {} },
    });
    let algorithm = client.settings.id_token_signed_response_alg;
    let token =
        match state.keys.signing_key(environment, algorithm).await.and_then(|key| key.sign("logout+jwt", &claims)) {
            Ok(token) => token,
            Err(e) => return tracing::error!(error = %e, "logout token not signed"),
        };
    for attempt in 0..=RETRY_DELAYS.len() {
        if attempt > 0 {
            tokio::time::sleep(RETRY_DELAYS[attempt - 1]).await;
        }
        match state.outbound.post(uri.clone()).form(&[("logout_token", token.as_str())]).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(client = %client.client_id, status = %response.status(), attempt, "back-channel logout refused")
            }
            Err(e) => {
                tracing::warn!(client = %client.client_id, error = %e, attempt, "back-channel logout not delivered")
            }
        }
    }
    tracing::error!(client = %client.client_id, "back-channel logout given up after {} attempts", RETRY_DELAYS.len() + 1);
}
