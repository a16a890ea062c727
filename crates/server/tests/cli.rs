//! The `servicekonto` binary as an operator runs it: a real process, real signals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use eid_test_server::testing::AusweisApp2;
use storage::testing::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_servicekonto");

/// A command in a fresh folder, with a fresh free port and no inherited `SERVICEKONTO_*`.
fn command(dir: &std::path::Path, port: u16) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command
        .env("SERVICEKONTO_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("SERVICEKONTO_ENVIRONMENTS__PRODUCTION__ISSUER", format!("http://127.0.0.1:{port}"))
        .env("SERVICEKONTO_ENVIRONMENTS__TEST__ISSUER", format!("http://127.0.0.1:{port}/test"))
        .env("SERVICEKONTO_LOG__FILTER", "info");
    command
}

/// Starts `serve` and waits for its banner line.
fn serve(dir: &std::path::Path, port: u16) -> (Child, String) {
    let mut child = command(dir, port).arg("serve").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    assert!(banner.contains(&format!("listening on http://127.0.0.1:{port}")), "banner: {banner:?}");
    // The banner's last line names the demo client.
    let mut rest = String::new();
    while !rest.contains("demo client") {
        assert!(stdout.read_line(&mut rest).unwrap() > 0, "banner ended early: {rest}");
    }
    // Keep draining, so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (child, banner + &rest)
}

fn terminate(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_starts_on_the_embedded_default_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, banner) = serve(dir.path(), port);
    assert!(banner.contains(&format!("test       issuer http://127.0.0.1:{port}/test")), "{banner}");
    assert!(banner.contains("database: sqlite; ephemeral store: memory"), "{banner}");
    assert!(dir.path().join("data/servicekonto.db").exists(), "SQLite file under data/");
    assert!(dir.path().join("keys/kek").exists(), "generated key-encryption key under keys/");

    // A request already under way when SIGTERM arrives still gets its answer. "Under way" is
    // proven, not assumed after a pause: the handler asks for the body (`100 Continue`) before
    // the signal is sent, and the body follows after it.
    let mut in_flight = TcpStream::connect(("127.0.0.1", port)).unwrap();
    in_flight.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    in_flight
        .write_all(
            b"POST /logout HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        in_flight.read_exact(&mut byte).unwrap();
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{:?}", String::from_utf8_lossy(&interim));
    terminate(&child);
    std::thread::sleep(Duration::from_millis(300));
    in_flight.write_all(b"a=b").unwrap();
    let mut response = String::new();
    let read = in_flight.read_to_string(&mut response);
    let status = wait(&mut child, Duration::from_secs(10));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(
        read.is_ok() && response.starts_with("HTTP/1.1 200"),
        "in-flight request answered: {read:?} {response:?}; the server said: {stderr}"
    );

    assert!(status.success(), "exit status {status}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "no longer listening");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn keys_list_and_rotate_work_on_the_database_serve_created() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, _) = serve(dir.path(), port);

    let healthy = command(dir.path(), port).arg("healthcheck").output().unwrap();
    assert!(healthy.status.success(), "{}", String::from_utf8_lossy(&healthy.stderr));

    let rotate = command(dir.path(), port).args(["keys", "rotate", "--environment", "test"]).output().unwrap();
    assert!(rotate.status.success(), "{}", String::from_utf8_lossy(&rotate.stderr));
    let listed = String::from_utf8(command(dir.path(), port).args(["keys", "list"]).output().unwrap().stdout).unwrap();
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 3 + 6, "3 production keys, 3 + 3 rotated test keys:\n{listed}");
    assert_eq!(rows.iter().filter(|r| r.starts_with("test") && r.contains(" pending ")).count(), 3, "{listed}");
    assert_eq!(rows.iter().filter(|r| r.starts_with("production") && r.contains(" active ")).count(), 3, "{listed}");

    // A compromised production key: the new keys sign at once, then the old one is withdrawn
    // (expired now; nodes drop it at their next key refresh, as the unit test shows).
    let compromised = rows.iter().find(|r| r.starts_with("production")).unwrap().split_whitespace().last().unwrap();
    let refused = command(dir.path(), port)
        .args(["keys", "withdraw", "--environment", "production", "--kid", compromised])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "the only signer of its algorithm is not withdrawn");
    let now =
        command(dir.path(), port).args(["keys", "rotate", "--now", "--environment", "production"]).output().unwrap();
    assert!(now.status.success(), "{}", String::from_utf8_lossy(&now.stderr));
    let withdrawn = command(dir.path(), port)
        .args(["keys", "withdraw", "--environment", "production", "--kid", compromised])
        .output()
        .unwrap();
    assert!(withdrawn.status.success(), "{}", String::from_utf8_lossy(&withdrawn.stderr));
    let listed = String::from_utf8(command(dir.path(), port).args(["keys", "list"]).output().unwrap().stdout).unwrap();
    let row = listed.lines().find(|r| r.ends_with(compromised)).unwrap();
    assert!(row.contains(" expired "), "{listed}");

    terminate(&child);
    assert!(wait(&mut child, Duration::from_secs(10)).success());
    let unhealthy = command(dir.path(), port).arg("healthcheck").output().unwrap();
    assert!(!unhealthy.status.success(), "healthcheck fails when nothing listens");
}

#[test]
fn a_bad_configuration_is_reported_whole_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path(), free_port())
        .arg("migrate")
        .env("SERVICEKONTO_DATABASE__URL", "mysql://nope")
        .env("SERVICEKONTO_KEYS__ALGORITHMS", "[\"HS256\"]")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("database.url") && stderr.contains("HS256"), "{stderr}");

    let output = command(dir.path(), free_port()).arg("migrate").env("SERVICEKONTO_HTTP__PORT", "1").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("http.port"));
}

#[test]
fn serve_no_migrate_refuses_a_database_with_pending_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path(), free_port()).args(["serve", "--no-migrate"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("servicekonto migrate"));

    let migrate = command(dir.path(), free_port()).arg("migrate").output().unwrap();
    assert!(migrate.status.success());
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("up to date"));
}

#[test]
fn admin_bootstrap_prints_credentials_that_get_an_admin_token() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    assert!(command(dir.path(), port).arg("migrate").output().unwrap().status.success());
    let output = command(dir.path(), port).args(["admin", "bootstrap"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    let value = |label: &str| {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{label} in {printed}"))
    };
    let (client_id, secret) = (value("client_id:"), value("client_secret:"));

    let token = |secret: &str| {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        let body = "grant_type=client_credentials&scope=admin";
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "POST /token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {credentials}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };

    let (mut child, _) = serve(dir.path(), port);
    let response = token(&secret);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"scope\":\"admin\""), "{response}");
    terminate(&child);
    assert!(wait(&mut child, Duration::from_secs(10)).success());

    // Idempotent: a second run neither makes another operator client nor fails when asked not to.
    let again = command(dir.path(), port).args(["admin", "bootstrap"]).output().unwrap();
    assert!(!again.status.success(), "a second operator client only on request");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--if-missing"), "says what to do");
    let if_missing = command(dir.path(), port).args(["admin", "bootstrap", "--if-missing"]).output().unwrap();
    assert!(if_missing.status.success());
    assert!(String::from_utf8_lossy(&if_missing.stdout).contains("nothing done"));

    // Regaining access rotates the secret: the old one stops, the new one works.
    let regain = command(dir.path(), port).args(["admin", "bootstrap", "--regain"]).output().unwrap();
    assert!(regain.status.success(), "{}", String::from_utf8_lossy(&regain.stderr));
    let printed = String::from_utf8(regain.stdout).unwrap();
    let new_secret = printed.lines().find_map(|l| l.trim().strip_prefix("client_secret:")).unwrap().trim().to_owned();
    assert_ne!(new_secret, secret);
    let (mut child, _) = serve(dir.path(), port);
    assert!(token(&secret).starts_with("HTTP/1.1 401"), "the old secret no longer works");
    assert!(token(&new_secret).starts_with("HTTP/1.1 200"), "the new one does");
    terminate(&child);
    assert!(wait(&mut child, Duration::from_secs(10)).success());

    let spec = command(dir.path(), port).args(["admin", "openapi"]).output().unwrap();
    assert!(String::from_utf8_lossy(&spec.stdout).contains("\"/tenants\""));
}

/// `servicekonto eid` drives a real AusweisApp2 (Debian's, headless in SDK mode): it prints the
/// app's version and readers, runs RUN_AUTH for the TC token URL and reports the result; a TC
/// token URL nobody answers ends with AusweisApp2's error and exit code 1. Skipped with a reason
/// without AusweisApp2 (a failure when `TEST_REQUIRE_BACKENDS` is set, as in CI).
#[test]
fn eid_command_drives_the_local_ausweisapp2() {
    // The app's own runtime: it reports the port it chose (see `AusweisApp2::start`).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = runtime.enter();
    let Some(app) = runtime.block_on(AusweisApp2::start()) else {
        let message = "eid_command_drives_the_local_ausweisapp2: skipped: AusweisApp2 is not installed";
        assert!(std::env::var_os("TEST_REQUIRE_BACKENDS").is_none(), "{message} (and TEST_REQUIRE_BACKENDS is set)");
        let _ = writeln!(std::io::stderr(), "{message}");
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let nobody = free_port();
    let output = command(home.path(), free_port())
        .args(["eid", "--developer-mode", "--simulator"])
        .args(["--sdk-url", &app.url()])
        .args(["--tc-token-url", &format!("http://127.0.0.1:{nobody}/eid/tc-token?ref=x")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = app.log();
    drop(app);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("AusweisApp") && stdout.contains("Lesegerät: Simulator"), "{stdout}\napp's log:\n{log}");
    assert!(stdout.contains("Ergebnis: ") && !stdout.contains("Ergebnis: ok"), "{stdout}\napp's log:\n{log}");
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn serve_waits_for_unreachable_dependencies_naming_host_port_and_error_then_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    for (setting, url, dependency) in [
        ("SERVICEKONTO_DATABASE__URL", format!("postgres://postgres@127.0.0.1:{closed}/servicekonto"), "database"),
        ("SERVICEKONTO_REDIS__URL", format!("redis://127.0.0.1:{closed}"), "redis"),
    ] {
        let started = Instant::now();
        let output = command(dir.path(), free_port())
            .arg("serve")
            .env(setting, &url)
            .env("SERVICEKONTO_DEPENDENCIES__STARTUP_WAIT_SECONDS", "2")
            .env("SERVICEKONTO_LOG__FORMAT", "json")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{dependency}: exits non-zero");
        assert!(started.elapsed() < Duration::from_secs(20), "{dependency}: gives up after the configured wait");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let attempts: Vec<&str> = stderr.lines().filter(|l| l.contains("dependency not reachable at start")).collect();
        assert!(attempts.len() >= 2, "{dependency}: one line per attempt, with retries:\n{stderr}");
        for line in &attempts {
            assert!(line.contains(&format!("\"dependency\":\"{dependency}\"")), "{line}");
            assert!(line.contains("\"host\":\"127.0.0.1\"") && line.contains(&format!("\"port\":{closed}")), "{line}");
            assert!(line.contains("Connection refused"), "names the operating system's error: {line}");
        }
        assert!(stderr.contains(&format!("127.0.0.1:{closed} not reachable after")), "the final error: {stderr}");
    }
}
