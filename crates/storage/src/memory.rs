use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use oidc_core::{EphemeralError, EphemeralStore};

/// [`EphemeralStore`] in process memory: the embedded default for a single node.
///
/// Not shared between processes; a deployment with more than one node uses Redis.
#[derive(Debug, Default)]
pub struct MemoryEphemeralStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    writes_since_sweep: usize,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
}

/// Expired entries are dropped lazily on read and in a sweep every this many writes, which
/// bounds memory without a background task.
const SWEEP_EVERY: usize = 1024;

impl MemoryEphemeralStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, Instant) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner, Instant::now())
    }
}

impl Inner {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expires_at <= now) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn wrote(&mut self, now: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.entries.retain(|_, e| e.expires_at > now);
            self.writes_since_sweep = 0;
        }
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, expires_at: Instant, now: Instant) {
        self.entries.insert(key.to_owned(), Entry { value, expires_at });
        self.wrote(now);
    }
}

#[async_trait]
impl EphemeralStore for MemoryEphemeralStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        self.with(|inner, now| inner.insert(key, value.to_vec(), now + ttl, now));
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, EphemeralError> {
        Ok(self.with(|inner, now| {
            if inner.live(key, now).is_some() {
                return false;
            }
            inner.insert(key, value.to_vec(), now + ttl, now);
            true
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| inner.live(key, now).map(|e| e.value.clone())))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| {
            inner.live(key, now)?;
            inner.entries.remove(key).map(|e| e.value)
        }))
    }

    async fn delete(&self, key: &str) -> Result<bool, EphemeralError> {
        Ok(self.with(|inner, now| inner.live(key, now).is_some() && inner.entries.remove(key).is_some()))
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, EphemeralError> {
        self.with(|inner, now| {
            let (current, expires_at) = match inner.live(key, now) {
                Some(entry) => {
                    let text = std::str::from_utf8(&entry.value).map_err(|_| EphemeralError::WrongType)?;
                    (text.parse::<i64>().map_err(|_| EphemeralError::WrongType)?, entry.expires_at)
                }
                None => (0, now + ttl),
            };
            let next = current.checked_add(by).ok_or(EphemeralError::WrongType)?;
            // Stored as decimal text, as Redis keeps counters.
            inner.insert(key, next.to_string().into_bytes(), expires_at, now);
            Ok(next)
        })
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        Ok(())
    }
}
