use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use oidc_core::{AccountId, ClientId, RefreshRecord, RefreshStoreError, RefreshTokenStore, Rotation, RotationRequest};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, Statement, sea_query::Expr,
};

use crate::{
    batch::{Batcher, Inserted, insert_all},
    entities::refresh_token,
    held_connection::{HeldConnection, Lanes},
    statement_cache::StatementCache,
};

/// [`RefreshTokenStore`] on the relational database.
#[derive(Debug, Clone)]
pub struct SeaRefreshTokenStore {
    conn: DatabaseConnection,
    /// New tokens (every code redemption that asks for one), batched across concurrent requests
    /// (see `crate::batch`).
    inserts: Arc<Batcher<refresh_token::ActiveModel, Inserted, HeldConnection>>,
    /// Rotations of live tokens on SQLite, batched the same way.
    claims: Arc<Batcher<Claim, Option<RefreshRecord>, HeldConnection>>,
}

/// A rotation's fast path on SQLite: claim a live token of the presenting client and store its
/// successor. Owned, so that it can wait in a batch.
#[derive(Debug, Clone)]
struct Claim {
    old_hash: String,
    new_hash: String,
    client_id: String,
    environment: &'static str,
    now: i64,
    expires_at: i64,
}

/// SQLite: the claims of a batch in one transaction — one `UPDATE … FROM (VALUES …) RETURNING`
/// claims every live token of its presenting client, one multi-row `INSERT` stores their
/// successors, one commit (one write of the log's pages for the whole batch instead of one per
/// rotation). Each claim is answered with its successor, or `None` when it was not claimed (not
/// live, not the client's, presented twice in the batch and claimed by the other) or the batch
/// failed and was rolled back: the caller then judges its token alone, as without batching.
async fn claim_all_sqlite(conn: HeldConnection, claims: Vec<Claim>) -> Vec<Option<RefreshRecord>> {
    // A transaction of its own: it takes its connection from the pool.
    let mut successors = match claim_and_replace(conn.pool(), &claims).await {
        Ok(successors) => successors,
        Err(e) => {
            tracing::debug!(error = %e, claims = claims.len(), "a batch of rotations failed; each is judged alone");
            return vec![None; claims.len()];
        }
    };
    // New hashes are 256 random bits: one claim per successor.
    claims.iter().map(|claim| successors.remove(&claim.new_hash)).collect()
}

/// The successors of the claimed tokens by their new hash, committed.
async fn claim_and_replace(
    conn: &DatabaseConnection,
    claims: &[Claim],
) -> Result<hashbrown::HashMap<String, RefreshRecord>, RefreshStoreError> {
    let values = vec!["(?, ?, ?, ?, ?)"; claims.len()].join(", ");
    // When a token is presented twice in one batch, the update takes one of the two rows of
    // `claim`: `replaced_by` in the answer names the claim that won.
    let sql = format!(
        r#"WITH claim(old_hash, new_hash, by_client, in_environment, at) AS (VALUES {values})
        UPDATE refresh_tokens SET used_at = claim.at, replaced_by = claim.new_hash
        FROM claim
        WHERE refresh_tokens.token_hash = claim.old_hash AND refresh_tokens.used_at IS NULL
            AND refresh_tokens.expires_at > claim.at AND refresh_tokens.client_id = claim.by_client
            AND refresh_tokens.environment = claim.in_environment
        RETURNING token_hash, family_id, environment, client_id, account_id, "grant", created_at, expires_at,
            used_at, replaced_by"#
    );
    let parameters = claims.iter().flat_map(|claim| {
        [
            claim.old_hash.clone().into(),
            claim.new_hash.clone().into(),
            claim.client_id.clone().into(),
            claim.environment.into(),
            claim.now.into(),
        ]
    });
    let by_new_hash: hashbrown::HashMap<&str, &Claim> =
        claims.iter().map(|claim| (claim.new_hash.as_str(), claim)).collect();
    let txn = crate::transaction::begin(conn).await.map_err(failed)?;
    let claimed =
        refresh_token::Model::find_by_statement(Statement::from_sql_and_values(DbBackend::Sqlite, sql, parameters))
            .all(&txn)
            .await
            .map_err(failed)?;
    let mut successors = hashbrown::HashMap::with_capacity(claimed.len());
    for old in claimed {
        let Some(claim) = old.replaced_by.as_deref().and_then(|new_hash| by_new_hash.get(new_hash)) else {
            return Err(failed(Corrupt(format!("a claim of {} answered for no claim of the batch", old.family_id))));
        };
        let next = successor(old, &claim.new_hash, claim.now, claim.expires_at)?;
        successors.insert(next.token_hash.clone(), next);
    }
    if !successors.is_empty() {
        let rows = successors.values().map(row).collect::<Result<Vec<_>, _>>()?;
        refresh_token::Entity::insert_many(rows).exec_without_returning(&txn).await.map_err(failed)?;
    }
    txn.commit().await.map_err(failed)?;
    Ok(successors)
}

impl SeaRefreshTokenStore {
    /// `wait` bounds how long a batched insert or rotation may take, queue included.
    pub(crate) fn new(conn: DatabaseConnection, lanes: &Lanes, wait: Duration) -> Self {
        let inserts = Arc::new(Batcher::on_held(lanes, wait, |conn, rows| {
            static TEXTS: StatementCache = StatementCache::new();
            insert_all(conn, rows, &TEXTS)
        }));
        let claims = Arc::new(Batcher::on_held(lanes, wait, claim_all_sqlite));
        Self { conn, inserts, claims }
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
        if backend == DbBackend::Sqlite {
            let claim = Claim {
                old_hash: old_hash.to_owned(),
                new_hash: new_hash.to_owned(),
                client_id: request.client_id.to_string(),
                environment: request.environment.as_str(),
                now,
                expires_at,
            };
            if let Some(next) = self.claims.call(claim).await.map_err(failed)? {
                return Ok(Rotation::Rotated(next));
            }
        }
        // Whatever is not a live token of the client (a replay, a retry within the grace, an
        // expired, unknown or foreign token), and a rotation whose batch failed: read and judge
        // in one transaction.
        let txn = crate::transaction::begin(&self.conn).await.map_err(failed)?;
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

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveValue::Set, EntityTrait as _};

    use super::*;
    use crate::{Database, entities::account, testing::TestDatabase};

    const ACCOUNT: &str = "0b7d3c5e-2f41-4a8e-9c7d-1e2f3a4b5c6d";

    fn stored(hash: &str, expires_at: i64) -> refresh_token::ActiveModel {
        refresh_token::ActiveModel {
            token_hash: Set(hash.to_owned()),
            family_id: Set(format!("family-of-{hash}")),
            environment: Set("production".to_owned()),
            client_id: Set("rp".to_owned()),
            account_id: Set(ACCOUNT.to_owned()),
            grant: Set(r#"{"scopes":["openid"]}"#.to_owned()),
            created_at: Set(0),
            expires_at: Set(expires_at),
            used_at: Set(None),
            replaced_by: Set(None),
        }
    }

    fn claim(old_hash: &str, new_hash: &str, client_id: &str) -> Claim {
        Claim {
            old_hash: old_hash.to_owned(),
            new_hash: new_hash.to_owned(),
            client_id: client_id.to_owned(),
            environment: "production",
            now: 100,
            expires_at: 900,
        }
    }

    /// The batch's statement itself, without the fallback to one transaction per token that
    /// would hide a broken one.
    #[tokio::test]
    async fn one_transaction_claims_the_live_tokens_of_their_clients_and_stores_each_successor() {
        let folder = tempfile::tempdir().unwrap();
        let db = Database::connect(&TestDatabase::sqlite(folder.path()).url).await.unwrap();
        db.migrate().await.unwrap();
        let account = account::ActiveModel {
            id: Set(ACCOUNT.to_owned()),
            environment: Set("production".to_owned()),
            username: Set("batch".to_owned()),
            username_key: Set("batch".to_owned()),
            email: Set("batch@example.de".to_owned()),
            email_key: Set("batch@example.de".to_owned()),
            status: Set("active".to_owned()),
            master_data: Set("{}".to_owned()),
            password_hash: Set(String::new()),
            trust_level: Set("normal".to_owned()),
            eid_key: Set(None),
            privacy_consent: Set("{}".to_owned()),
            session_epoch: Set(0),
            login_factors: Set("[]".to_owned()),
            created_at: Set(0),
            activated_at: Set(Some(0)),
            updated_at: Set(0),
            last_login_at: Set(None),
            inactivity_reminded_at: Set(None),
        };
        account::Entity::insert(account).exec_without_returning(db.conn()).await.unwrap();
        let rows = [stored("live-1", 1000), stored("live-2", 1000), stored("expired", 50), stored("theirs", 1000)];
        refresh_token::Entity::insert_many(rows).exec_without_returning(db.conn()).await.unwrap();

        let claims = [
            claim("live-1", "next-1", "rp"),
            claim("live-2", "next-2", "rp"),
            claim("live-2", "again-2", "rp"),
            claim("expired", "next-expired", "rp"),
            claim("theirs", "next-theirs", "other-rp"),
            claim("unknown", "next-unknown", "rp"),
        ];
        let successors = claim_and_replace(db.conn(), &claims).await.unwrap();
        let mut rotated: Vec<&str> = successors.keys().map(String::as_str).collect();
        rotated.sort_unstable();
        assert!(rotated == ["again-2", "next-1"] || rotated == ["next-1", "next-2"], "{rotated:?}");
        let next = &successors["next-1"];
        assert_eq!((next.family_id.as_str(), next.created_at, next.expires_at), ("family-of-live-1", 100, 900));

        let row = |hash: &'static str| {
            let conn = db.conn().clone();
            async move { refresh_token::Entity::find_by_id(hash).one(&conn).await.unwrap() }
        };
        let claimed = row("live-1").await.unwrap();
        assert_eq!((claimed.used_at, claimed.replaced_by.as_deref()), (Some(100), Some("next-1")));
        assert_eq!(row("next-1").await.unwrap().family_id, "family-of-live-1", "the successor is committed");
        let twice = row("live-2").await.unwrap().replaced_by.unwrap();
        assert!(
            successors.contains_key(&twice)
                && row(if twice == "next-2" { "again-2" } else { "next-2" }).await.is_none()
        );
        for untouched in ["expired", "theirs"] {
            assert_eq!(row(untouched).await.unwrap().used_at, None, "{untouched}");
        }
        assert!(row("next-expired").await.is_none() && row("next-theirs").await.is_none());
    }
}
