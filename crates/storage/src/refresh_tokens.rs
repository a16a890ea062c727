use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use oidc_core::{AccountId, ClientId, RefreshRecord, RefreshStoreError, RefreshTokenStore, Rotation, RotationRequest};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, Statement, sea_query::Expr,
};

use crate::{
    batch::{Batcher, Inserted, MAX_BATCH, insert_all, on},
    entities::refresh_token,
};

/// [`RefreshTokenStore`] on the relational database.
#[derive(Debug, Clone)]
pub struct SeaRefreshTokenStore {
    conn: DatabaseConnection,
    /// New tokens (every code redemption that asks for one), batched across concurrent requests
    /// (see `crate::batch`).
    inserts: Arc<Batcher<refresh_token::ActiveModel, Inserted>>,
}

/// SQLite: claims a live token of the presenting client and reads it in one statement
/// (`UPDATE … RETURNING`), so that a rotation is two statements in its transaction instead of
/// three (read, claim, insert). `None` when the token is not live or not the client's; nothing
/// changed then.
async fn claim_live_sqlite(
    txn: &sea_orm::DatabaseTransaction,
    request: &RotationRequest<'_>,
) -> Result<Option<refresh_token::Model>, RefreshStoreError> {
    const CLAIM: &str = r#"
        UPDATE refresh_tokens SET used_at = ?1, replaced_by = ?2
        WHERE token_hash = ?3 AND used_at IS NULL AND expires_at > ?1 AND client_id = ?4 AND environment = ?5
        RETURNING token_hash, family_id, environment, client_id, account_id, "grant", created_at, expires_at,
            used_at, replaced_by"#;
    let statement = Statement::from_sql_and_values(
        DbBackend::Sqlite,
        CLAIM,
        [
            request.now.into(),
            request.new_hash.into(),
            request.old_hash.into(),
            request.client_id.to_string().into(),
            request.environment.as_str().into(),
        ],
    );
    refresh_token::Model::find_by_statement(statement).one(txn).await.map_err(failed)
}

impl SeaRefreshTokenStore {
    /// `wait` bounds how long a batched insert may take, queue included.
    pub(crate) fn new(conn: DatabaseConnection, wait: Duration) -> Self {
        let inserts = Arc::new(Batcher::new(MAX_BATCH, wait, on(&conn, insert_all)));
        Self { conn, inserts }
    }
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> RefreshStoreError {
    RefreshStoreError(crate::boxed(e))
}

#[derive(Debug, thiserror::Error)]
#[error("stored refresh token is unreadable: {0}")]
struct Corrupt(String);

fn row(record: &RefreshRecord) -> Result<refresh_token::ActiveModel, RefreshStoreError> {
    Ok(refresh_token::ActiveModel {
        token_hash: Set(record.token_hash.clone()),
        family_id: Set(record.family_id.clone()),
        environment: Set(record.environment.as_str().to_owned()),
        client_id: Set(record.client_id.to_string()),
        account_id: Set(record.account_id.to_string()),
        grant: Set(serde_json::to_string(&record.grant).map_err(failed)?),
        created_at: Set(record.created_at),
        expires_at: Set(record.expires_at),
        used_at: Set(None),
        replaced_by: Set(None),
    })
}

fn record(row: refresh_token::Model) -> Result<RefreshRecord, RefreshStoreError> {
    let corrupt = |what: &str| failed(Corrupt(format!("{what} of {}", row.family_id)));
    Ok(RefreshRecord {
        environment: row.environment.parse().map_err(|_| corrupt("environment"))?,
        client_id: ClientId::parse(&row.client_id).ok_or_else(|| corrupt("client id"))?,
        account_id: row.account_id.parse::<uuid::Uuid>().map(AccountId::from).map_err(|_| corrupt("account id"))?,
        grant: serde_json::from_str(&row.grant).map_err(|_| corrupt("grant"))?,
        token_hash: row.token_hash,
        family_id: row.family_id,
        created_at: row.created_at,
        expires_at: row.expires_at,
    })
}

/// The record that replaces `old`: same family and grant, a new hash and lifetime.
fn successor(
    old: refresh_token::Model,
    new_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<RefreshRecord, RefreshStoreError> {
    let mut next = record(old)?;
    next.token_hash = new_hash.to_owned();
    next.created_at = now;
    next.expires_at = expires_at;
    Ok(next)
}

impl SeaRefreshTokenStore {
    /// PostgreSQL: rotates a live token of the presenting client in one statement, so one
    /// round trip: claim the old row (only one caller can), insert its successor with the same
    /// family and grant. `None` when the token is not live or not the client's; the caller then
    /// judges it in a transaction.
    async fn rotate_live(
        &self,
        request: &RotationRequest<'_>,
    ) -> Result<Option<refresh_token::Model>, RefreshStoreError> {
        const ROTATE: &str = r#"
            WITH claimed AS (
                UPDATE refresh_tokens SET used_at = $1, replaced_by = $2
                WHERE token_hash = $3 AND used_at IS NULL AND expires_at > $1 AND client_id = $5 AND environment = $6
                RETURNING family_id, environment, client_id, account_id, "grant"
            )
            INSERT INTO refresh_tokens
                (token_hash, family_id, environment, client_id, account_id, "grant", created_at, expires_at)
            SELECT $2, family_id, environment, client_id, account_id, "grant", $1, $4 FROM claimed
            RETURNING token_hash, family_id, environment, client_id, account_id, "grant", created_at, expires_at,
                used_at, replaced_by"#;
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            ROTATE,
            [
                request.now.into(),
                request.new_hash.into(),
                request.old_hash.into(),
                request.expires_at.into(),
                request.client_id.to_string().into(),
                request.environment.as_str().into(),
            ],
        );
        refresh_token::Model::find_by_statement(statement).one(&self.conn).await.map_err(failed)
    }

    /// A used token comes again: a retry (not a replay) when it was used within the grace and
    /// its successor was never used. The unused successor is then deleted — atomically, so of
    /// concurrent retries one wins — and `old` points at `new_hash` instead.
    async fn retry_within_grace(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        old: &refresh_token::Model,
        new_hash: &str,
        now: i64,
        grace_seconds: i64,
    ) -> Result<bool, RefreshStoreError> {
        let (Some(used_at), Some(previous)) = (old.used_at, old.replaced_by.as_deref()) else { return Ok(false) };
        if grace_seconds <= 0 || now - used_at > grace_seconds || old.expires_at <= now {
            return Ok(false);
        }
        let dropped = refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::TokenHash.eq(previous))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(txn)
            .await
            .map_err(failed)?;
        if dropped.rows_affected == 0 {
            return Ok(false);
        }
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::ReplacedBy, Expr::value(new_hash))
            .filter(refresh_token::Column::TokenHash.eq(old.token_hash.clone()))
            .exec(txn)
            .await
            .map_err(failed)?;
        Ok(true)
    }
}

#[async_trait]
impl RefreshTokenStore for SeaRefreshTokenStore {
    async fn insert(&self, record: &RefreshRecord) -> Result<(), RefreshStoreError> {
        match self.inserts.call(row(record)?).await.map_err(failed)? {
            Inserted::Yes => Ok(()),
            Inserted::Failed(e) => Err(failed(e)),
            Inserted::BatchFailed(e) => Err(failed(e)),
        }
    }

    async fn find(&self, token_hash: &str, now: i64) -> Result<Option<RefreshRecord>, RefreshStoreError> {
        let found = refresh_token::Entity::find_by_id(token_hash.to_owned()).one(&self.conn).await.map_err(failed)?;
        found.filter(|r| r.used_at.is_none() && r.expires_at > now).map(record).transpose()
    }

    async fn rotate(&self, request: &RotationRequest<'_>) -> Result<Rotation, RefreshStoreError> {
        let RotationRequest { old_hash, new_hash, now, expires_at, grace_seconds, .. } = *request;
        let backend = self.conn.get_database_backend();
        if backend == DbBackend::Postgres
            && let Some(next) = self.rotate_live(request).await?
        {
            return Ok(Rotation::Rotated(record(next)?));
        }
        // SQLite, and on PostgreSQL whatever is not a live token of the client (a replay, a
        // retry within the grace, an expired, unknown or foreign token): read and judge in one
        // transaction.
        let txn = crate::transaction::begin(&self.conn).await.map_err(failed)?;
        if backend == DbBackend::Sqlite
            && let Some(old) = claim_live_sqlite(&txn, request).await?
        {
            let next = successor(old, new_hash, now, expires_at)?;
            refresh_token::Entity::insert(row(&next)?).exec(&txn).await.map_err(failed)?;
            txn.commit().await.map_err(failed)?;
            return Ok(Rotation::Rotated(next));
        }
        let Some(old) = refresh_token::Entity::find_by_id(old_hash.to_owned()).one(&txn).await.map_err(failed)? else {
            return Ok(Rotation::Invalid);
        };
        // Another client's token, used or not, is neither rotated nor judged a replay (which
        // would revoke that client's family).
        if old.client_id != request.client_id.as_str() || old.environment != request.environment.as_str() {
            return Ok(Rotation::Foreign);
        }
        // Only one caller can flip `used_at`; whoever finds it set is a replay (or a retry).
        let claimed = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .col_expr(refresh_token::Column::ReplacedBy, Expr::value(new_hash))
            .filter(refresh_token::Column::TokenHash.eq(old_hash))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&txn)
            .await
            .map_err(failed)?;
        if claimed.rows_affected == 0 {
            if self.retry_within_grace(&txn, &old, new_hash, now, grace_seconds).await? {
                let next = successor(old, new_hash, now, expires_at)?;
                refresh_token::Entity::insert(row(&next)?).exec(&txn).await.map_err(failed)?;
                txn.commit().await.map_err(failed)?;
                return Ok(Rotation::Rotated(next));
            }
            refresh_token::Entity::delete_many()
                .filter(refresh_token::Column::FamilyId.eq(old.family_id.clone()))
                .exec(&txn)
                .await
                .map_err(failed)?;
            txn.commit().await.map_err(failed)?;
            return Ok(Rotation::Reused(old.family_id));
        }
        if old.expires_at <= now {
            txn.commit().await.map_err(failed)?;
            return Ok(Rotation::Invalid);
        }
        let next = successor(old, new_hash, now, expires_at)?;
        refresh_token::Entity::insert(row(&next)?).exec(&txn).await.map_err(failed)?;
        txn.commit().await.map_err(failed)?;
        Ok(Rotation::Rotated(next))
    }

    async fn undo_rotation(&self, old_hash: &str, new_hash: &str) -> Result<bool, RefreshStoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(failed)?;
        let dropped = refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::TokenHash.eq(new_hash))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&txn)
            .await
            .map_err(failed)?;
        if dropped.rows_affected == 0 {
            return Ok(false);
        }
        let restored = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(Option::<i64>::None))
            .col_expr(refresh_token::Column::ReplacedBy, Expr::value(Option::<String>::None))
            .filter(refresh_token::Column::TokenHash.eq(old_hash))
            .filter(refresh_token::Column::ReplacedBy.eq(new_hash))
            .exec(&txn)
            .await
            .map_err(failed)?;
        if restored.rows_affected == 0 {
            // `old_hash` does not lead to `new_hash` (any more): leave both as they were.
            return Ok(false);
        }
        txn.commit().await.map_err(failed)?;
        Ok(true)
    }

    async fn find_any(&self, token_hash: &str) -> Result<Option<RefreshRecord>, RefreshStoreError> {
        let found = refresh_token::Entity::find_by_id(token_hash.to_owned()).one(&self.conn).await.map_err(failed)?;
        found.map(record).transpose()
    }

    async fn revoke_family(&self, family_id: &str) -> Result<u64, RefreshStoreError> {
        let deleted = refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::FamilyId.eq(family_id))
            .exec(&self.conn)
            .await
            .map_err(failed)?;
        Ok(deleted.rows_affected)
    }

    async fn revoke_for_client(&self, account_id: AccountId, client_id: &ClientId) -> Result<u64, RefreshStoreError> {
        let deleted = refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::AccountId.eq(account_id.to_string()))
            .filter(refresh_token::Column::ClientId.eq(client_id.to_string()))
            .exec(&self.conn)
            .await
            .map_err(failed)?;
        Ok(deleted.rows_affected)
    }
}
