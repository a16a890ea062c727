use async_trait::async_trait;
use oidc_core::{Environment, KeyStoreError, SigningKeyStore, StoredSigningKey};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, SqlErr, sea_query::Expr,
};
use time::OffsetDateTime;

use crate::entities::signing_key::{self, Column, Entity};

/// [`SigningKeyStore`] on the relational database.
#[derive(Debug, Clone)]
pub struct SeaSigningKeyStore {
    conn: DatabaseConnection,
}

impl SeaSigningKeyStore {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> KeyStoreError {
    KeyStoreError::Unavailable(crate::boxed(e))
}

fn map_db_err(e: DbErr) -> KeyStoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => KeyStoreError::Conflict,
        _ => unavailable(e),
    }
}

fn to_unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_unix(seconds: i64) -> Result<OffsetDateTime, KeyStoreError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(unavailable)
}

#[derive(Debug, thiserror::Error)]
#[error("stored signing key {kid} is unreadable: {reason}")]
struct CorruptRow {
    kid: String,
    reason: String,
}

fn to_domain(row: signing_key::Model) -> Result<StoredSigningKey, KeyStoreError> {
    let corrupt = |reason: String| unavailable(CorruptRow { kid: row.kid.clone(), reason });
    Ok(StoredSigningKey {
        environment: row.environment.parse().map_err(|e: oidc_core::ParseEnvironmentError| corrupt(e.to_string()))?,
        algorithm: row.algorithm.parse().map_err(|e: oidc_core::KeyError| corrupt(e.to_string()))?,
        public_jwk: serde_json::from_str(&row.public_jwk).map_err(|e| corrupt(e.to_string()))?,
        generation: row.generation,
        created_at: from_unix(row.created_at)?,
        activates_at: from_unix(row.activates_at)?,
        expires_at: row.expires_at.map(from_unix).transpose()?,
        sealed_private_key: row.sealed_private_key,
        kid: row.kid,
    })
}

fn to_row(key: &StoredSigningKey) -> Result<signing_key::ActiveModel, KeyStoreError> {
    Ok(signing_key::ActiveModel {
        kid: Set(key.kid.clone()),
        environment: Set(key.environment.as_str().to_owned()),
        algorithm: Set(key.algorithm.as_str().to_owned()),
        generation: Set(key.generation),
        public_jwk: Set(serde_json::to_string(&key.public_jwk).map_err(unavailable)?),
        sealed_private_key: Set(key.sealed_private_key.clone()),
        created_at: Set(to_unix(key.created_at)),
        activates_at: Set(to_unix(key.activates_at)),
        expires_at: Set(key.expires_at.map(to_unix)),
    })
}

#[async_trait]
impl SigningKeyStore for SeaSigningKeyStore {
    async fn list(&self, environment: Environment) -> Result<Vec<StoredSigningKey>, KeyStoreError> {
        Entity::find()
            .filter(Column::Environment.eq(environment.as_str()))
            .all(&self.conn)
            .await
            .map_err(map_db_err)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn rotate(&self, new: &[StoredSigningKey], retire: &[(String, OffsetDateTime)]) -> Result<(), KeyStoreError> {
        let rows = new.iter().map(to_row).collect::<Result<Vec<_>, _>>()?;
        let txn = crate::transaction::begin(&self.conn).await.map_err(map_db_err)?;
        for (kid, expires_at) in retire {
            Entity::update_many()
                .col_expr(Column::ExpiresAt, Expr::value(to_unix(*expires_at)))
                .filter(Column::Kid.eq(kid.as_str()))
                .exec(&txn)
                .await
                .map_err(map_db_err)?;
        }
        if !rows.is_empty() {
            Entity::insert_many(rows).exec(&txn).await.map_err(map_db_err)?;
        }
        // Dropping an uncommitted transaction rolls it back, so an error above changes nothing.
        txn.commit().await.map_err(map_db_err)
    }

    async fn reseal(&self, kid: &str, sealed_private_key: &[u8]) -> Result<(), KeyStoreError> {
        Entity::update_many()
            .col_expr(Column::SealedPrivateKey, Expr::value(sealed_private_key.to_vec()))
            .filter(Column::Kid.eq(kid))
            .exec(&self.conn)
            .await
            .map_err(map_db_err)?;
        Ok(())
    }
}
