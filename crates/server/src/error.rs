//! All mapping of errors to HTTP responses, in one place.
//!
//! Client errors get a stable code and a safe message; failures on our side are logged once
//! (inside the request's span, so with its request id): an outage of a dependency — an error
//! whose chain holds a `DependencyError` or `EphemeralError::Unavailable` — is answered 503
//! `temporarily_unavailable` and counted under the dependency's name, anything else with an
//! opaque 500. The OIDC endpoints speak RFC 6749 §5.2 JSON; the admin API speaks RFC 9457
//! problem details.

use oidc_core::{Dependency, OAuthError, OAuthErrorCode, dependency_failure};
use poem::{IntoResponse, Response, error::ResponseError, http::StatusCode, web::Json};
use poem_openapi::ApiResponse;
use serde_json::json;
use tenant_registry::{FieldError, RegistryError};

use crate::{
    admin::{FieldProblem, Problem},
    state::AppState,
};

/// A failure on our side: an outage of a dependency (answered 503, "try again") or a bug (500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The named dependency (`postgres`, `sqlite`, `redis`, `memory`, `smtp`, `eid_server`) failed.
    Outage(&'static str),
    /// Anything else.
    Bug,
}

/// The name a dependency goes by in logs and metrics on this node.
pub(crate) fn dependency_name(state: &AppState, dependency: Dependency) -> &'static str {
    match dependency {
        Dependency::Database => state.database.backend_name(),
        Dependency::EphemeralStore => state.backends().1,
        Dependency::Mail => "smtp",
        Dependency::EidServer => "eid_server",
    }
}

/// Logs a failure of `operation` once — naming the dependency and what it said when it is an
/// outage — counts it, and tells which kind it is. Every failure on our side passes here.
pub(crate) fn record_failure(
    state: &AppState,
    operation: &'static str,
    error: &(dyn std::error::Error + 'static),
) -> Failure {
    match dependency_failure(error) {
        Some((dependency, cause)) => {
            let name = dependency_name(state, dependency);
            state.metrics.dependency_error(name, operation);
            tracing::error!(dependency = name, operation, %cause, "dependency unavailable");
            Failure::Outage(name)
        }
        None => {
            tracing::error!(operation, error = %error, source = ?error.source().map(ToString::to_string), "internal error");
            Failure::Bug
        }
    }
}

/// The OAuth error for a failure on our side: `temporarily_unavailable` for an outage (RFC 6749
/// §4.1.2.1; HTTP 503 with `Retry-After`), else `server_error`.
pub(crate) fn oauth_failure(
    state: &AppState,
    operation: &'static str,
    error: &(dyn std::error::Error + 'static),
) -> OAuthError {
    match record_failure(state, operation, error) {
        Failure::Outage(_) => unavailable(),
        Failure::Bug => OAuthError::new(OAuthErrorCode::ServerError, "Interner Fehler"),
    }
}

/// `temporarily_unavailable`, for a failure recorded already.
pub(crate) fn unavailable() -> OAuthError {
    OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, UNAVAILABLE)
}

/// The status of an OAuth error outside redirects (RFC 6749 §5.2; 503 for an outage).
pub(crate) fn oauth_status(code: OAuthErrorCode) -> StatusCode {
    match code {
        OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        OAuthErrorCode::InvalidRequest
        | OAuthErrorCode::UnauthorizedClient
        | OAuthErrorCode::UnsupportedGrantType
        | OAuthErrorCode::InvalidScope
        | OAuthErrorCode::InvalidGrant
        | OAuthErrorCode::AccessDenied
        | OAuthErrorCode::UnsupportedResponseType
        | OAuthErrorCode::LoginRequired
        | OAuthErrorCode::ConsentRequired
        | OAuthErrorCode::UnmetAuthenticationRequirements
        | OAuthErrorCode::InvalidRequestObject
        | OAuthErrorCode::InvalidRequestUri => StatusCode::BAD_REQUEST,
    }
}

/// Errors of the handlers of this server outside the admin API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Signing keys could not be read.
    #[error(transparent)]
    Keys(#[from] oidc_core::KeyError),
}

impl ResponseError for HttpError {
    fn status(&self) -> StatusCode {
        match self {
            HttpError::Keys(oidc_core::KeyError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Keys(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        match self {
            HttpError::Keys(error) if outage(error).is_some() => {
                body(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", UNAVAILABLE)
            }
            HttpError::Keys(_) => internal(),
        }
    }
}

/// The description of `temporarily_unavailable`.
const UNAVAILABLE: &str = "Der Dienst ist vorübergehend nicht erreichbar; bitte später erneut versuchen";

/// Logs a failure once where no state is at hand (no metric then): with the dependency for an
/// outage. `Some(dependency)` for an outage.
fn outage(error: &(dyn std::error::Error + 'static)) -> Option<Dependency> {
    match dependency_failure(error) {
        Some((dependency, cause)) => {
            tracing::error!(dependency = %dependency, %cause, "dependency unavailable");
            Some(dependency)
        }
        None => {
            log_internal(error);
            None
        }
    }
}

/// The opaque 500 (the error was logged by the caller).
fn internal() -> Response {
    body(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Interner Fehler. Bitte versuchen Sie es später erneut.")
}

fn log_internal(error: &dyn std::error::Error) {
    tracing::error!(error = %error, source = ?error.source().map(ToString::to_string), "internal error");
}

fn body(status: StatusCode, code: &str, description: &str) -> Response {
    (status, Json(json!({ "error": code, "error_description": description }))).into_response()
}

/// Renders any error that reached the top: ours with their own mapping, poem's (no route,
/// wrong method, unreadable request) as JSON with the same shape.
pub(crate) async fn render(error: poem::Error) -> Response {
    if error.is::<HttpError>() {
        return error.into_response();
    }
    let status = error.status();
    match status {
        StatusCode::NOT_FOUND => body(status, "not_found", "Diese Adresse gibt es nicht."),
        StatusCode::METHOD_NOT_ALLOWED => body(status, "method_not_allowed", "Diese Methode ist hier nicht erlaubt."),
        s if s.is_server_error() => {
            log_internal(&error);
            internal()
        }
        s => body(s, "invalid_request", &error.to_string()),
    }
}

/// An OAuth error at the token endpoint (RFC 6749 §5.2).
pub(crate) struct OAuthResponse {
    pub(crate) error: OAuthError,
    /// The client sent an `Authorization` header; a 401 then names the scheme (§5.2).
    pub(crate) basic_auth_used: bool,
}

impl IntoResponse for OAuthResponse {
    fn into_response(self) -> Response {
        let status = oauth_status(self.error.code);
        let mut response =
            (status, Json(json!({ "error": self.error.code.as_str(), "error_description": self.error.description })))
                .with_header("cache-control", "no-store")
                .into_response();
        if status == StatusCode::UNAUTHORIZED {
            let scheme = if self.basic_auth_used {
                "Basic realm=\"servicekonto\""
            } else {
                "Basic realm=\"servicekonto\", error=\"invalid_client\""
            };
            response.headers_mut().insert("www-authenticate", poem::http::HeaderValue::from_static(scheme));
        }
        response
    }
}

/// An error of dynamic client registration (RFC 7591 §3.2.2, RFC 7592 §2).
pub(crate) struct RegistrationResponse(pub(crate) crate::flows::registration::RegistrationError);

impl IntoResponse for RegistrationResponse {
    fn into_response(self) -> Response {
        use crate::flows::registration::RegistrationError;
        let (status, code, description) = match self.0 {
            RegistrationError::InvalidToken => {
                let response = (StatusCode::UNAUTHORIZED, Json(json!({ "error": "invalid_token", "error_description": "Das Zugriffstoken ist unbekannt, verbraucht oder abgelaufen." })))
                    .with_header("www-authenticate", "Bearer error=\"invalid_token\"")
                    .with_header("cache-control", "no-store");
                return response.into_response();
            }
            RegistrationError::InvalidRedirectUri(description) => {
                (StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
            }
            RegistrationError::InvalidClientMetadata(description) => {
                (StatusCode::BAD_REQUEST, "invalid_client_metadata", description)
            }
            RegistrationError::Internal(error) => match outage(error.as_ref()) {
                Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", UNAVAILABLE.to_owned()),
                None => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Interner Fehler".to_owned()),
            },
        };
        (status, Json(json!({ "error": code, "error_description": description })))
            .with_header("cache-control", "no-store")
            .into_response()
    }
}

/// An error of the admin API: RFC 9457 problem details.
#[derive(Debug, ApiResponse)]
pub(crate) enum AdminError {
    /// The request is malformed or breaks validation rules (`errors` lists each).
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(poem_openapi::payload::Json<Box<Problem>>),
    /// No valid admin access token.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(poem_openapi::payload::Json<Box<Problem>>, #[oai(header = "WWW-Authenticate")] String),
    /// The token may not do this.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(poem_openapi::payload::Json<Box<Problem>>),
    /// No such object, or one of another tenant.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(poem_openapi::payload::Json<Box<Problem>>),
    /// A unique value is taken, or the object still has dependants.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(poem_openapi::payload::Json<Box<Problem>>),
    /// `If-Match` names an outdated version.
    #[oai(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(poem_openapi::payload::Json<Box<Problem>>),
    /// The body is not JSON (`Content-Type: application/json`).
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(poem_openapi::payload::Json<Box<Problem>>),
    /// Updates need `If-Match`.
    #[oai(status = 428, content_type = "application/problem+json")]
    PreconditionRequired(poem_openapi::payload::Json<Box<Problem>>),
    /// Something failed on our side (details are in the server log under the request id).
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(poem_openapi::payload::Json<Box<Problem>>),
    /// The database or the ephemeral store is unavailable for the moment; retry after
    /// `Retry-After` seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(poem_openapi::payload::Json<Box<Problem>>),
}

fn problem(
    status: u16,
    code: &str,
    title: &str,
    detail: impl Into<String>,
    errors: Vec<FieldError>,
) -> poem_openapi::payload::Json<Box<Problem>> {
    poem_openapi::payload::Json(Box::new(Problem {
        problem_type: format!("urn:servicekonto:problem:{code}"),
        title: title.to_owned(),
        status,
        detail: detail.into(),
        errors: errors.into_iter().map(|e| FieldProblem { field: e.field, message: e.message }).collect(),
    }))
}

impl AdminError {
    pub(crate) fn invalid(errors: Vec<FieldError>) -> Self {
        AdminError::BadRequest(problem(
            400,
            "invalid",
            "Invalid input",
            "The request breaks the rules listed in errors.",
            errors,
        ))
    }

    pub(crate) fn invalid_field(field: &str, expected: &str) -> Self {
        Self::invalid(vec![FieldError { field: field.to_owned(), message: format!("expected {expected}") }])
    }

    pub(crate) fn unauthorized(detail: &str) -> Self {
        AdminError::Unauthorized(
            problem(401, "unauthorized", "Unauthorized", detail, Vec::new()),
            "Bearer realm=\"servicekonto-admin\", error=\"invalid_token\"".to_owned(),
        )
    }

    pub(crate) fn forbidden(detail: &str) -> Self {
        AdminError::Forbidden(problem(403, "forbidden", "Forbidden", detail, Vec::new()))
    }

    pub(crate) fn not_found() -> Self {
        AdminError::NotFound(problem(404, "not_found", "Not found", "No such object.", Vec::new()))
    }

    pub(crate) fn precondition_failed(detail: &str) -> Self {
        AdminError::PreconditionFailed(problem(412, "stale_version", "Precondition failed", detail, Vec::new()))
    }

    pub(crate) fn precondition_required() -> Self {
        AdminError::PreconditionRequired(problem(
            428,
            "if_match_required",
            "Precondition required",
            "Send If-Match with the ETag you read, so that concurrent changes are not overwritten.",
            Vec::new(),
        ))
    }

    /// 503: a dependency is down (the failure was logged already).
    pub(crate) fn unavailable() -> Self {
        AdminError::Unavailable(problem(
            503,
            "temporarily_unavailable",
            "Service unavailable",
            "A dependency of the service is unavailable for the moment; retry later.",
            Vec::new(),
        ))
    }

    pub(crate) fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        if outage(error).is_some() {
            return Self::unavailable();
        }
        AdminError::Internal(problem(
            500,
            "internal",
            "Internal error",
            "See the server log under this request's id.",
            Vec::new(),
        ))
    }
}

impl From<RegistryError> for AdminError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotFound => AdminError::not_found(),
            RegistryError::Forbidden(why) => AdminError::forbidden(why),
            RegistryError::Invalid(errors) => AdminError::invalid(errors),
            RegistryError::VersionMismatch { current } => AdminError::precondition_failed(&format!(
                "The object was changed meanwhile; its current ETag is \"{current}\"."
            )),
            RegistryError::Conflict(what) => {
                AdminError::Conflict(problem(409, "conflict", "Conflict", what, Vec::new()))
            }
            RegistryError::HasClients => AdminError::Conflict(problem(
                409,
                "has_clients",
                "Conflict",
                "The tenant still has clients; delete them first.",
                Vec::new(),
            )),
            RegistryError::Store(error) => AdminError::internal(&error),
        }
    }
}

/// Renders errors that poem or poem-openapi raise before an admin operation runs (no route,
/// unreadable body, missing token) as problem details too.
pub(crate) async fn render_admin(error: poem::Error) -> Response {
    // An operation's own `AdminError` arrives already rendered.
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    let (code, title) = match status {
        StatusCode::UNAUTHORIZED => ("unauthorized", "Unauthorized"),
        StatusCode::NOT_FOUND => ("not_found", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "Method not allowed"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "Unsupported media type"),
        s if s.is_server_error() => {
            log_internal(&error);
            ("internal", "Internal error")
        }
        _ => ("invalid", "Invalid request"),
    };
    let detail = if status.is_server_error() {
        "See the server log under this request's id.".to_owned()
    } else {
        error.to_string()
    };
    let problem = problem(status.as_u16(), code, title, detail, Vec::new());
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return AdminError::UnsupportedMediaType(problem).into_response();
    }
    let mut response = poem::Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(poem_openapi::types::ToJSON::to_json_string(&*problem.0));
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert("www-authenticate", poem::http::HeaderValue::from_static("Bearer realm=\"servicekonto-admin\""));
    }
    response
}
