//! The real AusweisApp2 (Debian's package, headless in SDK mode) with its Simulator card
//! authenticates against the test eID-Server: TC token over loopback HTTP, PAOS over TLS 1.2
//! RSA-PSK, EAC with our certificates, Chip Authentication, secure messaging, the data groups
//! and the pseudonym. Skipped with the reason when AusweisApp2 is not installed, a failure
//! under `TEST_REQUIRE_BACKENDS` (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::{process::Stdio, sync::Arc, time::Duration};

use async_trait::async_trait;
use eid_bridge::{
    Attribute, EidServer, EidServerError, UseIdRequest,
    sdk::{
        client::{CardHolder, PinRequest, SdkClient, SdkConfig},
        messages::{AccessRights, Reader, Secret},
    },
};
use eid_test_server::{MemorySessions, TestEidServer, TestEidServerConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    process::Child,
};

/// AusweisApp2 in SDK mode with a fresh home whose settings switch pre-verification off (our
/// terminal certificates do not chain to the BSI's test CVCA); killed when dropped.
struct AusweisApp2 {
    _process: Child,
    _home: tempfile::TempDir,
    url: String,
}

fn start_ausweisapp2() -> Option<AusweisApp2> {
    let binary =
        ["/usr/bin/AusweisApp2", "/usr/bin/AusweisApp"].into_iter().find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("config").join("Unknown Organization");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(settings.join("AusweisApp2.conf"), "[preverification]\nenabled=false\n").unwrap();
    let process = tokio::process::Command::new(binary)
        .args(["--ui", "websocket", "--port", &port.to_string(), "--address", "127.0.0.1", "--no-proxy"])
        .env("QT_QPA_PLATFORM", "offscreen")
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .stdout(Stdio::null())
        // AUSWEISAPP2_LOG=file keeps the app's log (it logs to stderr) for a failure's reasons.
        .stderr(match std::env::var_os("AUSWEISAPP2_LOG") {
            Some(path) => std::fs::File::create(path).unwrap().into(),
            None => Stdio::null(),
        })
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    Some(AusweisApp2 { _process: process, _home: home, url: format!("ws://127.0.0.1:{port}/eID-Kernel") })
}

fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("TEST_REQUIRE_BACKENDS").is_none(), "required in CI: {why}");
    eprintln!("skipped: {why}");
}

/// The citizen: accepts, puts the Simulator card in, and "types" the PIN on the Simulator, a
/// reader with its own keypad (the SDK client sends no value for it).
struct Citizen;

#[async_trait]
impl CardHolder for Citizen {
    async fn accept(&mut self, _: &AccessRights) -> bool {
        true
    }
    async fn insert_card(&mut self) -> Option<String> {
        Some("Simulator".into())
    }
    async fn pin(&mut self, _: &PinRequest) -> Option<Secret> {
        Some(Secret::new("123456"))
    }
    async fn can(&mut self, _: &Reader) -> Option<Secret> {
        None
    }
    async fn puk(&mut self, _: &Reader) -> Option<Secret> {
        None
    }
}

/// Serves one TC token over plain HTTP on loopback (developer mode allows it) and returns its URL.
async fn serve_tc_token(token_for: impl Fn(&str) -> String + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let token = token_for(&base);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let token = token.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{token}",
                    token.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("{base}/tc-token")
}

#[tokio::test(flavor = "multi_thread")]
async fn ausweisapp2_with_the_simulator_card_authenticates_against_the_test_eid_server() {
    let Some(app) = start_ausweisapp2() else {
        return skip_or_fail("AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let server = TestEidServer::start(
        TestEidServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            secret: b"test secret".to_vec(),
            subject_name: "servicekonto (Test)".into(),
            subject_url: "http://127.0.0.1".into(),
            minimum_age: Some(18),
            step_timeout: Duration::from_secs(60),
        },
        Arc::new(MemorySessions::default()),
    )
    .await
    .unwrap();
    let session = server
        .use_id(&UseIdRequest {
            required: vec![Attribute::GivenNames, Attribute::FamilyNames, Attribute::DateOfBirth],
            allowed: vec![Attribute::PlaceOfResidence, Attribute::PlaceOfBirth, Attribute::BirthName],
            transaction_info: Some("Registrierung im Servicekonto".into()),
        })
        .await
        .unwrap();
    let token_session = session.clone();
    let tc_token_url = serve_tc_token(move |base| {
        eid_bridge::tc_token::render(&token_session, &format!("{base}/refresh"), &format!("{base}/error"))
    })
    .await;

    let config = SdkConfig {
        url: app.url.clone(),
        connect_timeout: Duration::from_secs(30),
        message_timeout: Duration::from_secs(60),
    };
    let mut client = SdkClient::connect(config).await.expect("AusweisApp2 answers");
    let readers = client.wait_for_readers(Duration::from_secs(20)).await.unwrap();
    assert!(readers.iter().any(|r| r.name == "Simulator"), "{readers:?}");
    let outcome = client.authenticate(&tc_token_url, true, &mut Citizen).await.unwrap();
    let result = server.get_result(&session.session_id).await;
    assert!(outcome.result.is_ok(), "AusweisApp2: {outcome:?}; our side: {result:?}");
    let data = result.unwrap();
    assert_eq!(data.given_names.as_deref(), Some("ERIKA"));
    assert_eq!(data.family_names.as_deref(), Some("MUSTERMANN"));
    assert_eq!(data.date_of_birth.as_deref(), Some("1964-08-12"));
    let home = data.place_of_residence.unwrap();
    assert_eq!((home.city.as_deref(), home.zip_code.as_deref()), (Some("KÖLN"), Some("51147")));
    assert_eq!(data.restricted_id.len(), 64, "SHA-256 pseudonym: {}", data.restricted_id);
    // The result is handed out once.
    assert!(matches!(server.get_result(&session.session_id).await, Err(EidServerError::NoResult)));
}
