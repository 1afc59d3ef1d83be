//! Starts the emulator and the gateway in-process on port 0 and hands tests real gRPC clients,
//! an HTTP client for the emulator, and the emulator's control API.

use std::{path::PathBuf, time::Duration};

use portal_gateway::{
    Config, emulator,
    proto::{
        access_service_client::AccessServiceClient,
        invitation_service_client::InvitationServiceClient,
        organization_service_client::OrganizationServiceClient,
        portal_service_client::PortalServiceClient, setup_service_client::SetupServiceClient,
    },
};
use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::health_client::HealthClient;

pub(crate) const API_KEY: &str = "sk_test_emulator";

/// A running emulator.
pub(crate) struct TestEmulator {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl TestEmulator {
    pub(crate) async fn start() -> Self {
        Self::start_with(emulator::Options {
            api_key: API_KEY.into(),
            seed: Some(42),
        })
        .await
    }

    pub(crate) async fn start_with(options: emulator::Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind emulator");
        let url = emulator::origin_of(listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(emulator::serve(listener, options, async {
            let _ = stopped.await;
        }));
        Self {
            url,
            http: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    /// A WorkOS API call with the right key.
    pub(crate) fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(API_KEY)
    }

    /// A control API call.
    pub(crate) async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/_emulator{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("control call");
        let status = response.status();
        let text = response.text().await.expect("control body");
        assert!(status.is_success(), "control {path}: {status} {text}");
        serde_json::from_str(&text).expect("control json")
    }

    pub(crate) async fn fault(&self, fault: Value) {
        self.control(reqwest::Method::POST, "/faults", Some(fault))
            .await;
    }

    /// How many requests a route (`"METHOD /template"`) has had.
    pub(crate) async fn count(&self, route: &str) -> u64 {
        let counts = self.control(reqwest::Method::GET, "/requests", None).await;
        counts["counts"][route].as_u64().unwrap_or(0)
    }

    pub(crate) async fn total_requests(&self) -> u64 {
        self.control(reqwest::Method::GET, "/requests", None).await["total"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Drives an organization's setup through the control API, as the Admin Portal would.
    pub(crate) async fn setup(&self, organization_id: &str, body: Value) -> Value {
        self.control(
            reqwest::Method::POST,
            &format!("/organizations/{organization_id}/setup"),
            Some(body),
        )
        .await
    }

    /// Creates an organization directly in the emulator.
    pub(crate) async fn create_organization(&self, body: Value) -> Value {
        let response = self
            .api(reqwest::Method::POST, "/organizations")
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 201, "create organization");
        response.json().await.expect("json")
    }
}

impl Drop for TestEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Credentials a test client sends with every call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) token: Option<String>,
    pub(crate) acting_user: Option<String>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        if let Some(token) = &self.token {
            metadata.insert(
                "authorization",
                format!("Bearer {token}").parse().expect("ascii token"),
            );
        }
        if let Some(user) = &self.acting_user {
            metadata.insert("x-acting-user", user.parse().expect("ascii user"));
        }
        for (name, value) in &self.headers {
            metadata.insert(*name, value.parse().expect("ascii header"));
        }
        Ok(request)
    }
}

pub(crate) type Authed = InterceptedService<Channel, Credentials>;

/// Clients for one caller.
#[derive(Clone)]
pub(crate) struct Clients {
    pub(crate) orgs: OrganizationServiceClient<Authed>,
    pub(crate) portal: PortalServiceClient<Authed>,
    pub(crate) access: AccessServiceClient<Authed>,
    pub(crate) setup: SetupServiceClient<Authed>,
    pub(crate) invitations: InvitationServiceClient<Authed>,
}

impl Clients {
    pub(crate) fn new(channel: Channel, credentials: Credentials) -> Self {
        Self {
            orgs: OrganizationServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            portal: PortalServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            access: AccessServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            setup: SetupServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            invitations: InvitationServiceClient::with_interceptor(channel, credentials),
        }
    }
}

/// The gateway wired to its own emulator.
pub(crate) struct TestApp {
    pub(crate) emulator: TestEmulator,
    /// Where the gateway listens.
    pub(crate) address: std::net::SocketAddr,
    pub(crate) channel: Channel,
    /// Clients for the all-powerful `admin` caller.
    pub(crate) orgs: OrganizationServiceClient<Authed>,
    pub(crate) portal: PortalServiceClient<Authed>,
    pub(crate) setup: SetupServiceClient<Authed>,
    pub(crate) health: HealthClient<Channel>,
    pub(crate) audit_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), portal_gateway::ServeError>>>,
}

/// The token of the `admin` caller every test starts with.
pub(crate) const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// SHA-256 of a token in hex, as the configuration stores it.
pub(crate) fn digest(token: &str) -> String {
    portal_gateway::domain::hex(&portal_gateway::config::sha256(token))
}

/// A unique path in the temporary directory.
pub(crate) fn temp_path(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "portal-gateway-test-{}-{n}-{name}",
        std::process::id()
    ))
}

/// The configuration every test starts from, as a TOML string: an `admin` caller allowed
/// everything, audit to `audit_path`.
pub(crate) fn base_config(emulator_url: &str) -> String {
    config_with_tokens(emulator_url, &[])
}

/// [`base_config`] whose static tokens also prove each `(identity, token)`; rules for those
/// identities are the caller's to append.
pub(crate) fn config_with_tokens(emulator_url: &str, extra_tokens: &[(&str, &str)]) -> String {
    let tokens: Vec<String> = std::iter::once(("admin", ADMIN_TOKEN))
        .chain(extra_tokens.iter().copied())
        .map(|(identity, token)| {
            format!(
                "{{ identity = \"{identity}\", sha256 = \"{}\" }}",
                digest(token)
            )
        })
        .collect();
    format!(
        r#"
listen = "127.0.0.1:0"
[workos]
base_url = "{emulator_url}"
request_timeout = "5s"
[portal]
allow_http_loopback = true
[portal.intents.sso]
success_url = "https://app.example.com/settings/sso/done"
[server]
shutdown_grace = "5s"
drain_delay = "0s"
[setup]
poll_interval = "20ms"
poll_max_interval = "100ms"
[auth]
tokens = [{tokens}]
[[policy.callers]]
name = "admin"
identities = ["token:admin"]
rpcs = ["*"]
intents = ["*"]
organizations = ["*"]
return_origins = ["*"]
"#,
        tokens = tokens.join(", ")
    )
}

/// Polls `condition` every 10 ms for at most 5 s.
pub(crate) async fn wait_until<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5 s");
}

pub(crate) async fn spawn_app() -> TestApp {
    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url);
    spawn_app_with(emulator, &config, API_KEY).await
}

pub(crate) async fn spawn_app_with(
    emulator: TestEmulator,
    config_toml: &str,
    api_key: &str,
) -> TestApp {
    spawn_app_inner(emulator, config_toml, api_key, None).await
}

/// Like [`spawn_app_with`], also serving `/metrics` and `/healthz`; returns their address.
pub(crate) async fn spawn_app_with_admin(
    emulator: TestEmulator,
    config_toml: &str,
) -> (TestApp, std::net::SocketAddr) {
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let addr = admin.local_addr().expect("admin addr");
    (
        spawn_app_inner(emulator, config_toml, API_KEY, Some(admin)).await,
        addr,
    )
}

async fn spawn_app_inner(
    emulator: TestEmulator,
    config_toml: &str,
    api_key: &str,
    admin: Option<TcpListener>,
) -> TestApp {
    let audit_path = temp_path("audit.log");
    // A test that chooses its own audit sink says so with its own [audit] table.
    let config_toml = if config_toml.contains("[audit]") {
        config_toml.to_owned()
    } else {
        format!(
            "{config_toml}\n[audit]\nfile = {:?}\nunauthenticated_summary_every = \"50ms\"\n",
            audit_path.display().to_string()
        )
    };
    let env = |name: &str| (name == "WORKOS_API_KEY").then(|| api_key.to_owned());
    let config = Config::load(&config_toml, env).expect("test config is valid");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let server = match admin {
        None => tokio::spawn(portal_gateway::run(listener, config, stopped)),
        Some(admin) => tokio::spawn(portal_gateway::run_with_admin(
            listener, admin, config, stopped,
        )),
    };
    // The listener is already bound, so connecting cannot race the server's start.
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to gateway");
    let admin = Clients::new(
        channel.clone(),
        Credentials {
            token: Some(ADMIN_TOKEN.into()),
            ..Credentials::default()
        },
    );
    TestApp {
        emulator,
        address: addr,
        orgs: admin.orgs,
        portal: admin.portal,
        setup: admin.setup,
        health: HealthClient::new(channel.clone()),
        channel,
        audit_path,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    /// What the gateway's health service says of `service` (`""` for the server as a whole).
    pub(crate) async fn health_of(
        &self,
        service: &str,
    ) -> tonic_health::pb::health_check_response::ServingStatus {
        self.health
            .clone()
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status()
    }

    /// Clients that send these credentials.
    pub(crate) fn clients(&self, credentials: Credentials) -> Clients {
        Clients::new(self.channel.clone(), credentials)
    }

    /// Clients for a bearer token.
    pub(crate) fn as_token(&self, token: &str) -> Clients {
        self.clients(Credentials {
            token: Some(token.into()),
            ..Credentials::default()
        })
    }

    /// Every audit record written so far.
    pub(crate) fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("audit lines are JSON"))
            .collect()
    }

    /// Sends the shutdown signal without waiting.
    pub(crate) fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub(crate) fn take_server(&mut self) -> JoinHandle<Result<(), portal_gateway::ServeError>> {
        self.server.take().expect("server handle")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_file(&self.audit_path);
    }
}

/// The details a status carries.
pub(crate) fn details(status: &tonic::Status) -> tonic_types::ErrorDetails {
    use tonic_types::StatusExt;
    status.get_error_details()
}

/// `ErrorInfo.reason`, asserting the domain.
pub(crate) fn reason(status: &tonic::Status) -> String {
    let info = details(status)
        .error_info()
        .cloned()
        .expect("every error has an ErrorInfo");
    assert_eq!(info.domain, "adminportal.v1");
    info.reason
}

/// The fields a BadRequest names.
pub(crate) fn bad_fields(status: &tonic::Status) -> Vec<String> {
    details(status)
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Repository root (for scripts and the README).
pub(crate) fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the real client tools (official WorkOS SDK, grpcurl) once per machine.
pub(crate) fn ensure_clients() -> std::path::PathBuf {
    let status = std::process::Command::new(repo_root().join("scripts/ensure-clients.sh"))
        .status()
        .expect("run scripts/ensure-clients.sh");
    assert!(
        status.success(),
        "scripts/ensure-clients.sh failed: the client tools could not be installed"
    );
    repo_root().join(".venv-clients/bin")
}

/// The targets a test proxy saw (`host:port`), each with its `Proxy-Authorization`.
pub(crate) type Tunnels = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A forward proxy for tests, as HTTP clients use one: a tunnel for each `CONNECT` (HTTPS
/// targets), and requests in absolute form (`GET http://host/path`, plain-HTTP targets) passed
/// on to their host. It checks Basic credentials when `expected_authorization` is set, and
/// records each connection's target and `Proxy-Authorization`.
pub(crate) async fn start_connect_proxy(
    expected_authorization: Option<String>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>,
) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let address = listener.local_addr().expect("proxy address");
    let seen = Tunnels::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = record.clone();
            let expected = expected_authorization.clone();
            tokio::spawn(async move {
                let mut client = tokio::io::BufReader::new(client);
                let mut request_line = String::new();
                client.read_line(&mut request_line).await.ok()?;
                let mut head = request_line.clone();
                let mut authorization = None;
                loop {
                    let mut line = String::new();
                    client.read_line(&mut line).await.ok()?;
                    head.push_str(&line);
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("proxy-authorization")
                    {
                        authorization = Some(value.trim().to_owned());
                    }
                }
                let mut words = request_line.split_whitespace();
                let method = words.next()?.to_owned();
                let target = words.next()?.to_owned();
                let tunnel = method == "CONNECT";
                let host = if tunnel {
                    target.clone()
                } else {
                    let url = url::Url::parse(&target).ok()?;
                    format!("{}:{}", url.host_str()?, url.port_or_known_default()?)
                };
                record
                    .lock()
                    .expect("record")
                    .push((host.clone(), authorization.clone()));
                let buffered = client.buffer().to_vec();
                if tunnel {
                    assert!(buffered.is_empty(), "the client waits for our answer");
                }
                let mut client = client.into_inner();
                if expected.is_some() && authorization != expected {
                    let _ = client
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return None;
                }
                let mut upstream = tokio::net::TcpStream::connect(&host).await.ok()?;
                if tunnel {
                    client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .ok()?;
                } else {
                    // The server reads the absolute-form target as well as a path.
                    upstream.write_all(head.as_bytes()).await.ok()?;
                    upstream.write_all(&buffered).await.ok()?;
                }
                tokio::io::copy_bidirectional(&mut client, &mut upstream)
                    .await
                    .ok()
            });
        }
    });
    (address, seen)
}
