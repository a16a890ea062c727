//! The public keys of `private_key_jwt` clients: by value from the registry, or fetched from
//! the client's `jwks_uri` and cached per node (a cache only; every node can fetch).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use oidc_core::ClientJwks;
use tenant_registry::Client;

/// How long a fetched JWK Set is used without asking again.
const MAX_AGE: Duration = Duration::from_secs(300);
/// An unknown `kid` re-fetches, but not more often than this per URL, so a stream of bad
/// assertions cannot make us hammer a client's server.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(2);
/// A JWK Set larger than this is refused.
const MAX_BYTES: usize = 64 * 1024;

/// Fetches and caches client JWK Sets.
pub(crate) struct ClientKeys {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (ClientJwks, Instant)>>,
}

impl ClientKeys {
    /// Fetches with `http` (which should time out quickly and follow no redirects).
    pub(crate) fn new(http: reqwest::Client) -> Self {
        Self { http, cache: Mutex::new(HashMap::new()) }
    }

    /// The client's keys. `unknown_kid` asks for a fresh copy of a `jwks_uri` (when the cached
    /// one is older than the re-fetch interval), because the client may have rotated.
    pub(crate) async fn keys(&self, client: &Client, unknown_kid: bool) -> Result<ClientJwks, String> {
        if let Some(jwks) = &client.settings.jwks {
            return ClientJwks::from_value(jwks.clone()).map_err(|e| format!("registered jwks: {e}"));
        }
        let uri = client.settings.jwks_uri.as_ref().ok_or("neither jwks nor jwks_uri registered")?.to_string();
        if let Some((keys, fetched)) = self.cached(&uri) {
            let fresh_enough =
                if unknown_kid { fetched.elapsed() < MIN_REFETCH_INTERVAL } else { fetched.elapsed() < MAX_AGE };
            if fresh_enough {
                return Ok(keys);
            }
        }
        let keys = self.fetch(&uri).await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(uri, (keys.clone(), Instant::now()));
        }
        Ok(keys)
    }

    fn cached(&self, uri: &str) -> Option<(ClientJwks, Instant)> {
        self.cache.lock().ok()?.get(uri).cloned()
    }

    async fn fetch(&self, uri: &str) -> Result<ClientJwks, String> {
        let mut response = self.http.get(uri).send().await.map_err(|e| format!("fetching {uri}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{uri} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading {uri}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BYTES {
                return Err(format!("{uri} sent more than {MAX_BYTES} bytes"));
            }
        }
        ClientJwks::from_slice(&body).map_err(|e| format!("{uri}: {e}"))
    }
}
