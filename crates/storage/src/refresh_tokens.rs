use async_trait::async_trait;
use oidc_core::{AccountId, ClientId, RefreshRecord, RefreshStoreError, RefreshTokenStore, Rotation};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};

use crate::entities::refresh_token;

/// [`RefreshTokenStore`] on the relational database.
#[derive(Debug, Clone)]
pub struct SeaRefreshTokenStore {
    conn: DatabaseConnection,
}

impl SeaRefreshTokenStore {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> RefreshStoreError {
    RefreshStoreError(Box::new(e))
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

#[async_trait]
impl RefreshTokenStore for SeaRefreshTokenStore {
    async fn insert(&self, record: &RefreshRecord) -> Result<(), RefreshStoreError> {
        refresh_token::Entity::insert(row(record)?).exec(&self.conn).await.map_err(failed)?;
        Ok(())
    }

    async fn find(&self, token_hash: &str, now: i64) -> Result<Option<RefreshRecord>, RefreshStoreError> {
        let found = refresh_token::Entity::find_by_id(token_hash.to_owned()).one(&self.conn).await.map_err(failed)?;
        found.filter(|r| r.used_at.is_none() && r.expires_at > now).map(record).transpose()
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Rotation, RefreshStoreError> {
        let txn = self.conn.begin().await.map_err(failed)?;
        let Some(old) = refresh_token::Entity::find_by_id(old_hash.to_owned()).one(&txn).await.map_err(failed)? else {
            return Ok(Rotation::Invalid);
        };
        // Only one caller can flip `used_at`; whoever finds it set is a replay.
        let claimed = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::TokenHash.eq(old_hash))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&txn)
            .await
            .map_err(failed)?;
        if claimed.rows_affected == 0 {
            refresh_token::Entity::delete_many()
                .filter(refresh_token::Column::FamilyId.eq(old.family_id.clone()))
                .exec(&txn)
                .await
                .map_err(failed)?;
            txn.commit().await.map_err(failed)?;
            return Ok(Rotation::Reused);
        }
        if old.expires_at <= now {
            txn.commit().await.map_err(failed)?;
            return Ok(Rotation::Invalid);
        }
        let mut next = record(old)?;
        next.token_hash = new_hash.to_owned();
        next.created_at = now;
        next.expires_at = expires_at;
        refresh_token::Entity::insert(row(&next)?).exec(&txn).await.map_err(failed)?;
        txn.commit().await.map_err(failed)?;
        Ok(Rotation::Rotated(next))
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
