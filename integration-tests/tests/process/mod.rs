//! Server nodes as processes of their own (the `fault-node` binary), for the test binaries that
//! measure them from outside: their memory, their answer times, their death by SIGKILL.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use tokio::process::{Child, Command};

pub use storage::testing::free_port;

/// One server node: the real binary in a process of its own.
pub struct Node {
    pub child: Child,
    pub base: String,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
}

impl Node {
    /// Starts `serve` on `port` with `env` and waits until it is ready; its log goes to `log`.
    pub async fn start(env: Vec<(String, String)>, port: u16, log: PathBuf) -> Self {
        // Appended to: a restarted node's log keeps what the killed one wrote.
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fault-node"))
            .arg("serve")
            .envs(env.iter().cloned())
            .env("SERVICEKONTO_HTTP__BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let node = Self { child, base: format!("http://127.0.0.1:{port}"), env, log };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(response) = reqwest::get(format!("{}/readyz", node.base)).await
                && response.status() == StatusCode::OK
            {
                return node;
            }
            assert!(Instant::now() < deadline, "node {} did not start:\n{}", node.base, node.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM, as an orchestrator does to stop it.
    pub async fn terminate(&self) {
        let pid = self.child.id().expect("running");
        let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await.unwrap();
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Every line of its log that mentions `word`, except reports of an unavailable
    /// dependency (a fault phase makes hundreds of them).
    pub fn log_lines_with(&self, word: &str) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(word) && !l.contains("dependency unavailable"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The resident memory of its process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
