use account_service::{
    Membership, Organisation, OrganisationId, OrganisationLink, OrganisationStatus, OrganisationStore, Role, StoreError,
};
use async_trait::async_trait;
use oidc_core::{AccountId, Environment};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use time::OffsetDateTime;

use crate::entities::{organisation, organisation_link, organisation_member};

/// [`OrganisationStore`] on the relational database.
#[derive(Debug, Clone)]
pub struct SeaOrganisationStore {
    conn: DatabaseConnection,
}

impl SeaOrganisationStore {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(crate::boxed(e))
}

fn map_db_err(e: DbErr) -> StoreError {
    match e.sql_err() {
        // A member whose account or organisation is gone meanwhile.
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => StoreError::NotFound,
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict(account_service::UniqueField::Username),
        _ => unavailable(e),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stored organisation {id} is unreadable: {reason}")]
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

fn status_text(status: OrganisationStatus) -> &'static str {
    match status {
        OrganisationStatus::Active => "active",
        OrganisationStatus::Suspended => "suspended",
    }
}

fn row(o: &Organisation) -> Result<organisation::ActiveModel, StoreError> {
    Ok(organisation::ActiveModel {
        id: Set(o.id.to_string()),
        environment: Set(o.environment.as_str().to_owned()),
        data: Set(serde_json::to_string(&o.data).map_err(unavailable)?),
        verifications: Set(serde_json::to_string(&o.verifications).map_err(unavailable)?),
        email_verified_at: Set(o.email_verified_at.map(OffsetDateTime::unix_timestamp)),
        status: Set(status_text(o.status).to_owned()),
        created_at: Set(o.created_at.unix_timestamp()),
        updated_at: Set(o.updated_at.unix_timestamp()),
    })
}

fn organisation_of(row: organisation::Model) -> Result<Organisation, StoreError> {
    let id = row.id.as_str();
    Ok(Organisation {
        id: row.id.parse().map_err(|e| corrupt(id, e))?,
        environment: row.environment.parse().map_err(|e| corrupt(id, e))?,
        data: serde_json::from_str(&row.data).map_err(|e| corrupt(id, e))?,
        verifications: serde_json::from_str(&row.verifications).map_err(|e| corrupt(id, e))?,
        email_verified_at: row.email_verified_at.map(|t| time_of(id, t)).transpose()?,
        status: match row.status.as_str() {
            "active" => OrganisationStatus::Active,
            "suspended" => OrganisationStatus::Suspended,
            other => return Err(corrupt(id, format!("status {other}"))),
        },
        created_at: time_of(id, row.created_at)?,
        updated_at: time_of(id, row.updated_at)?,
    })
}

fn membership_of(row: organisation_member::Model) -> Result<Membership, StoreError> {
    let id = row.organisation_id.as_str();
    Ok(Membership {
        organisation_id: row.organisation_id.parse().map_err(|e| corrupt(id, e))?,
        account_id: row.account_id.parse::<uuid::Uuid>().map(AccountId::from).map_err(|e| corrupt(id, e))?,
        role: Role::parse(&row.role).ok_or_else(|| corrupt(id, "role"))?,
        since: time_of(id, row.since)?,
    })
}

fn link_of(row: organisation_link::Model) -> Result<OrganisationLink, StoreError> {
    let id = row.token_hash.get(..8).unwrap_or_default().to_owned();
    Ok(OrganisationLink {
        environment: row.environment.parse().map_err(|e| corrupt(&id, e))?,
        organisation_id: row.organisation_id.parse().map_err(|e| corrupt(&id, e))?,
        role: row.role.as_deref().map(|r| Role::parse(r).ok_or_else(|| corrupt(&id, "role"))).transpose()?,
        created_at: time_of(&id, row.created_at)?,
        expires_at: time_of(&id, row.expires_at)?,
        token_hash: row.token_hash,
        email: row.email,
    })
}

/// Locks the organisation's row for the rest of the transaction (PostgreSQL: `FOR UPDATE`;
/// SQLite serialises writers anyway), so that two concurrent changes of roles cannot both see
/// another administrator and leave none.
async fn lock(txn: &DatabaseTransaction, id: OrganisationId) -> Result<(), StoreError> {
    let mut select = organisation::Entity::find_by_id(id.to_string());
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        select = select.lock_exclusive();
    }
    select.one(txn).await.map_err(map_db_err)?.ok_or(StoreError::NotFound)?;
    Ok(())
}

async fn administrators(txn: &DatabaseTransaction, id: OrganisationId) -> Result<Vec<String>, StoreError> {
    Ok(organisation_member::Entity::find()
        .filter(organisation_member::Column::OrganisationId.eq(id.to_string()))
        .filter(organisation_member::Column::Role.eq(Role::Administrator.as_str()))
        .all(txn)
        .await
        .map_err(map_db_err)?
        .into_iter()
        .map(|m| m.account_id)
        .collect())
}

/// Replaces the organisation's row (matched by environment and id).
async fn replace_organisation(db: &impl ConnectionTrait, o: &Organisation) -> Result<(), StoreError> {
    let updated = organisation::Entity::update_many()
        .set(row(o)?)
        .filter(organisation::Column::Id.eq(o.id.to_string()))
        .filter(organisation::Column::Environment.eq(o.environment.as_str()))
        .exec(db)
        .await
        .map_err(map_db_err)?;
    if updated.rows_affected == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Uses up the link under `token_hash` inside `txn`: whoever deletes the row took it, a
/// concurrent taker deletes nothing; a rollback puts it back.
async fn take_link(txn: &DatabaseTransaction, token_hash: &str) -> Result<bool, StoreError> {
    let deleted = organisation_link::Entity::delete_by_id(token_hash.to_owned()).exec(txn).await.map_err(map_db_err)?;
    Ok(deleted.rows_affected == 1)
}

fn member_row(m: &Membership) -> organisation_member::ActiveModel {
    organisation_member::ActiveModel {
        organisation_id: Set(m.organisation_id.to_string()),
        account_id: Set(m.account_id.to_string()),
        role: Set(m.role.as_str().to_owned()),
        since: Set(m.since.unix_timestamp()),
    }
}

#[async_trait]
impl OrganisationStore for SeaOrganisationStore {
    async fn insert(&self, organisation: &Organisation, admin: &Membership) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        organisation::Entity::insert(row(organisation)?).exec(&txn).await.map_err(map_db_err)?;
        organisation_member::Entity::insert(member_row(admin)).exec(&txn).await.map_err(map_db_err)?;
        txn.commit().await.map_err(unavailable)
    }

    async fn get(&self, environment: Environment, id: OrganisationId) -> Result<Organisation, StoreError> {
        organisation::Entity::find_by_id(id.to_string())
            .filter(organisation::Column::Environment.eq(environment.as_str()))
            .one(&self.conn)
            .await
            .map_err(unavailable)?
            .map(organisation_of)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn update(&self, o: &Organisation) -> Result<(), StoreError> {
        replace_organisation(&self.conn, o).await
    }

    async fn delete(&self, environment: Environment, id: OrganisationId) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        organisation_link::Entity::delete_many()
            .filter(organisation_link::Column::OrganisationId.eq(id.to_string()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        organisation_member::Entity::delete_many()
            .filter(organisation_member::Column::OrganisationId.eq(id.to_string()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        let deleted = organisation::Entity::delete_many()
            .filter(organisation::Column::Id.eq(id.to_string()))
            .filter(organisation::Column::Environment.eq(environment.as_str()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        txn.commit().await.map_err(unavailable)
    }

    async fn list(&self, environment: Environment, limit: u32, offset: u32) -> Result<Vec<Organisation>, StoreError> {
        organisation::Entity::find()
            .filter(organisation::Column::Environment.eq(environment.as_str()))
            .order_by_desc(organisation::Column::CreatedAt)
            .order_by_asc(organisation::Column::Id)
            .limit(u64::from(limit))
            .offset(u64::from(offset))
            .all(&self.conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(organisation_of)
            .collect()
    }

    async fn of_account(
        &self,
        environment: Environment,
        account: AccountId,
    ) -> Result<Vec<(Organisation, Role)>, StoreError> {
        let memberships = organisation_member::Entity::find()
            .filter(organisation_member::Column::AccountId.eq(account.to_string()))
            .all(&self.conn)
            .await
            .map_err(unavailable)?;
        let mut found = Vec::with_capacity(memberships.len());
        for membership in memberships {
            let membership = membership_of(membership)?;
            match self.get(environment, membership.organisation_id).await {
                Ok(organisation) => found.push((organisation, membership.role)),
                // Another environment's, or deleted meanwhile.
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        found.sort_by(|a, b| a.0.data.name.cmp(&b.0.data.name));
        Ok(found)
    }

    async fn members(&self, environment: Environment, id: OrganisationId) -> Result<Vec<Membership>, StoreError> {
        self.get(environment, id).await?;
        let mut members = organisation_member::Entity::find()
            .filter(organisation_member::Column::OrganisationId.eq(id.to_string()))
            .order_by_asc(organisation_member::Column::Since)
            .all(&self.conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(membership_of)
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_by_key(|m| m.role != Role::Administrator);
        Ok(members)
    }

    async fn put_member(&self, membership: &Membership) -> Result<bool, StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        lock(&txn, membership.organisation_id).await?;
        let account = membership.account_id.to_string();
        let admins = administrators(&txn, membership.organisation_id).await?;
        if membership.role != Role::Administrator && admins.iter().all(|a| *a == account) && !admins.is_empty() {
            return Ok(false);
        }
        let existing = organisation_member::Entity::find_by_id((membership.organisation_id.to_string(), account))
            .one(&txn)
            .await
            .map_err(map_db_err)?;
        match existing {
            Some(_) => {
                organisation_member::Entity::update(organisation_member::ActiveModel {
                    role: Set(membership.role.as_str().to_owned()),
                    ..member_row(membership)
                })
                .exec(&txn)
                .await
                .map_err(map_db_err)?;
            }
            None => {
                organisation_member::Entity::insert(member_row(membership)).exec(&txn).await.map_err(map_db_err)?;
            }
        }
        txn.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn remove_member(&self, id: OrganisationId, account: AccountId) -> Result<bool, StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        lock(&txn, id).await?;
        let admins = administrators(&txn, id).await?;
        let account = account.to_string();
        if admins.len() == 1 && admins[0] == account {
            return Ok(false);
        }
        let deleted = organisation_member::Entity::delete_by_id((id.to_string(), account))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound);
        }
        txn.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn insert_link(&self, link: &OrganisationLink) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        organisation_link::Entity::delete_many()
            .filter(organisation_link::Column::OrganisationId.eq(link.organisation_id.to_string()))
            .filter(organisation_link::Column::ExpiresAt.lt(link.created_at.unix_timestamp()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        organisation_link::Entity::insert(organisation_link::ActiveModel {
            token_hash: Set(link.token_hash.clone()),
            environment: Set(link.environment.as_str().to_owned()),
            organisation_id: Set(link.organisation_id.to_string()),
            email: Set(link.email.clone()),
            role: Set(link.role.map(|r| r.as_str().to_owned())),
            created_at: Set(link.created_at.unix_timestamp()),
            expires_at: Set(link.expires_at.unix_timestamp()),
        })
        .exec(&txn)
        .await
        .map_err(map_db_err)?;
        txn.commit().await.map_err(unavailable)
    }

    async fn find_link(&self, token_hash: &str) -> Result<Option<OrganisationLink>, StoreError> {
        let found =
            organisation_link::Entity::find_by_id(token_hash.to_owned()).one(&self.conn).await.map_err(map_db_err)?;
        found.map(link_of).transpose()
    }

    async fn update_taking_link(&self, o: &Organisation, link_hash: &str) -> Result<bool, StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        if !take_link(&txn, link_hash).await? {
            return Ok(false);
        }
        replace_organisation(&txn, o).await?;
        txn.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn add_member_taking_link(&self, membership: &Membership, link_hash: &str) -> Result<bool, StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(unavailable)?;
        if !take_link(&txn, link_hash).await? {
            return Ok(false);
        }
        organisation_member::Entity::insert(member_row(membership)).exec(&txn).await.map_err(map_db_err)?;
        txn.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn invitations(&self, id: OrganisationId) -> Result<Vec<OrganisationLink>, StoreError> {
        organisation_link::Entity::find()
            .filter(organisation_link::Column::OrganisationId.eq(id.to_string()))
            .order_by_asc(organisation_link::Column::CreatedAt)
            .all(&self.conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(link_of)
            .collect()
    }
}
