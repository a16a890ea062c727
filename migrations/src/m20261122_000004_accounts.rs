use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, ForeignKey, ForeignKeyAction, Index, Table},
    schema::{big_integer, big_integer_null, pk_auto, string_len, string_len_null, text},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Environment,
    Username,
    UsernameKey,
    Email,
    EmailKey,
    Status,
    MasterData,
    PasswordHash,
    TrustLevel,
    PrivacyConsent,
    SessionEpoch,
    CreatedAt,
    ActivatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AccountEvents {
    Table,
    Id,
    AccountId,
    At,
    Kind,
    Detail,
}

#[derive(DeriveIden)]
enum AccountDeletions {
    Table,
    Id,
    AccountId,
    Environment,
    At,
}

/// Citizen accounts (unique username and e-mail per environment, compared in lower case through
/// the `*_key` columns), their activity, and the personal-data-free record of deletions.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(string_len(Accounts::Id, 36).primary_key())
                    .col(string_len(Accounts::Environment, 16))
                    .col(string_len(Accounts::Username, 64))
                    .col(string_len(Accounts::UsernameKey, 64))
                    .col(text(Accounts::Email))
                    .col(string_len(Accounts::EmailKey, 254))
                    .col(string_len(Accounts::Status, 16))
                    .col(text(Accounts::MasterData))
                    .col(string_len(Accounts::PasswordHash, 255))
                    .col(string_len(Accounts::TrustLevel, 16))
                    .col(text(Accounts::PrivacyConsent))
                    .col(big_integer(Accounts::SessionEpoch))
                    .col(big_integer(Accounts::CreatedAt))
                    .col(big_integer_null(Accounts::ActivatedAt))
                    .col(big_integer(Accounts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, column) in
            [("accounts_username_key", Accounts::UsernameKey), ("accounts_email_key", Accounts::EmailKey)]
        {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Accounts::Table)
                        .col(Accounts::Environment)
                        .col(column)
                        .unique()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("accounts_pending")
                    .table(Accounts::Table)
                    .col(Accounts::Status)
                    .col(Accounts::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccountEvents::Table)
                    .col(pk_auto(AccountEvents::Id).big_integer())
                    .col(string_len(AccountEvents::AccountId, 36))
                    .col(big_integer(AccountEvents::At))
                    .col(string_len(AccountEvents::Kind, 32))
                    .col(string_len_null(AccountEvents::Detail, 255))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccountEvents::Table, AccountEvents::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("account_events_account")
                    .table(AccountEvents::Table)
                    .col(AccountEvents::AccountId)
                    .col(AccountEvents::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccountDeletions::Table)
                    .col(pk_auto(AccountDeletions::Id).big_integer())
                    .col(string_len(AccountDeletions::AccountId, 36))
                    .col(string_len(AccountDeletions::Environment, 16))
                    .col(big_integer(AccountDeletions::At))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AccountDeletions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AccountEvents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Accounts::Table).to_owned()).await
    }
}
