//! The deployment as an operator runs it: Debian's nginx with the repository's own
//! `deploy/nginx/servicekonto.conf.template` and a certificate from `deploy/tls/local-ca.sh` in
//! front of two server processes on PostgreSQL and Redis.
//!
//! Over https through nginx: discovery says `https://…`, cookies are `Secure`, HSTS comes once,
//! a citizen registers, activates by mail link, logs in and consents, and a relying party built
//! on `openidconnect` verifies the ID token and reads userinfo; failed logins are throttled by
//! the address nginx saw, not by nginx's own. Then both nodes are restarted one after the other
//! with SIGTERM while load runs (token, refresh, userinfo, silent authorization, discovery):
//! readiness goes 503 first, and not one request fails.
//!
//! A test binary of its own: it runs nginx and server processes, and cargo runs test binaries
//! one after another.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
    core::{CoreClient, CoreProviderMetadata, CoreResponseType, CoreUserInfoClaims},
};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use storage::testing::{TestDatabase, backend_url, skip};
use tokio::process::{Child, Command};

#[path = "process/mod.rs"]
#[allow(dead_code, reason = "shared by several test binaries, each uses a part")]
mod process;

#[path = "journey/mod.rs"]
#[allow(dead_code, reason = "shared by several test binaries, each uses a part")]
mod journey;

use journey::{CALLBACK, CLIENT, Citizen, SECRET, authorize_url, browser_with, citizen_with, csrf, verify_id_token};
use process::{Node, free_port};

/// The repository's root (the test runs in `integration-tests/`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// nginx with the repository's configuration, in a folder of its own.
struct Nginx {
    /// Stopped when the test ends (see `Drop`).
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    /// SIGTERM, not the SIGKILL of `kill_on_drop`: a killed master leaves its worker behind,
    /// orphaned and still holding the port; a terminated one stops its worker first.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Nginx {
    /// Fills in the template as the official image's entrypoint does (only the `${SK_*}`
    /// variables; nginx's own `$variables` stay) and starts nginx in the foreground.
    async fn start(dir: &Path, port: u16, nodes: [u16; 2], tls: &Path) -> Self {
        let template = std::fs::read_to_string(repository().join("deploy/nginx/servicekonto.conf.template")).unwrap();
        let values = BTreeMap::from([
            ("SK_NODE_A", format!("127.0.0.1:{}", nodes[0])),
            ("SK_NODE_B", format!("127.0.0.1:{}", nodes[1])),
            ("SK_LISTEN", format!("127.0.0.1:{port}")),
            ("SK_SERVER_NAME", "localhost".to_owned()),
            ("SK_TLS_CERT", tls.join("server.pem").display().to_string()),
            ("SK_TLS_KEY", tls.join("server.key").display().to_string()),
        ]);
        let mut site = template;
        for (name, value) in &values {
            site = site.replace(&format!("${{{name}}}"), value);
        }
        assert!(!site.contains("${SK_"), "every variable of the template is filled in");
        std::fs::write(dir.join("servicekonto.conf"), site).unwrap();
        let temp = dir.join("temp");
        std::fs::create_dir_all(&temp).unwrap();
        // Workers may run as another user (root starts them as nobody): they write temp files.
        std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let main = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  log_format upstreams '$request_method $status \"$upstream_status\"';\n  access_log {d}/access.log upstreams;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  \
             fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  \
             include {d}/servicekonto.conf;\n}}\n",
            d = dir.display(),
            t = temp.display()
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(nginx_binary().unwrap())
            .args(["-p", &dir.display().to_string(), "-e", &dir.join("error.log").display().to_string()])
            .args(["-c", &dir.join("nginx.conf").display().to_string(), "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "nginx did not start:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, dir: dir.to_owned() }
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    answered: BTreeMap<&'static str, u64>,
    failures: Vec<String>,
}

type Shared = Arc<Mutex<Tally>>;

fn count(tally: &Shared, what: &'static str, outcome: Result<(), String>) {
    let mut tally = tally.lock().unwrap();
    match outcome {
        Ok(()) => *tally.answered.entry(what).or_default() += 1,
        Err(problem) => tally.failures.push(format!("{what}: {problem}")),
    }
}

async fn expect(response: reqwest::Result<reqwest::Response>, want: StatusCode) -> Result<Value, String> {
    let response = response.map_err(|e| format!("transport: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("body: {e}"))?;
    if status != want {
        return Err(format!("{status}: {}", text.chars().take(200).collect::<String>()));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One citizen's refresh chain with userinfo after each step, until `stop`.
async fn refresh_chain(http: Client, issuer: String, who: Arc<Citizen>, tally: Shared, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let refresh = who.refresh.lock().unwrap().clone();
        let sent = journey::refresh_with(&http, &refresh, &issuer).await;
        let tokens = match expect(sent, StatusCode::OK).await {
            Ok(tokens) => tokens,
            Err(problem) => {
                count(&tally, "refresh", Err(problem));
                // The chain cannot go on without its token: a failure here is the test's end.
                return;
            }
        };
        count(&tally, "refresh", Ok(()));
        *who.refresh.lock().unwrap() = tokens["refresh_token"].as_str().unwrap().to_owned();
        let access = tokens["access_token"].as_str().unwrap();
        let info = http.get(format!("{issuer}/userinfo")).bearer_auth(access).send().await;
        count(&tally, "userinfo", expect(info, StatusCode::OK).await.map(drop));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Client credentials, silent authorization of a logged-in citizen, discovery and JWKS.
async fn mixed_load(http: Client, issuer: String, who: Arc<Citizen>, tally: Shared, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let sent = http
            .post(format!("{issuer}/token"))
            .basic_auth(CLIENT, Some(SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        count(&tally, "client_credentials", expect(sent, StatusCode::OK).await.map(drop));
        let silent = who.browser.get(authorize_url(&issuer, true)).send().await;
        let outcome = match silent {
            Ok(response) => {
                let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default();
                if response.status() == StatusCode::SEE_OTHER
                    && location.starts_with(CALLBACK)
                    && location.contains("code=")
                {
                    Ok(())
                } else {
                    Err(format!("{} {location}", response.status()))
                }
            }
            Err(e) => Err(format!("transport: {e}")),
        };
        count(&tally, "authorize prompt=none", outcome);
        let discovery = http.get(format!("{issuer}/.well-known/openid-configuration")).send().await;
        count(&tally, "discovery", expect(discovery, StatusCode::OK).await.map(drop));
        let jwks = http.get(format!("{issuer}/jwks")).send().await;
        count(&tally, "jwks", expect(jwks, StatusCode::OK).await.map(drop));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A failed login from `address` (a loopback address of its own) through nginx: its status.
async fn failed_login(issuer: &str, address: Ipv4Addr, username: &str) -> StatusCode {
    let browser = browser_with(https_builder_from(address));
    let page = browser.get(format!("{issuer}/anmelden")).send().await.unwrap().text().await.unwrap();
    let form = [
        ("csrf", csrf(&page)),
        ("username", username.to_owned()),
        ("password", "falsch falsch falsch".to_owned()),
        ("return_to", "/konto".to_owned()),
    ];
    browser.post(format!("{issuer}/anmelden")).form(&form).send().await.unwrap().status()
}

/// The CA that `local-ca.sh` made, read once per process.
static CA: std::sync::OnceLock<reqwest::Certificate> = std::sync::OnceLock::new();

fn https_builder() -> reqwest::ClientBuilder {
    Client::builder().add_root_certificate(CA.get().unwrap().clone()).timeout(Duration::from_secs(20))
}

fn https_builder_from(address: Ipv4Addr) -> reqwest::ClientBuilder {
    https_builder().local_address(IpAddr::V4(address))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_behind_nginx_serve_the_whole_flow_over_https_and_restart_one_by_one_without_a_failed_request() {
    let test = "two_nodes_behind_nginx_serve_the_whole_flow_over_https_and_restart_one_by_one_without_a_failed_request";
    let Some(database_server) = backend_url("TEST_DATABASE_URL", test) else { return };
    let Some(redis_url) = backend_url("TEST_REDIS_URL", test) else { return };
    if nginx_binary().is_none() {
        skip(test, "nginx is not installed (Debian's nginx; .ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tls = dir.path().join("tls");
    let made = std::process::Command::new(repository().join("deploy/tls/local-ca.sh"))
        .arg(&tls)
        .args(["localhost", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(made.status.success(), "local-ca.sh: {}", String::from_utf8_lossy(&made.stderr));
    let _ = CA.set(reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.pem")).unwrap()).unwrap());

    let database = TestDatabase::postgres(&database_server).await.unwrap();
    let public_port = free_port();
    let public = format!("https://localhost:{public_port}");
    let outbox = dir.path().join("outbox");
    let kek_file = dir.path().join("kek");
    std::fs::write(&kek_file, oidc_core::KeyEncryptionKey::generate().to_base64()).unwrap();
    let env = node_env(
        &database.url,
        &outbox,
        [
            ("SERVICEKONTO_ENVIRONMENTS__PUBLIC_URL", public.clone()),
            ("SERVICEKONTO_REDIS__URL", redis_url),
            ("SERVICEKONTO_REDIS__KEY_PREFIX", format!("deploy-{public_port}:")),
            ("SERVICEKONTO_KEYS__KEK_FILE", kek_file.display().to_string()),
            ("SERVICEKONTO_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]".to_owned()),
            ("SERVICEKONTO_HTTP__DRAIN_SECONDS", "2".to_owned()),
            ("SERVICEKONTO_ACCOUNTS__FREE_FAILED_LOGINS_PER_IP", "3".to_owned()),
        ],
    );
    let ports = [free_port(), free_port()];
    let logs = [dir.path().join("node-a.log"), dir.path().join("node-b.log")];
    let mut nodes = vec![
        Node::start(env.clone(), ports[0], logs[0].clone()).await,
        Node::start(env.clone(), ports[1], logs[1].clone()).await,
    ];
    let nginx = Nginx::start(dir.path(), public_port, ports, &tls).await;
    let issuer = format!("{public}/test");
    let http = https_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // Discovery over https names the https issuer; HSTS comes exactly once.
    let response = http.get(format!("{issuer}/.well-known/openid-configuration")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.error_log());
    let hsts: Vec<_> = response.headers().get_all("strict-transport-security").iter().collect();
    assert_eq!(hsts.len(), 1, "one HSTS header: {hsts:?}");
    assert!(hsts[0].to_str().unwrap().starts_with("max-age=31536000"));
    let metadata: Value = response.json().await.unwrap();
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert!(metadata["token_endpoint"].as_str().unwrap().starts_with("https://localhost:"));
    // The metrics are not the public's business, not even through the proxy.
    assert_eq!(http.get(format!("{public}/metrics")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // Cookies are Secure behind TLS.
    let page = http.get(format!("{issuer}/anmelden")).send().await.unwrap();
    let cookies: Vec<String> =
        page.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.contains("Secure")), "{cookies:?}");

    // A citizen: registration, the activation mail's https link, login, consent, tokens.
    let citizens: Vec<Arc<Citizen>> = {
        let mut citizens = Vec::new();
        for n in 0..2 {
            let browser = browser_with(https_builder());
            let username = format!("nginx.citizen{n}");
            citizens.push(Arc::new(citizen_with(browser, &http, &issuer, &outbox, &username).await));
        }
        citizens
    };

    // A relying party on `openidconnect`: discovery, PKCE, nonce, ID token against the JWKS,
    // userinfo — all through nginx.
    let rp_http = openidconnect::reqwest::ClientBuilder::new()
        .add_root_certificate(CA.get().unwrap().clone())
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let provider =
        CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.clone()).unwrap(), &rp_http).await.unwrap();
    let client = CoreClient::from_provider_metadata(
        provider,
        ClientId::new(CLIENT.into()),
        Some(ClientSecret::new(SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let answer = citizens[0].browser.get(url.as_str()).send().await.unwrap();
    let location = match answer.status() {
        StatusCode::SEE_OTHER => answer.headers()["location"].to_str().unwrap().to_owned(),
        status => {
            // The consent page again: agree.
            assert_eq!(status, StatusCode::OK);
            let consent = answer.text().await.unwrap();
            let request = {
                let start = consent.find("name=\"request\" value=\"").unwrap() + 22;
                consent[start..].split('"').next().unwrap().to_owned()
            };
            let form = [("csrf", csrf(&consent)), ("request", request), ("decision", "allow".into())];
            let agreed = citizens[0].browser.post(format!("{issuer}/zustimmung")).form(&form).send().await.unwrap();
            agreed.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp_http)
        .await
        .expect("code exchanged through nginx");
    let claims = tokens.id_token().unwrap().claims(&client.id_token_verifier(), &nonce).expect("a valid ID token");
    assert_eq!(claims.issuer().as_str(), issuer);
    let info: CoreUserInfoClaims =
        client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&rp_http).await.unwrap();
    assert_eq!(info.email().map(|e| e.as_str()), Some("nginx.citizen0@example.de"));

    // Failed logins count against the address nginx saw: 127.0.0.2 is throttled after three,
    // 127.0.0.3 is not (were the proxy's address counted, both would be).
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(failed_login(&issuer, Ipv4Addr::new(127, 0, 0, 2), &format!("niemand{n}")).await);
    }
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    assert_eq!(
        failed_login(&issuer, Ipv4Addr::new(127, 0, 0, 3), "niemand").await,
        StatusCode::UNAUTHORIZED,
        "another citizen's address is not throttled"
    );
    // What a client claims in X-Forwarded-For is replaced by nginx, not believed.
    let spoofing = browser_with(https_builder_from(Ipv4Addr::new(127, 0, 0, 2)));
    let page = spoofing.get(format!("{issuer}/anmelden")).send().await.unwrap().text().await.unwrap();
    let form = [("csrf", csrf(&page)), ("username", "niemand".into()), ("password", "falsch".into())];
    let spoofed = spoofing
        .post(format!("{issuer}/anmelden"))
        .header("x-forwarded-for", "203.0.113.9")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS, "a forged X-Forwarded-For does not escape");

    // Rolling restart under load: SIGTERM to one node, readiness 503 while it drains, exit,
    // start again; then the other.
    let tally: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for who in &citizens {
        load.push(tokio::spawn(refresh_chain(http.clone(), issuer.clone(), who.clone(), tally.clone(), stop.clone())));
        load.push(tokio::spawn(mixed_load(http.clone(), issuer.clone(), who.clone(), tally.clone(), stop.clone())));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probe = Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    for (n, port) in ports.into_iter().enumerate() {
        let node = &mut nodes[n];
        node.terminate().await;
        let mut saw_draining = false;
        let exited = loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                break status;
            }
            if let Ok(response) = probe.get(format!("http://127.0.0.1:{port}/readyz")).send().await
                && response.status() == StatusCode::SERVICE_UNAVAILABLE
            {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                saw_draining |= body["status"] == "draining";
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(saw_draining, "node {n}: readiness said 503 draining before it stopped");
        assert!(exited.success(), "node {n} stopped cleanly: {exited}\n{}", node.log_tail());
        nodes[n] = Node::start(env.clone(), port, logs[n].clone()).await;
        // nginx takes the node back after its fail_timeout (3 s); only then may the other go.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    eprintln!("rolling restart under load: answered {:?}, failed {}", tally.answered, tally.failures.len());
    assert!(
        tally.failures.is_empty(),
        "failed requests during the rolling restart:\n{}\nnginx:\n{}",
        tally.failures.join("\n"),
        nginx.error_log()
    );
    // The draining nodes answered GETs through nginx with 503, which nginx retried on the other
    // node: the mechanism that keeps POSTs away from a closing listener was at work.
    let retried = nginx.access_log().lines().filter(|l| l.starts_with("GET ") && l.contains(" \"503, ")).count();
    assert!(retried >= 2, "GETs retried away from the draining nodes: {retried}");
    for what in ["refresh", "userinfo", "client_credentials", "authorize prompt=none", "discovery", "jwks"] {
        assert!(tally.answered.get(what).copied().unwrap_or(0) >= 20, "{what} ran under load: {:?}", tally.answered);
    }
    drop(nginx);
    // Nothing of nginx is left behind: no orphaned worker holds its port.
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", public_port)).is_ok(),
        "nginx's port {public_port} is free once the test's nginx is stopped"
    );
    drop(nodes);
    database.drop_now().await.unwrap();
}

/// The operator's commands on a fresh machine: `config check` shows the effective configuration
/// with secrets redacted and every problem at once; `admin bootstrap` is the first command on an
/// empty database and brings the schema up itself.
#[tokio::test]
async fn config_check_and_bootstrap_work_on_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, String)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_fault-node"))
            .args(args)
            .current_dir(dir.path())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("SERVICEKONTO_CONFIG")
            .output()
            .unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    let database = format!("sqlite://{}/fresh.db?mode=rwc", dir.path().display());
    let good = [
        ("SERVICEKONTO_ENVIRONMENTS__PUBLIC_URL", "https://konto.example".to_owned()),
        ("SERVICEKONTO_HTTP__BIND", "0.0.0.0:8080".to_owned()),
        ("SERVICEKONTO_DEMO__ENABLED", "false".to_owned()),
        ("SERVICEKONTO_DATABASE__URL", database.replace("fresh.db", "geheim-fresh.db")),
    ];
    let (code, stdout, stderr) = run(&["config", "check"], &good);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("issuer = \"https://konto.example/test\""), "derived issuers are shown:\n{stdout}");
    assert!(stdout.contains("[redacted]") && !stdout.contains("geheim"), "secrets are redacted:\n{stdout}");
    assert!(stderr.contains("configuration is valid"), "{stderr}");

    let bad = [
        ("SERVICEKONTO_HTTP__BIND", "0.0.0.0:8080".to_owned()),
        ("SERVICEKONTO_DEPENDENCIES__RETRY_AFTER_SECONDS", "0".to_owned()),
    ];
    let (code, stdout, stderr) = run(&["config", "check"], &bad);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.contains("[http]"), "the configuration is printed although it is invalid");
    for problem in ["set environments.public_url", "retry_after_seconds", "demo.enabled"] {
        assert!(stderr.contains(problem), "{problem} is reported:\n{stderr}");
    }

    let fresh = [("SERVICEKONTO_DATABASE__URL", database), ("SERVICEKONTO_LOG__FILTER", "warn".to_owned())];
    let (code, stdout, stderr) = run(&["admin", "bootstrap"], &fresh);
    assert_eq!(code, Some(0), "bootstrap on an empty database: {stderr}");
    assert!(stdout.contains("client_secret:"), "{stdout}");
    let (code, stdout, _) = run(&["admin", "bootstrap", "--if-missing"], &fresh);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("nothing done"), "{stdout}");
    let mut no_migrations = fresh.to_vec();
    no_migrations[0].1 = format!("sqlite://{}/other.db?mode=rwc", dir.path().display());
    no_migrations.push(("SERVICEKONTO_DATABASE__RUN_MIGRATIONS", "false".to_owned()));
    let (code, _, stderr) = run(&["admin", "bootstrap"], &no_migrations);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("run `servicekonto migrate` first"), "{stderr}");
}

/// Verifies `id_token` against the JWKS `issuer` publishes now; its claims.
fn run_tool(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program).args(args).output().unwrap();
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The runbook's backup and restore of PostgreSQL (docs/operations.md, "Backup and restore"):
/// `pg_dump -Fc` while the node runs, the database dropped, `pg_restore` into a new one, the
/// node started again with the same key-encryption key: the citizen logs in, the ID token issued
/// before the loss still verifies, and the refresh token issued before it still works.
#[tokio::test]
async fn a_postgres_backup_restores_accounts_keys_and_refresh_tokens() {
    let test = "a_postgres_backup_restores_accounts_keys_and_refresh_tokens";
    let Some(server_url) = backend_url("TEST_DATABASE_URL", test) else { return };
    if std::process::Command::new("pg_dump").arg("--version").output().is_err() {
        skip(test, "pg_dump is not installed (Debian's postgresql-client)");
        return;
    }
    let database = TestDatabase::postgres(&server_url).await.unwrap();
    let name = url::Url::parse(&database.url).unwrap().path().trim_start_matches('/').to_owned();
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let kek_file = dir.path().join("kek");
    std::fs::write(&kek_file, oidc_core::KeyEncryptionKey::generate().to_base64()).unwrap();
    let port = free_port();
    let env = node_env(&database.url, &outbox, [("SERVICEKONTO_KEYS__KEK_FILE", kek_file.display().to_string())]);
    let node = Node::start(env.clone(), port, dir.path().join("node.log")).await;
    let issuer = format!("{}/test", node.base);
    let http = Client::new();
    let who = citizen_with(journey::browser(), &http, &issuer, &outbox, "backup.citizen").await;
    let before = verify_id_token(&Client::new(), &issuer, &who.id_token).await;

    // The backup, taken while the node serves.
    let dump = dir.path().join("servicekonto.dump");
    run_tool("pg_dump", &["-Fc", "-d", &database.url, "-f", &dump.display().to_string()]);
    drop(node);
    // The loss, and the restore into an empty database of the same name.
    let mut admin = url::Url::parse(&database.url).unwrap();
    admin.set_path("postgres");
    run_tool("psql", &["-d", admin.as_str(), "-qc", &format!("DROP DATABASE {name} WITH (FORCE)")]);
    run_tool("psql", &["-d", admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")]);
    run_tool("pg_restore", &["--no-owner", "-d", &database.url, &dump.display().to_string()]);

    let node = Node::start(env, port, dir.path().join("node-restored.log")).await;
    let after = verify_id_token(&Client::new(), &issuer, &who.id_token).await;
    assert_eq!(after["sub"], before["sub"]);
    let refresh = who.refresh.lock().unwrap().clone();
    let refreshed = journey::refresh_with(&http, &refresh, &issuer).await.unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK, "the refresh token survives the restore");
    let browser = journey::browser();
    let login = browser.get(format!("{issuer}/anmelden")).send().await.unwrap().text().await.unwrap();
    let form = [
        ("csrf", csrf(&login)),
        ("username", who.username.clone()),
        ("password", journey::PASSWORD.to_owned()),
        ("return_to", "/konto".to_owned()),
    ];
    let response = browser.post(format!("{issuer}/anmelden")).form(&form).send().await.unwrap();
    assert!(response.url().path().ends_with("/konto"), "the citizen logs in after the restore");
    drop(node);
    database.drop_now().await.unwrap();
}

/// Stops `node` with SIGTERM after taking it out of the load (as a proxy would once readiness
/// said 503) and starts it again with `env`.
async fn restart(node: &mut Node, env: Vec<(String, String)>, up: &AtomicBool) {
    up.store(false, Ordering::SeqCst);
    node.terminate().await;
    let status = node.child.wait().await.unwrap();
    assert!(status.success(), "{} stopped cleanly", node.base);
    let (port, log) = (node.port(), node.log.clone());
    *node = Node::start(env, port, log).await;
    up.store(true, Ordering::SeqCst);
}

/// A node's environment on `database_url` with mails to `outbox`, cheap password hashing and
/// quiet logs, plus `extra`.
fn node_env<const N: usize>(database_url: &str, outbox: &Path, extra: [(&str, String); N]) -> Vec<(String, String)> {
    let common = [
        ("SERVICEKONTO_DATABASE__URL", database_url.to_owned()),
        ("SERVICEKONTO_MAIL__OUTBOX_DIR", outbox.display().to_string()),
        ("SERVICEKONTO_ACCOUNTS__ARGON2_MEMORY_KIB", "1024".to_owned()),
        ("SERVICEKONTO_ACCOUNTS__ARGON2_ITERATIONS", "1".to_owned()),
        ("SERVICEKONTO_LOG__FILTER", "warn".to_owned()),
    ];
    common.into_iter().chain(extra).map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Runs the server's command line with `env`; its exit code, stdout and stderr.
fn command(env: &[(String, String)], args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fault-node"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// `env` with `name` set to `value` (replacing it, or added; `None` removes it).
fn with(env: &[(String, String)], name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != name).cloned().collect();
    if let Some(value) = value {
        env.push((name.to_owned(), value.to_owned()));
    }
    env
}

/// The runbook's KEK rotation across two nodes without downtime: each node restarted in turn with
/// the new KEK and the old one as `keys.previous_kek`, `keys rotate-kek` re-seals, each node
/// restarted in turn with the new KEK alone. Load on whichever node is up never fails; afterwards
/// the old ID token verifies, the old refresh token works, pairwise subjects and the operator's
/// client secret are unchanged, and a node with only the old KEK refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_encryption_key_rotates_across_two_nodes_without_downtime() {
    let test = "the_key_encryption_key_rotates_across_two_nodes_without_downtime";
    let Some(server_url) = backend_url("TEST_DATABASE_URL", test) else { return };
    let Some(redis_url) = backend_url("TEST_REDIS_URL", test) else { return };
    let database = TestDatabase::postgres(&server_url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let (old, new) = (oidc_core::KeyEncryptionKey::generate(), oidc_core::KeyEncryptionKey::generate());
    let ports = [free_port(), free_port()];
    let issuer_base = format!("http://127.0.0.1:{}", ports[0]);
    let base_env = node_env(
        &database.url,
        &outbox,
        [
            ("SERVICEKONTO_ENVIRONMENTS__PUBLIC_URL", issuer_base.clone()),
            ("SERVICEKONTO_REDIS__URL", redis_url),
            ("SERVICEKONTO_REDIS__KEY_PREFIX", format!("kek-{}:", ports[0])),
            ("SERVICEKONTO_HTTP__DRAIN_SECONDS", "1".to_owned()),
        ],
    );
    let old_env = with(&base_env, "SERVICEKONTO_KEYS__KEK", Some(&old.to_base64()));
    let during_env = with(
        &with(&base_env, "SERVICEKONTO_KEYS__KEK", Some(&new.to_base64())),
        "SERVICEKONTO_KEYS__PREVIOUS_KEK",
        Some(&old.to_base64()),
    );
    let new_env = with(&base_env, "SERVICEKONTO_KEYS__KEK", Some(&new.to_base64()));
    let logs = [dir.path().join("node-a.log"), dir.path().join("node-b.log")];
    let mut nodes = vec![
        Node::start(old_env.clone(), ports[0], logs[0].clone()).await,
        Node::start(old_env.clone(), ports[1], logs[1].clone()).await,
    ];
    // Both nodes serve one issuer (the first node's address), as behind a proxy.
    let issuer = format!("{issuer_base}/test");
    let on = |port: u16| format!("http://127.0.0.1:{port}/test");
    let http = Client::new();
    let who = Arc::new(citizen_with(journey::browser(), &http, &issuer, &outbox, "kek.citizen").await);
    let before = verify_id_token(&Client::new(), &issuer, &who.id_token).await;
    let (code, operator, stderr) = command(&old_env, &["admin", "bootstrap"]);
    assert_eq!(code, Some(0), "{stderr}");
    let field =
        |name: &str| operator.lines().find_map(|l| l.trim().strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap();
    let (operator_id, operator_secret) = (field("client_id:"), field("client_secret:"));

    // Load on whichever node is up: client credentials of the operator (a hashed secret), the
    // citizen's refresh chain (sealed signing keys), JWKS.
    let up = Arc::new([AtomicBool::new(true), AtomicBool::new(true)]);
    let tally: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (up, tally, stop, who, http) = (up.clone(), tally.clone(), stop.clone(), who.clone(), http.clone());
        let (operator_id, operator_secret) = (operator_id.clone(), operator_secret.clone());
        tokio::spawn(async move {
            let mut turn = 0usize;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let Some(n) = (0..2).map(|i| (turn + i) % 2).find(|n| up[*n].load(Ordering::SeqCst)) else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let base = on(ports[n]);
                // The operator's client lives in the production environment.
                let sent = http
                    .post(format!("http://127.0.0.1:{}/token", ports[n]))
                    .basic_auth(&operator_id, Some(&operator_secret))
                    .form(&[("grant_type", "client_credentials"), ("scope", "admin")])
                    .send()
                    .await;
                count(&tally, "operator client_credentials", expect(sent, StatusCode::OK).await.map(drop));
                let refresh = who.refresh.lock().unwrap().clone();
                let sent = journey::refresh_with(&http, &refresh, &base).await;
                match expect(sent, StatusCode::OK).await {
                    Ok(tokens) => {
                        *who.refresh.lock().unwrap() = tokens["refresh_token"].as_str().unwrap().to_owned();
                        count(&tally, "refresh", Ok(()));
                    }
                    Err(problem) => count(&tally, "refresh", Err(problem)),
                }
                let jwks = http.get(format!("{base}/jwks")).send().await;
                count(&tally, "jwks", expect(jwks, StatusCode::OK).await.map(drop));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..2 {
        restart(&mut nodes[n], during_env.clone(), &up[n]).await;
    }
    let (code, stdout, stderr) = command(&during_env, &["keys", "rotate-kek"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("derivation root: re-sealed") && !stdout.contains(" 0 re-sealed"), "{stdout}");
    for n in 0..2 {
        restart(&mut nodes[n], new_env.clone(), &up[n]).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    eprintln!("KEK rotation under load: answered {:?}, failed {}", tally.answered, tally.failures.len());
    assert!(tally.failures.is_empty(), "failed during the KEK rotation:\n{}", tally.failures.join("\n"));
    assert!(tally.answered.get("refresh").copied().unwrap_or(0) >= 20, "{:?}", tally.answered);

    // Everything derived is what it was; what was signed still verifies.
    let after = verify_id_token(&Client::new(), &issuer, &who.id_token).await;
    assert_eq!(after["sub"], before["sub"]);
    let code = {
        let silent = who.browser.get(authorize_url(&issuer, true)).send().await.unwrap();
        let location = silent.headers()["location"].to_str().unwrap().to_owned();
        url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
    };
    let tokens: Value = journey::redeem_with(&http, &code, &issuer).await.unwrap().json().await.unwrap();
    let fresh = verify_id_token(&Client::new(), &issuer, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(fresh["sub"], before["sub"], "the pairwise subject is unchanged");
    let (code, stdout, _) = command(&new_env, &["keys", "rotate-kek"]);
    assert_eq!(code, Some(1), "without previous_kek there is nothing to rotate: {stdout}");
    let again = with(&new_env, "SERVICEKONTO_KEYS__PREVIOUS_KEK", Some(&old.to_base64()));
    let (_, stdout, _) = command(&again, &["keys", "rotate-kek"]);
    assert!(
        stdout.contains("signing keys: 0 re-sealed") && stdout.contains("sealed under keys.kek already"),
        "{stdout}"
    );
    // The old KEK alone opens nothing any more.
    let (code, _, stderr) = command(&old_env, &["keys", "list"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("does not open with keys.kek"), "{stderr}");
    drop(nodes);
    database.drop_now().await.unwrap();
}

/// The runbook's upgrade rule (docs/operations.md, "Upgrades"): a release's migrations only
/// expand the schema, so the release before it keeps serving while the new one has migrated.
/// Here this release plays the old one: the database gets what a next release's migration
/// would add (a table, a nullable column, a column with a default, its row in the migration
/// table), and a node restarted on it — with `--no-migrate` and with migrations on — serves the
/// whole flow.
#[tokio::test]
async fn a_node_serves_on_a_schema_a_newer_release_has_expanded() {
    let test = "a_node_serves_on_a_schema_a_newer_release_has_expanded";
    let Some(server_url) = backend_url("TEST_DATABASE_URL", test) else { return };
    let database = TestDatabase::postgres(&server_url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let env = node_env(
        &database.url,
        &outbox,
        [("SERVICEKONTO_KEYS__KEK", oidc_core::KeyEncryptionKey::generate().to_base64())],
    );
    let (code, _, stderr) = command(&env, &["migrate"]);
    assert_eq!(code, Some(0), "{stderr}");
    // What the next release's migration adds.
    for statement in [
        "CREATE TABLE next_release_table (id TEXT PRIMARY KEY)",
        "ALTER TABLE accounts ADD COLUMN next_release_note TEXT",
        "ALTER TABLE refresh_tokens ADD COLUMN next_release_flag BOOLEAN NOT NULL DEFAULT FALSE",
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000099_next_release', 0)",
    ] {
        run_tool("psql", &["-d", &database.url, "-qc", statement]);
    }
    let port = free_port();
    let node =
        Node::start(with(&env, "SERVICEKONTO_DATABASE__RUN_MIGRATIONS", Some("false")), port, dir.path().join("a.log"))
            .await;
    let issuer = format!("{}/test", node.base);
    let http = Client::new();
    let who = citizen_with(journey::browser(), &http, &issuer, &outbox, "upgrade.citizen").await;
    verify_id_token(&Client::new(), &issuer, &who.id_token).await;
    assert!(node.log_tail().contains("migrated by a newer release"), "the node says so:\n{}", node.log_tail());
    drop(node);
    // With migrations on, nothing is applied and nothing refused.
    let node = Node::start(env.clone(), port, dir.path().join("b.log")).await;
    let refresh = who.refresh.lock().unwrap().clone();
    let refreshed = journey::refresh_with(&http, &refresh, &issuer).await.unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    drop(node);
    // A migration this release does not know among its own is refused: that is no upgrade.
    run_tool(
        "psql",
        &["-d", &database.url, "-qc", "INSERT INTO seaql_migrations VALUES ('m20200101_000000_stray', 0)"],
    );
    let (code, _, stderr) = command(&env, &["migrate"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("m20200101_000000_stray"), "{stderr}");
    database.drop_now().await.unwrap();
}

/// A minimal OTLP/HTTP collector: keeps the body of every POST.
async fn otlp_collector() -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 8192];
                // Headers, then Content-Length bytes of body (reqwest's blocking client sends both).
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buffer.len() >= end + 4 + length {
                        kept.lock().unwrap().push(buffer[end + 4..end + 4 + length].to_vec());
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                        buffer.drain(..end + 4 + length);
                    }
                }
            });
        }
    });
    (port, bodies)
}

/// Request ids and W3C trace context: every JSON log line of a request names its request id
/// and trace id, an incoming `traceparent` continues the caller's trace, nginx's request id is
/// kept, and with `traces.otlp_endpoint` the span reaches an OTLP collector with that trace id.
#[tokio::test]
async fn requests_carry_their_trace_into_the_logs_and_to_an_otlp_collector() {
    let (collector, bodies) = otlp_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("SERVICEKONTO_DATABASE__URL", format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display())),
        ("SERVICEKONTO_KEYS__KEK", oidc_core::KeyEncryptionKey::generate().to_base64()),
        ("SERVICEKONTO_LOG__FORMAT", "json".to_owned()),
        ("SERVICEKONTO_LOG__FILTER", "info".to_owned()),
        ("SERVICEKONTO_TRACES__OTLP_ENDPOINT", format!("http://127.0.0.1:{collector}/v1/traces")),
        // The SDK's batch delay (OpenTelemetry's own variable): export soon, not after 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let node = Node::start(env, free_port(), dir.path().join("node.log")).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let request_id = "0f8e3c2a9b7d4e1f0a2b3c4d5e6f7a8b";
    let answer = Client::new()
        .get(format!("{}/test/.well-known/openid-configuration", node.base))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["x-request-id"], request_id, "the proxy's request id is kept");
    let own =
        Client::new().get(format!("{}/healthz", node.base)).header("x-request-id", "bad\tid").send().await.unwrap();
    let own_id = own.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(own_id.len() == 36 && own_id != "bad\tid", "an implausible id is replaced: {own_id}");

    let deadline = Instant::now() + Duration::from_secs(15);
    let raw_trace: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap()).collect();
    loop {
        let exported = bodies.lock().unwrap().iter().any(|body| body.windows(16).any(|w| w == raw_trace.as_slice()));
        if exported {
            break;
        }
        assert!(Instant::now() < deadline, "no span with trace {trace_id} reached the collector");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&node.log).unwrap();
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let ours: Vec<&Value> = lines.iter().filter(|l| l["span"]["request_id"] == request_id).collect();
    assert!(!ours.is_empty(), "the request's log lines name its request id:\n{log}");
    assert!(ours.iter().all(|l| l["span"]["trace_id"] == trace_id), "and the caller's trace id:\n{log}");
    let other = lines.iter().find(|l| l["span"]["request_id"] == own_id.as_str()).expect("the second request logged");
    assert_eq!(other["span"]["trace_id"].as_str().map(str::len), Some(32), "a trace of its own");
    drop(node);
}
