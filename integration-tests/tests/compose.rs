//! The compose deployment as an operator starts it: one command (`deploy/compose/up.sh`) gives
//! https://localhost:8443 with the demo: nginx with a certificate of the local CA in front of two
//! nodes on PostgreSQL and Redis, a one-shot migration, mails in the sink's web view.
//!
//! Over https through the compose file's nginx: discovery names the https issuer, HSTS comes
//! once, cookies are Secure; a citizen registers, activates with the link from the mail the
//! sink received, logs in and consents; the demo client's ID token verifies against the JWKS;
//! refresh and userinfo work while first one node and then the other is stopped. Redis runs
//! with the append-only file the runbook asks for.
//!
//! Runs where `TEST_COMPOSE` names the compose command (podman-compose) and the images exist;
//! `TEST_COMPOSE_LOCAL_IMAGES=1` takes the stand-ins of `deploy/compose/local-images.sh` and
//! `localhost/servicekonto:ci` (`.ci/run` builds all of them). It takes the compose project
//! `servicekonto` and the ports 8443 and 8025, and removes the project with its volumes at the end.
//!
//! A test binary of its own: it runs containers, and cargo runs test binaries one after another.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::Value;

#[path = "journey/mod.rs"]
#[allow(dead_code, reason = "shared by several test binaries, each uses a part")]
mod journey;

const PUBLIC: &str = "https://localhost:8443";
const MAIL_WEB: &str = "http://localhost:8025";
const SERVICES: [&str; 6] = ["postgres", "redis", "mailpit", "node-a", "node-b", "nginx"];

/// The images `TEST_COMPOSE_LOCAL_IMAGES` selects, as compose.yaml's variables.
const LOCAL_IMAGES: [(&str, &str); 5] = [
    ("SERVICEKONTO_IMAGE", "localhost/servicekonto:ci"),
    ("NGINX_IMAGE", "localhost/compose-nginx"),
    ("POSTGRES_IMAGE", "localhost/compose-postgres"),
    ("REDIS_IMAGE", "localhost/compose-redis"),
    ("MAIL_IMAGE", "localhost/compose-mail"),
];

/// A copy of `deploy/` (up.sh writes the CA and the secrets next to the compose file), started;
/// stopped and removed with its volumes on drop, with every container's log when the test failed.
struct Deployment {
    dir: tempfile::TempDir,
    compose: String,
    images: Vec<(&'static str, &'static str)>,
}

impl Deployment {
    fn compose_dir(&self) -> PathBuf {
        self.dir.path().join("deploy/compose")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(self.compose_dir())
            .env("COMPOSE", &self.compose)
            .envs(self.images.iter().copied())
            .output()
            .unwrap()
    }

    /// The container of a compose service.
    fn container(&self, service: &str) -> String {
        let filter = format!("label=com.docker.compose.service={service}");
        let names = podman(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
        names.lines().next().unwrap_or_else(|| panic!("no container for {service}")).to_owned()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for service in SERVICES {
                let filter = format!("label=com.docker.compose.service={service}");
                for name in podman(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]).lines() {
                    let logs = Command::new("podman").args(["logs", "--tail", "30", name]).output().unwrap();
                    eprintln!(
                        "--- {name}\n{}{}",
                        String::from_utf8_lossy(&logs.stdout),
                        String::from_utf8_lossy(&logs.stderr)
                    );
                }
            }
        }
        // `down -v` removes the named volumes; the images' own (a node's data and keys) by name.
        let mut anonymous = Vec::new();
        for service in SERVICES {
            let filter = format!("label=com.docker.compose.service={service}");
            for name in podman(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]).lines() {
                let mounts = podman(&["inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", name]);
                anonymous.extend(mounts.split_whitespace().filter(|v| v.len() == 64).map(str::to_owned));
            }
        }
        let down = self.run(&self.compose.clone(), &["down", "-v"]);
        if !down.status.success() {
            eprintln!("compose down: {}", String::from_utf8_lossy(&down.stderr));
        }
        for volume in anonymous {
            let _ = Command::new("podman").args(["volume", "rm", "-f", &volume]).output();
        }
    }
}

fn podman(args: &[&str]) -> String {
    let output = Command::new("podman").args(args).output().unwrap();
    assert!(output.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn copy_deploy_folder(to: &Path) {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy");
    let copied = Command::new("cp").arg("-r").arg(&deploy).arg(to).status().unwrap();
    assert!(copied.success());
    // Left over from an operator's own run of up.sh in the checkout: this run makes its own.
    for own in ["tls", "secrets"] {
        let _ = std::fs::remove_dir_all(to.join("deploy/compose").join(own));
    }
}

/// Copies every mail the sink received into `outbox` as a file, the way the nodes' own outbox
/// holds them, so that the journey reads activation links from it. The sink is MailDev (the
/// stand-in: `/api/email`) or Mailpit (`/api/v1/messages`).
async fn mirror_mail_sink(outbox: PathBuf) {
    let http = Client::new();
    loop {
        let maildev = http.get(format!("{MAIL_WEB}/api/email")).send().await;
        let (ids, raw): (Vec<String>, fn(&str) -> String) = match maildev {
            Ok(r) if r.status() == StatusCode::OK => {
                let list: Vec<Value> = r.json().await.unwrap_or_default();
                (list.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect(), |id| {
                    format!("{MAIL_WEB}/api/email/{id}/source")
                })
            }
            Ok(_) => {
                let list: Value =
                    http.get(format!("{MAIL_WEB}/api/v1/messages")).send().await.unwrap().json().await.unwrap();
                let ids = list["messages"].as_array().into_iter().flatten();
                (ids.filter_map(|m| m["ID"].as_str().map(str::to_owned)).collect(), |id| {
                    format!("{MAIL_WEB}/api/v1/message/{id}/raw")
                })
            }
            Err(_) => (Vec::new(), |_| String::new()),
        };
        for id in ids {
            let file = outbox.join(format!("{id}.eml"));
            if !file.exists()
                && let Ok(response) = http.get(raw(&id)).send().await
                && let Ok(bytes) = response.bytes().await
            {
                std::fs::write(file, bytes).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Refresh, then userinfo with the new access token, through nginx: the subject of both.
async fn refresh_and_userinfo(http: &Client, issuer: &str, refresh: &mut String) -> String {
    let response = journey::refresh_with(http, refresh, issuer).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    *refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let access = tokens["access_token"].as_str().unwrap();
    let info = http.get(format!("{issuer}/userinfo")).bearer_auth(access).send().await.unwrap();
    assert_eq!(info.status(), StatusCode::OK);
    info.json::<Value>().await.unwrap()["sub"].as_str().unwrap().to_owned()
}

/// Waits until a restarted node answers its own health check.
fn wait_healthy(container: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Command::new("podman")
        .args(["exec", container, "/usr/local/bin/servicekonto", "healthcheck"])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "{container} does not come back");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_up_serves_the_demo_over_https_from_two_nodes_with_mail_in_the_sink() {
    let test = "compose_up_serves_the_demo_over_https_from_two_nodes_with_mail_in_the_sink";
    let Ok(compose) = std::env::var("TEST_COMPOSE") else {
        // Not `storage::testing::skip`: TEST_REQUIRE_BACKENDS (`just test-pg`) asks for
        // PostgreSQL and Redis, not containers; .ci/run checks that this test ran.
        eprintln!(
            "{test}: skipped: TEST_COMPOSE names no compose command; `just compose-test` and .ci/run build the \
             images (deploy/container/build-image.sh, deploy/compose/local-images.sh) and set it"
        );
        return;
    };
    let images = if std::env::var_os("TEST_COMPOSE_LOCAL_IMAGES").is_some() { LOCAL_IMAGES.to_vec() } else { vec![] };
    let deployment = Deployment { dir: tempfile::tempdir().unwrap(), compose, images };
    copy_deploy_folder(deployment.dir.path());

    // The one command.
    let up = deployment.run("./up.sh", &[]);
    assert!(
        up.status.success(),
        "up.sh: {}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let ca = std::fs::read(deployment.compose_dir().join("tls/ca.pem")).unwrap();
    let https = || {
        Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(20))
    };
    let http = https().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = http.get(format!("{PUBLIC}/readyz")).send().await;
        if ready.as_ref().is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(Instant::now() < deadline, "https://localhost:8443/readyz: {ready:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Discovery over https names the https issuer; HSTS comes once; cookies are Secure.
    let issuer = format!("{PUBLIC}/test");
    let response = http.get(format!("{issuer}/.well-known/openid-configuration")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get_all("strict-transport-security").iter().count(), 1);
    let metadata: Value = response.json().await.unwrap();
    assert_eq!(metadata["issuer"], issuer.as_str());
    let page = http.get(format!("{issuer}/anmelden")).send().await.unwrap();
    let cookies: Vec<_> = page.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.contains("Secure")), "{cookies:?}");

    // A citizen registers; the activation mail goes through the sink (its web view answers).
    let outbox = deployment.dir.path().join("mails");
    std::fs::create_dir(&outbox).unwrap();
    let mirror = tokio::spawn(mirror_mail_sink(outbox.clone()));
    let browser = journey::browser_with(https());
    let citizen = journey::citizen_with(browser, &http, &issuer, &outbox, "compose.citizen").await;
    mirror.abort();
    let web_view = Client::new().get(MAIL_WEB).header("accept", "text/html").send().await.unwrap();
    assert_eq!(web_view.status(), StatusCode::OK, "the mail sink's web view");
    let claims = journey::verify_id_token(&http, &issuer, &citizen.id_token).await;
    let subject = claims["sub"].as_str().unwrap().to_owned();

    // Either node alone serves: the other is stopped, nginx sends everything to the one left.
    let mut refresh = citizen.refresh.lock().unwrap().clone();
    for service in ["node-a", "node-b"] {
        let container = deployment.container(service);
        podman(&["stop", "-t", "10", &container]);
        for _ in 0..5 {
            assert_eq!(refresh_and_userinfo(&http, &issuer, &mut refresh).await, subject, "with {service} stopped");
        }
        podman(&["start", &container]);
        wait_healthy(&container);
    }
    assert_eq!(refresh_and_userinfo(&http, &issuer, &mut refresh).await, subject);

    // The runbook's Redis persistence.
    let redis = deployment.container("redis");
    assert_eq!(podman(&["exec", &redis, "redis-cli", "config", "get", "appendonly"]).trim(), "appendonly\nyes");
}
