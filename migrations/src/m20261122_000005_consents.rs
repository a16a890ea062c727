use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, ForeignKey, ForeignKeyAction, Index, Table},
    schema::{big_integer, string_len, text},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Consents {
    Table,
    AccountId,
    ClientId,
    Claims,
    GivenAt,
    TextVersion,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

/// A citizen's consent per client: which claims, when, under which text version.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Consents::Table)
                    .col(string_len(Consents::AccountId, 36))
                    .col(string_len(Consents::ClientId, 255))
                    .col(text(Consents::Claims))
                    .col(big_integer(Consents::GivenAt))
                    .col(string_len(Consents::TextVersion, 32))
                    .primary_key(Index::create().col(Consents::AccountId).col(Consents::ClientId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Consents::Table, Consents::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Consents::Table).to_owned()).await
    }
}
