//! A batch worker's own PostgreSQL connection, kept from one batch to the next while batches
//! keep coming.
//!
//! sea-orm takes a connection from the pool for every statement and gives it back afterwards,
//! and sqlx checks every connection it takes back (`ping`, unconditionally): on PostgreSQL a
//! second round trip per statement. Under load a worker of `crate::batch` runs one statement
//! after the other, so it keeps its connection instead: a batch then costs its statement alone.
//! The worker lets go of it after [`crate::batch::IDLE`] without a batch, after an error that is
//! not the statement's own (the pool then checks it, as it checks every connection it takes
//! back), and after [`MAX_HOLD`], so that the pool's lifetime rules still apply.
//!
//! On SQLite the statements go through the pool as before: its pool has a single connection
//! (sea-orm's default for SQLite, kept: one writer at a time is all SQLite allows, and a single
//! connection never waits on another's lock), which no worker may keep from everyone else.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
    sea_query::Values,
    sqlx::{self, Postgres, pool::PoolConnection},
};
use sea_query_binder::SqlxValues;

/// The longest a worker keeps one connection, however busy it is.
const MAX_HOLD: Duration = Duration::from_secs(60);

/// What a batch's statements run on: the worker's kept connection, or the pool.
#[derive(Clone, Debug)]
pub(crate) struct HeldConnection {
    pool: DatabaseConnection,
    /// `None` on SQLite.
    slot: Option<Arc<tokio::sync::Mutex<Option<Held>>>>,
}

#[derive(Debug)]
struct Held {
    connection: PoolConnection<Postgres>,
    since: Instant,
}

impl HeldConnection {
    /// A worker's connection from `pool`, taken when its first statement runs.
    pub(crate) fn new(pool: &DatabaseConnection) -> Self {
        let held = pool.get_database_backend() == DbBackend::Postgres;
        Self { pool: pool.clone(), slot: held.then(|| Arc::new(tokio::sync::Mutex::new(None))) }
    }

    /// The pool itself, for what needs a connection of its own (a transaction).
    pub(crate) fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    /// Gives the kept connection back to the pool. A statement still running keeps it: the
    /// worker only calls this between batches.
    pub(crate) fn release(&self) {
        if let Some(mut slot) = self.slot.as_ref().and_then(|slot| slot.try_lock().ok()) {
            *slot = None;
        }
    }

    /// The kept connection, taken out of its slot for one statement (from the pool when there is
    /// none, or when it was kept long enough). A statement whose future is dropped drops it
    /// too, and the pool checks it.
    async fn take(&self, slot: &mut Option<Held>) -> Result<Held, DbErr> {
        if let Some(held) = slot.take().filter(|held| held.since.elapsed() < MAX_HOLD) {
            return Ok(held);
        }
        // Only a PostgreSQL pool has a slot.
        let connection = self.pool.get_postgres_connection_pool().acquire().await.map_err(acquire_err)?;
        Ok(Held { connection, since: Instant::now() })
    }
}

impl HeldConnection {
    /// Runs `statement` with `run` on the kept connection; a failure of the statement itself is
    /// mapped with `statement_err` (sea-orm's `DbErr::Exec` or `DbErr::Query`).
    async fn on_held<T: Send>(
        &self,
        slot: &tokio::sync::Mutex<Option<Held>>,
        statement: Statement,
        statement_err: fn(RuntimeErr) -> DbErr,
        run: impl for<'c> FnOnce(Query<'c>, &'c mut sqlx::PgConnection) -> BoxFuture<'c, Result<T, sqlx::Error>> + Send,
    ) -> Result<T, DbErr> {
        let mut slot = slot.lock().await;
        let mut held = self.take(&mut slot).await?;
        let (sql, values) = parts(statement);
        let result = run(sqlx::query_with(&sql, values), &mut held.connection).await;
        put_back(&mut slot, held, &result);
        result.map_err(|e| statement_err(RuntimeErr::SqlxError(e)))
    }
}

type Query<'q> = sqlx::query::Query<'q, Postgres, SqlxValues>;

/// Puts `held` back for the next statement unless `result` says it may be broken: a statement's
/// own failure (a constraint, say) leaves the connection as it was; any other (I/O, protocol, a
/// closed connection) sends it back to the pool, which checks it.
fn put_back<T>(slot: &mut Option<Held>, held: Held, result: &Result<T, sqlx::Error>) {
    if matches!(result, Ok(_) | Err(sqlx::Error::Database(_))) {
        *slot = Some(held);
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
        let Some(slot) = &self.slot else { return self.pool.execute(statement).await };
        self.on_held(slot, statement, DbErr::Exec, |query, connection| {
            Box::pin(async move { query.execute(connection).await.map(ExecResult::from) })
        })
        .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.pool.execute_unprepared(sql).await
    }

    async fn query_one(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        let Some(slot) = &self.slot else { return self.pool.query_one(statement).await };
        self.on_held(slot, statement, DbErr::Query, |query, connection| {
            Box::pin(async move { query.fetch_optional(connection).await.map(|row| row.map(QueryResult::from)) })
        })
        .await
    }

    async fn query_all(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let Some(slot) = &self.slot else { return self.pool.query_all(statement).await };
        self.on_held(slot, statement, DbErr::Query, |query, connection| {
            Box::pin(async move {
                query.fetch_all(connection).await.map(|rows| rows.into_iter().map(QueryResult::from).collect())
            })
        })
        .await
    }
}
