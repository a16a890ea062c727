//! An SP's metadata (SAML Metadata §2.4.4, `md:SPSSODescriptor`), read to register the SP as a
//! client: its entity id, assertion consumer services (HTTP-POST), Single Logout address
//! (HTTP-Redirect), certificates for signing and encryption, and whether it signs its requests.
//! Parsed like a request: roxmltree, no DTDs, elements by namespace and local name.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use x509_cert::{Certificate, der::Decode as _};

use crate::metadata::{POST, REDIRECT};

const METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// The largest metadata document we read.
const MAX_SIZE: usize = 256 * 1024;

/// What an SP's metadata says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpMetadata {
    /// `entityID`.
    pub entity_id: String,
    /// HTTP-POST assertion consumer services: index and URL, the default first.
    pub assertion_consumer_services: Vec<(u16, String)>,
    /// Where LogoutRequests and LogoutResponses go (HTTP-Redirect), if it has one.
    pub single_logout_service: Option<String>,
    /// Certificates (DER) its requests are signed with.
    pub signing_certificates: Vec<Vec<u8>>,
    /// The certificate (DER) to encrypt assertions for, if it has one.
    pub encryption_certificate: Option<Vec<u8>>,
    /// `AuthnRequestsSigned`.
    pub authn_requests_signed: bool,
}

/// Why metadata cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Larger than 256 KiB.
    #[error("the metadata is larger than 256 KiB")]
    TooLarge,
    /// Carries a document type declaration.
    #[error("DTDs are not accepted")]
    Dtd,
    /// Not well-formed XML.
    #[error("not well-formed XML: {0}")]
    NotXml(String),
    /// No `md:EntityDescriptor` with an `md:SPSSODescriptor` for SAML 2.0.
    #[error("no EntityDescriptor with an SPSSODescriptor for SAML 2.0")]
    NotSpMetadata,
    /// A part is missing or malformed; the text says which.
    #[error("{0}")]
    Invalid(String),
}

fn boolean(value: Option<&str>) -> bool {
    matches!(value, Some("true" | "1"))
}

fn certificate(node: roxmltree::Node<'_, '_>) -> Result<Vec<u8>, MetadataError> {
    let text = node
        .descendants()
        .find(|n| n.has_tag_name((DSIG, "X509Certificate")))
        .and_then(|n| n.text())
        .ok_or_else(|| MetadataError::Invalid("a KeyDescriptor has no X509Certificate".into()))?;
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der =
        STANDARD.decode(cleaned).map_err(|_| MetadataError::Invalid("an X509Certificate is not base64".into()))?;
    Certificate::from_der(&der)
        .map_err(|_| MetadataError::Invalid("an X509Certificate is not a certificate".into()))?;
    Ok(der)
}

/// Reads an SP's metadata: an `md:EntityDescriptor` (or the first one of an
/// `md:EntitiesDescriptor`) with an `md:SPSSODescriptor` for SAML 2.0.
pub fn parse_sp_metadata(xml: &str) -> Result<SpMetadata, MetadataError> {
    let document = crate::xml::parse(xml, MAX_SIZE).map_err(|e| match e {
        crate::xml::Unreadable::TooLarge => MetadataError::TooLarge,
        crate::xml::Unreadable::Dtd => MetadataError::Dtd,
        crate::xml::Unreadable::NotXml(why) => MetadataError::NotXml(why),
        crate::xml::Unreadable::TooDeep => MetadataError::NotXml("nested too deep".to_owned()),
    })?;
    let entity = document
        .descendants()
        .filter(|n| n.has_tag_name((METADATA, "EntityDescriptor")))
        .find(|n| n.children().any(|c| c.has_tag_name((METADATA, "SPSSODescriptor"))))
        .ok_or(MetadataError::NotSpMetadata)?;
    let entity_id = entity
        .attribute("entityID")
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 1024)
        .ok_or_else(|| MetadataError::Invalid("entityID is missing or longer than 1024 characters".into()))?;
    let sp = entity
        .children()
        .filter(|n| n.has_tag_name((METADATA, "SPSSODescriptor")))
        .find(|n| {
            n.attribute("protocolSupportEnumeration").is_some_and(|p| p.split_whitespace().any(|v| v == PROTOCOL))
        })
        .ok_or(MetadataError::NotSpMetadata)?;

    let mut services = Vec::new();
    let mut default = None;
    for (position, acs) in sp.children().filter(|n| n.has_tag_name((METADATA, "AssertionConsumerService"))).enumerate()
    {
        if acs.attribute("Binding") != Some(POST) {
            continue;
        }
        let location = acs
            .attribute("Location")
            .filter(|l| !l.is_empty())
            .ok_or_else(|| MetadataError::Invalid("an AssertionConsumerService has no Location".into()))?;
        let index = match acs.attribute("index") {
            Some(index) => index
                .parse::<u16>()
                .map_err(|_| MetadataError::Invalid("an AssertionConsumerService index is not a number".into()))?,
            None => u16::try_from(position).unwrap_or(u16::MAX),
        };
        if services.iter().any(|(i, _)| *i == index) {
            return Err(MetadataError::Invalid(format!("AssertionConsumerService index {index} is used twice")));
        }
        if boolean(acs.attribute("isDefault")) && default.is_none() {
            default = Some(services.len());
        }
        services.push((index, location.to_owned()));
    }
    if services.is_empty() {
        return Err(MetadataError::Invalid("no AssertionConsumerService with the HTTP-POST binding".into()));
    }
    if let Some(default) = default {
        let chosen = services.remove(default);
        services.insert(0, chosen);
    }
    let single_logout_service = sp
        .children()
        .filter(|n| n.has_tag_name((METADATA, "SingleLogoutService")))
        .find(|n| n.attribute("Binding") == Some(REDIRECT))
        .and_then(|n| n.attribute("Location"))
        .map(str::to_owned);

    let mut signing_certificates = Vec::new();
    let mut encryption_certificate = None;
    for key in sp.children().filter(|n| n.has_tag_name((METADATA, "KeyDescriptor"))) {
        let der = certificate(key)?;
        match key.attribute("use") {
            Some("signing") => signing_certificates.push(der),
            Some("encryption") => encryption_certificate = encryption_certificate.or(Some(der)),
            // Without `use` the key serves both.
            _ => {
                encryption_certificate = encryption_certificate.or(Some(der.clone()));
                signing_certificates.push(der);
            }
        }
    }
    let authn_requests_signed = boolean(sp.attribute("AuthnRequestsSigned"));
    if authn_requests_signed && signing_certificates.is_empty() {
        return Err(MetadataError::Invalid("AuthnRequestsSigned needs a signing certificate".into()));
    }
    Ok(SpMetadata {
        entity_id: entity_id.to_owned(),
        assertion_consumer_services: services,
        single_logout_service,
        signing_certificates,
        encryption_certificate,
        authn_requests_signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(descriptor_attributes: &str, inner: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://portal.example/sp"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" {descriptor_attributes}>{inner}</md:SPSSODescriptor></md:EntityDescriptor>"#
        )
    }

    const ACS: &str = r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" Location="https://portal.example/artifact" index="0"/><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://portal.example/acs" index="1"/><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://portal.example/acs2" index="2" isDefault="true"/><md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://portal.example/slo"/>"#;

    #[test]
    fn post_services_default_first_and_the_logout_address() {
        let read = parse_sp_metadata(&metadata("", ACS)).unwrap();
        assert_eq!(read.entity_id, "https://portal.example/sp");
        assert_eq!(
            read.assertion_consumer_services,
            vec![(2, "https://portal.example/acs2".to_owned()), (1, "https://portal.example/acs".to_owned())]
        );
        assert_eq!(read.single_logout_service.as_deref(), Some("https://portal.example/slo"));
        assert!(read.signing_certificates.is_empty() && read.encryption_certificate.is_none());
        assert!(!read.authn_requests_signed);
    }

    #[test]
    fn what_cannot_be_used_is_named() {
        assert_eq!(parse_sp_metadata("<x/>"), Err(MetadataError::NotSpMetadata));
        assert!(matches!(parse_sp_metadata("<x"), Err(MetadataError::NotXml(_))));
        let dtd = format!(r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>{}"#, metadata("", ACS));
        assert_eq!(parse_sp_metadata(&dtd), Err(MetadataError::Dtd));
        let artifact_only = metadata(
            "",
            ACS.split(r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST""#)
                .next()
                .unwrap(),
        );
        assert!(matches!(parse_sp_metadata(&artifact_only), Err(MetadataError::Invalid(m)) if m.contains("HTTP-POST")));
        let signed_without_key = metadata(r#"AuthnRequestsSigned="true""#, ACS);
        assert!(
            matches!(parse_sp_metadata(&signed_without_key), Err(MetadataError::Invalid(m)) if m.contains("signing certificate"))
        );
        let bad_key = metadata(
            "",
            &format!(
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>bm90IGEgY2VydA==</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>{ACS}"#
            ),
        );
        assert!(
            matches!(parse_sp_metadata(&bad_key), Err(MetadataError::Invalid(m)) if m.contains("not a certificate"))
        );
        let twice = metadata("", &ACS.replace(r#"index="2""#, r#"index="1""#));
        assert!(matches!(parse_sp_metadata(&twice), Err(MetadataError::Invalid(m)) if m.contains("twice")));
        assert_eq!(parse_sp_metadata(&" ".repeat(MAX_SIZE + 1)), Err(MetadataError::TooLarge));
    }

    proptest::proptest! {
        #[test]
        fn nothing_panics_on_input(text in ".{0,400}") {
            let _ = parse_sp_metadata(&text);
            let _ = parse_sp_metadata(&metadata("", &text));
        }
    }
}
