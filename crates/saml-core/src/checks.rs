//! An AuthnRequest checked against the SP as the tenant registry knows it: its issuer, a
//! registered assertion consumer service, our SSO address, its age within the clock skew, its
//! signature where the SP must sign, a NameID format we issue. The request ID's single use is
//! the server's (it needs the shared store); [`replay_key`] names it.

use time::{Duration, OffsetDateTime};

use crate::{
    AuthnRequest,
    metadata::POST,
    response::{PERSISTENT, TRANSIENT},
};

const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

/// An SP as registered: what its requests are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProvider {
    /// Its entity id.
    pub entity_id: String,
    /// Its assertion consumer services (HTTP-POST): index and URL; the first is the default.
    pub assertion_consumer_services: Vec<(u16, String)>,
    /// "AuthnRequests must be signed".
    pub requests_signed: bool,
}

/// A request the SP may make, with where the Response goes and the NameID format to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    /// The ACS URL the Response is posted to.
    pub assertion_consumer_service: String,
    /// [`PERSISTENT`] or [`TRANSIENT`].
    pub name_id_format: &'static str,
}

/// Why a request is refused. Until the ACS is known, the refusal is shown as a page, never sent
/// anywhere (no open redirect); afterwards it can go back as an error Response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    /// The issuer is not the SP's entity id.
    #[error("the issuer is not this service provider")]
    WrongIssuer,
    /// The ACS URL or index is not registered.
    #[error("the assertion consumer service is not registered")]
    UnregisteredAssertionConsumerService,
    /// The Response binding asked for is not HTTP-POST.
    #[error("only HTTP-POST answers are supported")]
    UnsupportedBinding,
    /// `Destination` is not our SSO address.
    #[error("the request was meant for another destination")]
    WrongDestination,
    /// Older than the allowed age plus skew, or from the future beyond the skew.
    #[error("the request is too old or from the future")]
    Stale,
    /// The SP must sign its requests and this one is not signed (or did not verify).
    #[error("the request is not signed")]
    Unsigned,
    /// A NameID format we do not issue.
    #[error("NameID format not supported")]
    UnsupportedNameIdFormat,
}

/// How long a request may take to arrive.
pub const MAX_REQUEST_AGE: Duration = Duration::minutes(5);

/// Checks `request` (whose signature the caller verified or not: `signature_verified`) of
/// `sp` arriving at `sso_url` at `now`, allowing `skew` between the clocks.
pub fn check_request(
    request: &AuthnRequest,
    sp: &ServiceProvider,
    sso_url: &str,
    signature_verified: bool,
    now: OffsetDateTime,
    skew: Duration,
) -> Result<CheckedRequest, RequestRefusal> {
    if request.issuer != sp.entity_id {
        return Err(RequestRefusal::WrongIssuer);
    }
    let acs = match (&request.assertion_consumer_service_url, request.assertion_consumer_service_index) {
        (Some(url), _) => sp.assertion_consumer_services.iter().find(|(_, u)| u == url),
        (None, Some(index)) => sp.assertion_consumer_services.iter().find(|(i, _)| *i == index),
        (None, None) => sp.assertion_consumer_services.first(),
    }
    .map(|(_, url)| url.clone())
    .ok_or(RequestRefusal::UnregisteredAssertionConsumerService)?;
    if request.protocol_binding.as_deref().is_some_and(|b| b != POST) {
        return Err(RequestRefusal::UnsupportedBinding);
    }
    if request.destination.as_deref().is_some_and(|d| d != sso_url) {
        return Err(RequestRefusal::WrongDestination);
    }
    if request.issue_instant > now + skew || request.issue_instant < now - MAX_REQUEST_AGE - skew {
        return Err(RequestRefusal::Stale);
    }
    if sp.requests_signed && !signature_verified {
        return Err(RequestRefusal::Unsigned);
    }
    let name_id_format = match request.name_id_format.as_deref() {
        None | Some(UNSPECIFIED) | Some(PERSISTENT) => PERSISTENT,
        Some(TRANSIENT) => TRANSIENT,
        Some(_) => return Err(RequestRefusal::UnsupportedNameIdFormat),
    };
    Ok(CheckedRequest { assertion_consumer_service: acs, name_id_format })
}

/// The key under which the server remembers a request ID as used, until it could no longer
/// pass [`check_request`]'s age check anyway.
pub fn replay_key(sp_entity_id: &str, request_id: &str) -> String {
    format!("saml-request:{}:{}", sp_entity_id.len(), [sp_entity_id, request_id].concat())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::metadata::REDIRECT;

    const NOW: OffsetDateTime = datetime!(2026-12-03 10:00 UTC);
    const SSO: &str = "https://konto.example/saml/sso";

    fn sp() -> ServiceProvider {
        ServiceProvider {
            entity_id: "https://portal.example/sp".into(),
            assertion_consumer_services: vec![
                (0, "https://portal.example/acs".into()),
                (1, "https://portal.example/acs2".into()),
            ],
            requests_signed: false,
        }
    }

    fn request() -> AuthnRequest {
        AuthnRequest {
            id: "id-1".into(),
            issuer: "https://portal.example/sp".into(),
            issue_instant: NOW - Duration::seconds(10),
            destination: Some(SSO.into()),
            assertion_consumer_service_url: None,
            assertion_consumer_service_index: None,
            protocol_binding: None,
            force_authn: false,
            is_passive: false,
            name_id_format: None,
            requested_authn_context: None,
            signed: false,
        }
    }

    fn check(request: &AuthnRequest, sp: &ServiceProvider, signed: bool) -> Result<CheckedRequest, RequestRefusal> {
        check_request(request, sp, SSO, signed, NOW, Duration::seconds(30))
    }

    #[test]
    fn a_plain_request_goes_to_the_default_acs_with_a_persistent_name_id() {
        let checked = check(&request(), &sp(), false).unwrap();
        assert_eq!(
            checked,
            CheckedRequest {
                assertion_consumer_service: "https://portal.example/acs".into(),
                name_id_format: PERSISTENT
            }
        );
        let by_index = AuthnRequest { assertion_consumer_service_index: Some(1), ..request() };
        assert_eq!(check(&by_index, &sp(), false).unwrap().assertion_consumer_service, "https://portal.example/acs2");
        let transient = AuthnRequest { name_id_format: Some(TRANSIENT.into()), ..request() };
        assert_eq!(check(&transient, &sp(), false).unwrap().name_id_format, TRANSIENT);
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let cases = [
            (AuthnRequest { issuer: "https://evil.example".into(), ..request() }, RequestRefusal::WrongIssuer),
            (
                AuthnRequest { assertion_consumer_service_url: Some("https://evil.example/acs".into()), ..request() },
                RequestRefusal::UnregisteredAssertionConsumerService,
            ),
            (
                AuthnRequest { assertion_consumer_service_index: Some(7), ..request() },
                RequestRefusal::UnregisteredAssertionConsumerService,
            ),
            (AuthnRequest { protocol_binding: Some(REDIRECT.into()), ..request() }, RequestRefusal::UnsupportedBinding),
            (
                AuthnRequest { destination: Some("https://other.example/sso".into()), ..request() },
                RequestRefusal::WrongDestination,
            ),
            (AuthnRequest { issue_instant: NOW - Duration::minutes(6), ..request() }, RequestRefusal::Stale),
            (AuthnRequest { issue_instant: NOW + Duration::minutes(1), ..request() }, RequestRefusal::Stale),
            (
                AuthnRequest {
                    name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
                    ..request()
                },
                RequestRefusal::UnsupportedNameIdFormat,
            ),
        ];
        for (request, refusal) in cases {
            assert_eq!(check(&request, &sp(), false), Err(refusal.clone()), "{refusal}");
        }
        let strict = ServiceProvider { requests_signed: true, ..sp() };
        assert_eq!(check(&request(), &strict, false), Err(RequestRefusal::Unsigned));
        assert!(check(&request(), &strict, true).is_ok());
        let within_skew = AuthnRequest { issue_instant: NOW + Duration::seconds(20), ..request() };
        assert!(check(&within_skew, &sp(), false).is_ok(), "the skew forgives a clock 20 s ahead");
        assert_ne!(replay_key("ab", "c"), replay_key("a", "bc"), "entity id and request id cannot run together");
    }
}
