//! The citizen account and what is stored with it.

use oidc_core::{AccountId, Environment, TrustLevel};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::PersonalData;

/// Where a stored value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Typed in by the citizen.
    SelfAsserted,
    /// Read from the ID card through the eID function.
    Eid,
}

/// One master-data value with its provenance, so the OIDC side can release `verified_claims` and
/// the eID side can raise the trust level field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attested {
    /// The value in its standard spelling.
    pub value: String,
    /// Who asserted it.
    pub source: Source,
    /// When it was verified (the e-mail by its confirmation link, the rest by eID); `None` when
    /// never.
    #[serde(with = "time::serde::timestamp::option")]
    pub verified_at: Option<OffsetDateTime>,
    /// When it was last set.
    #[serde(with = "time::serde::timestamp")]
    pub updated_at: OffsetDateTime,
}

impl Attested {
    /// A value the citizen typed in now.
    pub fn self_asserted(value: impl Into<String>, now: OffsetDateTime) -> Self {
        Self { value: value.into(), source: Source::SelfAsserted, verified_at: None, updated_at: now }
    }

    /// Keeps `self` (and its provenance) when the value is unchanged, else a new self-asserted value.
    fn replaced_by(&self, value: &str, now: OffsetDateTime) -> Self {
        if self.value == value { self.clone() } else { Self::self_asserted(value, now) }
    }
}

/// The citizen's master data ("Stammdaten"), each field with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterData {
    /// Vornamen.
    pub given_names: Attested,
    /// Familienname.
    pub family_name: Attested,
    /// Geburtsname.
    pub birth_name: Option<Attested>,
    /// Geburtsdatum, ISO 8601 (`YYYY-MM-DD`).
    pub date_of_birth: Attested,
    /// Geburtsort.
    pub place_of_birth: Option<Attested>,
    /// Straße.
    pub street: Attested,
    /// Hausnummer.
    pub house_number: Attested,
    /// Postleitzahl.
    pub postal_code: Attested,
    /// Wohnort.
    pub city: Attested,
    /// Staat.
    pub country: Attested,
    /// Telefonnummer in E.164 form (optional, self-asserted).
    #[serde(default)]
    pub phone_number: Option<Attested>,
    /// Staatsangehörigkeiten as ISO 3166-1 alpha-3 codes separated by spaces (`DEU`), read from
    /// the ID card; the registration form does not ask for them.
    #[serde(default)]
    pub nationalities: Option<Attested>,
}

impl MasterData {
    /// Self-asserted master data from registration step 1.
    pub fn from_personal_data(data: &PersonalData, now: OffsetDateTime) -> Self {
        let a = |v: &str| Attested::self_asserted(v, now);
        Self {
            given_names: a(&data.given_names),
            family_name: a(&data.family_name),
            birth_name: data.birth_name.as_deref().map(a),
            date_of_birth: a(&date_text(data.date_of_birth)),
            place_of_birth: data.place_of_birth.as_deref().map(a),
            street: a(&data.street),
            house_number: a(&data.house_number),
            postal_code: a(&data.postal_code),
            city: a(&data.city),
            country: a(&data.country),
            phone_number: data.phone_number.as_deref().map(a),
            nationalities: None,
        }
    }

    /// These data updated to `data`: unchanged fields keep their provenance, changed ones become
    /// self-asserted now. Returns the names of the changed fields.
    pub(crate) fn updated(&self, data: &PersonalData, now: OffsetDateTime) -> (Self, Vec<&'static str>) {
        let mut changed = Vec::new();
        let mut one = |name: &'static str, old: &Attested, new: &str| {
            if old.value != new {
                changed.push(name);
            }
            old.replaced_by(new, now)
        };
        let given_names = one("given_names", &self.given_names, &data.given_names);
        let family_name = one("family_name", &self.family_name, &data.family_name);
        let date_of_birth = one("date_of_birth", &self.date_of_birth, &date_text(data.date_of_birth));
        let street = one("street", &self.street, &data.street);
        let house_number = one("house_number", &self.house_number, &data.house_number);
        let postal_code = one("postal_code", &self.postal_code, &data.postal_code);
        let city = one("city", &self.city, &data.city);
        let country = one("country", &self.country, &data.country);
        let mut optional = |name: &'static str, old: &Option<Attested>, new: &Option<String>| match (old, new) {
            (Some(old), Some(new)) => Some(one(name, old, new)),
            (None, Some(new)) => Some(one(name, &Attested::self_asserted("", now), new)),
            (Some(old), None) => {
                one(name, old, "");
                None
            }
            (None, None) => None,
        };
        let birth_name = optional("birth_name", &self.birth_name, &data.birth_name);
        let place_of_birth = optional("place_of_birth", &self.place_of_birth, &data.place_of_birth);
        let phone_number = optional("phone_number", &self.phone_number, &data.phone_number);
        let updated = Self {
            given_names,
            family_name,
            birth_name,
            date_of_birth,
            place_of_birth,
            street,
            house_number,
            postal_code,
            city,
            country,
            phone_number,
            // Not editable in "Mein Konto": only the ID card sets them.
            nationalities: self.nationalities.clone(),
        };
        (updated, changed)
    }
}

/// `YYYY-MM-DD`.
fn date_text(date: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// Whether the account may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Registered, activation link not yet followed.
    Pending,
    /// Activated.
    Active,
}

impl AccountStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Pending => "pending",
            AccountStatus::Active => "active",
        }
    }
}

/// Which privacy statement the citizen accepted, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyConsent {
    /// The statement's version label.
    pub version: String,
    /// When it was accepted.
    #[serde(with = "time::serde::timestamp")]
    pub accepted_at: OffsetDateTime,
}

/// A citizen account of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Stable id.
    pub id: AccountId,
    /// The environment it lives in; it can never log in to the other.
    pub environment: Environment,
    /// The login name, as chosen (unique per environment, case-insensitive).
    pub username: String,
    /// The e-mail address (unique per environment, case-insensitive), verified at activation.
    pub email: Attested,
    /// Pending or active.
    pub status: AccountStatus,
    /// Name, birth data and address.
    pub master_data: MasterData,
    /// argon2id PHC string.
    pub password_hash: String,
    /// The trust level the account's data carry (normal for self-asserted).
    pub trust_level: TrustLevel,
    /// The keyed hash of the linked ID card's pseudonym (RestrictedID); unique per environment.
    pub eid_key: Option<String>,
    /// The accepted privacy statement.
    pub privacy_consent: PrivacyConsent,
    /// Sessions remember the epoch they were made in; raising it ends every session at once.
    pub session_epoch: i64,
    /// Password alone, or password and passkey.
    pub login_factors: LoginFactors,
    /// Registered at.
    pub created_at: OffsetDateTime,
    /// Activated at.
    pub activated_at: Option<OffsetDateTime>,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// How a citizen authenticated (the `amr` values of RFC 8176).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Username and password.
    Pwd,
    /// The online ID function of the ID card.
    Eid,
    /// A passkey alone (discoverable credential, user verification required).
    Passkey,
    /// Username and password, then a passkey (the account's "Passwort und Passkey" setting).
    PwdAndPasskey,
}

impl AuthMethod {
    /// The name in the activity list and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Pwd => "pwd",
            AuthMethod::Eid => "eid",
            AuthMethod::Passkey => "passkey",
            AuthMethod::PwdAndPasskey => "pwd_passkey",
        }
    }

    /// The `amr` values (RFC 8176 and its IANA registry). A passkey is `pop` (proof of
    /// possession of a key; registered by OpenID Connect EAP ACR Values 1.0 for keys whose
    /// protection, hardware or software, is not known: we ask for no attestation), plus `user`
    /// and `mfa`, because every passkey ceremony here requires user verification (the
    /// authenticator's PIN or biometric besides the key: two factors).
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            AuthMethod::Pwd => &["pwd"],
            AuthMethod::Eid => &["eid"],
            AuthMethod::Passkey => &["pop", "user", "mfa"],
            AuthMethod::PwdAndPasskey => &["pwd", "pop", "user", "mfa"],
        }
    }
}

/// Which factors a login with the account needs, as the citizen chose in "Mein Konto".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFactors {
    /// The password, or a passkey alone.
    #[default]
    PasswordOrPasskey,
    /// The password and then a passkey; a passkey alone is refused.
    PasswordAndPasskey,
}

impl LoginFactors {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFactors::PasswordOrPasskey => "password_or_passkey",
            LoginFactors::PasswordAndPasskey => "password_and_passkey",
        }
    }

    /// Parses [`LoginFactors::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [LoginFactors::PasswordOrPasskey, LoginFactors::PasswordAndPasskey].into_iter().find(|f| f.as_str() == text)
    }
}

/// What happened to an account, for the citizen's own activity list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Registered.
    Registered,
    /// Activated by the mail link.
    Activated,
    /// Logged in.
    LoginSucceeded,
    /// A wrong password was given for this account.
    LoginFailed,
    /// Logged out.
    LoggedOut,
    /// Changed the password knowing the current one.
    PasswordChanged,
    /// Set a new password through the forgotten-password link.
    PasswordReset,
    /// Changed master data.
    MasterDataChanged,
    /// Asked to change the e-mail address (confirmation pending).
    EmailChangeRequested,
    /// The new e-mail address was confirmed.
    EmailChanged,
    /// Consented to release claims to a client.
    ConsentGiven,
    /// Linked the ID card: the data it confirmed are eID-verified.
    EidLinked,
    /// Added a passkey (detail: its name).
    PasskeyAdded,
    /// Removed a passkey (detail: its name).
    PasskeyRemoved,
    /// Chose password alone or password and passkey (detail: the choice).
    LoginFactorsChanged,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Registered => "registered",
            EventKind::Activated => "activated",
            EventKind::LoginSucceeded => "login_succeeded",
            EventKind::LoginFailed => "login_failed",
            EventKind::LoggedOut => "logged_out",
            EventKind::PasswordChanged => "password_changed",
            EventKind::PasswordReset => "password_reset",
            EventKind::MasterDataChanged => "master_data_changed",
            EventKind::EmailChangeRequested => "email_change_requested",
            EventKind::EmailChanged => "email_changed",
            EventKind::ConsentGiven => "consent_given",
            EventKind::EidLinked => "eid_linked",
            EventKind::PasskeyAdded => "passkey_added",
            EventKind::PasskeyRemoved => "passkey_removed",
            EventKind::LoginFactorsChanged => "login_factors_changed",
        }
    }

    /// Parses [`EventKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        const ALL: [EventKind; 15] = [
            EventKind::PasskeyAdded,
            EventKind::PasskeyRemoved,
            EventKind::LoginFactorsChanged,
            EventKind::ConsentGiven,
            EventKind::EidLinked,
            EventKind::Registered,
            EventKind::Activated,
            EventKind::LoginSucceeded,
            EventKind::LoginFailed,
            EventKind::LoggedOut,
            EventKind::PasswordChanged,
            EventKind::PasswordReset,
            EventKind::MasterDataChanged,
            EventKind::EmailChangeRequested,
            EventKind::EmailChanged,
        ];
        ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One entry of the activity list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvent {
    /// When.
    pub at: OffsetDateTime,
    /// What.
    pub kind: EventKind,
    /// Details without secrets: the login method, the changed field names.
    pub detail: Option<String>,
}

/// A citizen's consent to release claims to one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The client.
    pub client_id: String,
    /// The claims the citizen agreed to release.
    pub claims: Vec<String>,
    /// The optional claims the citizen left out: not asked again until the client wants more.
    #[serde(default)]
    pub declined: Vec<String>,
    /// When.
    #[serde(with = "time::serde::timestamp")]
    pub given_at: OffsetDateTime,
    /// The version of the consent text shown.
    pub text_version: String,
    /// For the scope `organization`, the remembered choice: `self` or an organisation's id;
    /// `None` when the citizen did not ask to remember it (asked every time).
    #[serde(default)]
    pub acting_for: Option<String>,
}

/// One release of personal claims to a client: names, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTransfer {
    /// The receiving client.
    pub client_id: String,
    /// The authority and service as the citizen knows them.
    pub recipient: String,
    /// The claim names released.
    pub claims: Vec<String>,
    /// When.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// The consent it rests on (its time and text version), or `first-party`.
    pub consent_ref: String,
    /// The organisation the citizen acted for, if any: its id and its name at the time.
    #[serde(default)]
    pub organisation: Option<TransferOrganisation>,
}

/// The organisation of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOrganisation {
    /// Its id.
    pub id: String,
    /// Its name when the data went out.
    pub name: String,
}
