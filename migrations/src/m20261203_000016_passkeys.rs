use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, ForeignKey, ForeignKeyAction, Index, Table},
    schema::{big_integer, big_integer_null, boolean, string_len, text},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Passkeys {
    Table,
    Id,
    Environment,
    AccountId,
    CredentialId,
    Name,
    Credential,
    AddedWithCard,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    LoginFactors,
}

/// Passkeys (WebAuthn credentials) of citizen accounts: the credential id is unique per
/// environment (a login finds the account by it), the credential itself is webauthn-rs's JSON.
/// Deleted with the account. `accounts.login_factors`: password alone, or password and passkey.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Passkeys::Table)
                    .col(string_len(Passkeys::Id, 36).primary_key())
                    .col(string_len(Passkeys::Environment, 16))
                    .col(string_len(Passkeys::AccountId, 36))
                    // Credential ids are at most 1023 bytes (WebAuthn Level 3): 1364 in base64url.
                    .col(string_len(Passkeys::CredentialId, 1400))
                    .col(string_len(Passkeys::Name, 255))
                    .col(text(Passkeys::Credential))
                    .col(boolean(Passkeys::AddedWithCard))
                    .col(big_integer(Passkeys::CreatedAt))
                    .col(big_integer_null(Passkeys::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Passkeys::Table, Passkeys::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("passkeys_credential")
                    .table(Passkeys::Table)
                    .col(Passkeys::Environment)
                    .col(Passkeys::CredentialId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("passkeys_account").table(Passkeys::Table).col(Passkeys::AccountId).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Accounts::Table)
                    .add_column(string_len(Accounts::LoginFactors, 32).default("password_or_passkey"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Accounts::Table).drop_column(Accounts::LoginFactors).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(Passkeys::Table).to_owned()).await
    }
}
