//! "Passwort vergessen": a reset link by mail, then a new password.

use account_service::AccountError;
use minijinja::{Value, context};
use poem::{
    Response, handler,
    http::StatusCode,
    web::{Form, Query},
};
use serde::Deserialize;

use super::{
    PageCtx,
    form::{Errors, labels},
    signin::{LoginRequestForm, TokenQuery, link_failed},
};

/// `GET {issuer}/passwort-vergessen`
#[handler]
pub(crate) fn forgot_form(ctx: PageCtx) -> Response {
    ctx.render(
        "login_request.html",
        context! {
            heading => ctx.t("forgot_title"),
            intro => ctx.t("forgot_intro"),
            action => format!("{}/passwort-vergessen", ctx.base()),
            button => ctx.t("forgot_button"),
        },
    )
}

/// `POST {issuer}/passwort-vergessen`: always the same answer.
#[handler]
pub(crate) async fn forgot(ctx: PageCtx, Form(form): Form<LoginRequestForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    if let Err(e) = ctx.state.accounts.request_password_reset(ctx.site.environment, &form.login).await {
        return ctx.failure(e);
    }
    ctx.message(StatusCode::OK, "forgot_done_title", &[ctx.t("forgot_done_text")], Value::from(()))
}

fn render_reset(ctx: &PageCtx, status: StatusCode, token: &str, errors: &Errors) -> Response {
    ctx.render_status(
        status,
        "password_form.html",
        context! {
            heading => ctx.t("reset_title"),
            action => format!("{}/passwort-neu", ctx.base()),
            token => token,
            ask_current => false,
            errors => errors.value(),
            labels => labels(ctx),
        },
    )
}

/// `GET {issuer}/passwort-neu?token=…`: the form behind the reset link (the link stays unused).
#[handler]
pub(crate) async fn reset_form(ctx: PageCtx, Query(query): Query<TokenQuery>) -> Response {
    match ctx.state.accounts.check_reset_link(ctx.site.environment, &query.token).await {
        Ok(()) => render_reset(&ctx, StatusCode::OK, &query.token, &Errors::default()),
        Err(AccountError::Link(error)) => link_failed(&ctx, error, false, "reset_link_text"),
        Err(e) => ctx.failure(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
}

/// `POST {issuer}/passwort-neu`: sets the password; every session ends.
#[handler]
pub(crate) async fn reset(ctx: PageCtx, Form(form): Form<ResetForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let environment = ctx.site.environment;
    match ctx.state.accounts.reset_password(environment, &form.token, &form.password, &form.password_confirmation).await
    {
        Ok(account) => {
            // Every session of the account ended with the new password: its clients are told.
            crate::flows::backchannel::account_sessions_ended(&ctx.state, environment, account).await;
            ctx.clear_cookie(&ctx.site.session_cookie);
            let links = vec![context! { href => format!("{}/anmelden", ctx.base()), text => ctx.t("go_to_login") }];
            ctx.render(
                "message.html",
                context! { heading => ctx.t("reset_done_title"), paragraphs => vec![ctx.t("reset_done_text")], links => links, logged_in => false },
            )
        }
        Err(AccountError::PasswordPolicy(problems)) => {
            render_reset(&ctx, StatusCode::BAD_REQUEST, &form.token, &Errors::from_password(&ctx, &problems))
        }
        Err(AccountError::Link(error)) => link_failed(&ctx, error, false, "reset_link_text"),
        Err(e) => ctx.failure(e),
    }
}
