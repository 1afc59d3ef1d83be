//! The outbound HTTPS client, for WorkOS and a JWKS URL: hyper-util's pooled client over rustls
//! (ring, Mozilla's roots from `webpki-roots`), HTTP/2 when the server offers it by ALPN, else
//! HTTP/1.1 with keep-alive.
//!
//! It is hyper used directly, the same stack tonic serves with, rather than a general-purpose
//! client: the gateway sends a handful of fixed JSON requests and needs no redirects, cookies,
//! proxies or URL re-parsing per request, and those layers were a fifth of its CPU time per
//! minted link. Redirects are not followed (a 3xx is an answer like any other). A forward proxy
//! is used only when configuration names one ([`Proxy`]): connections then go through an HTTP
//! `CONNECT` tunnel, and TLS runs end to end inside it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{
        Client,
        connect::{HttpConnector, proxy::Tunnel},
    },
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use tower::Service;

/// The largest response body read; WorkOS's answers are a few kilobytes.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// A pooled HTTPS (and plain HTTP) client. Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<Connector>, Full<Bytes>>,
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
    /// A client whose connection attempts give up after `connect_timeout`, connecting directly
    /// or, with `proxy`, through it.
    pub fn new(connect_timeout: Duration, proxy: Option<&Proxy>) -> Result<Self, HttpError> {
        let mut http = HttpConnector::new();
        // The TLS layer above decides between http and https.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let connector = match proxy {
            None => Connector::Direct(http),
            Some(proxy) => {
                let tunnel = Tunnel::new(proxy.address.clone(), http);
                Connector::Tunnel(match &proxy.authorization {
                    Some(authorization) => tunnel.with_auth(authorization.clone()),
                    None => tunnel,
                })
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(HttpError::Tls)?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(connector);
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

/// A forward proxy that opens `CONNECT` tunnels: `http://host:port`, with optional
/// `user:password@` for Basic authentication. Its Debug shows the address, never the
/// credentials.
#[derive(Clone)]
pub struct Proxy {
    address: Uri,
    authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("address", &self.address)
            .field(
                "credentials",
                &self.authorization.as_ref().map(|_| "redacted"),
            )
            .finish()
    }
}

impl Proxy {
    /// Parses a proxy URL. The reason for a refusal never repeats the value, which may hold a
    /// password.
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = url::Url::parse(value.trim())
            .map_err(|_| "is not a URL such as http://proxy.internal:3128".to_owned())?;
        if url.scheme() != "http" {
            return Err(format!(
                "must be an http:// proxy URL (the tunnel to WorkOS is TLS end to end), not {}://",
                url.scheme()
            ));
        }
        let host = url.host_str().ok_or("names no host")?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("must be only scheme, credentials, host and port".into());
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let address = format!("http://{host}:{port}")
            .parse::<Uri>()
            .map_err(|_| "names a host that is not valid".to_owned())?;
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |part: &str| {
                percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .map(|decoded| decoded.into_owned())
                    .map_err(|_| "has credentials that are not UTF-8".to_owned())
            };
            let credentials = format!(
                "{}:{}",
                decode(url.username())?,
                decode(url.password().unwrap_or_default())?
            );
            use base64::Engine as _;
            let mut value = HeaderValue::try_from(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ))
            .map_err(|_| "has credentials that cannot be sent".to_owned())?;
            value.set_sensitive(true);
            Some(value)
        };
        Ok(Self {
            address,
            authorization,
        })
    }
}

/// Whether a `NO_PROXY` list exempts `host`: `*`, an exact name, a domain suffix (`example.com`
/// or `.example.com` covers `api.example.com`), an IP address or a CIDR block. Ports in entries
/// are ignored.
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ip = host.parse::<std::net::IpAddr>().ok();
    no_proxy
        .split(',')
        .map(|entry| entry.trim().to_ascii_lowercase())
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let (Some(ip), Ok(net)) = (ip, entry.parse::<ipnet::IpNet>()) {
                return net.contains(&ip);
            }
            // An address, perhaps in brackets and with a port: [fd00::1]:443, 10.0.0.1:80, ::1.
            let name = match entry.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or_default(),
                None if entry.parse::<std::net::IpAddr>().is_ok() => entry.as_str(),
                None => entry.split(':').next().unwrap_or_default(),
            };
            if let Ok(entry_ip) = name.parse::<std::net::IpAddr>() {
                return ip == Some(entry_ip);
            }
            let name = name.trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

/// Opens the TCP connection a request needs: to the server, or a tunnel through the proxy.
#[derive(Debug, Clone)]
enum Connector {
    Direct(HttpConnector),
    Tunnel(Tunnel<HttpConnector>),
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<tokio::net::TcpStream>, BoxError>> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for Connector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Direct(direct) => direct.poll_ready(cx).map_err(Into::into),
            Self::Tunnel(tunnel) => tunnel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        match self {
            Self::Direct(direct) => {
                let connecting = direct.call(destination);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Self::Tunnel(tunnel) => {
                // The tunnel asks for port 443 when the URI names none; say the scheme's own.
                let destination = with_explicit_port(destination);
                let connecting = tunnel.call(destination);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}

fn with_explicit_port(uri: Uri) -> Uri {
    if uri.port().is_some() {
        return uri;
    }
    let port = if uri.scheme() == Some(&http::uri::Scheme::HTTP) {
        80
    } else {
        443
    };
    let Some(host) = uri.host() else {
        return uri;
    };
    let mut parts = uri.clone().into_parts();
    match format!("{host}:{port}").parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            Uri::from_parts(parts).unwrap_or(uri)
        }
        Err(_) => uri,
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
        HttpClient::new(Duration::from_secs(5), None).expect("client")
    }

    fn get_request(url: &str) -> Request<Full<Bytes>> {
        Request::get(url).body(Full::default()).expect("request")
    }

    #[test]
    fn no_proxy_entries_match_names_suffixes_addresses_and_blocks() {
        let list = "localhost, .internal.example, workos.com:443, 10.0.0.0/8, ::1, [fd00::1]";
        for host in [
            "localhost",
            "api.internal.example",
            "internal.example",
            "api.workos.com",
            "workos.com.",
            "10.1.2.3",
            "[::1]",
            "fd00::1",
        ] {
            assert!(no_proxy_matches(list, host), "{host} should be exempt");
        }
        for host in [
            "notworkos.com",
            "example",
            "11.0.0.1",
            "::2",
            "localhost.evil",
        ] {
            assert!(!no_proxy_matches(list, host), "{host} should use the proxy");
        }
        assert!(no_proxy_matches("*", "anything.example"));
        assert!(!no_proxy_matches("", "api.workos.com"));
    }

    #[test]
    fn a_proxy_url_without_a_port_uses_80_and_a_tunnel_names_the_scheme_port() {
        let proxy = Proxy::parse("http://proxy.internal").expect("valid");
        assert_eq!(proxy.address, "http://proxy.internal:80/");
        assert!(proxy.authorization.is_none());
        assert_eq!(
            with_explicit_port("https://api.workos.com/x".parse().expect("uri")),
            "https://api.workos.com:443/x"
        );
        assert_eq!(
            with_explicit_port("http://emulator/x".parse().expect("uri")),
            "http://emulator:80/x"
        );
        assert_eq!(
            with_explicit_port("http://emulator:4100/x".parse().expect("uri")),
            "http://emulator:4100/x"
        );
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
