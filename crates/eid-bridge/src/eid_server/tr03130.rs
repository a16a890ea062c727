//! The BSI TR-03130 eID-Interface (SOAP 1.1, namespace `http://bsi.bund.de/eID/`): `useID`
//! starts a session, `getResult` fetches the personal data. Answers are read by local element
//! names, so namespace prefixes chosen by the server do not matter.

use std::time::Duration;

use async_trait::async_trait;
use roxmltree::{Document, Node};

use crate::xml_escape as escape;

use super::{Attribute, EidPersonalData, EidServer, EidServerError, EidServerSession, Place, Psk, UseIdRequest};

/// An eID-Server's answers are a few KiB; a megabyte is plenty.
const MAX_ANSWER: usize = 1024 * 1024;

/// Parses an eID-Server's answer within size and nesting bounds: behind mutual TLS it is still
/// input, and roxmltree's recursion would overflow the stack on a deeply nested one.
fn parse(xml: &str) -> Result<roxmltree::Document<'_>, EidServerError> {
    bounded_xml::parse(xml, MAX_ANSWER).map_err(|e| EidServerError::Malformed(e.to_string()))
}

const EID_NS: &str = "http://bsi.bund.de/eID/";
const RESULT_OK: &str = "http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok";
/// TR-03130: the result is not there yet; ask again later.
const MINOR_NO_RESULT_YET: &str = "http://www.bsi.bund.de/eid/server/2.0/resultminor/getResult#noResultYet";
const MINOR_INVALID_SESSION: &str = "http://www.bsi.bund.de/eid/server/2.0/resultminor/getResult#invalidSession";

/// Where the eID-Server is and how to trust each other.
#[derive(Debug, Clone)]
pub struct Tr03130Config {
    /// The eID-Interface endpoint.
    pub url: String,
    /// Our client certificate and key, PEM (the eID-Server authenticates us by it).
    pub client_identity_pem: Option<Vec<u8>>,
    /// CA certificates that may sign the eID-Server's TLS certificate, PEM; empty means the
    /// system's roots.
    pub trust_anchors_pem: Vec<Vec<u8>>,
    /// Per request.
    pub timeout: Duration,
}

/// A TR-03130 eID-Interface client.
pub struct Tr03130Client {
    url: String,
    http: reqwest::Client,
}

impl Tr03130Client {
    /// A client for `config`; fails on an unreadable certificate or key.
    pub fn new(config: &Tr03130Config) -> Result<Self, EidServerError> {
        let mut builder = reqwest::Client::builder().timeout(config.timeout).use_rustls_tls();
        if let Some(pem) = &config.client_identity_pem {
            let identity = reqwest::Identity::from_pem(pem)
                .map_err(|e| EidServerError::Unavailable(format!("client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        if !config.trust_anchors_pem.is_empty() {
            builder = builder.tls_built_in_root_certs(false);
            for pem in &config.trust_anchors_pem {
                let anchor = reqwest::Certificate::from_pem(pem)
                    .map_err(|e| EidServerError::Unavailable(format!("trust anchor: {e}")))?;
                builder = builder.add_root_certificate(anchor);
            }
        }
        let http = builder.build().map_err(|e| EidServerError::Unavailable(e.to_string()))?;
        Ok(Self { url: config.url.clone(), http })
    }

    async fn call(&self, action: &str, body: String) -> Result<String, EidServerError> {
        let envelope = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:eid="{EID_NS}"><soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
        );
        let response = self
            .http
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{EID_NS}{action}\""))
            .body(envelope)
            .send()
            .await
            .map_err(|e| EidServerError::Unavailable(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| EidServerError::Unavailable(e.to_string()))?;
        if !status.is_success() {
            let fault = parse(&text).ok().and_then(|d| text_of(d.root(), "faultstring"));
            return Err(EidServerError::Unavailable(format!("HTTP {status}: {}", fault.unwrap_or_default())));
        }
        Ok(text)
    }
}

/// The `useIDRequest` body for `request`.
pub(crate) fn use_id_body(request: &UseIdRequest) -> String {
    let mut operations = String::new();
    for attribute in Attribute::ALL {
        let mode = if request.required.contains(&attribute) {
            "REQUIRED"
        } else if request.allowed.contains(&attribute) {
            "ALLOWED"
        } else {
            "PROHIBITED"
        };
        let name = attribute.element();
        operations.push_str(&format!("<eid:{name}>{mode}</eid:{name}>"));
    }
    let info = request
        .transaction_info
        .as_deref()
        .map(|t| format!("<eid:TransactionInfo>{}</eid:TransactionInfo>", escape(t)))
        .unwrap_or_default();
    format!(
        "<eid:useIDRequest><eid:UseOperations>{operations}</eid:UseOperations>{info}<eid:LevelOfAssuranceRequest>http://bsi.bund.de/eID/LoA/hoch</eid:LevelOfAssuranceRequest></eid:useIDRequest>"
    )
}

/// The `getResultRequest` body.
pub(crate) fn get_result_body(session_id: &str) -> String {
    format!(
        "<eid:getResultRequest><eid:Session><eid:ID>{}</eid:ID></eid:Session><eid:RequestCounter>1</eid:RequestCounter></eid:getResultRequest>",
        escape(session_id)
    )
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name)
}

fn descendant<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.descendants().find(|n| n.is_element() && n.tag_name().name() == name)
}

fn text_of(node: Node<'_, '_>, name: &str) -> Option<String> {
    descendant(node, name).and_then(|n| n.text()).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn child_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).and_then(|n| n.text()).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The `dss:Result` of a response: `Ok(())` for ResultMajor ok, else the minor code.
fn check_result(response: Node<'_, '_>) -> Result<(), EidServerError> {
    let result = child(response, "Result").ok_or_else(|| EidServerError::Malformed("no Result".into()))?;
    let major = child_text(result, "ResultMajor").ok_or_else(|| EidServerError::Malformed("no ResultMajor".into()))?;
    if major == RESULT_OK {
        return Ok(());
    }
    let minor = child_text(result, "ResultMinor").unwrap_or_default();
    if minor == MINOR_NO_RESULT_YET || minor == MINOR_INVALID_SESSION {
        return Err(EidServerError::NoResult);
    }
    Err(EidServerError::Failed { minor, message: text_of(result, "ResultMessage") })
}

fn body_element<'a, 'i>(document: &'a Document<'i>, name: &str) -> Result<Node<'a, 'i>, EidServerError> {
    if let Some(fault) = descendant(document.root(), "Fault") {
        return Err(EidServerError::Unavailable(text_of(fault, "faultstring").unwrap_or_else(|| "SOAP fault".into())));
    }
    descendant(document.root(), name).ok_or_else(|| EidServerError::Malformed(format!("no {name}")))
}

pub(crate) fn parse_use_id_response(xml: &str) -> Result<EidServerSession, EidServerError> {
    let document = parse(xml)?;
    let response = body_element(&document, "useIDResponse")?;
    check_result(response)?;
    let session_id = child(response, "Session")
        .and_then(|s| child_text(s, "ID"))
        .ok_or_else(|| EidServerError::Malformed("no Session/ID".into()))?;
    let server_address = child_text(response, "eCardServerAddress").unwrap_or_default();
    let psk = child(response, "PSK").and_then(|p| Some(Psk { id: child_text(p, "ID")?, key: child_text(p, "Key")? }));
    Ok(EidServerSession { session_id, server_address, psk })
}

fn place(node: Node<'_, '_>) -> Place {
    match child(node, "StructuredPlace") {
        Some(s) => Place {
            street: child_text(s, "Street"),
            city: child_text(s, "City"),
            zip_code: child_text(s, "ZipCode"),
            country: child_text(s, "Country"),
            freetext: None,
        },
        None => Place {
            freetext: text_of(node, "FreetextPlace").or_else(|| text_of(node, "NoPlaceInfo")),
            ..Place::default()
        },
    }
}

/// `YYYYMMDD` (zeros for unknown parts) or an `xs:date` as `YYYY-MM-DD`.
fn date(node: Node<'_, '_>) -> Option<String> {
    if let Some(value) = child_text(node, "DateValue") {
        return Some(value.chars().take(10).collect());
    }
    let raw = child_text(node, "DateString")?;
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    (digits.len() == 8).then(|| format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..]))
}

pub(crate) fn parse_get_result_response(xml: &str) -> Result<EidPersonalData, EidServerError> {
    let document = parse(xml)?;
    let response = body_element(&document, "getResultResponse")?;
    check_result(response)?;
    let data = child(response, "PersonalData").ok_or_else(|| EidServerError::Malformed("no PersonalData".into()))?;
    let restricted_id = child(data, "RestrictedID")
        .and_then(|r| child_text(r, "ID"))
        .ok_or_else(|| EidServerError::Malformed("no RestrictedID".into()))?;
    Ok(EidPersonalData {
        restricted_id: restricted_id.to_ascii_lowercase(),
        given_names: child_text(data, "GivenNames"),
        family_names: child_text(data, "FamilyNames"),
        birth_name: child_text(data, "BirthName"),
        date_of_birth: child(data, "DateOfBirth").and_then(date),
        place_of_birth: child(data, "PlaceOfBirth").map(place),
        place_of_residence: child(data, "PlaceOfResidence").map(place),
        nationality: child_text(data, "Nationality"),
        document_type: child_text(data, "DocumentType"),
        issuing_state: child_text(data, "IssuingState"),
    })
}

#[async_trait]
impl EidServer for Tr03130Client {
    fn is_test_service(&self) -> bool {
        false
    }

    async fn use_id(&self, request: &UseIdRequest) -> Result<EidServerSession, EidServerError> {
        parse_use_id_response(&self.call("useID", use_id_body(request)).await?)
    }

    async fn get_result(&self, session_id: &str) -> Result<EidPersonalData, EidServerError> {
        parse_get_result_response(&self.call("getResult", get_result_body(session_id)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_id_asks_every_attribute_in_schema_order() {
        let body = use_id_body(&UseIdRequest {
            required: vec![Attribute::RestrictedId, Attribute::FamilyNames],
            allowed: vec![Attribute::BirthName],
            transaction_info: Some("Anmeldung <Servicekonto> & mehr".into()),
        });
        let wrapped = format!(r#"<r xmlns:eid="{EID_NS}">{body}</r>"#);
        let document = Document::parse(&wrapped).unwrap();
        let operations = descendant(document.root(), "UseOperations").unwrap();
        let got: Vec<(String, String)> = operations
            .children()
            .filter(|n| n.is_element())
            .map(|n| (n.tag_name().name().to_owned(), n.text().unwrap_or_default().to_owned()))
            .collect();
        let expected: Vec<(String, String)> = Attribute::ALL
            .iter()
            .map(|a| {
                let mode = match a {
                    Attribute::RestrictedId | Attribute::FamilyNames => "REQUIRED",
                    Attribute::BirthName => "ALLOWED",
                    _ => "PROHIBITED",
                };
                (a.element().to_owned(), mode.to_owned())
            })
            .collect();
        assert_eq!(got, expected);
        assert_eq!(text_of(document.root(), "TransactionInfo").as_deref(), Some("Anmeldung <Servicekonto> & mehr"));
    }

    #[test]
    fn get_result_reads_structured_and_free_places_and_partial_dates() {
        let xml = r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>
          <ns2:getResultResponse xmlns:ns2="http://bsi.bund.de/eID/" xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">
            <ns2:PersonalData>
              <ns2:DocumentType>ID</ns2:DocumentType><ns2:IssuingState>D</ns2:IssuingState>
              <ns2:GivenNames>ERIKA</ns2:GivenNames><ns2:FamilyNames>MUSTERMANN</ns2:FamilyNames>
              <ns2:DateOfBirth><ns2:DateString>19640800</ns2:DateString></ns2:DateOfBirth>
              <ns2:PlaceOfBirth><ns2:FreetextPlace>BERLIN</ns2:FreetextPlace></ns2:PlaceOfBirth>
              <ns2:Nationality>D</ns2:Nationality><ns2:BirthName>GABLER</ns2:BirthName>
              <ns2:PlaceOfResidence><ns2:StructuredPlace><ns2:Street>HEIDESTRASSE 17</ns2:Street><ns2:City>KÖLN</ns2:City>
                <ns2:Country>D</ns2:Country><ns2:ZipCode>51147</ns2:ZipCode></ns2:StructuredPlace></ns2:PlaceOfResidence>
              <ns2:RestrictedID><ns2:ID>0A1B2C</ns2:ID></ns2:RestrictedID>
            </ns2:PersonalData>
            <dss:Result><dss:ResultMajor>http://www.bsi.bund.de/ecard/api/1.1/resultmajor#ok</dss:ResultMajor></dss:Result>
          </ns2:getResultResponse></S:Body></S:Envelope>"#;
        let data = parse_get_result_response(xml).unwrap();
        assert_eq!(data.restricted_id, "0a1b2c");
        assert_eq!(data.date_of_birth.as_deref(), Some("1964-08-00"));
        assert_eq!(data.place_of_birth.unwrap().freetext.as_deref(), Some("BERLIN"));
        let home = data.place_of_residence.unwrap();
        assert_eq!(
            (home.street.as_deref(), home.zip_code.as_deref(), home.city.as_deref()),
            (Some("HEIDESTRASSE 17"), Some("51147"), Some("KÖLN"))
        );
    }

    #[test]
    fn a_deeply_nested_answer_is_malformed_not_a_stack_overflow() {
        let levels = 20_000;
        let xml = format!("{}{}", "<a>".repeat(levels), "</a>".repeat(levels));
        let verdict = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || matches!(parse_get_result_response(&xml), Err(EidServerError::Malformed(_))))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(verdict);
    }

    #[test]
    fn errors_are_told_apart() {
        let result = |minor: &str| {
            format!(
                r#"<Envelope><Body><getResultResponse><Result><ResultMajor>http://www.bsi.bund.de/ecard/api/1.1/resultmajor#error</ResultMajor><ResultMinor>{minor}</ResultMinor><ResultMessage>Abbruch</ResultMessage></Result></getResultResponse></Body></Envelope>"#
            )
        };
        assert!(matches!(parse_get_result_response(&result(MINOR_NO_RESULT_YET)), Err(EidServerError::NoResult)));
        assert!(matches!(
            parse_get_result_response(&result(super::super::MINOR_CANCELLED)),
            Err(EidServerError::Failed { message: Some(m), .. }) if m == "Abbruch"
        ));
        assert!(matches!(parse_get_result_response("not xml"), Err(EidServerError::Malformed(_))));
        assert!(matches!(
            parse_get_result_response("<Envelope><Body><Fault><faultstring>boom</faultstring></Fault></Body></Envelope>"),
            Err(EidServerError::Unavailable(m)) if m == "boom"
        ));
        assert!(matches!(parse_use_id_response("<Envelope><Body/></Envelope>"), Err(EidServerError::Malformed(_))));
    }
}

#[cfg(test)]
mod untrusted_input {
    use proptest::prelude::*;

    /// SOAP-shaped answers with the element names an eID-Server uses, nested arbitrarily.
    fn soap_like() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("Envelope".to_owned()),
            Just("Body".to_owned()),
            Just("useIDResponse".to_owned()),
            Just("getResultResponse".to_owned()),
            Just("Result".to_owned()),
            Just("ResultMajor".to_owned()),
            Just("ResultMinor".to_owned()),
            Just("Session".to_owned()),
            Just("ID".to_owned()),
            Just("PSK".to_owned()),
            Just("PersonalData".to_owned()),
            Just("GivenNames".to_owned()),
            Just("DateOfBirth".to_owned()),
            Just("RestrictedID".to_owned()),
            Just("Fault".to_owned()),
            Just("x".to_owned()),
            "[a-z]{1,6}",
        ];
        let leaf = (name.clone(), ".{0,20}").prop_map(|(n, text)| {
            let escaped = text.replace('&', "&amp;").replace('<', "&lt;");
            format!("<{n}>{escaped}</{n}>")
        });
        leaf.prop_recursive(4, 40, 5, move |inner| {
            (name.clone(), proptest::collection::vec(inner, 0..5))
                .prop_map(|(n, children)| format!("<{n}>{}</{n}>", children.concat()))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the eID-Server answers is a session, personal data or an error, never a
        /// panic.
        #[test]
        fn soap_answers_never_panic(xml in prop_oneof![".{0,400}", soap_like()]) {
            let _ = super::parse_use_id_response(&xml);
            let _ = super::parse_get_result_response(&xml);
        }
    }
}
