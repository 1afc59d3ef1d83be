//! How the client behaves when WorkOS misbehaves: retries with exponential backoff and full
//! jitter, a retry budget so retries never multiply load during an outage, and a circuit breaker
//! per route family that fails fast while WorkOS is down and probes its way back.
//!
//! Time comes from `tokio::time`, so tests can pause it.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use rand::Rng;
use tokio::time::Instant;

/// Retry settings.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each time.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Retries allowed as a fraction of calls (0.2: at most 20% extra load).
    pub budget_ratio: f64,
    /// Retries always allowed per second, so a quiet gateway can still retry.
    pub budget_min_per_second: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            budget_ratio: 0.2,
            budget_min_per_second: 10,
        }
    }
}

impl RetrySettings {
    /// Full-jitter backoff before retry number `retry` (1-based): uniform in [0, base·2^(retry-1)],
    /// capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponential = self
            .backoff_base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let ceiling = exponential.min(self.backoff_max);
        ceiling.mul_f64(rand::rng().random::<f64>())
    }
}

/// How long the budget remembers calls and retries.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// A retry budget over a sliding window: retries may not exceed `ratio` of calls plus a small
/// floor per second. During an outage this caps upstream load near `1 + ratio` times the call
/// rate, instead of `max_attempts` times.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    floor: f64,
    events: Mutex<Events>,
}

#[derive(Debug, Default)]
struct Events {
    calls: VecDeque<Instant>,
    retries: VecDeque<Instant>,
}

impl RetryBudget {
    /// A budget from the settings.
    pub fn new(settings: &RetrySettings) -> Self {
        Self {
            ratio: settings.budget_ratio,
            floor: f64::from(settings.budget_min_per_second) * BUDGET_WINDOW.as_secs_f64(),
            events: Mutex::new(Events::default()),
        }
    }

    fn prune(events: &mut Events, now: Instant) {
        for queue in [&mut events.calls, &mut events.retries] {
            while queue
                .front()
                .is_some_and(|at| now.duration_since(*at) > BUDGET_WINDOW)
            {
                queue.pop_front();
            }
        }
    }

    /// Records a call (its first attempt).
    pub fn record_call(&self) {
        let now = Instant::now();
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::prune(&mut events, now);
        events.calls.push_back(now);
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_retry(&self) -> bool {
        let now = Instant::now();
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::prune(&mut events, now);
        let allowed = self.ratio * events.calls.len() as f64 + self.floor;
        if (events.retries.len() as f64) < allowed {
            events.retries.push_back(now);
            true
        } else {
            false
        }
    }
}

/// Circuit breaker settings.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// The state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls fail fast.
    Open,
    /// One probe is in flight.
    HalfOpen,
}

/// A circuit breaker for one route family.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(Inner {
                failures: 0,
                open_until: None,
                probing: false,
            }),
        }
    }

    /// Lets a call through, or says how long until the next probe.
    pub fn admit(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut inner = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match inner.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(until - now),
            Some(_) if inner.probing => Err(self.settings.open_for),
            Some(_) => {
                inner.probing = true;
                Ok(())
            }
        }
    }

    /// Gives back an admission whose call never reached WorkOS (refused locally, by the quota):
    /// a half-open probe is released for the next call, and nothing is learned about health.
    pub fn abandon(&self) {
        let mut inner = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.probing = false;
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, healthy: bool) {
        let mut inner = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if healthy {
            if inner.open_until.is_some() {
                tracing::info!("WorkOS recovered: circuit closed");
            }
            *inner = Inner {
                failures: 0,
                open_until: None,
                probing: false,
            };
            return;
        }
        inner.failures += 1;
        if inner.probing || inner.failures >= self.settings.failure_threshold {
            if inner.open_until.is_none() || inner.probing {
                tracing::warn!(open_for = ?self.settings.open_for, "WorkOS is failing: circuit open");
            }
            inner.open_until = Some(Instant::now() + self.settings.open_for);
            inner.probing = false;
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        let inner = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match inner.open_until {
            None => BreakerState::Closed,
            Some(_) if inner.probing => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_probes_once_and_recovers() {
        let breaker = Breaker::new(BreakerSettings {
            failure_threshold: 3,
            open_for: Duration::from_secs(5),
        });
        for _ in 0..3 {
            assert!(breaker.admit().is_ok());
            breaker.record(false);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.admit(), Err(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.admit().is_ok(), "one probe");
        assert!(breaker.admit().is_err(), "only one probe at a time");
        breaker.record(false);
        assert!(breaker.admit().is_err(), "a failed probe reopens");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.admit().is_ok());
        breaker.record(true);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_neither_closes_the_circuit_nor_blocks_the_next_probe() {
        let breaker = Breaker::new(BreakerSettings {
            failure_threshold: 1,
            open_for: Duration::from_secs(5),
        });
        breaker.record(false);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.admit().is_ok(), "the probe");
        breaker.abandon();
        assert_ne!(
            breaker.state(),
            BreakerState::Closed,
            "nothing was learned about WorkOS"
        );
        assert!(breaker.admit().is_ok(), "the next call may probe");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_a_ratio_of_calls_plus_a_floor() {
        let budget = RetryBudget::new(&RetrySettings {
            budget_ratio: 0.2,
            budget_min_per_second: 1,
            ..RetrySettings::default()
        });
        for _ in 0..100 {
            budget.record_call();
        }
        let granted = (0..100).filter(|_| budget.try_retry()).count();
        assert_eq!(
            granted,
            20 + 10,
            "20% of 100 calls plus 1/s over the 10 s window"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(budget.try_retry(), "the window slides");
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_cap() {
        let settings = RetrySettings {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            ..RetrySettings::default()
        };
        for _ in 0..100 {
            assert!(settings.backoff(1) <= Duration::from_millis(100));
            assert!(settings.backoff(2) <= Duration::from_millis(200));
            assert!(settings.backoff(5) <= Duration::from_millis(300));
        }
    }
}
