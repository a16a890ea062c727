//! The servers under test as child processes: pinned to a core, watched for CPU time and peak
//! memory through `/proc`, killed when dropped. A server that forks workers (Node's cluster
//! mode, nginx) is measured with all of them: every figure is summed over the process tree.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

/// A server process of one peer; killed on drop.
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        Ok(Self { child })
    }

    /// The process id (`taskset` execs its command, so this is the server itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `url` answers 200, failing early when the process exits. Each probe has a
    /// timeout of its own: a server that accepted the connection and never answered would
    /// otherwise hold one probe for the whole minute (seen once with the peer, cause unknown), and
    /// the failure names what the last probe got.
    pub async fn wait_ready(&mut self, url: &str, log: &Path) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let started = Instant::now();
        let mut last = String::from("no probe finished");
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait()? {
                let output = std::fs::read_to_string(log).unwrap_or_default();
                anyhow::bail!("the server exited with {status} before it was ready:\n{output}");
            }
            match http.get(url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("status {}", r.status()),
                // With its causes: reqwest's own text names only "error sending request".
                Err(e) => last = format!("{:#}", anyhow::Error::new(e)),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let output = std::fs::read_to_string(log).unwrap_or_default();
        // What the process was doing: stuck in the kernel, computing, or listening elsewhere.
        let pid = self.pid();
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()?.to_owned()))
            .unwrap_or_else(|| "?".into());
        let waiting_in = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let port = reqwest::Url::parse(url).ok().and_then(|u| u.port()).unwrap_or(0);
        anyhow::bail!(
            "{url} did not answer within 60 s (the last probe: {last}); the process: state {state}, waiting in \
             {waiting_in:?}, {cpu:.1} s of CPU, {listening} on port {port}; its log so far:\n{output}",
            cpu = self.cpu_seconds(),
            listening = if listening_on(port) { "something listening" } else { "nothing listening" },
        )
    }

    /// CPU seconds (user + system) the process and its live descendants have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.tree().iter().map(|pid| cpu_seconds_of(&format!("/proc/{pid}/stat"))).sum()
    }

    /// Peak resident memory (VmHWM) in KiB so far, summed over the process tree (the processes'
    /// peaks need not have been at the same moment, so for a tree this is an upper bound).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resident memory (VmRSS) in KiB now, summed over the process tree.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Resident anonymous memory (RssAnon) in KiB now, summed over the process tree: heap,
    /// stacks — what the processes themselves hold, without the pages of the files they map
    /// (their code, libraries).
    pub fn anon_rss_kib(&self) -> u64 {
        self.status_kib("RssAnon:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        self.tree()
            .iter()
            .map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(field))
                    .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// This process and its live descendants.
    fn tree(&self) -> Vec<u32> {
        let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                Some((pid, parent_of(pid)?))
            })
            .collect();
        let mut tree = vec![self.pid()];
        let mut i = 0;
        while let Some(&pid) = tree.get(i) {
            tree.extend(parents.iter().filter(|(_, parent)| *parent == pid).map(|(child, _)| *child));
            i += 1;
        }
        tree
    }
}

/// The parent's pid from `/proc/<pid>/stat` (field 4, the second after the command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Workers outlive a killed primary (nginx's do): each process of the tree is killed.
        let descendants: Vec<String> = self.tree().iter().skip(1).map(u32::to_string).collect();
        let _ = self.child.kill();
        if !descendants.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&descendants).stderr(Stdio::null()).status();
        }
        let _ = self.child.wait();
    }
}

/// CPU seconds of this process (the load generator).
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat")
}

/// utime + stime of a `/proc/<pid>/stat` file. The fields are in clock ticks of USER_HZ, which
/// Linux fixes at 100 for this interface.
fn cpu_seconds_of(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start at field 3, so utime (14) and stime (15) are at 11 and 12.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Whether a socket listens on loopback `port` (`/proc/net/tcp`: local address in hex, state 0A).
fn listening_on(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").unwrap_or_default().lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
    })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `program` run on `cpu` through `taskset` when pinning is on.
pub fn pinned(cpu: Option<usize>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Whether this machine can pin: `taskset` exists and at least two cores are available.
pub fn can_pin() -> bool {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    cores >= 2 && Command::new("taskset").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_loopback_port_is_seen_and_a_closed_one_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_on(port));
        drop(listener);
        assert!(!listening_on(port));
    }
}
