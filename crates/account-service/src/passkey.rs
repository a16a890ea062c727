//! Passkeys (WebAuthn, through webauthn-rs): added in "Mein Konto" after the password is entered
//! again or a fresh login with the ID card; a login with a passkey alone (a discoverable
//! credential: no username typed) or, where the citizen chose "Passwort und Passkey", with the
//! password first and then a passkey.
//!
//! A ceremony (the browser's challenge and its answer) spans two requests. Its state lives in the
//! ephemeral store under the hash of a random id that the page carries in a hidden field, so any
//! node can finish it, and only once: finishing takes the state out of the store.

use std::{collections::HashMap, time::Duration};

use oidc_core::{AccountId, Environment, TrustLevel, random_token, token_digest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Webauthn, WebauthnBuilder,
};

use crate::{
    AccountError, AuthMethod, Session,
    model::{Account, AccountStatus, EventKind, LoginFactors},
    notify::Notification,
    service::{Accounts, LoggedIn},
    store::StoreError,
};

/// Where passkeys of an environment are bound: the origin of its issuer. The relying-party id
/// is the origin's host, so a passkey works on every path of that host and on no other host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// The environment.
    pub environment: Environment,
    /// `https://host[:port]` of the environment's pages.
    pub origin: Url,
}

/// How much a passkey login is trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PasskeyTrust {
    /// Always `normal`: a passkey proves that the same person comes back, not who they are.
    #[default]
    Normal,
    /// `substantiell` for a passkey that was added in a session opened with the ID card, on an
    /// account whose data the card confirmed (trust level `hoch`); `normal` for every other.
    /// Never `hoch`: that needs the card itself. The reasoning is in `docs/security.md`.
    SubstantialAfterCard,
}

impl PasskeyTrust {
    /// The trust level of a login with a passkey added with or without the card, on an account
    /// whose data have `account_level`.
    fn level(self, added_with_card: bool, account_level: TrustLevel) -> TrustLevel {
        match self {
            PasskeyTrust::SubstantialAfterCard if added_with_card && account_level == TrustLevel::Hoch => {
                TrustLevel::Substantiell
            }
            _ => TrustLevel::Normal,
        }
    }
}

/// A passkey as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    /// Our id of it (in the pages' forms).
    pub id: Uuid,
    /// The environment.
    pub environment: Environment,
    /// Whose.
    pub account_id: AccountId,
    /// The WebAuthn credential id, base64url; unique per environment.
    pub credential_id: String,
    /// The citizen's name for it ("Handy", "Sicherheitsschlüssel").
    pub name: String,
    /// webauthn-rs's `Passkey` (public key, signature counter, backup flags), JSON.
    pub credential: String,
    /// Added in a session opened with the ID card (see [`PasskeyTrust`]).
    pub added_with_card: bool,
    /// When it was added.
    pub created_at: OffsetDateTime,
    /// When it was last used to log in.
    pub last_used_at: Option<OffsetDateTime>,
}

/// A started ceremony: its id (for the page's hidden field) and the options for the browser's
/// `navigator.credentials.create` or `.get`, as JSON.
#[derive(Debug, Clone)]
pub struct PasskeyCeremony {
    /// The random id; the state is stored under its hash.
    pub id: String,
    /// `CreationChallengeResponse` or `RequestChallengeResponse`.
    pub options: serde_json::Value,
}

/// How a citizen proves, before adding a passkey, that it is them at the keyboard.
#[derive(Debug, Clone, Copy)]
pub enum Reauthentication<'a> {
    /// The current password, typed again.
    Password(&'a str),
    /// The session, if it was opened with the ID card within the last ten minutes.
    RecentCardLogin(&'a Session),
}

/// What goes wrong with passkeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    /// The environment has no relying party (its issuer host cannot carry passkeys).
    #[error("passkeys are not available here")]
    Unavailable,
    /// The ceremony is unknown, expired (5 minutes) or finished already.
    #[error("passkey ceremony expired")]
    Expired,
    /// The browser's answer does not verify (wrong challenge, origin, signature, counter) or is
    /// not what this step expects.
    #[error("passkey answer rejected")]
    Rejected,
    /// The passkey is not (or no longer) registered with an account here.
    #[error("unknown passkey")]
    Unknown,
    /// The passkey is registered already.
    #[error("passkey registered already")]
    Duplicate,
    /// The account needs the password before the passkey ("Passwort und Passkey").
    #[error("password needed first")]
    PasswordFirst,
    /// Adding a passkey needs the password again, or a login with the ID card within ten minutes.
    #[error("reauthentication needed")]
    ReauthenticationNeeded,
    /// "Passwort und Passkey" needs a passkey.
    #[error("no passkey")]
    NoPasskey,
    /// The last passkey cannot go while the account needs one.
    #[error("last passkey of an account that needs one")]
    LastPasskey,
    /// A name longer than 60 characters or with control characters.
    #[error("invalid passkey name")]
    InvalidName,
}

/// What a ceremony's stored state is for.
#[derive(Serialize, Deserialize)]
enum Ceremony {
    /// Adding a passkey to an account.
    Register { account_id: AccountId, with_card: bool, state: PasskeyRegistration },
    /// A login with any passkey (discoverable).
    Login { state: DiscoverableAuthentication },
    /// The second step after the password: one of the account's passkeys.
    SecondFactor { account_id: AccountId, state: PasskeyAuthentication },
}

/// How long the browser has to answer.
const CEREMONY_TTL: Duration = Duration::from_secs(5 * 60);
/// How recent a card login must be to add a passkey without the password.
const CARD_LOGIN_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// The longest name of a passkey.
const NAME_MAX: usize = 60;

/// One webauthn-rs relying party per environment.
pub(crate) struct Passkeys {
    parties: HashMap<Environment, Webauthn>,
    trust: PasskeyTrust,
}

impl Passkeys {
    /// Relying parties whose origin cannot carry passkeys (an IP address as host: browsers
    /// refuse it as relying-party id) are left out, with a warning.
    pub(crate) fn new(parties: &[RelyingParty], trust: PasskeyTrust) -> Self {
        let parties = parties
            .iter()
            .filter_map(|party| {
                let built = party
                    .origin
                    .domain()
                    .ok_or_else(|| "the host is no domain name".to_owned())
                    .and_then(|rp_id| {
                        WebauthnBuilder::new(rp_id, &party.origin)
                            .map(|b| b.rp_name("Servicekonto"))
                            .and_then(WebauthnBuilder::build)
                            .map_err(|e| e.to_string())
                    });
                match built {
                    Ok(webauthn) => Some((party.environment, webauthn)),
                    Err(reason) => {
                        tracing::warn!(environment = %party.environment, origin = %party.origin, %reason, "no passkeys in this environment");
                        None
                    }
                }
            })
            .collect();
        Self { parties, trust }
    }

    fn party(&self, environment: Environment) -> Result<&Webauthn, AccountError> {
        self.parties.get(&environment).ok_or(AccountError::Passkey(PasskeyError::Unavailable))
    }

    /// Whether passkeys work in `environment`.
    pub(crate) fn available(&self, environment: Environment) -> bool {
        self.parties.contains_key(&environment)
    }
}

fn ceremony_key(environment: Environment, id: &str) -> String {
    format!("passkey:{}:{}", environment.as_str(), token_digest(id))
}

fn rejected<E: std::fmt::Display>(error: E) -> AccountError {
    tracing::info!(%error, "passkey answer rejected");
    AccountError::Passkey(PasskeyError::Rejected)
}

/// The credential id as stored: base64url without padding.
fn credential_id_text(id: &[u8]) -> String {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(id)
}

fn parse_passkey(stored: &StoredPasskey) -> Result<Passkey, AccountError> {
    serde_json::from_str(&stored.credential).map_err(AccountError::internal)
}

/// A passkey's name, trimmed; empty gives `default`.
fn checked_name(name: &str, default: &str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(AccountError::Passkey(PasskeyError::InvalidName));
    }
    Ok(if name.is_empty() { default.to_owned() } else { name.to_owned() })
}

impl Accounts {
    /// Whether passkeys work in `environment` (the pages offer them only then).
    pub fn passkeys_available(&self, environment: Environment) -> bool {
        self.passkeys.available(environment)
    }

    /// The account's passkeys, oldest first.
    pub async fn passkeys(&self, environment: Environment, id: AccountId) -> Result<Vec<StoredPasskey>, AccountError> {
        Ok(self.store.passkeys(environment, id).await?)
    }

    async fn store_ceremony(&self, environment: Environment, ceremony: &Ceremony) -> Result<String, AccountError> {
        let id = random_token();
        let value = serde_json::to_vec(ceremony).map_err(AccountError::internal)?;
        self.ephemeral
            .put(&ceremony_key(environment, &id), &value, CEREMONY_TTL)
            .await
            .map_err(AccountError::internal)?;
        Ok(id)
    }

    async fn take_ceremony(&self, environment: Environment, id: &str) -> Result<Ceremony, AccountError> {
        let value = self
            .ephemeral
            .take(&ceremony_key(environment, id))
            .await
            .map_err(AccountError::internal)?
            .ok_or(AccountError::Passkey(PasskeyError::Expired))?;
        serde_json::from_slice(&value).map_err(|_| AccountError::Passkey(PasskeyError::Expired))
    }

    /// Starts adding a passkey, once the citizen proved it is them. The options ask for a
    /// discoverable credential (a login needs no username) with user verification.
    pub async fn start_passkey_registration(
        &self,
        environment: Environment,
        id: AccountId,
        proof: Reauthentication<'_>,
    ) -> Result<PasskeyCeremony, AccountError> {
        let webauthn = self.passkeys.party(environment)?;
        let account = self.store.get(environment, id).await?;
        let with_card = match proof {
            Reauthentication::Password(password) => {
                if !self.password_matches(&account, password).await? {
                    return Err(AccountError::WrongPassword);
                }
                false
            }
            Reauthentication::RecentCardLogin(session) => {
                let fresh = session.account_id == id
                    && session.method == AuthMethod::Eid
                    && self.clock.now() - session.auth_time <= CARD_LOGIN_MAX_AGE;
                if !fresh {
                    return Err(AccountError::Passkey(PasskeyError::ReauthenticationNeeded));
                }
                true
            }
        };
        let existing = self.store.passkeys(environment, id).await?;
        let exclude =
            existing.iter().map(|p| parse_passkey(p).map(|k| k.cred_id().clone())).collect::<Result<_, _>>()?;
        let display_name =
            format!("{} {}", account.master_data.given_names.value, account.master_data.family_name.value);
        let (options, state) = webauthn
            .start_passkey_registration(id.as_uuid(), &account.username, &display_name, Some(exclude))
            .map_err(AccountError::internal)?;
        let mut options = serde_json::to_value(options).map_err(AccountError::internal)?;
        // webauthn-rs leaves the key's residency to the authenticator; a login without a
        // username needs it stored on the authenticator (a discoverable credential).
        if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection") {
            selection["residentKey"] = "required".into();
            selection["requireResidentKey"] = true.into();
        }
        let ceremony = Ceremony::Register { account_id: id, with_card, state };
        Ok(PasskeyCeremony { id: self.store_ceremony(environment, &ceremony).await?, options })
    }

    /// Finishes adding a passkey with the browser's answer (`PublicKeyCredential` JSON) and
    /// tells the citizen by mail.
    pub async fn finish_passkey_registration(
        &self,
        environment: Environment,
        id: AccountId,
        ceremony: &str,
        name: &str,
        answer: &str,
    ) -> Result<StoredPasskey, AccountError> {
        let webauthn = self.passkeys.party(environment)?;
        let Ceremony::Register { account_id, with_card, state } = self.take_ceremony(environment, ceremony).await?
        else {
            return Err(AccountError::Passkey(PasskeyError::Expired));
        };
        if account_id != id {
            return Err(AccountError::Passkey(PasskeyError::Expired));
        }
        let answer: RegisterPublicKeyCredential = serde_json::from_str(answer).map_err(rejected)?;
        let passkey = webauthn.finish_passkey_registration(&answer, &state).map_err(rejected)?;
        let account = self.store.get(environment, id).await?;
        let existing = self.store.passkeys(environment, id).await?;
        let now = self.clock.now();
        let stored = StoredPasskey {
            id: Uuid::new_v4(),
            environment,
            account_id: id,
            credential_id: credential_id_text(passkey.cred_id()),
            name: checked_name(name, &format!("Passkey {}", existing.len() + 1))?,
            credential: serde_json::to_string(&passkey).map_err(AccountError::internal)?,
            added_with_card: with_card,
            created_at: now,
            last_used_at: None,
        };
        match self.store.insert_passkey(&stored, &self.event(EventKind::PasskeyAdded, Some(stored.name.clone()))).await
        {
            Err(StoreError::Conflict(_)) => return Err(AccountError::Passkey(PasskeyError::Duplicate)),
            other => other?,
        }
        self.send(&account, Notification::PasskeyAdded { name: stored.name.clone() }).await;
        Ok(stored)
    }

    /// Renames one of the account's passkeys.
    pub async fn rename_passkey(
        &self,
        environment: Environment,
        id: AccountId,
        passkey: Uuid,
        name: &str,
    ) -> Result<(), AccountError> {
        let mut stored = self.own_passkey(environment, id, passkey).await?;
        stored.name = checked_name(name, &stored.name)?;
        Ok(self.store.update_passkey(&stored).await?)
    }

    /// Removes one of the account's passkeys and tells the citizen by mail. The last one stays
    /// while the account needs it ("Passwort und Passkey").
    pub async fn remove_passkey(
        &self,
        environment: Environment,
        id: AccountId,
        passkey: Uuid,
    ) -> Result<(), AccountError> {
        let account = self.store.get(environment, id).await?;
        let stored = self.own_passkey(environment, id, passkey).await?;
        if account.login_factors == LoginFactors::PasswordAndPasskey
            && self.store.passkeys(environment, id).await?.len() <= 1
        {
            return Err(AccountError::Passkey(PasskeyError::LastPasskey));
        }
        let event = self.event(EventKind::PasskeyRemoved, Some(stored.name.clone()));
        self.store.remove_passkey(environment, id, passkey, &event).await?;
        self.send(&account, Notification::PasskeyRemoved { name: stored.name }).await;
        Ok(())
    }

    async fn own_passkey(
        &self,
        environment: Environment,
        id: AccountId,
        passkey: Uuid,
    ) -> Result<StoredPasskey, AccountError> {
        self.store
            .passkeys(environment, id)
            .await?
            .into_iter()
            .find(|p| p.id == passkey)
            .ok_or(AccountError::Passkey(PasskeyError::Unknown))
    }

    /// Chooses password alone or password and passkey; the latter needs a passkey.
    pub async fn set_login_factors(
        &self,
        environment: Environment,
        id: AccountId,
        factors: LoginFactors,
    ) -> Result<(), AccountError> {
        let mut account = self.store.get(environment, id).await?;
        if account.login_factors == factors {
            return Ok(());
        }
        if factors == LoginFactors::PasswordAndPasskey && self.store.passkeys(environment, id).await?.is_empty() {
            return Err(AccountError::Passkey(PasskeyError::NoPasskey));
        }
        account.login_factors = factors;
        account.updated_at = self.clock.now();
        let event = self.event(EventKind::LoginFactorsChanged, Some(factors.as_str().to_owned()));
        Ok(self.store.update(&account, Some(&event)).await?)
    }

    /// Starts a login with any passkey: the browser offers the passkeys it holds for this site.
    pub async fn start_passkey_login(&self, environment: Environment) -> Result<PasskeyCeremony, AccountError> {
        let (options, state) =
            self.passkeys.party(environment)?.start_discoverable_authentication().map_err(AccountError::internal)?;
        let mut options = serde_json::to_value(options).map_err(AccountError::internal)?;
        // webauthn-rs marks it for the autofill UI ("conditional"); the page asks on a button
        // press instead, which every browser supports.
        if let Some(object) = options.as_object_mut() {
            object.remove("mediation");
        }
        let id = self.store_ceremony(environment, &Ceremony::Login { state }).await?;
        Ok(PasskeyCeremony { id, options })
    }

    /// Finishes a login with a passkey alone.
    pub async fn finish_passkey_login(
        &self,
        environment: Environment,
        ceremony: &str,
        answer: &str,
    ) -> Result<LoggedIn, AccountError> {
        let webauthn = self.passkeys.party(environment)?;
        let Ceremony::Login { state } = self.take_ceremony(environment, ceremony).await? else {
            return Err(AccountError::Passkey(PasskeyError::Expired));
        };
        let answer: PublicKeyCredential = serde_json::from_str(answer).map_err(rejected)?;
        let (user, credential_id) = webauthn.identify_discoverable_authentication(&answer).map_err(rejected)?;
        let credential_id = credential_id_text(credential_id);
        let mut stored = self
            .store
            .find_passkey(environment, &credential_id)
            .await?
            .ok_or(AccountError::Passkey(PasskeyError::Unknown))?;
        if stored.account_id.as_uuid() != user {
            return Err(rejected("the user handle names another account"));
        }
        let mut passkey = parse_passkey(&stored)?;
        let result = webauthn.finish_discoverable_authentication_v2(&answer, state, &passkey).map_err(rejected)?;
        let account = self.store.get(environment, stored.account_id).await?;
        if account.status != AccountStatus::Active {
            return Err(AccountError::NotActivated);
        }
        if account.login_factors == LoginFactors::PasswordAndPasskey {
            return Err(AccountError::Passkey(PasskeyError::PasswordFirst));
        }
        passkey.update_credential(&result);
        self.passkey_used(&mut stored, &passkey).await?;
        self.passkey_session(&account, AuthMethod::Passkey, &stored).await
    }

    /// After the right password of an account that needs a passkey too: the second step.
    pub(crate) async fn start_second_factor(&self, account: &Account) -> Result<Option<PasskeyCeremony>, AccountError> {
        let stored = self.store.passkeys(account.environment, account.id).await?;
        if stored.is_empty() {
            // Cannot happen through the service (the last passkey stays); a password alone is
            // what the account had before the choice.
            return Ok(None);
        }
        let webauthn = self.passkeys.party(account.environment)?;
        let passkeys = stored.iter().map(parse_passkey).collect::<Result<Vec<_>, _>>()?;
        let (options, state) = webauthn.start_passkey_authentication(&passkeys).map_err(AccountError::internal)?;
        let options = serde_json::to_value(options).map_err(AccountError::internal)?;
        let id =
            self.store_ceremony(account.environment, &Ceremony::SecondFactor { account_id: account.id, state }).await?;
        Ok(Some(PasskeyCeremony { id, options }))
    }

    /// Finishes the second step of "Passwort und Passkey".
    pub async fn finish_second_factor(
        &self,
        environment: Environment,
        ceremony: &str,
        answer: &str,
    ) -> Result<LoggedIn, AccountError> {
        let webauthn = self.passkeys.party(environment)?;
        let Ceremony::SecondFactor { account_id, state } = self.take_ceremony(environment, ceremony).await? else {
            return Err(AccountError::Passkey(PasskeyError::Expired));
        };
        let answer: PublicKeyCredential = serde_json::from_str(answer).map_err(rejected)?;
        let result = webauthn.finish_passkey_authentication(&answer, &state).map_err(rejected)?;
        let credential_id = credential_id_text(result.cred_id());
        let mut stored = self
            .store
            .passkeys(environment, account_id)
            .await?
            .into_iter()
            .find(|p| p.credential_id == credential_id)
            .ok_or(AccountError::Passkey(PasskeyError::Unknown))?;
        let mut passkey = parse_passkey(&stored)?;
        passkey.update_credential(&result);
        self.passkey_used(&mut stored, &passkey).await?;
        let account = self.store.get(environment, account_id).await?;
        if account.status != AccountStatus::Active {
            return Err(AccountError::NotActivated);
        }
        self.passkey_session(&account, AuthMethod::PwdAndPasskey, &stored).await
    }

    async fn passkey_used(&self, stored: &mut StoredPasskey, passkey: &Passkey) -> Result<(), AccountError> {
        stored.credential = serde_json::to_string(passkey).map_err(AccountError::internal)?;
        stored.last_used_at = Some(self.clock.now());
        Ok(self.store.update_passkey(stored).await?)
    }

    async fn passkey_session(
        &self,
        account: &Account,
        method: AuthMethod,
        passkey: &StoredPasskey,
    ) -> Result<LoggedIn, AccountError> {
        let level = self.passkeys.trust.level(passkey.added_with_card, account.trust_level);
        let event = self.event(EventKind::LoginSucceeded, Some(method.as_str().to_owned()));
        self.store.record_login(account.environment, account.id, &event).await?;
        self.start_session_at(account, method, level).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_defaulted() {
        assert_eq!(checked_name("  Handy ", "Passkey 1").unwrap(), "Handy");
        assert_eq!(checked_name("", "Passkey 2").unwrap(), "Passkey 2");
        assert!(checked_name(&"x".repeat(61), "d").is_err());
        assert!(checked_name("a\u{0}b", "d").is_err());
        assert_eq!(checked_name(&"ä".repeat(60), "d").unwrap().chars().count(), 60);
    }

    #[test]
    fn a_passkey_is_normal_unless_the_policy_and_the_card_say_more_and_never_hoch() {
        use TrustLevel::{Hoch, Normal, Substantiell};
        for card in [false, true] {
            for account in [Normal, Substantiell, Hoch] {
                assert_eq!(PasskeyTrust::Normal.level(card, account), Normal);
            }
        }
        let policy = PasskeyTrust::SubstantialAfterCard;
        assert_eq!(policy.level(true, Hoch), Substantiell);
        assert_eq!(policy.level(false, Hoch), Normal, "added after the password only");
        assert_eq!(policy.level(true, Normal), Normal, "the card was unlinked since");
    }

    #[test]
    fn only_domain_names_carry_passkeys() {
        let party =
            |origin: &str| RelyingParty { environment: Environment::Production, origin: origin.parse().unwrap() };
        let passkeys = Passkeys::new(&[party("http://127.0.0.1:8080")], PasskeyTrust::Normal);
        assert!(!passkeys.available(Environment::Production));
        let passkeys = Passkeys::new(&[party("http://localhost:8080")], PasskeyTrust::Normal);
        assert!(passkeys.available(Environment::Production));
        let passkeys = Passkeys::new(&[party("https://konto.example")], PasskeyTrust::Normal);
        assert!(passkeys.available(Environment::Production));
        assert!(!passkeys.available(Environment::Test));
    }
}
