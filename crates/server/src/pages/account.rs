//! "Mein Konto": master data with provenance, changing them (a new e-mail address only after its
//! confirmation), the password, the activity list, the data export and deletion.

use std::collections::BTreeMap;

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
use tenant_registry::ClientAuthError;
use time::OffsetDateTime;

use super::{
    PageCtx,
    form::{Errors, countries, labels},
    format,
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

fn when(ctx: &PageCtx, at: OffsetDateTime) -> String {
    format::date_time(ctx.lang, at)
}

fn provenance(ctx: &PageCtx, value: &Attested) -> String {
    let date = |at: OffsetDateTime| format::date(ctx.lang, at.date());
    match (value.source, value.verified_at) {
        (Source::Eid, Some(at)) => ctx.t("eid_verified").replace("{date}", &date(at)),
        (Source::SelfAsserted, Some(at)) => ctx.t("self_asserted_verified").replace("{date}", &date(at)),
        _ => ctx.t("self_asserted"),
    }
}

/// The provenance of values shown on one line: one text when they agree, each otherwise.
fn provenance_of(ctx: &PageCtx, values: &[&Attested]) -> String {
    let mut texts: Vec<String> = values.iter().map(|v| provenance(ctx, v)).collect();
    texts.dedup();
    texts.join("; ")
}

/// The master data as label, value lines and provenance lines; the address as one block.
fn rows(ctx: &PageCtx, account: &Account) -> Vec<Value> {
    let m = &account.master_data;
    let row = |name: &str, lines: Vec<String>, provenance: Vec<String>| {
        context! { label => ctx.t(&format!("label_{name}")), lines => lines, provenance => provenance }
    };
    let single =
        |name: &str, attested: &Attested, value: String| row(name, vec![value], vec![provenance(ctx, attested)]);
    let mut rows = vec![
        single("given_names", &m.given_names, m.given_names.value.clone()),
        single("family_name", &m.family_name, m.family_name.value.clone()),
    ];
    if let Some(v) = &m.birth_name {
        rows.push(single("birth_name", v, v.value.clone()));
    }
    rows.push(single("date_of_birth", &m.date_of_birth, format::iso_date(ctx.lang, &m.date_of_birth.value)));
    if let Some(v) = &m.place_of_birth {
        rows.push(single("place_of_birth", v, v.value.clone()));
    }
    let abroad = ctx.country_abroad(&m.country.value);
    let block = format::address_block(
        &m.street.value,
        &m.house_number.value,
        &m.postal_code.value,
        &m.city.value,
        abroad.as_deref(),
    );
    let mut block_provenance =
        vec![provenance_of(ctx, &[&m.street, &m.house_number]), provenance_of(ctx, &[&m.postal_code, &m.city])];
    if abroad.is_some() {
        block_provenance.push(provenance(ctx, &m.country));
    }
    rows.push(context! { label => ctx.t("address"), lines => block, provenance => block_provenance });
    if let Some(v) = &m.phone_number {
        rows.push(single("phone_number", v, v.value.clone()));
    }
    rows.push(single("email", &account.email, account.email.value.clone()));
    rows
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
        // The form's own input format, whatever the page language (the hint says TT.MM.JJJJ).
        date_of_birth: format::iso_date(super::Lang::De, &m.date_of_birth.value),
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
        (EventKind::PasskeyAdded | EventKind::PasskeyRemoved, Some(name)) => format!("{text} ({name})"),
        (EventKind::LoginFactorsChanged, Some(factors)) => {
            format!("{text} ({})", super::passkeys::factors_text(ctx, factors))
        }
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
                        when => when(&ctx, e.at),
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
    // An organisation always keeps an administrator: its last one cannot simply disappear.
    match ctx.state.organisations.sole_administrations(ctx.site.environment, account.id).await {
        Ok(sole) if !sole.is_empty() => {
            let names: Vec<String> = sole.iter().map(|o| o.data.name.clone()).collect();
            let mut errors = Errors::default();
            errors.add("password", ctx.t("delete_last_org_admin").replace("{organisations}", &names.join(", ")));
            return render_delete(&ctx, StatusCode::CONFLICT, &errors);
        }
        Ok(_) => {}
        Err(e) => return ctx.failure(e),
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

/// A receiving service as the transfer log names it: its name and its purpose with the
/// purpose's language.
#[derive(Clone)]
struct Service {
    name: String,
    purpose: Option<(String, &'static str)>,
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
    // The service's name and purpose, once per client; a client deleted since keeps its entry
    // with what the log recorded.
    let mut services: BTreeMap<&str, Option<Service>> = BTreeMap::new();
    for client_id in log.iter().map(|t| t.client_id.as_str()).chain(given.iter().map(|c| c.client_id.as_str())) {
        if services.contains_key(client_id) {
            continue;
        }
        let service = match ctx.state.registry.active_client(environment, client_id).await {
            Ok((client, _)) => {
                let purpose = client.settings.purpose.as_ref().map(|p| {
                    let (text, lang) = p.text(ctx.lang.code());
                    (text.to_owned(), lang)
                });
                Some(Service { name: client.settings.name.clone(), purpose })
            }
            Err(ClientAuthError::Store(e)) => return ctx.failure(e),
            Err(_) => None,
        };
        services.insert(client_id, service);
    }
    let purpose_of = |client_id: &str| services.get(client_id).cloned().flatten().and_then(|s| s.purpose);
    let log: Vec<Value> = log
        .iter()
        .map(|t| {
            let purpose = purpose_of(&t.client_id);
            context! {
                when => when(ctx, t.at),
                recipient => t.recipient,
                purpose => purpose.as_ref().map(|(text, _)| text.clone()),
                purpose_lang => purpose.map(|(_, lang)| lang),
                claims => match &t.organisation {
                    Some(o) => format!("{} ({})", claim_labels(ctx, &t.claims), ctx.t("transfer_for_organisation").replace("{name}", &o.name)),
                    None => claim_labels(ctx, &t.claims),
                },
            }
        })
        .collect();
    let given: Vec<Value> = given
        .iter()
        .map(|c| {
            let name = services.get(c.client_id.as_str()).cloned().flatten().map(|s| s.name);
            context! {
                client_id => c.client_id,
                service => name.unwrap_or_else(|| c.client_id.clone()),
                claims => claim_labels(ctx, &c.claims),
                when => when(ctx, c.given_at),
            }
        })
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
