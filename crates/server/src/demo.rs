//! Demo data for the embedded mode: the tenant "Demo-Kommune" and a confidential client in the
//! test environment with a configured (public) secret, so a developer can try the server at once.

use std::collections::BTreeSet;

use anyhow::Context;
use oidc_core::{ClaimName, ClientId, Environment, Scope, TrustLevel};
use tenant_registry::{
    Actor, Branding, ClaimRule, ClientSecret, ClientSettings, GrantType, NewTenant, OperatorFlags, Purpose,
    RegistryError, Tenant,
};

use crate::state::AppState;

const SLUG: &str = "demo-kommune";
const CLAIMS: [&str; 7] =
    ["given_name", "family_name", "birthdate", "place_of_birth", "address", "email", "email_verified"];

async fn demo_tenant(state: &AppState, actor: &Actor) -> anyhow::Result<Tenant> {
    if let Some(tenant) = state.registry.find_tenant_by_slug(SLUG).await? {
        return Ok(tenant);
    }
    let new = NewTenant {
        slug: SLUG.to_owned(),
        name: "Demo-Kommune (nur zum Ausprobieren)".to_owned(),
        contact_email: "demo@example.org".to_owned(),
        branding: Branding { display_name: "Demo-Kommune".to_owned(), logo_url: None },
        allowed_claims: CLAIMS.iter().filter_map(|c| ClaimName::parse(c)).collect(),
        min_trust_level: TrustLevel::Normal,
        sector: None,
    };
    match state.registry.create_tenant(actor, new).await {
        Ok(tenant) => Ok(tenant),
        // Another node created it at the same moment.
        Err(RegistryError::Conflict(_)) => {
            state.registry.find_tenant_by_slug(SLUG).await?.context("demo tenant vanished")
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the demo tenant and client when enabled and missing.
pub(crate) async fn ensure(state: &AppState) -> anyhow::Result<()> {
    let demo = &state.config.demo;
    if !demo.enabled {
        return Ok(());
    }
    let actor = Actor::System("demo");
    let tenant = demo_tenant(state, &actor).await?;
    let client_id = ClientId::parse(&demo.client_id).context("demo.client_id")?;
    match state.registry.get_client(&actor, &client_id).await {
        Ok(_) => return Ok(()),
        Err(RegistryError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let redirects = ["http://localhost:3000/callback", "http://127.0.0.1:3000/callback"];
    let mut settings =
        ClientSettings::confidential("Demo-Dienst", redirects.iter().filter_map(|u| url::Url::parse(u).ok()).collect());
    settings.grant_types =
        BTreeSet::from([GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials]);
    settings.scopes = ["openid", "profile", "email", "address"].iter().filter_map(|s| Scope::parse(s)).collect();
    settings.claims = CLAIMS
        .iter()
        .filter_map(|c| ClaimName::parse(c))
        .map(|claim| ClaimRule { required: matches!(claim.as_str(), "given_name" | "family_name"), claim })
        .collect();
    settings.organization_display_name = Some("Demo-Kommune".to_owned());
    settings.purpose = Some(Purpose {
        de: "Antrag auf einen Anwohnerparkausweis: Name und Anschrift füllen das Formular vor.".to_owned(),
        en: Some("Application for a resident parking permit: name and address prefill the form.".to_owned()),
    });
    settings.post_logout_redirect_uris = ["http://localhost:3000/logged-out", "http://127.0.0.1:3000/logged-out"]
        .iter()
        .filter_map(|u| url::Url::parse(u).ok())
        .collect();
    let secret = ClientSecret::from_configured(demo.client_secret.expose());
    let created = state
        .registry
        .create_client_with_id(
            &actor,
            tenant.id,
            Environment::Test,
            client_id,
            settings,
            OperatorFlags::default(),
            Some(secret),
        )
        .await;
    match created {
        Ok(_) | Err(RegistryError::Conflict(_)) => Ok(()),
        // The demo tenant was changed by an operator so that the demo client no longer fits
        // (e.g. fewer allowed claims, suspended): their change stands and the server starts.
        Err(error @ (RegistryError::Invalid(_) | RegistryError::Forbidden(_) | RegistryError::NotFound)) => {
            tracing::warn!(error = ?error, "the demo client cannot be created in the changed demo tenant; left out");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
