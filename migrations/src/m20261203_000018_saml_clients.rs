use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, Index, Table},
    schema::string_len_null,
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    Environment,
    SamlEntityId,
}

/// SAML service providers are clients found by their entity id: one per environment.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(string_len_null(Clients::SamlEntityId, 1024))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("clients_saml_entity_id")
                    .table(Clients::Table)
                    .col(Clients::Environment)
                    .col(Clients::SamlEntityId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("clients_saml_entity_id").table(Clients::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Clients::Table).drop_column(Clients::SamlEntityId).to_owned()).await
    }
}
