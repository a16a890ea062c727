//! The identity provider's answer: a `samlp:Response` with one signed `saml:Assertion` (and the
//! Response signed too), or a Response with an error status.

use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

use crate::{
    encryption::encrypted_assertion,
    signature::{SignError, Signer, sign_enveloped},
    xml::Element,
};

const VERSION: &str = "2.0";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// NameID formats we answer with.
pub const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
/// A NameID valid for this one assertion.
pub const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

const INSTANT: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// `xs:dateTime` in UTC, seconds precision, as SAML profiles expect.
pub fn instant(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(INSTANT).unwrap_or_default()
}

/// One attribute with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute's name in the client's vocabulary (a URI or a name).
    pub name: String,
    /// `urn:oasis:names:tc:SAML:2.0:attrname-format:uri` or `…:basic`.
    pub name_format: String,
    /// A readable name, if the vocabulary has one.
    pub friendly_name: Option<String>,
    /// The values, as text.
    pub values: Vec<String>,
}

/// Everything a successful Response states.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// Our entity id (the environment's issuer).
    pub issuer: String,
    /// A fresh id for the Response (`_` and random hex: an NCName).
    pub response_id: String,
    /// A fresh id for the Assertion.
    pub assertion_id: String,
    /// The AuthnRequest's id; `None` for an IdP-initiated Response.
    pub in_response_to: Option<String>,
    /// Where the Response goes: the SP's assertion consumer service URL.
    pub destination: String,
    /// The SP's entity id.
    pub audience: String,
    /// The subject's NameID.
    pub name_id: String,
    /// Its format ([`PERSISTENT`] or [`TRANSIENT`]).
    pub name_id_format: String,
    /// Now.
    pub issue_instant: OffsetDateTime,
    /// The assertion is not valid after this (a few minutes after now).
    pub not_on_or_after: OffsetDateTime,
    /// When the person authenticated.
    pub authn_instant: OffsetDateTime,
    /// The session, for Single Logout.
    pub session_index: String,
    /// The authentication context in the SP's vocabulary.
    pub authn_context_class_ref: String,
    /// The released attributes.
    pub attributes: Vec<Attribute>,
}

fn issuer(value: &str) -> Element {
    Element::new("saml", "Issuer").text(value)
}

fn status(code: &str, second_level: Option<&str>) -> Element {
    let mut top = Element::new("samlp", "StatusCode").attr("Value", code);
    if let Some(inner) = second_level {
        top = top.child(Element::new("samlp", "StatusCode").attr("Value", inner));
    }
    Element::new("samlp", "Status").child(top)
}

/// The Response, with the Assertion and the Response each signed by `signer`; the signed
/// Assertion encrypted for `encrypt_for` (the SP's encryption certificate, DER) when given.
pub fn signed_response(a: &Assertion, signer: &dyn Signer, encrypt_for: Option<&[u8]>) -> Result<String, SignError> {
    let not_before = instant(a.issue_instant - time::Duration::seconds(60));
    let until = instant(a.not_on_or_after);
    let confirmation = Element::new("saml", "SubjectConfirmationData")
        .attr_opt("InResponseTo", a.in_response_to.clone())
        .attr("NotOnOrAfter", until.clone())
        .attr("Recipient", a.destination.clone());
    let subject = Element::new("saml", "Subject")
        .child(Element::new("saml", "NameID").attr("Format", a.name_id_format.clone()).text(a.name_id.clone()))
        .child(Element::new("saml", "SubjectConfirmation").attr("Method", BEARER).child(confirmation));
    let conditions =
        Element::new("saml", "Conditions").attr("NotBefore", not_before).attr("NotOnOrAfter", until).child(
            Element::new("saml", "AudienceRestriction")
                .child(Element::new("saml", "Audience").text(a.audience.clone())),
        );
    let authn = Element::new("saml", "AuthnStatement")
        .attr("AuthnInstant", instant(a.authn_instant))
        .attr("SessionIndex", a.session_index.clone())
        .child(
            Element::new("saml", "AuthnContext")
                .child(Element::new("saml", "AuthnContextClassRef").text(a.authn_context_class_ref.clone())),
        );
    let mut assertion = Element::new("saml", "Assertion")
        .attr("ID", a.assertion_id.clone())
        .attr("IssueInstant", instant(a.issue_instant))
        .attr("Version", VERSION)
        .child(issuer(&a.issuer))
        .child(subject)
        .child(conditions)
        .child(authn);
    if !a.attributes.is_empty() {
        let mut statement = Element::new("saml", "AttributeStatement");
        for attribute in &a.attributes {
            let mut element = Element::new("saml", "Attribute")
                .attr("Name", attribute.name.clone())
                .attr("NameFormat", attribute.name_format.clone())
                .attr_opt("FriendlyName", attribute.friendly_name.clone());
            for value in &attribute.values {
                element = element.child(Element::new("saml", "AttributeValue").text(value.clone()));
            }
            statement = statement.child(element);
        }
        assertion = assertion.child(statement);
    }
    sign_enveloped(&mut assertion, &a.assertion_id, 1, signer)?;
    if let Some(certificate) = encrypt_for {
        assertion = encrypted_assertion(&assertion.canonical(), certificate).map_err(|e| SignError(e.to_string()))?;
    }
    let mut response = Element::new("samlp", "Response")
        .attr("Destination", a.destination.clone())
        .attr("ID", a.response_id.clone())
        .attr_opt("InResponseTo", a.in_response_to.clone())
        .attr("IssueInstant", instant(a.issue_instant))
        .attr("Version", VERSION)
        .child(issuer(&a.issuer))
        .child(status(SUCCESS, None))
        .child(assertion);
    sign_enveloped(&mut response, &a.response_id, 1, signer)?;
    Ok(response.canonical())
}

/// Why the identity provider answers without an assertion (SAML Core §3.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `IsPassive` and no session.
    NoPassive,
    /// The requested authentication context cannot be met.
    NoAuthnContext,
    /// The person declined (consent page).
    RequestDenied,
    /// The authentication failed.
    AuthnFailed,
}

impl Failure {
    fn second_level(self) -> &'static str {
        match self {
            Failure::NoPassive => "urn:oasis:names:tc:SAML:2.0:status:NoPassive",
            Failure::NoAuthnContext => "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext",
            Failure::RequestDenied => "urn:oasis:names:tc:SAML:2.0:status:RequestDenied",
            Failure::AuthnFailed => "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed",
        }
    }
}

/// A signed Response that carries only an error status.
#[allow(clippy::too_many_arguments, reason = "each is one field of the Response")]
pub fn error_response(
    issuer_id: &str,
    response_id: &str,
    in_response_to: Option<&str>,
    destination: &str,
    issue_instant: OffsetDateTime,
    failure: Failure,
    signer: &dyn Signer,
) -> Result<String, SignError> {
    let mut response = Element::new("samlp", "Response")
        .attr("Destination", destination)
        .attr("ID", response_id)
        .attr_opt("InResponseTo", in_response_to)
        .attr("IssueInstant", instant(issue_instant))
        .attr("Version", VERSION)
        .child(issuer(issuer_id))
        .child(status("urn:oasis:names:tc:SAML:2.0:status:Responder", Some(failure.second_level())));
    sign_enveloped(&mut response, response_id, 1, signer)?;
    Ok(response.canonical())
}
