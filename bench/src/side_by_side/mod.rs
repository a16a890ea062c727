//! `just bench`: servicekonto and panva's node `oidc-provider` under the same load in one run.
//!
//! Both servers run as child processes pinned to one core (when the machine has two), the load
//! generator to the other; each scenario first warms both up unmeasured (`--warmup`: the peer's
//! JIT compiler optimises its hot paths during the first seconds), then runs in rounds against
//! ours and the peer in the order ours, peer, peer, ours, … (`--rounds`), so that drift of the
//! machine hits both alike. The report holds requests/s, p50, p99, errors, server CPU
//! per request, the generator's own CPU use, peak RSS and the ratio us/peer, and the issue's
//! targets as pass/miss lines; it is printed and written to `target/bench/side-by-side.{json,md}`.

mod peers;
mod raw_get;
mod report;
mod scaling;
mod scenarios;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
pub use peers::{ROLE_SERVICEKONTO, ROLE_VARIABLE};
use scenarios::{Load, Scenario};

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds per scenario and peer (over all rounds).
    pub seconds: f64,
    /// Each scenario's time split into this many windows per peer, taken in the order ours,
    /// peer, peer, ours, …: a machine whose speed drifts during the run (a shared host) then
    /// slows both alike instead of whichever ran second.
    pub rounds: u32,
    /// Seconds of unmeasured load per scenario and peer before the rounds: Node's JIT compiles
    /// the peer's hot paths during its first seconds, and a measurement should not pay for that.
    pub warmup: f64,
    /// Concurrent workers of the generator.
    pub concurrency: usize,
    /// A few seconds in all: proves the harness works, measures nothing worth reporting.
    pub smoke: bool,
    /// Where the report files go.
    pub out: PathBuf,
    /// Skip the peer (ours alone).
    pub without_peer: bool,
    /// Run only the scenarios whose name contains one of these (all when empty), e.g. for a
    /// profile of one scenario.
    pub only: Vec<String>,
    /// Instead of the scenarios: the SSO code flow at 1, 8, 32 and 128 concurrent clients.
    pub scaling: bool,
    /// Two of our nodes behind nginx against the peer in Node's cluster mode with two workers
    /// (needs `BENCH_DATABASE_URL` and `BENCH_REDIS_URL`: nodes share their state there).
    pub two_nodes: bool,
}

impl Options {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            seconds: 10.0,
            rounds: 2,
            warmup: 3.0,
            concurrency: 32,
            smoke: false,
            out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
            without_peer: false,
            only: Vec::new(),
            scaling: false,
            two_nodes: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("a value after {arg}"));
            match arg.as_str() {
                "--seconds" => options.seconds = value()?.parse()?,
                "--rounds" => options.rounds = value()?.parse()?,
                "--warmup" => options.warmup = value()?.parse()?,
                "--concurrency" => options.concurrency = value()?.parse()?,
                "--out" => options.out = PathBuf::from(value()?),
                "--smoke" => options.smoke = true,
                "--without-peer" => options.without_peer = true,
                "--only" => options.only.push(value()?),
                "--scaling" => options.scaling = true,
                "--two-nodes" => options.two_nodes = true,
                other => anyhow::bail!(
                    "unknown argument {other}; known: --seconds S, --rounds N, --warmup S, --concurrency C, --out DIR, --smoke, \
                     --without-peer, --only NAME, --scaling, --two-nodes"
                ),
            }
        }
        if options.smoke {
            options.seconds = options.seconds.min(1.0);
            options.concurrency = options.concurrency.min(4);
            options.rounds = options.rounds.min(2);
            options.warmup = options.warmup.min(0.2);
        }
        // Finite: an infinite duration would not fit a `Duration`.
        anyhow::ensure!(
            options.seconds.is_finite()
                && options.seconds > 0.0
                && options.concurrency > 0
                && options.rounds > 0
                && options.warmup.is_finite()
                && options.warmup >= 0.0,
            "--seconds, --rounds and --concurrency must be > 0, --warmup ≥ 0, and both times finite"
        );
        Ok(options)
    }
}

/// One scenario against one peer, all its rounds together. CPU is in `outcome.cpu`: counted
/// while the load ran, not while sessions and refresh chains were set up.
pub(crate) struct Measured {
    outcome: scenarios::Outcome,
    /// The server's peak RSS (KiB) so far, read after the scenario.
    peak_rss_kib: u64,
}

impl Measured {
    /// Two rounds as one.
    fn merge(self, later: Self) -> Self {
        let outcome = scenarios::Outcome {
            sample: self.outcome.sample.merge(later.outcome.sample),
            first_error: self.outcome.first_error.or(later.outcome.first_error),
            cpu: self.outcome.cpu.add(later.outcome.cpu),
        };
        Self { outcome, peak_rss_kib: later.peak_rss_kib.max(self.peak_rss_kib) }
    }
}

/// One row of the report.
pub(crate) struct Row {
    scenario: Scenario,
    ours: Option<Measured>,
    peer: Option<Measured>,
    /// For the static documents: nginx serving the same bytes (see `peers::start_static_floor`).
    floor: Option<Measured>,
}

/// Limits of the machine the figures are read against.
pub(crate) struct Limits {
    /// RS256 ID tokens per second on one core, built and signed by our own path.
    id_tokens_per_second: f64,
    /// Raw RS256 signatures per second over the same signing input with aws-lc and the parsed
    /// key held (what our path signs with).
    aws_lc_per_second: f64,
    /// RS256 (RSA-2048 PKCS#1 v1.5, SHA-256) signatures per second by `openssl speed`, when the
    /// `openssl` command is there.
    openssl_per_second: Option<f64>,
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
    /// Why the static documents were not also served by nginx, when they ran.
    floor_missing: Option<String>,
    rows: Vec<Row>,
    ours_rss_kib: u64,
    peer_rss_kib: Option<u64>,
    ours_idle_rss_kib: u64,
    peer_idle_rss_kib: Option<u64>,
    ours_idle_anon_kib: u64,
    peer_idle_anon_kib: Option<u64>,
    limits: Limits,
    /// Raw RS256 signatures per second (aws-lc, key held) measured right before and right after
    /// each of our SSO windows, when the SSO flow ran.
    sso_raw_rs256_per_second: Option<f64>,
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
    anyhow::ensure!(
        !options.two_nodes || (database.is_some() && redis.is_some()),
        "--two-nodes needs BENCH_DATABASE_URL and BENCH_REDIS_URL: the nodes share their state there"
    );
    let backends = format!(
        "{} + {} (oidc-provider on {}){}",
        if database.is_some() { "PostgreSQL" } else { "SQLite" },
        if redis.is_some() { "Redis" } else { "in-memory store" },
        if redis.is_some() { "Redis" } else { "its in-memory adapter" },
        if options.two_nodes {
            "; two servicekonto nodes behind nginx (one worker, kept-alive upstream connections) against \
             oidc-provider in Node's cluster mode with two workers, each side's processes together on one core"
        } else {
            ""
        },
    );
    eprintln!("starting servicekonto ({backends})…");
    let database_url = database.unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()));
    let ours = match (&redis, options.two_nodes) {
        (Some(redis), true) => {
            peers::start_servicekonto_two_nodes(dir.path(), server_cpu, &database_url, redis).await?
        }
        _ => peers::start_servicekonto(dir.path(), server_cpu, &database_url, redis.clone()).await?,
    };
    let (peer, peer_missing) = if options.without_peer {
        (None, Some("--without-peer".to_owned()))
    } else {
        // Not under --out: the installed package is reused across runs and by the smoke test.
        let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/peer");
        match peers::install_peer(&cache) {
            Err(reason) => (None, Some(reason)),
            Ok(()) => {
                eprintln!("starting oidc-provider…");
                let workers = if options.two_nodes { 2 } else { 1 };
                let peer =
                    peers::start_oidc_provider(&cache, dir.path(), server_cpu, redis.as_deref(), workers).await?;
                (Some(peer), None)
            }
        }
    };
    let duration = Duration::from_secs_f64(options.seconds);
    if options.scaling {
        let mut steps = Vec::new();
        let levels = if options.smoke { &scaling::CONCURRENCIES[..2] } else { &scaling::CONCURRENCIES[..] };
        for &concurrency in levels {
            eprintln!("SSO code flow with {concurrency} concurrent clients…");
            let load = Load { concurrency, duration };
            let [ours, peer, _] =
                measure_both(Scenario::SsoFlow, [Some(&ours), peer.as_ref(), None], load, &options, false).await?.0;
            let ours = ours.context("our SSO flow")?;
            steps.push(scaling::Step { concurrency, ours, peer });
        }
        // The refresh grant with the refresh-token table as it is, then with a million more.
        let load = Load { concurrency: options.concurrency, duration };
        let mut stored = Vec::new();
        for seeded in [0, if options.smoke { 1_000 } else { 1_000_000 }] {
            if seeded > 0 {
                eprintln!("storing {seeded} more refresh tokens…");
                scaling::store_refresh_tokens(&database_url, seeded).await?;
            }
            let measured = measure(Scenario::Refresh, &ours, load).await?.context("our refresh grant")?;
            stored.push(scaling::Stored { rows: scaling::refresh_token_rows(&database_url).await?, measured });
        }
        let heading = format!(
            "servicekonto on {backends}{}; {} s per step and peer in {} rounds after {} s of warm-up{}.",
            peer_missing.as_ref().map_or_else(String::new, |why| format!(", no peer ({why})")),
            options.seconds,
            options.rounds,
            options.warmup,
            if pinned { "; servers pinned to core 1, the generator to core 0" } else { "; not pinned" },
        );
        return scaling::write(&steps, &stored, &options.out, &heading);
    }
    let load = Load { concurrency: options.concurrency, duration };
    let mut rows = Vec::new();
    let chosen = |scenario: &Scenario| {
        options.only.is_empty() || options.only.iter().any(|name| scenario.name().contains(name.as_str()))
    };
    let statics = |scenario: &Scenario| matches!(scenario, Scenario::Discovery | Scenario::Jwks);
    let (floor, floor_missing) = if Scenario::ALL.iter().filter(|s| chosen(s)).any(statics) {
        eprintln!("starting nginx with the same static documents…");
        match peers::start_static_floor(server_cpu, &ours).await? {
            Ok(floor) => (Some(floor), None),
            Err(reason) => (None, Some(reason)),
        }
    } else {
        (None, None)
    };
    // The limits before and after the scenarios: the report reads them as their means, the
    // machine's state over the run (the SSO target also against the limit next to its windows).
    let limits_before = limits(options.smoke).await?;
    let mut sso_raw_rs256_per_second = None;
    for scenario in Scenario::ALL.into_iter().filter(chosen) {
        eprintln!("{}…", scenario.name());
        let floor = floor.as_ref().map(|(floor, _files)| floor).filter(|_| statics(&scenario));
        let ([ours_measured, peer_measured, floor_measured], raw_rs256) =
            measure_both(scenario, [Some(&ours), peer.as_ref(), floor], load, &options, true).await?;
        sso_raw_rs256_per_second = sso_raw_rs256_per_second.or(raw_rs256);
        rows.push(Row { scenario, ours: ours_measured, peer: peer_measured, floor: floor_measured });
    }
    let limits = limits_before.mean(&limits(options.smoke).await?);
    let run = Run {
        pinned,
        backends,
        peer_missing,
        floor_missing,
        ours_rss_kib: ours.peak_rss_kib(),
        peer_rss_kib: peer.as_ref().map(peers::Peer::peak_rss_kib),
        ours_idle_rss_kib: ours.idle_rss_kib,
        peer_idle_rss_kib: peer.as_ref().map(|p| p.idle_rss_kib),
        ours_idle_anon_kib: ours.idle_anon_kib,
        peer_idle_anon_kib: peer.as_ref().map(|p| p.idle_anon_kib),
        rows,
        limits,
        sso_raw_rs256_per_second,
        options,
    };
    report::write(&run)
}

/// `scenario` against each of `sides` (ours, the peer, nginx's static files) that is there:
/// first `options.warmup` seconds each, not measured, then `options.rounds` windows each of
/// `load.duration / rounds`, in the order ours, peer, nginx, nginx, peer, ours, ours, …
///
/// For the SSO flow, with `limit_in_turn`, also the raw RS256 rate right before and right after
/// each of our windows: the flow is read against that limit, and this machine's speed moves by
/// a sixth within seconds, so a limit measured minutes away (at the bench's start and end)
/// would measure the drift as much as the flow.
async fn measure_both(
    scenario: Scenario,
    sides: [Option<&peers::Peer>; 3],
    load: Load,
    options: &Options,
    limit_in_turn: bool,
) -> anyhow::Result<([Option<Measured>; 3], Option<f64>)> {
    let raw = (limit_in_turn && scenario == Scenario::SsoFlow).then(IdTokenFixture::new).transpose()?;
    let raw_budget = Duration::from_secs_f64(if options.smoke { 0.1 } else { 1.0 });
    let mut raw_rates = Vec::new();
    if options.warmup > 0.0 {
        let warmup = Load { duration: Duration::from_secs_f64(options.warmup), ..load };
        for side in sides.into_iter().flatten() {
            measure(scenario, side, warmup).await?;
        }
    }
    let window = Load { duration: load.duration / options.rounds, ..load };
    let mut measured: [Option<Measured>; 3] = [None, None, None];
    for round in 0..options.rounds {
        for i in if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] } {
            let Some(side) = sides[i] else { continue };
            let raw = raw.as_ref().filter(|_| i == 0);
            if let Some(fixture) = raw {
                raw_rates.push(per_second(raw_budget, || fixture.sign_raw())?);
            }
            let window = measure(scenario, side, window).await?;
            if let Some(fixture) = raw {
                raw_rates.push(per_second(raw_budget, || fixture.sign_raw())?);
            }
            let Some(window) = window else { continue };
            measured[i] = Some(match measured[i].take() {
                Some(earlier) => earlier.merge(window),
                None => window,
            });
        }
    }
    let raw_rate = (!raw_rates.is_empty()).then(|| raw_rates.iter().sum::<f64>() / raw_rates.len() as f64);
    Ok((measured, raw_rate))
}

/// An RS256 key and an ID token's claims like the bench's, with the token's signing input.
struct IdTokenFixture {
    key: oidc_core::SigningKey,
    claims: serde_json::Value,
    signing_input: String,
}

impl IdTokenFixture {
    fn new() -> anyhow::Result<Self> {
        let (key, _) = oidc_core::SigningKey::generate(oidc_core::SigningAlgorithm::RS256)?;
        let claims = serde_json::json!({
            "iss": "http://127.0.0.1:8080/test", "sub": "x".repeat(43), "aud": "demo-client", "azp": "demo-client",
            "exp": 1_900_000_000, "iat": 1_900_000_000, "auth_time": 1_900_000_000, "nonce": "n".repeat(43),
            "acr": "normal", "amr": ["pwd"], "at_hash": "a".repeat(22),
        });
        let token = key.sign("JWT", &claims)?;
        let signing_input = token.rsplit_once('.').map(|(input, _)| input.to_owned()).unwrap_or_default();
        Ok(Self { key, claims, signing_input })
    }

    /// Our ID token: claims, header, signature.
    fn sign_id_token(&self) -> anyhow::Result<()> {
        self.key.sign("JWT", &self.claims).map(drop).map_err(anyhow::Error::from)
    }

    /// The raw signature over the same signing input.
    fn sign_raw(&self) -> anyhow::Result<()> {
        self.key.sign_raw(self.signing_input.as_bytes()).map(drop).map_err(anyhow::Error::from)
    }
}

async fn measure(scenario: Scenario, peer: &peers::Peer, load: Load) -> anyhow::Result<Option<Measured>> {
    let outcome =
        scenarios::run(scenario, peer, load).await.with_context(|| format!("{}: {}", peer.name, scenario.name()))?;
    Ok(outcome.map(|outcome| Measured { outcome, peak_rss_kib: peer.peak_rss_kib() }))
}

/// The single-core limits the figures are read against, measured on this core.
async fn limits(smoke: bool) -> anyhow::Result<Limits> {
    let budget = Duration::from_secs_f64(if smoke { 0.2 } else { 3.0 });
    let fixture = IdTokenFixture::new()?;
    // Our ID token against the raw signature it contains: slices taken in turn, so that the
    // machine's drift does not decide which of the two looks dearer.
    let (id_tokens_per_second, aws_lc_per_second) =
        per_second_in_turn(budget, || fixture.sign_id_token(), || fixture.sign_raw())?;
    let openssl_per_second = openssl_rs256_per_second(budget);
    let hashing = server::Config::embedded(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).accounts.hashing();
    let argon2 = format!("m={} KiB, t={}, p={}", hashing.memory_kib, hashing.iterations, hashing.parallelism);
    let hasher = account_service::PasswordHasher::new(hashing)?;
    let argon2_per_second = per_second(budget, || {
        hasher.hash("Korrekt Pferd Batterie Heftklammer").map(drop).map_err(anyhow::Error::from)
    })?;
    Ok(Limits { id_tokens_per_second, aws_lc_per_second, openssl_per_second, argon2_per_second, argon2 })
}

impl Limits {
    /// The means of two measurements (before and after the scenarios).
    fn mean(&self, later: &Self) -> Self {
        let mean = |a: f64, b: f64| f64::midpoint(a, b);
        Self {
            id_tokens_per_second: mean(self.id_tokens_per_second, later.id_tokens_per_second),
            aws_lc_per_second: mean(self.aws_lc_per_second, later.aws_lc_per_second),
            openssl_per_second: match (self.openssl_per_second, later.openssl_per_second) {
                (Some(a), Some(b)) => Some(mean(a, b)),
                (a, b) => a.or(b),
            },
            argon2_per_second: mean(self.argon2_per_second, later.argon2_per_second),
            argon2: self.argon2.clone(),
        }
    }

    /// The machine's RS256 limit on one core: the best implementation measured.
    pub(crate) fn rs256_per_second(&self) -> f64 {
        self.openssl_per_second.unwrap_or(0.0).max(self.aws_lc_per_second)
    }

    /// The machine's RS256 limit at the moment aws-lc signed `raw_per_second` raw signatures: that
    /// rate, times the lead of the best implementation over aws-lc in these measurements
    /// (`openssl speed` runs for seconds, too long to take in turn with the flow's windows).
    pub(crate) fn rs256_per_second_at(&self, raw_per_second: f64) -> f64 {
        raw_per_second * (self.rs256_per_second() / self.aws_lc_per_second).max(1.0)
    }
}

/// RSA-2048 signatures per second by `openssl speed` on this core (it inherits the pinning);
/// `None` without the command or when its output is not understood.
fn openssl_rs256_per_second(budget: Duration) -> Option<f64> {
    let seconds = budget.as_secs().max(1).to_string();
    let output = std::process::Command::new("openssl")
        .args(["speed", "-mr", "-elapsed", "-seconds", &seconds, "rsa2048"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    parse_openssl_speed(&String::from_utf8_lossy(&output.stdout))
}

/// The signatures per second from `openssl speed -mr rsa2048`: the line `+F2:<n>:2048:<sign>:<verify>`,
/// where OpenSSL 3 gives operations per second (older releases gave seconds per operation).
fn parse_openssl_speed(output: &str) -> Option<f64> {
    let line = output.lines().find(|line| line.starts_with("+F2:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    if fields.get(2) != Some(&"2048") {
        return None;
    }
    let sign: f64 = fields.get(3)?.parse().ok()?;
    match sign {
        s if s >= 1.0 => Some(s),
        s if s > 0.0 => Some(1.0 / s),
        _ => None,
    }
}

/// The rates of `first` and `second`, each run for `budget` in all, in alternating slices of
/// 50 ms.
fn per_second_in_turn(
    budget: Duration,
    mut first: impl FnMut() -> anyhow::Result<()>,
    mut second: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    const SLICE: Duration = Duration::from_millis(50);
    let (mut counts, mut spent) = ([0u32; 2], [Duration::ZERO; 2]);
    while spent[0] < budget || counts[0] == 0 || counts[1] == 0 {
        for (i, operation) in
            [&mut first as &mut dyn FnMut() -> anyhow::Result<()>, &mut second].into_iter().enumerate()
        {
            let started = std::time::Instant::now();
            while counts[i] == 0 || started.elapsed() < SLICE {
                operation()?;
                counts[i] += 1;
            }
            spent[i] += started.elapsed();
        }
    }
    let rate = |i: usize| f64::from(counts[i]) / spent[i].as_secs_f64();
    Ok((rate(0), rate(1)))
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

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, time::Duration};

    use super::{Options, parse_openssl_speed, per_second_in_turn};

    #[test]
    fn times_that_cannot_be_run_are_refused_not_panicked_on() {
        let parse = |args: &[&str]| Options::parse(args.iter().map(|a| (*a).to_owned()));
        for args in
            [["--seconds", "inf"], ["--seconds", "0"], ["--warmup", "inf"], ["--warmup", "-1"], ["--rounds", "0"]]
        {
            assert!(parse(&args).is_err(), "{args:?} accepted");
        }
        let options = parse(&["--rounds", "4", "--warmup", "0"]).unwrap();
        assert_eq!((options.rounds, options.warmup), (4, 0.0));
    }

    #[test]
    fn two_operations_are_measured_in_alternating_slices() {
        let calls = RefCell::new(Vec::new());
        let (first, second) = per_second_in_turn(
            Duration::from_millis(200),
            || {
                calls.borrow_mut().push(1);
                std::thread::sleep(Duration::from_millis(1));
                Ok(())
            },
            || {
                calls.borrow_mut().push(2);
                std::thread::sleep(Duration::from_millis(1));
                Ok(())
            },
        )
        .unwrap();
        let calls = calls.into_inner();
        let switches = calls.windows(2).filter(|pair| pair[0] != pair[1]).count();
        assert!(switches >= 5, "at least three slices each, in turn: {switches} switches");
        assert_eq!(calls.first(), Some(&1));
        assert!(first > 0.0 && second > 0.0 && first.is_finite() && second.is_finite());
    }

    #[test]
    fn openssl_speed_lines_of_both_conventions_are_read() {
        let three = "+DTP:2048:private:rsa:3\n+F2:2:2048:4012.000000:69370.000000\n";
        assert_eq!(parse_openssl_speed(three), Some(4012.0));
        assert_eq!(parse_openssl_speed("+F2:0:2048:0.000250:0.000014"), Some(4000.0));
        assert_eq!(parse_openssl_speed("+F2:0:4096:0.001:0.0001"), None);
        assert_eq!(parse_openssl_speed("no figures"), None);
    }
}
