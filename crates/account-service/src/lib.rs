//! Citizen accounts: registration, activation, credentials, profile and prefill claims, consent,
//! deletion and export; owns its ports (account store, mailer).
//!
//! Built so far: the rules of registration step 1 (`personal_data`: normalisation to standard
//! spellings and validation, with German messages per field), step 2 (`password`: the password
//! policy), and password hashing (`hashing`: argon2id with OWASP parameters and re-hash
//! detection). Storage, activation, login and the pages arrive with the rest of the
//! citizen-accounts issue.
//!
//! Invariants:
//! - Depends on `oidc-core` only; no I/O here.
//! - Passwords exist in clear only inside a call; they are never stored, logged or returned.

mod hashing;
mod normalize;
mod password;
mod personal_data;

pub use hashing::{HashingParams, InvalidParams, PasswordHasher, Verification};
pub use password::{MINIMUM_LENGTH, PasswordProblem, check_password};
pub use personal_data::{FieldError, Hint, PersonalData, PersonalDataInput, validate_personal_data};
