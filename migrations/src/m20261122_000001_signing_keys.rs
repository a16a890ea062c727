use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, Index, Table},
    schema::{big_integer, big_integer_null, blob, integer, string_len, text},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Environment,
    Algorithm,
    Generation,
    PublicJwk,
    SealedPrivateKey,
    CreatedAt,
    ActivatesAt,
    ExpiresAt,
}

#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(string_len(SigningKeys::Kid, 64).primary_key())
                    .col(string_len(SigningKeys::Environment, 16))
                    .col(string_len(SigningKeys::Algorithm, 16))
                    .col(integer(SigningKeys::Generation))
                    .col(text(SigningKeys::PublicJwk))
                    .col(blob(SigningKeys::SealedPrivateKey))
                    .col(big_integer(SigningKeys::CreatedAt))
                    .col(big_integer(SigningKeys::ActivatesAt))
                    .col(big_integer_null(SigningKeys::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        // Two nodes rotating at once both try the next generation; only one may win.
        manager
            .create_index(
                Index::create()
                    .name("signing_keys_generation_unique")
                    .table(SigningKeys::Table)
                    .col(SigningKeys::Environment)
                    .col(SigningKeys::Algorithm)
                    .col(SigningKeys::Generation)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SigningKeys::Table).to_owned()).await
    }
}
