//! The authorization code flow (OpenID Connect Core §3.1): validating an authorization request in
//! the order the specs demand, issuing single-use codes, redeeming them at the token endpoint for
//! an access token and a signed ID token.

use std::{sync::Arc, time::Duration};

use account_service::{Account, AuthMethod, Session};
use oidc_core::{
    AccessGrant, AccountId, AssertionError, CitizenGrant, ClaimsRequest, ClientId, Environment, FamilyTag,
    IdTokenClaims, OAuthError, OAuthErrorCode, RefreshRecord, Rotation, RotationRequest, TenantTag, TrustLevel,
    at_hash,
    authorize::{self as rules, ResponseMode},
    claims_of_scope, new_refresh_token, pairwise_subject, random_token, refresh_token_key, token_digest,
    verify_request_object, verify_s256,
};
use serde::{Deserialize, Serialize};
use tenant_registry::{Client, ClientAuthError, ClientKind, GrantType, Tenant};
use url::Url;

use crate::{
    error::{Failure, oauth_failure, record_failure, unavailable},
    flows::token::{TokenResponse, issue_access_token},
    state::AppState,
};

/// The request parameters, as sent (query or form). Unknown parameters are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct AuthorizeParams {
    pub(crate) client_id: Option<String>,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) response_type: Option<String>,
    pub(crate) response_mode: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) code_challenge_method: Option<String>,
    pub(crate) prompt: Option<String>,
    pub(crate) max_age: Option<String>,
    pub(crate) login_hint: Option<String>,
    pub(crate) acr_values: Option<String>,
    pub(crate) claims: Option<String>,
    pub(crate) id_token_hint: Option<String>,
    pub(crate) display: Option<String>,
    /// Accepted and not acted on: no claim value of ours has language variants.
    pub(crate) claims_locales: Option<String>,
    pub(crate) ui_locales: Option<String>,
    pub(crate) request: Option<String>,
    pub(crate) request_uri: Option<String>,
}

/// A redirect URI that passed the exact match: errors may now go there.
#[derive(Debug, Clone)]
pub(crate) struct ClientRedirect {
    pub(crate) uri: Url,
    pub(crate) state: Option<String>,
    pub(crate) mode: ResponseMode,
    pub(crate) issuer: String,
}

impl ClientRedirect {
    /// The response parameters: the given ones plus `state` and `iss` (RFC 9207).
    pub(crate) fn parameters(&self, mut params: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        if let Some(state) = &self.state {
            params.push(("state", state.clone()));
        }
        params.push(("iss", self.issuer.clone()));
        params
    }
}

/// Why a request ends before the citizen sees anything of it.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "built once per failed request, never stored")]
pub(crate) enum Rejection {
    /// The client or its redirect URI cannot be trusted: an error page, never a redirect. The
    /// value is the key of the page's text.
    Page(&'static str),
    /// An error for the client at its registered redirect URI.
    Redirect(ClientRedirect, OAuthError),
    /// A store could not be read before the redirect URI was known (logged): a page says so.
    Unavailable(Failure),
}

/// A valid authorization request.
#[derive(Debug, Clone)]
pub(crate) struct Authorization {
    pub(crate) client: Arc<Client>,
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) redirect: ClientRedirect,
    pub(crate) nonce: Option<String>,
    pub(crate) scopes: Vec<String>,
    /// Claims the request asks for that the tenant and the client may receive, with "required".
    pub(crate) claims: Vec<(String, bool)>,
    /// Of those, the ones the client wants in the ID token itself (`claims` parameter).
    pub(crate) id_token_claims: Vec<String>,
    /// The client asked for `verified_claims` (claims read from the ID card, with evidence).
    pub(crate) verified_claims: bool,
    pub(crate) code_challenge: Option<String>,
    pub(crate) prompt: Vec<String>,
    pub(crate) max_age: Option<i64>,
    pub(crate) required_level: TrustLevel,
    /// The client asked in eIDAS URIs, so `acr` answers in them.
    pub(crate) eidas_vocabulary: bool,
}

fn oauth(code: OAuthErrorCode, description: &str) -> OAuthError {
    OAuthError::new(code, description)
}

/// Validates in the order of RFC 6749 §4.1.2.1: client, then redirect URI, and only then the rest
/// (whose errors go to the redirect URI). `params` are what the request says after
/// [`resolve_request`]; they came through our PAR endpoint when `request_uri` is set (only
/// [`resolve_request`] and [`push`] set it).
#[allow(clippy::result_large_err, reason = "the rejection is the answer, built once per request")]
pub(crate) async fn validate(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    params: &AuthorizeParams,
) -> Result<Authorization, Rejection> {
    let pushed = params.request_uri.is_some();
    let client_id = params.client_id.as_deref().ok_or(Rejection::Page("authorize_no_client"))?;
    let (client, tenant) = match state.registry.active_client(environment, client_id).await {
        Ok(found) => found,
        Err(ClientAuthError::Failed) => return Err(Rejection::Page("authorize_unknown_client")),
        Err(ClientAuthError::TenantSuspended) => return Err(Rejection::Page("authorize_suspended")),
        Err(ClientAuthError::Store(e)) => {
            return Err(Rejection::Unavailable(record_failure(state, "authorize.client", &e)));
        }
    };
    let registered = &client.settings.redirect_uris;
    let uri = match params.redirect_uri.as_deref() {
        Some(given) => registered.iter().find(|r| r.as_str() == given).cloned(),
        // OIDC Core requires it, but RFC 6749 §3.1.2.3 lets a single registration stand in.
        None if registered.len() == 1 => registered.first().cloned(),
        None => None,
    }
    .ok_or(Rejection::Page("authorize_bad_redirect"))?;
    let mode = rules::response_mode(params.response_mode.as_deref());
    let redirect = ClientRedirect {
        uri,
        state: params.state.clone(),
        mode: *mode.as_ref().unwrap_or(&ResponseMode::Query),
        issuer: issuer.to_owned(),
    };
    // From here on, errors go to the trusted redirect URI.
    let to_client = |error: OAuthError| Rejection::Redirect(redirect.clone(), error);
    mode.map_err(to_client)?;
    if client.settings.require_par && !pushed {
        return Err(to_client(oauth(OAuthErrorCode::InvalidRequest, "Dieser Client muss PAR (RFC 9126) verwenden")));
    }
    rules::response_type(params.response_type.as_deref()).map_err(to_client)?;
    if !client.settings.grant_types.contains(&GrantType::AuthorizationCode) {
        let text = "Dieser Client darf keinen Autorisierungscode anfordern";
        return Err(to_client(oauth(OAuthErrorCode::UnauthorizedClient, text)));
    }
    let scopes = rules::scopes(params.scope.as_deref()).map_err(to_client)?;
    if let Some(refused) =
        scopes.iter().find(|s| !client.settings.scopes.iter().any(|allowed| allowed.as_str() == s.as_str()))
    {
        let text = format!("Scope {refused:?} ist für diesen Client nicht erlaubt");
        return Err(to_client(oauth(OAuthErrorCode::InvalidScope, &text)));
    }
    let pkce_needed = client.settings.kind == ClientKind::Public || client.settings.require_pkce;
    let code_challenge =
        rules::code_challenge(params.code_challenge.as_deref(), params.code_challenge_method.as_deref(), pkce_needed)
            .map_err(to_client)?;
    let prompt = rules::prompt(params.prompt.as_deref()).map_err(to_client)?;
    rules::display(params.display.as_deref()).map_err(to_client)?;
    let max_age = rules::max_age(params.max_age.as_deref()).map_err(to_client)?;
    let claims_request = match params.claims.as_deref() {
        Some(text) => ClaimsRequest::parse(text).map_err(to_client)?,
        None => ClaimsRequest::default(),
    };
    let essential_acr = claims_request.essential_acr().unwrap_or_default();
    let required = rules::required_level(
        params.acr_values.as_deref(),
        &essential_acr,
        client.settings.min_acr,
        tenant.min_trust_level,
    )
    .map_err(to_client)?;
    let mut claims: Vec<(String, bool)> = Vec::new();
    let by_scope = scopes.iter().flat_map(|scope| claims_of_scope(scope).iter().copied());
    // `*_verified` are released with their claim, not asked for on their own.
    for claim in by_scope.chain(claims_request.personal_claims()).filter(|c| !c.ends_with("_verified")) {
        let rule = client.settings.claims.iter().find(|r| r.claim.as_str() == claim);
        let tenant_allows = tenant.allowed_claims.iter().any(|c| c.as_str() == claim);
        if let Some(rule) = rule.filter(|_| tenant_allows)
            && !claims.iter().any(|(c, _)| c == claim)
        {
            claims.push((claim.to_owned(), rule.required));
        }
    }
    let id_token_claims = claims.iter().map(|(c, _)| c).filter(|c| claims_request.in_id_token(c)).cloned().collect();
    Ok(Authorization {
        client,
        tenant,
        redirect,
        nonce: params.nonce.clone(),
        scopes,
        claims,
        id_token_claims,
        verified_claims: claims_request.wants_verified_claims(),
        code_challenge,
        prompt,
        max_age,
        required_level: required.level,
        eidas_vocabulary: required.eidas_vocabulary,
    })
}

/// How long a pushed request (PAR) stays usable. Longer than RFC 9126's examples, because the
/// same reference brings the browser back after the login page.
const PUSHED_REQUEST_TTL: Duration = Duration::from_secs(300);

/// The prefix of the `request_uri`s our PAR endpoint hands out (RFC 9126 §2.2).
const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

fn pushed_key(environment: Environment, request_uri: &str) -> String {
    format!("par:{}:{}", environment.as_str(), token_digest(request_uri))
}

/// A pushed request as stored: whose it is and what it says.
#[derive(Serialize, Deserialize)]
struct PushedRequest {
    client_id: String,
    params: AuthorizeParams,
}

/// What the request really says: a `request_uri` is looked up among the pushed requests (it
/// must be ours, unexpired and the named client's); a signed `request` object (RFC 9101) is
/// verified and its claims replace the other parameters.
#[allow(clippy::result_large_err, reason = "the rejection is the answer, built once per request")]
pub(crate) async fn resolve_request(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    params: AuthorizeParams,
) -> Result<AuthorizeParams, Rejection> {
    if let Some(request_uri) = &params.request_uri {
        let stored = state
            .ephemeral
            .get(&pushed_key(environment, request_uri))
            .await
            .map_err(|e| Rejection::Unavailable(record_failure(state, "authorize.par", &e)))?;
        let pushed: PushedRequest = stored
            .and_then(|value| serde_json::from_slice(&value).ok())
            .ok_or(Rejection::Page("authorize_bad_request_uri"))?;
        if params.client_id.as_deref() != Some(pushed.client_id.as_str()) {
            return Err(Rejection::Page("authorize_bad_request_uri"));
        }
        return Ok(AuthorizeParams { request_uri: Some(request_uri.clone()), ..pushed.params });
    }
    if params.request.is_some() {
        return unpack_request_object(state, environment, issuer, params)
            .await
            .map_err(|_| Rejection::Page("authorize_bad_request_object"));
    }
    Ok(params)
}

/// The parameters a verified request object carries (its claims, as text).
async fn unpack_request_object(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    params: AuthorizeParams,
) -> Result<AuthorizeParams, OAuthError> {
    let invalid = |why: &dyn std::fmt::Display| {
        tracing::info!(reason = %why, "request object refused");
        oauth(OAuthErrorCode::InvalidRequestObject, "Das Request-Objekt ist ungültig")
    };
    let (Some(client_id), Some(request)) = (params.client_id.as_deref(), params.request.as_deref()) else {
        return Err(oauth(OAuthErrorCode::InvalidRequest, "client_id fehlt"));
    };
    let (client, _) = state.registry.active_client(environment, client_id).await.map_err(|e| invalid(&e))?;
    let now = state.clock.now().unix_timestamp();
    let keys = state.client_keys.keys(&client, false).await.map_err(|e| invalid(&e))?;
    let claims = match verify_request_object(request, client_id, &keys, issuer, now) {
        Err(AssertionError::UnknownKey) => {
            let keys = state.client_keys.keys(&client, true).await.map_err(|e| invalid(&e))?;
            verify_request_object(request, client_id, &keys, issuer, now)
        }
        other => other,
    }
    .map_err(|e| invalid(&e))?;
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let jwt_claims = ["iss", "aud", "exp", "nbf", "iat", "jti", "request", "request_uri"];
    let mut map: serde_json::Map<String, serde_json::Value> = claims
        .iter()
        .filter(|(name, _)| !jwt_claims.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), serde_json::Value::String(text(value))))
        .collect();
    map.insert("client_id".to_owned(), serde_json::Value::String(client_id.to_owned()));
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| invalid(&e))
}

/// RFC 9126: validates a pushed request of the authenticated `client` (a request object inside
/// is unpacked first) and stores it; the `request_uri` for the browser and its lifetime.
pub(crate) async fn push(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    client: &Client,
    mut params: AuthorizeParams,
) -> Result<(String, u64), OAuthError> {
    if params.request_uri.is_some() {
        return Err(oauth(OAuthErrorCode::InvalidRequest, "request_uri ist bei PAR nicht erlaubt"));
    }
    if params.client_id.as_deref().is_some_and(|id| id != client.client_id.as_str()) {
        return Err(oauth(OAuthErrorCode::InvalidRequest, "client_id widerspricht der Client-Authentifizierung"));
    }
    params.client_id = Some(client.client_id.to_string());
    if params.request.is_some() {
        params = unpack_request_object(state, environment, issuer, params).await?;
    }
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", random_token());
    // Validated as the authorization endpoint will see it, so errors reach the client now.
    params.request_uri = Some(request_uri.clone());
    match validate(state, environment, issuer, &params).await {
        Ok(_) => {}
        Err(Rejection::Redirect(_, error)) => return Err(error),
        Err(Rejection::Page(_)) => {
            return Err(oauth(OAuthErrorCode::InvalidRequest, "redirect_uri fehlt oder ist nicht registriert"));
        }
        Err(Rejection::Unavailable(Failure::Outage(_))) => return Err(unavailable()),
        Err(Rejection::Unavailable(Failure::Bug)) => return Err(oauth(OAuthErrorCode::ServerError, "Interner Fehler")),
    }
    params.request_uri = None;
    let stored = PushedRequest { client_id: client.client_id.to_string(), params };
    let value = serde_json::to_vec(&stored).map_err(|e| oauth_failure(state, "authorize.push", &e))?;
    state
        .ephemeral
        .put(&pushed_key(environment, &request_uri), &value, PUSHED_REQUEST_TTL)
        .await
        .map_err(|e| oauth_failure(state, "authorize.push", &e))?;
    Ok((request_uri, PUSHED_REQUEST_TTL.as_secs()))
}

/// What a code stands for; kept in the ephemeral store under the code's hash for 60 s.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CodeGrant {
    environment: Environment,
    client_id: ClientId,
    redirect_uri: String,
    code_challenge: Option<String>,
    nonce: Option<String>,
    account_id: AccountId,
    auth_time: i64,
    acr: String,
    amr: Vec<String>,
    scopes: Vec<String>,
    claims: Vec<String>,
    /// The released claims that go into the ID token too.
    id_token_claims: Vec<String>,
    #[serde(default)]
    verified_claims: bool,
    sub: String,
    sid: String,
    recipient: String,
    consent_ref: String,
    /// A one-time identification: the released claims' values (plus `verified_claims` when
    /// asked); there is no account.
    #[serde(default)]
    one_time: Option<serde_json::Map<String, serde_json::Value>>,
    /// The organisation the citizen acts for (scope `organization`).
    #[serde(default)]
    organisation: Option<String>,
}

const CODE_TTL: Duration = Duration::from_secs(60);

fn code_key(code: &str) -> String {
    format!("code:{}", token_digest(code))
}

fn used_key(code: &str) -> String {
    format!("code-used:{}", token_digest(code))
}

/// The `sub` of `account` for the client's tenant: pairwise per sector.
pub(crate) fn subject(state: &AppState, environment: Environment, tenant: &Tenant, account: AccountId) -> String {
    pairwise_subject(&state.subject_key, environment, &tenant.sector, account)
}

/// The `sid` of a browser session: derived from its token (one-way), so it names the session in
/// ID tokens and logout tokens without revealing anything that would let one use it.
pub(crate) fn session_id(session_token: &str) -> String {
    token_digest(&format!("sid:{session_token}"))[..22].to_owned()
}

/// Issues a code for `authorization` to the citizen of `session` (cookie value
/// `session_token`), releasing `claims`.
#[allow(clippy::too_many_arguments, reason = "one call site; the values are distinct")]
pub(crate) async fn issue_code(
    state: &AppState,
    environment: Environment,
    authorization: &Authorization,
    session: &Session,
    session_token: &str,
    account: &Account,
    mut claims: Vec<String>,
    consent_ref: String,
    organisation: Option<String>,
) -> Result<String, OAuthError> {
    // Acting for nobody releases no organisation.
    if organisation.is_none() {
        claims.retain(|c| c != "organization");
    }
    for (claim, companion) in [("email", "email_verified"), ("phone_number", "phone_number_verified")] {
        if claims.iter().any(|c| c == claim) && !claims.iter().any(|c| c == companion) {
            claims.push(companion.to_owned());
        }
    }
    let acr = acr(authorization, session.trust_level);
    let id_token_claims = authorization.id_token_claims.iter().filter(|c| claims.contains(c)).cloned().collect();
    let grant = CodeGrant {
        environment,
        client_id: authorization.client.client_id.clone(),
        redirect_uri: authorization.redirect.uri.to_string(),
        code_challenge: authorization.code_challenge.clone(),
        nonce: authorization.nonce.clone(),
        account_id: account.id,
        auth_time: session.auth_time.unix_timestamp(),
        acr,
        amr: session.method.amr().iter().map(|m| (*m).to_owned()).collect(),
        scopes: authorization.scopes.clone(),
        claims,
        id_token_claims,
        verified_claims: authorization.verified_claims,
        sub: subject(state, environment, &authorization.tenant, account.id),
        sid: session_id(session_token),
        recipient: recipient(authorization),
        consent_ref,
        one_time: None,
        organisation,
    };
    super::backchannel::remember(state, environment, &grant.sid, account.id, &authorization.client, &grant.sub).await;
    // Names only: the claims' values never go to the log.
    tracing::debug!(client = %grant.client_id, acr = %grant.acr, claims = ?grant.claims, "authorization code issued");
    store_code(state, &grant).await
}

/// Stores `grant` under a new code for [`CODE_TTL`]; the code.
async fn store_code(state: &AppState, grant: &CodeGrant) -> Result<String, OAuthError> {
    let code = random_token();
    let value = serde_json::to_vec(grant).map_err(|e| oauth_failure(state, "authorize.code", &e))?;
    state
        .ephemeral
        .put(&code_key(&code), &value, CODE_TTL)
        .await
        .map_err(|e| oauth_failure(state, "authorize.code", &e))?;
    Ok(code)
}

/// The `acr` for `level` in the vocabulary the client asked in.
fn acr(authorization: &Authorization, level: TrustLevel) -> String {
    if authorization.eidas_vocabulary { level.eidas_uri() } else { level.as_str() }.to_owned()
}

/// Issues a code for a one-time identification with the ID card: no account and no session; the
/// released claims' values go into the grant, the `sub` is random (nothing links two
/// identifications), `amr` is `eid` at level "hoch".
pub(crate) async fn issue_one_time_code(
    state: &AppState,
    environment: Environment,
    authorization: &Authorization,
    citizen: &Account,
    claims: Vec<String>,
) -> Result<String, OAuthError> {
    let mut values = serde_json::Map::new();
    for claim in &claims {
        if let Some(value) = account_service::claim_value(citizen, claim).filter(|v| v.as_str() != Some("")) {
            values.insert(claim.clone(), value);
        }
    }
    let released: Vec<String> = values.keys().cloned().collect();
    if authorization.verified_claims
        && let Some(verified) = account_service::verified_claims(citizen, &released)
    {
        values.insert("verified_claims".to_owned(), verified);
    }
    let level = TrustLevel::Hoch;
    let grant = CodeGrant {
        environment,
        client_id: authorization.client.client_id.clone(),
        redirect_uri: authorization.redirect.uri.to_string(),
        code_challenge: authorization.code_challenge.clone(),
        nonce: authorization.nonce.clone(),
        account_id: citizen.id,
        auth_time: state.clock.now().unix_timestamp(),
        acr: acr(authorization, level),
        amr: AuthMethod::Eid.amr().iter().map(|m| (*m).to_owned()).collect(),
        scopes: authorization.scopes.clone(),
        id_token_claims: authorization.id_token_claims.iter().filter(|c| released.contains(c)).cloned().collect(),
        claims: released,
        verified_claims: authorization.verified_claims,
        sub: subject(state, environment, &authorization.tenant, citizen.id),
        sid: session_id(&random_token()),
        recipient: recipient(authorization),
        consent_ref: "one-time-identification".to_owned(),
        one_time: Some(values),
        organisation: None,
    };
    store_code(state, &grant).await
}

/// "Authority – service", as the citizen knows them.
pub(crate) fn recipient(authorization: &Authorization) -> String {
    recipient_of(&authorization.client, &authorization.tenant)
}

/// "Authority – service" of `client` of `tenant`.
pub(crate) fn recipient_of(client: &Client, tenant: &Tenant) -> String {
    let settings = &client.settings;
    let authority = settings.organization_display_name.clone().unwrap_or_else(|| tenant.branding.display_name.clone());
    format!("{authority} – {}", settings.name)
}

/// RFC 6749 §4.1.3: redeems a code for an access token and an ID token. The client was
/// authenticated already (or is public, then PKCE carries the proof).
///
/// The code is read first and taken (atomically, single use) only after the access token was
/// stored, so an ephemeral store that refuses writes leaves the code as it was; whatever fails
/// on our side after the take revokes the access token and puts the code back.
pub(crate) async fn redeem(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let invalid = |text: &str| oauth(OAuthErrorCode::InvalidGrant, text);
    let Some(value) =
        state.ephemeral.get(&code_key(code)).await.map_err(|e| oauth_failure(state, "token.redeem", &e))?
    else {
        revoke_second_redemption(state, client, code).await?;
        return Err(invalid("Der Code ist ungültig, abgelaufen oder wurde schon eingelöst"));
    };
    let grant: CodeGrant = serde_json::from_slice(&value).map_err(|e| oauth_failure(state, "token.redeem", &e))?;
    if let Err(refused) = check_redemption(client, &grant, environment, redirect_uri, verifier) {
        // A code presented wrongly is used up, as if it had been redeemed (RFC 6749 §4.1.2).
        let _ = state.ephemeral.delete(&code_key(code)).await;
        return Err(refused);
    }
    let now = state.clock.now();
    let lifetime = client.settings.lifetimes.access_token;
    // A one-time identification gives its data once: nothing to renew.
    let renewable = client.settings.grant_types.contains(&GrantType::RefreshToken) && grant.one_time.is_none();
    let family = renewable.then(|| new_refresh_token(now));
    let now = now.unix_timestamp();
    let access = AccessGrant {
        environment,
        client_id: client.client_id.clone(),
        tenant: TenantTag::of(client.tenant_id),
        scopes: grant.scopes.clone(),
        issued_at: now,
        expires_at: now + i64::from(lifetime),
        family: family.as_deref().map(FamilyTag::of),
        citizen: Some(CitizenGrant {
            account_id: grant.account_id,
            claims: grant.claims.clone(),
            consent_ref: grant.consent_ref.clone(),
            verified_claims: grant.verified_claims,
            values: grant.one_time.clone(),
            organisation: grant.organisation.clone(),
        }),
    };
    let access_token = issue_access_token(state, environment, client, &access, Some(&grant.sub)).await?;
    match state.ephemeral.take(&code_key(code)).await {
        Ok(Some(_)) => {}
        taken => {
            let _ = state.access_tokens.revoke(&access_token).await;
            return Err(match taken {
                Err(e) => oauth_failure(state, "token.redeem", &e),
                // Another redemption of the same code won the race.
                _ => {
                    revoke_second_redemption(state, client, code).await?;
                    invalid("Der Code ist ungültig, abgelaufen oder wurde schon eingelöst")
                }
            });
        }
    }
    let redeemed =
        complete_redemption(state, environment, issuer, client, code, grant, family, &access, &access_token).await;
    if redeemed.is_err() {
        // The failure was ours: the access token made for this answer must not outlive it, and
        // the client may redeem the code again (within its minute).
        let _ = state.access_tokens.revoke(&access_token).await;
        let _ = state.ephemeral.delete(&used_key(code)).await;
        let _ = state.ephemeral.put(&code_key(code), &value, CODE_TTL).await;
    }
    redeemed
}

/// A code presented again after it was redeemed: what the first redemption got is revoked
/// (RFC 6749 §4.1.2).
async fn revoke_second_redemption(state: &AppState, client: &Client, code: &str) -> Result<(), OAuthError> {
    if let Some(token) =
        state.ephemeral.take(&used_key(code)).await.map_err(|e| oauth_failure(state, "token.redeem", &e))?
    {
        let token = String::from_utf8_lossy(&token).into_owned();
        let _ = state.access_tokens.revoke(&token).await;
        tracing::warn!(client = %client.client_id, "authorization code presented twice; its tokens are revoked");
    }
    Ok(())
}

/// The code belongs to this client and environment, and redirect URI and PKCE match.
fn check_redemption(
    client: &Client,
    grant: &CodeGrant,
    environment: Environment,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<(), OAuthError> {
    let invalid = |text: &str| oauth(OAuthErrorCode::InvalidGrant, text);
    if grant.environment != environment || grant.client_id != client.client_id {
        return Err(invalid("Der Code gehört einem anderen Client"));
    }
    if redirect_uri.is_some_and(|r| r != grant.redirect_uri)
        || (redirect_uri.is_none() && client.settings.redirect_uris.len() > 1)
    {
        return Err(invalid("redirect_uri stimmt nicht mit der Autorisierungsanfrage überein"));
    }
    match (&grant.code_challenge, verifier) {
        (Some(challenge), Some(verifier)) if verify_s256(verifier, challenge) => Ok(()),
        (Some(_), _) => Err(invalid("code_verifier passt nicht zur code_challenge")),
        (None, Some(_)) => Err(invalid("code_verifier ohne code_challenge")),
        (None, None) => Ok(()),
    }
}

/// Completes a redemption whose code was taken: remembers the access token under the code (for
/// a second redemption), logs what the ID token releases, signs it, stores a refresh token of
/// `family` (when the client may renew).
#[allow(clippy::too_many_arguments, reason = "one call site; the values are distinct")]
async fn complete_redemption(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    client: &Client,
    code: &str,
    grant: CodeGrant,
    family: Option<String>,
    access: &AccessGrant,
    access_token: &str,
) -> Result<TokenResponse, OAuthError> {
    let now = access.issued_at;
    let lifetime = client.settings.lifetimes.access_token;
    state
        .ephemeral
        .put(&used_key(code), access_token.as_bytes(), Duration::from_secs(u64::from(lifetime)))
        .await
        .map_err(|e| oauth_failure(state, "token.redeem", &e))?;
    let personal = id_token_claims(state, environment, client, &grant, now).await?;
    let algorithm = client.settings.id_token_signed_response_alg;
    let key =
        state.keys.signing_key(environment, algorithm).await.map_err(|e| oauth_failure(state, "token.redeem", &e))?;
    let claims = IdTokenClaims {
        iss: issuer.to_owned(),
        sub: grant.sub,
        aud: client.client_id.to_string(),
        azp: client.client_id.to_string(),
        exp: now + i64::from(client.settings.lifetimes.id_token),
        iat: now,
        auth_time: grant.auth_time,
        nonce: grant.nonce,
        acr: grant.acr,
        amr: grant.amr,
        at_hash: Some(at_hash(access_token, algorithm)),
        sid: Some(grant.sid),
        personal,
    };
    let id_token = key.sign("JWT", &claims).map_err(|e| oauth_failure(state, "token.redeem", &e))?;
    let refresh_token = if let Some(family_id) = family {
        let token = new_refresh_token(state.clock.now());
        let record = RefreshRecord {
            token_hash: refresh_token_key(&token),
            family_id,
            environment,
            client_id: client.client_id.clone(),
            account_id: grant.account_id,
            grant: serde_json::to_value(RefreshGrant { scopes: grant.scopes.clone(), citizen: access.citizen.clone() })
                .map_err(|e| oauth_failure(state, "token.redeem", &e))?,
            created_at: now,
            expires_at: now + i64::from(client.settings.lifetimes.refresh_token),
        };
        state.refresh_tokens.insert(&record).await.map_err(|e| oauth_failure(state, "token.redeem", &e))?;
        Some(token)
    } else {
        None
    };
    state.metrics.token_issued(environment, GrantType::AuthorizationCode.as_str());
    Ok(TokenResponse {
        access_token: access_token.to_owned(),
        token_type: "Bearer",
        expires_in: lifetime,
        scope: grant.scopes.join(" "),
        id_token: Some(id_token),
        refresh_token,
    })
}

/// The values of the claims the client asked for in the ID token, logged as a transfer before
/// they are released (no log, no release).
async fn id_token_claims(
    state: &AppState,
    environment: Environment,
    client: &Client,
    grant: &CodeGrant,
    now: i64,
) -> Result<serde_json::Map<String, serde_json::Value>, OAuthError> {
    let mut personal = serde_json::Map::new();
    if grant.id_token_claims.is_empty() {
        return Ok(personal);
    }
    let mut acted_for = None;
    let account = match &grant.one_time {
        Some(values) => {
            for claim in &grant.id_token_claims {
                if let Some(value) = values.get(claim) {
                    personal.insert(claim.clone(), value.clone());
                }
            }
            None
        }
        None => {
            let account = state
                .accounts
                .account(environment, grant.account_id)
                .await
                .map_err(|e| oauth_failure(state, "authorize.id_token_claims", &e))?;
            for claim in &grant.id_token_claims {
                if let Some(value) = account_service::claim_value(&account, claim) {
                    personal.insert(claim.clone(), value);
                }
            }
            if grant.id_token_claims.iter().any(|c| c == "organization")
                && let Some(id) = &grant.organisation
                && let Some((value, note)) =
                    super::organisation::organisation_claim(state, environment, client.tenant_id, account.id, id)
                        .await?
            {
                personal.insert("organization".to_owned(), value);
                acted_for = Some(note);
            }
            Some(account.id)
        }
    };
    if !personal.is_empty() {
        let transfer = account_service::DataTransfer {
            client_id: client.client_id.to_string(),
            recipient: grant.recipient.clone(),
            claims: personal.keys().cloned().collect(),
            at: time::OffsetDateTime::from_unix_timestamp(now)
                .map_err(|e| oauth_failure(state, "authorize.id_token_claims", &e))?,
            consent_ref: grant.consent_ref.clone(),
            organisation: acted_for,
        };
        super::release::record_transfer(state, environment, account, transfer)
            .await
            .map_err(|e| oauth_failure(state, "authorize.id_token_claims", &e))?;
    }
    Ok(personal)
}

/// What a refresh token renews.
#[derive(Debug, Serialize, Deserialize)]
struct RefreshGrant {
    scopes: Vec<String>,
    citizen: Option<CitizenGrant>,
}

/// The access grant a refresh of `family` gives `client` at `now`.
fn renewed_grant(
    environment: Environment,
    client: &Client,
    now: i64,
    renewed: &RefreshGrant,
    family: &str,
) -> AccessGrant {
    AccessGrant {
        environment,
        client_id: client.client_id.clone(),
        tenant: TenantTag::of(client.tenant_id),
        scopes: renewed.scopes.clone(),
        issued_at: now,
        expires_at: now + i64::from(client.settings.lifetimes.access_token),
        citizen: renewed.citizen.clone(),
        family: Some(FamilyTag::of(family)),
    }
}

/// RFC 6749 §6 with rotation: the presented token is used up and a new one (same family) comes
/// back with a fresh access token. A used token presented again revokes its family.
///
/// The rotation comes first (one statement on PostgreSQL), the access token is made from the
/// grant it read. When the access token cannot be stored, the rotation is taken back, so that
/// an outage of the token store never costs a citizen a refresh token. An answer lost after
/// that is covered by `tokens.refresh_reuse_grace_seconds`.
pub(crate) async fn refresh(
    state: &AppState,
    environment: Environment,
    client: &Client,
    tenant: &Tenant,
    token: &str,
) -> Result<TokenResponse, OAuthError> {
    let invalid = |text: &str| oauth(OAuthErrorCode::InvalidGrant, text);
    if !client.settings.grant_types.contains(&GrantType::RefreshToken) {
        return Err(oauth(OAuthErrorCode::UnauthorizedClient, "refresh_token ist nicht freigegeben"));
    }
    let now = state.clock.now();
    let old_hash = refresh_token_key(token);
    let next_token = new_refresh_token(now);
    let now = now.unix_timestamp();
    let new_hash = refresh_token_key(&next_token);
    let lifetime = client.settings.lifetimes.access_token;
    let request = RotationRequest {
        old_hash: &old_hash,
        new_hash: &new_hash,
        client_id: &client.client_id,
        environment,
        now,
        expires_at: now + i64::from(client.settings.lifetimes.refresh_token),
        grace_seconds: i64::try_from(state.config.tokens.refresh_reuse_grace_seconds).unwrap_or(0),
    };
    let record = match state.refresh_tokens.rotate(&request).await {
        Ok(Rotation::Rotated(record)) => record,
        Err(e) => return Err(oauth_failure(state, "refresh.rotate", &e)),
        Ok(Rotation::Foreign) => return Err(invalid("Das Refresh-Token gehört einem anderen Client")),
        Ok(Rotation::Invalid) => return Err(invalid("Das Refresh-Token ist ungültig oder abgelaufen")),
        Ok(Rotation::Reused(family)) => {
            tracing::warn!(client = %client.client_id, "a used refresh token came again; its family is revoked");
            // The access tokens the family gave out end with it.
            let ttl = Duration::from_secs(u64::from(lifetime));
            if let Err(e) = state.access_tokens.revoke_family(&family, ttl).await {
                crate::error::record_failure(state, "refresh.revoke_family", &e);
            }
            return Err(invalid(
                "Das Refresh-Token wurde bereits verwendet; alle daraus ausgestellten sind widerrufen",
            ));
        }
    };
    let issued = async {
        let renewed: RefreshGrant =
            serde_json::from_value(record.grant).map_err(|e| oauth_failure(state, "refresh.grant", &e))?;
        let access = renewed_grant(environment, client, now, &renewed, &record.family_id);
        // A JWT access token names the citizen by the `sub` of this client's tenant.
        let sub = super::token::citizen_sub(state, &access, tenant);
        let access_token = issue_access_token(state, environment, client, &access, sub.as_deref()).await?;
        Ok::<_, OAuthError>((access_token, renewed.scopes))
    };
    let (access_token, scopes) = match issued.await {
        Ok(issued) => issued,
        Err(refused) => {
            // Nothing goes out: the presented token stays the citizen's.
            if let Err(e) = state.refresh_tokens.undo_rotation(&old_hash, &new_hash).await {
                crate::error::record_failure(state, "refresh.undo", &e);
            }
            return Err(refused);
        }
    };
    state.metrics.token_issued(environment, GrantType::RefreshToken.as_str());
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        scope: scopes.join(" "),
        id_token: None,
        refresh_token: Some(next_token),
    })
}
