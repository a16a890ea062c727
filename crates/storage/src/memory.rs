use std::{
    hash::BuildHasher as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
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

struct Inner {
    /// An entry is held by the million (one per live access token), so each is one allocation
    /// (expiry, key and value together) in a table of 16-byte slots; a `HashMap<String, Vec<u8>>`
    /// spends two allocations and 48 bytes of slot on the same. [`SHARDS`] tables, by bits of
    /// the hash the tables do not use, so that a sweep can visit a part of the entries.
    shards: Vec<HashTable<Entry>>,
    hasher: DefaultHashBuilder,
    /// Unix milliseconds that expiries are stored relative to (the store's start), so that
    /// one takes three to five bytes instead of eight.
    epoch: i64,
    /// The key being looked up, in its stored form; kept to spare an allocation per lookup.
    probe: Vec<u8>,
    /// Entries the writes since the last sweep have paid to visit.
    sweep_credit: usize,
    /// The shard the next sweep visits.
    next_sweep: usize,
}

/// One entry's bytes: its expiry (milliseconds after [`Inner::epoch`], zigzag LEB128), its key
/// (see [`encode_key`]), then its value.
struct Entry {
    bytes: Box<[u8]>,
}

/// Reads a LEB128 number from the start of `bytes`: the number and the bytes it took.
fn read_varint(bytes: &[u8]) -> (u64, usize) {
    let (mut number, mut shift, mut at) = (0u64, 0, 0);
    while let Some(&byte) = bytes.get(at) {
        number |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        at += 1;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    (number, at)
}

/// `number` as LEB128: the bytes and how many of them it takes.
fn varint(mut number: u64) -> ([u8; 10], usize) {
    let (mut bytes, mut length) = ([0u8; 10], 0);
    while number >= 0x80 {
        bytes[length] = (number & 0x7f) as u8 | 0x80;
        number >>= 7;
        length += 1;
    }
    bytes[length] = number as u8;
    (bytes, length + 1)
}

/// The first byte of a key in its stored form: below this, a short key of that many bytes
/// follows as it is.
const KEY_SHORT_LIMIT: u8 = 0x80;
/// `KEY_DIGEST | p`: a key of the shape `{prefix}{22 characters of URL-safe base64}` (how the
/// server names what it keeps under a 128-bit digest, `at:…`), whose `p`-byte prefix follows,
/// then the 16 bytes the base64 stands for: 17 + p bytes instead of 23 + p.
const KEY_DIGEST: u8 = 0x80;
const KEY_DIGEST_PREFIX_MAX: usize = 0x3f;
/// Followed by the key's length (LEB128) and the key as it is.
const KEY_LONG: u8 = 0xc0;
const DIGEST_CHARS: usize = 22;

/// `key` in the form it is stored and compared in: one form per key, so two keys are equal
/// exactly when their forms are.
fn encode_key(key: &str, out: &mut Vec<u8>) {
    let bytes = key.as_bytes();
    if let Some(prefix_len) = bytes.len().checked_sub(DIGEST_CHARS)
        && prefix_len <= KEY_DIGEST_PREFIX_MAX
        && key.is_char_boundary(prefix_len)
    {
        let mut digest = [0u8; 16];
        // The strict decoder refuses set trailing bits, so no two texts map to one digest.
        if URL_SAFE_NO_PAD.decode_slice(&bytes[prefix_len..], &mut digest) == Ok(16) {
            out.push(KEY_DIGEST | prefix_len as u8);
            out.extend_from_slice(&bytes[..prefix_len]);
            out.extend_from_slice(&digest);
            return;
        }
    }
    match u8::try_from(bytes.len()) {
        Ok(length) if length < KEY_SHORT_LIMIT => out.push(length),
        _ => {
            let (length, took) = varint(bytes.len() as u64);
            out.push(KEY_LONG);
            out.extend_from_slice(&length[..took]);
        }
    }
    out.extend_from_slice(bytes);
}

/// The length of the stored key at the start of `bytes`.
fn stored_key_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(&first) if first < KEY_SHORT_LIMIT => 1 + usize::from(first),
        Some(&first) if first < KEY_LONG => 1 + usize::from(first & KEY_DIGEST_PREFIX_MAX as u8) + 16,
        Some(_) => {
            let (length, took) = read_varint(&bytes[1..]);
            1 + took + usize::try_from(length).unwrap_or(usize::MAX)
        }
        None => 0,
    }
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

impl Entry {
    /// `stored_key` as [`encode_key`] wrote it.
    fn new(stored_key: &[u8], value: &[u8], expires_at: i64, epoch: i64) -> Self {
        let (expiry, took) = varint(zigzag(expires_at.saturating_sub(epoch)));
        // The exact size: a block allocated larger keeps its size class when shrunk.
        let mut bytes = Vec::with_capacity(took + stored_key.len() + value.len());
        bytes.extend_from_slice(&expiry[..took]);
        bytes.extend_from_slice(stored_key);
        bytes.extend_from_slice(value);
        Self { bytes: bytes.into_boxed_slice() }
    }

    /// Unix milliseconds.
    fn expires_at(&self, epoch: i64) -> i64 {
        epoch.saturating_add(unzigzag(read_varint(&self.bytes).0))
    }

    /// Where the stored key starts and ends.
    fn key_range(&self) -> (usize, usize) {
        let start = read_varint(&self.bytes).1;
        let end = start.saturating_add(stored_key_len(&self.bytes[start..]));
        (start, end.min(self.bytes.len()))
    }

    fn key(&self) -> &[u8] {
        let (start, end) = self.key_range();
        &self.bytes[start..end]
    }

    fn value(&self) -> &[u8] {
        &self.bytes[self.key_range().1..]
    }
}

/// Expired entries are dropped lazily on read, and by a sweep that visits one shard at a time,
/// paid for by the writes: each write pays for this many visits, and the next shard is swept
/// once the writes have paid for all of its entries. So a sweep costs a write a bounded amount
/// on average (a visit reads the entry's allocation: a cache miss, about 40 ns at a million
/// entries), never stalls the store for longer than one shard's visit, and bounds memory
/// without a background task: entries that expired wait at most one round through the shards,
/// during which the writes add at most a quarter of the entries again, so the store holds at
/// most 4/3 of its live entries.
const SWEEP_VISITS_PER_WRITE: usize = 4;
const SHARDS: usize = 64;
/// A shard's table gives its room back when it is four times larger than needed for this many.
const SHRINK_FLOOR: usize = 16;

fn shard_of(hash: u64) -> usize {
    // hashbrown takes a table's bucket from the low bits and its tag from the top seven.
    (hash >> 40) as usize % SHARDS
}

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
        let now = millis(clock.now());
        let inner = Inner {
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
            hasher: DefaultHashBuilder::default(),
            epoch: now,
            probe: Vec::new(),
            sweep_credit: 0,
            next_sweep: 0,
        };
        Self { inner: Mutex::new(inner), clock }
    }

    /// Entries held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.with(|inner, _| inner.shards.iter().map(HashTable::len).sum())
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
    /// `key`'s stored form in `self.probe`, and its hash.
    fn probe(&mut self, key: &str) -> u64 {
        self.probe.clear();
        encode_key(key, &mut self.probe);
        self.hasher.hash_one(&self.probe[..])
    }

    /// The live entry under `key` and its expiry; an expired one is dropped on the way.
    fn live(&mut self, key: &str, now: i64) -> Option<(&mut Entry, i64)> {
        let hash = self.probe(key);
        let Self { shards, probe, epoch, .. } = self;
        let entry = shards[shard_of(hash)].find_entry(hash, |e| e.key() == &probe[..]).ok()?;
        let expires_at = entry.get().expires_at(*epoch);
        if expires_at <= now {
            entry.remove();
            return None;
        }
        Some((entry.into_mut(), expires_at))
    }

    /// Removes `key`'s entry, live or not.
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let hash = self.probe(key);
        let Self { shards, probe, .. } = self;
        let entry = shards[shard_of(hash)].find_entry(hash, |e| e.key() == &probe[..]).ok()?;
        Some(entry.remove().0)
    }

    fn wrote(&mut self, now: i64) {
        self.sweep_credit = self.sweep_credit.saturating_add(SWEEP_VISITS_PER_WRITE);
        let Self { shards, hasher, epoch, sweep_credit, next_sweep, .. } = self;
        let shard = &mut shards[*next_sweep];
        if *sweep_credit < shard.len() {
            return;
        }
        // What the writes paid beyond this shard is not saved up: a credit built while the
        // shards were small would let later writes each sweep a large one.
        *sweep_credit = 0;
        shard.retain(|e| e.expires_at(*epoch) > now);
        // After a peak the table gives its room back, not only its entries.
        if shard.capacity() > 4 * shard.len().max(SHRINK_FLOOR) {
            shard.shrink_to(2 * shard.len(), |e| hasher.hash_one(e.key()));
        }
        *next_sweep = (*next_sweep + 1) % SHARDS;
    }

    fn insert(&mut self, key: &str, value: &[u8], expires_at: i64, now: i64) {
        let hash = self.probe(key);
        let Self { shards, hasher, probe, epoch, .. } = self;
        let entry = Entry::new(probe, value, expires_at, *epoch);
        match shards[shard_of(hash)].entry(hash, |e| e.key() == &probe[..], |e| hasher.hash_one(e.key())) {
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
        Ok(self.with(|inner, now| inner.live(key, now).map(|(e, _)| e.value().to_vec())))
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
                Some((entry, expires_at)) => {
                    let text = std::str::from_utf8(entry.value()).map_err(|_| EphemeralError::WrongType)?;
                    (text.parse::<i64>().map_err(|_| EphemeralError::WrongType)?, expires_at)
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
        // Keys named by a 128-bit digest are kept as its 16 bytes: each still found by its whole
        // key only, a text whose last character has set trailing bits ("…AB" against "…AA"
        // for the same bytes) stays a key of its own, and so does anything near the shape.
        let digest_keys = [
            "at:AAAAAAAAAAAAAAAAAAAAAA",
            "at:AAAAAAAAAAAAAAAAAAAAAB",
            "atf:AAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAA",
            "ä:_-_-_-_-_-_-_-_-_-_-_w",
            "at:AAAAAAAAAAAAAAAAAAAAA=",
            "at:AAAAAAAAAAAAAAAAAAAAA",
            "at:AAAAAAAAAAAAAAAAAAAAAAA",
        ];
        let long_prefix = format!("{}:AAAAAAAAAAAAAAAAAAAAAA", "p".repeat(80));
        for (i, key) in digest_keys.iter().copied().chain([long_prefix.as_str()]).enumerate() {
            store.put(key, &[i as u8], Duration::from_secs(60)).await.unwrap();
        }
        for (i, key) in digest_keys.iter().copied().chain([long_prefix.as_str()]).enumerate() {
            assert_eq!(store.get(key).await.unwrap().as_deref(), Some(&[i as u8][..]), "{key:?}");
        }
        let mut stored = Vec::new();
        encode_key("at:AAAAAAAAAAAAAAAAAAAAAA", &mut stored);
        assert_eq!(stored.len(), 1 + 3 + 16, "the digest is kept as its bytes");
        assert_eq!(store.take("ab").await.unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(store.get("ab").await.unwrap(), None);
        assert_eq!(store.get("abc").await.unwrap().as_deref(), Some(&b"ab"[..]));

        for i in 0..20_000_u32 {
            store.put(&format!("at:{i}"), &i.to_le_bytes(), Duration::from_secs(300)).await.unwrap();
        }
        assert_eq!(store.get("at:19999").await.unwrap().as_deref(), Some(&19_999_u32.to_le_bytes()[..]));
        let capacity = |store: &MemoryEphemeralStore| {
            store.with(|inner, _| inner.shards.iter().map(HashTable::capacity).sum::<usize>())
        };
        let peak = capacity(&store);

        // The tokens expire; the writes after them pay for a round through the shards, which
        // sweeps them, and the tables shrink. Fewer writes do not visit every shard.
        clock.advance(time::Duration::seconds(301));
        // A round visits the expired entries and the new ones: at most 20,000 / (4 − 1) writes.
        let bound = 20_000 / (SWEEP_VISITS_PER_WRITE - 1) + 2 * SHARDS;
        for i in 0..bound / 4 {
            store.put(&format!("later:{i}"), b"x", Duration::from_secs(300)).await.unwrap();
        }
        assert!(store.len() > bound / 4 + 5_000, "a part of a round sweeps a part of the expired entries");
        let mut writes = bound / 4;
        while store.len() > writes {
            store.put(&format!("later:{writes}"), b"x", Duration::from_secs(300)).await.unwrap();
            writes += 1;
            assert!(writes <= bound, "{} entries left after {writes} writes", store.len());
        }
        // The tables hold room for what lives now, not for the peak.
        let (now_capacity, live) = (capacity(&store), store.len());
        assert!(now_capacity <= 4 * live.max(SHARDS * SHRINK_FLOOR), "{now_capacity} slots for {live} entries");
        assert!(now_capacity * 2 <= peak, "{now_capacity} slots now, {peak} at the peak");
        assert_eq!(store.get("later:0").await.unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(store.get("at:1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn expiries_hold_on_either_side_of_the_stores_start() {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let store = MemoryEphemeralStore::with_clock(clock.clone());
        store.put("soon", b"1", Duration::from_millis(1500)).await.unwrap();
        // A clock set back: what is put now expires before the store's start.
        clock.advance(-time::Duration::days(400));
        store.put("back", b"2", Duration::from_secs(60)).await.unwrap();
        store.put("far", b"3", Duration::from_secs(3 * 365 * 86_400)).await.unwrap();
        assert_eq!(store.get("back").await.unwrap().as_deref(), Some(&b"2"[..]));
        clock.advance(time::Duration::seconds(61));
        assert_eq!(store.get("back").await.unwrap(), None, "expired a minute after it was put");
        clock.advance(time::Duration::days(400) - time::Duration::seconds(61) + time::Duration::milliseconds(1499));
        assert_eq!(store.get("soon").await.unwrap().as_deref(), Some(&b"1"[..]));
        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(store.get("soon").await.unwrap(), None, "expired to the millisecond");
        clock.advance(time::Duration::days(690)); // "far" lives until 695 days after the start
        assert_eq!(store.get("far").await.unwrap().as_deref(), Some(&b"3"[..]));
        clock.advance(time::Duration::days(6));
        assert_eq!(store.get("far").await.unwrap(), None);
        assert_eq!(store.increment("far-counter", 2, Duration::from_secs(10)).await.unwrap(), 2);
        assert_eq!(store.increment("far-counter", 3, Duration::from_secs(10)).await.unwrap(), 5);
    }
}
