use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use async_trait::async_trait;
use oidc_core::{Clock, EphemeralError, EphemeralStore, SystemClock};
use time::OffsetDateTime;

/// [`EphemeralStore`] in process memory: the embedded default for a single node.
///
/// Not shared between processes; a deployment with more than one node uses Redis. Entries expire
/// by the injected [`Clock`], so tests that move time move expiries too.
pub struct MemoryEphemeralStore {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryEphemeralStore {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for MemoryEphemeralStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEphemeralStore").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    writes_since_sweep: usize,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: OffsetDateTime,
}

/// Expired entries are dropped lazily on read and in a sweep every this many writes, which
/// bounds memory without a background task.
const SWEEP_EVERY: usize = 1024;

impl MemoryEphemeralStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose entries expire by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self { inner: Mutex::default(), clock }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, OffsetDateTime) -> T) -> T {
        let now = self.clock.now();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner, now)
    }
}

impl Inner {
    fn live(&mut self, key: &str, now: OffsetDateTime) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expires_at <= now) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn wrote(&mut self, now: OffsetDateTime) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.entries.retain(|_, e| e.expires_at > now);
            self.writes_since_sweep = 0;
        }
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, expires_at: OffsetDateTime, now: OffsetDateTime) {
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
