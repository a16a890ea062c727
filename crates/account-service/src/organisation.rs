//! Organisations ("Unternehmenskonten"): a company, association or public body that citizens act
//! for. A citizen whose account has at least the configured trust level creates one and is its
//! first administrator; administrators invite by e-mail (single-use link, 7 days), set roles and
//! remove members; members leave; an organisation always keeps one administrator. Every value
//! carries its provenance: self-asserted until an operator or the tenant's administrator marks
//! it verified, with the evidence.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use oidc_core::{AccountId, Clock, Environment, TrustLevel, random_token, token_digest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    AccountStore, Notification, Notifier, Recipient,
    model::{Account, AccountStatus},
    store::StoreError,
};

/// An organisation's id (stable; never shown to relying parties, which get a pairwise one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrganisationId(Uuid);

impl OrganisationId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for OrganisationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrganisationId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

macro_rules! code_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $code:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $code)] $variant),*
        }

        impl $name {
            /// Every value, in the order forms list them.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The code (stored, in forms, in claims).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),* }
            }

            /// Parses [`Self::as_str`].
            pub fn parse(code: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == code)
            }
        }
    };
}

code_enum!(
    /// Rechtsform.
    LegalForm {
        /// Gesellschaft mit beschränkter Haftung (incl. UG).
        Gmbh => "gmbh",
        /// Aktiengesellschaft.
        Ag => "ag",
        /// Eingetragener Kaufmann / eingetragene Kauffrau.
        Ek => "ek",
        /// Gesellschaft bürgerlichen Rechts.
        Gbr => "gbr",
        /// Offene Handelsgesellschaft.
        Ohg => "ohg",
        /// Kommanditgesellschaft (incl. GmbH & Co. KG).
        Kg => "kg",
        /// Eingetragener Verein.
        Ev => "ev",
        /// Eingetragene Genossenschaft.
        Eg => "eg",
        /// Stiftung.
        Stiftung => "stiftung",
        /// Körperschaft des öffentlichen Rechts.
        Koerperschaft => "kdoer",
        /// Einzelunternehmen (sole trader, not registered).
        Einzelunternehmen => "einzelunternehmen",
        /// Another form.
        Sonstige => "sonstige",
    }
);

code_enum!(
    /// Registerart.
    RegisterKind {
        /// Handelsregister Abteilung A.
        Hra => "HRA",
        /// Handelsregister Abteilung B.
        Hrb => "HRB",
        /// Vereinsregister.
        Vr => "VR",
        /// Genossenschaftsregister.
        Gnr => "GnR",
        /// Partnerschaftsregister.
        Pr => "PR",
    }
);

code_enum!(
    /// A person's role in an organisation.
    Role {
        /// Manages data, members and invitations; sees every transfer of organisation data.
        Administrator => "administrator",
        /// Acts for the organisation.
        Member => "member",
    }
);

code_enum!(
    /// The parts of an organisation's data that are verified one by one.
    Field {
        /// The name.
        Name => "name",
        /// The legal form.
        LegalForm => "legal_form",
        /// The register entry.
        Register => "register",
        /// The address.
        Address => "address",
    }
);

/// Registereintrag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterEntry {
    /// Registergericht, e.g. "Amtsgericht Köln".
    pub court: String,
    /// HRA, HRB, VR, GnR, PR.
    pub kind: RegisterKind,
    /// The number, e.g. "12345".
    pub number: String,
}

/// What the creator or an administrator types in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationData {
    /// The name as registered.
    pub name: String,
    /// Rechtsform.
    pub legal_form: LegalForm,
    /// Registereintrag, if any.
    pub register: Option<RegisterEntry>,
    /// Straße.
    pub street: String,
    /// Hausnummer.
    pub house_number: String,
    /// Postleitzahl.
    pub postal_code: String,
    /// Ort.
    pub city: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Contact address, verified by a link.
    pub contact_email: String,
}

/// A verified part of an organisation's data: who said so, on what evidence, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The part.
    pub field: Field,
    /// The operator or tenant administrator who checked it.
    pub by: String,
    /// What was checked, e.g. "Registerauszug geprüft".
    pub evidence: String,
    /// When.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
}

/// Whether the organisation can be acted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrganisationStatus {
    /// Usable.
    Active,
    /// Suspended by an operator or tenant administrator: nobody can act for it.
    Suspended,
}

/// An organisation of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// Stable id.
    pub id: OrganisationId,
    /// Its environment.
    pub environment: Environment,
    /// Its data as last saved.
    pub data: OrganisationData,
    /// Which parts are verified; a change of a part drops its verification.
    pub verifications: Vec<Verification>,
    /// When the contact address was confirmed by its link; a new address resets it.
    pub email_verified_at: Option<OffsetDateTime>,
    /// Active or suspended.
    pub status: OrganisationStatus,
    /// Created at.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

impl Organisation {
    /// The verification of `field`, if any.
    pub fn verification(&self, field: Field) -> Option<&Verification> {
        self.verifications.iter().find(|v| v.field == field)
    }
}

/// A person in an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The organisation.
    pub organisation_id: OrganisationId,
    /// The person's account.
    pub account_id: AccountId,
    /// Their role.
    pub role: Role,
    /// Since when.
    pub since: OffsetDateTime,
}

/// An invitation or a contact-address confirmation as stored: only the hash of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationLink {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The environment.
    pub environment: Environment,
    /// The organisation.
    pub organisation_id: OrganisationId,
    /// The invited address, or the contact address to confirm.
    pub email: String,
    /// For an invitation: the role offered; `None` for an address confirmation.
    pub role: Option<Role>,
    /// When it was sent.
    pub created_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

/// The durable storage of organisations. Each method is one atomic change.
#[async_trait]
pub trait OrganisationStore: Send + Sync {
    /// Stores a new organisation with its first administrator.
    async fn insert(&self, organisation: &Organisation, admin: &Membership) -> Result<(), StoreError>;

    /// The organisation with `id` in `environment`.
    async fn get(&self, environment: Environment, id: OrganisationId) -> Result<Organisation, StoreError>;

    /// Replaces the organisation's data, verifications, status (matched by environment and id).
    async fn update(&self, organisation: &Organisation) -> Result<(), StoreError>;

    /// Removes the organisation, its members and links.
    async fn delete(&self, environment: Environment, id: OrganisationId) -> Result<(), StoreError>;

    /// The organisations of `environment`, newest first, at most `limit`, after `offset`.
    async fn list(&self, environment: Environment, limit: u32, offset: u32) -> Result<Vec<Organisation>, StoreError>;

    /// The organisations the account belongs to, with its role.
    async fn of_account(
        &self,
        environment: Environment,
        account: AccountId,
    ) -> Result<Vec<(Organisation, Role)>, StoreError>;

    /// The organisation's members, administrators first.
    async fn members(&self, environment: Environment, id: OrganisationId) -> Result<Vec<Membership>, StoreError>;

    /// Adds a member, or changes the role of one; `false` (and nothing changed) when that would
    /// leave the organisation without an administrator.
    async fn put_member(&self, membership: &Membership) -> Result<bool, StoreError>;

    /// Removes a member; `false` (and nothing changed) when it is the last administrator,
    /// `NotFound` when no member.
    async fn remove_member(&self, id: OrganisationId, account: AccountId) -> Result<bool, StoreError>;

    /// Stores an invitation or address confirmation, and removes the organisation's links that
    /// expired before `link.created_at` (so they never pile up).
    async fn insert_link(&self, link: &OrganisationLink) -> Result<(), StoreError>;

    /// The link stored under `token_hash`, if any.
    async fn find_link(&self, token_hash: &str) -> Result<Option<OrganisationLink>, StoreError>;

    /// [`update`](Self::update) and uses up the link under `link_hash`, in one step (a change
    /// that fails leaves the link usable; at most one caller gets it); `Ok(false)`, and nothing
    /// changed, when the link is gone.
    async fn update_taking_link(&self, organisation: &Organisation, link_hash: &str) -> Result<bool, StoreError>;

    /// Adds a new member and uses up the invitation under `link_hash`, in one step; `Ok(false)`,
    /// and nothing changed, when the link is gone.
    async fn add_member_taking_link(&self, membership: &Membership, link_hash: &str) -> Result<bool, StoreError>;

    /// The organisation's stored links (invitations and address confirmations), oldest first;
    /// expired ones may still be among them.
    async fn invitations(&self, id: OrganisationId) -> Result<Vec<OrganisationLink>, StoreError>;
}

/// What goes wrong with organisations.
#[derive(Debug, thiserror::Error)]
pub enum OrganisationError {
    /// The account's trust level is below what creating an organisation needs.
    #[error("trust level {needed} needed")]
    TrustLevelTooLow {
        /// The level needed.
        needed: TrustLevel,
    },
    /// Not a member, or not an administrator where one is needed; the same for an organisation
    /// of another environment or one that does not exist.
    #[error("not allowed")]
    Forbidden,
    /// The organisation is suspended.
    #[error("suspended")]
    Suspended,
    /// The change would leave the organisation without an administrator.
    #[error("an organisation keeps one administrator")]
    LastAdministrator,
    /// Data that do not validate: field name and German message key.
    #[error("invalid data")]
    Invalid(Vec<(&'static str, &'static str)>),
    /// The invitation or confirmation link is unknown, used, or expired.
    #[error("link does not work")]
    Link,
    /// The invited person is a member already.
    #[error("already a member")]
    AlreadyMember,
    /// A store failed.
    #[error("organisation store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for OrganisationError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => OrganisationError::Forbidden,
            StoreError::Conflict(_) => OrganisationError::AlreadyMember,
            StoreError::Unavailable(source) => OrganisationError::Unavailable(source),
        }
    }
}

/// Invitations stay valid this long.
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// At most this many invitations of an organisation are open at once.
pub const MAX_OPEN_INVITATIONS: usize = 50;
/// Contact-address confirmations stay valid this long.
const EMAIL_TTL: Duration = Duration::from_secs(24 * 3600);

/// Checks and normalises what was typed in: every problem at once.
pub fn validate_organisation(data: &OrganisationData) -> Result<OrganisationData, OrganisationError> {
    let trim = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = OrganisationData {
        name: trim(&data.name),
        legal_form: data.legal_form,
        register: data.register.as_ref().map(|r| RegisterEntry {
            court: trim(&r.court),
            kind: r.kind,
            number: r.number.split_whitespace().collect(),
        }),
        street: trim(&data.street),
        house_number: trim(&data.house_number),
        postal_code: data.postal_code.trim().to_owned(),
        city: trim(&data.city),
        country: data.country.trim().to_ascii_uppercase(),
        contact_email: data.contact_email.trim().to_owned(),
    };
    let mut problems = Vec::new();
    let bounded = |s: &str, max: usize| !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control);
    if !bounded(&out.name, 200) {
        problems.push(("name", "org_name_invalid"));
    }
    if let Some(register) = &out.register {
        if !bounded(&register.court, 100) {
            problems.push(("register_court", "org_register_court_invalid"));
        }
        if register.number.is_empty()
            || register.number.len() > 20
            || !register.number.chars().all(|c| c.is_ascii_alphanumeric())
        {
            problems.push(("register_number", "org_register_number_invalid"));
        }
    }
    if !bounded(&out.street, 100) {
        problems.push(("street", "org_street_invalid"));
    }
    if !bounded(&out.house_number, 20) {
        problems.push(("house_number", "org_house_number_invalid"));
    }
    let german = out.country == "DE";
    let postal_ok = if german {
        out.postal_code.len() == 5 && out.postal_code.chars().all(|c| c.is_ascii_digit())
    } else {
        bounded(&out.postal_code, 12)
    };
    if !postal_ok {
        problems.push(("postal_code", "org_postal_code_invalid"));
    }
    if !bounded(&out.city, 100) {
        problems.push(("city", "org_city_invalid"));
    }
    if out.country.len() != 2 || !out.country.chars().all(|c| c.is_ascii_uppercase()) {
        problems.push(("country", "org_country_invalid"));
    }
    let email = &out.contact_email;
    let email_ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !email_ok {
        problems.push(("contact_email", "org_email_invalid"));
    }
    if problems.is_empty() {
        out.contact_email = out.contact_email.to_lowercase();
        Ok(out)
    } else {
        Err(OrganisationError::Invalid(problems))
    }
}

/// The parts whose value differs between `old` and `new`.
fn changed_fields(old: &OrganisationData, new: &OrganisationData) -> Vec<Field> {
    let mut changed = Vec::new();
    if old.name != new.name {
        changed.push(Field::Name);
    }
    if old.legal_form != new.legal_form {
        changed.push(Field::LegalForm);
    }
    if old.register != new.register {
        changed.push(Field::Register);
    }
    if (&old.street, &old.house_number, &old.postal_code, &old.city, &old.country)
        != (&new.street, &new.house_number, &new.postal_code, &new.city, &new.country)
    {
        changed.push(Field::Address);
    }
    changed
}

/// The organisation use cases.
pub struct Organisations {
    store: Arc<dyn OrganisationStore>,
    accounts: Arc<dyn AccountStore>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    /// The trust level an account needs to create an organisation.
    pub creation_level: TrustLevel,
}

impl Organisations {
    /// The service over its ports.
    pub fn new(
        store: Arc<dyn OrganisationStore>,
        accounts: Arc<dyn AccountStore>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        creation_level: TrustLevel,
    ) -> Self {
        Self { store, accounts, notifier, clock, creation_level }
    }

    fn issue_token(&self) -> (String, String) {
        let token = random_token();
        let hash = token_digest(&token);
        (token, hash)
    }

    async fn send(&self, environment: Environment, email: &str, name: &str, notification: Notification) {
        let to = Recipient { email: email.to_owned(), name: name.to_owned() };
        if let Err(e) = self.notifier.notify(environment, &to, notification).await {
            tracing::error!(error = %e, "organisation mail not sent");
        }
    }

    async fn send_email_confirmation(&self, organisation: &Organisation) -> Result<(), OrganisationError> {
        let (token, token_hash) = self.issue_token();
        let now = self.clock.now();
        self.store
            .insert_link(&OrganisationLink {
                token_hash,
                environment: organisation.environment,
                organisation_id: organisation.id,
                email: organisation.data.contact_email.clone(),
                role: None,
                created_at: now,
                expires_at: now + EMAIL_TTL,
            })
            .await?;
        let name = organisation.data.name.clone();
        self.send(
            organisation.environment,
            &organisation.data.contact_email,
            &name,
            Notification::OrganisationEmail { token, organisation: name.clone() },
        )
        .await;
        Ok(())
    }

    /// Creates an organisation with `account` as its administrator and sends the confirmation
    /// link to its contact address.
    pub async fn create(&self, account: &Account, data: &OrganisationData) -> Result<Organisation, OrganisationError> {
        if account.trust_level < self.creation_level {
            return Err(OrganisationError::TrustLevelTooLow { needed: self.creation_level });
        }
        let data = validate_organisation(data)?;
        let now = self.clock.now();
        let organisation = Organisation {
            id: OrganisationId::new_random(),
            environment: account.environment,
            data,
            verifications: Vec::new(),
            email_verified_at: None,
            status: OrganisationStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let admin = Membership {
            organisation_id: organisation.id,
            account_id: account.id,
            role: Role::Administrator,
            since: now,
        };
        self.store.insert(&organisation, &admin).await?;
        self.send_email_confirmation(&organisation).await?;
        Ok(organisation)
    }

    /// The organisation and the account's role in it; `Forbidden` for a non-member.
    pub async fn as_member(
        &self,
        environment: Environment,
        id: OrganisationId,
        account: AccountId,
    ) -> Result<(Organisation, Role), OrganisationError> {
        let organisation = self.store.get(environment, id).await?;
        let role = self
            .store
            .members(environment, id)
            .await?
            .into_iter()
            .find(|m| m.account_id == account)
            .map(|m| m.role)
            .ok_or(OrganisationError::Forbidden)?;
        Ok((organisation, role))
    }

    async fn as_admin(
        &self,
        environment: Environment,
        id: OrganisationId,
        account: AccountId,
    ) -> Result<Organisation, OrganisationError> {
        match self.as_member(environment, id, account).await? {
            (organisation, Role::Administrator) => Ok(organisation),
            _ => Err(OrganisationError::Forbidden),
        }
    }

    /// The account's organisations with its role.
    pub async fn of_account(
        &self,
        environment: Environment,
        account: AccountId,
    ) -> Result<Vec<(Organisation, Role)>, OrganisationError> {
        Ok(self.store.of_account(environment, account).await?)
    }

    /// The members (with their accounts' display names) and open invitations; for members.
    pub async fn members(
        &self,
        environment: Environment,
        id: OrganisationId,
        account: AccountId,
    ) -> Result<(Vec<(Membership, String)>, Vec<OrganisationLink>), OrganisationError> {
        self.as_member(environment, id, account).await?;
        let mut members = Vec::new();
        for membership in self.store.members(environment, id).await? {
            let name = match self.accounts.get(environment, membership.account_id).await {
                Ok(a) => format!("{} {}", a.master_data.given_names.value, a.master_data.family_name.value),
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            members.push((membership, name));
        }
        let now = self.clock.now();
        let invitations =
            self.store.invitations(id).await?.into_iter().filter(|l| l.role.is_some() && l.expires_at > now).collect();
        Ok((members, invitations))
    }

    /// Changes the data (administrators); a changed part loses its verification, a new contact
    /// address gets a confirmation link.
    pub async fn update(
        &self,
        environment: Environment,
        id: OrganisationId,
        account: AccountId,
        data: &OrganisationData,
    ) -> Result<Organisation, OrganisationError> {
        let mut organisation = self.as_admin(environment, id, account).await?;
        let data = validate_organisation(data)?;
        let changed = changed_fields(&organisation.data, &data);
        organisation.verifications.retain(|v| !changed.contains(&v.field));
        let new_email = data.contact_email != organisation.data.contact_email;
        if new_email {
            organisation.email_verified_at = None;
        }
        organisation.data = data;
        organisation.updated_at = self.clock.now();
        self.store.update(&organisation).await?;
        if new_email {
            self.send_email_confirmation(&organisation).await?;
        }
        Ok(organisation)
    }

    /// Follows the contact address's confirmation link.
    pub async fn confirm_email(
        &self,
        environment: Environment,
        token: &str,
    ) -> Result<Organisation, OrganisationError> {
        let link = self.peek_link(environment, token).await?;
        if link.role.is_some() {
            return Err(OrganisationError::Link);
        }
        let mut organisation = self.store.get(environment, link.organisation_id).await?;
        if organisation.data.contact_email != link.email {
            return Err(OrganisationError::Link);
        }
        organisation.email_verified_at = Some(self.clock.now());
        if !self.store.update_taking_link(&organisation, &token_digest(token)).await? {
            return Err(OrganisationError::Link);
        }
        Ok(organisation)
    }

    /// The link, if it works here and now; it is used up by the change it makes
    /// (`*_taking_link`), so a change that fails leaves it usable.
    async fn peek_link(&self, environment: Environment, token: &str) -> Result<OrganisationLink, OrganisationError> {
        let link = self.store.find_link(&token_digest(token)).await?.ok_or(OrganisationError::Link)?;
        if link.environment != environment || link.expires_at <= self.clock.now() {
            return Err(OrganisationError::Link);
        }
        Ok(link)
    }

    /// Invites `email` as `role` (administrators): a single-use link for 7 days.
    pub async fn invite(
        &self,
        environment: Environment,
        id: OrganisationId,
        inviter: &Account,
        email: &str,
        role: Role,
    ) -> Result<(), OrganisationError> {
        let organisation = self.as_admin(environment, id, inviter.id).await?;
        if organisation.status == OrganisationStatus::Suspended {
            return Err(OrganisationError::Suspended);
        }
        let email = email.trim().to_lowercase();
        if !email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.')) || email.len() > 254 {
            return Err(OrganisationError::Invalid(vec![("email", "org_email_invalid")]));
        }
        let now = self.clock.now();
        // Each invitation is a mail to an address of the inviter's choosing: bounded.
        let open = self.store.invitations(id).await?.iter().filter(|l| l.role.is_some() && l.expires_at > now).count();
        if open >= MAX_OPEN_INVITATIONS {
            return Err(OrganisationError::Invalid(vec![("email", "org_too_many_invitations")]));
        }
        let (token, token_hash) = self.issue_token();
        self.store
            .insert_link(&OrganisationLink {
                token_hash,
                environment,
                organisation_id: id,
                email: email.clone(),
                role: Some(role),
                created_at: now,
                expires_at: now + INVITATION_TTL,
            })
            .await?;
        let by = format!("{} {}", inviter.master_data.given_names.value, inviter.master_data.family_name.value);
        self.send(
            environment,
            &email,
            &email,
            Notification::OrganisationInvitation {
                token,
                organisation: organisation.data.name.clone(),
                invited_by: by,
            },
        )
        .await;
        Ok(())
    }

    /// Accepts an invitation with the logged-in account (whatever address it has: the link
    /// proves the mailbox, the login the person).
    pub async fn accept(
        &self,
        environment: Environment,
        token: &str,
        account: &Account,
    ) -> Result<Organisation, OrganisationError> {
        if account.status != AccountStatus::Active || account.environment != environment {
            return Err(OrganisationError::Forbidden);
        }
        let link = self.peek_link(environment, token).await?;
        let role = link.role.ok_or(OrganisationError::Link)?;
        let organisation = self.store.get(environment, link.organisation_id).await?;
        if organisation.status == OrganisationStatus::Suspended {
            return Err(OrganisationError::Suspended);
        }
        if self.store.members(environment, organisation.id).await?.iter().any(|m| m.account_id == account.id) {
            return Err(OrganisationError::AlreadyMember);
        }
        let membership =
            Membership { organisation_id: organisation.id, account_id: account.id, role, since: self.clock.now() };
        if !self.store.add_member_taking_link(&membership, &token_digest(token)).await? {
            return Err(OrganisationError::Link);
        }
        Ok(organisation)
    }

    /// Sets a member's role (administrators); the last administrator stays one.
    pub async fn set_role(
        &self,
        environment: Environment,
        id: OrganisationId,
        admin: AccountId,
        member: AccountId,
        role: Role,
    ) -> Result<(), OrganisationError> {
        self.as_admin(environment, id, admin).await?;
        let mut membership = self
            .store
            .members(environment, id)
            .await?
            .into_iter()
            .find(|m| m.account_id == member)
            .ok_or(OrganisationError::Forbidden)?;
        membership.role = role;
        if !self.store.put_member(&membership).await? {
            return Err(OrganisationError::LastAdministrator);
        }
        Ok(())
    }

    /// Removes a member (administrators) or leaves (the member); the last administrator stays.
    pub async fn remove(
        &self,
        environment: Environment,
        id: OrganisationId,
        actor: AccountId,
        member: AccountId,
    ) -> Result<(), OrganisationError> {
        if actor == member {
            self.as_member(environment, id, actor).await?;
        } else {
            self.as_admin(environment, id, actor).await?;
        }
        if !self.store.remove_member(id, member).await? {
            return Err(OrganisationError::LastAdministrator);
        }
        Ok(())
    }

    /// Deletes the organisation (administrators).
    pub async fn delete(
        &self,
        environment: Environment,
        id: OrganisationId,
        admin: AccountId,
    ) -> Result<(), OrganisationError> {
        self.as_admin(environment, id, admin).await?;
        Ok(self.store.delete(environment, id).await?)
    }

    /// The organisations where `account` is the only administrator (its deletion is refused
    /// while there are any).
    pub async fn sole_administrations(
        &self,
        environment: Environment,
        account: AccountId,
    ) -> Result<Vec<Organisation>, OrganisationError> {
        let mut sole = Vec::new();
        for (organisation, role) in self.store.of_account(environment, account).await? {
            if role != Role::Administrator {
                continue;
            }
            let admins = self
                .store
                .members(environment, organisation.id)
                .await?
                .iter()
                .filter(|m| m.role == Role::Administrator)
                .count();
            if admins == 1 {
                sole.push(organisation);
            }
        }
        Ok(sole)
    }

    /// An operator's or tenant administrator's view: the organisation.
    pub async fn get(&self, environment: Environment, id: OrganisationId) -> Result<Organisation, OrganisationError> {
        Ok(self.store.get(environment, id).await?)
    }

    /// An operator's or tenant administrator's list.
    pub async fn list(
        &self,
        environment: Environment,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Organisation>, OrganisationError> {
        Ok(self.store.list(environment, limit, offset).await?)
    }

    /// Marks `field` verified by `by` with `evidence` (operators, tenant administrators).
    pub async fn verify(
        &self,
        environment: Environment,
        id: OrganisationId,
        field: Field,
        by: &str,
        evidence: &str,
    ) -> Result<Organisation, OrganisationError> {
        let evidence = evidence.trim();
        if evidence.is_empty() || evidence.chars().count() > 200 {
            return Err(OrganisationError::Invalid(vec![("evidence", "org_evidence_invalid")]));
        }
        let mut organisation = self.store.get(environment, id).await?;
        if field == Field::Register && organisation.data.register.is_none() {
            return Err(OrganisationError::Invalid(vec![("field", "org_no_register")]));
        }
        organisation.verifications.retain(|v| v.field != field);
        organisation.verifications.push(Verification {
            field,
            by: by.to_owned(),
            evidence: evidence.to_owned(),
            at: self.clock.now(),
        });
        organisation.updated_at = self.clock.now();
        self.store.update(&organisation).await?;
        Ok(organisation)
    }

    /// Suspends or reactivates (operators, tenant administrators).
    pub async fn set_status(
        &self,
        environment: Environment,
        id: OrganisationId,
        status: OrganisationStatus,
    ) -> Result<Organisation, OrganisationError> {
        let mut organisation = self.store.get(environment, id).await?;
        organisation.status = status;
        organisation.updated_at = self.clock.now();
        self.store.update(&organisation).await?;
        Ok(organisation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> OrganisationData {
        OrganisationData {
            name: "  Bäckerei   Mustermann ".into(),
            legal_form: LegalForm::Gmbh,
            register: Some(RegisterEntry {
                court: "Amtsgericht Köln".into(),
                kind: RegisterKind::Hrb,
                number: "12 345".into(),
            }),
            street: "Heidestraße".into(),
            house_number: "17".into(),
            postal_code: "51147".into(),
            city: "Köln".into(),
            country: "de".into(),
            contact_email: "Info@Baeckerei.example".into(),
        }
    }

    #[test]
    fn data_are_normalised_and_every_problem_is_named() {
        let ok = validate_organisation(&data()).unwrap();
        assert_eq!(ok.name, "Bäckerei Mustermann");
        assert_eq!(ok.register.unwrap().number, "12345");
        assert_eq!(ok.country, "DE");
        assert_eq!(ok.contact_email, "info@baeckerei.example");
        let bad = OrganisationData {
            name: String::new(),
            postal_code: "5114".into(),
            contact_email: "kein-at".into(),
            register: Some(RegisterEntry { court: String::new(), kind: RegisterKind::Vr, number: "12/3".into() }),
            ..data()
        };
        let Err(OrganisationError::Invalid(problems)) = validate_organisation(&bad) else { panic!("invalid") };
        let fields: Vec<&str> = problems.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["name", "register_court", "register_number", "postal_code", "contact_email"]);
    }

    #[test]
    fn a_changed_part_is_named() {
        let old = validate_organisation(&data()).unwrap();
        let mut new = old.clone();
        new.city = "Bonn".into();
        new.name = "Neu".into();
        assert_eq!(changed_fields(&old, &new), [Field::Name, Field::Address]);
        assert!(changed_fields(&old, &old).is_empty());
    }

    #[test]
    fn codes_round_trip() {
        for form in LegalForm::ALL {
            assert_eq!(LegalForm::parse(form.as_str()), Some(*form));
        }
        assert_eq!(RegisterKind::parse("HRB"), Some(RegisterKind::Hrb));
        assert_eq!(Role::parse("owner"), None);
    }
}
