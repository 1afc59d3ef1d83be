//! One setup events poller for a cluster of replicas over a real Redis: one replica polls, the
//! watchers on every replica see every event once, in order, and when the poller's replica dies
//! another takes over within the lease without losing or repeating an event.

use std::time::{Duration, Instant};

use portal_gateway::proto::{Intent, WatchSetupRequest, WatchSetupResponse, watch_setup_request};
use serde_json::json;
use tonic::Streaming;

use crate::{
    cluster::{Redis, metric, replica_with},
    helpers::{TestEmulator, wait_until},
};

/// The base configuration polls every 20 ms at most 100 ms apart; nothing more is needed.
const SETUP: &str = "";

async fn watch(app: &crate::helpers::TestApp, id: &str) -> Streaming<WatchSetupResponse> {
    let mut stream = app
        .setup
        .clone()
        .watch_setup(WatchSetupRequest {
            organization: Some(watch_setup_request::Organization::OrganizationId(
                id.to_owned(),
            )),
            intents: vec![Intent::Sso as i32],
            resume_cursor: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let snapshot = stream.message().await.expect("snapshot").expect("open");
    assert!(snapshot.event.is_none());
    stream
}

/// The next `n` event names and ids on a stream.
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

type Replica = (crate::helpers::TestApp, std::net::SocketAddr);

/// The replicas that say they hold the poller lease.
async fn leaders(replicas: &[Option<Replica>]) -> Vec<usize> {
    let mut leaders = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        if let Some((_, admin)) = replica
            && metric(*admin, "portal_gateway_setup_poller_leader").await == Some(1.0)
        {
            leaders.push(i);
        }
    }
    leaders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_polls_for_all_and_another_takes_over_when_it_dies() {
    let workos = TestEmulator::start().await;
    let redis = Redis::start();
    let org = workos.create_organization(json!({"name": "Watched"})).await;
    let id = org["id"].as_str().expect("id").to_owned();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Some(replica_with(&workos, &redis, SETUP).await));
    }
    wait_until(|| async { leaders(&replicas).await.len() == 1 }).await;
    let first_leader = leaders(&replicas).await[0];

    let mut streams = Vec::new();
    for replica in replicas.iter().flatten() {
        streams.push(Some(watch(&replica.0, &id).await));
    }
    // Every poll of WorkOS's events comes from the leader.
    for (i, replica) in replicas.iter().enumerate() {
        let admin = replica.as_ref().map(|r| r.1).expect("running");
        let polls = metric(admin, "portal_gateway_setup_polls_total").await;
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

    // The leader dies; its watcher goes with it.
    let killed = Instant::now();
    replicas[first_leader] = None;
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
