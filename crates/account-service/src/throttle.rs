//! Login throttling: failures are counted per login name and per client IP in the ephemeral store
//! (so it holds across nodes). Past a free number of failures, each further failure makes the
//! next attempt wait, doubling up to a cap. Nothing locks permanently, so an attacker cannot shut
//! a citizen out for longer than the cap.

use std::{sync::Arc, time::Duration};

use oidc_core::{Clock, Environment, EphemeralStore};
use time::OffsetDateTime;

use crate::AccountError;

/// Throttling thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures per login name before waiting starts.
    pub free_failures_per_account: i64,
    /// Failures per client IP before waiting starts (a shared office NAT makes many logins).
    pub free_failures_per_ip: i64,
    /// The first wait; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// Failures are forgotten this long after the first one.
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures_per_account: 5,
            free_failures_per_ip: 50,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(15 * 60),
            window: Duration::from_secs(24 * 3600),
        }
    }
}

pub(crate) struct Throttle {
    store: Arc<dyn EphemeralStore>,
    clock: Arc<dyn Clock>,
    policy: ThrottlePolicy,
}

/// Who is counted: the login name (lower case, whether or not an account has it, so that waiting
/// reveals no account) and the client's address.
fn subjects(environment: Environment, login: &str, ip: &str) -> [(String, bool); 2] {
    let env = environment.as_str();
    [(format!("lt:{env}:user:{}", login.to_lowercase()), true), (format!("lt:{env}:ip:{ip}"), false)]
}

impl Throttle {
    pub(crate) fn new(store: Arc<dyn EphemeralStore>, clock: Arc<dyn Clock>, policy: ThrottlePolicy) -> Self {
        Self { store, clock, policy }
    }

    /// How long the caller must still wait before this attempt may be checked.
    pub(crate) async fn wait(
        &self,
        environment: Environment,
        login: &str,
        ip: &str,
    ) -> Result<Option<Duration>, AccountError> {
        let now = self.clock.now();
        let mut longest: Option<Duration> = None;
        for (subject, _) in subjects(environment, login, ip) {
            let until = self.store.get(&format!("{subject}:until")).await.map_err(AccountError::internal)?;
            let until = until
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
            if let Some(until) = until.filter(|u| *u > now) {
                let wait = (until - now).unsigned_abs();
                longest = Some(longest.map_or(wait, |l| l.max(wait)));
            }
        }
        Ok(longest)
    }

    /// Counts a failure; sets the wait once past the free failures.
    pub(crate) async fn failed(&self, environment: Environment, login: &str, ip: &str) -> Result<(), AccountError> {
        let now = self.clock.now();
        for (subject, per_account) in subjects(environment, login, ip) {
            let failures =
                self.store.increment(&subject, 1, self.policy.window).await.map_err(AccountError::internal)?;
            let free =
                if per_account { self.policy.free_failures_per_account } else { self.policy.free_failures_per_ip };
            if failures >= free {
                let delay = delay(&self.policy, failures - free);
                let until = (now + delay).unix_timestamp().to_string();
                self.store
                    .put(&format!("{subject}:until"), until.as_bytes(), delay + Duration::from_secs(1))
                    .await
                    .map_err(AccountError::internal)?;
            }
        }
        Ok(())
    }

    /// A successful login clears the login name's failures (not the address's).
    pub(crate) async fn succeeded(&self, environment: Environment, login: &str, ip: &str) -> Result<(), AccountError> {
        let [(subject, _), _] = subjects(environment, login, ip);
        self.store.delete(&subject).await.map_err(AccountError::internal)?;
        self.store.delete(&format!("{subject}:until")).await.map_err(AccountError::internal)?;
        Ok(())
    }
}

/// `base · 2^excess`, at most the cap.
fn delay(policy: &ThrottlePolicy, excess: i64) -> Duration {
    let shift = u32::try_from(excess.clamp(0, 20)).unwrap_or(20);
    policy.base_delay.saturating_mul(1u32 << shift).min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = ThrottlePolicy::default();
        let check = |excess, seconds| assert_eq!(delay(&policy, excess), Duration::from_secs(seconds), "{excess}");
        check(0, 30);
        check(1, 60);
        check(4, 480);
        check(5, 900);
        check(60, 900);
        check(-3, 30);
    }
}
