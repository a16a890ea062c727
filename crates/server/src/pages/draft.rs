//! The registration draft: what the citizen entered in steps 1 and 2, kept until "Sichern" in an
//! encrypted, HttpOnly cookie in their own browser, so that nothing is stored on our side before
//! "Sichern" and any node can continue the registration.

use account_service::PersonalDataInput;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use oidc_core::{Environment, KeyEncryptionKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How long a draft lives; the first page says so.
pub(crate) const DRAFT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Steps 1 and 2 as far as the citizen got.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Draft {
    /// Step 1 as typed (the form is shown again exactly so).
    pub(crate) input: PersonalDataInput,
    /// Step 1 passed validation.
    pub(crate) personal_done: bool,
    /// Hints from normalisation (e.g. a removed comma), shown on step 2.
    pub(crate) hints: Vec<String>,
    /// Step 2: the argon2id hash of the chosen password.
    pub(crate) password_hash: Option<String>,
    /// When the privacy statement was accepted (Unix seconds).
    pub(crate) privacy_accepted_at: Option<i64>,
    /// When the draft began (Unix seconds); older than [`DRAFT_LIFETIME`] is void.
    pub(crate) started_at: i64,
    /// Registering with the ID card: what it said (sealed like the rest, so it cannot be forged).
    #[serde(default)]
    pub(crate) card: Option<account_service::CardIdentity>,
}

impl Draft {
    pub(crate) fn new(now: OffsetDateTime) -> Self {
        Self { started_at: now.unix_timestamp(), ..Self::default() }
    }
}

/// Seals and opens drafts (AES-256-GCM under a KEK of their own, bound to the environment).
pub(crate) struct Drafts {
    key: KeyEncryptionKey,
}

impl Drafts {
    pub(crate) fn new(key: KeyEncryptionKey) -> Self {
        Self { key }
    }

    pub(crate) fn seal(&self, environment: Environment, draft: &Draft) -> String {
        let plaintext = serde_json::to_vec(draft).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(self.key.seal(environment.as_str(), &plaintext))
    }

    /// The draft in `cookie`, unless it is forged, of the other environment, or too old.
    pub(crate) fn open(&self, environment: Environment, cookie: &str, now: OffsetDateTime) -> Option<Draft> {
        let sealed = URL_SAFE_NO_PAD.decode(cookie).ok()?;
        let plaintext = self.key.open(environment.as_str(), &sealed)?;
        let draft: Draft = serde_json::from_slice(&plaintext).ok()?;
        let age = now.unix_timestamp() - draft.started_at;
        (0..i64::try_from(DRAFT_LIFETIME.as_secs()).unwrap_or(i64::MAX)).contains(&age).then_some(draft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn drafts_open_only_here_and_only_for_an_hour() {
        let kek = KeyEncryptionKey::generate();
        let drafts = Drafts::new(kek.derived("registration-draft"));
        let now = datetime!(2026-11-22 10:00 UTC);
        let mut draft = Draft::new(now);
        draft.input.username = "erika".into();
        let sealed = drafts.seal(Environment::Production, &draft);
        assert!(!sealed.contains("erika"));
        assert_eq!(drafts.open(Environment::Production, &sealed, now).unwrap().input.username, "erika");
        assert!(drafts.open(Environment::Test, &sealed, now).is_none(), "other environment");
        assert!(drafts.open(Environment::Production, &sealed, now + time::Duration::minutes(60)).is_none());
        assert!(Drafts::new(kek.derived("other")).open(Environment::Production, &sealed, now).is_none(), "other key");
        assert!(drafts.open(Environment::Production, "garbage", now).is_none());
    }

    proptest::proptest! {
        /// The registration draft cookie is the citizen's to change: anything in it is a draft
        /// of ours or nothing, never a panic.
        #[test]
        fn any_cookie_opens_to_a_draft_or_nothing(cookie in ".{0,400}", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let drafts = Drafts::new(KeyEncryptionKey::generate());
            let now = datetime!(2026-12-02 10:00 UTC);
            proptest::prop_assert!(drafts.open(Environment::Test, &cookie, now).is_none());
            proptest::prop_assert!(drafts.open(Environment::Test, &URL_SAFE_NO_PAD.encode(&bytes), now).is_none());
        }
    }
}
