//! The tenant registry: authorities (tenants) with their test and production environments, their
//! clients, client secrets, the rules that govern redirect URIs, grants, claims and trust levels,
//! and the audit log of every change.
//!
//! Modules: `model` (tenants, clients), `rules` (validation, all violations at once), `secret`
//! (client secrets and their keyed hashes), `audit` (actors and audit events), `store` (the
//! [`RegistryStore`] port), `cache` (a cross-node-invalidated cache of that port), `service` (the [`Registry`] use cases), `error`.
//!
//! Invariants:
//! - Depends on `oidc-core` only; storage is the [`RegistryStore`] port.
//! - A tenant admin never learns that another tenant's objects exist: they are "not found".
//! - Every change and its audit event are stored together; audit events never hold secrets.
//! - Client secrets exist in clear only in the one answer that creates them.

mod audit;
mod cache;
mod error;
mod model;
mod rules;
mod secret;
mod service;
mod shared_read;
mod store;

pub use audit::{Actor, AuditEntry, AuditEvent, AuditFilter};
pub use cache::CachedRegistryStore;
pub use error::{ClientAuthError, RegistryError};
pub use model::{
    AdminRole, AssertionConsumerService, AuthMethod, Branding, ClaimRule, Client, ClientKind, ClientSettings,
    GrantType, Protocol, Purpose, SamlAttributeProfile, SamlSettings, SecretHash, Tenant, TenantStatus, TokenLifetimes,
};
pub use rules::FieldError;
pub use secret::{ClientSecret, SecretHasher};
pub use service::{MAX_SECRET_OVERLAP, NewTenant, OperatorFlags, Registry, TenantChanges};
pub use store::{ClientFilter, Page, PageRequest, RegistryStore, StoreError, TenantFilter};
