use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, Table},
    schema::{big_integer, blob, string_len},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SealedSecrets {
    Table,
    Name,
    Sealed,
    UpdatedAt,
}

/// Secrets of the deployment sealed under the key-encryption key, by name: today the
/// derivation root that pairwise subjects, client-secret hashes and other subkeys come from.
/// Kept apart from the KEK so that the KEK can be rotated (`keys rotate-kek` re-seals these rows
/// and the signing keys) without changing anything derived. Additive: older nodes ignore it.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SealedSecrets::Table)
                    .col(string_len(SealedSecrets::Name, 64).primary_key())
                    .col(blob(SealedSecrets::Sealed))
                    .col(big_integer(SealedSecrets::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SealedSecrets::Table).to_owned()).await
    }
}
