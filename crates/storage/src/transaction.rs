//! Transactions that a cancelled caller cannot leave open.
//!
//! sqlx 0.8 (under sea-orm 1.x) counts a PostgreSQL transaction only once `BEGIN`'s answer is
//! in. A caller dropped while it waits for that answer — a request cut at its deadline while
//! the database hangs — leaves the session inside a transaction that nothing ends, and the pool
//! hands the connection to the next request: its writes run inside that transaction, are
//! answered as done, and are lost when the connection closes (launchbadge/sqlx#4393, fixed only
//! in sqlx 0.9). The fault suite lost refresh tokens that way: a rotation answered 200 whose
//! successor was never committed.

use sea_orm::{ConnectionTrait as _, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait as _};

/// Begins a transaction on `conn`. On PostgreSQL the `BEGIN` runs in a task of its own, so it
/// completes even when the caller is gone; a transaction nobody takes is then dropped, which
/// queues its `ROLLBACK` before the connection goes back to the pool. SQLite's `BEGIN` is
/// cancel-safe in sqlx already and keeps its direct path.
pub(crate) async fn begin(conn: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        #[expect(clippy::disallowed_methods, reason = "the one place that begins transactions")]
        return conn.begin().await;
    }
    let conn = conn.clone();
    #[expect(clippy::disallowed_methods, reason = "the one place that begins transactions")]
    let begun = tokio::spawn(async move { conn.begin().await });
    begun.await.map_err(|e| DbErr::Custom(format!("beginning a transaction failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        sync::watch,
    };

    use crate::testing::{TestDatabase, backend_url};

    /// A TCP proxy in front of PostgreSQL that passes requests on and holds the server's
    /// answers while `hold` is true: a database that received a statement and hangs.
    async fn answer_holding_proxy(upstream: SocketAddr, hold: watch::Receiver<bool>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(upstream).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
                let mut hold = hold.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0_u8; 16 * 1024];
                    while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
                        if hold.wait_for(|held| !held).await.is_err()
                            || client_write.write_all(&buffer[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// A caller cut while `BEGIN`'s answer is outstanding leaves no transaction behind: the
    /// next statement on the same pooled connection commits and others see it.
    #[tokio::test]
    async fn a_begin_cut_while_the_database_hangs_leaves_no_transaction_open() {
        let test = "a_begin_cut_while_the_database_hangs_leaves_no_transaction_open";
        let Some(server_url) = backend_url("TEST_DATABASE_URL", test) else { return };
        let database = TestDatabase::postgres(&server_url).await.unwrap();
        let direct = Database::connect(database.url.as_str()).await.unwrap();
        let run = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
        direct.execute(run("CREATE TABLE probe (n integer)")).await.unwrap();

        let mut url = url::Url::parse(&database.url).unwrap();
        let upstream = tokio::net::lookup_host((url.host_str().unwrap().to_owned(), url.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap();
        let (hold, held) = watch::channel(false);
        let port = answer_holding_proxy(upstream, held).await;
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        // One connection, so the statement after the cut gets the connection that was cut; no
        // check before use (the server's pool checks only connections that sat idle), so the
        // cut comes while `BEGIN` waits, not while a check does.
        let mut options = ConnectOptions::new(url.to_string());
        options.max_connections(1).min_connections(1).test_before_acquire(false).sqlx_logging(false);
        let pooled = Database::connect(options).await.unwrap();

        hold.send_replace(true);
        let cut = tokio::time::timeout(Duration::from_millis(300), super::begin(&pooled)).await;
        assert!(cut.is_err(), "BEGIN's answer is held, so the caller is cut");
        hold.send_replace(false);

        pooled.execute(run("INSERT INTO probe VALUES (1)")).await.unwrap();
        let seen = direct.query_one(run("SELECT count(*) AS n FROM probe")).await.unwrap().unwrap();
        assert_eq!(seen.try_get::<i64>("", "n").unwrap(), 1, "the insert after the cut is committed");

        pooled.close().await.unwrap();
        direct.close().await.unwrap();
        database.drop_now().await.unwrap();
    }
}
