//! The mail adapter of the account service's [`Notifier`] port: renders each notification as a
//! German-and-English mail (plain text + HTML) and sends it with lettre, over SMTP (STARTTLS or
//! TLS as the URL says) or, in the embedded mode, into an outbox folder as one `.eml` file each.

use std::{path::PathBuf, sync::Arc};

use account_service::{Notification, Notifier, NotifyError, Recipient};
use anyhow::Context;
use async_trait::async_trait;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use minijinja::context;
use oidc_core::Environment;

use crate::{
    config::{EnvironmentsConfig, MailConfig},
    pages::{Lang, Pages},
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
        };
        let texts = self.pages.texts();
        let part = |lang: Lang| {
            let text = |key: &str| texts.mail(lang, key);
            let optional = |key: String| Some(texts.mail(lang, &key)).filter(|v| *v != key);
            context! {
                subject => text(&format!("{kind}_subject")),
                greeting => text("greeting"),
                body => text(&format!("{kind}_body")).replace("{new_email}", new_email.unwrap_or_default()),
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
