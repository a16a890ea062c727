use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, sea_query::OnConflict};

use crate::{
    DatabaseError,
    entities::sealed_secret::{ActiveModel, Column, Entity},
};

/// Secrets of the deployment sealed under the key-encryption key, by name (table
/// `sealed_secrets`). The server seals and opens them; this only keeps the bytes.
#[derive(Debug, Clone)]
pub struct SeaSealedSecrets {
    conn: DatabaseConnection,
}

impl SeaSealedSecrets {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// The sealed bytes of `name`, if stored.
    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, DatabaseError> {
        Ok(Entity::find_by_id(name.to_owned()).one(&self.conn).await?.map(|row| row.sealed))
    }

    /// Stores `sealed` as `name` unless a value is stored already (the first of several nodes
    /// starting at once wins; the others read its value).
    pub async fn insert_if_absent(&self, name: &str, sealed: Vec<u8>, now: i64) -> Result<(), DatabaseError> {
        let row = ActiveModel { name: Set(name.to_owned()), sealed: Set(sealed), updated_at: Set(now) };
        let inserted = Entity::insert(row).on_conflict(OnConflict::column(Column::Name).do_nothing().to_owned());
        match inserted.exec(&self.conn).await {
            Ok(_) | Err(sea_orm::DbErr::RecordNotInserted) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the sealed bytes of `name` (a KEK rotation re-sealing it).
    pub async fn replace(&self, name: &str, sealed: Vec<u8>, now: i64) -> Result<(), DatabaseError> {
        let row = ActiveModel { name: Set(name.to_owned()), sealed: Set(sealed), updated_at: Set(now) };
        Entity::update(row).exec(&self.conn).await?;
        Ok(())
    }
}
