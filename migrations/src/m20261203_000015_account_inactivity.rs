use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, Index, Table},
    schema::big_integer_null,
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Status,
    LastLoginAt,
    InactivityRemindedAt,
}

/// The inactive-account policy (GDPR Art. 5(1)(e)): when the citizen last logged in (null:
/// never since the column exists; then activation counts), and when the reminder before
/// deletion went out (null: none pending). One column per statement: SQLite adds them one at a
/// time.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Accounts::LastLoginAt, Accounts::InactivityRemindedAt] {
            manager
                .alter_table(Table::alter().table(Accounts::Table).add_column(big_integer_null(column)).to_owned())
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("accounts_inactivity")
                    .table(Accounts::Table)
                    .col(Accounts::Status)
                    .col(Accounts::LastLoginAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("accounts_inactivity").table(Accounts::Table).to_owned()).await?;
        for column in [Accounts::InactivityRemindedAt, Accounts::LastLoginAt] {
            manager.alter_table(Table::alter().table(Accounts::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
