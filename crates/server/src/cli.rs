//! The `servicekonto` command line.
//!
//! What commands print for their caller goes to stdout; logs go to stderr.
#![allow(clippy::print_stdout, reason = "a command line prints its results")]

use std::{collections::BTreeSet, io::Write as _, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use oidc_core::{ClientId, Clock as _, Environment, KeyInfo, SystemClock, TrustLevel};
use tenant_registry::{
    Actor, AdminRole, AuthMethod, Branding, ClientSettings, GrantType, NewTenant, OperatorFlags, TokenLifetimes,
};
use time::format_description::well_known::Rfc3339;

use crate::{AppState, Config, Migrations, state, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "servicekonto",
    version,
    about = "OpenID Connect provider: one citizen account for all online services of a state's authorities"
)]
struct Cli {
    /// TOML config file; `SERVICEKONTO_*` environment variables override it.
    #[arg(long, short, global = true, env = crate::config::CONFIG_FILE_VARIABLE)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (applies pending migrations first unless told not to).
    Serve {
        /// Refuse to start while migrations are pending instead of applying them.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Admin API access.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Drive the local AusweisApp2 through one authentication for a TC token URL (service desk).
    Eid {
        /// Where AusweisApp2 fetches the TC token, e.g. `https://konto.example/eid/tc-token?ref=…`.
        #[arg(long)]
        tc_token_url: String,
        /// AusweisApp2's SDK address.
        #[arg(long, default_value = eid_bridge::sdk::client::DEFAULT_SDK_URL)]
        sdk_url: String,
        /// Accept an http TC token URL and test certificates (test systems only).
        #[arg(long)]
        developer_mode: bool,
        /// Use AusweisApp2's built-in simulated card instead of a real one.
        #[arg(long)]
        simulator: bool,
    },
    /// The configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Exit 0 when the server on `http.bind` (or `--url`) answers `/healthz`; for container probes.
    Healthcheck {
        /// Base URL of the server; default from `http.bind`.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (defaults, file and environment merged; issuers
    /// derived; secrets redacted) and every problem with it; exit 1 when there is one.
    Check,
}

#[derive(Debug, Subcommand)]
enum AdminAction {
    /// Create an operator admin client (and the operator's tenant if missing) and print its
    /// credentials once.
    Bootstrap {
        /// Slug of the operator's own tenant.
        #[arg(long, default_value = "betreiber")]
        tenant_slug: String,
        /// Name of the operator (e.g. the IT association).
        #[arg(long, default_value = "Betreiber des Servicekontos")]
        name: String,
        /// Contact e-mail of the operator.
        #[arg(long, default_value = "betrieb@example.org")]
        contact: String,
        /// Do nothing (and succeed) when an operator client exists already. Without it, an
        /// existing operator client is an error: a second one is made only with `--additional`.
        #[arg(long, conflicts_with_all = ["regain", "additional"])]
        if_missing: bool,
        /// Regain access: rotate the secret of the existing operator client (`--client-id` when
        /// there are several) and print the new one; audited as `client.rotate_secret`.
        #[arg(long, conflicts_with = "additional")]
        regain: bool,
        /// With `--regain`: which operator client (base64url; may begin with `-`).
        #[arg(long, requires = "regain", allow_hyphen_values = true)]
        client_id: Option<String>,
        /// Create another operator client although one exists.
        #[arg(long)]
        additional: bool,
    },
    /// Print the admin API's OpenAPI document.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// List the keys of one or both environments with their status.
    List {
        /// Only this environment.
        #[arg(long)]
        environment: Option<Environment>,
    },
    /// Rotate: new keys are published now and sign after `keys.activation_delay_seconds`.
    Rotate {
        /// Only this environment.
        #[arg(long)]
        environment: Option<Environment>,
        /// Sign with the new keys at once (a compromised key; clients that cached the JWKS
        /// fetch it again when they meet the new key id).
        #[arg(long)]
        now: bool,
    },
    /// Take a key out of the JWKS and out of signing at once (a compromised key).
    Withdraw {
        /// The key's id, as `keys list` shows it. Key ids are base64url and may begin with `-`,
        /// which must not be taken for an option.
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
        /// Its environment.
        #[arg(long)]
        environment: Environment,
    },
    /// Re-seal everything sealed under `keys.previous_kek` (signing keys, the derivation root)
    /// under `keys.kek`. Nodes keep serving throughout; see docs/operations.md.
    RotateKek,
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config { action: ConfigAction::Check } = cli.command {
        return check_config(cli.config.as_deref());
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("servicekonto: {error}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = telemetry::init(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("servicekonto: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("servicekonto: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { no_migrate } => {
            let run_migrations = config.database.run_migrations && !no_migrate;
            serve(config, if run_migrations { Migrations::Apply } else { Migrations::Require }).await?;
        }
        Command::Migrate => {
            let database = state::connect_database(&config, Migrations::Apply).await?;
            println!("database schema is up to date ({})", database.backend_name());
        }
        Command::Keys { action } => keys(action, &config).await?,
        Command::Admin { action: AdminAction::Openapi } => println!("{}", crate::admin_openapi_json()),
        Command::Admin {
            action: AdminAction::Bootstrap { tenant_slug, name, contact, if_missing, regain, client_id, additional },
        } => {
            let mode = match (if_missing, regain, additional) {
                (true, _, _) => BootstrapMode::IfMissing,
                (_, true, _) => BootstrapMode::Regain(client_id),
                (_, _, true) => BootstrapMode::Additional,
                _ => BootstrapMode::First,
            };
            bootstrap(&config, tenant_slug, name, contact, mode).await?;
        }
        Command::Healthcheck { url } => return healthcheck(url, &config).await,
        // `main` runs it before loading the config (whose errors it reports itself).
        Command::Config { action: ConfigAction::Check } => {
            anyhow::bail!("config check runs before the config is loaded")
        }
        Command::Eid { tc_token_url, sdk_url, developer_mode, simulator } => {
            let run = crate::eid_cli::EidRun { sdk_url, tc_token_url, developer_mode, simulator };
            return Ok(if crate::eid_cli::run(run).await? { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config, migrations: Migrations) -> anyhow::Result<()> {
    let bind = config.http.bind.clone();
    let state = AppState::build(config, migrations).await?;
    let listener = tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("binding {bind}"))?;
    let address = listener.local_addr()?;
    let (database, ephemeral) = state.backends();
    let shutdown = shutdown_signal();
    let mut banner = vec![format!("servicekonto {} listening on http://{address}", env!("CARGO_PKG_VERSION"))];
    for environment in Environment::ALL {
        let issuer = state.config().environments.issuer(environment);
        banner.push(format!(
            "  {:<10} issuer {issuer}  (discovery: {issuer}/.well-known/openid-configuration)",
            environment.as_str()
        ));
    }
    banner.push(format!("  database: {database}; ephemeral store: {ephemeral}"));
    banner.push(match crate::mail::Mailer::target(&state.config().mail) {
        crate::mail::MailTarget::Smtp => "  mail: SMTP (mail.smtp_url)".to_owned(),
        crate::mail::MailTarget::Outbox(folder) => format!("  mail: written to the outbox {}", folder.display()),
    });
    banner.push(format!(
        "  citizen pages: {}/registrierung, {}/anmelden",
        state.config().environments.issuer(Environment::Production),
        state.config().environments.issuer(Environment::Production)
    ));
    let demo = &state.config().demo;
    if demo.enabled {
        let issuer = state.config().environments.issuer(Environment::Test);
        banner.push(format!(
            "  demo client (test environment, tenant demo-kommune): client_id={} client_secret={}  token endpoint {issuer}/token",
            demo.client_id,
            demo.client_secret.expose()
        ));
    }
    // A server whose stdout was closed must keep serving: write errors are ignored, where
    // `println!` would panic.
    let mut stdout = std::io::stdout().lock();
    for line in banner {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    drop(stdout);
    crate::run(listener, shutdown, state).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM (what orchestrators send) or Ctrl-C (SIGINT), registered when this is called: the
/// future only waits. Called before the banner says the server listens, so a signal at any
/// later moment ends the server gracefully — never by the signal's default action, which a
/// handler installed on the future's first poll left open to a SIGTERM right after the start.
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| {
        let registered = signal(kind);
        async move {
            match registered {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, signal = name, "cannot listen for the signal");
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let terminate = listen(SignalKind::terminate(), "SIGTERM");
    let interrupt = listen(SignalKind::interrupt(), "SIGINT");
    async move {
        tokio::select! {
            () = terminate => {},
            () = interrupt => {},
        }
    }
}

/// Ctrl-C where there are no Unix signals.
#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `config check`: the effective configuration on stdout, the problems on stderr.
fn check_config(file: Option<&std::path::Path>) -> ExitCode {
    let config = match Config::read(file, std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("servicekonto: {error}");
            return ExitCode::from(2);
        }
    };
    match toml::to_string_pretty(&config) {
        Ok(text) => println!("# effective configuration (secrets redacted)\n{text}"),
        Err(error) => eprintln!("servicekonto: cannot print the configuration: {error}"),
    }
    match config.validate() {
        Ok(()) => {
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("servicekonto: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What `admin bootstrap` does when an operator client exists already.
enum BootstrapMode {
    /// Refuse: the operator has a client (and should say what they want).
    First,
    /// Succeed without doing anything.
    IfMissing,
    /// Rotate the secret of this (or the only) operator client.
    Regain(Option<String>),
    /// Create another one.
    Additional,
}

async fn bootstrap(
    config: &Config,
    slug: String,
    name: String,
    contact: String,
    mode: BootstrapMode,
) -> anyhow::Result<()> {
    // The first command on a fresh database: it brings the schema up to date itself, as
    // `serve` does, unless the operator runs migrations separately (`database.run_migrations`).
    let migrations = if config.database.run_migrations { Migrations::Apply } else { Migrations::Require };
    let database = state::connect_database(config, migrations).await?;
    let secrets = state::secrets(config, &database, &SystemClock).await?;
    let registry = state::uncached_registry(&database, &secrets.root, Arc::new(SystemClock));
    let operators =
        registry.operator_clients().await.map_err(|e| anyhow::anyhow!("listing operator clients: {e:?}"))?;
    let issuer = config.environments.issuer(Environment::Production);
    match (&mode, operators.as_slice()) {
        (BootstrapMode::Regain(wanted), _) => {
            let chosen = match wanted {
                Some(id) => operators.iter().find(|c| c.client_id.as_str() == id),
                None if operators.len() == 1 => operators.first(),
                None => anyhow::bail!(
                    "there are {} operator clients; name one with --client-id ({})",
                    operators.len(),
                    operators.iter().map(|c| c.client_id.to_string()).collect::<Vec<_>>().join(", ")
                ),
            };
            let client = chosen.context("no such operator client; `admin bootstrap` creates the first one")?;
            // The old secret stops at once: whoever lost access may not be the only one holding it.
            let (client, secret) = registry
                .rotate_secret(&Actor::System("bootstrap-regain"), &client.client_id, Duration::ZERO, None)
                .await
                .map_err(|e| anyhow::anyhow!("rotating the secret: {e:?}"))?;
            println!(
                "operator admin client {}: new secret (shown only now; the old one no longer works):",
                client.client_id
            );
            println!("  client_secret:  {}", secret.expose());
            return Ok(());
        }
        (BootstrapMode::IfMissing, [existing, ..]) => {
            println!("an operator client exists already ({}); nothing done", existing.client_id);
            return Ok(());
        }
        (BootstrapMode::First, [existing, ..]) => anyhow::bail!(
            "an operator client exists already ({}): use --if-missing to accept that, --regain to rotate its secret, \
             --additional for another one",
            existing.client_id
        ),
        (BootstrapMode::First | BootstrapMode::IfMissing | BootstrapMode::Additional, _) => {}
    }
    let actor = Actor::System("bootstrap");
    let tenant = match registry.find_tenant_by_slug(&slug).await? {
        Some(tenant) => tenant,
        None => {
            let new = NewTenant {
                slug,
                name: name.clone(),
                contact_email: contact,
                branding: Branding { display_name: name, logo_url: None },
                allowed_claims: BTreeSet::new(),
                min_trust_level: TrustLevel::Normal,
                sector: None,
            };
            registry
                .create_tenant(&actor, new)
                .await
                .map_err(|e| anyhow::anyhow!("creating the operator tenant: {e:?}"))?
        }
    };
    let mut settings = ClientSettings::confidential("Operator admin", Vec::new());
    settings.grant_types = BTreeSet::from([GrantType::ClientCredentials]);
    settings.scopes = BTreeSet::new();
    settings.auth_method = AuthMethod::ClientSecretBasic;
    settings.lifetimes = TokenLifetimes { access_token: 600, ..TokenLifetimes::default() };
    let flags = OperatorFlags { first_party: false, admin_role: Some(AdminRole::Operator) };
    let (client, secret) = registry
        .create_client_with_id(&actor, tenant.id, Environment::Production, ClientId::generate(), settings, flags, None)
        .await
        .map_err(|e| anyhow::anyhow!("creating the admin client: {e:?}"))?;
    let secret = secret.context("an admin client always gets a secret")?;
    println!("operator admin client created (the secret is shown only now):");
    println!("  client_id:      {}", client.client_id);
    println!("  client_secret:  {}", secret.expose());
    println!("  token endpoint: {issuer}/token  (grant_type=client_credentials, scope=admin, HTTP Basic)");
    println!("  admin API:      /admin/api/v1  (Authorization: Bearer <access_token>)");
    Ok(())
}

async fn keys(action: KeysAction, config: &Config) -> anyhow::Result<()> {
    let database = state::connect_database(config, Migrations::Require).await?;
    let secrets = state::secrets(config, &database, &SystemClock).await?;
    let mut config = config.clone();
    if let KeysAction::Rotate { now: true, .. } = action {
        config.keys.activation_delay_seconds = 0;
    }
    let config = &config;
    let keys = state::key_service(config, &database, secrets.ring.clone(), Arc::new(SystemClock));
    let (environment, rotate) = match action {
        KeysAction::List { environment } => (environment, false),
        KeysAction::Rotate { environment, .. } => (environment, true),
        KeysAction::RotateKek => return rotate_kek(config, &database, &secrets, &keys).await,
        KeysAction::Withdraw { kid, environment } => {
            keys.withdraw(environment, &kid).await?;
            println!("{kid} withdrawn; every node drops it within keys.refresh_interval_seconds");
            (Some(environment), false)
        }
    };
    let environments = environment.map_or(Environment::ALL.to_vec(), |e| vec![e]);
    println!(
        "{:<11} {:<6} {:>3} {:<9} {:<21} {:<21} KID",
        "ENVIRONMENT", "ALG", "GEN", "STATUS", "SIGNS FROM", "EXPIRES"
    );
    for environment in environments {
        if rotate {
            keys.rotate(environment).await?;
        }
        for key in keys.list(environment).await? {
            print_key(environment, &key);
        }
    }
    Ok(())
}

/// `keys rotate-kek`: the derivation root and every signing key sealed under `keys.kek`.
async fn rotate_kek(
    config: &Config,
    database: &storage::Database,
    secrets: &state::Secrets,
    keys: &oidc_core::KeyService,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.keys.previous_kek.is_some(),
        "set keys.previous_kek to the old key-encryption key and keys.kek to the new one first \
         (docs/operations.md, \"Rotating the key-encryption key\")"
    );
    let (resealed, current) = keys.reseal_all().await?;
    let store = database.sealed_secrets();
    let sealed = store.get(state::DERIVATION_ROOT).await?.context("no derivation root is stored")?;
    let root_resealed = match secrets.ring.reseal(state::DERIVATION_ROOT, &sealed) {
        Some(again) => {
            store.replace(state::DERIVATION_ROOT, again, SystemClock.now().unix_timestamp()).await?;
            true
        }
        None => false,
    };
    println!(
        "signing keys: {resealed} re-sealed, {current} sealed under keys.kek already; derivation root: {}",
        if root_resealed { "re-sealed" } else { "sealed under keys.kek already" }
    );
    println!("every node may now drop keys.previous_kek");
    Ok(())
}

fn print_key(environment: Environment, key: &KeyInfo) {
    let format = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    println!(
        "{:<11} {:<6} {:>3} {:<9} {:<21} {:<21} {}",
        environment.as_str(),
        key.algorithm.as_str(),
        key.generation,
        key.status.as_str(),
        format(key.activates_at),
        key.expires_at.map(format).unwrap_or_else(|| "-".to_owned()),
        key.kid
    );
}

async fn healthcheck(url: Option<String>, config: &Config) -> anyhow::Result<ExitCode> {
    let base = url.unwrap_or_else(|| format!("http://{}", config.http.bind.replace("0.0.0.0", "127.0.0.1")));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    match client.get(format!("{}/healthz", base.trim_end_matches('/'))).send().await {
        Ok(response) if response.status().is_success() => {
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Ok(response) => {
            eprintln!("unhealthy: {}", response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("unreachable: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Command, KeysAction};

    #[test]
    fn a_key_id_that_begins_with_a_hyphen_is_a_value() {
        // base64url key ids begin with `-` one time in 64; the CLI test met it on CI.
        let cli = Cli::try_parse_from(["servicekonto", "keys", "withdraw", "--environment", "test", "--kid", "-bQ3x"])
            .unwrap();
        let Command::Keys { action: KeysAction::Withdraw { kid, .. } } = cli.command else { panic!("{cli:?}") };
        assert_eq!(kid, "-bQ3x");
    }

    #[test]
    fn a_client_id_that_begins_with_a_hyphen_is_a_value() {
        let cli =
            Cli::try_parse_from(["servicekonto", "admin", "bootstrap", "--regain", "--client-id", "-x9"]).unwrap();
        let Command::Admin { action: super::AdminAction::Bootstrap { client_id, .. } } = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(client_id.as_deref(), Some("-x9"));
    }
}
