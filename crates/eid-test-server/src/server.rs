//! The PAOS endpoint: TLS 1.2 with RSA-PSK (RFC 4279; the PSK identity is the session, the key
//! derives from the deployment's secret, so no lookup is needed during the handshake), then
//! HTTP/1.1 where every POST is the app's next message and its answer ours.

use std::{net::SocketAddr, pin::Pin, sync::Arc};

use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use openssl::{
    ex_data::Index,
    pkey::PKey,
    rsa::Rsa,
    ssl::{Ssl, SslContext, SslMethod, SslVersion},
    x509::X509,
};
use tokio::net::TcpListener;
use tokio_openssl::SslStream;

use crate::{crypto, paos, session};

/// The largest message the app sends (EF.CardSecurity is the bulk).
const MAX_BODY: usize = 256 * 1024;

/// The PSK for a session: HMAC-SHA-256(secret, "psk" ‖ session id).
pub fn psk(secret: &[u8], session_id: &str) -> Result<Vec<u8>, crypto::CryptoError> {
    crypto::hmac_sha256(secret, &[b"psk\0".as_slice(), session_id.as_bytes()].concat())
}

/// A self-signed RSA-2048 certificate (RSA-PSK needs an RSA key; AusweisApp2 checks the
/// certificate through the description's hashes, not a CA).
pub fn tls_identity() -> Result<(PKey<openssl::pkey::Private>, X509), crypto::CryptoError> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let certificate = crypto::self_signed_certificate(&key, "servicekonto test eID-Server")?;
    Ok((key, certificate))
}

/// The TLS context: TLS 1.2 only, RSA-PSK suites only (what AusweisApp2 offers with a PSK).
pub fn tls_context(
    secret: Arc<Vec<u8>>,
    key: &PKey<openssl::pkey::Private>,
    cert: &X509,
) -> Result<(SslContext, Index<Ssl, String>), openssl::error::ErrorStack> {
    let identity_index = Ssl::new_ex_index::<String>()?;
    let mut builder = SslContext::builder(SslMethod::tls_server())?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    builder.set_max_proto_version(Some(SslVersion::TLS1_2))?;
    builder.set_cipher_list(
        "RSA-PSK-AES256-GCM-SHA384:RSA-PSK-AES128-GCM-SHA256:RSA-PSK-AES256-CBC-SHA384:RSA-PSK-AES128-CBC-SHA256",
    )?;
    builder.set_private_key(key)?;
    builder.set_certificate(cert)?;
    builder.set_psk_server_callback(move |ssl, identity, out| {
        let identity = identity.and_then(|i| std::str::from_utf8(i).ok()).unwrap_or_default();
        // Session ids are ours (32 hex digits); anything else gets no key and fails the handshake.
        if identity.len() != 32 || !identity.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(0);
        }
        let Ok(key) = psk(&secret, identity) else { return Ok(0) };
        let n = key.len().min(out.len());
        out[..n].copy_from_slice(&key[..n]);
        ssl.set_ex_data(identity_index, identity.to_owned());
        Ok(n)
    });
    Ok((builder.build(), identity_index))
}

/// What a request needs.
pub struct Endpoint {
    /// The terminal.
    pub terminal: session::Terminal,
    /// Where sessions wait.
    pub store: Arc<dyn session::SessionStore>,
    /// How long a session may wait for the app's next message.
    pub step_timeout: std::time::Duration,
}

impl Endpoint {
    /// One message of the app on the channel of `session_id`.
    pub async fn message(&self, session_id: &str, body: &str) -> (StatusCode, String) {
        let message = match paos::parse(body) {
            Ok(message) => message,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
        };
        if let paos::FromClient::StartPaos { session_id: named, .. } = &message
            && named != session_id
        {
            return (StatusCode::FORBIDDEN, "StartPAOS names another session than the channel's".into());
        }
        let stored = match self.store.take(&key(session_id)).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return (StatusCode::NOT_FOUND, "no such eID session".into()),
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e),
        };
        let Ok(current) = serde_json::from_slice::<session::Session>(&stored) else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "unreadable session".into());
        };
        let reply = session::step(&self.terminal, current, message);
        let Ok(bytes) = serde_json::to_vec(&reply.session) else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "session not storable".into());
        };
        if let Err(e) = self.store.put(&key(session_id), bytes, self.step_timeout).await {
            return (StatusCode::SERVICE_UNAVAILABLE, e);
        }
        (StatusCode::OK, reply.body)
    }
}

/// The store key of a session.
pub fn key(session_id: &str) -> String {
    format!("eid-test-server:{session_id}")
}

/// Accepts connections until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    context: SslContext,
    identity_index: Index<Ssl, String>,
    endpoint: Arc<Endpoint>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or the like: wait a moment instead of spinning.
                tracing::warn!(target: "eid_test_server", error = %e, "accepting a PAOS connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (context, endpoint) = (context.clone(), endpoint.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, peer, &context, identity_index, endpoint).await {
                tracing::info!(target: "eid_test_server", %peer, error = %e, "PAOS connection ended");
            }
        });
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    context: &SslContext,
    identity_index: Index<Ssl, String>,
    endpoint: Arc<Endpoint>,
) -> Result<(), String> {
    let ssl = Ssl::new(context).map_err(|e| e.to_string())?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    tokio::time::timeout(std::time::Duration::from_secs(10), Pin::new(&mut stream).accept())
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let session_id = stream.ssl().ex_data(identity_index).cloned().ok_or("no PSK identity")?;
    tracing::debug!(target: "eid_test_server", %peer, session = %session_id, "PAOS channel open");
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let (endpoint, session_id) = (endpoint.clone(), session_id.clone());
        async move {
            let (status, body) = if request.method() != hyper::Method::POST {
                (StatusCode::METHOD_NOT_ALLOWED, "POST PAOS messages here".to_owned())
            } else {
                match Limited::new(request.into_body(), MAX_BODY).collect().await {
                    Ok(collected) => match String::from_utf8(collected.to_bytes().to_vec()) {
                        Ok(text) => endpoint.message(&session_id, &text).await,
                        Err(_) => (StatusCode::BAD_REQUEST, "not UTF-8".to_owned()),
                    },
                    Err(_) => (StatusCode::PAYLOAD_TOO_LARGE, "message too large".to_owned()),
                }
            };
            let content_type = if status == StatusCode::OK { "application/vnd.paos+xml" } else { "text/plain" };
            Response::builder()
                .status(status)
                .header("Content-Type", content_type)
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())
        }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service)
        .await
        .map_err(|e| e.to_string())
}
