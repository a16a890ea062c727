use std::{sync::Arc, time::Duration};

use account_service::{
    Account, AccountEvent, AccountStore, Consent, DataTransfer, EventKind, Inactive, LoginFactors, StoreError,
    StoredLink, StoredPasskey, UniqueField,
};
use async_trait::async_trait;
use oidc_core::{AccountId, Environment};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, SqlErr, Value,
    sea_query::Expr,
};
use time::OffsetDateTime;

use crate::{
    batch::{Batcher, Inserted, SharedDbErr, insert_all, rows_by_key},
    entities::{
        account, account_deletion, account_event, consent, data_transfer, mail_link, one_time_transfer, organisation,
        organisation_link, organisation_member, passkey,
    },
    held_connection::{HeldConnection, Lanes},
    statement_cache::StatementCache,
};

/// [`AccountStore`] on the relational database.
#[derive(Debug, Clone)]
pub struct SeaAccountStore {
    conn: DatabaseConnection,
    hot: Arc<HotStatements>,
}

/// The statements every sign-in makes, batched across concurrent requests (see `crate::batch`).
#[derive(Debug)]
struct HotStatements {
    /// Account rows by id.
    accounts: Batcher<String, Result<Option<account::Model>, SharedDbErr>, HeldConnection>,
    /// Consent rows by (account id, client id).
    consents: Batcher<(String, String), Result<Option<consent::Model>, SharedDbErr>, HeldConnection>,
    /// Transfer-log rows.
    transfers: Batcher<data_transfer::ActiveModel, Inserted, HeldConnection>,
}

impl SeaAccountStore {
    /// `wait` bounds how long a batched statement may take, queue included.
    pub(crate) fn new(conn: DatabaseConnection, lanes: &Lanes, wait: Duration) -> Self {
        let hot = HotStatements {
            accounts: Batcher::on_held(lanes, wait, read_accounts),
            consents: Batcher::on_held(lanes, wait, read_consents),
            transfers: Batcher::on_held(lanes, wait, |conn, rows| {
                static TEXTS: StatementCache = StatementCache::new();
                insert_all(conn, rows, &TEXTS)
            }),
        };
        Self { conn, hot: Arc::new(hot) }
    }
}

/// The account rows of a batch of ids.
async fn read_accounts(conn: HeldConnection, ids: Vec<String>) -> Vec<Result<Option<account::Model>, SharedDbErr>> {
    static TEXTS: StatementCache = StatementCache::new();
    let backend = conn.get_database_backend();
    let statement = TEXTS.statement(
        backend,
        ids.len(),
        0,
        || account::Entity::find().filter(account::Column::Id.is_in(ids.iter().cloned())).build(backend),
        || ids.iter().map(|id| Value::from(id.as_str())).collect(),
    );
    let rows = account::Model::find_by_statement(statement).all(&conn).await;
    rows_by_key(&ids, rows, |row| row.id.clone())
}

/// The consent rows of a batch of (account id, client id).
async fn read_consents(
    conn: HeldConnection,
    keys: Vec<(String, String)>,
) -> Vec<Result<Option<consent::Model>, SharedDbErr>> {
    static TEXTS: StatementCache = StatementCache::new();
    let backend = conn.get_database_backend();
    let build = || {
        let any = keys.iter().fold(Condition::any(), |any, (account_id, client_id)| {
            any.add(
                consent::Column::AccountId
                    .eq(account_id.as_str())
                    .and(consent::Column::ClientId.eq(client_id.as_str())),
            )
        });
        consent::Entity::find().filter(any).build(backend)
    };
    let values = || {
        keys.iter()
            .flat_map(|(account_id, client_id)| [account_id, client_id])
            .map(|v| Value::from(v.as_str()))
            .collect()
    };
    let statement = TEXTS.statement(backend, keys.len(), 0, build, values);
    let rows = consent::Model::find_by_statement(statement).all(&conn).await;
    rows_by_key(&keys, rows, |row| (row.account_id.clone(), row.client_id.clone()))
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(crate::boxed(e))
}

/// Unique violations name the index (PostgreSQL) or its columns (SQLite); both mention `email_key`
/// for the e-mail address.
fn map_db_err(e: DbErr) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(what)) if what.contains("email_key") => {
            StoreError::Conflict(UniqueField::Email)
        }
        Some(SqlErr::UniqueConstraintViolation(what)) if what.contains("eid_key") => {
            StoreError::Conflict(UniqueField::Eid)
        }
        Some(SqlErr::UniqueConstraintViolation(what)) if what.contains("credential") => {
            StoreError::Conflict(UniqueField::Passkey)
        }
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict(UniqueField::Username),
        // A row about an account that no longer exists (deleted meanwhile).
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => StoreError::NotFound,
        _ => unavailable(e),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stored account {id} is unreadable: {reason}")]
struct CorruptRow {
    id: String,
    reason: String,
}

fn corrupt(id: &str, reason: impl ToString) -> StoreError {
    unavailable(CorruptRow { id: id.to_owned(), reason: reason.to_string() })
}

fn time_of(id: &str, seconds: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| corrupt(id, e))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(unavailable)
}

fn parse_json<T: serde::de::DeserializeOwned>(id: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(id, e))
}

fn row(a: &Account) -> Result<account::ActiveModel, StoreError> {
    Ok(account::ActiveModel {
        id: Set(a.id.to_string()),
        environment: Set(a.environment.as_str().to_owned()),
        username: Set(a.username.clone()),
        username_key: Set(a.username.to_lowercase()),
        email: Set(json(&a.email)?),
        email_key: Set(a.email.value.to_lowercase()),
        status: Set(a.status.as_str().to_owned()),
        master_data: Set(json(&a.master_data)?),
        password_hash: Set(a.password_hash.clone()),
        trust_level: Set(a.trust_level.as_str().to_owned()),
        eid_key: Set(a.eid_key.clone()),
        privacy_consent: Set(json(&a.privacy_consent)?),
        session_epoch: Set(a.session_epoch),
        login_factors: Set(a.login_factors.as_str().to_owned()),
        created_at: Set(a.created_at.unix_timestamp()),
        activated_at: Set(a.activated_at.map(OffsetDateTime::unix_timestamp)),
        updated_at: Set(a.updated_at.unix_timestamp()),
        // Written only by `record_login` and `mark_reminded`: an update of the master data is
        // no sign of life from the citizen.
        last_login_at: NotSet,
        inactivity_reminded_at: NotSet,
    })
}

fn account_of(row: account::Model) -> Result<Account, StoreError> {
    let id = row.id.as_str();
    Ok(Account {
        id: row.id.parse::<uuid::Uuid>().map(AccountId::from).map_err(|e| corrupt(id, e))?,
        environment: row.environment.parse().map_err(|e| corrupt(id, e))?,
        email: parse_json(id, &row.email)?,
        status: serde_json::from_value(serde_json::Value::String(row.status.clone())).map_err(|e| corrupt(id, e))?,
        master_data: parse_json(id, &row.master_data)?,
        trust_level: row.trust_level.parse().map_err(|e| corrupt(id, e))?,
        eid_key: row.eid_key,
        privacy_consent: parse_json(id, &row.privacy_consent)?,
        session_epoch: row.session_epoch,
        login_factors: LoginFactors::parse(&row.login_factors).ok_or_else(|| corrupt(id, "login factors"))?,
        created_at: time_of(id, row.created_at)?,
        activated_at: row.activated_at.map(|t| time_of(id, t)).transpose()?,
        updated_at: time_of(id, row.updated_at)?,
        password_hash: row.password_hash,
        username: row.username,
    })
}

/// The columns both transfer logs store, cut to their widths.
struct TransferColumns {
    client_id: String,
    recipient: String,
    claims: String,
    at: i64,
    consent_ref: String,
}

impl TransferColumns {
    fn of(transfer: &DataTransfer) -> Result<Self, StoreError> {
        Ok(Self {
            client_id: transfer.client_id.clone(),
            recipient: transfer.recipient.chars().take(255).collect(),
            claims: json(&transfer.claims)?,
            at: transfer.at.unix_timestamp(),
            consent_ref: transfer.consent_ref.chars().take(64).collect(),
        })
    }

    /// Back to a transfer; `row` names the row in an error.
    fn into_transfer(self, row: &str) -> Result<DataTransfer, StoreError> {
        Ok(DataTransfer {
            organisation: None,
            claims: parse_json(row, &self.claims)?,
            at: time_of(row, self.at)?,
            client_id: self.client_id,
            recipient: self.recipient,
            consent_ref: self.consent_ref,
        })
    }
}

fn event_row(id: AccountId, event: &AccountEvent) -> account_event::ActiveModel {
    account_event::ActiveModel {
        id: NotSet,
        account_id: Set(id.to_string()),
        at: Set(event.at.unix_timestamp()),
        kind: Set(event.kind.as_str().to_owned()),
        detail: Set(event.detail.clone()),
    }
}

async fn insert_event(db: &impl ConnectionTrait, id: AccountId, event: &AccountEvent) -> Result<(), StoreError> {
    account_event::Entity::insert(event_row(id, event)).exec(db).await.map_err(map_db_err)?;
    Ok(())
}

fn in_environment(environment: Environment) -> sea_orm::sea_query::SimpleExpr {
    account::Column::Environment.eq(environment.as_str())
}

impl SeaAccountStore {
    /// The account of `environment` matching `condition` (a unique column).
    async fn find_one(
        &self,
        environment: Environment,
        condition: sea_orm::sea_query::SimpleExpr,
    ) -> Result<Option<Account>, StoreError> {
        account::Entity::find()
            .filter(in_environment(environment))
            .filter(condition)
            .one(&self.conn)
            .await
            .map_err(unavailable)?
            .map(account_of)
            .transpose()
    }
}

#[async_trait]
impl AccountStore for SeaAccountStore {
    async fn insert(&self, account: &Account, event: &AccountEvent) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        account::Entity::insert(row(account)?).exec(&txn).await.map_err(map_db_err)?;
        insert_event(&txn, account.id, event).await?;
        txn.commit().await.map_err(unavailable)
    }

    async fn get(&self, environment: Environment, id: AccountId) -> Result<Account, StoreError> {
        // Hot path (every page of a signed-in citizen, every userinfo): batched.
        self.hot
            .accounts
            .call(id.to_string())
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?
            .filter(|row| row.environment == environment.as_str())
            .ok_or(StoreError::NotFound)
            .and_then(account_of)
    }

    async fn find_by_username(&self, environment: Environment, username: &str) -> Result<Option<Account>, StoreError> {
        self.find_one(environment, account::Column::UsernameKey.eq(username.to_lowercase())).await
    }

    async fn find_by_email(&self, environment: Environment, email: &str) -> Result<Option<Account>, StoreError> {
        self.find_one(environment, account::Column::EmailKey.eq(email.to_lowercase())).await
    }

    async fn find_by_eid_key(&self, environment: Environment, eid_key: &str) -> Result<Option<Account>, StoreError> {
        self.find_one(environment, account::Column::EidKey.eq(eid_key)).await
    }

    async fn update(&self, account: &Account, event: Option<&AccountEvent>) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        replace_account(&txn, account, event).await?;
        txn.commit().await.map_err(unavailable)
    }

    async fn update_taking_link(
        &self,
        account: &Account,
        event: Option<&AccountEvent>,
        link_hash: &str,
    ) -> Result<bool, StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        // Whoever deletes the row took the link; a concurrent taker deletes nothing. Dropping
        // the transaction without a commit rolls the deletion back.
        let taken = mail_link::Entity::delete_by_id(link_hash.to_owned()).exec(&txn).await.map_err(map_db_err)?;
        if taken.rows_affected == 0 {
            return Ok(false);
        }
        replace_account(&txn, account, event).await?;
        txn.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn append_event(
        &self,
        _environment: Environment,
        id: AccountId,
        event: &AccountEvent,
    ) -> Result<(), StoreError> {
        // Hot path (every login): no read first; the foreign key refuses a vanished account, and
        // account ids are unique across environments.
        insert_event(&self.conn, id, event).await
    }

    async fn record_login(
        &self,
        environment: Environment,
        id: AccountId,
        event: &AccountEvent,
    ) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        let updated = account::Entity::update_many()
            .col_expr(account::Column::LastLoginAt, Expr::value(event.at.unix_timestamp()))
            .col_expr(account::Column::InactivityRemindedAt, Expr::value(Option::<i64>::None))
            .filter(account::Column::Id.eq(id.to_string()))
            .filter(in_environment(environment))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        insert_event(&txn, id, event).await?;
        txn.commit().await.map_err(unavailable)
    }

    async fn inactive(&self, filter: Inactive, limit: u32) -> Result<Vec<Account>, StoreError> {
        let seen_before = |cutoff: OffsetDateTime| {
            let cutoff = cutoff.unix_timestamp();
            // Last seen: the last login, else the activation, else the registration.
            Condition::any()
                .add(account::Column::LastLoginAt.lt(cutoff))
                .add(
                    Condition::all()
                        .add(account::Column::LastLoginAt.is_null())
                        .add(account::Column::ActivatedAt.lt(cutoff)),
                )
                .add(
                    Condition::all()
                        .add(account::Column::LastLoginAt.is_null())
                        .add(account::Column::ActivatedAt.is_null())
                        .add(account::Column::CreatedAt.lt(cutoff)),
                )
        };
        let selected = match filter {
            Inactive::DueForReminder { seen_before: cutoff } => {
                Condition::all().add(seen_before(cutoff)).add(account::Column::InactivityRemindedAt.is_null())
            }
            Inactive::DueForDeletion { seen_before: cutoff, reminded_before } => Condition::all()
                .add(seen_before(cutoff))
                .add(account::Column::InactivityRemindedAt.lt(reminded_before.unix_timestamp())),
        };
        let rows = account::Entity::find()
            .filter(account::Column::Status.eq("active"))
            .filter(selected)
            .order_by_asc(account::Column::LastLoginAt)
            .order_by_asc(account::Column::Id)
            .limit(u64::from(limit))
            .all(&self.conn)
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(account_of).collect()
    }

    async fn mark_reminded(
        &self,
        environment: Environment,
        id: AccountId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let updated = account::Entity::update_many()
            .col_expr(account::Column::InactivityRemindedAt, Expr::value(at.unix_timestamp()))
            .filter(account::Column::Id.eq(id.to_string()))
            .filter(in_environment(environment))
            .exec(&self.conn)
            .await
            .map_err(map_db_err)?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn events(
        &self,
        environment: Environment,
        id: AccountId,
        limit: u32,
    ) -> Result<Vec<AccountEvent>, StoreError> {
        self.get(environment, id).await?;
        let rows = account_event::Entity::find()
            .filter(account_event::Column::AccountId.eq(id.to_string()))
            .order_by_desc(account_event::Column::At)
            .order_by_desc(account_event::Column::Id)
            .limit(u64::from(limit))
            .all(&self.conn)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|r| {
                Ok(AccountEvent {
                    at: time_of(&r.account_id, r.at)?,
                    kind: EventKind::parse(&r.kind).ok_or_else(|| corrupt(&r.account_id, "event kind"))?,
                    detail: r.detail,
                })
            })
            .collect()
    }

    async fn consent(
        &self,
        _environment: Environment,
        id: AccountId,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError> {
        // Hot path (every authorization): a primary-key read, batched; ids are unique across
        // environments.
        let Some(row) = self
            .hot
            .consents
            .call((id.to_string(), client_id.to_owned()))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        Ok(Some(Consent {
            claims: parse_json(&row.account_id, &row.claims)?,
            declined: parse_json(&row.account_id, &row.declined)?,
            given_at: time_of(&row.account_id, row.given_at)?,
            client_id: row.client_id,
            text_version: row.text_version,
            acting_for: row.acting_for,
        }))
    }

    async fn save_consent(
        &self,
        environment: Environment,
        id: AccountId,
        given: &Consent,
        event: &AccountEvent,
    ) -> Result<(), StoreError> {
        self.get(environment, id).await?;
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        consent::Entity::delete_by_id((id.to_string(), given.client_id.clone()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        consent::Entity::insert(consent::ActiveModel {
            account_id: Set(id.to_string()),
            client_id: Set(given.client_id.clone()),
            claims: Set(json(&given.claims)?),
            declined: Set(json(&given.declined)?),
            given_at: Set(given.given_at.unix_timestamp()),
            text_version: Set(given.text_version.clone()),
            acting_for: Set(given.acting_for.clone()),
        })
        .exec(&txn)
        .await
        .map_err(map_db_err)?;
        insert_event(&txn, id, event).await?;
        txn.commit().await.map_err(unavailable)
    }

    async fn consents(&self, environment: Environment, id: AccountId) -> Result<Vec<Consent>, StoreError> {
        self.get(environment, id).await?;
        let rows = consent::Entity::find()
            .filter(consent::Column::AccountId.eq(id.to_string()))
            .order_by_asc(consent::Column::ClientId)
            .all(&self.conn)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                Ok(Consent {
                    claims: parse_json(&row.account_id, &row.claims)?,
                    declined: parse_json(&row.account_id, &row.declined)?,
                    given_at: time_of(&row.account_id, row.given_at)?,
                    client_id: row.client_id,
                    text_version: row.text_version,
                    acting_for: row.acting_for,
                })
            })
            .collect()
    }

    async fn withdraw_consent(
        &self,
        environment: Environment,
        id: AccountId,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        self.get(environment, id).await?;
        let deleted = consent::Entity::delete_by_id((id.to_string(), client_id.to_owned()))
            .exec(&self.conn)
            .await
            .map_err(map_db_err)?;
        Ok(deleted.rows_affected > 0)
    }

    async fn record_transfer(
        &self,
        _environment: Environment,
        id: AccountId,
        transfer: &DataTransfer,
    ) -> Result<(), StoreError> {
        // Hot path (every userinfo): no read first, the foreign key refuses a vanished account;
        // batched.
        let c = TransferColumns::of(transfer)?;
        let row = data_transfer::ActiveModel {
            id: NotSet,
            account_id: Set(id.to_string()),
            client_id: Set(c.client_id),
            recipient: Set(c.recipient),
            claims: Set(c.claims),
            at: Set(c.at),
            consent_ref: Set(c.consent_ref),
            organisation_id: Set(transfer.organisation.as_ref().map(|o| o.id.clone())),
            organisation_name: Set(transfer.organisation.as_ref().map(|o| o.name.chars().take(255).collect())),
        };
        match self.hot.transfers.call(row).await.map_err(unavailable)? {
            Inserted::Yes => Ok(()),
            Inserted::Failed(e) => Err(map_db_err(e)),
            Inserted::BatchFailed(e) => Err(unavailable(e)),
        }
    }

    async fn record_one_time_transfer(
        &self,
        environment: Environment,
        transfer: &DataTransfer,
    ) -> Result<(), StoreError> {
        let c = TransferColumns::of(transfer)?;
        one_time_transfer::Entity::insert(one_time_transfer::ActiveModel {
            id: NotSet,
            environment: Set(environment.as_str().to_owned()),
            client_id: Set(c.client_id),
            recipient: Set(c.recipient),
            claims: Set(c.claims),
            at: Set(c.at),
            consent_ref: Set(c.consent_ref),
        })
        .exec(&self.conn)
        .await
        .map_err(map_db_err)?;
        Ok(())
    }

    async fn one_time_transfers(
        &self,
        environment: Environment,
        client_id: &str,
        limit: u32,
    ) -> Result<Vec<DataTransfer>, StoreError> {
        let rows = one_time_transfer::Entity::find()
            .filter(one_time_transfer::Column::Environment.eq(environment.as_str()))
            .filter(one_time_transfer::Column::ClientId.eq(client_id))
            .order_by_desc(one_time_transfer::Column::At)
            .order_by_desc(one_time_transfer::Column::Id)
            .limit(u64::from(limit))
            .all(&self.conn)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let id = row.id.to_string();
                TransferColumns {
                    client_id: row.client_id,
                    recipient: row.recipient,
                    claims: row.claims,
                    at: row.at,
                    consent_ref: row.consent_ref,
                }
                .into_transfer(&id)
            })
            .collect()
    }

    async fn transfers(
        &self,
        environment: Environment,
        id: AccountId,
        limit: u32,
    ) -> Result<Vec<DataTransfer>, StoreError> {
        self.get(environment, id).await?;
        let rows = data_transfer::Entity::find()
            .filter(data_transfer::Column::AccountId.eq(id.to_string()))
            .order_by_desc(data_transfer::Column::At)
            .order_by_desc(data_transfer::Column::Id)
            .limit(u64::from(limit))
            .all(&self.conn)
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(|row| transfer_of(row).map(|(_, transfer)| transfer)).collect()
    }

    async fn organisation_transfers(
        &self,
        _environment: Environment,
        organisation: &str,
        limit: u32,
    ) -> Result<Vec<(AccountId, DataTransfer)>, StoreError> {
        // Organisation ids are unique across environments; the organisation's own environment
        // was checked by the caller.
        data_transfer::Entity::find()
            .filter(data_transfer::Column::OrganisationId.eq(organisation))
            .order_by_desc(data_transfer::Column::At)
            .order_by_desc(data_transfer::Column::Id)
            .limit(u64::from(limit))
            .all(&self.conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(transfer_of)
            .collect()
    }

    async fn delete(&self, environment: Environment, id: AccountId, at: OffsetDateTime) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        data_transfer::Entity::delete_many()
            .filter(data_transfer::Column::AccountId.eq(id.to_string()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        consent::Entity::delete_many()
            .filter(consent::Column::AccountId.eq(id.to_string()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        account_event::Entity::delete_many()
            .filter(account_event::Column::AccountId.eq(id.to_string()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        mail_link::Entity::delete_many()
            .filter(mail_link::Column::AccountId.eq(id.to_string()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        passkey::Entity::delete_many()
            .filter(passkey::Column::AccountId.eq(id.to_string()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        hand_over_organisations(&txn, id).await?;
        organisation_member::Entity::delete_many()
            .filter(organisation_member::Column::AccountId.eq(id.to_string()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        let deleted = account::Entity::delete_many()
            .filter(account::Column::Id.eq(id.to_string()))
            .filter(in_environment(environment))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        account_deletion::Entity::insert(account_deletion::ActiveModel {
            id: NotSet,
            account_id: Set(id.to_string()),
            environment: Set(environment.as_str().to_owned()),
            at: Set(at.unix_timestamp()),
        })
        .exec(&txn)
        .await
        .map_err(map_db_err)?;
        txn.commit().await.map_err(unavailable)
    }

    async fn purge_pending(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        let stale: Vec<String> = account::Entity::find()
            .select_only()
            .column(account::Column::Id)
            .filter(account::Column::Status.eq("pending"))
            .filter(account::Column::CreatedAt.lt(before.unix_timestamp()))
            .into_tuple()
            .all(&txn)
            .await
            .map_err(unavailable)?;
        if stale.is_empty() {
            return Ok(0);
        }
        data_transfer::Entity::delete_many()
            .filter(data_transfer::Column::AccountId.is_in(stale.clone()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        consent::Entity::delete_many()
            .filter(consent::Column::AccountId.is_in(stale.clone()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        account_event::Entity::delete_many()
            .filter(account_event::Column::AccountId.is_in(stale.clone()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        mail_link::Entity::delete_many()
            .filter(mail_link::Column::AccountId.is_in(stale.clone()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        let deleted = account::Entity::delete_many()
            .filter(account::Column::Id.is_in(stale))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        txn.commit().await.map_err(unavailable)?;
        Ok(deleted.rows_affected)
    }

    async fn insert_link(&self, link: &StoredLink) -> Result<(), StoreError> {
        let row = mail_link::ActiveModel {
            token_hash: Set(link.token_hash.clone()),
            kind: Set(link.kind.clone()),
            environment: Set(link.environment.as_str().to_owned()),
            account_id: Set(link.account_id.to_string()),
            new_email: Set(link.new_email.clone()),
            created_at: Set(link.created_at.unix_timestamp()),
            expires_at: Set(link.expires_at.unix_timestamp()),
        };
        mail_link::Entity::insert(row).exec(&self.conn).await.map_err(map_db_err)?;
        Ok(())
    }

    async fn find_link(&self, token_hash: &str) -> Result<Option<StoredLink>, StoreError> {
        let found = mail_link::Entity::find_by_id(token_hash.to_owned()).one(&self.conn).await.map_err(map_db_err)?;
        found.map(stored_link).transpose()
    }

    async fn take_link(&self, token_hash: &str) -> Result<Option<StoredLink>, StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        let Some(found) = mail_link::Entity::find_by_id(token_hash.to_owned()).one(&txn).await.map_err(map_db_err)?
        else {
            return Ok(None);
        };
        // Whoever deletes the row took the link; a concurrent taker deletes nothing.
        let deleted = mail_link::Entity::delete_by_id(token_hash.to_owned()).exec(&txn).await.map_err(map_db_err)?;
        txn.commit().await.map_err(unavailable)?;
        if deleted.rows_affected == 0 {
            return Ok(None);
        }
        stored_link(found).map(Some)
    }

    async fn purge_links(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let deleted = mail_link::Entity::delete_many()
            .filter(mail_link::Column::ExpiresAt.lt(before.unix_timestamp()))
            .exec(&self.conn)
            .await
            .map_err(map_db_err)?;
        Ok(deleted.rows_affected)
    }

    async fn insert_passkey(&self, stored: &StoredPasskey, event: &AccountEvent) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        passkey::Entity::insert(passkey::ActiveModel {
            id: Set(stored.id.to_string()),
            environment: Set(stored.environment.as_str().to_owned()),
            account_id: Set(stored.account_id.to_string()),
            credential_id: Set(stored.credential_id.clone()),
            name: Set(stored.name.clone()),
            credential: Set(stored.credential.clone()),
            added_with_card: Set(stored.added_with_card),
            created_at: Set(stored.created_at.unix_timestamp()),
            last_used_at: Set(stored.last_used_at.map(OffsetDateTime::unix_timestamp)),
        })
        .exec(&txn)
        .await
        .map_err(map_db_err)?;
        insert_event(&txn, stored.account_id, event).await?;
        txn.commit().await.map_err(unavailable)
    }

    async fn passkeys(&self, environment: Environment, id: AccountId) -> Result<Vec<StoredPasskey>, StoreError> {
        passkey::Entity::find()
            .filter(passkey::Column::Environment.eq(environment.as_str()))
            .filter(passkey::Column::AccountId.eq(id.to_string()))
            .order_by_asc(passkey::Column::CreatedAt)
            .order_by_asc(passkey::Column::Id)
            .all(&self.conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(stored_passkey)
            .collect()
    }

    async fn find_passkey(
        &self,
        environment: Environment,
        credential_id: &str,
    ) -> Result<Option<StoredPasskey>, StoreError> {
        passkey::Entity::find()
            .filter(passkey::Column::Environment.eq(environment.as_str()))
            .filter(passkey::Column::CredentialId.eq(credential_id))
            .one(&self.conn)
            .await
            .map_err(unavailable)?
            .map(stored_passkey)
            .transpose()
    }

    async fn update_passkey(&self, stored: &StoredPasskey) -> Result<(), StoreError> {
        let updated = passkey::Entity::update_many()
            .col_expr(passkey::Column::Name, Expr::value(stored.name.clone()))
            .col_expr(passkey::Column::Credential, Expr::value(stored.credential.clone()))
            .col_expr(passkey::Column::LastUsedAt, Expr::value(stored.last_used_at.map(OffsetDateTime::unix_timestamp)))
            .filter(passkey::Column::Id.eq(stored.id.to_string()))
            .filter(passkey::Column::AccountId.eq(stored.account_id.to_string()))
            .exec(&self.conn)
            .await
            .map_err(map_db_err)?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn remove_passkey(
        &self,
        environment: Environment,
        id: AccountId,
        stored: uuid::Uuid,
        event: &AccountEvent,
    ) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        let deleted = passkey::Entity::delete_many()
            .filter(passkey::Column::Id.eq(stored.to_string()))
            .filter(passkey::Column::AccountId.eq(id.to_string()))
            .filter(passkey::Column::Environment.eq(environment.as_str()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        insert_event(&txn, id, event).await?;
        txn.commit().await.map_err(unavailable)
    }
}

/// Before an account goes: an organisation it was the only administrator of passes to its
/// longest-standing other member, or is deleted when nobody else is in it. (A citizen's own
/// deletion is refused in that case; this is for the inactivity policy's deletions.)
async fn hand_over_organisations(txn: &sea_orm::DatabaseTransaction, id: AccountId) -> Result<(), StoreError> {
    let administrator = account_service::Role::Administrator.as_str();
    let administered = organisation_member::Entity::find()
        .filter(organisation_member::Column::AccountId.eq(id.to_string()))
        .filter(organisation_member::Column::Role.eq(administrator))
        .all(txn)
        .await
        .map_err(map_db_err)?;
    for membership in administered {
        let others = organisation_member::Entity::find()
            .filter(organisation_member::Column::OrganisationId.eq(membership.organisation_id.clone()))
            .filter(organisation_member::Column::AccountId.ne(id.to_string()))
            .order_by_asc(organisation_member::Column::Since)
            .all(txn)
            .await
            .map_err(map_db_err)?;
        if others.iter().any(|m| m.role == administrator) {
            continue;
        }
        match others.into_iter().next() {
            Some(successor) => {
                organisation_member::Entity::update(organisation_member::ActiveModel {
                    role: Set(administrator.to_owned()),
                    ..successor.into()
                })
                .exec(txn)
                .await
                .map_err(map_db_err)?;
            }
            None => {
                organisation_link::Entity::delete_many()
                    .filter(organisation_link::Column::OrganisationId.eq(membership.organisation_id.clone()))
                    .exec(txn)
                    .await
                    .map_err(map_db_err)?;
                organisation_member::Entity::delete_many()
                    .filter(organisation_member::Column::OrganisationId.eq(membership.organisation_id.clone()))
                    .exec(txn)
                    .await
                    .map_err(map_db_err)?;
                organisation::Entity::delete_by_id(membership.organisation_id).exec(txn).await.map_err(map_db_err)?;
            }
        }
    }
    Ok(())
}

fn transfer_of(row: data_transfer::Model) -> Result<(AccountId, DataTransfer), StoreError> {
    let account = row.account_id.parse::<uuid::Uuid>().map(AccountId::from).map_err(|e| corrupt(&row.account_id, e))?;
    let organisation = match (row.organisation_id, row.organisation_name) {
        (Some(id), name) => Some(account_service::TransferOrganisation { id, name: name.unwrap_or_default() }),
        (None, _) => None,
    };
    let mut transfer = TransferColumns {
        client_id: row.client_id,
        recipient: row.recipient,
        claims: row.claims,
        at: row.at,
        consent_ref: row.consent_ref,
    }
    .into_transfer(&row.account_id)?;
    transfer.organisation = organisation;
    Ok((account, transfer))
}

fn stored_passkey(row: passkey::Model) -> Result<StoredPasskey, StoreError> {
    let id = row.id.as_str();
    Ok(StoredPasskey {
        id: row.id.parse().map_err(|e| corrupt(id, e))?,
        environment: row.environment.parse().map_err(|e| corrupt(id, e))?,
        account_id: row.account_id.parse::<uuid::Uuid>().map(AccountId::from).map_err(|e| corrupt(id, e))?,
        created_at: time_of(id, row.created_at)?,
        last_used_at: row.last_used_at.map(|t| time_of(id, t)).transpose()?,
        credential_id: row.credential_id,
        name: row.name,
        credential: row.credential,
        added_with_card: row.added_with_card,
    })
}

/// Replaces the stored account (matched by environment and id) and appends `event`, inside `txn`.
async fn replace_account(
    txn: &sea_orm::DatabaseTransaction,
    account: &Account,
    event: Option<&AccountEvent>,
) -> Result<(), StoreError> {
    let updated = account::Entity::update_many()
        .set(row(account)?)
        .filter(account::Column::Id.eq(account.id.to_string()))
        .filter(in_environment(account.environment))
        .exec(txn)
        .await
        .map_err(map_db_err)?;
    if updated.rows_affected == 0 {
        return Err(StoreError::NotFound);
    }
    if let Some(event) = event {
        insert_event(txn, account.id, event).await?;
    }
    Ok(())
}

fn stored_link(row: mail_link::Model) -> Result<StoredLink, StoreError> {
    let id = row.token_hash.get(..8).unwrap_or_default().to_owned();
    Ok(StoredLink {
        environment: row.environment.parse().map_err(|_| corrupt(&id, "environment"))?,
        account_id: row
            .account_id
            .parse::<uuid::Uuid>()
            .map(AccountId::from)
            .map_err(|_| corrupt(&id, "account id"))?,
        created_at: time_of(&id, row.created_at)?,
        expires_at: time_of(&id, row.expires_at)?,
        token_hash: row.token_hash,
        kind: row.kind,
        new_email: row.new_email,
    })
}
