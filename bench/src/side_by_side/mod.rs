//! `just bench`: servicekonto and panva's node `oidc-provider` under the same load in one run.
//!
//! Both servers run as child processes pinned to one core (when the machine has two), the load
//! generator to the other; each scenario runs against ours and then against the peer, so drift
//! of the machine hits both alike. The report holds requests/s, p50, p99, errors, server CPU
//! per request, the generator's own CPU use, peak RSS and the ratio us/peer, and the issue's
//! targets as pass/miss lines; it is printed and written to `target/bench/side-by-side.{json,md}`.

mod peers;
mod report;
mod scenarios;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
pub use peers::{ROLE_SERVICEKONTO, ROLE_VARIABLE};
use scenarios::{Load, Scenario};

use crate::process::own_cpu_seconds;

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds per scenario and peer.
    pub seconds: f64,
    /// Concurrent workers of the generator.
    pub concurrency: usize,
    /// A few seconds in all: proves the harness works, measures nothing worth reporting.
    pub smoke: bool,
    /// Where the report files go.
    pub out: PathBuf,
    /// Skip the peer (ours alone).
    pub without_peer: bool,
}

impl Options {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            seconds: 10.0,
            concurrency: 32,
            smoke: false,
            out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
            without_peer: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("a value after {arg}"));
            match arg.as_str() {
                "--seconds" => options.seconds = value()?.parse()?,
                "--concurrency" => options.concurrency = value()?.parse()?,
                "--out" => options.out = PathBuf::from(value()?),
                "--smoke" => options.smoke = true,
                "--without-peer" => options.without_peer = true,
                other => anyhow::bail!(
                    "unknown argument {other}; known: --seconds S, --concurrency C, --out DIR, --smoke, --without-peer"
                ),
            }
        }
        if options.smoke {
            options.seconds = options.seconds.min(1.0);
            options.concurrency = options.concurrency.min(4);
        }
        anyhow::ensure!(options.seconds > 0.0 && options.concurrency > 0, "--seconds and --concurrency must be > 0");
        Ok(options)
    }
}

/// One scenario against one peer.
pub(crate) struct Measured {
    outcome: scenarios::Outcome,
    /// Server CPU seconds during the scenario.
    server_cpu: f64,
    /// Generator CPU seconds during the scenario.
    generator_cpu: f64,
    /// The server's peak RSS (KiB) so far, read after the scenario.
    peak_rss_kib: u64,
}

/// One row of the report.
pub(crate) struct Row {
    scenario: Scenario,
    ours: Option<Measured>,
    peer: Option<Measured>,
}

/// Limits of the machine the figures are read against.
pub(crate) struct Limits {
    /// RS256 ID-token signatures per second on one core.
    rs256_per_second: f64,
    /// argon2id hashes per second on one core with the configured parameters.
    argon2_per_second: f64,
    /// The parameters.
    argon2: String,
}

/// What one run found.
pub(crate) struct Run {
    options: Options,
    pinned: bool,
    backends: String,
    peer_missing: Option<String>,
    rows: Vec<Row>,
    ours_rss_kib: u64,
    peer_rss_kib: Option<u64>,
    limits: Limits,
}

/// Whether the generator was started pinned (see `main` of the binary).
pub const PINNED_VARIABLE: &str = "BENCH_PINNED";

/// Runs every scenario against both peers, prints the report and writes its files.
pub async fn run(options: Options) -> anyhow::Result<()> {
    // The binary's `main` re-ran itself on core 0 when the machine can pin (checked there: in here
    // only core 0 is visible).
    let pinned = std::env::var_os(PINNED_VARIABLE).is_some();
    let server_cpu = pinned.then_some(1);
    let dir = tempfile::tempdir()?;
    let database = std::env::var("BENCH_DATABASE_URL").ok();
    let redis = std::env::var("BENCH_REDIS_URL").ok();
    let backends = format!(
        "{} + {}",
        if database.is_some() { "PostgreSQL" } else { "SQLite" },
        if redis.is_some() { "Redis" } else { "in-memory store" }
    );
    eprintln!("starting servicekonto ({backends})…");
    let ours = peers::start_servicekonto(dir.path(), server_cpu, database, redis).await?;
    let (peer, peer_missing) = if options.without_peer {
        (None, Some("--without-peer".to_owned()))
    } else {
        // Not under --out: the installed package is reused across runs and by the smoke test.
        let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/peer");
        match peers::install_peer(&cache) {
            Err(reason) => (None, Some(reason)),
            Ok(()) => {
                eprintln!("starting oidc-provider…");
                (Some(peers::start_oidc_provider(&cache, dir.path(), server_cpu).await?), None)
            }
        }
    };
    let load = Load { concurrency: options.concurrency, duration: Duration::from_secs_f64(options.seconds) };
    let mut rows = Vec::new();
    for scenario in Scenario::ALL {
        eprintln!("{}…", scenario.name());
        let ours_measured = measure(scenario, &ours, load).await?;
        let peer_measured = match &peer {
            Some(peer) => measure(scenario, peer, load).await?,
            None => None,
        };
        rows.push(Row { scenario, ours: ours_measured, peer: peer_measured });
    }
    let limits = limits(options.smoke).await?;
    let run = Run {
        pinned,
        backends,
        peer_missing,
        ours_rss_kib: ours.process.peak_rss_kib(),
        peer_rss_kib: peer.as_ref().map(|p| p.process.peak_rss_kib()),
        rows,
        limits,
        options,
    };
    report::write(&run)
}

async fn measure(scenario: Scenario, peer: &peers::Peer, load: Load) -> anyhow::Result<Option<Measured>> {
    let (server_before, generator_before) = (peer.process.cpu_seconds(), own_cpu_seconds());
    let outcome =
        scenarios::run(scenario, peer, load).await.with_context(|| format!("{}: {}", peer.name, scenario.name()))?;
    let (server_cpu, generator_cpu) =
        (peer.process.cpu_seconds() - server_before, own_cpu_seconds() - generator_before);
    let peak_rss_kib = peer.process.peak_rss_kib();
    Ok(outcome.map(|outcome| Measured { outcome, server_cpu, generator_cpu, peak_rss_kib }))
}

/// The single-core limits the figures are read against, measured on this core.
async fn limits(smoke: bool) -> anyhow::Result<Limits> {
    let budget = Duration::from_secs_f64(if smoke { 0.2 } else { 3.0 });
    let (key, _) = oidc_core::SigningKey::generate(oidc_core::SigningAlgorithm::RS256)?;
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:8080/test", "sub": "x".repeat(43), "aud": "demo-client", "azp": "demo-client",
        "exp": 1_900_000_000, "iat": 1_900_000_000, "auth_time": 1_900_000_000, "nonce": "n".repeat(43),
        "acr": "normal", "amr": ["pwd"], "at_hash": "a".repeat(22),
    });
    let rs256_per_second = per_second(budget, || key.sign("JWT", &claims).map(drop).map_err(anyhow::Error::from))?;
    let hashing = server::Config::embedded(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).accounts.hashing();
    let argon2 = format!("m={} KiB, t={}, p={}", hashing.memory_kib, hashing.iterations, hashing.parallelism);
    let hasher = account_service::PasswordHasher::new(hashing)?;
    let argon2_per_second = per_second(budget, || {
        hasher.hash("Korrekt Pferd Batterie Heftklammer").map(drop).map_err(anyhow::Error::from)
    })?;
    Ok(Limits { rs256_per_second, argon2_per_second, argon2 })
}

fn per_second(budget: Duration, mut operation: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let started = std::time::Instant::now();
    let mut count = 0u32;
    while count == 0 || started.elapsed() < budget {
        operation()?;
        count += 1;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}
