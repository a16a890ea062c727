//! `just bench-memory`: what a live opaque access token costs in the in-memory ephemeral store
//! (the embedded default), measured as the growth of this process's resident memory while
//! 100,000 and 1,000,000 tokens are issued through the server's own `AccessTokens` and the
//! server's allocator (mimalloc), each count in a fresh process so freed memory of an earlier
//! round cannot hide growth. Then the clock passes the tokens' lifetime and the store's sweep
//! must drop them: the report gives how many writes that took.
//!
//! `token-memory [--smoke] [--out DIR]`; a child run is `token-memory --child KIND N`.
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::{
    process::{Command, ExitCode},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use oidc_core::{
    AccessGrant, AccessTokens, AccountId, CitizenGrant, ClientId, Environment, EphemeralStore, FamilyTag, ManualClock,
    TenantId, TenantTag,
};
use storage::MemoryEphemeralStore;

/// The two shapes of opaque access token: a service's own (`client_credentials`) and a
/// citizen's from the code flow with the bench's scope (`openid profile email address`).
const KINDS: [&str; 2] = ["client_credentials", "code flow"];
const LIFETIME: Duration = Duration::from_secs(300);

fn grant(kind: &str, now: i64, tenant: TenantId) -> anyhow::Result<AccessGrant> {
    let client_id = ClientId::parse("demo-client").context("client id")?;
    let citizen = (kind == "code flow").then(|| CitizenGrant {
        account_id: AccountId::new_random(),
        claims: ["given_name", "family_name", "email", "email_verified", "address"].map(str::to_owned).to_vec(),
        consent_ref: "consent:1764000000:2026-11".to_owned(),
        verified_claims: false,
        values: None,
        organisation: None,
    });
    Ok(AccessGrant {
        environment: Environment::Test,
        client_id,
        tenant: TenantTag::of(tenant),
        scopes: if citizen.is_some() {
            ["openid", "profile", "email", "address"].map(str::to_owned).to_vec()
        } else {
            Vec::new()
        },
        issued_at: now,
        expires_at: now + i64::try_from(LIFETIME.as_secs())?,
        family: citizen.is_some().then(|| FamilyTag::of(&"f".repeat(43))),
        citizen,
    })
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One round in this process: prints `bytes_per_token entries_after_expiry`.
async fn child(kind: &str, count: u64) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let store = Arc::new(MemoryEphemeralStore::with_clock(clock.clone()));
    let tokens = AccessTokens::new(store.clone());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let grant = grant(kind, now, TenantId::new_random())?;
    let before = rss_kib();
    let mut kept = Vec::with_capacity(16);
    for i in 0..count {
        let token = tokens.issue(&grant, LIFETIME).await?;
        if i % (count / 16).max(1) == 0 {
            kept.push(token);
        }
    }
    let after = rss_kib();
    for token in &kept {
        anyhow::ensure!(tokens.find(token).await?.is_some(), "a token issued in this round is not found");
    }
    // Past the lifetime, writes go on: the store's sweep, paid for by writes, must drop every
    // expired token within a bounded number of them (a third of the tokens, plus a little).
    clock.advance(time::Duration::try_from(LIFETIME)? + time::Duration::seconds(2));
    let mut writes: u64 = 0;
    while store.len() as u64 > writes {
        anyhow::ensure!(writes <= count, "{} entries held after {writes} writes past the expiry", store.len());
        store.put(&format!("other:{writes}"), b"1", Duration::from_secs(60)).await?;
        writes += 1;
    }
    let per_token = (after.saturating_sub(before) * 1024) as f64 / count as f64;
    println!("{per_token:.1} {writes}");
    Ok(())
}

fn run(smoke: bool, out: &std::path::Path) -> anyhow::Result<()> {
    let counts: &[u64] = if smoke { &[10_000] } else { &[100_000, 1_000_000] };
    let exe = std::env::current_exe()?;
    let mut md = String::from(
        "| token | live tokens | resident memory per token | writes after the tokens expired until all were swept |\n|---|---:|---:|---:|\n",
    );
    let mut rows = Vec::new();
    for kind in KINDS {
        for &count in counts {
            let output = Command::new(&exe).args(["--child", kind, &count.to_string()]).output()?;
            anyhow::ensure!(
                output.status.success(),
                "the round {kind} × {count} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let text = String::from_utf8_lossy(&output.stdout);
            let mut fields = text.split_whitespace();
            let per_token: f64 = fields.next().context("no figure")?.parse()?;
            let writes: u64 = fields.next().context("no count")?.parse()?;
            md.push_str(&format!("| {kind} | {count} | {per_token:.0} bytes | {writes} |\n"));
            rows.push(serde_json::json!({ "token": kind, "live_tokens": count, "bytes_per_token": per_token, "writes_until_swept": writes }));
        }
    }
    println!("{md}");
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("token-memory.md"), &md)?;
    std::fs::write(out.join("token-memory.json"), serde_json::to_string_pretty(&rows)?)?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--child") {
        match (args.get(1), args.get(2).and_then(|n| n.parse().ok())) {
            (Some(kind), Some(count)) => tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(child(kind, count))),
            _ => Err(anyhow::anyhow!("--child KIND COUNT")),
        }
    } else {
        let smoke = args.iter().any(|a| a == "--smoke");
        let out = args
            .iter()
            .position(|a| a == "--out")
            .and_then(|i| args.get(i + 1))
            .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"), Into::into);
        run(smoke, &out)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("token-memory: {error:#}");
            ExitCode::FAILURE
        }
    }
}
