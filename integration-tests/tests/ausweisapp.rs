//! Interop with the real AusweisApp2 (Debian's package), started headless in SDK mode on a free
//! port: version and API level, the reader list, RUN_AUTH against our real TC token endpoint
//! (AusweisApp2 fetches the token, finds no eID-Server behind the test service's address, and
//! reports the error with our refresh address), and CANCEL. Skipped with a reason when
//! AusweisApp2 is not installed (`.ci/run` installs it; CI sets `TEST_REQUIRE_BACKENDS`).

use std::{process::Stdio, time::Duration};

use async_trait::async_trait;
use eid_bridge::sdk::{
    client::{CardHolder, PinRequest, SdkClient, SdkConfig},
    messages::{AccessRights, Command, Message, Reader, Secret},
};
use storage::testing::skip;
use tokio::process::Child;

use crate::{
    citizen::{browser, csrf, page},
    support::{Backends, TestServer},
};

const TEST: &str = "ausweisapp::real_ausweisapp2_fetches_our_tc_token_and_reports_the_result";

/// AusweisApp2 in SDK mode; killed when dropped.
struct AusweisApp2 {
    _process: Child,
    _home: tempfile::TempDir,
    url: String,
}

async fn start_ausweisapp2() -> Option<AusweisApp2> {
    let binary =
        ["/usr/bin/AusweisApp2", "/usr/bin/AusweisApp"].into_iter().find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Its own home and runtime folder: no settings of the machine's user, no second instance lock.
    let home = tempfile::tempdir().unwrap();
    let process = tokio::process::Command::new(binary)
        .args(["--ui", "websocket", "--port", &port.to_string(), "--address", "127.0.0.1", "--no-proxy"])
        .env("QT_QPA_PLATFORM", "offscreen")
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    Some(AusweisApp2 { _process: process, _home: home, url: format!("ws://127.0.0.1:{port}/eID-Kernel") })
}

/// Never reached: without an eID-Server the workflow ends before any question.
struct NoCitizen;

#[async_trait]
impl CardHolder for NoCitizen {
    async fn accept(&mut self, _: &AccessRights) -> bool {
        false
    }
    async fn insert_card(&mut self) -> Option<String> {
        Some("Simulator".into())
    }
    async fn pin(&mut self, _: &PinRequest) -> Option<Secret> {
        None
    }
    async fn can(&mut self, _: &Reader) -> Option<Secret> {
        None
    }
    async fn puk(&mut self, _: &Reader) -> Option<Secret> {
        None
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_ausweisapp2_fetches_our_tc_token_and_reports_the_result() {
    let Some(app) = start_ausweisapp2().await else {
        return skip(TEST, "AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let config = SdkConfig {
        url: app.url.clone(),
        connect_timeout: Duration::from_secs(30),
        message_timeout: Duration::from_secs(30),
    };
    let mut client = SdkClient::connect(config.clone()).await.expect("AusweisApp2 answers and speaks API level 2");
    let info = client.info().await.unwrap();
    assert!(info.version_info.name.starts_with("AusweisApp"), "{info:?}");
    assert!(
        info.version_info.implementation_version.starts_with("1.")
            || info.version_info.implementation_version.starts_with("2.")
    );
    let readers = client.wait_for_readers(Duration::from_secs(20)).await.unwrap();
    assert!(readers.iter().any(|r| r.name == "Simulator"), "the built-in Simulator reader: {readers:?}");

    // A real eID flow of our server: the browser starts it, AusweisApp2 gets the TC token URL.
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |_| {}).await;
    let issuer = format!("{}/test", server.base_url);
    let citizen = browser();
    let (_, start) = page(&citizen, &format!("{issuer}/eid?zweck=anmelden&return_to=/konto")).await;
    let mut form = vec![("csrf", csrf(&start)), ("zweck", "anmelden".to_owned()), ("return_to", "/konto".to_owned())];
    form.extend(["app", "reader", "pin"].map(|c| (c, "ja".to_owned())));
    let response = citizen.post(format!("{issuer}/eid")).form(&form).send().await.unwrap();
    let reference = response.url().query_pairs().find(|(k, _)| k == "ref").unwrap().1.into_owned();
    let tc_token_url = format!("{issuer}/eid/tc-token?ref={reference}");

    let outcome = client.authenticate(&tc_token_url, true, &mut NoCitizen).await.unwrap();
    assert!(!outcome.result.is_ok(), "no eID-Server stands behind the test service: {outcome:?}");
    let url = outcome.url.expect("AusweisApp2 names where the browser goes");
    // The TC token is handed out once: AusweisApp2 took it.
    let (status, _) = page(&citizen, &tc_token_url).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "AusweisApp2 fetched our TC token");
    // Only the TC token tells AusweisApp2 this address: it fetched and read our token.
    assert!(url.starts_with(&format!("{issuer}/eid/ergebnis?ref={reference}")), "{url}");
    assert!(outcome.result.major.ends_with("#error"), "{:?}", outcome.result);
    // The browser, sent there, sees the failure told in German.
    let (status, html) = page(&citizen, &url).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert!(html.contains("Ausweisen nicht abgeschlossen"), "{html}");

    // CANCEL: a TC token URL that never answers keeps the workflow running until we cancel.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/tc-token", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    client.send(Command::RunAuth { tc_token_url: silent_url, developer_mode: true, status: true }).await.unwrap();
    loop {
        if let Message::Auth(auth) = client.next_message().await.unwrap() {
            assert!(auth.result.is_none() && auth.error.is_none(), "started: {auth:?}");
            break;
        }
    }
    client.send(Command::Cancel).await.unwrap();
    let result = loop {
        if let Message::Auth(auth) = client.next_message().await.unwrap()
            && let Some(result) = auth.result
        {
            break result;
        }
    };
    assert!(!result.is_ok(), "{result:?}");
    assert!(
        result.minor.as_deref().unwrap_or_default().contains("cancellationByUser")
            || result.reason.as_deref().unwrap_or_default().contains("Cancel"),
        "cancelled: {result:?}"
    );
    held.abort();
    server.stop().await;
}
