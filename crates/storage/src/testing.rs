//! Test support for suites in other crates: a database of their own per test, on SQLite or on
//! the PostgreSQL server named by `TEST_DATABASE_URL`.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use crate::{Database, DatabaseError};

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
