//! The circuit breaker, as the outermost tower layer: it judges *calls* (a call with all of its
//! retries), not attempts. A route family's circuit opens when, over a sliding window of at least
//! `minimum_calls` calls, at least `failure_rate` of them failed, or at once after
//! `failure_threshold` failed calls in a row; then calls fail fast until `open_for` has passed
//! and one probe is let through.
//!
//! So scattered failures that retries absorb never open it, a sustained partial failure does, and
//! a full outage opens it within a few calls however busy the window was before. Only failures that say WorkOS is unhealthy count; a call refused by the quota or
//! dropped by its caller teaches nothing and releases a probe it held.
//!
//! Time comes from `tokio::time`, so tests can pause it.

use std::{
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use tokio::time::Instant;

use super::{
    BreakerSettings, Error, Observe,
    transport::{Answer, Exchange, Family, Pending},
};

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

/// How many slices the window is counted in.
const SLICES: u32 = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Slice {
    /// Which slice of time this is (time since the breaker's origin / slice length).
    epoch: u64,
    calls: u32,
    failures: u32,
}

#[derive(Debug)]
struct State {
    slices: [Slice; SLICES as usize],
    /// Failed calls since the last healthy one.
    failures_in_a_row: u32,
    open_until: Option<Instant>,
    /// Counts the times the circuit opened, so a probe's outcome is applied only to the open
    /// period it probed, never to a later one.
    period: u64,
    probing: bool,
}

/// The open period a half-open probe was admitted in; `None` for an ordinary call.
type Probe = Option<u64>;

/// A circuit breaker for one route family.
#[derive(Debug)]
pub(super) struct Breaker {
    settings: BreakerSettings,
    family: Family,
    origin: Instant,
    state: Mutex<State>,
}

impl Breaker {
    fn new(settings: BreakerSettings, family: Family) -> Self {
        Self {
            settings,
            family,
            origin: Instant::now(),
            state: Mutex::new(State {
                slices: [Slice::default(); SLICES as usize],
                failures_in_a_row: 0,
                open_until: None,
                period: 0,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets a call through (saying, when it is the half-open probe, which open period it
    /// probes), or says how long until the next probe.
    fn admit(&self) -> Result<Probe, Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        match state.open_until {
            None => Ok(None),
            Some(until) if now < until => Err(until - now),
            Some(_) if state.probing => Err(self.settings.open_for),
            Some(_) => {
                state.probing = true;
                Ok(Some(state.period))
            }
        }
    }

    /// Gives back an admission whose call taught nothing about WorkOS's health: a half-open
    /// probe of the current open period is released for the next call.
    fn abandon(&self, probe: Probe) {
        let mut state = self.lock();
        if probe.is_some() && probe == state.open_until.map(|_| state.period) {
            state.probing = false;
        }
    }

    /// Opens the circuit for `open_for` from `now`, as a new open period.
    fn open(state: &mut State, now: Instant, open_for: Duration) {
        state.open_until = Some(now + open_for);
        state.period += 1;
        state.probing = false;
    }

    /// Records the outcome of an admitted call (`probe`: the open period it probed, if it was
    /// the half-open probe).
    fn record(&self, healthy: bool, probe: Probe) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.open_until.is_some() {
            // Any success proves WorkOS answers again; only the probe's failure reopens (a call
            // admitted before the circuit opened says nothing new).
            if healthy {
                tracing::info!(
                    family = self.family.name(),
                    "WorkOS recovered: circuit closed"
                );
                state.slices = [Slice::default(); SLICES as usize];
                state.failures_in_a_row = 0;
                state.open_until = None;
                state.probing = false;
            } else if probe.is_some() && probe == Some(state.period) {
                // Only this period's probe reopens: a probe of an earlier period (the circuit
                // closed and opened again meanwhile) must not cut the current one short.
                tracing::warn!(family = self.family.name(), open_for = ?self.settings.open_for, "the probe failed: circuit open again");
                Self::open(&mut state, now, self.settings.open_for);
            }
            return;
        }
        let slice_length = (self.settings.window / SLICES).max(Duration::from_millis(1));
        let epoch = (now.duration_since(self.origin).as_nanos() / slice_length.as_nanos()) as u64;
        let slice = &mut state.slices[(epoch % u64::from(SLICES)) as usize];
        if slice.epoch != epoch {
            *slice = Slice {
                epoch,
                ..Slice::default()
            };
        }
        slice.calls += 1;
        slice.failures += u32::from(!healthy);
        if healthy {
            state.failures_in_a_row = 0;
            return;
        }
        state.failures_in_a_row += 1;
        let (calls, failures) = state
            .slices
            .iter()
            .filter(|s| s.epoch + u64::from(SLICES) > epoch)
            .fold((0u32, 0u32), |(c, f), s| (c + s.calls, f + s.failures));
        let rate_exceeded = calls >= self.settings.minimum_calls
            && f64::from(failures) >= self.settings.failure_rate * f64::from(calls);
        if rate_exceeded || state.failures_in_a_row >= self.settings.failure_threshold {
            tracing::warn!(family = self.family.name(), failures, calls, open_for = ?self.settings.open_for, "WorkOS is failing: circuit open");
            Self::open(&mut state, now, self.settings.open_for);
        }
    }

    /// The current state.
    pub(super) fn state(&self) -> BreakerState {
        let state = self.lock();
        match state.open_until {
            None => BreakerState::Closed,
            Some(_) if state.probing => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }
}

/// Releases the admission when a call ends without an outcome (its caller went away).
struct Admission {
    breaker: Option<Arc<Breaker>>,
    probe: Probe,
}

impl Admission {
    /// The call ended with an outcome that was recorded: nothing to give back.
    fn settled(mut self) {
        self.breaker = None;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.abandon(self.probe);
        }
    }
}

/// One breaker per route family.
#[derive(Debug, Clone)]
pub(super) struct BreakerLayer {
    organizations: Arc<Breaker>,
    portal: Arc<Breaker>,
    setup: Arc<Breaker>,
    events: Arc<Breaker>,
    observe: Arc<dyn Observe>,
}

impl BreakerLayer {
    pub(super) fn new(settings: &BreakerSettings, observe: Arc<dyn Observe>) -> Self {
        Self {
            organizations: Arc::new(Breaker::new(settings.clone(), Family::Organizations)),
            portal: Arc::new(Breaker::new(settings.clone(), Family::Portal)),
            setup: Arc::new(Breaker::new(settings.clone(), Family::Setup)),
            events: Arc::new(Breaker::new(settings.clone(), Family::Events)),
            observe,
        }
    }

    fn breaker(&self, family: Family) -> &Arc<Breaker> {
        match family {
            Family::Organizations => &self.organizations,
            Family::Portal => &self.portal,
            Family::Setup => &self.setup,
            Family::Events => &self.events,
        }
    }

    /// Each family's circuit, for health and metrics.
    pub(super) fn states(&self) -> [(&'static str, BreakerState); 4] {
        [
            (Family::Organizations.name(), self.organizations.state()),
            (Family::Portal.name(), self.portal.state()),
            (Family::Setup.name(), self.setup.state()),
            (Family::Events.name(), self.events.state()),
        ]
    }
}

impl<S> tower::Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;

    fn layer(&self, inner: S) -> BreakerService<S> {
        BreakerService {
            layer: self.clone(),
            inner,
        }
    }
}

/// The breaker's service.
#[derive(Debug, Clone)]
pub(super) struct BreakerService<S> {
    layer: BreakerLayer,
    inner: S,
}

impl<S> tower::Service<Exchange> for BreakerService<S>
where
    S: tower::Service<Exchange, Response = Answer, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = Error;
    type Future = Pending<Answer>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, exchange: Exchange) -> Self::Future {
        let family = exchange.route.family;
        let breaker = self.layer.breaker(family).clone();
        let probe = match breaker.admit() {
            Ok(probe) => probe,
            Err(retry_after) => {
                return Box::pin(std::future::ready(Err(Error::CircuitOpen { retry_after })));
            }
        };
        let admission = Admission {
            breaker: Some(breaker.clone()),
            probe,
        };
        let observe = self.layer.observe.clone();
        let call = self.inner.call(exchange);
        Box::pin(async move {
            let result = call.await;
            match &result {
                Ok(_) => breaker.record(true, probe),
                Err(error) if error.is_upstream_failure() => breaker.record(false, probe),
                // WorkOS answered (a 4xx): it is healthy.
                Err(Error::Api { .. }) => breaker.record(true, probe),
                // Refused here or cut short: nothing was learned.
                Err(_) => breaker.abandon(probe),
            }
            admission.settled();
            observe.breaker(family.name(), breaker.state());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio_test::{assert_pending, assert_ready, task};

    use super::*;

    fn breaker(failure_threshold: u32) -> Breaker {
        Breaker::new(
            BreakerSettings {
                failure_threshold,
                failure_rate: 0.5,
                minimum_calls: 10,
                window: Duration::from_secs(10),
                open_for: Duration::from_secs(5),
            },
            Family::Portal,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_outage_opens_it_and_one_probe_at_a_time_closes_it() {
        let breaker = breaker(3);
        for _ in 0..3 {
            assert!(breaker.admit().is_ok());
            breaker.record(false, None);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.admit(), Err(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.admit().expect("one probe");
        assert!(probe.is_some(), "one probe");
        assert!(breaker.admit().is_err(), "only one probe at a time");
        breaker.record(false, None);
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen,
            "a call from before the circuit opened changes nothing"
        );
        breaker.record(false, probe);
        assert!(breaker.admit().is_err(), "a failed probe reopens");
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = breaker.admit().expect("the next probe");
        assert!(probe.is_some());
        breaker.record(true, probe);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_probe_never_touches_a_later_open_period() {
        let breaker = breaker(1);
        breaker.record(false, None);
        tokio::time::advance(Duration::from_secs(5)).await;
        let stale = breaker.admit().expect("the first period's probe");
        // A call admitted before the circuit opened succeeds: it closes. Then WorkOS fails
        // again and the circuit opens anew, with a probe of its own in flight.
        breaker.record(true, None);
        breaker.record(false, None);
        tokio::time::advance(Duration::from_secs(5)).await;
        let current = breaker.admit().expect("the second period's probe");
        assert_ne!(current, stale);
        // The first probe ends late, failing, or abandoned: the second period is untouched.
        breaker.record(false, stale);
        breaker.abandon(stale);
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen,
            "its probe still runs"
        );
        assert!(breaker.admit().is_err(), "and is still the only one");
        breaker.record(true, current);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn scattered_failures_below_the_rate_keep_it_closed() {
        let breaker = breaker(5);
        // One call in four fails, for a long time: far more failures than the threshold, but
        // never half of the window's calls.
        for i in 0..400 {
            assert!(breaker.admit().is_ok(), "call {i}");
            breaker.record(i % 4 != 0, None);
            tokio::time::advance(Duration::from_millis(50)).await;
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sustained_failure_rate_opens_it_and_old_calls_slide_out_of_the_window() {
        // Never two failures in a row, but two calls in three fail.
        let breaker = breaker(5);
        for i in 0..9 {
            breaker.record(i % 3 == 0, None);
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "below the minimum volume"
        );
        breaker.record(true, None);
        breaker.record(false, None);
        assert_eq!(breaker.state(), BreakerState::Open, "7 of 11 calls failed");
        // Calls older than the window no longer count.
        let breaker = breaker_with_window(Duration::from_secs(1));
        let one_success_then_four_failures = |breaker: &Breaker| {
            for healthy in [true, false, false, false, false] {
                breaker.record(healthy, None);
            }
        };
        one_success_then_four_failures(&breaker);
        tokio::time::advance(Duration::from_secs(2)).await;
        one_success_then_four_failures(&breaker);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "5 calls in the window"
        );
        one_success_then_four_failures(&breaker);
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "8 of 10 calls in the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_after_busy_healthy_traffic_opens_it_within_a_few_calls() {
        let breaker = breaker(5);
        for _ in 0..1000 {
            breaker.record(true, None);
        }
        for call in 1..=5 {
            assert_eq!(breaker.state(), BreakerState::Closed, "call {call}");
            breaker.record(false, None);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    fn breaker_with_window(window: Duration) -> Breaker {
        Breaker::new(
            BreakerSettings {
                window,
                minimum_calls: 10,
                ..BreakerSettings::default()
            },
            Family::Portal,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_whose_caller_goes_away_is_released() {
        let layer = BreakerLayer::new(
            &BreakerSettings {
                failure_threshold: 1,
                ..BreakerSettings::default()
            },
            Arc::new(()),
        );
        let portal = layer.breaker(Family::Portal).clone();
        portal.record(false, None);
        tokio::time::advance(Duration::from_secs(5)).await;
        // A call that never answers: the probe is held while it runs.
        let mut service = tower::Layer::layer(
            &layer,
            tower::service_fn(|_: Exchange| std::future::pending::<Result<Answer, Error>>()),
        );
        let mut probe = task::spawn(tower::Service::call(&mut service, exchange()));
        assert_pending!(probe.poll());
        assert_eq!(portal.state(), BreakerState::HalfOpen);
        let mut refused = task::spawn(tower::Service::call(&mut service, exchange()));
        assert!(matches!(
            assert_ready!(refused.poll()),
            Err(Error::CircuitOpen { .. })
        ));
        drop(probe);
        assert_eq!(portal.state(), BreakerState::Open, "nothing was learned");
        assert!(portal.admit().is_ok(), "the next call may probe");
    }

    fn exchange() -> Exchange {
        static ROUTE: super::super::transport::Route = super::super::transport::Route {
            name: "POST /portal/generate_link",
            method: http::Method::POST,
            family: Family::Portal,
            delete: false,
            duplicates: false,
        };
        Exchange {
            route: &ROUTE,
            url: url::Url::parse("http://127.0.0.1/portal/generate_link").expect("url"),
            body: None,
            idempotency_key: None,
            in_doubt: Arc::default(),
            call: Arc::new(super::super::CallContext {
                deadline: Instant::now() + Duration::from_secs(60),
                caller: Arc::from("test"),
                caller_per_minute: None,
                request_id: "test".into(),
                traceparent: None,
            }),
        }
    }
}
