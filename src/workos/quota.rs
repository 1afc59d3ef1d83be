//! The upstream quota, as a tower layer under the retries (so every attempt pays): the gateway
//! never sends WorkOS more than its configured rate, so callers get a precise
//! RESOURCE_EXHAUSTED from the gateway instead of WorkOS 429s that hit everyone sharing the key.
//!
//! WorkOS's general limit and its separate delete limit are `governor` rate limiters (GCRA) on
//! tokio's clock. On top sits a small per-caller layer, the same GCRA arithmetic checked first
//! and committed only once the shared limits grant: the caller's own quota from the policy, and
//! the fair share. While another caller is *waiting* (it was refused and told to come back), a
//! caller may use only its share of the rate, so one noisy caller cannot starve the others.
//! Tokens that nobody else is waiting for are free for anyone. Limits are per replica (see the
//! README).
//!
//! A governor limiter that grants takes its token at once: a delete granted by the delete limit
//! and then refused by the general one has spent a delete token without going out (rare, and
//! deletes are checked first so that the more common refusal wastes no shared token).

use std::{
    collections::HashMap,
    fmt,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use governor::{Quota as Rate, RateLimiter, clock::Clock, nanos::Nanos};
use tokio::time::Instant;

use super::{
    Error, Observe, QuotaSettings,
    transport::{Answer, Exchange, Pending},
};

mod shared;

pub use shared::{SharedQuota, SharedVerdict};

/// Which limit was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaScope {
    /// The gateway's share of the WorkOS key.
    Workos,
    /// WorkOS's organization delete limit.
    WorkosDeletes,
    /// The caller's own quota from the policy.
    Caller(Arc<str>),
    /// The caller's fair share while others are waiting too.
    FairShare(Arc<str>),
}

impl QuotaScope {
    /// The `QuotaFailure` subject.
    pub fn subject(&self) -> String {
        match self {
            Self::Workos => "workos:requests".to_owned(),
            Self::WorkosDeletes => "workos:organization-deletes".to_owned(),
            Self::Caller(identity) => format!("caller:{identity}"),
            Self::FairShare(identity) => format!("caller:{identity}:fair-share"),
        }
    }

    /// The ErrorInfo reason of a refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Caller(_) => "CALLER_QUOTA_EXHAUSTED",
            Self::FairShare(_) => "FAIR_SHARE_EXHAUSTED",
            Self::Workos | Self::WorkosDeletes => "WORKOS_QUOTA_EXHAUSTED",
        }
    }

    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Workos => "workos",
            Self::WorkosDeletes => "workos_deletes",
            Self::Caller(_) => "caller",
            Self::FairShare(_) => "fair_share",
        }
    }
}

impl fmt::Display for QuotaScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.subject())
    }
}

/// A refused request: which limit, and when a token will be free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The limit.
    pub scope: QuotaScope,
    /// When to try again.
    pub retry_after: Duration,
}

/// governor's clock, read from tokio's, so a test can pause and advance time.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;

/// A refused caller counts as waiting until it was told to come back, plus this margin (it may
/// come back a little late) ...
const WAIT_MARGIN: Duration = Duration::from_millis(50);
/// ... for at least this long ...
const MIN_WAIT: Duration = Duration::from_millis(100);
/// ... and at most this long.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// One step of the generic cell rate algorithm: with the theoretical arrival time `due`, a cell
/// every `interval` and `tolerance` of slack, either the next `due` or how long to wait.
fn gcra(
    due: Instant,
    now: Instant,
    interval: Duration,
    tolerance: Duration,
) -> Result<Instant, Duration> {
    let due = due.max(now);
    if due > now + tolerance {
        Err(due - now - tolerance)
    } else {
        Ok(due + interval)
    }
}

/// What the quota remembers of one caller.
#[derive(Debug)]
struct CallerState {
    /// The caller's own quota (its limit, and its GCRA due time).
    fixed: Option<(u32, Instant)>,
    /// Until when this caller counts as waiting for tokens.
    waiting_until: Option<Instant>,
    /// The fair share's theoretical arrival time (GCRA): how far ahead of now this caller has
    /// drawn on its share.
    share_due: Instant,
    /// The last time it asked, so idle callers can be forgotten.
    last_seen: Instant,
}

/// The quota. One per gateway.
#[derive(Debug)]
pub struct Quota {
    settings: QuotaSettings,
    clock: TokioClock,
    global: Limiter,
    deletes: Limiter,
    callers: Mutex<HashMap<Arc<str>, CallerState>>,
}

fn per_minute(limit: u32, burst: u32) -> Rate {
    let nonzero = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
    Rate::per_minute(nonzero(limit)).allow_burst(nonzero(burst))
}

impl Quota {
    /// A full quota.
    pub fn new(settings: QuotaSettings) -> Self {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        let global = RateLimiter::direct_with_clock(
            per_minute(settings.requests_per_minute, settings.burst),
            clock.clone(),
        );
        let deletes = RateLimiter::direct_with_clock(
            per_minute(
                settings.deletes_per_minute,
                settings.deletes_per_minute.div_ceil(10),
            ),
            clock.clone(),
        );
        Self {
            settings,
            clock,
            global,
            deletes,
            callers: Mutex::new(HashMap::new()),
        }
    }

    fn refused(&self, scope: QuotaScope, not_until: &governor::NotUntil<Nanos>) -> QuotaExceeded {
        QuotaExceeded {
            scope,
            retry_after: not_until.wait_time_from(self.clock.now()),
        }
    }

    /// Takes one request's worth for `caller`, or refuses at once. It never waits: a refusal
    /// says when to retry, and the caller decides whether that fits its deadline.
    pub fn acquire(
        &self,
        caller: &Arc<str>,
        caller_per_minute: Option<u32>,
        delete: bool,
    ) -> Result<(), QuotaExceeded> {
        let now = Instant::now();
        let mut callers = self
            .callers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if callers.len() > 64 {
            callers.retain(|_, c| now.duration_since(c.last_seen) < Duration::from_secs(60));
        }
        let contenders = 1 + callers
            .iter()
            .filter(|(name, c)| *name != caller && c.waiting_until.is_some_and(|until| until > now))
            .count();
        let state = callers
            .entry(caller.clone())
            .or_insert_with(|| CallerState {
                fixed: None,
                waiting_until: None,
                share_due: now,
                last_seen: now,
            });
        state.last_seen = now;
        let result = self.decide(caller, caller_per_minute, delete, contenders, state, now);
        // A caller refused the shared tokens keeps counting as waiting for a while even when its
        // next attempt succeeds: a caller that keeps asking keeps contending. Refusals by its own
        // quota or the delete limit are no claim on the shared tokens.
        if let Err(refused) = &result
            && matches!(refused.scope, QuotaScope::Workos | QuotaScope::FairShare(_))
        {
            let wait = (refused.retry_after + WAIT_MARGIN).clamp(MIN_WAIT, MAX_WAIT);
            state.waiting_until = Some(now + wait);
        }
        result
    }

    fn decide(
        &self,
        caller: &Arc<str>,
        caller_per_minute: Option<u32>,
        delete: bool,
        contenders: usize,
        state: &mut CallerState,
        now: Instant,
    ) -> Result<(), QuotaExceeded> {
        // The caller's own quota: `limit` a minute, a tenth of it at once.
        let fixed = match (caller_per_minute, state.fixed) {
            (None, _) => None,
            (Some(limit), Some((current, due))) if current == limit => Some((limit, due)),
            (Some(limit), _) => Some((limit, now)),
        };
        let fixed_next = match fixed {
            None => None,
            Some((limit, due)) => {
                let interval = Duration::from_secs(60) / limit.max(1);
                let tolerance = interval * (limit.div_ceil(10).max(1) - 1);
                let next =
                    gcra(due, now, interval, tolerance).map_err(|retry_after| QuotaExceeded {
                        scope: QuotaScope::Caller(caller.clone()),
                        retry_after,
                    });
                Some((limit, next?))
            }
        };
        // The fair share (GCRA over the caller's share of the rate): only enforced while someone
        // else is waiting, and then a caller may run at most one request ahead of its share.
        // Alone, a caller may draw a whole burst, and carries no more debt than that.
        let interval = Duration::from_secs(60)
            .mul_f64(contenders as f64 / f64::from(self.settings.requests_per_minute.max(1)));
        let tolerance = if contenders > 1 {
            interval
        } else {
            interval.mul_f64(f64::from(self.settings.burst))
        };
        let share_next = match gcra(state.share_due, now, interval, tolerance) {
            Err(retry_after) if contenders > 1 => {
                return Err(QuotaExceeded {
                    scope: QuotaScope::FairShare(caller.clone()),
                    retry_after,
                });
            }
            // Alone, over its share: tracked as a debt of at most one burst.
            Err(_) => now + tolerance + interval,
            Ok(next) => next.min(now + tolerance + interval),
        };
        if delete {
            self.deletes
                .check()
                .map_err(|n| self.refused(QuotaScope::WorkosDeletes, &n))?;
        }
        self.global
            .check()
            .map_err(|n| self.refused(QuotaScope::Workos, &n))?;
        state.fixed = fixed_next;
        state.share_due = share_next;
        Ok(())
    }
}

/// Puts the [`Quota`] in front of every attempt: the shared quota when the gateway runs with
/// other replicas (and the local share while it cannot be reached), else the local one.
#[derive(Debug, Clone)]
pub(super) struct QuotaLayer {
    quota: Arc<Quota>,
    shared: Option<(Arc<dyn SharedQuota>, Arc<shared::LocalShare>)>,
    observe: Arc<dyn Observe>,
}

impl QuotaLayer {
    pub(super) fn new(
        quota: Quota,
        shared: Option<Arc<dyn SharedQuota>>,
        observe: Arc<dyn Observe>,
    ) -> Self {
        let local = Arc::new(shared::LocalShare::new(quota.settings.clone()));
        Self {
            quota: Arc::new(quota),
            shared: shared.map(|shared| (shared, local)),
            observe,
        }
    }
}

impl<S> tower::Layer<S> for QuotaLayer {
    type Service = QuotaService<S>;

    fn layer(&self, inner: S) -> QuotaService<S> {
        QuotaService {
            layer: self.clone(),
            inner,
        }
    }
}

/// The quota's service.
#[derive(Debug, Clone)]
pub(super) struct QuotaService<S> {
    layer: QuotaLayer,
    inner: S,
}

impl<S> tower::Service<Exchange> for QuotaService<S>
where
    S: tower::Service<Exchange, Response = Answer, Error = Error, Future = Pending<Answer>>
        + Clone
        + Send
        + 'static,
{
    type Response = Answer;
    type Error = Error;
    type Future = Pending<Answer>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, exchange: Exchange) -> Self::Future {
        let Some((shared, local)) = self.layer.shared.clone() else {
            let call = &exchange.call;
            let verdict = self.layer.quota.acquire(
                &call.caller,
                call.caller_per_minute,
                exchange.route.delete,
            );
            return match verdict {
                Ok(()) => self.inner.call(exchange),
                Err(refused) => self.refuse(refused),
            };
        };
        // The inner service was made ready for this call: take it, and leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let observe = self.layer.observe.clone();
        Box::pin(async move {
            let call = &exchange.call;
            let (caller, per_minute, delete) = (
                call.caller.clone(),
                call.caller_per_minute,
                exchange.route.delete,
            );
            let verdict = match shared.acquire(caller.clone(), per_minute, delete).await {
                Some(verdict) => verdict,
                None => local
                    .for_replicas(shared.replicas())
                    .acquire(&caller, per_minute, delete),
            };
            match verdict {
                Ok(()) => inner.call(exchange).await,
                Err(refused) => {
                    observe.quota_refused(refused.scope.label());
                    Err(Error::Quota(refused))
                }
            }
        })
    }
}

impl<S> QuotaService<S> {
    fn refuse(&self, refused: QuotaExceeded) -> Pending<Answer> {
        self.layer.observe.quota_refused(refused.scope.label());
        Box::pin(std::future::ready(Err(Error::Quota(refused))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(requests_per_minute: u32, burst: u32) -> Quota {
        Quota::new(QuotaSettings {
            requests_per_minute,
            burst,
            deletes_per_minute: 50,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_is_never_exceeded() {
        let quota = quota(600, 10);
        let a: Arc<str> = Arc::from("a");
        let mut granted = 0;
        for _ in 0..200 {
            for _ in 0..50 {
                if quota.acquire(&a, None, false).is_ok() {
                    granted += 1;
                }
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // 20 s at 10/s plus the burst.
        assert!(granted <= 200 + 10, "{granted}");
        assert!(granted >= 195, "{granted}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_caller_gets_its_share_from_a_noisy_one() {
        let quota = quota(600, 10);
        let (noisy_name, quiet_name): (Arc<str>, Arc<str>) =
            (Arc::from("noisy"), Arc::from("quiet"));
        let (mut noisy, mut quiet) = (0, 0);
        for _ in 0..300 {
            for _ in 0..20 {
                if quota.acquire(&noisy_name, None, false).is_ok() {
                    noisy += 1;
                }
            }
            for _ in 0..2 {
                if quota.acquire(&quiet_name, None, false).is_ok() {
                    quiet += 1;
                }
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // 30 s at 10/s: the quiet caller asks for more than half and gets about half.
        assert!(
            quiet >= 120,
            "quiet caller starved: {quiet} (noisy {noisy})"
        );
        assert!(noisy + quiet <= 300 + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_nobody_else_waits_for_are_free_for_anyone() {
        let quota = quota(600, 10);
        let (busy, calm): (Arc<str>, Arc<str>) = (Arc::from("busy"), Arc::from("calm"));
        // Another caller is active but never refused: it waits for nothing.
        for _ in 0..5 {
            quota.acquire(&calm, None, false).expect("calm");
        }
        // So the busy caller may take the whole rest of the bucket, beyond any share.
        let taken = (0..20)
            .filter(|_| quota.acquire(&busy, None, false).is_ok())
            .count();
        assert_eq!(taken, 5);
        let refused = quota.acquire(&busy, None, false).expect_err("empty");
        assert_eq!(
            refused.scope,
            QuotaScope::Workos,
            "not a fair-share refusal"
        );
        // Later, a quiet caller that was never over its share is not refused by it either.
        tokio::time::advance(Duration::from_secs(1)).await;
        quota.acquire(&calm, None, false).expect("tokens are back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_caller_is_told_about_the_gateway_quota_not_a_fair_share() {
        let quota = quota(600, 10);
        let alone: Arc<str> = Arc::from("alone");
        let refused = (0..20)
            .find_map(|_| quota.acquire(&alone, None, false).err())
            .expect("refused");
        assert_eq!(refused.scope, QuotaScope::Workos);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_refused_by_the_shared_limit_do_not_spend_the_callers_own_quota() {
        let quota = quota(600, 1);
        let (hog, metered): (Arc<str>, Arc<str>) = (Arc::from("hog"), Arc::from("metered"));
        quota.acquire(&hog, None, false).expect("the one token");
        for _ in 0..6 {
            let refused = quota.acquire(&metered, Some(60), false).expect_err("empty");
            assert_eq!(refused.scope, QuotaScope::Workos);
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        quota
            .acquire(&metered, Some(60), false)
            .expect("its own burst of 6 is intact");
    }

    #[tokio::test(start_paused = true)]
    async fn deletes_and_caller_quotas_have_their_own_limits() {
        let quota = Quota::new(QuotaSettings::default());
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let deletes = (0..20)
            .filter(|_| quota.acquire(&a, None, true).is_ok())
            .count();
        assert_eq!(deletes, 5, "50 a minute, a burst of 5");
        let refused = quota.acquire(&a, None, true).expect_err("delete limit");
        assert_eq!(refused.scope, QuotaScope::WorkosDeletes);
        let mine = (0..20)
            .filter(|_| quota.acquire(&b, Some(60), false).is_ok())
            .count();
        assert_eq!(mine, 6);
        assert_eq!(
            quota
                .acquire(&b, Some(60), false)
                .expect_err("caller")
                .scope,
            QuotaScope::Caller(b.clone())
        );
    }
}
