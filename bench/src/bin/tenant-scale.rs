//! Tenant scale: does a registry of thousands of tenants slow the token endpoint or the admin
//! API down? Seeds N tenants × 3 clients (default 10,000 × 3) into a real server and measures,
//! in the same run, `client_credentials` with a registry of one tenant (the baseline) and with
//! all N, then admin-API pagination through every tenant.
//!
//! `cargo run --release -p bench --bin tenant-scale -- [--tenants N] [--seconds S] [--concurrency C] [--smoke]`
//! PostgreSQL and Redis when `BENCH_DATABASE_URL` / `BENCH_REDIS_URL` are set, else SQLite and memory.
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::Context;
use bench::{Sample, drive};
use oidc_core::{ClientId, Environment, KeyEncryptionKey, TrustLevel};
use server::{AppState, Config, Migrations, Secret};
use tenant_registry::{
    Actor, AdminRole, Branding, ClientSecret, ClientSettings, GrantType, NewTenant, OperatorFlags, Registry,
};

const SECRET: &str = "bench-secret-0123456789abcdefghijklmnopqrstuv";

#[derive(Clone, Copy)]
struct Options {
    tenants: usize,
    seconds: u64,
    concurrency: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options { tenants: 10_000, seconds: 10, concurrency: 32 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("a value after the flag");
        match arg.as_str() {
            "--tenants" => options.tenants = value()?.parse()?,
            "--seconds" => options.seconds = value()?.parse()?,
            "--concurrency" => options.concurrency = value()?.parse()?,
            "--smoke" => options = Options { tenants: 50, seconds: 2, concurrency: 8 },
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

async fn start(dir: &std::path::Path) -> anyhow::Result<(String, AppState)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = Config::embedded(addr);
    config.database.url = Secret::from(
        std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}/bench.db?mode=rwc", dir.display()))
            .as_str(),
    );
    if let Ok(url) = std::env::var("BENCH_REDIS_URL") {
        config.redis.url = Some(Secret::from(url.as_str()));
    }
    config.keys.kek = Some(Secret::from(KeyEncryptionKey::generate().to_base64().as_str()));
    config.log.filter = "warn".to_owned();
    config.demo.enabled = false;
    let state = AppState::build(config, Migrations::Apply).await?;
    let serving = state.clone();
    tokio::spawn(async move { server::run(listener, std::future::pending(), serving).await });
    Ok((format!("http://{addr}"), state))
}

/// Seeds `count` tenants with three client-credentials clients each; returns the client ids.
async fn seed(registry: &Registry, from: usize, count: usize) -> anyhow::Result<Vec<String>> {
    let actor = Actor::System("bench");
    let mut ids = Vec::with_capacity(count * 3);
    for n in from..from + count {
        let tenant = registry
            .create_tenant(
                &actor,
                NewTenant {
                    slug: format!("kommune-{n:05}"),
                    name: format!("Kommune {n}"),
                    contact_email: format!("it@kommune-{n}.de"),
                    branding: Branding { display_name: format!("Kommune {n}"), logo_url: None },
                    allowed_claims: BTreeSet::new(),
                    min_trust_level: TrustLevel::Normal,
                    sector: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for c in 0..3 {
            let mut settings = ClientSettings::confidential(&format!("Dienst {c}"), Vec::new());
            settings.grant_types = BTreeSet::from([GrantType::ClientCredentials]);
            settings.scopes = BTreeSet::new();
            let id = ClientId::generate();
            let secret = Some(ClientSecret::from_configured(SECRET));
            registry
                .create_client_with_id(
                    &actor,
                    tenant.id,
                    Environment::Test,
                    id.clone(),
                    settings,
                    OperatorFlags::default(),
                    secret,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            ids.push(id.to_string());
        }
    }
    Ok(ids)
}

async fn token_load(name: &str, base: &str, ids: Arc<Vec<String>>, options: &Options) -> Sample {
    let http = reqwest::Client::builder().pool_max_idle_per_host(options.concurrency).build().unwrap_or_default();
    let url = format!("{base}/test/token");
    drive(name, options.concurrency, Duration::from_secs(options.seconds), u64::MAX, move |_, i| {
        let (http, url, ids) = (http.clone(), url.clone(), ids.clone());
        async move {
            // A spread of clients, so that the cache holds the whole registry, not one entry.
            let id = &ids[(i as usize).wrapping_mul(7919) % ids.len()];
            let response = http
                .post(&url)
                .basic_auth(id, Some(SECRET))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await;
            matches!(response, Ok(r) if r.status().is_success())
        }
    })
    .await
}

async fn admin_token(base: &str, registry: &Registry) -> anyhow::Result<String> {
    let actor = Actor::System("bench");
    let operator = registry.find_tenant_by_slug("kommune-00000").await?.context("first tenant")?;
    let mut settings = ClientSettings::confidential("Bench operator", Vec::new());
    settings.grant_types = BTreeSet::from([GrantType::ClientCredentials]);
    settings.scopes = BTreeSet::new();
    let flags = OperatorFlags { first_party: false, admin_role: Some(AdminRole::Operator) };
    let (client, secret) = registry
        .create_client(&actor, operator.id, Environment::Production, settings, flags)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let secret = secret.context("secret")?;
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/token"))
        .basic_auth(client.client_id.as_str(), Some(secret.expose()))
        .form(&[("grant_type", "client_credentials"), ("scope", "admin")])
        .send()
        .await?
        .json()
        .await?;
    Ok(response["access_token"].as_str().context("access_token")?.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let dir = tempfile::tempdir()?;
    let (base, state) = start(dir.path()).await?;
    let registry = state.registry();

    let few = Arc::new(seed(registry, 0, 1).await?);
    // Warm-up, not measured: connection pool, caches, allocator. Without it the baseline, which
    // runs first, would look slower than it is.
    let warm = Options { seconds: options.seconds.div_ceil(3), ..options };
    token_load("warm-up", &base, few.clone(), &warm).await;
    let baseline = token_load("client_credentials, 1 tenant × 3 clients", &base, few, &options).await;
    let seeded = std::time::Instant::now();
    seed(registry, 1, options.tenants.saturating_sub(1)).await?;
    let seed_time = seeded.elapsed();
    let clients = registry
        .list_clients(&Actor::System("bench"), Default::default(), tenant_registry::PageRequest { limit: 1, offset: 0 })
        .await;
    let client_count = clients.map(|p| p.total).unwrap_or_default();
    let mut ids: Vec<String> = Vec::new();
    let mut offset = 0;
    loop {
        let page = registry
            .list_clients(
                &Actor::System("bench"),
                Default::default(),
                tenant_registry::PageRequest { limit: 500, offset },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if page.items.is_empty() {
            break;
        }
        offset += page.items.len() as u64;
        ids.extend(page.items.iter().filter(|c| c.environment == Environment::Test).map(|c| c.client_id.to_string()));
    }
    let scaled = token_load(
        &format!("client_credentials, {} tenants × 3 clients", options.tenants),
        &base,
        Arc::new(ids),
        &options,
    )
    .await;

    let token = admin_token(&base, registry).await?;
    let http = reqwest::Client::new();
    let pages = (options.tenants as u64).div_ceil(100);
    let list = {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        drive("admin: list tenants, 100 per page, every page", 1, Duration::from_secs(600), pages, move |_, i| {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            async move {
                let url = format!("{base}/admin/api/v1/tenants?limit=100&offset={}", i * 100);
                matches!(http.get(url).bearer_auth(token).send().await, Ok(r) if r.status().is_success())
            }
        })
        .await
    };

    let ratio = scaled.rate() / baseline.rate();
    println!(
        "tenant scale: {} tenants, {client_count} clients seeded in {:.1} s",
        options.tenants,
        seed_time.as_secs_f64()
    );
    println!("{:<56} {:>10} {:>9} {:>9} {:>7}", "scenario", "req/s", "p50 ms", "p99 ms", "errors");
    for sample in [&baseline, &scaled, &list] {
        println!(
            "{:<56} {:>10.0} {:>9.2} {:>9.2} {:>7}",
            sample.name,
            sample.rate(),
            sample.quantile_ms(0.5),
            sample.quantile_ms(0.99),
            sample.errors
        );
    }
    println!("token endpoint with {} tenants vs 1 tenant: {ratio:.2}× the throughput", options.tenants);

    let report = serde_json::json!({
        "tenants": options.tenants, "clients": client_count, "seed_seconds": seed_time.as_secs_f64(),
        "scenarios": [baseline.json(), scaled.json(), list.json()], "scaled_vs_baseline_throughput": ratio,
    });
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&folder)?;
    std::fs::write(folder.join("tenant-scale.json"), serde_json::to_string_pretty(&report)?)?;
    let mut markdown = format!(
        "# Tenant scale\n\n{} tenants, {client_count} clients.\n\n| scenario | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|\n",
        options.tenants
    );
    for sample in [&baseline, &scaled, &list] {
        markdown.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {} |\n",
            sample.name,
            sample.rate(),
            sample.quantile_ms(0.5),
            sample.quantile_ms(0.99),
            sample.errors
        ));
    }
    markdown.push_str(&format!(
        "\nToken endpoint with {} tenants vs 1 tenant: {ratio:.2}× the throughput.\n",
        options.tenants
    ));
    std::fs::write(folder.join("tenant-scale.md"), markdown)?;
    Ok(())
}
