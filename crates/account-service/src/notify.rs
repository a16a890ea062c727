//! The mail port: what the citizen is told, not how it is worded or sent (the server renders and
//! sends it).

use async_trait::async_trait;
use oidc_core::Environment;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;

/// Whom a mail goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address.
    pub email: String,
    /// The name for the salutation.
    pub name: String,
}

/// A message to a citizen. Tokens are the secret parts of links the renderer builds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notification {
    /// Registration done: follow the link to activate.
    Activation {
        /// The single-use activation token.
        token: String,
    },
    /// Confirm this new address (sent to the new address).
    ConfirmEmailChange {
        /// The single-use confirmation token.
        token: String,
    },
    /// Your address was changed to another one (sent to the old address).
    EmailChanged {
        /// The new address.
        new_email: String,
    },
    /// Set a new password through the link.
    PasswordReset {
        /// The single-use reset token.
        token: String,
    },
    /// Your password was changed.
    PasswordChanged,
    /// Your account was deleted.
    AccountDeleted,
    /// Your account has not been used for a long time and will be deleted on `delete_on`
    /// unless you log in before.
    InactivityReminder {
        /// The day of the deletion.
        delete_on: time::Date,
    },
    /// Your account was deleted because it was not used (after the reminder).
    DeletedForInactivity,
    /// A new password was set through a reset link; `passkeys_kept` passkeys still work.
    PasswordResetDone {
        /// How many passkeys the account still has.
        passkeys_kept: usize,
    },
    /// A passkey was added to the account.
    PasskeyAdded {
        /// Its name.
        name: String,
    },
    /// A passkey was removed from the account.
    PasskeyRemoved {
        /// Its name.
        name: String,
    },
    /// Confirm the contact address of an organisation (sent to that address).
    OrganisationEmail {
        /// The single-use confirmation token.
        token: String,
        /// The organisation's name.
        organisation: String,
    },
    /// An invitation to act for an organisation (sent to the invited address).
    OrganisationInvitation {
        /// The single-use invitation token.
        token: String,
        /// The organisation's name.
        organisation: String,
        /// Who invited.
        invited_by: String,
    },
    /// Someone tried to register a new account with your address (which has one already): if
    /// it was you, log in or reset the password. The registering browser is told the same as
    /// for any registration, so the page reveals no account.
    RegistrationAttempt,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are credentials: never in logs.
        f.write_str(match self {
            Notification::Activation { .. } => "Activation",
            Notification::ConfirmEmailChange { .. } => "ConfirmEmailChange",
            Notification::EmailChanged { .. } => "EmailChanged",
            Notification::PasswordReset { .. } => "PasswordReset",
            Notification::PasswordChanged => "PasswordChanged",
            Notification::AccountDeleted => "AccountDeleted",
            Notification::InactivityReminder { .. } => "InactivityReminder",
            Notification::DeletedForInactivity => "DeletedForInactivity",
            Notification::RegistrationAttempt => "RegistrationAttempt",
            Notification::PasswordResetDone { .. } => "PasswordResetDone",
            Notification::PasskeyAdded { .. } => "PasskeyAdded",
            Notification::PasskeyRemoved { .. } => "PasskeyRemoved",
            Notification::OrganisationEmail { .. } => "OrganisationEmail",
            Notification::OrganisationInvitation { .. } => "OrganisationInvitation",
        })
    }
}

/// The mail could not be handed over.
#[derive(Debug, thiserror::Error)]
#[error("mail not sent")]
pub struct NotifyError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Sends notifications to citizens.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Renders and sends `notification` to `to`.
    async fn notify(
        &self,
        environment: Environment,
        to: &Recipient,
        notification: Notification,
    ) -> Result<(), NotifyError>;
}

/// A mail waiting to be sent, as the durable queue keeps it: the payload is opaque here (the
/// server seals it, since it holds link tokens and an address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// Unique id.
    pub id: String,
    /// The sealed mail.
    pub payload: Vec<u8>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was queued.
    pub created_at: OffsetDateTime,
}

/// Mails off the request path: queued durably in the same place as the change they report, and
/// sent (and retried) by a worker on any node.
#[async_trait]
pub trait MailQueue: Send + Sync {
    /// Queues a mail, due at once.
    async fn enqueue(&self, mail: &QueuedMail) -> Result<(), StoreError>;

    /// Claims at most `limit` mails due at `now` for `lease` (no other node takes them
    /// meanwhile); a mail whose sender died becomes due again when the lease ends.
    async fn claim_due(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<QueuedMail>, StoreError>;

    /// The mail was handed over: it leaves the queue.
    async fn remove(&self, id: &str) -> Result<(), StoreError>;

    /// Sending failed: try again at `at`, with the attempt counted.
    async fn retry_at(&self, id: &str, at: OffsetDateTime, attempts: u32) -> Result<(), StoreError>;
}
