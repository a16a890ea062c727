//! Concurrent single-row statements of one kind, coalesced into one statement.
//!
//! Each statement costs a hop: on SQLite to sqlx's connection thread and back, plus sqlx's check
//! of the connection when it goes back to the pool (a second hop); on PostgreSQL a round trip.
//! Every sign-in reads an account and a consent and inserts a refresh token and a transfer-log
//! row, and under load many requests do so at the same moment. A [`Batcher`] runs one statement
//! of its kind at a time and gives it all requests that queued up while the previous one ran:
//! one `… WHERE id IN (…)` or one multi-row `INSERT` for all of them. A request that comes alone
//! does not wait for company: its statement starts after one turn of the scheduler. On
//! PostgreSQL a worker keeps its connection from one batch to the next while they keep coming
//! (`crate::held_connection`), which saves sqlx's check.
//!
//! A request sees every write that was committed before it was queued (its statement starts
//! later), and its own write is committed when it gets its answer: batching changes neither
//! what a read sees nor when a write is durable.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

/// The statement for a batch, on its worker's lane: one answer per query, in the queries' order.
type Run<L, Q, A> = Arc<dyn Fn(L, Vec<Q>) -> Pin<Box<dyn Future<Output = Vec<A>> + Send>> + Send + Sync>;

/// What a worker keeps from one batch to the next (its connection), handed to every batch.
pub(crate) trait Lane: Clone + Send + Sync + 'static {
    /// No batch came for [`IDLE`] (or one panicked): let go of what was kept.
    fn idle(&self);

    /// Whether what the lane kept goes as soon as no batch follows at once (a connection
    /// everyone else needs too) instead of after [`IDLE`].
    fn shared(&self) -> bool {
        false
    }
}

impl Lane for () {
    fn idle(&self) {}
}

impl Lane for crate::held_connection::HeldConnection {
    fn idle(&self) {
        self.release();
    }

    fn shared(&self) -> bool {
        self.shared()
    }
}

/// How long a worker keeps its lane's connection without a batch: long enough to span the gaps
/// between batches under load, short enough that a quiet node holds nothing.
pub(crate) const IDLE: Duration = Duration::from_millis(100);

type Job<Q, A> = (Q, oneshot::Sender<A>);

/// Why a batched statement has no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unanswered {
    /// Queue and statement took longer than the connection timeout (the database is hung or
    /// overloaded); as when waiting for a connection from the pool, the request fails instead
    /// of queueing on.
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    /// The statement failed without an answer (it panicked).
    #[error("the batched statement ended without an answer")]
    Lost,
}

/// Runs queries of one kind, one batch at a time, at most `max_batch` per statement.
pub(crate) struct Batcher<Q, A, L = ()> {
    run: Run<L, Q, A>,
    /// A new worker's lane.
    lane: Arc<dyn Fn() -> L + Send + Sync>,
    /// Started by the first query, on its runtime; started again when that runtime is gone.
    worker: Mutex<Option<mpsc::UnboundedSender<Job<Q, A>>>>,
    max_batch: usize,
    wait: Duration,
}

impl<Q, A, L> std::fmt::Debug for Batcher<Q, A, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("max_batch", &self.max_batch).field("wait", &self.wait).finish_non_exhaustive()
    }
}

#[cfg(test)]
impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// `run` answers a batch (on no lane); a query waits at most `wait` for its answer.
    pub(crate) fn new<F, Fut>(max_batch: usize, wait: Duration, run: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<A>> + Send + 'static,
    {
        Self::with_lane(max_batch, wait, || (), move |(), queries| run(queries))
    }
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A, crate::held_connection::HeldConnection> {
    /// Batches whose `statement` runs on a lane of `lanes`: a connection kept while batches keep
    /// coming (see `crate::held_connection`).
    pub(crate) fn on_held<F, Fut>(lanes: &crate::held_connection::Lanes, wait: Duration, statement: F) -> Self
    where
        F: Fn(crate::held_connection::HeldConnection, Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<A>> + Send + 'static,
    {
        let lanes = lanes.clone();
        Self::with_lane(MAX_BATCH, wait, move || lanes.lane(), statement)
    }
}

impl<Q: Send + 'static, A: Send + 'static, L: Lane> Batcher<Q, A, L> {
    /// `run` answers a batch on the lane `lane` made for its worker; a query waits at most
    /// `wait` for its answer.
    fn with_lane<F, Fut>(max_batch: usize, wait: Duration, lane: impl Fn() -> L + Send + Sync + 'static, run: F) -> Self
    where
        F: Fn(L, Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<A>> + Send + 'static,
    {
        Self {
            run: Arc::new(move |lane, queries| Box::pin(run(lane, queries))),
            lane: Arc::new(lane),
            worker: Mutex::new(None),
            max_batch: max_batch.max(1),
            wait,
        }
    }

    /// Queues `query` and waits for its answer.
    pub(crate) async fn call(&self, query: Q) -> Result<A, Unanswered> {
        let (reply, answer) = oneshot::channel();
        self.enqueue((query, reply));
        match tokio::time::timeout(self.wait, answer).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(Unanswered::Lost),
            Err(_) => Err(Unanswered::TimedOut(self.wait)),
        }
    }

    fn enqueue(&self, job: Job<Q, A>) {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        let job = match worker.as_ref() {
            Some(queue) => match queue.send(job) {
                Ok(()) => return,
                // Its runtime ended (a test's, a command's): start a worker on this one.
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (queue, jobs) = mpsc::unbounded_channel();
        // The lane belongs to the worker task: what it keeps is dropped with the task, on its
        // runtime.
        tokio::spawn(work(jobs, Arc::clone(&self.run), (self.lane)(), self.max_batch));
        // The receiver was just made and lives in the task spawned above.
        let _ = queue.send(job);
        *worker = Some(queue);
    }
}

async fn work<Q: Send + 'static, A: Send + 'static, L: Lane>(
    mut jobs: mpsc::UnboundedReceiver<Job<Q, A>>,
    run: Run<L, Q, A>,
    lane: L,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    // Whether the lane may keep something from the last batch.
    let mut kept = false;
    loop {
        let received = if kept {
            match tokio::time::timeout(IDLE, jobs.recv_many(&mut batch, max_batch)).await {
                Ok(received) => received,
                Err(_) => {
                    lane.idle();
                    kept = false;
                    continue;
                }
            }
        } else {
            jobs.recv_many(&mut batch, max_batch).await
        };
        if received == 0 {
            break;
        }
        // The first query woke this task, and tokio runs a task woken that way next (its LIFO
        // slot): the batch would be that one query while the requests behind it, ready to run,
        // were about to queue theirs. Yielding once lets them run first; on an idle runtime
        // this costs one turn of the scheduler, not a wait.
        if batch.len() < max_batch {
            tokio::task::yield_now().await;
            while batch.len() < max_batch
                && let Ok(job) = jobs.try_recv()
            {
                batch.push(job);
            }
        }
        // A caller that gave up while queued (timed out, disconnected) was told it failed: its
        // statement is not run. (One that gives up while its statement runs may find its write
        // made: a transfer logged and not released, a refresh token stored and never handed
        // out — never the reverse.)
        batch.retain(|(_, reply): &Job<Q, A>| !reply.is_closed());
        if batch.is_empty() {
            // (Nothing ran: a shared lane's connection, kept for this batch, goes now.)
            if lane.shared() && jobs.is_empty() {
                lane.idle();
            }
            continue;
        }
        let (queries, replies): (Vec<Q>, Vec<oneshot::Sender<A>>) = batch.drain(..).unzip();
        // A panic fails its batch (the callers see `Lost`), not the batches after it; what the
        // lane kept may have been left mid-statement, so it goes.
        match AssertUnwindSafe(run(lane.clone(), queries)).catch_unwind().await {
            Ok(answers) => {
                kept = true;
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
                // A shared lane's connection stays for the batches that are ready to run now
                // (one turn of the scheduler lets them queue for it), and goes when none is.
                if lane.shared() && jobs.is_empty() {
                    tokio::task::yield_now().await;
                    if jobs.is_empty() {
                        lane.idle();
                    }
                }
            }
            Err(_) => lane.idle(),
        }
    }
}

/// One database error, shared by every query of the batch it failed.
#[derive(Debug, Clone)]
pub(crate) struct SharedDbErr(pub(crate) Arc<sea_orm::DbErr>);

impl std::fmt::Display for SharedDbErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedDbErr {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Most queries per statement: 64 rows of eight columns stay far below every parameter limit
/// (SQLite's 32,766, PostgreSQL's 65,535).
pub(crate) const MAX_BATCH: usize = 64;

/// Answers each key of a read batch with its row, if any, or each with the read's error.
pub(crate) fn rows_by_key<K, M>(
    keys: &[K],
    rows: Result<Vec<M>, sea_orm::DbErr>,
    key_of: impl Fn(&M) -> K,
) -> Vec<Result<Option<M>, SharedDbErr>>
where
    K: Eq + std::hash::Hash,
    M: Clone,
{
    match rows {
        Ok(rows) => {
            let by_key: hashbrown::HashMap<K, M> = rows.into_iter().map(|row| (key_of(&row), row)).collect();
            keys.iter().map(|key| Ok(by_key.get(key).cloned())).collect()
        }
        Err(e) => {
            let shared = SharedDbErr(Arc::new(e));
            keys.iter().map(|_| Err(shared.clone())).collect()
        }
    }
}

/// How one row of an insert batch fared.
#[derive(Debug)]
pub(crate) enum Inserted {
    Yes,
    /// The row's own failure (it was inserted alone).
    Failed(sea_orm::DbErr),
    /// The batch's statement failed for all its rows (the database, not a row).
    BatchFailed(SharedDbErr),
}

/// Inserts `rows` in one statement (its text from `texts` once built for the batch's size).
/// When that breaks a constraint — one row's fault, such as an account deleted meanwhile — each
/// row is inserted alone, so that only its own request fails.
pub(crate) async fn insert_all<A>(
    conn: crate::held_connection::HeldConnection,
    rows: Vec<A>,
    texts: &crate::statement_cache::StatementCache,
) -> Vec<Inserted>
where
    A: sea_orm::ActiveModelTrait + Clone + Send,
    <A::Entity as sea_orm::EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    use sea_orm::{ConnectionTrait, EntityTrait, QueryTrait};
    let count = rows.len();
    let retry = (count > 1).then(|| rows.clone());
    let backend = conn.get_database_backend();
    let statement = match crate::statement_cache::insert_values(&rows) {
        Some((shape, values)) => {
            texts.statement(backend, count, shape, || A::Entity::insert_many(rows).build(backend), move || values)
        }
        None => A::Entity::insert_many(rows).build(backend),
    };
    let failure = match conn.execute(statement).await {
        Ok(_) => return (0..count).map(|_| Inserted::Yes).collect(),
        Err(e) => e,
    };
    match retry {
        Some(rows) if failure.sql_err().is_some() => {
            let mut each = Vec::with_capacity(count);
            for row in rows {
                each.push(match A::Entity::insert(row).exec_without_returning(&conn).await {
                    Ok(_) => Inserted::Yes,
                    Err(e) => Inserted::Failed(e),
                });
            }
            each
        }
        Some(_) => {
            let shared = SharedDbErr(Arc::new(failure));
            (0..count).map(|_| Inserted::BatchFailed(shared.clone())).collect()
        }
        None => vec![Inserted::Failed(failure)],
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn queries_that_queue_while_one_runs_share_the_next_statement() {
        let statements = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&statements);
        let batcher = Arc::new(Batcher::new(64, Duration::from_secs(5), move |queries: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                queries.into_iter().map(|q| q * 2).collect::<Vec<_>>()
            }
        }));
        let calls: Vec<_> = (0..20u32)
            .map(|q| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { batcher.call(q).await.ok() })
            })
            .collect();
        for (q, call) in (0..20u32).zip(calls) {
            assert_eq!(call.await.ok().flatten(), Some(q * 2), "each query gets its own answer");
        }
        let ran = statements.load(Ordering::SeqCst);
        assert!((1..20).contains(&ran), "20 queries ran as {ran} statements");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_batch_fails_its_callers_and_not_the_next_batch() {
        let batcher = Batcher::new(8, Duration::from_secs(5), |queries: Vec<u32>| async move {
            assert!(queries != [13], "unlucky");
            queries
        });
        assert!(matches!(batcher.call(13).await, Err(Unanswered::Lost)));
        assert_eq!(batcher.call(7).await.ok(), Some(7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_hung_statement_times_out_and_callers_behind_it_are_not_run() {
        let statements = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&statements);
        let batcher = Arc::new(Batcher::new(8, Duration::from_millis(100), move |queries: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                queries
            }
        }));
        let first = tokio::spawn({
            let batcher = Arc::clone(&batcher);
            async move { batcher.call(1).await }
        });
        tokio::task::yield_now().await;
        assert!(matches!(batcher.call(2).await, Err(Unanswered::TimedOut(_))));
        assert!(matches!(first.await.ok(), Some(Err(Unanswered::TimedOut(_)))));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(statements.load(Ordering::SeqCst), 1, "the query that gave up while queued never ran");
    }

    #[test]
    fn a_batcher_outlives_the_runtime_that_started_its_worker() {
        let batcher = Batcher::new(8, Duration::from_secs(5), |queries: Vec<u32>| async move { queries });
        for _ in 0..2 {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
            let answer = runtime.map(|rt| rt.block_on(batcher.call(5)).ok());
            assert_eq!(answer, Some(Some(5)));
        }
    }
}
