//! Claim release, the same for every protocol: whatever leaves us about a citizen — userinfo,
//! ID token, SAML assertion — is logged in the transfer log first (no log, no release).

use account_service::{AccountError, DataTransfer};
use oidc_core::{AccountId, Environment};

use crate::state::AppState;

/// Logs `transfer` in the account's transfer log, or — for a one-time identification, which
/// has no account — in the client's count of one-time transfers.
pub(crate) async fn record_transfer(
    state: &AppState,
    environment: Environment,
    account: Option<AccountId>,
    transfer: DataTransfer,
) -> Result<(), AccountError> {
    match account {
        Some(id) => state.accounts.record_transfer(environment, id, transfer).await,
        None => state.accounts.record_one_time_transfer(environment, transfer).await,
    }
}
