//! Wire types of the admin API, separate from the domain types, converted with field-level
//! errors.

use std::collections::BTreeSet;

use oidc_core::{ClaimName, Scope, SigningAlgorithm, TrustLevel};
use poem_openapi::{Enum, Object};
use tenant_registry::{
    AdminRole, AuditEntry, AuthMethod, Branding, ClaimRule, Client, ClientKind, ClientSettings, FieldError, GrantType,
    NewTenant, OperatorFlags, Protocol, Purpose, SamlAttributeProfile, SamlSettings, Tenant, TenantChanges,
    TenantStatus, TokenLifetimes,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

/// Collects conversion errors, so that one response lists them all.
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: &str, message: String) {
        self.0.push(FieldError { field: field.to_owned(), message });
    }

    fn url(&mut self, field: &str, text: &str) -> Option<Url> {
        Url::parse(text).map_err(|e| self.push(field, format!("not an absolute URL: {e}"))).ok()
    }

    fn urls(&mut self, field: &str, texts: &[String]) -> Vec<Url> {
        texts.iter().enumerate().filter_map(|(i, t)| self.url(&format!("{field}[{i}]"), t)).collect()
    }

    fn optional_url(&mut self, field: &str, text: &Option<String>) -> Option<Url> {
        text.as_deref().and_then(|t| self.url(field, t))
    }

    fn claims(&mut self, field: &str, names: &[String]) -> BTreeSet<ClaimName> {
        names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                ClaimName::parse(name).or_else(|| {
                    self.push(&format!("{field}[{i}]"), format!("unknown claim {name:?}"));
                    None
                })
            })
            .collect()
    }

    fn claim_rules(&mut self, rules: &[ClaimRuleDto]) -> Vec<ClaimRule> {
        rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| match ClaimName::parse(&rule.claim) {
                Some(claim) => Some(ClaimRule { claim, required: rule.required }),
                None => {
                    self.push(&format!("claims[{i}]"), format!("unknown claim {:?}", rule.claim));
                    None
                }
            })
            .collect()
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() { Ok(value) } else { Err(self.0) }
    }
}

fn timestamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Trust level (Vertrauensniveau).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum TrustLevelDto {
    /// Username and password.
    Normal,
    /// eIDAS substantial.
    Substantiell,
    /// Online ID card.
    Hoch,
}

impl From<TrustLevelDto> for TrustLevel {
    fn from(value: TrustLevelDto) -> Self {
        match value {
            TrustLevelDto::Normal => TrustLevel::Normal,
            TrustLevelDto::Substantiell => TrustLevel::Substantiell,
            TrustLevelDto::Hoch => TrustLevel::Hoch,
        }
    }
}

impl From<TrustLevel> for TrustLevelDto {
    fn from(value: TrustLevel) -> Self {
        match value {
            TrustLevel::Normal => TrustLevelDto::Normal,
            TrustLevel::Substantiell => TrustLevelDto::Substantiell,
            TrustLevel::Hoch => TrustLevelDto::Hoch,
        }
    }
}

/// Environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum EnvironmentDto {
    /// Live services.
    Production,
    /// Integration tests of the authorities.
    Test,
}

impl From<EnvironmentDto> for oidc_core::Environment {
    fn from(value: EnvironmentDto) -> Self {
        match value {
            EnvironmentDto::Production => oidc_core::Environment::Production,
            EnvironmentDto::Test => oidc_core::Environment::Test,
        }
    }
}

impl From<oidc_core::Environment> for EnvironmentDto {
    fn from(value: oidc_core::Environment) -> Self {
        match value {
            oidc_core::Environment::Production => EnvironmentDto::Production,
            oidc_core::Environment::Test => EnvironmentDto::Test,
        }
    }
}

/// A tenant to create.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct TenantCreate {
    /// Short name: 2–63 lower-case letters, digits, hyphens.
    pub slug: String,
    /// Full name of the authority.
    pub name: String,
    /// Contact e-mail.
    pub contact_email: String,
    /// Name shown to citizens.
    pub display_name: String,
    /// https URL of the logo.
    pub logo_url: Option<String>,
    /// Claims the authority may receive at all.
    #[oai(default)]
    pub allowed_claims: Vec<String>,
    /// No client may ask for less.
    #[oai(default = "default_trust_level")]
    pub min_trust_level: TrustLevelDto,
    /// Pairwise sector; the slug when left out.
    pub sector: Option<String>,
}

fn default_trust_level() -> TrustLevelDto {
    TrustLevelDto::Normal
}

impl TenantCreate {
    pub(crate) fn into_domain(self) -> Result<NewTenant, Vec<FieldError>> {
        let mut errors = Errors::default();
        let logo_url = errors.optional_url("logo_url", &self.logo_url);
        let allowed_claims = errors.claims("allowed_claims", &self.allowed_claims);
        errors.finish(NewTenant {
            slug: self.slug,
            name: self.name,
            contact_email: self.contact_email,
            branding: Branding { display_name: self.display_name, logo_url },
            allowed_claims,
            min_trust_level: self.min_trust_level.into(),
            sector: self.sector,
        })
    }
}

/// A tenant's changeable fields (all of them: PUT semantics).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct TenantUpdate {
    /// Full name of the authority.
    pub name: String,
    /// Contact e-mail.
    pub contact_email: String,
    /// Name shown to citizens.
    pub display_name: String,
    /// https URL of the logo.
    pub logo_url: Option<String>,
    /// Claims the authority may receive at all.
    #[oai(default)]
    pub allowed_claims: Vec<String>,
    /// No client may ask for less.
    pub min_trust_level: TrustLevelDto,
}

impl TenantUpdate {
    pub(crate) fn into_domain(self) -> Result<TenantChanges, Vec<FieldError>> {
        let mut errors = Errors::default();
        let logo_url = errors.optional_url("logo_url", &self.logo_url);
        let allowed_claims = errors.claims("allowed_claims", &self.allowed_claims);
        errors.finish(TenantChanges {
            name: self.name,
            contact_email: self.contact_email,
            branding: Branding { display_name: self.display_name, logo_url },
            allowed_claims,
            min_trust_level: self.min_trust_level.into(),
        })
    }
}

/// Tenant status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum TenantStatusDto {
    /// Normal operation.
    Active,
    /// No logins, no tokens.
    Suspended,
}

impl From<TenantStatus> for TenantStatusDto {
    fn from(value: TenantStatus) -> Self {
        match value {
            TenantStatus::Active => TenantStatusDto::Active,
            TenantStatus::Suspended => TenantStatusDto::Suspended,
        }
    }
}

impl From<TenantStatusDto> for TenantStatus {
    fn from(value: TenantStatusDto) -> Self {
        match value {
            TenantStatusDto::Active => TenantStatus::Active,
            TenantStatusDto::Suspended => TenantStatus::Suspended,
        }
    }
}

/// A tenant.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct TenantView {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub contact_email: String,
    pub status: TenantStatusDto,
    pub display_name: String,
    pub logo_url: Option<String>,
    pub allowed_claims: Vec<String>,
    pub min_trust_level: TrustLevelDto,
    pub sector: String,
    /// Also the ETag.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            slug: t.slug.clone(),
            name: t.name.clone(),
            contact_email: t.contact_email.clone(),
            status: t.status.into(),
            display_name: t.branding.display_name.clone(),
            logo_url: t.branding.logo_url.as_ref().map(Url::to_string),
            allowed_claims: t.allowed_claims.iter().map(|c| c.as_str().to_owned()).collect(),
            min_trust_level: t.min_trust_level.into(),
            sector: t.sector.clone(),
            version: t.version,
            created_at: timestamp(t.created_at),
            updated_at: timestamp(t.updated_at),
        }
    }
}

/// One page of tenants.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct TenantList {
    pub items: Vec<TenantView>,
    /// Matching tenants in all.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// Client type (RFC 6749 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum ClientKindDto {
    Confidential,
    Public,
}

/// Token-endpoint authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub(crate) enum AuthMethodDto {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

/// OAuth grant type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub(crate) enum GrantTypeDto {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

/// ID-token signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum AlgorithmDto {
    RS256,
    PS256,
    ES256,
    EdDSA,
}

/// Admin-API role of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub(crate) enum AdminRoleDto {
    Operator,
    TenantAdmin,
}

macro_rules! mirror {
    ($dto:ident <=> $domain:ident { $($variant:ident),* }) => {
        impl From<$dto> for $domain {
            fn from(value: $dto) -> Self {
                match value { $($dto::$variant => $domain::$variant),* }
            }
        }
        impl From<$domain> for $dto {
            fn from(value: $domain) -> Self {
                match value { $($domain::$variant => $dto::$variant),* }
            }
        }
    };
}

mirror!(ClientKindDto <=> ClientKind { Confidential, Public });
mirror!(AuthMethodDto <=> AuthMethod { ClientSecretBasic, ClientSecretPost, PrivateKeyJwt, None });
mirror!(GrantTypeDto <=> GrantType { AuthorizationCode, RefreshToken, ClientCredentials });
mirror!(AlgorithmDto <=> SigningAlgorithm { RS256, PS256, ES256, EdDSA });
mirror!(AdminRoleDto <=> AdminRole { Operator, TenantAdmin });
mirror!(ProtocolDto <=> Protocol { Oidc, Saml });
mirror!(AttributeProfileDto <=> SamlAttributeProfile { Oidc, Eidas });

/// The protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum ProtocolDto {
    Oidc,
    Saml,
}

/// The attribute names a SAML client receives: our claim names (NameFormat basic) or the eIDAS
/// natural-person URIs (see the integration guide's mapping table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum AttributeProfileDto {
    Oidc,
    Eidas,
}

fn default_profile() -> AttributeProfileDto {
    AttributeProfileDto::Oidc
}

/// An assertion consumer service of a SAML client (HTTP-POST).
#[derive(Debug, Clone, Object)]
pub(crate) struct AssertionConsumerServiceDto {
    pub index: u16,
    /// https (test: also http on localhost/127.0.0.1).
    pub url: String,
}

/// A SAML service provider's registration; normally made from its metadata
/// (`POST /tenants/{id}/saml-clients`) and refreshed from it.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct SamlConfigDto {
    /// The SP's entity id, unique per environment.
    pub entity_id: String,
    /// The default first.
    pub assertion_consumer_services: Vec<AssertionConsumerServiceDto>,
    /// The SP's Single Logout address (HTTP-Redirect).
    pub single_logout_service: Option<String>,
    /// Certificates (base64 DER) the SP signs its requests with.
    #[oai(default)]
    pub signing_certificates: Vec<String>,
    /// The certificate (base64 DER) assertions are encrypted for; unset: not encrypted.
    pub encryption_certificate: Option<String>,
    /// "AuthnRequests must be signed": unsigned requests are refused.
    #[oai(default)]
    pub requests_signed: bool,
    #[oai(default = "default_profile")]
    pub attribute_profile: AttributeProfileDto,
    /// Unsolicited (IdP-initiated) Responses allowed.
    #[oai(default)]
    pub idp_initiated: bool,
    /// Where the metadata was read from (refreshed from there).
    pub metadata_url: Option<String>,
}

impl SamlConfigDto {
    fn into_domain(self, errors: &mut Errors) -> SamlSettings {
        let assertion_consumer_services = self
            .assertion_consumer_services
            .iter()
            .enumerate()
            .filter_map(|(i, acs)| {
                let url = errors.url(&format!("saml.assertion_consumer_services[{i}]"), &acs.url)?;
                Some(tenant_registry::AssertionConsumerService { index: acs.index, url })
            })
            .collect();
        SamlSettings {
            single_logout_service: errors.optional_url("saml.single_logout_service", &self.single_logout_service),
            metadata_url: errors.optional_url("saml.metadata_url", &self.metadata_url),
            entity_id: self.entity_id,
            assertion_consumer_services,
            signing_certificates: self.signing_certificates,
            encryption_certificate: self.encryption_certificate,
            requests_signed: self.requests_signed,
            attribute_profile: self.attribute_profile.into(),
            idp_initiated: self.idp_initiated,
        }
    }
}

impl From<&SamlSettings> for SamlConfigDto {
    fn from(s: &SamlSettings) -> Self {
        Self {
            entity_id: s.entity_id.clone(),
            assertion_consumer_services: s
                .assertion_consumer_services
                .iter()
                .map(|a| AssertionConsumerServiceDto { index: a.index, url: a.url.to_string() })
                .collect(),
            single_logout_service: s.single_logout_service.as_ref().map(Url::to_string),
            signing_certificates: s.signing_certificates.clone(),
            encryption_certificate: s.encryption_certificate.clone(),
            requests_signed: s.requests_signed,
            attribute_profile: s.attribute_profile.into(),
            idp_initiated: s.idp_initiated,
            metadata_url: s.metadata_url.as_ref().map(Url::to_string),
        }
    }
}

/// Where a SAML SP's metadata comes from: the document itself, or an https URL to read it from
/// (and to refresh it from later). Exactly one.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct SamlMetadataSource {
    /// The SP's metadata XML (`md:EntityDescriptor`).
    pub metadata: Option<String>,
    /// Where to read it.
    pub metadata_url: Option<String>,
}

/// A SAML service provider to create from its metadata. The metadata gives the entity id,
/// the assertion consumer services, the logout address and the certificates; the rest is chosen
/// here.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct SamlClientCreate {
    pub environment: EnvironmentDto,
    /// Shown to operators, in the audit log, and on the consent page.
    pub name: String,
    #[oai(flatten)]
    pub source: SamlMetadataSource,
    /// The attributes it may receive: a subset of the tenant's allowed claims.
    #[oai(default)]
    pub claims: Vec<ClaimRuleDto>,
    /// Refuse unsigned AuthnRequests. Default: what the metadata's `AuthnRequestsSigned` says.
    pub requests_signed: Option<bool>,
    #[oai(default = "default_profile")]
    pub attribute_profile: AttributeProfileDto,
    /// Allow unsolicited Responses (IdP-initiated login).
    #[oai(default)]
    pub idp_initiated: bool,
    #[oai(default = "default_trust_level")]
    pub min_acr: TrustLevelDto,
    #[oai(default = "default_trust_level")]
    pub default_acr: TrustLevelDto,
    pub organization_display_name: Option<String>,
    pub online_service_id: Option<String>,
    pub logo_uri: Option<String>,
    pub policy_uri: Option<String>,
    #[oai(default)]
    pub contacts: Vec<String>,
    /// Required in production.
    pub purpose: Option<PurposeDto>,
}

impl SamlClientCreate {
    /// The settings around `saml` (what the metadata said, with this request's choices).
    pub(crate) fn settings(self, mut saml: SamlSettings) -> Result<ClientSettings, Vec<FieldError>> {
        let mut errors = Errors::default();
        if let Some(signed) = self.requests_signed {
            saml.requests_signed = signed;
        }
        saml.attribute_profile = self.attribute_profile.into();
        saml.idp_initiated = self.idp_initiated;
        let claims = errors.claim_rules(&self.claims);
        let mut settings = ClientSettings::saml(&self.name, saml);
        settings.claims = claims;
        settings.min_acr = self.min_acr.into();
        settings.default_acr = self.default_acr.into();
        settings.organization_display_name = self.organization_display_name;
        settings.online_service_id = self.online_service_id;
        settings.logo_uri = errors.optional_url("logo_uri", &self.logo_uri);
        settings.policy_uri = errors.optional_url("policy_uri", &self.policy_uri);
        settings.contacts = self.contacts;
        settings.purpose = self.purpose.map(|p| Purpose { de: p.de, en: p.en });
        errors.finish(settings)
    }
}

/// A claim a client may ask for.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct ClaimRuleDto {
    pub claim: String,
    /// The service does not work without it; the citizen cannot leave it out.
    #[oai(default)]
    pub required: bool,
}

/// Token lifetimes in seconds.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct LifetimesDto {
    /// 60–3600, default 300.
    pub access_token: u32,
    /// 60–3600, default 300.
    pub id_token: u32,
    /// One hour to 180 days, default 30 days.
    pub refresh_token: u32,
}

fn default_lifetimes() -> LifetimesDto {
    let d = TokenLifetimes::default();
    LifetimesDto { access_token: d.access_token, id_token: d.id_token, refresh_token: d.refresh_token }
}

fn default_kind() -> ClientKindDto {
    ClientKindDto::Confidential
}
fn default_auth_method() -> AuthMethodDto {
    AuthMethodDto::ClientSecretBasic
}
fn default_grants() -> Vec<GrantTypeDto> {
    vec![GrantTypeDto::AuthorizationCode]
}
fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned()]
}
fn default_algorithm() -> AlgorithmDto {
    AlgorithmDto::RS256
}
fn yes() -> bool {
    true
}

/// A client's purpose (at most 500 characters each).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct PurposeDto {
    /// German; shown on German pages and where no English text exists.
    pub de: String,
    /// English.
    pub en: Option<String>,
}

/// A client's configuration (PUT semantics: all of it).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct ClientConfig {
    /// Shown to operators and in the audit log.
    pub name: String,
    #[oai(default = "default_kind")]
    pub kind: ClientKindDto,
    #[oai(default = "default_auth_method")]
    pub auth_method: AuthMethodDto,
    /// Exact redirect URIs: https (test: also http on localhost/127.0.0.1), no fragment.
    #[oai(default)]
    pub redirect_uris: Vec<String>,
    #[oai(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    #[oai(default = "default_grants")]
    pub grant_types: Vec<GrantTypeDto>,
    #[oai(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// A subset of the tenant's allowed claims.
    #[oai(default)]
    pub claims: Vec<ClaimRuleDto>,
    #[oai(default = "default_trust_level")]
    pub min_acr: TrustLevelDto,
    #[oai(default = "default_trust_level")]
    pub default_acr: TrustLevelDto,
    #[oai(default = "default_lifetimes")]
    pub lifetimes: LifetimesDto,
    #[oai(default = "default_algorithm")]
    pub id_token_signed_response_alg: AlgorithmDto,
    #[oai(default = "yes")]
    pub require_pkce: bool,
    #[oai(default)]
    pub require_par: bool,
    /// The client's JWK Set by value (private_key_jwt).
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
    pub organization_display_name: Option<String>,
    pub online_service_id: Option<String>,
    pub logo_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
    #[oai(default)]
    pub contacts: Vec<String>,
    /// https URL of a JSON array that lists every redirect URI (OIDC Registration §5).
    pub sector_identifier_uri: Option<String>,
    /// The resource server that receives this client's access tokens: then they are RFC 9068
    /// JWTs (ES256) with this `aud`; without it they are opaque.
    pub access_token_audience: Option<String>,
    /// Why the service asks for the citizen's data, shown on the consent page and in the
    /// transfer log. Required in production for `authorization_code` clients.
    pub purpose: Option<PurposeDto>,
    /// Skips consent. Operators only.
    #[oai(default)]
    pub first_party: bool,
    /// Admin-API access for this client's tokens. Operators only.
    pub admin_role: Option<AdminRoleDto>,
    /// Set for a SAML service provider (then the OAuth fields above do not apply).
    pub saml: Option<SamlConfigDto>,
}

impl ClientConfig {
    pub(crate) fn into_domain(self) -> Result<(ClientSettings, OperatorFlags), Vec<FieldError>> {
        let mut errors = Errors::default();
        let redirect_uris = errors.urls("redirect_uris", &self.redirect_uris);
        let post_logout_redirect_uris = errors.urls("post_logout_redirect_uris", &self.post_logout_redirect_uris);
        let backchannel_logout_uri = errors.optional_url("backchannel_logout_uri", &self.backchannel_logout_uri);
        let jwks_uri = errors.optional_url("jwks_uri", &self.jwks_uri);
        let logo_uri = errors.optional_url("logo_uri", &self.logo_uri);
        let policy_uri = errors.optional_url("policy_uri", &self.policy_uri);
        let tos_uri = errors.optional_url("tos_uri", &self.tos_uri);
        let sector_identifier_uri = errors.optional_url("sector_identifier_uri", &self.sector_identifier_uri);
        let scopes: BTreeSet<Scope> = self
            .scopes
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                Scope::parse(s).or_else(|| {
                    errors.push(&format!("scopes[{i}]"), format!("unknown scope {s:?}"));
                    None
                })
            })
            .collect();
        let claims = errors.claim_rules(&self.claims);
        let saml = self.saml.map(|saml| saml.into_domain(&mut errors));
        let mut settings = ClientSettings {
            name: self.name,
            kind: self.kind.into(),
            auth_method: self.auth_method.into(),
            redirect_uris,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            grant_types: self.grant_types.into_iter().map(Into::into).collect(),
            scopes,
            claims,
            min_acr: self.min_acr.into(),
            default_acr: self.default_acr.into(),
            lifetimes: TokenLifetimes {
                access_token: self.lifetimes.access_token,
                id_token: self.lifetimes.id_token,
                refresh_token: self.lifetimes.refresh_token,
            },
            id_token_signed_response_alg: self.id_token_signed_response_alg.into(),
            require_pkce: self.require_pkce,
            require_par: self.require_par,
            jwks: self.jwks,
            jwks_uri,
            organization_display_name: self.organization_display_name,
            online_service_id: self.online_service_id,
            logo_uri,
            policy_uri,
            tos_uri,
            contacts: self.contacts,
            sector_identifier_uri,
            access_token_audience: self.access_token_audience,
            purpose: self.purpose.map(|p| Purpose { de: p.de, en: p.en }),
            saml: None,
        };
        // A SAML service provider has none of the OAuth fields whose defaults fill a request.
        if let Some(saml) = saml {
            let oauth_free = ClientSettings::saml(&settings.name, saml);
            settings = ClientSettings {
                kind: oauth_free.kind,
                auth_method: oauth_free.auth_method,
                grant_types: oauth_free.grant_types,
                scopes: oauth_free.scopes,
                require_pkce: oauth_free.require_pkce,
                saml: oauth_free.saml,
                ..settings
            };
        }
        let flags = OperatorFlags { first_party: self.first_party, admin_role: self.admin_role.map(Into::into) };
        errors.finish((settings, flags))
    }
}

impl From<&Client> for ClientConfig {
    fn from(c: &Client) -> Self {
        let s = &c.settings;
        let text = |u: &Option<Url>| u.as_ref().map(Url::to_string);
        Self {
            name: s.name.clone(),
            kind: s.kind.into(),
            auth_method: s.auth_method.into(),
            redirect_uris: s.redirect_uris.iter().map(Url::to_string).collect(),
            post_logout_redirect_uris: s.post_logout_redirect_uris.iter().map(Url::to_string).collect(),
            backchannel_logout_uri: text(&s.backchannel_logout_uri),
            grant_types: s.grant_types.iter().copied().map(Into::into).collect(),
            scopes: s.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            claims: s
                .claims
                .iter()
                .map(|r| ClaimRuleDto { claim: r.claim.as_str().to_owned(), required: r.required })
                .collect(),
            min_acr: s.min_acr.into(),
            default_acr: s.default_acr.into(),
            lifetimes: LifetimesDto {
                access_token: s.lifetimes.access_token,
                id_token: s.lifetimes.id_token,
                refresh_token: s.lifetimes.refresh_token,
            },
            id_token_signed_response_alg: s.id_token_signed_response_alg.into(),
            require_pkce: s.require_pkce,
            require_par: s.require_par,
            jwks: s.jwks.clone(),
            jwks_uri: text(&s.jwks_uri),
            organization_display_name: s.organization_display_name.clone(),
            online_service_id: s.online_service_id.clone(),
            logo_uri: text(&s.logo_uri),
            policy_uri: text(&s.policy_uri),
            tos_uri: text(&s.tos_uri),
            contacts: s.contacts.clone(),
            sector_identifier_uri: text(&s.sector_identifier_uri),
            access_token_audience: s.access_token_audience.clone(),
            purpose: s.purpose.as_ref().map(|p| PurposeDto { de: p.de.clone(), en: p.en.clone() }),
            first_party: c.first_party,
            admin_role: c.admin_role.map(Into::into),
            saml: s.saml.as_ref().map(Into::into),
        }
    }
}

/// A client to create.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct ClientCreate {
    pub environment: EnvironmentDto,
    #[oai(flatten)]
    pub config: ClientConfig,
}

/// A valid secret of a client (never the secret itself).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct SecretInfo {
    pub created_at: String,
    /// Set while an old secret overlaps a rotation.
    pub expires_at: Option<String>,
}

/// A client.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct ClientView {
    pub client_id: String,
    pub tenant_id: String,
    pub environment: EnvironmentDto,
    pub protocol: ProtocolDto,
    #[oai(flatten)]
    pub config: ClientConfig,
    pub secrets: Vec<SecretInfo>,
    /// Also the ETag.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        let at = |seconds: i64| OffsetDateTime::from_unix_timestamp(seconds).map(timestamp).unwrap_or_default();
        Self {
            client_id: c.client_id.to_string(),
            tenant_id: c.tenant_id.to_string(),
            environment: c.environment.into(),
            protocol: c.settings.protocol().into(),
            config: c.into(),
            secrets: c
                .secrets
                .iter()
                .map(|s| SecretInfo { created_at: at(s.created_at), expires_at: s.expires_at.map(at) })
                .collect(),
            version: c.version,
            created_at: timestamp(c.created_at),
            updated_at: timestamp(c.updated_at),
        }
    }
}

/// A client with its secret, shown this once.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct ClientWithSecret {
    #[oai(flatten)]
    pub client: ClientView,
    /// Only in this response; store it now.
    pub client_secret: Option<String>,
}

/// One page of clients.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct ClientList {
    pub items: Vec<ClientView>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// Secret rotation.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct RotateSecret {
    /// How long the old secret keeps working (0 to 2592000 seconds, default one day).
    #[oai(default = "one_day")]
    pub overlap_seconds: u64,
}

fn one_day() -> u64 {
    86_400
}

/// One audit entry.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct AuditView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub tenant_id: Option<String>,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl From<&AuditEntry> for AuditView {
    fn from(e: &AuditEntry) -> Self {
        Self {
            id: e.id,
            at: timestamp(e.event.at),
            actor: e.event.actor.clone(),
            action: e.event.action.clone(),
            tenant_id: e.event.tenant_id.map(|t| t.to_string()),
            target: e.event.target.clone(),
            before: e.event.before.clone(),
            after: e.event.after.clone(),
        }
    }
}

/// A one-time identification with the ID card released to a client: no person, only what went.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct OneTimeTransferView {
    /// Authority and service as the citizen saw them on the consent page.
    pub recipient: String,
    /// The claim names released (never values).
    pub claims: Vec<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// The one-time identifications of a client, newest first (at most 100).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct OneTimeTransferList {
    pub items: Vec<OneTimeTransferView>,
}

/// One page of the audit log.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct AuditList {
    pub items: Vec<AuditView>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// A field-level validation error.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct Problem {
    /// A URI reference naming the problem type.
    #[oai(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every violated rule, for validation errors; empty otherwise (always present, so that
    /// clients need no special case).
    pub errors: Vec<FieldProblem>,
}

/// An initial access token to request.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct InitialAccessTokenCreate {
    /// Where the client will be registered.
    pub environment: EnvironmentDto,
    /// Lifetime in seconds (60 to 2592000, default one day). The token registers one client.
    #[oai(default = "one_day")]
    pub expires_in_seconds: u64,
}

/// An initial access token for RFC 7591 registration, shown this once.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct InitialAccessTokenView {
    /// Send as `Authorization: Bearer …` to `registration_endpoint`; single use.
    pub initial_access_token: String,
    pub registration_endpoint: String,
    pub tenant_id: String,
    pub environment: EnvironmentDto,
    pub expires_at: String,
}

/// A register entry.
#[derive(Debug, Object)]
pub(crate) struct RegisterView {
    /// Registergericht.
    pub court: String,
    /// HRA, HRB, VR, GnR or PR.
    #[oai(rename = "type")]
    pub kind: String,
    /// The number.
    pub number: String,
}

/// An organisation's address.
#[derive(Debug, Object)]
pub(crate) struct OrganisationAddress {
    pub street: String,
    pub house_number: String,
    pub postal_code: String,
    pub city: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// A verified part of an organisation's data.
#[derive(Debug, Object)]
pub(crate) struct VerificationView {
    /// `name`, `legal_form`, `register` or `address`.
    pub field: String,
    /// Who checked it (an operator's or tenant admin's label).
    pub by: String,
    /// What was checked.
    pub evidence: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An organisation (company account), as operators and tenant admins see it.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub(crate) struct OrganisationView {
    pub id: String,
    pub environment: EnvironmentDto,
    pub name: String,
    /// `gmbh`, `ag`, `ek`, `gbr`, `ohg`, `kg`, `ev`, `eg`, `stiftung`, `kdoer`,
    /// `einzelunternehmen` or `sonstige`.
    pub legal_form: String,
    pub register: Option<RegisterView>,
    pub address: OrganisationAddress,
    pub contact_email: String,
    /// When the contact address was confirmed by its link (RFC 3339).
    pub contact_email_confirmed_at: Option<String>,
    /// `active` or `suspended`.
    pub status: String,
    pub verifications: Vec<VerificationView>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&account_service::Organisation> for OrganisationView {
    fn from(o: &account_service::Organisation) -> Self {
        let d = &o.data;
        Self {
            id: o.id.to_string(),
            environment: o.environment.into(),
            name: d.name.clone(),
            legal_form: d.legal_form.as_str().to_owned(),
            register: d.register.as_ref().map(|r| RegisterView {
                court: r.court.clone(),
                kind: r.kind.as_str().to_owned(),
                number: r.number.clone(),
            }),
            address: OrganisationAddress {
                street: d.street.clone(),
                house_number: d.house_number.clone(),
                postal_code: d.postal_code.clone(),
                city: d.city.clone(),
                country: d.country.clone(),
            },
            contact_email: d.contact_email.clone(),
            contact_email_confirmed_at: o.email_verified_at.map(timestamp),
            status: match o.status {
                account_service::OrganisationStatus::Active => "active",
                account_service::OrganisationStatus::Suspended => "suspended",
            }
            .to_owned(),
            verifications: o
                .verifications
                .iter()
                .map(|v| VerificationView {
                    field: v.field.as_str().to_owned(),
                    by: v.by.clone(),
                    evidence: v.evidence.clone(),
                    at: timestamp(v.at),
                })
                .collect(),
            created_at: timestamp(o.created_at),
            updated_at: timestamp(o.updated_at),
        }
    }
}

/// Organisations, newest first.
#[derive(Debug, Object)]
pub(crate) struct OrganisationList {
    pub items: Vec<OrganisationView>,
    pub limit: u32,
    pub offset: u64,
}

/// Marks a part of an organisation's data verified.
#[derive(Debug, Object)]
pub(crate) struct OrganisationVerify {
    /// `name`, `legal_form`, `register` or `address`.
    pub field: String,
    /// What was checked, e.g. "Registerauszug geprüft" (at most 200 characters).
    pub evidence: String,
}
