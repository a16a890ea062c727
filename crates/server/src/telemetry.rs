//! The tracing subscriber: pretty for people, JSON for collectors. Logs go to stderr, so stdout
//! carries only what commands print for their caller.

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.filter`.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests starting several servers) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Pretty => registry.with(fmt::layer().with_writer(std::io::stderr).compact()).try_init(),
        // The current span carries the request id, so every line of a request names it.
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr).with_current_span(true).with_span_list(false))
            .try_init(),
    };
}
