//! The composition root: builds every store and service from the config, once per process.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use oidc_core::{
    AccessTokens, Clock, Environment, EphemeralStore, KeyEncryptionKey, KeyPolicy, KeyRing, KeyService,
    ProviderMetadata, SystemClock,
};
use storage::{Database, MemoryEphemeralStore, RedisEphemeralStore};
use tenant_registry::{CachedRegistryStore, Registry, SecretHasher};

use account_service::{Accounts, PasswordHasher};

use crate::{
    config::Config,
    mail::{MailOutbox, Mailer},
    metrics::Metrics,
    pages::Pages,
    routes::Site,
};

/// Everything a request handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared parts of [`AppState`]; reachable only inside this crate.
pub struct Inner {
    pub(crate) config: Config,
    pub(crate) database: Database,
    pub(crate) ephemeral: Arc<dyn EphemeralStore>,
    pub(crate) keys: Arc<KeyService>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) access_tokens: AccessTokens,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Metrics,
    pub(crate) sites: Vec<Site>,
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) organisations: Arc<account_service::Organisations>,
    pub(crate) pages: Arc<Pages>,
    /// Durable, rotated refresh tokens.
    pub(crate) refresh_tokens: Arc<dyn oidc_core::RefreshTokenStore>,
    /// Derives pairwise subjects; from the KEK, so every node agrees.
    pub(crate) subject_key: [u8; 32],
    /// Keys the pairwise ids of organisations (a key of their own: never equal to a person's).
    pub(crate) organisation_key: [u8; 32],
    /// The keys of `private_key_jwt` clients.
    pub(crate) client_keys: crate::client_keys::ClientKeys,
    /// HTTP to clients' servers (JWKS, back-channel logout): short timeout, no redirects.
    pub(crate) outbound: reqwest::Client,
    /// The online ID function of each environment.
    pub(crate) eid: crate::flows::eid::EidServices,
    /// Renders and sends mails.
    pub(crate) mailer: Arc<Mailer>,
    /// The durable queue the account service's mails go through.
    pub(crate) mail_outbox: Arc<MailOutbox>,
    /// Set on SIGTERM: `/readyz` answers 503 and responses close their connection, while
    /// every request is still served (`http.drain_seconds`).
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    /// Whether this node is draining before it stops.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// How to treat the database schema at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply pending migrations.
    Apply,
    /// Refuse to start while migrations are pending.
    Require,
}

impl AppState {
    /// Connects the database and the ephemeral store, loads the key-encryption key and makes
    /// sure both environments have signing keys.
    pub async fn build(config: Config, migrations: Migrations) -> anyhow::Result<Self> {
        // Both dependencies are reached before anything (migrations included) touches them.
        let timeout = config.dependencies.timeout();
        let wait = Duration::from_secs(config.dependencies.startup_wait_seconds);
        let ephemeral: Arc<dyn EphemeralStore> = match &config.redis.url {
            Some(url) => {
                let (url, cluster, prefix) = (url.expose(), config.redis.cluster, &config.redis.key_prefix);
                let first = url.split(',').next().unwrap_or_default();
                let store = with_retries("redis", first, 6379, wait, || async {
                    Ok(RedisEphemeralStore::connect(url, cluster, prefix, timeout).await?)
                })
                .await
                .context("connecting to Redis (redis.url)")?;
                Arc::new(store)
            }
            None => Arc::new(MemoryEphemeralStore::new()),
        };
        let database = connect_database(&config, migrations).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let Secrets { ring, root } = during_startup(wait, || secrets(&config, &database, clock.as_ref())).await?;
        let keys = Arc::new(key_service(&config, &database, ring, clock.clone()));
        let cached = CachedRegistryStore::new(
            Arc::new(database.registry()),
            ephemeral.clone(),
            REGISTRY_CACHE_MAX_AGE,
            Duration::from_secs(config.dependencies.stale_client_seconds),
        );
        let registry = Arc::new(Registry::new(Arc::new(cached), secret_hasher(&root), clock.clone()));
        during_startup(wait, || async {
            for environment in Environment::ALL {
                keys.ensure_keys(environment)
                    .await
                    .with_context(|| format!("preparing the signing keys of the {environment} environment"))?;
            }
            Ok(())
        })
        .await?;
        let algorithms: Vec<String> = keys.algorithms().iter().map(|a| a.as_str().to_owned()).collect();
        let sites = Environment::ALL
            .into_iter()
            .map(|environment| {
                let issuer = config.environments.issuer(environment);
                Site::new(environment, issuer, ProviderMetadata::new(issuer, algorithms.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = Metrics::new().context("registering metrics")?;
        let access_tokens = AccessTokens::new(ephemeral.clone());
        let pages = Arc::new(
            Pages::new(&root, &config.accounts.accessibility_contact, &config.accounts.privacy_statement_version)
                .context("loading the page templates")?,
        );
        let mailer = Arc::new(Mailer::new(&config.mail, &config.environments, pages.clone())?);
        let mail_outbox = Arc::new(MailOutbox::new(Arc::new(database.mail_queue()), &root, clock.clone()));
        let accounts = Arc::new(Accounts::new(
            Arc::new(database.accounts()),
            ephemeral.clone(),
            mail_outbox.clone(),
            PasswordHasher::new(config.accounts.hashing())?,
            clock.clone(),
            config.accounts.service(&config.environments),
        ));
        let organisations = Arc::new(account_service::Organisations::new(
            Arc::new(database.organisations()),
            Arc::new(database.accounts()),
            mail_outbox.clone(),
            clock.clone(),
            config.accounts.organisation_trust_level,
        ));
        let refresh_tokens: Arc<dyn oidc_core::RefreshTokenStore> = Arc::new(database.refresh_tokens());
        let outbound = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("the HTTP client for calls to clients")?;
        let eid = crate::flows::eid::EidServices::build(
            &config.eid,
            [config.environments.issuer(Environment::Production), config.environments.issuer(Environment::Test)],
            &root,
            &ephemeral,
        )
        .await
        .context("setting up the eID services (eid.*)")?;
        let state = Self(Arc::new(Inner {
            config,
            database,
            ephemeral,
            keys,
            registry,
            access_tokens,
            clock,
            metrics,
            sites,
            accounts,
            organisations,
            pages,
            subject_key: root.derive("pairwise-subject"),
            organisation_key: root.derive("pairwise-organisation"),
            refresh_tokens,
            client_keys: crate::client_keys::ClientKeys::new(outbound.clone()),
            outbound,
            eid,
            mailer,
            mail_outbox,
            draining: Arc::default(),
        }));
        crate::demo::ensure(&state).await.context("creating the demo tenant and client")?;
        Ok(state)
    }

    /// The signing keys of both environments.
    pub fn keys(&self) -> &KeyService {
        &self.0.keys
    }

    /// The tenant registry.
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// The configuration this state was built from.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// What backs this node, for the start-up banner: database and ephemeral-store kinds.
    pub fn backends(&self) -> (&'static str, &'static str) {
        let ephemeral = if self.0.config.redis.url.is_some() { "redis" } else { "memory" };
        (self.0.database.backend_name(), ephemeral)
    }
}

/// Connects to the configured database (waiting for it up to `dependencies.startup_wait_seconds`)
/// and applies or checks the migrations.
pub(crate) async fn connect_database(config: &Config, migrations: Migrations) -> anyhow::Result<Database> {
    let url = config.database.url.expose();
    let settings = storage::ConnectSettings {
        timeout: config.dependencies.timeout(),
        sqlite_synchronous: config.database.sqlite_synchronous,
    };
    let wait = Duration::from_secs(config.dependencies.startup_wait_seconds);
    let database = with_retries("database", url, 5432, wait, || async {
        let database = Database::connect_with(url, settings).await?;
        database.ping().await?;
        Ok(database)
    })
    .await
    .context("connecting to the database (database.url)")?;
    let status = database.schema_status().await?;
    if !status.ahead.is_empty() {
        tracing::warn!(
            newer = %status.ahead.join(", "),
            "the database was migrated by a newer release; this one serves on it (migrations only expand \
             the schema while an older release may still run)"
        );
    }
    match migrations {
        Migrations::Apply => {
            let applied = database.migrate().await.context("applying database migrations")?;
            if applied > 0 {
                tracing::info!(applied, "applied database migrations");
            }
        }
        Migrations::Require => {
            anyhow::ensure!(
                status.pending.is_empty(),
                "the database has pending migrations ({}); run `servicekonto migrate` first",
                status.pending.join(", ")
            );
        }
    }
    Ok(database)
}

/// Runs start-up work on the database (the sealed secrets, the signing keys) until it succeeds:
/// a database that is busy or briefly away (a pool wait over `dependencies.timeout_ms`) is
/// waited for up to `wait`, as the connection itself is; any other failure (a wrong KEK) stops
/// the start at once.
async fn during_startup<T, F, Fut>(wait: Duration, mut work: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = StartupBackoff::new(wait);
    loop {
        let error = match work().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let transient = error.chain().any(|cause| {
            oidc_core::dependency_failure(cause).is_some()
                || matches!(cause.downcast_ref::<storage::DatabaseError>(), Some(storage::DatabaseError::Db(_)))
        });
        if !transient || backoff.exhausted() {
            return Err(error);
        }
        tracing::warn!(error = %format!("{error:#}"), retry_in_ms = backoff.delay_ms(), "start-up waits for the database");
        backoff.sleep().await;
    }
}

/// Waits between start-up attempts: 0.25 s doubling to 5 s, until `wait` has passed.
struct StartupBackoff {
    deadline: std::time::Instant,
    delay: Duration,
}

impl StartupBackoff {
    fn new(wait: Duration) -> Self {
        Self { deadline: std::time::Instant::now() + wait, delay: Duration::from_millis(250) }
    }

    /// Whether the next wait would end after the deadline.
    fn exhausted(&self) -> bool {
        std::time::Instant::now() + self.delay > self.deadline
    }

    fn delay_ms(&self) -> u64 {
        u64::try_from(self.delay.as_millis()).unwrap_or(u64::MAX)
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs `connect` until it succeeds or `wait` has passed, with backoff (0.25 s doubling to 5 s).
/// For a network URL, each attempt first opens a TCP connection to its host and port, so that
/// the log line of a failed attempt names them with the operating system's error ("Connection
/// refused") rather than a pool's time-out.
async fn with_retries<T, F, Fut>(
    dependency: &'static str,
    url: &str,
    default_port: u16,
    wait: Duration,
    mut connect: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let target = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "postgres" | "postgresql" | "redis" | "rediss"))
        .and_then(|u| {
            let host = u.host_str().filter(|h| !h.is_empty())?.trim_matches(['[', ']']).to_owned();
            Some((host, u.port().unwrap_or(default_port)))
        });
    let mut backoff = StartupBackoff::new(wait);
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        let result = match &target {
            Some((host, port)) => match tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
            {
                Ok(Ok(_)) => connect().await,
                Ok(Err(e)) => Err(anyhow::Error::new(e)),
                Err(_) => Err(anyhow::anyhow!("no answer within 2 s")),
            },
            None => connect().await,
        };
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let (host, port) = target.clone().map_or((String::new(), 0), |(h, p)| (h, p));
        if backoff.exhausted() {
            anyhow::bail!("{dependency} at {host}:{port} not reachable after {attempt} attempts: {error:#}");
        }
        tracing::warn!(dependency, %host, port, attempt, error = %format!("{error:#}"), retry_in_ms = backoff.delay_ms(), "dependency not reachable at start");
        backoff.sleep().await;
    }
}

/// The configured key-encryption key, or the one in `keys.kek_path` (created on first start).
pub(crate) fn key_encryption_key(config: &Config) -> anyhow::Result<KeyEncryptionKey> {
    match &config.keys.kek {
        Some(kek) => KeyEncryptionKey::from_base64(kek.expose()).map_err(anyhow::Error::msg),
        None => load_or_create_kek(&config.keys.kek_path),
    }
}

/// The key-encryption keys of `config`: `keys.kek` (or the file at `keys.kek_path`) and, during
/// a KEK rotation, `keys.previous_kek`.
pub(crate) fn key_ring(config: &Config) -> anyhow::Result<KeyRing> {
    let previous = match &config.keys.previous_kek {
        Some(kek) => {
            Some(KeyEncryptionKey::from_base64(kek.expose()).map_err(|e| anyhow::anyhow!("keys.previous_kek: {e}"))?)
        }
        None => None,
    };
    Ok(KeyRing::new(key_encryption_key(config)?, previous))
}

/// What the key-encryption keys protect: the ring itself (signing keys are sealed with it) and
/// the deployment's derivation root, from which every other subkey comes (pairwise subjects,
/// client-secret hashes, card pseudonyms, the mail queue's and the pages' keys).
pub(crate) struct Secrets {
    pub(crate) ring: KeyRing,
    pub(crate) root: KeyEncryptionKey,
}

/// The name of the derivation root in the `sealed_secrets` table, also its sealing context.
pub(crate) const DERIVATION_ROOT: &str = "derivation-root";

/// Loads [`Secrets`]. The first node of a deployment stores its KEK as the derivation root, so
/// that a deployment from before the root existed derives exactly what it derived from the KEK;
/// from then on the KEK can be rotated without changing anything derived.
pub(crate) async fn secrets(config: &Config, database: &Database, clock: &dyn Clock) -> anyhow::Result<Secrets> {
    let ring = key_ring(config)?;
    let store = database.sealed_secrets();
    let sealed = match store.get(DERIVATION_ROOT).await? {
        Some(sealed) => sealed,
        None => {
            let now = clock.now().unix_timestamp();
            store.insert_if_absent(DERIVATION_ROOT, ring.seal_key(DERIVATION_ROOT, ring.current()), now).await?;
            store.get(DERIVATION_ROOT).await?.context("the derivation root was stored but cannot be read back")?
        }
    };
    let root = ring.open_key(DERIVATION_ROOT, &sealed).context(
        "the database's derivation root does not open with keys.kek (nor keys.previous_kek): this is not the \
         key-encryption key this database was sealed with",
    )?;
    Ok(Secrets { ring, root })
}

/// The key service on `database`.
pub(crate) fn key_service(config: &Config, database: &Database, ring: KeyRing, clock: Arc<dyn Clock>) -> KeyService {
    let seconds = Duration::from_secs;
    KeyService::new(
        Arc::new(database.signing_keys()),
        ring,
        clock,
        KeyPolicy {
            algorithms: config.keys.algorithms(),
            activation_delay: seconds(config.keys.activation_delay_seconds),
            retention: seconds(config.keys.retention_seconds),
            refresh_interval: seconds(config.keys.refresh_interval_seconds),
        },
    )
}

/// How long a node may serve a cached client or tenant even without an invalidation.
const REGISTRY_CACHE_MAX_AGE: Duration = Duration::from_secs(30);

/// Client secrets are hashed under a subkey of the derivation root, so every node agrees without
/// another secret to distribute.
fn secret_hasher(root: &KeyEncryptionKey) -> SecretHasher {
    SecretHasher::new(root.derive("client-secret-hash"))
}

/// The tenant registry on `database` without the cache, for the command line: it only creates
/// objects, which no node has cached.
pub(crate) fn uncached_registry(database: &Database, root: &KeyEncryptionKey, clock: Arc<dyn Clock>) -> Registry {
    Registry::new(Arc::new(database.registry()), secret_hasher(root), clock)
}

/// Reads the KEK file, or creates it (owner-only) when it does not exist: the embedded mode's
/// way to get going without setup. Production sets `keys.kek` from a secret store instead.
fn load_or_create_kek(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    if path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return KeyEncryptionKey::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let kek = KeyEncryptionKey::generate();
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    }
    write_owner_only(path, &kek.to_base64()).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(path = %path.display(), "generated a new key-encryption key; back it up, without it the signing keys cannot be read");
    Ok(kek)
}

#[cfg(unix)]
fn write_owner_only(path: &Path, content: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(content.as_bytes())
}

#[cfg(not(unix))]
fn write_owner_only(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, content)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn start_up_waits_out_a_busy_database_but_not_a_wrong_key() {
        let calls = AtomicU32::new(0);
        let busy = || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "pool timed out");
                Err(anyhow::Error::new(oidc_core::DependencyError::new(oidc_core::Dependency::Database, timeout)))
                    .context("preparing the signing keys")
            } else {
                Ok(7)
            }
        };
        assert_eq!(during_startup(Duration::from_secs(60), busy).await.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "two waits, then success");

        let wrong = AtomicU32::new(0);
        let result: anyhow::Result<()> = during_startup(Duration::from_secs(60), || async {
            wrong.fetch_add(1, Ordering::SeqCst);
            Err(anyhow::anyhow!("the derivation root does not open with keys.kek"))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(wrong.load(Ordering::SeqCst), 1, "no retry for what waiting cannot fix");
    }
}
