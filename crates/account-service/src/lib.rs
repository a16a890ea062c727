//! Citizen accounts: registration, activation, credentials, sessions, master data with
//! provenance, activity, export and deletion; owns its ports (account store, mail).
//!
//! Modules: `personal_data` (registration step 1: normalisation and validation with German
//! messages per field), `password` (step 2: the policy), `hashing` (argon2id), `model` (the
//! account, master data with provenance, events), `store` (the [`AccountStore`] port), `notify`
//! (the [`Notifier`] port), `links` (single-use mail links), `session` (login sessions), `passkey` (WebAuthn credentials and their ceremonies),
//! `throttle` (failed-login delays), `service` ([`Accounts`], every use case).
//!
//! Invariants:
//! - Depends on `oidc-core` only; no I/O here but through ports. Mail links live in the account
//!   store (a Redis wipe must not cost a citizen a 72-hour activation link); short-lived state
//!   (sessions, throttling counters) lives in the ephemeral store. Both only under token hashes.
//! - Passwords exist in clear only inside a call; they are never stored, logged or returned.
//!   Hashing runs on blocking threads, never on the async executor.
//! - Nothing distinguishes "no such account" from "wrong password" to a caller.

mod card;
mod hashing;
mod links;
mod model;
mod normalize;
mod notify;
mod organisation;
mod passkey;
mod password;
mod personal_data;
mod prefill;
mod service;
mod session;
mod store;
mod throttle;

pub use card::{CardData, CardIdentity, Difference};
pub use hashing::{HashingParams, InvalidParams, PasswordHasher, Verification};
pub use links::LinkError;
pub use model::{
    Account, AccountEvent, AccountStatus, Attested, AuthMethod, Consent, DataTransfer, EventKind, LoginFactors,
    MasterData, PrivacyConsent, Source, TransferOrganisation,
};
pub use notify::{MailQueue, Notification, Notifier, NotifyError, QueuedMail, Recipient};
pub use organisation::{
    Field as OrganisationField, LegalForm, MAX_OPEN_INVITATIONS, Membership, Organisation, OrganisationData,
    OrganisationError, OrganisationId, OrganisationLink, OrganisationStatus, OrganisationStore, Organisations,
    RegisterEntry, RegisterKind, Role, Verification as OrganisationVerification, validate_organisation,
};
pub use passkey::{PasskeyCeremony, PasskeyError, PasskeyTrust, Reauthentication, RelyingParty, StoredPasskey};
pub use password::{MINIMUM_LENGTH, PasswordProblem, check_password};
pub use personal_data::{FieldError, Hint, PersonalData, PersonalDataInput, validate_personal_data};
pub use prefill::{claim_preview, claim_value, verified_claims};
pub use service::{
    AccountError, AccountExport, Accounts, AccountsConfig, ExportedEvent, ExportedPasskey, InactivityPolicy,
    InactivitySweep, LoggedIn, MasterDataChange, Registration,
};
pub use session::{Session, SessionPolicy};
pub use store::{AccountStore, Inactive, StoreError, StoredLink, UniqueField};
pub use throttle::ThrottlePolicy;
