//! The SAML 2.0 identity provider of an environment: `GET {issuer}/saml/metadata`,
//! `GET|POST {issuer}/saml/sso` (HTTP-Redirect and HTTP-POST), `GET {issuer}/saml/anmelden`
//! (IdP-initiated, where the client allows it), `GET {issuer}/saml/weiter`
//! (back from login or step-up), `GET {issuer}/saml/slo` (Single Logout, HTTP-Redirect). The
//! session, the login pages, the consent page and the transfer log are the ones OpenID Connect
//! uses.

use account_service::Account;
use minijinja::{Value, context};
use oidc_core::TrustLevel;
use poem::{
    Body, Request, Response, handler,
    http::{Method, StatusCode, header},
};
use saml_core::Failure as SamlFailure;

use crate::{
    error::Failure,
    flows::{
        authorize::subject,
        backchannel::end_session,
        saml::sso::{self as flow, Binding, Delivery, PendingSaml, Refusal},
    },
    http::authorize::{ConsentRequest, PendingConsent, consent_page, covered_consent, pending_consent, store_answer},
    pages::PageCtx,
};

fn refused(ctx: &PageCtx, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(text) => {
            ctx.message(StatusCode::BAD_REQUEST, "saml_error_title", &[ctx.t(text)], Value::from(()))
        }
        Refusal::Failed(Failure::Outage(_)) => ctx.unavailable(),
        Refusal::Failed(Failure::Bug) => ctx.message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error_title",
            &[ctx.t("server_error_text")],
            Value::from(()),
        ),
    }
}

/// The Response goes to the SP as a form the browser posts (HTTP-POST binding).
fn deliver(ctx: &PageCtx, delivery: &Delivery) -> Response {
    let mut fields = vec![("SAMLResponse", delivery.response.clone())];
    if let Some(relay_state) = &delivery.relay_state {
        fields.push(("RelayState", relay_state.clone()));
    }
    ctx.render("form_post.html", context! { action => delivery.acs.clone(), fields => Value::from_iter(fields) })
}

/// `GET {issuer}/saml/metadata`: the signed IdP metadata.
#[handler]
pub(crate) async fn metadata(ctx: PageCtx) -> Response {
    match flow::metadata(&ctx.state, ctx.site.environment, &ctx.site.issuer).await {
        Ok(xml) => Response::builder()
            .header(header::CONTENT_TYPE, "application/samlmetadata+xml")
            .header(header::CACHE_CONTROL, "public, max-age=3600")
            .body(xml.as_str().to_owned()),
        Err(failure) => refused(&ctx, Refusal::Failed(failure)),
    }
}

/// `GET|POST {issuer}/saml/sso`
#[handler]
pub(crate) async fn sso(ctx: PageCtx, req: &Request, body: Body) -> Response {
    let binding = if req.method() == Method::POST {
        match body.into_bytes_limit(256 * 1024).await {
            Ok(raw) => Binding::Post(url::form_urlencoded::parse(&raw).into_owned().collect()),
            Err(_) => return refused(&ctx, Refusal::Page("saml_malformed")),
        }
    } else {
        Binding::Redirect(req.uri().query().unwrap_or_default().to_owned())
    };
    match flow::start(&ctx.state, ctx.site.environment, &ctx.site.issuer, binding, ctx.session_token.as_deref()).await {
        Ok(handle) => resume_request(&ctx, &handle).await,
        Err(refusal) => refused(&ctx, refusal),
    }
}

#[derive(serde::Deserialize)]
struct UnsolicitedQuery {
    sp: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// `GET {issuer}/saml/anmelden?sp=<entity id>[&RelayState=…]`: IdP-initiated login (a link on
/// a portal page), for SPs whose client allows unsolicited Responses.
#[handler]
pub(crate) async fn unsolicited(ctx: PageCtx, query: poem::Result<poem::web::Query<UnsolicitedQuery>>) -> Response {
    let Ok(query) = query else { return refused(&ctx, Refusal::Page("saml_malformed")) };
    let query = query.0;
    match flow::start_unsolicited(&ctx.state, ctx.site.environment, &query.sp, query.relay_state).await {
        Ok(handle) => resume_request(&ctx, &handle).await,
        Err(refusal) => refused(&ctx, refusal),
    }
}

#[derive(serde::Deserialize)]
struct ResumeQuery {
    anfrage: String,
}

/// `GET {issuer}/saml/weiter?anfrage=…`: back from the login, the eID step-up or a login page
/// left without logging in.
#[handler]
pub(crate) async fn resume(ctx: PageCtx, query: poem::Result<poem::web::Query<ResumeQuery>>) -> Response {
    match query {
        Ok(query) => resume_request(&ctx, &query.anfrage).await,
        Err(_) => refused(&ctx, Refusal::Page("authorize_expired")),
    }
}

fn back_path(handle: &str) -> String {
    format!("/saml/weiter?anfrage={handle}")
}

fn to_login(ctx: &PageCtx, handle: &str, required: TrustLevel) -> Response {
    let back: String = url::form_urlencoded::byte_serialize(back_path(handle).as_bytes()).collect();
    if required == TrustLevel::Hoch && ctx.state.eid.of(ctx.site.environment).is_some() {
        return ctx.redirect(&format!("/eid?zweck=anmelden&stufe=hoch&return_to={back}"));
    }
    ctx.redirect(&format!("/anmelden?return_to={back}"))
}

async fn answer_with(ctx: &PageCtx, handle: &str, pending: &PendingSaml, failure: SamlFailure) -> Response {
    match flow::error_delivery(&ctx.state, ctx.site.environment, &ctx.site.issuer, handle, pending, failure).await {
        Ok(delivery) => deliver(ctx, &delivery),
        Err(refusal) => refused(ctx, refusal),
    }
}

/// The pending request with the browser's session: login (`ForceAuthn`: a fresh one; `IsPassive`:
/// none, then `NoPassive`), step-up to the level asked for, consent, the Response.
async fn resume_request(ctx: &PageCtx, handle: &str) -> Response {
    let (pending, client, tenant) = match flow::pending(&ctx.state, ctx.site.environment, handle).await {
        Ok(found) => found,
        Err(refusal) => return refused(ctx, refusal),
    };
    if ctx.session_unknown {
        return ctx.unavailable();
    }
    let Ok(required) = pending.required_level(&client) else {
        return answer_with(ctx, handle, &pending, SamlFailure::NoAuthnContext).await;
    };
    // ForceAuthn: only a login after the request arrived counts.
    let session =
        ctx.session.clone().filter(|_| ctx.session_token.as_deref().is_some_and(|t| pending.accepts_session(t)));
    let Some((session, account)) = session else {
        if pending.is_passive {
            return answer_with(ctx, handle, &pending, SamlFailure::NoPassive).await;
        }
        return to_login(ctx, handle, required);
    };
    if session.trust_level < required {
        let can_step_up = required == TrustLevel::Hoch && ctx.state.eid.of(ctx.site.environment).is_some();
        if can_step_up && !pending.is_passive {
            return to_login(ctx, handle, required);
        }
        return answer_with(ctx, handle, &pending, SamlFailure::NoAuthnContext).await;
    }
    if pending.requirement().and_then(|r| r.answer(session.trust_level)).is_err() {
        return answer_with(ctx, handle, &pending, SamlFailure::NoAuthnContext).await;
    }
    let wanted = flow::wanted_claims(&client, &tenant);
    let request = ConsentRequest { client: &client, tenant: &tenant, claims: &wanted };
    let given = match covered_consent(ctx, &request, &account).await {
        Ok(given) => given,
        Err(e) => return ctx.failure(e),
    };
    if let Some((released, given_as)) = given {
        return finish(ctx, handle, &pending, (&client, &tenant), &account, released, given_as).await;
    }
    if pending.is_passive {
        return answer_with(ctx, handle, &pending, SamlFailure::RequestDenied).await;
    }
    let earlier = match ctx.state.accounts.consent(ctx.site.environment, account.id, client.client_id.as_str()).await {
        Ok(given) => given.map(|g| g.claims).unwrap_or_default(),
        Err(e) => return ctx.failure(e),
    };
    match consent_page(ctx, &request, &account, &earlier, PendingConsent::saml(handle)).await {
        Ok(page) => page,
        Err(e) => ctx.failure(e),
    }
}

/// `POST {issuer}/saml/zustimmung`: the consent page's answer for a SAML request.
#[handler]
pub(crate) async fn consent(ctx: PageCtx, body: Body) -> Response {
    let Ok(raw) = body.into_bytes_limit(64 * 1024).await else {
        return refused(&ctx, Refusal::Page("authorize_malformed"));
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&raw).into_owned().collect();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    if !ctx.csrf_ok(field("csrf")) {
        return ctx.csrf_failed();
    }
    let handle = match pending_consent(&ctx, field("request")).await {
        Ok(Some(PendingConsent { saml: Some(handle), .. })) => handle,
        Ok(_) => return refused(&ctx, Refusal::Page("authorize_expired")),
        Err(e) => return ctx.failure(e),
    };
    let (pending, client, tenant) = match flow::pending(&ctx.state, ctx.site.environment, &handle).await {
        Ok(found) => found,
        Err(refusal) => return refused(&ctx, refusal),
    };
    let Some((_, account)) = ctx.session.clone() else {
        return refused(&ctx, Refusal::Page("authorize_expired"));
    };
    if field("decision") != "allow" {
        return answer_with(&ctx, &handle, &pending, SamlFailure::RequestDenied).await;
    }
    let chosen: Vec<&str> = pairs.iter().filter(|(k, _)| k == "claim").map(|(_, v)| v.as_str()).collect();
    let wanted = flow::wanted_claims(&client, &tenant);
    let request = ConsentRequest { client: &client, tenant: &tenant, claims: &wanted };
    let (released, given_as) = match store_answer(&ctx, &request, &account, &chosen, None, None).await {
        Ok(answer) => answer,
        Err(e) => return ctx.failure(e),
    };
    finish(&ctx, &handle, &pending, (&client, &tenant), &account, released, given_as).await
}

async fn finish(
    ctx: &PageCtx,
    handle: &str,
    pending: &PendingSaml,
    (client, tenant): (&tenant_registry::Client, &tenant_registry::Tenant),
    account: &Account,
    released: Vec<String>,
    given_as: String,
) -> Response {
    let (Some((session, _)), Some(token)) = (&ctx.session, ctx.session_token.as_deref()) else {
        return refused(ctx, Refusal::Page("authorize_expired"));
    };
    let delivery = flow::success_delivery(
        &ctx.state,
        ctx.site.environment,
        &ctx.site.issuer,
        handle,
        (pending, client, tenant),
        (session, token),
        account,
        &released,
        given_as,
    )
    .await;
    match delivery {
        Ok(delivery) => deliver(ctx, &delivery),
        Err(refusal) => refused(ctx, refusal),
    }
}

/// `GET {issuer}/saml/slo`: an SP's LogoutRequest. The session ends (the same way as OpenID
/// Connect logout: its relying parties are told) when the request names its citizen; the SP
/// hears the outcome at its Single Logout address.
#[handler]
pub(crate) async fn slo(ctx: PageCtx, req: &Request) -> Response {
    let query = req.uri().query().unwrap_or_default();
    let session = ctx.session.clone();
    let state = ctx.state.clone();
    let environment = ctx.site.environment;
    let current = |tenant: &tenant_registry::Tenant| {
        session.as_ref().map(|(_, account)| subject(&state, environment, tenant, account.id))
    };
    let (url, end) = match flow::logout(&ctx.state, environment, &ctx.site.issuer, query, current).await {
        Ok(answer) => answer,
        Err(refusal) => return refused(&ctx, refusal),
    };
    if end {
        if let Some(token) = &ctx.session_token
            && let Err(e) = end_session(&ctx.state, environment, token).await
        {
            return ctx.failure(e);
        }
        ctx.clear_cookie(&ctx.site.session_cookie);
    }
    Response::builder().status(StatusCode::SEE_OTHER).header(header::LOCATION, url).finish()
}
