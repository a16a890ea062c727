use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, Table},
    schema::{big_integer, pk_auto, string_len, text},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OneTimeTransfers {
    Table,
    Id,
    Environment,
    ClientId,
    Recipient,
    Claims,
    At,
    ConsentRef,
}

/// The transfer log of one-time identifications with the ID card: no account exists, so each
/// entry names only the environment, the client, the claim names (never values), the time and the
/// consent. Nothing else of the citizen is stored.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OneTimeTransfers::Table)
                    .col(pk_auto(OneTimeTransfers::Id).big_integer())
                    .col(string_len(OneTimeTransfers::Environment, 16))
                    .col(string_len(OneTimeTransfers::ClientId, 255))
                    .col(string_len(OneTimeTransfers::Recipient, 255))
                    .col(text(OneTimeTransfers::Claims))
                    .col(big_integer(OneTimeTransfers::At))
                    .col(string_len(OneTimeTransfers::ConsentRef, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(OneTimeTransfers::Table).to_owned()).await
    }
}
