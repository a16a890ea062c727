//! Single sign-on for a SAML service provider: an AuthnRequest read from either binding,
//! checked against the SP's registration (signature, ACS, destination, age, single use), kept
//! as a pending request while the citizen logs in and consents, and answered with a signed
//! Response posted to the SP's assertion consumer service. Single Logout ends the same session
//! OpenID Connect logout ends.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use account_service::{Account, DataTransfer, Session};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use oidc_core::{Environment, SigningAlgorithm, SigningKey, TrustLevel, random_token};
use saml_core::{
    Assertion, AttributeProfile, ContextRequirement, Failure as SamlFailure, IdpEndpoints, LogoutResponse,
    NoAuthnContext, RequestRefusal, RequestedAuthnContext, ServiceProvider, SignError, Signer,
};
use serde::{Deserialize, Serialize};
use tenant_registry::{Client, ClientAuthError, SamlAttributeProfile, SamlSettings, Tenant};

use crate::{
    error::{Failure, record_failure},
    flows::authorize::{session_id, subject},
    state::AppState,
};

/// A request waits this long for the citizen's login and consent.
const PENDING_TTL: Duration = Duration::from_secs(600);

/// The SSO and logout addresses of the environment whose issuer is `issuer`.
pub(crate) fn endpoints(issuer: &str) -> IdpEndpoints {
    let base = issuer.trim_end_matches('/');
    IdpEndpoints { entity_id: issuer.to_owned(), sso: format!("{base}/saml/sso"), slo: format!("{base}/saml/slo") }
}

/// The environment's RS256 key and its certificate, as `saml-core` signs with them.
pub(crate) struct IdpKey {
    key: Arc<SigningKey>,
    certificate: Arc<Vec<u8>>,
}

impl Signer for IdpKey {
    fn sign_rsa_sha256(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key.sign_bytes(data).map_err(|e| SignError(e.to_string()))
    }

    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
}

/// Certificates by key id: deterministic, so every node makes the same; made once per key here
/// (each costs an RSA signature).
static CERTIFICATES: LazyLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> = LazyLock::new(Default::default);

/// The signing key of `environment` (the RS256 key of its ID tokens).
pub(crate) async fn idp_key(state: &AppState, environment: Environment, issuer: &str) -> Result<IdpKey, Failure> {
    let key = state
        .keys
        .signing_key(environment, SigningAlgorithm::RS256)
        .await
        .map_err(|e| record_failure(state, "saml.key", &e))?;
    let cached = CERTIFICATES.lock().ok().and_then(|c| c.get(key.kid()).cloned());
    let certificate = match cached {
        Some(certificate) => certificate,
        None => {
            let made = Arc::new(
                key.certificate(&format!("servicekonto {issuer}"))
                    .map_err(|e| record_failure(state, "saml.certificate", &e))?,
            );
            if let Ok(mut cache) = CERTIFICATES.lock() {
                cache.insert(key.kid().to_owned(), made.clone());
            }
            made
        }
    };
    Ok(IdpKey { key, certificate })
}

/// Signed metadata by key id: the same document as long as the key signs (its ID derives from
/// the kid), so a public, unauthenticated URL costs no RSA signature per request.
static METADATA: LazyLock<Mutex<HashMap<String, Arc<String>>>> = LazyLock::new(Default::default);

/// The signed IdP metadata of the environment.
pub(crate) async fn metadata(state: &AppState, environment: Environment, issuer: &str) -> Result<Arc<String>, Failure> {
    let key = idp_key(state, environment, issuer).await?;
    let kid = key.key.kid().to_owned();
    if let Some(cached) = METADATA.lock().ok().and_then(|m| m.get(&kid).cloned()) {
        return Ok(cached);
    }
    let id = format!("_{}", &oidc_core::token_digest(&format!("saml-metadata:{kid}"))[..22].replace(['-', '_'], "x"));
    let signed = Arc::new(
        saml_core::idp_metadata(&endpoints(issuer), &id, &key)
            .map_err(|e| record_failure(state, "saml.metadata", &e))?,
    );
    if let Ok(mut cache) = METADATA.lock() {
        cache.insert(kid, signed.clone());
    }
    Ok(signed)
}

/// A fresh XML ID (an NCName: `_` and hex).
fn fresh_id() -> String {
    format!("_{}", uuid::Uuid::new_v4().simple())
}

/// How an AuthnRequest arrived.
pub(crate) enum Binding {
    /// HTTP-Redirect: the raw query string, exactly as received (its signature covers it).
    Redirect(String),
    /// HTTP-POST: the form fields.
    Post(Vec<(String, String)>),
}

/// Why an SSO request ends on a page of ours: the SP or its ACS cannot be trusted (so nothing
/// is sent anywhere), or we failed.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The key of the page's text.
    Page(&'static str),
    /// A failure on our side (logged).
    Failed(Failure),
}

/// A Response to post to the SP: the form the browser submits.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The assertion consumer service.
    pub(crate) acs: String,
    /// The base64 `SAMLResponse`.
    pub(crate) response: String,
    /// The SP's `RelayState`, returned as it came.
    pub(crate) relay_state: Option<String>,
}

/// A checked request waiting for the citizen, in the ephemeral store (so any node continues it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingSaml {
    pub(crate) client_id: String,
    /// The AuthnRequest's ID; `None` for an IdP-initiated login (an unsolicited Response).
    pub(crate) request_id: Option<String>,
    pub(crate) acs: String,
    pub(crate) relay_state: Option<String>,
    pub(crate) name_id_format: String,
    pub(crate) force_authn: bool,
    pub(crate) is_passive: bool,
    /// `RequestedAuthnContext`: comparison and class references.
    pub(crate) context: Option<(String, Vec<String>)>,
    /// The `sid` of the browser's session when the request arrived: with `ForceAuthn` that
    /// session does not count, only a new login (which always makes a new session) does.
    pub(crate) session_at_arrival: Option<String>,
}

impl PendingSaml {
    /// Whether the session with token `session_token` may answer this request.
    pub(crate) fn accepts_session(&self, session_token: &str) -> bool {
        !self.force_authn || self.session_at_arrival.as_deref() != Some(session_id(session_token).as_str())
    }
}

impl PendingSaml {
    /// What the request's authentication context asks for.
    pub(crate) fn requirement(&self) -> Result<ContextRequirement, NoAuthnContext> {
        let requested = self.context.as_ref().map(|(comparison, class_refs)| RequestedAuthnContext {
            comparison: comparison.clone(),
            class_refs: class_refs.clone(),
        });
        saml_core::requirement(requested.as_ref())
    }

    /// The level the citizen must reach: the request's, and never below the client's minimum
    /// (its default where the request names none).
    pub(crate) fn required_level(&self, client: &Client) -> Result<TrustLevel, NoAuthnContext> {
        let requirement = self.requirement()?;
        let floor = if self.context.is_some() { client.settings.min_acr } else { client.settings.default_acr };
        let level = requirement.minimum.max(floor);
        if requirement.maximum.is_some_and(|max| max < level) {
            return Err(NoAuthnContext);
        }
        Ok(level)
    }
}

fn pending_key(handle: &str) -> String {
    format!("saml-pending:{handle}")
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The SP's certificates (DER) from its registration.
fn certificates(saml: &SamlSettings) -> Vec<Vec<u8>> {
    saml.signing_certificates.iter().filter_map(|c| STANDARD.decode(c).ok()).collect()
}

/// Reads, checks and parks an AuthnRequest arriving in a browser whose session cookie is
/// `session_token`; the handle of the pending request.
pub(crate) async fn start(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    binding: Binding,
    session_token: Option<&str>,
) -> Result<String, Refusal> {
    let (xml, relay_state, raw_query) = match &binding {
        Binding::Redirect(query) => {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let request = field(&pairs, "SAMLRequest").ok_or(Refusal::Page("saml_malformed"))?;
            let xml = saml_core::decode_redirect(request).map_err(|_| Refusal::Page("saml_malformed"))?;
            (xml, field(&pairs, "RelayState").map(str::to_owned), Some(query.as_str()))
        }
        Binding::Post(pairs) => {
            let request = field(pairs, "SAMLRequest").ok_or(Refusal::Page("saml_malformed"))?;
            let xml = saml_core::decode_post(request).map_err(|_| Refusal::Page("saml_malformed"))?;
            (xml, field(pairs, "RelayState").map(str::to_owned), None)
        }
    };
    if relay_state.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(Refusal::Page("saml_malformed"));
    }
    let request = saml_core::parse_authn_request(&xml).map_err(|_| Refusal::Page("saml_malformed"))?;
    let (client, _tenant) = match state.registry.active_saml_client(environment, &request.issuer).await {
        Ok(found) => found,
        Err(ClientAuthError::Failed) => return Err(Refusal::Page("saml_unknown_sp")),
        Err(ClientAuthError::TenantSuspended) => return Err(Refusal::Page("authorize_suspended")),
        Err(ClientAuthError::Store(e)) => return Err(Refusal::Failed(record_failure(state, "saml.client", &e))),
    };
    let Some(saml) = client.settings.saml.clone() else { return Err(Refusal::Page("saml_unknown_sp")) };
    let verified = verify_signature(&saml, raw_query, &xml)?;
    let sp = ServiceProvider {
        entity_id: saml.entity_id.clone(),
        assertion_consumer_services: saml
            .assertion_consumer_services
            .iter()
            .map(|a| (a.index, a.url.to_string()))
            .collect(),
        requests_signed: saml.requests_signed,
    };
    let now = state.clock.now();
    let checked = saml_core::check_request(&request, &sp, &endpoints(issuer).sso, verified, now, clock_skew(state))
        .map_err(|refusal| Refusal::Page(refusal_text(&refusal)))?;
    mark_used(state, &saml.entity_id, &request.id).await?;
    let pending = PendingSaml {
        client_id: client.client_id.to_string(),
        request_id: Some(request.id.clone()),
        acs: checked.assertion_consumer_service,
        relay_state,
        name_id_format: checked.name_id_format.to_owned(),
        force_authn: request.force_authn,
        is_passive: request.is_passive,
        context: request.requested_authn_context.map(|c| (c.comparison, c.class_refs)),
        session_at_arrival: session_token.map(session_id),
    };
    park(state, &pending).await
}

/// An IdP-initiated login for the SP `entity_id` (only where its client allows it): the
/// Response goes, unsolicited, to its default ACS with the `relay_state` given (the SP's own
/// target, at most 1024 bytes).
pub(crate) async fn start_unsolicited(
    state: &AppState,
    environment: Environment,
    entity_id: &str,
    relay_state: Option<String>,
) -> Result<String, Refusal> {
    if relay_state.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(Refusal::Page("saml_malformed"));
    }
    let client = match state.registry.active_saml_client(environment, entity_id).await {
        Ok((client, _)) => client,
        Err(ClientAuthError::TenantSuspended) => return Err(Refusal::Page("authorize_suspended")),
        Err(ClientAuthError::Store(e)) => return Err(Refusal::Failed(record_failure(state, "saml.client", &e))),
        Err(ClientAuthError::Failed) => return Err(Refusal::Page("saml_unknown_sp")),
    };
    let saml = client.settings.saml.as_ref().ok_or(Refusal::Page("saml_unknown_sp"))?;
    if !saml.idp_initiated {
        return Err(Refusal::Page("saml_no_idp_initiated"));
    }
    let acs = saml.assertion_consumer_services.first().ok_or(Refusal::Page("saml_unknown_sp"))?;
    let pending = PendingSaml {
        client_id: client.client_id.to_string(),
        request_id: None,
        acs: acs.url.to_string(),
        relay_state,
        name_id_format: saml_core::PERSISTENT.to_owned(),
        force_authn: false,
        is_passive: false,
        context: None,
        session_at_arrival: None,
    };
    park(state, &pending).await
}

fn clock_skew(state: &AppState) -> time::Duration {
    time::Duration::seconds(i64::try_from(state.config.saml.clock_skew_seconds).unwrap_or(60))
}

/// Single use: a message ID seen before (within the time it could still pass the age check) is
/// a replay, on any node.
async fn mark_used(state: &AppState, entity_id: &str, message_id: &str) -> Result<(), Refusal> {
    let ttl = saml_core::MAX_REQUEST_AGE + clock_skew(state) + clock_skew(state);
    let first = state
        .ephemeral
        .put_if_absent(
            &saml_core::replay_key(entity_id, message_id),
            b"1",
            Duration::from_secs(u64::try_from(ttl.whole_seconds()).unwrap_or(600)),
        )
        .await
        .map_err(|e| Refusal::Failed(record_failure(state, "saml.replay", &e)))?;
    if first { Ok(()) } else { Err(Refusal::Page("saml_replayed")) }
}

/// Keeps `pending` for the citizen's login and consent; its handle.
async fn park(state: &AppState, pending: &PendingSaml) -> Result<String, Refusal> {
    let handle = random_token();
    let value = serde_json::to_vec(pending).map_err(|e| Refusal::Failed(record_failure(state, "saml.pending", &e)))?;
    state
        .ephemeral
        .put(&pending_key(&handle), &value, PENDING_TTL)
        .await
        .map_err(|e| Refusal::Failed(record_failure(state, "saml.pending", &e)))?;
    Ok(handle)
}

/// Whether the request's signature verified: HTTP-Redirect over the query's octets, HTTP-POST as
/// an enveloped signature of the request's root, each against the SP's certificates. A
/// signature that does not verify is refused, required or not.
fn verify_signature(saml: &SamlSettings, raw_query: Option<&str>, xml: &str) -> Result<bool, Refusal> {
    let certificates = certificates(saml);
    let verified = match raw_query {
        Some(query) => {
            if !query.split('&').any(|pair| pair.starts_with("Signature=")) {
                return Ok(false);
            }
            certificates.iter().any(|c| saml_core::verify_redirect_signature(query, c).is_ok())
        }
        None => match saml_core::verify_enveloped(xml, &certificates) {
            Ok(()) => true,
            Err(saml_core::SignatureError::Missing("Signature")) => return Ok(false),
            Err(_) => false,
        },
    };
    if verified { Ok(true) } else { Err(Refusal::Page("saml_bad_signature")) }
}

fn refusal_text(refusal: &RequestRefusal) -> &'static str {
    match refusal {
        RequestRefusal::WrongIssuer => "saml_unknown_sp",
        RequestRefusal::UnregisteredAssertionConsumerService => "saml_unregistered_acs",
        RequestRefusal::UnsupportedBinding => "saml_unsupported_binding",
        RequestRefusal::WrongDestination => "saml_wrong_destination",
        RequestRefusal::Stale => "saml_stale",
        RequestRefusal::Unsigned => "saml_unsigned",
        RequestRefusal::UnsupportedNameIdFormat => "saml_name_id_format",
    }
}

/// The pending request of `handle` and its client and tenant, if it is still waiting.
pub(crate) async fn pending(
    state: &AppState,
    environment: Environment,
    handle: &str,
) -> Result<(PendingSaml, Arc<Client>, Arc<Tenant>), Refusal> {
    let stored = state
        .ephemeral
        .get(&pending_key(handle))
        .await
        .map_err(|e| Refusal::Failed(record_failure(state, "saml.pending", &e)))?
        .ok_or(Refusal::Page("authorize_expired"))?;
    let pending: PendingSaml = serde_json::from_slice(&stored).map_err(|_| Refusal::Page("authorize_expired"))?;
    let (client, tenant) = match state.registry.active_client(environment, &pending.client_id).await {
        Ok(found) => found,
        Err(ClientAuthError::Failed) => return Err(Refusal::Page("saml_unknown_sp")),
        Err(ClientAuthError::TenantSuspended) => return Err(Refusal::Page("authorize_suspended")),
        Err(ClientAuthError::Store(e)) => return Err(Refusal::Failed(record_failure(state, "saml.client", &e))),
    };
    Ok((pending, client, tenant))
}

/// Takes the pending request (it is answered once) and makes the answer; when that fails on our
/// side (the transfer log or the key store did not answer), the request is put back, so that
/// going back to `/saml/weiter` tries again instead of sending the citizen to the SP to start over.
async fn answer_once(
    state: &AppState,
    handle: &str,
    pending: &PendingSaml,
    answer: impl Future<Output = Result<Delivery, Refusal>>,
) -> Result<Delivery, Refusal> {
    match state.ephemeral.take(&pending_key(handle)).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(Refusal::Page("authorize_expired")),
        Err(e) => return Err(Refusal::Failed(record_failure(state, "saml.pending", &e))),
    }
    let answered = answer.await;
    if matches!(answered, Err(Refusal::Failed(_)))
        && let Ok(value) = serde_json::to_vec(pending)
        && let Err(e) = state.ephemeral.put(&pending_key(handle), &value, PENDING_TTL).await
    {
        tracing::warn!(error = %e, "a failed SAML answer's request could not be put back");
    }
    answered
}

/// The claims a SAML client receives: its registered ones that its tenant may still receive
/// (the tenant's allow-list can shrink after the client was registered), with "required";
/// acting for an organisation is OpenID Connect only.
pub(crate) fn wanted_claims(client: &Client, tenant: &Tenant) -> Vec<(String, bool)> {
    client
        .settings
        .claims
        .iter()
        .filter(|rule| rule.claim.as_str() != "organization" && tenant.allowed_claims.contains(&rule.claim))
        .map(|rule| (rule.claim.as_str().to_owned(), rule.required))
        .collect()
}

/// An error Response to the SP (its ACS is registered, so it may hear it).
pub(crate) async fn error_delivery(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    handle: &str,
    pending: &PendingSaml,
    failure: SamlFailure,
) -> Result<Delivery, Refusal> {
    answer_once(state, handle, pending, async {
        let key = idp_key(state, environment, issuer).await.map_err(Refusal::Failed)?;
        let xml = saml_core::error_response(
            issuer,
            &fresh_id(),
            pending.request_id.as_deref(),
            &pending.acs,
            state.clock.now(),
            failure,
            &key,
        )
        .map_err(|e| Refusal::Failed(record_failure(state, "saml.sign", &e)))?;
        Ok(Delivery {
            acs: pending.acs.clone(),
            response: STANDARD.encode(xml),
            relay_state: pending.relay_state.clone(),
        })
    })
    .await
}

/// The citizen of `session` answered: the released claims' values logged as a transfer (no log,
/// no release), then the signed Response.
#[allow(clippy::too_many_arguments, reason = "one call site per path; the values are distinct")]
pub(crate) async fn success_delivery(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    handle: &str,
    (pending, client, tenant): (&PendingSaml, &Client, &Tenant),
    (session, session_token): (&Session, &str),
    account: &Account,
    released: &[String],
    consent_ref: String,
) -> Result<Delivery, Refusal> {
    let requirement = pending.requirement().map_err(|_| Refusal::Page("authorize_expired"))?;
    let class_ref = requirement.answer(session.trust_level).map_err(|_| Refusal::Page("authorize_expired"))?;
    let saml = client.settings.saml.as_ref().ok_or(Refusal::Page("saml_unknown_sp"))?;
    answer_once(state, handle, pending, async {
    let sub = subject(state, environment, tenant, account.id);
    let mut values = serde_json::Map::new();
    for claim in released {
        if let Some(value) = account_service::claim_value(account, claim).filter(|v| v.as_str() != Some("")) {
            values.insert(claim.clone(), value);
        }
    }
    if !values.is_empty() {
        let transfer = DataTransfer {
            client_id: client.client_id.to_string(),
            recipient: crate::flows::authorize::recipient_of(client, tenant),
            claims: values.keys().cloned().collect(),
            at: state.clock.now(),
            consent_ref,
            organisation: None,
        };
        crate::flows::release::record_transfer(state, environment, Some(account.id), transfer)
            .await
            .map_err(|e| Refusal::Failed(record_failure(state, "saml.transfer_log", &e)))?;
    }
    let profile = match saml.attribute_profile {
        SamlAttributeProfile::Oidc => AttributeProfile::Oidc,
        SamlAttributeProfile::Eidas => AttributeProfile::Eidas,
    };
    let mut attributes: Vec<_> =
        values.iter().filter_map(|(claim, value)| saml_core::attribute(profile, claim, value)).collect();
    if profile == AttributeProfile::Eidas {
        attributes.insert(0, saml_core::eidas_person_identifier(&sub));
    }
    let name_id = if pending.name_id_format == saml_core::TRANSIENT { fresh_id() } else { sub };
    let now = state.clock.now();
    let lifetime = i64::try_from(state.config.saml.assertion_lifetime_seconds).unwrap_or(300);
    let assertion = Assertion {
        issuer: issuer.to_owned(),
        response_id: fresh_id(),
        assertion_id: fresh_id(),
        in_response_to: pending.request_id.clone(),
        destination: pending.acs.clone(),
        audience: saml.entity_id.clone(),
        name_id,
        name_id_format: pending.name_id_format.clone(),
        issue_instant: now,
        not_on_or_after: now + time::Duration::seconds(lifetime),
        authn_instant: session.auth_time,
        session_index: session_id(session_token),
        authn_context_class_ref: class_ref,
        attributes,
    };
    let key = idp_key(state, environment, issuer).await.map_err(Refusal::Failed)?;
    // The SP's metadata named an encryption key: only it can read the assertion.
    let encrypt_for = saml.encryption_certificate.as_deref().and_then(|c| STANDARD.decode(c).ok());
    let xml = saml_core::signed_response(&assertion, &key, encrypt_for.as_deref())
        .map_err(|e| Refusal::Failed(record_failure(state, "saml.sign", &e)))?;
    tracing::debug!(client = %client.client_id, claims = ?values.keys().collect::<Vec<_>>(), "SAML assertion issued");
    Ok(Delivery { acs: pending.acs.clone(), response: STANDARD.encode(xml), relay_state: pending.relay_state.clone() })
    })
    .await
}

/// An SP's LogoutRequest (HTTP-Redirect): checked, and the URL of our answer. The caller ends
/// the session when `Ok((url, true))`.
pub(crate) async fn logout(
    state: &AppState,
    environment: Environment,
    issuer: &str,
    raw_query: &str,
    current_subject: impl Fn(&Tenant) -> Option<String>,
) -> Result<(String, bool), Refusal> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
    let message = field(&pairs, "SAMLRequest").ok_or(Refusal::Page("saml_malformed"))?;
    let xml = saml_core::decode_redirect(message).map_err(|_| Refusal::Page("saml_malformed"))?;
    let request = saml_core::parse_logout_request(&xml).map_err(|_| Refusal::Page("saml_malformed"))?;
    let (client, tenant) = match state.registry.active_saml_client(environment, &request.issuer).await {
        Ok(found) => found,
        Err(ClientAuthError::Store(e)) => return Err(Refusal::Failed(record_failure(state, "saml.client", &e))),
        Err(_) => return Err(Refusal::Page("saml_unknown_sp")),
    };
    let saml = client.settings.saml.as_ref().ok_or(Refusal::Page("saml_unknown_sp"))?;
    let destination = saml.single_logout_service.as_ref().ok_or(Refusal::Page("saml_no_logout_service"))?;
    // An SP with signing certificates must sign its logout requests: otherwise anyone could log
    // a citizen out by sending one.
    let signed = raw_query.split('&').any(|pair| pair.starts_with("Signature="));
    let certificates = certificates(saml);
    if signed || !certificates.is_empty() {
        let verified = certificates.iter().any(|c| saml_core::verify_redirect_signature(raw_query, c).is_ok());
        if !verified {
            return Err(Refusal::Page("saml_bad_signature"));
        }
    }
    // Held to what an AuthnRequest is held to: our address, its age, one use.
    let now = state.clock.now();
    if request.destination.as_deref().is_some_and(|d| d != endpoints(issuer).slo) {
        return Err(Refusal::Page("saml_wrong_destination"));
    }
    let skew = clock_skew(state);
    if request.issue_instant > now + skew || request.issue_instant < now - saml_core::MAX_REQUEST_AGE - skew {
        return Err(Refusal::Page("saml_stale"));
    }
    mark_used(state, &saml.entity_id, &format!("logout:{}", request.id)).await?;
    // The session ends only when the request names its citizen (or there is none to end).
    let success = match current_subject(&tenant) {
        Some(sub) => sub == request.name_id,
        None => true,
    };
    let key = idp_key(state, environment, issuer).await.map_err(Refusal::Failed)?;
    let response = LogoutResponse {
        issuer: issuer.to_owned(),
        id: fresh_id(),
        in_response_to: request.id,
        destination: destination.to_string(),
        issue_instant: state.clock.now(),
        success,
    };
    let url = saml_core::logout_response_url(&response, field(&pairs, "RelayState"), &key)
        .map_err(|e| Refusal::Failed(record_failure(state, "saml.sign", &e)))?;
    Ok((url, success))
}

#[cfg(test)]
mod tests {
    use oidc_core::{ClaimName, ClientId, TenantId};
    use tenant_registry::{ClaimRule, ClientSettings, TenantStatus};
    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn a_saml_client_gets_only_what_its_tenant_may_still_receive() {
        let claim = |name: &str| ClaimName::parse(name).unwrap();
        let mut settings = ClientSettings::saml(
            "Portal",
            SamlSettings {
                entity_id: "https://portal.example/sp".into(),
                assertion_consumer_services: Vec::new(),
                single_logout_service: None,
                signing_certificates: Vec::new(),
                encryption_certificate: None,
                requests_signed: false,
                attribute_profile: SamlAttributeProfile::Oidc,
                idp_initiated: false,
                metadata_url: None,
            },
        );
        settings.claims = ["given_name", "email", "organization"]
            .iter()
            .map(|c| ClaimRule { claim: claim(c), required: *c == "given_name" })
            .collect();
        let tenant_id = TenantId::new_random();
        let client = Client {
            client_id: ClientId::generate(),
            tenant_id,
            environment: Environment::Test,
            settings,
            first_party: false,
            admin_role: None,
            secrets: Vec::new(),
            registration_token: None,
            version: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let tenant = Tenant {
            id: tenant_id,
            slug: "bauamt".into(),
            name: "Bauamt".into(),
            contact_email: "it@bauamt.example".into(),
            status: TenantStatus::Active,
            branding: Default::default(),
            // "email" was withdrawn from the tenant after the client was registered.
            allowed_claims: ["given_name", "organization"].iter().map(|c| claim(c)).collect(),
            min_trust_level: TrustLevel::Normal,
            sector: "bauamt".into(),
            version: 2,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(wanted_claims(&client, &tenant), vec![("given_name".to_owned(), true)]);
    }
}
