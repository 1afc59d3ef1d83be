//! The benchmark: starts the WorkOS emulator and the gateway as separate processes (pinned to
//! separate cores when `taskset` and two cores are available), drives them with concurrent gRPC
//! streams, and prints one table with throughput, latency percentiles, the gateway's CPU time per
//! request, its memory, and WorkOS calls per request, each row compared with two baselines
//! measured in the same run: the health check (the framework's floor) and the same WorkOS call
//! made directly over HTTP (what a caller would do without the gateway).
//!
//! It then measures the setup watch's fan-out: WorkOS calls per minute with one watcher and with
//! `--watchers` on one organization (plus a hundred on others), and event delivery latency.
//!
//! Then a flood of half-sent streams (memory and health checks while it holds) and a soak (mixed
//! legitimate load, the flood and WorkOS faults at once), each against gateways of their own.
//!
//! `cargo run --release --bin bench -- [--seconds 5] [--streams 64] [--peak-streams 1000]
//! [--watchers 1000] [--watch-seconds 10] [--flood-connections 20] [--flood-seconds 10]
//! [--soak-seconds 60] [--soak-rate 300]`

use std::{
    io::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

mod cluster;
mod flood;
mod processes;
mod soak;
mod watch;

use anyhow::{Context as _, bail};
use portal_gateway::proto::{self, Intent};
use processes::{
    cores, emulator_requests, gateway_binary, have_taskset, pid, pinned, process_stats, start,
};
use tokio::process::Child;
use tonic::{metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const TOKEN: &str = "bench-token";
const KEY: &str = "sk_test_bench";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    streams: usize,
    peak_streams: usize,
    watchers: usize,
    watch_seconds: u64,
    flood_connections: usize,
    flood_seconds: u64,
    soak_seconds: u64,
    soak_rate: u64,
    /// Only rows whose scenario name contains this (for profiling one scenario).
    only: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        seconds: 5,
        streams: 64,
        peak_streams: 1000,
        watchers: 1000,
        watch_seconds: 10,
        flood_connections: 20,
        flood_seconds: 10,
        soak_seconds: 60,
        soak_rate: 300,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse()?,
            "--streams" => options.streams = value.parse()?,
            "--peak-streams" => options.peak_streams = value.parse()?,
            "--watchers" => options.watchers = value.parse()?,
            "--watch-seconds" => options.watch_seconds = value.parse()?,
            "--flood-connections" => options.flood_connections = value.parse()?,
            "--flood-seconds" => options.flood_seconds = value.parse()?,
            "--soak-seconds" => options.soak_seconds = value.parse()?,
            "--soak-rate" => options.soak_rate = value.parse()?,
            "--only" => options.only = Some(value),
            other => {
                bail!(
                    "unknown flag {other}; use --seconds, --streams, --peak-streams, --watchers, --watch-seconds, --flood-connections, --flood-seconds, --soak-seconds, --soak-rate, --only"
                )
            }
        }
    }
    Ok(options)
}

/// One scenario's result.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    streams: usize,
    requests: usize,
    errors: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    cpu_per_request: Option<Duration>,
    upstream_per_request: Option<f64>,
}

impl Row {
    fn skipped(name: &str, streams: usize) -> Self {
        Self {
            name: name.to_owned(),
            streams,
            requests: 0,
            errors: 0,
            rps: 0.0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            p999: Duration::ZERO,
            cpu_per_request: None,
            upstream_per_request: None,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs `call` from `streams` concurrent loops for `seconds`; returns sorted latencies of the
/// successful calls, the number of failures, and the wall time.
async fn drive<F, Fut>(
    streams: usize,
    seconds: u64,
    call: Arc<F>,
) -> (Vec<Duration>, usize, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..streams)
        .map(|stream| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let mut errors = 0;
                while Instant::now() < until {
                    let began = Instant::now();
                    if call(stream).await {
                        latencies.push(began.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((latencies, failed)) = task.await {
            all.extend(latencies);
            errors += failed;
        }
    }
    all.sort_unstable();
    (all, errors, started.elapsed())
}

struct Rig {
    only: Option<String>,
    gateway: Child,
    emulator_url: String,
    channels: Vec<Channel>,
    http: reqwest::Client,
    organization_id: String,
}

impl Rig {
    async fn measure<F, Fut>(
        &self,
        name: &str,
        streams: usize,
        seconds: u64,
        through_gateway: bool,
        call: F,
    ) -> anyhow::Result<Row>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        if self
            .only
            .as_deref()
            .is_some_and(|only| !name.contains(only))
        {
            return Ok(Row::skipped(name, streams));
        }
        let call = Arc::new(call);
        let pid = pid(&self.gateway)?;
        // Warm connections and caches up, outside the measurement.
        let _ = drive(streams.min(16), 1, call.clone()).await;
        let upstream_before = emulator_requests(&self.http, &self.emulator_url).await?;
        let (cpu_before, _, _) = process_stats(pid)?;
        let (latencies, errors, wall) = drive(streams, seconds, call).await;
        let (cpu_after, _, _) = process_stats(pid)?;
        let upstream_after = emulator_requests(&self.http, &self.emulator_url).await?;
        let requests = latencies.len();
        let per = |total: f64| {
            if requests == 0 {
                0.0
            } else {
                total / requests as f64
            }
        };
        Ok(Row {
            name: name.to_owned(),
            streams,
            requests,
            errors,
            rps: requests as f64 / wall.as_secs_f64(),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            p999: percentile(&latencies, 0.999),
            cpu_per_request: through_gateway
                .then(|| Duration::from_secs_f64(per((cpu_after - cpu_before).as_secs_f64()))),
            upstream_per_request: Some(per(upstream_after.saturating_sub(upstream_before) as f64)),
        })
    }

    /// One GenerateLink call for `organization` on the stream's connection.
    fn generate_link(
        &self,
        stream: usize,
        organization: proto::generate_link_request::Organization,
    ) -> impl std::future::Future<Output = bool> + Send + use<> {
        let mut client = proto::portal_service_client::PortalServiceClient::new(
            self.channels[stream % self.channels.len()].clone(),
        );
        let request = self.authed(proto::GenerateLinkRequest {
            organization: Some(organization),
            intent: Intent::Sso as i32,
            ..Default::default()
        });
        async move { client.generate_link(request).await.is_ok() }
    }

    fn authed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = MetadataValue::try_from(format!("Bearer {TOKEN}")) {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    // Pin the load generator to the emulator's core, leaving core 0 to the gateway alone.
    if cores() >= 2 && have_taskset() && std::env::var_os("PORTAL_GATEWAY_BENCH_PINNED").is_none() {
        let status = std::process::Command::new("taskset")
            .arg("-c")
            .arg("1")
            .arg(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .env("PORTAL_GATEWAY_BENCH_PINNED", "1")
            .env("PORTAL_GATEWAY_BENCH_CORES", cores().to_string())
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let binary = gateway_binary()?;
    let mut emulator_command = pinned(1, &binary);
    emulator_command.args([
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        KEY,
        "--seed",
        "1",
    ]);
    let (_emulator, emulator_url) =
        start(emulator_command, "WorkOS emulator listening on ").await?;

    let config_path =
        std::env::temp_dir().join(format!("portal-gateway-bench-{}.toml", std::process::id()));
    // Audit records go to stdout and logs to stderr, the defaults, as in a container.
    let digest: String = portal_gateway::domain::hex(&portal_gateway::config::sha256(TOKEN));
    std::fs::write(
        &config_path,
        format!(
            "[workos]\nbase_url = {emulator_url:?}\n[workos.quota]\nrequests_per_minute = 100000000\nburst = 1000000\n\
             [setup]\npoll_interval = \"200ms\"\npoll_max_interval = \"2s\"\n\
             [server]\ndrain_delay = \"0s\"\nmax_in_flight = 100000\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [auth]\ntokens = [{{ identity = \"bench\", sha256 = \"{digest}\" }}]\n\
             [[policy.callers]]\nname = \"bench\"\nidentities = [\"token:bench\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\nmax_watchers = 100000\n"
        ),
    )?;
    let mut gateway_command = pinned(0, &binary);
    gateway_command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .env("WORKOS_API_KEY", KEY)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    let (gateway, address) = start(gateway_command, "portal-gateway listening on ").await?;
    let _ = std::fs::remove_file(&config_path);

    // A few HTTP/2 connections, as a pooled client would hold.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{address}"))?
                .connect()
                .await?,
        );
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let mut orgs =
        proto::organization_service_client::OrganizationServiceClient::new(channels[0].clone());
    let mut ensure = tonic::Request::new(proto::EnsureOrganizationRequest {
        external_id: "bench".into(),
        name: "Bench Inc".into(),
        ..Default::default()
    });
    ensure.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {TOKEN}"))?,
    );
    let organization_id = orgs
        .ensure_organization(ensure)
        .await?
        .into_inner()
        .organization
        .context("organization")?
        .id;
    let rig = Arc::new(Rig {
        only: options.only.clone(),
        gateway,
        emulator_url: emulator_url.clone(),
        channels,
        http,
        organization_id,
    });
    let (_, idle_rss, _) = process_stats(pid(&rig.gateway)?)?;

    say(&format!(
        "portal-gateway benchmark: {} cores, gateway pinned to core 0, emulator and load generator to core 1 ({}), {} s per row",
        cores(),
        if cores() >= 2 && have_taskset() {
            "taskset"
        } else {
            "not pinned"
        },
        options.seconds
    ));
    let mut rows = Vec::new();
    for streams in [1, options.streams] {
        let r = rig.clone();
        rows.push(
            rig.measure(
                "health check (floor)",
                streams,
                options.seconds,
                true,
                move |s| {
                    let mut client = HealthClient::new(r.channels[s % r.channels.len()].clone());
                    async move {
                        client
                            .check(HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .is_ok()
                    }
                },
            )
            .await?,
        );
        let r = rig.clone();
        rows.push(
            rig.measure(
                "direct HTTP generate_link (no gateway)",
                streams,
                options.seconds,
                false,
                move |_| {
                    let r = r.clone();
                    async move {
                        let body =
                            serde_json::json!({"organization": r.organization_id, "intent": "sso"});
                        r.http
                            .post(format!("{}/portal/generate_link", r.emulator_url))
                            .bearer_auth(KEY)
                            .header("content-type", "application/json")
                            .body(body.to_string())
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await
                            .is_ok_and(|a| a.status().as_u16() == 201)
                    }
                },
            )
            .await?,
        );
        let r = rig.clone();
        rows.push(
            rig.measure(
                "GenerateLink by id",
                streams,
                options.seconds,
                true,
                move |s| {
                    let organization = proto::generate_link_request::Organization::OrganizationId(
                        r.organization_id.clone(),
                    );
                    r.generate_link(s, organization)
                },
            )
            .await?,
        );
        let r = rig.clone();
        rows.push(
            rig.measure(
                "GenerateLink by external id (warm cache)",
                streams,
                options.seconds,
                true,
                move |s| {
                    r.generate_link(
                        s,
                        proto::generate_link_request::Organization::ExternalId("bench".into()),
                    )
                },
            )
            .await?,
        );
        let r = rig.clone();
        rows.push(
            rig.measure(
                "GetOrganization by id (cached)",
                streams,
                options.seconds,
                true,
                move |s| {
                    let mut client =
                        proto::organization_service_client::OrganizationServiceClient::new(
                            r.channels[s % r.channels.len()].clone(),
                        );
                    let request = r.authed(proto::GetOrganizationRequest {
                        organization: Some(proto::get_organization_request::Organization::Id(
                            r.organization_id.clone(),
                        )),
                    });
                    async move { client.get_organization(request).await.is_ok() }
                },
            )
            .await?,
        );
    }
    let r = rig.clone();
    let peak_row = rig
        .measure(
            "GenerateLink by id",
            options.peak_streams,
            options.seconds,
            true,
            move |s| {
                let organization = proto::generate_link_request::Organization::OrganizationId(
                    r.organization_id.clone(),
                );
                r.generate_link(s, organization)
            },
        )
        .await?;
    rows.push(peak_row);
    let (_, _, peak_rss) = process_stats(pid(&rig.gateway)?)?;
    print_table(&rows, idle_rss, peak_rss, options.peak_streams);
    if options
        .only
        .as_deref()
        .is_none_or(|only| "replicas over Redis".contains(only))
    {
        cluster::cluster(&binary, &emulator_url, &rig.http, &rig.organization_id).await?;
    }
    if options
        .only
        .as_deref()
        .is_none_or(|only| "setup watch fan-out".contains(only))
    {
        watch::fanout(
            watch::Target {
                address: &address,
                emulator_url: &rig.emulator_url,
                http: &rig.http,
                gateway_pid: pid(&rig.gateway)?,
            },
            options.watchers,
            options.watch_seconds,
        )
        .await?;
    }
    let wanted = |scenario: &str| {
        options
            .only
            .as_deref()
            .is_none_or(|only| scenario.contains(only))
    };
    if wanted("flood of half-sent streams") {
        flood::flood(
            &binary,
            &emulator_url,
            options.flood_connections,
            options.flood_seconds,
        )
        .await?;
    }
    if wanted("soak") && options.soak_seconds > 0 {
        soak::soak(
            &binary,
            options.soak_seconds,
            options.soak_rate,
            options.flood_connections,
        )
        .await?;
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn print_table(rows: &[Row], idle_rss: u64, peak_rss: u64, peak_streams: usize) {
    say("");
    say(
        "| scenario | streams | requests | req/s | p50 ms | p99 ms | p99.9 ms | errors | gateway CPU µs/req | × health CPU | WorkOS calls/req | p50 − direct p50 |",
    );
    say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows.iter().filter(|r| r.requests > 0) {
        let health = rows
            .iter()
            .find(|r| r.streams == row.streams && r.name.starts_with("health"));
        let direct = rows
            .iter()
            .find(|r| r.streams == row.streams && r.name.starts_with("direct"));
        let cpu = row.cpu_per_request.map_or("n/a".to_owned(), |c| {
            format!("{:.1}", c.as_secs_f64() * 1e6)
        });
        let cpu_ratio = match (row.cpu_per_request, health.and_then(|h| h.cpu_per_request)) {
            (Some(c), Some(h)) if h > Duration::ZERO => {
                format!("{:.2}", c.as_secs_f64() / h.as_secs_f64())
            }
            _ => "n/a".to_owned(),
        };
        let added = match direct {
            Some(d) if !row.name.starts_with("direct") && !row.name.starts_with("health") => {
                format!(
                    "{:+.3} ms",
                    (row.p50.as_secs_f64() - d.p50.as_secs_f64()) * 1000.0
                )
            }
            _ => "".to_owned(),
        };
        say(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.streams,
            row.requests,
            row.rps,
            ms(row.p50),
            ms(row.p99),
            ms(row.p999),
            row.errors,
            cpu,
            cpu_ratio,
            row.upstream_per_request
                .map_or("n/a".to_owned(), |u| format!("{u:.2}")),
            added
        ));
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    say("");
    say(&format!(
        "gateway RSS idle: {:.1} MiB (target under 30 MB)",
        mib(idle_rss)
    ));
    say(&format!(
        "gateway peak RSS through {peak_streams} streams: {:.1} MiB (target under 100 MB)",
        mib(peak_rss)
    ));
    let find =
        |name: &str, streams: usize| rows.iter().find(|r| r.name == name && r.streams == streams);
    let streams = rows
        .iter()
        .map(|r| r.streams)
        .filter(|s| *s > 1)
        .min()
        .unwrap_or(1);
    if let (Some(link), Some(health)) = (
        find("GenerateLink by id", streams),
        find("health check (floor)", streams),
    ) && let (Some(l), Some(h)) = (link.cpu_per_request, health.cpu_per_request)
    {
        say(&format!(
            "GenerateLink CPU vs health check at {streams} streams: {:.2}× (target at most 3×)",
            l.as_secs_f64() / h.as_secs_f64().max(f64::EPSILON)
        ));
    }
    if let (Some(link), Some(direct)) = (
        find("GenerateLink by id", 1),
        find("direct HTTP generate_link (no gateway)", 1),
    ) {
        say(&format!(
            "added p50 latency at one stream: {:.3} ms over the direct call (target under 0.2 ms)",
            (link.p50.as_secs_f64() - direct.p50.as_secs_f64()) * 1000.0
        ));
    }
}
