//! The URL map: one function builds the whole route tree.
//!
//! ```text
//! /healthz  /readyz  /metrics                  operations, outside every issuer
//! {issuer}/.well-known/openid-configuration    discovery, per environment
//! {issuer}/jwks                                public signing keys, per environment
//! {issuer}/authorize  /zustimmung              authorization endpoint (code flow, PKCE), consent page
//! {issuer}/par                                 pushed authorization requests (RFC 9126)
//! {issuer}/token                               token endpoint (authorization_code, client_credentials)
//! {issuer}/userinfo                            claims the citizen consented to
//! {issuer}/introspect  /revoke                 RFC 7662 / RFC 7009, own tokens only
//! {issuer}/logout                              RP-initiated logout
//! {issuer}/register[/{client_id}]              dynamic client registration (RFC 7591/7592)
//! {issuer}/registrierung[/passwort|/pruefen]    citizen pages: registration in three steps
//! {issuer}/aktivierung[/erneut]                activation link, resend
//! {issuer}/anmelden  /abmelden                 login, logout
//! {issuer}/eid  /eid/tc-token  /eid/ergebnis   eID: start ("Zur Ausweis App"), TC token, refresh address
//! {issuer}/eid/test-dienst                     the test eID service (test systems only)
//! {issuer}/registrierung/ausweis  /konto/ausweis   registration from the card, linking the card
//! {issuer}/passwort-vergessen  /passwort-neu   forgotten password
//! {issuer}/konto[/daten|/email|/passwort|/aktivitaet|/uebermittlungen|/export|/loeschen]   "Mein Konto"
//! {issuer}/barrierefreiheit  /datenschutz  /static/style.css
//! /admin/api/v1/…                              admin API (poem-openapi), /admin/api/v1/openapi.json
//! ```
//! A request belongs to the environment whose issuer's path prefix it starts with, preferring
//! an issuer on the request's `Host`, then the longest prefix.

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt, PathPattern, Request, Response, Result, Route,
    error::NotFoundError,
    get,
    http::{Uri, uri::PathAndQuery},
    middleware::{CookieJarManager, RequestId},
};

use crate::{
    admin, error,
    http::{authorize, discovery, introspection, logout, ops, par, registration, token, userinfo},
    middleware::{BodyLimit, Deadline, Observe},
    pages,
    state::AppState,
};
use oidc_core::{Environment, ProviderMetadata};

/// One environment as the HTTP layer sees it: its issuer, split for routing, and its static
/// discovery document.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) environment: Environment,
    /// `host[:port]`, lower case, default port left out.
    authority: String,
    /// The issuer's path without a trailing slash; empty for an issuer at the root.
    pub(crate) prefix: String,
    /// The issuer URL exactly as configured.
    pub(crate) issuer: String,
    /// Cookies get `Secure` when the issuer is https.
    pub(crate) secure: bool,
    /// The name of this environment's session cookie; environments never share a session.
    pub(crate) session_cookie: String,
    /// Serialised once at start: discovery never changes while the process runs.
    pub(crate) discovery: Arc<str>,
}

impl Site {
    pub(crate) fn new(environment: Environment, issuer: &str, metadata: ProviderMetadata) -> anyhow::Result<Self> {
        let url = url::Url::parse(issuer)?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Ok(Self {
            environment,
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
            secure: url.scheme() == "https",
            issuer: issuer.to_owned(),
            session_cookie: format!("sk_session_{}", environment.as_str()),
            discovery: serde_json::to_string(&metadata)?.into(),
        })
    }

    /// The length of the matched prefix when `path` lies under this issuer.
    fn matches(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix(&self.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(self.prefix.len())
    }
}

/// Builds the application: all routes, error rendering, metrics, request ids.
pub(crate) fn app(state: &AppState) -> impl Endpoint<Output = Response> + use<> {
    let limit = state.config.http.body_limit_bytes;
    let sites: Vec<(Site, poem::endpoint::BoxEndpoint<'static, Response>)> = state
        .sites
        .iter()
        .map(|site| (site.clone(), environment_routes(site).with(BodyLimit(limit)).boxed()))
        .collect();
    let environments = Arc::new(EnvironmentRouter { sites });
    let admin_api = admin::service();
    let mut admin_routes = Route::new().at("/openapi.json", admin_api.spec_endpoint());
    if state.config.admin.swagger_ui {
        admin_routes = admin_routes.nest("/docs", admin_api.swagger_ui());
    }
    let admin_routes = admin_routes
        .nest("/", admin_api)
        .catch_all_error(error::render_admin)
        .with(BodyLimit(state.config.http.admin_body_limit_bytes));
    Route::new()
        .nest("/admin/api/v1", admin_routes)
        .at("/healthz", get(ops::healthz))
        .at("/readyz", get(ops::readyz))
        .at("/metrics", get(ops::metrics))
        .at("/", environments.clone())
        .at("/*path", environments)
        .catch_all_error(error::render)
        .with(Deadline)
        .with(Observe)
        .with(CookieJarManager::new())
        .with(RequestId::default())
        .data(state.clone())
}

/// The endpoints every environment has, relative to its issuer.
fn environment_routes(site: &Site) -> impl Endpoint<Output = Response> + use<> {
    Route::new()
        .at("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .at("/jwks", get(discovery::jwks))
        .at("/token", poem::post(token::token))
        .at("/register", poem::post(registration::register))
        .at("/register/:client_id", get(registration::read).put(registration::update).delete(registration::delete))
        .at("/authorize", get(authorize::authorize).post(authorize::authorize))
        .at("/par", poem::post(par::par))
        .at("/zustimmung", poem::post(authorize::consent))
        .at("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .at("/logout", get(logout::logout).post(logout::logout))
        .at("/introspect", poem::post(introspection::introspect))
        .at("/revoke", poem::post(introspection::revoke))
        .at("/static/form_post.js", get(pages::form_post_script))
        .at("/", get(pages::start))
        .at("/static/style.css", get(pages::stylesheet))
        .at("/barrierefreiheit", get(pages::accessibility))
        .at("/datenschutz", get(pages::privacy))
        .at("/registrierung", get(pages::personal_form).post(pages::personal))
        .at("/registrierung/ausweis", get(pages::card_registration_form).post(pages::card_registration))
        .at("/eid", get(pages::eid_start_form).post(pages::eid_start))
        .at("/eid/tc-token", get(pages::tc_token))
        .at("/eid/ergebnis", get(pages::eid_result))
        .at("/eid/test-dienst", get(pages::test_service_form).post(pages::test_service))
        .at("/konto/ausweis", poem::post(pages::link))
        .at("/registrierung/passwort", get(pages::password_form).post(pages::password))
        .at("/registrierung/pruefen", get(pages::review).post(pages::save))
        .at("/aktivierung", get(pages::activate))
        .at("/aktivierung/erneut", get(pages::resend_activation_form).post(pages::resend_activation))
        .at("/anmelden", get(pages::login_form).post(pages::login))
        .at("/abmelden", poem::post(pages::logout))
        .at("/passwort-vergessen", get(pages::forgot_form).post(pages::forgot))
        .at("/passwort-neu", get(pages::reset_form).post(pages::reset))
        .at("/konto", get(pages::overview))
        .at("/konto/daten", get(pages::data_form).post(pages::change_data))
        .at("/konto/email", get(pages::confirm_email))
        .at("/konto/passwort", get(pages::password_change_form).post(pages::change_password))
        .at("/konto/aktivitaet", get(pages::activity))
        .at("/konto/export", get(pages::export))
        .at("/konto/uebermittlungen", get(pages::transfers))
        .at("/konto/zustimmungen/widerrufen", poem::post(pages::withdraw_consent))
        .at("/konto/loeschen", get(pages::delete_form).post(pages::delete))
        .around(pages::security_headers)
        .data(site.clone())
        .map_to_response()
}

/// Dispatches a request to its environment's routes, with the issuer's path prefix removed.
struct EnvironmentRouter {
    sites: Vec<(Site, poem::endpoint::BoxEndpoint<'static, Response>)>,
}

impl Endpoint for EnvironmentRouter {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let host = req
            .header("host")
            .map(str::to_ascii_lowercase)
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_ascii_lowercase()))
            .unwrap_or_default();
        let path = req.uri().path().to_owned();
        let Some((site, endpoint)) = self
            .sites
            .iter()
            .filter_map(|(site, endpoint)| {
                site.matches(&path).map(|len| ((site.authority == host, len), site, endpoint))
            })
            .max_by_key(|(score, _, _)| *score)
            .map(|(_, site, endpoint)| (site, endpoint))
        else {
            return Err(NotFoundError.into());
        };
        let rest = match &path[site.prefix.len()..] {
            "" => "/",
            rest => rest,
        };
        let path_and_query = match req.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).map_err(|_| NotFoundError)?);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| NotFoundError)?;
        // The inner routes append their pattern to this, so metrics see e.g. `/test/jwks`.
        req.set_data(PathPattern(site.prefix.clone().into()));
        endpoint.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(environment: Environment, issuer: &str) -> Site {
        Site::new(environment, issuer, ProviderMetadata::new(issuer, vec![])).unwrap()
    }

    #[test]
    fn sites_match_on_segment_boundaries() {
        let test = site(Environment::Test, "http://127.0.0.1:8080/test");
        assert_eq!(test.matches("/test/jwks"), Some(5));
        assert_eq!(test.matches("/test"), Some(5));
        assert_eq!(test.matches("/testing/jwks"), None);
        assert_eq!(test.matches("/jwks"), None);
        let production = site(Environment::Production, "https://konto.example");
        assert_eq!(production.matches("/jwks"), Some(0));
        assert_eq!(production.authority, "konto.example");
        assert_eq!(test.authority, "127.0.0.1:8080");
    }
}
