//! The fault suite: two real server processes on one PostgreSQL and one Redis of their own, under
//! load (client credentials, citizens' refresh chains with userinfo, `prompt=none`
//! re-authentication, new registrations), while faults are injected one after another: Redis
//! stopped, hung (SIGSTOP), made to refuse writes, wiped; PostgreSQL cut off and hung (through
//! a TCP fault proxy in front of CI's server); a node killed with SIGKILL.
//!
//! Per fault it asserts: no refresh family lost, no acknowledged registration lost, no 500 and
//! no answer slower than the request deadline (plus slack), `prompt=none` never says
//! `login_required` for a session that survives the fault, readiness names the failing part
//! during the fault and is back within the recovery bound after it. It prints one table row per
//! fault on stderr. `FAULT_PHASE_SECONDS` sets how long each fault lasts (3 s by default;
//! `just faults` runs 30 s).
//!
//! A test binary of its own: cargo runs test binaries one after another, so no other test
//! competes for the CPU while this one measures answer times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use storage::testing::{TestDatabase, backend_url, skip};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    sync::watch,
};

#[path = "process/mod.rs"]
#[allow(dead_code, reason = "shared by two test binaries, each uses a part")]
mod process;

use process::{Node, free_port};

#[path = "journey/mod.rs"]
#[allow(dead_code, reason = "shared by two test binaries, each uses a part")]
mod journey;

use journey::{CLIENT, Citizen, PASSWORD, SECRET, authorize_url, browser, citizen, csrf, redeem, register};

/// The suite's request deadline; every answer must come within it plus this slack.
const DEADLINE_MS: u64 = 2000;
const SLACK: Duration = Duration::from_millis(1000);
/// How soon after a fault ends both nodes must answer again.
const RECOVERY_BOUND: Duration = Duration::from_secs(2);

async fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().await.unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// A redis-server of the suite's own (no persistence: a stop loses everything, as a wipe does).
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server");
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.cli(&["PING"]).await != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        redis
    }

    async fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().await.unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    async fn stop(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// What the fault proxy does with PostgreSQL's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    /// Connections are refused and the open ones cut: the server is down.
    Down,
    /// Nothing is forwarded, nothing is closed: the server hangs.
    Hang,
}

/// A TCP proxy in front of PostgreSQL that the suite controls.
struct FaultProxy {
    port: u16,
    mode: watch::Sender<Mode>,
}

impl FaultProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Pass);
        let modes = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *modes.borrow() == Mode::Down {
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, modes.subscribe()));
                tokio::spawn(forward(server_read, client_write, modes.subscribe()));
            }
        });
        Self { port, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Copies one direction chunk by chunk; holds a chunk while the mode is `Hang`, drops both
/// halves when it turns `Down`.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = mode.wait_for(|m| *m == Mode::Down) => return,
        };
        let Ok(n @ 1..) = read else { return };
        match mode.wait_for(|m| *m != Mode::Hang).await.map(|m| *m) {
            Ok(Mode::Pass) => {}
            _ => return,
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// How one answer counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    /// 503, or a redirect with `temporarily_unavailable`: the right answer during an outage.
    Unavailable,
    /// The node was killed: the connection was refused (a proxy would try the other node).
    NodeDown,
    /// Anything else: a 500, a hang past the deadline, an unexpected answer.
    Wrong,
}

/// What the load saw during one phase.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<(&'static str, Outcome), u64>,
    wrong: Vec<String>,
    families_lost: u64,
    false_logouts: u64,
}

type Shared = Arc<Mutex<Tally>>;

fn note(tally: &Shared, what: &'static str, outcome: Outcome, detail: impl FnOnce() -> String) {
    let mut tally = tally.lock().unwrap();
    *tally.counts.entry((what, outcome)).or_default() += 1;
    if outcome == Outcome::Wrong && tally.wrong.len() < 20 {
        let detail = detail();
        tally.wrong.push(format!("{what}: {detail}"));
    }
}

/// Classifies an answer by status and time; `expected` is what a healthy node answers.
fn judge(status: StatusCode, took: Duration, expected: &[StatusCode]) -> Outcome {
    if took > Duration::from_millis(DEADLINE_MS) + SLACK {
        Outcome::Wrong
    } else if expected.contains(&status) {
        Outcome::Ok
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        Outcome::Unavailable
    } else {
        Outcome::Wrong
    }
}

/// A request that got no HTTP answer: refused, or cut when its node was killed. Counted apart
/// (and allowed only in the node-kill phase); a time-out is wrong anywhere.
fn transport(error: &reqwest::Error, took: Duration) -> Outcome {
    if !error.is_timeout() && took < Duration::from_millis(DEADLINE_MS) { Outcome::NodeDown } else { Outcome::Wrong }
}

/// A citizen with a live session (its browser) and a refresh token.
/// The nodes' base URLs (the test environment's issuer path), picked in turn as a round-robin
/// proxy would.
#[derive(Clone)]
struct Targets {
    bases: Arc<Vec<String>>,
}

impl Targets {
    fn pick(&self, i: u64) -> &str {
        &self.bases[usize::try_from(i).unwrap_or(0) % self.bases.len()]
    }
}

/// Client credentials against alternating nodes.
async fn client_credentials_load(targets: Targets, tally: Shared, stop: Arc<AtomicBool>) {
    let http = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut i = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let started = Instant::now();
        let sent = http
            .post(format!("{}/token", targets.pick(i)))
            .basic_auth(CLIENT, Some(SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        let took = started.elapsed();
        match sent {
            Ok(response) => {
                let status = response.status();
                let outcome = judge(status, took, &[StatusCode::OK]);
                let body = response.text().await.unwrap_or_default();
                let outcome = match outcome {
                    Outcome::Unavailable if !body.contains("temporarily_unavailable") => Outcome::Wrong,
                    other => other,
                };
                note(&tally, "client_credentials", outcome, || format!("{status} in {took:?}: {body}"));
            }
            Err(e) => note(&tally, "client_credentials", transport(&e, took), || format!("{e} in {took:?}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A citizen's refresh chain with a userinfo call after each refresh. A refresh the server
/// could not complete leaves the token usable: it is presented again until it works. An
/// `invalid_grant` is a lost family.
async fn refresh_chain(targets: Targets, who: Arc<Citizen>, tally: Shared, stop: Arc<AtomicBool>) {
    let http = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut i = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let base = targets.pick(i).to_owned();
        let token = who.refresh.lock().unwrap().clone();
        let started = Instant::now();
        let sent = http
            .post(format!("{base}/token"))
            .basic_auth(CLIENT, Some(SECRET))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
            .send()
            .await;
        let took = started.elapsed();
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                note(&tally, "refresh", transport(&e, took), || format!("{e} in {took:?}"));
                continue;
            }
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if status == StatusCode::BAD_REQUEST && body["error"] == "invalid_grant" {
            tally.lock().unwrap().families_lost += 1;
            note(&tally, "refresh", Outcome::Wrong, || format!("family of {} lost: {body}", who.username));
            return;
        }
        note(&tally, "refresh", judge(status, took, &[StatusCode::OK]), || format!("{status} in {took:?}: {body}"));
        let (Some(next), Some(access)) = (body["refresh_token"].as_str(), body["access_token"].as_str()) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        *who.refresh.lock().unwrap() = next.to_owned();
        let started = Instant::now();
        match http.get(format!("{}/userinfo", targets.pick(i + 1))).bearer_auth(access).send().await {
            Ok(response) => {
                let status = response.status();
                // A wipe of the ephemeral store loses live access tokens: 401, as documented.
                let outcome = judge(status, started.elapsed(), &[StatusCode::OK, StatusCode::UNAUTHORIZED]);
                note(&tally, "userinfo", outcome, || format!("{status}"));
            }
            Err(e) => note(&tally, "userinfo", transport(&e, started.elapsed()), || e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Silent re-authentication in the citizen's browser: a code, or `temporarily_unavailable`
/// during an outage — never `login_required` while the session lives.
async fn silent_login(targets: Targets, who: Arc<Citizen>, tally: Shared, stop: Arc<AtomicBool>) {
    let mut i = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let started = Instant::now();
        match who.browser.get(authorize_url(targets.pick(i), true)).send().await {
            Ok(response) => {
                let took = started.elapsed();
                let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default();
                let outcome = if took > Duration::from_millis(DEADLINE_MS) + SLACK {
                    Outcome::Wrong
                } else if location.contains("code=") {
                    Outcome::Ok
                } else if location.contains("error=temporarily_unavailable") {
                    Outcome::Unavailable
                } else if location.contains("error=login_required") {
                    tally.lock().unwrap().false_logouts += 1;
                    Outcome::Wrong
                } else if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                    Outcome::Unavailable
                } else {
                    Outcome::Wrong
                };
                let status = response.status();
                note(&tally, "prompt=none", outcome, || format!("{status} {location} in {took:?}"));
            }
            Err(e) => note(&tally, "prompt=none", transport(&e, started.elapsed()), || e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// New registrations; the acknowledged ones are checked in the database at the end.
async fn registrations(
    targets: Targets,
    phase: &'static str,
    tally: Shared,
    acknowledged: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let mut i = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let username = format!("{}.{i}", phase.replace(' ', "."));
        let started = Instant::now();
        let result = register(&browser(), targets.pick(i), &username, &format!("{username}@example.de")).await;
        let took = started.elapsed();
        match result {
            Ok(true) => {
                acknowledged.lock().unwrap().push(username);
                // Four requests, each within the deadline.
                let outcome =
                    if took > 4 * (Duration::from_millis(DEADLINE_MS) + SLACK) { Outcome::Wrong } else { Outcome::Ok };
                note(&tally, "registration", outcome, || format!("took {took:?}"));
            }
            Err(status) if status == "503 Service Unavailable" => {
                note(&tally, "registration", Outcome::Unavailable, String::new);
            }
            Err(e) if e.contains("error sending request") || e.contains("connect") => {
                note(&tally, "registration", Outcome::NodeDown, String::new);
            }
            other => note(&tally, "registration", Outcome::Wrong, || format!("{other:?}")),
        }
    }
}

/// `/readyz` of `base`: its status and which checks failed.
async fn readiness(base: &str) -> (StatusCode, Vec<String>) {
    let Ok(response) = Client::new().get(format!("{base}/readyz")).timeout(Duration::from_secs(5)).send().await else {
        return (StatusCode::BAD_GATEWAY, vec!["no answer".into()]);
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    let failed = ["database", "ephemeral_store"]
        .into_iter()
        .filter(|part| body["checks"][part]["status"] != "ok")
        .map(str::to_owned)
        .collect();
    (status, failed)
}

/// Waits until every node is ready and issues a client-credentials token; how long it took.
async fn recovery(nodes: &[String]) -> Duration {
    let started = Instant::now();
    let http = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    loop {
        let mut all = true;
        for base in nodes {
            let ready = readiness(base).await.0 == StatusCode::OK;
            let token = http
                .post(format!("{base}/test/token"))
                .basic_auth(CLIENT, Some(SECRET))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            all &= ready && token;
        }
        if all || started.elapsed() > Duration::from_secs(30) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The faults, in order. `sessions_survive`: whether a citizen's session outlives it.
#[derive(Debug, Clone, Copy)]
enum Fault {
    RedisStop,
    RedisHang,
    RedisReadOnly,
    RedisWipe,
    PostgresStop,
    PostgresHang,
    NodeKill,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::RedisStop => "redis stop",
            Fault::RedisHang => "redis hang",
            Fault::RedisReadOnly => "redis read-only",
            Fault::RedisWipe => "redis wipe",
            Fault::PostgresStop => "postgres stop",
            Fault::PostgresHang => "postgres hang",
            Fault::NodeKill => "node kill",
        }
    }

    fn sessions_survive(self) -> bool {
        !matches!(self, Fault::RedisStop | Fault::RedisWipe)
    }

    /// The readiness check that must fail while the fault lasts.
    fn failing_check(self) -> Option<&'static str> {
        match self {
            Fault::RedisStop | Fault::RedisHang | Fault::RedisReadOnly => Some("ephemeral_store"),
            Fault::PostgresStop | Fault::PostgresHang => Some("database"),
            Fault::RedisWipe | Fault::NodeKill => None,
        }
    }
}

struct World {
    redis: Redis,
    proxy: FaultProxy,
    nodes: Vec<Node>,
    citizens: Vec<Arc<Citizen>>,
}

impl World {
    fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }

    async fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::RedisStop => self.redis.stop().await,
            Fault::RedisHang => signal(self.redis.pid(), "STOP").await,
            Fault::RedisReadOnly => {
                assert_eq!(self.redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await, "OK");
                assert_eq!(self.redis.cli(&["CONFIG", "SET", "maxmemory", "1"]).await, "OK");
            }
            Fault::RedisWipe => assert_eq!(self.redis.cli(&["FLUSHALL"]).await, "OK"),
            Fault::PostgresStop => self.proxy.set(Mode::Down),
            Fault::PostgresHang => self.proxy.set(Mode::Hang),
            Fault::NodeKill => {
                let node = &mut self.nodes[1];
                node.child.start_kill().unwrap();
                node.child.wait().await.unwrap();
            }
        }
    }

    async fn remove(&mut self, fault: Fault) {
        match fault {
            Fault::RedisStop => self.redis = Redis::start(self.redis.port).await,
            Fault::RedisHang => signal(self.redis.pid(), "CONT").await,
            Fault::RedisReadOnly => assert_eq!(self.redis.cli(&["CONFIG", "SET", "maxmemory", "0"]).await, "OK"),
            Fault::RedisWipe => {}
            Fault::PostgresStop | Fault::PostgresHang => self.proxy.set(Mode::Pass),
            Fault::NodeKill => {
                let old = &self.nodes[1];
                let (env, port, log) = (old.env.clone(), old.port(), old.log.clone());
                self.nodes[1] = Node::start(env, port, log).await;
            }
        }
    }

    /// Citizens whose sessions or tokens a fault cost log in again (outside the measured phase).
    async fn renew_sessions(&mut self) {
        let issuer = format!("{}/test", self.nodes[0].base);
        for (n, who) in self.citizens.iter_mut().enumerate() {
            let silent = who.browser.get(authorize_url(&issuer, true)).send().await.unwrap();
            let location = silent.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default();
            if location.contains("login_required") {
                let login = who.browser.get(format!("{issuer}/anmelden")).send().await.unwrap().text().await.unwrap();
                let form = [
                    ("csrf", csrf(&login)),
                    ("username", who.username.clone()),
                    ("password", PASSWORD.into()),
                    ("return_to", "/konto".into()),
                ];
                let response = who.browser.post(format!("{issuer}/anmelden")).form(&form).send().await.unwrap();
                assert!(response.url().path().ends_with("/konto"), "citizen {n} logs in again");
            }
        }
    }
}

/// One line of the report.
struct Row {
    fault: &'static str,
    requests: u64,
    by_outcome: BTreeMap<Outcome, u64>,
    recovered: Duration,
    families_lost: u64,
    registrations_lost: usize,
    false_logouts: u64,
}

async fn phase(world: &mut World, fault: Fault, seconds: u64, database_url: &str) -> (Row, Vec<String>) {
    let tally: Shared = Arc::default();
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let targets = Targets { bases: Arc::new(world.nodes.iter().map(|n| format!("{}/test", n.base)).collect()) };
    let mut load = Vec::new();
    for _ in 0..2 {
        load.push(tokio::spawn(client_credentials_load(targets.clone(), tally.clone(), stop.clone())));
    }
    for who in &world.citizens {
        load.push(tokio::spawn(refresh_chain(targets.clone(), who.clone(), tally.clone(), stop.clone())));
        if fault.sessions_survive() {
            load.push(tokio::spawn(silent_login(targets.clone(), who.clone(), tally.clone(), stop.clone())));
        }
    }
    let registering =
        tokio::spawn(registrations(targets.clone(), fault.name(), tally.clone(), acknowledged.clone(), stop.clone()));
    let mut problems = Vec::new();
    // A code issued before the fault, redeemed during it and again after it.
    let issuer = format!("{}/test", world.nodes[0].base);
    let code = match &world.citizens[0].browser.get(authorize_url(&issuer, true)).send().await {
        Ok(response) => response
            .headers()
            .get("location")
            .and_then(|l| url::Url::parse(l.to_str().ok()?).ok())
            .and_then(|l| l.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned())),
        Err(_) => None,
    };
    // A moment of health, the fault, then recovery under the same load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.inject(fault).await;
    tokio::time::sleep(Duration::from_secs(seconds) / 2).await;
    let redeemed_during = match (&code, fault) {
        (Some(code), Fault::PostgresStop | Fault::RedisReadOnly) => {
            Some(redeem(code, &issuer).await.map(|r| r.status()))
        }
        _ => None,
    };
    if let Some(check) = fault.failing_check() {
        for base in world.bases() {
            let (status, failed) = readiness(&base).await;
            if status != StatusCode::SERVICE_UNAVAILABLE || failed != [check] {
                problems.push(format!("{}: readiness of {base} said {status} {failed:?}, not {check}", fault.name()));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(seconds) / 2).await;
    world.remove(fault).await;
    let recovered = recovery(&world.bases()).await;
    if recovered > RECOVERY_BOUND {
        problems.push(format!("{}: recovery took {recovered:?}", fault.name()));
    }
    // A redemption that failed on our side left the code redeemable.
    if let (Some(during), Some(code)) = (redeemed_during, code) {
        let after = redeem(&code, &issuer).await.map(|r| r.status());
        if during.as_ref().ok() != Some(&StatusCode::SERVICE_UNAVAILABLE)
            || after.as_ref().ok() != Some(&StatusCode::OK)
        {
            problems.push(format!("{}: code redeemed during the fault {during:?}, after it {after:?}", fault.name()));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    registering.await.unwrap();

    let database = storage::Database::connect(database_url).await.unwrap();
    let accounts = database.accounts();
    let mut registrations_lost = 0;
    let acknowledged = acknowledged.lock().unwrap().clone();
    for username in acknowledged {
        use account_service::AccountStore as _;
        if accounts.find_by_username(oidc_core::Environment::Test, &username).await.unwrap().is_none() {
            registrations_lost += 1;
            problems.push(format!("{}: acknowledged registration {username} is not stored", fault.name()));
        }
    }
    database.close().await.unwrap();

    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    problems.extend(tally.wrong.iter().map(|w| format!("{}: {w}", fault.name())));
    let mut by_outcome = BTreeMap::new();
    for ((_, outcome), count) in &tally.counts {
        *by_outcome.entry(*outcome).or_default() += count;
    }
    let unanswered = by_outcome.get(&Outcome::NodeDown).copied().unwrap_or(0);
    if unanswered > 0 && !matches!(fault, Fault::NodeKill) {
        problems.push(format!("{}: {unanswered} requests got no answer though no node was killed", fault.name()));
    }
    let row = Row {
        fault: fault.name(),
        requests: by_outcome.values().sum(),
        by_outcome,
        recovered,
        families_lost: tally.families_lost,
        registrations_lost,
        false_logouts: tally.false_logouts,
    };
    (row, problems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_dependency_faults_nothing_is_lost_every_answer_is_fast_and_nodes_recover() {
    let test = "under_dependency_faults_nothing_is_lost_every_answer_is_fast_and_nodes_recover";
    let Some(server_url) = backend_url("TEST_DATABASE_URL", test) else { return };
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        skip(test, "redis-server is not installed (Debian's redis-server)");
        return;
    }
    let seconds: u64 = std::env::var("FAULT_PHASE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let database = TestDatabase::postgres(&server_url).await.unwrap();
    let upstream: SocketAddr = {
        let url = url::Url::parse(&server_url).unwrap();
        let host = url.host_str().unwrap_or("127.0.0.1");
        tokio::net::lookup_host((host, url.port().unwrap_or(5432))).await.unwrap().next().unwrap()
    };
    let proxy = FaultProxy::start(upstream).await;
    let through_proxy = {
        let mut url = url::Url::parse(&database.url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(proxy.port)).unwrap();
        url.to_string()
    };
    let redis = Redis::start(free_port()).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let kek = oidc_core::KeyEncryptionKey::generate().to_base64();
    let ports = [free_port(), free_port()];
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let env: Vec<(String, String)> = [
        ("SERVICEKONTO_ENVIRONMENTS__PRODUCTION__ISSUER", issuer.clone()),
        ("SERVICEKONTO_ENVIRONMENTS__TEST__ISSUER", format!("{issuer}/test")),
        ("SERVICEKONTO_DATABASE__URL", through_proxy),
        ("SERVICEKONTO_REDIS__URL", format!("redis://127.0.0.1:{}", redis.port)),
        ("SERVICEKONTO_KEYS__KEK", kek),
        ("SERVICEKONTO_MAIL__OUTBOX_DIR", outbox.display().to_string()),
        ("SERVICEKONTO_DEPENDENCIES__TIMEOUT_MS", "1000".into()),
        ("SERVICEKONTO_DEPENDENCIES__REQUEST_DEADLINE_MS", DEADLINE_MS.to_string()),
        ("SERVICEKONTO_DEPENDENCIES__RETRY_AFTER_SECONDS", "1".into()),
        ("SERVICEKONTO_DEPENDENCIES__STARTUP_WAIT_SECONDS", "30".into()),
        ("SERVICEKONTO_TOKENS__REFRESH_REUSE_GRACE_SECONDS", "30".into()),
        ("SERVICEKONTO_ACCOUNTS__ARGON2_MEMORY_KIB", "1024".into()),
        ("SERVICEKONTO_ACCOUNTS__ARGON2_ITERATIONS", "1".into()),
        // Every registration of the load comes from one address.
        ("SERVICEKONTO_ACCOUNTS__USERNAME_CHECKS_PER_HOUR", "100000".into()),
        ("SERVICEKONTO_LOG__FILTER", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let first = Node::start(env.clone(), ports[0], dir.path().join("node-a.log")).await;
    let second = Node::start(env, ports[1], dir.path().join("node-b.log")).await;
    let issuer_path = format!("{}/test", first.base);
    let mut citizens = Vec::new();
    for n in 0..4 {
        citizens.push(Arc::new(citizen(&issuer_path, &outbox, n).await));
    }
    let mut world = World { redis, proxy, nodes: vec![first, second], citizens };

    let faults = [
        Fault::RedisHang,
        Fault::RedisReadOnly,
        Fault::PostgresStop,
        Fault::PostgresHang,
        Fault::NodeKill,
        Fault::RedisWipe,
        Fault::RedisStop,
    ];
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for fault in faults {
        world.renew_sessions().await;
        let (row, found) = phase(&mut world, fault, seconds, &database.url).await;
        rows.push(row);
        problems.extend(found);
    }

    let mut report = format!(
        "\nfault suite ({seconds} s per fault, deadline {DEADLINE_MS} ms)\n{:<16} {:>8} {:>6} {:>6} {:>9} {:>6} {:>10} {:>8} {:>8} {:>8}\n",
        "fault", "requests", "ok", "503", "node-down", "wrong", "recover", "families", "accounts", "logouts"
    );
    for row in &rows {
        let count = |o: Outcome| row.by_outcome.get(&o).copied().unwrap_or(0);
        report.push_str(&format!(
            "{:<16} {:>8} {:>6} {:>6} {:>9} {:>6} {:>8}ms {:>8} {:>8} {:>8}\n",
            row.fault,
            row.requests,
            count(Outcome::Ok),
            count(Outcome::Unavailable),
            count(Outcome::NodeDown),
            count(Outcome::Wrong),
            row.recovered.as_millis(),
            row.families_lost,
            row.registrations_lost,
            row.false_logouts,
        ));
    }
    // Every outage was logged and counted under its dependency's name.
    let metrics = reqwest::get(format!("{}/metrics", world.nodes[0].base)).await.unwrap().text().await.unwrap();
    for dependency in ["postgres", "redis"] {
        let counted = format!("servicekonto_dependency_errors_total{{dependency=\"{dependency}\"");
        if !metrics.contains(&counted) {
            problems.push(format!("no {counted} in the metrics"));
        }
    }
    // Straight to stderr: libtest would swallow the table of a passing test.
    let _ = std::io::stderr().write_all(report.as_bytes());
    if !problems.is_empty() {
        for node in &world.nodes {
            let _ = writeln!(std::io::stderr(), "--- log of {}:\n{}", node.base, node.log_tail());
            let _ = writeln!(std::io::stderr(), "--- its refresh lines:\n{}", node.log_lines_with("refresh"));
        }
    }
    drop(world);
    database.drop_now().await.unwrap();
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
