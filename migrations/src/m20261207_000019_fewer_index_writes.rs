use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{ConditionalStatement, DeriveIden, DeriveMigrationName, Expr, Index},
    sea_orm::{self, ConnectionTrait, DbBackend, TransactionTrait},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DataTransfers {
    Table,
    OrganisationId,
}

/// Every sign-in writes a refresh token and a transfer-log row, and every B-tree an insert
/// changes is one more page the commit writes (on SQLite a 4 KiB frame in the write-ahead log).
/// Two of those trees held nothing worth their write:
///
/// - `data_transfers_organisation` indexed every transfer, though only those made for an
///   organisation have one; now it holds just those (both databases have partial indexes, and
///   both use them for `organisation_id = ?`).
/// - On SQLite, `refresh_tokens` was a rowid table beside the index of its primary key, so a
///   token was written twice and found through two trees; `WITHOUT ROWID` keeps the row in the
///   primary key's tree. PostgreSQL has no rowid tree: its table is unchanged.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        organisation_index(manager, true).await?;
        if manager.get_database_backend() == DbBackend::Sqlite {
            rebuild_refresh_tokens(manager, "WITHOUT ROWID").await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            rebuild_refresh_tokens(manager, "").await?;
        }
        organisation_index(manager, false).await
    }
}

/// `data_transfers_organisation` again, over the transfers made for an organisation only
/// (`partial`) or over all.
async fn organisation_index(manager: &SchemaManager<'_>, partial: bool) -> Result<(), DbErr> {
    manager
        .drop_index(Index::drop().name("data_transfers_organisation").table(DataTransfers::Table).to_owned())
        .await?;
    let mut index = Index::create();
    index.name("data_transfers_organisation").table(DataTransfers::Table).col(DataTransfers::OrganisationId);
    if partial {
        index.and_where(Expr::col(DataTransfers::OrganisationId).is_not_null());
    }
    manager.create_index(index.to_owned()).await
}

/// SQLite changes a table's kind only by building it anew: the same columns, key, foreign key
/// and indexes, with `options` after the definition. One transaction, so a failure leaves the
/// old table as it was.
async fn rebuild_refresh_tokens(manager: &SchemaManager<'_>, options: &str) -> Result<(), DbErr> {
    let columns = r#""token_hash", "family_id", "environment", "client_id", "account_id", "grant", "created_at", "expires_at", "used_at", "replaced_by""#;
    let create = format!(
        r#"CREATE TABLE "refresh_tokens_rebuilt" (
            "token_hash" varchar(64) NOT NULL PRIMARY KEY,
            "family_id" varchar(64) NOT NULL,
            "environment" varchar(16) NOT NULL,
            "client_id" varchar(255) NOT NULL,
            "account_id" varchar(36) NOT NULL,
            "grant" text NOT NULL,
            "created_at" bigint NOT NULL,
            "expires_at" bigint NOT NULL,
            "used_at" bigint NULL,
            "replaced_by" varchar(64) NULL,
            FOREIGN KEY ("account_id") REFERENCES "accounts" ("id") ON DELETE CASCADE
        ) {options}"#
    );
    #[allow(
        clippy::disallowed_methods,
        reason = "SQLite only, at start-up: storage's cancel-safe begin guards PostgreSQL's pooled connections, and storage depends on this crate"
    )]
    let txn = manager.get_connection().begin().await?;
    for statement in [
        create,
        format!(r#"INSERT INTO "refresh_tokens_rebuilt" ({columns}) SELECT {columns} FROM "refresh_tokens""#),
        r#"DROP TABLE "refresh_tokens""#.to_owned(),
        r#"ALTER TABLE "refresh_tokens_rebuilt" RENAME TO "refresh_tokens""#.to_owned(),
        r#"CREATE INDEX "refresh_tokens_family" ON "refresh_tokens" ("family_id")"#.to_owned(),
        r#"CREATE INDEX "refresh_tokens_account_client" ON "refresh_tokens" ("account_id", "client_id")"#.to_owned(),
    ] {
        txn.execute_unprepared(&statement).await?;
    }
    txn.commit().await
}
