//! The mail adapter of the account service's [`Notifier`] port: [`MailOutbox`] queues each
//! notification, sealed, in the database; [`Mailer`] renders it as a German-and-English mail
//! (plain text + HTML) and sends it with lettre, over SMTP (STARTTLS or TLS as the URL says) or,
//! in the embedded mode, into an outbox folder as one `.eml` file each.

use std::{path::PathBuf, sync::Arc, time::Duration};

use account_service::{MailQueue, Notification, Notifier, NotifyError, QueuedMail, Recipient};
use anyhow::Context;
use async_trait::async_trait;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use minijinja::context;
use oidc_core::{Clock, Environment, KeyEncryptionKey};
use serde::{Deserialize, Serialize};

use crate::{
    config::{EnvironmentsConfig, MailConfig},
    pages::{Lang, Pages, format},
};

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

/// Sends citizen mails.
pub(crate) struct Mailer {
    transport: Transport,
    from: Mailbox,
    pages: Arc<Pages>,
    issuers: EnvironmentsConfig,
}

/// Where mails go, for the start-up banner.
pub(crate) enum MailTarget {
    Smtp,
    Outbox(PathBuf),
}

impl Mailer {
    /// The configured transport; creates the outbox folder when there is no SMTP.
    pub(crate) fn new(config: &MailConfig, issuers: &EnvironmentsConfig, pages: Arc<Pages>) -> anyhow::Result<Self> {
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .context("mail.smtp_url cannot be used")?
                    .build(),
            ),
            None => {
                std::fs::create_dir_all(&config.outbox_dir)
                    .with_context(|| format!("creating the mail outbox {}", config.outbox_dir.display()))?;
                Transport::Outbox(AsyncFileTransport::new(&config.outbox_dir))
            }
        };
        let from = config.from.parse().context("mail.from")?;
        Ok(Self { transport, from, pages, issuers: issuers.clone() })
    }

    /// Where this mailer delivers.
    pub(crate) fn target(config: &MailConfig) -> MailTarget {
        match config.smtp_url {
            Some(_) => MailTarget::Smtp,
            None => MailTarget::Outbox(std::path::absolute(&config.outbox_dir).unwrap_or(config.outbox_dir.clone())),
        }
    }

    fn link(&self, environment: Environment, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.issuers.issuer(environment))
    }

    /// The mail for `notification`: subject, plain text, HTML.
    fn render(
        &self,
        environment: Environment,
        to: &Recipient,
        notification: &Notification,
    ) -> Result<(String, String, String), minijinja::Error> {
        let mut delete_on = None;
        let mut passkey = None;
        let mut organisation_name = None;
        let mut invited_by = None;
        let mut count = 0;
        let (kind, link, new_email) = match notification {
            Notification::Activation { token } => {
                ("activation", Some(self.link(environment, "/aktivierung", token)), None)
            }
            Notification::ConfirmEmailChange { token } => {
                ("confirm_email", Some(self.link(environment, "/konto/email", token)), None)
            }
            Notification::EmailChanged { new_email } => ("email_changed", None, Some(new_email.as_str())),
            Notification::PasswordReset { token } => {
                ("password_reset", Some(self.link(environment, "/passwort-neu", token)), None)
            }
            Notification::PasswordChanged => ("password_changed", None, None),
            Notification::AccountDeleted => ("account_deleted", None, None),
            Notification::InactivityReminder { delete_on: day } => {
                delete_on = Some(*day);
                ("inactivity_reminder", Some(format!("{}/anmelden", self.issuers.issuer(environment))), None)
            }
            Notification::DeletedForInactivity => ("deleted_for_inactivity", None, None),
            Notification::PasswordResetDone { passkeys_kept: 0 } => ("password_reset_done", None, None),
            Notification::PasswordResetDone { passkeys_kept } => {
                count = *passkeys_kept;
                (
                    "password_reset_done_passkeys",
                    Some(format!("{}/konto/passkeys", self.issuers.issuer(environment))),
                    None,
                )
            }
            Notification::PasskeyAdded { name } => {
                passkey = Some(name.as_str());
                ("passkey_added", Some(format!("{}/konto/passkeys", self.issuers.issuer(environment))), None)
            }
            Notification::OrganisationEmail { token, organisation } => {
                organisation_name = Some(organisation.as_str());
                ("organisation_email", Some(self.link(environment, "/organisationen/adresse", token)), None)
            }
            Notification::OrganisationInvitation { token, organisation, invited_by: by } => {
                organisation_name = Some(organisation.as_str());
                invited_by = Some(by.as_str());
                ("organisation_invitation", Some(self.link(environment, "/organisationen/einladung", token)), None)
            }
            Notification::PasskeyRemoved { name } => {
                passkey = Some(name.as_str());
                ("passkey_removed", None, None)
            }
            Notification::RegistrationAttempt => {
                ("registration_attempt", Some(format!("{}/anmelden", self.issuers.issuer(environment))), None)
            }
        };
        let texts = self.pages.texts();
        let part = |lang: Lang| {
            let text = |key: &str| texts.mail(lang, key);
            let optional = |key: String| Some(texts.mail(lang, &key)).filter(|v| *v != key);
            context! {
                subject => text(&format!("{kind}_subject")),
                greeting => text("greeting"),
                body => text(&format!("{kind}_body"))
                    .replace("{new_email}", new_email.unwrap_or_default())
                    .replace("{passkey}", passkey.unwrap_or_default())
                    .replace("{organisation}", organisation_name.unwrap_or_default())
                    .replace("{invited_by}", invited_by.unwrap_or_default())
                    .replace("{count}", &count.to_string())
                    .replace("{delete_on}", &delete_on.map(|day| format::date(lang, day)).unwrap_or_default()),
                action => optional(format!("{kind}_action")),
                validity => optional(format!("{kind}_validity")),
                ignore => text("ignore"),
                signature => text("signature"),
                link_fallback => text("link_fallback"),
            }
        };
        let context = context! { name => to.name, link => link, de => part(Lang::De), en => part(Lang::En) };
        let subject = format!(
            "{} / {}",
            texts.mail(Lang::De, &format!("{kind}_subject")),
            texts.mail(Lang::En, &format!("{kind}_subject"))
        );
        let text = self.pages.render_template("mail/text.txt", context.clone())?;
        let html = self.pages.render_template("mail/html.html", context)?;
        Ok((subject, text, html))
    }
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> NotifyError {
    NotifyError(Box::new(e))
}

#[async_trait]
impl Notifier for Mailer {
    async fn notify(
        &self,
        environment: Environment,
        to: &Recipient,
        notification: Notification,
    ) -> Result<(), NotifyError> {
        let (subject, text, html) = self.render(environment, to, &notification).map_err(failed)?;
        let address = to.email.parse().map_err(failed)?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(Some(to.name.clone()), address))
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(failed)?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(failed)?,
            Transport::Outbox(outbox) => outbox.send(message).await.map(drop).map_err(failed)?,
        }
        tracing::info!(notification = ?notification, %environment, "mail sent");
        Ok(())
    }
}

/// The account service's [`Notifier`]: each mail is sealed and queued in the database, off the
/// request path (an SMTP relay's speed or absence shows in no answer, and no mail is lost while
/// it is down); [`MailOutbox::deliver_due`] hands them to the [`Mailer`], retrying with backoff.
pub(crate) struct MailOutbox {
    queue: Arc<dyn MailQueue>,
    /// Seals the queued mail: it holds link tokens and an address.
    key: KeyEncryptionKey,
    clock: Arc<dyn Clock>,
    /// Wakes this node's delivery worker at once after a mail was queued.
    queued: tokio::sync::Notify,
}

/// A queued mail as sealed.
#[derive(Serialize, Deserialize)]
struct Envelope {
    environment: Environment,
    to: Recipient,
    notification: Notification,
}

/// How long a node may take to hand a claimed mail over before another node may try it.
const LEASE: Duration = Duration::from_secs(60);
/// Mails claimed per round.
pub(crate) const BATCH: u32 = 20;
/// A mail not handed over within this long is given up (its links have expired by then).
const GIVE_UP_AFTER: time::Duration = time::Duration::hours(72);

impl MailOutbox {
    pub(crate) fn new(queue: Arc<dyn MailQueue>, kek: &KeyEncryptionKey, clock: Arc<dyn Clock>) -> Self {
        Self { queue, key: kek.derived("mail-queue"), clock, queued: tokio::sync::Notify::new() }
    }

    /// Waits until a mail was queued on this node or `interval` passed.
    pub(crate) async fn wait(&self, interval: Duration) {
        let _ = tokio::time::timeout(interval, self.queued.notified()).await;
    }

    /// Sends the mails that are due; returns how many were handed over and how many failed.
    pub(crate) async fn deliver_due(&self, mailer: &Mailer) -> Result<(usize, usize), account_service::StoreError> {
        let now = self.clock.now();
        let (mut sent, mut failed) = (0, 0);
        for mail in self.queue.claim_due(now, LEASE, BATCH).await? {
            let envelope = self
                .key
                .open(&mail.id, &mail.payload)
                .and_then(|plain| serde_json::from_slice::<Envelope>(&plain).ok());
            let Some(envelope) = envelope else {
                tracing::error!(id = %mail.id, "a queued mail cannot be opened (another key-encryption key?); dropped");
                self.queue.remove(&mail.id).await?;
                continue;
            };
            match mailer.notify(envelope.environment, &envelope.to, envelope.notification).await {
                Ok(()) => {
                    self.queue.remove(&mail.id).await?;
                    sent += 1;
                }
                Err(error) if now - mail.created_at > GIVE_UP_AFTER => {
                    failed += 1;
                    tracing::error!(id = %mail.id, %error, "mail given up after 72 hours of failed attempts");
                    self.queue.remove(&mail.id).await?;
                }
                Err(error) => {
                    failed += 1;
                    let attempts = mail.attempts + 1;
                    // 30 s, 1 min, 2 min, … at most 30 min between attempts.
                    let wait =
                        time::Duration::seconds(30 * (1_i64 << attempts.min(6))).min(time::Duration::minutes(30));
                    tracing::warn!(dependency = "smtp", id = %mail.id, attempts, %error, cause = ?std::error::Error::source(&error).map(ToString::to_string), "mail not sent; retrying later");
                    self.queue.retry_at(&mail.id, now + wait, attempts).await?;
                }
            }
        }
        Ok((sent, failed))
    }
}

#[async_trait]
impl Notifier for MailOutbox {
    async fn notify(
        &self,
        environment: Environment,
        to: &Recipient,
        notification: Notification,
    ) -> Result<(), NotifyError> {
        let id = uuid::Uuid::new_v4().to_string();
        let envelope = Envelope { environment, to: to.clone(), notification };
        let plain = serde_json::to_vec(&envelope).map_err(failed)?;
        let mail = QueuedMail { payload: self.key.seal(&id, &plain), id, attempts: 0, created_at: self.clock.now() };
        self.queue.enqueue(&mail).await.map_err(failed)?;
        self.queued.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use account_service::{Notification, Recipient};
    use oidc_core::{Environment, KeyEncryptionKey};
    use time::macros::date;

    use super::*;

    #[test]
    fn the_inactivity_reminder_names_the_day_in_each_language_and_links_to_the_login() {
        let dir = tempfile::tempdir().unwrap();
        let config = MailConfig { outbox_dir: dir.path().to_owned(), ..MailConfig::default() };
        let pages = Arc::new(Pages::new(&KeyEncryptionKey::generate(), "a11y@example.de", "1").unwrap());
        let mut issuers = EnvironmentsConfig::default();
        issuers.production.issuer = "https://konto.example".to_owned();
        let mailer = Mailer::new(&config, &issuers, pages).unwrap();
        let to = Recipient { email: "erika@example.de".into(), name: "Erika Mustermann".into() };
        let reminder = Notification::InactivityReminder { delete_on: date!(2029 - 03 - 05) };
        let (subject, text, html) = mailer.render(Environment::Production, &to, &reminder).unwrap();
        assert!(subject.contains("bald gelöscht") && subject.contains("deleted soon"), "{subject}");
        // The HTML part escapes the slashes of the link (minijinja's HTML escaping).
        for (body, login) in [(&text, "https://konto.example/anmelden"), (&html, "konto.example&#x2f;anmelden")] {
            assert!(body.contains("am 05.03.2029"), "German date: {body}");
            assert!(body.contains("on 5 March 2029"), "English date: {body}");
            assert!(body.contains(login), "the way to keep it: {body}");
        }
        let (subject, text, _) =
            mailer.render(Environment::Production, &to, &Notification::DeletedForInactivity).unwrap();
        assert!(subject.contains("gelöscht"), "{subject}");
        assert!(text.contains("neu registrieren") && !text.contains("{delete_on}"), "{text}");
    }
}
