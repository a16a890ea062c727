//! Test support for suites in other crates: a database of their own per test, on SQLite or on
//! the PostgreSQL server named by `TEST_DATABASE_URL`; a Redis Cluster of three masters; free
//! loopback ports for the processes tests start.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use crate::{Database, DatabaseError};

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768–60999), where the
/// kernel picks the source port of every outgoing connection and the port of every `bind(0)`.
/// A port asked of the kernel with `bind(0)` and released for a child to bind is free only for
/// a moment: another test's connection or listener may take it first (CI saw a SAML SP fail with
/// "Address already in use"). Here nobody but this function hands a port out.
const FREE_PORTS: std::ops::Range<u16> = 12_000..22_000;

/// A loopback port nobody listens on, for a process a test starts (which binds it itself).
/// Every call in a process gets another port; the start is drawn from the process id, so test
/// binaries run side by side are unlikely to meet, and a port that is taken is skipped. Redis
/// Cluster's bus (port + 10,000) stays below the ephemeral range too.
#[allow(clippy::panic, reason = "a test helper: ten thousand taken ports fail the test")]
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = FREE_PORTS.end - FREE_PORTS.start;
    let start = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = FREE_PORTS.start + (start + step) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FREE_PORTS:?}");
}

/// A database created for one test. PostgreSQL databases are dropped by [`TestDatabase::drop_now`].
#[derive(Debug)]
pub struct TestDatabase {
    /// Connect here.
    pub url: String,
    admin_url: Option<String>,
    name: String,
}

impl TestDatabase {
    /// A fresh, empty PostgreSQL database on the server of `server_url` (e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`), named `sk_test_<random>`.
    pub async fn postgres(server_url: &str) -> Result<Self, DatabaseError> {
        let name = format!("sk_test_{}", Uuid::new_v4().simple());
        let admin = Database::connect(server_url).await?;
        admin.conn().execute(Statement::from_string(DbBackend::Postgres, format!("CREATE DATABASE {name}"))).await?;
        admin.close().await?;
        let mut url = url::Url::parse(server_url).map_err(|_| DatabaseError::UnsupportedUrl(server_url.to_owned()))?;
        url.set_path(&name);
        Ok(Self { url: url.to_string(), admin_url: Some(server_url.to_owned()), name })
    }

    /// A fresh SQLite database in a file below `folder`.
    pub fn sqlite(folder: &std::path::Path) -> Self {
        let name = format!("sk_test_{}.db", Uuid::new_v4().simple());
        Self { url: format!("sqlite://{}?mode=rwc", folder.join(&name).display()), admin_url: None, name }
    }

    /// Ends every connection to this PostgreSQL database, as a restart or a failover would;
    /// how many there were.
    pub async fn end_connections(&self) -> Result<usize, DatabaseError> {
        let Some(admin_url) = &self.admin_url else { return Ok(0) };
        let admin = Database::connect(admin_url).await?;
        let ended = admin
            .conn()
            .query_all(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
                    self.name
                ),
            ))
            .await?
            .len();
        admin.close().await?;
        Ok(ended)
    }

    /// Drops a PostgreSQL test database (after its pools are closed). SQLite files go with
    /// their temporary folder.
    pub async fn drop_now(self) -> Result<(), DatabaseError> {
        if let Some(admin_url) = self.admin_url {
            let admin = Database::connect(&admin_url).await?;
            admin
                .conn()
                .execute(Statement::from_string(
                    DbBackend::Postgres,
                    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                ))
                .await?;
            admin.close().await?;
        }
        Ok(())
    }
}

/// Set in CI: a test whose backend is missing fails instead of skipping.
pub const REQUIRE_BACKENDS_VAR: &str = "TEST_REQUIRE_BACKENDS";

/// The URL in `var` if set and non-empty; otherwise reports the skip (see [`skip`]).
pub fn backend_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            skip(test, &format!("{var} is not set, so this backend is not tested"));
            None
        }
    }
}

/// Reports that `test` is skipped and why, on stderr (straight to it: libtest captures
/// `eprintln!` of passing tests, and a skip must show) — or panics when
/// [`REQUIRE_BACKENDS_VAR`] is set, so that CI cannot pass by skipping.
#[allow(clippy::panic)]
pub fn skip(test: &str, reason: &str) {
    let message = format!("{test}: skipped: {reason}");
    if std::env::var_os(REQUIRE_BACKENDS_VAR).is_some() {
        panic!("{message} (and {REQUIRE_BACKENDS_VAR} demands every backend)");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Three Redis servers in cluster mode on loopback, stopped on drop.
pub struct RedisCluster {
    nodes: Vec<std::process::Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three masters on free ports, creates the cluster and waits for `cluster_state:ok`.
    pub fn start() -> Result<Self, String> {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let folder = dir.path().to_owned();
        let mut cluster = Self { nodes: Vec::new(), ports: Vec::new(), _dir: dir };
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf"), "--save", "", "--appendonly", "no"])
                .current_dir(&folder)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server cannot be started: {e}"))?;
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        let ping = |port: u16| {
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cluster.ports.iter().all(|p| ping(*p)) {
            if std::time::Instant::now() > deadline {
                return Err("redis-server nodes did not answer".to_owned());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let addresses: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| format!("redis-cli cannot be run: {e}"))?;
        if !created.status.success() {
            return Err(format!("cluster create failed: {}", String::from_utf8_lossy(&created.stdout)));
        }
        let ok = |port: u16| {
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        };
        while !cluster.ports.iter().all(|p| ok(*p)) {
            if std::time::Instant::now() > deadline + std::time::Duration::from_secs(10) {
                return Err("the cluster never reached cluster_state:ok".to_owned());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// The seed URLs, comma-separated, as `redis.url` takes them with `redis.cluster = true`.
    pub fn url(&self) -> String {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
