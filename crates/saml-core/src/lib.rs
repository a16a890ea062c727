//! SAML 2.0 Web Browser SSO, the identity provider's protocol rules without I/O (like
//! `oidc-core` for OpenID Connect): reading AuthnRequests of both bindings, writing signed
//! Responses, error Responses and metadata. The server orchestrates (sessions, consent, claim
//! release and transfer log are shared with OpenID Connect there).
//!
//! Modules: `attributes` (claim names in a client's attribute profile: ours or eIDAS), `authn_context` (RequestedAuthnContext in our trust levels: step-up and the answer's
//! class reference), `xml` (a writer whose output is its own exclusive canonical form), `signature`
//! (enveloped XML-DSig, RSA-SHA256, through the [`Signer`] port), `request` (AuthnRequest), `checks` (a request against its registered SP), `redirect` (the HTTP-Redirect binding's signature),
//! `response` (Response and Assertion), `metadata` (the IdP's `EntityDescriptor`), `sp_metadata`
//! (an SP's metadata, read to register it), `logout` (Single Logout over HTTP-Redirect).
//!
//! Why no XML-security library: everything we sign we write ourselves, in canonical form, so
//! signing needs no general canonicaliser; parsing uses roxmltree (no DTDs, namespaces
//! resolved). The narrow surface is the point (see `docs/security.md`, "SAML").

mod attributes;
mod authn_context;
mod checks;
mod encryption;
mod logout;
mod metadata;
mod redirect;
mod request;
mod response;
mod signature;
mod sp_metadata;
mod verify;
mod xml;

pub use attributes::{AttributeProfile, EIDAS_NAMES, attribute, eidas_person_identifier};
pub use authn_context::{ContextRequirement, NoAuthnContext, Vocabulary, requirement};
pub use checks::{CheckedRequest, MAX_REQUEST_AGE, RequestRefusal, ServiceProvider, check_request, replay_key};
pub use encryption::EncryptError;
pub use logout::{LogoutRequest, LogoutResponse, logout_response_url, parse_logout_request};
pub use metadata::{IdpEndpoints, POST, REDIRECT, idp_metadata};
pub use redirect::{SignatureError, verify_redirect_signature};
pub use request::{
    AuthnRequest, RequestError, RequestedAuthnContext, decode_post, decode_redirect, parse_authn_request,
};
pub use response::{Assertion, Attribute, Failure, PERSISTENT, TRANSIENT, error_response, instant, signed_response};
pub use signature::{SignError, Signer};
pub use sp_metadata::{MetadataError, SpMetadata, parse_sp_metadata};
pub use verify::verify_enveloped;
