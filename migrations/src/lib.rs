//! Schema migrations of servicekonto, one file each, portable between SQLite and PostgreSQL.
//!
//! Invariants: timestamps are stored as Unix seconds (`BIGINT`), so both backends compare them
//! the same way; every table carries its `environment`, which keeps production and test apart.

use sea_orm_migration::{MigrationTrait, MigratorTrait, async_trait::async_trait};

mod m20261122_000001_signing_keys;
mod m20261122_000002_registry;
mod m20261122_000003_client_registration_token;
mod m20261122_000004_accounts;
mod m20261122_000005_consents;
mod m20261122_000006_data_transfers;
mod m20261122_000007_refresh_tokens;
mod m20261122_000008_consent_declined;
mod m20261123_000009_account_eid;
mod m20261123_000010_one_time_transfers;
mod m20261202_000011_refresh_successor;
mod m20261202_000012_mail_links;
mod m20261202_000013_mail_queue;
mod m20261202_000014_sealed_secrets;
mod m20261203_000015_account_inactivity;
mod m20261203_000016_passkeys;
mod m20261203_000017_organisations;
mod m20261203_000018_saml_clients;
mod m20261207_000019_fewer_index_writes;

/// All migrations in order.
pub struct Migrator;

#[async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_signing_keys::Migration),
            Box::new(m20261122_000002_registry::Migration),
            Box::new(m20261122_000003_client_registration_token::Migration),
            Box::new(m20261122_000004_accounts::Migration),
            Box::new(m20261122_000005_consents::Migration),
            Box::new(m20261122_000006_data_transfers::Migration),
            Box::new(m20261122_000007_refresh_tokens::Migration),
            Box::new(m20261122_000008_consent_declined::Migration),
            Box::new(m20261123_000009_account_eid::Migration),
            Box::new(m20261123_000010_one_time_transfers::Migration),
            Box::new(m20261202_000011_refresh_successor::Migration),
            Box::new(m20261202_000012_mail_links::Migration),
            Box::new(m20261202_000013_mail_queue::Migration),
            Box::new(m20261202_000014_sealed_secrets::Migration),
            Box::new(m20261203_000015_account_inactivity::Migration),
            Box::new(m20261203_000016_passkeys::Migration),
            Box::new(m20261203_000017_organisations::Migration),
            Box::new(m20261203_000018_saml_clients::Migration),
            Box::new(m20261207_000019_fewer_index_writes::Migration),
        ]
    }
}
