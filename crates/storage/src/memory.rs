use std::{
    hash::BuildHasher as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use hashbrown::{DefaultHashBuilder, HashTable};
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

#[derive(Default)]
struct Inner {
    /// An entry is held by the million (one per live access token), so each is one allocation
    /// (key and value together) in a table of 24-byte slots; a `HashMap<String, Vec<u8>>`
    /// spends two allocations and 48 bytes of slot on the same.
    entries: HashTable<Entry>,
    hasher: DefaultHashBuilder,
    writes_since_sweep: usize,
    /// Unix milliseconds of the last sweep.
    swept_at: i64,
}

struct Entry {
    /// The key's length (LEB128: one byte for keys under 128 bytes), the key, then the value.
    bytes: Box<[u8]>,
    /// Unix milliseconds.
    expires_at: i64,
}

impl Entry {
    fn new(key: &str, value: &[u8], expires_at: i64) -> Self {
        let mut bytes = Vec::with_capacity(2 + key.len() + value.len());
        let mut length = key.len();
        while length >= 0x80 {
            bytes.push((length & 0x7f) as u8 | 0x80);
            length >>= 7;
        }
        bytes.push(length as u8);
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(value);
        Self { bytes: bytes.into_boxed_slice(), expires_at }
    }

    /// Where the key starts and ends.
    fn key_range(&self) -> (usize, usize) {
        let (mut length, mut shift, mut at) = (0usize, 0, 0);
        while let Some(&byte) = self.bytes.get(at) {
            length |= usize::from(byte & 0x7f) << shift;
            at += 1;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        (at, at + length)
    }

    fn key(&self) -> &[u8] {
        let (start, end) = self.key_range();
        &self.bytes[start..end]
    }

    fn value(&self) -> &[u8] {
        &self.bytes[self.key_range().1..]
    }
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
    /// The live entry under `key`; an expired one is dropped on the way.
    fn live(&mut self, key: &str, now: i64) -> Option<&mut Entry> {
        let hash = self.hasher.hash_one(key.as_bytes());
        let entry = self.entries.find_entry(hash, |e| e.key() == key.as_bytes()).ok()?;
        if entry.get().expires_at <= now {
            entry.remove();
            return None;
        }
        Some(entry.into_mut())
    }

    /// Removes `key`'s entry, live or not.
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let hash = self.hasher.hash_one(key.as_bytes());
        let entry = self.entries.find_entry(hash, |e| e.key() == key.as_bytes()).ok()?;
        Some(entry.remove().0)
    }

    fn wrote(&mut self, now: i64) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY && now.saturating_sub(self.swept_at) >= SWEEP_INTERVAL_MS {
            self.entries.retain(|e| e.expires_at > now);
            // After a peak the table gives its room back, not only its entries.
            if self.entries.capacity() > 4 * self.entries.len().max(SWEEP_EVERY) {
                let hasher = &self.hasher;
                self.entries.shrink_to(2 * self.entries.len(), |e| hasher.hash_one(e.key()));
            }
            self.writes_since_sweep = 0;
            self.swept_at = now;
        }
    }

    fn insert(&mut self, key: &str, value: &[u8], expires_at: i64, now: i64) {
        let Self { entries, hasher, .. } = self;
        let hash = hasher.hash_one(key.as_bytes());
        let entry = Entry::new(key, value, expires_at);
        match entries.entry(hash, |e| e.key() == key.as_bytes(), |e| hasher.hash_one(e.key())) {
            hashbrown::hash_table::Entry::Occupied(mut occupied) => *occupied.get_mut() = entry,
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(entry);
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
        Ok(self.with(|inner, now| inner.live(key, now).map(|e| e.value().to_vec())))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.with(|inner, now| {
            inner.live(key, now)?;
            inner.remove(key).map(|e| e.value().to_vec())
        }))
    }

    async fn delete(&self, key: &str) -> Result<bool, EphemeralError> {
        Ok(self.with(|inner, now| inner.live(key, now).is_some() && inner.remove(key).is_some()))
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, EphemeralError> {
        self.with(|inner, now| {
            let (current, expires_at) = match inner.live(key, now) {
                Some(entry) => {
                    let text = std::str::from_utf8(entry.value()).map_err(|_| EphemeralError::WrongType)?;
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

#[cfg(test)]
mod tests {
    use oidc_core::ManualClock;

    use super::*;

    #[tokio::test]
    async fn keys_and_values_of_any_length_live_until_they_expire_and_a_sweep_returns_the_room() {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let store = MemoryEphemeralStore::with_clock(clock.clone());
        // Keys that are prefixes of each other, empty keys and values, one key holding a value
        // that looks like a key: each entry is found by its whole key only.
        for (key, value) in [("", &b""[..]), ("a", b"1"), ("ab", b""), ("abc", b"ab"), ("ä", &[0u8; 300][..])] {
            store.put(key, value, Duration::from_secs(60)).await.unwrap();
        }
        for (key, value) in [("", &b""[..]), ("a", b"1"), ("ab", b""), ("abc", b"ab"), ("ä", &[0u8; 300][..])] {
            assert_eq!(store.get(key).await.unwrap().as_deref(), Some(value), "{key:?}");
        }
        // Keys around the lengths where their length takes a second and a third byte.
        let long: Vec<String> = [127, 128, 300, 16_383, 16_384, 70_000].map(|n| "k".repeat(n)).to_vec();
        for key in &long {
            store.put(key, &key.as_bytes()[..3], Duration::from_secs(60)).await.unwrap();
        }
        for key in &long {
            assert_eq!(store.get(key).await.unwrap().as_deref(), Some(&key.as_bytes()[..3]), "{}", key.len());
            assert!(store.delete(key).await.unwrap());
        }
        assert_eq!(store.take("ab").await.unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(store.get("ab").await.unwrap(), None);
        assert_eq!(store.get("abc").await.unwrap().as_deref(), Some(&b"ab"[..]));

        for i in 0..20_000_u32 {
            store.put(&format!("at:{i}"), &i.to_le_bytes(), Duration::from_secs(300)).await.unwrap();
        }
        assert_eq!(store.get("at:19999").await.unwrap().as_deref(), Some(&19_999_u32.to_le_bytes()[..]));
        let peak = store.with(|inner, _| inner.entries.capacity());

        // The tokens expire; the next writes sweep them and the table shrinks.
        clock.advance(time::Duration::seconds(301));
        for i in 0..SWEEP_EVERY {
            store.put(&format!("later:{i}"), b"x", Duration::from_secs(300)).await.unwrap();
        }
        assert_eq!(store.len(), SWEEP_EVERY, "the first write after the expiry swept every expired entry");
        assert!(store.with(|inner, _| inner.entries.capacity()) * 4 <= peak, "the table gave its room back");
        assert_eq!(store.get("later:0").await.unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(store.get("at:1").await.unwrap(), None);
    }
}
