//! `GET|POST {issuer}/authorize` and the consent page `POST {issuer}/zustimmung`.

use std::time::Duration;

use account_service::{Account, CardIdentity, Session, claim_preview};
use minijinja::{Value, context};
use oidc_core::{OAuthError, OAuthErrorCode, TrustLevel, authorize::ResponseMode, verify_id_token_hint};
use poem::{
    Body, Request, Response, handler,
    http::{Method, StatusCode, header},
};

use crate::{
    error::{Failure, unavailable},
    flows::authorize::{
        Authorization, AuthorizeParams, ClientRedirect, Rejection, issue_code, issue_one_time_code, resolve_request,
        subject, validate,
    },
    pages::{PageCtx, format},
};

/// The version of the consent text; stored with every consent.
const CONSENT_TEXT_VERSION: &str = "2026-11";
/// A consent page waits this long for the citizen's answer.
const PENDING_TTL: Duration = Duration::from_secs(600);

/// The response to the client: a redirect with the parameters in the query, or an HTML form
/// posted to the redirect URI (form_post; submitted by a script file, with a button when
/// scripts are off).
fn respond(ctx: &PageCtx, redirect: &ClientRedirect, params: Vec<(&'static str, String)>) -> Response {
    let params = redirect.parameters(params);
    match redirect.mode {
        ResponseMode::Query => {
            let mut uri = redirect.uri.clone();
            uri.query_pairs_mut().extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
            Response::builder().status(StatusCode::SEE_OTHER).header(header::LOCATION, uri.as_str()).finish()
        }
        ResponseMode::FormPost => ctx
            .render("form_post.html", context! { action => redirect.uri.as_str(), fields => Value::from_iter(params) }),
    }
}

fn reject(ctx: &PageCtx, rejection: Rejection) -> Response {
    match rejection {
        Rejection::Page(text) => {
            ctx.message(StatusCode::BAD_REQUEST, "authorize_error_title", &[ctx.t(text)], Value::from(()))
        }
        Rejection::Redirect(redirect, error) => error_to_client(ctx, &redirect, &error),
        Rejection::Unavailable(Failure::Outage(_)) => ctx.unavailable(),
        Rejection::Unavailable(Failure::Bug) => ctx.message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error_title",
            &[ctx.t("server_error_text")],
            Value::from(()),
        ),
    }
}

/// A failure on our side once the redirect URI is trusted: the client hears
/// `temporarily_unavailable` or `server_error` (RFC 6749 §4.1.2.1).
fn failed_to_client(
    ctx: &PageCtx,
    redirect: &ClientRedirect,
    operation: &'static str,
    error: &(dyn std::error::Error + 'static),
) -> Response {
    error_to_client(ctx, redirect, &crate::error::oauth_failure(&ctx.state, operation, error))
}

fn error_to_client(ctx: &PageCtx, redirect: &ClientRedirect, error: &OAuthError) -> Response {
    respond(
        ctx,
        redirect,
        vec![("error", error.code.as_str().to_owned()), ("error_description", error.description.clone())],
    )
}

/// The request's parameters: the query for GET, the form for POST (OIDC Core §3.1.2.1).
async fn parameters(req: &Request, body: Body) -> Result<AuthorizeParams, ()> {
    let raw = if req.method() == Method::POST {
        body.into_bytes_limit(64 * 1024).await.map_err(|_| ())?.to_vec()
    } else {
        req.uri().query().unwrap_or_default().as_bytes().to_vec()
    };
    params_of(&raw)
}

/// The parameters of a form-encoded query or body. A parameter given twice is an error
/// (RFC 6749 §3.1); before the client is known it can only be a page.
fn params_of(raw: &[u8]) -> Result<AuthorizeParams, ()> {
    let pairs = crate::http::token::parameters(raw).map_err(|_| ())?;
    serde_json::to_value(pairs.into_iter().collect::<std::collections::BTreeMap<_, _>>())
        .and_then(serde_json::from_value)
        .map_err(|_| ())
}

/// `GET|POST {issuer}/authorize`
#[handler]
pub(crate) async fn authorize(ctx: PageCtx, req: &Request, body: Body) -> Response {
    let Ok(params) = parameters(req, body).await else {
        return reject(&ctx, Rejection::Page("authorize_malformed"));
    };
    let params = match resolve_request(&ctx.state, ctx.site.environment, &ctx.site.issuer, params).await {
        Ok(params) => params,
        Err(rejection) => return reject(&ctx, rejection),
    };
    let authorization = match validate(&ctx.state, ctx.site.environment, &ctx.site.issuer, &params).await {
        Ok(authorization) => authorization,
        Err(rejection) => return reject(&ctx, rejection),
    };
    if ctx.session_unknown {
        // Never "login_required" for a session we merely cannot read: that would log the
        // citizen out of every relying party (RFC 6749 §4.1.2.1).
        return error_to_client(&ctx, &authorization.redirect, &unavailable());
    }
    let now = ctx.state.accounts.now();
    let session = ctx.session.clone().filter(|(session, _)| {
        let too_old = authorization.max_age.is_some_and(|max| (now - session.auth_time).whole_seconds() > max);
        !too_old
    });
    // One account per browser session: choosing an account means logging in (again).
    let wants_login = authorization.prompt.iter().any(|p| p == "login" || p == "select_account");
    let session = match hinted_subject(&ctx, &authorization, &params).await {
        Err(error) => return error_to_client(&ctx, &authorization.redirect, &error),
        // The client expects another citizen than the one logged in: not this session.
        Ok(Some(hinted)) => session.filter(|(_, account)| {
            subject(&ctx.state, ctx.site.environment, &authorization.tenant, account.id) == hinted
        }),
        Ok(None) => session,
    };
    let (session, account) = match session {
        Some(found) if !wants_login => found,
        _ if authorization.prompt.iter().any(|p| p == "none") => {
            let error = OAuthError::new(OAuthErrorCode::LoginRequired, "Keine Anmeldung vorhanden");
            return error_to_client(&ctx, &authorization.redirect, &error);
        }
        _ => return to_login(&ctx, params, authorization.required_level),
    };
    if session.trust_level < authorization.required_level
        && ctx.state.eid.of(ctx.site.environment).is_some()
        && authorization.required_level == TrustLevel::Hoch
        && !authorization.prompt.iter().any(|p| p == "none")
    {
        // Step-up: offer the login that reaches the level instead of failing the request.
        return to_login(&ctx, params, authorization.required_level);
    }
    if session.trust_level < authorization.required_level {
        let error = OAuthError::new(
            OAuthErrorCode::UnmetAuthenticationRequirements,
            format!("Vertrauensniveau {} ist erforderlich", authorization.required_level.as_str()),
        );
        return error_to_client(&ctx, &authorization.redirect, &error);
    }
    let wanted: Vec<String> = authorization.claims.iter().map(|(c, _)| c.clone()).collect();
    let given = match ctx
        .state
        .accounts
        .consent(ctx.site.environment, account.id, authorization.client.client_id.as_str())
        .await
    {
        Ok(given) => given,
        Err(e) => return failed_to_client(&ctx, &authorization.redirect, "authorize.consent", &e),
    };
    // Acting for whom: asked on the consent page unless the citizen has no organisation or
    // asked us to remember the choice for this client.
    let acting_for = if wanted.iter().any(|c| c == "organization") {
        let organisations = match acting_options(&ctx, &account).await {
            Ok(organisations) => organisations,
            Err(e) => return failed_to_client(&ctx, &authorization.redirect, "authorize.organisations", &e),
        };
        let remembered = given
            .as_ref()
            .and_then(|g| g.acting_for.as_deref())
            .filter(|choice| *choice == ACTING_FOR_SELF || organisations.iter().any(|o| o.id.to_string() == *choice));
        match remembered {
            _ if organisations.is_empty() => Some(None),
            Some(ACTING_FOR_SELF) => Some(None),
            Some(organisation) => Some(Some(organisation.to_owned())),
            None => None,
        }
    } else {
        Some(None)
    };
    let asks_consent = authorization.prompt.iter().any(|p| p == "consent");
    if let Some(organisation) = acting_for.clone()
        && !asks_consent
        && let Some((released, given_as)) = covered(&authorization.client, &wanted, given.as_ref())
    {
        return finish(&ctx, &authorization, &session, &account, released, given_as, organisation).await;
    }
    if authorization.prompt.iter().any(|p| p == "none") {
        let error = OAuthError::new(OAuthErrorCode::ConsentRequired, "Die Zustimmung fehlt");
        return error_to_client(&ctx, &authorization.redirect, &error);
    }
    let earlier = given.map(|g| g.claims).unwrap_or_default();
    oidc_consent_page(&ctx, &authorization, &account, &earlier, PendingConsent { params, card: None, saml: None }).await
}

/// The `sub` of a valid `id_token_hint` (OIDC Core §3.1.2.1): an ID token we issued to this
/// client, expired or not. A hint that is not ours, or another client's, is `invalid_request`.
async fn hinted_subject(
    ctx: &PageCtx,
    authorization: &Authorization,
    params: &AuthorizeParams,
) -> Result<Option<String>, OAuthError> {
    let Some(hint) = params.id_token_hint.as_deref() else { return Ok(None) };
    let invalid = || OAuthError::new(OAuthErrorCode::InvalidRequest, "id_token_hint ist ungültig");
    let jwks = ctx.state.keys.jwks(ctx.site.environment).await.map_err(|_| invalid())?;
    let claims = verify_id_token_hint(&jwks, hint, &ctx.site.issuer).ok_or_else(invalid)?;
    if claims.get("aud").and_then(|a| a.as_str()) != Some(authorization.client.client_id.as_str()) {
        return Err(invalid());
    }
    Ok(claims.get("sub").and_then(|s| s.as_str()).map(str::to_owned))
}

/// The remembered choice "for myself" in a consent.
const ACTING_FOR_SELF: &str = "self";

/// The organisations the citizen may act for: active ones they belong to.
async fn acting_options(
    ctx: &PageCtx,
    account: &Account,
) -> Result<Vec<account_service::Organisation>, account_service::OrganisationError> {
    Ok(ctx
        .state
        .organisations
        .of_account(ctx.site.environment, account.id)
        .await?
        .into_iter()
        .map(|(organisation, _)| organisation)
        .filter(|o| o.status == account_service::OrganisationStatus::Active)
        .collect())
}

/// The claims released without asking, and how the transfer log names that consent: all of them
/// for a first-party client; for another, what the citizen released before when every claim
/// wanted was answered then (released or left out). `None`: the consent page asks.
fn covered(
    client: &tenant_registry::Client,
    wanted: &[String],
    given: Option<&account_service::Consent>,
) -> Option<(Vec<String>, String)> {
    if client.first_party {
        return Some((wanted.to_vec(), "first-party".to_owned()));
    }
    let given = given.filter(|c| wanted.iter().all(|w| c.claims.contains(w) || c.declined.contains(w)))?;
    Some((wanted.iter().filter(|w| given.claims.contains(w)).cloned().collect(), consent_ref(given)))
}

/// [`covered`] for `request` and the citizen's stored consent to its client.
pub(crate) async fn covered_consent(
    ctx: &PageCtx,
    request: &ConsentRequest<'_>,
    account: &Account,
) -> Result<Option<(Vec<String>, String)>, account_service::AccountError> {
    let wanted: Vec<String> = request.claims.iter().map(|(c, _)| c.clone()).collect();
    if request.client.first_party {
        // Nothing to look up: a first-party client gets what it asks for.
        return Ok(covered(request.client, &wanted, None));
    }
    let given = ctx.state.accounts.consent(ctx.site.environment, account.id, request.client.client_id.as_str()).await?;
    Ok(covered(request.client, &wanted, given.as_ref()))
}

/// The claims released and declined by an answer: the required ones and those ticked in
/// `chosen` are released, `organization` only when acting for one.
fn answered(claims: &[(String, bool)], chosen: &[&str], acting_for: Option<&str>) -> (Vec<String>, Vec<String>) {
    let (released, declined): (Vec<_>, Vec<_>) = claims.iter().partition(|(claim, required)| {
        if claim == "organization" {
            return acting_for.is_some();
        }
        *required || chosen.contains(&claim.as_str())
    });
    let names = |claims: Vec<&(String, bool)>| claims.into_iter().map(|(claim, _)| claim.clone()).collect();
    (names(released), names(declined))
}

/// The citizen's answer on the consent page, stored as their consent to the client: the claims
/// released (the required ones and those ticked in `chosen`; `organization` when acting for
/// one) and how the transfer log names the consent. `remember` is the acting-for choice kept.
pub(crate) async fn store_answer(
    ctx: &PageCtx,
    request: &ConsentRequest<'_>,
    account: &Account,
    chosen: &[&str],
    acting_for: Option<&str>,
    remember: Option<String>,
) -> Result<(Vec<String>, String), account_service::AccountError> {
    let (released, declined) = answered(request.claims, chosen, acting_for);
    tracing::debug!(client = %request.client.client_id, ?released, ?declined, "consent given");
    let given = ctx
        .state
        .accounts
        .give_consent(
            ctx.site.environment,
            account.id,
            account_service::Consent {
                client_id: request.client.client_id.as_str().to_owned(),
                claims: released.clone(),
                declined,
                given_at: ctx.state.accounts.now(),
                text_version: CONSENT_TEXT_VERSION.to_owned(),
                acting_for: remember,
            },
        )
        .await?;
    Ok((released, consent_ref(&given)))
}

/// How the transfer log names a consent: when it was given, under which text.
pub(crate) fn consent_ref(given: &account_service::Consent) -> String {
    format!("consent:{}:{}", given.given_at.unix_timestamp(), given.text_version)
}

/// After the login, the browser comes back to this very request (without `prompt=login` or
/// `select_account`, which the login just satisfied).
/// A request that needs "hoch" goes straight to the eID login when the environment has eID.
fn to_login(ctx: &PageCtx, mut params: AuthorizeParams, required: TrustLevel) -> Response {
    let hint = params.login_hint.clone().unwrap_or_default();
    params.prompt = params
        .prompt
        .map(|p| p.split(' ').filter(|v| !matches!(*v, "login" | "select_account")).collect::<Vec<_>>().join(" "));
    let query = query_string(&params);
    let back = format!("/authorize?{query}");
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    if required == TrustLevel::Hoch && ctx.state.eid.of(ctx.site.environment).is_some() {
        return ctx.redirect(&format!("/eid?zweck=anmelden&stufe=hoch&return_to={}", encode(&back)));
    }
    ctx.redirect(&format!("/anmelden?return_to={}&login_hint={}", encode(&back), encode(&hint)))
}

/// The parameters as a query string, empty ones left out.
fn query_string(params: &AuthorizeParams) -> String {
    let value = serde_json::to_value(params).unwrap_or_default();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(map) = value.as_object() {
        for (key, value) in map {
            if let Some(text) = value.as_str().filter(|t| !t.is_empty()) {
                query.append_pair(key, text);
            }
        }
    }
    query.finish()
}

async fn finish(
    ctx: &PageCtx,
    authorization: &Authorization,
    session: &Session,
    account: &Account,
    claims: Vec<String>,
    consent_ref: String,
    organisation: Option<String>,
) -> Response {
    // A session always comes with its cookie; without one the code could not name its `sid`.
    let Some(token) = ctx.session_token.as_deref() else {
        return reject(ctx, Rejection::Page("authorize_expired"));
    };
    let issued = issue_code(
        &ctx.state,
        ctx.site.environment,
        authorization,
        session,
        token,
        account,
        claims,
        consent_ref,
        organisation,
    )
    .await;
    match issued {
        Ok(code) => respond(ctx, &authorization.redirect, vec![("code", code)]),
        Err(error) => error_to_client(ctx, &authorization.redirect, &error),
    }
}

/// A request waiting on the consent page: its parameters and, for a one-time identification,
/// the card that identified the citizen (there is no session).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct PendingConsent {
    params: AuthorizeParams,
    #[serde(default)]
    card: Option<CardIdentity>,
    /// A SAML request's handle (then `params` is empty).
    #[serde(default)]
    pub(crate) saml: Option<String>,
}

impl PendingConsent {
    /// The consent of the SAML request `handle`.
    pub(crate) fn saml(handle: &str) -> Self {
        Self { params: AuthorizeParams::default(), card: None, saml: Some(handle.to_owned()) }
    }
}

/// The eID refresh address of a one-time identification lands here: the request it started from
/// (`return_to`, an `/authorize` URL) is checked again and the consent page shows the card's
/// values. Nothing is stored but the pending request (10 min).
pub(crate) async fn one_time_identification(ctx: &PageCtx, card: CardIdentity, return_to: &str) -> Response {
    let Some(query) = return_to.strip_prefix("/authorize?") else {
        return reject(ctx, Rejection::Page("authorize_expired"));
    };
    let Ok(params) = params_of(query.as_bytes()) else {
        return reject(ctx, Rejection::Page("authorize_malformed"));
    };
    let authorization = match validate(&ctx.state, ctx.site.environment, &ctx.site.issuer, &params).await {
        Ok(authorization) => authorization,
        Err(rejection) => return reject(ctx, rejection),
    };
    let citizen = Account::from_card(ctx.site.environment, &card, ctx.state.accounts.now());
    oidc_consent_page(ctx, &authorization, &citizen, &[], PendingConsent { params, card: Some(card), saml: None }).await
}

/// A claim's value as the consent page shows it: dates and the address block as on every page.
fn claim_lines(ctx: &PageCtx, account: &Account, claim: &str) -> Option<Vec<String>> {
    let m = &account.master_data;
    let lines = match claim {
        "birthdate" => vec![format::iso_date(ctx.lang, &m.date_of_birth.value)],
        "address" => {
            let abroad = ctx.country_abroad(&m.country.value);
            format::address_block(
                &m.street.value,
                &m.house_number.value,
                &m.postal_code.value,
                &m.city.value,
                abroad.as_deref(),
            )
        }
        other => vec![claim_preview(account, other)?],
    };
    // A one-time identification has only what the card holds (no e-mail address).
    Some(lines).filter(|l| l.iter().any(|line| !line.is_empty()))
}

/// The consent page of an authorization request; a failure on our side goes to the client.
async fn oidc_consent_page(
    ctx: &PageCtx,
    authorization: &Authorization,
    account: &Account,
    earlier: &[String],
    pending_consent: PendingConsent,
) -> Response {
    let request =
        ConsentRequest { client: &authorization.client, tenant: &authorization.tenant, claims: &authorization.claims };
    match consent_page(ctx, &request, account, earlier, pending_consent).await {
        Ok(page) => page,
        Err(ConsentPageError(operation, e)) => failed_to_client(ctx, &authorization.redirect, operation, &*e),
    }
}

/// What a consent page asks about: the client, its tenant, the claims with "required".
pub(crate) struct ConsentRequest<'a> {
    pub(crate) client: &'a tenant_registry::Client,
    pub(crate) tenant: &'a tenant_registry::Tenant,
    pub(crate) claims: &'a [(String, bool)],
}

/// A consent page could not be shown: the operation and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}: {1}")]
pub(crate) struct ConsentPageError(&'static str, Box<dyn std::error::Error + Send + Sync>);

/// Shows the authority, why it asks, and the exact claims with their values: the required ones
/// as a list, the optional ones as boxes ticked only where the citizen ticked them before
/// (`earlier`). The request waits in the ephemeral store for the answer. The same page for
/// OpenID Connect and SAML; the answer goes to the protocol's consent address.
pub(crate) async fn consent_page(
    ctx: &PageCtx,
    request: &ConsentRequest<'_>,
    account: &Account,
    earlier: &[String],
    pending_consent: PendingConsent,
) -> Result<Response, ConsentPageError> {
    let one_time = pending_consent.card.is_some();
    let action = if pending_consent.saml.is_some() { "/saml/zustimmung" } else { "/zustimmung" };
    let pending = uuid::Uuid::new_v4().simple().to_string();
    let value = serde_json::to_vec(&pending_consent).unwrap_or_default();
    if let Err(e) = ctx.state.ephemeral.put(&format!("authz:{pending}"), &value, PENDING_TTL).await {
        return Err(ConsentPageError("authorize.consent_page", Box::new(e)));
    }
    let settings = &request.client.settings;
    let shown = |wanted_required: bool| -> Vec<Value> {
        request
            .claims
            .iter()
            .filter(|(_, required)| *required == wanted_required)
            .filter_map(|(claim, _)| {
                let lines = claim_lines(ctx, account, claim)?;
                let label = ctx.t(&format!("claim_{claim}"));
                Some(context! { name => claim, label => label, lines => lines, checked => earlier.contains(claim) })
            })
            .collect()
    };
    let purpose = settings.purpose.as_ref().map(|p| p.text(ctx.lang.code()));
    // One-time identifications have no account and so no organisations.
    let organisations = if !one_time && request.claims.iter().any(|(c, _)| c == "organization") {
        match acting_options(ctx, account).await {
            Ok(found) => found,
            Err(e) => return Err(ConsentPageError("authorize.organisations", Box::new(e))),
        }
    } else {
        Vec::new()
    };
    let organisations: Vec<Value> = organisations
        .iter()
        .map(|o| {
            context! {
                id => o.id.to_string(), name => o.data.name.clone(),
                legal_form => ctx.t(&format!("legal_form_{}", o.data.legal_form.as_str())),
            }
        })
        .collect();
    Ok(ctx.render(
        "consent.html",
        context! {
            request => pending,
            action => action,
            organization => settings.organization_display_name.clone().unwrap_or_else(|| request.tenant.branding.display_name.clone()),
            service => settings.name,
            online_service_id => settings.online_service_id,
            purpose => purpose.map(|(text, _)| text),
            purpose_lang => purpose.map(|(_, lang)| lang),
            logo => settings.logo_uri.as_ref().map(|u| u.to_string()),
            policy => settings.policy_uri.as_ref().map(|u| u.to_string()),
            required_claims => shown(true),
            optional_claims => shown(false),
            one_time => one_time,
            organisations => organisations,
        },
    ))
}

/// The request a consent page was shown for, taken (an answer counts once); `None` when it
/// expired or was answered.
pub(crate) async fn pending_consent(
    ctx: &PageCtx,
    request: &str,
) -> Result<Option<PendingConsent>, oidc_core::EphemeralError> {
    let taken = ctx.state.ephemeral.take(&format!("authz:{request}")).await?;
    Ok(taken.and_then(|value| serde_json::from_slice(&value).ok()))
}

/// `POST {issuer}/zustimmung`: the citizen's answer.
#[handler]
pub(crate) async fn consent(ctx: PageCtx, body: Body) -> Response {
    let Ok(raw) = body.into_bytes_limit(64 * 1024).await else {
        return reject(&ctx, Rejection::Page("authorize_malformed"));
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&raw).into_owned().collect();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    if !ctx.csrf_ok(field("csrf")) {
        return ctx.csrf_failed();
    }
    let (params, card) = match pending_consent(&ctx, field("request")).await {
        Ok(Some(PendingConsent { params, card, saml: None })) => (params, card),
        Ok(_) => return reject(&ctx, Rejection::Page("authorize_expired")),
        Err(e) => return ctx.failure(e),
    };
    // A one-time identification has no session: the card stands in for it.
    if card.is_none() && ctx.session.is_none() {
        return reject(&ctx, Rejection::Page("authorize_expired"));
    }
    let authorization = match validate(&ctx.state, ctx.site.environment, &ctx.site.issuer, &params).await {
        Ok(authorization) => authorization,
        Err(rejection) => return reject(&ctx, rejection),
    };
    if field("decision") != "allow" {
        let error = OAuthError::new(OAuthErrorCode::AccessDenied, "Die Zustimmung wurde verweigert");
        return error_to_client(&ctx, &authorization.redirect, &error);
    }
    let chosen: Vec<&str> = pairs.iter().filter(|(k, _)| k == "claim").map(|(_, v)| v.as_str()).collect();
    // For whom: "self", or one of the citizen's active organisations (checked again here).
    let acting_for = match (field("acting_for"), &ctx.session) {
        ("" | ACTING_FOR_SELF, _) | (_, None) => None,
        (id, Some((_, account))) => match acting_options(&ctx, account).await {
            Ok(found) if found.iter().any(|o| o.id.to_string() == id) => Some(id.to_owned()),
            Ok(_) => return reject(&ctx, Rejection::Page("authorize_expired")),
            Err(e) => return failed_to_client(&ctx, &authorization.redirect, "authorize.organisations", &e),
        },
    };
    let remember =
        (field("remember_choice") == "1").then(|| acting_for.clone().unwrap_or_else(|| ACTING_FOR_SELF.to_owned()));
    let (session, account) = match (card, ctx.session.clone()) {
        // Goes to the client once; no consent is stored, as there is no account to store it with.
        (Some(card), _) => {
            let (released, _) = answered(&authorization.claims, &chosen, None);
            let citizen = Account::from_card(ctx.site.environment, &card, ctx.state.accounts.now());
            return match issue_one_time_code(&ctx.state, ctx.site.environment, &authorization, &citizen, released).await
            {
                Ok(code) => respond(&ctx, &authorization.redirect, vec![("code", code)]),
                Err(error) => error_to_client(&ctx, &authorization.redirect, &error),
            };
        }
        (None, Some(session)) => session,
        (None, None) => return reject(&ctx, Rejection::Page("authorize_expired")),
    };
    let request =
        ConsentRequest { client: &authorization.client, tenant: &authorization.tenant, claims: &authorization.claims };
    let (released, given_as) =
        match store_answer(&ctx, &request, &account, &chosen, acting_for.as_deref(), remember).await {
            Ok(answer) => answer,
            Err(e) => return failed_to_client(&ctx, &authorization.redirect, "authorize.give_consent", &e),
        };
    finish(&ctx, &authorization, &session, &account, released, given_as, acting_for).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_are_read_by_name_unknown_ones_ignored_and_a_repeated_one_refused() {
        let params = super::params_of(b"client_id=demo&scope=openid+email&max_age=0&x-unknown=1&state=%C3%A4").unwrap();
        assert_eq!(params.client_id.as_deref(), Some("demo"));
        assert_eq!(params.scope.as_deref(), Some("openid email"));
        assert_eq!(params.max_age.as_deref(), Some("0"));
        assert_eq!(params.state.as_deref(), Some("ä"));
        assert_eq!(params.nonce, None);
        assert!(super::params_of(b"scope=openid&scope=email").is_err());
        assert!(super::params_of(b"").is_ok_and(|p| p.client_id.is_none()));
    }
}

#[cfg(test)]
mod untrusted_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The authorization request's query or form: any bytes give parameters or a page, never
        /// a panic.
        #[test]
        fn authorization_requests_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..600), text in "[a-z_=&%0-9A-F+]{0,300}") {
            let _ = super::params_of(&raw);
            let _ = super::params_of(text.as_bytes());
        }
    }
}
