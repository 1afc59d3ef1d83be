//! Replicas over Redis: what the shared quota adds to a call (the same GenerateLink through a
//! gateway with and without `[cluster]`, alternating, in one run), how long a new setup poller
//! takes to lead after the leader is killed, and how long a replica takes to notice Redis gone
//! and back.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use portal_gateway::proto::{self, Intent};
use tokio::process::{Child, Command};
use tonic::{metadata::MetadataValue, transport::Channel};

use super::{KEY, TOKEN, processes::start, say};

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn redis(port: u16) -> anyhow::Result<Child> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start redis-server")?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    for _ in 0..500 {
        if let Ok(mut connection) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok()
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("redis-server did not answer")
}

/// A gateway process; `redis` makes it a cluster member. Returns it, its address and its admin
/// address.
async fn gateway(
    binary: &Path,
    emulator_url: &str,
    redis: Option<u16>,
) -> anyhow::Result<(Child, String, String)> {
    let admin = format!("127.0.0.1:{}", free_port()?);
    let digest = portal_gateway::domain::hex(&portal_gateway::config::sha256(TOKEN));
    let cluster = redis.map_or_else(String::new, |port| {
        format!(
            "[cluster]\nredis_url = \"redis://127.0.0.1:{port}/\"\nheartbeat_every = \"200ms\"\nmember_ttl = \"1s\"\nlease_ttl = \"1s\"\n"
        )
    });
    let config = format!(
        "[workos]\nbase_url = {emulator_url:?}\n[workos.quota]\nrequests_per_minute = 100000000\nburst = 1000000\n\
         [server]\ndrain_delay = \"0s\"\n[admin]\nlisten = \"{admin}\"\n{cluster}\
         [auth]\ntokens = [{{ identity = \"bench\", sha256 = \"{digest}\" }}]\n\
         [[policy.callers]]\nname = \"bench\"\nidentities = [\"token:bench\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\n"
    );
    let path = std::env::temp_dir().join(format!(
        "portal-gateway-bench-cluster-{}-{}.toml",
        std::process::id(),
        free_port()?
    ));
    std::fs::write(&path, config)?;
    let mut command = Command::new(binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("WORKOS_API_KEY", KEY)
        .env("RUST_LOG", "warn");
    let (child, address) = start(command, "portal-gateway listening on ").await?;
    let _ = std::fs::remove_file(&path);
    Ok((child, address, admin))
}

async fn metric(http: &reqwest::Client, admin: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `condition` every 5 ms for at most `limit`; how long it took.
async fn time_until<F, Fut>(limit: Duration, condition: F) -> Option<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Sequential GenerateLink latencies on one connection.
async fn latencies(
    address: &str,
    organization_id: &str,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut client = proto::portal_service_client::PortalServiceClient::new(channel);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut request = tonic::Request::new(proto::GenerateLinkRequest {
            organization: Some(proto::generate_link_request::Organization::OrganizationId(
                organization_id.to_owned(),
            )),
            intent: Intent::Sso as i32,
            ..Default::default()
        });
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {TOKEN}"))?,
        );
        let started = Instant::now();
        client.generate_link(request).await?;
        out.push(started.elapsed());
    }
    Ok(out)
}

/// Runs the replica scenarios and prints their figures; skipped without redis-server.
pub(crate) async fn cluster(
    binary: &Path,
    emulator_url: &str,
    http: &reqwest::Client,
    organization_id: &str,
) -> anyhow::Result<()> {
    say("");
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        say("replicas over Redis: skipped (redis-server is not installed)");
        return Ok(());
    }
    let port = free_port()?;
    let mut redis_process = redis(port).await?;
    let (_local, local_address, _) = gateway(binary, emulator_url, None).await?;
    let (first, first_address, first_admin) = gateway(binary, emulator_url, Some(port)).await?;
    let (second, _, second_admin) = gateway(binary, emulator_url, Some(port)).await?;

    // Alternating batches, so both see the same machine.
    let (mut local, mut shared) = (Vec::new(), Vec::new());
    latencies(&local_address, organization_id, 200).await?;
    latencies(&first_address, organization_id, 200).await?;
    for _ in 0..10 {
        local.extend(latencies(&local_address, organization_id, 300).await?);
        shared.extend(latencies(&first_address, organization_id, 300).await?);
    }
    local.sort();
    shared.sort();
    let p = |v: &[Duration], q| super::percentile(v, q);
    say("replicas over Redis (GenerateLink, one stream, 3,000 calls each, alternating batches)");
    say(&format!(
        "  local quota:  p50 {} ms, p99 {} ms",
        super::ms(p(&local, 0.5)),
        super::ms(p(&local, 0.99))
    ));
    say(&format!(
        "  shared quota: p50 {} ms, p99 {} ms (added p50: {} ms)",
        super::ms(p(&shared, 0.5)),
        super::ms(p(&shared, 0.99)),
        super::ms(p(&shared, 0.5).saturating_sub(p(&local, 0.5)))
    ));

    // The setup poller's lease (1 s): kill its holder, time until the other leads.
    let leader = |admin: String| {
        let http = http.clone();
        async move { metric(&http, &admin, "portal_gateway_setup_poller_leader").await == Some(1.0) }
    };
    time_until(Duration::from_secs(5), || {
        let (a, b) = (leader(first_admin.clone()), leader(second_admin.clone()));
        async move { a.await || b.await }
    })
    .await
    .context("no replica took the poller lease")?;
    let mut members = vec![(first, first_admin.clone()), (second, second_admin.clone())];
    let led_by_first = leader(first_admin.clone()).await;
    let (mut victim, _) = members.remove(if led_by_first { 0 } else { 1 });
    let survivor = members[0].1.clone();
    let _ = victim.start_kill();
    let takeover = time_until(Duration::from_secs(10), || leader(survivor.clone())).await;
    say(&format!(
        "  poller failover after SIGKILL (lease 1 s): {}",
        takeover.map_or("none within 10 s".to_owned(), |d| format!(
            "{} ms",
            d.as_millis()
        ))
    ));

    // Redis gone and back, as the survivor's /healthz and metrics see it.
    let shared_gauge = |admin: String| {
        let http = http.clone();
        async move { metric(&http, &admin, "portal_gateway_cluster_shared_quota").await }
    };
    let _ = redis_process.start_kill();
    let _ = redis_process.wait().await;
    let noticed = time_until(Duration::from_secs(10), || {
        let gauge = shared_gauge(survivor.clone());
        async move { gauge.await == Some(0.0) }
    })
    .await;
    redis_process = redis(port).await?;
    let back = time_until(Duration::from_secs(10), || {
        let gauge = shared_gauge(survivor.clone());
        async move { gauge.await == Some(1.0) }
    })
    .await;
    let show = |d: Option<Duration>| {
        d.map_or("not within 10 s".to_owned(), |d| {
            format!("{} ms", d.as_millis())
        })
    };
    say(&format!(
        "  Redis killed: local share after {}; Redis back: shared again after {} (heartbeat 200 ms)",
        show(noticed),
        show(back)
    ));
    let _ = redis_process.start_kill();
    drop(members);
    Ok(())
}
