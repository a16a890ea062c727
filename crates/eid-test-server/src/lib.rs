//! A test eID-Server: the service side of the online ID function (BSI TR-03130's eID-Server,
//! TR-03112-7's PAOS binding, TR-03110's Extended Access Control) for test systems and CI, so
//! that the real AusweisApp2 with its Simulator card completes an authentication against us.
//! It knows no OIDC: the server uses it through `eid_bridge`'s [`EidServer`] port, like a
//! certified eID-Server. Never for production (the configuration refuses it there): its
//! terminal certificates are signed by a stand-in for the BSI's test CVCA, which only a card
//! that does not check them (the Simulator) and an app with pre-verification off accept.
//!
//! - [`tlv`], [`crypto`], [`sm`]: BER-TLV, EAC cryptography on brainpoolP256r1, secure messaging.
//! - [`cvc`]: CV certificates, CHAT, certificate description, auxiliary data.
//! - [`card`]: the card's APDUs, data groups, EF.CardSecurity.
//! - [`paos`]: the PAOS messages.
//! - [`simulator`]: test identities as card files for AusweisApp2's Simulator.
//! - [`session`]: one authentication step by step, kept in a [`SessionStore`].
//! - [`server`]: the PAOS endpoint over TLS 1.2 RSA-PSK.
//! - `testing` (feature): the real AusweisApp2 started headless for tests.

pub mod card;
pub mod crypto;
pub mod cvc;
pub mod paos;
pub mod server;
pub mod session;
pub mod simulator;
pub mod sm;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tlv;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use eid_bridge::{EidPersonalData, EidServer, EidServerError, EidServerSession, UseIdRequest, eid_server::Psk};
pub use session::{MemorySessions, SessionStore};

/// How the test eID-Server runs.
#[derive(Clone)]
pub struct TestEidServerConfig {
    /// Where the PAOS endpoint listens (loopback).
    pub listen: SocketAddr,
    /// The PAOS address the TC token names, when the app reaches the endpoint elsewhere than
    /// at `listen` (a TCP balancer in front of several nodes); `None`: `https://{listen}/paos`.
    pub public_address: Option<String>,
    /// Derives the PSKs and the terminal's keys; the same on every node.
    pub secret: Vec<u8>,
    /// The service provider named in the certificate description.
    pub subject_name: String,
    /// Its address (the origin of the TC token URL).
    pub subject_url: String,
    /// Age verification against this many years; `None`: none.
    pub minimum_age: Option<u8>,
    /// How long a session waits for the app's next step, and for its result to be fetched.
    pub step_timeout: Duration,
}

/// Prints without the secret.
impl std::fmt::Debug for TestEidServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEidServerConfig")
            .field("listen", &self.listen)
            .field("public_address", &self.public_address)
            .field("secret", &"…")
            .field("subject_name", &self.subject_name)
            .field("subject_url", &self.subject_url)
            .field("minimum_age", &self.minimum_age)
            .field("step_timeout", &self.step_timeout)
            .finish()
    }
}

/// The running test eID-Server.
pub struct TestEidServer {
    endpoint: Arc<server::Endpoint>,
    address: SocketAddr,
    public_address: String,
    secret: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestEidServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why the test eID-Server did not start.
#[derive(Debug, thiserror::Error)]
#[error("the test eID-Server did not start: {0}")]
pub struct StartError(String);

impl TestEidServer {
    /// Binds the PAOS endpoint and starts serving.
    pub async fn start(config: TestEidServerConfig, store: Arc<dyn SessionStore>) -> Result<Self, StartError> {
        let fail = |e: &dyn std::fmt::Display| StartError(e.to_string());
        let (key, cert) = server::tls_identity().map_err(|e| fail(&e))?;
        let cert_hash = crypto::sha256(&cert.to_der().map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
        let terminal = session::Terminal::new(
            &config.secret,
            &config.subject_name,
            &config.subject_url,
            vec![cert_hash],
            config.minimum_age,
        )
        .map_err(|e| fail(&e))?;
        let (context, identity_index) =
            server::tls_context(Arc::new(config.secret.clone()), &key, &cert).map_err(|e| fail(&e))?;
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| fail(&e))?;
        let address = listener.local_addr().map_err(|e| fail(&e))?;
        let endpoint = Arc::new(server::Endpoint { terminal, store, step_timeout: config.step_timeout });
        let task = tokio::spawn(server::serve(listener, context, identity_index, endpoint.clone()));
        let public_address = config.public_address.unwrap_or_else(|| format!("https://{address}/paos"));
        Ok(TestEidServer { endpoint, address, public_address, secret: config.secret, task })
    }

    /// Where the PAOS endpoint listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

#[async_trait]
impl EidServer for TestEidServer {
    fn is_test_service(&self) -> bool {
        true
    }

    async fn use_id(&self, request: &UseIdRequest) -> Result<EidServerSession, EidServerError> {
        let session_id = hex::encode(rand::random::<[u8; 16]>());
        let psk = server::psk(&self.secret, &session_id).map_err(|e| EidServerError::Unavailable(e.to_string()))?;
        let bytes = serde_json::to_vec(&session::Session::new(request))
            .map_err(|e| EidServerError::Unavailable(e.to_string()))?;
        self.endpoint
            .store
            .put(&server::key(&session_id), bytes, self.endpoint.step_timeout)
            .await
            .map_err(EidServerError::Unavailable)?;
        Ok(EidServerSession {
            server_address: self.public_address.clone(),
            psk: Some(Psk { id: session_id.clone(), key: hex::encode(psk) }),
            session_id,
        })
    }

    async fn get_result(&self, session_id: &str) -> Result<EidPersonalData, EidServerError> {
        let stored = self
            .endpoint
            .store
            .take(&server::key(session_id))
            .await
            .map_err(EidServerError::Unavailable)?
            .ok_or(EidServerError::NoResult)?;
        let session: session::Session =
            serde_json::from_slice(&stored).map_err(|e| EidServerError::Malformed(e.to_string()))?;
        if !matches!(session.stage, session::Stage::Done(_)) {
            // Asked too early: the session goes on.
            self.endpoint
                .store
                .put(&server::key(session_id), stored, self.endpoint.step_timeout)
                .await
                .map_err(EidServerError::Unavailable)?;
            return Err(EidServerError::NoResult);
        }
        match session.stage {
            session::Stage::Done(result) => (*result)
                .map_err(|failure| EidServerError::Failed { minor: failure.minor, message: Some(failure.message) }),
            _ => Err(EidServerError::NoResult),
        }
    }
}
