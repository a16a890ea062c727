//! The account store port. Each method is one atomic change.

use async_trait::async_trait;
use oidc_core::{AccountId, Environment};
use time::OffsetDateTime;

use crate::{
    model::{Account, AccountEvent, Consent, DataTransfer},
    passkey::StoredPasskey,
};

/// Which unique value is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueField {
    /// The username (case-insensitive, per environment).
    Username,
    /// The e-mail address (case-insensitive, per environment).
    Email,
    /// The ID card (its pseudonym's keyed hash, per environment).
    Eid,
    /// A passkey's credential id (per environment).
    Passkey,
}

/// What can go wrong in the account store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such account.
    #[error("account not found")]
    NotFound,
    /// A unique value is taken by another account.
    #[error("{0:?} is taken")]
    Conflict(UniqueField),
    /// The database did not answer, or holds something unreadable.
    #[error("account store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Durable storage of accounts and their activity.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Stores a new account with its first event.
    async fn insert(&self, account: &Account, event: &AccountEvent) -> Result<(), StoreError>;

    /// The account with `id` in `environment`.
    async fn get(&self, environment: Environment, id: AccountId) -> Result<Account, StoreError>;

    /// The account whose username equals `username` ignoring case.
    async fn find_by_username(&self, environment: Environment, username: &str) -> Result<Option<Account>, StoreError>;

    /// The account whose e-mail address equals `email` ignoring case.
    async fn find_by_email(&self, environment: Environment, email: &str) -> Result<Option<Account>, StoreError>;

    /// The account the ID card with this keyed pseudonym is linked to.
    async fn find_by_eid_key(&self, environment: Environment, eid_key: &str) -> Result<Option<Account>, StoreError>;

    /// Replaces the stored account (matched by environment and id) and appends `event` if given.
    async fn update(&self, account: &Account, event: Option<&AccountEvent>) -> Result<(), StoreError>;

    /// [`update`](Self::update) and uses up the mail link under `link_hash`, in one step: when
    /// either fails, neither happened (a link is never used up by a change that was not made);
    /// of concurrent callers at most one gets the link. `Ok(false)`, and nothing changed, when
    /// the link is gone.
    async fn update_taking_link(
        &self,
        account: &Account,
        event: Option<&AccountEvent>,
        link_hash: &str,
    ) -> Result<bool, StoreError>;

    /// Appends an event to the account's activity; `NotFound` when the account is gone.
    async fn append_event(
        &self,
        environment: Environment,
        id: AccountId,
        event: &AccountEvent,
    ) -> Result<(), StoreError>;

    /// A successful login: appends its event, records its time (the inactivity policy counts
    /// from it) and clears a pending inactivity reminder, in one step; `NotFound` when the
    /// account is gone.
    async fn record_login(
        &self,
        environment: Environment,
        id: AccountId,
        event: &AccountEvent,
    ) -> Result<(), StoreError>;

    /// Active accounts of any environment that `filter` selects, at most `limit`, oldest
    /// last-seen first.
    async fn inactive(&self, filter: Inactive, limit: u32) -> Result<Vec<Account>, StoreError>;

    /// Records that the inactivity reminder went out at `at`.
    async fn mark_reminded(
        &self,
        environment: Environment,
        id: AccountId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The account's activity, newest first, at most `limit`.
    async fn events(
        &self,
        environment: Environment,
        id: AccountId,
        limit: u32,
    ) -> Result<Vec<AccountEvent>, StoreError>;

    /// The account's consent for `client_id`.
    async fn consent(
        &self,
        environment: Environment,
        id: AccountId,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError>;

    /// Stores (replaces) the account's consent for `consent.client_id`, with an event.
    async fn save_consent(
        &self,
        environment: Environment,
        id: AccountId,
        consent: &Consent,
        event: &AccountEvent,
    ) -> Result<(), StoreError>;

    /// Every consent of the account.
    async fn consents(&self, environment: Environment, id: AccountId) -> Result<Vec<Consent>, StoreError>;

    /// Withdraws the consent for `client_id`; `true` when there was one.
    async fn withdraw_consent(
        &self,
        environment: Environment,
        id: AccountId,
        client_id: &str,
    ) -> Result<bool, StoreError>;

    /// Appends to the transfer log; `NotFound` when the account is gone.
    async fn record_transfer(
        &self,
        environment: Environment,
        id: AccountId,
        transfer: &DataTransfer,
    ) -> Result<(), StoreError>;

    /// Appends to the log of one-time identifications (no account: environment, client, claim
    /// names, time, consent).
    async fn record_one_time_transfer(
        &self,
        environment: Environment,
        transfer: &DataTransfer,
    ) -> Result<(), StoreError>;

    /// The one-time identifications released to `client_id`, newest first, at most `limit`.
    async fn one_time_transfers(
        &self,
        environment: Environment,
        client_id: &str,
        limit: u32,
    ) -> Result<Vec<DataTransfer>, StoreError>;

    /// The transfers made for the organisation `organisation` (by any of its people), newest
    /// first, at most `limit`, each with the account that acted.
    async fn organisation_transfers(
        &self,
        environment: Environment,
        organisation: &str,
        limit: u32,
    ) -> Result<Vec<(AccountId, DataTransfer)>, StoreError>;

    /// The transfer log, newest first, at most `limit`.
    async fn transfers(
        &self,
        environment: Environment,
        id: AccountId,
        limit: u32,
    ) -> Result<Vec<DataTransfer>, StoreError>;

    /// Removes the account and everything stored about it in one transaction, leaving only an
    /// audit record without personal data (id, environment, time). An organisation the account
    /// was the only administrator of passes to its longest-standing other member, or is deleted
    /// when nobody else is in it.
    async fn delete(&self, environment: Environment, id: AccountId, at: OffsetDateTime) -> Result<(), StoreError>;

    /// Removes accounts still pending activation that were registered before `before`; returns
    /// how many.
    async fn purge_pending(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Stores a mail link; `NotFound` when its account is gone.
    async fn insert_link(&self, link: &StoredLink) -> Result<(), StoreError>;

    /// The link stored under `token_hash`, if any.
    async fn find_link(&self, token_hash: &str) -> Result<Option<StoredLink>, StoreError>;

    /// Removes and returns the link under `token_hash` in one step: of concurrent callers on any
    /// nodes, at most one gets it.
    async fn take_link(&self, token_hash: &str) -> Result<Option<StoredLink>, StoreError>;

    /// Removes links that expired before `before`; returns how many.
    async fn purge_links(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Stores a new passkey with its event; `Conflict(Passkey)` when its credential id is
    /// registered in the environment already, `NotFound` when the account is gone.
    async fn insert_passkey(&self, passkey: &StoredPasskey, event: &AccountEvent) -> Result<(), StoreError>;

    /// The account's passkeys, oldest first.
    async fn passkeys(&self, environment: Environment, id: AccountId) -> Result<Vec<StoredPasskey>, StoreError>;

    /// The passkey with this credential id (base64url) in `environment`.
    async fn find_passkey(
        &self,
        environment: Environment,
        credential_id: &str,
    ) -> Result<Option<StoredPasskey>, StoreError>;

    /// Replaces a passkey's name, credential and last use (matched by id and account);
    /// `NotFound` when it is gone.
    async fn update_passkey(&self, passkey: &StoredPasskey) -> Result<(), StoreError>;

    /// Removes one of the account's passkeys with an event; `NotFound` when it is gone.
    async fn remove_passkey(
        &self,
        environment: Environment,
        id: AccountId,
        passkey: uuid::Uuid,
        event: &AccountEvent,
    ) -> Result<(), StoreError>;
}

/// Which inactive accounts [`AccountStore::inactive`] selects. "Last seen" is the last login,
/// or the activation (the registration) for an account never logged in since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    /// Last seen before `seen_before`, no reminder pending: due for one.
    DueForReminder {
        /// The cut-off.
        seen_before: OffsetDateTime,
    },
    /// Last seen before `seen_before` and reminded before `reminded_before`: due for deletion.
    DueForDeletion {
        /// The cut-off for the last login.
        seen_before: OffsetDateTime,
        /// The cut-off for the reminder (the notice period is over).
        reminded_before: OffsetDateTime,
    },
}

/// A single-use mail link as stored: only the hash of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLink {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// `activation`, `password_reset` or `email_change`.
    pub kind: String,
    /// The environment.
    pub environment: Environment,
    /// The account it acts on.
    pub account_id: AccountId,
    /// For an e-mail change: the new address.
    pub new_email: Option<String>,
    /// When it was sent.
    pub created_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}
