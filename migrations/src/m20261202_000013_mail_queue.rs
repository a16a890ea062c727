use sea_orm_migration::{
    DbErr, MigrationTrait, SchemaManager,
    async_trait::async_trait,
    prelude::{DeriveIden, DeriveMigrationName, Index, Table},
    schema::{big_integer, integer, string_len, text},
    sea_orm,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailQueue {
    Table,
    Id,
    Payload,
    Attempts,
    CreatedAt,
    NextAttemptAt,
}

/// Mails waiting to be sent: off the request path (no timing signal, no SMTP in a request) and
/// durable (an SMTP outage delays mails, it loses none). The payload is sealed by the server
/// (it holds link tokens and an address); a row leaves when its mail was handed over.
#[async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MailQueue::Table)
                    .col(string_len(MailQueue::Id, 36).primary_key())
                    .col(text(MailQueue::Payload))
                    .col(integer(MailQueue::Attempts))
                    .col(big_integer(MailQueue::CreatedAt))
                    .col(big_integer(MailQueue::NextAttemptAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("mail_queue_due").table(MailQueue::Table).col(MailQueue::NextAttemptAt).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MailQueue::Table).to_owned()).await
    }
}
