//! Prometheus metrics: requests and latency per route, tokens issued per grant, logins by outcome,
//! dependency failures and probes. Rendered at `/metrics` in the text format.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// What a password login can end in (the `outcome` label of `servicekonto_logins_total`).
pub(crate) const LOGIN_OUTCOMES: [&str; 5] = ["success", "invalid_credentials", "throttled", "not_activated", "error"];

/// The registry and the instruments of one server.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    from_head: IntCounterVec,
    tokens: IntCounterVec,
    logins: IntCounterVec,
    dependency_errors: IntCounterVec,
    dependency_up: IntGaugeVec,
    inactive_accounts: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("servicekonto".to_owned()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route pattern, method and status"),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route pattern and method")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["route", "method"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new("tokens_issued_total", "Access tokens issued by environment and grant type"),
            &["environment", "grant_type"],
        )?;
        // Whether the listener's shortcut does its work: when a document's requests go up and
        // this does not, they take the long way (a JWKS never fresh, a proxy adding a body).
        let from_head = IntCounterVec::new(
            Opts::new(
                "http_answered_from_head_total",
                "Requests answered from the request head, before routing (discovery, JWKS), by route pattern",
            ),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(from_head.clone()))?;
        let logins = IntCounterVec::new(Opts::new("logins_total", "Password logins by outcome"), &["outcome"])?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        let dependency_errors = IntCounterVec::new(
            Opts::new("dependency_errors_total", "Failed requests by the dependency that failed and the operation"),
            &["dependency", "operation"],
        )?;
        let dependency_up = IntGaugeVec::new(
            Opts::new("dependency_up", "1 when the dependency passed its last probe (every 2 s), else 0"),
            &["dependency"],
        )?;
        registry.register(Box::new(dependency_errors.clone()))?;
        registry.register(Box::new(dependency_up.clone()))?;
        let inactive_accounts = IntCounterVec::new(
            Opts::new(
                "inactive_accounts_total",
                "Accounts unused for the configured time: reminders sent (reminded) and accounts deleted (deleted)",
            ),
            &["action"],
        )?;
        registry.register(Box::new(inactive_accounts.clone()))?;
        for action in ["reminded", "deleted"] {
            inactive_accounts.with_label_values(&[action]).reset();
        }
        // Every outcome exists from the start at 0, so that rate() and ratios in alerts work
        // before the first failure.
        for outcome in LOGIN_OUTCOMES {
            logins.with_label_values(&[outcome]).reset();
        }
        Ok(Self {
            registry,
            requests,
            latency,
            from_head,
            tokens,
            logins,
            dependency_errors,
            dependency_up,
            inactive_accounts,
        })
    }

    /// `route` is the matched pattern (never the raw path, which would make labels unbounded).
    pub(crate) fn observe_request(&self, route: &str, method: &str, status: poem::http::StatusCode, seconds: f64) {
        self.requests.with_label_values(&[route, method, status.as_str()]).inc();
        self.latency.with_label_values(&[route, method]).observe(seconds);
    }

    /// The request metrics of one route and method, to be bound to their labels once.
    pub(crate) fn route(&self, route: &str, method: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            method: method.to_owned(),
            requests: self.requests.clone(),
            latency: self.latency.clone(),
            ok: OnceLock::new(),
            not_modified: OnceLock::new(),
            latency_bound: OnceLock::new(),
        }
    }

    /// The count of `route`'s requests answered from the request head, bound to its label.
    pub(crate) fn answered_from_head(&self, route: &str) -> IntCounter {
        self.from_head.with_label_values(&[route])
    }

    pub(crate) fn token_issued(&self, environment: oidc_core::Environment, grant_type: &str) {
        self.tokens.with_label_values(&[environment.as_str(), grant_type]).inc();
    }

    /// `outcome`: one of [`LOGIN_OUTCOMES`].
    pub(crate) fn login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    /// A request failed because `dependency` failed during `operation`.
    pub(crate) fn dependency_error(&self, dependency: &str, operation: &str) {
        self.dependency_errors.with_label_values(&[dependency, operation]).inc();
    }

    /// The outcome of the latest probe of `dependency`.
    pub(crate) fn dependency_up(&self, dependency: &str, up: bool) {
        self.dependency_up.with_label_values(&[dependency]).set(i64::from(up));
    }

    /// What a run of the inactivity policy did (on the node that held the lease).
    pub(crate) fn inactivity_swept(&self, sweep: account_service::InactivitySweep) {
        self.inactive_accounts.with_label_values(&["reminded"]).inc_by(sweep.reminded);
        self.inactive_accounts.with_label_values(&["deleted"]).inc_by(sweep.deleted);
    }

    pub(crate) fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The request metrics of one route and method. Each series is bound on its first use
/// (binding looks its labels up in a locked map; until then `/metrics` does not show it, as
/// with [`Metrics::observe_request`]); the statuses of a document's answers (200, 304) stay
/// bound, others are looked up each time.
pub(crate) struct RouteMetrics {
    route: String,
    method: String,
    requests: IntCounterVec,
    latency: HistogramVec,
    ok: OnceLock<IntCounter>,
    not_modified: OnceLock<IntCounter>,
    latency_bound: OnceLock<Histogram>,
}

impl RouteMetrics {
    /// The route's label.
    pub(crate) fn route(&self) -> &str {
        &self.route
    }

    pub(crate) fn observe(&self, status: poem::http::StatusCode, seconds: f64) {
        let counter = |cell: &OnceLock<IntCounter>| {
            cell.get_or_init(|| self.requests.with_label_values(&[&self.route, &self.method, status.as_str()])).inc();
        };
        match status {
            poem::http::StatusCode::OK => counter(&self.ok),
            poem::http::StatusCode::NOT_MODIFIED => counter(&self.not_modified),
            other => self.requests.with_label_values(&[&self.route, &self.method, other.as_str()]).inc(),
        }
        self.latency_bound
            .get_or_init(|| self.latency.with_label_values(&[&self.route, &self.method]))
            .observe(seconds);
    }
}
