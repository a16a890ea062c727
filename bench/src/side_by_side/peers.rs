//! Starting the two peers and preparing each for the scenarios: our server (the `server`
//! library's own command line, in this release binary) and node `oidc-provider` with its
//! automatic interaction; a citizen with a session and remembered consent at each.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context;
use reqwest::{Client, StatusCode, redirect::Policy};
use url::Url;

use crate::process::{ServerProcess, free_port, pinned};

/// The environment variable that makes the bench binary act as `servicekonto` (see `main`).
pub const ROLE_VARIABLE: &str = "BENCH_ROLE";
/// Its value for our server.
pub const ROLE_SERVICEKONTO: &str = "servicekonto";

/// The client both peers know (our demo client, configured identically at the peer).
pub const CLIENT_ID: &str = "demo-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "demo-secret-only-for-local-use";
/// Its redirect URI; nothing listens there, the harness reads the code from `Location`.
pub const REDIRECT_URI: &str = "http://127.0.0.1:3000/callback";
/// The scopes of the single-sign-on flow.
pub const SCOPE: &str = "openid profile email address";

const PASSWORD: &str = "Korrekt Pferd Batterie Heftklammer";

/// A running peer with its endpoints, read from its discovery document.
pub struct Peer {
    /// `servicekonto` or `oidc-provider`.
    pub name: &'static str,
    /// Its issuer.
    pub issuer: String,
    /// The discovery document URL.
    pub discovery: String,
    /// The authorization endpoint.
    pub authorization: String,
    /// The token endpoint.
    pub token: String,
    /// The userinfo endpoint.
    pub userinfo: String,
    /// The introspection endpoint.
    pub introspection: String,
    /// The JWKS URL.
    pub jwks: String,
    /// The server process (with two of our nodes: the nginx in front of them).
    pub process: ServerProcess,
    /// The processes behind it (with two of our nodes: the nodes); measured with it.
    pub companions: Vec<ServerProcess>,
    /// Its resident memory (KiB) once it answered, before any load: what it costs to run.
    pub idle_rss_kib: u64,
    /// Of it, anonymous memory (KiB).
    pub idle_anon_kib: u64,
    /// The benchmark citizen's username at our server (which has password logins); `None` at
    /// the peer, whose automatic interaction logs in without one.
    pub username: Option<String>,
    /// Where our server's mails go (activation links for more citizens); `None` at the peer.
    pub outbox: Option<std::path::PathBuf>,
}

/// What a password login posts.
#[derive(Clone)]
pub struct LoginForm {
    /// `POST` target.
    pub url: String,
    /// The form fields.
    pub fields: Vec<(String, String)>,
}

impl Peer {
    /// CPU seconds of all its processes so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.processes().map(ServerProcess::cpu_seconds).sum()
    }

    /// CPU seconds of the proxy in front of its nodes so far, when it has one.
    pub fn front_cpu_seconds(&self) -> Option<f64> {
        (!self.companions.is_empty()).then(|| self.process.cpu_seconds())
    }

    /// Peak resident memory (KiB) of all its processes, summed.
    pub fn peak_rss_kib(&self) -> u64 {
        self.processes().map(ServerProcess::peak_rss_kib).sum()
    }

    fn rss_kib(&self) -> u64 {
        self.processes().map(ServerProcess::rss_kib).sum()
    }

    fn anon_rss_kib(&self) -> u64 {
        self.processes().map(ServerProcess::anon_rss_kib).sum()
    }

    fn processes(&self) -> impl Iterator<Item = &ServerProcess> {
        std::iter::once(&self.process).chain(&self.companions)
    }

    /// A new browser (a cookie-keeping client that never follows redirects) with a session of
    /// the benchmark citizen, who has consented already. One per worker: a citizen's browser
    /// runs one flow at a time.
    pub async fn new_session(&self) -> anyhow::Result<Client> {
        let browser = cookie_client()?;
        match &self.username {
            Some(username) => {
                let form = login_form(&browser, &self.issuer, username).await?;
                let response = browser.post(&form.url).form(&form.fields).send().await?;
                anyhow::ensure!(response.status().is_redirection(), "login answered {}", response.status());
            }
            None => {
                super::scenarios::AuthorizationRequest::for_endpoint(&self.authorization)?.follow(&browser).await?;
            }
        }
        Ok(browser)
    }
}

/// A client that keeps cookies and never follows redirects.
pub fn cookie_client() -> anyhow::Result<Client> {
    Ok(Client::builder().cookie_store(true).redirect(Policy::none()).pool_max_idle_per_host(256).build()?)
}

async fn endpoints(name: &'static str, issuer: String, process: ServerProcess) -> anyhow::Result<Peer> {
    let (idle_rss_kib, idle_anon_kib) = (process.rss_kib(), process.anon_rss_kib());
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    let metadata: serde_json::Value = reqwest::get(&discovery).await?.error_for_status()?.json().await?;
    let endpoint = |field: &str| -> anyhow::Result<String> {
        Ok(metadata[field].as_str().with_context(|| format!("{name} announces no {field}"))?.to_owned())
    };
    Ok(Peer {
        name,
        authorization: endpoint("authorization_endpoint")?,
        token: endpoint("token_endpoint")?,
        userinfo: endpoint("userinfo_endpoint")?,
        introspection: endpoint("introspection_endpoint")?,
        jwks: endpoint("jwks_uri")?,
        issuer,
        discovery,
        process,
        companions: Vec::new(),
        idle_rss_kib,
        idle_anon_kib,
        username: None,
        outbox: None,
    })
}

/// Starts our server on `database` and `redis_url` (or the in-memory store), its files in `dir`.
pub async fn start_servicekonto(
    dir: &Path,
    cpu: Option<usize>,
    database: &str,
    redis_url: Option<String>,
) -> anyhow::Result<Peer> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let process = start_node(dir, "servicekonto", cpu, port, &base, database, redis_url.as_deref()).await?;
    let peer = endpoints("servicekonto", format!("{base}/test"), process).await?;
    prepare_servicekonto(peer, dir).await
}

/// Two of our nodes on one database and one Redis behind nginx (one worker, the upstream
/// connections kept alive), as in `deploy/nginx`: one address, requests spread round robin, so
/// that a flow's steps land on both nodes. All three processes on `cpu`.
pub async fn start_servicekonto_two_nodes(
    dir: &Path,
    cpu: Option<usize>,
    database: &str,
    redis_url: &str,
) -> anyhow::Result<Peer> {
    let front = free_port()?;
    let base = format!("http://127.0.0.1:{front}");
    let (port_a, port_b) = (free_port()?, free_port()?);
    // One after the other: the first migrates the database and makes the keys.
    let node_a = start_node(dir, "node-a", cpu, port_a, &base, database, Some(redis_url)).await?;
    let node_b = start_node(dir, "node-b", cpu, port_b, &base, database, Some(redis_url)).await?;
    let nginx = start_nginx(dir, cpu, front, &[port_a, port_b]).await?;
    let mut peer = endpoints("servicekonto", format!("{base}/test"), nginx).await?;
    peer.companions = vec![node_a, node_b];
    (peer.idle_rss_kib, peer.idle_anon_kib) = (peer.rss_kib(), peer.anon_rss_kib());
    let peer = prepare_servicekonto(peer, dir).await?;
    // Registration, login and consent went through nginx: both nodes must have served a part.
    for port in [port_a, port_b] {
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await?.text().await?;
        let served: u64 = metrics
            .lines()
            .filter(|line| line.starts_with("servicekonto_http_requests_total{") && line.contains("route=\"/test/"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        anyhow::ensure!(served > 0, "the node on port {port} served none of the citizen's requests behind nginx");
    }
    Ok(peer)
}

/// Starts one of our nodes on `port` for issuers under `base`; its files are `dir/<name>.*`
/// (the key-encryption key is shared: every node must read the keys in the database).
async fn start_node(
    dir: &Path,
    name: &str,
    cpu: Option<usize>,
    port: u16,
    base: &str,
    database: &str,
    redis_url: Option<&str>,
) -> anyhow::Result<ServerProcess> {
    let redis = redis_url.map(|url| format!("url = {url:?}\n")).unwrap_or_default();
    // The registration pages allow 30 username checks per address and hour; the password-login
    // scenario registers a citizen per worker from one address.
    let config = format!(
        "[http]\nbind = \"127.0.0.1:{port}\"\n\
         [environments.production]\nissuer = \"{base}\"\n\
         [environments.test]\nissuer = \"{base}/test\"\n\
         [database]\nurl = {database:?}\n\
         [redis]\n{redis}\
         [keys]\nkek_path = {kek:?}\n\
         [log]\nfilter = \"warn\"\n\
         [accounts]\nusername_checks_per_hour = 100000\n\
         [mail]\noutbox_dir = {outbox:?}\n",
        kek = dir.join("kek").display().to_string(),
        outbox = dir.join("outbox").display().to_string(),
    );
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config)?;
    let mut command = pinned(cpu, std::env::current_exe()?);
    command.env(ROLE_VARIABLE, ROLE_SERVICEKONTO).env("SERVICEKONTO_CONFIG", &config_path).env_remove("RUST_LOG");
    command.arg("serve");
    let log = dir.join(format!("{name}.log"));
    let mut process = ServerProcess::spawn(command, &log)?;
    process.wait_ready(&format!("http://127.0.0.1:{port}/healthz"), &log).await?;
    Ok(process)
}

/// nginx on `front`, spreading requests over `upstreams` with kept-alive connections. Answers
/// are buffered in memory only: its workers run as `nobody` and could not write temporary files
/// into the bench's private folder.
async fn start_nginx(dir: &Path, cpu: Option<usize>, front: u16, upstreams: &[u16]) -> anyhow::Result<ServerProcess> {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let servers: String = upstreams.iter().map(|port| format!("    server 127.0.0.1:{port};\n")).collect();
    let config = format!(
        "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log stderr warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n\
         client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n\
         fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n\
         upstream servicekonto {{\n{servers}    keepalive 128;\n  }}\n\
         server {{\n    listen 127.0.0.1:{front};\n    keepalive_requests 1000000;\n\
         location / {{\n      proxy_pass http://servicekonto;\n      proxy_http_version 1.1;\n\
         proxy_max_temp_file_size 0;\n\
         proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n    }}\n  }}\n}}\n",
        pid = prefix.join("nginx.pid").display(),
        temp = prefix.display(),
    );
    let config_path = prefix.join("nginx.conf");
    std::fs::write(&config_path, config)?;
    let binary = nginx_binary().context("two nodes need nginx in front of them (Debian's package `nginx`)")?;
    let mut command = pinned(cpu, binary);
    command.arg("-p").arg(&prefix).arg("-c").arg(&config_path);
    let log = dir.join("nginx.log");
    let mut process = ServerProcess::spawn(command, &log)?;
    process.wait_ready(&format!("http://127.0.0.1:{front}/healthz"), &log).await?;
    Ok(process)
}

/// Debian's nginx, when it is installed.
fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists())
}

/// nginx (one worker, on `cpu` like the servers) serving `ours`' discovery document and JWKS,
/// the same bytes with the same `Content-Type` and `Cache-Control`, as static files: a second
/// answer to those two `GET`s, from a server built for nothing else. The two static scenarios
/// are read against the cheaper of it and ours (their ceiling). `Ok(Err(reason))` without nginx.
///
/// The files live in a folder of their own that nginx's workers (`nobody` when the bench runs
/// as root) may read; it is removed with the returned guard.
pub async fn start_static_floor(
    cpu: Option<usize>,
    ours: &Peer,
) -> anyhow::Result<Result<(Peer, tempfile::TempDir), String>> {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(binary) = nginx_binary() else {
        return Ok(Err("nginx is not installed (Debian's package `nginx`)".to_owned()));
    };
    let folder = tempfile::tempdir()?;
    std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755))?;
    let mut locations = String::new();
    for (path, url) in [("/.well-known/openid-configuration", &ours.discovery), ("/jwks", &ours.jwks)] {
        let response = reqwest::get(url.as_str()).await?.error_for_status()?;
        let header = |name: reqwest::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        };
        let (content_type, cache_control) =
            (header(reqwest::header::CONTENT_TYPE), header(reqwest::header::CACHE_CONTROL));
        anyhow::ensure!(
            !content_type.contains(['"', '\\', '$']) && !cache_control.contains(['"', '\\', '$']),
            "{url}: headers nginx's configuration could not quote: {content_type:?}, {cache_control:?}"
        );
        let file = folder.path().join(path.trim_start_matches('/').replace('/', "_"));
        std::fs::write(&file, response.bytes().await?)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
        write!(
            locations,
            "    location = {path} {{\n      default_type \"{content_type}\";\n      add_header Cache-Control \"{cache_control}\";\n      alias {file};\n    }}\n",
            file = file.display()
        )?;
    }
    let port = free_port()?;
    let prefix = folder.path().join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let config = format!(
        "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log stderr warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n\
         client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n\
         fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port};\n    keepalive_requests 1000000;\n{locations}  }}\n}}\n",
        pid = prefix.join("nginx.pid").display(),
        temp = prefix.display(),
    );
    let config_path = prefix.join("nginx.conf");
    std::fs::write(&config_path, config)?;
    let mut command = pinned(cpu, binary);
    command.arg("-p").arg(&prefix).arg("-c").arg(&config_path);
    let log = folder.path().join("nginx.log");
    let base = format!("http://127.0.0.1:{port}");
    let mut process = ServerProcess::spawn(command, &log)?;
    process.wait_ready(&format!("{base}/jwks"), &log).await?;
    let (idle_rss_kib, idle_anon_kib) = (process.rss_kib(), process.anon_rss_kib());
    // Only the two static scenarios run against it; the other endpoints name nothing it serves.
    let floor = Peer {
        name: "nginx",
        discovery: format!("{base}/.well-known/openid-configuration"),
        jwks: format!("{base}/jwks"),
        authorization: base.clone(),
        token: base.clone(),
        userinfo: base.clone(),
        introspection: base.clone(),
        issuer: base,
        process,
        companions: Vec::new(),
        idle_rss_kib,
        idle_anon_kib,
        username: None,
        outbox: None,
    };
    Ok(Ok((floor, folder)))
}

/// Registers and logs in the benchmark citizen and gives the first consent.
async fn prepare_servicekonto(mut peer: Peer, dir: &Path) -> anyhow::Result<Peer> {
    let browser = cookie_client()?;
    let username = register(&browser, &peer.issuer, &dir.join("outbox")).await.context("registering the citizen")?;
    peer.username = Some(username);
    peer.outbox = Some(dir.join("outbox"));
    let browser = peer.new_session().await.context("logging the benchmark citizen in")?;
    consent(&peer, &browser).await.context("the first authorization with consent")?;
    Ok(peer)
}

/// Registers a citizen through the registration pages and activates it with the link from the
/// mail in `outbox`; the username (unique per run, so a shared PostgreSQL can be reused).
/// Registers and activates a citizen through the pages; the username.
pub async fn register(client: &Client, issuer: &str, outbox: &Path) -> anyhow::Result<String> {
    let suffix: u32 = rand::random();
    let username = format!("bench.{suffix:08x}");
    let email = format!("{username}@example.org");
    let page = client.get(format!("{issuer}/registrierung")).send().await?.text().await?;
    let step1 = [
        ("csrf", csrf(&page)?),
        ("given_names", "Erika".into()),
        ("family_name", "Mustermann".into()),
        ("birth_name", "Gabler".into()),
        ("date_of_birth", "12.08.1964".into()),
        ("place_of_birth", "Berlin".into()),
        ("street_and_number", "Heidestraße 17".into()),
        ("postal_code", "51147".into()),
        ("city", "Köln".into()),
        ("country", "DE".into()),
        ("email", email.clone()),
        ("username", username.clone()),
    ];
    let page = follow_page(client, client.post(format!("{issuer}/registrierung")).form(&step1), issuer).await?;
    let step2 = [
        ("csrf", csrf(&page)?),
        ("password", PASSWORD.into()),
        ("password_confirmation", PASSWORD.into()),
        ("privacy", "accepted".into()),
    ];
    let page =
        follow_page(client, client.post(format!("{issuer}/registrierung/passwort")).form(&step2), issuer).await?;
    let save = [("csrf", csrf(&page)?)];
    follow_page(client, client.post(format!("{issuer}/registrierung/pruefen")).form(&save), issuer).await?;
    let link = activation_link(outbox, &email).await?;
    let response = client.get(&link).send().await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "activation answered {}", response.status());
    Ok(username)
}

/// Sends `request`; follows same-site redirects; the final page's HTML.
async fn follow_page(client: &Client, request: reqwest::RequestBuilder, issuer: &str) -> anyhow::Result<String> {
    let mut response = request.send().await?;
    for _ in 0..5 {
        if !response.status().is_redirection() {
            break;
        }
        let location = location(&response)?;
        let next = Url::parse(issuer)?.join(&location)?;
        response = client.get(next).send().await?;
    }
    anyhow::ensure!(response.status().is_success(), "{} answered {}", response.url(), response.status());
    Ok(response.text().await?)
}

/// The activation link from the mail to `email` in the outbox folder.
async fn activation_link(outbox: &Path, email: &str) -> anyhow::Result<String> {
    for _ in 0..50 {
        for entry in std::fs::read_dir(outbox).into_iter().flatten().flatten() {
            let raw = std::fs::read(entry.path())?;
            let Some(message) = mail_parser::MessageParser::default().parse(&raw) else { continue };
            let to_citizen = message.to().and_then(|to| to.first()).and_then(|a| a.address()) == Some(email);
            let text = message.body_text(0).unwrap_or_default();
            if to_citizen && let Some(start) = text.find("http") {
                let link: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
                if link.contains("/aktivierung?") {
                    return Ok(link);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no activation mail for {email} in {}", outbox.display())
}

fn csrf(html: &str) -> anyhow::Result<String> {
    hidden(html, "csrf")
}

fn hidden(html: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).with_context(|| format!("no {name} field in the page"))? + marker.len();
    Ok(html[start..].split('"').next().unwrap_or_default().replace("&#x2f;", "/").replace("&amp;", "&"))
}

fn location(response: &reqwest::Response) -> anyhow::Result<String> {
    Ok(response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("a redirect without Location")?
        .to_owned())
}

/// Our login form as `browser` gets it (with its CSRF token), filled in.
pub async fn login_form(browser: &Client, issuer: &str, username: &str) -> anyhow::Result<LoginForm> {
    let url = format!("{issuer}/anmelden");
    let page = browser.get(&url).send().await?.text().await?;
    let fields = vec![
        ("csrf".to_owned(), csrf(&page)?),
        ("username".to_owned(), username.to_owned()),
        ("password".to_owned(), PASSWORD.to_owned()),
    ];
    Ok(LoginForm { url, fields })
}

/// The first authorization: our consent page is answered with "allow" for every claim.
async fn consent(peer: &Peer, browser: &Client) -> anyhow::Result<()> {
    let request = super::scenarios::AuthorizationRequest::for_endpoint(&peer.authorization)?;
    let response = browser.get(&request.url).send().await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "expected the consent page, got {}", response.status());
    let page = response.text().await?;
    let mut form = vec![
        ("csrf".to_owned(), csrf(&page)?),
        ("request".to_owned(), hidden(&page, "request")?),
        ("decision".to_owned(), "allow".to_owned()),
    ];
    for claim in ["email", "email_verified", "address", "birthdate", "place_of_birth"] {
        form.push(("claim".to_owned(), claim.to_owned()));
    }
    let response = browser.post(format!("{}/zustimmung", peer.issuer)).form(&form).send().await?;
    let location = location(&response)?;
    anyhow::ensure!(
        location.starts_with(REDIRECT_URI) && location.contains("code="),
        "no code after consent: {location}"
    );
    Ok(())
}

/// Copies the peer's files to `cache` and installs its npm package there if missing; why the
/// peer cannot run otherwise.
///
/// Several harnesses may share one cache at once (the smoke tests run in parallel), so the
/// install holds an exclusive lock on the cache, and a file is only rewritten when it changed:
/// `npm ci` empties `node_modules` first, and a copy truncates before it writes, either of which
/// would pull the files out from under a peer another harness is starting.
pub fn install_peer(cache: &Path) -> Result<(), String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !matches!(node, Ok(ref o) if o.status.success()) {
        return Err("Node.js (`node`) is not installed".to_owned());
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("peer");
    std::fs::create_dir_all(cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let lock_path = cache.join(".install.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    for file in ["package.json", "package-lock.json", "provider.mjs", "redis-adapter.mjs"] {
        let wanted = std::fs::read(source.join(file)).map_err(|e| format!("reading {file}: {e}"))?;
        if std::fs::read(cache.join(file)).ok().as_ref() != Some(&wanted) {
            std::fs::write(cache.join(file), &wanted).map_err(|e| format!("copying {file}: {e}"))?;
        }
    }
    if ["oidc-provider", "ioredis"]
        .iter()
        .all(|package| cache.join("node_modules").join(package).join("package.json").exists())
    {
        return Ok(());
    }
    let installed = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(cache)
        .status()
        .map_err(|e| format!("npm is not available: {e}"))?;
    if installed.success() { Ok(()) } else { Err(format!("`npm ci` in {} failed ({installed})", cache.display())) }
}

/// Starts node `oidc-provider` from `cache` (see [`install_peer`]), on Redis at `redis_url` or
/// its in-memory adapter; with `workers` > 1 in Node's cluster mode (needs Redis).
pub async fn start_oidc_provider(
    cache: &Path,
    dir: &Path,
    cpu: Option<usize>,
    redis_url: Option<&str>,
    workers: usize,
) -> anyhow::Result<Peer> {
    let port = free_port()?;
    let issuer = format!("http://127.0.0.1:{port}");
    let mut command = pinned(cpu, "node");
    if let Some(url) = redis_url {
        // A prefix of its own per run: a shared Redis keeps earlier runs' keys until they expire.
        let run: u32 = rand::random();
        command.env("REDIS_URL", url).env("REDIS_PREFIX", format!("oidc-bench:{run:08x}:"));
    }
    command.env("WORKERS", workers.to_string());
    command.current_dir(cache).env("PORT", port.to_string()).env("NODE_ENV", "production").args([
        "provider.mjs",
        CLIENT_ID,
        CLIENT_SECRET,
        REDIRECT_URI,
    ]);
    let log = dir.join("oidc-provider.log");
    let mut process = ServerProcess::spawn(command, &log)?;
    process.wait_ready(&format!("{issuer}/.well-known/openid-configuration"), &log).await?;
    if workers > 1 {
        // The first worker answers before the others listen; the primary says when all do.
        let all = format!("{workers} workers listening");
        let mut waited = 0;
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(&all) {
            anyhow::ensure!(waited < 600, "oidc-provider's {workers} workers did not all listen within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
    }
    let peer = endpoints("oidc-provider", issuer, process).await?;
    peer.new_session().await.context("the first authorization at oidc-provider")?;
    Ok(peer)
}
