//! Login and logout, activation links and their resend.

use account_service::{AccountError, LinkError};
use minijinja::{Value, context};
use poem::{
    Response, handler,
    http::StatusCode,
    web::{Form, Query},
};
use serde::Deserialize;

use super::PageCtx;
use crate::flows::backchannel::end_session;

/// Only paths of this environment may be returned to (no open redirect).
pub(super) fn safe_return(path: &str) -> &str {
    // Browsers drop tabs and newlines and read `\` as `/`, so `/\t/evil.example` would leave us.
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.contains("://")
        && !path.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok { path } else { "/konto" }
}

#[cfg(test)]
mod tests {
    use super::safe_return;

    #[test]
    fn only_paths_of_this_site_are_returned_to() {
        for (given, expected) in [
            ("/konto/daten", "/konto/daten"),
            ("/authorize?client_id=x&scope=openid", "/authorize?client_id=x&scope=openid"),
            ("//evil.example", "/konto"),
            ("/\\evil.example", "/konto"),
            ("/\t/evil.example", "/konto"),
            ("https://evil.example", "/konto"),
            ("/x?next=https://evil.example", "/konto"),
            ("konto", "/konto"),
        ] {
            assert_eq!(safe_return(given), expected, "{given:?}");
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    return_to: Option<String>,
    /// OIDC `login_hint` prefills the username.
    #[serde(default)]
    login_hint: Option<String>,
}

pub(super) fn render_login(
    ctx: &PageCtx,
    status: StatusCode,
    username: &str,
    return_to: &str,
    message: Option<String>,
    not_activated: bool,
) -> Response {
    ctx.render_status(
        status,
        "login.html",
        context! {
            username => username, return_to => return_to, message => message, not_activated => not_activated,
            return_to_encoded => url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>(),
            for_authority => return_to.starts_with("/authorize?") || return_to.starts_with("/saml/weiter?"),
            passkeys_offered => super::passkeys::offered(ctx),
        },
    )
}

/// `GET {issuer}/anmelden`
#[handler]
pub(crate) fn login_form(ctx: PageCtx, Query(query): Query<LoginQuery>) -> Response {
    let return_to = safe_return(query.return_to.as_deref().unwrap_or("/konto"));
    render_login(&ctx, StatusCode::OK, query.login_hint.as_deref().unwrap_or_default(), return_to, None, false)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    return_to: String,
}

/// `POST {issuer}/anmelden`: one generic message for a wrong username or password.
#[handler]
pub(crate) async fn login(ctx: PageCtx, Form(form): Form<LoginForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let return_to = safe_return(&form.return_to);
    let result = ctx.state.accounts.login(ctx.site.environment, &form.username, &form.password, ctx.client_ip()).await;
    ctx.state.metrics.login(match &result {
        Ok(_) => "success",
        Err(AccountError::InvalidCredentials) => "invalid_credentials",
        Err(AccountError::Throttled { .. }) => "throttled",
        Err(AccountError::NotActivated) => "not_activated",
        Err(AccountError::PasskeyRequired(_)) => "passkey_required",
        Err(_) => "error",
    });
    match result {
        Ok(logged_in) => {
            ctx.replace_session(&logged_in.token).await;
            ctx.redirect(return_to)
        }
        Err(AccountError::InvalidCredentials) => {
            render_login(&ctx, StatusCode::UNAUTHORIZED, &form.username, return_to, Some(ctx.t("login_failed")), false)
        }
        Err(AccountError::Throttled { retry_after }) => {
            let message = ctx.t("login_throttled").replace("{seconds}", &retry_after.as_secs().max(1).to_string());
            render_login(&ctx, StatusCode::TOO_MANY_REQUESTS, &form.username, return_to, Some(message), false)
        }
        Err(AccountError::NotActivated) => {
            render_login(&ctx, StatusCode::FORBIDDEN, &form.username, return_to, None, true)
        }
        Err(AccountError::PasskeyRequired(ceremony)) => {
            super::passkeys::login_ceremony(&ctx, &ceremony, "/anmelden/zweiter-faktor", return_to.to_owned())
        }
        Err(AccountError::Passkey(error)) => {
            tracing::warn!(%error, "passkey step after the password not started");
            ctx.failure(AccountError::Passkey(error))
        }
        Err(e) => ctx.failure(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST {issuer}/abmelden`: ends the session on every node.
#[handler]
pub(crate) async fn logout(ctx: PageCtx, Form(form): Form<CsrfForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    if let Some(token) = &ctx.session_token
        && let Err(e) = end_session(&ctx.state, ctx.site.environment, token).await
    {
        return ctx.failure(e);
    }
    ctx.clear_cookie(&ctx.site.session_cookie);
    let links = vec![context! { href => format!("{}/anmelden", ctx.base()), text => ctx.t("go_to_login") }];
    ctx.render(
        "message.html",
        context! { heading => ctx.t("logged_out_title"), paragraphs => vec![ctx.t("logged_out_text")], links => links, logged_in => false },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    #[serde(default)]
    pub(crate) token: String,
}

/// The page for a link that does not work; for activation links with the resend form.
pub(crate) fn link_failed(ctx: &PageCtx, error: LinkError, resend: bool, extra: &str) -> Response {
    let (heading, text) = match error {
        LinkError::Invalid => ("link_invalid_title", "link_invalid_text"),
        LinkError::Expired => ("link_expired_title", "link_expired_text"),
    };
    ctx.render_status(
        StatusCode::BAD_REQUEST,
        "message.html",
        context! { heading => ctx.t(heading), paragraphs => vec![ctx.t(text), ctx.t(extra)], resend => resend },
    )
}

/// `GET {issuer}/aktivierung?token=…`: the link from the activation mail.
#[handler]
pub(crate) async fn activate(ctx: PageCtx, Query(query): Query<TokenQuery>) -> Response {
    match ctx.state.accounts.activate(ctx.site.environment, &query.token).await {
        Ok(_) => {
            let links = vec![context! { href => format!("{}/anmelden", ctx.base()), text => ctx.t("go_to_login") }];
            ctx.render(
                "message.html",
                context! { heading => ctx.t("activated_title"), paragraphs => vec![ctx.t("activated_text")], links => links },
            )
        }
        Err(AccountError::Link(error)) => link_failed(&ctx, error, true, "resend_text"),
        Err(AccountError::NotFound) => link_failed(&ctx, LinkError::Invalid, false, "go_to_start"),
        Err(e) => ctx.failure(e),
    }
}

/// `GET {issuer}/aktivierung/erneut`
#[handler]
pub(crate) fn resend_activation_form(ctx: PageCtx) -> Response {
    ctx.render(
        "login_request.html",
        context! {
            heading => ctx.t("resend_title"),
            intro => ctx.t("resend_intro"),
            action => format!("{}/aktivierung/erneut", ctx.base()),
            button => ctx.t("resend_activation"),
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginRequestForm {
    #[serde(default)]
    pub(crate) csrf: String,
    #[serde(default)]
    pub(crate) login: String,
}

/// `POST {issuer}/aktivierung/erneut`: the same answer whether or not such an account exists.
#[handler]
pub(crate) async fn resend_activation(ctx: PageCtx, Form(form): Form<LoginRequestForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    if let Err(e) = ctx.state.accounts.resend_activation(ctx.site.environment, &form.login).await {
        return ctx.failure(e);
    }
    ctx.message(StatusCode::OK, "resend_done_title", &[ctx.t("resend_done_text")], Value::from(()))
}
