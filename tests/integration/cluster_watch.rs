//! One setup events poller for a cluster: three real gateway processes over a real Redis. One
//! replica polls, the watchers on every replica see every event once, in order, and when the
//! poller's process is killed with SIGKILL another takes over within the lease without losing or
//! repeating an event.

use std::time::{Duration, Instant};

use portal_gateway::proto::{
    Intent, WatchSetupRequest, WatchSetupResponse, setup_service_client::SetupServiceClient,
    watch_setup_request,
};
use serde_json::json;
use tonic::{Streaming, metadata::MetadataValue, transport::Channel};

use crate::{
    cluster::{Redis, metric},
    helpers::{ADMIN_TOKEN, TestEmulator, digest, temp_path, wait_until},
    tools::{Stdout, start_process, wait_for_line},
};

const BINARY: &str = env!("CARGO_BIN_EXE_portal-gateway");

/// A gateway process in the cluster: the process, its gRPC address and its admin address.
struct Replica {
    process: Option<tokio::process::Child>,
    address: String,
    admin: String,
    _stdout: Stdout,
}

async fn replica(workos: &TestEmulator, redis: &Redis) -> Replica {
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let audit = temp_path("cluster-audit.log");
    let config = format!(
        r#"
listen = "127.0.0.1:0"
[workos]
base_url = "{url}"
[server]
drain_delay = "0s"
[setup]
poll_interval = "20ms"
poll_max_interval = "100ms"
[cluster]
redis_url = "{redis}"
heartbeat_every = "100ms"
member_ttl = "500ms"
lease_ttl = "1s"
[admin]
listen = "127.0.0.1:{admin_port}"
[audit]
file = {audit:?}
[auth]
tokens = [{{ identity = "admin", sha256 = "{digest}" }}]
[[policy.callers]]
name = "admin"
identities = ["token:admin"]
rpcs = ["*"]
intents = ["*"]
organizations = ["*"]
"#,
        url = workos.url,
        redis = redis.url(),
        audit = audit.display().to_string(),
        digest = digest(ADMIN_TOKEN),
    );
    let path = temp_path("cluster.toml");
    std::fs::write(&path, config).expect("write config");
    let (process, mut stdout) = start_process_with_key(&path);
    let line = wait_for_line(&mut stdout, "portal-gateway listening on ").await;
    let address = line.split_whitespace().next().expect("address").to_owned();
    Replica {
        process: Some(process),
        address,
        admin: format!("127.0.0.1:{admin_port}"),
        _stdout: stdout,
    }
}

/// `serve --config path` with the emulator's key in its environment.
fn start_process_with_key(path: &std::path::Path) -> (tokio::process::Child, Stdout) {
    // start_process takes no environment: set the key through `env`.
    let path = path.display().to_string();
    start_process(
        "env",
        &[
            "WORKOS_API_KEY=sk_test_emulator",
            BINARY,
            "serve",
            "--config",
            &path,
        ],
    )
}

/// The live replicas that say they hold the poller lease.
async fn leaders(replicas: &[Replica]) -> Vec<usize> {
    let mut leaders = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        if replica.process.is_some()
            && metric(&replica.admin, "portal_gateway_setup_poller_leader").await == Some(1.0)
        {
            leaders.push(i);
        }
    }
    leaders
}

async fn watch(replica: &Replica, id: &str) -> Streaming<WatchSetupResponse> {
    let channel = Channel::from_shared(format!("http://{}", replica.address))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut request = tonic::Request::new(WatchSetupRequest {
        organization: Some(watch_setup_request::Organization::OrganizationId(
            id.to_owned(),
        )),
        intents: vec![Intent::Sso as i32],
        resume_cursor: String::new(),
    });
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {ADMIN_TOKEN}")).expect("header"),
    );
    let mut stream = SetupServiceClient::new(channel)
        .watch_setup(request)
        .await
        .expect("watch")
        .into_inner();
    let snapshot = stream.message().await.expect("snapshot").expect("open");
    assert!(snapshot.event.is_none());
    stream
}

/// The next `n` events' names and ids on a stream.
async fn events(stream: &mut Streaming<WatchSetupResponse>, n: usize) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .expect("no error")
            .expect("open");
        if let Some(event) = message.event {
            seen.push((event.name, event.id));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_polls_for_all_and_another_takes_over_when_it_is_killed() {
    let workos = TestEmulator::start().await;
    let redis = Redis::start();
    let org = workos.create_organization(json!({"name": "Watched"})).await;
    let id = org["id"].as_str().expect("id").to_owned();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&workos, &redis).await);
    }
    wait_until(|| async { leaders(&replicas).await.len() == 1 }).await;
    let first_leader = leaders(&replicas).await[0];

    let mut streams = Vec::new();
    for replica in &replicas {
        streams.push(Some(watch(replica, &id).await));
    }
    // Every poll of WorkOS's events comes from the leader.
    for (i, replica) in replicas.iter().enumerate() {
        let polls = metric(&replica.admin, "portal_gateway_setup_polls_total").await;
        if i != first_leader {
            assert_eq!(polls.unwrap_or(0.0), 0.0, "replica {i} polled too");
        }
    }

    for action in ["activate", "deactivate", "activate"] {
        workos
            .setup(&id, json!({"intent": "sso", "action": action}))
            .await;
    }
    let mut expected = None;
    for stream in streams.iter_mut().flatten() {
        let seen = events(stream, 3).await;
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "connection.activated",
                "connection.deactivated",
                "connection.activated"
            ]
        );
        // The same events, with the same ids, on every replica.
        assert_eq!(expected.get_or_insert_with(|| seen.clone()), &seen);
    }

    // SIGKILL the poller's process: no shutdown, no lease released.
    let killed = Instant::now();
    if let Some(mut process) = replicas[first_leader].process.take() {
        process.start_kill().expect("kill");
        let _ = process.wait().await;
    }
    streams[first_leader] = None;
    for action in ["deactivate", "activate"] {
        workos
            .setup(&id, json!({"intent": "sso", "action": action}))
            .await;
    }
    for stream in streams.iter_mut().flatten() {
        let seen = events(stream, 2).await;
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["connection.deactivated", "connection.activated"],
            "nothing lost, nothing twice"
        );
    }
    wait_until(|| async { leaders(&replicas).await.len() == 1 }).await;
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_secs(3),
        "a new poller only after {takeover:?} (lease 1 s)"
    );
    // And nothing more arrives: no event twice.
    for stream in streams.iter_mut().flatten() {
        let extra = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
        assert!(extra.is_err(), "an extra message arrived: {extra:?}");
    }
}
