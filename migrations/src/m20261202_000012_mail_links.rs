use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, ForeignKey, ForeignKeyAction, Index, Table},
    schema::{big_integer, string_len, string_len_null},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailLinks {
    Table,
    TokenHash,
    Kind,
    Environment,
    AccountId,
    NewEmail,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

/// Single-use links sent by mail (activation, password reset, e-mail change), by the SHA-256 of
/// their token. They lived in the ephemeral store before; a citizen must not lose a 72-hour
/// activation link to a Redis restart. Deleted with the account; kept a week past expiry so the
/// citizen is told "expired" rather than "unknown".
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MailLinks::Table)
                    .col(string_len(MailLinks::TokenHash, 64).primary_key())
                    .col(string_len(MailLinks::Kind, 16))
                    .col(string_len(MailLinks::Environment, 16))
                    .col(string_len(MailLinks::AccountId, 36))
                    .col(string_len_null(MailLinks::NewEmail, 320))
                    .col(big_integer(MailLinks::CreatedAt))
                    .col(big_integer(MailLinks::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MailLinks::Table, MailLinks::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("mail_links_expires").table(MailLinks::Table).col(MailLinks::ExpiresAt).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MailLinks::Table).to_owned()).await
    }
}
