use std::{path::Path, time::Duration};

use migrations::Migrator;
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// Advisory-lock key that serialises migrations across nodes ("sk-migr" in ASCII).
const MIGRATION_LOCK: i64 = 0x0073_6b2d_6d69_6772;
use sea_orm_migration::{IntoSchemaManagerConnection, MigratorTrait};

use crate::SeaSigningKeyStore;

/// Prepared statements kept per connection (sqlx's default is 100). A batched statement's text
/// depends on its batch size (`IN` lists and `VALUES` rows of 1 to 64), so the four batched kinds
/// alone have up to 256 texts; a statement evicted from the cache is prepared again, on
/// PostgreSQL in an extra round trip.
const STATEMENT_CACHE: usize = 512;

/// When an SQLite commit is on disk (`PRAGMA synchronous` in WAL mode). PostgreSQL is not
/// affected: it commits as its server is configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// A commit survives a crash of the process, not of the machine: the write-ahead log is
    /// synced at checkpoints, not at every commit (SQLite's recommendation for WAL).
    #[default]
    Normal,
    /// A commit survives a power loss too: the write-ahead log is synced at every commit (one
    /// `fsync` per write request).
    Full,
}

/// How to connect.
#[derive(Clone, Copy, Debug)]
pub struct ConnectSettings {
    /// Bounds opening a connection and waiting for one from the pool.
    pub timeout: Duration,
    /// SQLite only.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(10), sqlite_synchronous: SqliteSynchronous::default() }
    }
}

/// A connection pool to the relational database (SQLite or PostgreSQL, chosen by the URL).
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
    /// The stores whose hot statements are batched: one of each per pool, so that all
    /// requests share their batches.
    accounts: crate::SeaAccountStore,
    refresh_tokens: crate::SeaRefreshTokenStore,
}

/// What can go wrong with the database as a whole.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL scheme in {0:?}: use sqlite:// or postgres://")]
    UnsupportedUrl(String),
    /// The folder of an SQLite file could not be created.
    #[error("cannot create the folder {path} for the SQLite database")]
    CreateFolder {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Connecting, migrating or querying failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

impl Database {
    /// Connects to `url` with the default settings (tests, command line); see
    /// [`Database::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, DatabaseError> {
        Self::connect_with(url, ConnectSettings::default()).await
    }

    /// Connects to `url`. For an SQLite file, its folder is created; `sqlite::memory:` gets a
    /// single connection, because every SQLite connection would otherwise see its own database.
    ///
    /// `settings.timeout` bounds opening a connection and waiting for one from the pool (which
    /// includes, on PostgreSQL, the pool's liveness check of an idle connection): while the
    /// database is down or hung, a request fails after the timeout instead of queueing.
    pub async fn connect_with(url: &str, settings: ConnectSettings) -> Result<Self, DatabaseError> {
        let timeout = settings.timeout;
        let mut options = ConnectOptions::new(url.to_owned());
        options.sqlx_logging(false).connect_timeout(timeout).acquire_timeout(timeout);
        if let Some(rest) = url.strip_prefix("sqlite:") {
            // WAL lets readers go on while one writer writes, and the busy timeout queues writers
            // instead of failing them; as connect options, every connection of the pool gets
            // them (an in-memory database keeps its own journal). No liveness check before each
            // use: a connection to a local file does not die, and the check is a round trip to
            // the connection's thread on every query.
            let synchronous = match settings.sqlite_synchronous {
                SqliteSynchronous::Normal => sea_orm::sqlx::sqlite::SqliteSynchronous::Normal,
                SqliteSynchronous::Full => sea_orm::sqlx::sqlite::SqliteSynchronous::Full,
            };
            options.test_before_acquire(false).map_sqlx_sqlite_opts(move |sqlite| {
                sqlite
                    .statement_cache_capacity(STATEMENT_CACHE)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(synchronous)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
            });
            let path = rest.trim_start_matches("//").split('?').next().unwrap_or_default();
            if path.contains(":memory:") || url.contains("mode=memory") {
                options.max_connections(1).min_connections(1);
            } else if let Some(folder) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder)
                    .map_err(|source| DatabaseError::CreateFolder { path: folder.display().to_string(), source })?;
            }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            return Ok(Self::over(Self::postgres_pool(url, options).await?, timeout));
        } else {
            return Err(DatabaseError::UnsupportedUrl(url.to_owned()));
        }
        let conn = sea_orm::Database::connect(options).await?;
        Ok(Self::over(conn, timeout))
    }

    /// `timeout` also bounds a batched statement, its wait in the queue included.
    fn over(conn: DatabaseConnection, timeout: Duration) -> Self {
        // One set of lanes for both stores: on SQLite their batches share the one connection.
        let lanes = crate::held_connection::Lanes::new(&conn);
        Self {
            accounts: crate::SeaAccountStore::new(conn.clone(), &lanes, timeout),
            refresh_tokens: crate::SeaRefreshTokenStore::new(conn.clone(), &lanes, timeout),
            conn,
        }
    }

    /// A PostgreSQL pool whose connections are checked before use only after they sat idle.
    ///
    /// sqlx checks every connection it takes back (a round trip, off the request's path); a
    /// check before every use as well would put a second round trip on the path of every
    /// statement. A connection the server closed (restart, failover) is still found before use,
    /// not by the request that would get it: it has sat idle since the server went away.
    async fn postgres_pool(url: &str, options: ConnectOptions) -> Result<DatabaseConnection, DatabaseError> {
        use sea_orm::sqlx::{ConnectOptions as _, Connection, postgres::PgConnectOptions};
        const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
        let connect = url
            .parse::<PgConnectOptions>()
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?
            .disable_statement_logging()
            .statement_cache_capacity(STATEMENT_CACHE);
        let pool = options
            .sqlx_pool_options::<sea_orm::sqlx::Postgres>()
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < CHECK_AFTER_IDLE {
                        return Ok(true);
                    }
                    // A failed check closes the connection; the pool then opens another.
                    conn.ping().await.map(|()| true)
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
        Ok(sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
    }

    /// Applies every pending migration; returns how many ran.
    ///
    /// On PostgreSQL the migrations run in one transaction holding an advisory lock, so nodes
    /// starting together migrate one after the other instead of colliding; PostgreSQL DDL is
    /// transactional, so a failed migration leaves the schema as it was. A schema ahead of this
    /// release (see [`Database::schema_status`]) is left as it is.
    pub async fn migrate(&self) -> Result<usize, DatabaseError> {
        if self.conn.get_database_backend() != DbBackend::Postgres {
            return Self::migrate_on(&self.conn).await;
        }
        let txn = crate::transaction::begin(&self.conn).await?;
        txn.execute(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"),
        ))
        .await?;
        let applied = Self::migrate_on(&txn).await?;
        txn.commit().await?;
        Ok(applied)
    }

    async fn migrate_on<C>(conn: &C) -> Result<usize, DatabaseError>
    where
        C: ConnectionTrait,
        for<'c> &'c C: IntoSchemaManagerConnection<'c>,
    {
        let status = SchemaStatus::read(conn).await?;
        if status.pending.is_empty() {
            // Nothing to do, also when a newer release migrated further (sea-orm's `up` would
            // refuse the migrations it does not know).
            return Ok(0);
        }
        if !status.ahead.is_empty() {
            return Err(DbErr::Custom(format!(
                "the database has newer migrations ({}) but lacks older ones of this release ({})",
                status.ahead.join(", "),
                status.pending.join(", ")
            ))
            .into());
        }
        Migrator::up(conn, None).await?;
        Ok(status.pending.len())
    }

    /// Names of migrations not applied yet.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, DatabaseError> {
        Ok(self.schema_status().await?.pending)
    }

    /// Which of this release's migrations are pending, and which applied migrations are newer
    /// than this release (a newer release migrated while this one still runs: migrations only
    /// expand the schema until no release needs the old shape, so this release serves on it).
    pub async fn schema_status(&self) -> Result<SchemaStatus, DatabaseError> {
        SchemaStatus::read(&self.conn).await
    }

    /// Checks that the database answers a query; for readiness probes.
    pub async fn ping(&self) -> Result<(), DatabaseError> {
        let backend = self.conn.get_database_backend();
        self.conn.query_one(Statement::from_string(backend, "SELECT 1")).await?;
        Ok(())
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.conn.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgres",
            DbBackend::MySql => "mysql",
        }
    }

    /// The tenant registry's store on this database.
    pub fn registry(&self) -> crate::SeaRegistryStore {
        crate::SeaRegistryStore::new(self.conn.clone())
    }

    /// The citizen-account store on this database.
    pub fn accounts(&self) -> crate::SeaAccountStore {
        self.accounts.clone()
    }

    /// The organisation store on this database.
    pub fn organisations(&self) -> crate::SeaOrganisationStore {
        crate::SeaOrganisationStore::new(self.conn.clone())
    }

    /// The durable mail queue on this database.
    pub fn mail_queue(&self) -> crate::SeaMailQueue {
        crate::SeaMailQueue::new(self.conn.clone())
    }

    /// The refresh-token store on this database.
    pub fn refresh_tokens(&self) -> crate::SeaRefreshTokenStore {
        self.refresh_tokens.clone()
    }

    /// The deployment's sealed secrets on this database.
    pub fn sealed_secrets(&self) -> crate::SeaSealedSecrets {
        crate::SeaSealedSecrets::new(self.conn.clone())
    }

    /// The signing-key store on this database.
    pub fn signing_keys(&self) -> SeaSigningKeyStore {
        SeaSigningKeyStore::new(self.conn.clone())
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), DatabaseError> {
        Ok(self.conn.close().await?)
    }
}

#[cfg(feature = "testing")]
impl Database {
    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Takes back the newest `steps` migrations (a test that they keep the data both ways).
    pub async fn migrate_down(&self, steps: u32) -> Result<(), DatabaseError> {
        Ok(Migrator::down(&self.conn, Some(steps)).await?)
    }

    /// Connections of the pool that are taken (by a statement, or kept by a batch worker).
    pub fn connections_in_use(&self) -> usize {
        let (size, idle) = match self.conn.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
        };
        (size as usize).saturating_sub(idle)
    }
}

/// Where the database's schema stands against this release's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// This release's migrations not applied yet, in order.
    pub pending: Vec<String>,
    /// Applied migrations this release does not know, all newer than its own newest.
    pub ahead: Vec<String>,
}

impl SchemaStatus {
    async fn read<C>(conn: &C) -> Result<Self, DatabaseError>
    where
        C: ConnectionTrait,
        for<'c> &'c C: IntoSchemaManagerConnection<'c>,
    {
        let known: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
        let manager = sea_orm_migration::SchemaManager::new(conn);
        let applied: std::collections::BTreeSet<String> = if manager.has_table("seaql_migrations").await? {
            let backend = conn.get_database_backend();
            conn.query_all(Statement::from_string(backend, "SELECT version FROM seaql_migrations"))
                .await?
                .iter()
                .map(|row| row.try_get::<String>("", "version"))
                .collect::<Result<_, _>>()?
        } else {
            Default::default()
        };
        let pending = known.iter().filter(|name| !applied.contains(*name)).cloned().collect();
        let newest = known.last().cloned().unwrap_or_default();
        let unknown: Vec<String> = applied.iter().filter(|name| !known.contains(name)).cloned().collect();
        // Version names begin with their date and number, so they sort in the order they run.
        if let Some(stray) = unknown.iter().find(|name| **name < newest) {
            return Err(DbErr::Custom(format!(
                "the database has a migration this release does not know and that is older than its newest: {stray}"
            ))
            .into());
        }
        Ok(Self { pending, ahead: unknown })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a failed step is the test failing")]

    use super::*;

    async fn pragma<C: ConnectionTrait + ?Sized>(conn: &C, name: &str) -> String {
        let row = conn.query_one(Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {name}"))).await.unwrap();
        let row = row.unwrap();
        row.try_get_by_index::<i64>(0).map(|n| n.to_string()).or_else(|_| row.try_get_by_index::<String>(0)).unwrap()
    }

    /// The settings are the pool's connection options (sea-orm keeps one SQLite connection, but
    /// a reconnect gets them too).
    #[tokio::test]
    async fn the_sqlite_connection_is_in_wal_mode_with_the_configured_synchronous() {
        for (synchronous, expected) in [(SqliteSynchronous::Normal, "1"), (SqliteSynchronous::Full, "2")] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("db.sqlite").display());
            let database =
                Database::connect_with(&url, ConnectSettings { sqlite_synchronous: synchronous, ..Default::default() })
                    .await
                    .unwrap();
            let conn = &database.conn;
            assert_eq!(pragma(conn, "synchronous").await, expected, "{synchronous:?}");
            assert_eq!(pragma(conn, "journal_mode").await, "wal");
            assert_eq!(pragma(conn, "foreign_keys").await, "1");
            assert_eq!(pragma(conn, "busy_timeout").await, "5000");
        }
    }

    /// Migration 19 on SQLite: the refresh tokens live in their primary key's tree, and the
    /// organisation index holds only transfers made for an organisation yet still serves their
    /// listing. (That rows survive the migration both ways: `tests/accounts.rs`.)
    #[tokio::test]
    async fn refresh_tokens_are_without_rowid_and_the_organisation_index_is_partial() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("db.sqlite").display());
        let database = Database::connect(&url).await.unwrap();
        database.migrate().await.unwrap();
        let column = async |sql: &str, column: &str| {
            let rows = database.conn.query_all(Statement::from_string(DbBackend::Sqlite, sql)).await.unwrap();
            rows.iter().map(|row| row.try_get::<String>("", column).unwrap()).collect::<Vec<_>>().join("; ")
        };
        let schema =
            async |name: &str| column(&format!("SELECT sql FROM sqlite_master WHERE name = '{name}'"), "sql").await;
        assert!(schema("refresh_tokens").await.ends_with("WITHOUT ROWID"), "{}", schema("refresh_tokens").await);
        for index in ["refresh_tokens_family", "refresh_tokens_account_client"] {
            assert!(!schema(index).await.is_empty(), "{index} is there again");
        }
        let organisation_index = schema("data_transfers_organisation").await;
        assert!(organisation_index.ends_with(r#"WHERE "organisation_id" IS NOT NULL"#), "{organisation_index}");
        let plan = column(
            "EXPLAIN QUERY PLAN SELECT * FROM data_transfers WHERE organisation_id = 'o' ORDER BY at DESC",
            "detail",
        )
        .await;
        assert!(plan.contains("USING INDEX data_transfers_organisation"), "{plan}");
    }
}
