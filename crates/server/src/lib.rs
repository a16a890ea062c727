//! The servicekonto server: configuration, telemetry, the composition root, the HTTP routes and
//! the command line. The only crate that knows every other one.
//!
//! Modules: `config` (the typed [`Config`]), `state` (composition root, [`AppState`]), `routes`
//! (the URL map and per-environment routing), `http` (OIDC and operations handlers), `admin`
//! (the admin API), `pages` (the citizen pages), `mail` (mails to citizens), `flows` (use cases
//! that cross domains, e.g. token grants), `error` (all HTTP error mapping), `middleware` and `metrics` (observation), `demo` (demo data), `telemetry`,
//! `cli`.
//!
//! Invariants:
//! - Handlers hold no business rules and touch no storage directly; they call services.
//! - No state lives only in this process that another node would need: durable data is in the
//!   database, short-lived data in the ephemeral store.

mod admin;
pub mod cli;
mod client_keys;
mod config;
mod demo;
mod eid_cli;
mod error;
mod flows;
mod http;
mod listener;
mod mail;
mod metrics;
mod middleware;
mod pages;
mod routes;
mod state;
mod telemetry;

use std::{future::Future, time::Duration};

/// mimalloc instead of glibc's malloc, for every binary that links the server (`servicekonto`,
/// the benchmark): glibc keeps a growing arena per thread and retained the 19 MiB argon2id
/// blocks of password logins, so memory grew with the number of threads that ever hashed.
/// Built without transparent huge pages (the `no_thp` feature): with them, mimalloc's eagerly
/// committed arena made 16 MiB of an idle node resident (18 MiB anonymous memory instead of 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use admin::openapi_json as admin_openapi_json;
pub use config::{Config, ConfigError, EidService, LogFormat, Secret};
pub use state::{AppState, Migrations};
pub use telemetry::init as init_telemetry;

/// Serves `state` on an already bound `listener` until `shutdown` completes; then drains for
/// `http.drain_seconds` (readiness 503, every request still served), stops accepting and gives
/// in-flight requests `http.shutdown_grace_seconds` to finish.
///
/// Taking a bound listener lets tests start the real app on port 0.
pub async fn run(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    state: AppState,
) -> std::io::Result<()> {
    let http = &state.config().http;
    let grace = Duration::from_secs(http.shutdown_grace_seconds);
    let limits = listener::Limits {
        max_connections: listener::connection_cap(http.max_connections),
        head_timeout: Duration::from_secs(http.header_timeout_seconds),
        idle_timeout: Duration::from_secs(http.keep_alive_seconds),
    };
    let drain = Duration::from_secs(http.drain_seconds);
    let draining = state.draining.clone();
    let shutdown = async move {
        shutdown.await;
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        if !drain.is_zero() {
            tracing::info!(seconds = drain.as_secs(), "draining: readiness answers 503, requests are still served");
            tokio::time::sleep(drain).await;
        }
        tracing::info!("shutting down: no new connections, in-flight requests may finish");
    };
    let metrics = match &state.config().metrics.bind {
        Some(bind) => {
            let listener = tokio::net::TcpListener::bind(bind).await?;
            tracing::info!(address = %listener.local_addr()?, "metrics listening");
            let serve =
                listener::serve(listener, limits, routes::metrics_app(&state), (), std::future::pending(), grace);
            Some(tokio::spawn(serve))
        }
        None => None,
    };
    let purge = tokio::spawn(purge_unactivated(state.clone()));
    let inactivity = tokio::spawn(sweep_inactive_accounts(state.clone()));
    let probes = tokio::spawn(probe_dependencies(state.clone()));
    let keys = tokio::spawn(refresh_keys(state.clone()));
    let mails = tokio::spawn(deliver_mails(state.clone()));
    let saml_metadata = tokio::spawn(refresh_saml_metadata_daily(state.clone()));
    let served =
        listener::serve(listener, limits, routes::app(&state), routes::shortcut(&state), shutdown, grace).await;
    purge.abort();
    inactivity.abort();
    probes.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    keys.abort();
    mails.abort();
    saml_metadata.abort();
    served
}

/// Hands queued mails to the mail relay: at once when this node queued one, else every few
/// seconds (mails of other nodes, retries). Any node may send any mail; a claim keeps others off.
async fn deliver_mails(state: AppState) {
    loop {
        match state.mail_outbox.deliver_due(&state.mailer).await {
            Ok((sent, failed)) => {
                for _ in 0..failed {
                    state.metrics.dependency_error("smtp", "mail.send");
                }
                // A full batch sent: more may be waiting, go on at once.
                if sent == mail::BATCH as usize {
                    continue;
                }
            }
            Err(e) => {
                error::record_failure(&state, "mail.queue", &e);
            }
        }
        state.mail_outbox.wait(MAIL_INTERVAL).await;
    }
}

/// How often each node looks for due mails without being woken.
const MAIL_INTERVAL: Duration = Duration::from_secs(5);

/// Re-reads the signing keys at half their refresh interval, so that discovery, JWKS and signing
/// find a fresh snapshot and never wait for the database; while it is down, the last snapshot
/// stays in use (see `KeyService::refresh`). The first read is half an interval after the start:
/// the start loaded them (`KeyService::ensure_keys`).
async fn refresh_keys(state: AppState) {
    let half = Duration::from_secs(state.config().keys.refresh_interval_seconds.max(2) / 2);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        for environment in oidc_core::Environment::ALL {
            if let Err(e) = state.keys().refresh(environment).await {
                error::record_failure(&state, "keys.refresh", &e);
            }
        }
    }
}

/// Keeps the `dependency_up` gauges current, so an alert fires even while no request comes.
async fn probe_dependencies(state: AppState) {
    let mut interval = tokio::time::interval(http::ops::PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        http::ops::probe(&state).await;
    }
}

/// How often each node deletes accounts never activated in time. Several nodes doing it at once
/// is harmless: the deletion is idempotent.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// How often each node tries to run the inactivity policy.
const INACTIVITY_INTERVAL: Duration = Duration::from_secs(3600);

/// The inactivity policy: each node tries every hour; a run holds a lease in the shared
/// ephemeral store, so two nodes never remind or delete the same accounts at once.
async fn sweep_inactive_accounts(state: AppState) {
    let node = uuid::Uuid::new_v4().simple().to_string();
    let mut interval = tokio::time::interval(INACTIVITY_INTERVAL);
    loop {
        interval.tick().await;
        match state.accounts.sweep_inactive(&node).await {
            Ok(Some(sweep)) => {
                if sweep != account_service::InactivitySweep::default() {
                    tracing::info!(reminded = sweep.reminded, deleted = sweep.deleted, "inactive accounts swept");
                }
                state.metrics.inactivity_swept(sweep);
            }
            Ok(None) => tracing::debug!("inactive accounts: another node is sweeping"),
            Err(e) => tracing::warn!(error = %e, "inactive accounts: the sweep failed; retrying later"),
        }
    }
}

/// How often SAML SPs' metadata is read again from their URLs.
const SAML_METADATA_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Reads every SAML SP's metadata again from its `metadata_url` (certificates rotate, ACS URLs
/// move) and applies it, audited; one node per interval does it.
pub async fn refresh_saml_metadata(state: &AppState) -> anyhow::Result<flows::saml::sp::MetadataRefresh> {
    Ok(flows::saml::sp::refresh_all(state).await?)
}

async fn refresh_saml_metadata_daily(state: AppState) {
    let node = uuid::Uuid::new_v4().simple().to_string();
    let mut interval = tokio::time::interval(SAML_METADATA_INTERVAL);
    // Not at start: a restart of every node must not fetch every SP's metadata at once.
    interval.tick().await;
    loop {
        interval.tick().await;
        let lease = SAML_METADATA_INTERVAL.saturating_sub(Duration::from_secs(600));
        match state.ephemeral.put_if_absent("saml-metadata-refresh", node.as_bytes(), lease).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "SAML metadata refresh: the lease could not be taken; retrying later");
                continue;
            }
        }
        match refresh_saml_metadata(&state).await {
            Ok(outcome) => tracing::info!(?outcome, "SAML metadata refreshed"),
            Err(e) => tracing::warn!(error = %e, "SAML metadata refresh failed; retrying later"),
        }
    }
}

async fn purge_unactivated(state: AppState) {
    let mut interval = tokio::time::interval(PURGE_INTERVAL);
    loop {
        interval.tick().await;
        match state.accounts.purge_unactivated().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "deleted accounts that were never activated"),
            Err(e) => tracing::warn!(error = %e, "purging unactivated accounts failed; retrying later"),
        }
    }
}
