//! When to send an exchange again: tower's retry layer with this policy. Only safe calls are
//! retried (reads, and writes carrying an idempotency key, the same key every time; any call that
//! certainly never left), only on failures that say WorkOS is struggling, with tower's jittered
//! exponential backoff (or WorkOS's `Retry-After`) when the wait fits the caller's deadline, and
//! within tower's retry budget, so retries never multiply load during an outage.

use std::sync::Arc;

use tower::retry::{
    backoff::{Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff as _},
    budget::{Budget as _, TpsBudget},
};

use super::{
    Error, Observe, RetrySettings,
    transport::{Answer, Exchange},
};

/// How long the budget remembers calls and retries.
const BUDGET_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// The least time worth sending another attempt with, after its wait.
const MIN_ATTEMPT: std::time::Duration = std::time::Duration::from_millis(10);

/// The jitter's randomness: the thread's generator. tower's default generator is a counter that
/// every clone of the policy would restart, giving every call the same "random" backoff.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ThreadRng;

impl tower::util::rng::Rng for ThreadRng {
    fn next_u64(&mut self) -> u64 {
        rand::random()
    }
}

/// The retry policy. The layer clones it for each call, so `attempts` and the backoff start
/// afresh every time while the budget is shared.
#[derive(Debug, Clone)]
pub(super) struct RetryPolicy {
    budget: Arc<TpsBudget>,
    backoff: ExponentialBackoff<ThreadRng>,
    max_attempts: u32,
    attempts: u32,
    observe: Arc<dyn Observe>,
}

impl RetryPolicy {
    /// A policy from settings; tower refuses a zero maximum or a base above it.
    pub(super) fn new(
        settings: &RetrySettings,
        observe: Arc<dyn Observe>,
    ) -> Result<Self, tower::retry::backoff::InvalidBackoff> {
        let budget = TpsBudget::new(
            BUDGET_WINDOW,
            settings.budget_min_per_second,
            settings.budget_ratio as f32,
        );
        let backoff = ExponentialBackoffMaker::new(
            settings.backoff_base,
            settings.backoff_max,
            1.0,
            ThreadRng,
        )?
        .make_backoff();
        Ok(Self {
            budget: Arc::new(budget),
            backoff,
            max_attempts: settings.max_attempts,
            attempts: 0,
            observe,
        })
    }
}

impl tower::retry::Policy<Exchange, Answer, Error> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        exchange: &mut Exchange,
        result: &mut Result<Answer, Error>,
    ) -> Option<Self::Future> {
        self.attempts += 1;
        if self.attempts == 1 {
            // One deposit per call: retries may add at most the budget's share on top.
            self.budget.deposit();
        }
        let error = result.as_ref().err()?;
        let safe = exchange.retry_safe();
        let retryable = match error {
            // A 429 is refused before anything is done: even a create may be sent again.
            Error::Api { status: 429, .. } => true,
            Error::Api { status, .. } => matches!(status, 408 | 500..=599) && safe,
            Error::Timeout => safe,
            Error::Transport { .. } => safe || error.never_sent(),
            _ => false,
        };
        if !retryable || self.attempts >= self.max_attempts {
            return None;
        }
        // WorkOS's Retry-After wins over the backoff, but only when it fits in the time the
        // caller has left; otherwise the caller hears at once, with the delay to wait.
        let wait = match error {
            Error::Api {
                retry_after: Some(delay),
                ..
            } => tokio::time::sleep(*delay),
            _ => self.backoff.next_backoff(),
        };
        if wait.deadline() + MIN_ATTEMPT >= exchange.call.deadline || !self.budget.withdraw() {
            return None;
        }
        tracing::debug!(attempt = self.attempts, route = exchange.route.name, error = %error, "retrying a WorkOS call");
        self.observe.retry(exchange.route.name);
        Some(wait)
    }

    fn clone_request(&mut self, exchange: &Exchange) -> Option<Exchange> {
        Some(exchange.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_a_ratio_of_calls_plus_a_floor() {
        let budget = TpsBudget::new(BUDGET_WINDOW, 1, 0.2);
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(
            granted,
            20 + 10,
            "20% of 100 calls plus 1/s over the 10 s window"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(budget.withdraw(), "the window slides");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_with_jitter_below_the_cap() {
        let settings = RetrySettings {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            ..RetrySettings::default()
        };
        let mut waits = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut policy = RetryPolicy::new(&settings, Arc::new(())).expect("valid");
            let now = tokio::time::Instant::now();
            let first = policy.backoff.next_backoff().deadline() - now;
            let second = policy.backoff.next_backoff().deadline() - now;
            let third = policy.backoff.next_backoff().deadline() - now;
            assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&first));
            assert!((Duration::from_millis(200)..=Duration::from_millis(300)).contains(&second));
            assert_eq!(third, Duration::from_millis(300));
            waits.insert(first);
        }
        assert!(
            waits.len() > 40,
            "every call draws its own jitter: {waits:?}"
        );
    }
}
