//! The setup watch's fan-out: WorkOS calls per minute with one watcher and with many, event
//! delivery latency after the emulator records each event, and the gateway's memory.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use portal_gateway::proto::{self, Intent, setup_service_client::SetupServiceClient};
use tonic::{metadata::MetadataValue, transport::Channel};

use super::{TOKEN, processes::process_stats, say};

/// What the fan-out scenario needs from the rig.
pub(crate) struct Target<'a> {
    pub(crate) address: &'a str,
    pub(crate) emulator_url: &'a str,
    pub(crate) http: &'a reqwest::Client,
    pub(crate) gateway_pid: u32,
}

/// One phase's figures.
struct Phase {
    watchers: usize,
    events: usize,
    deliveries: usize,
    event_polls_per_minute: f64,
    workos_per_minute: f64,
    p50: Duration,
    p99: Duration,
    /// How long after an event's first delivery its last one went out: the fan-out's own cost.
    spread_p99: Duration,
    rss: u64,
}

/// Arrival times of events (by WorkOS event id) at watchers.
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

async fn control(
    target: &Target<'_>,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let response = target
        .http
        .post(format!("{}/_emulator{path}", target.emulator_url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?;
    Ok(serde_json::from_slice(&response.bytes().await?)?)
}

async fn counts(target: &Target<'_>) -> anyhow::Result<(u64, u64)> {
    let bytes = target
        .http
        .get(format!("{}/_emulator/requests", target.emulator_url))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok((
        body["counts"]["GET /events"].as_u64().unwrap_or(0),
        body["total"].as_u64().unwrap_or(0),
    ))
}

async fn organization(target: &Target<'_>, name: &str) -> anyhow::Result<String> {
    let bytes = target
        .http
        .post(format!("{}/organizations", target.emulator_url))
        .bearer_auth(super::KEY)
        .header("content-type", "application/json")
        .body(serde_json::json!({"name": name}).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)?;
    body["id"]
        .as_str()
        .map(str::to_owned)
        .context("organization id")
}

/// Opens a watch and records every event it receives until the task is aborted.
async fn watcher(
    channel: Channel,
    organization_id: String,
    arrivals: Option<Arrivals>,
    opened: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let mut client = SetupServiceClient::new(channel);
    let mut request = tonic::Request::new(proto::WatchSetupRequest {
        organization: Some(proto::watch_setup_request::Organization::OrganizationId(
            organization_id,
        )),
        intents: vec![Intent::Sso as i32],
        resume_cursor: String::new(),
    });
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {TOKEN}"))?,
    );
    let mut stream = client.watch_setup(request).await?.into_inner();
    // The snapshot.
    stream.message().await?;
    let _ = opened.send(()).await;
    while let Some(message) = stream.message().await? {
        if let (Some(arrivals), Some(event)) = (&arrivals, message.event) {
            let now = Instant::now();
            arrivals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((event.id, now));
        }
    }
    Ok(())
}

async fn phase(
    target: &Target<'_>,
    channels: &[Channel],
    hot: &str,
    others: &[String],
    hot_watchers: usize,
    seconds: u64,
) -> anyhow::Result<Phase> {
    let arrivals: Arrivals = Arc::default();
    let total = hot_watchers
        + if hot_watchers > 1 {
            others.len() * 10
        } else {
            0
        };
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel(total.max(1));
    let mut tasks = Vec::new();
    for i in 0..total {
        let (organization, record) = if i < hot_watchers {
            (hot.to_owned(), Some(arrivals.clone()))
        } else {
            (others[(i - hot_watchers) % others.len()].clone(), None)
        };
        tasks.push(tokio::spawn(watcher(
            channels[i % channels.len()].clone(),
            organization,
            record,
            opened_tx.clone(),
        )));
    }
    for _ in 0..total {
        opened_rx.recv().await.context("a watcher failed to open")?;
    }
    let (events_before, total_before) = counts(target).await?;
    let started = Instant::now();
    let mut sent = Vec::new();
    let mut active = false;
    while started.elapsed() < Duration::from_secs(seconds) {
        // Two events a second on the hot organization, one on another organization.
        active = !active;
        let action = if active { "activate" } else { "deactivate" };
        let at = Instant::now();
        let answer = control(
            target,
            &format!("/organizations/{hot}/setup"),
            serde_json::json!({"intent": "sso", "action": action}),
        )
        .await?;
        for id in answer["events"].as_array().into_iter().flatten() {
            if let Some(id) = id.as_str() {
                sent.push((id.to_owned(), at));
            }
        }
        if active && !others.is_empty() {
            let other = &others[sent.len() % others.len()];
            control(
                target,
                &format!("/organizations/{other}/setup"),
                serde_json::json!({"intent": "bring_your_own_key", "action": "verify"}),
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    let (events_after, total_after) = counts(target).await?;
    let (_, rss, _) = process_stats(target.gateway_pid)?;
    for task in &tasks {
        task.abort();
    }
    let arrivals = arrivals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut latencies: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(id, at)| {
            sent.iter()
                .find(|(sent_id, _)| sent_id == id)
                .map(|(_, sent_at)| at.saturating_duration_since(*sent_at))
        })
        .collect();
    latencies.sort();
    let mut spreads: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, _)| {
            let times = arrivals
                .iter()
                .filter(|(seen, _)| seen == id)
                .map(|(_, at)| *at);
            let (first, last) = times.fold(
                (None, None),
                |(lo, hi): (Option<Instant>, Option<Instant>), t| {
                    (
                        Some(lo.map_or(t, |l| l.min(t))),
                        Some(hi.map_or(t, |h| h.max(t))),
                    )
                },
            );
            Some(last?.saturating_duration_since(first?))
        })
        .collect();
    spreads.sort();
    let per_minute = |n: u64| n as f64 * 60.0 / elapsed.as_secs_f64();
    Ok(Phase {
        watchers: total,
        events: sent.len(),
        deliveries: latencies.len(),
        event_polls_per_minute: per_minute(events_after - events_before),
        workos_per_minute: per_minute(total_after - total_before),
        p50: super::percentile(&latencies, 0.50),
        p99: super::percentile(&latencies, 0.99),
        spread_p99: super::percentile(&spreads, 0.99),
        rss,
    })
}

/// Runs one watcher, then `hot` watchers on one organization and ten on each of ten others,
/// with the same events flowing, and prints both.
pub(crate) async fn fanout(target: Target<'_>, hot: usize, seconds: u64) -> anyhow::Result<()> {
    // 256 streams per HTTP/2 connection at most: enough connections for every watcher.
    let mut channels = Vec::new();
    for _ in 0..hot.div_ceil(200) + 1 {
        channels.push(
            Channel::from_shared(format!("http://{}", target.address))?
                .connect()
                .await?,
        );
    }
    let hot_org = organization(&target, "Fan-out Inc").await?;
    let mut others = Vec::new();
    for i in 0..10 {
        others.push(organization(&target, &format!("Other {i}")).await?);
    }
    let one = phase(&target, &channels, &hot_org, &others, 1, seconds).await?;
    let many = phase(&target, &channels, &hot_org, &others, hot, seconds).await?;
    say("");
    say(&format!(
        "setup watch fan-out ({seconds} s per phase, 2 events/s on the watched organization, 1/s elsewhere)"
    ));
    say(&format!(
        "{:>9} | {:>7} | {:>10} | {:>18} | {:>18} | {:>9} | {:>9} | {:>12} | {:>9}",
        "watchers",
        "events",
        "deliveries",
        "GET /events /min",
        "WorkOS calls /min",
        "p50 ms",
        "p99 ms",
        "spread p99 ms",
        "RSS MiB"
    ));
    for p in [&one, &many] {
        say(&format!(
            "{:>9} | {:>7} | {:>10} | {:>18.1} | {:>18.1} | {:>9} | {:>9} | {:>12} | {:>9.1}",
            p.watchers,
            p.events,
            p.deliveries,
            p.event_polls_per_minute,
            p.workos_per_minute,
            super::ms(p.p50),
            super::ms(p.p99),
            super::ms(p.spread_p99),
            p.rss as f64 / (1024.0 * 1024.0)
        ));
    }
    say(&format!(
        "WorkOS calls per minute, {} watchers / 1 watcher: {:.2}x",
        many.watchers,
        many.workos_per_minute / one.workos_per_minute.max(f64::MIN_POSITIVE)
    ));
    Ok(())
}
