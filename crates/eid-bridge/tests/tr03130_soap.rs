//! The TR-03130 client against a local SOAP endpoint: every request is recorded and checked
//! field by field; the answers follow the TR-03130 schema, including error results and faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests: a failed step is the test failing")]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use eid_bridge::{Attribute, EidServer, EidServerError, Tr03130Client, Tr03130Config, UseIdRequest};
use poem::{
    EndpointExt, Response, Route, Server, handler,
    http::{HeaderMap, StatusCode},
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::Data,
};

#[derive(Default)]
struct Recorded {
    requests: Mutex<Vec<(String, String)>>,
    answers: Mutex<Vec<(StatusCode, String)>>,
}

#[handler]
fn endpoint(headers: &HeaderMap, body: String, recorded: Data<&Arc<Recorded>>) -> Response {
    let action = headers.get("SOAPAction").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    recorded.requests.lock().unwrap().push((action, body));
    let (status, answer) = recorded.answers.lock().unwrap().remove(0);
    Response::builder().status(status).content_type("text/xml; charset=utf-8").body(answer)
}

fn recorder(answers: Vec<(StatusCode, &str)>) -> Arc<Recorded> {
    let recorded = Arc::new(Recorded::default());
    *recorded.answers.lock().unwrap() = answers.into_iter().map(|(s, a)| (s, a.to_owned())).collect();
    recorded
}

async fn soap_endpoint(answers: Vec<(StatusCode, &str)>) -> (String, Arc<Recorded>) {
    let recorded = recorder(answers);
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let app = Route::new().at("/eid", post(endpoint)).data(recorded.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (format!("http://127.0.0.1:{port}/eid"), recorded)
}

/// A test PKI: a CA, the eID-Server's TLS certificate for 127.0.0.1 and our client certificate,
/// all PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_identity: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    server_params.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client =
        CertificateParams::new(vec!["servicekonto".to_owned()]).unwrap().signed_by(&client_key, &ca, &ca_key).unwrap();
    Pki {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_identity: format!("{}{}", client.pem(), client_key.serialize_pem()),
    }
}

/// The SOAP endpoint behind TLS that demands a client certificate from the test CA.
async fn tls_soap_endpoint(pki: &Pki, answers: Vec<(StatusCode, &str)>) -> (String, Arc<Recorded>) {
    use poem::listener::{RustlsCertificate, RustlsConfig};
    let recorded = recorder(answers);
    let tls = RustlsConfig::new()
        .fallback(RustlsCertificate::new().cert(pki.server_cert.clone()).key(pki.server_key.clone()))
        .client_auth_required(pki.ca.clone());
    let acceptor = TcpListener::bind("127.0.0.1:0").rustls(tls).into_acceptor().await.unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let app = Route::new().at("/eid", post(endpoint)).data(recorded.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    (format!("https://127.0.0.1:{port}/eid"), recorded)
}

fn client(url: String) -> Tr03130Client {
    Tr03130Client::new(&Tr03130Config {
        url,
        client_identity_pem: None,
        trust_anchors_pem: vec![],
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

const USE_ID_RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
<eid:useIDResponse xmlns:eid="http://bsi.bund.de/eID/" xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">
  <eid:Session><eid:ID>5f1c0a7b</eid:ID></eid:Session>
  <eid:eCardServerAddress>https://eid.example:443/paos</eid:eCardServerAddress>
  <eid:PSK><eid:ID>5f1c0a7b</eid:ID><eid:Key>a1b2c3d4</eid:Key></eid:PSK>
  <dss:Result><dss:ResultMajor>http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok</dss:ResultMajor></dss:Result>
</eid:useIDResponse></soap:Body></soap:Envelope>"#;

const GET_RESULT_RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
<eid:getResultResponse xmlns:eid="http://bsi.bund.de/eID/" xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">
  <eid:PersonalData>
    <eid:DocumentType>ID</eid:DocumentType><eid:IssuingState>D</eid:IssuingState>
    <eid:GivenNames>ERIKA</eid:GivenNames><eid:FamilyNames>MUSTERMANN</eid:FamilyNames>
    <eid:DateOfBirth><eid:DateString>19640812</eid:DateString><eid:DateValue>1964-08-12</eid:DateValue></eid:DateOfBirth>
    <eid:PlaceOfBirth><eid:FreetextPlace>BERLIN</eid:FreetextPlace></eid:PlaceOfBirth>
    <eid:Nationality>D</eid:Nationality><eid:BirthName>GABLER</eid:BirthName>
    <eid:PlaceOfResidence><eid:StructuredPlace><eid:Street>HEIDESTRASSE 17</eid:Street><eid:City>KÖLN</eid:City>
      <eid:Country>D</eid:Country><eid:ZipCode>51147</eid:ZipCode></eid:StructuredPlace></eid:PlaceOfResidence>
    <eid:RestrictedID><eid:ID>9F86D081884C7D65</eid:ID></eid:RestrictedID>
  </eid:PersonalData>
  <eid:OperationsAllowedByUser><eid:GivenNames>ALLOWED</eid:GivenNames></eid:OperationsAllowedByUser>
  <dss:Result><dss:ResultMajor>http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok</dss:ResultMajor></dss:Result>
</eid:getResultResponse></soap:Body></soap:Envelope>"#;

const GET_RESULT_CANCELLED: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
<eid:getResultResponse xmlns:eid="http://bsi.bund.de/eID/" xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">
  <dss:Result><dss:ResultMajor>http://www.bsi.bund.de/ecard/api/1.1/resultmajor#error</dss:ResultMajor>
  <dss:ResultMinor>http://www.bsi.bund.de/ecard/api/1.1/resultminor/sal#cancellationByUser</dss:ResultMinor>
  <dss:ResultMessage xml:lang="de">Abbruch durch den Benutzer</dss:ResultMessage></dss:Result>
</eid:getResultResponse></soap:Body></soap:Envelope>"#;

const FAULT: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>
  <faultcode>soap:Server</faultcode><faultstring>client certificate not accepted</faultstring></soap:Fault></soap:Body></soap:Envelope>"#;

/// The text of the first element named `name` in `xml`.
fn field(xml: &str, name: &str) -> Option<String> {
    let document = roxmltree::Document::parse(xml).unwrap();
    document.descendants().find(|n| n.tag_name().name() == name).and_then(|n| n.text()).map(str::to_owned)
}

#[tokio::test]
async fn use_id_and_get_result_speak_tr03130() {
    let (url, recorded) =
        soap_endpoint(vec![(StatusCode::OK, USE_ID_RESPONSE), (StatusCode::OK, GET_RESULT_RESPONSE)]).await;
    let client = client(url);
    let session = client
        .use_id(&UseIdRequest {
            required: vec![
                Attribute::RestrictedId,
                Attribute::GivenNames,
                Attribute::FamilyNames,
                Attribute::DateOfBirth,
            ],
            allowed: vec![Attribute::BirthName, Attribute::PlaceOfResidence],
            transaction_info: Some("Anmeldung am Servicekonto".into()),
        })
        .await
        .unwrap();
    assert_eq!(session.session_id, "5f1c0a7b");
    assert_eq!(session.server_address, "https://eid.example:443/paos");
    assert_eq!(session.psk.as_ref().map(|p| p.key.as_str()), Some("a1b2c3d4"));

    let data = client.get_result(&session.session_id).await.unwrap();
    assert_eq!(data.restricted_id, "9f86d081884c7d65");
    assert_eq!(data.given_names.as_deref(), Some("ERIKA"));
    assert_eq!(data.birth_name.as_deref(), Some("GABLER"));
    assert_eq!(data.date_of_birth.as_deref(), Some("1964-08-12"));
    assert_eq!(data.place_of_residence.unwrap().zip_code.as_deref(), Some("51147"));
    assert_eq!(data.nationality.as_deref(), Some("D"));

    let requests = recorded.requests.lock().unwrap().clone();
    let (action, use_id) = &requests[0];
    assert_eq!(action, "\"http://bsi.bund.de/eID/useID\"");
    let document = roxmltree::Document::parse(use_id).unwrap();
    let body = document.descendants().find(|n| n.tag_name().name() == "useIDRequest").unwrap();
    assert_eq!(body.tag_name().namespace(), Some("http://bsi.bund.de/eID/"));
    for (name, mode) in [
        ("DocumentType", "PROHIBITED"),
        ("IssuingState", "PROHIBITED"),
        ("GivenNames", "REQUIRED"),
        ("FamilyNames", "REQUIRED"),
        ("DateOfBirth", "REQUIRED"),
        ("PlaceOfBirth", "PROHIBITED"),
        ("Nationality", "PROHIBITED"),
        ("BirthName", "ALLOWED"),
        ("PlaceOfResidence", "ALLOWED"),
        ("RestrictedID", "REQUIRED"),
    ] {
        assert_eq!(field(use_id, name).as_deref(), Some(mode), "{name}");
    }
    assert_eq!(field(use_id, "TransactionInfo").as_deref(), Some("Anmeldung am Servicekonto"));
    assert_eq!(field(use_id, "LevelOfAssuranceRequest").as_deref(), Some("http://bsi.bund.de/eID/LoA/hoch"));

    let (action, get_result) = &requests[1];
    assert_eq!(action, "\"http://bsi.bund.de/eID/getResult\"");
    assert_eq!(field(get_result, "ID").as_deref(), Some("5f1c0a7b"));
    assert_eq!(field(get_result, "RequestCounter").as_deref(), Some("1"));
}

#[tokio::test]
async fn error_results_faults_and_a_dead_server_are_told_apart() {
    let (url, _) = soap_endpoint(vec![
        (StatusCode::OK, GET_RESULT_CANCELLED),
        (StatusCode::INTERNAL_SERVER_ERROR, FAULT),
        (StatusCode::OK, "<html>proxy error</html>"),
    ])
    .await;
    let client = client(url);
    match client.get_result("5f1c0a7b").await {
        Err(EidServerError::Failed { minor, message }) => {
            assert!(minor.ends_with("#cancellationByUser"));
            assert_eq!(message.as_deref(), Some("Abbruch durch den Benutzer"));
        }
        other => panic!("expected a failed result, got {other:?}"),
    }
    match client.get_result("5f1c0a7b").await {
        Err(EidServerError::Unavailable(message)) => assert!(message.contains("client certificate not accepted")),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(matches!(client.get_result("5f1c0a7b").await, Err(EidServerError::Malformed(_))));

    // The discard port: nobody listens there (a port released after `bind(0)` may be bound
    // again by another test of this binary before the client dials it).
    let dead = self::client("http://127.0.0.1:9/eid".to_owned());
    assert!(matches!(dead.get_result("x").await, Err(EidServerError::Unavailable(_))));
}

#[tokio::test]
async fn the_eid_server_is_reached_over_tls_with_our_client_certificate_and_its_trust_anchor_only() {
    let pki = pki();
    let config = |url: &str, identity: Option<&str>, anchors: Vec<&str>| Tr03130Config {
        url: url.to_owned(),
        client_identity_pem: identity.map(|i| i.as_bytes().to_vec()),
        trust_anchors_pem: anchors.into_iter().map(|a| a.as_bytes().to_vec()).collect(),
        timeout: Duration::from_secs(5),
    };
    let (url, recorded) = tls_soap_endpoint(&pki, vec![(StatusCode::OK, USE_ID_RESPONSE)]).await;
    let request = UseIdRequest { required: vec![Attribute::RestrictedId], allowed: vec![], transaction_info: None };

    let client = Tr03130Client::new(&config(&url, Some(&pki.client_identity), vec![&pki.ca])).unwrap();
    assert_eq!(client.use_id(&request).await.unwrap().session_id, "5f1c0a7b");
    assert_eq!(recorded.requests.lock().unwrap().len(), 1);

    let without_certificate = Tr03130Client::new(&config(&url, None, vec![&pki.ca])).unwrap();
    assert!(matches!(without_certificate.use_id(&request).await, Err(EidServerError::Unavailable(_))));
    let without_anchor = Tr03130Client::new(&config(&url, Some(&pki.client_identity), vec![])).unwrap();
    assert!(matches!(without_anchor.use_id(&request).await, Err(EidServerError::Unavailable(_))), "not a public CA");
    assert_eq!(recorded.requests.lock().unwrap().len(), 1, "refused before any request");
    assert!(
        Tr03130Client::new(&config(&url, Some("not a pem"), vec![])).is_err(),
        "an unreadable identity fails at start"
    );
}
