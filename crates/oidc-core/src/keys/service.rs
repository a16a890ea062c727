use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use time::OffsetDateTime;

use super::{
    Jwk, JwkSet, KeyError, KeyRing, KeyStoreError, SigningAlgorithm, SigningKey, SigningKeyStore, StoredSigningKey,
    material,
};
use crate::{Clock, Environment};

/// When keys are made, used and dropped.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// One key per algorithm; the first is the default for ID tokens.
    pub algorithms: Vec<SigningAlgorithm>,
    /// How long a rotated-in key is only published before it signs.
    pub activation_delay: Duration,
    /// How long a replaced key stays published after it stopped signing: the longest lifetime of
    /// anything it signed.
    pub retention: Duration,
    /// How often each node re-reads the keys from the store; a key rotated on one node reaches the
    /// others within this time.
    pub refresh_interval: Duration,
}

/// Where a key stands in its life at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Published, not yet signing.
    Pending,
    /// Published and signing.
    Active,
    /// Published for verification only: a newer key signs.
    Retiring,
    /// No longer published.
    Expired,
}

impl KeyStatus {
    /// Lower-case name for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "pending",
            KeyStatus::Active => "active",
            KeyStatus::Retiring => "retiring",
            KeyStatus::Expired => "expired",
        }
    }
}

/// A key's public facts, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub algorithm: SigningAlgorithm,
    /// Rotation generation.
    pub generation: i32,
    /// Status now.
    pub status: KeyStatus,
    /// From when it signs.
    pub activates_at: OffsetDateTime,
    /// When it leaves the JWKS.
    pub expires_at: Option<OffsetDateTime>,
}

/// Signing keys of all environments: generation, rotation, JWKS and the signer for a token.
///
/// Keeps a per-environment snapshot of the store, re-read every
/// [`KeyPolicy::refresh_interval`]; nodes share nothing but the store.
pub struct KeyService {
    store: Arc<dyn SigningKeyStore>,
    kek: KeyRing,
    clock: Arc<dyn Clock>,
    policy: KeyPolicy,
    snapshots: RwLock<HashMap<Environment, Arc<Snapshot>>>,
    /// Counts rotations on this node: a snapshot loaded before one must not be installed after
    /// it (it would hide the rotated-in key until the next refresh).
    invalidations: std::sync::atomic::AtomicU64,
}

struct Snapshot {
    loaded_at: OffsetDateTime,
    /// Keys that had not expired when loaded.
    keys: Vec<LoadedKey>,
    /// The JWKS of these keys, serialised once.
    published: Arc<PublishedJwks>,
}

impl Snapshot {
    fn new(loaded_at: OffsetDateTime, keys: Vec<LoadedKey>) -> Result<Self, KeyError> {
        let published = Arc::new(PublishedJwks::of(&keys, loaded_at)?);
        Ok(Self { loaded_at, keys, published })
    }
}

/// A JWKS as served: its JSON bytes and an entity tag, built once per key snapshot, so that
/// serving it costs no serialisation and a relying party that has it gets `304 Not Modified`.
#[derive(Debug)]
pub struct PublishedJwks {
    /// `application/json`.
    pub body: Vec<u8>,
    /// A strong entity tag with its quotes, derived from the body.
    pub etag: String,
    /// The first expiry among the published keys: from then on the document is out of date.
    stale_at: Option<OffsetDateTime>,
}

impl PublishedJwks {
    fn of(keys: &[LoadedKey], now: OffsetDateTime) -> Result<Self, KeyError> {
        let live: Vec<&LoadedKey> = keys.iter().filter(|k| k.expires_at.is_none_or(|e| e > now)).collect();
        let set = JwkSet { keys: live.iter().map(|k| k.public.clone()).collect() };
        let body = serde_json::to_vec(&set).map_err(|e| KeyError::Material(e.to_string()))?;
        Ok(Self { etag: crate::entity_tag(&body), body, stale_at: live.iter().filter_map(|k| k.expires_at).min() })
    }
}

#[derive(Clone)]
struct LoadedKey {
    public: Jwk,
    generation: i32,
    activates_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    signer: Arc<SigningKey>,
}

fn status_at(
    activates_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    superseded: bool,
    now: OffsetDateTime,
) -> KeyStatus {
    match expires_at {
        Some(expiry) if expiry <= now => KeyStatus::Expired,
        _ if activates_at > now => KeyStatus::Pending,
        _ if superseded => KeyStatus::Retiring,
        _ => KeyStatus::Active,
    }
}

impl KeyService {
    /// A service over `store`; keys are sealed and opened with `kek`.
    pub fn new(store: Arc<dyn SigningKeyStore>, kek: KeyRing, clock: Arc<dyn Clock>, policy: KeyPolicy) -> Self {
        Self {
            store,
            kek,
            clock,
            policy,
            snapshots: RwLock::new(HashMap::new()),
            invalidations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Seals every stored private key that the previous KEK sealed under the current one (a KEK
    /// rotation); how many were re-sealed and how many were current already. A key neither
    /// KEK opens stops the run before anything else changes for it.
    pub async fn reseal_all(&self) -> Result<(usize, usize), KeyError> {
        let (mut resealed, mut current) = (0, 0);
        for environment in Environment::ALL {
            for key in self.store.list(environment).await? {
                if self.kek.open(&key.kid, &key.sealed_private_key).is_none() {
                    return Err(KeyError::Unseal { kid: key.kid });
                }
                match self.kek.reseal(&key.kid, &key.sealed_private_key) {
                    Some(sealed) => {
                        self.store.reseal(&key.kid, &sealed).await?;
                        resealed += 1;
                    }
                    None => current += 1,
                }
            }
        }
        Ok((resealed, current))
    }

    /// The algorithms keys are kept for, the ID-token default first.
    pub fn algorithms(&self) -> &[SigningAlgorithm] {
        &self.policy.algorithms
    }

    /// Makes sure every configured algorithm has an unexpired key in `environment`, generating
    /// missing ones (active at once), and holds them loaded: a node that calls this before it
    /// serves answers its first JWKS and signs its first token without waiting for the store.
    /// Safe to call from several nodes at the same time.
    pub async fn ensure_keys(&self, environment: Environment) -> Result<(), KeyError> {
        let stored = self.store.list(environment).await?;
        let now = self.clock.now();
        let mut new = Vec::new();
        for &algorithm in &self.policy.algorithms {
            let of_algorithm = stored.iter().filter(|k| k.algorithm == algorithm);
            if of_algorithm.clone().any(|k| k.expires_at.is_none_or(|e| e > now)) {
                continue;
            }
            let generation = of_algorithm.map(|k| k.generation).max().unwrap_or(0) + 1;
            new.push(self.generate(environment, algorithm, generation, now, now)?);
        }
        if !new.is_empty() {
            match self.store.rotate(&new, &[]).await {
                // Another node generated them first; theirs are as good as ours.
                Ok(()) | Err(KeyStoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.refresh(environment).await
    }

    /// Rotates every algorithm's key in `environment`: new keys are published now and sign after
    /// the activation delay; the keys they replace expire `retention` after that.
    pub async fn rotate(&self, environment: Environment) -> Result<Vec<KeyInfo>, KeyError> {
        let stored = self.store.list(environment).await?;
        let now = self.clock.now();
        let activates_at = now + self.policy.activation_delay;
        let expires_at = activates_at + self.policy.retention;
        let mut new = Vec::new();
        let mut retire = Vec::new();
        for &algorithm in &self.policy.algorithms {
            let of_algorithm: Vec<&StoredSigningKey> = stored.iter().filter(|k| k.algorithm == algorithm).collect();
            let generation = of_algorithm.iter().map(|k| k.generation).max().unwrap_or(0) + 1;
            new.push(self.generate(environment, algorithm, generation, now, activates_at)?);
            retire.extend(of_algorithm.iter().filter(|k| k.expires_at.is_none()).map(|k| (k.kid.clone(), expires_at)));
        }
        self.store.rotate(&new, &retire).await?;
        self.invalidate(environment);
        Ok(new
            .into_iter()
            .map(|k| KeyInfo {
                status: status_at(k.activates_at, k.expires_at, false, now),
                kid: k.kid,
                algorithm: k.algorithm,
                generation: k.generation,
                activates_at: k.activates_at,
                expires_at: k.expires_at,
            })
            .collect())
    }

    /// Takes `kid` out of the JWKS and out of signing at once (a compromised key): it expires
    /// now, every node drops it at its next refresh. Refused while it is the only key of its
    /// algorithm that signs: rotate with no activation delay first.
    pub async fn withdraw(&self, environment: Environment, kid: &str) -> Result<(), KeyError> {
        let refuse = |reason| KeyError::Withdraw { kid: kid.to_owned(), reason };
        let stored = self.store.list(environment).await?;
        let now = self.clock.now();
        let key = stored.iter().find(|k| k.kid == kid).ok_or_else(|| refuse("no such key in this environment"))?;
        if key.expires_at.is_some_and(|e| e <= now) {
            return Err(refuse("it has expired already"));
        }
        let other_signer = stored.iter().any(|k| {
            k.kid != kid
                && k.algorithm == key.algorithm
                && k.activates_at <= now
                && k.expires_at.is_none_or(|e| e > now)
        });
        if !other_signer {
            return Err(refuse("no other key of its algorithm signs; rotate with --now first"));
        }
        self.store.rotate(&[], &[(kid.to_owned(), now)]).await?;
        self.invalidate(environment);
        Ok(())
    }

    /// Every key of `environment` as stored now, with its status; newest first.
    pub async fn list(&self, environment: Environment) -> Result<Vec<KeyInfo>, KeyError> {
        let mut stored = self.store.list(environment).await?;
        stored.sort_by(|a, b| (a.algorithm, b.generation).cmp(&(b.algorithm, a.generation)));
        let now = self.clock.now();
        Ok(stored
            .iter()
            .map(|k| {
                let superseded = stored.iter().any(|other| {
                    other.algorithm == k.algorithm && other.generation > k.generation && other.activates_at <= now
                });
                KeyInfo {
                    kid: k.kid.clone(),
                    algorithm: k.algorithm,
                    generation: k.generation,
                    status: status_at(k.activates_at, k.expires_at, superseded, now),
                    activates_at: k.activates_at,
                    expires_at: k.expires_at,
                }
            })
            .collect())
    }

    /// The public keys of `environment` that verify its tokens: pending, active and retiring ones.
    pub async fn jwks(&self, environment: Environment) -> Result<JwkSet, KeyError> {
        let snapshot = self.snapshot(environment).await?;
        let now = self.clock.now();
        Ok(JwkSet {
            keys: snapshot
                .keys
                .iter()
                .filter(|k| k.expires_at.is_none_or(|e| e > now))
                .map(|k| k.public.clone())
                .collect(),
        })
    }

    /// [`KeyService::jwks`] as served: serialised once per key snapshot.
    pub async fn published_jwks(&self, environment: Environment) -> Result<Arc<PublishedJwks>, KeyError> {
        let snapshot = self.snapshot(environment).await?;
        let now = self.clock.now();
        if snapshot.published.stale_at.is_none_or(|stale| stale > now) {
            return Ok(snapshot.published.clone());
        }
        // A key expired since the snapshot was loaded; the next refresh publishes without it.
        Ok(Arc::new(PublishedJwks::of(&snapshot.keys, now)?))
    }

    /// The published JWKS when it can be had without waiting: the snapshot held is fresh and
    /// none of its keys expired since. `None` means: ask [`Self::published_jwks`].
    pub fn ready_published_jwks(&self, environment: Environment) -> Option<Arc<PublishedJwks>> {
        let snapshot = self.cached(environment)?;
        let now = self.clock.now();
        let fresh = now - snapshot.loaded_at < self.policy.refresh_interval;
        (fresh && snapshot.published.stale_at.is_none_or(|stale| stale > now)).then(|| snapshot.published.clone())
    }

    /// The key that signs with `algorithm` in `environment` now: the newest activated one.
    pub async fn signing_key(
        &self,
        environment: Environment,
        algorithm: SigningAlgorithm,
    ) -> Result<Arc<SigningKey>, KeyError> {
        let snapshot = self.snapshot(environment).await?;
        let now = self.clock.now();
        snapshot
            .keys
            .iter()
            .filter(|k| {
                k.signer.algorithm() == algorithm && k.activates_at <= now && k.expires_at.is_none_or(|e| e > now)
            })
            .max_by_key(|k| k.generation)
            .map(|k| k.signer.clone())
            .ok_or(KeyError::NoActiveKey(algorithm))
    }

    fn generate(
        &self,
        environment: Environment,
        algorithm: SigningAlgorithm,
        generation: i32,
        now: OffsetDateTime,
        activates_at: OffsetDateTime,
    ) -> Result<StoredSigningKey, KeyError> {
        let generated = material::generate(algorithm)?;
        let sealed_private_key = self.kek.seal(&generated.public.kid, &generated.private_der);
        Ok(StoredSigningKey {
            kid: generated.public.kid.clone(),
            environment,
            algorithm,
            generation,
            public_jwk: generated.public,
            sealed_private_key,
            created_at: now,
            activates_at,
            expires_at: None,
        })
    }

    fn invalidate(&self, environment: Environment) {
        let mut snapshots = self.snapshots.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        snapshots.remove(&environment);
        self.invalidations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Re-reads the keys of `environment` now (the server calls this ahead of
    /// `refresh_interval`, so requests find a fresh snapshot and never wait for the store).
    /// When the store fails, the last good snapshot stays in use and the store is tried again
    /// only after another interval: every key in it carries its own expiry, checked at each use,
    /// so a stale snapshot signs at most until its keys retire.
    pub async fn refresh(&self, environment: Environment) -> Result<(), KeyError> {
        // A rotation on this node while the store was read makes the result old: read again.
        for _ in 0..3 {
            let seen = self.invalidations.load(std::sync::atomic::Ordering::SeqCst);
            let now = self.clock.now();
            match self.load(environment, now).await {
                Ok(snapshot) => {
                    if self.install(environment, Arc::new(snapshot), seen) {
                        return Ok(());
                    }
                }
                Err(error) => {
                    if let (KeyError::Store(_), Some(stale)) = (&error, self.cached(environment)) {
                        self.install(
                            environment,
                            Arc::new(Snapshot {
                                loaded_at: now,
                                keys: stale.keys.clone(),
                                published: stale.published.clone(),
                            }),
                            seen,
                        );
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    async fn snapshot(&self, environment: Environment) -> Result<Arc<Snapshot>, KeyError> {
        if let Some(snapshot) = self.cached(environment)
            && self.clock.now() - snapshot.loaded_at < self.policy.refresh_interval
        {
            return Ok(snapshot);
        }
        let refreshed = self.refresh(environment).await;
        match (self.cached(environment), refreshed) {
            (Some(snapshot), Ok(()) | Err(KeyError::Store(_))) => Ok(snapshot),
            (_, Err(error)) => Err(error),
            (None, Ok(())) => Err(KeyError::Material("no key snapshot after loading".to_owned())),
        }
    }

    fn cached(&self, environment: Environment) -> Option<Arc<Snapshot>> {
        self.snapshots.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&environment).cloned()
    }

    /// Installs `snapshot` unless a rotation invalidated this node's keys since `seen`.
    fn install(&self, environment: Environment, snapshot: Arc<Snapshot>, seen: u64) -> bool {
        let mut snapshots = self.snapshots.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.invalidations.load(std::sync::atomic::Ordering::SeqCst) == seen;
        if current {
            snapshots.insert(environment, snapshot);
        }
        current
    }

    async fn load(&self, environment: Environment, now: OffsetDateTime) -> Result<Snapshot, KeyError> {
        let mut stored = self.store.list(environment).await?;
        stored.retain(|k| k.expires_at.is_none_or(|e| e > now));
        let keys = stored
            .into_iter()
            .map(|k| {
                let der = self
                    .kek
                    .open(&k.kid, &k.sealed_private_key)
                    .ok_or_else(|| KeyError::Unseal { kid: k.kid.clone() })?;
                Ok(LoadedKey {
                    signer: Arc::new(SigningKey::from_der(k.kid.clone(), k.algorithm, &der)?),
                    public: k.public_jwk,
                    generation: k.generation,
                    activates_at: k.activates_at,
                    expires_at: k.expires_at,
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        Snapshot::new(now, keys)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::{KeyEncryptionKey, ManualClock};

    /// The port's contract, kept in memory; the real implementations have their own contract suite.
    /// `down` makes it fail like a database that is unreachable.
    #[derive(Default)]
    struct MemoryKeys(Mutex<Vec<StoredSigningKey>>, std::sync::atomic::AtomicBool);

    #[async_trait]
    impl SigningKeyStore for MemoryKeys {
        async fn list(&self, environment: Environment) -> Result<Vec<StoredSigningKey>, KeyStoreError> {
            if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(KeyStoreError::Unavailable("connection refused".into()));
            }
            Ok(self.0.lock().unwrap().iter().filter(|k| k.environment == environment).cloned().collect())
        }

        async fn rotate(
            &self,
            new: &[StoredSigningKey],
            retire: &[(String, OffsetDateTime)],
        ) -> Result<(), KeyStoreError> {
            let mut keys = self.0.lock().unwrap();
            if new.iter().any(|n| {
                keys.iter().any(|k| {
                    k.environment == n.environment && k.algorithm == n.algorithm && k.generation == n.generation
                })
            }) {
                return Err(KeyStoreError::Conflict);
            }
            for (kid, expiry) in retire {
                keys.iter_mut().filter(|k| &k.kid == kid).for_each(|k| k.expires_at = Some(*expiry));
            }
            keys.extend_from_slice(new);
            Ok(())
        }

        async fn reseal(&self, kid: &str, sealed: &[u8]) -> Result<(), KeyStoreError> {
            self.0
                .lock()
                .unwrap()
                .iter_mut()
                .filter(|k| k.kid == kid)
                .for_each(|k| k.sealed_private_key = sealed.to_vec());
            Ok(())
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn service(clock: Arc<ManualClock>) -> KeyService {
        KeyService::new(
            Arc::new(MemoryKeys::default()),
            KeyRing::new(KeyEncryptionKey::generate(), None),
            clock,
            KeyPolicy {
                algorithms: vec![SigningAlgorithm::ES256, SigningAlgorithm::EdDSA],
                activation_delay: HOUR,
                retention: 2 * HOUR,
                refresh_interval: Duration::ZERO,
            },
        )
    }

    fn kids(jwks: &JwkSet) -> Vec<String> {
        let mut kids: Vec<String> = jwks.keys.iter().map(|k| k.kid.clone()).collect();
        kids.sort();
        kids
    }

    /// A store whose next `list` reads, then waits until released: a refresh in flight.
    #[derive(Default)]
    struct HeldKeys {
        inner: MemoryKeys,
        hold_next: std::sync::atomic::AtomicBool,
        read: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    #[async_trait]
    impl SigningKeyStore for HeldKeys {
        async fn list(&self, environment: Environment) -> Result<Vec<StoredSigningKey>, KeyStoreError> {
            let listed = self.inner.list(environment).await;
            if self.hold_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
                self.read.notify_one();
                self.release.notified().await;
            }
            listed
        }

        async fn rotate(
            &self,
            new: &[StoredSigningKey],
            retire: &[(String, OffsetDateTime)],
        ) -> Result<(), KeyStoreError> {
            self.inner.rotate(new, retire).await
        }

        async fn reseal(&self, kid: &str, sealed: &[u8]) -> Result<(), KeyStoreError> {
            self.inner.reseal(kid, sealed).await
        }
    }

    #[tokio::test]
    async fn the_published_jwks_is_ready_only_while_its_snapshot_is_fresh_and_unexpired() {
        let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
        let policy = KeyPolicy {
            algorithms: vec![SigningAlgorithm::ES256],
            activation_delay: HOUR,
            retention: 2 * HOUR,
            refresh_interval: Duration::from_secs(60),
        };
        let keys = KeyService::new(
            Arc::new(MemoryKeys::default()),
            KeyRing::new(KeyEncryptionKey::generate(), None),
            clock.clone(),
            policy,
        );
        assert!(keys.ready_published_jwks(Environment::Test).is_none(), "nothing loaded yet");
        keys.ensure_keys(Environment::Test).await.unwrap();
        let published = keys.published_jwks(Environment::Test).await.unwrap();
        let ready = keys.ready_published_jwks(Environment::Test).expect("loaded a moment ago");
        assert_eq!(ready.etag, published.etag);
        assert!(keys.ready_published_jwks(Environment::Production).is_none(), "per environment");
        clock.advance(time::Duration::seconds(61));
        assert!(keys.ready_published_jwks(Environment::Test).is_none(), "due for a refresh: the long way");
        keys.published_jwks(Environment::Test).await.unwrap();
        assert!(keys.ready_published_jwks(Environment::Test).is_some(), "refreshed");
        // A rotated-out key expires: the document that names it is out of date at that moment,
        // though the snapshot is still fresh.
        keys.rotate(Environment::Test).await.unwrap();
        let expiry = keys.list(Environment::Test).await.unwrap().iter().find_map(|k| k.expires_at).unwrap();
        clock.advance(expiry - time::Duration::seconds(10) - clock.now());
        keys.published_jwks(Environment::Test).await.unwrap();
        assert!(keys.ready_published_jwks(Environment::Test).is_some());
        clock.advance(time::Duration::seconds(20));
        assert!(keys.ready_published_jwks(Environment::Test).is_none(), "its old key expired");
    }

    #[tokio::test]
    async fn a_refresh_that_read_before_a_rotation_never_hides_the_rotated_key() {
        let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
        let store = Arc::new(HeldKeys::default());
        let policy = KeyPolicy {
            algorithms: vec![SigningAlgorithm::ES256],
            activation_delay: HOUR,
            retention: 2 * HOUR,
            refresh_interval: Duration::from_secs(60),
        };
        let keys =
            Arc::new(KeyService::new(store.clone(), KeyRing::new(KeyEncryptionKey::generate(), None), clock, policy));
        keys.ensure_keys(Environment::Test).await.unwrap();
        store.hold_next.store(true, std::sync::atomic::Ordering::SeqCst);
        let refreshing = tokio::spawn({
            let keys = keys.clone();
            async move { keys.refresh(Environment::Test).await }
        });
        store.read.notified().await;
        let rotated = keys.rotate(Environment::Test).await.unwrap();
        store.release.notify_one();
        refreshing.await.unwrap().unwrap();
        let published = kids(&keys.jwks(Environment::Test).await.unwrap());
        assert!(rotated.iter().all(|k| published.contains(&k.kid)), "the rotated-in key is published: {published:?}");
    }

    #[tokio::test]
    async fn while_the_store_is_down_the_last_snapshot_publishes_and_signs_until_its_keys_retire() {
        let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
        let store = Arc::new(MemoryKeys::default());
        let policy = KeyPolicy {
            algorithms: vec![SigningAlgorithm::ES256],
            activation_delay: HOUR,
            retention: 2 * HOUR,
            refresh_interval: Duration::from_secs(60),
        };
        let keys =
            KeyService::new(store.clone(), KeyRing::new(KeyEncryptionKey::generate(), None), clock.clone(), policy);
        keys.ensure_keys(Environment::Test).await.unwrap();
        let before = kids(&keys.jwks(Environment::Test).await.unwrap());
        store.1.store(true, std::sync::atomic::Ordering::SeqCst);
        clock.advance(time::Duration::minutes(10));
        assert!(matches!(keys.refresh(Environment::Test).await, Err(KeyError::Store(_))), "the failure is reported");
        assert_eq!(kids(&keys.jwks(Environment::Test).await.unwrap()), before, "stale keys are still published");
        keys.signing_key(Environment::Test, SigningAlgorithm::ES256).await.unwrap();
        // Nothing cached: the failure reaches the caller.
        assert!(matches!(keys.jwks(Environment::Production).await, Err(KeyError::Store(_))));
        store.1.store(false, std::sync::atomic::Ordering::SeqCst);
        keys.refresh(Environment::Test).await.unwrap();
    }

    #[tokio::test]
    async fn ensure_keys_generates_one_active_key_per_algorithm_once() {
        let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
        let keys = service(clock);
        keys.ensure_keys(Environment::Test).await.unwrap();
        assert!(keys.cached(Environment::Test).is_some(), "the keys are held loaded");
        keys.ensure_keys(Environment::Test).await.unwrap();
        let jwks = keys.jwks(Environment::Test).await.unwrap();
        assert_eq!(jwks.keys.len(), 2);
        let signer = keys.signing_key(Environment::Test, SigningAlgorithm::ES256).await.unwrap();
        assert!(jwks.keys.iter().any(|k| k.kid == signer.kid() && k.alg == "ES256"));
        assert!(keys.jwks(Environment::Production).await.unwrap().keys.is_empty(), "environments share no keys");
        assert!(matches!(
            keys.signing_key(Environment::Test, SigningAlgorithm::RS256).await,
            Err(KeyError::NoActiveKey(SigningAlgorithm::RS256))
        ));
    }

    #[tokio::test]
    async fn a_withdrawn_key_leaves_the_jwks_and_signing_at_once_but_never_the_only_signer() {
        let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
        let keys = service(clock.clone());
        keys.ensure_keys(Environment::Production).await.unwrap();
        let old = keys.signing_key(Environment::Production, SigningAlgorithm::ES256).await.unwrap().kid().to_owned();
        let refused = keys.withdraw(Environment::Production, &old).await;
        assert!(matches!(refused, Err(KeyError::Withdraw { .. })), "the only signer stays");
        keys.rotate(Environment::Production).await.unwrap();
        assert!(keys.withdraw(Environment::Production, &old).await.is_err(), "its successor does not sign yet");
        clock.advance(time::Duration::hours(1));
        keys.withdraw(Environment::Production, &old).await.unwrap();
        assert!(!kids(&keys.jwks(Environment::Production).await.unwrap()).contains(&old), "gone from the JWKS");
        assert_ne!(keys.signing_key(Environment::Production, SigningAlgorithm::ES256).await.unwrap().kid(), old);
        assert!(keys.withdraw(Environment::Production, &old).await.is_err(), "once");
        assert!(keys.withdraw(Environment::Production, "unknown").await.is_err());
    }

    #[tokio::test]
    async fn rotation_publishes_at_once_signs_after_the_delay_and_drops_the_old_key_after_retention() {
        let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
        let keys = service(clock.clone());
        keys.ensure_keys(Environment::Production).await.unwrap();
        let old = keys.signing_key(Environment::Production, SigningAlgorithm::ES256).await.unwrap();
        // The served document is the JWKS, and its tag changes with it.
        async fn published(keys: &KeyService) -> (Vec<String>, String) {
            let published = keys.published_jwks(Environment::Production).await.unwrap();
            let set: JwkSet = serde_json::from_slice(&published.body).unwrap();
            (kids(&set), published.etag.clone())
        }
        let (first_kids, first_tag) = published(&keys).await;
        assert_eq!(first_kids, kids(&keys.jwks(Environment::Production).await.unwrap()));

        let rotated = keys.rotate(Environment::Production).await.unwrap();
        let new_kid = rotated.iter().find(|k| k.algorithm == SigningAlgorithm::ES256).unwrap().kid.clone();
        assert!(rotated.iter().all(|k| k.status == KeyStatus::Pending && k.generation == 2));

        // Published at once, old key still signs.
        let jwks = keys.jwks(Environment::Production).await.unwrap();
        assert_eq!(jwks.keys.len(), 4);
        assert!(kids(&jwks).contains(&new_kid));
        assert_eq!(keys.signing_key(Environment::Production, SigningAlgorithm::ES256).await.unwrap().kid(), old.kid());
        let (rotated_kids, rotated_tag) = published(&keys).await;
        assert_eq!(rotated_kids, kids(&jwks));
        assert_ne!(rotated_tag, first_tag);
        assert_ne!(rotated_kids, first_kids);

        // After the activation delay the new key signs; the old one is still published.
        clock.advance(time::Duration::hours(1));
        assert_eq!(keys.signing_key(Environment::Production, SigningAlgorithm::ES256).await.unwrap().kid(), new_kid);
        let statuses: Vec<(String, KeyStatus)> =
            keys.list(Environment::Production).await.unwrap().into_iter().map(|k| (k.kid, k.status)).collect();
        assert!(statuses.contains(&(old.kid().to_owned(), KeyStatus::Retiring)));
        assert!(statuses.contains(&(new_kid.clone(), KeyStatus::Active)));
        assert!(kids(&keys.jwks(Environment::Production).await.unwrap()).contains(&old.kid().to_owned()));

        // Retention later the old key is gone from the JWKS.
        clock.advance(time::Duration::hours(2));
        let jwks = keys.jwks(Environment::Production).await.unwrap();
        assert_eq!(jwks.keys.len(), 2);
        assert!(!kids(&jwks).contains(&old.kid().to_owned()));
        let (retained_kids, retained_tag) = published(&keys).await;
        assert_eq!(retained_kids, kids(&jwks), "an expired key leaves the served document at once");
        assert_ne!(retained_tag, rotated_tag);
        assert!(
            keys.list(Environment::Production)
                .await
                .unwrap()
                .iter()
                .any(|k| k.kid == old.kid() && k.status == KeyStatus::Expired)
        );
    }

    #[tokio::test]
    async fn a_key_sealed_under_another_kek_is_refused() {
        let clock = Arc::new(ManualClock::new(datetime!(2026-01-01 00:00 UTC)));
        let store: Arc<dyn SigningKeyStore> = Arc::new(MemoryKeys::default());
        let policy = service(clock.clone()).policy;
        KeyService::new(store.clone(), KeyRing::new(KeyEncryptionKey::generate(), None), clock.clone(), policy.clone())
            .ensure_keys(Environment::Test)
            .await
            .unwrap();
        let other = KeyService::new(store, KeyRing::new(KeyEncryptionKey::generate(), None), clock, policy);
        assert!(matches!(other.jwks(Environment::Test).await, Err(KeyError::Unseal { .. })));
    }
}
