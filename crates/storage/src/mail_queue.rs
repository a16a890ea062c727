use std::time::Duration;

use account_service::{MailQueue, QueuedMail, StoreError};
use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::STANDARD};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use time::OffsetDateTime;

use crate::entities::mail_queue;

/// [`MailQueue`] on the relational database.
#[derive(Debug, Clone)]
pub struct SeaMailQueue {
    conn: DatabaseConnection,
}

impl SeaMailQueue {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(crate::boxed(e))
}

#[derive(Debug, thiserror::Error)]
#[error("queued mail {0} is unreadable")]
struct Corrupt(String);

#[async_trait]
impl MailQueue for SeaMailQueue {
    async fn enqueue(&self, mail: &QueuedMail) -> Result<(), StoreError> {
        let row = mail_queue::ActiveModel {
            id: Set(mail.id.clone()),
            payload: Set(STANDARD.encode(&mail.payload)),
            attempts: Set(i32::try_from(mail.attempts).unwrap_or(i32::MAX)),
            created_at: Set(mail.created_at.unix_timestamp()),
            next_attempt_at: Set(mail.created_at.unix_timestamp()),
        };
        mail_queue::Entity::insert(row).exec(&self.conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn claim_due(&self, now: OffsetDateTime, lease: Duration, limit: u32) -> Result<Vec<QueuedMail>, StoreError> {
        let now_s = now.unix_timestamp();
        let due = mail_queue::Entity::find()
            .filter(mail_queue::Column::NextAttemptAt.lte(now_s))
            .order_by_asc(mail_queue::Column::NextAttemptAt)
            .limit(u64::from(limit))
            .all(&self.conn)
            .await
            .map_err(unavailable)?;
        let until = now_s + i64::try_from(lease.as_secs()).unwrap_or(i64::MAX / 2);
        let mut claimed = Vec::new();
        for row in due {
            // Whoever moves the row's due time first has it; another node sees 0 rows changed.
            let moved = mail_queue::Entity::update_many()
                .col_expr(mail_queue::Column::NextAttemptAt, Expr::value(until))
                .filter(mail_queue::Column::Id.eq(row.id.clone()))
                .filter(mail_queue::Column::NextAttemptAt.eq(row.next_attempt_at))
                .exec(&self.conn)
                .await
                .map_err(unavailable)?;
            if moved.rows_affected == 1 {
                let payload = STANDARD.decode(&row.payload).map_err(|_| unavailable(Corrupt(row.id.clone())))?;
                let created_at = OffsetDateTime::from_unix_timestamp(row.created_at)
                    .map_err(|_| unavailable(Corrupt(row.id.clone())))?;
                claimed.push(QueuedMail {
                    id: row.id,
                    payload,
                    attempts: u32::try_from(row.attempts).unwrap_or(0),
                    created_at,
                });
            }
        }
        Ok(claimed)
    }

    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        mail_queue::Entity::delete_by_id(id.to_owned()).exec(&self.conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn retry_at(&self, id: &str, at: OffsetDateTime, attempts: u32) -> Result<(), StoreError> {
        mail_queue::Entity::update_many()
            .col_expr(mail_queue::Column::NextAttemptAt, Expr::value(at.unix_timestamp()))
            .col_expr(mail_queue::Column::Attempts, Expr::value(i32::try_from(attempts).unwrap_or(i32::MAX)))
            .filter(mail_queue::Column::Id.eq(id))
            .exec(&self.conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
