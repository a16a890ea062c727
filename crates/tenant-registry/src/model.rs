//! Tenants and clients as the registry keeps them.

use std::collections::BTreeSet;

use oidc_core::{ClaimName, ClientId, Environment, Scope, SigningAlgorithm, TenantId, TrustLevel};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

/// An authority (municipality, state agency). Exists in both environments; its clients are per
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Stable id.
    pub id: TenantId,
    /// Short name, unique: lower-case letters, digits and hyphens.
    pub slug: String,
    /// Full name, e.g. "Stadt Musterstadt".
    pub name: String,
    /// Who to contact at the authority.
    pub contact_email: String,
    /// Suspended tenants' clients get no tokens.
    pub status: TenantStatus,
    /// What citizens see.
    pub branding: Branding,
    /// The claims this authority may receive at all (its legal basis).
    pub allowed_claims: BTreeSet<ClaimName>,
    /// No client of this tenant may ask for less.
    pub min_trust_level: TrustLevel,
    /// Sector identifier for pairwise subjects: one citizen has one `sub` per sector.
    pub sector: String,
    /// Optimistic-concurrency version, +1 per change (the ETag).
    pub version: i64,
    /// When created.
    pub created_at: OffsetDateTime,
    /// When last changed.
    pub updated_at: OffsetDateTime,
}

/// Whether a tenant may log citizens in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Normal operation.
    Active,
    /// No new logins and no tokens for any of its clients.
    Suspended,
}

impl TenantStatus {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }
}

/// What citizens see of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Branding {
    /// Shown on login and consent pages.
    pub display_name: String,
    /// An https URL of the authority's logo.
    pub logo_url: Option<Url>,
}

/// A service of a tenant in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Generated, random.
    pub client_id: ClientId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Where it lives.
    pub environment: Environment,
    /// Everything the tenant (or operator) configures.
    pub settings: ClientSettings,
    /// Skips consent; only operators may set it.
    pub first_party: bool,
    /// Admin-API access for tokens of this client; only operators may set it.
    pub admin_role: Option<AdminRole>,
    /// Keyed hashes of the valid secrets (more than one during a rotation's overlap).
    pub secrets: Vec<SecretHash>,
    /// Keyed hash of the RFC 7592 registration access token, for dynamically registered clients.
    pub registration_token: Option<String>,
    /// Optimistic-concurrency version (the ETag).
    pub version: i64,
    /// When created.
    pub created_at: OffsetDateTime,
    /// When last changed.
    pub updated_at: OffsetDateTime,
}

/// What a client's access tokens may do at the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Everything: the IT association running the service.
    Operator,
    /// The clients and audit log of the client's own tenant.
    TenantAdmin,
}

/// A stored client secret: its keyed hash and, during a rotation, when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHash {
    /// HMAC-SHA256 of the secret under a key derived from the KEK, base64url.
    pub hash: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` for the current secret.
    pub expires_at: Option<i64>,
}

/// Whether a client can keep a secret (RFC 6749 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// A server-side application with a secret or key.
    Confidential,
    /// A browser or native app: no secret, PKCE required.
    Public,
}

/// How a client authenticates at the token endpoint (OIDC Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with client id and secret.
    ClientSecretBasic,
    /// Client id and secret in the form body.
    ClientSecretPost,
    /// A JWT signed with the client's key.
    PrivateKeyJwt,
    /// Public clients.
    None,
}

/// OAuth grants a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// Log in citizens.
    AuthorizationCode,
    /// Renew tokens without the citizen.
    RefreshToken,
    /// Machine-to-machine, no citizen.
    ClientCredentials,
}

impl GrantType {
    /// The RFC 6749 name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

/// A scope or claim a client may ask for, and whether its service works without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRule {
    /// The claim.
    pub claim: ClaimName,
    /// The service needs it; the citizen cannot leave it out at consent.
    pub required: bool,
}

/// Token lifetimes in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLifetimes {
    /// Access tokens (default 300).
    pub access_token: u32,
    /// ID tokens (default 300).
    pub id_token: u32,
    /// Refresh tokens (default 30 days).
    pub refresh_token: u32,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self { access_token: 300, id_token: 300, refresh_token: 30 * 24 * 3600 }
    }
}

/// Everything configurable about a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSettings {
    /// Shown to the operator and in audit entries.
    pub name: String,
    /// Confidential or public.
    pub kind: ClientKind,
    /// Token-endpoint authentication.
    pub auth_method: AuthMethod,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<Url>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<Url>,
    /// OIDC Back-Channel Logout endpoint.
    pub backchannel_logout_uri: Option<Url>,
    /// Allowed grants.
    pub grant_types: BTreeSet<GrantType>,
    /// Allowed scopes.
    pub scopes: BTreeSet<Scope>,
    /// Allowed claims (a subset of the tenant's), each required or optional.
    pub claims: Vec<ClaimRule>,
    /// The lowest trust level this service accepts.
    pub min_acr: TrustLevel,
    /// The level asked for when the request names none.
    pub default_acr: TrustLevel,
    /// Token lifetimes.
    pub lifetimes: TokenLifetimes,
    /// ID-token signing algorithm.
    pub id_token_signed_response_alg: SigningAlgorithm,
    /// Require PKCE (always for public clients).
    pub require_pkce: bool,
    /// Require pushed authorization requests.
    pub require_par: bool,
    /// The client's public keys by value (for `private_key_jwt`).
    pub jwks: Option<serde_json::Value>,
    /// Where the client's public keys are (for `private_key_jwt`).
    pub jwks_uri: Option<Url>,
    /// The authority as the consent page names it.
    pub organization_display_name: Option<String>,
    /// The online service's id in the authority's service catalogue.
    pub online_service_id: Option<String>,
    /// https logo of the service.
    pub logo_uri: Option<Url>,
    /// Privacy policy.
    pub policy_uri: Option<Url>,
    /// Terms of service.
    pub tos_uri: Option<Url>,
    /// Contact e-mail addresses.
    pub contacts: Vec<String>,
    /// OIDC Registration §5: an https URL listing the redirect URIs of this client's sector.
    #[serde(default)]
    pub sector_identifier_uri: Option<Url>,
    /// The resource server (its identifier, e.g. its https URL) that receives this client's
    /// access tokens. Set: RFC 9068 JWT access tokens with this `aud`, which the resource server
    /// verifies against our JWKS. Unset: opaque tokens, checked by introspection.
    #[serde(default)]
    pub access_token_audience: Option<String>,
    /// Why the service asks for the citizen's data: on the consent page and in the transfer log.
    /// Required in production for clients that log citizens in.
    #[serde(default)]
    pub purpose: Option<Purpose>,
    /// Set for a SAML service provider (registered from its metadata); unset for OpenID Connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlSettings>,
}

/// The protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenID Connect (and OAuth 2.0).
    Oidc,
    /// SAML 2.0 Web Browser SSO.
    Saml,
}

/// A SAML service provider as registered: what its metadata said, and what the tenant chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlSettings {
    /// Its entity id (unique per environment).
    pub entity_id: String,
    /// Its assertion consumer services (HTTP-POST), the default first.
    pub assertion_consumer_services: Vec<AssertionConsumerService>,
    /// Its Single Logout address (HTTP-Redirect).
    #[serde(default)]
    pub single_logout_service: Option<Url>,
    /// Certificates its requests are signed with (base64 DER).
    #[serde(default)]
    pub signing_certificates: Vec<String>,
    /// The certificate assertions are encrypted for (base64 DER); unset: not encrypted.
    #[serde(default)]
    pub encryption_certificate: Option<String>,
    /// "AuthnRequests must be signed": unsigned ones are refused.
    #[serde(default)]
    pub requests_signed: bool,
    /// The attribute names it receives.
    #[serde(default)]
    pub attribute_profile: SamlAttributeProfile,
    /// IdP-initiated logins (unsolicited Responses) allowed; off by default.
    #[serde(default)]
    pub idp_initiated: bool,
    /// Where its metadata was read from, to refresh it.
    #[serde(default)]
    pub metadata_url: Option<Url>,
}

/// An assertion consumer service: its index and URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionConsumerService {
    /// `index` in the SP's metadata.
    pub index: u16,
    /// `Location`.
    pub url: Url,
}

/// The vocabulary of a SAML client's attributes (see the integration guide's mapping table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamlAttributeProfile {
    /// Our claim names, NameFormat `basic`.
    #[default]
    Oidc,
    /// The eIDAS natural-person attribute URIs.
    Eidas,
}

/// A client's purpose in German and, where the authority gives one, English; an English page
/// without an English text shows the German one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Purpose {
    /// German (the default language of the pages).
    pub de: String,
    /// English.
    #[serde(default)]
    pub en: Option<String>,
}

impl Purpose {
    /// The text for a page language (`de`, `en`) and the language it is in.
    pub fn text(&self, lang: &str) -> (&str, &'static str) {
        match (&self.en, lang) {
            (Some(en), "en") => (en, "en"),
            _ => (&self.de, "de"),
        }
    }
}

impl ClientSettings {
    /// The protocol: SAML when the client has SAML settings.
    pub fn protocol(&self) -> Protocol {
        if self.saml.is_some() { Protocol::Saml } else { Protocol::Oidc }
    }

    /// A SAML service provider: no secret, no grants, no redirect URIs (its addresses are in
    /// `saml`), the default trust levels.
    pub fn saml(name: &str, saml: SamlSettings) -> Self {
        Self {
            kind: ClientKind::Public,
            auth_method: AuthMethod::None,
            redirect_uris: Vec::new(),
            grant_types: BTreeSet::new(),
            scopes: BTreeSet::new(),
            saml: Some(saml),
            ..Self::confidential(name, Vec::new())
        }
    }

    /// A confidential code-flow client with `client_secret_basic`, PKCE, `openid`, and the
    /// default lifetimes; a starting point for callers that set only a few fields.
    pub fn confidential(name: &str, redirect_uris: Vec<Url>) -> Self {
        Self {
            name: name.to_owned(),
            kind: ClientKind::Confidential,
            auth_method: AuthMethod::ClientSecretBasic,
            redirect_uris,
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
            grant_types: BTreeSet::from([GrantType::AuthorizationCode, GrantType::RefreshToken]),
            scopes: ["openid"].iter().filter_map(|s| Scope::parse(s)).collect(),
            claims: Vec::new(),
            min_acr: TrustLevel::Normal,
            default_acr: TrustLevel::Normal,
            lifetimes: TokenLifetimes::default(),
            id_token_signed_response_alg: SigningAlgorithm::RS256,
            require_pkce: true,
            require_par: false,
            jwks: None,
            jwks_uri: None,
            organization_display_name: None,
            online_service_id: None,
            logo_uri: None,
            policy_uri: None,
            tos_uri: None,
            contacts: Vec::new(),
            sector_identifier_uri: None,
            access_token_audience: None,
            purpose: None,
            saml: None,
        }
    }
}
