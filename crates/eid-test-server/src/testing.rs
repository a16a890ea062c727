//! The real AusweisApp2 (Debian's package) for tests: started headless in SDK mode on a
//! loopback port of its choosing, with a fresh home whose settings switch pre-verification off
//! (our terminal certificates do not chain to the BSI's test CVCA), its log kept to tell its own
//! failures from ours. Killed when dropped.

use std::{path::PathBuf, process::Stdio, time::Duration};

use async_trait::async_trait;
use eid_bridge::sdk::{
    client::{CardHolder, PinRequest, SdkClient, SdkConfig, SdkError},
    messages::{AccessRights, Reader, Secret, SimulatorCard},
};

/// What AusweisApp2 1.26.2 logs when it loses its own race on inserting the Simulator card:
/// `SimulatorReader::insertCard` announces the card while the connection it detected the card
/// with is still open (it is released through `deleteLater`), and the workflow's connection
/// request can be served first; the workflow then aborts with a card communication error before
/// anything reaches the eID-Server, and in that process it tends to happen again. AusweisApp2
/// 2.x releases the connection before announcing the card; Debian 12 ships 1.26.2.
pub const INSERTION_RACE: &str = "Card is already connected";

/// A running AusweisApp2.
pub struct AusweisApp2 {
    process: tokio::process::Child,
    home: tempfile::TempDir,
    port: u16,
}

/// The port in the `*.port` file the app writes into `dir` (its `TMPDIR`) once it listens.
fn reported_port(dir: &std::path::Path) -> Option<u16> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name();
        let is_port_file = name.to_str().is_some_and(|n| n.starts_with("AusweisApp") && n.ends_with(".port"));
        let port = std::fs::read_to_string(entry.path()).ok().filter(|_| is_port_file)?.trim().parse().ok()?;
        (port != 0).then_some(port)
    })
}

fn binary() -> Option<&'static str> {
    ["/usr/bin/AusweisApp2", "/usr/bin/AusweisApp"].into_iter().find(|p| std::path::Path::new(p).exists())
}

impl AusweisApp2 {
    /// Starts the app; `None` when it is not installed.
    ///
    /// The app picks its port itself (`--port 0`) and writes it to `$TMPDIR/AusweisApp2.<pid>.port`
    /// (AusweisApp 2.x: `AusweisApp.<pid>.port`) once it listens: a port chosen here and handed
    /// over could be taken by another test's connection during the seconds the app needs to start.
    #[allow(clippy::panic, reason = "an installed app that does not start fails the test that asked for it")]
    pub async fn start() -> Option<Self> {
        let binary = binary()?;
        let home = tempfile::tempdir().ok()?;
        let settings = home.path().join("config").join("Unknown Organization");
        std::fs::create_dir_all(&settings).ok()?;
        std::fs::write(settings.join("AusweisApp2.conf"), "[preverification]\nenabled=false\n").ok()?;
        let log = std::fs::File::create(home.path().join("ausweisapp2.log")).ok()?;
        let mut process = tokio::process::Command::new(binary)
            .args(["--ui", "websocket", "--port", "0", "--address", "127.0.0.1", "--no-proxy"])
            .env("QT_QPA_PLATFORM", "offscreen")
            .env("HOME", home.path())
            .env("TMPDIR", home.path())
            .env("XDG_RUNTIME_DIR", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(port) = reported_port(home.path()) {
                break port;
            }
            if let Ok(Some(status)) = process.try_wait() {
                let log = std::fs::read_to_string(home.path().join("ausweisapp2.log")).unwrap_or_default();
                panic!("AusweisApp2 ended before it listened ({status}):\n{log}");
            }
            if tokio::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(home.path().join("ausweisapp2.log")).unwrap_or_default();
                panic!("AusweisApp2 wrote no port file within 60 s:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Some(AusweisApp2 { process, home, port })
    }

    /// The SDK's WebSocket address.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/eID-Kernel", self.port)
    }

    /// An SDK connection, once the app lists its readers (the Simulator among them).
    pub async fn sdk(&self) -> Result<SdkClient, SdkError> {
        let config = SdkConfig {
            url: self.url(),
            connect_timeout: Duration::from_secs(30),
            message_timeout: Duration::from_secs(60),
        };
        let mut client = SdkClient::connect(config).await?;
        client.wait_for_readers(Duration::from_secs(20)).await?;
        Ok(client)
    }

    /// The app's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.home.path().join("ausweisapp2.log")
    }

    /// How often the app has lost its card-insertion race ([`INSERTION_RACE`]) so far.
    pub fn insertion_races(&self) -> usize {
        self.log().matches(INSERTION_RACE).count()
    }

    /// Replaces the process with a fresh one (after it lost its insertion race).
    pub async fn restart(&mut self) -> Option<()> {
        let _ = self.process.kill().await;
        *self = AusweisApp2::start().await?;
        Some(())
    }
}

/// A citizen at the Simulator: accepts the access rights, puts the card in (the Simulator's
/// built-in one, or `card`), and "types" the PIN on the Simulator, a reader with its own keypad
/// (the SDK client sends no value for it).
#[derive(Debug, Default)]
pub struct SimulatorCitizen {
    /// The test card; `None`: the Simulator's built-in ERIKA MUSTERMANN.
    pub card: Option<SimulatorCard>,
}

#[async_trait]
impl CardHolder for SimulatorCitizen {
    async fn accept(&mut self, _: &AccessRights) -> bool {
        true
    }
    async fn insert_card(&mut self) -> Option<String> {
        Some("Simulator".into())
    }
    fn simulator_card(&self) -> Option<SimulatorCard> {
        self.card.clone()
    }
    async fn pin(&mut self, _: &PinRequest) -> Option<Secret> {
        Some(Secret::new("123456"))
    }
    async fn can(&mut self, _: &Reader) -> Option<Secret> {
        None
    }
    async fn puk(&mut self, _: &Reader) -> Option<Secret> {
        None
    }
}

/// A citizen who declines the provider's access rights (the workflow ends before any card).
#[derive(Debug, Default)]
pub struct DecliningCitizen;

#[async_trait]
impl CardHolder for DecliningCitizen {
    async fn accept(&mut self, _: &AccessRights) -> bool {
        false
    }
    async fn insert_card(&mut self) -> Option<String> {
        None
    }
    async fn pin(&mut self, _: &PinRequest) -> Option<Secret> {
        None
    }
    async fn can(&mut self, _: &Reader) -> Option<Secret> {
        None
    }
    async fn puk(&mut self, _: &Reader) -> Option<Secret> {
        None
    }
}
