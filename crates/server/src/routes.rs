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
//! {issuer}/saml/metadata  /saml/sso  /saml/slo  SAML 2.0 IdP: metadata, SSO (Redirect, POST), Single Logout
//! {issuer}/saml/anmelden  /saml/weiter  /saml/zustimmung   SAML: IdP-initiated, back from login, consent
//! {issuer}/register[/{client_id}]              dynamic client registration (RFC 7591/7592)
//! {issuer}/registrierung[/passwort|/pruefen]    citizen pages: registration in three steps
//! {issuer}/aktivierung[/erneut]                activation link, resend
//! {issuer}/anmelden  /abmelden                 login, logout
//! {issuer}/anmelden/passkey[/abschluss]  /anmelden/zweiter-faktor   passkey login, passkey after the password
//! {issuer}/eid  /eid/tc-token  /eid/ergebnis   eID: start ("Zur Ausweis App"), TC token, refresh address
//! {issuer}/eid/test-dienst                     the test eID service (test systems only)
//! {issuer}/registrierung/ausweis  /konto/ausweis   registration from the card, linking the card
//! {issuer}/passwort-vergessen  /passwort-neu   forgotten password
//! {issuer}/konto[/daten|/email|/passwort|/aktivitaet|/uebermittlungen|/export|/loeschen]   "Mein Konto"
//! {issuer}/konto/passkeys[/neu[/abschluss]|/umbenennen|/entfernen|/anmeldeverfahren]   passkeys
//! {issuer}/konto/organisationen[/neu]  /konto/organisation[/daten|/einladen|/rolle|/entfernen|/loeschen|/export]
//! {issuer}/organisationen/einladung  /organisationen/adresse   invitation, contact-address link
//! {issuer}/barrierefreiheit  /datenschutz  /static/style.css
//! /admin/api/v1/…                              admin API (poem-openapi), /admin/api/v1/openapi.json
//! ```
//! A request belongs to the environment whose issuer's path prefix it starts with, preferring
//! an issuer on the request's `Host`, then the longest prefix.

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt, PathPattern, Request, Response, Result, Route, RouteMethod,
    error::NotFoundError,
    get,
    http::{HeaderMap, HeaderValue, Method, Uri, header, uri::PathAndQuery},
    middleware::{CookieJarManager, SetHeader},
};

use crate::{
    admin, error,
    http::{authorize, discovery, introspection, logout, ops, par, registration, saml, token, userinfo},
    listener,
    metrics::RouteMetrics,
    middleware::{self, BodyLimit, Deadline, Drain, Hsts, MethodTable, Observe, ResponseHeaders, Trace},
    pages,
    state::AppState,
};
use oidc_core::{Environment, ProviderMetadata};
use prometheus::IntCounter;

/// One environment as the HTTP layer sees it: its issuer, split for routing, and its static
/// discovery document.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) environment: Environment,
    /// `host[:port]`, lower case, default port left out.
    authority: String,
    /// The issuer's path without a trailing slash; empty for an issuer at the root.
    pub(crate) prefix: String,
    /// The same as the start of every route pattern of this site (for the metrics' labels).
    pattern: Arc<str>,
    /// The issuer URL exactly as configured.
    pub(crate) issuer: String,
    /// Cookies get `Secure` when the issuer is https.
    pub(crate) secure: bool,
    /// The name of this environment's session cookie; environments never share a session.
    pub(crate) session_cookie: String,
    /// Serialised once at start: discovery never changes while the process runs.
    pub(crate) discovery: Arc<[u8]>,
    /// The discovery document's entity tag.
    pub(crate) discovery_etag: String,
}

impl Site {
    pub(crate) fn new(environment: Environment, issuer: &str, metadata: ProviderMetadata) -> anyhow::Result<Self> {
        let url = url::Url::parse(issuer)?;
        let discovery = serde_json::to_vec(&metadata)?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Ok(Self {
            environment,
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
            pattern: url.path().trim_end_matches('/').into(),
            secure: url.scheme() == "https",
            issuer: issuer.to_owned(),
            session_cookie: format!("sk_session_{}", environment.as_str()),
            discovery_etag: oidc_core::entity_tag(&discovery),
            discovery: discovery.into(),
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
    let mut methods = MethodTable::default();
    // Every site's routes are of one type: kept unboxed, a request passes one box fewer.
    let sites: Vec<_> = state
        .sites
        .iter()
        .map(|site| (site.clone(), environment_routes(site, &mut methods).with(BodyLimit(limit))))
        .collect();
    for path in ["/healthz", "/readyz", "/metrics"] {
        methods.add(path, "GET");
    }
    admin::add_methods(&mut methods);
    let environments = EnvironmentRouter { sites };
    let admin_api = admin::service();
    let mut admin_routes = Route::new().at("/openapi.json", admin_api.spec_endpoint());
    if state.config.admin.swagger_ui {
        admin_routes = admin_routes.nest("/docs", admin_api.swagger_ui());
    }
    let admin_routes = admin_routes
        .nest("/", admin_api)
        .catch_all_error(error::render_admin)
        .with(BodyLimit(state.config.http.admin_body_limit_bytes))
        // Admin answers carry client secrets and initial access tokens: never cached.
        .with(SetHeader::new().overriding(poem::http::header::CACHE_CONTROL, "no-store"));
    let mut operations =
        Route::new().nest(ADMIN_PREFIX, admin_routes).at("/healthz", get(ops::healthz)).at("/readyz", get(ops::readyz));
    let metrics_here = state.config.metrics.bind.is_none();
    if metrics_here {
        operations = operations.at("/metrics", get(ops::metrics));
    }
    TopRouter { operations, metrics_here, environments }
        .catch_all_error(error::render)
        .with(ResponseHeaders { hsts: hsts(state), methods: Arc::new(methods) })
        .with(Drain {
            draining: state.draining.clone(),
            trusted_proxies: Arc::new(state.config.http.trusted_proxies.clone()),
        })
        .with(Deadline)
        .with(Observe)
        .with(CookieJarManager::new())
        .with(Trace)
        .data(state.clone())
}

/// The metrics listener's application (`metrics.bind`): `/metrics` alone.
pub(crate) fn metrics_app(state: &AppState) -> impl Endpoint<Output = Response> + use<> {
    Route::new().at("/metrics", get(ops::metrics_listener)).data(state.clone())
}

/// `Strict-Transport-Security` for the hosts of https issuers, if there are any.
fn hsts(state: &AppState) -> Option<Arc<Hsts>> {
    let hosts: Vec<String> = state.sites.iter().filter(|s| s.secure).map(|s| s.authority.clone()).collect();
    let value = format!("max-age={}; includeSubDomains", state.config.http.hsts_max_age_seconds);
    let value = HeaderValue::from_str(&value).ok()?;
    (!hosts.is_empty()).then(|| Arc::new(Hsts { value, hosts }))
}

/// The endpoints every environment has, relative to its issuer.
fn environment_routes(site: &Site, table: &mut MethodTable) -> impl Endpoint<Output = Response> + use<> {
    SiteRoutes { route: Route::new(), table, prefix: site.prefix.clone() }
        .at("/.well-known/openid-configuration", Methods::new().get(discovery::openid_configuration))
        .at("/jwks", Methods::new().get(discovery::jwks))
        .at("/token", Methods::new().post(token::token))
        .at("/register", Methods::new().post(registration::register))
        .at(
            "/register/:client_id",
            Methods::new().get(registration::read).put(registration::update).delete(registration::delete),
        )
        .at("/authorize", Methods::new().get(authorize::authorize).post(authorize::authorize))
        .at("/par", Methods::new().post(par::par))
        .at("/zustimmung", Methods::new().post(authorize::consent))
        .at("/saml/metadata", Methods::new().get(saml::metadata))
        .at("/saml/sso", Methods::new().get(saml::sso).post(saml::sso))
        .at("/saml/anmelden", Methods::new().get(saml::unsolicited))
        .at("/saml/weiter", Methods::new().get(saml::resume))
        .at("/saml/zustimmung", Methods::new().post(saml::consent))
        .at("/saml/slo", Methods::new().get(saml::slo))
        .at("/userinfo", Methods::new().get(userinfo::userinfo).post(userinfo::userinfo))
        .at("/logout", Methods::new().get(logout::logout).post(logout::logout))
        .at("/introspect", Methods::new().post(introspection::introspect))
        .at("/revoke", Methods::new().post(introspection::revoke))
        .at("/static/form_post.js", Methods::new().get(pages::form_post_script))
        .at("/static/passkey.js", Methods::new().get(pages::passkey_script))
        .at("/", Methods::new().get(pages::start))
        .at("/static/style.css", Methods::new().get(pages::stylesheet))
        .at("/barrierefreiheit", Methods::new().get(pages::accessibility))
        .at("/datenschutz", Methods::new().get(pages::privacy))
        .at("/registrierung", Methods::new().get(pages::personal_form).post(pages::personal))
        .at("/registrierung/ausweis", Methods::new().get(pages::card_registration_form).post(pages::card_registration))
        .at("/eid", Methods::new().get(pages::eid_start_form).post(pages::eid_start))
        .at("/eid/tc-token", Methods::new().get(pages::tc_token))
        .at("/eid/ergebnis", Methods::new().get(pages::eid_result))
        .at("/eid/test-dienst", Methods::new().get(pages::test_service_form).post(pages::test_service))
        .at("/konto/ausweis", Methods::new().post(pages::link))
        .at("/registrierung/passwort", Methods::new().get(pages::password_form).post(pages::password))
        .at("/registrierung/pruefen", Methods::new().get(pages::review).post(pages::save))
        .at("/aktivierung", Methods::new().get(pages::activate))
        .at("/aktivierung/erneut", Methods::new().get(pages::resend_activation_form).post(pages::resend_activation))
        .at("/anmelden", Methods::new().get(pages::login_form).post(pages::login))
        .at("/anmelden/passkey", Methods::new().post(pages::passkey_login_start))
        .at("/anmelden/passkey/abschluss", Methods::new().post(pages::passkey_login_finish))
        .at("/anmelden/zweiter-faktor", Methods::new().post(pages::second_factor_finish))
        .at("/abmelden", Methods::new().post(pages::logout))
        .at("/passwort-vergessen", Methods::new().get(pages::forgot_form).post(pages::forgot))
        .at("/passwort-neu", Methods::new().get(pages::reset_form).post(pages::reset))
        .at("/konto", Methods::new().get(pages::overview))
        .at("/konto/daten", Methods::new().get(pages::data_form).post(pages::change_data))
        .at("/konto/email", Methods::new().get(pages::confirm_email))
        .at("/konto/passwort", Methods::new().get(pages::password_change_form).post(pages::change_password))
        .at("/konto/aktivitaet", Methods::new().get(pages::activity))
        .at("/konto/export", Methods::new().get(pages::export))
        .at("/konto/uebermittlungen", Methods::new().get(pages::transfers))
        .at("/konto/zustimmungen/widerrufen", Methods::new().post(pages::withdraw_consent))
        .at("/konto/passkeys", Methods::new().get(pages::passkey_list))
        .at("/konto/passkeys/neu", Methods::new().post(pages::add_passkey))
        .at("/konto/passkeys/neu/abschluss", Methods::new().post(pages::finish_add_passkey))
        .at("/konto/passkeys/umbenennen", Methods::new().post(pages::rename_passkey))
        .at("/konto/passkeys/entfernen", Methods::new().post(pages::remove_passkey))
        .at("/konto/passkeys/anmeldeverfahren", Methods::new().post(pages::login_factors))
        .at("/konto/organisationen", Methods::new().get(pages::organisation_list))
        .at(
            "/konto/organisationen/neu",
            Methods::new().get(pages::create_organisation_form).post(pages::create_organisation),
        )
        .at("/konto/organisation", Methods::new().get(pages::organisation))
        .at(
            "/konto/organisation/daten",
            Methods::new().get(pages::organisation_edit_form).post(pages::update_organisation),
        )
        .at("/konto/organisation/einladen", Methods::new().post(pages::invite_to_organisation))
        .at("/konto/organisation/rolle", Methods::new().post(pages::organisation_role))
        .at("/konto/organisation/entfernen", Methods::new().post(pages::remove_from_organisation))
        .at("/konto/organisation/loeschen", Methods::new().post(pages::delete_organisation))
        .at("/konto/organisation/export", Methods::new().get(pages::organisation_export))
        .at(
            "/organisationen/einladung",
            Methods::new().get(pages::organisation_invitation).post(pages::accept_invitation),
        )
        .at("/organisationen/adresse", Methods::new().get(pages::confirm_organisation_address))
        .at("/konto/loeschen", Methods::new().get(pages::delete_form).post(pages::delete))
        .route
        .around(pages::security_headers)
        .data(site.clone())
        .map_to_response()
}

/// A site's routes being built: each path's methods make its route and its `Allow` entry, from
/// one list, so the two cannot disagree.
struct SiteRoutes<'a> {
    route: Route,
    table: &'a mut MethodTable,
    prefix: String,
}

impl SiteRoutes<'_> {
    fn at(mut self, path: &str, methods: Methods) -> Self {
        let names: Vec<&str> = methods.names.iter().map(Method::as_str).collect();
        self.table.add(&format!("{}{path}", self.prefix), &names.join(", "));
        self.route = self.route.at(path, methods.route);
        self
    }
}

/// One path's endpoints by method, and their names for the path's `Allow` entry. The endpoints go
/// into poem's `RouteMethod` as they are: it boxes each once, and a box of our own around them
/// would cost every request one more allocation and one more copy of its handler's future.
struct Methods {
    route: RouteMethod,
    names: Vec<Method>,
}

impl Methods {
    fn new() -> Self {
        Self { route: RouteMethod::new(), names: Vec::new() }
    }

    fn method(mut self, method: Method, endpoint: impl Endpoint + 'static) -> Self {
        self.names.push(method.clone());
        self.route = self.route.method(method, endpoint);
        self
    }

    fn get(self, endpoint: impl Endpoint + 'static) -> Self {
        self.method(Method::GET, endpoint)
    }

    fn post(self, endpoint: impl Endpoint + 'static) -> Self {
        self.method(Method::POST, endpoint)
    }

    fn put(self, endpoint: impl Endpoint + 'static) -> Self {
        self.method(Method::PUT, endpoint)
    }

    fn delete(self, endpoint: impl Endpoint + 'static) -> Self {
        self.method(Method::DELETE, endpoint)
    }
}

/// Where the admin API lives, outside every issuer.
const ADMIN_PREFIX: &str = "/admin/api/v1";

/// The top of the route tree: the admin API and the operations endpoints by their fixed paths,
/// everything else to the issuers' routes. A plain comparison instead of a router here, because
/// every OIDC request passes it: a router adds a lookup, a boxed endpoint and futures that each
/// move the request once more (memmove was a tenth of a discovery request's profile).
struct TopRouter<E> {
    /// The admin API and `/healthz`, `/readyz` (and `/metrics` when it has no listener of its own).
    operations: Route,
    metrics_here: bool,
    environments: EnvironmentRouter<E>,
}

impl<E> TopRouter<E> {
    fn is_operation(&self, path: &str) -> bool {
        match path {
            "/healthz" | "/readyz" => true,
            "/metrics" => self.metrics_here,
            _ => path.strip_prefix(ADMIN_PREFIX).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

impl<E: Endpoint<Output = Response>> Endpoint for TopRouter<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        if self.is_operation(req.uri().path()) {
            return self.operations.call(req).await;
        }
        self.environments.call(req).await
    }
}

/// Dispatches a request to its environment's routes, with the issuer's path prefix removed.
struct EnvironmentRouter<E> {
    sites: Vec<(Site, E)>,
}

impl<E: Endpoint<Output = Response>> Endpoint for EnvironmentRouter<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let path = req.uri().path();
        let Some((site, endpoint)) = site_of(&self.sites, req.headers(), req.uri()) else {
            return Err(NotFoundError.into());
        };
        // An issuer at the root leaves the path as it is.
        if !site.prefix.is_empty() {
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
        }
        // The inner routes append their pattern to this, so metrics see e.g. `/test/jwks`.
        req.set_data(PathPattern(site.pattern.clone()));
        endpoint.call(req).await
    }
}

/// The environment a request belongs to: the site whose issuer's path prefix its path starts
/// with, an issuer on the request's host first, then the longest prefix.
fn site_of<'a, T>(sites: &'a [(Site, T)], headers: &HeaderMap, uri: &Uri) -> Option<(&'a Site, &'a T)> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let path = uri.path();
    sites
        .iter()
        .filter_map(|(site, value)| {
            site.matches(path).map(|len| ((site.authority.eq_ignore_ascii_case(host), len), site, value))
        })
        .max_by_key(|(score, _, _)| *score)
        .map(|(_, site, value)| (site, value))
}

/// The listener's shortcut: discovery and the JWKS straight from the request's head. They are
/// the most requested documents and the cheapest answers, so building poem's request, routing
/// it and passing it through the layers of [`app`] would be most of their cost (a profile:
/// a fifth of a JWKS request's CPU, more than a tenth of it moving the request from future to
/// future). What those layers do for them is done here: the request's id and span, `nosniff` and
/// HSTS, the metrics and the completion line. A request with a body, any method but GET, a path
/// that is not exactly one of the two, a JWKS due for a refresh from the store, and every request
/// while the node drains go the long way.
pub(crate) struct Documents {
    sites: Vec<(Site, SiteDocuments)>,
    state: AppState,
    hsts: Option<Arc<Hsts>>,
}

/// The metrics of one site's two documents, bound to their routes' labels.
struct SiteDocuments {
    discovery: DocumentMetrics,
    jwks: DocumentMetrics,
}

/// One document's request metrics, and the count of its requests answered here (not through poem).
struct DocumentMetrics {
    requests: RouteMetrics,
    from_head: IntCounter,
}

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/jwks";

/// The shortcut for [`app`]'s listener.
pub(crate) fn shortcut(state: &AppState) -> Documents {
    let sites = state
        .sites
        .iter()
        .map(|site| {
            // The labels `Observe` gives these routes: the site's prefix and the route's pattern.
            let document = |path: &str| {
                let route = format!("{}{path}", site.pattern);
                DocumentMetrics {
                    requests: state.metrics.route(&route, "GET"),
                    from_head: state.metrics.answered_from_head(&route),
                }
            };
            (site.clone(), SiteDocuments { discovery: document(DISCOVERY_PATH), jwks: document(JWKS_PATH) })
        })
        .collect();
    Documents { sites, state: state.clone(), hsts: hsts(state) }
}

impl listener::Shortcut for Documents {
    fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        let bodiless = !headers.contains_key(header::TRANSFER_ENCODING)
            && headers.get(header::CONTENT_LENGTH).is_none_or(|length| length.as_bytes() == b"0");
        if method != Method::GET || !bodiless || self.state.is_draining() {
            return None;
        }
        let started = std::time::Instant::now();
        let (site, documents) = site_of(&self.sites, headers, uri)?;
        let (metrics, response) = match &uri.path()[site.prefix.len()..] {
            DISCOVERY_PATH => (&documents.discovery, discovery::configuration_document(headers, site)),
            JWKS_PATH => {
                let published = self.state.keys.ready_published_jwks(site.environment)?;
                (&documents.jwks, discovery::jwks_document(headers, published))
            }
            _ => return None,
        };
        let request_id = middleware::request_id(headers);
        let span = middleware::request_span(&request_id, headers);
        let _in_span = span.enter();
        let mut response = response;
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        middleware::set_response_headers(response.headers_mut(), self.hsts.as_ref().and_then(|h| h.for_host(host)));
        middleware::set_request_id(response.headers_mut(), &request_id);
        metrics.requests.observe(response.status(), started.elapsed().as_secs_f64());
        metrics.from_head.inc();
        middleware::log_request(method, metrics.requests.route(), response.status(), started);
        Some(response)
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
