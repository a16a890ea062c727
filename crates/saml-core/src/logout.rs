//! Single Logout, SP-initiated, over the HTTP-Redirect binding (SAML Core §3.7, Bindings
//! §3.4): the SP's `samlp:LogoutRequest` read, our `samlp:LogoutResponse` written as a signed
//! redirect URL.

use std::io::Write as _;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    request::{MAX_SIZE, RequestError},
    response::instant,
    signature::{SignError, Signer},
    xml::Element,
};

const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";

/// What an SP asks to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    /// Its `ID`, echoed as `InResponseTo`.
    pub id: String,
    /// The SP's entity id.
    pub issuer: String,
    /// When the SP made it.
    pub issue_instant: OffsetDateTime,
    /// Where the SP sent it, if it says.
    pub destination: Option<String>,
    /// The NameID of the person.
    pub name_id: String,
    /// The sessions named (`SessionIndex`), possibly none.
    pub session_indexes: Vec<String>,
}

/// Reads a LogoutRequest (the XML, already decoded from its binding).
pub fn parse_logout_request(xml: &str) -> Result<LogoutRequest, RequestError> {
    let document = crate::xml::parse(xml, MAX_SIZE)?;
    let root = document.root_element();
    if !root.has_tag_name((PROTOCOL, "LogoutRequest")) {
        return Err(RequestError::Invalid("LogoutRequest"));
    }
    if root.attribute("Version") != Some("2.0") {
        return Err(RequestError::Invalid("Version (2.0)"));
    }
    let text = |namespace: &str, name: &str| {
        root.children()
            .find(|n| n.has_tag_name((namespace, name)))
            .and_then(|n| n.text())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    Ok(LogoutRequest {
        id: root
            .attribute("ID")
            .filter(|id| !id.is_empty() && id.len() <= 256)
            .ok_or(RequestError::Invalid("ID"))?
            .to_owned(),
        issuer: text(ASSERTION, "Issuer").ok_or(RequestError::Invalid("Issuer"))?,
        issue_instant: root
            .attribute("IssueInstant")
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .ok_or(RequestError::Invalid("IssueInstant"))?,
        destination: root.attribute("Destination").map(str::to_owned),
        name_id: text(ASSERTION, "NameID").ok_or(RequestError::Invalid("NameID"))?,
        session_indexes: root
            .children()
            .filter(|n| n.has_tag_name((PROTOCOL, "SessionIndex")))
            .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
            .collect(),
    })
}

/// Our answer to a LogoutRequest.
#[derive(Debug, Clone)]
pub struct LogoutResponse {
    /// Our entity id.
    pub issuer: String,
    /// A fresh NCName.
    pub id: String,
    /// The request's id.
    pub in_response_to: String,
    /// The SP's Single Logout address.
    pub destination: String,
    /// Now.
    pub issue_instant: OffsetDateTime,
    /// The session ended (`Success`), or the request was refused (`Requester`).
    pub success: bool,
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The URL that carries `response` to the SP (HTTP-Redirect binding, signed over the query).
pub fn logout_response_url(
    response: &LogoutResponse,
    relay_state: Option<&str>,
    signer: &dyn Signer,
) -> Result<String, SignError> {
    let status = if response.success { SUCCESS } else { REQUESTER };
    let xml = Element::new("samlp", "LogoutResponse")
        .attr("Destination", response.destination.clone())
        .attr("ID", response.id.clone())
        .attr("InResponseTo", response.in_response_to.clone())
        .attr("IssueInstant", instant(response.issue_instant))
        .attr("Version", "2.0")
        .child(Element::new("saml", "Issuer").text(response.issuer.clone()))
        .child(Element::new("samlp", "Status").child(Element::new("samlp", "StatusCode").attr("Value", status)))
        .canonical();
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(xml.as_bytes()).map_err(|e| SignError(e.to_string()))?;
    let deflated = encoder.finish().map_err(|e| SignError(e.to_string()))?;
    let mut query = format!("SAMLResponse={}", encode(&STANDARD.encode(deflated)));
    if let Some(relay_state) = relay_state {
        query.push_str(&format!("&RelayState={}", encode(relay_state)));
    }
    query.push_str(&format!("&SigAlg={}", encode(RSA_SHA256)));
    let signature = signer.sign_rsa_sha256(query.as_bytes())?;
    query.push_str(&format!("&Signature={}", encode(&STANDARD.encode(signature))));
    let separator = if response.destination.contains('?') { '&' } else { '?' };
    Ok(format!("{}{separator}{query}", response.destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="lo-1" Version="2.0" IssueInstant="2026-12-03T10:00:00Z" Destination="https://konto.example/saml/slo"><saml:Issuer>https://portal.example/sp</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">abc</saml:NameID><samlp:SessionIndex>s-1</samlp:SessionIndex></samlp:LogoutRequest>"#;

    #[test]
    fn a_logout_request_is_read_and_broken_ones_say_why() {
        let request = parse_logout_request(REQUEST).unwrap();
        assert_eq!(
            (request.id.as_str(), request.issuer.as_str(), request.name_id.as_str()),
            ("lo-1", "https://portal.example/sp", "abc")
        );
        assert_eq!(request.session_indexes, vec!["s-1".to_owned()]);
        assert_eq!(
            parse_logout_request(
                &REQUEST.replace("<saml:NameID", "<saml:Other").replace("</saml:NameID>", "</saml:Other>")
            ),
            Err(RequestError::Invalid("NameID"))
        );
        assert_eq!(parse_logout_request("<a/>"), Err(RequestError::Invalid("LogoutRequest")));
        assert_eq!(parse_logout_request(&format!("<!DOCTYPE x>{REQUEST}")), Err(RequestError::Dtd));
    }

    proptest::proptest! {
        #[test]
        fn nothing_panics_on_input(text in ".{0,400}") {
            let _ = parse_logout_request(&text);
        }
    }
}
