//! SAML 2.0 Web Browser SSO: the server's side of what `saml-core` rules. Service providers are
//! registry clients (`sp`); single sign-on and logout (`sso`) share the session, consent, claim
//! release and transfer log with OpenID Connect.

pub(crate) mod sp;
pub(crate) mod sso;
