//! Who changed what, when: every change to a tenant or client, with before and after (secrets
//! never), written in the same transaction as the change.

use oidc_core::{ClientId, TenantId};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::model::{Client, Tenant};

/// Who acts on the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator-admin client: may do everything.
    Operator(ClientId),
    /// A tenant-admin client: sees and changes only its own tenant's clients.
    TenantAdmin {
        /// The admin client.
        client_id: ClientId,
        /// Its tenant, the only one it can see.
        tenant_id: TenantId,
    },
    /// Dynamic client registration (RFC 7591/7592) for one tenant, authorised by an initial
    /// access token or a client's registration access token.
    Registration {
        /// The tenant the token was issued for.
        tenant_id: TenantId,
    },
    /// The server itself or its command line (bootstrap, demo data).
    System(&'static str),
}

impl Actor {
    /// How the audit log names the actor.
    pub fn label(&self) -> String {
        match self {
            Actor::Operator(client_id) => format!("operator:{client_id}"),
            Actor::TenantAdmin { client_id, .. } => format!("tenant-admin:{client_id}"),
            Actor::Registration { .. } => "dynamic-registration".to_owned(),
            Actor::System(what) => format!("system:{what}"),
        }
    }

    pub(crate) fn is_operator(&self) -> bool {
        match self {
            Actor::Operator(_) | Actor::System(_) => true,
            Actor::TenantAdmin { .. } | Actor::Registration { .. } => false,
        }
    }

    /// Whether the actor may see and manage `client`: its tenant must be visible, and a tenant
    /// admin never reaches a client whose role is above its own (an operator client), so it
    /// cannot climb by rotating that client's secret.
    pub(crate) fn manages(&self, client: &crate::model::Client) -> bool {
        match self {
            Actor::TenantAdmin { .. } | Actor::Registration { .. } => {
                self.sees(client.tenant_id) && client.admin_role != Some(crate::model::AdminRole::Operator)
            }
            Actor::Operator(_) | Actor::System(_) => true,
        }
    }

    /// Whether the actor may see `tenant` at all; others are answered "not found", so tenants
    /// cannot be enumerated.
    pub(crate) fn sees(&self, tenant: TenantId) -> bool {
        match self {
            Actor::TenantAdmin { tenant_id, .. } | Actor::Registration { tenant_id } => *tenant_id == tenant,
            Actor::Operator(_) | Actor::System(_) => true,
        }
    }
}

/// One change, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// When.
    pub at: OffsetDateTime,
    /// [`Actor::label`].
    pub actor: String,
    /// e.g. `tenant.create`, `client.rotate_secret`.
    pub action: String,
    /// The tenant concerned.
    pub tenant_id: Option<TenantId>,
    /// The object: a tenant id or client id.
    pub target: String,
    /// State before (none for creations).
    pub before: Option<Value>,
    /// State after (none for deletions).
    pub after: Option<Value>,
}

/// A stored [`AuditEvent`] with its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Increasing with time.
    pub id: i64,
    /// The event.
    pub event: AuditEvent,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this tenant's.
    pub tenant_id: Option<TenantId>,
    /// Only this actor's (exact label).
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// From this time on (inclusive).
    pub since: Option<OffsetDateTime>,
    /// Before this time.
    pub until: Option<OffsetDateTime>,
}

pub(crate) fn tenant_snapshot(tenant: &Tenant) -> Value {
    json!({
        "id": tenant.id,
        "slug": tenant.slug,
        "name": tenant.name,
        "contact_email": tenant.contact_email,
        "status": tenant.status,
        "branding": tenant.branding,
        "allowed_claims": tenant.allowed_claims,
        "min_trust_level": tenant.min_trust_level,
        "sector": tenant.sector,
        "version": tenant.version,
    })
}

pub(crate) fn client_snapshot(client: &Client) -> Value {
    json!({
        "client_id": client.client_id,
        "tenant_id": client.tenant_id,
        "environment": client.environment,
        "settings": client.settings,
        "first_party": client.first_party,
        "admin_role": client.admin_role,
        // How many secrets are valid, never the secrets or their hashes.
        "secrets": client.secrets.len(),
        "dynamically_registered": client.registration_token.is_some(),
        "version": client.version,
    })
}
