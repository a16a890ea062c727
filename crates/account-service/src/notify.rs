//! The mail port: what the citizen is told, not how it is worded or sent (the server renders and
//! sends it).

use async_trait::async_trait;
use oidc_core::Environment;

/// Whom a mail goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address.
    pub email: String,
    /// The name for the salutation.
    pub name: String,
}

/// A message to a citizen. Tokens are the secret parts of links the renderer builds.
#[derive(Clone, PartialEq, Eq)]
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
