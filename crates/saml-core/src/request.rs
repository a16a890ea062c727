//! Reading an `samlp:AuthnRequest` as the HTTP-Redirect binding (base64 of raw DEFLATE in the
//! query) or the HTTP-POST binding (base64 in a form field) carries it. The XML is parsed with
//! roxmltree, which refuses DTDs (so no entity expansion and no external entities) and resolves
//! namespaces; elements are found by namespace and local name, never by prefix.

use std::io::Read as _;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// The largest request we inflate or parse.
pub(crate) const MAX_SIZE: usize = 64 * 1024;

/// Why a request cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not base64.
    #[error("not base64")]
    NotBase64,
    /// Not raw DEFLATE (HTTP-Redirect binding).
    #[error("not DEFLATE-compressed")]
    NotDeflate,
    /// Larger than 64 KiB (inflated).
    #[error("too large")]
    TooLarge,
    /// Carries a document type declaration (refused: entities are an attack surface).
    #[error("DTDs are not accepted")]
    Dtd,
    /// Not well-formed XML.
    #[error("not well-formed XML: {0}")]
    NotXml(String),
    /// The root is not a `samlp:AuthnRequest`.
    #[error("not an AuthnRequest")]
    NotAuthnRequest,
    /// A required part is missing or malformed.
    #[error("{0} is missing or malformed")]
    Invalid(&'static str),
}

impl From<crate::xml::Unreadable> for RequestError {
    fn from(value: crate::xml::Unreadable) -> Self {
        match value {
            crate::xml::Unreadable::TooLarge => RequestError::TooLarge,
            crate::xml::Unreadable::Dtd => RequestError::Dtd,
            crate::xml::Unreadable::NotXml(why) => RequestError::NotXml(why),
            crate::xml::Unreadable::TooDeep => RequestError::NotXml("nested too deep".to_owned()),
        }
    }
}

/// What an SP asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequest {
    /// Its `ID` (single use; echoed as `InResponseTo`).
    pub id: String,
    /// The SP's entity id (`saml:Issuer`).
    pub issuer: String,
    /// When the SP made it.
    pub issue_instant: OffsetDateTime,
    /// Where the SP sent it (our SSO URL), if it says.
    pub destination: Option<String>,
    /// Where the Response should go, if it says (it must be registered).
    pub assertion_consumer_service_url: Option<String>,
    /// Which registered ACS by index, if it says.
    pub assertion_consumer_service_index: Option<u16>,
    /// The binding asked for the Response.
    pub protocol_binding: Option<String>,
    /// `ForceAuthn`: authenticate again, like `prompt=login`.
    pub force_authn: bool,
    /// `IsPassive`: no interaction, like `prompt=none`.
    pub is_passive: bool,
    /// The NameID format asked for.
    pub name_id_format: Option<String>,
    /// `RequestedAuthnContext`: the comparison and the class references, in order.
    pub requested_authn_context: Option<RequestedAuthnContext>,
    /// The XML carries an enveloped `ds:Signature` (HTTP-POST); whether it verifies is the
    /// caller's business with the SP's certificate.
    pub signed: bool,
}

/// `samlp:RequestedAuthnContext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedAuthnContext {
    /// `exact` (the default), `minimum`, `maximum` or `better`.
    pub comparison: String,
    /// `saml:AuthnContextClassRef` values.
    pub class_refs: Vec<String>,
}

/// The XML of an HTTP-Redirect `SAMLRequest` parameter (already URL-decoded).
pub fn decode_redirect(parameter: &str) -> Result<String, RequestError> {
    let compressed = STANDARD.decode(parameter.trim()).map_err(|_| RequestError::NotBase64)?;
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(compressed.as_slice())
        .take(MAX_SIZE as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|_| RequestError::NotDeflate)?;
    if inflated.len() > MAX_SIZE {
        return Err(RequestError::TooLarge);
    }
    String::from_utf8(inflated).map_err(|e| RequestError::NotXml(e.to_string()))
}

/// The XML of an HTTP-POST `SAMLRequest` field.
pub fn decode_post(field: &str) -> Result<String, RequestError> {
    let cleaned: String = field.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = STANDARD.decode(cleaned).map_err(|_| RequestError::NotBase64)?;
    if bytes.len() > MAX_SIZE {
        return Err(RequestError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|e| RequestError::NotXml(e.to_string()))
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

fn boolean(value: Option<&str>) -> Result<bool, RequestError> {
    match value {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(RequestError::Invalid("a boolean attribute")),
    }
}

/// Reads an AuthnRequest.
pub fn parse_authn_request(xml: &str) -> Result<AuthnRequest, RequestError> {
    let document = crate::xml::parse(xml, MAX_SIZE)?;
    let root = document.root_element();
    if !root.has_tag_name((PROTOCOL, "AuthnRequest")) {
        return Err(RequestError::NotAuthnRequest);
    }
    if root.attribute("Version") != Some("2.0") {
        return Err(RequestError::Invalid("Version (2.0)"));
    }
    let id = root.attribute("ID").filter(|id| !id.is_empty() && id.len() <= 256).ok_or(RequestError::Invalid("ID"))?;
    let issue_instant =
        root.attribute("IssueInstant").and_then(parse_time).ok_or(RequestError::Invalid("IssueInstant"))?;
    let child = |namespace: &str, name: &str| root.children().find(|n| n.has_tag_name((namespace, name)));
    let issuer = child(ASSERTION, "Issuer")
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(RequestError::Invalid("Issuer"))?;
    let index = root
        .attribute("AssertionConsumerServiceIndex")
        .map(|i| i.parse::<u16>().map_err(|_| RequestError::Invalid("AssertionConsumerServiceIndex")))
        .transpose()?;
    let requested_authn_context = child(PROTOCOL, "RequestedAuthnContext").map(|context| RequestedAuthnContext {
        comparison: context.attribute("Comparison").unwrap_or("exact").to_owned(),
        class_refs: context
            .children()
            .filter(|n| n.has_tag_name((ASSERTION, "AuthnContextClassRef")))
            .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
            .collect(),
    });
    if let Some(context) = &requested_authn_context
        && !["exact", "minimum", "maximum", "better"].contains(&context.comparison.as_str())
    {
        return Err(RequestError::Invalid("RequestedAuthnContext Comparison"));
    }
    Ok(AuthnRequest {
        id: id.to_owned(),
        issuer: issuer.to_owned(),
        issue_instant,
        destination: root.attribute("Destination").map(str::to_owned),
        assertion_consumer_service_url: root.attribute("AssertionConsumerServiceURL").map(str::to_owned),
        assertion_consumer_service_index: index,
        protocol_binding: root.attribute("ProtocolBinding").map(str::to_owned),
        force_authn: boolean(root.attribute("ForceAuthn"))?,
        is_passive: boolean(root.attribute("IsPassive"))?,
        name_id_format: child(PROTOCOL, "NameIDPolicy").and_then(|n| n.attribute("Format")).map(str::to_owned),
        requested_authn_context,
        signed: child(DSIG, "Signature").is_some(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const REQUEST: &str = r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="id-4711" Version="2.0" IssueInstant="2026-12-03T10:00:00Z" Destination="https://konto.example/saml/sso" AssertionConsumerServiceURL="https://portal.example/acs" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" ForceAuthn="true"><saml:Issuer> https://portal.example/sp </saml:Issuer><samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="true"/><samlp:RequestedAuthnContext Comparison="minimum"><saml:AuthnContextClassRef>http://eidas.europa.eu/LoA/substantial</saml:AuthnContextClassRef></samlp:RequestedAuthnContext></samlp:AuthnRequest>"#;

    fn deflated(xml: &str) -> String {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(xml.as_bytes()).unwrap();
        STANDARD.encode(encoder.finish().unwrap())
    }

    #[test]
    fn a_redirect_request_is_read_whole() {
        let request = parse_authn_request(&decode_redirect(&deflated(REQUEST)).unwrap()).unwrap();
        assert_eq!(request.id, "id-4711");
        assert_eq!(request.issuer, "https://portal.example/sp");
        assert_eq!(request.assertion_consumer_service_url.as_deref(), Some("https://portal.example/acs"));
        assert!(request.force_authn && !request.is_passive && !request.signed);
        assert_eq!(request.name_id_format.as_deref(), Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"));
        let context = request.requested_authn_context.unwrap();
        assert_eq!((context.comparison.as_str(), context.class_refs.len()), ("minimum", 1));
    }

    #[test]
    fn prefixes_do_not_matter_namespaces_do() {
        let renamed = REQUEST.replace("samlp:", "p:").replace("xmlns:samlp", "xmlns:p");
        assert_eq!(parse_authn_request(&renamed).unwrap().id, "id-4711");
        let wrong_namespace = REQUEST.replace("urn:oasis:names:tc:SAML:2.0:protocol", "urn:example:evil");
        assert_eq!(parse_authn_request(&wrong_namespace), Err(RequestError::NotAuthnRequest));
    }

    #[test]
    fn dtds_and_entities_are_refused() {
        let billion_laughs = format!(r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>{REQUEST}"#);
        assert_eq!(parse_authn_request(&billion_laughs), Err(RequestError::Dtd));
        let external = format!(r#"<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{REQUEST}"#);
        assert_eq!(parse_authn_request(&external), Err(RequestError::Dtd));
    }

    #[test]
    fn broken_requests_say_what_is_wrong() {
        assert_eq!(decode_redirect("%%%"), Err(RequestError::NotBase64));
        assert_eq!(decode_redirect(&STANDARD.encode(b"plain text")), Err(RequestError::NotDeflate));
        assert_eq!(parse_authn_request(&REQUEST.replace(r#"ID="id-4711" "#, "")), Err(RequestError::Invalid("ID")));
        assert_eq!(
            parse_authn_request(&REQUEST.replace("2026-12-03T10:00:00Z", "gestern")),
            Err(RequestError::Invalid("IssueInstant"))
        );
        assert_eq!(
            parse_authn_request(&REQUEST.replace(r#"ForceAuthn="true""#, r#"ForceAuthn="ja""#)),
            Err(RequestError::Invalid("a boolean attribute"))
        );
        let bomb = deflated(&" ".repeat(MAX_SIZE + 10));
        assert_eq!(decode_redirect(&bomb), Err(RequestError::TooLarge));
    }

    proptest::proptest! {
        #[test]
        fn nothing_panics_on_input(text in ".{0,400}", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_authn_request(&text);
            let _ = decode_redirect(&text);
            let _ = decode_post(&text);
            let _ = decode_redirect(&STANDARD.encode(&bytes));
        }
    }
}
