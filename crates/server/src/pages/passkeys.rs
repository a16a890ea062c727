//! Passkeys: "Mein Konto › Passkeys" (add after the password or a fresh card login, rename,
//! remove, "Passwort und Passkey"), the login with a passkey alone, and the passkey step after
//! the password. The browser side is `static/passkey.js`: it runs the ceremony whose options the
//! page carries and posts the answer with the form (no fetch: the CSP allows none).

use account_service::{AccountError, AuthMethod, LoginFactors, PasskeyCeremony, PasskeyError, Reauthentication};
use minijinja::{Value, context};
use poem::{Response, handler, http::StatusCode, web::Form};
use serde::Deserialize;
use uuid::Uuid;

use super::{PageCtx, format, signin};

macro_rules! logged_in {
    ($ctx:expr) => {
        match $ctx.require_login() {
            Ok(account) => account.clone(),
            Err(redirect) => return redirect,
        }
    };
}

/// The page that runs a ceremony: `mode` is `create` or `get`; `action` receives the answer
/// with `hidden` fields besides it.
fn ceremony_page(
    ctx: &PageCtx,
    ceremony: &PasskeyCeremony,
    mode: &str,
    action: &str,
    heading: &str,
    hidden: Vec<(&str, String)>,
) -> Response {
    let hidden: Vec<Value> =
        hidden.into_iter().map(|(name, value)| context! { name => name, value => value }).collect();
    ctx.render(
        "passkey.html",
        context! {
            heading => ctx.t(heading),
            intro => ctx.t(&format!("{heading}_intro")),
            mode => mode,
            action => format!("{}{action}", ctx.base()),
            ceremony => ceremony.id.clone(),
            options => ceremony.options.to_string(),
            hidden => hidden,
        },
    )
}

/// The status and message for a passkey step that failed.
fn problem(ctx: &PageCtx, error: PasskeyError) -> (StatusCode, String) {
    let (status, key) = match error {
        PasskeyError::Unavailable => (StatusCode::NOT_FOUND, "passkey_unavailable"),
        PasskeyError::Expired => (StatusCode::BAD_REQUEST, "passkey_expired"),
        PasskeyError::Rejected => (StatusCode::BAD_REQUEST, "passkey_rejected"),
        PasskeyError::Unknown => (StatusCode::UNAUTHORIZED, "passkey_unknown"),
        PasskeyError::Duplicate => (StatusCode::CONFLICT, "passkey_duplicate"),
        PasskeyError::PasswordFirst => (StatusCode::FORBIDDEN, "passkey_password_first"),
        PasskeyError::ReauthenticationNeeded => (StatusCode::BAD_REQUEST, "passkey_reauthenticate"),
        PasskeyError::NoPasskey => (StatusCode::CONFLICT, "passkey_none_yet"),
        PasskeyError::LastPasskey => (StatusCode::CONFLICT, "passkey_last"),
        PasskeyError::InvalidName => (StatusCode::BAD_REQUEST, "passkey_name_invalid"),
    };
    (status, ctx.t(key))
}

/// "Mein Konto › Passkeys" with `success` or `error` shown.
async fn render_list(ctx: &PageCtx, status: StatusCode, success: Option<String>, error: Option<String>) -> Response {
    let account = logged_in!(ctx);
    let environment = ctx.site.environment;
    let passkeys = match ctx.state.accounts.passkeys(environment, account.id).await {
        Ok(passkeys) => passkeys,
        Err(e) => return ctx.failure(e),
    };
    let rows: Vec<Value> = passkeys
        .iter()
        .map(|p| {
            context! {
                id => p.id.to_string(),
                name => p.name.clone(),
                created => format::date_time(ctx.lang, p.created_at),
                last_used => p.last_used_at.map(|at| format::date_time(ctx.lang, at)),
            }
        })
        .collect();
    // A card login of the last ten minutes stands in for the password (an account registered
    // with the card may have none it knows).
    let card_session = ctx.session.as_ref().is_some_and(|(session, _)| session.method == AuthMethod::Eid);
    ctx.render_status(
        status,
        "passkeys.html",
        context! {
            passkeys => rows,
            available => ctx.state.accounts.passkeys_available(environment),
            both => account.login_factors == LoginFactors::PasswordAndPasskey,
            card_session => card_session,
            success => success,
            error => error,
        },
    )
}

/// The list again after a change: with `success` (a text key) or the refusal's message.
async fn list_after(ctx: &PageCtx, result: Result<(), AccountError>, success: &str) -> Response {
    match result {
        Ok(()) => render_list(ctx, StatusCode::OK, Some(ctx.t(success)), None).await,
        Err(AccountError::Passkey(error)) => {
            let (status, message) = problem(ctx, error);
            render_list(ctx, status, None, Some(message)).await
        }
        Err(e) => ctx.failure(e),
    }
}

/// `GET {issuer}/konto/passkeys`
#[handler]
pub(crate) async fn list(ctx: PageCtx) -> Response {
    render_list(&ctx, StatusCode::OK, None, None).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `POST {issuer}/konto/passkeys/neu`: the password (or a fresh card login), then the
/// browser's ceremony.
#[handler]
pub(crate) async fn add(ctx: PageCtx, Form(form): Form<AddForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let proof = match (&ctx.session, form.password.is_empty()) {
        (Some((session, _)), true) => Reauthentication::RecentCardLogin(session),
        _ => Reauthentication::Password(&form.password),
    };
    match ctx.state.accounts.start_passkey_registration(ctx.site.environment, account.id, proof).await {
        Ok(ceremony) => ceremony_page(
            &ctx,
            &ceremony,
            "create",
            "/konto/passkeys/neu/abschluss",
            "passkey_add_title",
            vec![("name", form.name)],
        ),
        Err(AccountError::WrongPassword) => {
            render_list(&ctx, StatusCode::UNAUTHORIZED, None, Some(ctx.t("wrong_password"))).await
        }
        Err(AccountError::Passkey(error)) => {
            let (status, message) = problem(&ctx, error);
            render_list(&ctx, status, None, Some(message)).await
        }
        Err(e) => ctx.failure(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    return_to: String,
}

/// `POST {issuer}/konto/passkeys/neu/abschluss`: the browser's answer.
#[handler]
pub(crate) async fn finish_add(ctx: PageCtx, Form(form): Form<AnswerForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let result = ctx
        .state
        .accounts
        .finish_passkey_registration(ctx.site.environment, account.id, &form.ceremony, &form.name, &form.answer)
        .await;
    match result {
        Ok(passkey) => {
            let message = ctx.t("passkey_added").replace("{name}", &passkey.name);
            render_list(&ctx, StatusCode::OK, Some(message), None).await
        }
        Err(AccountError::Passkey(error)) => {
            let (status, message) = problem(&ctx, error);
            render_list(&ctx, status, None, Some(message)).await
        }
        Err(e) => ctx.failure(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasskeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
}

/// `POST {issuer}/konto/passkeys/umbenennen`
#[handler]
pub(crate) async fn rename(ctx: PageCtx, Form(form): Form<PasskeyForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let result = match form.id.parse::<Uuid>() {
        Ok(id) => ctx.state.accounts.rename_passkey(ctx.site.environment, account.id, id, &form.name).await,
        Err(_) => Err(AccountError::Passkey(PasskeyError::Unknown)),
    };
    list_after(&ctx, result, "passkey_renamed").await
}

/// `POST {issuer}/konto/passkeys/entfernen`
#[handler]
pub(crate) async fn remove(ctx: PageCtx, Form(form): Form<PasskeyForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let result = match form.id.parse::<Uuid>() {
        Ok(id) => ctx.state.accounts.remove_passkey(ctx.site.environment, account.id, id).await,
        Err(_) => Err(AccountError::Passkey(PasskeyError::Unknown)),
    };
    list_after(&ctx, result, "passkey_removed").await
}

#[derive(Debug, Deserialize)]
pub(crate) struct FactorsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    factors: String,
}

/// `POST {issuer}/konto/passkeys/anmeldeverfahren`: password alone, or password and passkey.
#[handler]
pub(crate) async fn factors(ctx: PageCtx, Form(form): Form<FactorsForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let Some(factors) = LoginFactors::parse(&form.factors) else {
        return render_list(&ctx, StatusCode::BAD_REQUEST, None, Some(ctx.t("passkey_factors_invalid"))).await;
    };
    let result = ctx.state.accounts.set_login_factors(ctx.site.environment, account.id, factors).await;
    list_after(&ctx, result, "passkey_factors_saved").await
}

#[derive(Debug, Deserialize)]
pub(crate) struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    return_to: String,
}

/// `POST {issuer}/anmelden/passkey`: a login with a passkey alone.
#[handler]
pub(crate) async fn login_start(ctx: PageCtx, Form(form): Form<StartForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let return_to = signin::safe_return(&form.return_to).to_owned();
    match ctx.state.accounts.start_passkey_login(ctx.site.environment).await {
        Ok(ceremony) => login_ceremony(&ctx, &ceremony, "/anmelden/passkey/abschluss", return_to),
        Err(AccountError::Passkey(error)) => login_failed(&ctx, error, &return_to),
        Err(e) => ctx.failure(e),
    }
}

/// The page that asks for a passkey to log in (alone, or after the password).
pub(super) fn login_ceremony(ctx: &PageCtx, ceremony: &PasskeyCeremony, action: &str, return_to: String) -> Response {
    ceremony_page(ctx, ceremony, "get", action, "passkey_login_title", vec![("return_to", return_to)])
}

fn login_failed(ctx: &PageCtx, error: PasskeyError, return_to: &str) -> Response {
    let (status, message) = problem(ctx, error);
    signin::render_login(ctx, status, "", return_to, Some(message), false)
}

/// `POST {issuer}/anmelden/passkey/abschluss` and `…/zweiter-faktor`: the browser's answer.
async fn login_finish(ctx: PageCtx, form: AnswerForm, second_factor: bool) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let return_to = signin::safe_return(&form.return_to);
    let environment = ctx.site.environment;
    let accounts = &ctx.state.accounts;
    let result = if second_factor {
        accounts.finish_second_factor(environment, &form.ceremony, &form.answer).await
    } else {
        accounts.finish_passkey_login(environment, &form.ceremony, &form.answer).await
    };
    ctx.state.metrics.login(match &result {
        Ok(_) => "success",
        Err(AccountError::Passkey(_)) => "invalid_credentials",
        Err(AccountError::NotActivated) => "not_activated",
        Err(_) => "error",
    });
    match result {
        Ok(logged_in) => {
            ctx.replace_session(&logged_in.token).await;
            ctx.redirect(return_to)
        }
        Err(AccountError::Passkey(error)) => login_failed(&ctx, error, return_to),
        Err(AccountError::NotActivated) => signin::render_login(&ctx, StatusCode::FORBIDDEN, "", return_to, None, true),
        Err(e) => ctx.failure(e),
    }
}

/// `POST {issuer}/anmelden/passkey/abschluss`
#[handler]
pub(crate) async fn login_finish_alone(ctx: PageCtx, Form(form): Form<AnswerForm>) -> Response {
    login_finish(ctx, form, false).await
}

/// `POST {issuer}/anmelden/zweiter-faktor`
#[handler]
pub(crate) async fn login_finish_second(ctx: PageCtx, Form(form): Form<AnswerForm>) -> Response {
    login_finish(ctx, form, true).await
}

/// `GET {issuer}/static/passkey.js`
#[handler]
pub(crate) fn script() -> Response {
    use poem::{IntoResponse, http::header};
    include_str!("../../static/passkey.js")
        .with_content_type("text/javascript; charset=utf-8")
        .with_header(header::CACHE_CONTROL, "public, max-age=3600")
        .into_response()
}

/// Whether the login page offers passkeys.
pub(super) fn offered(ctx: &PageCtx) -> bool {
    ctx.state.accounts.passkeys_available(ctx.site.environment)
}

/// The event detail of a passkey event, for the activity list.
pub(super) fn factors_text(ctx: &PageCtx, detail: &str) -> String {
    ctx.t(&format!("factors_{detail}"))
}
