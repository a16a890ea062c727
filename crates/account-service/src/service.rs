//! [`Accounts`]: every citizen-account use case, over the store, the ephemeral store and the mail
//! port.

use std::{sync::Arc, time::Duration};

use oidc_core::{AccountId, Clock, Environment, EphemeralStore, TrustLevel};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::instrument;

use crate::{
    CardIdentity, FieldError, PasswordHasher, PasswordProblem, PersonalData, Verification,
    card::trust_level_of,
    check_password,
    links::{LinkError, LinkKind, Links},
    model::{
        Account, AccountEvent, AccountStatus, Attested, AuthMethod, Consent, DataTransfer, EventKind, LoginFactors,
        MasterData, PrivacyConsent, Source,
    },
    notify::{Notification, Notifier, Recipient},
    passkey::{PasskeyCeremony, PasskeyError, PasskeyTrust, Passkeys, RelyingParty},
    session::{Session, SessionPolicy, Sessions},
    store::{AccountStore, Inactive, StoreError, UniqueField},
    throttle::{Throttle, ThrottlePolicy},
};

/// Everything a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Username and/or e-mail address belong to another account of this environment.
    #[error("taken: {0:?}")]
    Taken(Vec<UniqueField>),
    /// Unknown username or wrong password (deliberately the same).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The password is right but the account was never activated.
    #[error("account not activated")]
    NotActivated,
    /// Too many failed logins: wait this long.
    #[error("too many failed logins; retry after {retry_after:?}")]
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
    /// A mail link that does not work.
    #[error(transparent)]
    Link(LinkError),
    /// The current password given to confirm a change is wrong.
    #[error("wrong password")]
    WrongPassword,
    /// The new password breaks the policy.
    #[error("password refused")]
    PasswordPolicy(Vec<PasswordProblem>),
    /// Master data that do not validate.
    #[error("invalid data")]
    Invalid(Vec<FieldError>),
    /// No such account (e.g. deleted while a session was open).
    #[error("account not found")]
    NotFound,
    /// A passkey step failed.
    #[error(transparent)]
    Passkey(PasskeyError),
    /// The password is right, and the account needs a passkey too: the second step's ceremony.
    #[error("passkey needed after the password")]
    PasskeyRequired(PasskeyCeremony),
    /// A store or the hasher failed; the details are in the source, not for the citizen.
    #[error("account service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AccountError {
    pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        AccountError::Unavailable(Box::new(e))
    }
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AccountError::NotFound,
            StoreError::Conflict(field) => AccountError::Taken(vec![field]),
            StoreError::Unavailable(source) => AccountError::Unavailable(source),
        }
    }
}

/// Lifetimes and policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsConfig {
    /// Activation links stay valid this long (72 h).
    pub activation_ttl: Duration,
    /// Accounts not activated within this long are purged (7 days).
    pub pending_max_age: Duration,
    /// Password-reset links stay valid this long (1 h).
    pub reset_ttl: Duration,
    /// E-mail change confirmations stay valid this long (24 h).
    pub email_change_ttl: Duration,
    /// Session timeouts.
    pub sessions: SessionPolicy,
    /// Login throttling.
    pub throttle: ThrottlePolicy,
    /// What happens to accounts nobody uses; `None`: they stay.
    pub inactivity: Option<InactivityPolicy>,
    /// Where passkeys of each environment are bound; an environment without one has none.
    pub relying_parties: Vec<RelyingParty>,
    /// How much a passkey login is trusted.
    pub passkey_trust: PasskeyTrust,
}

/// Accounts kept only as long as they are used (GDPR Art. 5(1)(e)): after `remind_after`
/// without a login the citizen is told by mail that the account will be deleted; after
/// `delete_after`, and not before `delete_after - remind_after` has passed since the reminder,
/// it is deleted as the citizen's own deletion would do it. A login in between keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InactivityPolicy {
    /// Without a login this long, a reminder (3 years).
    pub remind_after: Duration,
    /// Without a login this long, the deletion (3 years and 3 months).
    pub delete_after: Duration,
}

impl InactivityPolicy {
    /// The time between reminder and deletion.
    pub fn notice(&self) -> Duration {
        self.delete_after.saturating_sub(self.remind_after)
    }
}

impl Default for InactivityPolicy {
    fn default() -> Self {
        let days = |d: u64| Duration::from_secs(d * 24 * 3600);
        Self { remind_after: days(3 * 365), delete_after: days(3 * 365 + 91) }
    }
}

/// What one run of the inactivity policy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InactivitySweep {
    /// Reminders sent.
    pub reminded: u64,
    /// Accounts deleted.
    pub deleted: u64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        Self {
            activation_ttl: hours(72),
            pending_max_age: hours(7 * 24),
            reset_ttl: hours(1),
            email_change_ttl: hours(24),
            sessions: SessionPolicy::default(),
            throttle: ThrottlePolicy::default(),
            inactivity: Some(InactivityPolicy::default()),
            relying_parties: Vec::new(),
            passkey_trust: PasskeyTrust::default(),
        }
    }
}

/// What "Sichern" stores: the checked step-1 data and the step-2 password hash.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Step 1, validated and normalised.
    pub data: PersonalData,
    /// Step 2, already hashed by [`Accounts::hash_password`].
    pub password_hash: String,
    /// The privacy statement accepted in step 2.
    pub privacy_consent: PrivacyConsent,
    /// The ID card the data were read from, when registering with eID.
    pub card: Option<CardIdentity>,
}

/// A started session: the cookie value and the session.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The cookie value; shown to nobody else.
    pub token: String,
    /// The session.
    pub session: Session,
}

/// The result of a master-data change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterDataChange {
    /// Names of the fields that changed.
    pub changed: Vec<&'static str>,
    /// A new e-mail address awaits confirmation by the link sent to it.
    pub email_confirmation_sent: bool,
}

/// Everything stored about a citizen, for the data export (GDPR Art. 15, 20).
#[derive(Debug, Clone, Serialize)]
pub struct AccountExport {
    /// When the export was made.
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    /// The account id.
    pub id: AccountId,
    /// `production` or `test`.
    pub environment: &'static str,
    /// The login name.
    pub username: String,
    /// The e-mail address with its provenance.
    pub email: Attested,
    /// `pending` or `active`.
    pub status: &'static str,
    /// The trust level.
    pub trust_level: &'static str,
    /// Whether an ID card is linked (its pseudonym itself is kept only as a keyed hash, which
    /// says nothing to anyone: not exported).
    pub id_card_linked: bool,
    /// Master data, each field with source and verification time.
    pub master_data: MasterData,
    /// The accepted privacy statement.
    pub privacy_consent: PrivacyConsent,
    /// Registration time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Activation time.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// The activity list.
    pub events: Vec<ExportedEvent>,
    /// Consents to release claims to clients.
    pub consents: Vec<Consent>,
    /// Every release of claims to a client (names, not values).
    pub data_transfers: Vec<DataTransfer>,
    /// Password alone or password and passkey.
    pub login_factors: LoginFactors,
    /// The passkeys (names and times; their public keys say nothing about the citizen).
    pub passkeys: Vec<ExportedPasskey>,
}

/// One passkey in the export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedPasskey {
    /// The citizen's name for it.
    pub name: String,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last used.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// One activity entry in the export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What.
    pub kind: EventKind,
    /// Details.
    pub detail: Option<String>,
}

/// The citizen-account use cases.
pub struct Accounts {
    pub(crate) store: Arc<dyn AccountStore>,
    notifier: Arc<dyn Notifier>,
    hasher: Arc<PasswordHasher>,
    /// One permit per core: more argon2id hashes at once than cores only queue on the CPU, and
    /// each holds `argon2_memory_kib` that the allocator keeps per thread afterwards, so
    /// unbounded parallel logins would grow memory with the number of blocking threads.
    hashing_slots: Arc<tokio::sync::Semaphore>,
    pub(crate) clock: Arc<dyn Clock>,
    links: Links,
    sessions: Sessions,
    throttle: Throttle,
    /// For the inactivity policy's lease and passkey ceremonies.
    pub(crate) ephemeral: Arc<dyn EphemeralStore>,
    pub(crate) passkeys: Passkeys,
    config: AccountsConfig,
}

/// How many activity entries the account pages and the export read at most.
const EVENT_LIMIT: u32 = 1000;

impl Accounts {
    /// The service over its ports.
    pub fn new(
        store: Arc<dyn AccountStore>,
        ephemeral: Arc<dyn EphemeralStore>,
        notifier: Arc<dyn Notifier>,
        hasher: PasswordHasher,
        clock: Arc<dyn Clock>,
        config: AccountsConfig,
    ) -> Self {
        Self {
            links: Links::new(store.clone(), clock.clone()),
            store,
            notifier,
            hasher: Arc::new(hasher),
            hashing_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            )),
            sessions: Sessions::new(ephemeral.clone(), clock.clone(), config.sessions),
            throttle: Throttle::new(ephemeral.clone(), clock.clone(), config.throttle),
            passkeys: Passkeys::new(&config.relying_parties, config.passkey_trust),
            ephemeral,
            clock,
            config,
        }
    }

    /// The current time of the injected clock (pages use it for "today").
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Hashes a password on a blocking thread (argon2id costs tens of milliseconds of CPU).
    pub async fn hash_password(&self, password: String) -> Result<String, AccountError> {
        let hasher = self.hasher.clone();
        let _slot = self.hashing_slots.acquire().await.map_err(AccountError::internal)?;
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(AccountError::internal)?
            .map_err(AccountError::internal)
    }

    /// Whether `password` is the account's.
    pub(crate) async fn password_matches(&self, account: &Account, password: &str) -> Result<bool, AccountError> {
        Ok(self.verify_password(Some(account.password_hash.clone()), password).await? != Verification::Invalid)
    }

    async fn verify_password(&self, stored: Option<String>, password: &str) -> Result<Verification, AccountError> {
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        let _slot = self.hashing_slots.acquire().await.map_err(AccountError::internal)?;
        tokio::task::spawn_blocking(move || match stored {
            Some(stored) => hasher.verify(&stored, &password),
            None => {
                hasher.verify_dummy(&password);
                Verification::Invalid
            }
        })
        .await
        .map_err(AccountError::internal)
    }

    /// Step 1's check: whether the username is taken (the citizen must choose another). Counted
    /// per client address, so usernames cannot be harvested in bulk. The e-mail address is not
    /// checked: whether an address has an account is its owner's business alone, who is told by
    /// mail at "Sichern".
    pub async fn username_taken(
        &self,
        environment: Environment,
        username: &str,
        client_ip: &str,
    ) -> Result<bool, AccountError> {
        if let Some(retry_after) = self.throttle.count_username_check(environment, client_ip).await? {
            return Err(AccountError::Throttled { retry_after });
        }
        Ok(self.store.find_by_username(environment, username).await?.is_some())
    }

    /// "Sichern": stores the account (pending) and sends the activation mail. `Ok(false)` when the
    /// account was stored but the mail could not be queued (the citizen can ask again).
    ///
    /// An address that has an account already gets no second one: its owner is mailed instead
    /// (a pending account its activation link again), and the caller hears what every
    /// registration hears, so the answer reveals no account.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn register(&self, environment: Environment, registration: Registration) -> Result<bool, AccountError> {
        let mut taken = Vec::new();
        if self.store.find_by_username(environment, &registration.data.username).await?.is_some() {
            taken.push(UniqueField::Username);
        }
        if let Some(card) = &registration.card
            && self.store.find_by_eid_key(environment, &card.key).await?.is_some()
        {
            taken.push(UniqueField::Eid);
        }
        if !taken.is_empty() {
            return Err(AccountError::Taken(taken));
        }
        if let Some(owner) = self.store.find_by_email(environment, &registration.data.email).await? {
            return Ok(self.tell_the_address_owner(&owner).await);
        }
        let now = self.clock.now();
        let mut account = Account {
            id: AccountId::new_random(),
            environment,
            username: registration.data.username.clone(),
            email: Attested::self_asserted(registration.data.email.clone(), now),
            status: AccountStatus::Pending,
            master_data: MasterData::from_personal_data(&registration.data, now),
            password_hash: registration.password_hash,
            trust_level: TrustLevel::Normal,
            eid_key: registration.card.as_ref().map(|c| c.key.clone()),
            privacy_consent: registration.privacy_consent,
            session_epoch: 0,
            login_factors: LoginFactors::default(),
            created_at: now,
            activated_at: None,
            updated_at: now,
        };
        if let Some(card) = &registration.card {
            // The form was filled from the card; what survived normalisation unchanged is the card's.
            account.master_data.confirm_by_card(&card.data, &form_fields(), now);
            account.trust_level = trust_level_of(&account);
        }
        let method = registration.card.as_ref().map(|_| AuthMethod::Eid.as_str().to_owned());
        match self.store.insert(&account, &self.event(EventKind::Registered, method)).await {
            Ok(()) => Ok(self.send_activation(&account).await),
            // The address was registered meanwhile: as above.
            Err(StoreError::Conflict(UniqueField::Email)) => {
                match self.store.find_by_email(environment, &registration.data.email).await? {
                    Some(owner) => Ok(self.tell_the_address_owner(&owner).await),
                    None => Err(AccountError::Taken(vec![UniqueField::Email])),
                }
            }
            Err(other) => Err(other.into()),
        }
    }

    /// A registration with the address of `owner`'s account: the owner hears of it (a pending
    /// account gets its activation link again, the way on after a registration cut short).
    async fn tell_the_address_owner(&self, owner: &Account) -> bool {
        match owner.status {
            AccountStatus::Pending => self.send_activation(owner).await,
            AccountStatus::Active => self.send(owner, Notification::RegistrationAttempt).await,
        }
    }

    async fn send_activation(&self, account: &Account) -> bool {
        let token = match self
            .links
            .issue(LinkKind::Activation, account.environment, account.id, self.config.activation_ttl, None)
            .await
        {
            Ok(token) => token,
            Err(e) => {
                tracing::error!(error = %e, "could not store the activation link");
                return false;
            }
        };
        self.send(account, Notification::Activation { token }).await
    }

    /// Sends a mail; failures are logged and reported as `false`, never lose the change made.
    pub(crate) async fn send(&self, account: &Account, notification: Notification) -> bool {
        match self.notifier.notify(account.environment, &recipient(account), notification).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "mail not sent");
                false
            }
        }
    }

    /// Follows an activation link. Activating an active account again is harmless. The link is
    /// used up with the activation, in one step: when the database fails on the way, the link
    /// still works for the retry (nginx sends a failed `GET` to the other node at once).
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn activate(&self, environment: Environment, token: &str) -> Result<AccountId, AccountError> {
        let (id, _) = self.links.peek(LinkKind::Activation, environment, token).await?.map_err(AccountError::Link)?;
        let mut account = self.store.get(environment, id).await?;
        if account.status == AccountStatus::Active {
            // Activated before: the link is used up all the same.
            let _already_used = self.links.take(LinkKind::Activation, environment, token).await?;
            return Ok(id);
        }
        let now = self.clock.now();
        account.status = AccountStatus::Active;
        account.activated_at = Some(now);
        account.email.verified_at = Some(now);
        account.updated_at = now;
        // `false`: a second click at the same moment took the link — with the activation, which
        // is all this one would have done.
        self.links.take_with(token, &account, Some(&self.event(EventKind::Activated, None))).await?;
        Ok(id)
    }

    /// "Aktivierungsmail erneut senden", by username or e-mail address. Says nothing about
    /// whether such a pending account exists.
    pub async fn resend_activation(&self, environment: Environment, login: &str) -> Result<(), AccountError> {
        if let Some(account) = self.find_by_login(environment, login).await?
            && account.status == AccountStatus::Pending
        {
            self.send_activation(&account).await;
        }
        Ok(())
    }

    async fn find_by_login(&self, environment: Environment, login: &str) -> Result<Option<Account>, AccountError> {
        let login = login.trim();
        if login.is_empty() {
            return Ok(None);
        }
        Ok(match self.store.find_by_username(environment, login).await? {
            Some(account) => Some(account),
            None => self.store.find_by_email(environment, login).await?,
        })
    }

    /// Username-and-password login. Unknown usernames cost one dummy verification, so neither the
    /// answer nor its timing tells whether an account exists.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn login(
        &self,
        environment: Environment,
        username: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<LoggedIn, AccountError> {
        let username = username.trim();
        // Counted before the verification: parallel attempts cannot slip past the count.
        if let Some(retry_after) = self.throttle.admit(environment, username, client_ip).await? {
            return Err(AccountError::Throttled { retry_after });
        }
        let account = self.store.find_by_username(environment, username).await?;
        let verification = self.verify_password(account.as_ref().map(|a| a.password_hash.clone()), password).await?;
        let (account, needs_rehash) = match (account, verification) {
            (Some(account), Verification::Valid { needs_rehash }) => (account, needs_rehash),
            (account, _) => {
                if let Some(account) = account {
                    self.store.append_event(environment, account.id, &self.event(EventKind::LoginFailed, None)).await?;
                }
                return Err(AccountError::InvalidCredentials);
            }
        };
        self.throttle.succeeded(environment, username, client_ip).await?;
        if account.status != AccountStatus::Active {
            return Err(AccountError::NotActivated);
        }
        let event = self.event(EventKind::LoginSucceeded, Some(AuthMethod::Pwd.as_str().to_owned()));
        if needs_rehash {
            let mut account = account.clone();
            account.password_hash = self.hash_password(password.to_owned()).await?;
            self.store.update(&account, None).await?;
        }
        if account.login_factors == LoginFactors::PasswordAndPasskey
            && let Some(ceremony) = self.start_second_factor(&account).await?
        {
            return Err(AccountError::PasskeyRequired(ceremony));
        }
        self.store.record_login(environment, account.id, &event).await?;
        self.start_session(&account, AuthMethod::Pwd).await
    }

    /// Login with the ID card: the account linked to the card's keyed pseudonym. `Ok(None)` when
    /// no account knows this card.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn login_with_card(
        &self,
        environment: Environment,
        eid_key: &str,
    ) -> Result<Option<LoggedIn>, AccountError> {
        let Some(account) = self.store.find_by_eid_key(environment, eid_key).await? else { return Ok(None) };
        if account.status != AccountStatus::Active {
            return Err(AccountError::NotActivated);
        }
        let event = self.event(EventKind::LoginSucceeded, Some(AuthMethod::Eid.as_str().to_owned()));
        self.store.record_login(environment, account.id, &event).await?;
        self.start_session(&account, AuthMethod::Eid).await.map(Some)
    }

    /// Links the ID card to the account ("Vertrauensniveau hochstufen"): equal data become
    /// eID-verified, differing data are taken from the card except the fields in `keep_own`.
    /// A renewed card replaces the old one. Returns the fields whose value changed.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn link_card(
        &self,
        environment: Environment,
        id: AccountId,
        card: &CardIdentity,
        keep_own: &[String],
    ) -> Result<Vec<&'static str>, AccountError> {
        if let Some(other) = self.store.find_by_eid_key(environment, &card.key).await?
            && other.id != id
        {
            return Err(AccountError::Taken(vec![UniqueField::Eid]));
        }
        let mut account = self.store.get(environment, id).await?;
        let now = self.clock.now();
        let changed = account.master_data.confirm_by_card(&card.data, keep_own, now);
        account.eid_key = Some(card.key.clone());
        account.trust_level = trust_level_of(&account);
        account.updated_at = now;
        let event = self.event(EventKind::EidLinked, (!changed.is_empty()).then(|| changed.join(",")));
        self.store.update(&account, Some(&event)).await?;
        Ok(changed)
    }

    async fn start_session(&self, account: &Account, method: AuthMethod) -> Result<LoggedIn, AccountError> {
        let trust_level = match method {
            AuthMethod::Eid => TrustLevel::Hoch,
            AuthMethod::Pwd | AuthMethod::Passkey | AuthMethod::PwdAndPasskey => TrustLevel::Normal,
        };
        self.start_session_at(account, method, trust_level).await
    }

    pub(crate) async fn start_session_at(
        &self,
        account: &Account,
        method: AuthMethod,
        trust_level: TrustLevel,
    ) -> Result<LoggedIn, AccountError> {
        let (token, session) =
            self.sessions.start(account.environment, account.id, method, trust_level, account.session_epoch).await?;
        Ok(LoggedIn { token, session })
    }

    /// The live session behind a cookie and its account; `None` when the session ended, timed out,
    /// or was ended everywhere (password change, deletion).
    pub async fn current(
        &self,
        environment: Environment,
        token: &str,
    ) -> Result<Option<(Session, Account)>, AccountError> {
        let Some(session) = self.sessions.find(environment, token).await? else { return Ok(None) };
        let account = match self.store.get(environment, session.account_id).await {
            Ok(account) => account,
            Err(StoreError::NotFound) => {
                self.sessions.end(environment, token).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if account.session_epoch != session.epoch || account.status != AccountStatus::Active {
            self.sessions.end(environment, token).await?;
            return Ok(None);
        }
        Ok(Some((session, account)))
    }

    /// Ends the session behind a cookie.
    pub async fn logout(&self, environment: Environment, token: &str) -> Result<(), AccountError> {
        if let Some(session) = self.sessions.find(environment, token).await? {
            self.store
                .append_event(environment, session.account_id, &self.event(EventKind::LoggedOut, None))
                .await
                .or_else(|e| if matches!(e, StoreError::NotFound) { Ok(()) } else { Err(e) })?;
        }
        self.sessions.end(environment, token).await
    }

    /// The account.
    pub async fn account(&self, environment: Environment, id: AccountId) -> Result<Account, AccountError> {
        Ok(self.store.get(environment, id).await?)
    }

    /// Changes master data. A new e-mail address is not taken over yet: a confirmation link goes
    /// to it, and only following that link replaces the old address.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn update_master_data(
        &self,
        environment: Environment,
        id: AccountId,
        data: &PersonalData,
    ) -> Result<MasterDataChange, AccountError> {
        let mut account = self.store.get(environment, id).await?;
        let now = self.clock.now();
        let (master_data, changed) = account.master_data.updated(data, now);
        let new_email = (!data.email.eq_ignore_ascii_case(&account.email.value)).then(|| data.email.clone());
        if let Some(email) = &new_email
            && self.store.find_by_email(environment, email).await?.is_some()
        {
            return Err(AccountError::Taken(vec![UniqueField::Email]));
        }
        if !changed.is_empty() {
            account.master_data = master_data;
            // An edited eID-verified field is the citizen's now; the level follows.
            account.trust_level = trust_level_of(&account);
            account.updated_at = now;
            let event = self.event(EventKind::MasterDataChanged, Some(changed.join(",")));
            self.store.update(&account, Some(&event)).await?;
        }
        let mut email_confirmation_sent = false;
        if let Some(email) = new_email {
            let token = self
                .links
                .issue(LinkKind::EmailChange, environment, id, self.config.email_change_ttl, Some(email.clone()))
                .await?;
            self.store.append_event(environment, id, &self.event(EventKind::EmailChangeRequested, None)).await?;
            let to = Recipient { email, name: display_name(&account) };
            email_confirmation_sent = self
                .notifier
                .notify(environment, &to, Notification::ConfirmEmailChange { token })
                .await
                .inspect_err(|e| tracing::error!(error = %e, "mail not sent"))
                .is_ok();
        }
        Ok(MasterDataChange { changed, email_confirmation_sent })
    }

    /// Follows the confirmation link of an e-mail change: the new address replaces the old one,
    /// and the old address is told.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn confirm_email_change(&self, environment: Environment, token: &str) -> Result<String, AccountError> {
        let (id, grant) =
            self.links.peek(LinkKind::EmailChange, environment, token).await?.map_err(AccountError::Link)?;
        let new_email = grant.new_email.ok_or(AccountError::Link(LinkError::Invalid))?;
        let mut account = self.store.get(environment, id).await?;
        let old = account.clone();
        let now = self.clock.now();
        account.email = Attested {
            value: new_email.clone(),
            source: Source::SelfAsserted,
            verified_at: Some(now),
            updated_at: now,
        };
        account.updated_at = now;
        if !self.links.take_with(token, &account, Some(&self.event(EventKind::EmailChanged, None))).await? {
            return Err(AccountError::Link(LinkError::Invalid));
        }
        self.send(&old, Notification::EmailChanged { new_email: new_email.clone() }).await;
        Ok(new_email)
    }

    /// Changes the password, knowing the current one. Every other session ends; the returned
    /// session replaces the caller's.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn change_password(
        &self,
        environment: Environment,
        id: AccountId,
        current: &str,
        new: &str,
        confirmation: &str,
    ) -> Result<LoggedIn, AccountError> {
        let account = self.store.get(environment, id).await?;
        if self.verify_password(Some(account.password_hash.clone()), current).await? == Verification::Invalid {
            return Err(AccountError::WrongPassword);
        }
        let account = self.set_password(account, new, confirmation, EventKind::PasswordChanged, None).await?;
        self.send(&account, Notification::PasswordChanged).await;
        self.start_session(&account, AuthMethod::Pwd).await
    }

    /// Sets the new password; through a reset link, `link` is that link's token, used up in the
    /// same step.
    async fn set_password(
        &self,
        mut account: Account,
        new: &str,
        confirmation: &str,
        kind: EventKind,
        link: Option<&str>,
    ) -> Result<Account, AccountError> {
        let problems = check_password(new, confirmation, &account.username, &account.email.value);
        if !problems.is_empty() {
            return Err(AccountError::PasswordPolicy(problems));
        }
        account.password_hash = self.hash_password(new.to_owned()).await?;
        account.session_epoch += 1;
        account.updated_at = self.clock.now();
        let event = self.event(kind, None);
        match link {
            None => self.store.update(&account, Some(&event)).await?,
            Some(token) => {
                if !self.links.take_with(token, &account, Some(&event)).await? {
                    return Err(AccountError::Link(LinkError::Invalid));
                }
            }
        }
        Ok(account)
    }

    /// "Passwort vergessen", by username or e-mail address: a reset link goes to an active
    /// account's address. The answer is the same whether or not there is one.
    pub async fn request_password_reset(&self, environment: Environment, login: &str) -> Result<(), AccountError> {
        if let Some(account) = self.find_by_login(environment, login).await?
            && account.status == AccountStatus::Active
        {
            let token =
                self.links.issue(LinkKind::PasswordReset, environment, account.id, self.config.reset_ttl, None).await?;
            self.send(&account, Notification::PasswordReset { token }).await;
        }
        Ok(())
    }

    /// Whether a reset link still works (to show its form), without using it.
    pub async fn check_reset_link(&self, environment: Environment, token: &str) -> Result<(), AccountError> {
        self.links.peek(LinkKind::PasswordReset, environment, token).await?.map_err(AccountError::Link)?;
        Ok(())
    }

    /// Sets a new password through a reset link; every session ends. A refused password leaves
    /// the link usable.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn reset_password(
        &self,
        environment: Environment,
        token: &str,
        new: &str,
        confirmation: &str,
    ) -> Result<AccountId, AccountError> {
        let (id, _) =
            self.links.peek(LinkKind::PasswordReset, environment, token).await?.map_err(AccountError::Link)?;
        let account = self.store.get(environment, id).await?;
        let account = self.set_password(account, new, confirmation, EventKind::PasswordReset, Some(token)).await?;
        // A reset proves the mailbox, not the person: passkeys stay, and the mail names them so
        // that a citizen whose mailbox was taken over learns of it.
        let passkeys_kept = self.store.passkeys(environment, id).await?.len();
        self.send(&account, Notification::PasswordResetDone { passkeys_kept }).await;
        Ok(id)
    }

    /// The citizen's activity, newest first.
    pub async fn events(&self, environment: Environment, id: AccountId) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(self.store.events(environment, id, EVENT_LIMIT).await?)
    }

    /// Everything stored about the citizen.
    pub async fn export(&self, environment: Environment, id: AccountId) -> Result<AccountExport, AccountError> {
        let account = self.store.get(environment, id).await?;
        let events = self.store.events(environment, id, EVENT_LIMIT).await?;
        let consents = self.store.consents(environment, id).await?;
        let data_transfers = self.store.transfers(environment, id, EVENT_LIMIT).await?;
        let passkeys = self
            .store
            .passkeys(environment, id)
            .await?
            .into_iter()
            .map(|p| ExportedPasskey { name: p.name, created_at: p.created_at, last_used_at: p.last_used_at })
            .collect();
        Ok(AccountExport {
            passkeys,
            login_factors: account.login_factors,
            consents,
            data_transfers,
            exported_at: self.clock.now(),
            id: account.id,
            environment: environment.as_str(),
            username: account.username,
            email: account.email,
            status: account.status.as_str(),
            trust_level: account.trust_level.as_str(),
            id_card_linked: account.eid_key.is_some(),
            master_data: account.master_data,
            privacy_consent: account.privacy_consent,
            created_at: account.created_at,
            activated_at: account.activated_at,
            events: events.into_iter().map(|e| ExportedEvent { at: e.at, kind: e.kind, detail: e.detail }).collect(),
        })
    }

    /// Deletes the account after checking the password: everything about the citizen goes in one
    /// transaction (sessions end with it), a confirmation mail goes out.
    #[instrument(skip_all, fields(environment = %environment))]
    pub async fn delete(&self, environment: Environment, id: AccountId, password: &str) -> Result<(), AccountError> {
        let account = self.store.get(environment, id).await?;
        if self.verify_password(Some(account.password_hash.clone()), password).await? == Verification::Invalid {
            return Err(AccountError::WrongPassword);
        }
        self.store.delete(environment, id, self.clock.now()).await?;
        self.send(&account, Notification::AccountDeleted).await;
        Ok(())
    }

    /// The citizen's consent for a client, if any.
    pub async fn consent(
        &self,
        environment: Environment,
        id: AccountId,
        client_id: &str,
    ) -> Result<Option<Consent>, AccountError> {
        Ok(self.store.consent(environment, id, client_id).await?)
    }

    /// Records the citizen's answer on the consent page (the claims released to the client, the
    /// optional ones left out, the remembered choice of whom they act for), given now.
    pub async fn give_consent(
        &self,
        environment: Environment,
        id: AccountId,
        mut consent: Consent,
    ) -> Result<Consent, AccountError> {
        consent.given_at = self.clock.now();
        let client_id = consent.client_id.clone();
        let event = self.event(EventKind::ConsentGiven, Some(client_id.to_owned()));
        self.store.save_consent(environment, id, &consent, &event).await?;
        Ok(consent)
    }

    /// The transfers of an organisation's data, newest first, with the account that acted.
    pub async fn organisation_transfers(
        &self,
        environment: Environment,
        organisation: &str,
    ) -> Result<Vec<(AccountId, DataTransfer)>, AccountError> {
        Ok(self.store.organisation_transfers(environment, organisation, EVENT_LIMIT).await?)
    }

    /// Every consent of the citizen.
    pub async fn consents(&self, environment: Environment, id: AccountId) -> Result<Vec<Consent>, AccountError> {
        Ok(self.store.consents(environment, id).await?)
    }

    /// Withdraws the consent for a client; the next login there asks again.
    pub async fn withdraw_consent(
        &self,
        environment: Environment,
        id: AccountId,
        client_id: &str,
    ) -> Result<bool, AccountError> {
        Ok(self.store.withdraw_consent(environment, id, client_id).await?)
    }

    /// Logs a release of claims to a client.
    pub async fn record_transfer(
        &self,
        environment: Environment,
        id: AccountId,
        transfer: DataTransfer,
    ) -> Result<(), AccountError> {
        Ok(self.store.record_transfer(environment, id, &transfer).await?)
    }

    /// Logs the release of a one-time identification (no account exists).
    pub async fn record_one_time_transfer(
        &self,
        environment: Environment,
        transfer: DataTransfer,
    ) -> Result<(), AccountError> {
        Ok(self.store.record_one_time_transfer(environment, &transfer).await?)
    }

    /// The one-time identifications released to a client, newest first (for operators: there is
    /// no citizen account to show them in).
    pub async fn one_time_transfers(
        &self,
        environment: Environment,
        client_id: &str,
    ) -> Result<Vec<DataTransfer>, AccountError> {
        Ok(self.store.one_time_transfers(environment, client_id, EVENT_LIMIT).await?)
    }

    /// The transfer log ("Datenübermittlungen"), newest first.
    pub async fn transfers(&self, environment: Environment, id: AccountId) -> Result<Vec<DataTransfer>, AccountError> {
        Ok(self.store.transfers(environment, id, EVENT_LIMIT).await?)
    }

    /// Removes accounts not activated within the configured time; returns how many.
    pub async fn purge_unactivated(&self) -> Result<u64, AccountError> {
        let before = self.clock.now() - self.config.pending_max_age;
        let purged = self.store.purge_pending(before).await?;
        self.links.purge().await?;
        Ok(purged)
    }

    /// One run of the inactivity policy by `holder` (a node's name), on one node at a time: the
    /// run holds a lease in the ephemeral store shared by all nodes (released at its end, or
    /// after 30 minutes when the node died). `Ok(None)` when another node's run holds it.
    #[instrument(skip_all)]
    pub async fn sweep_inactive(&self, holder: &str) -> Result<Option<InactivitySweep>, AccountError> {
        const LEASE: &str = "lease:inactive-accounts";
        const LEASE_TTL: Duration = Duration::from_secs(30 * 60);
        if !self.ephemeral.put_if_absent(LEASE, holder.as_bytes(), LEASE_TTL).await.map_err(AccountError::internal)? {
            return Ok(None);
        }
        let swept = self.sweep_inactive_now().await;
        // Released only by its holder: a run that outlived its lease leaves the next one alone.
        if self.ephemeral.get(LEASE).await.ok().flatten().as_deref() == Some(holder.as_bytes()) {
            let _ = self.ephemeral.delete(LEASE).await;
        }
        swept.map(Some)
    }

    /// Reminders for accounts unused for `remind_after`, deletion of those unused for
    /// `delete_after` whose reminder is older than the notice period. Works in batches until
    /// nothing is due; a mail that cannot be handed over leaves the account unmarked, so the
    /// next run tries again.
    async fn sweep_inactive_now(&self) -> Result<InactivitySweep, AccountError> {
        const BATCH: u32 = 100;
        let mut sweep = InactivitySweep::default();
        let Some(policy) = self.config.inactivity else { return Ok(sweep) };
        let now = self.clock.now();
        let deletion_due =
            Inactive::DueForDeletion { seen_before: now - policy.delete_after, reminded_before: now - policy.notice() };
        loop {
            let due = self.store.inactive(deletion_due, BATCH).await?;
            for account in &due {
                match self.store.delete(account.environment, account.id, now).await {
                    Ok(()) | Err(StoreError::NotFound) => sweep.deleted += 1,
                    Err(e) => return Err(e.into()),
                }
                self.send(account, Notification::DeletedForInactivity).await;
            }
            if due.len() < BATCH as usize {
                break;
            }
        }
        let delete_on = (now + policy.notice()).date();
        let mut failed = std::collections::BTreeSet::new();
        loop {
            let due =
                self.store.inactive(Inactive::DueForReminder { seen_before: now - policy.remind_after }, BATCH).await?;
            let fresh: Vec<&Account> = due.iter().filter(|a| !failed.contains(&a.id)).collect();
            for account in &fresh {
                if self.send(account, Notification::InactivityReminder { delete_on }).await {
                    self.store.mark_reminded(account.environment, account.id, now).await?;
                    sweep.reminded += 1;
                } else {
                    failed.insert(account.id);
                }
            }
            if due.len() < BATCH as usize || fresh.is_empty() {
                break;
            }
        }
        Ok(sweep)
    }

    pub(crate) fn event(&self, kind: EventKind, detail: Option<String>) -> AccountEvent {
        AccountEvent { at: self.clock.now(), kind, detail }
    }
}

fn display_name(account: &Account) -> String {
    format!("{} {}", account.master_data.given_names.value, account.master_data.family_name.value)
}

fn recipient(account: &Account) -> Recipient {
    Recipient { email: account.email.value.clone(), name: display_name(account) }
}

/// The fields the registration form carries: when registering with the card, what differs there
/// from the card (changed by normalisation) stays as stored; the nationalities only the card has.
fn form_fields() -> Vec<String> {
    [
        "given_names",
        "family_name",
        "birth_name",
        "date_of_birth",
        "place_of_birth",
        "street",
        "house_number",
        "postal_code",
        "city",
        "country",
    ]
    .map(String::from)
    .into()
}
