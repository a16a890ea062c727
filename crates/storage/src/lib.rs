//! Storage behind the domain crates' ports: sea-orm for durable data (one implementation serving
//! SQLite and PostgreSQL), Redis or process memory for short-lived data.
//!
//! Modules: `database` (connection, migrations, readiness), `transaction` (the cancel-safe
//! way to begin one), `entities` (sea-orm models, private),
//! `signing_keys` ([`SeaSigningKeyStore`]), `registry` ([`SeaRegistryStore`]), `accounts` ([`SeaAccountStore`]), `memory` ([`MemoryEphemeralStore`]), `redis_store`
//! ([`RedisEphemeralStore`]), `testing` (fresh databases for test suites, feature `testing`).
//!
//! Invariants:
//! - No `sea_orm` or `redis` type crosses this crate's public API; errors are mapped to the
//!   ports' own error types here, unique violations to `Conflict`.
//! - Every ephemeral write has a TTL; take-once is atomic (GETDEL) on every backend.
//! - A database error reaches the ports wrapped in an `oidc_core::DependencyError` (a Redis
//!   error is an `EphemeralError::Unavailable`), so the server can tell an outage from a bug.

mod accounts;
mod batch;
mod database;
mod entities;
mod held_connection;
mod mail_queue;
mod memory;
mod organisations;
mod redis_store;
mod refresh_tokens;
mod registry;
mod sealed_secrets;
mod signing_keys;
mod statement_cache;
#[cfg(feature = "testing")]
pub mod testing;
mod transaction;

/// Boxes a store failure for a port's `Unavailable` variant; a database error is marked as the
/// database's, so the server answers an outage with 503 and names the dependency.
pub(crate) fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> Box<dyn std::error::Error + Send + Sync> {
    use oidc_core::{Dependency, DependencyError};
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    let boxed = match boxed.downcast::<sea_orm::DbErr>() {
        Ok(db) => return Box::new(DependencyError::new(Dependency::Database, *db)),
        Err(other) => other,
    };
    // A batched statement's failure, or no answer in time: the database's too.
    let boxed = match boxed.downcast::<batch::SharedDbErr>() {
        Ok(db) => return Box::new(DependencyError::new(Dependency::Database, *db)),
        Err(other) => other,
    };
    match boxed.downcast::<batch::Unanswered>() {
        Ok(unanswered) => Box::new(DependencyError::new(Dependency::Database, *unanswered)),
        Err(other) => other,
    }
}

pub use accounts::SeaAccountStore;
pub use database::{ConnectSettings, Database, DatabaseError, SchemaStatus, SqliteSynchronous};
pub use mail_queue::SeaMailQueue;
pub use memory::MemoryEphemeralStore;
pub use organisations::SeaOrganisationStore;
pub use redis_store::{RedisEphemeralStore, RedisError};
pub use refresh_tokens::SeaRefreshTokenStore;
pub use registry::SeaRegistryStore;
pub use sealed_secrets::SeaSealedSecrets;
pub use signing_keys::SeaSigningKeyStore;
