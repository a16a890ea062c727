//! The tracing subscriber: pretty for people, JSON for collectors, and OTLP traces when
//! `traces.otlp_endpoint` is set. Logs go to stderr, so stdout carries only what commands print
//! for their caller.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{Config, LogFormat};

/// Keeps the OTLP exporter alive; dropping it sends what is still buffered.
#[must_use = "dropping it stops the trace export"]
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.filter`. Call it outside
/// an async runtime: the OTLP exporter runs on a thread of its own with a blocking HTTP client.
pub fn init(config: &Config) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let provider = config.traces.otlp_endpoint.as_deref().and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build();
        match exporter {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(config.traces.service_name.clone())
                            .build(),
                    )
                    .build(),
            ),
            Err(error) => {
                #[allow(clippy::print_stderr, reason = "the subscriber that would log it is not installed yet")]
                {
                    eprintln!("servicekonto: traces are not exported: {error}");
                }
                None
            }
        }
    });
    // The incoming `traceparent` continues the caller's trace (nginx, a relying party).
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("servicekonto")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // A second init (tests starting several servers) keeps the first subscriber.
    let _ = match config.log.format {
        LogFormat::Pretty => registry.with(fmt::layer().with_writer(std::io::stderr).compact()).try_init(),
        // The current span carries the request and trace ids, so every line of a request names them.
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr).with_current_span(true).with_span_list(false))
            .try_init(),
    };
    Telemetry(provider)
}
