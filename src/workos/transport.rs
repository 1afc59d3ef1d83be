//! The bottom of the client's tower stack: one HTTP exchange with WorkOS over reqwest (rustls,
//! HTTP/2 by ALPN, pooled connections, redirects never followed, a proxy only when configured).
//!
//! An [`Exchange`] is everything one attempt needs, cheap to clone so the retry layer can send it
//! again; an [`Answer`] is WorkOS's 2xx reply. Any other status becomes [`Error::Api`].

use std::{future::Future, pin::Pin, sync::Arc, task::Poll, time::Duration};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use secrecy::ExposeSecret as _;
use tokio::time::Instant;
use url::Url;

use super::{Error, Observe, Settings, wire};

/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("portal-gateway/", env!("CARGO_PKG_VERSION"), " (rust)");

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The largest response body read; WorkOS's answers are a few kilobytes.
pub(super) const MAX_BODY: usize = 8 * 1024 * 1024;

/// A boxed future of the stack's result.
pub(super) type Pending<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

/// Route families, each with its own circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// Organization reads and writes.
    Organizations,
    /// Admin Portal links.
    Portal,
    /// Setup status reads: connections, directories, the audit log configuration, events.
    Setup,
    /// The setup events poller's reads, apart, so an Events API outage leaves status reads be.
    Events,
}

impl Family {
    /// The metrics label.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Organizations => "organizations",
            Self::Portal => "portal",
            Self::Setup => "setup",
            Self::Events => "events",
        }
    }
}

/// One WorkOS endpoint: what the layers need to know about it.
#[derive(Debug)]
pub(super) struct Route {
    /// `"METHOD /template"`, for metrics and logs.
    pub(super) name: &'static str,
    /// The HTTP method.
    pub(super) method: Method,
    /// Its breaker.
    pub(super) family: Family,
    /// Whether it draws on WorkOS's separate delete limit.
    pub(super) delete: bool,
    /// Whether sending it again after it took effect makes a second one (a create). WorkOS
    /// honours `Idempotency-Key` only on audit-log events, so such a call is sent again only when
    /// the failure proves nothing was made.
    pub(super) duplicates: bool,
}

impl Route {
    /// A read: a GET that does not draw on the delete limit.
    pub(super) const fn new(name: &'static str, family: Family) -> Self {
        Self {
            name,
            method: Method::GET,
            family,
            delete: false,
            duplicates: false,
        }
    }
}

/// Who a call is for and when it must end, shared by all of its attempts.
#[derive(Debug)]
pub struct CallContext {
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// The caller's identity (for fair sharing and per-caller quotas).
    pub caller: Arc<str>,
    /// The caller's own quota, requests per minute, if the policy sets one.
    pub caller_per_minute: Option<u32>,
    /// `x-request-id`, sent upstream.
    pub request_id: String,
    /// A W3C `traceparent`, sent upstream.
    pub traceparent: Option<String>,
}

/// One request to WorkOS, ready to send (and to send again).
#[derive(Debug, Clone)]
pub(super) struct Exchange {
    pub(super) route: &'static Route,
    pub(super) url: Url,
    pub(super) body: Option<Bytes>,
    pub(super) idempotency_key: Option<Arc<str>>,
    pub(super) call: Arc<CallContext>,
    /// Set while the latest attempt may have reached WorkOS and not been refused: the call's
    /// effect is in doubt. Shared by the exchange's clones (its attempts).
    pub(super) in_doubt: Arc<std::sync::atomic::AtomicBool>,
}

impl Exchange {
    /// Whether sending it twice is safe: reads, and writes whose second sending makes nothing
    /// new (carrying an idempotency key, as the official SDKs send).
    pub(super) fn retry_safe(&self) -> bool {
        self.route.method == Method::GET
            || (self.idempotency_key.is_some() && !self.route.duplicates)
    }
}

/// WorkOS's successful answer.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) request_id: Option<String>,
    pub(super) body: Bytes,
}

/// Sends exchanges with reqwest. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    http: reqwest::Client,
    authorization: HeaderValue,
    attempt_timeout: Duration,
    key_rejected: Arc<tokio::sync::watch::Sender<bool>>,
    observe: Arc<dyn Observe>,
}

impl Transport {
    /// Builds the HTTP client. Fails only if the TLS stack or the proxy cannot be set up.
    pub(super) fn new(settings: &Settings, observe: Arc<dyn Observe>) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(5)))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            // Retries are the stack's own (retry.rs); reqwest's, for HTTP/2 refusals, would also
            // clone every request's headers in case it needs them.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            // Proxies come only from configuration, which reads the environment itself.
            .no_proxy();
        if let Some(proxy) = &settings.proxy {
            let no_proxy = proxy
                .no_proxy
                .as_deref()
                .and_then(reqwest::NoProxy::from_string);
            let proxy = reqwest::Proxy::all(proxy.url.expose_secret())
                .map_err(Error::from_reqwest)?
                .no_proxy(no_proxy);
            builder = builder.proxy(proxy);
        }
        let http = builder.build().map_err(Error::from_reqwest)?;
        let mut authorization =
            HeaderValue::try_from(format!("Bearer {}", settings.api_key.expose_secret()))
                .map_err(|_| Error::Malformed { field: "api_key" })?;
        // Keeps the key out of any Debug print of a request's headers.
        authorization.set_sensitive(true);
        Ok(Self {
            http,
            authorization,
            attempt_timeout: settings.request_timeout,
            key_rejected: Arc::new(tokio::sync::watch::channel(false).0),
            observe,
        })
    }

    /// Watches whether WorkOS is rejecting the gateway's key (a 401), for health reporting.
    pub(super) fn key_rejected(&self) -> tokio::sync::watch::Receiver<bool> {
        self.key_rejected.subscribe()
    }

    async fn send(self, exchange: Exchange) -> Result<Answer, Error> {
        let remaining = exchange
            .call
            .deadline
            .saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::DeadlineExceeded);
        }
        let started = Instant::now();
        let bounded_by_deadline = remaining < self.attempt_timeout;
        let route = exchange.route.name;
        let in_doubt = exchange.in_doubt.clone();
        in_doubt.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut result = self
            .exchange(exchange, remaining.min(self.attempt_timeout))
            .await;
        if result.as_ref().is_err_and(Error::proves_nothing_committed) {
            in_doubt.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        if bounded_by_deadline && matches!(result, Err(Error::Timeout)) {
            // The caller's deadline, not WorkOS's slowness, ended this attempt: it says nothing
            // about WorkOS's health and belongs to this caller alone.
            result = Err(Error::DeadlineExceeded);
        }
        let status: std::borrow::Cow<'_, str> = match &result {
            Ok(answer) => answer.status.as_str().into(),
            Err(Error::Api { status, .. }) => status.to_string().into(),
            Err(Error::Timeout) => "timeout".into(),
            Err(_) => "transport_error".into(),
        };
        self.observe.upstream(route, &status, started.elapsed());
        result
    }

    async fn exchange(&self, exchange: Exchange, timeout: Duration) -> Result<Answer, Error> {
        const JSON: HeaderValue = HeaderValue::from_static("application/json");
        let call = &exchange.call;
        let mut request = self
            .http
            .request(exchange.route.method.clone(), exchange.url)
            .timeout(timeout)
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, JSON)
            // Ids that let WorkOS support and the caller's traces find this request.
            .header(X_REQUEST_ID, call.request_id.as_str());
        if let Some(traceparent) = &call.traceparent {
            request = request.header(TRACEPARENT, traceparent.as_str());
        }
        if let Some(key) = &exchange.idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, &**key);
        }
        if let Some(body) = exchange.body {
            request = request.header(header::CONTENT_TYPE, JSON).body(body);
        }
        let mut response = request.send().await.map_err(Error::from_reqwest)?;
        let status = response.status();
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            // Only a proxy answers this (for a plain-HTTP target; for HTTPS, reqwest reports the
            // refused tunnel as a connection error).
            return Err(Error::ProxyRefused {
                status: status.as_u16(),
            });
        }
        let request_id = response
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let body = read_body(&mut response).await?;
        self.key_rejected.send_if_modified(|rejected| {
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
            retry_after,
        })
    }
}

/// Reads the whole body, refusing one larger than [`MAX_BODY`]. WorkOS's small answers come in
/// one chunk, which is kept as it is.
async fn read_body(response: &mut reqwest::Response) -> Result<Bytes, Error> {
    let too_large = Error::TooLarge { limit: MAX_BODY };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY as u64)
    {
        return Err(too_large);
    }
    let mut next = async || response.chunk().await.map_err(Error::from_reqwest);
    let Some(first) = next().await? else {
        return Ok(Bytes::new());
    };
    if first.len() > MAX_BODY {
        return Err(too_large);
    }
    let Some(mut chunk) = next().await? else {
        return Ok(first);
    };
    let mut body = bytes::BytesMut::from(first);
    loop {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
        match next().await? {
            Some(more) => chunk = more,
            None => return Ok(body.freeze()),
        }
    }
}

impl tower::Service<Exchange> for Transport {
    type Response = Answer;
    type Error = Error;
    type Future = Pending<Answer>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, exchange: Exchange) -> Self::Future {
        Box::pin(self.clone().send(exchange))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::SecretString;
    use tokio::net::TcpListener;

    use super::*;
    use crate::{
        domain::OrganizationId,
        workos::{Call, Client, settings::ProxySettings},
    };

    /// A "proxy" that counts the connections made to it and closes them.
    async fn counting_proxy() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        (format!("http://{address}"), connections)
    }

    async fn emulator() -> (Url, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = crate::emulator::origin_of(listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = crate::emulator::Options {
            api_key: "sk_test_transport".into(),
            seed: Some(1),
        };
        tokio::spawn(crate::emulator::serve(listener, options, async {
            let _ = stopped.await;
        }));
        (Url::parse(&url).expect("url"), stop)
    }

    /// Reads an organization that does not exist: WorkOS's 404 proves the request got there.
    async fn read_through(base_url: &Url, proxy: ProxySettings) -> Result<(), Error> {
        let mut settings = Settings::new(base_url.clone(), SecretString::from("sk_test_transport"));
        settings.proxy = Some(proxy);
        settings.retry.max_attempts = 1;
        let client = Client::new(&settings, Arc::new(())).expect("client");
        let mut call = Call::new(CallContext {
            deadline: Instant::now() + Duration::from_secs(5),
            caller: Arc::from("test"),
            caller_per_minute: None,
            request_id: "test".into(),
            traceparent: None,
        });
        let id = OrganizationId::parse("org_01EHWNCE74X7JSDV0X3SZ3KJNY").expect("id");
        client.get_organization(&mut call, &id).await.map(drop)
    }

    #[tokio::test]
    async fn no_proxy_entries_send_matching_hosts_direct_and_others_through_the_proxy() {
        let (base_url, _stop) = emulator().await;
        let mut by_name = base_url.clone();
        by_name.set_host(Some("localhost")).expect("host");
        for (base_url, no_proxy) in [
            (&base_url, "127.0.0.1"),
            (&base_url, "example.com, 127.0.0.0/8"),
            (&by_name, "localhost"),
            (&by_name, ".example.com,.localhost"),
        ] {
            let (proxy, connections) = counting_proxy().await;
            let proxy = ProxySettings {
                url: SecretString::from(proxy),
                no_proxy: Some(no_proxy.to_owned()),
            };
            let result = read_through(base_url, proxy).await;
            assert!(
                matches!(result, Err(Error::Api { status: 404, .. })),
                "NO_PROXY={no_proxy}: {result:?}"
            );
            assert_eq!(connections.load(Ordering::SeqCst), 0, "NO_PROXY={no_proxy}");
        }
        let (proxy, connections) = counting_proxy().await;
        let proxy = ProxySettings {
            url: SecretString::from(proxy),
            no_proxy: Some("example.com".into()),
        };
        let result = read_through(&base_url, proxy).await;
        assert!(
            matches!(result, Err(Error::Transport { .. })),
            "the proxy hung up: {result:?}"
        );
        assert!(
            connections.load(Ordering::SeqCst) >= 1,
            "went through the proxy"
        );
    }
}
