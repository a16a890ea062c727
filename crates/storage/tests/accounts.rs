//! The citizen-account use cases on the real stores: SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set; the in-memory ephemeral store; an injected clock for every expiry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests: a failed step is the test failing")]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use account_service::{
    AccountError, AccountStatus, AccountStore, Accounts, AccountsConfig, CardData, CardIdentity, EventKind,
    HashingParams, InactivitySweep, LinkError, LoginFactors, Notification, Notifier, NotifyError, PasskeyError,
    PasswordHasher, PersonalDataInput, PrivacyConsent, Reauthentication, Recipient, Registration, RelyingParty, Source,
    StoreError, StoredPasskey, UniqueField, validate_personal_data,
};
use async_trait::async_trait;
use oidc_core::{Clock, Environment, EphemeralStore, ManualClock, TrustLevel};
use storage::{Database, MemoryEphemeralStore, testing::TestDatabase, testing::backend_url};
use time::macros::datetime;

const PRODUCTION: Environment = Environment::Production;
const PASSWORD: &str = "Korrekt Pferd Batterie Heftklammer";

#[derive(Default)]
struct Outbox(Mutex<Vec<(String, Notification)>>);

#[async_trait]
impl Notifier for Outbox {
    async fn notify(&self, _: Environment, to: &Recipient, notification: Notification) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push((to.email.clone(), notification));
        Ok(())
    }
}

impl Outbox {
    fn last(&self) -> (String, Notification) {
        self.0.lock().unwrap().last().cloned().expect("a mail")
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn token_of(notification: Notification) -> String {
    match notification {
        Notification::Activation { token }
        | Notification::PasswordReset { token }
        | Notification::ConfirmEmailChange { token } => token,
        other => panic!("no link in {other:?}"),
    }
}

struct Fixture {
    accounts: Accounts,
    store: Arc<dyn AccountStore>,
    clock: Arc<ManualClock>,
    outbox: Arc<Outbox>,
}

const CHEAP: HashingParams = HashingParams { memory_kib: 1024, iterations: 1, parallelism: 1 };

fn fixture_with(db: &Database, params: HashingParams, clock: Arc<ManualClock>) -> Fixture {
    fixture_configured(db, params, clock, AccountsConfig::default())
}

fn fixture_configured(
    db: &Database,
    params: HashingParams,
    clock: Arc<ManualClock>,
    config: AccountsConfig,
) -> Fixture {
    let store: Arc<dyn AccountStore> = Arc::new(db.accounts());
    let outbox = Arc::new(Outbox::default());
    let accounts = Accounts::new(
        store.clone(),
        Arc::new(MemoryEphemeralStore::with_clock(clock.clone())),
        outbox.clone(),
        PasswordHasher::new(params).unwrap(),
        clock.clone(),
        config,
    );
    Fixture { accounts, store, clock, outbox }
}

fn fixture(db: &Database) -> Fixture {
    fixture_with(db, CHEAP, Arc::new(ManualClock::new(datetime!(2026-11-22 10:00 UTC))))
}

fn input(username: &str, email: &str) -> PersonalDataInput {
    PersonalDataInput {
        given_names: "Erika".into(),
        family_name: "Mustermann".into(),
        birth_name: "Gabler".into(),
        date_of_birth: "12.08.1964".into(),
        place_of_birth: "Berlin".into(),
        street_and_number: "Heidestr. 17".into(),
        postal_code: "51147".into(),
        city: "Köln".into(),
        country: "DE".into(),
        phone_number: "0221 1234567".into(),
        email: email.into(),
        username: username.into(),
    }
}

async fn register(f: &Fixture, environment: Environment, username: &str, email: &str) -> Result<(), AccountError> {
    let (data, _) = validate_personal_data(&input(username, email), f.clock.now().date()).unwrap();
    let registration = Registration {
        data,
        password_hash: f.accounts.hash_password(PASSWORD.into()).await?,
        privacy_consent: PrivacyConsent { version: "2026-11".into(), accepted_at: f.clock.now() },
        card: None,
    };
    assert!(f.accounts.register(environment, registration).await?, "mail sent");
    Ok(())
}

async fn registered_and_active(f: &Fixture, username: &str, email: &str) {
    register(f, PRODUCTION, username, email).await.unwrap();
    let token = token_of(f.outbox.last().1);
    f.accounts.activate(PRODUCTION, &token).await.unwrap();
}

fn secs(seconds: i64) -> time::Duration {
    time::Duration::seconds(seconds)
}

async fn registration_activation_login(db: &Database) {
    let f = fixture(db);
    register(&f, PRODUCTION, "erika.m", "erika@example.de").await.unwrap();
    let (to, mail) = f.outbox.last();
    assert_eq!(to, "erika@example.de");
    let token = token_of(mail);

    let err = f.accounts.login(PRODUCTION, "erika.m", PASSWORD, "10.0.0.1").await.unwrap_err();
    assert!(matches!(err, AccountError::NotActivated), "{err:?}");
    let err = f.accounts.login(PRODUCTION, "erika.m", "wrong password", "10.0.0.1").await.unwrap_err();
    assert!(matches!(err, AccountError::InvalidCredentials), "a wrong password says nothing about activation");

    let id = f.accounts.activate(PRODUCTION, &token).await.unwrap();
    let account = f.accounts.account(PRODUCTION, id).await.unwrap();
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(account.email.verified_at, Some(f.clock.now()));
    assert_eq!(account.master_data.street.value, "Heidestraße");
    assert_eq!(account.master_data.street.source, Source::SelfAsserted);
    let again = f.accounts.activate(PRODUCTION, &token).await.unwrap_err();
    assert!(matches!(again, AccountError::Link(LinkError::Invalid)), "single use: {again:?}");

    // Login is case-insensitive in the username; the session knows when and how.
    let logged_in = f.accounts.login(PRODUCTION, "Erika.M", PASSWORD, "10.0.0.1").await.unwrap();
    assert_eq!(logged_in.session.account_id, id);
    assert_eq!(logged_in.session.auth_time, f.clock.now());
    assert_eq!(logged_in.session.method.as_str(), "pwd");
    let (session, account) = f.accounts.current(PRODUCTION, &logged_in.token).await.unwrap().unwrap();
    assert_eq!((session.account_id, account.id), (id, id));
    assert!(f.accounts.current(Environment::Test, &logged_in.token).await.unwrap().is_none(), "other environment");
    let err = f.accounts.login(Environment::Test, "erika.m", PASSWORD, "10.0.0.1").await.unwrap_err();
    assert!(matches!(err, AccountError::InvalidCredentials), "no account in the test environment");

    f.accounts.logout(PRODUCTION, &logged_in.token).await.unwrap();
    assert!(f.accounts.current(PRODUCTION, &logged_in.token).await.unwrap().is_none());

    let kinds: Vec<EventKind> = f.accounts.events(PRODUCTION, id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::LoggedOut,
            EventKind::LoginSucceeded,
            EventKind::Activated,
            EventKind::LoginFailed,
            EventKind::Registered
        ]
    );
}

async fn uniqueness_per_environment(db: &Database) {
    let f = fixture(db);
    register(&f, PRODUCTION, "max", "max@example.de").await.unwrap();
    let err = register(&f, PRODUCTION, "MAX", "other@example.de").await.unwrap_err();
    assert!(matches!(&err, AccountError::Taken(t) if t == &[UniqueField::Username]), "{err:?}");
    // A taken address (in any case) makes no second account; its owner is mailed instead, and the
    // caller hears what every registration hears.
    let mails = f.outbox.count();
    register(&f, PRODUCTION, "max2", "Max@Example.DE").await.expect("answered like any registration");
    assert_eq!(f.outbox.count(), mails + 1, "the owner got a mail");
    assert_eq!(f.outbox.last().0, "max@example.de", "at the stored address");
    assert!(f.store.find_by_username(PRODUCTION, "max2").await.unwrap().is_none(), "no second account");
    let err = register(&f, PRODUCTION, "Max", "MAX@example.de").await.unwrap_err();
    assert!(matches!(&err, AccountError::Taken(t) if t == &[UniqueField::Username]), "{err:?}");
    register(&f, Environment::Test, "max", "max@example.de").await.unwrap();
}

async fn links_expire(db: &Database) {
    let f = fixture(db);
    register(&f, PRODUCTION, "late", "late@example.de").await.unwrap();
    let token = token_of(f.outbox.last().1);
    f.clock.advance(secs(72 * 3600));
    let err = f.accounts.activate(PRODUCTION, &token).await.unwrap_err();
    assert!(matches!(err, AccountError::Link(LinkError::Expired)), "{err:?}");
    f.accounts.resend_activation(PRODUCTION, "LATE@example.de").await.unwrap();
    let fresh = token_of(f.outbox.last().1);
    f.accounts.activate(PRODUCTION, &fresh).await.unwrap();
    let mails = f.outbox.count();
    f.accounts.resend_activation(PRODUCTION, "late").await.unwrap();
    f.accounts.resend_activation(PRODUCTION, "nobody").await.unwrap();
    assert_eq!(f.outbox.count(), mails, "active and unknown accounts get nothing, and the caller learns nothing");
}

/// Mail links are durable: a node that starts with an empty ephemeral store (a Redis wipe) still
/// honours them, once; links past their grace are purged.
async fn links_survive_an_ephemeral_wipe(db: &Database) {
    let f = fixture(db);
    register(&f, PRODUCTION, "durable", "durable@example.de").await.unwrap();
    let token = token_of(f.outbox.last().1);
    let after_wipe = fixture_with(db, CHEAP, f.clock.clone());
    after_wipe.accounts.activate(PRODUCTION, &token).await.expect("the link outlives the ephemeral store");
    let again = after_wipe.accounts.activate(PRODUCTION, &token).await.unwrap_err();
    assert!(matches!(again, AccountError::Link(LinkError::Invalid)), "single use: {again:?}");

    after_wipe.accounts.request_password_reset(PRODUCTION, "durable").await.unwrap();
    let reset = token_of(after_wipe.outbox.last().1);
    after_wipe.accounts.check_reset_link(PRODUCTION, &reset).await.unwrap();
    f.clock.advance(secs(3600 + 8 * 24 * 3600));
    after_wipe.accounts.purge_unactivated().await.unwrap();
    let gone = after_wipe.accounts.check_reset_link(PRODUCTION, &reset).await.unwrap_err();
    assert!(matches!(gone, AccountError::Link(LinkError::Invalid)), "purged after its grace: {gone:?}");
}

async fn purge_of_unactivated_accounts(db: &Database) {
    let f = fixture(db);
    register(&f, PRODUCTION, "early", "early@example.de").await.unwrap();
    f.clock.advance(secs(6 * 24 * 3600));
    register(&f, PRODUCTION, "later", "later@example.de").await.unwrap();
    registered_and_active(&f, "active", "active@example.de").await;
    assert_eq!(f.accounts.purge_unactivated().await.unwrap(), 0);
    f.clock.advance(secs(24 * 3600 + 1));
    assert_eq!(f.accounts.purge_unactivated().await.unwrap(), 1);
    assert!(f.store.find_by_username(PRODUCTION, "early").await.unwrap().is_none());
    assert!(f.store.find_by_username(PRODUCTION, "later").await.unwrap().is_some());
    assert!(f.store.find_by_username(PRODUCTION, "active").await.unwrap().is_some());
}

async fn throttling(db: &Database) {
    let f = fixture(db);
    registered_and_active(&f, "victim", "victim@example.de").await;
    for _ in 0..5 {
        let err = f.accounts.login(PRODUCTION, "victim", "wrong", "10.0.0.2").await.unwrap_err();
        assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");
    }
    // Even the right password waits now: the wait says nothing about the password.
    let err = f.accounts.login(PRODUCTION, "victim", PASSWORD, "10.0.0.3").await.unwrap_err();
    assert!(
        matches!(err, AccountError::Throttled { retry_after } if retry_after == Duration::from_secs(30)),
        "{err:?}"
    );
    f.clock.advance(secs(31));
    let err = f.accounts.login(PRODUCTION, "victim", "wrong", "10.0.0.2").await.unwrap_err();
    assert!(matches!(err, AccountError::InvalidCredentials));
    let err = f.accounts.login(PRODUCTION, "victim", PASSWORD, "10.0.0.3").await.unwrap_err();
    assert!(
        matches!(err, AccountError::Throttled { retry_after } if retry_after == Duration::from_secs(60)),
        "doubles"
    );
    f.clock.advance(secs(61));
    f.accounts.login(PRODUCTION, "victim", PASSWORD, "10.0.0.3").await.unwrap();
    f.accounts.login(PRODUCTION, "victim", "wrong", "10.0.0.3").await.unwrap_err();
    f.accounts.login(PRODUCTION, "victim", PASSWORD, "10.0.0.3").await.expect("success cleared the count");

    // Unknown login names are throttled alike, so waiting reveals no account.
    for _ in 0..5 {
        f.accounts.login(PRODUCTION, "nobody", "wrong", "10.0.0.4").await.unwrap_err();
    }
    let err = f.accounts.login(PRODUCTION, "nobody", "wrong", "10.0.0.4").await.unwrap_err();
    assert!(matches!(err, AccountError::Throttled { .. }), "{err:?}");

    // The cap: never longer than 15 minutes.
    for _ in 0..12 {
        f.clock.advance(secs(15 * 60 + 1));
        f.accounts.login(PRODUCTION, "nobody", "wrong", "10.0.0.5").await.unwrap_err();
    }
    let err = f.accounts.login(PRODUCTION, "nobody", "wrong", "10.0.0.5").await.unwrap_err();
    assert!(matches!(err, AccountError::Throttled { retry_after } if retry_after <= Duration::from_secs(900)));
}

async fn session_timeouts(db: &Database) {
    let f = fixture(db);
    registered_and_active(&f, "sleepy", "sleepy@example.de").await;
    let idle = f.accounts.login(PRODUCTION, "sleepy", PASSWORD, "ip").await.unwrap();
    f.clock.advance(secs(29 * 60));
    assert!(f.accounts.current(PRODUCTION, &idle.token).await.unwrap().is_some(), "29 minutes idle");
    f.clock.advance(secs(29 * 60));
    assert!(f.accounts.current(PRODUCTION, &idle.token).await.unwrap().is_some(), "the last request restarted idling");
    f.clock.advance(secs(30 * 60));
    assert!(f.accounts.current(PRODUCTION, &idle.token).await.unwrap().is_none(), "30 minutes idle");

    let busy = f.accounts.login(PRODUCTION, "sleepy", PASSWORD, "ip").await.unwrap();
    for _ in 0..(12 * 3) {
        assert!(f.accounts.current(PRODUCTION, &busy.token).await.unwrap().is_some());
        f.clock.advance(secs(20 * 60));
    }
    assert!(f.accounts.current(PRODUCTION, &busy.token).await.unwrap().is_none(), "12 hours absolute");
}

async fn password_change_and_reset(db: &Database) {
    let f = fixture(db);
    registered_and_active(&f, "anna", "anna@example.de").await;
    let here = f.accounts.login(PRODUCTION, "anna", PASSWORD, "ip").await.unwrap();
    let elsewhere = f.accounts.login(PRODUCTION, "anna", PASSWORD, "ip").await.unwrap();
    let id = here.session.account_id;
    let new = "Sonnenblumen wachsen im Juli";

    let err = f.accounts.change_password(PRODUCTION, id, "wrong", new, new).await.unwrap_err();
    assert!(matches!(err, AccountError::WrongPassword));
    let err = f.accounts.change_password(PRODUCTION, id, PASSWORD, "anna12345678", "anna12345678").await.unwrap_err();
    assert!(matches!(err, AccountError::PasswordPolicy(_)), "{err:?}");
    let replaced = f.accounts.change_password(PRODUCTION, id, PASSWORD, new, new).await.unwrap();
    assert!(matches!(f.outbox.last().1, Notification::PasswordChanged));
    assert!(f.accounts.current(PRODUCTION, &here.token).await.unwrap().is_none());
    assert!(f.accounts.current(PRODUCTION, &elsewhere.token).await.unwrap().is_none(), "other sessions ended");
    assert!(f.accounts.current(PRODUCTION, &replaced.token).await.unwrap().is_some());
    f.accounts.login(PRODUCTION, "anna", PASSWORD, "ip").await.unwrap_err();
    f.accounts.login(PRODUCTION, "anna", new, "ip").await.unwrap();

    // Forgotten password: by e-mail address; the same answer for unknown logins.
    let mails = f.outbox.count();
    f.accounts.request_password_reset(PRODUCTION, "nobody@example.de").await.unwrap();
    assert_eq!(f.outbox.count(), mails);
    f.accounts.request_password_reset(PRODUCTION, "ANNA@example.de").await.unwrap();
    let (to, mail) = f.outbox.last();
    assert_eq!(to, "anna@example.de");
    let token = token_of(mail);
    f.accounts.check_reset_link(PRODUCTION, &token).await.unwrap();
    let err = f.accounts.reset_password(PRODUCTION, &token, "short", "short").await.unwrap_err();
    assert!(matches!(err, AccountError::PasswordPolicy(_)));
    let newest = "Drei Raben sitzen auf dem Zaun";
    f.accounts.reset_password(PRODUCTION, &token, newest, newest).await.expect("a refused password keeps the link");
    assert!(f.accounts.current(PRODUCTION, &replaced.token).await.unwrap().is_none(), "reset ends every session");
    let err = f.accounts.reset_password(PRODUCTION, &token, newest, newest).await.unwrap_err();
    assert!(matches!(err, AccountError::Link(LinkError::Invalid)));
    f.accounts.login(PRODUCTION, "anna", newest, "ip").await.unwrap();

    f.accounts.request_password_reset(PRODUCTION, "anna").await.unwrap();
    let token = token_of(f.outbox.last().1);
    f.clock.advance(secs(3600));
    let err = f.accounts.check_reset_link(PRODUCTION, &token).await.unwrap_err();
    assert!(matches!(err, AccountError::Link(LinkError::Expired)), "valid for one hour");
}

async fn master_data_and_email_change(db: &Database) {
    let f = fixture(db);
    registered_and_active(&f, "otto", "otto@example.de").await;
    registered_and_active(&f, "taken", "taken@example.de").await;
    let id = f.store.find_by_username(PRODUCTION, "otto").await.unwrap().unwrap().id;
    let before = f.accounts.account(PRODUCTION, id).await.unwrap();
    f.clock.advance(secs(60));

    let mut moved = input("otto", "otto@example.de");
    moved.street_and_number = "Am Markt 3a".into();
    let (data, _) = validate_personal_data(&moved, f.clock.now().date()).unwrap();
    let change = f.accounts.update_master_data(PRODUCTION, id, &data).await.unwrap();
    assert_eq!(change.changed, ["street", "house_number"]);
    assert!(!change.email_confirmation_sent);
    let after = f.accounts.account(PRODUCTION, id).await.unwrap();
    assert_eq!(after.master_data.street.value, "Am Markt");
    assert_eq!(after.master_data.street.updated_at, f.clock.now());
    assert_eq!(after.master_data.city, before.master_data.city, "unchanged fields keep their provenance");

    let mut taken = moved.clone();
    taken.email = "TAKEN@example.de".into();
    let (data, _) = validate_personal_data(&taken, f.clock.now().date()).unwrap();
    let err = f.accounts.update_master_data(PRODUCTION, id, &data).await.unwrap_err();
    assert!(matches!(&err, AccountError::Taken(t) if t == &[UniqueField::Email]), "{err:?}");

    let mut new_mail = moved.clone();
    new_mail.email = "otto.neu@example.de".into();
    let (data, _) = validate_personal_data(&new_mail, f.clock.now().date()).unwrap();
    let change = f.accounts.update_master_data(PRODUCTION, id, &data).await.unwrap();
    assert!(change.email_confirmation_sent && change.changed.is_empty());
    let (to, mail) = f.outbox.last();
    assert_eq!(to, "otto.neu@example.de", "the confirmation goes to the new address");
    assert_eq!(f.accounts.account(PRODUCTION, id).await.unwrap().email.value, "otto@example.de", "not yet");
    // Someone registers with the new address before Otto clicks: the change fails, and the link
    // is not used up by it — once the address is free again, the same link works.
    let confirmation = token_of(mail);
    register(&f, PRODUCTION, "squatter", "otto.neu@example.de").await.unwrap();
    let err = f.accounts.confirm_email_change(PRODUCTION, &confirmation).await.unwrap_err();
    assert!(matches!(&err, AccountError::Taken(t) if t == &[UniqueField::Email]), "{err:?}");
    let squatter = f.store.find_by_username(PRODUCTION, "squatter").await.unwrap().unwrap().id;
    f.store.delete(PRODUCTION, squatter, f.clock.now()).await.unwrap();
    let confirmed = f.accounts.confirm_email_change(PRODUCTION, &confirmation).await.unwrap();
    assert_eq!(confirmed, "otto.neu@example.de");
    let (to, mail) = f.outbox.last();
    assert_eq!(to, "otto@example.de", "the old address is told");
    assert!(matches!(mail, Notification::EmailChanged { new_email } if new_email == "otto.neu@example.de"));
    let account = f.accounts.account(PRODUCTION, id).await.unwrap();
    assert_eq!(account.email.value, "otto.neu@example.de");
    assert_eq!(account.email.verified_at, Some(f.clock.now()));
    let again = f.accounts.confirm_email_change(PRODUCTION, &confirmation).await.unwrap_err();
    assert!(matches!(again, AccountError::Link(LinkError::Invalid)), "used up by the change: {again:?}");
}

/// A change made through a mail link and the link's use are one step: a change that fails
/// leaves the link as it was, a change that succeeds uses it up, and a used link changes nothing.
async fn a_mail_link_is_used_up_only_with_its_change(db: &Database) {
    let f = fixture(db);
    register(&f, PRODUCTION, "linked", "linked@example.de").await.unwrap();
    let (_, mail) = f.outbox.last();
    let token = token_of(mail);
    let hash = oidc_core::token_digest(&token);
    let mut account = f.store.find_by_username(PRODUCTION, "linked").await.unwrap().unwrap();
    account.status = AccountStatus::Active;

    let mut vanished = account.clone();
    vanished.id = oidc_core::AccountId::from(uuid::Uuid::new_v4());
    let err = f.store.update_taking_link(&vanished, None, &hash).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(f.store.find_link(&hash).await.unwrap().is_some(), "a failed change leaves the link");

    assert!(f.store.update_taking_link(&account, None, &hash).await.unwrap());
    assert!(f.store.find_link(&hash).await.unwrap().is_none(), "the change used the link up");
    assert_eq!(f.store.get(PRODUCTION, account.id).await.unwrap().status, AccountStatus::Active);

    account.status = AccountStatus::Pending;
    assert!(!f.store.update_taking_link(&account, None, &hash).await.unwrap(), "a used link changes nothing");
    assert_eq!(f.store.get(PRODUCTION, account.id).await.unwrap().status, AccountStatus::Active);
    // The citizen clicks the activation link once more: the account is active, nothing to do.
    let again = f.accounts.activate(PRODUCTION, &token).await.unwrap_err();
    assert!(matches!(again, AccountError::Link(LinkError::Invalid)), "{again:?}");
}

async fn export_and_deletion(db: &Database) {
    let f = fixture(db);
    registered_and_active(&f, "leaving", "leaving@example.de").await;
    let session = f.accounts.login(PRODUCTION, "leaving", PASSWORD, "ip").await.unwrap();
    let id = session.session.account_id;
    let export = serde_json::to_value(f.accounts.export(PRODUCTION, id).await.unwrap()).unwrap();
    assert_eq!(export["username"], "leaving");
    assert_eq!(export["master_data"]["family_name"]["value"], "Mustermann");
    assert_eq!(export["master_data"]["family_name"]["source"], "self_asserted");
    assert_eq!(export["email"]["value"], "leaving@example.de");
    assert!(export["email"]["verified_at"].is_i64());
    assert_eq!(export["events"].as_array().unwrap().len(), 3);
    assert_eq!(export["privacy_consent"]["version"], "2026-11");
    assert!(!export.to_string().contains("argon2"), "no password hash in the export");

    let refresh = oidc_core::RefreshRecord {
        token_hash: "leaving-refresh".into(),
        family_id: "leaving-family".into(),
        environment: PRODUCTION,
        client_id: oidc_core::ClientId::parse("rp").unwrap(),
        account_id: id,
        grant: serde_json::json!({"scopes": ["openid"]}),
        created_at: 1000,
        expires_at: i64::MAX,
    };
    oidc_core::RefreshTokenStore::insert(&db.refresh_tokens(), &refresh).await.unwrap();
    let err = f.accounts.delete(PRODUCTION, id, "wrong").await.unwrap_err();
    assert!(matches!(err, AccountError::WrongPassword));
    f.accounts.delete(PRODUCTION, id, PASSWORD).await.unwrap();
    let left = oidc_core::RefreshTokenStore::find_any(&db.refresh_tokens(), "leaving-refresh").await.unwrap();
    assert_eq!(left, None, "the account's refresh tokens go with it (the foreign key cascades)");
    assert!(matches!(f.outbox.last(), (to, Notification::AccountDeleted) if to == "leaving@example.de"));
    assert!(matches!(f.accounts.account(PRODUCTION, id).await.unwrap_err(), AccountError::NotFound));
    assert!(f.accounts.current(PRODUCTION, &session.token).await.unwrap().is_none());
    assert!(f.store.find_by_email(PRODUCTION, "leaving@example.de").await.unwrap().is_none());
    register(&f, PRODUCTION, "leaving", "leaving@example.de").await.expect("the names are free again");
}

/// The inactivity policy on a manual clock: a reminder after three years without a login, the
/// deletion three months after it unless the citizen logs in; a login in between keeps the
/// account; nobody is reminded twice; accounts still pending are not the policy's business.
async fn inactive_accounts_are_reminded_then_deleted(db: &Database) {
    const DAY: i64 = 24 * 3600;
    let f = fixture(db);
    registered_and_active(&f, "sleeper", "sleeper@example.de").await;
    registered_and_active(&f, "returner", "returner@example.de").await;
    registered_and_active(&f, "regular", "regular@example.de").await;
    register(&f, PRODUCTION, "pending", "pending@example.de").await.unwrap();
    f.accounts.login(PRODUCTION, "returner", PASSWORD, "ip").await.unwrap();
    let sleeper = f.store.find_by_username(PRODUCTION, "sleeper").await.unwrap().unwrap().id;

    f.clock.advance(secs(3 * 365 * DAY - DAY));
    f.accounts.login(PRODUCTION, "regular", PASSWORD, "ip").await.unwrap();
    assert_eq!(
        f.accounts.sweep_inactive("node-a").await.unwrap().unwrap(),
        InactivitySweep::default(),
        "not yet three years"
    );

    f.clock.advance(secs(2 * DAY));
    let mails = f.outbox.count();
    let sweep = f.accounts.sweep_inactive("node-a").await.unwrap().unwrap();
    assert_eq!(sweep, InactivitySweep { reminded: 2, deleted: 0 }, "sleeper and returner");
    let reminders: Vec<(String, Notification)> = f.outbox.0.lock().unwrap()[mails..].to_vec();
    let delete_on = (f.clock.now() + secs(91 * DAY)).date();
    for address in ["sleeper@example.de", "returner@example.de"] {
        assert!(
            reminders.contains(&(address.to_owned(), Notification::InactivityReminder { delete_on })),
            "{address} is told the day: {reminders:?}"
        );
    }
    assert_eq!(f.accounts.sweep_inactive("node-a").await.unwrap().unwrap(), InactivitySweep::default(), "nobody twice");

    // The returner logs in during the notice period; the sleeper does not.
    f.clock.advance(secs(30 * DAY));
    f.accounts.login(PRODUCTION, "returner", PASSWORD, "ip").await.unwrap();
    f.clock.advance(secs(60 * DAY));
    assert_eq!(
        f.accounts.sweep_inactive("node-a").await.unwrap().unwrap(),
        InactivitySweep::default(),
        "the notice is not over"
    );
    f.clock.advance(secs(2 * DAY));
    let sweep = f.accounts.sweep_inactive("node-a").await.unwrap().unwrap();
    assert_eq!(sweep, InactivitySweep { reminded: 0, deleted: 1 });
    assert_eq!(f.outbox.last(), ("sleeper@example.de".to_owned(), Notification::DeletedForInactivity));
    assert!(matches!(f.accounts.account(PRODUCTION, sleeper).await.unwrap_err(), AccountError::NotFound));
    for kept in ["returner", "regular"] {
        assert!(f.store.find_by_username(PRODUCTION, kept).await.unwrap().is_some(), "{kept} is kept");
    }
    register(&f, PRODUCTION, "sleeper", "sleeper@example.de").await.expect("the names are free again");

    // One node at a time: while a run holds the lease, another node's run does nothing.
    let ephemeral = Arc::new(MemoryEphemeralStore::with_clock(f.clock.clone()));
    let node = |ephemeral: Arc<MemoryEphemeralStore>| {
        Accounts::new(
            f.store.clone(),
            ephemeral,
            f.outbox.clone(),
            PasswordHasher::new(CHEAP).unwrap(),
            f.clock.clone(),
            AccountsConfig::default(),
        )
    };
    let (a, b) = (node(ephemeral.clone()), node(ephemeral.clone()));
    ephemeral.put("lease:inactive-accounts", b"node-a", Duration::from_secs(1800)).await.unwrap();
    assert_eq!(b.sweep_inactive("node-b").await.unwrap(), None, "node-a's run holds the lease");
    f.clock.advance(secs(1801));
    assert!(b.sweep_inactive("node-b").await.unwrap().is_some(), "a dead holder's lease runs out");
    assert!(a.sweep_inactive("node-a").await.unwrap().is_some(), "released at the end of a run");

    // Switched off, nothing happens however long.
    let off = Accounts::new(
        f.store.clone(),
        Arc::new(MemoryEphemeralStore::with_clock(f.clock.clone())),
        f.outbox.clone(),
        PasswordHasher::new(CHEAP).unwrap(),
        f.clock.clone(),
        AccountsConfig { inactivity: None, ..AccountsConfig::default() },
    );
    f.clock.advance(secs(10 * 365 * DAY));
    assert_eq!(off.sweep_inactive("node-a").await.unwrap().unwrap(), InactivitySweep::default());
}

async fn rehash_on_login(db: &Database) {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-22 10:00 UTC)));
    let old = fixture_with(db, CHEAP, clock.clone());
    registered_and_active(&old, "rehash", "rehash@example.de").await;
    let stored = |f: &Fixture| {
        let store = f.store.clone();
        async move { store.find_by_username(PRODUCTION, "rehash").await.unwrap().unwrap().password_hash }
    };
    let before = stored(&old).await;
    assert!(before.contains("m=1024,t=1,p=1"), "{before}");
    let stronger = HashingParams { memory_kib: 2048, iterations: 2, parallelism: 1 };
    let new = fixture_with(db, stronger, clock);
    new.accounts.login(PRODUCTION, "rehash", PASSWORD, "ip").await.unwrap();
    let after = stored(&new).await;
    assert!(after.contains("m=2048,t=2,p=1"), "re-hashed with the current parameters: {after}");
    new.accounts.login(PRODUCTION, "rehash", PASSWORD, "ip").await.expect("the new hash verifies");
}

/// A production refresh token of `account_id` for `client`, live from 1000 to 9000.
fn token_record(
    hash: &str,
    family: &str,
    client: &oidc_core::ClientId,
    account_id: oidc_core::AccountId,
) -> oidc_core::RefreshRecord {
    oidc_core::RefreshRecord {
        token_hash: hash.into(),
        family_id: family.into(),
        environment: PRODUCTION,
        client_id: client.clone(),
        account_id,
        grant: serde_json::json!({"scopes": ["openid"]}),
        created_at: 1000,
        expires_at: 9000,
    }
}

/// `client` presents `old_hash` in production at `now`; its successor is `new_hash`.
fn rotation<'a>(
    client: &'a oidc_core::ClientId,
    old_hash: &'a str,
    new_hash: &'a str,
    now: i64,
    expires_at: i64,
    grace_seconds: i64,
) -> oidc_core::RotationRequest<'a> {
    oidc_core::RotationRequest {
        old_hash,
        new_hash,
        client_id: client,
        environment: PRODUCTION,
        now,
        expires_at,
        grace_seconds,
    }
}

/// Refresh tokens: rotation, replay revoking the family, and the reuse grace for a lost answer.
async fn refresh_token_rotation(db: &Database) {
    use oidc_core::{ClientId, RefreshRecord, RefreshTokenStore, Rotation, RotationRequest};
    let f = fixture(db);
    registered_and_active(&f, "rotation", "rotation@example.de").await;
    let account_id = f.accounts.login(PRODUCTION, "rotation", PASSWORD, "ip").await.unwrap().session.account_id;
    let store = db.refresh_tokens();
    let client = ClientId::parse("rp").unwrap();
    let record = |hash: &str, family: &str| token_record(hash, family, &client, account_id);
    let rotated = |r: Rotation| matches!(r, Rotation::Rotated(next) if next.family_id.starts_with("fam"));
    let request = |old_hash, new_hash, now, expires_at, grace_seconds| {
        rotation(&client, old_hash, new_hash, now, expires_at, grace_seconds)
    };

    // Without grace: a second use is a replay and revokes the family, successor included.
    store.insert(&record("a1", "fam-a")).await.unwrap();
    assert!(rotated(store.rotate(&request("a1", "a2", 1010, 9000, 0)).await.unwrap()));
    assert_eq!(store.rotate(&request("a1", "a3", 1011, 9000, 0)).await.unwrap(), Rotation::Reused("fam-a".into()));
    assert_eq!(store.find("a2", 1012).await.unwrap(), None, "the family is revoked");
    assert_eq!(store.rotate(&request("a2", "a4", 1012, 9000, 0)).await.unwrap(), Rotation::Invalid);

    // With grace: the retry replaces the unused successor, once per successor.
    store.insert(&record("b1", "fam-b")).await.unwrap();
    assert!(rotated(store.rotate(&request("b1", "b2", 1010, 9000, 30)).await.unwrap()));
    assert!(rotated(store.rotate(&request("b1", "b3", 1015, 9000, 30)).await.unwrap()), "a retry within the grace");
    assert_eq!(store.find("b2", 1016).await.unwrap(), None, "the lost successor no longer works");
    assert!(store.find("b3", 1016).await.unwrap().is_some());
    // The successor was used: presenting the old token again is a replay after all.
    assert!(rotated(store.rotate(&request("b3", "b4", 1020, 9000, 30)).await.unwrap()));
    assert_eq!(store.rotate(&request("b1", "b5", 1021, 9000, 30)).await.unwrap(), Rotation::Reused("fam-b".into()));
    assert_eq!(store.find("b4", 1022).await.unwrap(), None);

    // Revocation of a presented token reaches its whole family, used or not.
    assert_eq!(store.find_any("b1").await.unwrap(), None, "the replay deleted the family");
    store.insert(&record("d1", "fam-d")).await.unwrap();
    assert!(rotated(store.rotate(&request("d1", "d2", 1010, 9000, 0)).await.unwrap()));
    assert_eq!(store.find_any("d1").await.unwrap().map(|r| r.family_id), Some("fam-d".to_owned()), "used, still known");
    assert_eq!(store.revoke_family("fam-d").await.unwrap(), 2);
    assert_eq!(store.find_any("d2").await.unwrap(), None);

    // Past the grace, a retry is a replay too.
    store.insert(&record("c1", "fam-c")).await.unwrap();
    assert!(rotated(store.rotate(&request("c1", "c2", 1010, 9000, 30)).await.unwrap()));
    assert_eq!(store.rotate(&request("c1", "c3", 1041, 9000, 30)).await.unwrap(), Rotation::Reused("fam-c".into()));

    // The successor carries family, client, account and grant, with its own hash and lifetime
    // (PostgreSQL makes it in one statement, SQLite from the row its claim returned).
    store.insert(&record("e1", "fam-e")).await.unwrap();
    let expected =
        RefreshRecord { token_hash: "e2".into(), created_at: 1010, expires_at: 9500, ..record("e1", "fam-e") };
    assert_eq!(store.rotate(&request("e1", "e2", 1010, 9500, 0)).await.unwrap(), Rotation::Rotated(expected.clone()));
    assert_eq!(store.find("e2", 1011).await.unwrap(), Some(expected));
    // An expired token is not rotated and gives no successor.
    store.insert(&RefreshRecord { expires_at: 1005, ..record("x1", "fam-x") }).await.unwrap();
    assert_eq!(store.rotate(&request("x1", "x2", 1010, 9500, 0)).await.unwrap(), Rotation::Invalid);
    assert_eq!(store.find_any("x2").await.unwrap(), None);

    // Another client's or environment's token, live or used, is left as it is: no rotation, no
    // replay verdict against its family.
    let other = ClientId::parse("other-rp").unwrap();
    let foreign =
        |old_hash, new_hash| RotationRequest { client_id: &other, ..request(old_hash, new_hash, 1010, 9000, 0) };
    store.insert(&record("f1", "fam-f")).await.unwrap();
    assert_eq!(store.rotate(&foreign("f1", "f2")).await.unwrap(), Rotation::Foreign);
    let in_test = RotationRequest { environment: Environment::Test, ..request("f1", "f2", 1010, 9000, 0) };
    assert_eq!(store.rotate(&in_test).await.unwrap(), Rotation::Foreign);
    assert_eq!(store.find_any("f2").await.unwrap(), None);
    assert!(store.find("f1", 1010).await.unwrap().is_some(), "untouched");
    assert!(rotated(store.rotate(&request("f1", "f3", 1011, 9000, 0)).await.unwrap()), "still live for its client");
    assert_eq!(
        store.rotate(&foreign("f1", "f4")).await.unwrap(),
        Rotation::Foreign,
        "used, but not a replay of theirs"
    );
    assert!(rotated(store.rotate(&request("f3", "f5", 1012, 9000, 0)).await.unwrap()), "the family lives on");

    // A rotation taken back (its answer could not be made): the successor is gone and the
    // presented token is live again — once.
    store.insert(&record("g1", "fam-g")).await.unwrap();
    assert!(rotated(store.rotate(&request("g1", "g2", 1010, 9000, 0)).await.unwrap()));
    assert!(store.undo_rotation("g1", "g2").await.unwrap());
    assert_eq!(store.find_any("g2").await.unwrap(), None);
    assert!(store.find("g1", 1011).await.unwrap().is_some(), "live again");
    assert!(!store.undo_rotation("g1", "g2").await.unwrap(), "nothing left to take back");
    assert!(rotated(store.rotate(&request("g1", "g3", 1011, 9000, 0)).await.unwrap()), "live again, not a replay");
    // A successor that was used is not taken back.
    assert!(rotated(store.rotate(&request("g3", "g4", 1012, 9000, 0)).await.unwrap()));
    assert!(!store.undo_rotation("g1", "g3").await.unwrap());
    assert!(store.find_any("g3").await.unwrap().is_some());
    assert_eq!(store.find("g1", 1013).await.unwrap(), None, "still used");
    assert_eq!(store.rotate(&request("g1", "g5", 1013, 9000, 0)).await.unwrap(), Rotation::Reused("fam-g".into()));
}

/// The newest migration (on SQLite it builds the refresh-token table anew, on both it makes
/// the organisation index partial) keeps refresh tokens and transfers when it is taken back and
/// when it is applied again, and the stores work on either shape.
async fn the_newest_migration_keeps_tokens_and_transfers_both_ways(db: &Database) {
    use account_service::{DataTransfer, TransferOrganisation};
    use oidc_core::{ClientId, RefreshRecord, RefreshTokenStore, Rotation};
    let f = fixture(db);
    registered_and_active(&f, "migrated", "migrated@example.de").await;
    let account_id = f.accounts.login(PRODUCTION, "migrated", PASSWORD, "ip").await.unwrap().session.account_id;
    let client = ClientId::parse("rp").unwrap();
    let record = |hash: &str| token_record(hash, "family", &client, account_id);
    let transfer = |claim: &str, organisation: Option<TransferOrganisation>| DataTransfer {
        client_id: "rp".into(),
        recipient: "Stadt Köln – Wohngeld".into(),
        claims: vec![claim.into()],
        at: f.clock.now(),
        consent_ref: "first-party".into(),
        organisation,
    };
    let acme = || Some(TransferOrganisation { id: "org-1".into(), name: "Acme GmbH".into() });
    let tokens = db.refresh_tokens();
    let rotate = |old_hash, new_hash, now| rotation(&client, old_hash, new_hash, now, 9000, 0);
    tokens.insert(&record("t1")).await.unwrap();
    assert!(matches!(tokens.rotate(&rotate("t1", "t2", 1010)).await.unwrap(), Rotation::Rotated(_)));
    f.store.record_transfer(PRODUCTION, account_id, &transfer("email", None)).await.unwrap();
    f.store.record_transfer(PRODUCTION, account_id, &transfer("organization", acme())).await.unwrap();

    let kept = async |step: &str| {
        assert_eq!(
            tokens.find("t2", 1020).await.unwrap(),
            Some(RefreshRecord { token_hash: "t2".into(), created_at: 1010, ..record("t1") }),
            "{step}"
        );
        assert_eq!(tokens.find("t1", 1020).await.unwrap(), None, "{step}: used");
        assert_eq!(tokens.find_any("t1").await.unwrap().map(|r| r.family_id), Some("family".to_owned()), "{step}");
        assert_eq!(f.store.transfers(PRODUCTION, account_id, 10).await.unwrap().len(), 2, "{step}");
        let made_for = f.store.organisation_transfers(PRODUCTION, "org-1", 10).await.unwrap();
        assert_eq!(made_for, [(account_id, transfer("organization", acme()))], "{step}");
    };
    kept("before").await;
    db.migrate_down(1).await.unwrap();
    kept("taken back").await;
    tokens.insert(&record("t3")).await.unwrap();
    db.migrate().await.unwrap();
    kept("applied again").await;
    assert!(tokens.find("t3", 1020).await.unwrap().is_some(), "written while taken back");
    // The stores go on working on the new shape: a rotation, a replay that revokes the family.
    assert!(matches!(tokens.rotate(&rotate("t2", "t4", 1030)).await.unwrap(), Rotation::Rotated(_)));
    assert_eq!(tokens.rotate(&rotate("t2", "t5", 1031)).await.unwrap(), Rotation::Reused("family".into()));
    assert_eq!(tokens.find("t4", 1032).await.unwrap(), None, "the family is revoked");
    f.store.record_transfer(PRODUCTION, account_id, &transfer("organization", acme())).await.unwrap();
    assert_eq!(f.store.organisation_transfers(PRODUCTION, "org-1", 10).await.unwrap().len(), 2);
}

/// The durable mail queue: a claim leases a mail (no second claim meanwhile), a failed one
/// comes back at its retry time with the attempt counted, a sent one leaves.
async fn mail_queue(db: &Database) {
    use account_service::{MailQueue, QueuedMail};
    let queue = db.mail_queue();
    let t0 = datetime!(2026-12-02 10:00 UTC);
    for id in ["m1", "m2"] {
        queue
            .enqueue(&QueuedMail { id: id.into(), payload: vec![1, 2, 3], attempts: 0, created_at: t0 })
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(60);
    let claimed = queue.claim_due(t0, lease, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
    assert_eq!(claimed[0].payload, vec![1, 2, 3]);
    assert!(queue.claim_due(t0 + secs(1), lease, 10).await.unwrap().is_empty(), "leased");
    queue.retry_at("m1", t0 + secs(30), 1).await.unwrap();
    queue.remove("m2").await.unwrap();
    let again = queue.claim_due(t0 + secs(31), lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("m1", 1));
    // A claimer that died: the mail is due again when its lease ends.
    assert!(queue.claim_due(t0 + secs(60), lease, 10).await.unwrap().is_empty());
    assert_eq!(queue.claim_due(t0 + secs(92), lease, 10).await.unwrap().len(), 1);
}

/// Many sign-ins at the same moment: their account and consent reads and their transfer-log and
/// refresh-token inserts share statements (batched), yet each gets its own answer — the right
/// account, its own consent or none, `NotFound` for an account deleted meanwhile while the
/// others in the same insert are logged, and the other environment's account not found.
async fn concurrent_sign_ins_get_their_own_answers(db: &Database) {
    use oidc_core::{RefreshTokenStore as _, Rotation};
    let f = fixture(db);
    let mut ids = Vec::new();
    for n in 0..12 {
        registered_and_active(&f, &format!("gleichzeitig{n}"), &format!("g{n}@example.de")).await;
        ids.push(f.store.find_by_username(PRODUCTION, &format!("gleichzeitig{n}")).await.unwrap().unwrap().id);
    }
    register(&f, Environment::Test, "testumgebung", "t@example.de").await.unwrap();
    let in_test = f.store.find_by_username(Environment::Test, "testumgebung").await.unwrap().unwrap().id;
    let gone = ids.pop().unwrap();
    f.store.delete(PRODUCTION, gone, f.clock.now()).await.unwrap();
    for &id in ids.iter().step_by(2) {
        let consent = account_service::Consent {
            client_id: "wohngeld".into(),
            claims: vec![format!("email-of-{id}")],
            declined: Vec::new(),
            given_at: f.clock.now(),
            text_version: "1".into(),
            acting_for: None,
        };
        f.accounts.give_consent(PRODUCTION, id, consent).await.unwrap();
    }

    let reads =
        futures::future::join_all(ids.iter().chain([&gone, &in_test]).map(|&id| f.store.get(PRODUCTION, id))).await;
    for (read, id) in reads.iter().zip(&ids) {
        assert_eq!(read.as_ref().unwrap().id, *id);
    }
    assert!(matches!(reads[ids.len()], Err(StoreError::NotFound)), "deleted: {:?}", reads[ids.len()]);
    assert!(matches!(reads[ids.len() + 1], Err(StoreError::NotFound)), "other environment");

    let consents = futures::future::join_all(ids.iter().map(|&id| f.store.consent(PRODUCTION, id, "wohngeld"))).await;
    for (n, (consent, id)) in consents.into_iter().zip(&ids).enumerate() {
        let consent = consent.unwrap();
        if n % 2 == 0 {
            assert_eq!(consent.unwrap().claims, [format!("email-of-{id}")], "its own consent");
        } else {
            assert!(consent.is_none(), "no consent of its own");
        }
    }

    let transfer = |n: usize| account_service::DataTransfer {
        client_id: "wohngeld".into(),
        recipient: "Stadt Köln – Wohngeld".into(),
        claims: vec![format!("claim{n}")],
        at: f.clock.now(),
        consent_ref: "first-party".into(),
        organisation: None,
    };
    let logged = futures::future::join_all(ids.iter().chain([&gone]).enumerate().map(|(n, &id)| {
        let transfer = transfer(n);
        let store = f.store.clone();
        async move { store.record_transfer(PRODUCTION, id, &transfer).await }
    }))
    .await;
    assert!(matches!(logged[ids.len()], Err(StoreError::NotFound)), "deleted: {:?}", logged[ids.len()]);
    for (n, (logged, &id)) in logged.into_iter().zip(&ids).enumerate() {
        logged.unwrap();
        let listed = f.store.transfers(PRODUCTION, id, 10).await.unwrap();
        assert_eq!(listed, [transfer(n)], "each account's log holds its own transfer");
    }

    let refresh = db.refresh_tokens();
    let records: Vec<oidc_core::RefreshRecord> = ids
        .iter()
        .enumerate()
        .map(|(n, &id)| oidc_core::RefreshRecord {
            token_hash: format!("hash-{n}"),
            family_id: format!("family-{n}"),
            environment: PRODUCTION,
            client_id: oidc_core::ClientId::parse("wohngeld").unwrap(),
            account_id: id,
            grant: serde_json::json!({ "n": n }),
            created_at: 0,
            expires_at: i64::MAX,
        })
        .collect();
    let inserted = futures::future::join_all(records.iter().map(|r| refresh.insert(r))).await;
    assert!(inserted.iter().all(Result::is_ok), "{inserted:?}");
    for record in &records {
        assert_eq!(refresh.find(&record.token_hash, 1).await.unwrap().as_ref(), Some(record));
    }

    // Their rotations at the same moment (on SQLite one transaction for the batch): each gets
    // its own successor; of two presentations of one token one rotates and the other is a
    // replay; another client's and an unknown token are judged alone.
    let client = oidc_core::ClientId::parse("wohngeld").unwrap();
    let other = oidc_core::ClientId::parse("other").unwrap();
    let next: Vec<String> = (0..records.len()).map(|n| format!("next-{n}")).collect();
    let mut requests: Vec<oidc_core::RotationRequest<'_>> = records
        .iter()
        .zip(&next)
        .map(|(record, new_hash)| oidc_core::RotationRequest {
            old_hash: &record.token_hash,
            new_hash,
            client_id: &client,
            environment: PRODUCTION,
            now: 10,
            expires_at: 5000,
            grace_seconds: 0,
        })
        .collect();
    requests.push(oidc_core::RotationRequest { new_hash: "again-0", ..requests[0] });
    requests.push(oidc_core::RotationRequest { new_hash: "foreign-1", client_id: &other, ..requests[1] });
    requests.push(oidc_core::RotationRequest { old_hash: "unknown", new_hash: "unknown-next", ..requests[1] });
    let rotations = futures::future::join_all(requests.iter().map(|request| refresh.rotate(request))).await;
    let rotations: Vec<Rotation> = rotations.into_iter().map(Result::unwrap).collect();
    let count = records.len();
    for (n, rotation) in rotations.iter().enumerate().take(count).skip(1) {
        let expected = oidc_core::RefreshRecord {
            token_hash: next[n].clone(),
            created_at: 10,
            expires_at: 5000,
            ..records[n].clone()
        };
        assert_eq!(rotation, &Rotation::Rotated(expected.clone()), "rotation {n}");
        assert_eq!(refresh.find(&next[n], 11).await.unwrap(), Some(expected), "successor {n} is stored");
        assert_eq!(refresh.find(&records[n].token_hash, 11).await.unwrap(), None, "token {n} is used up");
    }
    let twice = [&rotations[0], &rotations[count]];
    assert_eq!(
        twice.iter().filter(|r| matches!(r, Rotation::Rotated(_))).count(),
        1,
        "one presentation of a token rotates: {twice:?}"
    );
    assert!(twice.contains(&&Rotation::Reused("family-0".into())), "the other is a replay: {twice:?}");
    assert_eq!(refresh.find("next-0", 11).await.unwrap(), None, "the replay revoked the family");
    assert_eq!(refresh.find("again-0", 11).await.unwrap(), None);
    assert_eq!(rotations[count + 1], Rotation::Foreign);
    assert_eq!(rotations[count + 2], Rotation::Invalid);
    assert_eq!(refresh.find_any("foreign-1").await.unwrap(), None);
}

/// Where the scenarios run; each gets a database of its own, so their accounts do not meet.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    async fn run<F: AsyncFnOnce(&Database)>(&self, scenario: F) {
        let (db, test_db) = match self {
            Backend::Sqlite(folder) => {
                (Database::connect(&TestDatabase::sqlite(folder.path()).url).await.unwrap(), None)
            }
            Backend::Postgres(server) => {
                let test_db = TestDatabase::postgres(server).await.unwrap();
                (Database::connect(&test_db.url).await.unwrap(), Some(test_db))
            }
        };
        db.migrate().await.unwrap();
        scenario(&db).await;
        db.close().await.unwrap();
        if let Some(test_db) = test_db {
            test_db.drop_now().await.unwrap();
        }
    }

    async fn all(&self) {
        self.run(registration_activation_login).await;
        self.run(uniqueness_per_environment).await;
        self.run(links_expire).await;
        self.run(a_mail_link_is_used_up_only_with_its_change).await;
        self.run(links_survive_an_ephemeral_wipe).await;
        self.run(purge_of_unactivated_accounts).await;
        self.run(throttling).await;
        self.run(session_timeouts).await;
        self.run(password_change_and_reset).await;
        self.run(master_data_and_email_change).await;
        self.run(export_and_deletion).await;
        self.run(rehash_on_login).await;
        self.run(inactive_accounts_are_reminded_then_deleted).await;
        self.run(eid_register_login_link).await;
        self.run(refresh_token_rotation).await;
        self.run(the_newest_migration_keeps_tokens_and_transfers_both_ways).await;
        self.run(mail_queue).await;
        self.run(passkeys).await;
        self.run(organisations).await;
        self.run(concurrent_sign_ins_get_their_own_answers).await;
    }
}

fn card(key: &str) -> CardIdentity {
    CardIdentity {
        key: key.into(),
        data: CardData {
            given_names: "ERIKA".into(),
            family_name: "MUSTERMANN".into(),
            birth_name: Some("GABLER".into()),
            date_of_birth: "1964-08-12".into(),
            place_of_birth: Some("BERLIN".into()),
            street: "HEIDESTRASSE".into(),
            house_number: "17".into(),
            postal_code: "51147".into(),
            city: "KÖLN".into(),
            country: "DE".into(),
            nationalities: Some("DEU".into()),
        },
    }
}

/// Registration with the card, login by the card's key, linking a card to a password account,
/// one card per account, and the level dropping when an eID-verified name is edited.
async fn eid_register_login_link(db: &Database) {
    let f = fixture(db);
    let from_card = card("key-1");
    let (data, _) =
        validate_personal_data(&from_card.data.as_input("erika.eid", "erika.eid@example.de", ""), f.clock.now().date())
            .unwrap();
    let registration = |card: CardIdentity, data| Registration {
        data,
        password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        privacy_consent: PrivacyConsent { version: "2026-11".into(), accepted_at: f.clock.now() },
        card: Some(card),
    };
    assert!(f.accounts.register(PRODUCTION, registration(from_card.clone(), data.clone())).await.unwrap());
    assert!(
        matches!(f.accounts.login_with_card(PRODUCTION, "key-1").await, Err(AccountError::NotActivated)),
        "the e-mail address is confirmed first"
    );
    let id = f.accounts.activate(PRODUCTION, &token_of(f.outbox.last().1)).await.unwrap();
    let account = f.accounts.account(PRODUCTION, id).await.unwrap();
    assert_eq!(account.trust_level, TrustLevel::Hoch);
    assert_eq!(account.master_data.family_name.source, Source::Eid);
    assert_eq!(account.master_data.nationalities.as_ref().map(|n| n.value.as_str()), Some("DEU"));
    let logged_in = f.accounts.login_with_card(PRODUCTION, "key-1").await.unwrap().expect("found by the card");
    assert_eq!(logged_in.session.trust_level, TrustLevel::Hoch);
    assert_eq!(logged_in.session.method.as_str(), "eid");
    assert!(f.accounts.login_with_card(PRODUCTION, "key-2").await.unwrap().is_none(), "an unknown card");
    assert!(f.accounts.login_with_card(Environment::Test, "key-1").await.unwrap().is_none(), "per environment");

    // The same card cannot register a second account.
    let mut other = data.clone();
    other.username = "zweite".into();
    other.email = "zweite@example.de".into();
    let err = f.accounts.register(PRODUCTION, registration(from_card.clone(), other)).await.unwrap_err();
    assert!(matches!(&err, AccountError::Taken(t) if t == &[UniqueField::Eid]), "{err:?}");

    // A password account links the card: the city spelled its own way is kept by choice.
    registered_and_active(&f, "erika.pwd", "erika.pwd@example.de").await;
    let pwd = f.accounts.login(PRODUCTION, "erika.pwd", PASSWORD, "10.0.0.1").await.unwrap().session.account_id;
    let err = f.accounts.link_card(PRODUCTION, pwd, &from_card, &[]).await.unwrap_err();
    assert!(matches!(&err, AccountError::Taken(t) if t == &[UniqueField::Eid]), "linked elsewhere: {err:?}");
    let changed = f.accounts.link_card(PRODUCTION, pwd, &card("key-2"), &["city".to_owned()]).await.unwrap();
    assert!(changed.contains(&"given_names") && !changed.contains(&"city"), "{changed:?}");
    let linked = f.accounts.account(PRODUCTION, pwd).await.unwrap();
    assert_eq!(linked.trust_level, TrustLevel::Hoch);
    assert_eq!(linked.master_data.given_names.value, "ERIKA");
    assert_eq!(
        (linked.master_data.city.value.as_str(), linked.master_data.city.source),
        ("Köln", Source::SelfAsserted)
    );
    let events = f.accounts.events(PRODUCTION, pwd).await.unwrap();
    assert_eq!(events[0].kind, EventKind::EidLinked);

    // Editing a verified name makes it the citizen's again, and the level follows.
    let mut edited = validate_personal_data(&linked_input(&linked), f.clock.now().date()).unwrap().0;
    edited.family_name = "Muster".into();
    f.accounts.update_master_data(PRODUCTION, pwd, &edited).await.unwrap();
    let after = f.accounts.account(PRODUCTION, pwd).await.unwrap();
    assert_eq!(after.master_data.family_name.source, Source::SelfAsserted);
    assert_eq!(after.master_data.given_names.source, Source::Eid, "untouched fields keep their mark");
    assert_eq!(after.trust_level, TrustLevel::Normal);

    // A one-time identification leaves one log row and no account.
    let transfer = account_service::DataTransfer {
        client_id: "wohngeld".into(),
        recipient: "Kreis Lippe – Wohngeld".into(),
        claims: vec!["family_name".into()],
        at: f.clock.now(),
        consent_ref: "one-time-identification".into(),
        organisation: None,
    };
    f.accounts.record_one_time_transfer(PRODUCTION, transfer).await.unwrap();
    let listed = f.accounts.one_time_transfers(PRODUCTION, "wohngeld").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].claims, ["family_name"]);
    assert!(f.accounts.one_time_transfers(Environment::Test, "wohngeld").await.unwrap().is_empty(), "per environment");
}

/// A passkey row as the store keeps it; the credential is opaque to the store.
fn stored_passkey(
    f: &Fixture,
    environment: Environment,
    account: oidc_core::AccountId,
    credential_id: &str,
) -> StoredPasskey {
    StoredPasskey {
        id: uuid::Uuid::new_v4(),
        environment,
        account_id: account,
        credential_id: credential_id.into(),
        name: format!("Schlüssel {credential_id}"),
        credential: "{\"opaque\":true}".into(),
        added_with_card: false,
        created_at: f.clock.now(),
        last_used_at: None,
    }
}

/// Passkeys: the store's contract, and every refusal of the service that needs no
/// authenticator (the ceremonies themselves run in Chromium: integration-tests' `passkeys`).
async fn passkeys(db: &Database) {
    let config = AccountsConfig {
        relying_parties: vec![RelyingParty {
            environment: PRODUCTION,
            origin: "https://konto.example".parse().unwrap(),
        }],
        ..AccountsConfig::default()
    };
    let f = fixture_configured(db, CHEAP, Arc::new(ManualClock::new(datetime!(2026-11-22 10:00 UTC))), config);
    registered_and_active(&f, "pia", "pia@example.de").await;
    let session = f.accounts.login(PRODUCTION, "pia", PASSWORD, "ip").await.unwrap().session;
    let id = session.account_id;
    let added = |name: &str| account_service::AccountEvent {
        at: f.clock.now(),
        kind: EventKind::PasskeyAdded,
        detail: Some(name.to_owned()),
    };

    registered_and_active(&f, "paul", "paul@example.de").await;
    let paul_session = f.accounts.login(PRODUCTION, "paul", PASSWORD, "ip").await.unwrap().session;
    let paul = paul_session.account_id;
    // Adding one (to Paul's account, which has none) needs the password again, or a card login
    // of the last ten minutes.
    let err = f.accounts.start_passkey_registration(PRODUCTION, paul, Reauthentication::Password("falsch")).await;
    assert!(matches!(err, Err(AccountError::WrongPassword)), "{err:?}");
    let err =
        f.accounts.start_passkey_registration(PRODUCTION, paul, Reauthentication::RecentCardLogin(&paul_session)).await;
    assert!(
        matches!(err, Err(AccountError::Passkey(PasskeyError::ReauthenticationNeeded))),
        "a password session: {err:?}"
    );
    let ceremony =
        f.accounts.start_passkey_registration(PRODUCTION, paul, Reauthentication::Password(PASSWORD)).await.unwrap();
    let options = &ceremony.options["publicKey"];
    assert_eq!(options["rp"]["id"], "konto.example");
    assert_eq!(options["user"]["name"], "paul");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required", "discoverable: {options}");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    assert!(options["excludeCredentials"].as_array().is_none_or(Vec::is_empty), "none yet: {options}");
    let err = f
        .accounts
        .finish_passkey_registration(PRODUCTION, oidc_core::AccountId::new_random(), &ceremony.id, "", "{}")
        .await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::Expired))), "another account's: {err:?}");
    let ceremony =
        f.accounts.start_passkey_registration(PRODUCTION, paul, Reauthentication::Password(PASSWORD)).await.unwrap();
    let err = f.accounts.finish_passkey_registration(PRODUCTION, paul, &ceremony.id, "", "kein JSON").await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::Rejected))), "{err:?}");
    let err = f.accounts.finish_passkey_registration(PRODUCTION, paul, &ceremony.id, "", "kein JSON").await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::Expired))), "single use: {err:?}");
    let err =
        f.accounts.start_passkey_registration(Environment::Test, paul, Reauthentication::Password(PASSWORD)).await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::Unavailable))), "no relying party: {err:?}");

    // The store: per environment unique credential ids, oldest first, updates, removal.
    let first = stored_passkey(&f, PRODUCTION, id, "AAAA");
    f.store.insert_passkey(&first, &added("a")).await.unwrap();
    let err = f.store.insert_passkey(&stored_passkey(&f, PRODUCTION, id, "AAAA"), &added("b")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(UniqueField::Passkey)), "{err:?}");
    f.clock.advance(secs(60));
    let second = stored_passkey(&f, PRODUCTION, id, "BBBB");
    f.store.insert_passkey(&second, &added("c")).await.unwrap();
    let listed = f.accounts.passkeys(PRODUCTION, id).await.unwrap();
    assert_eq!(listed, [first.clone(), second.clone()], "as stored, oldest first");
    assert_eq!(f.store.find_passkey(PRODUCTION, "BBBB").await.unwrap(), Some(second.clone()));
    assert_eq!(f.store.find_passkey(Environment::Test, "BBBB").await.unwrap(), None, "per environment");
    let mut used = second.clone();
    used.last_used_at = Some(f.clock.now());
    used.credential = "{\"counter\":2}".into();
    f.store.update_passkey(&used).await.unwrap();
    assert_eq!(f.store.find_passkey(PRODUCTION, "BBBB").await.unwrap(), Some(used.clone()));
    let gone = stored_passkey(&f, PRODUCTION, id, "CCCC");
    assert!(matches!(f.store.update_passkey(&gone).await, Err(StoreError::NotFound)));
    let err = f
        .store
        .insert_passkey(&stored_passkey(&f, PRODUCTION, oidc_core::AccountId::new_random(), "DDDD"), &added("d"))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound)), "no passkey without its account: {err:?}");

    // Names: renamed, refused when too long; someone else's passkey is unknown.
    f.accounts.rename_passkey(PRODUCTION, id, first.id, "  Tablet ").await.unwrap();
    assert_eq!(f.accounts.passkeys(PRODUCTION, id).await.unwrap()[0].name, "Tablet");
    let err = f.accounts.rename_passkey(PRODUCTION, id, first.id, &"x".repeat(61)).await.unwrap_err();
    assert!(matches!(err, AccountError::Passkey(PasskeyError::InvalidName)), "{err:?}");
    let stranger = oidc_core::AccountId::new_random();
    let err = f.accounts.rename_passkey(PRODUCTION, stranger, first.id, "Meins").await.unwrap_err();
    assert!(matches!(err, AccountError::Passkey(PasskeyError::Unknown)), "{err:?}");

    // A login with any passkey: no allow list, no autofill mediation; expired after 5 minutes.
    let login = f.accounts.start_passkey_login(PRODUCTION).await.unwrap();
    assert!(login.options.get("mediation").is_none(), "{}", login.options);
    assert_eq!(login.options["publicKey"]["userVerification"], "required");
    f.clock.advance(secs(301));
    let err = f.accounts.finish_passkey_login(PRODUCTION, &login.id, "{}").await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::Expired))), "{err:?}");

    // "Passwort und Passkey" needs a passkey; the last one stays while it is chosen.
    let err = f.accounts.set_login_factors(PRODUCTION, paul, LoginFactors::PasswordAndPasskey).await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::NoPasskey))), "{err:?}");
    f.accounts.set_login_factors(PRODUCTION, id, LoginFactors::PasswordAndPasskey).await.unwrap();
    assert_eq!(f.accounts.account(PRODUCTION, id).await.unwrap().login_factors, LoginFactors::PasswordAndPasskey);
    f.accounts.remove_passkey(PRODUCTION, id, first.id).await.unwrap();
    assert!(matches!(f.outbox.last().1, Notification::PasskeyRemoved { ref name } if name == "Tablet"));
    let err = f.accounts.remove_passkey(PRODUCTION, id, second.id).await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::LastPasskey))), "{err:?}");
    let err = f.accounts.remove_passkey(PRODUCTION, id, first.id).await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::Unknown))), "removed already: {err:?}");

    // A password reset keeps the passkeys and says how many.
    f.accounts.request_password_reset(PRODUCTION, "pia").await.unwrap();
    let token = token_of(f.outbox.last().1);
    let new = "Drei Raben sitzen auf dem Zaun";
    f.accounts.reset_password(PRODUCTION, &token, new, new).await.unwrap();
    assert!(matches!(f.outbox.last().1, Notification::PasswordResetDone { passkeys_kept: 1 }));
    assert_eq!(f.accounts.passkeys(PRODUCTION, id).await.unwrap().len(), 1);
    let kinds: Vec<EventKind> = f.accounts.events(PRODUCTION, id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::PasskeyRemoved) && kinds.contains(&EventKind::LoginFactorsChanged), "{kinds:?}");

    // Who lost every factor gets back in with the ID card, whatever the login factors say; a
    // card login stands in for the password when adding a passkey, for ten minutes.
    f.accounts.link_card(PRODUCTION, id, &card("pia-card"), &[]).await.unwrap();
    let by_card = f.accounts.login_with_card(PRODUCTION, "pia-card").await.unwrap().expect("the card's account");
    assert_eq!(by_card.session.account_id, id);
    f.accounts.link_card(PRODUCTION, paul, &card("paul-card"), &[]).await.unwrap();
    let by_card = f.accounts.login_with_card(PRODUCTION, "paul-card").await.unwrap().unwrap();
    let proof = Reauthentication::RecentCardLogin(&by_card.session);
    f.accounts.start_passkey_registration(PRODUCTION, paul, proof).await.expect("a fresh card login");
    f.clock.advance(secs(601));
    let err = f.accounts.start_passkey_registration(PRODUCTION, paul, proof).await;
    assert!(matches!(err, Err(AccountError::Passkey(PasskeyError::ReauthenticationNeeded))), "stale: {err:?}");

    // The export names them; the deletion takes them along.
    let export = f.accounts.export(PRODUCTION, id).await.unwrap();
    assert_eq!(export.passkeys.len(), 1);
    assert_eq!(export.login_factors, LoginFactors::PasswordAndPasskey);
    f.accounts.delete(PRODUCTION, id, new).await.unwrap();
    assert!(f.store.passkeys(PRODUCTION, id).await.unwrap().is_empty());
    assert_eq!(f.store.find_passkey(PRODUCTION, "BBBB").await.unwrap(), None);
}

fn organisation_data(name: &str) -> account_service::OrganisationData {
    account_service::OrganisationData {
        name: name.into(),
        legal_form: account_service::LegalForm::Gmbh,
        register: Some(account_service::RegisterEntry {
            court: "Amtsgericht Köln".into(),
            kind: account_service::RegisterKind::Hrb,
            number: "12345".into(),
        }),
        street: "Heidestraße".into(),
        house_number: "17".into(),
        postal_code: "51147".into(),
        city: "Köln".into(),
        country: "DE".into(),
        contact_email: "info@baeckerei.example".into(),
    }
}

/// Organisations: created only at the trust level asked, contact address confirmed by link,
/// invitations single-use and bound to the environment, one administrator always kept (also
/// against two demotions at once), verification dropped by a change, deletion.
async fn organisations(db: &Database) {
    use account_service::{OrganisationError, OrganisationField, OrganisationStatus, Organisations, Role};
    let f = fixture(db);
    let organisations = Organisations::new(
        Arc::new(db.organisations()),
        f.store.clone(),
        f.outbox.clone(),
        f.clock.clone(),
        TrustLevel::Hoch,
    );
    registered_and_active(&f, "olga", "olga@example.de").await;
    registered_and_active(&f, "otto", "otto@example.de").await;
    let olga_id = f.accounts.login(PRODUCTION, "olga", PASSWORD, "ip").await.unwrap().session.account_id;
    let otto_id = f.accounts.login(PRODUCTION, "otto", PASSWORD, "ip").await.unwrap().session.account_id;
    let olga = f.accounts.account(PRODUCTION, olga_id).await.unwrap();
    let err = organisations.create(&olga, &organisation_data("Bäckerei Mustermann GmbH")).await.unwrap_err();
    assert!(matches!(err, OrganisationError::TrustLevelTooLow { needed: TrustLevel::Hoch }), "{err:?}");
    f.accounts.link_card(PRODUCTION, olga_id, &card("olga-card"), &[]).await.unwrap();
    let olga = f.accounts.account(PRODUCTION, olga_id).await.unwrap();
    assert_eq!(olga.trust_level, TrustLevel::Hoch);
    let org = organisations.create(&olga, &organisation_data("Bäckerei Mustermann GmbH")).await.unwrap();
    let (to, mail) = f.outbox.last();
    assert_eq!(to, "info@baeckerei.example");
    let Notification::OrganisationEmail { token, .. } = mail else { panic!("a confirmation: {mail:?}") };
    let confirmed = organisations.confirm_email(PRODUCTION, &token).await.unwrap();
    assert_eq!(confirmed.email_verified_at, Some(f.clock.now()));
    assert!(matches!(organisations.confirm_email(PRODUCTION, &token).await, Err(OrganisationError::Link)));

    // Invitations: single use, per environment, expire after 7 days; accepting needs a login.
    let otto = f.accounts.account(PRODUCTION, otto_id).await.unwrap();
    let err = organisations.invite(PRODUCTION, org.id, &otto, "x@example.de", Role::Member).await.unwrap_err();
    assert!(matches!(err, OrganisationError::Forbidden), "a non-member: {err:?}");
    organisations.invite(PRODUCTION, org.id, &olga, "Otto@Example.de", Role::Member).await.unwrap();
    let (to, mail) = f.outbox.last();
    assert_eq!(to, "otto@example.de");
    let Notification::OrganisationInvitation { token, .. } = mail else { panic!("an invitation: {mail:?}") };
    assert!(matches!(organisations.accept(Environment::Test, &token, &otto).await, Err(OrganisationError::Forbidden)));
    organisations.accept(PRODUCTION, &token, &otto).await.unwrap();
    assert!(matches!(organisations.accept(PRODUCTION, &token, &otto).await, Err(OrganisationError::Link)));
    organisations.invite(PRODUCTION, org.id, &olga, "spaet@example.de", Role::Member).await.unwrap();
    let Notification::OrganisationInvitation { token: late, .. } = f.outbox.last().1 else { panic!() };
    f.clock.advance(secs(7 * 24 * 3600));
    assert!(matches!(organisations.accept(PRODUCTION, &late, &otto).await, Err(OrganisationError::Link)));
    let (_, open) = organisations.members(PRODUCTION, org.id, olga_id).await.unwrap();
    assert!(open.is_empty(), "an expired invitation is not shown as open: {open:?}");
    // Invitations are mails to addresses of the inviter's choosing: at most 50 open at once.
    for n in 0..account_service::MAX_OPEN_INVITATIONS {
        organisations.invite(PRODUCTION, org.id, &olga, &format!("person{n}@example.de"), Role::Member).await.unwrap();
    }
    let err = organisations.invite(PRODUCTION, org.id, &olga, "one.more@example.de", Role::Member).await;
    assert!(matches!(err, Err(OrganisationError::Invalid(ref p)) if p[0].1 == "org_too_many_invitations"), "{err:?}");
    let mine = organisations.of_account(PRODUCTION, otto_id).await.unwrap();
    assert_eq!(mine.iter().map(|(o, r)| (o.id, *r)).collect::<Vec<_>>(), [(org.id, Role::Member)]);
    let (members, _) = organisations.members(PRODUCTION, org.id, otto_id).await.unwrap();
    assert_eq!(members.iter().map(|(m, _)| m.role).collect::<Vec<_>>(), [Role::Administrator, Role::Member]);

    // One administrator always stays, even when two demotions race.
    let err = organisations.remove(PRODUCTION, org.id, olga_id, olga_id).await.unwrap_err();
    assert!(matches!(err, OrganisationError::LastAdministrator), "{err:?}");
    let err = organisations.set_role(PRODUCTION, org.id, otto_id, otto_id, Role::Administrator).await.unwrap_err();
    assert!(matches!(err, OrganisationError::Forbidden), "members do not promote themselves: {err:?}");
    organisations.set_role(PRODUCTION, org.id, olga_id, otto_id, Role::Administrator).await.unwrap();
    let (a, b) = tokio::join!(
        organisations.set_role(PRODUCTION, org.id, olga_id, olga_id, Role::Member),
        organisations.set_role(PRODUCTION, org.id, otto_id, otto_id, Role::Member),
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one demotion: {a:?} {b:?}");
    let (members, _) = organisations.members(PRODUCTION, org.id, olga_id).await.unwrap();
    assert_eq!(members.iter().filter(|(m, _)| m.role == Role::Administrator).count(), 1);
    let admin = members.iter().find(|(m, _)| m.role == Role::Administrator).unwrap().0.account_id;
    assert_eq!(organisations.sole_administrations(PRODUCTION, admin).await.unwrap().len(), 1);

    // Verification: recorded with its evidence; a change of that part drops it.
    let verified = organisations
        .verify(PRODUCTION, org.id, OrganisationField::Register, "operator:alice", "Registerauszug geprüft")
        .await
        .unwrap();
    assert_eq!(verified.verification(OrganisationField::Register).unwrap().evidence, "Registerauszug geprüft");
    let mut data = organisation_data("Bäckerei Mustermann GmbH");
    data.city = "Bonn".into();
    data.postal_code = "53111".into();
    let changed = organisations.update(PRODUCTION, org.id, admin, &data).await.unwrap();
    assert!(changed.verification(OrganisationField::Register).is_some(), "the register did not change");
    data.register.as_mut().unwrap().number = "99999".into();
    let changed = organisations.update(PRODUCTION, org.id, admin, &data).await.unwrap();
    assert!(changed.verification(OrganisationField::Register).is_none(), "a new number is unverified");

    // An account deleted by the inactivity policy while it is an organisation's only
    // administrator hands the organisation to the longest-standing member.
    registered_and_active(&f, "ute", "ute@example.de").await;
    let ute_id = f.accounts.login(PRODUCTION, "ute", PASSWORD, "ip").await.unwrap().session.account_id;
    let ute = f.accounts.account(PRODUCTION, ute_id).await.unwrap();
    let handed = organisations.create(&ute, &organisation_data("Ute's Verein")).await;
    assert!(matches!(handed, Err(OrganisationError::TrustLevelTooLow { .. })), "normal is not enough");
    f.accounts.link_card(PRODUCTION, ute_id, &card("ute-card"), &[]).await.unwrap();
    let ute = f.accounts.account(PRODUCTION, ute_id).await.unwrap();
    let verein = organisations.create(&ute, &organisation_data("Utes Verein e. V.")).await.unwrap();
    organisations.invite(PRODUCTION, verein.id, &ute, "otto@example.de", Role::Member).await.unwrap();
    let Notification::OrganisationInvitation { token, .. } = f.outbox.last().1 else { panic!() };
    // Accepting fails while the organisation is suspended; the invitation is not used up by
    // that, and works once the suspension is lifted.
    organisations.set_status(PRODUCTION, verein.id, OrganisationStatus::Suspended).await.unwrap();
    let err = organisations.accept(PRODUCTION, &token, &otto).await.unwrap_err();
    assert!(matches!(err, OrganisationError::Suspended), "{err:?}");
    organisations.set_status(PRODUCTION, verein.id, OrganisationStatus::Active).await.unwrap();
    organisations.accept(PRODUCTION, &token, &otto).await.unwrap();
    let alone = organisations.create(&ute, &organisation_data("Utes Einzelunternehmen")).await.unwrap();
    f.store.delete(PRODUCTION, ute_id, f.clock.now()).await.unwrap();
    let (verein_now, role) = organisations.as_member(PRODUCTION, verein.id, otto_id).await.unwrap();
    assert_eq!((verein_now.id, role), (verein.id, Role::Administrator), "handed over");
    assert!(matches!(organisations.get(PRODUCTION, alone.id).await, Err(OrganisationError::Forbidden)), "nobody left");

    // Suspension stops invitations; deletion by an administrator removes everything.
    organisations.set_status(PRODUCTION, org.id, OrganisationStatus::Suspended).await.unwrap();
    let admin_account = f.accounts.account(PRODUCTION, admin).await.unwrap();
    let err = organisations.invite(PRODUCTION, org.id, &admin_account, "x@example.de", Role::Member).await;
    assert!(matches!(err, Err(OrganisationError::Suspended)), "{err:?}");
    let member = if admin == olga_id { otto_id } else { olga_id };
    assert!(matches!(organisations.delete(PRODUCTION, org.id, member).await, Err(OrganisationError::Forbidden)));
    organisations.delete(PRODUCTION, org.id, admin).await.unwrap();
    assert!(!organisations.of_account(PRODUCTION, admin).await.unwrap().iter().any(|(o, _)| o.id == org.id));
    assert!(matches!(organisations.get(PRODUCTION, org.id).await, Err(OrganisationError::Forbidden)));
}

/// The form as "Mein Konto" would show it for `account`.
fn linked_input(account: &account_service::Account) -> PersonalDataInput {
    let m = &account.master_data;
    PersonalDataInput {
        given_names: m.given_names.value.clone(),
        family_name: m.family_name.value.clone(),
        birth_name: m.birth_name.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
        date_of_birth: m.date_of_birth.value.clone(),
        place_of_birth: m.place_of_birth.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
        street_and_number: format!("{} {}", m.street.value, m.house_number.value),
        postal_code: m.postal_code.value.clone(),
        city: m.city.value.clone(),
        country: m.country.value.clone(),
        phone_number: String::new(),
        email: account.email.value.clone(),
        username: account.username.clone(),
    }
}

#[tokio::test]
async fn accounts_on_sqlite() {
    Backend::Sqlite(tempfile::tempdir().unwrap()).all().await;
}

#[tokio::test]
async fn accounts_on_postgres() {
    let Some(server) = backend_url("TEST_DATABASE_URL", "accounts_on_postgres") else { return };
    Backend::Postgres(server).all().await;
}
