//! The outbound HTTPS client, for WorkOS and a JWKS URL: hyper-util's pooled client over rustls
//! (ring, Mozilla's roots from `webpki-roots`), HTTP/2 when the server offers it by ALPN, else
//! HTTP/1.1 with keep-alive.
//!
//! It is hyper used directly, the same stack tonic serves with, rather than a general-purpose
//! client: the gateway sends a handful of fixed JSON requests and needs no redirects, cookies,
//! proxies or URL re-parsing per request, and those layers were a fifth of its CPU time per
//! minted link. Redirects are not followed (a 3xx is an answer like any other), and environment
//! proxy variables are not read: WorkOS is reached directly or through the mesh's egress.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

/// The largest response body read; WorkOS's answers are a few kilobytes.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// A pooled HTTPS (and plain HTTP) client. Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The body, read to the end.
    pub body: Bytes,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No connection could be made (so the request was certainly never sent).
    #[error("cannot connect")]
    Connect(#[source] hyper_util::client::legacy::Error),
    /// The connection failed while the request or the response was in flight.
    #[error("the connection failed")]
    Transport(#[source] hyper_util::client::legacy::Error),
    /// The response body could not be read to the end.
    #[error("cannot read the response body")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No whole response within the time allowed.
    #[error("no response in time")]
    Timeout,
    /// The request could not be built (never sent).
    #[error("cannot build the request")]
    Request(#[source] http::Error),
    /// TLS could not be set up.
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
}

impl HttpError {
    /// Whether the request certainly never left this process.
    pub fn never_sent(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Request(_) | Self::Tls(_))
    }
}

impl HttpClient {
    /// A client whose connection attempts give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Result<Self, HttpError> {
        let mut http = HttpConnector::new();
        // The TLS layer above decides between http and https.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(HttpError::Tls)?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Self { client })
    }

    /// Sends `request` and reads the whole response (at most [`MAX_BODY`] bytes of body), all
    /// within `timeout`.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                if error.is_connect() {
                    HttpError::Connect(error)
                } else {
                    HttpError::Transport(error)
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(HttpError::Body)?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(HttpError::Timeout))
    }

    /// `GET url`, answering the body of a 2xx response.
    pub async fn get(&self, url: &url::Url, timeout: Duration) -> Result<Bytes, String> {
        let request = Request::get(url.as_str())
            .body(Full::default())
            .map_err(|error| format!("cannot request {url}: {error}"))?;
        let response = self
            .send(request, timeout)
            .await
            .map_err(|error| describe(&error))?;
        if !response.status.is_success() {
            return Err(format!("answered {}", response.status));
        }
        Ok(response.body)
    }
}

/// `error` and its causes, joined, for a log line.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use axum::{Router, http::header::LOCATION, routing::get};

    use super::*;

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    fn client() -> HttpClient {
        HttpClient::new(Duration::from_secs(5)).expect("client")
    }

    fn get_request(url: &str) -> Request<Full<Bytes>> {
        Request::get(url).body(Full::default()).expect("request")
    }

    #[tokio::test]
    async fn a_redirect_is_answered_not_followed() {
        let base = serve(Router::new().route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [(LOCATION, "/elsewhere")], "") }),
        ))
        .await;
        let response = client()
            .send(
                get_request(&format!("{base}/moved")),
                Duration::from_secs(5),
            )
            .await
            .expect("response");
        assert_eq!(response.status, StatusCode::FOUND);
        assert_eq!(response.headers[LOCATION], "/elsewhere");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let base =
            serve(Router::new().route("/huge", get(|| async { vec![b'x'; MAX_BODY + 1] }))).await;
        let error = client()
            .send(get_request(&format!("{base}/huge")), Duration::from_secs(5))
            .await
            .err();
        assert!(matches!(error, Some(HttpError::Body(_))), "{error:?}");
    }

    #[tokio::test]
    async fn a_slow_answer_times_out_and_a_refused_connection_was_never_sent() {
        let base = serve(Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                ""
            }),
        ))
        .await;
        let error = client()
            .send(
                get_request(&format!("{base}/slow")),
                Duration::from_millis(50),
            )
            .await
            .err();
        assert!(matches!(error, Some(HttpError::Timeout)), "{error:?}");

        // A port that was just free: nothing listens there.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address")
        };
        let error = client()
            .send(
                get_request(&format!("http://{closed}/")),
                Duration::from_secs(5),
            )
            .await
            .err();
        assert!(
            error.as_ref().is_some_and(HttpError::never_sent),
            "{error:?}"
        );
        assert!(
            error.is_some_and(|e| describe(&e).starts_with("cannot connect: ")),
            "the cause is kept for logs"
        );
    }
}
