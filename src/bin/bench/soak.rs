//! The soak: for a bounded time, legitimate callers at a steady rate (GenerateLink,
//! GetOrganization and ListOrganizations in turn, each with a 2 s deadline) while the flood of
//! half-sent streams holds every place it can and WorkOS misbehaves (a share of its answers are
//! 503s, another share come late). Against an emulator and a gateway of its own, so the faults
//! touch nothing else. Reports the gateway's memory every few seconds, and the callers' success
//! rate and latency.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use portal_gateway::proto::{
    self, Intent, organization_service_client::OrganizationServiceClient,
    portal_service_client::PortalServiceClient,
};
use tonic::{metadata::MetadataValue, transport::Channel};

use super::{
    KEY, TOKEN,
    flood::{self, Flood, mib},
    percentile, processes, say,
};

/// How often the gateway's memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Each legitimate call's deadline.
const DEADLINE: Duration = Duration::from_secs(2);
/// Share of WorkOS answers that are 503s.
const UNAVAILABLE_SHARE: f64 = 0.10;
/// Share of the other WorkOS answers delayed, and by how much.
const SLOW_SHARE: f64 = 0.05;
const SLOW_BY_MS: u64 = 200;

/// The legitimate calls, in the order callers make them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rpc {
    GenerateLink,
    GetOrganization,
    ListOrganizations,
}

impl Rpc {
    const ALL: [Rpc; 3] = [
        Rpc::GenerateLink,
        Rpc::GetOrganization,
        Rpc::ListOrganizations,
    ];
}

/// One call's outcome: its latency, or its code.
type Outcome = (Rpc, Result<Duration, tonic::Code>);

fn authed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(DEADLINE);
    if let Ok(value) = MetadataValue::try_from(format!("Bearer {TOKEN}")) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

async fn call(channel: Channel, rpc: Rpc, organization_id: String) -> Outcome {
    let began = Instant::now();
    let result = match rpc {
        Rpc::GenerateLink => PortalServiceClient::new(channel)
            .generate_link(authed(proto::GenerateLinkRequest {
                organization: Some(proto::generate_link_request::Organization::OrganizationId(
                    organization_id,
                )),
                intent: Intent::Sso as i32,
                ..Default::default()
            }))
            .await
            .map(drop),
        Rpc::GetOrganization => OrganizationServiceClient::new(channel)
            .get_organization(authed(proto::GetOrganizationRequest {
                organization: Some(proto::get_organization_request::Organization::Id(
                    organization_id,
                )),
            }))
            .await
            .map(drop),
        Rpc::ListOrganizations => OrganizationServiceClient::new(channel)
            .list_organizations(authed(proto::ListOrganizationsRequest {
                page_size: 10,
                ..Default::default()
            }))
            .await
            .map(drop),
    };
    (rpc, result.map(|()| began.elapsed()).map_err(|s| s.code()))
}

async fn emulator_control(
    http: &reqwest::Client,
    emulator_url: &str,
    method: reqwest::Method,
    body: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let mut request = http
        .request(method, format!("{emulator_url}/_emulator/faults"))
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    request.send().await?.error_for_status()?;
    Ok(())
}

/// One memory sample.
struct Sample {
    at: Duration,
    rss: u64,
    flood_open: u64,
    flood_refused: u64,
}

pub(crate) async fn soak(
    binary: &Path,
    seconds: u64,
    rate: u64,
    flood_connections: usize,
) -> anyhow::Result<()> {
    let mut emulator_command = processes::pinned(1, binary);
    emulator_command.args([
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        KEY,
        "--seed",
        "2",
    ]);
    let (_emulator, emulator_url) =
        processes::start(emulator_command, "WorkOS emulator listening on ").await?;
    let gateway = flood::gateway(binary, &emulator_url, None).await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()?;

    // Callers share a few connections, as pooled clients would.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{}", gateway.address))?
                .connect()
                .await?,
        );
    }
    let organization_id = OrganizationServiceClient::new(channels[0].clone())
        .ensure_organization(authed(proto::EnsureOrganizationRequest {
            external_id: "soak".into(),
            name: "Soak Inc".into(),
            ..Default::default()
        }))
        .await?
        .into_inner()
        .organization
        .context("organization")?
        .id;
    let rss_start = flood::rss(gateway.pid);

    say("");
    say(&format!(
        "soak: {seconds} s; legitimate callers at {rate} calls/s (GenerateLink, GetOrganization, ListOrganizations in turn, {} s deadline) over 4 connections; the flood on {flood_connections} connections; WorkOS answers 503 to {:.0}% of requests and {SLOW_BY_MS} ms late to {:.0}% of the rest",
        DEADLINE.as_secs(),
        UNAVAILABLE_SHARE * 100.0,
        SLOW_SHARE * 100.0,
    ));
    emulator_control(
        &http,
        &emulator_url,
        reqwest::Method::POST,
        Some(serde_json::json!({"route": "*", "status": 503, "probability": UNAVAILABLE_SHARE})),
    )
    .await?;
    emulator_control(
        &http,
        &emulator_url,
        reqwest::Method::POST,
        Some(serde_json::json!({"route": "*", "delay_ms": SLOW_BY_MS, "probability": SLOW_SHARE})),
    )
    .await?;
    let upstream_before = processes::emulator_requests(&http, &emulator_url).await?;
    let flood = Flood::start(&gateway.address, flood_connections).await?;

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::new()));
    let mut calls = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let mut samples = vec![Sample {
        at: Duration::ZERO,
        rss: rss_start,
        flood_open: 0,
        flood_refused: 0,
    }];
    let mut next_sample = started + SAMPLE_EVERY;
    let mut issued = 0_usize;
    while Instant::now() < until {
        ticker.tick().await;
        let rpc = Rpc::ALL[issued % Rpc::ALL.len()];
        let channel = channels[issued % channels.len()].clone();
        issued += 1;
        let outcomes = outcomes.clone();
        let organization_id = organization_id.clone();
        calls.spawn(async move {
            let outcome = call(channel, rpc, organization_id).await;
            if let Ok(mut outcomes) = outcomes.lock() {
                outcomes.push(outcome);
            }
        });
        // Reap finished calls as we go, so the set does not grow with the run.
        while calls.try_join_next().is_some() {}
        if Instant::now() >= next_sample {
            samples.push(Sample {
                at: started.elapsed(),
                rss: flood::rss(gateway.pid),
                flood_open: flood.counts.open(),
                flood_refused: flood.counts.refused.load(Ordering::Relaxed),
            });
            next_sample += SAMPLE_EVERY;
        }
    }
    while calls.join_next().await.is_some() {}
    if samples
        .last()
        .is_none_or(|last| started.elapsed() - last.at >= Duration::from_secs(1))
    {
        samples.push(Sample {
            at: started.elapsed(),
            rss: flood::rss(gateway.pid),
            flood_open: flood.counts.open(),
            flood_refused: flood.counts.refused.load(Ordering::Relaxed),
        });
    }
    let flood_counts = (
        flood.counts.sent.load(Ordering::Relaxed),
        flood.counts.refused.load(Ordering::Relaxed),
        flood.counts.ended.load(Ordering::Relaxed),
    );
    flood.stop().await;
    let upstream_after = processes::emulator_requests(&http, &emulator_url).await?;
    emulator_control(&http, &emulator_url, reqwest::Method::DELETE, None).await?;

    let outcomes = std::mem::take(&mut *outcomes.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    report(&samples, &outcomes, flood_counts);
    say(&format!(
        "WorkOS requests per legitimate call: {:.2} (retries of the 503s included; GetOrganization is mostly served from the cache)",
        upstream_after.saturating_sub(upstream_before) as f64 / outcomes.len().max(1) as f64
    ));
    Ok(())
}

fn report(samples: &[Sample], outcomes: &[Outcome], (sent, refused, ended): (u64, u64, u64)) {
    say("");
    say("| t s | gateway RSS MiB | flood streams open | flood streams refused so far |");
    say("|---:|---:|---:|---:|");
    for sample in samples {
        say(&format!(
            "| {:.0} | {:.1} | {} | {} |",
            sample.at.as_secs_f64(),
            mib(sample.rss),
            sample.flood_open,
            sample.flood_refused
        ));
    }
    let peak = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    say(&format!(
        "flood: {sent} streams opened, {refused} refused, {ended} ended by the gateway's request timeout; gateway RSS peak {:.1} MiB",
        mib(peak)
    ));
    say("");
    say("| RPC | calls | OK | success % | p50 ms | p99 ms | max ms | failures by code |");
    say("|---|---:|---:|---:|---:|---:|---:|---|");
    let line = |name: &str, of: &dyn Fn(&Rpc) -> bool| {
        let mut latencies = Vec::new();
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        for (_, result) in outcomes.iter().filter(|(rpc, _)| of(rpc)) {
            match result {
                Ok(latency) => latencies.push(*latency),
                Err(code) => *failures.entry(format!("{code:?}")).or_default() += 1,
            }
        }
        latencies.sort_unstable();
        let calls = latencies.len() + failures.values().sum::<usize>();
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        say(&format!(
            "| {name} | {calls} | {} | {:.2} | {} | {} | {} | {} |",
            latencies.len(),
            100.0 * latencies.len() as f64 / calls.max(1) as f64,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
            failures
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    for rpc in Rpc::ALL {
        line(&format!("{rpc:?}"), &|r| *r == rpc);
    }
    line("all", &|_| true);
}
