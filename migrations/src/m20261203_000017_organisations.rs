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

/// Organisations ("Unternehmenskonten"): their data and verifications (JSON), members (deleted
/// with the organisation or the account), and single-use links (invitations, contact-address
/// confirmations) by the SHA-256 of their token.
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
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(OrganisationLinks::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(OrganisationMembers::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Organisations::Table).to_owned()).await
    }
}
