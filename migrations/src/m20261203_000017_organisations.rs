use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, ForeignKey, ForeignKeyAction, Index, Table},
    schema::{big_integer, big_integer_null, string_len, string_len_null, text},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organisations {
    Table,
    Id,
    Environment,
    Data,
    Verifications,
    EmailVerifiedAt,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrganisationMembers {
    Table,
    OrganisationId,
    AccountId,
    Role,
    Since,
}

#[derive(DeriveIden)]
enum OrganisationLinks {
    Table,
    TokenHash,
    Environment,
    OrganisationId,
    Email,
    Role,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    ActingFor,
}

#[derive(DeriveIden)]
enum DataTransfers {
    Table,
    OrganisationId,
    OrganisationName,
}

/// Organisations ("Unternehmenskonten"): their data and verifications (JSON), members (deleted
/// with the organisation or the account), and single-use links (invitations, contact-address
/// confirmations) by the SHA-256 of their token. A consent remembers the choice "for myself" or
/// an organisation; a transfer names the organisation acted for.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organisations::Table)
                    .col(string_len(Organisations::Id, 36).primary_key())
                    .col(string_len(Organisations::Environment, 16))
                    .col(text(Organisations::Data))
                    .col(text(Organisations::Verifications))
                    .col(big_integer_null(Organisations::EmailVerifiedAt))
                    .col(string_len(Organisations::Status, 16))
                    .col(big_integer(Organisations::CreatedAt))
                    .col(big_integer(Organisations::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("organisations_listing")
                    .table(Organisations::Table)
                    .col(Organisations::Environment)
                    .col(Organisations::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrganisationMembers::Table)
                    .col(string_len(OrganisationMembers::OrganisationId, 36))
                    .col(string_len(OrganisationMembers::AccountId, 36))
                    .col(string_len(OrganisationMembers::Role, 16))
                    .col(big_integer(OrganisationMembers::Since))
                    .primary_key(
                        Index::create().col(OrganisationMembers::OrganisationId).col(OrganisationMembers::AccountId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrganisationMembers::Table, OrganisationMembers::OrganisationId)
                            .to(Organisations::Table, Organisations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrganisationMembers::Table, OrganisationMembers::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("organisation_members_account")
                    .table(OrganisationMembers::Table)
                    .col(OrganisationMembers::AccountId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrganisationLinks::Table)
                    .col(string_len(OrganisationLinks::TokenHash, 64).primary_key())
                    .col(string_len(OrganisationLinks::Environment, 16))
                    .col(string_len(OrganisationLinks::OrganisationId, 36))
                    .col(string_len(OrganisationLinks::Email, 320))
                    .col(string_len_null(OrganisationLinks::Role, 16))
                    .col(big_integer(OrganisationLinks::CreatedAt))
                    .col(big_integer(OrganisationLinks::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrganisationLinks::Table, OrganisationLinks::OrganisationId)
                            .to(Organisations::Table, Organisations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("organisation_links_organisation")
                    .table(OrganisationLinks::Table)
                    .col(OrganisationLinks::OrganisationId)
                    .to_owned(),
            )
            .await?;
        // The remembered choice on the consent page (one column per statement for SQLite).
        manager
            .alter_table(
                Table::alter().table(Consents::Table).add_column(string_len_null(Consents::ActingFor, 36)).to_owned(),
            )
            .await?;
        for column in [DataTransfers::OrganisationId, DataTransfers::OrganisationName] {
            let width = if matches!(column, DataTransfers::OrganisationId) { 36 } else { 255 };
            manager
                .alter_table(
                    Table::alter().table(DataTransfers::Table).add_column(string_len_null(column, width)).to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("data_transfers_organisation")
                    .table(DataTransfers::Table)
                    .col(DataTransfers::OrganisationId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("data_transfers_organisation").table(DataTransfers::Table).to_owned())
            .await?;
        for column in [DataTransfers::OrganisationName, DataTransfers::OrganisationId] {
            manager.alter_table(Table::alter().table(DataTransfers::Table).drop_column(column).to_owned()).await?;
        }
        manager.alter_table(Table::alter().table(Consents::Table).drop_column(Consents::ActingFor).to_owned()).await?;
        manager.drop_table(Table::drop().table(OrganisationLinks::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(OrganisationMembers::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Organisations::Table).to_owned()).await
    }
}
