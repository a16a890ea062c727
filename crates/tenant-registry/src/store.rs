//! The registry's storage port. Each change is one method that also writes its audit event, so a
//! change and its audit entry commit together or not at all.

use std::sync::Arc;

use async_trait::async_trait;
use oidc_core::{ClientId, Environment, TenantId};

use crate::{
    audit::{AuditEntry, AuditEvent, AuditFilter},
    model::{Client, Tenant, TenantStatus},
};

/// A page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many (1 to 500).
    pub limit: u32,
    /// Skip this many.
    pub offset: u64,
}

/// One page and the size of the whole listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// How many match in all.
    pub total: u64,
}

/// Which tenants to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantFilter {
    /// Only with this status.
    pub status: Option<TenantStatus>,
    /// Name or slug contains this (case-insensitive).
    pub search: Option<String>,
    /// Only this tenant (a tenant admin's view).
    pub only: Option<TenantId>,
}

/// Which clients to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    /// Only this tenant's.
    pub tenant_id: Option<TenantId>,
    /// Only in this environment.
    pub environment: Option<Environment>,
    /// Only clients with this admin role.
    pub admin_role: Option<crate::AdminRole>,
    /// Leave operator clients out (what a tenant admin lists: nothing above its own role).
    pub hide_operators: bool,
}

/// What can go wrong in the registry's store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row.
    #[error("not found")]
    NotFound,
    /// A unique value (slug, client id) exists already.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row changed since the caller read it.
    #[error("version mismatch: the current version is {current}")]
    VersionMismatch {
        /// The version now stored.
        current: i64,
    },
    /// The tenant still has clients.
    #[error("the tenant still has clients")]
    HasClients,
    /// The database did not answer or failed.
    #[error("registry store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Durable storage of tenants, clients and the audit log. Implemented in `storage`.
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Inserts a tenant; `Conflict` when the slug is taken.
    async fn insert_tenant(&self, tenant: &Tenant, audit: &AuditEvent) -> Result<(), StoreError>;
    /// Replaces a tenant whose stored version is `expected_version`.
    async fn update_tenant(&self, tenant: &Tenant, expected_version: i64, audit: &AuditEvent)
    -> Result<(), StoreError>;
    /// Deletes a tenant at `expected_version` that has no clients (`HasClients` otherwise).
    async fn delete_tenant(&self, id: TenantId, expected_version: i64, audit: &AuditEvent) -> Result<(), StoreError>;
    /// One tenant.
    async fn find_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    /// Tenants ordered by slug.
    async fn list_tenants(&self, filter: &TenantFilter, page: PageRequest) -> Result<Page<Tenant>, StoreError>;

    /// Inserts a client.
    async fn insert_client(&self, client: &Client, audit: &AuditEvent) -> Result<(), StoreError>;
    /// Replaces a client whose stored version is `expected_version`.
    async fn update_client(&self, client: &Client, expected_version: i64, audit: &AuditEvent)
    -> Result<(), StoreError>;
    /// Deletes a client at `expected_version`.
    async fn delete_client(
        &self,
        client_id: &ClientId,
        expected_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// One client.
    async fn find_client(&self, client_id: &ClientId) -> Result<Option<Client>, StoreError>;
    /// One client and its tenant (`None` when the tenant is gone), as [`Self::find_client`] and
    /// [`Self::find_tenant`] one after the other would find them; a cache checks its freshness
    /// once for both.
    async fn find_client_and_tenant(
        &self,
        client_id: &ClientId,
    ) -> Result<Option<(Arc<Client>, Option<Arc<Tenant>>)>, StoreError> {
        let Some(client) = self.find_client(client_id).await? else { return Ok(None) };
        let tenant = self.find_tenant(client.tenant_id).await?;
        Ok(Some((Arc::new(client), tenant.map(Arc::new))))
    }
    /// The SAML service provider with `entity_id` in `environment`.
    async fn find_saml_client(&self, environment: Environment, entity_id: &str) -> Result<Option<Client>, StoreError>;
    /// Clients ordered by creation.
    async fn list_clients(&self, filter: &ClientFilter, page: PageRequest) -> Result<Page<Client>, StoreError>;

    /// Audit entries, newest first.
    async fn list_audit(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEntry>, StoreError>;

    /// Records an event that changes no row here (e.g. an initial access token was issued).
    async fn append_audit(&self, audit: &AuditEvent) -> Result<(), StoreError>;
}
