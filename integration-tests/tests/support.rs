//! Starting and stopping real servers for tests.

use std::{net::SocketAddr, time::Duration};

use oidc_core::KeyEncryptionKey;
use server::{AppState, Config, Migrations, Secret};
use storage::testing::{TestDatabase, backend_url};
use tokio::{sync::oneshot, task::JoinHandle};

/// Where a test's server keeps its data.
pub struct Backends {
    pub database: TestDatabase,
    pub redis_url: Option<String>,
    /// `redis_url` lists the seed nodes of a Redis Cluster.
    pub redis_cluster: bool,
    pub redis_prefix: String,
    pub kek: KeyEncryptionKey,
    _dir: tempfile::TempDir,
}

impl Backends {
    /// PostgreSQL and Redis when the CI variables are set, else SQLite and memory.
    pub async fn from_env() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => TestDatabase::postgres(&url).await.unwrap(),
            _ => TestDatabase::sqlite(dir.path()),
        };
        let redis_url = std::env::var("TEST_REDIS_URL").ok().filter(|u| !u.is_empty());
        Self::new(database, redis_url, dir)
    }

    /// PostgreSQL and Redis, or `None` (reported as a skip, or a failure in CI) when not configured.
    pub async fn shared(test: &str) -> Option<Self> {
        let database_url = backend_url("TEST_DATABASE_URL", test)?;
        let redis_url = backend_url("TEST_REDIS_URL", test)?;
        let database = TestDatabase::postgres(&database_url).await.unwrap();
        Some(Self::new(database, Some(redis_url), tempfile::tempdir().unwrap()))
    }

    fn new(database: TestDatabase, redis_url: Option<String>, dir: tempfile::TempDir) -> Self {
        Self {
            database,
            redis_url,
            redis_cluster: false,
            redis_prefix: format!("sk-it:{}:", uuid::Uuid::new_v4().simple()),
            kek: KeyEncryptionKey::generate(),
            _dir: dir,
        }
    }

    /// The config of a node on `addr` using these backends.
    pub fn config(&self, addr: SocketAddr) -> Config {
        let mut config = Config::embedded(addr);
        config.database.url = Secret::from(self.database.url.as_str());
        config.redis.url = self.redis_url.as_deref().map(Secret::from);
        config.redis.cluster = self.redis_cluster;
        config.redis.key_prefix = self.redis_prefix.clone();
        config.keys.kek = Some(Secret::from(self.kek.to_base64().as_str()));
        config.http.shutdown_grace_seconds = 5;
        config.mail.outbox_dir = self._dir.path().join("outbox");
        config
    }

    pub async fn drop_now(self) {
        self.database.drop_now().await.unwrap();
    }
}

/// A running server.
pub struct TestServer {
    pub base_url: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Binds 127.0.0.1:0, lets `customize` adjust the config, builds the real app and serves it.
    pub async fn start(backends: &Backends, customize: impl FnOnce(&mut Config)) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = server::init_telemetry(&Config::default());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = backends.config(addr);
        customize(&mut config);
        config.validate().unwrap();
        let state = AppState::build(config, Migrations::Apply).await.unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server::run(
            listener,
            async {
                let _ = rx.await;
            },
            state.clone(),
        ));
        Self { base_url: format!("http://{addr}"), state, shutdown: Some(tx), task: Some(task) }
    }

    /// Stops accepting, lets in-flight requests finish, waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
        }
    }
}

/// Two nodes on `backends` behind one issuer (node A's), as behind a load balancer, both
/// delivering mail to `smtp_url`.
pub async fn two_nodes(backends: &Backends, smtp_url: &str) -> (TestServer, TestServer) {
    let a = TestServer::start(backends, |c| c.mail.smtp_url = Some(smtp_url.into())).await;
    let issuer_a = a.state.config().environments.clone();
    let b = TestServer::start(backends, |c| {
        c.environments = issuer_a;
        c.mail.smtp_url = Some(smtp_url.into());
    })
    .await;
    (a, b)
}

/// A first-party code-flow client (no consent page) of the demo authority in the test
/// environment, with `secret`, `redirect_uri` and scope `openid`, adjusted by `customize`.
pub async fn first_party_client(
    server: &TestServer,
    client_id: &str,
    secret: &str,
    redirect_uri: &str,
    customize: impl FnOnce(&mut tenant_registry::ClientSettings),
) {
    use tenant_registry::{Actor, ClientSecret, ClientSettings, GrantType, OperatorFlags};
    let registry = server.state.registry();
    let tenant = registry.find_tenant_by_slug("demo-kommune").await.unwrap().unwrap();
    let mut settings = ClientSettings::confidential("Portal", vec![url::Url::parse(redirect_uri).unwrap()]);
    settings.grant_types = std::collections::BTreeSet::from([GrantType::AuthorizationCode]);
    settings.scopes = std::collections::BTreeSet::from([oidc_core::Scope::parse("openid").unwrap()]);
    customize(&mut settings);
    registry
        .create_client_with_id(
            &Actor::System("test"),
            tenant.id,
            oidc_core::Environment::Test,
            oidc_core::ClientId::parse(client_id).unwrap(),
            settings,
            OperatorFlags { first_party: true, admin_role: None },
            Some(ClientSecret::from_configured(secret)),
        )
        .await
        .unwrap();
}

/// A tenant with `slug` and defaults for everything else.
pub async fn tenant(server: &TestServer, slug: &str) -> tenant_registry::Tenant {
    server
        .state
        .registry()
        .create_tenant(
            &tenant_registry::Actor::System("test"),
            tenant_registry::NewTenant {
                slug: slug.into(),
                name: slug.into(),
                contact_email: format!("it@{slug}.example"),
                branding: tenant_registry::Branding { display_name: slug.into(), logo_url: None },
                allowed_claims: std::collections::BTreeSet::new(),
                min_trust_level: oidc_core::TrustLevel::Normal,
                sector: None,
            },
        )
        .await
        .unwrap()
}

/// An HTTP client as relying parties configure it for openidconnect: no redirects followed.
pub fn http_client() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
