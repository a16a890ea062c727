//! The connection a batch worker's statements run on, kept from one batch to the next while
//! batches keep coming.
//!
//! sea-orm takes a connection from the pool for every statement and gives it back afterwards,
//! and sqlx checks every connection it takes back (`ping`, unconditionally): on PostgreSQL a
//! second round trip per statement, on SQLite a second hop to the connection's thread (and, on
//! one core, a second switch to it and back). Under load a worker of `crate::batch` runs one
//! statement after the other, so it keeps its connection instead: a batch then costs its
//! statement alone.
//!
//! On PostgreSQL each worker keeps a connection of its own. It lets go of it after
//! [`crate::batch::IDLE`] without a batch, after an error that is not the statement's own (the
//! pool then checks it, as it checks every connection it takes back), and after [`MAX_HOLD`], so
//! that the pool's lifetime rules still apply.
//!
//! SQLite's pool has a single connection (sea-orm's default for SQLite, kept: one writer at a
//! time is all SQLite allows, and a single connection never waits on another's lock), which no
//! worker may keep from everyone else. There all workers share one lane ([`Lanes`]): the
//! connection goes from one worker's statement to the next while their batches follow each
//! other, for at most [`SQLITE_HOLD`], and back to the pool as soon as no batch is ready to run
//! (`crate::batch` lets go of it after one turn of the scheduler without one). What else needs
//! the connection (a login's read, a rotation's transaction, an admin's write) waits at most
//! that long, and a quiet node holds nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
    sea_query::Values,
    sqlx::{self, Postgres, Sqlite, pool::PoolConnection},
};
use sea_query_binder::SqlxValues;

/// The longest a PostgreSQL worker keeps one connection, however busy it is.
const MAX_HOLD: Duration = Duration::from_secs(60);

/// The longest SQLite's one connection goes from statement to statement without going back to
/// the pool: the longest anything outside the batches waits for it behind them.
const SQLITE_HOLD: Duration = Duration::from_millis(2);

/// How a database's batch workers get their lanes: on PostgreSQL each its own, on SQLite one
/// shared by all.
#[derive(Clone, Debug)]
pub(crate) struct Lanes {
    pool: DatabaseConnection,
    /// SQLite's one slot.
    shared: Option<Arc<Slot>>,
}

impl Lanes {
    pub(crate) fn new(pool: &DatabaseConnection) -> Self {
        let shared = (pool.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Slot::default()));
        Self { pool: pool.clone(), shared }
    }

    /// The lane for a new worker.
    pub(crate) fn lane(&self) -> HeldConnection {
        let slot = self.shared.clone().unwrap_or_default();
        HeldConnection { pool: self.pool.clone(), slot }
    }
}

/// What a batch's statements run on: the connection a worker (on SQLite: the workers) kept, or
/// one from the pool.
#[derive(Clone, Debug)]
pub(crate) struct HeldConnection {
    pool: DatabaseConnection,
    slot: Arc<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    kept: tokio::sync::Mutex<Option<Held>>,
    /// Statements that found the connection kept (counted for the tests).
    reused: AtomicUsize,
}

#[derive(Debug)]
enum Connection {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

#[derive(Debug)]
struct Held {
    connection: Connection,
    since: Instant,
}

impl HeldConnection {
    /// The pool itself, for what needs a connection of its own (a transaction).
    pub(crate) fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    /// Gives the kept connection back to the pool. A statement running keeps it: the worker only
    /// calls this between batches.
    pub(crate) fn release(&self) {
        if let Ok(mut kept) = self.slot.kept.try_lock() {
            *kept = None;
        }
    }

    /// Statements that found the connection kept.
    #[cfg(test)]
    pub(crate) fn reused(&self) -> usize {
        self.slot.reused.load(Ordering::SeqCst)
    }

    /// Whether the lane keeps a connection now (none of its statements running).
    #[cfg(test)]
    pub(crate) fn keeps(&self) -> bool {
        self.slot.kept.try_lock().is_ok_and(|kept| kept.is_some())
    }

    /// Whether all workers share this lane (SQLite).
    pub(crate) fn shared(&self) -> bool {
        self.pool.get_database_backend() == DbBackend::Sqlite
    }

    /// The kept connection, taken out of its slot for one statement (from the pool when there is
    /// none, or when it was kept long enough). A statement whose future is dropped drops it
    /// too, and the pool checks it.
    async fn take(&self, kept: &mut Option<Held>) -> Result<Held, DbErr> {
        let longest = if self.shared() { SQLITE_HOLD } else { MAX_HOLD };
        if let Some(held) = kept.take().filter(|held| held.since.elapsed() < longest) {
            self.slot.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(held);
        }
        let connection = match self.pool.get_database_backend() {
            DbBackend::Postgres => {
                Connection::Postgres(self.pool.get_postgres_connection_pool().acquire().await.map_err(acquire_err)?)
            }
            _ => Connection::Sqlite(self.pool.get_sqlite_connection_pool().acquire().await.map_err(acquire_err)?),
        };
        Ok(Held { connection, since: Instant::now() })
    }

    /// Puts `held` back for the next statement unless `result` says it may be broken: a
    /// statement's own failure (a constraint, say) leaves the connection as it was; any other
    /// (I/O, protocol, a closed connection) sends it back to the pool, which checks it.
    fn put_back<T>(&self, kept: &mut Option<Held>, held: Held, result: &Result<T, sqlx::Error>) {
        if matches!(result, Ok(_) | Err(sqlx::Error::Database(_))) {
            *kept = Some(held);
        }
    }
}

impl HeldConnection {
    /// Runs `statement` with `run` on the kept connection; a failure of the statement itself is
    /// mapped with `statement_err` (sea-orm's `DbErr::Exec` or `DbErr::Query`).
    async fn on_held<T: Send>(
        &self,
        statement: Statement,
        statement_err: fn(RuntimeErr) -> DbErr,
        run: impl for<'c> FnOnce(&'c str, SqlxValues, &'c mut Connection) -> BoxFuture<'c, Result<T, sqlx::Error>> + Send,
    ) -> Result<T, DbErr> {
        let mut kept = self.slot.kept.lock().await;
        let mut held = self.take(&mut kept).await?;
        let (sql, values) = parts(statement);
        let result = run(&sql, values, &mut held.connection).await;
        self.put_back(&mut kept, held, &result);
        result.map_err(|e| statement_err(RuntimeErr::SqlxError(e)))
    }
}

/// A statement's text and its values, bound as sea-orm binds them.
fn parts(statement: Statement) -> (String, SqlxValues) {
    (statement.sql, SqlxValues(statement.values.unwrap_or(Values(Vec::new()))))
}

/// As sea-orm maps a failure to take a connection from its pool.
fn acquire_err(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        e => DbErr::Conn(RuntimeErr::SqlxError(e)),
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for HeldConnection {
    fn get_database_backend(&self) -> DbBackend {
        self.pool.get_database_backend()
    }

    async fn execute(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        self.on_held(statement, DbErr::Exec, |sql, values, connection| {
            Box::pin(async move {
                match connection {
                    Connection::Postgres(c) => {
                        sqlx::query_with(sql, values).execute(&mut **c).await.map(ExecResult::from)
                    }
                    Connection::Sqlite(c) => {
                        sqlx::query_with(sql, values).execute(&mut **c).await.map(ExecResult::from)
                    }
                }
            })
        })
        .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.pool.execute_unprepared(sql).await
    }

    async fn query_one(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.on_held(statement, DbErr::Query, |sql, values, connection| {
            Box::pin(async move {
                match connection {
                    Connection::Postgres(c) => sqlx::query_with(sql, values)
                        .fetch_optional(&mut **c)
                        .await
                        .map(|row| row.map(QueryResult::from)),
                    Connection::Sqlite(c) => sqlx::query_with(sql, values)
                        .fetch_optional(&mut **c)
                        .await
                        .map(|row| row.map(QueryResult::from)),
                }
            })
        })
        .await
    }

    async fn query_all(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.on_held(statement, DbErr::Query, |sql, values, connection| {
            Box::pin(async move {
                match connection {
                    Connection::Postgres(c) => sqlx::query_with(sql, values)
                        .fetch_all(&mut **c)
                        .await
                        .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
                    Connection::Sqlite(c) => sqlx::query_with(sql, values)
                        .fetch_all(&mut **c)
                        .await
                        .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
                }
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batcher;

    async fn sqlite(folder: &std::path::Path) -> (crate::Database, DatabaseConnection) {
        let url = format!("sqlite://{}?mode=rwc", folder.join("lanes.db").display());
        let db = crate::Database::connect(&url).await.unwrap();
        let pool = db.conn().clone();
        (db, pool)
    }

    fn select() -> Statement {
        Statement::from_string(DbBackend::Sqlite, "SELECT 1")
    }

    /// Batches of one kind whose statement is a `SELECT 1` on their lane.
    fn selects(lanes: &Lanes) -> Arc<Batcher<u32, bool, HeldConnection>> {
        Arc::new(Batcher::on_held(
            lanes,
            Duration::from_secs(5),
            |lane: HeldConnection, queries: Vec<u32>| async move {
                let answered = lane.query_all(select()).await.is_ok();
                queries.iter().map(|_| answered).collect()
            },
        ))
    }

    /// The pool's one connection is back in it (sqlx checks it first, in a task of its own).
    async fn back_in_the_pool(pool: &DatabaseConnection) -> bool {
        for _ in 0..200 {
            if pool.get_sqlite_connection_pool().num_idle() == 1 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    async fn a_few_turns() {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_sqlite_batches_of_all_kinds_share_the_connection_only_while_they_follow_each_other() {
        let folder = tempfile::tempdir().unwrap();
        let (_db, pool) = sqlite(folder.path()).await;
        let lanes = Lanes::new(&pool);
        let (accounts, consents) = (selects(&lanes), selects(&lanes));
        let lane = lanes.lane();
        // A batch alone gives the connection back at once, not after the workers' idle time.
        assert_eq!(accounts.call(1).await.ok(), Some(true));
        a_few_turns().await;
        assert!(!lane.keeps(), "a lone batch's connection goes back");
        assert!(back_in_the_pool(&pool).await);
        // Batches of two kinds at once: the second runs on the connection the first kept.
        let calls: Vec<_> = (0..40u32)
            .map(|i| {
                let batcher = Arc::clone(if i % 2 == 0 { &accounts } else { &consents });
                tokio::spawn(async move { batcher.call(i).await.ok() })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.ok().flatten(), Some(true));
        }
        assert!(lane.reused() > 0, "a batch found the connection kept");
        a_few_turns().await;
        assert!(!lane.keeps(), "and it went back after the last one");
        assert!(back_in_the_pool(&pool).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_sqlite_a_stream_of_batches_does_not_starve_the_pool() {
        let folder = tempfile::tempdir().unwrap();
        let (_db, pool) = sqlite(folder.path()).await;
        let lanes = Lanes::new(&pool);
        let (accounts, consents) = (selects(&lanes), selects(&lanes));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Callers that ask again as soon as they are answered: a batch is always ready.
        let callers: Vec<_> = (0..4)
            .map(|i| {
                let batcher = Arc::clone(if i % 2 == 0 { &accounts } else { &consents });
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        assert_eq!(batcher.call(i).await.ok(), Some(true));
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(lanes.lane().reused() > 0, "the batches share the kept connection");
        // Something else needs the pool's connection: it gets it within the hold, give or take
        // a statement, not only when the stream ends.
        let other = tokio::time::timeout(Duration::from_secs(2), pool.query_one(select())).await;
        stop.store(true, Ordering::SeqCst);
        for caller in callers {
            caller.await.unwrap();
        }
        assert!(matches!(other, Ok(Ok(Some(_)))), "a statement outside the batches waited out the stream: {other:?}");
    }
}
