//! The one typed configuration: defaults (the embedded mode) → TOML file → `SERVICEKONTO_*`
//! environment variables (`__` nests, a `_FILE` suffix reads the value from a file), then
//! [`Config::validate`] reports every problem at once.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use oidc_core::{Environment, KeyEncryptionKey, SigningAlgorithm, TrustLevel};
use serde::{Deserialize, Serialize};

const ENV_PREFIX: &str = "SERVICEKONTO_";
const FILE_SUFFIX: &str = "_FILE";

/// A configured secret: never printed, serialised as `[redacted]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

/// The whole configuration of a servicekonto node.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The two environments and their issuers.
    pub environments: EnvironmentsConfig,
    /// The relational database.
    pub database: DatabaseConfig,
    /// Redis for short-lived state; without it, process memory (single node only).
    pub redis: RedisConfig,
    /// Signing keys and their rotation.
    pub keys: KeysConfig,
    /// Logging.
    pub log: LogConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// Demo data for trying the server out.
    pub demo: DemoConfig,
    /// Outgoing mail.
    pub mail: MailConfig,
    /// Citizen accounts: lifetimes, sessions, password hashing.
    pub accounts: AccountsConfig,
    /// The online ID function, per environment.
    pub eid: EidConfig,
    /// How the node behaves when the database or Redis fails.
    pub dependencies: DependenciesConfig,
    /// Token behaviour beyond each client's lifetimes.
    pub tokens: TokensConfig,
    /// Where Prometheus reads the metrics.
    pub metrics: MetricsConfig,
    /// OpenTelemetry traces.
    pub traces: TracesConfig,
    /// The SAML 2.0 identity provider.
    pub saml: SamlConfig,
}

/// `[saml]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamlConfig {
    /// Seconds two clocks may differ: an AuthnRequest's `IssueInstant` may lie this far ahead,
    /// or this much beyond its five minutes in the past (default 60, at most 300).
    pub clock_skew_seconds: u64,
    /// Seconds an assertion is valid for (`NotOnOrAfter`; default 300, 60 to 600).
    pub assertion_lifetime_seconds: u64,
}

impl Default for SamlConfig {
    fn default() -> Self {
        Self { clock_skew_seconds: 60, assertion_lifetime_seconds: 300 }
    }
}

/// `[traces]`: OpenTelemetry traces over OTLP, off unless an endpoint is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self { otlp_endpoint: None, service_name: "servicekonto".to_owned() }
    }
}

/// `[metrics]`: `/metrics` is for the operator's Prometheus, never for the public.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A listener of its own for `/metrics` (e.g. `0.0.0.0:9464` inside a cluster network); the
    /// main listener then has no `/metrics`. Unset: `/metrics` on the main listener, answered
    /// only with `bearer_token`, or without a token to loopback peers whose request did not
    /// come through a proxy (`X-Forwarded-For`).
    pub bind: Option<String>,
    /// Bearer token Prometheus sends (`authorization.credentials_file`); prefer the `_FILE`
    /// variant.
    pub bearer_token: Option<Secret>,
}

/// `[dependencies]`: failing fast and degrading gracefully.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DependenciesConfig {
    /// Milliseconds a request waits for the database (a pooled connection, or the answer to a
    /// batched sign-in statement, queue included) or for a Redis command before it is answered
    /// with 503 `temporarily_unavailable`.
    pub timeout_ms: u64,
    /// Milliseconds after which a request is answered with 503 whatever it waits for: the
    /// backstop for a query that hangs after it got its connection.
    pub request_deadline_ms: u64,
    /// Seconds `Retry-After` asks clients to wait after a 503.
    pub retry_after_seconds: u64,
    /// Seconds a node keeps authenticating clients from its cache while the database is down
    /// (secrets rotated meanwhile take effect on recovery).
    pub stale_client_seconds: u64,
    /// Seconds `serve` waits at start for the database and Redis (retrying with backoff)
    /// before it gives up and exits non-zero.
    pub startup_wait_seconds: u64,
}

impl Default for DependenciesConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 1000,
            request_deadline_ms: 5000,
            retry_after_seconds: 5,
            stale_client_seconds: 300,
            startup_wait_seconds: 60,
        }
    }
}

impl DependenciesConfig {
    /// [`DependenciesConfig::timeout_ms`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `[tokens]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Seconds during which a just-rotated refresh token may be presented once more by its
    /// client, as long as its successor was never used (the answer with the successor may have
    /// been lost). 0 (default): every second use is a replay and revokes the family (RFC 9700
    /// §4.14.2); a grace trades some of that detection for robustness on bad networks.
    pub refresh_reuse_grace_seconds: u64,
}

/// `[eid]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EidConfig {
    /// `[eid.production]`
    pub production: EidEnvironmentConfig,
    /// `[eid.test]`
    pub test: EidEnvironmentConfig,
}

impl Default for EidConfig {
    fn default() -> Self {
        Self {
            production: EidEnvironmentConfig { service: EidService::None, ..EidEnvironmentConfig::default() },
            test: EidEnvironmentConfig::default(),
        }
    }
}

impl EidConfig {
    /// The settings of `environment`.
    pub fn of(&self, environment: Environment) -> &EidEnvironmentConfig {
        match environment {
            Environment::Production => &self.production,
            Environment::Test => &self.test,
        }
    }
}

/// Which eID-Server an environment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EidService {
    /// No eID: the pages offer only username and password.
    None,
    /// The built-in test eID service with the test identities below; refused in production.
    Test,
    /// A real eID-Server over the BSI TR-03130 eID-Interface.
    Tr03130,
    /// Our own test eID-Server (`eid-test-server`): the real AusweisApp2 authenticates against
    /// it with its Simulator card; refused in production.
    TestServer,
}

/// One environment's eID settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EidEnvironmentConfig {
    /// `none`, `test`, `tr03130` or `test_server`.
    pub service: EidService,
    /// test_server: where its PAOS endpoint (TLS 1.2 RSA-PSK) listens.
    pub test_server_listen: std::net::SocketAddr,
    /// test_server: the PAOS address AusweisApp2 is sent to, when not `https://{listen}/paos`
    /// (a TCP balancer in front of several nodes).
    pub test_server_address: Option<String>,
    /// TR-03130: the eID-Interface endpoint (https).
    pub server_url: Option<String>,
    /// TR-03130: our client certificate and its key in one PEM file.
    pub client_identity_file: Option<PathBuf>,
    /// TR-03130: CA certificates (PEM) the eID-Server's TLS certificate must chain to; empty
    /// means the system's roots.
    pub trust_anchor_files: Vec<PathBuf>,
    /// The test service: who can be "read from a card". Default: the public specimen card.
    pub test_identities: Vec<eid_bridge::TestIdentity>,
}

impl Default for EidEnvironmentConfig {
    fn default() -> Self {
        Self {
            service: EidService::Test,
            test_server_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 24728)),
            test_server_address: None,
            server_url: None,
            client_identity_file: None,
            trust_anchor_files: Vec::new(),
            test_identities: vec![eid_bridge::TestIdentity::specimen()],
        }
    }
}

/// `[mail]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The sender, `Name <address>`.
    pub from: String,
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465` (TLS), with
    /// `user:password@` as needed. Unset: every mail is written to `outbox_dir` instead.
    pub smtp_url: Option<Secret>,
    /// Where mails go without SMTP: one `.eml` file each.
    pub outbox_dir: PathBuf,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: "Servicekonto <noreply@servicekonto.invalid>".to_owned(),
            smtp_url: None,
            outbox_dir: PathBuf::from("data/outbox"),
        }
    }
}

/// `[accounts]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Hours an activation link stays valid.
    pub activation_link_hours: u64,
    /// Days after which accounts never activated are deleted.
    pub purge_unactivated_after_days: u64,
    /// Days without a login after which the citizen is reminded that the account will be deleted.
    pub inactive_reminder_after_days: u64,
    /// Days without a login after which the account is deleted; 0: never.
    pub inactive_deletion_after_days: u64,
    /// Minutes a password-reset link stays valid.
    pub reset_link_minutes: u64,
    /// Hours a confirmation link for a new e-mail address stays valid.
    pub email_change_link_hours: u64,
    /// Minutes without a request after which a session ends.
    pub session_idle_minutes: u64,
    /// Hours after login after which a session ends however active.
    pub session_absolute_hours: u64,
    /// Failed logins per username before each further attempt waits.
    pub free_failed_logins: i64,
    /// Failed logins per client address before each further attempt waits.
    pub free_failed_logins_per_ip: i64,
    /// Username availability checks per client address and hour at registration.
    pub username_checks_per_hour: i64,
    /// The version label of the privacy statement citizens accept at registration.
    pub privacy_statement_version: String,
    /// Contact for accessibility feedback, shown on the accessibility statement.
    pub accessibility_contact: String,
    /// argon2id memory in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// argon2id passes (OWASP: 2).
    pub argon2_iterations: u32,
    /// argon2id lanes (OWASP: 1).
    pub argon2_parallelism: u32,
    /// A passkey added in a session opened with the ID card, on an account the card confirmed,
    /// logs in at `substantiell` instead of `normal` (never `hoch`). Off: see `docs/security.md`,
    /// "Passkeys".
    pub passkey_substantial_after_card: bool,
    /// The trust level a citizen's account needs to create an organisation (`hoch`: the data
    /// were confirmed with the ID card).
    pub organisation_trust_level: TrustLevel,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            activation_link_hours: 72,
            purge_unactivated_after_days: 7,
            inactive_reminder_after_days: 3 * 365,
            inactive_deletion_after_days: 3 * 365 + 91,
            reset_link_minutes: 60,
            email_change_link_hours: 24,
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            free_failed_logins: 5,
            free_failed_logins_per_ip: 50,
            username_checks_per_hour: 30,
            privacy_statement_version: "2026-11".to_owned(),
            accessibility_contact: "barrierefreiheit@servicekonto.invalid".to_owned(),
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            passkey_substantial_after_card: false,
            organisation_trust_level: TrustLevel::Hoch,
        }
    }
}

impl AccountsConfig {
    /// The argon2id parameters.
    pub fn hashing(&self) -> account_service::HashingParams {
        account_service::HashingParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }

    /// The account service's policies; passkeys are bound to the origins of `environments`'
    /// issuers.
    pub fn service(&self, environments: &EnvironmentsConfig) -> account_service::AccountsConfig {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        account_service::AccountsConfig {
            activation_ttl: minutes(self.activation_link_hours * 60),
            pending_max_age: minutes(self.purge_unactivated_after_days * 24 * 60),
            reset_ttl: minutes(self.reset_link_minutes),
            email_change_ttl: minutes(self.email_change_link_hours * 60),
            sessions: account_service::SessionPolicy {
                idle_timeout: minutes(self.session_idle_minutes),
                absolute_timeout: minutes(self.session_absolute_hours * 60),
            },
            throttle: account_service::ThrottlePolicy {
                free_failures_per_account: self.free_failed_logins,
                free_failures_per_ip: self.free_failed_logins_per_ip,
                username_checks_per_ip: self.username_checks_per_hour,
                ..account_service::ThrottlePolicy::default()
            },
            inactivity: (self.inactive_deletion_after_days > 0).then(|| account_service::InactivityPolicy {
                remind_after: minutes(self.inactive_reminder_after_days * 24 * 60),
                delete_after: minutes(self.inactive_deletion_after_days * 24 * 60),
            }),
            relying_parties: [Environment::Production, Environment::Test]
                .into_iter()
                .filter_map(|environment| {
                    let issuer = url::Url::parse(environments.issuer(environment)).ok()?;
                    let origin = url::Url::parse(&issuer.origin().ascii_serialization()).ok()?;
                    Some(account_service::RelyingParty { environment, origin })
                })
                .collect(),
            passkey_trust: if self.passkey_substantial_after_card {
                account_service::PasskeyTrust::SubstantialAfterCard
            } else {
                account_service::PasskeyTrust::Normal
            },
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve Swagger UI at `/admin/api/v1/docs`.
    pub swagger_ui: bool,
}

/// `[demo]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Create a demo tenant and a demo client in the test environment at start. Only with a
    /// loopback test issuer: the demo secret is public.
    pub enabled: bool,
    /// The demo client's id.
    pub client_id: String,
    /// The demo client's secret (printed at start).
    pub client_secret: Secret,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            client_id: "demo-client".to_owned(),
            client_secret: Secret::from("demo-secret-only-for-local-use"),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address and port to listen on.
    pub bind: String,
    /// Seconds between SIGTERM and closing the listener, during which `/readyz` answers 503
    /// while every request is still served: the time a load balancer or Kubernetes needs to
    /// stop sending new requests here (a few probe periods).
    pub drain_seconds: u64,
    /// Seconds that in-flight requests get to finish once the listener is closed.
    pub shutdown_grace_seconds: u64,
    /// Reverse proxies whose `X-Forwarded-For` is believed: the citizen's address (for login
    /// throttling) is then the last one in that header not itself a trusted proxy. Empty: the
    /// TCP peer is the citizen.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Largest request body of the citizen pages and the OIDC endpoints, in bytes; larger ones
    /// are refused with 413 before they are read.
    pub body_limit_bytes: usize,
    /// Largest request body of the admin API, in bytes.
    pub admin_body_limit_bytes: usize,
    /// Connections served at once; more wait in the kernel's backlog. Keep it below the
    /// process's file-descriptor limit (raised to its hard limit at start).
    pub max_connections: usize,
    /// Seconds a new connection has to deliver its first request head (slowloris).
    pub header_timeout_seconds: u64,
    /// Seconds a connection stays open without a byte read or written once its first request
    /// head is in: an idle keep-alive connection, or a request that stalls.
    pub keep_alive_seconds: u64,
    /// `Strict-Transport-Security: max-age` on the hosts of https issuers.
    pub hsts_max_age_seconds: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            drain_seconds: 0,
            shutdown_grace_seconds: 20,
            trusted_proxies: Vec::new(),
            body_limit_bytes: 64 * 1024,
            admin_body_limit_bytes: 1024 * 1024,
            max_connections: 8192,
            header_timeout_seconds: 10,
            keep_alive_seconds: 60,
            hsts_max_age_seconds: 31_536_000,
        }
    }
}

/// `[environments]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentsConfig {
    /// The one address citizens and clients reach this service at, e.g. `https://konto.example`:
    /// the production issuer, with the test issuer at its path `/test`. Unset: `http://` +
    /// `http.bind` when that is a loopback address (the embedded mode).
    pub public_url: Option<String>,
    /// `[environments.production]`
    pub production: EnvironmentConfig,
    /// `[environments.test]`
    pub test: EnvironmentConfig,
}

impl EnvironmentsConfig {
    /// The issuer URL of `environment` (after [`Config::load`], always set).
    pub fn issuer(&self, environment: Environment) -> &str {
        match environment {
            Environment::Production => &self.production.issuer,
            Environment::Test => &self.test.issuer,
        }
    }

    /// Fills the issuers not set one by one from `public_url`, or from the loopback `bind`.
    fn derive_issuers(&mut self, bind: &str) {
        let base = match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => match bind.parse::<SocketAddr>() {
                Ok(addr) if addr.ip().is_loopback() => format!("http://{addr}"),
                // Left empty: validation asks for `public_url`.
                _ => return,
            },
        };
        if self.production.issuer.is_empty() {
            self.production.issuer = base.clone();
        }
        if self.test.issuer.is_empty() {
            self.test.issuer = format!("{base}/test");
        }
    }
}

/// One environment.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentConfig {
    /// The issuer URL: `https://` (plain `http://` only on a loopback host), no trailing slash,
    /// no query or fragment. Requests are routed to an environment by its host and path. Unset:
    /// derived from `environments.public_url`.
    pub issuer: String,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` (embedded) or `postgres://user:password@host/db`.
    pub url: Secret,
    /// Whether `serve` applies pending migrations at start.
    pub run_migrations: bool,
    /// SQLite only: `normal` (default) makes every commit survive a crash of the process and
    /// syncs at checkpoints; `full` syncs every commit, so it survives a power loss too, at
    /// one `fsync` per write. PostgreSQL commits as its server is configured.
    pub sqlite_synchronous: storage::SqliteSynchronous,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::from("sqlite://data/servicekonto.db?mode=rwc"),
            run_migrations: true,
            sqlite_synchronous: storage::SqliteSynchronous::default(),
        }
    }
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL; unset means the in-memory store.
    pub url: Option<Secret>,
    /// Redis Cluster: `url` lists the seed nodes, separated by commas.
    pub cluster: bool,
    /// Prefix of every key this deployment writes.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: None, cluster: false, key_prefix: "sk:".to_owned() }
    }
}

/// `[keys]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The key-encryption key, base64 of 32 bytes. Unset: read from `kek_path`, which is
    /// generated on first start.
    pub kek: Option<Secret>,
    /// Where the key-encryption key lives when `kek` is unset.
    pub kek_path: PathBuf,
    /// During a KEK rotation only: the previous key-encryption key, which still opens what it
    /// sealed (and seals nothing) until `servicekonto keys rotate-kek` has re-sealed everything.
    pub previous_kek: Option<Secret>,
    /// Algorithms to keep keys for; the first signs ID tokens by default.
    pub algorithms: Vec<String>,
    /// Seconds a rotated-in key is published before it signs.
    pub activation_delay_seconds: u64,
    /// Seconds a replaced key stays published: at least the longest token lifetime.
    pub retention_seconds: u64,
    /// Seconds between re-reads of the key table on each node.
    pub refresh_interval_seconds: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            kek: None,
            kek_path: PathBuf::from("keys/kek"),
            previous_kek: None,
            algorithms: vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()],
            activation_delay_seconds: 24 * 3600,
            retention_seconds: 30 * 24 * 3600,
            refresh_interval_seconds: 60,
        }
    }
}

impl KeysConfig {
    /// The configured algorithms, parsed (validation has checked them).
    pub fn algorithms(&self) -> Vec<SigningAlgorithm> {
        self.algorithms.iter().filter_map(|a| a.parse().ok()).collect()
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,server=debug`; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, filter: "info".to_owned() }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or value could not be read or has the wrong type or name.
    #[error("configuration cannot be read: {0}")]
    Load(String),
    /// Values that were read but make no sense; all of them.
    #[error("configuration is invalid:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The environment variable naming the config file.
pub(crate) const CONFIG_FILE_VARIABLE: &str = "SERVICEKONTO_CONFIG";

impl Config {
    /// Loads defaults, then `file` (if given; it must exist), then the process environment,
    /// and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment variables given.
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let config = Self::read(file, vars)?;
        config.validate()?;
        Ok(config)
    }

    /// As [`Config::load_from`] without the validation: what `config check` shows beside the
    /// problems. Issuers not set one by one are derived.
    pub fn read(file: Option<&Path>, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        // Defaults come from `#[serde(default)]`; secrets must not pass through `Serialize`,
        // which redacts them.
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Load(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // `SERVICEKONTO_X__Y=v` sets `x.y` (parsed as figment's `Env` parses values);
        // `SERVICEKONTO_X__Y_FILE=/run/secrets/y` sets `x.y` to the file's content as text, so
        // secrets need not sit in the environment.
        // `SERVICEKONTO_CONFIG` names the file (the command line's `--config`); it is no key.
        // Sorted, so that the same variables give the same configuration in any order.
        let settings: BTreeMap<String, String> =
            vars.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_FILE_VARIABLE).collect();
        // `X` and `X_FILE` together would leave the choice to chance (an image's default `X` and
        // the operator's `X_FILE`): refused, naming both.
        let both: Vec<String> = settings
            .keys()
            .filter_map(|name| name.strip_suffix(FILE_SUFFIX).filter(|plain| settings.contains_key(*plain)))
            .map(|plain| format!("{plain} and {plain}{FILE_SUFFIX} are both set; set one of them"))
            .collect();
        if !both.is_empty() {
            return Err(ConfigError::Load(both.join("; ")));
        }
        for (name, value) in settings {
            let path = name[ENV_PREFIX.len()..].to_lowercase();
            figment = match path.strip_suffix(&FILE_SUFFIX.to_lowercase()) {
                Some(path) => {
                    let content = std::fs::read_to_string(&value)
                        .map_err(|e| ConfigError::Load(format!("{name}: cannot read {value}: {e}")))?;
                    let content = content.trim_end_matches(['\r', '\n']).to_owned();
                    figment.merge(Serialized::default(&path.replace("__", "."), content))
                }
                None => {
                    let parsed: figment::value::Value = value.parse().unwrap_or_else(|never| match never {});
                    figment.merge(Serialized::default(&path.replace("__", "."), parsed))
                }
            };
        }
        let mut config: Config = figment.extract().map_err(|e| ConfigError::Load(join_figment_errors(e)))?;
        config.environments.derive_issuers(&config.http.bind);
        Ok(config)
    }

    /// Checks what types cannot: URLs, algorithms, timings. Reports every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.http.bind.parse::<SocketAddr>().is_err() {
            problems.push(format!("http.bind {:?} is not an address:port", self.http.bind));
        }
        if let Some(url) = &self.environments.public_url
            && let Err(problem) = check_issuer(url.trim_end_matches('/'))
        {
            problems.push(format!("environments.public_url {url:?}: {problem}"));
        }
        let mut issuers = BTreeSet::new();
        for environment in Environment::ALL {
            let issuer = self.environments.issuer(environment);
            if issuer.is_empty() {
                problems.push(format!(
                    "environments.{environment}.issuer is not set: set environments.public_url (http.bind {:?} is \
                     not a loopback address, so the public address cannot be guessed)",
                    self.http.bind
                ));
                continue;
            }
            if let Err(problem) = check_issuer(issuer) {
                problems.push(format!("environments.{environment}.issuer {issuer:?}: {problem}"));
            }
            if !issuers.insert(issuer) {
                problems.push("environments.production.issuer and environments.test.issuer must differ".to_owned());
            }
        }
        let db = self.database.url.expose();
        if !["sqlite:", "postgres:", "postgresql:"].iter().any(|scheme| db.starts_with(scheme)) {
            problems.push("database.url must start with sqlite:, postgres: or postgresql:".to_owned());
        }
        if let Some(url) = &self.redis.url {
            let nodes: Vec<&str> = url.expose().split(',').map(str::trim).collect();
            if nodes.len() > 1 && !self.redis.cluster {
                problems.push("redis.url lists several nodes but redis.cluster is false".to_owned());
            }
            if nodes.iter().any(|n| !(n.starts_with("redis://") || n.starts_with("rediss://"))) {
                problems.push("redis.url must be redis:// or rediss:// URLs".to_owned());
            }
        }
        if let Some(kek) = &self.keys.kek
            && let Err(problem) = KeyEncryptionKey::from_base64(kek.expose())
        {
            problems.push(format!("keys.kek: {problem}"));
        }
        if let Some(kek) = &self.keys.previous_kek
            && let Err(problem) = KeyEncryptionKey::from_base64(kek.expose())
        {
            problems.push(format!("keys.previous_kek: {problem}"));
        }
        if self.keys.algorithms.is_empty() {
            problems.push("keys.algorithms must name at least one algorithm".to_owned());
        }
        let mut seen = BTreeSet::new();
        for algorithm in &self.keys.algorithms {
            if algorithm.parse::<SigningAlgorithm>().is_err() {
                problems.push(format!("keys.algorithms: {algorithm:?} is not one of RS256, PS256, ES256, EdDSA"));
            }
            if !seen.insert(algorithm) {
                problems.push(format!("keys.algorithms names {algorithm:?} twice"));
            }
        }
        if self.keys.activation_delay_seconds < self.keys.refresh_interval_seconds {
            problems.push(
                "keys.activation_delay_seconds must be at least keys.refresh_interval_seconds, so every node \
                 publishes a key before any node signs with it"
                    .to_owned(),
            );
        }
        if self.demo.enabled {
            let loopback = url::Url::parse(&self.environments.test.issuer)
                .is_ok_and(|u| matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")));
            if !loopback {
                problems.push(
                    "demo.enabled needs a loopback test issuer (its secret is public); set demo.enabled = false"
                        .to_owned(),
                );
            }
            if oidc_core::ClientId::parse(&self.demo.client_id).is_none() {
                problems.push("demo.client_id must be 1 to 255 visible ASCII characters".to_owned());
            }
            if self.demo.client_secret.expose().len() < 16 {
                problems.push("demo.client_secret must have at least 16 characters".to_owned());
            }
        }
        if let Some(url) = &self.mail.smtp_url
            && !["smtp://", "smtps://"].iter().any(|scheme| url.expose().starts_with(scheme))
        {
            problems.push("mail.smtp_url must be an smtp:// or smtps:// URL".to_owned());
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(format!("mail.from {:?} is not a mailbox like `Name <address>`", self.mail.from));
        }
        if let Err(e) = account_service::PasswordHasher::new(self.accounts.hashing()) {
            problems.push(format!("accounts.argon2_*: {e}"));
        }
        let a = &self.accounts;
        for (name, value) in [
            ("activation_link_hours", a.activation_link_hours),
            ("purge_unactivated_after_days", a.purge_unactivated_after_days),
            ("reset_link_minutes", a.reset_link_minutes),
            ("email_change_link_hours", a.email_change_link_hours),
            ("session_idle_minutes", a.session_idle_minutes),
            ("session_absolute_hours", a.session_absolute_hours),
        ] {
            if value == 0 {
                problems.push(format!("accounts.{name} must be at least 1"));
            }
        }
        if a.inactive_deletion_after_days > 0
            && (a.inactive_reminder_after_days == 0 || a.inactive_reminder_after_days >= a.inactive_deletion_after_days)
        {
            problems.push(
                "accounts.inactive_reminder_after_days must be at least 1 and less than inactive_deletion_after_days \
                 (the citizen is told before the deletion)"
                    .to_owned(),
            );
        }
        if let Some(bind) = &self.metrics.bind
            && bind.parse::<SocketAddr>().is_err()
        {
            problems.push(format!("metrics.bind {bind:?} is not an address:port"));
        }
        if self.metrics.bearer_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            problems.push("metrics.bearer_token must have at least 16 characters".to_owned());
        }
        let h = &self.http;
        if h.body_limit_bytes < 1024 || h.admin_body_limit_bytes < 1024 {
            problems.push("http.body_limit_bytes and http.admin_body_limit_bytes must be at least 1024".to_owned());
        }
        if h.max_connections == 0 || h.header_timeout_seconds == 0 || h.keep_alive_seconds == 0 {
            problems.push(
                "http.max_connections, http.header_timeout_seconds and http.keep_alive_seconds must be at least 1"
                    .to_owned(),
            );
        }
        let d = &self.dependencies;
        if d.timeout_ms == 0 || d.request_deadline_ms < d.timeout_ms {
            problems.push(
                "dependencies.timeout_ms must be at least 1 and dependencies.request_deadline_ms at least as long"
                    .to_owned(),
            );
        }
        if d.retry_after_seconds == 0 {
            problems.push("dependencies.retry_after_seconds must be at least 1".to_owned());
        }
        if self.saml.clock_skew_seconds > 300 {
            problems.push("saml.clock_skew_seconds must not exceed 300".to_owned());
        }
        if !(60..=600).contains(&self.saml.assertion_lifetime_seconds) {
            problems.push("saml.assertion_lifetime_seconds must be between 60 and 600".to_owned());
        }
        if self.tokens.refresh_reuse_grace_seconds > 300 {
            problems.push("tokens.refresh_reuse_grace_seconds must not exceed 300".to_owned());
        }
        if a.session_idle_minutes > a.session_absolute_hours * 60 {
            problems.push("accounts.session_idle_minutes must not exceed accounts.session_absolute_hours".to_owned());
        }
        if a.free_failed_logins < 1 || a.free_failed_logins_per_ip < 1 || a.username_checks_per_hour < 1 {
            problems.push(
                "accounts.free_failed_logins, accounts.free_failed_logins_per_ip and accounts.username_checks_per_hour must be at least 1".to_owned(),
            );
        }
        if self.eid.production.service == EidService::Test {
            problems.push(
                "eid.production.service = \"test\" is refused: the test eID service hands out test identities"
                    .to_owned(),
            );
        }
        if !cfg!(feature = "test-eid-server") {
            for environment in Environment::ALL {
                if self.eid.of(environment).service == EidService::TestServer {
                    problems.push(format!(
                        "eid.{environment}.service = \"test_server\" needs a build with the feature test-eid-server (cargo build --features test-eid-server)"
                    ));
                }
            }
        }
        if self.eid.production.service == EidService::TestServer {
            problems.push(
                "eid.production.service = \"test_server\" is refused: the test eID-Server's certificates are not the BSI's and it accepts the Simulator card"
                    .to_owned(),
            );
        }
        for environment in Environment::ALL {
            let eid = self.eid.of(environment);
            match eid.service {
                EidService::Tr03130 if !eid.server_url.as_deref().is_some_and(|u| u.starts_with("https://")) => {
                    problems.push(format!("eid.{environment}.server_url must be an https:// URL for service tr03130"));
                }
                EidService::Test if eid.test_identities.is_empty() => {
                    problems.push(format!("eid.{environment}.test_identities must name at least one identity"));
                }
                _ => {}
            }
        }
        if let Some(endpoint) = &self.traces.otlp_endpoint
            && !url::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            problems.push(format!("traces.otlp_endpoint {endpoint:?} is not an http(s) URL"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            problems.push(format!("log.filter {:?} is not a tracing filter", self.log.filter));
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// The default for local use with the listener on `addr`: both issuers on that address.
    pub fn embedded(addr: SocketAddr) -> Self {
        let mut config = Config::default();
        config.http.bind = addr.to_string();
        config.environments.derive_issuers(&config.http.bind);
        config
    }
}

/// Paths the server answers outside every issuer; an issuer path must not shadow them.
pub(crate) const RESERVED_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/admin"];

fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer).map_err(|e| format!("not a URL ({e})"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("must be https (plain http only on a loopback host)".to_owned()),
        other => return Err(format!("scheme {other:?} is not https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query or fragment (OpenID Connect Discovery §3)".to_owned());
    }
    if issuer.ends_with('/') {
        return Err("must not end with a slash".to_owned());
    }
    if RESERVED_PATHS.iter().any(|reserved| url.path() == *reserved || url.path().starts_with(&format!("{reserved}/")))
    {
        return Err(format!("its path {:?} is reserved for operations endpoints", url.path()));
    }
    Ok(())
}

/// figment's own messages name its internal source locations; the key and the problem are
/// what an operator needs.
fn join_figment_errors(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| match e.path.is_empty() {
            true => e.kind.to_string(),
            false => format!("{}: {}", e.path.join("."), e.kind),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("servicekonto.toml");
        std::fs::write(&file, toml).unwrap();
        Config::load_from(Some(&file), vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_are_the_embedded_mode() {
        let config = Config::load_from(None, []).unwrap();
        assert_eq!(config.environments.production.issuer, "http://127.0.0.1:8080");
        assert_eq!(config.environments.test.issuer, "http://127.0.0.1:8080/test");
        assert!(config.database.url.expose().starts_with("sqlite://data/"));
        assert!(config.redis.url.is_none());
        assert_eq!(config.keys.algorithms()[0], SigningAlgorithm::RS256);
    }

    #[test]
    fn file_then_environment_with_nesting_and_file_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db-url");
        std::fs::write(&secret, "postgres://sk:geheim@db/sk\n").unwrap();
        let config = load(
            "[http]\nbind = \"0.0.0.0:9000\"\n[log]\nformat = \"json\"\n",
            &[
                ("SERVICEKONTO_HTTP__BIND", "127.0.0.1:9100"),
                ("SERVICEKONTO_DATABASE__URL_FILE", secret.to_str().unwrap()),
                ("SERVICEKONTO_ENVIRONMENTS__TEST__ISSUER", "https://test.konto.example"),
                ("SERVICEKONTO_DEMO__ENABLED", "false"),
                ("SERVICEKONTO_CONFIG", "/names/the/file/and/is/no/key.toml"),
                ("OTHER_VAR", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(config.http.bind, "127.0.0.1:9100", "environment beats file");
        assert_eq!(config.log.format, LogFormat::Json, "file beats defaults");
        assert_eq!(config.database.url.expose(), "postgres://sk:geheim@db/sk");
        assert_eq!(config.environments.test.issuer, "https://test.konto.example");
        assert!(!format!("{config:?}").contains("geheim"), "secrets never print");
    }

    #[test]
    fn a_value_and_its_file_variable_together_are_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db-url");
        std::fs::write(&secret, "postgres://sk:geheim@db/sk\n").unwrap();
        // An image's default and the operator's secret file: which one won used to depend on
        // the order of the environment (a compose node served on the image's SQLite).
        for vars in [
            [
                ("SERVICEKONTO_DATABASE__URL", "sqlite://x.db"),
                ("SERVICEKONTO_DATABASE__URL_FILE", secret.to_str().unwrap()),
            ],
            [
                ("SERVICEKONTO_DATABASE__URL_FILE", secret.to_str().unwrap()),
                ("SERVICEKONTO_DATABASE__URL", "sqlite://x.db"),
            ],
        ] {
            let Err(ConfigError::Load(message)) = load("", &vars) else { panic!("accepted both") };
            assert_eq!(
                message,
                "SERVICEKONTO_DATABASE__URL and SERVICEKONTO_DATABASE__URL_FILE are both set; set one of them"
            );
        }
    }

    #[test]
    fn one_public_url_moves_both_issuers_unless_one_is_set() {
        let config =
            load("[environments]\npublic_url = \"https://konto.example/\"\n[demo]\nenabled = false\n", &[]).unwrap();
        assert_eq!(config.environments.production.issuer, "https://konto.example");
        assert_eq!(config.environments.test.issuer, "https://konto.example/test");
        let config = load(
            "[environments]\npublic_url = \"https://konto.example\"\n[demo]\nenabled = false\n",
            &[("SERVICEKONTO_ENVIRONMENTS__TEST__ISSUER", "https://test.konto.example")],
        )
        .unwrap();
        assert_eq!(config.environments.production.issuer, "https://konto.example");
        assert_eq!(config.environments.test.issuer, "https://test.konto.example");
        // Moving the port of the embedded mode is one setting.
        let config = load("", &[("SERVICEKONTO_HTTP__BIND", "127.0.0.1:9200")]).unwrap();
        assert_eq!(config.environments.production.issuer, "http://127.0.0.1:9200");
        assert_eq!(config.environments.test.issuer, "http://127.0.0.1:9200/test");
        // A public bind cannot guess the public address.
        let err = load("[http]\nbind = \"0.0.0.0:8080\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("set environments.public_url"), "{err}");
        let err = load("[environments]\npublic_url = \"http://konto.example\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("environments.public_url"), "{err}");
    }

    #[test]
    fn the_inactivity_policy_is_on_by_default_and_can_be_switched_off() {
        let on =
            load("", &[]).unwrap().accounts.service(&EnvironmentsConfig::default()).inactivity.expect("on by default");
        assert_eq!(on.remind_after.as_secs(), 3 * 365 * 86400);
        assert_eq!(on.notice().as_secs(), 91 * 86400, "three months between reminder and deletion");
        let off = load("[accounts]\ninactive_deletion_after_days = 0\n", &[]).unwrap();
        assert!(off.accounts.service(&EnvironmentsConfig::default()).inactivity.is_none());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load("[http]\nbindd = \"x\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("bindd"), "{err}");
        let err = load("", &[("SERVICEKONTO_NOPE", "1")]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn the_test_eid_server_is_refused_in_production_and_allowed_in_test() {
        let err = load("[eid.production]\nservice = \"test_server\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("eid.production.service = \"test_server\" is refused"), "{err}");
        let test = load("[eid.test]\nservice = \"test_server\"\ntest_server_listen = \"127.0.0.1:0\"\n", &[]);
        if cfg!(feature = "test-eid-server") {
            assert_eq!(test.unwrap().eid.test.service, EidService::TestServer);
        } else {
            let err = test.unwrap_err().to_string();
            assert!(err.contains("needs a build with the feature test-eid-server"), "{err}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load(
            r#"
[http]
bind = "nowhere"
[environments.production]
issuer = "http://konto.example/"
[environments.test]
issuer = "https://konto.example/healthz"
[database]
url = "mysql://x"
[redis]
url = "redis://a,redis://b"
[keys]
kek = "c2hvcnQ="
algorithms = ["RS256", "HS256", "RS256"]
activation_delay_seconds = 1
refresh_interval_seconds = 60
[eid.production]
service = "test"
[eid.test]
service = "tr03130"
server_url = "http://eid.example"
[accounts]
inactive_reminder_after_days = 400
inactive_deletion_after_days = 365
"#,
            &[],
        )
        .unwrap_err();
        let ConfigError::Invalid(problems) = err else { panic!("{err}") };
        let text = problems.join("\n");
        for expected in [
            "http.bind",
            "environments.production.issuer",
            "must be https",
            "reserved",
            "database.url",
            "redis.cluster is false",
            "32 bytes",
            "\"HS256\"",
            "names \"RS256\" twice",
            "activation_delay_seconds",
            "eid.production.service = \"test\" is refused",
            "eid.test.server_url must be an https:// URL",
            "inactive_reminder_after_days must be at least 1 and less than",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn issuer_rules() {
        assert!(check_issuer("https://konto.example").is_ok());
        assert!(check_issuer("https://konto.example/test").is_ok());
        assert!(check_issuer("http://localhost:8080").is_ok());
        assert!(check_issuer("http://konto.example").is_err());
        assert!(check_issuer("https://konto.example?x=1").is_err());
        assert!(check_issuer("https://konto.example/#f").is_err());
        assert!(check_issuer("konto.example").is_err());
        assert!(check_issuer("https://konto.example/admin/x").is_err());
    }

    #[test]
    fn the_example_config_parses_and_documents_every_key() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config.example.toml");
        Config::load_from(Some(&example), []).unwrap();

        let documented: toml::Table = std::fs::read_to_string(&example).unwrap().parse().unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        fn paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (key, value) in table {
                let path = format!("{prefix}{key}");
                match value {
                    toml::Value::Table(inner) => paths(inner, &format!("{path}."), out),
                    _ => out.push(path),
                }
            }
        }
        let (mut want, mut have) = (Vec::new(), Vec::new());
        paths(&defaults, "", &mut want);
        paths(&documented, "", &mut have);
        // Optional keys without a default (keys.kek, redis.url) are documented as comments.
        let text = std::fs::read_to_string(&example).unwrap();
        for key in ["kek =", "previous_kek =", "otlp_endpoint =", "url = \"redis://"] {
            assert!(text.contains(key), "example lacks a commented {key}");
        }
        let missing: Vec<&String> = want.iter().filter(|k| !have.contains(k)).collect();
        assert!(missing.is_empty(), "deploy/config.example.toml lacks {missing:?}");
    }
}
