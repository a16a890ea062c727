//! SAML service providers as clients of the tenant registry: their registration read from
//! their metadata (a document, or an https URL read again on refresh). `saml-core` reads the
//! XML; the registry checks the result against its per-environment rules.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use oidc_core::Environment;
use saml_core::{SpMetadata, parse_sp_metadata};
use tenant_registry::{AssertionConsumerService, FieldError, SamlSettings};
use url::Url;

use crate::state::AppState;

/// The largest metadata document read from a URL.
const MAX_METADATA: usize = 256 * 1024;

fn problem(field: &str, message: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError { field: field.to_owned(), message: message.into() }]
}

/// Where the metadata comes from.
pub(crate) enum MetadataSource {
    /// The document.
    Document(String),
    /// An https URL (in the test environment also http on loopback).
    Url(Url),
}

impl MetadataSource {
    /// Exactly one of the two, as the admin API takes them.
    pub(crate) fn of(document: Option<String>, url: Option<String>) -> Result<Self, Vec<FieldError>> {
        match (document, url) {
            (Some(document), None) => Ok(Self::Document(document)),
            (None, Some(url)) => {
                Url::parse(&url).map(Self::Url).map_err(|e| problem("metadata_url", format!("not a URL: {e}")))
            }
            _ => Err(problem("metadata", "give the metadata document or metadata_url, exactly one")),
        }
    }
}

/// Reads the SP's metadata from `source` into its registration (the tenant's choices —
/// signature requirement, attribute profile, IdP-initiated — at their defaults).
pub(crate) async fn read_metadata(
    state: &AppState,
    environment: Environment,
    source: MetadataSource,
) -> Result<SamlSettings, Vec<FieldError>> {
    let (document, url) = match source {
        MetadataSource::Document(document) => (document, None),
        MetadataSource::Url(url) => (fetch(state, environment, &url).await?, Some(url)),
    };
    let metadata = parse_sp_metadata(&document).map_err(|e| problem("metadata", e.to_string()))?;
    settings_of(metadata, url)
}

async fn fetch(state: &AppState, environment: Environment, url: &Url) -> Result<String, Vec<FieldError>> {
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.scheme() != "https" && !(environment == Environment::Test && loopback && url.scheme() == "http") {
        return Err(problem("metadata_url", "must be https (test environment: also http on localhost)"));
    }
    let read = async {
        let mut response = state.outbound.get(url.clone()).send().await?.error_for_status()?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_METADATA {
                return Ok(None);
            }
        }
        Ok::<_, reqwest::Error>(Some(body))
    };
    match read.await {
        Ok(Some(body)) => String::from_utf8(body).map_err(|_| problem("metadata_url", "the metadata is not UTF-8")),
        Ok(None) => Err(problem("metadata_url", "the metadata is larger than 256 KiB")),
        Err(e) => Err(problem("metadata_url", format!("the metadata could not be read: {e}"))),
    }
}

fn settings_of(metadata: SpMetadata, metadata_url: Option<Url>) -> Result<SamlSettings, Vec<FieldError>> {
    let mut problems = Vec::new();
    let mut url = |field: String, text: &str| match Url::parse(text) {
        Ok(url) => Some(url),
        Err(e) => {
            problems.push(FieldError { field, message: format!("{text:?} is not a URL: {e}") });
            None
        }
    };
    let assertion_consumer_services = metadata
        .assertion_consumer_services
        .iter()
        .enumerate()
        .filter_map(|(i, (index, location))| {
            let url = url(format!("metadata.AssertionConsumerService[{i}]"), location)?;
            Some(AssertionConsumerService { index: *index, url })
        })
        .collect();
    let single_logout_service =
        metadata.single_logout_service.as_deref().and_then(|s| url("metadata.SingleLogoutService".into(), s));
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(SamlSettings {
        entity_id: metadata.entity_id,
        assertion_consumer_services,
        single_logout_service,
        signing_certificates: metadata.signing_certificates.iter().map(|c| STANDARD.encode(c)).collect(),
        encryption_certificate: metadata.encryption_certificate.as_ref().map(|c| STANDARD.encode(c)),
        requests_signed: metadata.authn_requests_signed,
        attribute_profile: Default::default(),
        idp_initiated: false,
        metadata_url,
    })
}

/// `current` with what `fresh` metadata says about the SP; the tenant's choices stay, except
/// that metadata saying "requests are signed" turns the requirement on.
pub(crate) fn refreshed(current: &SamlSettings, fresh: SamlSettings) -> SamlSettings {
    SamlSettings {
        requests_signed: current.requests_signed || fresh.requests_signed,
        attribute_profile: current.attribute_profile,
        idp_initiated: current.idp_initiated,
        metadata_url: fresh.metadata_url.or_else(|| current.metadata_url.clone()),
        ..fresh
    }
}

/// What a metadata refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataRefresh {
    /// SPs whose metadata changed their registration (each change audited).
    pub changed: usize,
    /// SPs whose metadata was read and said nothing new.
    pub unchanged: usize,
    /// SPs whose metadata could not be read or used (their registration stays as it was).
    pub failed: usize,
}

/// Reads the metadata of every SAML client with a `metadata_url` again and applies what it says
/// ([`refreshed`]); as the system, so each change is in the audit log.
pub(crate) async fn refresh_all(state: &AppState) -> Result<MetadataRefresh, tenant_registry::RegistryError> {
    let actor = tenant_registry::Actor::System("saml-metadata-refresh");
    let mut outcome = MetadataRefresh::default();
    let mut offset = 0;
    loop {
        let page = state
            .registry
            .list_clients(
                &actor,
                tenant_registry::ClientFilter::default(),
                tenant_registry::PageRequest { limit: 500, offset },
            )
            .await?;
        let count = page.items.len();
        for client in page.items {
            let Some(saml) = client.settings.saml.clone() else { continue };
            let Some(url) = saml.metadata_url.clone() else { continue };
            let fresh = match read_metadata(state, client.environment, MetadataSource::Url(url)).await {
                Ok(fresh) => refreshed(&saml, fresh),
                Err(problems) => {
                    tracing::warn!(client = %client.client_id, ?problems, "SAML metadata could not be refreshed; the registration stays");
                    outcome.failed += 1;
                    continue;
                }
            };
            if fresh == saml {
                outcome.unchanged += 1;
                continue;
            }
            let settings = tenant_registry::ClientSettings { saml: Some(fresh), ..client.settings.clone() };
            let flags =
                tenant_registry::OperatorFlags { first_party: client.first_party, admin_role: client.admin_role };
            match state.registry.update_client(&actor, &client.client_id, client.version, settings, flags).await {
                Ok(_) => outcome.changed += 1,
                Err(e) => {
                    tracing::warn!(client = %client.client_id, error = %e, "SAML metadata refresh refused; the registration stays");
                    outcome.failed += 1;
                }
            }
        }
        offset += count as u64;
        if count < 500 || offset >= page.total {
            return Ok(outcome);
        }
    }
}
