//! Contract suites: every implementation of a port must pass the same tests. SQLite and the
//! in-memory store always; PostgreSQL and Redis when `TEST_DATABASE_URL` / `TEST_REDIS_URL` are set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests: a failed step is the test failing")]

use std::{sync::Arc, time::Duration};

use oidc_core::{
    Environment, EphemeralError, EphemeralStore, Jwk, KeyStoreError, SigningAlgorithm, SigningKeyStore,
    StoredSigningKey,
};
use storage::{
    Database, MemoryEphemeralStore, RedisEphemeralStore,
    testing::{TestDatabase, backend_url},
};
use time::{OffsetDateTime, macros::datetime};

fn key(kid: &str, environment: Environment, algorithm: SigningAlgorithm, generation: i32) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.to_owned(),
        environment,
        algorithm,
        generation,
        public_jwk: Jwk {
            kty: "EC".into(),
            kid: kid.to_owned(),
            key_use: "sig".into(),
            alg: algorithm.as_str().into(),
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some("x".into()),
            y: Some("y".into()),
        },
        sealed_private_key: vec![0, 1, 2, 255],
        created_at: datetime!(2026-01-01 00:00 UTC),
        activates_at: datetime!(2026-01-01 01:00 UTC),
        expires_at: None,
    }
}

async fn signing_key_store_contract(store: &dyn SigningKeyStore) {
    assert!(store.list(Environment::Production).await.unwrap().is_empty());

    let first = key("p-es-1", Environment::Production, SigningAlgorithm::ES256, 1);
    let other_env = key("t-es-1", Environment::Test, SigningAlgorithm::ES256, 1);
    store.rotate(&[first.clone(), other_env.clone()], &[]).await.unwrap();
    assert_eq!(
        store.list(Environment::Production).await.unwrap(),
        vec![first.clone()],
        "round trip, environment filter"
    );
    assert_eq!(store.list(Environment::Test).await.unwrap(), vec![other_env]);

    // Rotation: the new key is inserted and the old one gets its expiry, together.
    let expiry: OffsetDateTime = datetime!(2026-02-01 00:00 UTC);
    let second = key("p-es-2", Environment::Production, SigningAlgorithm::ES256, 2);
    store.rotate(std::slice::from_ref(&second), &[("p-es-1".to_owned(), expiry)]).await.unwrap();
    let mut listed = store.list(Environment::Production).await.unwrap();
    listed.sort_by_key(|k| k.generation);
    assert_eq!(listed[0].expires_at, Some(expiry));
    assert_eq!(listed[1], second);

    // A second writer of the same generation conflicts, and its retirements do not happen.
    let rival = key("p-es-2-rival", Environment::Production, SigningAlgorithm::ES256, 2);
    let err = store.rotate(&[rival], &[("p-es-2".to_owned(), expiry)]).await.unwrap_err();
    assert!(matches!(err, KeyStoreError::Conflict), "{err:?}");
    let listed = store.list(Environment::Production).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|k| k.kid == "p-es-2" && k.expires_at.is_none()), "rolled back");

    // The same generation of another algorithm is no conflict.
    store.rotate(&[key("p-ed-2", Environment::Production, SigningAlgorithm::EdDSA, 2)], &[]).await.unwrap();
}

#[tokio::test]
async fn signing_key_store_on_sqlite() {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    db.migrate().await.unwrap();
    signing_key_store_contract(&db.signing_keys()).await;
}

#[tokio::test]
async fn signing_key_store_on_postgres() {
    let Some(server) = backend_url("TEST_DATABASE_URL", "signing_key_store_on_postgres") else { return };
    let test_db = TestDatabase::postgres(&server).await.unwrap();
    let db = Database::connect(&test_db.url).await.unwrap();
    assert_eq!(db.backend_name(), "postgres");
    assert!(db.migrate().await.unwrap() >= 1, "a fresh database gets every migration");
    assert_eq!(db.migrate().await.unwrap(), 0, "migrations are idempotent");
    signing_key_store_contract(&db.signing_keys()).await;
    db.close().await.unwrap();
    test_db.drop_now().await.unwrap();
}

/// On PostgreSQL a batch worker keeps its connection while batches keep coming (no checkout and
/// no check of the connection per statement), gives it back to the pool when they stop, and
/// replaces one the server ended while it held it. SQLite's pool of one connection is not held
/// from.
#[tokio::test]
async fn a_batch_worker_holds_its_connection_only_while_busy() {
    use account_service::{AccountStore as _, StoreError};
    let folder = tempfile::tempdir().unwrap();
    let postgres =
        match backend_url("TEST_DATABASE_URL", "a_batch_worker_holds_its_connection_only_while_busy on PostgreSQL") {
            Some(server) => Some(TestDatabase::postgres(&server).await.unwrap()),
            None => None,
        };
    let sqlite = TestDatabase::sqlite(folder.path());
    for test_db in [Some(&sqlite), postgres.as_ref()].into_iter().flatten() {
        let db = Database::connect(&test_db.url).await.unwrap();
        db.migrate().await.unwrap();
        let accounts = db.accounts();
        let nobody = oidc_core::AccountId::from(uuid::Uuid::new_v4());
        let read = async || accounts.get(Environment::Production, nobody).await;
        let on_postgres = !std::ptr::eq(test_db, &sqlite);
        // Shortly after its batch (long enough for a connection given back to be checked and
        // idle, short of the worker's idle time) the worker still holds its connection, unless
        // this test was held up until the worker went idle (then it looks again).
        let mut kept = None;
        for _ in 0..3 {
            assert!(matches!(read().await, Err(StoreError::NotFound)), "{}", test_db.url);
            let answered = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(40)).await;
            let in_use = db.connections_in_use();
            if answered.elapsed() < Duration::from_millis(90) {
                kept = Some(in_use);
                break;
            }
        }
        if on_postgres {
            assert_eq!(kept, Some(1), "the accounts' worker keeps its connection");
        }
        // (SQLite's pool has a single connection, which no worker may keep from everyone else.)
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(db.connections_in_use(), 0, "and gives it back when no batch comes: {}", test_db.url);

        assert!(matches!(read().await, Err(StoreError::NotFound)));
        if test_db.end_connections().await.unwrap() > 0 {
            // The held connection is gone, and so are the pool's idle ones, which it checks only
            // after a second of rest: reads fail until each dead connection has met a statement
            // (at most the pool's ten and the held one), then never again.
            let mut failed = 0;
            while !matches!(read().await, Err(StoreError::NotFound)) {
                failed += 1;
                assert!(failed <= 11, "a dead connection was kept");
            }
            for _ in 0..5 {
                assert!(matches!(read().await, Err(StoreError::NotFound)), "fresh connections after the ended ones");
            }
        }
        db.close().await.unwrap();
    }
    if let Some(test_db) = postgres {
        test_db.drop_now().await.unwrap();
    }
}

/// The pool checks a PostgreSQL connection before use only after it sat idle (a check before
/// every use is a round trip on every statement's path); a connection the server ended (restart,
/// failover) has sat idle since, so it is found and replaced before a statement meets it.
#[tokio::test]
async fn a_postgresql_connection_the_server_ended_is_replaced_before_use() {
    let Some(server) =
        backend_url("TEST_DATABASE_URL", "a_postgresql_connection_the_server_ended_is_replaced_before_use")
    else {
        return;
    };
    let test_db = TestDatabase::postgres(&server).await.unwrap();
    let db = Database::connect(&test_db.url).await.unwrap();
    db.migrate().await.unwrap();
    // Several connections in the pool.
    let pings = tokio::join!(db.ping(), db.ping(), db.ping(), db.ping());
    for ping in [pings.0, pings.1, pings.2, pings.3] {
        ping.unwrap();
    }
    assert!(test_db.end_connections().await.unwrap() >= 1, "the pool held connections");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..8 {
        db.ping().await.expect("no statement meets an ended connection");
    }
    db.close().await.unwrap();
    test_db.drop_now().await.unwrap();
}

#[tokio::test]
async fn sqlite_file_database_is_created_with_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/sk.db?mode=rwc", dir.path().display());
    let db = Database::connect(&url).await.unwrap();
    assert!(!db.pending_migrations().await.unwrap().is_empty());
    db.migrate().await.unwrap();
    assert!(db.pending_migrations().await.unwrap().is_empty());
    db.ping().await.unwrap();
    assert!(dir.path().join("nested/sk.db").exists());
    assert!(matches!(Database::connect("mysql://x").await, Err(storage::DatabaseError::UnsupportedUrl(_))));
}

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(60);

async fn ephemeral_store_contract(store: Arc<dyn EphemeralStore>) {
    store.ping().await.unwrap();

    // put / get / overwrite / delete
    assert_eq!(store.get("a").await.unwrap(), None);
    store.put("a", b"1", LONG).await.unwrap();
    store.put("a", b"2", LONG).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert!(store.delete("a").await.unwrap());
    assert!(!store.delete("a").await.unwrap());
    assert_eq!(store.get("a").await.unwrap(), None);

    // put_if_absent
    assert!(store.put_if_absent("jti", b"x", LONG).await.unwrap());
    assert!(!store.put_if_absent("jti", b"y", LONG).await.unwrap());
    assert_eq!(store.get("jti").await.unwrap().as_deref(), Some(&b"x"[..]));

    // take is single-use, also under concurrency
    store.put("code", b"c", LONG).await.unwrap();
    let takers: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take("code").await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for taker in takers {
        if let Some(value) = taker.await.unwrap() {
            assert_eq!(value, b"c");
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent taker gets the value");
    assert_eq!(store.take("code").await.unwrap(), None);

    // counters: fixed window from creation
    assert_eq!(store.increment("n", 1, SHORT).await.unwrap(), 1);
    assert_eq!(store.increment("n", 2, LONG).await.unwrap(), 3);
    assert_eq!(store.get("n").await.unwrap().as_deref(), Some(&b"3"[..]));
    store.put("text", b"abc", LONG).await.unwrap();
    assert!(matches!(store.increment("text", 1, LONG).await, Err(EphemeralError::WrongType)));

    // TTLs: every kind of write expires
    store.put("short", b"s", SHORT).await.unwrap();
    assert!(store.put_if_absent("short-nx", b"s", SHORT).await.unwrap());
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert_eq!(store.get("short").await.unwrap(), None);
    assert_eq!(store.take("short").await.unwrap(), None);
    assert!(store.put_if_absent("short-nx", b"again", LONG).await.unwrap(), "expired keys are absent");
    assert_eq!(store.increment("n", 1, LONG).await.unwrap(), 1, "the counter's window ended");
}

#[tokio::test]
async fn ephemeral_store_in_memory() {
    ephemeral_store_contract(Arc::new(MemoryEphemeralStore::new())).await;
}

#[tokio::test]
async fn ephemeral_store_on_redis() {
    let Some(url) = backend_url("TEST_REDIS_URL", "ephemeral_store_on_redis") else { return };
    let prefix = format!("sk-test:{}:", uuid::Uuid::new_v4().simple());
    let store = RedisEphemeralStore::connect(&url, false, &prefix, std::time::Duration::from_secs(2)).await.unwrap();
    ephemeral_store_contract(Arc::new(store.clone())).await;

    // The prefix isolates: another deployment on the same Redis sees nothing of ours.
    let other =
        RedisEphemeralStore::connect(&url, false, "sk-test:other:", std::time::Duration::from_secs(2)).await.unwrap();
    store.put("isolated", b"1", LONG).await.unwrap();
    assert_eq!(other.get("isolated").await.unwrap(), None);
    store.delete("isolated").await.unwrap();
}

#[tokio::test]
async fn ephemeral_store_on_redis_cluster() {
    let test = "ephemeral_store_on_redis_cluster";
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        storage::testing::skip(test, "redis-server is not installed, so no cluster can be started");
        return;
    }
    let cluster = storage::testing::RedisCluster::start().unwrap();
    let store =
        RedisEphemeralStore::connect(&cluster.url(), true, "sk-test:cluster:", std::time::Duration::from_secs(2))
            .await
            .unwrap();
    assert!(format!("{store:?}").contains("cluster"));
    ephemeral_store_contract(Arc::new(store)).await;
}

mod registry {
    use oidc_core::{ClientId, Environment, TenantId, TrustLevel};
    use storage::{Database, testing::TestDatabase};
    use tenant_registry::{
        AuditEvent, AuditFilter, Branding, Client, ClientFilter, ClientSettings, PageRequest, RegistryStore,
        StoreError, Tenant, TenantFilter, TenantStatus,
    };
    use time::{OffsetDateTime, macros::datetime};

    const ALL: PageRequest = PageRequest { limit: 500, offset: 0 };

    fn tenant(slug: &str, name: &str) -> Tenant {
        Tenant {
            id: TenantId::new_random(),
            slug: slug.into(),
            name: name.into(),
            contact_email: "it@example.de".into(),
            status: TenantStatus::Active,
            branding: Branding { display_name: name.into(), logo_url: None },
            allowed_claims: Default::default(),
            min_trust_level: TrustLevel::Substantiell,
            sector: slug.into(),
            version: 1,
            created_at: datetime!(2026-01-01 00:00 UTC),
            updated_at: datetime!(2026-01-01 00:00 UTC),
        }
    }

    fn client(tenant: &Tenant, environment: Environment, at: OffsetDateTime) -> Client {
        Client {
            client_id: ClientId::generate(),
            tenant_id: tenant.id,
            environment,
            settings: ClientSettings::confidential("Dienst", vec![url::Url::parse("https://a.de/cb").unwrap()]),
            first_party: false,
            admin_role: None,
            secrets: Vec::new(),
            registration_token: Some("hash".into()),
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }

    fn audit(action: &str, tenant: &Tenant) -> AuditEvent {
        AuditEvent {
            at: datetime!(2026-01-02 00:00 UTC),
            actor: "system:test".into(),
            action: action.into(),
            tenant_id: Some(tenant.id),
            target: tenant.id.to_string(),
            before: None,
            after: Some(serde_json::json!({"slug": tenant.slug})),
        }
    }

    async fn contract(store: &dyn RegistryStore) {
        let a = tenant("stadt-a", "Stadt Aachen");
        let b = tenant("kreis-b", "Kreis Borken");
        store.insert_tenant(&a, &audit("tenant.create", &a)).await.unwrap();
        store.insert_tenant(&b, &audit("tenant.create", &b)).await.unwrap();
        assert_eq!(store.find_tenant(a.id).await.unwrap(), Some(a.clone()), "round trip");
        assert_eq!(store.find_tenant(TenantId::new_random()).await.unwrap(), None);
        let twin = tenant("stadt-a", "Other");
        assert!(matches!(
            store.insert_tenant(&twin, &audit("tenant.create", &twin)).await,
            Err(StoreError::Conflict(_))
        ));

        // Listing: ordered by slug, filtered, paged.
        let all = store.list_tenants(&TenantFilter::default(), ALL).await.unwrap();
        assert_eq!(all.total, 2);
        assert_eq!(all.items.iter().map(|t| t.slug.as_str()).collect::<Vec<_>>(), ["kreis-b", "stadt-a"]);
        let found = store
            .list_tenants(&TenantFilter { search: Some("AACHEN".into()), ..Default::default() }, ALL)
            .await
            .unwrap();
        assert_eq!(found.items, vec![a.clone()], "case-insensitive name search");
        let page = store.list_tenants(&TenantFilter::default(), PageRequest { limit: 1, offset: 1 }).await.unwrap();
        assert_eq!((page.total, page.items[0].slug.as_str()), (2, "stadt-a"));
        let only = store.list_tenants(&TenantFilter { only: Some(b.id), ..Default::default() }, ALL).await.unwrap();
        assert_eq!(only.items, vec![b.clone()]);

        // Optimistic concurrency.
        let mut changed = Tenant { status: TenantStatus::Suspended, version: 2, ..a.clone() };
        store.update_tenant(&changed, 1, &audit("tenant.suspend", &a)).await.unwrap();
        changed.version = 3;
        assert!(matches!(
            store.update_tenant(&changed, 1, &audit("x", &a)).await,
            Err(StoreError::VersionMismatch { current: 2 })
        ));
        let ghost = tenant("ghost", "Ghost");
        assert!(matches!(store.update_tenant(&ghost, 1, &audit("x", &ghost)).await, Err(StoreError::NotFound)));
        let suspended = store
            .list_tenants(&TenantFilter { status: Some(TenantStatus::Suspended), ..Default::default() }, ALL)
            .await
            .unwrap();
        assert_eq!(suspended.items.len(), 1);

        // Clients.
        let c1 = client(&a, Environment::Test, datetime!(2026-01-03 00:00 UTC));
        let c2 = client(&a, Environment::Production, datetime!(2026-01-04 00:00 UTC));
        store.insert_client(&c1, &audit("client.create", &a)).await.unwrap();
        store.insert_client(&c2, &audit("client.create", &a)).await.unwrap();
        assert_eq!(store.find_client(&c1.client_id).await.unwrap(), Some(c1.clone()));
        let of_a =
            store.list_clients(&ClientFilter { tenant_id: Some(a.id), ..ClientFilter::default() }, ALL).await.unwrap();
        assert_eq!(of_a.items, vec![c1.clone(), c2.clone()], "ordered by creation");
        let in_test =
            ClientFilter { tenant_id: Some(a.id), environment: Some(Environment::Test), ..ClientFilter::default() };
        assert_eq!(store.list_clients(&in_test, ALL).await.unwrap().items, vec![c1.clone()]);
        let orphan = client(&tenant("nobody", "Nobody"), Environment::Test, datetime!(2026-01-05 00:00 UTC));
        assert!(store.insert_client(&orphan, &audit("client.create", &a)).await.is_err(), "the tenant must exist");

        let renamed = Client { first_party: true, version: 2, ..c1.clone() };
        store.update_client(&renamed, 1, &audit("client.update", &a)).await.unwrap();
        assert!(matches!(
            store.update_client(&renamed, 1, &audit("x", &a)).await,
            Err(StoreError::VersionMismatch { current: 2 })
        ));

        // A tenant with clients stays; without them it goes.
        assert!(matches!(store.delete_tenant(a.id, 2, &audit("tenant.delete", &a)).await, Err(StoreError::HasClients)));
        assert!(matches!(
            store.delete_client(&c1.client_id, 1, &audit("x", &a)).await,
            Err(StoreError::VersionMismatch { current: 2 })
        ));
        store.delete_client(&c1.client_id, 2, &audit("client.delete", &a)).await.unwrap();
        store.delete_client(&c2.client_id, 1, &audit("client.delete", &a)).await.unwrap();
        assert!(matches!(
            store.delete_tenant(a.id, 1, &audit("x", &a)).await,
            Err(StoreError::VersionMismatch { current: 2 })
        ));
        store.delete_tenant(a.id, 2, &audit("tenant.delete", &a)).await.unwrap();
        assert_eq!(store.find_tenant(a.id).await.unwrap(), None);

        // Every successful change left one audit entry; failed ones none. Newest first.
        let trail = store.list_audit(&AuditFilter { tenant_id: Some(a.id), ..Default::default() }, ALL).await.unwrap();
        let actions: Vec<&str> = trail.items.iter().map(|e| e.event.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "tenant.delete",
                "client.delete",
                "client.delete",
                "client.update",
                "client.create",
                "client.create",
                "tenant.suspend",
                "tenant.create"
            ]
        );
        assert_eq!(trail.items.last().unwrap().event.after, Some(serde_json::json!({"slug": "stadt-a"})));
        let creates = store
            .list_audit(&AuditFilter { action: Some("tenant.create".into()), ..Default::default() }, ALL)
            .await
            .unwrap();
        assert_eq!(creates.total, 2);
        let none = AuditFilter { since: Some(datetime!(2027-01-01 00:00 UTC)), ..Default::default() };
        assert_eq!(store.list_audit(&none, ALL).await.unwrap().total, 0);
    }

    #[tokio::test]
    async fn the_registry_cache_serves_reads_and_drops_them_when_any_node_writes() {
        use std::{sync::Arc, time::Duration};
        use tenant_registry::CachedRegistryStore;
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let inner: Arc<dyn RegistryStore> = Arc::new(db.registry());
        let shared = Arc::new(storage::MemoryEphemeralStore::new());
        let node_a = CachedRegistryStore::new(inner.clone(), shared.clone(), Duration::from_secs(60), Duration::ZERO);
        let node_b = CachedRegistryStore::new(inner.clone(), shared, Duration::from_secs(60), Duration::ZERO);

        let t = tenant("cached", "Cached");
        node_a.insert_tenant(&t, &audit("tenant.create", &t)).await.unwrap();
        assert_eq!(node_b.find_tenant(t.id).await.unwrap(), Some(t.clone()));

        // Changed behind the caches' back: node B still serves what it cached.
        let behind = Tenant { name: "Behind".into(), version: 2, ..t.clone() };
        inner.update_tenant(&behind, 1, &audit("x", &t)).await.unwrap();
        assert_eq!(node_b.find_tenant(t.id).await.unwrap().unwrap().name, "Cached", "served from the cache");

        // A write through node A invalidates node B's cache.
        let suspended = Tenant { status: TenantStatus::Suspended, version: 3, ..behind.clone() };
        node_a.update_tenant(&suspended, 2, &audit("tenant.suspend", &t)).await.unwrap();
        assert_eq!(node_b.find_tenant(t.id).await.unwrap(), Some(suspended));
    }

    /// The shared store of a node, counting its reads.
    struct CountingStore {
        inner: storage::MemoryEphemeralStore,
        gets: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl oidc_core::EphemeralStore for CountingStore {
        async fn put(
            &self,
            key: &str,
            value: &[u8],
            ttl: std::time::Duration,
        ) -> Result<(), oidc_core::EphemeralError> {
            self.inner.put(key, value, ttl).await
        }
        async fn put_if_absent(
            &self,
            key: &str,
            value: &[u8],
            ttl: std::time::Duration,
        ) -> Result<bool, oidc_core::EphemeralError> {
            self.inner.put_if_absent(key, value, ttl).await
        }
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, oidc_core::EphemeralError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.get(key).await
        }
        async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, oidc_core::EphemeralError> {
            self.inner.take(key).await
        }
        async fn delete(&self, key: &str) -> Result<bool, oidc_core::EphemeralError> {
            self.inner.delete(key).await
        }
        async fn increment(
            &self,
            key: &str,
            by: i64,
            ttl: std::time::Duration,
        ) -> Result<i64, oidc_core::EphemeralError> {
            self.inner.increment(key, by, ttl).await
        }
        async fn ping(&self) -> Result<(), oidc_core::EphemeralError> {
            self.inner.ping().await
        }
    }

    #[tokio::test]
    async fn a_client_and_its_tenant_cost_the_cache_one_look_at_the_shared_store() {
        use std::{
            sync::{Arc, atomic::Ordering},
            time::Duration,
        };
        use tenant_registry::CachedRegistryStore;
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let inner: Arc<dyn RegistryStore> = Arc::new(db.registry());
        let shared = Arc::new(CountingStore { inner: storage::MemoryEphemeralStore::new(), gets: Default::default() });
        let node_a = CachedRegistryStore::new(inner.clone(), shared.clone(), Duration::from_secs(60), Duration::ZERO);
        let node_b = CachedRegistryStore::new(inner.clone(), shared.clone(), Duration::from_secs(60), Duration::ZERO);
        let t = tenant("both", "Both");
        let c = client(&t, Environment::Test, datetime!(2026-01-03 00:00 UTC));
        node_a.insert_tenant(&t, &audit("tenant.create", &t)).await.unwrap();
        node_a.insert_client(&c, &audit("client.create", &t)).await.unwrap();

        let before = shared.gets.load(Ordering::SeqCst);
        assert_eq!(
            node_b.find_client_and_tenant(&c.client_id).await.unwrap(),
            Some((Arc::new(c.clone()), Some(Arc::new(t.clone()))))
        );
        assert_eq!(shared.gets.load(Ordering::SeqCst) - before, 1, "one look at the generation for both");
        assert_eq!(node_b.find_client_and_tenant(&ClientId::generate()).await.unwrap(), None);

        // A suspension through node A reaches node B's next lookup of the pair.
        let suspended = Tenant { status: TenantStatus::Suspended, version: 2, ..t.clone() };
        node_a.update_tenant(&suspended, 1, &audit("tenant.suspend", &t)).await.unwrap();
        assert_eq!(
            node_b.find_client_and_tenant(&c.client_id).await.unwrap(),
            Some((Arc::new(c.clone()), Some(Arc::new(suspended))))
        );

        // Without the database, the pair comes from the stale window or not at all.
        let tolerant = CachedRegistryStore::new(inner.clone(), shared.clone(), Duration::ZERO, Duration::from_secs(60));
        let strict = CachedRegistryStore::new(inner, shared, Duration::ZERO, Duration::ZERO);
        let expected = tolerant.find_client_and_tenant(&c.client_id).await.unwrap();
        assert!(expected.is_some());
        strict.find_client_and_tenant(&c.client_id).await.unwrap();
        db.close().await.unwrap();
        assert_eq!(tolerant.find_client_and_tenant(&c.client_id).await.unwrap(), expected, "served stale");
        assert!(matches!(strict.find_client_and_tenant(&c.client_id).await, Err(StoreError::Unavailable(_))));
    }

    #[tokio::test]
    async fn while_the_database_is_down_the_cache_serves_within_its_stale_window_only() {
        use std::{sync::Arc, time::Duration};
        use tenant_registry::CachedRegistryStore;
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let inner: Arc<dyn RegistryStore> = Arc::new(db.registry());
        let shared = Arc::new(storage::MemoryEphemeralStore::new());
        // Entries expire at once, so every read goes to the database first.
        let tolerant = CachedRegistryStore::new(inner.clone(), shared.clone(), Duration::ZERO, Duration::from_secs(60));
        let strict = CachedRegistryStore::new(inner.clone(), shared, Duration::ZERO, Duration::ZERO);
        let t = tenant("outage", "Outage");
        tolerant.insert_tenant(&t, &audit("tenant.create", &t)).await.unwrap();
        assert_eq!(tolerant.find_tenant(t.id).await.unwrap(), Some(t.clone()));
        assert_eq!(strict.find_tenant(t.id).await.unwrap(), Some(t.clone()));
        db.close().await.unwrap();
        assert_eq!(tolerant.find_tenant(t.id).await.unwrap(), Some(t.clone()), "served stale during the outage");
        let failed = strict.find_tenant(t.id).await.unwrap_err();
        assert!(matches!(failed, StoreError::Unavailable(_)));
        let (dependency, _) = oidc_core::dependency_failure(&failed).expect("marked as the database's failure");
        assert_eq!(dependency, oidc_core::Dependency::Database);
        assert!(tolerant.find_tenant(TenantId::new_random()).await.is_err(), "nothing cached: the failure");
    }

    #[tokio::test]
    async fn registry_store_on_sqlite() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        contract(&db.registry()).await;
    }

    #[tokio::test]
    async fn registry_store_on_postgres() {
        let Some(server) = storage::testing::backend_url("TEST_DATABASE_URL", "registry_store_on_postgres") else {
            return;
        };
        let test_db = TestDatabase::postgres(&server).await.unwrap();
        let db = Database::connect(&test_db.url).await.unwrap();
        db.migrate().await.unwrap();
        contract(&db.registry()).await;
        db.close().await.unwrap();
        test_db.drop_now().await.unwrap();
    }
}
