//! The WorkOS REST client: one pooled HTTP client over rustls, the base URL and key from
//! configuration, typed requests and responses. WorkOS's JSON stays in the private `wire`
//! module; callers see `crate::domain` types and a typed [`Error`].
//!
//! Every call runs under a [`Call`]: the caller's deadline bounds all attempts (each attempt gets
//! what remains, at most the per-attempt timeout), the quota is taken per attempt, and retries
//! happen only for safe calls (reads, and writes carrying an `Idempotency-Key`, the same key on
//! every attempt), within the retry budget, while the route family's circuit is closed.
//!
//! The API key is read only here, as the Bearer header, and never formatted anywhere.

mod cache;
mod error;
pub mod quota;
pub mod resilience;
mod wire;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

pub use error::Error;

use crate::domain::{
    ExternalId, Intent, LinkRequest, ListOrder, ListQuery, NewOrganization, Organization,
    OrganizationChanges, OrganizationId, OrganizationPage, RedirectUrl,
};
use crate::http::HttpClient;
use crate::telemetry::{CallTrace, Metrics};
use cache::{Key, OrganizationCache};
use quota::{Quota, QuotaSettings};
use resilience::{Breaker, BreakerSettings, RetryBudget, RetrySettings};

/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("portal-gateway/", env!("CARGO_PKG_VERSION"), " (rust)");

/// What the client needs to talk to WorkOS.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://api.workos.com`, or an emulator.
    pub base_url: Url,
    /// The WorkOS API key.
    pub api_key: SecretString,
    /// The longest one HTTP attempt may take.
    pub request_timeout: Duration,
    /// Retries and their budget.
    pub retry: RetrySettings,
    /// Circuit breakers.
    pub breaker: BreakerSettings,
    /// The gateway's share of WorkOS's rate limits.
    pub quota: QuotaSettings,
    /// How long organizations stay cached; zero disables the cache.
    pub cache_ttl: Duration,
    /// The most organizations cached.
    pub cache_max_entries: usize,
    /// A forward proxy to reach WorkOS through, if any.
    pub proxy: Option<crate::http::Proxy>,
}

impl Settings {
    /// Settings with defaults for everything but the address and the key.
    pub fn new(base_url: Url, api_key: SecretString) -> Self {
        Self {
            base_url,
            api_key,
            request_timeout: Duration::from_secs(10),
            retry: RetrySettings::default(),
            breaker: BreakerSettings::default(),
            quota: QuotaSettings::default(),
            cache_ttl: Duration::from_secs(30),
            cache_max_entries: 10_000,
            proxy: None,
        }
    }
}

/// One caller's upstream work: whose quota it uses, when it must be done, and the ids that
/// follow it upstream.
#[derive(Debug, Clone)]
pub struct Call {
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// The caller's identity (for fair sharing and per-caller quotas).
    pub caller: Arc<str>,
    /// The caller's own quota, requests per minute, if the policy sets one.
    pub caller_per_minute: Option<u32>,
    /// Request id and trace context sent upstream; WorkOS's request id comes back here.
    pub trace: Arc<CallTrace>,
}

/// Route families, each with its own circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Organizations,
    Portal,
}

/// A cheap-to-clone handle on the WorkOS API.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient,
    base_url: Url,
    authorization: header::HeaderValue,
    attempt_timeout: Duration,
    retry: RetrySettings,
    budget: RetryBudget,
    organizations_breaker: Breaker,
    portal_breaker: Breaker,
    quota: Quota,
    cache: OrganizationCache,
    key_rejected: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

/// What a successful call answered, besides its body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    request_id: Option<String>,
    body: bytes::Bytes,
}

/// One request to send (and perhaps send again).
struct Outgoing<'a> {
    family: Family,
    /// `"METHOD /template"`, for metrics.
    route: &'static str,
    method: Method,
    url: Url,
    body: Option<Bytes>,
    idempotency_key: Option<&'a str>,
    delete: bool,
}

impl Client {
    /// Builds the client. Fails only if the TLS stack cannot be initialised.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let http = HttpClient::new(
            settings.request_timeout.min(Duration::from_secs(5)),
            settings.proxy.as_ref(),
        )
        .map_err(Error::from_http)?;
        let mut authorization =
            header::HeaderValue::try_from(format!("Bearer {}", settings.api_key.expose_secret()))
                .map_err(|_| Error::Malformed { field: "api_key" })?;
        // Keeps the key out of any Debug print of a request's headers.
        authorization.set_sensitive(true);
        let (key_rejected, _) = tokio::sync::watch::channel(false);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url: settings.base_url.clone(),
                authorization,
                attempt_timeout: settings.request_timeout,
                retry: settings.retry.clone(),
                budget: RetryBudget::new(&settings.retry),
                organizations_breaker: Breaker::new(settings.breaker.clone()),
                portal_breaker: Breaker::new(settings.breaker.clone()),
                quota: Quota::new(settings.quota.clone()),
                cache: OrganizationCache::new(settings.cache_ttl, settings.cache_max_entries),
                key_rejected,
                metrics,
            }),
        })
    }

    /// Watches whether WorkOS is rejecting the gateway's key (a 401), for health reporting.
    pub fn key_rejected(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.key_rejected.subscribe()
    }

    /// `base_url` plus path segments, each percent-encoded as the official SDKs do.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn breaker(&self, family: Family) -> &Breaker {
        match family {
            Family::Organizations => &self.inner.organizations_breaker,
            Family::Portal => &self.inner.portal_breaker,
        }
    }

    /// Sends a request under `call`'s deadline, retrying when that is safe and worthwhile.
    async fn send(&self, call: &Call, out: Outgoing<'_>) -> Result<Answer, Error> {
        let retry_safe = out.method == Method::GET || out.idempotency_key.is_some();
        let breaker = self.breaker(out.family);
        let metrics = &self.inner.metrics;
        self.inner.budget.record_call();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            breaker
                .admit()
                .map_err(|retry_after| Error::CircuitOpen { retry_after })?;
            let remaining = call.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::DeadlineExceeded);
            }
            if let Err(refused) =
                self.inner
                    .quota
                    .acquire(&call.caller, call.caller_per_minute, out.delete)
            {
                metrics.quota_rejection(match refused.scope {
                    quota::QuotaScope::Workos => "workos",
                    quota::QuotaScope::WorkosDeletes => "workos_deletes",
                    quota::QuotaScope::Caller(_) => "caller",
                    quota::QuotaScope::FairShare(_) => "fair_share",
                });
                // The call never reached WorkOS: release a probe, learn nothing about health.
                breaker.abandon();
                return Err(Error::Quota(refused));
            }
            let started = Instant::now();
            let result = self
                .attempt(call, &out, remaining.min(self.inner.attempt_timeout))
                .await;
            let status = match &result {
                Ok(answer) => answer.status.as_u16().to_string(),
                Err(Error::Api { status, .. }) => status.to_string(),
                Err(Error::Timeout) => "timeout".to_owned(),
                Err(_) => "transport_error".to_owned(),
            };
            metrics.upstream(out.route, &status, started.elapsed());
            breaker.record(
                !result
                    .as_ref()
                    .err()
                    .is_some_and(Error::is_upstream_failure),
            );
            let family = match out.family {
                Family::Organizations => "organizations",
                Family::Portal => "portal",
            };
            metrics.breaker(
                family,
                match breaker.state() {
                    resilience::BreakerState::Closed => 0,
                    resilience::BreakerState::Open => 1,
                    resilience::BreakerState::HalfOpen => 2,
                },
            );
            let error = match result {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let retryable = match &error {
                Error::Api { status, .. } => matches!(status, 408 | 429 | 500..=599) && retry_safe,
                Error::Timeout => retry_safe,
                Error::Transport(_) => retry_safe || error.never_sent(),
                _ => false,
            };
            if !retryable || attempt >= self.inner.retry.max_attempts {
                return Err(error);
            }
            let retry_after = match &error {
                Error::Api { retry_after, .. } => *retry_after,
                _ => None,
            };
            // WorkOS's Retry-After wins over our backoff, but only when it fits in the time the
            // caller has left; otherwise the caller hears at once, with the delay to wait.
            let delay = retry_after.unwrap_or_else(|| self.inner.retry.backoff(attempt));
            if Instant::now() + delay >= call.deadline || !self.inner.budget.try_retry() {
                return Err(error);
            }
            tracing::debug!(attempt, delay = ?delay, error = %error, "retrying a WorkOS call");
            metrics.retry(out.route);
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        call: &Call,
        out: &Outgoing<'_>,
        timeout: Duration,
    ) -> Result<Answer, Error> {
        let mut request = http::Request::builder()
            .method(out.method.clone())
            .uri(out.url.as_str())
            .header(header::AUTHORIZATION, self.inner.authorization.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT);
        if out.body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = out.idempotency_key {
            request = request.header("idempotency-key", key);
        }
        // Ids that let WorkOS support and the caller's traces find this request.
        request = request.header("x-request-id", call.trace.request_id.as_str());
        if let Some(traceparent) = crate::telemetry::upstream_traceparent(&call.trace) {
            request = request.header("traceparent", traceparent);
        }
        let request = request
            .body(Full::new(out.body.clone().unwrap_or_default()))
            .map_err(|error| Error::from_http(crate::http::HttpError::Request(error)))?;
        let response = self
            .inner
            .http
            .send(request, timeout)
            .await
            .map_err(Error::from_http)?;
        let status = response.status;
        let headers = response.headers;
        let body = response.body;
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(id) = &request_id {
            call.trace.set_workos_request_id(id);
        }
        self.inner.key_rejected.send_if_modified(|rejected| {
            let now = status == StatusCode::UNAUTHORIZED;
            let changed = *rejected != now && (now || status.is_success());
            if changed {
                *rejected = now;
            }
            changed
        });
        if status.is_success() {
            return Ok(Answer {
                status,
                request_id,
                body,
            });
        }
        let parsed: wire::ErrorWire = serde_json::from_slice(&body).unwrap_or_default();
        let message = match parsed.message {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        Err(Error::Api {
            status: status.as_u16(),
            code: parsed.code,
            message,
            field_errors: parsed
                .errors
                .into_iter()
                .map(|e| (e.field.unwrap_or_default(), e.code.unwrap_or_default()))
                .collect(),
            request_id,
            retry_after: headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0))),
        })
    }

    fn decode<T: DeserializeOwned>(answer: &Answer) -> Result<T, Error> {
        serde_json::from_slice(&answer.body).map_err(|source| Error::Decode {
            status: answer.status.as_u16(),
            request_id: answer.request_id.clone(),
            source: Arc::new(source),
        })
    }

    fn json<T: serde::Serialize>(body: &T) -> Option<Bytes> {
        // Serialising our own wire structs cannot fail: all keys are strings.
        serde_json::to_vec(body).ok().map(Bytes::from)
    }

    fn get(&self, route: &'static str, url: Url) -> Outgoing<'static> {
        Outgoing {
            family: Family::Organizations,
            route,
            method: Method::GET,
            url,
            body: None,
            idempotency_key: None,
            delete: false,
        }
    }

    /// `POST /organizations`, with the request's idempotency key.
    pub async fn create_organization(
        &self,
        call: &Call,
        new: &NewOrganization,
    ) -> Result<Organization, Error> {
        let body = wire::CreateOrganizationWire {
            name: &new.name,
            domain_data: new.domains.iter().map(Into::into).collect(),
            metadata: new.metadata.pairs(),
            external_id: new.external_id.as_ref().map(ExternalId::as_str),
        };
        let out = Outgoing {
            family: Family::Organizations,
            route: "POST /organizations",
            method: Method::POST,
            url: self.url(&["organizations"]),
            body: Self::json(&body),
            idempotency_key: Some(&new.idempotency_key),
            delete: false,
        };
        let answer = self.send(call, out).await?;
        let organization = Self::decode::<wire::OrganizationWire>(&answer)?.into_domain()?;
        self.inner.cache.store(&organization);
        Ok(organization)
    }

    /// `GET /organizations/{id}`, cached. Returns whether it came from the cache.
    pub async fn get_organization(
        &self,
        call: &Call,
        id: &OrganizationId,
    ) -> Result<(Organization, bool), Error> {
        let fetch = async {
            let answer = self
                .send(
                    call,
                    self.get(
                        "GET /organizations/{id}",
                        self.url(&["organizations", id.as_str()]),
                    ),
                )
                .await?;
            Self::decode::<wire::OrganizationWire>(&answer)?.into_domain()
        };
        let (result, cached) = self
            .inner
            .cache
            .get_or_fetch(Key::Id(id.as_str().to_owned()), fetch)
            .await;
        self.inner.metrics.cache(cached);
        result.map(|org| (org, cached))
    }

    /// `GET /organizations/external_id/{external_id}`, cached.
    pub async fn get_organization_by_external_id(
        &self,
        call: &Call,
        external_id: &ExternalId,
    ) -> Result<(Organization, bool), Error> {
        let fetch = async {
            let url = self.url(&["organizations", "external_id", external_id.as_str()]);
            let answer = self
                .send(
                    call,
                    self.get("GET /organizations/external_id/{external_id}", url),
                )
                .await?;
            Self::decode::<wire::OrganizationWire>(&answer)?.into_domain()
        };
        let (result, cached) = self
            .inner
            .cache
            .get_or_fetch(Key::External(external_id.as_str().to_owned()), fetch)
            .await;
        self.inner.metrics.cache(cached);
        result.map(|org| (org, cached))
    }

    /// `GET /organizations` with WorkOS's cursor parameters (never cached).
    pub async fn list_organizations(
        &self,
        call: &Call,
        query: &ListQuery,
    ) -> Result<OrganizationPage, Error> {
        let mut url = self.url(&["organizations"]);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("limit", &query.limit.to_string());
            pairs.append_pair(
                "order",
                match query.order {
                    ListOrder::Ascending => "asc",
                    ListOrder::Descending => "desc",
                },
            );
            match &query.cursor {
                Some(crate::domain::Cursor::Before(id)) => {
                    pairs.append_pair("before", id.as_str());
                }
                Some(crate::domain::Cursor::After(id)) => {
                    pairs.append_pair("after", id.as_str());
                }
                None => {}
            }
            if !query.domains.is_empty() {
                // Comma-joined, as the OpenAPI spec declares (`style: form, explode: false`).
                pairs.append_pair("domains", &query.domains.join(","));
            }
        }
        let answer = self.send(call, self.get("GET /organizations", url)).await?;
        Self::decode::<wire::ListWire>(&answer)?.into_domain()
    }

    /// `PUT /organizations/{id}` with only the changed fields; `null` clears a field. A PUT of
    /// the same body is idempotent, so it carries a key and may be retried.
    pub async fn update_organization(
        &self,
        call: &Call,
        id: &OrganizationId,
        changes: &OrganizationChanges,
    ) -> Result<Organization, Error> {
        let mut body = serde_json::Map::new();
        if let Some(name) = &changes.name {
            body.insert("name".into(), name.clone().into());
        }
        if let Some(domains) = &changes.domains {
            let data: Vec<wire::DomainDataWire<'_>> = domains.iter().map(Into::into).collect();
            body.insert(
                "domain_data".into(),
                serde_json::to_value(data).unwrap_or_default(),
            );
        }
        if let Some(metadata) = &changes.metadata {
            body.insert(
                "metadata".into(),
                serde_json::to_value(metadata.pairs()).unwrap_or_default(),
            );
        }
        if let Some(external_id) = &changes.external_id {
            body.insert(
                "external_id".into(),
                external_id.as_ref().map(|e| e.as_str().to_owned()).into(),
            );
        }
        if let Some(stripe) = &changes.stripe_customer_id {
            body.insert("stripe_customer_id".into(), stripe.clone().into());
        }
        let key = crate::domain::random_uuid();
        let out = Outgoing {
            family: Family::Organizations,
            route: "PUT /organizations/{id}",
            method: Method::PUT,
            url: self.url(&["organizations", id.as_str()]),
            body: Self::json(&body),
            idempotency_key: Some(&key),
            delete: false,
        };
        // Whatever happens, the cached copy may now be stale.
        self.inner.cache.forget(id.as_str());
        let answer = self.send(call, out).await?;
        let organization = Self::decode::<wire::OrganizationWire>(&answer)?.into_domain()?;
        self.inner.cache.forget(id.as_str());
        self.inner.cache.store(&organization);
        Ok(organization)
    }

    /// `DELETE /organizations/{id}`; WorkOS answers 202 and the body is ignored. Never retried:
    /// WorkOS allows only 50 deletes a minute.
    pub async fn delete_organization(&self, call: &Call, id: &OrganizationId) -> Result<(), Error> {
        let out = Outgoing {
            family: Family::Organizations,
            route: "DELETE /organizations/{id}",
            method: Method::DELETE,
            url: self.url(&["organizations", id.as_str()]),
            body: None,
            idempotency_key: None,
            delete: true,
        };
        self.inner.cache.forget(id.as_str());
        let result = self.send(call, out).await;
        self.inner.cache.forget(id.as_str());
        result.map(drop)
    }

    /// `POST /portal/generate_link`. Returns the link and when it was minted. It carries an
    /// idempotency key, as the official SDKs send, so a lost answer can be retried: at worst
    /// WorkOS mints a second link for the same admin.
    pub async fn generate_link(
        &self,
        call: &Call,
        organization_id: &OrganizationId,
        intent: Intent,
        request: &LinkRequest,
        return_url: Option<&RedirectUrl>,
        success_url: Option<&RedirectUrl>,
    ) -> Result<(String, SystemTime), Error> {
        let body = wire::GenerateLinkWire {
            organization: organization_id.as_str(),
            intent: intent.workos_name(),
            return_url: return_url.map(RedirectUrl::as_str),
            success_url: success_url.map(RedirectUrl::as_str),
            external_user_id: request.external_user_id.as_deref(),
            it_contact_emails: request
                .it_contact_emails
                .iter()
                .map(|e| e.as_str())
                .collect(),
        };
        let minted = SystemTime::now();
        let key = crate::domain::random_uuid();
        let out = Outgoing {
            family: Family::Portal,
            route: "POST /portal/generate_link",
            method: Method::POST,
            url: self.url(&["portal", "generate_link"]),
            body: Self::json(&body),
            idempotency_key: Some(&key),
            delete: false,
        };
        let answer = self.send(call, out).await?;
        Ok((Self::decode::<wire::LinkWire>(&answer)?.link, minted))
    }

    /// `POST /portal/revoke_link` (idempotent: revoking twice changes nothing).
    pub async fn revoke_links(
        &self,
        call: &Call,
        organization_id: &OrganizationId,
        external_user_id: &str,
    ) -> Result<(), Error> {
        let body = wire::RevokeLinkWire {
            organization: organization_id.as_str(),
            external_user_id,
        };
        let key = crate::domain::random_uuid();
        let out = Outgoing {
            family: Family::Portal,
            route: "POST /portal/revoke_link",
            method: Method::POST,
            url: self.url(&["portal", "revoke_link"]),
            body: Self::json(&body),
            idempotency_key: Some(&key),
            delete: false,
        };
        self.send(call, out).await.map(drop)
    }

    /// The circuit state of each route family, for health and metrics.
    pub fn breaker_states(&self) -> [(&'static str, resilience::BreakerState); 2] {
        [
            ("organizations", self.inner.organizations_breaker.state()),
            ("portal", self.inner.portal_breaker.state()),
        ]
    }
}
