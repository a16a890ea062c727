//! The citizen pages: server-rendered templates (minijinja), German first and English
//! selectable, forms that work without JavaScript, CSRF tokens on every form, security headers
//! on every page.
//!
//! Modules: `registration` (the three steps and "Sichern"), `signin` (login, logout, activation
//! and its resend), `account` ("Mein Konto": data, e-mail change, password, activity, export,
//! deletion), `passkeys` (passkeys in "Mein Konto" and the logins with them), `recovery`
//! (forgotten password), `info` (start, accessibility statement, privacy
//! statement, style sheet).

// A redirect or an error page is the short way out of a handler; it is built once per request.
#![allow(clippy::result_large_err, reason = "the Err side is the page to answer with, built once per request")]

mod account;
mod draft;
mod eid;
mod form;
pub(crate) mod format;
mod info;
mod organisations;
mod passkeys;
mod recovery;
mod registration;
mod signin;
mod texts;

use std::time::Duration;

use account_service::{Account, Session};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use minijinja::{Value, context};
use oidc_core::{KeyEncryptionKey, constant_time_eq, random_token};
use poem::{
    Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response, Result,
    http::{HeaderValue, StatusCode, header},
    web::cookie::{Cookie, CookieJar, SameSite},
};

pub(crate) use account::{
    activity, change_data, change_password, confirm_email, data_form, delete, delete_form, export, overview,
    password_change_form, transfers, withdraw_consent,
};
pub(crate) use eid::{
    card_registration, card_registration_form, link, result as eid_result, start as eid_start,
    start_form as eid_start_form, tc_token, test_service, test_service_form,
};
pub(crate) use info::{accessibility, form_post_script, privacy, start, stylesheet};
pub(crate) use organisations::{
    accept as accept_invitation, confirm_address as confirm_organisation_address, create as create_organisation,
    create_form as create_organisation_form, delete as delete_organisation, detail as organisation,
    edit_form as organisation_edit_form, export as organisation_export, invitation as organisation_invitation,
    invite as invite_to_organisation, list as organisation_list, remove as remove_from_organisation,
    set_role as organisation_role, update as update_organisation,
};
pub(crate) use passkeys::{
    add as add_passkey, factors as login_factors, finish_add as finish_add_passkey, list as passkey_list,
    login_finish_alone as passkey_login_finish, login_finish_second as second_factor_finish,
    login_start as passkey_login_start, remove as remove_passkey, rename as rename_passkey, script as passkey_script,
};
pub(crate) use recovery::{forgot, forgot_form, reset, reset_form};
pub(crate) use registration::{password, password_form, personal, personal_form, review, save};
pub(crate) use signin::{activate, login, login_form, logout, resend_activation, resend_activation_form};
pub(crate) use texts::Lang;

use crate::{error::Failure, routes::Site, state::AppState};

/// Templates, texts and the keys of the page machinery. Built once at start.
pub(crate) struct Pages {
    templates: minijinja::Environment<'static>,
    texts: texts::Texts,
    csrf_key: [u8; 32],
    pub(crate) drafts: draft::Drafts,
    pub(crate) accessibility_contact: String,
    pub(crate) privacy_version: String,
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

/// Every template, embedded in the binary.
const TEMPLATES: [(&str, &str); 35] = templates![
    "organisations.html",
    "organisation.html",
    "organisation_form.html",
    "organisation_invitation.html",
    "passkey.html",
    "passkeys.html",
    "eid_start.html",
    "eid_test_service.html",
    "eid_compare.html",
    "register_eid.html",
    "layout.html",
    "macros.html",
    "steps.html",
    "password_rules.html",
    "message.html",
    "start.html",
    "register_personal.html",
    "register_password.html",
    "register_review.html",
    "login.html",
    "login_request.html",
    "account.html",
    "account_edit.html",
    "password_form.html",
    "activity.html",
    "delete.html",
    "accessibility.html",
    "privacy.html",
    "mail/text.txt",
    "mail/html.html",
    "consent.html",
    "form_post.html",
    "transfers.html",
    "logout_confirm.html",
    "personal_fields.html",
];

impl Pages {
    /// Parses every template and text file; fails at start, never at a request.
    pub(crate) fn new(
        kek: &KeyEncryptionKey,
        accessibility_contact: &str,
        privacy_version: &str,
    ) -> anyhow::Result<Self> {
        let mut templates = minijinja::Environment::new();
        for (name, source) in TEMPLATES {
            templates.add_template(name, source)?;
        }
        // Catch a typo in a text key at start (and in tests) rather than as an empty string.
        templates.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        Ok(Self {
            templates,
            texts: texts::Texts::load()?,
            csrf_key: kek.derive("csrf"),
            drafts: draft::Drafts::new(kek.derived("registration-draft")),
            accessibility_contact: accessibility_contact.to_owned(),
            privacy_version: privacy_version.to_owned(),
        })
    }

    pub(crate) fn texts(&self) -> &texts::Texts {
        &self.texts
    }

    /// Renders a named template with `context`; a template error is a bug, logged and answered
    /// with a plain 500.
    pub(crate) fn render_template(&self, name: &str, context: Value) -> Result<String, minijinja::Error> {
        self.templates.get_template(name)?.render(context)
    }

    fn csrf_token(&self, cookie: &str) -> String {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.csrf_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(cookie.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// One page request: the environment, the language, the CSRF token, the citizen's session.
pub(crate) struct PageCtx {
    pub(crate) state: AppState,
    pub(crate) site: Site,
    pub(crate) lang: Lang,
    pub(crate) session: Option<(Session, Account)>,
    pub(crate) session_token: Option<String>,
    /// The session could not be looked up (a store failed): never read as "not logged in",
    /// which would be a false logout; pages that need the session answer 503 instead.
    pub(crate) session_unknown: bool,
    /// The CSRF cookie's value; the token in forms is derived from it when a page needs one (a
    /// redirect, the authorization endpoint's usual answer, needs none).
    csrf_cookie: String,
    path: String,
    /// The raw query, for the language switch.
    query: String,
    jar: CookieJar,
    client_ip: String,
}

const CSRF_COOKIE: &str = "sk_csrf";
const LANG_COOKIE: &str = "sk_lang";

impl<'a> FromRequest<'a> for PageCtx {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> Result<Self> {
        let state = req
            .data::<AppState>()
            .cloned()
            .ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))?;
        let site =
            req.data::<Site>().cloned().ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))?;
        let jar = req.cookie().clone();
        let query = req.uri().query().unwrap_or_default();
        let from_query =
            |name: &str| url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v);
        let chosen = from_query("lang").and_then(|v| Lang::parse(&v));
        let lang = chosen
            .or_else(|| jar.get(LANG_COOKIE).and_then(|c| Lang::parse(c.value_str())))
            .or_else(|| from_query("ui_locales").and_then(|v| Lang::from_preferences(&v)))
            .or_else(|| req.header(header::ACCEPT_LANGUAGE).and_then(Lang::from_accept_language))
            .unwrap_or(Lang::De);
        let ctx_cookie = |name: &str, value: String, max_age: Option<Duration>| {
            let mut cookie = Cookie::new_with_str(name, value);
            cookie.set_path("/");
            cookie.set_http_only(true);
            cookie.set_same_site(SameSite::Lax);
            cookie.set_secure(site.secure);
            if let Some(max_age) = max_age {
                cookie.set_max_age(max_age);
            }
            cookie
        };
        if let Some(lang) = chosen {
            jar.add(ctx_cookie(LANG_COOKIE, lang.code().to_owned(), Some(Duration::from_secs(365 * 24 * 3600))));
        }
        let csrf_cookie = match jar.get(CSRF_COOKIE) {
            Some(cookie) if cookie.value_str().len() >= 32 => cookie.value_str().to_owned(),
            _ => {
                let value = random_token();
                jar.add(ctx_cookie(CSRF_COOKIE, value.clone(), None));
                value
            }
        };
        let session_token = jar.get(&site.session_cookie).map(|c| c.value_str().to_owned());
        let (session, session_unknown) = match &session_token {
            Some(token) => match state.accounts.current(site.environment, token).await {
                Ok(session) => (session, false),
                Err(e) => {
                    crate::error::record_failure(&state, "session.lookup", &e);
                    (None, true)
                }
            },
            None => (None, false),
        };
        let path = format!("{}{}", site.prefix, req.uri().path());
        Ok(Self {
            query: query.to_owned(),
            csrf_cookie,
            client_ip: client_address(
                req.remote_addr().as_socket_addr().map(|a| a.ip()),
                req.header("x-forwarded-for"),
                &state.config.http.trusted_proxies,
            ),
            state,
            site,
            lang,
            session,
            session_token,
            session_unknown,
            path,
            jar,
        })
    }
}

impl PageCtx {
    /// The environment's path prefix, for links.
    pub(crate) fn base(&self) -> &str {
        &self.site.prefix
    }

    /// A text of the page's language.
    pub(crate) fn t(&self, key: &str) -> String {
        self.state.pages.texts.get(self.lang, key)
    }

    /// The name of the country `code` for the last line of an address block, or `None` for
    /// Germany, which a German address block leaves out (DIN 5008).
    pub(crate) fn country_abroad(&self, code: &str) -> Option<String> {
        (code != "DE").then(|| self.t(&format!("country_{code}")))
    }

    /// The client's address, for throttling.
    pub(crate) fn client_ip(&self) -> &str {
        &self.client_ip
    }

    /// Whether a form's CSRF field belongs to this browser.
    pub(crate) fn csrf_ok(&self, field: &str) -> bool {
        constant_time_eq(field.as_bytes(), self.csrf().as_bytes())
    }

    /// The CSRF token of this browser's forms.
    fn csrf(&self) -> String {
        self.state.pages.csrf_token(&self.csrf_cookie)
    }

    /// This page in the other language. It keeps the page's other parameters (e.g. an
    /// authorization request waiting behind the login page).
    fn lang_switch(&self) -> String {
        let mut switch = url::form_urlencoded::Serializer::new(String::new());
        switch.extend_pairs(url::form_urlencoded::parse(self.query.as_bytes()).filter(|(k, _)| k != "lang"));
        switch.append_pair("lang", self.lang.other().code());
        format!("{}?{}", self.path, switch.finish())
    }

    /// Renders `template` with the common context (texts, language, links, CSRF token) and
    /// `extra`, with `status`.
    pub(crate) fn render_status(&self, status: StatusCode, template: &str, extra: Value) -> Response {
        let other = self.lang.other();
        let context = context! {
            t => self.state.pages.texts.page(self.lang),
            lang => self.lang.code(),
            other_lang => other.code(),
            lang_switch => self.lang_switch(),
            base => self.site.prefix.clone(),
            csrf => self.csrf(),
            environment => self.site.environment.as_str(),
            logged_in => self.session.is_some(),
            eid_offered => self.state.eid.of(self.site.environment).is_some(),
            session_idle => self.state.config.accounts.session_idle_minutes.to_string(),
            session_absolute => self.state.config.accounts.session_absolute_hours.to_string(),
            ..extra
        };
        match self.state.pages.render_template(template, context) {
            Ok(html) => html.with_status(status).with_content_type("text/html; charset=utf-8").into_response(),
            Err(e) => {
                tracing::error!(error = %e, template, "template failed");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    /// Renders `template` with 200.
    pub(crate) fn render(&self, template: &str, extra: Value) -> Response {
        self.render_status(StatusCode::OK, template, extra)
    }

    /// A page with a heading, paragraphs and links.
    pub(crate) fn message(&self, status: StatusCode, heading: &str, paragraphs: &[String], links: Value) -> Response {
        self.render_status(
            status,
            "message.html",
            context! { heading => self.t(heading), paragraphs => paragraphs, links => links },
        )
    }

    /// The answer to a form whose CSRF token is missing or foreign.
    pub(crate) fn csrf_failed(&self) -> Response {
        self.message(StatusCode::BAD_REQUEST, "form_expired_title", &[self.t("form_expired_text")], Value::from(()))
    }

    /// The answer when a service fails: logged once, a German (or English) page — 503 "not
    /// reachable for the moment" for an outage of a dependency, else 500 "technical error".
    pub(crate) fn failure(&self, error: impl std::error::Error + 'static) -> Response {
        match crate::error::record_failure(&self.state, "page", &error) {
            Failure::Outage(_) => self.unavailable(),
            Failure::Bug => self.message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error_title",
                &[self.t("server_error_text")],
                Value::from(()),
            ),
        }
    }

    /// 503: a dependency is down; the citizen's data are safe and a retry later will work.
    pub(crate) fn unavailable(&self) -> Response {
        self.message(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_title",
            &[self.t("unavailable_text")],
            Value::from(()),
        )
    }

    /// Sets a cookie for this environment (its path is the issuer's path).
    pub(crate) fn set_cookie(&self, name: &str, value: &str, max_age: Option<Duration>) {
        let mut cookie = Cookie::new_with_str(name, value);
        cookie.set_path(if self.site.prefix.is_empty() { "/" } else { &self.site.prefix });
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(self.site.secure);
        if let Some(max_age) = max_age {
            cookie.set_max_age(max_age);
        }
        self.jar.add(cookie);
    }

    /// Removes a cookie set by [`PageCtx::set_cookie`].
    pub(crate) fn clear_cookie(&self, name: &str) {
        self.set_cookie(name, "", Some(Duration::ZERO));
    }

    /// A cookie's value.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).map(|c| c.value_str().to_owned())
    }

    /// A `303 See Other` to a path of this environment.
    pub(crate) fn redirect(&self, path: &str) -> Response {
        Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, format!("{}{path}", self.site.prefix))
            .finish()
    }

    /// A new login replaces the browser's old session (no session fixation): the old one ends
    /// everywhere (its clients are told), the cookie names the new one.
    pub(crate) async fn replace_session(&self, new_token: &str) {
        if let Some(old) = &self.session_token {
            let _ = crate::flows::backchannel::end_session(&self.state, self.site.environment, old).await;
        }
        self.set_cookie(&self.site.session_cookie, new_token, None);
    }

    /// The session's account, or a redirect to the login that comes back here (or 503 while the
    /// session cannot be looked up: the cookie is kept, the citizen is not logged out).
    pub(crate) fn require_login(&self) -> Result<&Account, Response> {
        match &self.session {
            Some((_, account)) => Ok(account),
            None if self.session_unknown => Err(self.unavailable()),
            None => {
                let here = self.path.strip_prefix(&self.site.prefix).unwrap_or("/");
                let target: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
                Err(self.redirect(&format!("/anmelden?return_to={target}")))
            }
        }
    }
}

/// Content-Security-Policy of every page: no inline script or style (the only scripts are
/// files of ours: the form_post submitter and the passkey ceremony), no fetch, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; form-action 'self' http: https:; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every HTML page (`nosniff` on everything is added globally).
pub(crate) async fn security_headers<E: Endpoint>(ep: E, req: Request) -> Result<Response> {
    let mut response = ep.call(req).await?.into_response();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let headers = response.headers_mut();
    if is_html {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// The citizen's address: the TCP peer, unless that is a trusted reverse proxy; then the last
/// address in `X-Forwarded-For` that is not a trusted proxy itself (the ones before it could be
/// made up by the client).
fn client_address(peer: Option<std::net::IpAddr>, forwarded_for: Option<&str>, trusted: &[std::net::IpAddr]) -> String {
    let Some(peer) = peer else { return String::new() };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    forwarded_for
        .unwrap_or_default()
        .rsplit(',')
        .map(|a| a.trim().parse::<std::net::IpAddr>())
        .find(|a| a.as_ref().map_or(true, |a| !trusted.contains(a)))
        .and_then(Result::ok)
        .unwrap_or(peer)
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_citizens_address_is_believed_from_trusted_proxies_only() {
        use std::net::IpAddr;
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let inner: IpAddr = "10.0.0.3".parse().unwrap();
        let trusted = [proxy, inner];
        for (peer, header, expect) in [
            ("203.0.113.9", Some("198.51.100.1"), "203.0.113.9"),
            ("10.0.0.2", Some("198.51.100.1"), "198.51.100.1"),
            ("10.0.0.2", Some("6.6.6.6, 198.51.100.1"), "198.51.100.1"),
            ("10.0.0.2", Some("198.51.100.1, 10.0.0.3"), "198.51.100.1"),
            ("10.0.0.2", Some("nonsense"), "10.0.0.2"),
            ("10.0.0.2", None, "10.0.0.2"),
        ] {
            let got = super::client_address(peer.parse().ok(), header, &trusted);
            assert_eq!(got, expect, "{peer} {header:?}");
        }
        assert_eq!(super::client_address(None, Some("1.2.3.4"), &trusted), "");
    }

    use super::*;

    /// Every `t.key` a template uses exists in the texts (both languages have the same keys).
    #[test]
    fn templates_use_only_existing_texts() {
        let texts = texts::Texts::load().unwrap();
        for (name, source) in TEMPLATES {
            for (i, _) in source.match_indices("t.") {
                let before = source[..i].chars().last().unwrap_or(' ');
                if before.is_alphanumeric() || before == '_' || before == '.' {
                    continue;
                }
                let key: String =
                    source[i + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                assert!(texts.has(&key), "{name} uses the unknown text {key:?}");
            }
        }
    }

    proptest::proptest! {
        /// `X-Forwarded-For` is the client's to write: any value gives an address, never a panic.
        #[test]
        fn any_forwarded_for_gives_an_address(header in ".{0,200}") {
            let proxy: std::net::IpAddr = "10.0.0.2".parse().unwrap();
            let _ = client_address(Some(proxy), Some(&header), &[proxy]);
        }
    }

    #[test]
    fn every_template_parses() {
        Pages::new(&KeyEncryptionKey::generate(), "a11y@example.de", "1").unwrap();
    }
}
