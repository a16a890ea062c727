//! Acting for an organisation (scope `organization`): the claim a relying party receives, built
//! from the organisation service and the client's tenant (whose sector the organisation's
//! pairwise id is derived for). The account service knows organisations, the registry knows
//! tenants; this flow joins them.

use account_service::{
    Organisation, OrganisationField, OrganisationId, OrganisationStatus, Role, TransferOrganisation,
};
use oidc_core::{AccountId, Environment, OAuthError, TenantId, pairwise_subject};
use serde_json::{Value, json};
use tenant_registry::Actor;

use crate::{error::oauth_failure, state::AppState};

/// The `organization` claim of `account` acting for `organisation` towards a client of
/// `tenant`, with the transfer log's note of it; `None` when the organisation is gone, suspended
/// or the account no longer belongs to it (then nothing about it is released).
pub(crate) async fn organisation_claim(
    state: &AppState,
    environment: Environment,
    tenant: TenantId,
    account: AccountId,
    organisation: &str,
) -> Result<Option<(Value, TransferOrganisation)>, OAuthError> {
    let Ok(id) = organisation.parse::<OrganisationId>() else { return Ok(None) };
    let (organisation, role) = match state.organisations.as_member(environment, id, account).await {
        Ok(found) => found,
        Err(account_service::OrganisationError::Forbidden) => return Ok(None),
        Err(e) => return Err(oauth_failure(state, "organisation.claim", &e)),
    };
    if organisation.status != OrganisationStatus::Active {
        return Ok(None);
    }
    let tenant = state
        .registry()
        .get_tenant(&Actor::System("organisation-claim"), tenant)
        .await
        .map_err(|e| oauth_failure(state, "organisation.claim", &e))?;
    let pairwise =
        pairwise_subject(&state.organisation_key, environment, &tenant.sector, organisation.id.as_uuid().into());
    let note = TransferOrganisation { id: organisation.id.to_string(), name: organisation.data.name.clone() };
    Ok(Some((claim(&organisation, role, &pairwise), note)))
}

/// The claim's value: the pairwise id, the data, the person's role and what was verified
/// (`verified_claims`).
fn claim(organisation: &Organisation, role: Role, pairwise: &str) -> Value {
    let d = &organisation.data;
    let mut value = json!({
        "id": pairwise,
        "name": d.name,
        "legal_form": d.legal_form.as_str(),
        "address": {
            "street_address": format!("{} {}", d.street, d.house_number),
            "postal_code": d.postal_code,
            "locality": d.city,
            "country": d.country,
        },
        "email": d.contact_email,
        "email_verified": organisation.email_verified_at.is_some(),
        "role": role.as_str(),
    });
    if let Some(register) = &d.register {
        value["register"] =
            json!({ "court": register.court, "type": register.kind.as_str(), "number": register.number });
    }
    // What an operator or a tenant admin checked, in the shape of OpenID Connect for Identity
    // Assurance: one entry per checked part, with the evidence named.
    let verified: Vec<Value> = organisation
        .verifications
        .iter()
        .filter_map(|v| {
            let claims = match v.field {
                OrganisationField::Name => json!({ "name": d.name }),
                OrganisationField::LegalForm => json!({ "legal_form": d.legal_form.as_str() }),
                OrganisationField::Register => json!({ "register": value.get("register")? }),
                OrganisationField::Address => json!({ "address": value["address"] }),
            };
            let at = v.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            Some(json!({
                "verification": {
                    "trust_framework": "de_servicekonto_organisation",
                    "time": at,
                    "evidence": [{ "type": "document_check", "description": v.evidence }],
                },
                "claims": claims,
            }))
        })
        .collect();
    if !verified.is_empty() {
        value["verified_claims"] = Value::Array(verified);
    }
    value
}
