use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, Table},
    schema::string_len_null,
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    ReplacedBy,
}

/// The successor a rotated refresh token was replaced by: within the configured reuse grace, a
/// token whose successor was never used may be presented once more (the answer carrying the
/// successor may have been lost), and the unused successor is then replaced.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .add_column(string_len_null(RefreshTokens::ReplacedBy, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(RefreshTokens::Table).drop_column(RefreshTokens::ReplacedBy).to_owned())
            .await
    }
}
