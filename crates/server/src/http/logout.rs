//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): `GET|POST {issuer}/logout`.
//! With a valid `id_token_hint` of this issuer and an exactly registered
//! `post_logout_redirect_uri`, the session ends and the browser goes back with `state`; otherwise
//! the citizen confirms on a page of ours and is never redirected anywhere.

use oidc_core::verify_id_token_hint;
use poem::{
    Body, Request, Response, handler,
    http::{Method, StatusCode, header},
};

use crate::{flows::authorize::subject, flows::backchannel::end_session, pages::PageCtx};

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
}

async fn end(ctx: &PageCtx) -> Result<(), Response> {
    if let Some(token) = &ctx.session_token {
        end_session(&ctx.state, ctx.site.environment, token).await.map_err(|e| ctx.failure(e))?;
    }
    ctx.clear_cookie(&ctx.site.session_cookie);
    Ok(())
}

fn logged_out(ctx: &PageCtx) -> Response {
    ctx.message(StatusCode::OK, "logged_out_title", &[ctx.t("logged_out_text")], minijinja::Value::from(()))
}

/// The registered post-logout redirect the hint's client asked for, if the hint is ours and (with
/// a session) names this session's citizen.
async fn trusted_redirect(ctx: &PageCtx, pairs: &[(String, String)]) -> Option<url::Url> {
    let hint = param(pairs, "id_token_hint")?;
    let jwks = ctx.state.keys.jwks(ctx.site.environment).await.ok()?;
    let claims = verify_id_token_hint(&jwks, &hint, &ctx.site.issuer)?;
    let client_id = claims.get("aud").and_then(|a| a.as_str())?;
    if param(pairs, "client_id").is_some_and(|c| c != client_id) {
        return None;
    }
    let (client, tenant) = ctx.state.registry.active_client(ctx.site.environment, client_id).await.ok()?;
    if let Some((_, account)) = &ctx.session {
        let sub = subject(&ctx.state, ctx.site.environment, &tenant, account.id);
        if claims.get("sub").and_then(|s| s.as_str()) != Some(sub.as_str()) {
            return None;
        }
    }
    let wanted = param(pairs, "post_logout_redirect_uri")?;
    let mut uri = client.settings.post_logout_redirect_uris.iter().find(|u| u.as_str() == wanted)?.clone();
    if let Some(state) = param(pairs, "state") {
        uri.query_pairs_mut().append_pair("state", &state);
    }
    Some(uri)
}

/// `GET|POST {issuer}/logout`
#[handler]
pub(crate) async fn logout(ctx: PageCtx, req: &Request, body: Body) -> Response {
    let raw = if req.method() == Method::POST {
        match body.into_bytes_limit(64 * 1024).await {
            Ok(bytes) => bytes.to_vec(),
            Err(_) => return ctx.csrf_failed(),
        }
    } else {
        req.uri().query().unwrap_or_default().as_bytes().to_vec()
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&raw).into_owned().collect();
    // The confirmation form of ours.
    if let Some(csrf) = param(&pairs, "csrf") {
        if !ctx.csrf_ok(&csrf) {
            return ctx.csrf_failed();
        }
        return match end(&ctx).await {
            Ok(()) => logged_out(&ctx),
            Err(page) => page,
        };
    }
    if let Some(uri) = trusted_redirect(&ctx, &pairs).await {
        if let Err(page) = end(&ctx).await {
            return page;
        }
        return Response::builder().status(StatusCode::SEE_OTHER).header(header::LOCATION, uri.as_str()).finish();
    }
    if ctx.session.is_none() {
        return logged_out(&ctx);
    }
    ctx.render("logout_confirm.html", minijinja::context! {})
}
