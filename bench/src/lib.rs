//! Benchmarks of servicekonto. They print figures and ratios against a baseline measured in the
//! same run; they assert nothing and are not part of the test suite.
//!
//! Binaries: `side-by-side` (`just bench`: servicekonto and node `oidc-provider` under the same
//! load in one run) and `tenant-scale` (5,000 tenants × 3 clients, token endpoint and admin
//! pagination).

pub mod process;
pub mod side_by_side;

use std::time::{Duration, Instant};

/// Latencies of one scenario.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Scenario name.
    pub name: String,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall time of the scenario.
    pub elapsed: Duration,
    /// Sorted latencies of successful requests.
    latencies: Vec<Duration>,
}

impl Sample {
    /// A sample from unsorted latencies.
    pub fn new(name: &str, mut latencies: Vec<Duration>, errors: u64, elapsed: Duration) -> Self {
        latencies.sort();
        Self { name: name.to_owned(), ok: latencies.len() as u64, errors, elapsed, latencies }
    }

    /// Two windows of the same scenario as one: their requests, errors and wall time summed.
    pub fn merge(mut self, other: Sample) -> Self {
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.latencies.sort();
        self
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    /// JSON for the report file.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.name, "ok": self.ok, "errors": self.errors,
            "requests_per_second": self.rate(), "p50_ms": self.quantile_ms(0.5), "p99_ms": self.quantile_ms(0.99),
        })
    }
}

/// Runs `request` from `concurrency` workers for `duration` (and at most `max_requests`),
/// collecting latencies; `request(worker, i)` returns whether request `i`, sent by worker
/// `worker` (for state a worker keeps, such as its refresh token), succeeded.
pub async fn drive<F, Fut>(name: &str, concurrency: usize, duration: Duration, max_requests: u64, request: F) -> Sample
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let request = request.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                loop {
                    let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= max_requests || started.elapsed() >= duration {
                        break;
                    }
                    let t = Instant::now();
                    if request(worker, i).await {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        if let Ok((l, e)) = worker.await {
            latencies.extend(l);
            errors += e;
        }
    }
    Sample::new(name, latencies, errors, started.elapsed())
}
