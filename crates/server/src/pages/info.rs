//! Pages without forms: the start page, the accessibility and privacy statements, the style sheet.

use minijinja::context;
use poem::{IntoResponse, Response, handler, http::header};

use super::PageCtx;

/// `GET {issuer}/`
#[handler]
pub(crate) fn start(ctx: PageCtx) -> Response {
    ctx.render("start.html", context! {})
}

/// `GET {issuer}/barrierefreiheit`: "Erklärung zur Barrierefreiheit" with a feedback contact.
#[handler]
pub(crate) fn accessibility(ctx: PageCtx) -> Response {
    ctx.render("accessibility.html", context! { contact => ctx.state.pages.accessibility_contact.clone() })
}

/// `GET {issuer}/datenschutz`: the privacy statement citizens accept at registration.
#[handler]
pub(crate) fn privacy(ctx: PageCtx) -> Response {
    ctx.render("privacy.html", context! { version => ctx.state.pages.privacy_version.clone() })
}

/// `GET {issuer}/static/style.css`
#[handler]
pub(crate) fn stylesheet() -> Response {
    include_str!("../../static/style.css")
        .with_content_type("text/css; charset=utf-8")
        .with_header(header::CACHE_CONTROL, "public, max-age=3600")
        .into_response()
}

/// `GET {issuer}/static/form_post.js`: submits a form_post response (CSP allows only own scripts).
#[handler]
pub(crate) fn form_post_script() -> Response {
    include_str!("../../static/form_post.js")
        .with_content_type("text/javascript; charset=utf-8")
        .with_header(header::CACHE_CONTROL, "public, max-age=3600")
        .into_response()
}
