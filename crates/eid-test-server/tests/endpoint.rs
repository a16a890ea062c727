//! The PAOS endpoint without AusweisApp2: a TLS-PSK client of our own checks that only the
//! session's PSK opens the channel, that a channel speaks for its own session only, that bad
//! input gets a clear 4xx, and that asking for a result too early does not lose the session.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::{pin::Pin, sync::Arc, time::Duration};

use eid_bridge::{Attribute, EidServer, EidServerError, UseIdRequest};
use eid_test_server::{MemorySessions, TestEidServer, TestEidServerConfig};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode, SslVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_openssl::SslStream;

async fn server() -> TestEidServer {
    TestEidServer::start(
        TestEidServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_address: None,
            secret: b"endpoint test".to_vec(),
            subject_name: "Test".into(),
            subject_url: "http://127.0.0.1".into(),
            minimum_age: None,
            step_timeout: Duration::from_secs(60),
        },
        Arc::new(MemorySessions::default()),
    )
    .await
    .unwrap()
}

/// Opens a TLS 1.2 RSA-PSK channel as `identity` with `key`.
async fn channel(
    server: &TestEidServer,
    identity: &str,
    key: Vec<u8>,
) -> Result<SslStream<tokio::net::TcpStream>, String> {
    let mut builder = SslContext::builder(SslMethod::tls_client()).unwrap();
    builder.set_min_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    builder.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    builder.set_cipher_list("RSA-PSK-AES256-GCM-SHA384").unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    let identity = identity.to_owned();
    builder.set_psk_client_callback(move |_, _, identity_out, psk_out| {
        identity_out[..identity.len()].copy_from_slice(identity.as_bytes());
        identity_out[identity.len()] = 0;
        psk_out[..key.len()].copy_from_slice(&key);
        Ok(key.len())
    });
    let tcp = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    let mut stream = SslStream::new(Ssl::new(&builder.build()).unwrap(), tcp).unwrap();
    Pin::new(&mut stream).connect().await.map_err(|e| e.to_string())?;
    Ok(stream)
}

/// POSTs `body` on the channel; the status code and the body.
async fn post(stream: &mut SslStream<tokio::net::TcpStream>, body: &str) -> (u16, String) {
    let request = format!(
        "POST /paos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/vnd.paos+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

fn start_paos(session_id: &str) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><StartPAOS xmlns="urn:iso:std:iso-iec:24727:tech:schema"><SessionIdentifier>{session_id}</SessionIdentifier><ConnectionHandle><SlotHandle>00</SlotHandle></ConnectionHandle></StartPAOS></soap:Body></soap:Envelope>"#
    )
}

#[tokio::test]
async fn only_the_sessions_psk_opens_its_channel_and_the_channel_speaks_for_it_alone() {
    let server = server().await;
    let request = UseIdRequest { required: vec![Attribute::FamilyNames], allowed: vec![], transaction_info: None };
    let session = server.use_id(&request).await.unwrap();
    let psk = session.psk.clone().unwrap();
    assert_eq!(psk.id, session.session_id);
    assert!(session.server_address.starts_with("https://127.0.0.1:"), "{}", session.server_address);

    // Asked too early, getResult has nothing, and the session goes on.
    assert!(matches!(server.get_result(&session.session_id).await, Err(EidServerError::NoResult)));

    // A wrong key, or an identity that is no session of ours: no channel.
    assert!(channel(&server, &psk.id, vec![0; 32]).await.is_err());
    assert!(channel(&server, "not-a-session", hex::decode(&psk.key).unwrap()).await.is_err());

    // The right key: a channel; bad input gets a 4xx and leaves the session as it was.
    let key = hex::decode(&psk.key).unwrap();
    let mut stream = channel(&server, &psk.id, key.clone()).await.unwrap();
    let (status, body) = post(&mut stream, "<not-paos/>").await;
    assert_eq!(status, 400, "{body}");
    // StartPAOS naming another session on this channel: refused.
    let other = server.use_id(&request).await.unwrap();
    let mut stream = channel(&server, &psk.id, key.clone()).await.unwrap();
    let (status, _) = post(&mut stream, &start_paos(&other.session_id)).await;
    assert_eq!(status, 403);
    // Its own StartPAOS: EAC1 with our certificates, the description and the CHAT.
    let mut stream = channel(&server, &psk.id, key).await.unwrap();
    let (status, body) = post(&mut stream, &start_paos(&session.session_id)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("EAC1InputType") && body.contains("<Certificate>") && body.contains("<RequiredCHAT>"),
        "{body}"
    );
}
