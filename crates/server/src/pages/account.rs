//! "Mein Konto": master data with provenance, changing them (a new e-mail address only after its
//! confirmation), the password, the activity list, the data export and deletion.

use account_service::{
    Account, AccountError, Attested, EventKind, PersonalDataInput, Source, UniqueField, validate_personal_data,
};
use minijinja::{Value, context};
use poem::{
    IntoResponse, Response, handler,
    http::{StatusCode, header},
    web::{Form, Query},
};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    PageCtx,
    form::{Errors, countries, labels},
    signin::{TokenQuery, link_failed},
};

macro_rules! logged_in {
    ($ctx:expr) => {
        match $ctx.require_login() {
            Ok(account) => account.clone(),
            Err(redirect) => return redirect,
        }
    };
}

fn when(at: OffsetDateTime) -> String {
    format!("{:02}.{:02}.{:04} {:02}:{:02} UTC", at.day(), u8::from(at.month()), at.year(), at.hour(), at.minute())
}

fn date(at: OffsetDateTime) -> String {
    format!("{:02}.{:02}.{:04}", at.day(), u8::from(at.month()), at.year())
}

/// `YYYY-MM-DD` as `DD.MM.YYYY`.
fn german_date(iso: &str) -> String {
    let parts: Vec<&str> = iso.split('-').collect();
    match parts.as_slice() {
        [y, m, d] => format!("{d}.{m}.{y}"),
        _ => iso.to_owned(),
    }
}

fn provenance(ctx: &PageCtx, value: &Attested) -> String {
    match (value.source, value.verified_at) {
        (Source::Eid, Some(at)) => ctx.t("eid_verified").replace("{date}", &date(at)),
        (Source::SelfAsserted, Some(at)) => ctx.t("self_asserted_verified").replace("{date}", &date(at)),
        _ => ctx.t("self_asserted"),
    }
}

fn rows(ctx: &PageCtx, account: &Account) -> Vec<Value> {
    let m = &account.master_data;
    let mut fields: Vec<(&str, &Attested, String)> = vec![
        ("given_names", &m.given_names, m.given_names.value.clone()),
        ("family_name", &m.family_name, m.family_name.value.clone()),
    ];
    if let Some(v) = &m.birth_name {
        fields.push(("birth_name", v, v.value.clone()));
    }
    fields.push(("date_of_birth", &m.date_of_birth, german_date(&m.date_of_birth.value)));
    if let Some(v) = &m.place_of_birth {
        fields.push(("place_of_birth", v, v.value.clone()));
    }
    fields.extend([
        ("street", &m.street, m.street.value.clone()),
        ("house_number", &m.house_number, m.house_number.value.clone()),
        ("postal_code", &m.postal_code, m.postal_code.value.clone()),
        ("city", &m.city, m.city.value.clone()),
        ("country", &m.country, ctx.t(&format!("country_{}", m.country.value))),
    ]);
    if let Some(v) = &m.phone_number {
        fields.push(("phone_number", v, v.value.clone()));
    }
    fields.extend([("email", &account.email, account.email.value.clone())]);
    fields
        .into_iter()
        .map(|(name, attested, value)| {
            context! { label => ctx.t(&format!("label_{name}")), value => value, provenance => provenance(ctx, attested) }
        })
        .collect()
}

fn render_overview(ctx: &PageCtx, account: &Account, success: Vec<String>) -> Response {
    ctx.render(
        "account.html",
        context! {
            username => account.username,
            trust_level => ctx.t(&format!("trust_{}", account.trust_level.as_str())),
            trust_level_code => account.trust_level.as_str(),
            rows => rows(ctx, account),
            success => success,
        },
    )
}

/// `GET {issuer}/konto`
#[handler]
pub(crate) fn overview(ctx: PageCtx) -> Response {
    let account = logged_in!(ctx);
    render_overview(&ctx, &account, Vec::new())
}

fn input_of(account: &Account) -> PersonalDataInput {
    let m = &account.master_data;
    PersonalDataInput {
        given_names: m.given_names.value.clone(),
        family_name: m.family_name.value.clone(),
        birth_name: m.birth_name.as_ref().map(|v| v.value.clone()).unwrap_or_default(),
        date_of_birth: german_date(&m.date_of_birth.value),
        place_of_birth: m.place_of_birth.as_ref().map(|v| v.value.clone()).unwrap_or_default(),
        street_and_number: format!("{} {}", m.street.value, m.house_number.value),
        postal_code: m.postal_code.value.clone(),
        city: m.city.value.clone(),
        country: m.country.value.clone(),
        phone_number: m.phone_number.as_ref().map(|v| v.value.clone()).unwrap_or_default(),
        email: account.email.value.clone(),
        username: account.username.clone(),
    }
}

fn render_edit(ctx: &PageCtx, status: StatusCode, input: &PersonalDataInput, errors: &Errors) -> Response {
    ctx.render_status(
        status,
        "account_edit.html",
        context! { form => input, errors => errors.value(), labels => labels(ctx), countries => countries(ctx) },
    )
}

/// `GET {issuer}/konto/daten`
#[handler]
pub(crate) fn data_form(ctx: PageCtx) -> Response {
    let account = logged_in!(ctx);
    render_edit(&ctx, StatusCode::OK, &input_of(&account), &Errors::default())
}

#[derive(Debug, Deserialize)]
pub(crate) struct DataForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    input: PersonalDataInput,
}

/// `POST {issuer}/konto/daten`
#[handler]
pub(crate) async fn change_data(ctx: PageCtx, Form(form): Form<DataForm>) -> Response {
    let account = logged_in!(ctx);
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let mut input = form.input;
    // The username cannot be changed: it is every later login's key.
    input.username = account.username.clone();
    let data = match validate_personal_data(&input, ctx.state.accounts.now().date()) {
        Ok((data, _)) => data,
        Err(problems) => {
            return render_edit(&ctx, StatusCode::BAD_REQUEST, &input, &Errors::from_fields(&ctx, &problems));
        }
    };
    let environment = ctx.site.environment;
    match ctx.state.accounts.update_master_data(environment, account.id, &data).await {
        Ok(change) => {
            let mut success = Vec::new();
            if !change.changed.is_empty() {
                success.push(ctx.t("data_saved"));
            }
            if data.email != account.email.value {
                let key = if change.email_confirmation_sent {
                    "email_confirmation_sent"
                } else {
                    "email_confirmation_failed"
                };
                success.push(ctx.t(key).replace("{email}", &data.email));
            }
            if success.is_empty() {
                success.push(ctx.t("data_unchanged"));
            }
            match ctx.state.accounts.account(environment, account.id).await {
                Ok(account) => render_overview(&ctx, &account, success),
                Err(e) => ctx.failure(e),
            }
        }
        Err(AccountError::Taken(taken)) if taken.contains(&UniqueField::Email) => {
            let mut errors = Errors::default();
            errors.add("email", ctx.t("email_taken"));
            render_edit(&ctx, StatusCode::CONFLICT, &input, &errors)
        }
        Err(e) => ctx.failure(e),
    }
}

/// `GET {issuer}/konto/email?token=…`: the link sent to a new e-mail address.
#[handler]
pub(crate) async fn confirm_email(ctx: PageCtx, Query(query): Query<TokenQuery>) -> Response {
    match ctx.state.accounts.confirm_email_change(ctx.site.environment, &query.token).await {
        Ok(email) => ctx.render(
            "message.html",
            context! { heading => ctx.t("email_changed_title"), paragraphs => vec![ctx.t("email_changed_text").replace("{email}", &email)] },
        ),
        Err(AccountError::Link(error)) => link_failed(&ctx, error, false, "go_to_start"),
        Err(AccountError::Taken(_)) => {
            ctx.message(StatusCode::CONFLICT, "link_invalid_title", &[ctx.t("email_taken")], Value::from(()))
        }
        Err(AccountError::NotFound) => link_failed(&ctx, account_service::LinkError::Invalid, false, "go_to_start"),
        Err(e) => ctx.failure(e),
    }
}

fn render_password(ctx: &PageCtx, status: StatusCode, errors: &Errors) -> Response {
    ctx.render_status(
        status,
        "password_form.html",
        context! {
            heading => ctx.t("change_password"),
            action => format!("{}/konto/passwort", ctx.base()),
            ask_current => true,
            errors => errors.value(),
            labels => labels(ctx),
        },
    )
}

/// `GET {issuer}/konto/passwort`
#[handler]
pub(crate) fn password_change_form(ctx: PageCtx) -> Response {
    let _ = logged_in!(ctx);
    render_password(&ctx, StatusCode::OK, &Errors::default())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasswordChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
}

/// `POST {issuer}/konto/passwort`: other sessions end; this browser gets a new one.
#[handler]
pub(crate) async fn change_password(ctx: PageCtx, Form(form): Form<PasswordChangeForm>) -> Response {
    let account = logged_in!(ctx);
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let result = ctx
        .state
        .accounts
        .change_password(
            ctx.site.environment,
            account.id,
            &form.current_password,
            &form.password,
            &form.password_confirmation,
        )
        .await;
    match result {
        Ok(logged_in) => {
            // Every earlier session ended with the old password: their clients are told.
            crate::flows::backchannel::account_sessions_ended(&ctx.state, ctx.site.environment, account.id).await;
            ctx.set_cookie(&ctx.site.session_cookie, &logged_in.token, None);
            match ctx.state.accounts.account(ctx.site.environment, account.id).await {
                Ok(account) => render_overview(&ctx, &account, vec![ctx.t("password_changed")]),
                Err(e) => ctx.failure(e),
            }
        }
        Err(AccountError::WrongPassword) => {
            let mut errors = Errors::default();
            errors.add("current_password", ctx.t("wrong_password"));
            render_password(&ctx, StatusCode::BAD_REQUEST, &errors)
        }
        Err(AccountError::PasswordPolicy(problems)) => {
            render_password(&ctx, StatusCode::BAD_REQUEST, &Errors::from_password(&ctx, &problems))
        }
        Err(e) => ctx.failure(e),
    }
}

fn event_text(ctx: &PageCtx, kind: EventKind, detail: Option<&str>) -> String {
    let text = ctx.t(&format!("event_{}", kind.as_str()));
    match (kind, detail) {
        (EventKind::LoginSucceeded, Some(method)) => format!("{text} ({})", ctx.t(&format!("method_{method}"))),
        _ => text,
    }
}

/// `GET {issuer}/konto/aktivitaet`
#[handler]
pub(crate) async fn activity(ctx: PageCtx) -> Response {
    let account = logged_in!(ctx);
    match ctx.state.accounts.events(ctx.site.environment, account.id).await {
        Ok(events) => {
            let events: Vec<Value> = events
                .iter()
                .map(|e| {
                    context! {
                        when => when(e.at),
                        iso => e.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                        what => event_text(&ctx, e.kind, e.detail.as_deref()),
                    }
                })
                .collect();
            ctx.render("activity.html", context! { events => events })
        }
        Err(e) => ctx.failure(e),
    }
}

/// `GET {issuer}/konto/export`: everything stored about the citizen as a JSON download.
#[handler]
pub(crate) async fn export(ctx: PageCtx) -> Response {
    let account = logged_in!(ctx);
    match ctx.state.accounts.export(ctx.site.environment, account.id).await {
        Ok(export) => match serde_json::to_string_pretty(&export) {
            Ok(json) => json
                .with_content_type("application/json; charset=utf-8")
                .with_header(header::CONTENT_DISPOSITION, "attachment; filename=\"servicekonto-daten.json\"")
                .with_header(header::CACHE_CONTROL, "no-store")
                .into_response(),
            Err(e) => ctx.failure(e),
        },
        Err(e) => ctx.failure(e),
    }
}

fn render_delete(ctx: &PageCtx, status: StatusCode, errors: &Errors) -> Response {
    ctx.render_status(status, "delete.html", context! { errors => errors.value(), labels => labels(ctx) })
}

/// `GET {issuer}/konto/loeschen`
#[handler]
pub(crate) fn delete_form(ctx: PageCtx) -> Response {
    let _ = logged_in!(ctx);
    render_delete(&ctx, StatusCode::OK, &Errors::default())
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

/// `POST {issuer}/konto/loeschen`: confirmed with the password.
#[handler]
pub(crate) async fn delete(ctx: PageCtx, Form(form): Form<DeleteForm>) -> Response {
    let account = logged_in!(ctx);
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    match ctx.state.accounts.delete(ctx.site.environment, account.id, &form.password).await {
        Ok(()) => {
            crate::flows::backchannel::account_sessions_ended(&ctx.state, ctx.site.environment, account.id).await;
            ctx.clear_cookie(&ctx.site.session_cookie);
            ctx.render(
                "message.html",
                context! { heading => ctx.t("deleted_title"), paragraphs => vec![ctx.t("deleted_text")], logged_in => false },
            )
        }
        Err(AccountError::WrongPassword) => {
            let mut errors = Errors::default();
            errors.add("password", ctx.t("wrong_password"));
            render_delete(&ctx, StatusCode::BAD_REQUEST, &errors)
        }
        Err(e) => ctx.failure(e),
    }
}

fn claim_labels(ctx: &PageCtx, claims: &[String]) -> String {
    claims.iter().map(|c| ctx.t(&format!("claim_{c}"))).collect::<Vec<_>>().join(", ")
}

async fn render_transfers(ctx: &PageCtx, account: &Account, success: Vec<String>) -> Response {
    let environment = ctx.site.environment;
    let (log, given) = match (
        ctx.state.accounts.transfers(environment, account.id).await,
        ctx.state.accounts.consents(environment, account.id).await,
    ) {
        (Ok(log), Ok(given)) => (log, given),
        (Err(e), _) | (_, Err(e)) => return ctx.failure(e),
    };
    let log: Vec<Value> = log
        .iter()
        .map(|t| context! { when => when(t.at), recipient => t.recipient, claims => claim_labels(ctx, &t.claims) })
        .collect();
    let given: Vec<Value> = given
        .iter()
        .map(
            |c| context! { client_id => c.client_id, claims => claim_labels(ctx, &c.claims), when => when(c.given_at) },
        )
        .collect();
    ctx.render("transfers.html", context! { transfers => log, consents => given, success => success })
}

/// `GET {issuer}/konto/uebermittlungen`: which authority received which data, and the consents.
#[handler]
pub(crate) async fn transfers(ctx: PageCtx) -> Response {
    let account = logged_in!(ctx);
    render_transfers(&ctx, &account, Vec::new()).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct WithdrawForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client_id: String,
}

/// `POST {issuer}/konto/zustimmungen/widerrufen`
#[handler]
pub(crate) async fn withdraw_consent(ctx: PageCtx, Form(form): Form<WithdrawForm>) -> Response {
    let account = logged_in!(ctx);
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    if let Err(e) = ctx.state.accounts.withdraw_consent(ctx.site.environment, account.id, &form.client_id).await {
        return ctx.failure(e);
    }
    // Without consent the client must not go on refreshing its tokens.
    if let Some(client_id) = oidc_core::ClientId::parse(&form.client_id)
        && let Err(e) = ctx.state.refresh_tokens.revoke_for_client(account.id, &client_id).await
    {
        return ctx.failure(e);
    }
    render_transfers(&ctx, &account, vec![ctx.t("consent_withdrawn")]).await
}
