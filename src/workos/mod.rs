//! The WorkOS REST client: typed endpoints ([`endpoints`](self)) over a tower stack, outermost
//! first:
//!
//! 1. [`breaker`]: one circuit per route family, judging whole calls;
//! 2. tower's retry layer with [`retry::RetryPolicy`] (budget, jittered backoff, deadline);
//! 3. [`quota`]: governor rate limits and the fair share, paid by every attempt;
//! 4. [`transport`]: one exchange over reqwest.
//!
//! Organizations are cached in [`cache`] (moka) above the stack. WorkOS's JSON stays in the
//! private `wire` module; callers see `crate::domain` types and a typed [`Error`], which converts
//! itself into the core's error. The module knows nothing of callers' credentials, the policy,
//! gRPC or metrics: what it reports goes to an [`Observe`] it is given.
//!
//! The API key is read only here, as the Bearer header, and never formatted anywhere.

mod breaker;
mod cache;
mod contacts;
mod endpoints;
mod error;
pub mod quota;
mod retry;
pub mod settings;
mod setup;
mod transport;
mod wire;

use std::{fmt, sync::Arc, time::Duration};

use tower::ServiceExt as _;
use url::Url;

pub use breaker::BreakerState;
pub use error::{Error, outcome_unknown};
pub use settings::{BreakerSettings, QuotaSettings, RetrySettings, Settings};
pub use transport::CallContext;

use transport::{Answer, Exchange, Route};

/// What the client reports as it works, for metrics. Every method does nothing by default.
pub trait Observe: Send + Sync + fmt::Debug {
    /// One HTTP exchange ended with `status` (a number, `timeout` or `transport_error`).
    fn upstream(&self, _route: &'static str, _status: &str, _latency: Duration) {}
    /// A call is about to be retried.
    fn retry(&self, _route: &'static str) {}
    /// A route family's circuit, after a call.
    fn breaker(&self, _family: &'static str, _state: BreakerState) {}
    /// An organization lookup hit (or missed) the cache.
    fn cache(&self, _hit: bool) {}
    /// The quota refused an attempt.
    fn quota_refused(&self, _scope: &'static str) {}
}

/// Observes nothing.
impl Observe for () {}

/// One caller's upstream work, and what WorkOS said of it.
#[derive(Debug)]
pub struct Call {
    context: Arc<CallContext>,
    workos_request_id: Option<String>,
    /// Set while this call's latest create may have reached WorkOS and not been refused.
    create_in_doubt: Arc<std::sync::atomic::AtomicBool>,
}

impl Call {
    /// When the caller stops waiting.
    pub fn deadline(&self) -> tokio::time::Instant {
        self.context.deadline
    }

    /// Whether this call's latest create (or other call that WorkOS would make twice) may have
    /// reached WorkOS and not been refused, read at any time, even after the call was dropped.
    pub fn create_in_doubt(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.create_in_doubt.clone()
    }

    /// Upstream work under `context`.
    pub fn new(context: CallContext) -> Self {
        Self {
            context: Arc::new(context),
            workos_request_id: None,
            create_in_doubt: Arc::default(),
        }
    }

    /// WorkOS's `X-Request-ID` of the last answer in this call, if any.
    pub fn workos_request_id(&self) -> Option<&str> {
        self.workos_request_id.as_deref()
    }

    /// Another call under the same context, for upstream work done in parallel. Join it back
    /// with [`Call::join`] so its WorkOS request id is not lost.
    pub fn fork(&self) -> Self {
        Self {
            context: self.context.clone(),
            workos_request_id: None,
            create_in_doubt: Arc::default(),
        }
    }

    /// Takes back what a forked call learned.
    pub fn join(&mut self, forked: Self) {
        self.note(forked.workos_request_id.as_deref());
    }

    fn note(&mut self, id: Option<&str>) {
        if let Some(id) = id {
            self.workos_request_id = Some(id.to_owned());
        }
    }
}

type Stack = breaker::BreakerService<
    tower::retry::Retry<retry::RetryPolicy, quota::QuotaService<transport::Transport>>,
>;

/// URLs of WorkOS's fixed routes, parsed once.
#[derive(Debug)]
struct Urls {
    organizations: Url,
    by_external_id: Url,
    generate_link: Url,
    revoke_link: Url,
    connections: Url,
    directories: Url,
    events: Url,
}

impl Urls {
    fn new(base: &Url) -> Self {
        let join = |segments: &[&str]| {
            let mut url = base.clone();
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
            url
        };
        Self {
            organizations: join(&["organizations"]),
            by_external_id: join(&["organizations", "external_id"]),
            generate_link: join(&["portal", "generate_link"]),
            revoke_link: join(&["portal", "revoke_link"]),
            connections: join(&["connections"]),
            directories: join(&["directories"]),
            events: join(&["events"]),
        }
    }
}

/// `base` plus one more path segment, percent-encoded as the official SDKs do.
fn with_segment(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.push(segment);
    }
    url
}

/// A cheap-to-clone handle on the WorkOS API.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stack: Stack,
    breakers: breaker::BreakerLayer,
    key_rejected: tokio::sync::watch::Receiver<bool>,
    urls: Urls,
    cache: cache::OrganizationCache,
    observe: Arc<dyn Observe>,
    changes: Option<Arc<dyn ChangeFeed>>,
}

/// Hears of every change this replica makes to an organization (to tell the other replicas).
pub trait ChangeFeed: Send + Sync + fmt::Debug {
    /// `organization_id` was updated or deleted.
    fn organization_changed(&self, organization_id: &str);
}

/// What the client shares with other replicas.
#[derive(Debug, Clone)]
pub struct ClusterHooks {
    /// The quota held together.
    pub quota: Arc<dyn quota::SharedQuota>,
    /// Where changes are announced.
    pub changes: Arc<dyn ChangeFeed>,
}

impl Client {
    /// Builds the client. Fails only if the TLS stack, the proxy or the backoff cannot be set up.
    pub fn new(settings: &Settings, observe: Arc<dyn Observe>) -> Result<Self, Error> {
        Self::clustered(settings, observe, None)
    }

    /// Builds the client as one of several replicas: `settings.quota` is then the limit of all
    /// of them together, held in `cluster.quota`, and changes to organizations are announced to
    /// `cluster.changes` so the other replicas drop them from their caches.
    pub fn clustered(
        settings: &Settings,
        observe: Arc<dyn Observe>,
        cluster: Option<ClusterHooks>,
    ) -> Result<Self, Error> {
        let (shared_quota, changes) = match cluster {
            Some(hooks) => (Some(hooks.quota), Some(hooks.changes)),
            None => (None, None),
        };
        let transport = transport::Transport::new(settings, observe.clone())?;
        let key_rejected = transport.key_rejected();
        let retry = retry::RetryPolicy::new(&settings.retry, observe.clone()).map_err(|error| {
            Error::Settings {
                problem: format!("retry backoff: {error}"),
            }
        })?;
        let breakers = breaker::BreakerLayer::new(&settings.breaker, observe.clone());
        let stack = tower::ServiceBuilder::new()
            .layer(breakers.clone())
            .layer(tower::retry::RetryLayer::new(retry))
            .layer(quota::QuotaLayer::new(
                quota::Quota::new(settings.quota.clone()),
                shared_quota,
                observe.clone(),
            ))
            .service(transport);
        Ok(Self {
            inner: Arc::new(Inner {
                stack,
                breakers,
                key_rejected,
                urls: Urls::new(&settings.base_url),
                cache: cache::OrganizationCache::new(
                    settings.cache_ttl,
                    settings.cache_max_entries,
                ),
                observe,
                changes,
            }),
        })
    }

    /// Watches whether WorkOS is rejecting the gateway's key (a 401), for health reporting.
    pub fn key_rejected(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.key_rejected.clone()
    }

    /// The circuit state of each route family, for health and metrics.
    pub fn breaker_states(&self) -> [(&'static str, BreakerState); 4] {
        self.inner.breakers.states()
    }

    /// Drops an organization another replica changed from this replica's cache.
    pub async fn forget_changed_elsewhere(&self, organization_id: &str) {
        self.inner.cache.forget(organization_id).await;
    }

    /// Tells the other replicas an organization changed.
    fn announce_change(&self, organization_id: &str) {
        if let Some(changes) = &self.inner.changes {
            changes.organization_changed(organization_id);
        }
    }

    /// Sends one request through the stack under `call`, noting WorkOS's request id.
    async fn send(
        &self,
        call: &mut Call,
        route: &'static Route,
        url: Url,
        body: Option<bytes::Bytes>,
        idempotency_key: Option<Arc<str>>,
    ) -> Result<Answer, Error> {
        let in_doubt = if route.duplicates {
            call.create_in_doubt
                .store(false, std::sync::atomic::Ordering::Relaxed);
            call.create_in_doubt.clone()
        } else {
            Arc::default()
        };
        let exchange = Exchange {
            route,
            url,
            body,
            idempotency_key,
            call: call.context.clone(),
            in_doubt: in_doubt.clone(),
        };
        let result = self
            .inner
            .stack
            .clone()
            .oneshot(exchange)
            .await
            .map_err(|error| {
                // A create whose last attempt may have reached WorkOS: only reading back can
                // tell whether it was made.
                if route.duplicates && in_doubt.load(std::sync::atomic::Ordering::Relaxed) {
                    Error::OutcomeUnknown(Box::new(error))
                } else {
                    error
                }
            });
        call.note(match &result {
            Ok(answer) => answer.request_id.as_deref(),
            Err(error) => error.request_id(),
        });
        result
    }
}
