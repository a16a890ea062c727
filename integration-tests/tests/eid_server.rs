//! The production eID path end to end with a TR-03130 eID-Server: a local one behind mutual TLS
//! (our client certificate, its own CA as the configured trust anchor) answers useID and
//! getResult; the browser is sent to the local AusweisApp2 address with our TC token URL; the
//! TC token names the eID-Server's address, session and PSK; the refresh address fetches the
//! card's data from the eID-Server and registration continues with them.

use std::sync::{Arc, Mutex};

use poem::{
    EndpointExt, Response, Route, Server, handler,
    listener::{Acceptor, Listener, RustlsCertificate, RustlsConfig, TcpListener},
    post,
    web::Data,
};
use reqwest::StatusCode;

use crate::{
    citizen::{csrf, page},
    support::{Backends, TestServer},
};

const USE_ID: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>
<eid:useIDResponse xmlns:eid="http://bsi.bund.de/eID/" xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">
  <eid:Session><eid:ID>session-4711</eid:ID></eid:Session>
  <eid:eCardServerAddress>https://eid.example/paos</eid:eCardServerAddress>
  <eid:PSK><eid:ID>session-4711</eid:ID><eid:Key>0123456789abcdef0123456789abcdef</eid:Key></eid:PSK>
  <dss:Result><dss:ResultMajor>http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok</dss:ResultMajor></dss:Result>
</eid:useIDResponse></S:Body></S:Envelope>"#;

const GET_RESULT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>
<eid:getResultResponse xmlns:eid="http://bsi.bund.de/eID/" xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">
  <eid:PersonalData>
    <eid:DocumentType>AR</eid:DocumentType><eid:IssuingState>D</eid:IssuingState>
    <eid:GivenNames>ANNA</eid:GivenNames><eid:FamilyNames>BEISPIEL</eid:FamilyNames>
    <eid:DateOfBirth><eid:DateString>19900315</eid:DateString></eid:DateOfBirth>
    <eid:PlaceOfBirth><eid:FreetextPlace>WIEN</eid:FreetextPlace></eid:PlaceOfBirth>
    <eid:Nationality>AUT</eid:Nationality>
    <eid:PlaceOfResidence><eid:StructuredPlace><eid:Street>AM ABDINGHOF 11</eid:Street><eid:City>PADERBORN</eid:City>
      <eid:Country>D</eid:Country><eid:ZipCode>33098</eid:ZipCode></eid:StructuredPlace></eid:PlaceOfResidence>
    <eid:RestrictedID><eid:ID>AA11BB22CC33DD44</eid:ID></eid:RestrictedID>
  </eid:PersonalData>
  <dss:Result><dss:ResultMajor>http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok</dss:ResultMajor></dss:Result>
</eid:getResultResponse></S:Body></S:Envelope>"#;

#[handler]
fn eid_interface(body: String, seen: Data<&Arc<Mutex<Vec<String>>>>) -> Response {
    let answer = if body.contains("useIDRequest") { USE_ID } else { GET_RESULT };
    seen.lock().unwrap().push(body);
    Response::builder().content_type("text/xml; charset=utf-8").body(answer)
}

#[tokio::test]
async fn a_tr03130_eid_server_behind_mutual_tls_serves_registration_with_the_card() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    // The eID-Server's CA, its TLS certificate for 127.0.0.1, and our client certificate.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    server_params.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let server_cert = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert =
        CertificateParams::new(vec!["servicekonto".to_owned()]).unwrap().signed_by(&client_key, &ca, &ca_key).unwrap();
    let files = tempfile::tempdir().unwrap();
    let identity = files.path().join("eid-client.pem");
    std::fs::write(&identity, format!("{}{}", client_cert.pem(), client_key.serialize_pem())).unwrap();
    let anchor = files.path().join("eid-ca.pem");
    std::fs::write(&anchor, ca.pem()).unwrap();

    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let tls = RustlsConfig::new()
        .fallback(RustlsCertificate::new().cert(server_cert.pem()).key(server_key.serialize_pem()))
        .client_auth_required(ca.pem());
    let acceptor = TcpListener::bind("127.0.0.1:0").rustls(tls).into_acceptor().await.unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    tokio::spawn(
        Server::new_with_acceptor(acceptor).run(Route::new().at("/eID", post(eid_interface)).data(seen.clone())),
    );

    let backends = Backends::from_env().await;
    let server = TestServer::start(&backends, |c| {
        c.eid.test.service = server::EidService::Tr03130;
        c.eid.test.server_url = Some(format!("https://127.0.0.1:{port}/eID"));
        c.eid.test.client_identity_file = Some(identity.clone());
        c.eid.test.trust_anchor_files = vec![anchor.clone()];
    })
    .await;
    let issuer = format!("{}/test", server.base_url);

    // The browser is sent to the citizen's AusweisApp2 with our TC token URL.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().port() == Some(24727) { attempt.stop() } else { attempt.follow() }
        }))
        .build()
        .unwrap();
    let (status, start) = page(&browser, &format!("{issuer}/eid?zweck=registrieren&return_to=/konto")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!start.contains("Test-eID-Dienst"), "a real eID-Server: no test notice");
    let mut form =
        vec![("csrf", csrf(&start)), ("zweck", "registrieren".to_owned()), ("return_to", "/konto".to_owned())];
    form.extend(["app", "reader", "pin"].map(|c| (c, "ja".to_owned())));
    let response = browser.post(format!("{issuer}/eid")).form(&form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        (location.host_str(), location.port(), location.path()),
        (Some("127.0.0.1"), Some(24727), "/eID-Client")
    );
    let tc_token_url = location.query_pairs().find(|(k, _)| k == "tcTokenURL").unwrap().1.into_owned();
    assert!(tc_token_url.starts_with(&format!("{issuer}/eid/tc-token?ref=")), "{tc_token_url}");

    // AusweisApp2 fetches the TC token: the eID-Server's address, session and PSK from useID.
    let token = reqwest::get(&tc_token_url).await.unwrap().text().await.unwrap();
    let document = tc_token_field(&token);
    assert_eq!(document("ServerAddress"), "https://eid.example/paos");
    assert_eq!(document("SessionIdentifier"), "session-4711");
    assert_eq!(document("PSK"), "0123456789abcdef0123456789abcdef");
    let refresh = document("RefreshAddress");

    // After the card, AusweisApp2 sends the browser to the refresh address with the result.
    let response = browser
        .get(format!("{refresh}&ResultMajor=http://www.bsi.bund.de/ecard/api/1.1/resultmajor%23ok"))
        .send()
        .await
        .unwrap();
    let landed = response.url().to_string();
    let html = response.text().await.unwrap();
    assert!(landed.ends_with("/registrierung/ausweis"), "{landed}: {html}");
    for shown in ["ANNA", "BEISPIEL", "15.03.1990", "WIEN", "AM ABDINGHOF 11", "33098", "PADERBORN"] {
        assert!(html.contains(shown), "{shown} from the eID-Server: {html}");
    }

    // What the eID-Server was asked, over the mutual TLS channel.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "useID, then getResult once");
    assert!(seen[0].contains("<eid:RestrictedID>REQUIRED</eid:RestrictedID>"), "{}", seen[0]);
    assert!(seen[0].contains("<eid:FamilyNames>REQUIRED</eid:FamilyNames>"), "{}", seen[0]);
    assert!(seen[1].contains("<eid:ID>session-4711</eid:ID>"), "{}", seen[1]);
    server.stop().await;
}

/// The text of the first element called `name` in the TC token (flat XML, no attributes).
fn tc_token_field(xml: &str) -> impl Fn(&str) -> String + '_ {
    move |name: &str| {
        let open = format!("<{name}>");
        let start = xml.find(&open).map(|i| i + open.len()).unwrap_or_else(|| panic!("{name} in {xml}"));
        let end = xml[start..].find("</").unwrap() + start;
        xml[start..end].replace("&amp;", "&")
    }
}
