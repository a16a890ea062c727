use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, ForeignKey, ForeignKeyAction, Index, Table},
    schema::{big_integer, boolean, pk_auto, string_len, string_len_null, text, text_null},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Slug,
    Name,
    ContactEmail,
    Status,
    Branding,
    AllowedClaims,
    MinTrustLevel,
    Sector,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    TenantId,
    Environment,
    Settings,
    FirstParty,
    AdminRole,
    Secrets,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    Actor,
    Action,
    TenantId,
    Target,
    Before,
    After,
}

#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(string_len(Tenants::Id, 36).primary_key())
                    .col(string_len(Tenants::Slug, 63).unique_key())
                    .col(string_len(Tenants::Name, 255))
                    .col(string_len(Tenants::ContactEmail, 254))
                    .col(string_len(Tenants::Status, 16))
                    .col(text(Tenants::Branding))
                    .col(text(Tenants::AllowedClaims))
                    .col(string_len(Tenants::MinTrustLevel, 16))
                    .col(string_len(Tenants::Sector, 255))
                    .col(big_integer(Tenants::Version))
                    .col(big_integer(Tenants::CreatedAt))
                    .col(big_integer(Tenants::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Clients::Table)
                    .col(string_len(Clients::ClientId, 255).primary_key())
                    .col(string_len(Clients::TenantId, 36))
                    .col(string_len(Clients::Environment, 16))
                    .col(text(Clients::Settings))
                    .col(boolean(Clients::FirstParty))
                    .col(string_len_null(Clients::AdminRole, 32))
                    .col(text(Clients::Secrets))
                    .col(big_integer(Clients::Version))
                    .col(big_integer(Clients::CreatedAt))
                    .col(big_integer(Clients::UpdatedAt))
                    // A tenant with clients cannot disappear under them.
                    .foreign_key(
                        ForeignKey::create()
                            .name("clients_tenant_fk")
                            .from(Clients::Table, Clients::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("clients_tenant_environment")
                    .table(Clients::Table)
                    .col(Clients::TenantId)
                    .col(Clients::Environment)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_auto(AuditEvents::Id).big_integer())
                    .col(big_integer(AuditEvents::At))
                    .col(string_len(AuditEvents::Actor, 300))
                    .col(string_len(AuditEvents::Action, 64))
                    // No foreign key: the audit trail outlives the tenant.
                    .col(string_len_null(AuditEvents::TenantId, 36))
                    .col(string_len(AuditEvents::Target, 255))
                    .col(text_null(AuditEvents::Before))
                    .col(text_null(AuditEvents::After))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_events_tenant_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditEvents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Clients::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Tenants::Table).to_owned()).await
    }
}
