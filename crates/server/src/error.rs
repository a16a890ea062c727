//! All mapping of errors to HTTP responses, in one place.
//!
//! Client errors get a stable code and a safe message; internal errors are logged once (inside
//! the request's span, so with its request id) and answered with an opaque 500.

use poem::{IntoResponse, Response, error::ResponseError, http::StatusCode, web::Json};
use serde_json::json;

/// Errors of the handlers of this server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Signing keys could not be read.
    #[error(transparent)]
    Keys(#[from] oidc_core::KeyError),
}

impl ResponseError for HttpError {
    fn status(&self) -> StatusCode {
        match self {
            HttpError::Keys(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        match self {
            HttpError::Keys(error) => internal(error),
        }
    }
}

fn internal(error: &dyn std::error::Error) -> Response {
    tracing::error!(error = %error, source = ?error.source().map(ToString::to_string), "internal error");
    body(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Interner Fehler. Bitte versuchen Sie es später erneut.")
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
        s if s.is_server_error() => internal(&error),
        s => body(s, "invalid_request", &error.to_string()),
    }
}
