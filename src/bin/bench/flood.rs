//! A flood of half-sent requests: connections that each open as many GenerateLink streams as the
//! gateway allows on one connection, send the headers and three of the five bytes of the gRPC
//! message prefix, then hold. While it holds, the gateway's resident memory (`VmRSS`) is sampled
//! and a health check is made on a fresh connection again and again. Run once with the default
//! `server.max_unfinished_requests` and once with the bound set out of reach, each against a
//! gateway process of its own, so the two are compared in one run.
//!
//! The hostile client ([`Flood`]) is shared with the soak.

use std::{
    future::Future,
    path::Path,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use portal_gateway::server::MAX_STREAMS_PER_CONNECTION;
use tokio::{process::Child, sync::watch};
use tonic::{
    body::Body,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::{Service as _, ServiceExt as _};

use super::{KEY, TOKEN, percentile, processes, say};

/// How long a stream the gateway refused waits before the flood opens another in its place:
/// the flood keeps every free place taken without turning into a flood of requests per second.
const REFUSED_PAUSE: Duration = Duration::from_secs(1);
/// How often the gateway's memory is sampled and a health check made during the hold.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The bound when it is meant to be out of reach (the largest the configuration takes).
pub(crate) const NO_BOUND: usize = 1_000_000;

/// A gateway process of the scenario's own.
pub(crate) struct Gateway {
    _child: Child,
    pub(crate) address: String,
    pub(crate) pid: u32,
}

/// Starts `portal-gateway serve` against `emulator_url`, pinned to the gateway's core, with
/// `server.max_unfinished_requests` when given (else the default).
pub(crate) async fn gateway(
    binary: &Path,
    emulator_url: &str,
    max_unfinished_requests: Option<usize>,
) -> anyhow::Result<Gateway> {
    let digest = portal_gateway::domain::hex(&portal_gateway::config::sha256(TOKEN));
    let bound = max_unfinished_requests
        .map_or_else(String::new, |n| format!("max_unfinished_requests = {n}\n"));
    let config = format!(
        "[workos]\nbase_url = {emulator_url:?}\n[workos.quota]\nrequests_per_minute = 100000000\nburst = 1000000\n\
         [server]\ndrain_delay = \"0s\"\n{bound}\
         [auth]\ntokens = [{{ identity = \"bench\", sha256 = \"{digest}\" }}]\n\
         [[policy.callers]]\nname = \"bench\"\nidentities = [\"token:bench\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\n"
    );
    let path = std::env::temp_dir().join(format!(
        "portal-gateway-bench-flood-{}-{}.toml",
        std::process::id(),
        max_unfinished_requests.unwrap_or(0)
    ));
    std::fs::write(&path, config)?;
    let mut command = processes::pinned(0, binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("WORKOS_API_KEY", KEY)
        .env("RUST_LOG", "warn");
    let started = processes::start(command, "portal-gateway listening on ").await;
    let _ = std::fs::remove_file(&path);
    let (child, address) = started?;
    let pid = processes::pid(&child)?;
    Ok(Gateway {
        _child: child,
        address,
        pid,
    })
}

/// What the flood's streams met, counted as they end.
#[derive(Debug, Default)]
pub(crate) struct FloodCounts {
    /// Streams opened.
    pub(crate) sent: AtomicU64,
    /// Answered at once with RESOURCE_EXHAUSTED.
    pub(crate) refused: AtomicU64,
    /// Ended by the gateway otherwise (its timeout for a request that never arrives whole).
    pub(crate) ended: AtomicU64,
    /// Failed in transport.
    pub(crate) failed: AtomicU64,
}

impl FloodCounts {
    /// Streams opened and not yet answered: the ones the gateway holds (or is about to see).
    pub(crate) fn open(&self) -> u64 {
        let answered = self.refused.load(Ordering::Relaxed)
            + self.ended.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed);
        self.sent.load(Ordering::Relaxed).saturating_sub(answered)
    }
}

/// The hostile client: `connections` HTTP/2 connections without credentials, each with as many
/// half-sent GenerateLink streams as the gateway allows on one connection. A stream the gateway
/// refuses or ends is replaced (after [`REFUSED_PAUSE`] for a refusal), so the flood holds
/// whatever the gateway lets it hold until it is stopped.
pub(crate) struct Flood {
    stop: watch::Sender<bool>,
    slots: Vec<tokio::task::JoinHandle<()>>,
    pub(crate) counts: Arc<FloodCounts>,
}

impl Flood {
    pub(crate) async fn start(address: &str, connections: usize) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(FloodCounts::default());
        let uri: http::Uri =
            format!("http://{address}/adminportal.v1.PortalService/GenerateLink").parse()?;
        let streams = MAX_STREAMS_PER_CONNECTION as usize;
        let mut slots = Vec::with_capacity(connections * streams);
        for _ in 0..connections {
            let channel = Endpoint::from_shared(format!("http://{address}"))?
                .buffer_size(streams * 2)
                .connect()
                .await?;
            for _ in 0..streams {
                slots.push(tokio::spawn(hold_one(
                    channel.clone(),
                    uri.clone(),
                    counts.clone(),
                    stopped.clone(),
                )));
            }
        }
        Ok(Self {
            stop,
            slots,
            counts,
        })
    }

    /// Resets every stream and waits for the client's tasks to end.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for slot in self.slots {
            let _ = slot.await;
        }
    }
}

/// One stream slot of the flood: open a half-sent stream, wait for the gateway's answer (if any),
/// open another.
async fn hold_one(
    channel: Channel,
    uri: http::Uri,
    counts: Arc<FloodCounts>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        if *stopped.borrow() {
            return;
        }
        let mut request = http::Request::new(Body::new(HalfSent::new(stopped.clone())));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert("content-type", "application/grpc".parse().expect("header"));
        headers.insert("te", "trailers".parse().expect("header"));
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let mut channel = channel.clone();
        let answer = tokio::select! {
            answer = async {
                channel.ready().await?;
                channel.call(request).await
            } => answer,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let pause = match answer {
            Ok(response)
                if response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|s| s == "8") =>
            {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                REFUSED_PAUSE
            }
            Ok(_) => {
                counts.ended.fetch_add(1, Ordering::Relaxed);
                Duration::ZERO
            }
            Err(_) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                REFUSED_PAUSE
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// A request body that sends three of the five bytes of a gRPC message prefix, then nothing
/// until the flood stops, when it fails (which resets the stream).
struct HalfSent {
    sent: bool,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl HalfSent {
    fn new(mut stopped: watch::Receiver<bool>) -> Self {
        Self {
            sent: false,
            stopped: Box::pin(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }),
        }
    }
}

impl http_body::Body for HalfSent {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(&[
                0, 0, 0,
            ])))));
        }
        std::task::ready!(self.stopped.as_mut().poll(cx));
        Poll::Ready(Some(Err(tonic::Status::cancelled("the flood is over"))))
    }
}

/// A health check on a connection of its own: how long the connection and the check took.
pub(crate) async fn health_on_fresh_connection(address: &str) -> Result<Duration, String> {
    let began = Instant::now();
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|_| "connect failed".to_owned())?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| format!("{:?}", status.code()))?;
    Ok(began.elapsed())
}

/// The gateway's resident memory now.
pub(crate) fn rss(pid: u32) -> u64 {
    processes::process_stats(pid).map_or(0, |(_, rss, _)| rss)
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// What the prober saw during the hold.
struct Probe {
    health: Vec<Duration>,
    /// Checks slower than 100 ms: when (since the probe began) and how long they took.
    slow: Vec<(Duration, Duration)>,
    failures: Vec<String>,
    rss_peak: u64,
}

impl Probe {
    /// Samples the gateway's memory and makes a health check on a fresh connection every
    /// [`SAMPLE_EVERY`] until `until`, on a thread and runtime of its own: the flood's client
    /// keeps the bench's runtime busy, and a check queued behind its tasks would measure the
    /// client, not the gateway.
    fn start(gateway: &Gateway, until: Instant) -> std::thread::JoinHandle<Probe> {
        let (address, pid) = (gateway.address.clone(), gateway.pid);
        std::thread::spawn(move || {
            let mut probe = Probe {
                health: Vec::new(),
                slow: Vec::new(),
                failures: Vec::new(),
                rss_peak: 0,
            };
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                probe.failures.push("no runtime for the probe".into());
                return probe;
            };
            let began = Instant::now();
            runtime.block_on(async {
                while Instant::now() < until {
                    let tick = tokio::time::sleep(SAMPLE_EVERY);
                    probe.rss_peak = probe.rss_peak.max(rss(pid));
                    let at = began.elapsed();
                    match health_on_fresh_connection(&address).await {
                        Ok(latency) => {
                            if latency > Duration::from_millis(100) {
                                probe.slow.push((at, latency));
                            }
                            probe.health.push(latency);
                        }
                        Err(error) => probe.failures.push(error),
                    }
                    tick.await;
                }
            });
            probe
        })
    }
}

/// One run's figures.
struct Run {
    bound: Option<usize>,
    sent: u64,
    refused: u64,
    open: u64,
    rss_before: u64,
    rss_peak: u64,
    rss_end: u64,
    health_before: Duration,
    health: Vec<Duration>,
    /// Checks slower than 100 ms: when (since the flood began) and how long they took.
    slow: Vec<(Duration, Duration)>,
    health_failures: Vec<String>,
}

/// The flood scenario: `connections` connections held for `seconds`, with the default bound and
/// with none in reach.
pub(crate) async fn flood(
    binary: &Path,
    emulator_url: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    say("");
    say(&format!(
        "flood: {connections} connections × {MAX_STREAMS_PER_CONNECTION} GenerateLink streams, each sending the headers and 3 of the 5 gRPC prefix bytes, held {seconds} s; a health check on a fresh connection every {} ms",
        SAMPLE_EVERY.as_millis()
    ));
    let mut runs = Vec::new();
    for bound in [None, Some(NO_BOUND)] {
        runs.push(run(binary, emulator_url, bound, connections, seconds).await?);
    }
    say("");
    say(
        "| server.max_unfinished_requests | streams opened | refused | held at the end | RSS before MiB | RSS peak MiB | RSS at the end MiB | health before ms | health p50 ms | health p99 ms | health max ms | health checks failed |",
    );
    say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        let bound = match run.bound {
            None => "1,024 (default)".to_owned(),
            Some(n) => format!("{n} (out of reach)"),
        };
        say(&format!(
            "| {bound} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} of {} |",
            run.sent,
            run.refused,
            run.open,
            mib(run.rss_before),
            mib(run.rss_peak),
            mib(run.rss_end),
            ms(run.health_before),
            ms(percentile(&run.health, 0.5)),
            ms(percentile(&run.health, 0.99)),
            ms(run.health.last().copied().unwrap_or_default()),
            run.health_failures.len(),
            run.health.len() + run.health_failures.len(),
        ));
    }
    for run in &runs {
        if !run.slow.is_empty() {
            let slow: Vec<String> = run
                .slow
                .iter()
                .map(|(at, took)| format!("{} ms at {:.2} s", ms(*took), at.as_secs_f64()))
                .collect();
            say(&format!(
                "bound {}: health checks over 100 ms: {}",
                run.bound.map_or("default".to_owned(), |n| n.to_string()),
                slow.join(", ")
            ));
        }
    }
    if let Some(bounded) = runs.first() {
        let within = bounded
            .health
            .iter()
            .filter(|d| **d <= Duration::from_millis(100))
            .count();
        say(&format!(
            "with the default bound: peak RSS {:.1} MiB during the flood (target under 200 MB); {within} of {} health checks on a fresh connection answered within 100 ms (slowest {} ms){}",
            mib(bounded.rss_peak),
            bounded.health.len() + bounded.health_failures.len(),
            ms(bounded.health.last().copied().unwrap_or_default()),
            if bounded.health_failures.is_empty() {
                String::new()
            } else {
                format!("; failed: {:?}", bounded.health_failures)
            }
        ));
    }
    Ok(())
}

async fn run(
    binary: &Path,
    emulator_url: &str,
    bound: Option<usize>,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Run> {
    let gateway = gateway(binary, emulator_url, bound).await?;
    // Warm the gateway up with a few checks, then take the figures before the flood.
    let mut before = Vec::new();
    for _ in 0..10 {
        before.push(
            health_on_fresh_connection(&gateway.address)
                .await
                .map_err(anyhow::Error::msg)?,
        );
    }
    before.sort_unstable();
    let rss_before = rss(gateway.pid);

    let began = Instant::now();
    let probe = Probe::start(&gateway, began + Duration::from_secs(seconds));
    let flood = Flood::start(&gateway.address, connections).await?;
    let Probe {
        mut health,
        slow,
        failures: health_failures,
        rss_peak,
    } = tokio::task::spawn_blocking(move || probe.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the health probe panicked"))?;
    let rss_end = rss(gateway.pid);
    let counts = &flood.counts;
    let (sent, refused, open) = (
        counts.sent.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.open(),
    );
    flood.stop().await;
    health.sort_unstable();
    Ok(Run {
        bound,
        sent,
        refused,
        open,
        rss_before,
        rss_peak: rss_peak.max(rss_before).max(rss_end),
        rss_end,
        health_before: percentile(&before, 0.5),
        health,
        slow,
        health_failures,
    })
}
