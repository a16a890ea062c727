use async_trait::async_trait;
use oidc_core::{ClientId, Environment, TenantId};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
    sea_query::{Expr, Func},
};
use tenant_registry::{
    AuditEntry, AuditEvent, AuditFilter, Client, ClientFilter, Page, PageRequest, RegistryStore, StoreError, Tenant,
    TenantFilter,
};
use time::OffsetDateTime;

use crate::entities::{audit_event, client, tenant};

/// [`RegistryStore`] on the relational database.
#[derive(Debug, Clone)]
pub struct SeaRegistryStore {
    conn: DatabaseConnection,
}

impl SeaRegistryStore {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(crate::boxed(e))
}

fn map_db_err(e: DbErr) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(what)) => StoreError::Conflict(what),
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => StoreError::HasClients,
        _ => unavailable(e),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stored {what} is unreadable: {reason}")]
struct CorruptRow {
    what: String,
    reason: String,
}

fn corrupt(what: &str, reason: impl ToString) -> StoreError {
    unavailable(CorruptRow { what: what.to_owned(), reason: reason.to_string() })
}

fn time_of(seconds: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(unavailable)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(unavailable)
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// Enums are stored as their serde names, so the database reads like the API.
fn name_of<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value).map_err(unavailable)? {
        serde_json::Value::String(name) => Ok(name),
        other => Err(corrupt("enum", format!("not a name: {other}"))),
    }
}

fn parse_name<T: serde::de::DeserializeOwned>(what: &str, name: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|e| corrupt(what, e))
}

fn parse_uuid(what: &str, text: &str) -> Result<TenantId, StoreError> {
    text.parse::<uuid::Uuid>().map(TenantId::from).map_err(|e| corrupt(what, e))
}

fn tenant_row(t: &Tenant) -> Result<tenant::ActiveModel, StoreError> {
    Ok(tenant::ActiveModel {
        id: Set(t.id.to_string()),
        slug: Set(t.slug.clone()),
        name: Set(t.name.clone()),
        contact_email: Set(t.contact_email.clone()),
        status: Set(t.status.as_str().to_owned()),
        branding: Set(json(&t.branding)?),
        allowed_claims: Set(json(&t.allowed_claims)?),
        min_trust_level: Set(t.min_trust_level.as_str().to_owned()),
        sector: Set(t.sector.clone()),
        version: Set(t.version),
        created_at: Set(t.created_at.unix_timestamp()),
        updated_at: Set(t.updated_at.unix_timestamp()),
    })
}

fn tenant_of(row: tenant::Model) -> Result<Tenant, StoreError> {
    let what = format!("tenant {}", row.id);
    Ok(Tenant {
        id: parse_uuid(&what, &row.id)?,
        status: parse_name(&what, &row.status)?,
        branding: parse_json(&what, &row.branding)?,
        allowed_claims: parse_json(&what, &row.allowed_claims)?,
        min_trust_level: row.min_trust_level.parse().map_err(|e| corrupt(&what, e))?,
        created_at: time_of(row.created_at)?,
        updated_at: time_of(row.updated_at)?,
        slug: row.slug,
        name: row.name,
        contact_email: row.contact_email,
        sector: row.sector,
        version: row.version,
    })
}

fn client_row(c: &Client) -> Result<client::ActiveModel, StoreError> {
    Ok(client::ActiveModel {
        client_id: Set(c.client_id.to_string()),
        tenant_id: Set(c.tenant_id.to_string()),
        environment: Set(c.environment.as_str().to_owned()),
        settings: Set(json(&c.settings)?),
        first_party: Set(c.first_party),
        admin_role: Set(c.admin_role.as_ref().map(name_of).transpose()?),
        secrets: Set(json(&c.secrets)?),
        registration_token: Set(c.registration_token.clone()),
        saml_entity_id: Set(c.settings.saml.as_ref().map(|s| s.entity_id.clone())),
        version: Set(c.version),
        created_at: Set(c.created_at.unix_timestamp()),
        updated_at: Set(c.updated_at.unix_timestamp()),
    })
}

fn client_of(row: client::Model) -> Result<Client, StoreError> {
    let what = format!("client {}", row.client_id);
    Ok(Client {
        client_id: ClientId::parse(&row.client_id).ok_or_else(|| corrupt(&what, "client id"))?,
        tenant_id: parse_uuid(&what, &row.tenant_id)?,
        environment: row.environment.parse().map_err(|e| corrupt(&what, e))?,
        settings: parse_json(&what, &row.settings)?,
        first_party: row.first_party,
        admin_role: row.admin_role.as_deref().map(|r| parse_name(&what, r)).transpose()?,
        secrets: parse_json(&what, &row.secrets)?,
        registration_token: row.registration_token,
        version: row.version,
        created_at: time_of(row.created_at)?,
        updated_at: time_of(row.updated_at)?,
    })
}

fn audit_row(event: &AuditEvent) -> Result<audit_event::ActiveModel, StoreError> {
    Ok(audit_event::ActiveModel {
        id: NotSet,
        at: Set(event.at.unix_timestamp()),
        actor: Set(event.actor.clone()),
        action: Set(event.action.clone()),
        tenant_id: Set(event.tenant_id.map(|t| t.to_string())),
        target: Set(event.target.clone()),
        before: Set(event.before.as_ref().map(json).transpose()?),
        after: Set(event.after.as_ref().map(json).transpose()?),
    })
}

fn audit_of(row: audit_event::Model) -> Result<AuditEntry, StoreError> {
    let what = format!("audit event {}", row.id);
    Ok(AuditEntry {
        id: row.id,
        event: AuditEvent {
            at: time_of(row.at)?,
            actor: row.actor,
            action: row.action,
            tenant_id: row.tenant_id.as_deref().map(|t| parse_uuid(&what, t)).transpose()?,
            target: row.target,
            before: row.before.as_deref().map(|b| parse_json(&what, b)).transpose()?,
            after: row.after.as_deref().map(|a| parse_json(&what, a)).transpose()?,
        },
    })
}

async fn write_audit(txn: &impl ConnectionTrait, event: &AuditEvent) -> Result<(), StoreError> {
    audit_event::Entity::insert(audit_row(event)?).exec(txn).await.map_err(map_db_err)?;
    Ok(())
}

/// After an update or delete that matched no row: was the row missing, or at another version?
async fn missing_or_stale<E: EntityTrait>(
    txn: &impl ConnectionTrait,
    find: sea_orm::Select<E>,
    version: impl Fn(&E::Model) -> i64,
) -> StoreError {
    match find.one(txn).await {
        Ok(Some(row)) => StoreError::VersionMismatch { current: version(&row) },
        Ok(None) => StoreError::NotFound,
        Err(e) => map_db_err(e),
    }
}

fn limits(page: PageRequest) -> (u64, u64) {
    // The databases count rows in signed 64 bits; a larger offset finds nothing either way.
    (u64::from(page.limit.clamp(1, 500)), page.offset.min(i64::MAX as u64))
}

#[async_trait]
impl RegistryStore for SeaRegistryStore {
    async fn insert_tenant(&self, t: &Tenant, audit: &AuditEvent) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(map_db_err)?;
        tenant::Entity::insert(tenant_row(t)?).exec(&txn).await.map_err(map_db_err)?;
        write_audit(&txn, audit).await?;
        txn.commit().await.map_err(map_db_err)
    }

    async fn update_tenant(&self, t: &Tenant, expected_version: i64, audit: &AuditEvent) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(map_db_err)?;
        let updated = tenant::Entity::update_many()
            .set(tenant_row(t)?)
            .filter(tenant::Column::Id.eq(t.id.to_string()))
            .filter(tenant::Column::Version.eq(expected_version))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if updated.rows_affected == 0 {
            return Err(missing_or_stale(&txn, tenant::Entity::find_by_id(t.id.to_string()), |r| r.version).await);
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.map_err(map_db_err)
    }

    async fn delete_tenant(&self, id: TenantId, expected_version: i64, audit: &AuditEvent) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(map_db_err)?;
        let clients = client::Entity::find()
            .filter(client::Column::TenantId.eq(id.to_string()))
            .count(&txn)
            .await
            .map_err(map_db_err)?;
        if clients > 0 {
            return Err(StoreError::HasClients);
        }
        let deleted = tenant::Entity::delete_many()
            .filter(tenant::Column::Id.eq(id.to_string()))
            .filter(tenant::Column::Version.eq(expected_version))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if deleted.rows_affected == 0 {
            return Err(missing_or_stale(&txn, tenant::Entity::find_by_id(id.to_string()), |r| r.version).await);
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.map_err(map_db_err)
    }

    async fn find_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        tenant::Entity::find_by_id(id.to_string()).one(&self.conn).await.map_err(map_db_err)?.map(tenant_of).transpose()
    }

    async fn list_tenants(&self, filter: &TenantFilter, page: PageRequest) -> Result<Page<Tenant>, StoreError> {
        let mut query = tenant::Entity::find();
        if let Some(status) = filter.status {
            query = query.filter(tenant::Column::Status.eq(status.as_str()));
        }
        if let Some(only) = filter.only {
            query = query.filter(tenant::Column::Id.eq(only.to_string()));
        }
        if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
            // LIKE is case-sensitive on PostgreSQL and not on SQLite; lower both sides.
            let pattern = format!("%{}%", search.to_lowercase().replace(['%', '_'], ""));
            query = query.filter(
                Expr::expr(Func::lower(Expr::col(tenant::Column::Name)))
                    .like(pattern.clone())
                    .or(Expr::col(tenant::Column::Slug).like(pattern)),
            );
        }
        let total = query.clone().count(&self.conn).await.map_err(map_db_err)?;
        let (limit, offset) = limits(page);
        let rows = query
            .order_by_asc(tenant::Column::Slug)
            .limit(limit)
            .offset(offset)
            .all(&self.conn)
            .await
            .map_err(map_db_err)?;
        Ok(Page { items: rows.into_iter().map(tenant_of).collect::<Result<_, _>>()?, total })
    }

    async fn insert_client(&self, c: &Client, audit: &AuditEvent) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(map_db_err)?;
        client::Entity::insert(client_row(c)?).exec(&txn).await.map_err(|e| match map_db_err(e) {
            // The foreign key refused: the tenant vanished meanwhile.
            StoreError::HasClients => StoreError::NotFound,
            other => other,
        })?;
        write_audit(&txn, audit).await?;
        txn.commit().await.map_err(map_db_err)
    }

    async fn update_client(&self, c: &Client, expected_version: i64, audit: &AuditEvent) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(map_db_err)?;
        let updated = client::Entity::update_many()
            .set(client_row(c)?)
            .filter(client::Column::ClientId.eq(c.client_id.as_str()))
            .filter(client::Column::Version.eq(expected_version))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if updated.rows_affected == 0 {
            return Err(
                missing_or_stale(&txn, client::Entity::find_by_id(c.client_id.to_string()), |r| r.version).await
            );
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.map_err(map_db_err)
    }

    async fn delete_client(
        &self,
        client_id: &ClientId,
        expected_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let txn = crate::transaction::begin(&self.conn).await.map_err(map_db_err)?;
        let deleted = client::Entity::delete_many()
            .filter(client::Column::ClientId.eq(client_id.as_str()))
            .filter(client::Column::Version.eq(expected_version))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if deleted.rows_affected == 0 {
            return Err(missing_or_stale(&txn, client::Entity::find_by_id(client_id.to_string()), |r| r.version).await);
        }
        write_audit(&txn, audit).await?;
        txn.commit().await.map_err(map_db_err)
    }

    async fn find_saml_client(&self, environment: Environment, entity_id: &str) -> Result<Option<Client>, StoreError> {
        client::Entity::find()
            .filter(client::Column::Environment.eq(environment.as_str()))
            .filter(client::Column::SamlEntityId.eq(entity_id))
            .one(&self.conn)
            .await
            .map_err(map_db_err)?
            .map(client_of)
            .transpose()
    }

    async fn find_client(&self, client_id: &ClientId) -> Result<Option<Client>, StoreError> {
        client::Entity::find_by_id(client_id.to_string())
            .one(&self.conn)
            .await
            .map_err(map_db_err)?
            .map(client_of)
            .transpose()
    }

    async fn list_clients(&self, filter: &ClientFilter, page: PageRequest) -> Result<Page<Client>, StoreError> {
        let mut query = client::Entity::find();
        if let Some(tenant_id) = filter.tenant_id {
            query = query.filter(client::Column::TenantId.eq(tenant_id.to_string()));
        }
        if let Some(environment) = filter.environment {
            query = query.filter(client::Column::Environment.eq(environment.as_str()));
        }
        if let Some(role) = &filter.admin_role {
            query = query.filter(client::Column::AdminRole.eq(name_of(role)?));
        }
        if filter.hide_operators {
            let operator = name_of(&tenant_registry::AdminRole::Operator)?;
            query = query.filter(
                sea_orm::Condition::any()
                    .add(client::Column::AdminRole.is_null())
                    .add(client::Column::AdminRole.ne(operator)),
            );
        }
        let total = query.clone().count(&self.conn).await.map_err(map_db_err)?;
        let (limit, offset) = limits(page);
        let rows = query
            .order_by_asc(client::Column::CreatedAt)
            .order_by_asc(client::Column::ClientId)
            .limit(limit)
            .offset(offset)
            .all(&self.conn)
            .await
            .map_err(map_db_err)?;
        Ok(Page { items: rows.into_iter().map(client_of).collect::<Result<_, _>>()?, total })
    }

    async fn append_audit(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        write_audit(&self.conn, audit).await
    }

    async fn list_audit(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let mut query = audit_event::Entity::find();
        if let Some(tenant_id) = filter.tenant_id {
            query = query.filter(audit_event::Column::TenantId.eq(tenant_id.to_string()));
        }
        if let Some(actor) = &filter.actor {
            query = query.filter(audit_event::Column::Actor.eq(actor.as_str()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(audit_event::Column::Action.eq(action.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(audit_event::Column::At.gte(since.unix_timestamp()));
        }
        if let Some(until) = filter.until {
            query = query.filter(audit_event::Column::At.lt(until.unix_timestamp()));
        }
        let total = query.clone().count(&self.conn).await.map_err(map_db_err)?;
        let (limit, offset) = limits(page);
        let rows = query
            .order_by_desc(audit_event::Column::Id)
            .limit(limit)
            .offset(offset)
            .all(&self.conn)
            .await
            .map_err(map_db_err)?;
        Ok(Page { items: rows.into_iter().map(audit_of).collect::<Result<_, _>>()?, total })
    }
}
