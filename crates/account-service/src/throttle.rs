//! Login throttling: attempts are counted per login name and per client IP in the ephemeral store
//! (so it holds across nodes) *before* the password is verified, each with one atomic increment,
//! so that N parallel attempts get N distinct counts and at most the free ones are verified. From
//! the last free attempt on, one attempt at a time may proceed — the one that atomically claims
//! the wait after it (`SET NX` with the wait as its lifetime) — and the waits double up to a cap. A success
//! clears the login name's count and takes its attempt back from the address's. Nothing locks
//! permanently, so an attacker cannot shut a citizen out for longer than the cap.

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
    /// Username availability checks per client address and hour at registration.
    pub username_checks_per_ip: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures_per_account: 5,
            free_failures_per_ip: 50,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(15 * 60),
            window: Duration::from_secs(24 * 3600),
            username_checks_per_ip: 30,
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

    /// Admits one attempt: `Ok(None)` when it may be verified, `Ok(Some(wait))` when the caller
    /// must wait that long first. An admitted attempt is counted already.
    pub(crate) async fn admit(
        &self,
        environment: Environment,
        login: &str,
        ip: &str,
    ) -> Result<Option<Duration>, AccountError> {
        let subjects = subjects(environment, login, ip);
        // Waiting callers are refused without being counted.
        if let Some(wait) = self.remaining(&subjects).await? {
            return Ok(Some(wait));
        }
        let now = self.clock.now();
        for (subject, per_account) in &subjects {
            let attempts =
                self.store.increment(subject, 1, self.policy.window).await.map_err(AccountError::internal)?;
            let free =
                if *per_account { self.policy.free_failures_per_account } else { self.policy.free_failures_per_ip };
            // From the last free attempt on, each attempt must claim the wait that follows it.
            if attempts >= free {
                let wait = delay(&self.policy, attempts - free);
                let until = (now + wait).unix_timestamp().to_string();
                let claimed = self
                    .store
                    .put_if_absent(&format!("{subject}:until"), until.as_bytes(), wait)
                    .await
                    .map_err(AccountError::internal)?;
                if !claimed {
                    // Another attempt holds the slot: this one waits as long as that one's wait.
                    return Ok(Some(self.remaining(&subjects).await?.unwrap_or(wait)));
                }
            }
        }
        Ok(None)
    }

    /// Counts a username availability check of `ip`; `Some(wait)` past the hourly allowance.
    pub(crate) async fn count_username_check(
        &self,
        environment: Environment,
        ip: &str,
    ) -> Result<Option<Duration>, AccountError> {
        const HOUR: Duration = Duration::from_secs(3600);
        let key = format!("uc:{}:ip:{ip}", environment.as_str());
        let checks = self.store.increment(&key, 1, HOUR).await.map_err(AccountError::internal)?;
        Ok((checks > self.policy.username_checks_per_ip).then_some(HOUR))
    }

    /// The longest wait still running for `subjects`.
    async fn remaining(&self, subjects: &[(String, bool); 2]) -> Result<Option<Duration>, AccountError> {
        let now = self.clock.now();
        let mut longest: Option<Duration> = None;
        for (subject, _) in subjects {
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

    /// A right password clears the login name's count and wait, and takes this attempt back from
    /// the address's count (an office behind one address logs in all day).
    pub(crate) async fn succeeded(&self, environment: Environment, login: &str, ip: &str) -> Result<(), AccountError> {
        let [(subject, _), (address, _)] = subjects(environment, login, ip);
        self.store.delete(&subject).await.map_err(AccountError::internal)?;
        self.store.delete(&format!("{subject}:until")).await.map_err(AccountError::internal)?;
        self.store.increment(&address, -1, self.policy.window).await.map_err(AccountError::internal)?;
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
