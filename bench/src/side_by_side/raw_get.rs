//! The lightest load generator this harness has for a static document: one kept-alive HTTP/1.1
//! connection per worker, a request written once, the answer read by its `Content-Length`.
//! reqwest's client costs more CPU per request than our server spends answering discovery or
//! JWKS, so with it the generator's core, not the servers, set the limit.

use anyhow::Context;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A connection that `GET`s one URL again and again.
pub struct RawGet {
    stream: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl RawGet {
    /// Connects to the host of the `http://` URL `url`.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(url)?;
        anyhow::ensure!(url.scheme() == "http", "{url}: only http");
        let host = url.host_str().context("no host")?;
        let port = url.port_or_known_default().context("no port")?;
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        let path = &url[url::Position::BeforePath..];
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n").into_bytes();
        Ok(Self { stream, request, buffer: Vec::with_capacity(16 * 1024) })
    }

    /// One request; fails unless the answer is `200` with a `Content-Length` body.
    pub async fn get(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.request).await?;
        self.buffer.clear();
        let header_end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            anyhow::ensure!(self.buffer.len() < 64 * 1024, "the answer's header is too long");
            self.read_more().await?;
        };
        let head = std::str::from_utf8(&self.buffer[..header_end]).context("header not UTF-8")?;
        let status = head.split(' ').nth(1).unwrap_or_default();
        anyhow::ensure!(status == "200", "answered {}", head.lines().next().unwrap_or_default());
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .context("the answer has no Content-Length")?;
        while self.buffer.len() < header_end + length {
            self.read_more().await?;
        }
        anyhow::ensure!(self.buffer.len() == header_end + length, "more than one answer to one request");
        Ok(())
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "the server closed the connection");
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}
