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
    /// Boxed slices, not `String`/`Vec`: an entry is held by the million (one per live access
    /// token), and a box is two words where a growable buffer is three.
    entries: HashMap<Box<str>, Entry>,
    writes_since_sweep: usize,
    /// Unix milliseconds of the last sweep.
    swept_at: i64,
}

#[derive(Debug)]
struct Entry {
    value: Box<[u8]>,
    /// Unix milliseconds.
    expires_at: i64,
}

/// Expired entries are dropped lazily on read and in a sweep after this many writes, at most
/// once a second (a sweep reads every entry), which bounds memory without a background task.
const SWEEP_EVERY: usize = 1024;
const SWEEP_INTERVAL_MS: i64 = 1000;

fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn expiry(now: i64, ttl: Duration) -> i64 {
    now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

impl MemoryEphemeralStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose entries expire by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self { inner: Mutex::default(), clock }
    }

    /// Entries held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.with(|inner, _| inner.entries.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, i64) -> T) -> T {
        let now = millis(self.clock.now());
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner, now)
    }
}

impl Inner {
    fn live(&mut self, key: &str, now: i64) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expires_at <= now) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn wrote(&mut self, now: i64) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY && now.saturating_sub(self.swept_at) >= SWEEP_INTERVAL_MS {
            self.entries.retain(|_, e| e.expires_at > now);
            // After a peak the table gives its room back, not only its entries.
            if self.entries.capacity() > 4 * self.entries.len().max(SWEEP_EVERY) {
                self.entries.shrink_to(2 * self.entries.len());
            }
            self.writes_since_sweep = 0;
            self.swept_at = now;
        }
    }

    fn insert(&mut self, key: &str, value: &[u8], expires_at: i64, now: i64) {
        match self.entries.get_mut(key) {
            Some(entry) => *entry = Entry { value: value.into(), expires_at },
            None => {
                self.entries.insert(key.into(), Entry { value: value.into(), expires_at });
            }
        }
        self.wrote(now);
    }
}

#[async_trait]
impl EphemeralStore for MemoryEphemeralStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        self.with(|inner, now| inner.insert(key, value, expiry(now, ttl), now));
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, EphemeralError> {
        Ok(self.with(|inner, now| {
            if inner.live(key, now).is_some() {
                return false;
            }
            inner.insert(key, value, expiry(now, ttl), now);
            true
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| inner.live(key, now).map(|e| e.value.to_vec())))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| {
            inner.live(key, now)?;
            inner.entries.remove(key).map(|e| e.value.into_vec())
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
                None => (0, expiry(now, ttl)),
            };
            let next = current.checked_add(by).ok_or(EphemeralError::WrongType)?;
            // Stored as decimal text, as Redis keeps counters.
            inner.insert(key, next.to_string().as_bytes(), expires_at, now);
            Ok(next)
        })
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        Ok(())
    }
}
