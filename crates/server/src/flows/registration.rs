//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592), guarded by
//! initial access tokens that a tenant's admins issue through the admin API.

use std::{collections::BTreeSet, time::Duration};

use oidc_core::{Environment, Scope, SigningAlgorithm, TenantId, TrustLevel};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tenant_registry::{
    AuthMethod, Client, ClientKind, ClientSettings, FieldError, GrantType, Purpose, RegistryError, TokenLifetimes,
};
use url::Url;

use crate::state::AppState;

/// The longest an initial access token may live.
pub(crate) const MAX_INITIAL_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Serialize, Deserialize)]
struct InitialAccessGrant {
    tenant_id: TenantId,
    environment: Environment,
}

fn initial_token_key(token: &str) -> String {
    format!("iat:{}", oidc_core::token_digest(token))
}

/// A single-use initial access token for registering one client of `tenant_id` in
/// `environment`; kept in the ephemeral store (hashed) for `lifetime`.
pub(crate) async fn issue_initial_access_token(
    state: &AppState,
    tenant_id: TenantId,
    environment: Environment,
    lifetime: Duration,
) -> Result<String, oidc_core::EphemeralError> {
    let token = oidc_core::random_token();
    let grant = serde_json::to_vec(&InitialAccessGrant { tenant_id, environment }).unwrap_or_default();
    state.ephemeral.put(&initial_token_key(&token), &grant, lifetime).await?;
    Ok(token)
}

/// Why a registration request failed, in RFC 7591 §3.2.2 terms.
#[derive(Debug)]
pub(crate) enum RegistrationError {
    /// Missing, unknown, used or expired token (RFC 6750 `invalid_token`, 401).
    InvalidToken,
    /// A redirect URI breaks the rules.
    InvalidRedirectUri(String),
    /// Other metadata breaks the rules.
    InvalidClientMetadata(String),
    /// Storage or network failure on our side.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
}

impl From<RegistryError> for RegistrationError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Invalid(errors) if errors.iter().any(|e| e.field.starts_with("redirect_uris")) => {
                RegistrationError::InvalidRedirectUri(describe(&errors))
            }
            RegistryError::Invalid(errors) => RegistrationError::InvalidClientMetadata(describe(&errors)),
            RegistryError::NotFound => RegistrationError::InvalidToken,
            RegistryError::Forbidden(why) => RegistrationError::InvalidClientMetadata(why.to_owned()),
            RegistryError::Conflict(what) => RegistrationError::InvalidClientMetadata(what),
            RegistryError::VersionMismatch { .. } => RegistrationError::InvalidClientMetadata(
                "the client was changed meanwhile; read it and try again".into(),
            ),
            RegistryError::HasClients => RegistrationError::InvalidClientMetadata("not possible".into()),
            RegistryError::Store(e) => RegistrationError::Internal(Box::new(e)),
        }
    }
}

/// RFC 7591 §2 client metadata, with the OpenID Connect Registration fields we support.
/// Unknown fields are ignored, as §2 requires.
#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    scope: Option<String>,
    #[serde(default)]
    contacts: Vec<String>,
    logo_uri: Option<String>,
    tos_uri: Option<String>,
    policy_uri: Option<String>,
    jwks_uri: Option<String>,
    jwks: Option<Value>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    backchannel_logout_uri: Option<String>,
    id_token_signed_response_alg: Option<String>,
    default_acr_values: Option<Vec<String>>,
    sector_identifier_uri: Option<String>,
    organization_display_name: Option<String>,
    online_service_id: Option<String>,
    /// Why the service asks for the citizen's data; RFC 7591 §2.2 language tags: `purpose` (or
    /// `purpose#de`) in German, `purpose#en` in English.
    purpose: Option<String>,
    #[serde(rename = "purpose#de")]
    purpose_de: Option<String>,
    #[serde(rename = "purpose#en")]
    purpose_en: Option<String>,
    client_id: Option<String>,
}

fn metadata_error(message: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(message.into())
}

fn url(field: &str, text: &str) -> Result<Url, RegistrationError> {
    Url::parse(text).map_err(|e| {
        let message = format!("{field}: not an absolute URL ({e})");
        if field.starts_with("redirect_uris") {
            RegistrationError::InvalidRedirectUri(message)
        } else {
            metadata_error(message)
        }
    })
}

fn optional_url(field: &str, text: &Option<String>) -> Result<Option<Url>, RegistrationError> {
    text.as_deref().map(|t| url(field, t)).transpose()
}

/// Reads a request body into client settings for a client of a tenant whose minimum trust level
/// is `tenant_minimum`. Also returns the `client_id` the body names (RFC 7592 updates).
fn settings_from(
    body: &[u8],
    tenant_minimum: TrustLevel,
) -> Result<(ClientSettings, Option<String>), RegistrationError> {
    let metadata: Metadata = serde_json::from_slice(body)
        .map_err(|e| metadata_error(format!("the body is not client metadata JSON: {e}")))?;
    if let Some(types) = &metadata.response_types
        && types.iter().any(|t| t != "code")
    {
        return Err(metadata_error("response_types: only \"code\" is supported"));
    }
    let auth_method = match metadata.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic") {
        "client_secret_basic" => AuthMethod::ClientSecretBasic,
        "client_secret_post" => AuthMethod::ClientSecretPost,
        "private_key_jwt" => AuthMethod::PrivateKeyJwt,
        "none" => AuthMethod::None,
        other => return Err(metadata_error(format!("token_endpoint_auth_method {other:?} is not supported"))),
    };
    let grant_types = metadata
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".to_owned()])
        .iter()
        .map(|g| match g.as_str() {
            "authorization_code" => Ok(GrantType::AuthorizationCode),
            "refresh_token" => Ok(GrantType::RefreshToken),
            "client_credentials" => Ok(GrantType::ClientCredentials),
            other => Err(metadata_error(format!("grant type {other:?} is not supported"))),
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let scopes = metadata
        .scope
        .as_deref()
        .unwrap_or("openid")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| Scope::parse(s).ok_or_else(|| metadata_error(format!("scope {s:?} is unknown"))))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let default_acr = match metadata.default_acr_values.as_deref() {
        Some([first, ..]) => {
            first.parse().map_err(|_| metadata_error(format!("default_acr_values: {first:?} is unknown")))?
        }
        _ => tenant_minimum,
    };
    let algorithm = match metadata.id_token_signed_response_alg.as_deref() {
        Some(alg) => alg
            .parse::<SigningAlgorithm>()
            .map_err(|_| metadata_error(format!("id_token_signed_response_alg {alg:?} is not supported")))?,
        None => SigningAlgorithm::RS256,
    };
    let purpose = match (metadata.purpose_de.or(metadata.purpose), metadata.purpose_en) {
        (Some(de), en) => Some(Purpose { de, en }),
        (None, Some(_)) => return Err(metadata_error("purpose#en needs purpose (German) beside it")),
        (None, None) => None,
    };
    let settings = ClientSettings {
        name: metadata.client_name.unwrap_or_else(|| "Dynamisch registrierter Client".to_owned()),
        kind: if auth_method == AuthMethod::None { ClientKind::Public } else { ClientKind::Confidential },
        auth_method,
        redirect_uris: metadata
            .redirect_uris
            .iter()
            .enumerate()
            .map(|(i, u)| url(&format!("redirect_uris[{i}]"), u))
            .collect::<Result<_, _>>()?,
        post_logout_redirect_uris: metadata
            .post_logout_redirect_uris
            .iter()
            .enumerate()
            .map(|(i, u)| url(&format!("post_logout_redirect_uris[{i}]"), u))
            .collect::<Result<_, _>>()?,
        backchannel_logout_uri: optional_url("backchannel_logout_uri", &metadata.backchannel_logout_uri)?,
        grant_types,
        scopes,
        claims: Vec::<tenant_registry::ClaimRule>::new(),
        min_acr: tenant_minimum,
        default_acr,
        lifetimes: TokenLifetimes::default(),
        id_token_signed_response_alg: algorithm,
        require_pkce: true,
        require_par: false,
        jwks: metadata.jwks,
        jwks_uri: optional_url("jwks_uri", &metadata.jwks_uri)?,
        organization_display_name: metadata.organization_display_name,
        online_service_id: metadata.online_service_id,
        logo_uri: optional_url("logo_uri", &metadata.logo_uri)?,
        policy_uri: optional_url("policy_uri", &metadata.policy_uri)?,
        tos_uri: optional_url("tos_uri", &metadata.tos_uri)?,
        contacts: metadata.contacts,
        sector_identifier_uri: optional_url("sector_identifier_uri", &metadata.sector_identifier_uri)?,
        // Set by the operator or tenant admin, not by self-registration.
        access_token_audience: None,
        purpose,
        saml: None,
    };
    Ok((settings, metadata.client_id))
}

/// OIDC Registration §5: every redirect URI must be listed in the JSON array at
/// `sector_identifier_uri`.
async fn check_sector(settings: &ClientSettings, environment: Environment) -> Result<(), RegistrationError> {
    let Some(uri) = &settings.sector_identifier_uri else { return Ok(()) };
    let loopback = matches!(uri.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if uri.scheme() != "https" && !(environment == Environment::Test && loopback && uri.scheme() == "http") {
        return Err(metadata_error("sector_identifier_uri must be https"));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| RegistrationError::Internal(Box::new(e)))?;
    let listed: Vec<String> = async { client.get(uri.clone()).send().await?.error_for_status()?.json().await }
        .await
        .map_err(|e: reqwest::Error| {
            metadata_error(format!("sector_identifier_uri could not be read as a JSON array of URIs: {e}"))
        })?;
    match settings.redirect_uris.iter().find(|r| !listed.iter().any(|l| l == r.as_str())) {
        Some(missing) => {
            Err(RegistrationError::InvalidRedirectUri(format!("{missing} is not listed at sector_identifier_uri")))
        }
        None => Ok(()),
    }
}

/// RFC 7591 §3.2.1: the registered metadata, as the response shows it.
pub(crate) fn metadata_of(client: &Client, issuer: &str) -> Value {
    let s = &client.settings;
    let method = match s.auth_method {
        AuthMethod::ClientSecretBasic => "client_secret_basic",
        AuthMethod::ClientSecretPost => "client_secret_post",
        AuthMethod::PrivateKeyJwt => "private_key_jwt",
        AuthMethod::None => "none",
    };
    let mut body = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at.unix_timestamp(),
        "client_name": s.name,
        "redirect_uris": s.redirect_uris,
        "post_logout_redirect_uris": s.post_logout_redirect_uris,
        "token_endpoint_auth_method": method,
        "grant_types": s.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "response_types": if s.grant_types.contains(&GrantType::AuthorizationCode) { vec!["code"] } else { vec![] },
        "scope": s.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        "contacts": s.contacts,
        "id_token_signed_response_alg": s.id_token_signed_response_alg.as_str(),
        "default_acr_values": [s.default_acr.as_str()],
        "registration_client_uri": format!("{issuer}/register/{}", client.client_id),
    });
    let optional = [
        ("logo_uri", s.logo_uri.as_ref().map(Url::to_string)),
        ("policy_uri", s.policy_uri.as_ref().map(Url::to_string)),
        ("tos_uri", s.tos_uri.as_ref().map(Url::to_string)),
        ("jwks_uri", s.jwks_uri.as_ref().map(Url::to_string)),
        ("backchannel_logout_uri", s.backchannel_logout_uri.as_ref().map(Url::to_string)),
        ("sector_identifier_uri", s.sector_identifier_uri.as_ref().map(Url::to_string)),
        ("organization_display_name", s.organization_display_name.clone()),
        ("online_service_id", s.online_service_id.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            body[name] = json!(value);
        }
    }
    if let Some(jwks) = &s.jwks {
        body["jwks"] = jwks.clone();
    }
    if let Some(purpose) = &s.purpose {
        body["purpose"] = json!(purpose.de);
        if let Some(en) = &purpose.en {
            body["purpose#en"] = json!(en);
        }
    }
    if !client.secrets.is_empty() {
        // Our secrets do not expire by themselves (RFC 7591 §3.2.1: 0 means never).
        body["client_secret_expires_at"] = json!(0);
    }
    body
}

/// RFC 7591 §3: registers a client with the initial access token `token`.
pub(crate) async fn register(
    state: &AppState,
    environment: Environment,
    token: &str,
    body: &[u8],
) -> Result<Value, RegistrationError> {
    // Single use: taken before anything else, so a failed attempt costs the token too.
    let grant = state
        .ephemeral
        .take(&initial_token_key(token))
        .await
        .map_err(|e| RegistrationError::Internal(Box::new(e)))?
        .and_then(|bytes| serde_json::from_slice::<InitialAccessGrant>(&bytes).ok())
        .filter(|g| g.environment == environment)
        .ok_or(RegistrationError::InvalidToken)?;
    let tenant = state
        .registry
        .get_tenant(&tenant_registry::Actor::Registration { tenant_id: grant.tenant_id }, grant.tenant_id)
        .await?;
    let (settings, _) = settings_from(body, tenant.min_trust_level)?;
    check_sector(&settings, environment).await?;
    let (client, secret, registration_token) =
        state.registry.register_client(grant.tenant_id, environment, settings).await?;
    let issuer = state.config.environments.issuer(environment);
    let mut response = metadata_of(&client, issuer);
    if let Some(secret) = secret {
        response["client_secret"] = json!(secret.expose());
    }
    response["registration_access_token"] = json!(registration_token.expose());
    Ok(response)
}

/// RFC 7592 §2.1: the current metadata.
pub(crate) async fn read(
    state: &AppState,
    environment: Environment,
    client_id: &str,
    token: &str,
) -> Result<Value, RegistrationError> {
    let client = state.registry.registered_client(environment, client_id, token).await?;
    Ok(metadata_of(&client, state.config.environments.issuer(environment)))
}

/// RFC 7592 §2.2: replaces the metadata.
pub(crate) async fn update(
    state: &AppState,
    environment: Environment,
    client_id: &str,
    token: &str,
    body: &[u8],
) -> Result<Value, RegistrationError> {
    let client = state.registry.registered_client(environment, client_id, token).await?;
    let actor = tenant_registry::Actor::Registration { tenant_id: client.tenant_id };
    let tenant = state.registry.get_tenant(&actor, client.tenant_id).await?;
    let (mut settings, named_id) = settings_from(body, tenant.min_trust_level)?;
    if named_id.as_deref() != Some(client.client_id.as_str()) {
        return Err(metadata_error("the body must name this client's client_id (RFC 7592 §2.2)"));
    }
    // RFC 7592 replaces the registration metadata; what only an operator or tenant admin sets
    // (claim rules, lifetimes, PAR, JWT access tokens, a higher minimum level) stays.
    settings.claims = client.settings.claims.clone();
    settings.lifetimes = client.settings.lifetimes;
    settings.require_par = client.settings.require_par;
    settings.access_token_audience = client.settings.access_token_audience.clone();
    settings.min_acr = settings.min_acr.max(client.settings.min_acr);
    check_sector(&settings, environment).await?;
    let flags = tenant_registry::OperatorFlags { first_party: client.first_party, admin_role: client.admin_role };
    let updated = state.registry.update_client(&actor, &client.client_id, client.version, settings, flags).await?;
    Ok(metadata_of(&updated, state.config.environments.issuer(environment)))
}

/// RFC 7592 §2.3: deletes the client.
pub(crate) async fn delete(
    state: &AppState,
    environment: Environment,
    client_id: &str,
    token: &str,
) -> Result<(), RegistrationError> {
    let client = state.registry.registered_client(environment, client_id, token).await?;
    let actor = tenant_registry::Actor::Registration { tenant_id: client.tenant_id };
    state.registry.delete_client(&actor, &client.client_id, Some(client.version)).await?;
    Ok(())
}
