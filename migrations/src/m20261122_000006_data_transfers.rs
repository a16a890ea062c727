use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, ForeignKey, ForeignKeyAction, Index, Table},
    schema::{big_integer, pk_auto, string_len, text},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DataTransfers {
    Table,
    Id,
    AccountId,
    ClientId,
    Recipient,
    Claims,
    At,
    ConsentRef,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

/// The transfer log: which authority's client received which claims (names, never values), when,
/// on which consent. The citizen sees it in "Mein Konto".
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DataTransfers::Table)
                    .col(pk_auto(DataTransfers::Id).big_integer())
                    .col(string_len(DataTransfers::AccountId, 36))
                    .col(string_len(DataTransfers::ClientId, 255))
                    .col(string_len(DataTransfers::Recipient, 255))
                    .col(text(DataTransfers::Claims))
                    .col(big_integer(DataTransfers::At))
                    .col(string_len(DataTransfers::ConsentRef, 64))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DataTransfers::Table, DataTransfers::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("data_transfers_account")
                    .table(DataTransfers::Table)
                    .col(DataTransfers::AccountId)
                    .col(DataTransfers::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(DataTransfers::Table).to_owned()).await
    }
}
