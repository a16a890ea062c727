//! Limits while reading and writing, measured from outside on a node process of its own: huge
//! bodies are refused before they are buffered (the node's resident memory stays put),
//! connections that never finish their request head are closed while `/healthz` keeps
//! answering, and idle connections and clients that never read their answers are cut off.
//!
//! A test binary of its own: it reads the node's memory and counts its time, which other tests
//! running beside it would disturb.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

#[path = "process/mod.rs"]
#[allow(dead_code, reason = "shared by two test binaries, each uses a part")]
mod process;

use std::time::{Duration, Instant};

use process::{Node, free_port};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A node on the embedded defaults in `dir`, with `extra` settings.
async fn node(dir: &std::path::Path, extra: &[(&str, &str)]) -> Node {
    let port = free_port();
    let mut env: Vec<(String, String)> = vec![
        ("SERVICEKONTO_DATABASE__URL".into(), format!("sqlite://{}/sk.db?mode=rwc", dir.display())),
        ("SERVICEKONTO_KEYS__KEK_PATH".into(), dir.join("kek").display().to_string()),
        ("SERVICEKONTO_MAIL__OUTBOX_DIR".into(), dir.join("outbox").display().to_string()),
        ("SERVICEKONTO_ENVIRONMENTS__PRODUCTION__ISSUER".into(), format!("http://127.0.0.1:{port}")),
        ("SERVICEKONTO_ENVIRONMENTS__TEST__ISSUER".into(), format!("http://127.0.0.1:{port}/test")),
        ("SERVICEKONTO_LOG__FILTER".into(), "warn".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Node::start(env, port, dir.join("node.log")).await
}

/// Sends a request head and then up to 100 MB of body in 64 KiB pieces, as long as the server
/// reads; returns the status line of the answer (empty if the server only closed).
async fn flood(base: &str, head: &str, chunked: bool) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let piece = vec![b'a'; 64 * 1024];
    let chunk_header = format!("{:x}\r\n", piece.len());
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        for _ in 0..1600 {
            let sent = if chunked {
                async {
                    writer.write_all(chunk_header.as_bytes()).await?;
                    writer.write_all(&piece).await?;
                    writer.write_all(b"\r\n").await
                }
                .await
            } else {
                writer.write_all(&piece).await
            };
            if sent.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer)).await;
    sender.abort();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_100_mb_body_to_a_form_or_the_admin_api_is_refused_before_it_is_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), &[]).await;
    let host = node.base.trim_start_matches("http://").to_owned();
    let before = node.rss_kib();
    for (path, content_type) in [
        ("/test/anmelden", "application/x-www-form-urlencoded"),
        ("/test/token", "application/x-www-form-urlencoded"),
        ("/admin/api/v1/tenants", "application/json"),
    ] {
        let declared = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: 104857600\r\n\r\n"
        );
        let status = flood(&node.base, &declared, false).await;
        assert!(status.contains(" 413 "), "{path} with Content-Length: {status:?}");
        let chunked = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let status = flood(&node.base, &chunked, true).await;
        assert!(status.is_empty() || status.contains(" 4"), "{path} chunked: cut off, not served: {status:?}");
    }
    let after = node.rss_kib();
    assert!(after < before + 20 * 1024, "resident memory grew from {before} KiB to {after} KiB");
    // Ordinary requests still work.
    let health = reqwest::get(format!("{}/healthz", node.base)).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn held_half_requests_are_closed_after_the_header_timeout_and_healthz_answers_throughout() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), &[("SERVICEKONTO_HTTP__HEADER_TIMEOUT_SECONDS", "2")]).await;
    let address = node.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ").await.unwrap();
        held.push(stream);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let answer = client.get(format!("{}/healthz", node.base)).send().await;
        assert!(answer.is_ok_and(|a| a.status() == 200), "/healthz answers while 1,000 half requests are held");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut closed = 0;
    for mut stream in held {
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            closed += 1;
        }
    }
    assert_eq!(closed, 1000, "every half request was closed after the header timeout");
}

/// Sends `GET /healthz` on `stream` and reads the whole answer; returns its status line, or
/// `None` when the server had closed the connection.
async fn healthz_on(stream: &mut TcpStream) -> Option<String> {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: keep\r\n\r\n").await.ok()?;
    let mut answer = Vec::new();
    let mut piece = [0_u8; 4096];
    loop {
        let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = head_end {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if answer.len() >= end + 4 + length {
                return head.lines().next().map(str::to_owned);
            }
        }
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&piece[..n]),
        }
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_busy_ones_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), &[("SERVICEKONTO_HTTP__KEEP_ALIVE_SECONDS", "2")]).await;
    let address = node.base.trim_start_matches("http://").to_owned();
    let mut idle = TcpStream::connect(&address).await.unwrap();
    assert_eq!(healthz_on(&mut idle).await.as_deref(), Some("http/1.1 200 ok"));
    // A connection that asks every half second outlives the idle timeout twice over.
    let mut busy = TcpStream::connect(&address).await.unwrap();
    for round in 0..8 {
        assert_eq!(healthz_on(&mut busy).await.as_deref(), Some("http/1.1 200 ok"), "request {round}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The idle one was closed meanwhile (or is, within a few seconds).
    let mut byte = [0_u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(4), idle.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the idle connection was closed: {read:?}");
}

/// How many `/healthz` requests the node has answered, from its metrics.
async fn healthz_answered(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with("servicekonto_http_requests_total{") && line.contains("route=\"/healthz\""))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The most a socket's send buffer may grow to on this machine (Linux's `tcp_wmem` maximum).
fn send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|values| values.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_cut_off_after_the_idle_timeout() {
    const IDLE_SECONDS: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let idle = IDLE_SECONDS.to_string();
    let node = node(dir.path(), &[("SERVICEKONTO_HTTP__KEEP_ALIVE_SECONDS", &idle)]).await;
    let address: std::net::SocketAddr = node.base.trim_start_matches("http://").parse().unwrap();
    // The client's receive buffer is fixed small (no autotuning), and the pipelined requests'
    // answers (about 220 bytes each) are four times what the server's send buffer can hold
    // here: the answers cannot all fit, so the server's writes must wait.
    let requests = (4 * send_buffer_max() / 220).max(100_000);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let stream = socket.connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let request = b"GET /healthz HTTP/1.1\r\nHost: slow-reader\r\n\r\n".repeat(requests);
        let _ = writer.write_all(&request).await;
        writer
    });
    // The server's writes wait once its count of answers stops growing. Watched instead of
    // slept for: how long the node needs to fill the buffers depends on the machine's load.
    // Unchanged over two looks a quarter second apart, not a pause of a busy machine.
    let mut answered = healthz_answered(&node.base).await;
    let mut unchanged = 0;
    let watching = Instant::now();
    while unchanged < 2 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = healthz_answered(&node.base).await;
        unchanged = if now == answered && now > 0 { unchanged + 1 } else { 0 };
        answered = now;
        assert!(watching.elapsed() < Duration::from_secs(120), "the node kept answering: {now} answers");
    }
    assert!((answered as usize) < requests, "every answer fit into the socket buffers: {answered}");
    // Past the idle timeout the waiting write fails and the connection is closed; reading now
    // gets only what was buffered. Had the server kept the connection, reading would let it
    // write every answer.
    tokio::time::sleep(Duration::from_secs(IDLE_SECONDS + 3)).await;
    let mut answers = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answers)).await;
    sender.abort();
    let received = answers.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    assert!(read.is_ok(), "the connection was still open 20 s after reading began");
    assert!(received < requests, "the server stopped writing to a client that did not read: {received} answers");
    assert_eq!(healthz_answered(&node.base).await, answered, "no request was answered after the cut-off");
    let health = reqwest::get(format!("{}/healthz", node.base)).await.unwrap();
    assert_eq!(health.status(), 200);
}
