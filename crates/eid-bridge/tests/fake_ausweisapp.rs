//! The SDK client against a scripted fake AusweisApp2 on a loopback WebSocket: the happy path and
//! each error path (wrong PIN, card removed, cancel, timeout, BAD_STATE, blocked card).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests: a failed step is the test failing")]

use std::time::Duration;

use async_trait::async_trait;
use eid_bridge::sdk::{
    client::{CardHolder, PinRequest, SdkClient, SdkConfig, SdkError},
    messages::{AccessRights, Reader, Secret},
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message as Frame;

/// One step of the fake app: wait for a command with this `cmd` (checking `check`), then send
/// these messages.
struct Step {
    expect: &'static str,
    reply: Vec<Value>,
}

fn step(expect: &'static str, reply: Vec<Value>) -> Step {
    Step { expect, reply }
}

/// The API level handshake every client starts with.
fn handshake() -> Vec<Step> {
    vec![
        step("GET_API_LEVEL", vec![json!({"msg": "API_LEVEL", "available": [1, 2], "current": 1})]),
        step("SET_API_LEVEL", vec![json!({"msg": "API_LEVEL", "available": [1, 2], "current": 2})]),
    ]
}

fn reader(retry_counter: u8) -> Value {
    json!({"name": "Simulator", "insertable": true, "attached": true, "keypad": false,
           "card": {"inoperative": false, "deactivated": false, "retryCounter": retry_counter}})
}

fn access_rights() -> Value {
    json!({"msg": "ACCESS_RIGHTS", "chat": {"effective": ["FamilyName", "RestrictedID"], "optional": [], "required": ["FamilyName", "RestrictedID"]}})
}

fn result_ok() -> Value {
    json!({"msg": "AUTH", "result": {"major": "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok"},
           "url": "http://127.0.0.1/eid/ergebnis?ResultMajor=ok"})
}

fn result_error(reason: &str) -> Value {
    json!({"msg": "AUTH", "result": {"major": "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#error",
           "minor": "http://www.bsi.bund.de/ecard/api/1.1/resultminor/al/common#internalError",
           "message": "aborted", "reason": reason},
           "url": "http://127.0.0.1/eid/ergebnis?ResultMajor=error"})
}

/// Starts the fake app; returns its URL and a channel with every command it received.
async fn fake_app(script: Vec<Step>) -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/eID-Kernel", listener.local_addr().unwrap());
    let (seen, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        for Step { expect, reply } in script {
            let command: Value = loop {
                match socket.next().await {
                    Some(Ok(Frame::Text(text))) => break serde_json::from_str(text.as_str()).unwrap(),
                    Some(Ok(_)) => continue,
                    _ => return,
                }
            };
            assert_eq!(command["cmd"], expect, "the client sent {command} where the script expects {expect}");
            // A test that does not look at the commands has dropped the receiver.
            let _ = seen.send(command);
            for message in reply {
                socket.send(Frame::text(message.to_string())).await.unwrap();
            }
        }
        // Stay connected but silent, so timeouts can be observed.
        while socket.next().await.is_some() {}
    });
    (url, received)
}

fn config(url: String) -> SdkConfig {
    SdkConfig { url, connect_timeout: Duration::from_secs(5), message_timeout: Duration::from_secs(5) }
}

/// A scripted citizen: the PINs to try in turn, whether to accept.
#[derive(Default)]
struct Citizen {
    accept: bool,
    pins: Vec<&'static str>,
    can: Option<&'static str>,
    puk: Option<&'static str>,
    pin_requests: Vec<PinRequest>,
    inserted: bool,
}

#[async_trait]
impl CardHolder for Citizen {
    async fn accept(&mut self, _rights: &AccessRights) -> bool {
        self.accept
    }
    async fn insert_card(&mut self) -> Option<String> {
        self.inserted = true;
        Some("Simulator".into())
    }
    async fn pin(&mut self, request: &PinRequest) -> Option<Secret> {
        self.pin_requests.push(request.clone());
        (!self.pins.is_empty()).then(|| Secret::new(self.pins.remove(0)))
    }
    async fn can(&mut self, _reader: &Reader) -> Option<Secret> {
        self.can.map(Secret::new)
    }
    async fn puk(&mut self, _reader: &Reader) -> Option<Secret> {
        self.puk.map(Secret::new)
    }
}

fn script(steps: Vec<Step>) -> Vec<Step> {
    handshake().into_iter().chain(steps).collect()
}

const TC: &str = "http://127.0.0.1:1/eid/tc-token?session=abc";

#[tokio::test]
async fn the_happy_path_runs_auth_to_the_refresh_url() {
    let (url, mut seen) = fake_app(script(vec![
        step("RUN_AUTH", vec![json!({"msg": "AUTH"}), access_rights()]),
        step("ACCEPT", vec![json!({"msg": "INSERT_CARD"})]),
        step("SET_CARD", vec![json!({"msg": "ENTER_PIN", "reader": reader(3)})]),
        step("SET_PIN", vec![json!({"msg": "STATUS", "workflow": "AUTH", "progress": 90, "state": null}), result_ok()]),
    ]))
    .await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let mut citizen = Citizen { accept: true, pins: vec!["123456"], ..Citizen::default() };
    let outcome = client.authenticate(TC, true, &mut citizen).await.unwrap();
    assert!(outcome.result.is_ok());
    assert_eq!(outcome.url.as_deref(), Some("http://127.0.0.1/eid/ergebnis?ResultMajor=ok"));
    assert!(citizen.inserted);
    let commands: Vec<Value> = std::iter::from_fn(|| seen.try_recv().ok()).collect();
    assert_eq!(commands[1], json!({"cmd": "SET_API_LEVEL", "level": 2}));
    assert_eq!(commands[2], json!({"cmd": "RUN_AUTH", "tcTokenURL": TC, "developerMode": true, "status": true}));
    assert_eq!(commands[5], json!({"cmd": "SET_PIN", "value": "123456"}));
}

/// A smartphone paired as card reader ("Smartphone als Kartenleser"), as AusweisApp2 lists it:
/// under the phone's name, not insertable, with a keypad (the PIN is typed on the phone).
fn paired_phone(retry_counter: u8) -> Value {
    json!({"name": "Pixel 9", "insertable": false, "attached": true, "keypad": true,
           "card": {"inoperative": false, "deactivated": false, "retryCounter": retry_counter}})
}

#[tokio::test]
async fn with_a_smartphone_as_card_reader_the_pin_is_typed_on_the_phone_not_sent() {
    let (url, mut seen) = fake_app(script(vec![
        step("GET_READER_LIST", vec![json!({"msg": "READER_LIST", "readers": [reader(3), paired_phone(3)]})]),
        step("RUN_AUTH", vec![json!({"msg": "AUTH"}), access_rights()]),
        step("ACCEPT", vec![json!({"msg": "ENTER_PIN", "reader": paired_phone(3)})]),
        step("SET_PIN", vec![result_ok()]),
    ]))
    .await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let readers = client.readers().await.unwrap();
    let phone = readers.iter().find(|r| r.name == "Pixel 9").expect("the paired phone is listed");
    assert!(phone.keypad && !phone.insertable && phone.card.is_some());
    let mut citizen = Citizen { accept: true, pins: vec!["123456"], ..Citizen::default() };
    let outcome = client.authenticate(TC, false, &mut citizen).await.unwrap();
    assert!(outcome.result.is_ok());
    assert_eq!(citizen.pin_requests[0].reader.name, "Pixel 9", "the holder is told where to type the PIN");
    let commands: Vec<Value> = std::iter::from_fn(|| seen.try_recv().ok()).collect();
    let set_pin = commands.iter().find(|c| c["cmd"] == "SET_PIN").expect("a SET_PIN");
    assert_eq!(set_pin, &json!({"cmd": "SET_PIN"}), "no PIN over the socket: it is typed on the phone");
}

#[tokio::test]
async fn a_wrong_pin_is_reported_with_the_retry_counter_and_the_can_is_asked_before_the_last_try() {
    let (url, _) = fake_app(script(vec![
        step("RUN_AUTH", vec![json!({"msg": "AUTH"}), access_rights()]),
        step("ACCEPT", vec![json!({"msg": "ENTER_PIN", "reader": reader(3)})]),
        step("SET_PIN", vec![json!({"msg": "ENTER_PIN", "reader": reader(2)})]),
        step("SET_PIN", vec![json!({"msg": "ENTER_CAN", "reader": reader(1)})]),
        step("SET_CAN", vec![json!({"msg": "ENTER_PIN", "reader": reader(1)})]),
        step("SET_PIN", vec![result_ok()]),
    ]))
    .await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let mut citizen =
        Citizen { accept: true, pins: vec!["111111", "222222", "123456"], can: Some("654321"), ..Default::default() };
    let outcome = client.authenticate(TC, false, &mut citizen).await.unwrap();
    assert!(outcome.result.is_ok());
    let told: Vec<(bool, Option<u8>)> =
        citizen.pin_requests.iter().map(|r| (r.previous_wrong, r.reader.card.and_then(|c| c.retry_counter))).collect();
    assert_eq!(told, [(false, Some(3)), (true, Some(2)), (true, Some(1))]);
}

#[tokio::test]
async fn a_removed_card_ends_with_the_apps_error_result_and_refresh_url() {
    let (url, _) = fake_app(script(vec![
        step("RUN_AUTH", vec![json!({"msg": "AUTH"}), access_rights()]),
        step("ACCEPT", vec![json!({"msg": "ENTER_PIN", "reader": reader(3)})]),
        step("SET_PIN", vec![result_error("Card_Removed")]),
    ]))
    .await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let mut citizen = Citizen { accept: true, pins: vec!["123456"], ..Default::default() };
    let outcome = client.authenticate(TC, false, &mut citizen).await.unwrap();
    assert!(!outcome.result.is_ok());
    assert_eq!(outcome.result.reason.as_deref(), Some("Card_Removed"));
    assert_eq!(outcome.url.as_deref(), Some("http://127.0.0.1/eid/ergebnis?ResultMajor=error"));
}

#[tokio::test]
async fn declining_the_access_rights_cancels() {
    let (url, mut seen) = fake_app(script(vec![
        step("RUN_AUTH", vec![json!({"msg": "AUTH"}), access_rights()]),
        step("CANCEL", vec![result_error("User_Cancelled")]),
    ]))
    .await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let outcome = client.authenticate(TC, false, &mut Citizen::default()).await.unwrap();
    assert_eq!(outcome.result.reason.as_deref(), Some("User_Cancelled"));
    assert_eq!(std::iter::from_fn(|| seen.try_recv().ok()).last().unwrap(), json!({"cmd": "CANCEL"}));
}

#[tokio::test]
async fn a_silent_app_times_out() {
    let (url, _) = fake_app(script(vec![step("RUN_AUTH", vec![json!({"msg": "AUTH"})])])).await;
    let mut client =
        SdkClient::connect(SdkConfig { message_timeout: Duration::from_millis(300), ..config(url) }).await.unwrap();
    let error = client.authenticate(TC, false, &mut Citizen::default()).await.unwrap_err();
    assert!(matches!(error, SdkError::Timeout(_)), "{error:?}");
}

#[tokio::test]
async fn bad_state_refused_run_auth_and_a_blocked_card_are_clear_errors() {
    let (url, _) =
        fake_app(script(vec![step("RUN_AUTH", vec![json!({"msg": "BAD_STATE", "error": "RUN_AUTH"})])])).await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let error = client.authenticate(TC, false, &mut Citizen::default()).await.unwrap_err();
    assert!(matches!(&error, SdkError::BadState(c) if c == "RUN_AUTH"), "{error:?}");

    let (url, _) = fake_app(script(vec![step(
        "RUN_AUTH",
        vec![json!({"msg": "AUTH", "error": "Validation of tcTokenURL failed"})],
    )]))
    .await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let error = client.authenticate("not a url", false, &mut Citizen::default()).await.unwrap_err();
    assert!(matches!(error, SdkError::AuthRefused(_)), "{error:?}");

    let mut blocked = reader(0);
    blocked["card"]["inoperative"] = json!(true);
    let (url, _) = fake_app(script(vec![
        step("RUN_AUTH", vec![json!({"msg": "AUTH"}), access_rights()]),
        step("ACCEPT", vec![json!({"msg": "ENTER_PUK", "reader": blocked})]),
    ]))
    .await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let error = client.authenticate(TC, false, &mut Citizen { accept: true, ..Default::default() }).await.unwrap_err();
    assert!(matches!(error, SdkError::CardInoperative), "{error:?}");
}

#[tokio::test]
async fn commands_out_of_turn_are_refused_before_sending_and_no_app_is_a_clear_error() {
    let (url, _) = fake_app(handshake()).await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let error = client.send(eid_bridge::sdk::messages::Command::Accept).await.unwrap_err();
    assert!(matches!(error, SdkError::NotAllowed { command: "ACCEPT", .. }), "{error:?}");

    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let config = SdkConfig {
        connect_timeout: Duration::from_millis(300),
        ..config(format!("ws://127.0.0.1:{port}/eID-Kernel"))
    };
    assert!(matches!(SdkClient::connect(config).await, Err(SdkError::Unreachable { .. })));
}

#[tokio::test]
async fn a_lost_connection_is_reported_and_reconnect_starts_afresh() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/eID-Kernel", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for drop_after_handshake in [true, false] {
            let (stream, _) = listener.accept().await.unwrap();
            let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
            for step in handshake() {
                let Some(Ok(Frame::Text(_))) = socket.next().await else { return };
                for message in step.reply {
                    socket.send(Frame::text(message.to_string())).await.unwrap();
                }
            }
            if drop_after_handshake {
                socket.close(None).await.unwrap();
                continue;
            }
            // The second connection answers GET_INFO.
            let Some(Ok(Frame::Text(_))) = socket.next().await else { return };
            let info =
                json!({"msg": "INFO", "VersionInfo": {"Name": "AusweisApp2", "Implementation-Version": "1.26.2"}});
            socket.send(Frame::text(info.to_string())).await.unwrap();
            while socket.next().await.is_some() {}
        }
    });
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let error = client.info().await.unwrap_err();
    assert!(matches!(error, SdkError::Disconnected(_)), "{error:?}");
    client.reconnect().await.unwrap();
    assert_eq!(client.info().await.unwrap().version_info.implementation_version, "1.26.2");
}

/// A freshly started app lists no readers for a while: the client asks again until it does.
#[tokio::test]
async fn readers_are_awaited_until_the_app_has_registered_them() {
    let empty = || step("GET_READER_LIST", vec![json!({"msg": "READER_LIST", "readers": []})]);
    let mut script = handshake();
    script.extend([empty(), empty(), empty()]);
    script.push(step("GET_READER_LIST", vec![json!({"msg": "READER_LIST", "readers": [reader(3)]})]));
    let (url, mut commands) = fake_app(script).await;
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let readers = client.wait_for_readers(Duration::from_secs(5)).await.unwrap();
    assert_eq!(readers.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["Simulator"]);
    let mut asked = 0;
    while let Ok(command) = commands.try_recv() {
        asked += usize::from(command["cmd"] == "GET_READER_LIST");
    }
    assert_eq!(asked, 4, "asked until a reader was there, then no more");
}

/// An app the client connected to in its first moments never starts the Simulator's scan for
/// that connection: the client connects again and then finds the reader.
#[tokio::test]
async fn a_connection_that_sees_no_reader_is_opened_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/eID-Kernel", listener.local_addr().unwrap());
    let (connections_tx, mut connections) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for readers in [json!([]), json!([reader(3)])] {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = connections_tx.send(());
            let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
            for step in handshake() {
                let Some(Ok(Frame::Text(_))) = socket.next().await else { return };
                for message in step.reply {
                    socket.send(Frame::text(message.to_string())).await.unwrap();
                }
            }
            // Every GET_READER_LIST on this connection gets the same answer, until the client
            // goes away.
            while let Some(Ok(Frame::Text(_))) = socket.next().await {
                let list = json!({"msg": "READER_LIST", "readers": readers});
                socket.send(Frame::text(list.to_string())).await.unwrap();
            }
        }
    });
    let mut client = SdkClient::connect(config(url)).await.unwrap();
    let readers = client.wait_for_readers(Duration::from_secs(10)).await.unwrap();
    assert_eq!(readers.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["Simulator"]);
    let mut opened = 0;
    while connections.try_recv().is_ok() {
        opened += 1;
    }
    assert_eq!(opened, 2, "connected once more after the empty lists");
}
