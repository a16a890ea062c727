//! "Meine Organisationen": creating an organisation, its data with provenance, members and
//! invitations, accepting an invitation, confirming the contact address, the data export and
//! deletion. The organisation is named by a hidden field or a query parameter `id`.

use account_service::{
    Account, LegalForm, Organisation, OrganisationData, OrganisationError, OrganisationField, OrganisationId,
    OrganisationStatus, RegisterEntry, RegisterKind, Role,
};
use minijinja::{Value, context};
use poem::{
    IntoResponse, Response, handler,
    http::{StatusCode, header},
    web::{Form, Query},
};
use serde::Deserialize;

use super::{
    PageCtx,
    form::{Errors, countries},
    format,
    signin::TokenQuery,
};

macro_rules! logged_in {
    ($ctx:expr) => {
        match $ctx.require_login() {
            Ok(account) => account.clone(),
            Err(redirect) => return redirect,
        }
    };
}

/// The organisation form's fields as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct OrganisationInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    legal_form: String,
    #[serde(default)]
    register_kind: String,
    #[serde(default)]
    register_court: String,
    #[serde(default)]
    register_number: String,
    #[serde(default)]
    street: String,
    #[serde(default)]
    house_number: String,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    contact_email: String,
}

impl OrganisationInput {
    fn of(organisation: &Organisation) -> Self {
        let d = &organisation.data;
        Self {
            name: d.name.clone(),
            legal_form: d.legal_form.as_str().to_owned(),
            register_kind: d.register.as_ref().map(|r| r.kind.as_str().to_owned()).unwrap_or_default(),
            register_court: d.register.as_ref().map(|r| r.court.clone()).unwrap_or_default(),
            register_number: d.register.as_ref().map(|r| r.number.clone()).unwrap_or_default(),
            street: d.street.clone(),
            house_number: d.house_number.clone(),
            postal_code: d.postal_code.clone(),
            city: d.city.clone(),
            country: d.country.clone(),
            contact_email: d.contact_email.clone(),
        }
    }

    /// The domain's data, or the form's own errors (unknown legal form or register type).
    fn data(&self) -> Result<OrganisationData, Vec<(&'static str, &'static str)>> {
        let mut problems = Vec::new();
        let legal_form = LegalForm::parse(&self.legal_form);
        if legal_form.is_none() {
            problems.push(("legal_form", "org_legal_form_invalid"));
        }
        let register = match self.register_kind.as_str() {
            "" => None,
            kind => match RegisterKind::parse(kind) {
                Some(kind) => Some(RegisterEntry {
                    court: self.register_court.clone(),
                    kind,
                    number: self.register_number.clone(),
                }),
                None => {
                    problems.push(("register_kind", "org_register_kind_invalid"));
                    None
                }
            },
        };
        match legal_form {
            Some(legal_form) if problems.is_empty() => Ok(OrganisationData {
                name: self.name.clone(),
                legal_form,
                register,
                street: self.street.clone(),
                house_number: self.house_number.clone(),
                postal_code: self.postal_code.clone(),
                city: self.city.clone(),
                country: if self.country.is_empty() { "DE".to_owned() } else { self.country.clone() },
                contact_email: self.contact_email.clone(),
            }),
            _ => Err(problems),
        }
    }
}

fn errors_of(ctx: &PageCtx, problems: &[(&'static str, &'static str)]) -> Errors {
    let mut errors = Errors::default();
    for (field, key) in problems {
        errors.add(field, ctx.t(key));
    }
    errors
}

fn choices(ctx: &PageCtx) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let forms = LegalForm::ALL.iter().map(|f| (f.as_str(), ctx.t(&format!("legal_form_{}", f.as_str())))).collect();
    let kinds = RegisterKind::ALL.iter().map(|k| k.as_str()).collect();
    (forms, kinds)
}

fn org_labels(ctx: &PageCtx) -> Value {
    let fields = [
        "name",
        "legal_form",
        "register_kind",
        "register_court",
        "register_number",
        "street",
        "house_number",
        "postal_code",
        "city",
        "country",
        "contact_email",
        "email",
    ];
    Value::from_iter(fields.iter().map(|f| (*f, ctx.t(&format!("org_label_{f}")))))
}

fn render_form(
    ctx: &PageCtx,
    status: StatusCode,
    input: &OrganisationInput,
    errors: &Errors,
    id: Option<OrganisationId>,
) -> Response {
    let (forms, kinds) = choices(ctx);
    let input = context! {
        name => input.name, legal_form => input.legal_form, register_kind => input.register_kind,
        register_court => input.register_court, register_number => input.register_number, street => input.street,
        house_number => input.house_number, postal_code => input.postal_code, city => input.city,
        country => input.country, contact_email => input.contact_email,
    };
    ctx.render_status(
        status,
        "organisation_form.html",
        context! {
            form => input, errors => errors.value(), labels => org_labels(ctx), legal_forms => forms,
            register_kinds => kinds, countries => countries(ctx), id => id.map(|id| id.to_string()),
        },
    )
}

/// The page for an organisation error that is not about a form field.
fn refused(ctx: &PageCtx, error: OrganisationError) -> Response {
    let (status, key) = match error {
        OrganisationError::TrustLevelTooLow { .. } => (StatusCode::FORBIDDEN, "org_trust_too_low"),
        OrganisationError::Forbidden => (StatusCode::NOT_FOUND, "org_not_found"),
        OrganisationError::Suspended => (StatusCode::CONFLICT, "org_suspended"),
        OrganisationError::LastAdministrator => (StatusCode::CONFLICT, "org_last_admin"),
        OrganisationError::Link => (StatusCode::BAD_REQUEST, "org_link_invalid"),
        OrganisationError::AlreadyMember => (StatusCode::CONFLICT, "org_already_member"),
        OrganisationError::Invalid(_) => (StatusCode::BAD_REQUEST, "org_invalid"),
        e @ OrganisationError::Unavailable(_) => return ctx.failure(e),
    };
    back_to_list(ctx, status, "org_refused_title", key)
}

/// A message page with the way back to "Meine Organisationen".
fn back_to_list(ctx: &PageCtx, status: StatusCode, heading: &str, text: &str) -> Response {
    let links = vec![context! { href => format!("{}/konto/organisationen", ctx.base()), text => ctx.t("org_back") }];
    ctx.render_status(
        status,
        "message.html",
        context! { heading => ctx.t(heading), paragraphs => vec![ctx.t(text)], links => links },
    )
}

/// `GET {issuer}/konto/organisationen`
#[handler]
pub(crate) async fn list(ctx: PageCtx) -> Response {
    let account = logged_in!(ctx);
    let organisations = &ctx.state.organisations;
    match organisations.of_account(ctx.site.environment, account.id).await {
        Ok(found) => {
            let rows: Vec<Value> = found
                .iter()
                .map(|(o, role)| {
                    context! {
                        id => o.id.to_string(), name => o.data.name.clone(),
                        legal_form => ctx.t(&format!("legal_form_{}", o.data.legal_form.as_str())),
                        role => ctx.t(&format!("org_role_{}", role.as_str())),
                        suspended => o.status == OrganisationStatus::Suspended,
                    }
                })
                .collect();
            ctx.render(
                "organisations.html",
                context! {
                    organisations => rows,
                    may_create => account.trust_level >= organisations.creation_level,
                    needed => ctx.t(&format!("trust_{}", organisations.creation_level.as_str())),
                },
            )
        }
        Err(e) => refused(&ctx, e),
    }
}

/// `GET {issuer}/konto/organisationen/neu`
#[handler]
pub(crate) fn create_form(ctx: PageCtx) -> Response {
    let _account = logged_in!(ctx);
    let input = OrganisationInput { country: "DE".into(), ..OrganisationInput::default() };
    render_form(&ctx, StatusCode::OK, &input, &Errors::default(), None)
}

#[derive(Debug, Deserialize)]
pub(crate) struct OrganisationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(flatten)]
    input: OrganisationInput,
}

/// `POST {issuer}/konto/organisationen/neu`
#[handler]
pub(crate) async fn create(ctx: PageCtx, Form(form): Form<OrganisationForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let data = match form.input.data() {
        Ok(data) => data,
        Err(problems) => {
            return render_form(&ctx, StatusCode::BAD_REQUEST, &form.input, &errors_of(&ctx, &problems), None);
        }
    };
    match ctx.state.organisations.create(&account, &data).await {
        Ok(organisation) => ctx.redirect(&format!("/konto/organisation?id={}&neu=1", organisation.id)),
        Err(OrganisationError::Invalid(problems)) => {
            render_form(&ctx, StatusCode::BAD_REQUEST, &form.input, &errors_of(&ctx, &problems), None)
        }
        Err(e) => refused(&ctx, e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct IdQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    neu: Option<String>,
}

fn parse_id(text: &str) -> Result<OrganisationId, OrganisationError> {
    text.parse().map_err(|_| OrganisationError::Forbidden)
}

/// The provenance line of a part of the organisation's data.
fn provenance(ctx: &PageCtx, organisation: &Organisation, field: OrganisationField) -> String {
    match organisation.verification(field) {
        Some(v) => ctx
            .t("org_verified")
            .replace("{evidence}", &v.evidence)
            .replace("{date}", &format::date(ctx.lang, v.at.date())),
        None => ctx.t("self_asserted"),
    }
}

async fn render_detail(
    ctx: &PageCtx,
    account: &Account,
    id: OrganisationId,
    success: Option<String>,
    error: Option<String>,
) -> Response {
    let environment = ctx.site.environment;
    let organisations = &ctx.state.organisations;
    let (organisation, role) = match organisations.as_member(environment, id, account.id).await {
        Ok(found) => found,
        Err(e) => return refused(ctx, e),
    };
    let (people, invitations) = match organisations.members(environment, id, account.id).await {
        Ok(found) => found,
        Err(e) => return refused(ctx, e),
    };
    let d = &organisation.data;
    let abroad = ctx.country_abroad(&d.country);
    let register = d.register.as_ref().map(|r| format!("{}, {} {}", r.court, r.kind.as_str(), r.number));
    let rows = vec![
        context! { label => ctx.t("org_label_name"), lines => vec![d.name.clone()], provenance => provenance(ctx, &organisation, OrganisationField::Name) },
        context! { label => ctx.t("org_label_legal_form"), lines => vec![ctx.t(&format!("legal_form_{}", d.legal_form.as_str()))], provenance => provenance(ctx, &organisation, OrganisationField::LegalForm) },
        context! { label => ctx.t("org_register"), lines => vec![register.unwrap_or_else(|| ctx.t("org_no_register_entry"))], provenance => if d.register.is_some() { provenance(ctx, &organisation, OrganisationField::Register) } else { String::new() } },
        context! { label => ctx.t("address"), lines => format::address_block(&d.street, &d.house_number, &d.postal_code, &d.city, abroad.as_deref()), provenance => provenance(ctx, &organisation, OrganisationField::Address) },
        context! { label => ctx.t("org_label_contact_email"), lines => vec![d.contact_email.clone()], provenance => match organisation.email_verified_at { Some(at) => ctx.t("self_asserted_verified").replace("{date}", &format::date(ctx.lang, at.date())), None => ctx.t("org_email_unconfirmed") } },
    ];
    let members: Vec<Value> = people
        .iter()
        .map(|(m, name)| {
            context! {
                account => m.account_id.to_string(), name => name, role => ctx.t(&format!("org_role_{}", m.role.as_str())),
                role_code => m.role.as_str(), me => m.account_id == account.id,
                since => format::date(ctx.lang, m.since.date()),
            }
        })
        .collect();
    let invitations: Vec<Value> = invitations
        .iter()
        .map(|l| {
            context! {
                email => l.email.clone(),
                role => l.role.map(|r| ctx.t(&format!("org_role_{}", r.as_str()))),
                until => format::date(ctx.lang, l.expires_at.date()),
            }
        })
        .collect();
    // Administrators see every release of the organisation's data, by whom.
    let mut transfers: Vec<Value> = Vec::new();
    if role == Role::Administrator {
        let found = match ctx.state.accounts.organisation_transfers(environment, &id.to_string()).await {
            Ok(found) => found,
            Err(e) => return ctx.failure(e),
        };
        for (person, t) in found {
            let who = people
                .iter()
                .find(|(m, _)| m.account_id == person)
                .map(|(_, name)| name.clone())
                .unwrap_or_else(|| ctx.t("org_former_member"));
            transfers.push(context! {
                when => format::date_time(ctx.lang, t.at), recipient => t.recipient, person => who,
                claims => t.claims.iter().map(|c| ctx.t(&format!("claim_{c}"))).collect::<Vec<_>>().join(", "),
            });
        }
    }
    let (status, error) = match error {
        Some(error) => (StatusCode::BAD_REQUEST, Some(error)),
        None => (StatusCode::OK, None),
    };
    ctx.render_status(
        status,
        "organisation.html",
        context! {
            id => id.to_string(), name => d.name.clone(), rows => rows, members => members, invitations => invitations,
            admin => role == Role::Administrator, suspended => organisation.status == OrganisationStatus::Suspended,
            transfers => transfers,
            success => success, error => error,
        },
    )
}

/// `GET {issuer}/konto/organisation?id=…`
#[handler]
pub(crate) async fn detail(ctx: PageCtx, Query(query): Query<IdQuery>) -> Response {
    let account = logged_in!(ctx);
    let id = match parse_id(&query.id) {
        Ok(id) => id,
        Err(e) => return refused(&ctx, e),
    };
    let success = query.neu.is_some().then(|| ctx.t("org_created"));
    render_detail(&ctx, &account, id, success, None).await
}

/// `GET {issuer}/konto/organisation/daten?id=…`
#[handler]
pub(crate) async fn edit_form(ctx: PageCtx, Query(query): Query<IdQuery>) -> Response {
    let account = logged_in!(ctx);
    let found = match parse_id(&query.id) {
        Ok(id) => ctx.state.organisations.as_member(ctx.site.environment, id, account.id).await,
        Err(e) => Err(e),
    };
    match found {
        Ok((organisation, Role::Administrator)) => render_form(
            &ctx,
            StatusCode::OK,
            &OrganisationInput::of(&organisation),
            &Errors::default(),
            Some(organisation.id),
        ),
        Ok(_) => refused(&ctx, OrganisationError::Forbidden),
        Err(e) => refused(&ctx, e),
    }
}

/// `POST {issuer}/konto/organisation/daten`
#[handler]
pub(crate) async fn update(ctx: PageCtx, Form(form): Form<OrganisationForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let id = match parse_id(&form.id) {
        Ok(id) => id,
        Err(e) => return refused(&ctx, e),
    };
    let data = match form.input.data() {
        Ok(data) => data,
        Err(problems) => {
            return render_form(&ctx, StatusCode::BAD_REQUEST, &form.input, &errors_of(&ctx, &problems), Some(id));
        }
    };
    match ctx.state.organisations.update(ctx.site.environment, id, account.id, &data).await {
        Ok(_) => render_detail(&ctx, &account, id, Some(ctx.t("org_saved")), None).await,
        Err(OrganisationError::Invalid(problems)) => {
            render_form(&ctx, StatusCode::BAD_REQUEST, &form.input, &errors_of(&ctx, &problems), Some(id))
        }
        Err(e) => refused(&ctx, e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    role: String,
}

/// `POST {issuer}/konto/organisation/einladen`
#[handler]
pub(crate) async fn invite(ctx: PageCtx, Form(form): Form<MemberForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let id = match parse_id(&form.id) {
        Ok(id) => id,
        Err(e) => return refused(&ctx, e),
    };
    let role = Role::parse(&form.role).unwrap_or(Role::Member);
    match ctx.state.organisations.invite(ctx.site.environment, id, &account, &form.email, role).await {
        Ok(()) => {
            let message = ctx.t("org_invited").replace("{email}", form.email.trim());
            render_detail(&ctx, &account, id, Some(message), None).await
        }
        Err(OrganisationError::Invalid(problems)) => {
            let key = problems.first().map_or("org_email_invalid", |(_, key)| *key);
            render_detail(&ctx, &account, id, None, Some(ctx.t(key))).await
        }
        Err(e) => refused(&ctx, e),
    }
}

/// `POST {issuer}/konto/organisation/rolle`
#[handler]
pub(crate) async fn set_role(ctx: PageCtx, Form(form): Form<MemberForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let (Ok(id), Ok(member), Some(role)) =
        (parse_id(&form.id), form.account.parse::<uuid::Uuid>(), Role::parse(&form.role))
    else {
        return refused(&ctx, OrganisationError::Forbidden);
    };
    match ctx.state.organisations.set_role(ctx.site.environment, id, account.id, member.into(), role).await {
        Ok(()) => render_detail(&ctx, &account, id, Some(ctx.t("org_role_saved")), None).await,
        Err(OrganisationError::LastAdministrator) => {
            render_detail(&ctx, &account, id, None, Some(ctx.t("org_last_admin"))).await
        }
        Err(e) => refused(&ctx, e),
    }
}

/// `POST {issuer}/konto/organisation/entfernen`: an administrator removes a member, or a
/// member leaves.
#[handler]
pub(crate) async fn remove(ctx: PageCtx, Form(form): Form<MemberForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let (Ok(id), Ok(member)) = (parse_id(&form.id), form.account.parse::<uuid::Uuid>()) else {
        return refused(&ctx, OrganisationError::Forbidden);
    };
    let member = member.into();
    match ctx.state.organisations.remove(ctx.site.environment, id, account.id, member).await {
        Ok(()) if member == account.id => back_to_list(&ctx, StatusCode::OK, "org_left_title", "org_left_text"),
        Ok(()) => render_detail(&ctx, &account, id, Some(ctx.t("org_member_removed")), None).await,
        Err(OrganisationError::LastAdministrator) => {
            render_detail(&ctx, &account, id, None, Some(ctx.t("org_last_admin"))).await
        }
        Err(e) => refused(&ctx, e),
    }
}

/// `POST {issuer}/konto/organisation/loeschen`
#[handler]
pub(crate) async fn delete(ctx: PageCtx, Form(form): Form<MemberForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    let id = match parse_id(&form.id) {
        Ok(id) => id,
        Err(e) => return refused(&ctx, e),
    };
    match ctx.state.organisations.delete(ctx.site.environment, id, account.id).await {
        Ok(()) => back_to_list(&ctx, StatusCode::OK, "org_deleted_title", "org_deleted_text"),
        Err(e) => refused(&ctx, e),
    }
}

/// `GET {issuer}/konto/organisation/export?id=…`: the organisation's data, members and open
/// invitations as JSON (for administrators, offered before the deletion).
#[handler]
pub(crate) async fn export(ctx: PageCtx, Query(query): Query<IdQuery>) -> Response {
    let account = logged_in!(ctx);
    let environment = ctx.site.environment;
    let organisations = &ctx.state.organisations;
    let id = match parse_id(&query.id) {
        Ok(id) => id,
        Err(e) => return refused(&ctx, e),
    };
    let organisation = match organisations.as_member(environment, id, account.id).await {
        Ok((organisation, Role::Administrator)) => organisation,
        Ok(_) => return refused(&ctx, OrganisationError::Forbidden),
        Err(e) => return refused(&ctx, e),
    };
    let (members, invitations) = match organisations.members(environment, id, account.id).await {
        Ok(found) => found,
        Err(e) => return refused(&ctx, e),
    };
    let rfc3339 =
        |at: time::OffsetDateTime| at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let body = serde_json::json!({
        "id": organisation.id,
        "environment": environment.as_str(),
        "data": organisation.data,
        "verifications": organisation.verifications.iter().map(|v| serde_json::json!({
            "field": v.field, "by": v.by, "evidence": v.evidence, "at": rfc3339(v.at),
        })).collect::<Vec<_>>(),
        "contact_email_confirmed_at": organisation.email_verified_at.map(rfc3339),
        "status": organisation.status,
        "created_at": rfc3339(organisation.created_at),
        "members": members.iter().map(|(m, name)| serde_json::json!({
            "name": name, "role": m.role, "since": rfc3339(m.since),
        })).collect::<Vec<_>>(),
        "open_invitations": invitations.iter().map(|l| serde_json::json!({
            "email": l.email, "role": l.role, "expires_at": rfc3339(l.expires_at),
        })).collect::<Vec<_>>(),
    });
    poem::web::Json(body)
        .with_header(header::CONTENT_DISPOSITION, "attachment; filename=\"organisation.json\"")
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response()
}

/// `GET {issuer}/organisationen/einladung?token=…`: the invitation, to accept after a login.
#[handler]
pub(crate) fn invitation(ctx: PageCtx, Query(query): Query<TokenQuery>) -> Response {
    if ctx.session.is_none() {
        if ctx.session_unknown {
            return ctx.unavailable();
        }
        let here = format!("/organisationen/einladung?token={}", query.token);
        let target: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        return ctx.redirect(&format!("/anmelden?return_to={target}"));
    }
    ctx.render("organisation_invitation.html", context! { token => query.token })
}

#[derive(Debug, Deserialize)]
pub(crate) struct AcceptForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST {issuer}/organisationen/einladung`
#[handler]
pub(crate) async fn accept(ctx: PageCtx, Form(form): Form<AcceptForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_failed();
    }
    let account = logged_in!(ctx);
    match ctx.state.organisations.accept(ctx.site.environment, &form.token, &account).await {
        Ok(organisation) => ctx.redirect(&format!("/konto/organisation?id={}", organisation.id)),
        Err(e) => refused(&ctx, e),
    }
}

/// `GET {issuer}/organisationen/adresse?token=…`: the contact address's confirmation link.
#[handler]
pub(crate) async fn confirm_address(ctx: PageCtx, Query(query): Query<TokenQuery>) -> Response {
    match ctx.state.organisations.confirm_email(ctx.site.environment, &query.token).await {
        Ok(organisation) => {
            let text = ctx.t("org_address_confirmed_text").replace("{name}", &organisation.data.name);
            ctx.message(StatusCode::OK, "org_address_confirmed_title", &[text], Value::from(()))
        }
        Err(e) => refused(&ctx, e),
    }
}
