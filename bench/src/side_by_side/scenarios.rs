//! The scenarios, each one request (or one complete flow) that the load generator repeats
//! against either peer in exactly the same way.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use reqwest::Client;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{
    peers::{CLIENT_ID, CLIENT_SECRET, Peer, REDIRECT_URI, SCOPE},
    raw_get::RawGet,
};
use crate::{Sample, drive, process::own_cpu_seconds};

/// One scenario of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `GET` the discovery document.
    Discovery,
    /// `GET` the JWKS.
    Jwks,
    /// `client_credentials` at the token endpoint (`client_secret_basic`).
    ClientCredentials,
    /// Introspection of an access token by its client.
    Introspection,
    /// Single sign-on with a session and remembered consent: authorize → code → token (PKCE,
    /// `client_secret_basic`) → ID-token verification → userinfo, as one complete flow.
    SsoFlow,
    /// The `refresh_token` grant with rotation (each worker follows its own token chain).
    Refresh,
    /// A password login (our login form; the peer has no password login of its own).
    PasswordLogin,
}

impl Scenario {
    /// Every scenario in the order they run.
    pub const ALL: [Scenario; 7] = [
        Scenario::Discovery,
        Scenario::Jwks,
        Scenario::ClientCredentials,
        Scenario::Introspection,
        Scenario::SsoFlow,
        Scenario::Refresh,
        Scenario::PasswordLogin,
    ];

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Discovery => "discovery document",
            Scenario::Jwks => "JWKS",
            Scenario::ClientCredentials => "client_credentials token",
            Scenario::Introspection => "token introspection",
            Scenario::SsoFlow => "SSO code flow (complete flows)",
            Scenario::Refresh => "refresh_token grant with rotation",
            Scenario::PasswordLogin => "password login",
        }
    }
}

/// How long and how wide each scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Concurrent workers.
    pub concurrency: usize,
    /// Wall time per scenario and peer.
    pub duration: Duration,
}

/// A sample with the first error seen (so a failing scenario says why).
pub struct Outcome {
    /// Throughput and latencies.
    pub sample: Sample,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// CPU seconds spent while the load ran, not while its sessions and chains were set up.
    pub cpu: CpuUse,
}

/// CPU seconds of the server side and of the generator over one driven window.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// The server's processes (with `--two-nodes`: both nodes and nginx).
    pub server: f64,
    /// Of it, the proxy in front of the nodes, when there is one.
    pub front: Option<f64>,
    /// The load generator (this process).
    pub generator: f64,
}

impl CpuUse {
    /// What `peer` and this process have used so far.
    fn now(peer: &Peer) -> Self {
        Self { server: peer.cpu_seconds(), front: peer.front_cpu_seconds(), generator: own_cpu_seconds() }
    }

    fn since(self, before: Self) -> Self {
        Self {
            server: self.server - before.server,
            front: self.front.zip(before.front).map(|(after, before)| after - before),
            generator: self.generator - before.generator,
        }
    }

    /// Both windows together.
    pub fn add(self, other: Self) -> Self {
        Self {
            server: self.server + other.server,
            front: match (self.front, other.front) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            },
            generator: self.generator + other.generator,
        }
    }
}

/// Runs `scenario` against `peer`; `None` when the peer cannot do it.
pub async fn run(scenario: Scenario, peer: &Peer, load: Load) -> anyhow::Result<Option<Outcome>> {
    // A browser session per worker where the scenario needs one.
    let mut sessions = Vec::new();
    if matches!(scenario, Scenario::SsoFlow | Scenario::Refresh) {
        for _ in 0..load.concurrency {
            sessions.push(peer.new_session().await.context("a session per worker")?);
        }
    }
    let context = Arc::new(Endpoints::new(peer, sessions).await?);
    let outcome = match scenario {
        Scenario::Discovery | Scenario::Jwks => {
            // A kept-alive connection per worker, without an HTTP client library: see `raw_get`.
            let url = if scenario == Scenario::Discovery { &peer.discovery } else { &peer.jwks };
            let mut connections = Vec::with_capacity(load.concurrency);
            for _ in 0..load.concurrency {
                connections.push(tokio::sync::Mutex::new(RawGet::connect(url).await?));
            }
            let (connections, url) = (Arc::new(connections), Arc::new(url.clone()));
            measure(scenario, peer, load, context, move |_, worker| {
                let (connections, url) = (connections.clone(), url.clone());
                async move {
                    let mut connection = connections[worker].lock().await;
                    let got = connection.get().await;
                    if got.is_err() {
                        // The next request of this worker starts on a fresh connection.
                        *connection = RawGet::connect(&url).await?;
                    }
                    got
                }
            })
            .await
        }
        Scenario::ClientCredentials => {
            measure(scenario, peer, load, context, |c, _| async move { c.client_credentials().await.map(drop) }).await
        }
        Scenario::Introspection => {
            let token = context.client_credentials().await.context("an access token to introspect")?;
            let token = Arc::new(token);
            measure(scenario, peer, load, context, move |c, _| {
                let token = token.clone();
                async move { c.introspect(&token).await }
            })
            .await
        }
        Scenario::SsoFlow => {
            measure(scenario, peer, load, context, |c, worker| async move { c.sso_flow(worker).await.map(drop) }).await
        }
        Scenario::Refresh => {
            // One chain per worker, started by a code flow that is not measured.
            let mut chains = Vec::with_capacity(load.concurrency);
            for worker in 0..load.concurrency {
                let tokens = context.sso_flow(worker).await.context("a refresh token to start a chain")?;
                let token = tokens.refresh_token.context("no refresh token in the code flow's answer")?;
                chains.push(tokio::sync::Mutex::new(token));
            }
            let chains = Arc::new(chains);
            measure(scenario, peer, load, context, move |c, worker| {
                let chains = chains.clone();
                async move {
                    let mut token = chains[worker].lock().await;
                    *token = c.refresh(&token).await?;
                    Ok(())
                }
            })
            .await
        }
        Scenario::PasswordLogin => {
            // A citizen per worker: logins to one account from many workers at once would meet
            // the per-account throttle, which refuses parallel attempts beyond the free ones.
            let Some(outbox) = &peer.outbox else { return Ok(None) };
            let mut logins = Vec::with_capacity(load.concurrency);
            for _ in 0..load.concurrency {
                let browser = super::peers::cookie_client()?;
                let username = super::peers::register(&browser, &peer.issuer, outbox).await?;
                let form = super::peers::login_form(&browser, &peer.issuer, &username).await?;
                logins.push((browser, form));
            }
            let logins = Arc::new(logins);
            measure(scenario, peer, load, context, move |_, worker| {
                let logins = logins.clone();
                async move {
                    let (browser, form) = &logins[worker];
                    let response = browser.post(&form.url).form(&form.fields).send().await?;
                    anyhow::ensure!(response.status().is_redirection(), "login answered {}", response.status());
                    Ok(())
                }
            })
            .await
        }
    };
    Ok(Some(outcome))
}

/// Drives `request` and keeps the first error's message.
async fn measure<F, Fut>(scenario: Scenario, peer: &Peer, load: Load, context: Arc<Endpoints>, request: F) -> Outcome
where
    F: Fn(Arc<Endpoints>, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let first_error = Arc::new(Mutex::new(None::<String>));
    let errors = first_error.clone();
    let before = CpuUse::now(peer);
    let sample = drive(scenario.name(), load.concurrency, load.duration, u64::MAX, move |worker, _| {
        let (request, context, errors) = (request.clone(), context.clone(), errors.clone());
        async move {
            match request(context, worker).await {
                Ok(()) => true,
                Err(error) => {
                    if let Ok(mut first) = errors.lock() {
                        first.get_or_insert_with(|| format!("{error:#}"));
                    }
                    false
                }
            }
        }
    })
    .await;
    let cpu = CpuUse::now(peer).since(before);
    let first_error = first_error.lock().ok().and_then(|mut e| e.take());
    Outcome { sample, first_error, cpu }
}

/// What the scenarios need of a peer: its endpoints, a back-channel client and its ID-token keys.
struct Endpoints {
    issuer: String,
    token: String,
    userinfo: String,
    introspection: String,
    authorization: String,
    /// A browser with a session per worker (for the flows that need one).
    sessions: Vec<Client>,
    backchannel: Client,
    keys: HashMap<String, DecodingKey>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct IdTokenClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
}

impl Endpoints {
    async fn new(peer: &Peer, sessions: Vec<Client>) -> anyhow::Result<Self> {
        let backchannel = Client::builder().pool_max_idle_per_host(256).build()?;
        let jwks: JwkSet = backchannel.get(&peer.jwks).send().await?.error_for_status()?.json().await?;
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        Ok(Self {
            issuer: peer.issuer.clone(),
            token: peer.token.clone(),
            userinfo: peer.userinfo.clone(),
            introspection: peer.introspection.clone(),
            authorization: peer.authorization.clone(),
            sessions,
            backchannel,
            keys,
        })
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> anyhow::Result<TokenResponse> {
        let response =
            self.backchannel.post(&self.token).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).form(form).send().await?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "token endpoint answered {status}: {}", response.text().await?);
        Ok(response.json().await?)
    }

    async fn client_credentials(&self) -> anyhow::Result<String> {
        Ok(self.token_request(&[("grant_type", "client_credentials")]).await?.access_token)
    }

    async fn introspect(&self, token: &str) -> anyhow::Result<()> {
        let response = self
            .backchannel
            .post(&self.introspection)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", token)])
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "introspection answered {}", response.status());
        let answer: serde_json::Value = response.json().await?;
        anyhow::ensure!(answer["active"] == true, "the token is not active: {answer}");
        Ok(())
    }

    async fn refresh(&self, token: &str) -> anyhow::Result<String> {
        let tokens = self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", token)]).await?;
        tokens.refresh_token.context("no rotated refresh token")
    }

    async fn sso_flow(&self, worker: usize) -> anyhow::Result<TokenResponse> {
        let request = AuthorizationRequest::for_endpoint(&self.authorization)?;
        let browser = self.sessions.get(worker).context("no session for this worker")?;
        let code = request.follow(browser).await?;
        let tokens = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &request.verifier),
            ])
            .await?;
        let id_token = tokens.id_token.as_deref().context("no ID token")?;
        let claims = self.verify(id_token)?;
        anyhow::ensure!(claims.nonce.as_deref() == Some(request.nonce.as_str()), "the nonce differs");
        let userinfo: serde_json::Value = self
            .backchannel
            .get(&self.userinfo)
            .bearer_auth(&tokens.access_token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::ensure!(userinfo["sub"] == claims.sub.as_str(), "userinfo's sub differs from the ID token's");
        Ok(tokens)
    }

    fn verify(&self, id_token: &str) -> anyhow::Result<IdTokenClaims> {
        let header = jsonwebtoken::decode_header(id_token)?;
        anyhow::ensure!(header.alg == Algorithm::RS256, "the ID token is {:?}, not RS256", header.alg);
        let key = header.kid.as_ref().and_then(|kid| self.keys.get(kid)).context("the ID token's key is unknown")?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[CLIENT_ID]);
        validation.set_issuer(&[&self.issuer]);
        Ok(jsonwebtoken::decode::<IdTokenClaims>(id_token, key, &validation)?.claims)
    }
}

/// An authorization request with fresh `state`, `nonce` and PKCE verifier.
pub struct AuthorizationRequest {
    /// The URL the browser opens.
    pub url: String,
    /// The PKCE verifier for the token request.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
}

impl AuthorizationRequest {
    /// A request to the authorization endpoint `endpoint`.
    pub fn for_endpoint(endpoint: &str) -> anyhow::Result<Self> {
        let random = || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let (verifier, nonce, state) = (random(), random(), random());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = url::Url::parse(endpoint)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("scope", SCOPE)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Self { url: url.into(), verifier, nonce })
    }

    /// Follows the redirects from the authorization endpoint to the redirect URI in `browser`;
    /// the code.
    pub async fn follow(&self, browser: &Client) -> anyhow::Result<String> {
        let mut url = url::Url::parse(&self.url)?;
        for _ in 0..8 {
            let response = browser.get(url.clone()).send().await?;
            let status = response.status();
            anyhow::ensure!(status.is_redirection(), "{url} answered {status}, not a redirect");
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .context("a redirect without Location")?;
            let next = url.join(location)?;
            if next.as_str().starts_with(REDIRECT_URI) {
                return next
                    .query_pairs()
                    .find(|(name, _)| name == "code")
                    .map(|(_, code)| code.into_owned())
                    .with_context(|| format!("no code in {next}"));
            }
            url = next;
        }
        anyhow::bail!("more than 8 redirects from the authorization endpoint")
    }
}
