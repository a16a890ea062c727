//! Interop with the real AusweisApp2 (Debian's package), started headless in SDK mode on a free
//! port: version and API level, the reader list, RUN_AUTH against our real TC token endpoint
//! (AusweisApp2 fetches the token, finds no eID-Server behind the test service's address, and
//! reports the error with our refresh address), and CANCEL; then the whole eID path through our
//! own test eID-Server: the app authenticates with its Simulator card, the citizen registers
//! with the card's data, logs in with the card again and an OIDC request for "hoch" is answered
//! with `acr` hoch and `amr` eid. Skipped with a reason when AusweisApp2 is not installed
//! (`.ci/run` installs it; CI sets `TEST_REQUIRE_BACKENDS`).

use std::time::Duration;

use eid_bridge::sdk::{
    client::{SdkClient, SdkConfig},
    messages::{Command, Message},
};
use eid_test_server::testing::{AusweisApp2, DecliningCitizen, SimulatorCitizen};
use storage::testing::skip;

use crate::{
    citizen::{PASSWORD, browser, csrf, page, post},
    eid::{CALLBACK, eid_portal_authorize, id_token_claims, redeem},
    mail::SmtpSink,
    support::{Backends, TestServer, first_party_client},
};

const TEST: &str = "ausweisapp::real_ausweisapp2_fetches_our_tc_token_and_reports_the_result";

/// From the eID start page (`zweck`) to AusweisApp2 and back: the browser is sent to the local
/// app address, the real app authenticates against our test eID-Server, the browser follows the
/// refresh address the app names. Returns the final URL and page. A run the app aborts on its
/// own card-insertion race (see `eid_test_server::testing::INSERTION_RACE`), and only such a
/// run, starts over from the start page in a fresh app.
async fn through_the_app(
    browser: &reqwest::Client,
    app: &mut AusweisApp2,
    client: &mut SdkClient,
    issuer: &str,
    zweck: &str,
) -> (String, String) {
    for _ in 0..8 {
        let (status, start) = page(browser, &format!("{issuer}/eid?zweck={zweck}&return_to=/konto")).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{start}");
        assert!(start.contains("Test-eID-Server") && start.contains("Entwicklermodus"), "testers are told: {start}");
        let mut form = vec![("csrf", csrf(&start)), ("zweck", zweck.to_owned()), ("return_to", "/konto".to_owned())];
        form.extend(["app", "reader", "pin"].map(|c| (c, "ja".to_owned())));
        let response = browser.post(format!("{issuer}/eid")).form(&form).send().await.unwrap();
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!((location.port(), location.path()), (Some(24727), "/eID-Client"), "to the local AusweisApp2");
        let tc_token_url = location.query_pairs().find(|(k, _)| k == "tcTokenURL").unwrap().1.into_owned();
        let races = app.insertion_races();
        let outcome = client.authenticate(&tc_token_url, true, &mut SimulatorCitizen::default()).await.unwrap();
        if app.insertion_races() > races {
            eprintln!("AusweisApp2 lost its card-insertion race; a fresh app runs it again");
            app.restart().await.unwrap();
            *client = app.sdk().await.unwrap();
            continue;
        }
        assert!(outcome.result.is_ok(), "AusweisApp2 reports success: {outcome:?}");
        let refresh = outcome.url.expect("the refresh address");
        assert!(refresh.starts_with(&format!("{issuer}/eid/ergebnis?ref=")), "our refresh address: {refresh}");
        // In SDK mode the app names the address; sending the browser there with the result
        // appended is what it does itself when a browser started it (TR-03124-1 2.5).
        let result = "ResultMajor=http://www.bsi.bund.de/ecard/api/1.1/resultmajor%23ok";
        let response = browser.get(format!("{refresh}&{result}")).send().await.unwrap();
        let url = response.url().to_string();
        return (url, response.text().await.unwrap());
    }
    panic!("AusweisApp2 lost its card-insertion race eight times in a row");
}

/// A browser with cookies that stops at the local AusweisApp2 address and at a client's callback.
fn app_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if matches!(attempt.url().port(), Some(24727 | 3000)) { attempt.stop() } else { attempt.follow() }
        }))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_citizen_registers_and_logs_in_with_the_simulator_card_through_the_real_app_and_our_test_eid_server() {
    const TEST: &str = "ausweisapp::a_citizen_registers_and_logs_in_with_the_simulator_card_through_the_real_app_and_our_test_eid_server";
    let Some(mut app) = AusweisApp2::start().await else {
        return skip(TEST, "AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let smtp = SmtpSink::start().await;
    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| {
        c.mail.smtp_url = Some(smtp.url.as_str().into());
        c.eid.test.service = server::EidService::TestServer;
        c.eid.test.test_server_listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let issuer = format!("{}/test", server.base_url);
    let mut client = app.sdk().await.expect("AusweisApp2 answers");

    // Register with the card: the app read ERIKA MUSTERMANN's data from the Simulator card.
    let erika = app_browser();
    let (url, step1) = through_the_app(&erika, &mut app, &mut client, &issuer, "registrieren").await;
    assert!(url.ends_with("/registrierung/ausweis"), "{url}: {step1}");
    assert!(!step1.contains("Test-eID-Dienst"), "no test service page: the real app read a card");
    for shown in ["ERIKA", "MUSTERMANN", "GABLER", "12.08.1964", "BERLIN", "KÖLN", "51147"] {
        assert!(step1.contains(shown), "{shown} from the card: {step1}");
    }
    let token = csrf(&step1);
    let form = [("csrf", token.as_str()), ("email", "erika.karte@example.de"), ("username", "erika.karte")];
    let (status, url, step2) = post(&erika, &format!("{issuer}/registrierung/ausweis"), &form).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{step2}");
    assert!(url.ends_with("/registrierung/passwort"), "{url}");
    let token = csrf(&step2);
    let password = [
        ("csrf", token.as_str()),
        ("password", PASSWORD),
        ("password_confirmation", PASSWORD),
        ("privacy", "accepted"),
    ];
    let (_, url, review) = post(&erika, &format!("{issuer}/registrierung/passwort"), &password).await;
    assert!(url.ends_with("/registrierung/pruefen"), "{url}");
    let (status, _, saved) =
        post(&erika, &format!("{issuer}/registrierung/pruefen"), &[("csrf", &csrf(&review))]).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{saved}");
    let (status, _) = page(&erika, &smtp.mail_to("erika.karte@example.de", 0).await.link()).await;
    assert_eq!(status, reqwest::StatusCode::OK, "activated");

    // Log in with the card in a fresh browser: the card's pseudonym is stable, so the same
    // account opens, at level hoch.
    let citizen = app_browser();
    let (url, konto) = through_the_app(&citizen, &mut app, &mut client, &issuer, "anmelden").await;
    assert!(url.ends_with("/konto"), "{url}");
    assert!(konto.contains("erika.karte") && konto.contains("hoch"), "{konto}");

    // An OIDC request for "hoch" with that session: acr hoch, amr eid.
    first_party_client(&server, "eid-portal", "eid-portal-secret-0123", CALLBACK, |_| {}).await;
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let response = citizen.get(eid_portal_authorize(&issuer, &challenge, "hoch", "")).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned();
    let tokens = redeem(&issuer, ("eid-portal", "eid-portal-secret-0123"), &code, verifier.secret()).await;
    let claims = id_token_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], "hoch");
    assert_eq!(claims["amr"], serde_json::json!(["eid"]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_ausweisapp2_fetches_our_tc_token_and_reports_the_result() {
    let Some(app) = AusweisApp2::start().await else {
        return skip(TEST, "AusweisApp2 is not installed (apt-get install ausweisapp2)");
    };
    let config = SdkConfig {
        url: app.url(),
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

    let outcome = client.authenticate(&tc_token_url, true, &mut DecliningCitizen).await.unwrap();
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
