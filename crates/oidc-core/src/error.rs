use std::fmt;

/// An OAuth 2.0 / OpenID Connect error (RFC 6749 §5.2, OIDC Core §3.1.2.6), as the protocol
/// names it. How it reaches the client (JSON, redirect, page) is the server's business.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The registered error code.
    pub code: OAuthErrorCode,
    /// Human-readable, safe to show (no secrets, no internals).
    pub description: String,
}

impl OAuthError {
    /// An error with `code` and `description`.
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self { code, description: description.into() }
    }
}

/// Error codes of RFC 6749 §5.2 and OIDC Core §3.1.2.6 that this provider sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    /// Malformed or missing parameter, or a parameter given twice.
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// The grant type is unknown here.
    UnsupportedGrantType,
    /// A requested scope is unknown or not allowed.
    InvalidScope,
    /// The code (or refresh token) is invalid, used, expired, or not the client's.
    InvalidGrant,
    /// The citizen declined.
    AccessDenied,
    /// Only `code` is supported.
    UnsupportedResponseType,
    /// `prompt=none` without a session.
    LoginRequired,
    /// `prompt=none` without the consent needed.
    ConsentRequired,
    /// The session's trust level is below what the request needs (OIDC Core errata / FAPI).
    UnmetAuthenticationRequirements,
    /// RFC 9101: the request object is invalid (signature, audience, lifetime).
    InvalidRequestObject,
    /// RFC 9126: the `request_uri` is unknown, used up, expired or another client's.
    InvalidRequestUri,
    /// Something failed on our side.
    ServerError,
    /// RFC 6749 §4.1.2.1: a dependency is unavailable for the moment; retry later (HTTP 503 with
    /// `Retry-After` where the answer is not a redirect).
    TemporarilyUnavailable,
}

impl OAuthErrorCode {
    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::LoginRequired => "login_required",
            OAuthErrorCode::ConsentRequired => "consent_required",
            OAuthErrorCode::UnmetAuthenticationRequirements => "unmet_authentication_requirements",
            OAuthErrorCode::InvalidRequestObject => "invalid_request_object",
            OAuthErrorCode::InvalidRequestUri => "invalid_request_uri",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
