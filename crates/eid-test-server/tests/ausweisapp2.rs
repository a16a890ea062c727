//! The real AusweisApp2 (Debian's package, headless in SDK mode) with its Simulator card
//! authenticates against the test eID-Server: TC token over loopback HTTP, PAOS over TLS 1.2
//! RSA-PSK, EAC with our certificates, Chip Authentication, secure messaging, the data groups
//! and the pseudonym. Skipped with the reason when AusweisApp2 is not installed, a failure
//! under `TEST_REQUIRE_BACKENDS` (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::{sync::Arc, time::Duration};

use eid_bridge::{
    Attribute, EidServer, EidServerError, UseIdRequest,
    sdk::client::{CardHolder, SdkClient},
};
use eid_test_server::{
    MemorySessions, TestEidServer, TestEidServerConfig,
    simulator::TestCard,
    testing::{AusweisApp2, DecliningCitizen, SimulatorCitizen},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("TEST_REQUIRE_BACKENDS").is_none(), "required in CI: {why}");
    eprintln!("skipped: {why}");
}

/// Serves one TC token over plain HTTP on loopback (developer mode allows it) and returns its URL.
async fn serve_tc_token(token_for: impl FnOnce(&str) -> String) -> String {
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

/// Changes a TC token to send the app to `address` instead of the session's eID-Server.
fn server_address(address: String) -> impl Fn(String) -> String + Send + Sync {
    move |token| {
        let start = token.find("<ServerAddress>").unwrap() + "<ServerAddress>".len();
        let end = token.find("</ServerAddress>").unwrap();
        format!("{}{address}{}", &token[..start], &token[end..])
    }
}

/// The deployment secret of the tests' eID-Server nodes.
const SECRET: &[u8] = b"test secret";

/// The test eID-Server with its in-memory sessions and an age check at 18.
async fn test_eid_server() -> TestEidServer {
    node(Arc::new(MemorySessions::default())).await
}

/// A node of the test eID-Server on `sessions` (nodes sharing them and the secret are one).
async fn node(sessions: Arc<MemorySessions>) -> TestEidServer {
    TestEidServer::start(
        TestEidServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_address: None,
            secret: SECRET.to_vec(),
            subject_name: "servicekonto (Test)".into(),
            subject_url: "http://127.0.0.1".into(),
            minimum_age: Some(18),
            step_timeout: Duration::from_secs(60),
        },
        sessions,
    )
    .await
    .unwrap()
}

fn request() -> UseIdRequest {
    UseIdRequest {
        required: vec![Attribute::GivenNames, Attribute::FamilyNames, Attribute::DateOfBirth],
        allowed: vec![Attribute::PlaceOfResidence, Attribute::PlaceOfBirth, Attribute::BirthName],
        transaction_info: Some("Registrierung im Servicekonto".into()),
    }
}

/// One authentication: a `useID` session, its TC token (changed by `token` if needed), the app
/// driven through `holder`; AusweisApp2's outcome and what the eID-Server's `getResult` gives.
/// When the app lost its own card-insertion race (and only then), a fresh app runs it again.
async fn authenticate(
    server: &TestEidServer,
    app: &mut AusweisApp2,
    client: &mut SdkClient,
    holder: &mut dyn CardHolder,
    token: &(dyn Fn(String) -> String + Send + Sync),
) -> (eid_bridge::sdk::client::AuthOutcome, Result<eid_bridge::EidPersonalData, EidServerError>) {
    for _ in 0..8 {
        let races = app.insertion_races();
        let session = server.use_id(&request()).await.unwrap();
        let tc_token_url = serve_tc_token(|base| {
            token(eid_bridge::tc_token::render(&session, &format!("{base}/refresh"), &format!("{base}/error")))
        })
        .await;
        let outcome = client.authenticate(&tc_token_url, true, holder).await.unwrap();
        if app.insertion_races() == races {
            return (outcome, server.get_result(&session.session_id).await);
        }
        eprintln!("AusweisApp2 lost its card-insertion race; a fresh app runs it again");
        app.restart().await.unwrap();
        *client = app.sdk().await.unwrap();
    }
    panic!("AusweisApp2 lost its card-insertion race eight times in a row");
}

#[tokio::test(flavor = "multi_thread")]
async fn ausweisapp2_with_the_simulator_card_authenticates_against_the_test_eid_server() {
    let Some(mut app) = AusweisApp2::start().await else {
        return skip_or_fail("AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let server = test_eid_server().await;
    let mut client = app.sdk().await.unwrap();

    let (outcome, result) =
        authenticate(&server, &mut app, &mut client, &mut SimulatorCitizen::default(), &|t| t).await;
    assert!(outcome.result.is_ok(), "AusweisApp2: {outcome:?}; our side: {result:?}");
    let data = result.unwrap();
    assert_eq!(data.given_names.as_deref(), Some("ERIKA"));
    assert_eq!(data.family_names.as_deref(), Some("MUSTERMANN"));
    assert_eq!(data.birth_name.as_deref(), Some("GABLER"));
    assert_eq!(data.date_of_birth.as_deref(), Some("1964-08-12"));
    assert_eq!(data.place_of_birth.as_ref().and_then(|p| p.freetext.as_deref()), Some("BERLIN"));
    let home = data.place_of_residence.as_ref().unwrap();
    assert_eq!(
        (home.street.as_deref(), home.zip_code.as_deref(), home.city.as_deref()),
        (Some("HEIDESTRAẞE 17"), Some("51147"), Some("KÖLN"))
    );
    assert_eq!(data.restricted_id.len(), 64, "a SHA-256 pseudonym: {}", data.restricted_id);

    // The same card gives the same pseudonym in the next session: how the server knows it again.
    let (outcome, again) = authenticate(&server, &mut app, &mut client, &mut SimulatorCitizen::default(), &|t| t).await;
    assert!(outcome.result.is_ok(), "{outcome:?}");
    assert_eq!(again.unwrap().restricted_id, data.restricted_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_psk_and_a_cancelled_run_end_without_data() {
    let Some(mut app) = AusweisApp2::start().await else {
        return skip_or_fail("AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let server = test_eid_server().await;
    let mut client = app.sdk().await.unwrap();

    // A TC token with another PSK: the TLS handshake fails, the app never reaches the card,
    // and the session has no result.
    let wrong_psk = |token: String| {
        let start = token.find("<PSK>").unwrap() + 5;
        let end = token.find("</PSK>").unwrap();
        format!("{}{}{}", &token[..start], "00".repeat((end - start) / 2), &token[end..])
    };
    let (outcome, result) =
        authenticate(&server, &mut app, &mut client, &mut SimulatorCitizen::default(), &wrong_psk).await;
    assert!(!outcome.result.is_ok(), "{outcome:?}");
    assert!(matches!(result, Err(EidServerError::NoResult)), "{result:?}");

    // The citizen declines the access rights: the app tells the eID-Server, which ends the
    // session with the cancellation and no data.
    let (outcome, result) = authenticate(&server, &mut app, &mut client, &mut DecliningCitizen, &|t| t).await;
    assert!(!outcome.result.is_ok(), "{outcome:?}");
    match result {
        Err(EidServerError::Failed { minor, .. }) => assert!(minor.ends_with("cancellationByUser"), "{minor}"),
        other => panic!("a cancellation: {other:?}"),
    }

    // The server still works for the next citizen.
    let (outcome, result) =
        authenticate(&server, &mut app, &mut client, &mut SimulatorCitizen::default(), &|t| t).await;
    assert!(outcome.result.is_ok() && result.is_ok(), "{outcome:?} {result:?}");
}

fn card(given_names: &str, born: time::Date, expires: time::Date) -> SimulatorCitizen {
    let card = TestCard {
        given_names: given_names.into(),
        family_names: "BEISPIEL".into(),
        // No DG13: the card has no birth name, and that is no error.
        birth_name: None,
        date_of_birth: born,
        place_of_birth: "WIEN".into(),
        street: "AM ABDINGHOF 11".into(),
        zip_code: "33098".into(),
        city: "PADERBORN".into(),
        expires,
    };
    SimulatorCitizen { card: Some(card.simulator_card().unwrap()) }
}

#[tokio::test(flavor = "multi_thread")]
async fn test_identities_a_second_person_an_underage_one_and_an_expired_card() {
    let Some(mut app) = AusweisApp2::start().await else {
        return skip_or_fail("AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let server = test_eid_server().await;
    let mut client = app.sdk().await.unwrap();
    let today = time::OffsetDateTime::now_utc().date();
    let years = |n: i32| today.replace_year(today.year() + n).unwrap();

    // Another person: the card's files are ours, the app reads them through the same channel.
    let (outcome, result) =
        authenticate(&server, &mut app, &mut client, &mut card("ANNA", years(-36), years(5)), &|t| t).await;
    assert!(outcome.result.is_ok(), "{outcome:?} {result:?}");
    let anna = result.unwrap();
    assert_eq!((anna.given_names.as_deref(), anna.family_names.as_deref()), (Some("ANNA"), Some("BEISPIEL")));
    assert_eq!(anna.place_of_residence.unwrap().city.as_deref(), Some("PADERBORN"));
    assert_eq!(anna.birth_name, None, "a data group the card lacks is an absent attribute");
    // The Simulator computes the pseudonym with fixed keys, whatever the files say.
    assert_eq!(anna.restricted_id.len(), 64);

    // Sixteen years old: the card denies the age the service asks (18), no data is handed out.
    let (outcome, result) =
        authenticate(&server, &mut app, &mut client, &mut card("JUNA", years(-16), years(5)), &|t| t).await;
    assert!(!outcome.result.is_ok(), "{outcome:?}");
    match result {
        Err(EidServerError::Failed { message, .. }) => {
            assert!(message.unwrap_or_default().contains("minimum age"))
        }
        other => panic!("refused for age: {other:?}"),
    }

    // Expired yesterday: the card denies the validity, no data.
    let yesterday = today.previous_day().unwrap();
    let (outcome, result) =
        authenticate(&server, &mut app, &mut client, &mut card("ALT", years(-50), yesterday), &|t| t).await;
    assert!(!outcome.result.is_ok(), "{outcome:?}");
    match result {
        Err(EidServerError::Failed { message, .. }) => assert!(message.unwrap_or_default().contains("expired")),
        other => panic!("refused as expired: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_sharing_the_secret_and_the_sessions_serve_one_authentication() {
    let Some(mut app) = AusweisApp2::start().await else {
        return skip_or_fail("AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let sessions = Arc::new(MemorySessions::default());
    let (a, b) = (node(sessions.clone()).await, node(sessions).await);
    let mut client = app.sdk().await.unwrap();
    // Node A starts the session, the app talks to node B (its PSK derives from the shared
    // secret), node A hands out the result.
    let to_b = format!("https://{}/paos", b.address());
    let (outcome, result) =
        authenticate(&a, &mut app, &mut client, &mut SimulatorCitizen::default(), &server_address(to_b)).await;
    assert!(outcome.result.is_ok(), "{outcome:?} {result:?}");
    assert_eq!(result.unwrap().family_names.as_deref(), Some("MUSTERMANN"));
}

/// A man in the middle who knows the deployment's secret (so the app's PSK): it passes every
/// message on to `upstream` over a channel of its own, but flips a bit of the card's Chip
/// Authentication token on the way. Returns its PAOS address.
async fn tampering_proxy(secret: &'static [u8], upstream: std::net::SocketAddr) -> String {
    use eid_test_server::server;
    use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode, SslVersion};
    use std::pin::Pin;
    use tokio_openssl::SslStream;

    let (key, cert) = server::tls_identity().unwrap();
    let (context, identity) = server::tls_context(Arc::new(secret.to_vec()), &key, &cert).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}/paos", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let mut app = SslStream::new(Ssl::new(&context).unwrap(), tcp).unwrap();
            if Pin::new(&mut app).accept().await.is_err() {
                continue;
            }
            let session = app.ssl().ex_data(identity).cloned().unwrap();
            // One request at a time: head, Content-Length body; answered from upstream.
            let mut buffered = Vec::new();
            loop {
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    if let Some(at) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(at + 4);
                    }
                    match app.read(&mut chunk).await {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => buffered.extend_from_slice(&chunk[..n]),
                    }
                };
                let Some(head_end) = head_end else { break };
                let head = String::from_utf8_lossy(&buffered[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                    .unwrap_or(0);
                while buffered.len() < head_end + length {
                    let n = app.read(&mut chunk).await.unwrap();
                    buffered.extend_from_slice(&chunk[..n]);
                }
                let mut body = String::from_utf8(buffered[head_end..head_end + length].to_vec()).unwrap();
                buffered.drain(..head_end + length);
                if let Some(at) = body.find("<AuthenticationToken>") {
                    let at = at + "<AuthenticationToken>".len();
                    let flipped = if &body[at..=at] == "0" { "1" } else { "0" };
                    body.replace_range(at..=at, flipped);
                }
                let mut builder = SslContext::builder(SslMethod::tls_client()).unwrap();
                builder.set_min_proto_version(Some(SslVersion::TLS1_2)).unwrap();
                builder.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
                builder.set_cipher_list("RSA-PSK-AES256-GCM-SHA384").unwrap();
                builder.set_verify(SslVerifyMode::NONE);
                let (id, psk) = (session.clone(), server::psk(secret, &session).unwrap());
                builder.set_psk_client_callback(move |_, _, id_out, psk_out| {
                    id_out[..id.len()].copy_from_slice(id.as_bytes());
                    id_out[id.len()] = 0;
                    psk_out[..psk.len()].copy_from_slice(&psk);
                    Ok(psk.len())
                });
                let tcp = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let mut up = SslStream::new(Ssl::new(&builder.build()).unwrap(), tcp).unwrap();
                Pin::new(&mut up).connect().await.unwrap();
                let request = format!(
                    "POST /paos HTTP/1.1\r\nHost: upstream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                up.write_all(request.as_bytes()).await.unwrap();
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer).await;
                let answer = String::from_utf8_lossy(&answer);
                let (head, reply) = answer.split_once("\r\n\r\n").unwrap();
                let status = &head[9..12];
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.paos+xml\r\nContent-Length: {}\r\n\r\n{reply}",
                    reply.len()
                );
                if app.write_all(response.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_chip_authentication_token_ends_the_run_without_data() {
    let Some(mut app) = AusweisApp2::start().await else {
        return skip_or_fail("AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let server = test_eid_server().await;
    let mut client = app.sdk().await.unwrap();
    let proxy = tampering_proxy(SECRET, server.address()).await;
    let (outcome, result) =
        authenticate(&server, &mut app, &mut client, &mut SimulatorCitizen::default(), &server_address(proxy)).await;
    assert!(!outcome.result.is_ok(), "{outcome:?}");
    match result {
        Err(EidServerError::Failed { message, .. }) => {
            assert!(message.unwrap_or_default().contains("authentication token does not verify"))
        }
        other => panic!("refused for the token: {other:?}"),
    }
}
