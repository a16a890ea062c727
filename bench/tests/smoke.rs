//! `just bench --smoke` as a test, so the harness cannot rot: both peers start, every scenario
//! runs against each without errors, the report files are written. Figures are not checked
//! (timings are not tested). The peer needs Node.js and npm; without them it is skipped with
//! the reason in the report, except under `TEST_REQUIRE_BACKENDS` (CI), where it must run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::process::Command;

/// Runs the harness's smoke mode with `backends` (`BENCH_*` variables; none: SQLite and memory)
/// and the further `args`, and checks its report.
fn smoke_run(backends: &[(&str, &str)], args: &[&str]) -> serde_json::Value {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_side-by-side"))
        .args(args)
        .args(["--smoke", "--out"])
        .arg(out.path())
        .env_remove("BENCH_DATABASE_URL")
        .env_remove("BENCH_REDIS_URL")
        .envs(backends.iter().copied())
        .status()
        .unwrap();
    assert!(status.success(), "the harness failed: {status}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("side-by-side.json")).unwrap()).unwrap();
    assert!(out.path().join("side-by-side.md").exists());
    let peer_ran = report["peer_missing"].is_null();
    if !peer_ran {
        assert!(
            std::env::var_os("TEST_REQUIRE_BACKENDS").is_none(),
            "the peer must run in CI: {}",
            report["peer_missing"]
        );
        eprintln!("skipping the peer's half: {}", report["peer_missing"]);
    }
    let markdown = std::fs::read_to_string(out.path().join("side-by-side.md")).unwrap();
    let budget = markdown.lines().find(|l| l.starts_with("SSO flow: our server CPU per flow")).unwrap_or_default();
    assert!(!budget.is_empty(), "the report splits the SSO flow's CPU:\n{markdown}");
    if peer_ran {
        assert!(budget.contains("× the peer by server CPU per flow, the ceiling"), "{budget}");
    }
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 7, "{report:#}");
    // The static documents are also served by nginx from files, for their ceiling; CI installs it.
    let floor_ran = report["nginx_static_files_missing"].is_null();
    if floor_ran {
        for scenario in
            scenarios.iter().filter(|s| ["discovery document", "JWKS"].contains(&s["scenario"].as_str().unwrap()))
        {
            let floor = &scenario["nginx_static_file"];
            assert!(floor["ok"].as_u64().unwrap() > 0, "{}: nginx served nothing: {floor}", scenario["scenario"]);
            assert_eq!(floor["errors"], 0, "{}: {}", scenario["scenario"], floor["first_error"]);
        }
        assert!(markdown.contains("Static documents from nginx"), "{markdown}");
        if peer_ran {
            assert!(markdown.contains("cheaper than the peer's, the ceiling on this machine"), "{markdown}");
        }
    } else {
        assert!(
            std::env::var_os("TEST_REQUIRE_BACKENDS").is_none(),
            "nginx must serve the static documents in CI: {}",
            report["nginx_static_files_missing"]
        );
        eprintln!("skipping nginx's static documents: {}", report["nginx_static_files_missing"]);
    }
    for scenario in scenarios {
        let name = &scenario["scenario"];
        let ours = &scenario["servicekonto"];
        assert!(ours["ok"].as_u64().unwrap() > 0, "{name}: no successful request of ours: {ours}");
        assert_eq!(ours["errors"], 0, "{name}: {}", ours["first_error"]);
        let peer = &scenario["oidc_provider"];
        if peer_ran && name != "password login" {
            assert!(peer["ok"].as_u64().unwrap() > 0, "{name}: no successful request of the peer: {peer}");
            assert_eq!(peer["errors"], 0, "{name}: {}", peer["first_error"]);
        }
    }
    assert!(report["peak_rss_kib"]["servicekonto"].as_u64().unwrap() > 0);
    let expected =
        if backends.is_empty() { "SQLite + in-memory store" } else { "PostgreSQL + Redis (oidc-provider on Redis)" };
    assert!(report["backends"].as_str().unwrap().starts_with(expected), "{}", report["backends"]);
    report
}

#[test]
fn the_side_by_side_harness_runs_every_scenario_against_both_peers() {
    smoke_run(&[], &[]);
}

/// The production shape: ours on PostgreSQL (a database of its own) and Redis, the peer on its
/// Redis adapter.
#[tokio::test]
async fn the_production_shape_runs_on_postgresql_and_redis_with_the_peer_on_redis() {
    smoke_run_on_postgresql_and_redis("the_production_shape_runs_on_postgresql_and_redis_with_the_peer_on_redis", &[])
        .await;
}

/// [`smoke_run`] on a PostgreSQL database of its own and Redis, with `args`; its report, or
/// `None` when the backends are not configured (the reason is printed; a failure in CI).
async fn smoke_run_on_postgresql_and_redis(test: &str, args: &'static [&'static str]) -> Option<serde_json::Value> {
    let (Some(server), Some(redis)) = (
        storage::testing::backend_url("TEST_DATABASE_URL", test),
        storage::testing::backend_url("TEST_REDIS_URL", test),
    ) else {
        return None;
    };
    let database = storage::testing::TestDatabase::postgres(&server).await.unwrap();
    let url = database.url.clone();
    let report = tokio::task::spawn_blocking(move || {
        smoke_run(&[("BENCH_DATABASE_URL", &url), ("BENCH_REDIS_URL", &redis)], args)
    })
    .await
    .unwrap();
    database.drop_now().await.unwrap();
    Some(report)
}

/// Two of our nodes behind nginx against the peer in Node's cluster mode: every scenario runs
/// without an error although a flow's requests alternate between the nodes (and the peer's
/// workers). Needs nginx (Debian's package; CI installs it).
#[tokio::test]
async fn two_nodes_behind_nginx_run_every_scenario_against_the_peers_cluster() {
    let test = "two_nodes_behind_nginx_run_every_scenario_against_the_peers_cluster";
    if !["/usr/sbin/nginx", "/usr/bin/nginx"].iter().any(|p| std::path::Path::new(p).exists()) {
        let message = format!("{test}: skipped: nginx is not installed");
        assert!(std::env::var_os("TEST_REQUIRE_BACKENDS").is_none(), "{message} (and TEST_REQUIRE_BACKENDS is set)");
        eprintln!("{message}");
        return;
    }
    let Some(report) = smoke_run_on_postgresql_and_redis(test, &["--two-nodes"]).await else { return };
    let backends = report["backends"].as_str().unwrap();
    assert!(backends.contains("two servicekonto nodes behind nginx"), "{backends}");
    assert!(backends.contains("cluster mode with two workers"), "{backends}");
    for scenario in report["scenarios"].as_array().unwrap() {
        let nginx = &scenario["servicekonto"]["of_it_nginx_cpu_ms_per_request"];
        assert!(
            nginx.as_f64().is_some_and(f64::is_finite),
            "{}: nginx's share is missing: {nginx}",
            scenario["scenario"]
        );
    }
}

#[test]
fn the_scaling_sweep_writes_its_table_and_plots() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_side-by-side"))
        .args(["--smoke", "--scaling", "--without-peer", "--out"])
        .arg(out.path())
        .env_remove("BENCH_DATABASE_URL")
        .env_remove("BENCH_REDIS_URL")
        .status()
        .unwrap();
    assert!(status.success(), "the sweep failed: {status}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("scaling.json")).unwrap()).unwrap();
    let steps = report["sso_by_concurrency"].as_array().unwrap();
    assert_eq!(steps.iter().map(|s| s["concurrency"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 8]);
    // The refresh grant before and after 1,000 more stored tokens (the smoke mode's count).
    let stored = report["refresh_by_stored_tokens"].as_array().unwrap();
    let rows: Vec<u64> = stored.iter().map(|s| s["refresh_tokens_stored"].as_u64().unwrap()).collect();
    assert_eq!(rows.len(), 2, "{report:#}");
    assert!(rows[0] > 0 && rows[1] >= rows[0] + 1_000, "{rows:?}");
    for step in steps.iter().chain(stored) {
        assert!(step["servicekonto"]["ok"].as_u64().unwrap() > 0, "{step}");
        assert_eq!(step["servicekonto"]["errors"], 0, "{step}");
    }
    for plot in ["scaling-throughput.svg", "scaling-p99.svg"] {
        let svg = std::fs::read_to_string(out.path().join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{plot}");
    }
}

#[test]
fn token_memory_measures_and_sees_expired_tokens_swept() {
    let out = tempfile::tempdir().unwrap();
    let status =
        Command::new(env!("CARGO_BIN_EXE_token-memory")).args(["--smoke", "--out"]).arg(out.path()).status().unwrap();
    assert!(status.success(), "token-memory failed: {status}");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("token-memory.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 2, "both kinds of token");
    for row in &rows {
        assert!(row["bytes_per_token"].as_f64().unwrap() > 0.0, "{row}");
        // 10,000 expired tokens are gone after at most a third as many writes and a round
        // through the shards (the child fails if they are not gone after 10,000).
        let writes = row["writes_until_swept"].as_u64().unwrap();
        assert!(writes > 0 && writes <= 10_000 / 3 + 200, "expired tokens were swept late: {row}");
    }
}
