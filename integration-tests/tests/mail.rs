//! A real SMTP listener on loopback: the server's lettre SMTP transport delivers here, and tests
//! read the delivered messages and follow their links.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mail_parser::MessageParser;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::Notify,
};

/// One delivered mail.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Delivered {
    /// The first link into the server in the text part.
    pub fn link(&self) -> String {
        let start = self.text.find("http://").expect("a link in the mail");
        self.text[start..].split_whitespace().next().unwrap().to_owned()
    }
}

/// Receives mail over SMTP (plain, no TLS: loopback only) and keeps it for the test.
#[derive(Clone)]
pub struct SmtpSink {
    pub url: String,
    mails: Arc<Mutex<Vec<Delivered>>>,
    arrived: Arc<Notify>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let sink = Self { url, mails: Arc::default(), arrived: Arc::default() };
        let accepting = sink.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(accepting.clone().session(socket));
            }
        });
        sink
    }

    /// One SMTP session (RFC 5321): greeting, EHLO, MAIL, RCPT, DATA with dot-unstuffing, QUIT.
    async fn session(self, socket: tokio::net::TcpStream) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 sink.test ESMTP ready\r\n").await;
        let mut recipient = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let command = line.to_ascii_uppercase();
            let reply: &[u8] = if command.starts_with("EHLO") {
                b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            } else if command.starts_with("HELO")
                || command.starts_with("MAIL FROM")
                || command.starts_with("RSET")
                || command.starts_with("NOOP")
            {
                b"250 OK\r\n"
            } else if command.starts_with("RCPT TO") {
                recipient = line[8..].trim().trim_start_matches(':').trim().trim_matches(['<', '>']).to_owned();
                b"250 OK\r\n"
            } else if command.starts_with("DATA") {
                let _ = write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await;
                let mut raw = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "." {
                        break;
                    }
                    raw.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
                    raw.push_str("\r\n");
                }
                self.deliver(&recipient, raw.as_bytes());
                b"250 OK queued\r\n"
            } else if command.starts_with("QUIT") {
                let _ = write.write_all(b"221 Bye\r\n").await;
                return;
            } else {
                b"502 Command not implemented\r\n"
            };
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }

    fn deliver(&self, to: &str, raw: &[u8]) {
        let message = MessageParser::default().parse(raw).expect("a parsable mail");
        let delivered = Delivered {
            to: to.to_owned(),
            subject: message.subject().unwrap_or_default().to_owned(),
            text: message.body_text(0).unwrap_or_default().into_owned(),
            html: message.body_html(0).unwrap_or_default().into_owned(),
        };
        self.mails.lock().unwrap().push(delivered);
        self.arrived.notify_waiters();
    }

    /// Waits (up to 10 s) for the next mail to `to` after `seen` mails to that address.
    pub async fn mail_to(&self, to: &str, seen: usize) -> Delivered {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            if let Some(mail) = self.mails.lock().unwrap().iter().filter(|m| m.to == to).nth(seen) {
                return mail.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no mail number {} to {to} within 10 s", seen + 1);
            }
        }
    }

    /// How many mails went to `to` so far.
    pub fn count_to(&self, to: &str) -> usize {
        self.mails.lock().unwrap().iter().filter(|m| m.to == to).count()
    }
}
