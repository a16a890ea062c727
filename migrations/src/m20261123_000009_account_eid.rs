use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, Index, Table},
    schema::string_null,
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Environment,
    EidKey,
}

/// The linked ID card: the keyed hash of its pseudonym (RestrictedID), one account per card and
/// environment. NULL for accounts without a card; NULLs never collide in a unique index.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Accounts::Table).add_column(string_null(Accounts::EidKey)).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("accounts_eid_key")
                    .table(Accounts::Table)
                    .col(Accounts::Environment)
                    .col(Accounts::EidKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("accounts_eid_key").table(Accounts::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Accounts::Table).drop_column(Accounts::EidKey).to_owned()).await
    }
}
