//! A caching decorator of the [`RegistryStore`]: the token endpoint looks up a client and its
//! tenant on every request, and thousands of tenants must not make that slow.
//!
//! Invalidation reaches every node through a generation counter in the shared ephemeral store:
//! every successful write bumps it, every cached lookup compares it (one small read — one for a
//! client with its tenant, shared by the lookups of the same moment — instead of two database
//! queries) and drops the whole cache when it moved. Entries also expire after
//! `max_age`, which bounds staleness should a bump ever be lost. While the database fails, an
//! entry keeps serving for `stale` beyond `max_age`, so clients still authenticate during an
//! outage (what changed meanwhile takes effect when the database answers again); the same
//! holds while the generation counter cannot be read.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use oidc_core::{ClientId, Environment, EphemeralError, EphemeralStore, TenantId};

use crate::{
    audit::{AuditEntry, AuditEvent, AuditFilter},
    model::{Client, Tenant},
    shared_read::SharedRead,
    store::{ClientFilter, Page, PageRequest, RegistryStore, StoreError, TenantFilter},
};

const GENERATION_KEY: &str = "registry:generation";
/// The counter outlives any sensible cache; should it vanish, `max_age` still bounds staleness.
const GENERATION_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// [`RegistryStore`] with a per-node cache of clients and tenants.
pub struct CachedRegistryStore {
    inner: Arc<dyn RegistryStore>,
    ephemeral: Arc<dyn EphemeralStore>,
    max_age: Duration,
    stale: Duration,
    cache: Mutex<Cache>,
    /// Concurrent looks at the generation counter, one at a time.
    generation_reads: SharedRead,
}

#[derive(Default)]
struct Cache {
    generation: i64,
    clients: HashMap<ClientId, (Arc<Client>, Instant)>,
    tenants: HashMap<TenantId, (Arc<Tenant>, Instant)>,
}

fn unavailable(e: oidc_core::EphemeralError) -> StoreError {
    // Boxed as it is, so the server still sees an ephemeral-store outage in the chain.
    StoreError::Unavailable(Box::new(e))
}

/// An error's text with those of its causes: what every caller sharing a failed read learns.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

impl CachedRegistryStore {
    /// Caches `inner`; the generation counter lives in `ephemeral`, shared by all nodes. An entry
    /// is served for `max_age`, and for `stale` beyond that while `inner` fails.
    pub fn new(
        inner: Arc<dyn RegistryStore>,
        ephemeral: Arc<dyn EphemeralStore>,
        max_age: Duration,
        stale: Duration,
    ) -> Self {
        Self {
            inner,
            ephemeral,
            max_age,
            stale,
            cache: Mutex::new(Cache::default()),
            generation_reads: SharedRead::default(),
        }
    }

    /// What to answer when `inner` failed: a cached entry young enough for an outage, else the
    /// failure.
    fn stale_or<T: Clone>(&self, cached: Option<&(T, Instant)>, error: StoreError) -> Result<Option<T>, StoreError> {
        match cached {
            Some((value, at)) if at.elapsed() < self.max_age + self.stale => Ok(Some(value.clone())),
            _ => Err(error),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The generation counter, read after this call began (shared with the lookups that came
    /// at the same moment, see [`SharedRead`]).
    async fn generation(&self) -> Result<i64, StoreError> {
        let read = || async {
            let stored = self.ephemeral.get(GENERATION_KEY).await.map_err(|e| with_causes(&e))?;
            Ok(stored.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse().ok()).unwrap_or(0))
        };
        self.generation_reads.read(read).await.map_err(|text| unavailable(EphemeralError::Unavailable(text.into())))
    }

    /// After a successful write: every node drops its cache at its next lookup. The write is
    /// committed already, so a failed bump does not fail it: this node drops its own cache at
    /// once, the others within `max_age`.
    async fn bump(&self) -> Result<(), StoreError> {
        if self.ephemeral.increment(GENERATION_KEY, 1, GENERATION_TTL).await.is_err() {
            let mut cache = self.lock();
            cache.clients.clear();
            cache.tenants.clear();
        }
        Ok(())
    }

    /// The cache as of `generation`, emptied if it belonged to another.
    fn current(&self, generation: i64) -> std::sync::MutexGuard<'_, Cache> {
        let mut cache = self.lock();
        if cache.generation != generation {
            *cache = Cache { generation, ..Cache::default() };
        }
        cache
    }

    /// The tenant `id`, from the cache if it holds it for `generation`, else from `inner`.
    async fn tenant_as_of(&self, generation: i64, id: TenantId) -> Result<Option<Arc<Tenant>>, StoreError> {
        if let Some((tenant, at)) = self.current(generation).tenants.get(&id)
            && at.elapsed() < self.max_age
        {
            return Ok(Some(tenant.clone()));
        }
        let found = match self.inner.find_tenant(id).await {
            Ok(found) => found.map(Arc::new),
            Err(error @ StoreError::Unavailable(_)) => return self.stale_or(self.lock().tenants.get(&id), error),
            Err(other) => return Err(other),
        };
        if let Some(tenant) = &found {
            let mut cache = self.lock();
            // A write that happened meanwhile moved the generation: then this result may be old.
            if cache.generation == generation {
                cache.tenants.insert(id, (tenant.clone(), Instant::now()));
            }
        }
        Ok(found)
    }

    /// The client `client_id`, from the cache if it holds it for `generation`, else from `inner`.
    async fn client_as_of(&self, generation: i64, client_id: &ClientId) -> Result<Option<Arc<Client>>, StoreError> {
        if let Some((client, at)) = self.current(generation).clients.get(client_id)
            && at.elapsed() < self.max_age
        {
            return Ok(Some(client.clone()));
        }
        let found = match self.inner.find_client(client_id).await {
            Ok(found) => found.map(Arc::new),
            Err(error @ StoreError::Unavailable(_)) => {
                return self.stale_or(self.lock().clients.get(client_id), error);
            }
            Err(other) => return Err(other),
        };
        if let Some(client) = &found {
            let mut cache = self.lock();
            if cache.generation == generation {
                cache.clients.insert(client_id.clone(), (client.clone(), Instant::now()));
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl RegistryStore for CachedRegistryStore {
    async fn insert_tenant(&self, tenant: &Tenant, audit: &AuditEvent) -> Result<(), StoreError> {
        self.inner.insert_tenant(tenant, audit).await?;
        self.bump().await
    }

    async fn update_tenant(
        &self,
        tenant: &Tenant,
        expected_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.update_tenant(tenant, expected_version, audit).await?;
        self.bump().await
    }

    async fn delete_tenant(&self, id: TenantId, expected_version: i64, audit: &AuditEvent) -> Result<(), StoreError> {
        self.inner.delete_tenant(id, expected_version, audit).await?;
        self.bump().await
    }

    async fn find_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        match self.generation().await {
            Ok(generation) => self.tenant_as_of(generation, id).await,
            Err(error) => self.stale_or(self.lock().tenants.get(&id), error),
        }
        .map(|found| found.map(Arc::unwrap_or_clone))
    }

    async fn list_tenants(&self, filter: &TenantFilter, page: PageRequest) -> Result<Page<Tenant>, StoreError> {
        self.inner.list_tenants(filter, page).await
    }

    async fn insert_client(&self, client: &Client, audit: &AuditEvent) -> Result<(), StoreError> {
        self.inner.insert_client(client, audit).await?;
        self.bump().await
    }

    async fn update_client(
        &self,
        client: &Client,
        expected_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.update_client(client, expected_version, audit).await?;
        self.bump().await
    }

    async fn delete_client(
        &self,
        client_id: &ClientId,
        expected_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.delete_client(client_id, expected_version, audit).await?;
        self.bump().await
    }

    /// Not cached: an SSO request names the SP by entity id once; the client it finds is then
    /// read (and cached) by id like any other.
    async fn find_saml_client(&self, environment: Environment, entity_id: &str) -> Result<Option<Client>, StoreError> {
        let Some(found) = self.inner.find_saml_client(environment, entity_id).await? else { return Ok(None) };
        self.find_client(&found.client_id).await
    }

    async fn find_client(&self, client_id: &ClientId) -> Result<Option<Client>, StoreError> {
        match self.generation().await {
            Ok(generation) => self.client_as_of(generation, client_id).await,
            Err(error) => self.stale_or(self.lock().clients.get(client_id), error),
        }
        .map(|found| found.map(Arc::unwrap_or_clone))
    }

    /// One look at the generation counter for both: every request that authenticates a client
    /// needs its tenant too, and on Redis each look is a round trip. Shared, not copied: the
    /// token endpoint asks for them on every request.
    async fn find_client_and_tenant(
        &self,
        client_id: &ClientId,
    ) -> Result<Option<(Arc<Client>, Option<Arc<Tenant>>)>, StoreError> {
        let generation = match self.generation().await {
            Ok(generation) => generation,
            Err(error) => {
                // As the two lookups one by one: both from entries young enough for an outage,
                // else the failure.
                let cache = self.lock();
                let usable = |at: &Instant| at.elapsed() < self.max_age + self.stale;
                let Some((client, _)) = cache.clients.get(client_id).filter(|(_, at)| usable(at)) else {
                    return Err(error);
                };
                let Some((tenant, _)) = cache.tenants.get(&client.tenant_id).filter(|(_, at)| usable(at)) else {
                    return Err(error);
                };
                return Ok(Some((client.clone(), Some(tenant.clone()))));
            }
        };
        let Some(client) = self.client_as_of(generation, client_id).await? else { return Ok(None) };
        let tenant = self.tenant_as_of(generation, client.tenant_id).await?;
        Ok(Some((client, tenant)))
    }

    async fn list_clients(&self, filter: &ClientFilter, page: PageRequest) -> Result<Page<Client>, StoreError> {
        self.inner.list_clients(filter, page).await
    }

    async fn list_audit(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        self.inner.list_audit(filter, page).await
    }

    async fn append_audit(&self, audit: &AuditEvent) -> Result<(), StoreError> {
        self.inner.append_audit(audit).await
    }
}
