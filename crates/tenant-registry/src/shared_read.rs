//! Reads of the registry's generation counter that start together share one look at the shared
//! store, but never one that was under way before them.
//!
//! Every cached lookup must see each write that completed before the lookup began, so it cannot
//! take the answer of a read already in flight (that read may predate the write). It can take
//! the answer of the next one: while a read is under way, lookups that come queue up, and when it
//! ends the first of them reads once for all of them. On Redis that bounds the counter's round
//! trips to one at a time, however many requests look up a client at once; with the in-memory
//! store a read never waits, so nobody queues.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use futures::channel::oneshot;

/// What a queued caller learns: the value read for it, or that it reads for the others now.
enum Turn {
    Value(Result<i64, String>),
    Lead(Baton),
}

#[derive(Default)]
struct State {
    /// A read is under way, or handed on to a caller who will start it.
    reading: bool,
    /// Who came while it was: served by the next read.
    queued: Vec<oneshot::Sender<Turn>>,
}

/// Coalesces concurrent reads that must each start after their caller.
#[derive(Default)]
pub(crate) struct SharedRead {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedRead {
    /// The result of `read`, run after this call began: by this caller or by one that queued
    /// with it. An error comes as its text (every caller of one read gets it).
    pub(crate) async fn read<F, Fut>(&self, read: F) -> Result<i64, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<i64, String>>,
    {
        let mut baton = loop {
            let told = {
                let mut state = lock(&self.state);
                if !state.reading {
                    state.reading = true;
                    break Baton { state: self.state.clone(), batch: Vec::new(), armed: true };
                }
                let (tell, told) = oneshot::channel();
                state.queued.push(tell);
                told
            };
            match told.await {
                Ok(Turn::Value(value)) => return value,
                Ok(Turn::Lead(baton)) => break baton,
                // Not sent to (every queued caller is answered or handed the lead, and a
                // dropped lead hands itself on); queue again rather than wait for nothing.
                Err(oneshot::Canceled) => continue,
            }
        };
        let value = read().await;
        for waiting in std::mem::take(&mut baton.batch) {
            let _ = waiting.send(Turn::Value(value.clone()));
        }
        value
    }
}

/// The right to read for `batch`. Dropped — after the read, or with the read cancelled, or
/// unreceived in a channel whose caller went away — it goes on to the next caller waiting.
struct Baton {
    state: Arc<Mutex<State>>,
    /// Who waits for this read.
    batch: Vec<oneshot::Sender<Turn>>,
    /// Cleared when the lead was taken back from a channel nobody listens on.
    armed: bool,
}

impl Drop for Baton {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = lock(&self.state);
        // Those of this batch first (a cancelled read served nobody), then those queued since.
        let mut candidates: VecDeque<_> = std::mem::take(&mut self.batch).into();
        candidates.extend(state.queued.drain(..));
        while let Some(next) = candidates.pop_front() {
            let batch = candidates.drain(..).collect();
            match next.send(Turn::Lead(Baton { state: self.state.clone(), batch, armed: true })) {
                Ok(()) => return,
                // That caller went away: take the lead back (without handing it on from here).
                Err(Turn::Lead(mut unreceived)) => {
                    unreceived.armed = false;
                    candidates = std::mem::take(&mut unreceived.batch).into();
                }
                Err(Turn::Value(_)) => {}
            }
        }
        state.reading = false;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        pin::pin,
        sync::atomic::{AtomicI64, Ordering},
        task::Poll,
    };

    use futures::{FutureExt as _, future::join_all, poll};
    use tokio::sync::Semaphore;

    use super::*;

    /// `future`'s output; a caller left waiting for good fails the test instead of hanging it.
    async fn within<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(5), future).await.expect("a caller was left waiting")
    }

    /// A read that counts its starts, answers with its number and waits for a permit of `gate`.
    fn reader<'a>(
        starts: &'a AtomicI64,
        gate: &'a Semaphore,
    ) -> impl FnOnce() -> futures::future::BoxFuture<'a, Result<i64, String>> {
        move || {
            async move {
                let number = starts.fetch_add(1, Ordering::SeqCst) + 1;
                gate.acquire().await.map_err(|e| e.to_string())?.forget();
                Ok(number)
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn callers_that_come_during_a_read_share_the_next_one() {
        let (shared, starts, gate) = (SharedRead::default(), AtomicI64::new(0), Semaphore::new(0));
        let mut first = pin!(shared.read(reader(&starts, &gate)));
        assert!(poll!(first.as_mut()).is_pending());
        let mut later: Vec<_> = (0..5).map(|_| Box::pin(shared.read(reader(&starts, &gate)))).collect();
        for caller in &mut later {
            assert!(poll!(caller.as_mut()).is_pending());
        }
        assert_eq!(starts.load(Ordering::SeqCst), 1, "nobody joins the read under way");
        gate.add_permits(1);
        assert_eq!(within(first).await, Ok(1));
        gate.add_permits(1);
        assert_eq!(within(join_all(later)).await, vec![Ok(2); 5], "one read, begun after all of them");
        assert_eq!(starts.load(Ordering::SeqCst), 2);

        // Nobody left waiting: the next caller reads at once.
        gate.add_permits(1);
        assert_eq!(within(shared.read(reader(&starts, &gate))).await, Ok(3));
    }

    #[tokio::test]
    async fn a_cancelled_read_hands_its_callers_on() {
        let (shared, starts, gate) = (SharedRead::default(), AtomicI64::new(0), Semaphore::new(0));
        let mut leader = Box::pin(shared.read(reader(&starts, &gate)));
        assert!(poll!(leader.as_mut()).is_pending());
        let mut queued = Box::pin(shared.read(reader(&starts, &gate)));
        assert!(poll!(queued.as_mut()).is_pending());
        drop(leader);
        gate.add_permits(1);
        assert_eq!(within(queued).await, Ok(2), "the queued caller read for itself");
    }

    #[tokio::test]
    async fn a_lead_whose_caller_went_away_goes_on() {
        let (shared, starts, gate) = (SharedRead::default(), AtomicI64::new(0), Semaphore::new(0));
        let mut leader = Box::pin(shared.read(reader(&starts, &gate)));
        assert!(poll!(leader.as_mut()).is_pending());
        let mut gone_before = Box::pin(shared.read(reader(&starts, &gate)));
        let mut gone_after = Box::pin(shared.read(reader(&starts, &gate)));
        let mut staying = Box::pin(shared.read(reader(&starts, &gate)));
        for caller in [&mut gone_before, &mut gone_after, &mut staying] {
            assert!(poll!(caller.as_mut()).is_pending());
        }
        // One goes before it could be handed the lead, one after it was (unreceived).
        drop(gone_before);
        gate.add_permits(1);
        assert_eq!(within(leader).await, Ok(1));
        drop(gone_after);
        gate.add_permits(1);
        assert_eq!(within(staying).await, Ok(2));

        // And with nobody left to take it, the lead ends: the next caller reads at once.
        let mut leader = Box::pin(shared.read(reader(&starts, &gate)));
        assert!(poll!(leader.as_mut()).is_pending());
        let mut gone = Box::pin(shared.read(reader(&starts, &gate)));
        assert!(poll!(gone.as_mut()).is_pending());
        gate.add_permits(1);
        assert_eq!(within(leader).await, Ok(3));
        drop(gone);
        gate.add_permits(1);
        assert!(matches!(poll!(pin!(shared.read(reader(&starts, &gate)))), Poll::Ready(Ok(4))));
    }
}
