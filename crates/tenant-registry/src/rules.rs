//! Validation of tenants and clients, per environment. Every rule reports a field and a reason;
//! all violations are reported together.

use std::collections::BTreeSet;

use oidc_core::{Environment, TrustLevel};
use serde::Serialize;
use url::Url;

use crate::model::{AuthMethod, ClientKind, ClientSettings, GrantType, SamlSettings, Tenant};

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where, e.g. `redirect_uris[0]`.
    pub field: String,
    /// Why, in words an integrator understands.
    pub message: String,
}

#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<FieldError>);

impl Problems {
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    fn check(&mut self, ok: bool, field: &str, message: &str) {
        if !ok {
            self.add(field, message);
        }
    }
}

pub(crate) fn is_email(text: &str) -> bool {
    let mut parts = text.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(local), Some(domain), None)
        if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.'))
        && text.len() <= 254
        && !text.chars().any(char::is_whitespace)
}

pub(crate) fn is_slug(text: &str) -> bool {
    (2..=63).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// A URL a browser or server of ours will be sent to: no fragment, no credentials, https —
/// in the test environment also plain http on a loopback host (any port), for local development.
fn check_url(problems: &mut Problems, field: &str, url: &Url, environment: Environment) {
    if url.fragment().is_some() {
        problems.add(field, "must not contain a fragment (RFC 6749 §3.1.2)");
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.add(field, "must not contain user name or password");
    }
    match (url.scheme(), environment) {
        ("https", _) => {}
        ("http", Environment::Test) if is_loopback(url) => {}
        ("http", Environment::Test) => {
            problems.add(field, "must be https (plain http only for localhost or 127.0.0.1)")
        }
        (_, Environment::Production) => problems.add(field, "must be https in production"),
        (scheme, Environment::Test) => problems.add(field, format!("scheme {scheme:?} is not allowed; use https")),
    }
}

fn check_text(problems: &mut Problems, field: &str, text: &str, max: usize) {
    if text.trim().is_empty() {
        problems.add(field, "must not be empty");
    } else if text.chars().count() > max {
        problems.add(field, format!("must be at most {max} characters"));
    }
}

/// Rules for a tenant's own fields.
pub(crate) fn check_tenant(tenant: &Tenant) -> Problems {
    let mut problems = Problems::default();
    problems.check(is_slug(&tenant.slug), "slug", "2 to 63 lower-case letters, digits or hyphens, not at either end");
    check_text(&mut problems, "name", &tenant.name, 200);
    problems.check(is_email(&tenant.contact_email), "contact_email", "must be an e-mail address");
    check_text(&mut problems, "branding.display_name", &tenant.branding.display_name, 200);
    if let Some(logo) = &tenant.branding.logo_url {
        problems.check(logo.scheme() == "https", "branding.logo_url", "must be https");
    }
    check_text(&mut problems, "sector", &tenant.sector, 255);
    problems
}

const MINUTE: u32 = 60;
const HOUR: u32 = 3600;
const DAY: u32 = 24 * HOUR;

/// A SAML service provider: its addresses as redirect URIs are (per environment), no OAuth
/// grants or secrets, certificates that are base64.
fn check_saml(problems: &mut Problems, settings: &ClientSettings, saml: &SamlSettings, environment: Environment) {
    use base64::Engine as _;
    let id = &saml.entity_id;
    problems.check(
        !id.trim().is_empty() && id.len() <= 1024 && !id.contains(char::is_whitespace),
        "saml.entity_id",
        "must be an identifier without spaces, at most 1024 characters",
    );
    problems.check(
        settings.grant_types.is_empty() && settings.redirect_uris.is_empty() && settings.scopes.is_empty(),
        "grant_types",
        "a SAML service provider has no OAuth grants, scopes or redirect URIs",
    );
    problems.check(
        settings.kind == ClientKind::Public && settings.auth_method == AuthMethod::None,
        "auth_method",
        "a SAML service provider has no client secret: use \"none\"",
    );
    problems.check(
        !saml.assertion_consumer_services.is_empty(),
        "saml.assertion_consumer_services",
        "name at least one assertion consumer service (HTTP-POST)",
    );
    let mut indexes = BTreeSet::new();
    for (i, acs) in saml.assertion_consumer_services.iter().enumerate() {
        check_url(problems, &format!("saml.assertion_consumer_services[{i}]"), &acs.url, environment);
        if !indexes.insert(acs.index) {
            problems.add(format!("saml.assertion_consumer_services[{i}]"), "index used twice");
        }
    }
    if let Some(slo) = &saml.single_logout_service {
        check_url(problems, "saml.single_logout_service", slo, environment);
    }
    if let Some(url) = &saml.metadata_url {
        check_url(problems, "saml.metadata_url", url, environment);
    }
    let certificates = saml.signing_certificates.iter().map(|c| ("saml.signing_certificates", c));
    for (field, certificate) in
        certificates.chain(saml.encryption_certificate.iter().map(|c| ("saml.encryption_certificate", c)))
    {
        let der = base64::engine::general_purpose::STANDARD.decode(certificate);
        problems.check(
            der.is_ok_and(|d| !d.is_empty() && d.len() <= 16 * 1024),
            field,
            "must be a base64 DER certificate",
        );
    }
    if saml.requests_signed {
        problems.check(
            !saml.signing_certificates.is_empty(),
            "saml.requests_signed",
            "requests can only be required to be signed with a signing certificate",
        );
    }
}

/// Rules for a client's settings in `environment` under `tenant`.
pub(crate) fn check_client(settings: &ClientSettings, environment: Environment, tenant: &Tenant) -> Problems {
    let mut problems = Problems::default();
    check_text(&mut problems, "name", &settings.name, 200);

    match (settings.kind, settings.auth_method) {
        (ClientKind::Public, AuthMethod::None) => {
            problems.check(settings.require_pkce, "require_pkce", "public clients must use PKCE")
        }
        (ClientKind::Public, _) => problems.add("auth_method", "public clients cannot keep a secret: use \"none\""),
        (ClientKind::Confidential, AuthMethod::None) => {
            problems.add("auth_method", "confidential clients must authenticate: not \"none\"")
        }
        (ClientKind::Confidential, _) => {}
    }
    if settings.auth_method == AuthMethod::PrivateKeyJwt {
        match (&settings.jwks, &settings.jwks_uri) {
            (Some(_), Some(_)) => problems.add("jwks", "give jwks or jwks_uri, not both"),
            (None, None) => problems.add("jwks_uri", "private_key_jwt needs jwks or jwks_uri"),
            _ => {}
        }
    }
    if let Some(jwks) = &settings.jwks {
        problems.check(jwks.get("keys").is_some_and(|k| k.is_array()), "jwks", "must be a JWK Set: {\"keys\": [...]}");
    }
    if let Some(uri) = &settings.jwks_uri {
        check_url(&mut problems, "jwks_uri", uri, environment);
    }
    if let Some(audience) = &settings.access_token_audience {
        problems.check(
            !audience.is_empty() && audience.len() <= 512 && !audience.contains(char::is_whitespace),
            "access_token_audience",
            "must be an identifier without spaces, at most 512 characters (e.g. the API's https URL)",
        );
    }

    let grants = &settings.grant_types;
    match &settings.saml {
        Some(saml) => check_saml(&mut problems, settings, saml, environment),
        None => problems.check(!grants.is_empty(), "grant_types", "name at least one grant type"),
    }
    if grants.contains(&GrantType::ClientCredentials) {
        problems.check(
            settings.kind == ClientKind::Confidential,
            "grant_types",
            "client_credentials needs a confidential client",
        );
    }
    if grants.contains(&GrantType::RefreshToken) {
        problems.check(
            grants.contains(&GrantType::AuthorizationCode),
            "grant_types",
            "refresh_token comes only with authorization_code",
        );
    }
    if grants.contains(&GrantType::AuthorizationCode) {
        problems.check(!settings.redirect_uris.is_empty(), "redirect_uris", "authorization_code needs a redirect URI");
        problems.check(
            settings.scopes.iter().any(|s| s.as_str() == "openid"),
            "scopes",
            "authorization_code clients need the openid scope",
        );
    }
    for (field, uris) in
        [("redirect_uris", &settings.redirect_uris), ("post_logout_redirect_uris", &settings.post_logout_redirect_uris)]
    {
        let mut seen = BTreeSet::new();
        for (i, uri) in uris.iter().enumerate() {
            check_url(&mut problems, &format!("{field}[{i}]"), uri, environment);
            if !seen.insert(uri.as_str()) {
                problems.add(format!("{field}[{i}]"), "listed twice");
            }
        }
    }
    if let Some(uri) = &settings.backchannel_logout_uri {
        check_url(&mut problems, "backchannel_logout_uri", uri, environment);
    }
    for (field, uri) in
        [("logo_uri", &settings.logo_uri), ("policy_uri", &settings.policy_uri), ("tos_uri", &settings.tos_uri)]
    {
        if let Some(uri) = uri {
            check_url(&mut problems, field, uri, environment);
        }
    }

    let mut seen = BTreeSet::new();
    for (i, rule) in settings.claims.iter().enumerate() {
        if !tenant.allowed_claims.contains(&rule.claim) {
            problems.add(format!("claims[{i}]"), format!("the tenant may not receive {:?}", rule.claim.as_str()));
        }
        if !seen.insert(&rule.claim) {
            problems.add(format!("claims[{i}]"), "listed twice");
        }
    }
    if settings.scopes.iter().any(|s| matches!(s.as_str(), "admin" | "tenant-admin")) {
        problems.add("scopes", "admin scopes come from the client's admin role, not from its settings");
    }

    let level_name = |level: TrustLevel| level.as_str();
    if settings.min_acr < tenant.min_trust_level {
        problems.add("min_acr", format!("the tenant requires at least {:?}", level_name(tenant.min_trust_level)));
    }
    problems.check(settings.default_acr >= settings.min_acr, "default_acr", "must not be below min_acr");

    let lifetimes = settings.lifetimes;
    problems.check(
        (MINUTE..=HOUR).contains(&lifetimes.access_token),
        "lifetimes.access_token",
        "between 60 and 3600 seconds",
    );
    problems.check((MINUTE..=HOUR).contains(&lifetimes.id_token), "lifetimes.id_token", "between 60 and 3600 seconds");
    problems.check(
        (HOUR..=180 * DAY).contains(&lifetimes.refresh_token),
        "lifetimes.refresh_token",
        "between one hour and 180 days",
    );

    if let Some(name) = &settings.organization_display_name {
        check_text(&mut problems, "organization_display_name", name, 200);
    }
    if let Some(id) = &settings.online_service_id {
        check_text(&mut problems, "online_service_id", id, 100);
    }
    for (i, contact) in settings.contacts.iter().enumerate() {
        problems.check(is_email(contact), &format!("contacts[{i}]"), "must be an e-mail address");
    }
    match &settings.purpose {
        Some(purpose) => {
            check_text(&mut problems, "purpose.de", &purpose.de, 500);
            if let Some(en) = &purpose.en {
                check_text(&mut problems, "purpose.en", en, 500);
            }
        }
        // A citizen asked to consent must be told why (GDPR Art. 13(1)(c)); the test
        // environment lets integrators start without one.
        None if environment == Environment::Production
            && (grants.contains(&GrantType::AuthorizationCode) || settings.saml.is_some()) =>
        {
            problems.add("purpose", "required in production: why the service needs the citizen's data")
        }
        None => {}
    }
    problems
}

#[cfg(test)]
mod tests {
    use oidc_core::{ClaimName, TenantId};
    use time::OffsetDateTime;

    use super::*;
    use crate::model::{Branding, ClaimRule, Purpose, TenantStatus};

    fn tenant() -> Tenant {
        Tenant {
            id: TenantId::new_random(),
            slug: "musterstadt".into(),
            name: "Stadt Musterstadt".into(),
            contact_email: "it@musterstadt.de".into(),
            status: TenantStatus::Active,
            branding: Branding { display_name: "Musterstadt".into(), logo_url: None },
            allowed_claims: ["given_name", "family_name"].iter().filter_map(|c| ClaimName::parse(c)).collect(),
            min_trust_level: TrustLevel::Normal,
            sector: "musterstadt".into(),
            version: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    /// The fields reported for `settings` in `environment`.
    fn check(settings: &ClientSettings, environment: Environment, expect: &[&str]) {
        let reported: Vec<String> =
            check_client(settings, environment, &tenant()).0.into_iter().map(|p| p.field).collect();
        assert_eq!(reported, expect, "{:?}", check_client(settings, environment, &tenant()).0);
    }

    fn base(redirect: &str) -> ClientSettings {
        let mut settings = ClientSettings::confidential("Hundesteuer", vec![url(redirect)]);
        settings.purpose = Some(Purpose { de: "Hundesteuer anmelden".into(), en: None });
        settings
    }

    fn saml_client(acs: &str) -> ClientSettings {
        ClientSettings::saml(
            "Portal",
            crate::model::SamlSettings {
                entity_id: "https://portal.musterstadt.de/sp".into(),
                assertion_consumer_services: vec![crate::model::AssertionConsumerService { index: 0, url: url(acs) }],
                single_logout_service: None,
                signing_certificates: Vec::new(),
                encryption_certificate: None,
                requests_signed: false,
                attribute_profile: crate::model::SamlAttributeProfile::Oidc,
                idp_initiated: false,
                metadata_url: None,
            },
        )
    }

    #[test]
    fn saml_service_providers_follow_the_environment_rules() {
        check(&saml_client("http://localhost:8000/acs"), Environment::Test, &[]);
        let mut production = saml_client("https://portal.musterstadt.de/acs");
        check(&production, Environment::Production, &["purpose"]);
        production.purpose = Some(Purpose { de: "Bauantrag stellen".into(), en: None });
        check(&production, Environment::Production, &[]);
        check(
            &saml_client("http://localhost:8000/acs"),
            Environment::Production,
            &["saml.assertion_consumer_services[0]", "purpose"],
        );
        let mut strict = saml_client("https://portal.musterstadt.de/acs");
        let saml = strict.saml.as_mut().unwrap();
        saml.requests_signed = true;
        saml.encryption_certificate = Some("kein base64!".into());
        saml.entity_id = "mit leerzeichen".into();
        strict.grant_types.insert(GrantType::AuthorizationCode);
        check(
            &strict,
            Environment::Test,
            &[
                "saml.entity_id",
                "grant_types",
                "saml.encryption_certificate",
                "saml.requests_signed",
                "redirect_uris",
                "scopes",
            ],
        );
    }

    #[test]
    fn production_clients_that_log_citizens_in_say_why() {
        let mut settings = base("https://a.de/cb");
        settings.purpose = None;
        check(&settings, Environment::Production, &["purpose"]);
        check(&settings, Environment::Test, &[]);
        settings.grant_types = BTreeSet::from([GrantType::ClientCredentials]);
        settings.redirect_uris.clear();
        settings.scopes.clear();
        check(&settings, Environment::Production, &[]);
        let mut settings = base("https://a.de/cb");
        settings.purpose = Some(Purpose { de: " ".into(), en: Some("x".repeat(501)) });
        check(&settings, Environment::Test, &["purpose.de", "purpose.en"]);
        let purpose = Purpose { de: "Hundesteuer".into(), en: Some("Dog tax".into()) };
        assert_eq!(purpose.text("en"), ("Dog tax", "en"));
        assert_eq!(purpose.text("de"), ("Hundesteuer", "de"));
        assert_eq!(Purpose { en: None, ..purpose }.text("en"), ("Hundesteuer", "de"));
    }

    #[test]
    fn redirect_uris_per_environment() {
        check(&base("https://app.musterstadt.de/cb"), Environment::Production, &[]);
        check(&base("https://app.musterstadt.de/cb"), Environment::Test, &[]);
        check(&base("http://localhost:3000/cb"), Environment::Test, &[]);
        check(&base("http://127.0.0.1:49152/cb"), Environment::Test, &[]);
        check(&base("http://localhost:3000/cb"), Environment::Production, &["redirect_uris[0]"]);
        check(&base("http://app.musterstadt.de/cb"), Environment::Test, &["redirect_uris[0]"]);
        check(&base("https://app.musterstadt.de/cb#frag"), Environment::Test, &["redirect_uris[0]"]);
        check(&base("https://user:pw@app.musterstadt.de/cb"), Environment::Production, &["redirect_uris[0]"]);
        check(&base("myapp://cb"), Environment::Production, &["redirect_uris[0]"]);
        let mut twice = base("https://a.de/cb");
        twice.redirect_uris.push(url("https://a.de/cb"));
        check(&twice, Environment::Production, &["redirect_uris[1]"]);
        let mut none = base("https://a.de/cb");
        none.redirect_uris.clear();
        check(&none, Environment::Production, &["redirect_uris"]);
    }

    #[test]
    fn kinds_methods_and_grants_fit_together() {
        let mut public = base("https://a.de/cb");
        public.kind = ClientKind::Public;
        check(&public, Environment::Production, &["auth_method"]);
        public.auth_method = AuthMethod::None;
        check(&public, Environment::Production, &[]);
        public.require_pkce = false;
        check(&public, Environment::Production, &["require_pkce"]);

        let mut confidential = base("https://a.de/cb");
        confidential.auth_method = AuthMethod::None;
        check(&confidential, Environment::Production, &["auth_method"]);
        confidential.auth_method = AuthMethod::PrivateKeyJwt;
        check(&confidential, Environment::Production, &["jwks_uri"]);
        confidential.jwks = Some(serde_json::json!({"keys": []}));
        check(&confidential, Environment::Production, &[]);
        confidential.jwks_uri = Some(url("https://a.de/jwks"));
        check(&confidential, Environment::Production, &["jwks"]);

        let mut machine = base("https://a.de/cb");
        machine.grant_types = BTreeSet::from([GrantType::ClientCredentials]);
        machine.kind = ClientKind::Public;
        machine.auth_method = AuthMethod::None;
        check(&machine, Environment::Production, &["grant_types"]);
        let mut refresh_only = base("https://a.de/cb");
        refresh_only.grant_types = BTreeSet::from([GrantType::RefreshToken]);
        check(&refresh_only, Environment::Production, &["grant_types"]);
    }

    #[test]
    fn claims_and_trust_levels_stay_within_the_tenant() {
        let mut settings = base("https://a.de/cb");
        settings.claims = vec![
            ClaimRule { claim: ClaimName::parse("given_name").unwrap(), required: true },
            ClaimRule { claim: ClaimName::parse("email").unwrap(), required: false },
        ];
        check(&settings, Environment::Production, &["claims[1]"]);
        settings.claims.truncate(1);
        settings.default_acr = TrustLevel::Normal;
        settings.min_acr = TrustLevel::Hoch;
        check(&settings, Environment::Production, &["default_acr"]);
        let mut strict = tenant();
        strict.min_trust_level = TrustLevel::Hoch;
        let reported = check_client(&base("https://a.de/cb"), Environment::Production, &strict).0;
        assert_eq!(reported[0].field, "min_acr");
        assert!(reported[0].message.contains("hoch"));
    }

    #[test]
    fn lifetimes_and_texts_have_bounds() {
        let mut settings = base("https://a.de/cb");
        settings.lifetimes.access_token = 10;
        settings.lifetimes.refresh_token = 365 * DAY;
        settings.name = "  ".into();
        settings.contacts = vec!["not-an-email".into()];
        check(
            &settings,
            Environment::Production,
            &["name", "lifetimes.access_token", "lifetimes.refresh_token", "contacts[0]"],
        );
    }

    #[test]
    fn tenant_fields() {
        let mut t = tenant();
        assert!(check_tenant(&t).0.is_empty());
        t.slug = "Muster Stadt".into();
        t.contact_email = "it@".into();
        t.branding.logo_url = Some(url("http://musterstadt.de/logo.png"));
        let fields: Vec<String> = check_tenant(&t).0.into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["slug", "contact_email", "branding.logo_url"]);
        for (slug, ok) in [("ab", true), ("a", false), ("-ab", false), ("ab-", false), ("kreis-lippe-2", true)] {
            assert_eq!(is_slug(slug), ok, "{slug}");
        }
    }
}
