//! Registration in three steps, as the citizen's guide describes it: "Persönliche Daten",
//! "Vergabe des Passwortes", "Prüfen und Sichern". Nothing is stored before "Sichern".

use account_service::{
    AccountError, PersonalData, PersonalDataInput, PrivacyConsent, Registration, UniqueField, check_password,
    validate_personal_data,
};
use minijinja::{Value, context};
use poem::{Response, handler, http::StatusCode, web::Form};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    PageCtx,
    draft::{DRAFT_LIFETIME, Draft},
    form::{Errors, countries, field_message, labels},
    format,
};

pub(super) fn draft_cookie(ctx: &PageCtx) -> String {
    format!("sk_registration_{}", ctx.site.environment.as_str())
}

pub(super) fn load_draft(ctx: &PageCtx) -> Option<Draft> {
    let cookie = ctx.cookie(&draft_cookie(ctx))?;
    ctx.state.pages.drafts.open(ctx.site.environment, &cookie, ctx.state.accounts.now())
}

pub(super) fn store_draft(ctx: &PageCtx, draft: &Draft) {
    ctx.set_cookie(&draft_cookie(ctx), &ctx.state.pages.drafts.seal(ctx.site.environment, draft), Some(DRAFT_LIFETIME));
}

fn render_personal(ctx: &PageCtx, status: StatusCode, input: &PersonalDataInput, errors: &Errors) -> Response {
    render_step1(ctx, status, input, errors, false)
}

/// 429: this address asked for too many usernames; the page says to come back later.
pub(super) fn too_many_checks(ctx: &PageCtx) -> Response {
    ctx.message(
        StatusCode::TOO_MANY_REQUESTS,
        "registration_throttled_title",
        &[ctx.t("registration_throttled_text")],
        Value::from(()),
    )
}

/// Step 1 again because a value is taken. It may be the citizen's own account that was never
/// activated (a lost mail, a registration cut short): the page offers the way on. Said for
/// every taken value, so it tells nothing about the account's state; the mail goes only to the
/// stored address.
fn render_taken(ctx: &PageCtx, input: &PersonalDataInput, taken: &[UniqueField]) -> Response {
    render_step1(ctx, StatusCode::CONFLICT, input, &taken_errors(ctx, taken), true)
}

fn render_step1(
    ctx: &PageCtx,
    status: StatusCode,
    input: &PersonalDataInput,
    errors: &Errors,
    resend_offered: bool,
) -> Response {
    ctx.render_status(
        status,
        "register_personal.html",
        context! { step => 1, form => input, errors => errors.value(), labels => labels(ctx), countries => countries(ctx), resend_offered => resend_offered },
    )
}

/// `GET {issuer}/registrierung`: step 1, filled from the draft when going back.
#[handler]
pub(crate) fn personal_form(ctx: PageCtx) -> Response {
    let draft = load_draft(&ctx).unwrap_or_default();
    render_personal(&ctx, StatusCode::OK, &draft.input, &Errors::default())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PersonalForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    input: PersonalDataInput,
}

/// `POST {issuer}/registrierung`: checks step 1; on success on to step 2.
#[handler]
pub(crate) async fn personal(ctx: PageCtx, Form(form): Form<PersonalForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let now = ctx.state.accounts.now();
    let (data, hints) = match validate_personal_data(&form.input, now.date()) {
        Ok(valid) => valid,
        Err(problems) => {
            return render_personal(&ctx, StatusCode::BAD_REQUEST, &form.input, &Errors::from_fields(&ctx, &problems));
        }
    };
    match ctx.state.accounts.username_taken(ctx.site.environment, &data.username, ctx.client_ip()).await {
        Ok(false) => {}
        Ok(true) => return render_taken(&ctx, &form.input, &[UniqueField::Username]),
        Err(AccountError::Throttled { .. }) => return too_many_checks(&ctx),
        Err(e) => return ctx.failure(e),
    }
    let mut draft = load_draft(&ctx).unwrap_or_else(|| Draft::new(now));
    // Typed in by hand: whatever a card said before no longer describes this draft.
    draft.card = None;
    step1_done(&ctx, draft, form.input, &data, &hints)
}

/// Step 1 passed (typed in, or from the card): keeps it in the draft and goes on to step 2, or
/// straight to step 3 when a password was chosen already for the same username and address.
pub(super) fn step1_done(
    ctx: &PageCtx,
    mut draft: Draft,
    input: PersonalDataInput,
    data: &PersonalData,
    hints: &[account_service::Hint],
) -> Response {
    let previous = validate_personal_data(&draft.input, ctx.state.accounts.now().date()).ok();
    // A password was checked against the username and e-mail address; when they change, it must
    // be chosen again.
    if previous.is_none_or(|(p, _)| {
        !p.username.eq_ignore_ascii_case(&data.username) || !p.email.eq_ignore_ascii_case(&data.email)
    }) {
        draft.password_hash = None;
        draft.privacy_accepted_at = None;
    }
    draft.input = input;
    draft.personal_done = true;
    draft.hints = hints.iter().map(|h| field_message(ctx, h.field, h.code, &h.message)).collect();
    store_draft(ctx, &draft);
    if draft.password_hash.is_some() {
        ctx.redirect("/registrierung/pruefen")
    } else {
        ctx.redirect("/registrierung/passwort")
    }
}

pub(super) fn taken_errors(ctx: &PageCtx, taken: &[UniqueField]) -> Errors {
    let mut errors = Errors::default();
    for field in taken {
        match field {
            UniqueField::Username => errors.add("username", ctx.t("username_taken")),
            UniqueField::Email => errors.add("email", ctx.t("email_taken")),
            // Told on a page of its own by the caller: no field of the form is wrong.
            UniqueField::Eid | UniqueField::Passkey => {}
        }
    }
    errors
}

/// The draft with step 1 done and its data validated, or the way back to step 1.
fn step1(ctx: &PageCtx) -> Result<(Draft, PersonalData), Response> {
    let now = ctx.state.accounts.now();
    let draft = load_draft(ctx).filter(|d| d.personal_done).ok_or_else(|| ctx.redirect("/registrierung"))?;
    let (data, _) = validate_personal_data(&draft.input, now.date()).map_err(|_| ctx.redirect("/registrierung"))?;
    Ok((draft, data))
}

fn render_password(ctx: &PageCtx, status: StatusCode, draft: &Draft, errors: &Errors) -> Response {
    ctx.render_status(
        status,
        "register_password.html",
        context! { step => 2, hints => draft.hints, errors => errors.value(), labels => labels(ctx) },
    )
}

/// `GET {issuer}/registrierung/passwort`: step 2, the conditions shown before typing.
#[handler]
pub(crate) fn password_form(ctx: PageCtx) -> Response {
    match step1(&ctx) {
        Ok((draft, _)) => render_password(&ctx, StatusCode::OK, &draft, &Errors::default()),
        Err(back) => back,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
    #[serde(default)]
    privacy: Option<String>,
}

/// `POST {issuer}/registrierung/passwort`: enforces the password policy and the privacy
/// statement; the password is hashed at once and only the hash is kept.
#[handler]
pub(crate) async fn password(ctx: PageCtx, Form(form): Form<PasswordForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let (mut draft, data) = match step1(&ctx) {
        Ok(step) => step,
        Err(back) => return back,
    };
    let problems = check_password(&form.password, &form.password_confirmation, &data.username, &data.email);
    let mut errors = Errors::from_password(&ctx, &problems);
    if form.privacy.as_deref() != Some("accepted") {
        errors.add("privacy", ctx.t("privacy_required"));
    }
    if !errors.is_empty() {
        return render_password(&ctx, StatusCode::BAD_REQUEST, &draft, &errors);
    }
    match ctx.state.accounts.hash_password(form.password).await {
        Ok(hash) => draft.password_hash = Some(hash),
        Err(e) => return ctx.failure(e),
    }
    draft.privacy_accepted_at = Some(ctx.state.accounts.now().unix_timestamp());
    store_draft(&ctx, &draft);
    ctx.redirect("/registrierung/pruefen")
}

/// Step 3's rows: field name and display lines, in form order; the address as one block.
fn review_rows(data: &PersonalData, ctx: &PageCtx) -> Vec<(&'static str, Vec<String>)> {
    let mut rows =
        vec![("given_names", vec![data.given_names.clone()]), ("family_name", vec![data.family_name.clone()])];
    if let Some(birth_name) = &data.birth_name {
        rows.push(("birth_name", vec![birth_name.clone()]));
    }
    rows.push(("date_of_birth", vec![format::date(ctx.lang, data.date_of_birth)]));
    if let Some(place) = &data.place_of_birth {
        rows.push(("place_of_birth", vec![place.clone()]));
    }
    let abroad = ctx.country_abroad(&data.country);
    let block =
        format::address_block(&data.street, &data.house_number, &data.postal_code, &data.city, abroad.as_deref());
    rows.push(("address", block));
    if let Some(phone) = &data.phone_number {
        rows.push(("phone_number", vec![phone.clone()]));
    }
    rows.extend([("email", vec![data.email.clone()]), ("username", vec![data.username.clone()])]);
    rows
}

/// Both steps done, or the way back to the first one missing.
fn complete(ctx: &PageCtx) -> Result<(Draft, PersonalData, String, OffsetDateTime), Response> {
    let (draft, data) = step1(ctx)?;
    let hash = draft.password_hash.clone().ok_or_else(|| ctx.redirect("/registrierung/passwort"))?;
    let accepted = draft
        .privacy_accepted_at
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| ctx.redirect("/registrierung/passwort"))?;
    Ok((draft, data, hash, accepted))
}

/// `GET {issuer}/registrierung/pruefen`: everything on one page, "Ändern" per step.
#[handler]
pub(crate) fn review(ctx: PageCtx) -> Response {
    match complete(&ctx) {
        Ok((_, data, _, _)) => ctx.render(
            "register_review.html",
            context! { step => 3, review => Value::from_iter(review_rows(&data, &ctx)), labels => labels(&ctx), errors => Errors::default().value() },
        ),
        Err(back) => back,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SaveForm {
    #[serde(default)]
    csrf: String,
}

/// `POST {issuer}/registrierung/pruefen`, "Sichern": stores the account and sends the
/// activation mail.
#[handler]
pub(crate) async fn save(ctx: PageCtx, Form(form): Form<SaveForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let (draft, data, password_hash, accepted_at) = match complete(&ctx) {
        Ok(complete) => complete,
        Err(back) => return back,
    };
    let email = data.email.clone();
    let registration = Registration {
        data,
        password_hash,
        privacy_consent: PrivacyConsent { version: ctx.state.pages.privacy_version.clone(), accepted_at },
        card: draft.card.clone(),
    };
    match ctx.state.accounts.register(ctx.site.environment, registration).await {
        Ok(mail_sent) => {
            ctx.clear_cookie(&draft_cookie(&ctx));
            let text = if mail_sent { ctx.t("registered_text") } else { ctx.t("registered_mail_failed") };
            ctx.render(
                "message.html",
                context! {
                    heading => ctx.t("registered_title"),
                    paragraphs => vec![text, email.clone()],
                    resend => !mail_sent,
                    resend_login => email,
                },
            )
        }
        Err(AccountError::Taken(taken)) if taken.contains(&UniqueField::Eid) => {
            ctx.clear_cookie(&draft_cookie(&ctx));
            ctx.message(StatusCode::CONFLICT, "eid_failed_title", &[ctx.t("eid_card_taken")], Value::from(()))
        }
        // Taken since step 1: back to step 1 with the message at the field; the draft stays.
        Err(AccountError::Taken(taken)) => render_taken(&ctx, &draft.input, &taken),
        Err(e) => ctx.failure(e),
    }
}
