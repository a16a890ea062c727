//! The pages of the online ID function: the start page with the prerequisites ("Zur Ausweis
//! App"), the TC token AusweisApp2 fetches, the refresh address it returns the browser to, the
//! test eID service of test systems, registration step 1 from the card, and linking the card
//! in "Mein Konto" with the differing data side by side.

use account_service::{AccountError, CardIdentity, UniqueField, validate_personal_data};
use eid_bridge::TestOutcome;
use minijinja::{Value, context};
use poem::{
    Response, handler,
    http::{StatusCode, header},
    web::{Form, Query},
};
use serde::Deserialize;

use super::{
    PageCtx,
    draft::{DRAFT_LIFETIME, Draft},
    form::{Errors, labels},
    format,
    registration::{load_draft, step1_done, store_draft, taken_errors, too_many_checks},
    signin::safe_return,
};
use crate::flows::eid::{self, EidFlowError, FLOW_TTL, Purpose};

/// The TC token URL handed to the citizen's AusweisApp2 (TR-03124-1 §2.2: the local eID-Client).
const EID_CLIENT: &str = "http://127.0.0.1:24727/eID-Client?tcTokenURL=";
/// The PIN of every test identity, told on the test page.
const TEST_PIN: &str = "123456";

fn eid_cookie(ctx: &PageCtx) -> String {
    format!("sk_eid_{}", ctx.site.environment.as_str())
}

fn link_cookie(ctx: &PageCtx) -> String {
    format!("sk_eid_link_{}", ctx.site.environment.as_str())
}

/// The `zweck` parameter's words for each purpose.
const PURPOSES: [(&str, Purpose); 4] = [
    ("anmelden", Purpose::Login),
    ("registrieren", Purpose::Register),
    ("hochstufen", Purpose::Upgrade),
    ("identifizieren", Purpose::Identify),
];

fn purpose_of(name: &str) -> Option<Purpose> {
    PURPOSES.iter().find(|(word, _)| *word == name).map(|(_, purpose)| *purpose)
}

fn purpose_name(purpose: Purpose) -> &'static str {
    PURPOSES.iter().find(|(_, p)| *p == purpose).map(|(word, _)| *word).unwrap_or_default()
}

fn not_offered(ctx: &PageCtx) -> Response {
    ctx.message(StatusCode::NOT_FOUND, "eid_not_offered_title", &[ctx.t("eid_not_offered_text")], Value::from(()))
}

fn tc_token_url(ctx: &PageCtx, reference: &str) -> String {
    format!("{}/eid/tc-token?ref={reference}", ctx.site.issuer)
}

/// The local AusweisApp2's address for this flow.
fn ausweisapp_url(ctx: &PageCtx, reference: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(tc_token_url(ctx, reference).as_bytes()).collect();
    format!("{EID_CLIENT}{encoded}")
}

#[derive(Debug, Deserialize)]
pub(crate) struct StartQuery {
    #[serde(default)]
    zweck: String,
    #[serde(default)]
    return_to: Option<String>,
    /// Set when an OIDC request needs trust level "hoch".
    #[serde(default)]
    stufe: Option<String>,
}

fn render_start(
    ctx: &PageCtx,
    status: StatusCode,
    purpose: Purpose,
    return_to: &str,
    level: bool,
    error: Option<String>,
) -> Response {
    let heading = match purpose {
        Purpose::Login => "eid_login_title",
        Purpose::Register => "eid_register_title",
        Purpose::Upgrade => "eid_upgrade_title",
        Purpose::Identify => "eid_identify_title",
    };
    let eid = ctx.state.eid.of(ctx.site.environment);
    let is_test = eid.is_some_and(|e| e.test_service.is_some());
    let is_test_server = eid.is_some_and(|e| e.test_server);
    ctx.render_status(
        status,
        "eid_start.html",
        context! {
            heading => ctx.t(heading), purpose => purpose_name(purpose), return_to => return_to,
            test_service => is_test, test_server => is_test_server, error => error, level_notice => level,
            one_time => purpose == Purpose::Identify,
            // From an authority's request the card can also identify once, without an account.
            offer_one_time => purpose == Purpose::Login && return_to.starts_with("/authorize?"),
            return_to_encoded => url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>(),
        },
    )
}

/// `GET {issuer}/eid?zweck=anmelden|registrieren|hochstufen`: the prerequisites, then "Zur
/// Ausweis App".
#[handler]
pub(crate) fn start_form(ctx: PageCtx, Query(query): Query<StartQuery>) -> Response {
    if ctx.state.eid.of(ctx.site.environment).is_none() {
        return not_offered(&ctx);
    }
    let Some(purpose) = purpose_of(&query.zweck) else {
        return ctx.message(
            StatusCode::BAD_REQUEST,
            "eid_bad_request_title",
            &[ctx.t("eid_bad_request_text")],
            Value::from(()),
        );
    };
    if purpose == Purpose::Upgrade
        && let Err(to_login) = ctx.require_login()
    {
        return to_login;
    }
    let return_to = safe_return(query.return_to.as_deref().unwrap_or("/konto"));
    render_start(&ctx, StatusCode::OK, purpose, return_to, query.stufe.as_deref() == Some("hoch"), None)
}

#[derive(Debug, Deserialize)]
pub(crate) struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    zweck: String,
    #[serde(default)]
    return_to: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    reader: Option<String>,
    #[serde(default)]
    pin: Option<String>,
}

/// `POST {issuer}/eid`: starts the eID session and sends the browser to AusweisApp2 (or, on a
/// test system, to the test eID service).
#[handler]
pub(crate) async fn start(ctx: PageCtx, Form(form): Form<StartForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let Some(eid) = ctx.state.eid.of(ctx.site.environment) else { return not_offered(&ctx) };
    let Some(purpose) = purpose_of(&form.zweck) else {
        return ctx.message(
            StatusCode::BAD_REQUEST,
            "eid_bad_request_title",
            &[ctx.t("eid_bad_request_text")],
            Value::from(()),
        );
    };
    let return_to = safe_return(&form.return_to).to_owned();
    if [&form.app, &form.reader, &form.pin].iter().any(|c| c.as_deref() != Some("ja")) {
        let error = Some(ctx.t("eid_prerequisites_missing"));
        return render_start(&ctx, StatusCode::BAD_REQUEST, purpose, &return_to, false, error);
    }
    let account = match purpose {
        Purpose::Upgrade => match ctx.require_login() {
            Ok(account) => Some(account.id),
            Err(to_login) => return to_login,
        },
        _ => None,
    };
    let is_test = eid.test_service.is_some();
    match eid::start(&ctx.state, ctx.site.environment, purpose, &return_to, account).await {
        Ok((reference, browser)) => {
            ctx.set_cookie(&eid_cookie(&ctx), &browser, Some(FLOW_TTL));
            if is_test {
                ctx.redirect(&format!("/eid/test-dienst?ref={reference}"))
            } else {
                Response::builder()
                    .status(StatusCode::SEE_OTHER)
                    .header(header::LOCATION, ausweisapp_url(&ctx, &reference))
                    .finish()
            }
        }
        Err(e) => flow_failed(&ctx, e, &return_to),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RefQuery {
    #[serde(default, rename = "ref")]
    reference: String,
    /// Appended by AusweisApp2 to the refresh address (TR-03124-1 §2.5).
    #[serde(default, rename = "ResultMajor")]
    result_major: Option<String>,
}

/// `GET {issuer}/eid/tc-token?ref=…`: the TC token, fetched once by AusweisApp2 (not the browser).
#[handler]
pub(crate) async fn tc_token(ctx: PageCtx, Query(query): Query<RefQuery>) -> Response {
    let flow = match eid::for_tc_token(&ctx.state, ctx.site.environment, &query.reference).await {
        Ok(flow) => flow,
        Err(EidFlowError::Unavailable(e)) => {
            crate::error::record_failure(&ctx.state, "eid.tc_token", e.as_ref());
            return Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body("eID flow store unavailable");
        }
        Err(_) => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body("unknown, expired or already fetched eID session");
        }
    };
    tracing::info!("TC token fetched");
    let refresh = format!("{}/eid/ergebnis?ref={}", ctx.site.issuer, query.reference);
    let token = eid_bridge::tc_token::render(&flow.server_session, &refresh, &refresh);
    Response::builder().content_type("text/xml; charset=utf-8").header(header::CACHE_CONTROL, "no-store").body(token)
}

/// `GET {issuer}/eid/test-dienst?ref=…`: the test eID service (test systems only).
#[handler]
pub(crate) async fn test_service_form(ctx: PageCtx, Query(query): Query<RefQuery>) -> Response {
    let Some(service) = ctx.state.eid.of(ctx.site.environment).and_then(|e| e.test_service.clone()) else {
        return not_offered(&ctx);
    };
    match eid::find(&ctx.state, ctx.site.environment, &query.reference).await {
        Ok(flow) if service.is_pending(&flow.server_session.session_id) => {
            render_test_service(&ctx, StatusCode::OK, &query.reference, None)
        }
        Ok(flow) => flow_failed(&ctx, EidFlowError::Unknown, &flow.return_to),
        Err(e) => flow_failed(&ctx, e, "/"),
    }
}

fn render_test_service(ctx: &PageCtx, status: StatusCode, reference: &str, error: Option<String>) -> Response {
    let Some(service) = ctx.state.eid.of(ctx.site.environment).and_then(|e| e.test_service.clone()) else {
        return not_offered(ctx);
    };
    let identities: Vec<Value> = service
        .identities()
        .iter()
        .map(|identity| {
            context! {
                given_names => identity.given_names, family_names => identity.family_names,
                date_of_birth => format::iso_date(ctx.lang, &identity.date_of_birth), city => identity.city,
            }
        })
        .collect();
    ctx.render_status(
        status,
        "eid_test_service.html",
        context! {
            reference => reference, identities => identities, error => error,
            ausweisapp_url => ausweisapp_url(ctx, reference),
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct TestServiceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "ref")]
    reference: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    pin: String,
    #[serde(default)]
    action: String,
}

/// `POST {issuer}/eid/test-dienst`: "reads the card" (the chosen test identity, PIN 123456) or
/// cancels, then goes on to the refresh address as AusweisApp2 would.
#[handler]
pub(crate) async fn test_service(ctx: PageCtx, Form(form): Form<TestServiceForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let Some(service) = ctx.state.eid.of(ctx.site.environment).and_then(|e| e.test_service.clone()) else {
        return not_offered(&ctx);
    };
    let Ok(flow) = eid::find(&ctx.state, ctx.site.environment, &form.reference).await else {
        return flow_failed(&ctx, EidFlowError::Unknown, "/");
    };
    let session_id = &flow.server_session.session_id;
    let outcome = if form.action == "cancel" {
        TestOutcome::Cancelled
    } else {
        if form.pin != TEST_PIN {
            return render_test_service(
                &ctx,
                StatusCode::BAD_REQUEST,
                &form.reference,
                Some(ctx.t("eid_test_wrong_pin")),
            );
        }
        match form.identity.parse::<usize>() {
            Ok(n) if n < service.identities().len() => TestOutcome::Identity(n),
            _ => {
                return render_test_service(
                    &ctx,
                    StatusCode::BAD_REQUEST,
                    &form.reference,
                    Some(ctx.t("eid_test_identity_missing")),
                );
            }
        }
    };
    if !service.complete(session_id, outcome) {
        return flow_failed(&ctx, EidFlowError::Unknown, &flow.return_to);
    }
    let major = if outcome == TestOutcome::Cancelled { "error" } else { "ok" };
    let result_major = format!("http://www.bsi.bund.de/ecard/api/1.1/resultmajor%23{major}");
    ctx.redirect(&format!("/eid/ergebnis?ref={}&ResultMajor={result_major}", form.reference))
}

/// The page for a flow that cannot go on.
fn flow_failed(ctx: &PageCtx, error: EidFlowError, return_to: &str) -> Response {
    let (status, text) = match &error {
        EidFlowError::NotOffered => return not_offered(ctx),
        EidFlowError::Unknown => (StatusCode::BAD_REQUEST, "eid_unknown_text"),
        EidFlowError::OtherBrowser => (StatusCode::FORBIDDEN, "eid_other_browser_text"),
        EidFlowError::Failed(_) => (StatusCode::BAD_REQUEST, "eid_failed_text"),
        EidFlowError::Incomplete(_) => (StatusCode::BAD_REQUEST, "eid_incomplete_text"),
        EidFlowError::Unavailable(e) => {
            crate::error::record_failure(&ctx.state, "eid", e.as_ref());
            (StatusCode::SERVICE_UNAVAILABLE, "eid_unavailable_text")
        }
    };
    let links = vec![context! { href => format!("{}{}", ctx.base(), safe_return(return_to)), text => ctx.t("back") }];
    ctx.message(status, "eid_failed_title", &[ctx.t(text)], Value::from(links))
}

/// `GET {issuer}/eid/ergebnis?ref=…&ResultMajor=…`: the refresh address. Fetches the card's
/// data once, in the browser that started, and continues by purpose.
#[handler]
pub(crate) async fn result(ctx: PageCtx, Query(query): Query<RefQuery>) -> Response {
    let browser = ctx.cookie(&eid_cookie(&ctx));
    let finished = eid::finish(&ctx.state, ctx.site.environment, &query.reference, browser.as_deref()).await;
    let (flow, card) = match finished {
        Ok(done) => done,
        Err(e) => {
            if !matches!(e, EidFlowError::OtherBrowser) {
                ctx.clear_cookie(&eid_cookie(&ctx));
            }
            let back =
                if query.result_major.as_deref().is_some_and(|m| !m.ends_with("#ok")) { "/anmelden" } else { "/" };
            return flow_failed(&ctx, e, back);
        }
    };
    ctx.clear_cookie(&eid_cookie(&ctx));
    tracing::info!(purpose = ?flow.purpose, "eID result received");
    match flow.purpose {
        Purpose::Login => login(&ctx, card, &flow.return_to).await,
        Purpose::Register => register(&ctx, card),
        Purpose::Upgrade => compare(&ctx, card, flow.account),
        Purpose::Identify => crate::http::authorize::one_time_identification(&ctx, card, &flow.return_to).await,
    }
}

async fn login(ctx: &PageCtx, card: CardIdentity, return_to: &str) -> Response {
    match ctx.state.accounts.login_with_card(ctx.site.environment, &card.key).await {
        Ok(Some(logged_in)) => {
            ctx.state.metrics.login("success");
            ctx.replace_session(&logged_in.token).await;
            ctx.redirect(safe_return(return_to))
        }
        // No account knows this card: offer registration with the data just read.
        Ok(None) => {
            let now = ctx.state.accounts.now();
            let mut draft = Draft::new(now);
            draft.card = Some(card);
            store_draft(ctx, &draft);
            let links = vec![
                context! { href => format!("{}/registrierung/ausweis", ctx.base()), text => ctx.t("eid_register_with_card") },
                context! { href => format!("{}/anmelden", ctx.base()), text => ctx.t("go_to_login") },
            ];
            ctx.message(StatusCode::OK, "eid_no_account_title", &[ctx.t("eid_no_account_text")], Value::from(links))
        }
        Err(AccountError::NotActivated) => {
            ctx.message(StatusCode::FORBIDDEN, "eid_failed_title", &[ctx.t("not_activated")], Value::from(()))
        }
        Err(e) => ctx.failure(e),
    }
}

fn register(ctx: &PageCtx, card: CardIdentity) -> Response {
    let mut draft = load_draft(ctx).unwrap_or_else(|| Draft::new(ctx.state.accounts.now()));
    draft.card = Some(card);
    draft.personal_done = false;
    store_draft(ctx, &draft);
    ctx.redirect("/registrierung/ausweis")
}

/// Upgrade: the differing data side by side (or the note that all agree); the citizen confirms
/// the link with the page's button, the card's data wait sealed in a cookie of this browser.
fn compare(ctx: &PageCtx, card: CardIdentity, account: Option<oidc_core::AccountId>) -> Response {
    let current = match ctx.require_login() {
        Ok(current) if Some(current.id) == account => current,
        Ok(_) => return flow_failed(ctx, EidFlowError::OtherBrowser, "/konto"),
        Err(to_login) => return to_login,
    };
    // Dates as on every page; the stored form stays what the radio buttons choose between.
    let differences: Vec<Value> = current
        .master_data
        .differences(&card.data)
        .into_iter()
        .map(|d| {
            let shown = |value: &str| match d.field {
                "date_of_birth" if !value.is_empty() => format::iso_date(ctx.lang, value),
                _ => value.to_owned(),
            };
            context! { field => d.field, own => shown(&d.own), card => shown(&d.card) }
        })
        .collect();
    let mut draft = Draft::new(ctx.state.accounts.now());
    draft.card = Some(card);
    ctx.set_cookie(&link_cookie(ctx), &ctx.state.pages.drafts.seal(ctx.site.environment, &draft), Some(DRAFT_LIFETIME));
    ctx.render("eid_compare.html", context! { differences => differences, labels => labels(ctx) })
}

/// `POST {issuer}/konto/ausweis`: links the card, keeping the citizen's own value where chosen.
#[handler]
pub(crate) async fn link(ctx: PageCtx, Form(form): Form<std::collections::HashMap<String, String>>) -> Response {
    if !ctx.csrf_ok(form.get("csrf").map(String::as_str).unwrap_or_default()) {
        return ctx.csrf_failed();
    }
    let account = match ctx.require_login() {
        Ok(account) => account.clone(),
        Err(to_login) => return to_login,
    };
    let sealed = ctx.cookie(&link_cookie(&ctx)).unwrap_or_default();
    let Some(card) =
        ctx.state.pages.drafts.open(ctx.site.environment, &sealed, ctx.state.accounts.now()).and_then(|d| d.card)
    else {
        return flow_failed(&ctx, EidFlowError::Unknown, "/konto");
    };
    let keep_own: Vec<String> =
        form.iter().filter(|(_, choice)| choice.as_str() == "own").map(|(f, _)| f.clone()).collect();
    match ctx.state.accounts.link_card(ctx.site.environment, account.id, &card, &keep_own).await {
        Ok(_) => {}
        Err(AccountError::Taken(taken)) if taken.contains(&UniqueField::Eid) => {
            ctx.clear_cookie(&link_cookie(&ctx));
            return ctx.message(StatusCode::CONFLICT, "eid_failed_title", &[ctx.t("eid_card_taken")], Value::from(()));
        }
        Err(e) => return ctx.failure(e),
    }
    ctx.clear_cookie(&link_cookie(&ctx));
    // The card was just used: the session becomes an eID session at level "hoch".
    match ctx.state.accounts.login_with_card(ctx.site.environment, &card.key).await {
        Ok(Some(logged_in)) => ctx.replace_session(&logged_in.token).await,
        Ok(None) => return flow_failed(&ctx, EidFlowError::Unknown, "/konto"),
        Err(e) => return ctx.failure(e),
    }
    let links = vec![context! { href => format!("{}/konto", ctx.base()), text => ctx.t("my_account") }];
    ctx.message(StatusCode::OK, "eid_linked_title", &[ctx.t("eid_linked_text")], Value::from(links))
}

/// Registration step 1 from the card: the card's rows for display, the address as one block.
fn card_rows(ctx: &PageCtx, card: &CardIdentity) -> Vec<(&'static str, Vec<String>)> {
    let d = &card.data;
    let mut rows = vec![("given_names", vec![d.given_names.clone()]), ("family_name", vec![d.family_name.clone()])];
    if let Some(birth_name) = &d.birth_name {
        rows.push(("birth_name", vec![birth_name.clone()]));
    }
    rows.push(("date_of_birth", vec![format::iso_date(ctx.lang, &d.date_of_birth)]));
    if let Some(place) = &d.place_of_birth {
        rows.push(("place_of_birth", vec![place.clone()]));
    }
    rows.push(("address", format::address_block(&d.street, &d.house_number, &d.postal_code, &d.city, None)));
    rows
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub(crate) struct CardRegistrationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    username: String,
}

fn render_card_registration(
    ctx: &PageCtx,
    status: StatusCode,
    card: &CardIdentity,
    form: &CardRegistrationForm,
    errors: &Errors,
) -> Response {
    ctx.render_status(
        status,
        "register_eid.html",
        context! { step => 1, card => card_rows(ctx, card), form => form, errors => errors.value(), labels => labels(ctx) },
    )
}

/// `GET {issuer}/registrierung/ausweis`: step 1 with the card's data; the citizen adds
/// e-mail, username and optionally a phone number.
#[handler]
pub(crate) fn card_registration_form(ctx: PageCtx) -> Response {
    let Some(draft) = load_draft(&ctx) else { return ctx.redirect("/eid?zweck=registrieren&return_to=/konto") };
    let Some(card) = &draft.card else { return ctx.redirect("/registrierung") };
    let form = CardRegistrationForm {
        email: draft.input.email.clone(),
        phone_number: draft.input.phone_number.clone(),
        username: draft.input.username.clone(),
        ..CardRegistrationForm::default()
    };
    render_card_registration(&ctx, StatusCode::OK, card, &form, &Errors::default())
}

/// `POST {issuer}/registrierung/ausweis`: checks step 1 as the normal form does.
#[handler]
pub(crate) async fn card_registration(ctx: PageCtx, Form(form): Form<CardRegistrationForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let Some(draft) = load_draft(&ctx) else { return ctx.redirect("/eid?zweck=registrieren&return_to=/konto") };
    let Some(card) = draft.card.clone() else { return ctx.redirect("/registrierung") };
    let input = card.data.as_input(&form.username, &form.email, &form.phone_number);
    let now = ctx.state.accounts.now();
    let (data, hints) = match validate_personal_data(&input, now.date()) {
        Ok(valid) => valid,
        Err(problems) => {
            return render_card_registration(
                &ctx,
                StatusCode::BAD_REQUEST,
                &card,
                &form,
                &Errors::from_fields(&ctx, &problems),
            );
        }
    };
    match ctx.state.accounts.username_taken(ctx.site.environment, &data.username, ctx.client_ip()).await {
        Ok(false) => {}
        Ok(true) => {
            let taken = taken_errors(&ctx, &[UniqueField::Username]);
            return render_card_registration(&ctx, StatusCode::CONFLICT, &card, &form, &taken);
        }
        Err(AccountError::Throttled { .. }) => return too_many_checks(&ctx),
        Err(e) => return ctx.failure(e),
    }
    step1_done(&ctx, draft, input, &data, &hints)
}
