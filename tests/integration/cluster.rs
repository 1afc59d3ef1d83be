//! Replicas sharing one WorkOS key over a real Redis (Debian's redis-server on a free port per
//! test): the quota holds for all of them together and stays fair, each falls back to its local
//! share while Redis is down and returns to the shared quota after, and an update through one
//! replica leaves the others' caches.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use portal_gateway::proto::{
    self, GenerateLinkRequest, GetOrganizationRequest, Intent, UpdateOrganizationRequest,
    generate_link_request, get_organization_request,
};
use serde_json::json;

use crate::helpers::{
    Credentials, TestApp, TestEmulator, config_with_tokens, repo_root, spawn_app_with_admin,
    wait_until,
};

/// A redis-server of its own on a free loopback port, stopped on drop.
pub(crate) struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    pub(crate) fn start() -> Self {
        let status = Command::new(repo_root().join("scripts/ensure-redis.sh"))
            .status()
            .expect("run scripts/ensure-redis.sh");
        assert!(status.success(), "redis-server is not installed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = Self { child: None, port };
        redis.restart();
        redis
    }

    /// (Re)starts the server on the same port and waits until it answers.
    pub(crate) fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..500 {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not answer within 5 s");
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends the server a signal (`STOP` hangs it: connections stay open, nothing answers).
    pub(crate) fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One replica in front of the shared emulator, with its admin port.
async fn replica(
    workos: &TestEmulator,
    redis: &Redis,
    quota: u32,
    burst: u32,
) -> (TestApp, SocketAddr) {
    replica_with(
        workos,
        redis,
        &format!("[workos.quota]\nrequests_per_minute = {quota}\nburst = {burst}\n"),
    )
    .await
}

/// One replica in front of the shared emulator with `extra` configuration (TOML tables), and
/// its admin port.
pub(crate) async fn replica_with(
    workos: &TestEmulator,
    redis: &Redis,
    extra: &str,
) -> (TestApp, SocketAddr) {
    let mut config = config_with_tokens(
        &workos.url,
        &[("a", "token-a"), ("b", "token-b"), ("c", "token-c")],
    );
    config.push_str(extra);
    config.push_str(&format!(
        r#"
[cluster]
redis_url = "{}"
heartbeat_every = "100ms"
member_ttl = "500ms"
lease_ttl = "1s"
"#,
        redis.url()
    ));
    for caller in ["a", "b", "c"] {
        config.push_str(&format!(
            "\n[[policy.callers]]\nname = \"{caller}\"\nidentities = [\"token:{caller}\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\n"
        ));
    }
    // Each replica gets a stand-in emulator of its own (unused); all talk to `workos`.
    spawn_app_with_admin(TestEmulator::start().await, &config).await
}

/// A metric's value from a replica's admin port (`host:port`).
pub(crate) async fn metric(admin: impl std::fmt::Display, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn healthz(admin: SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/healthz"))
        .await
        .expect("healthz")
        .text()
        .await
        .expect("body")
}

fn link(id: &str) -> GenerateLinkRequest {
    GenerateLinkRequest {
        organization: Some(generate_link_request::Organization::OrganizationId(
            id.to_owned(),
        )),
        intent: Intent::Sso as i32,
        ..Default::default()
    }
}

/// Calls GenerateLink as fast as one stream can for `window` through `app` as `token`; returns
/// how many were granted.
async fn hammer(app: &TestApp, token: &str, id: &str, window: Duration) -> usize {
    let mut portal = app
        .clients(Credentials {
            token: Some(token.into()),
            ..Credentials::default()
        })
        .portal;
    let start = Instant::now();
    let mut granted = 0;
    while start.elapsed() < window {
        match portal.generate_link(link(id)).await {
            Ok(_) => granted += 1,
            Err(status) => assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}"),
        }
    }
    granted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_hold_one_quota_together_and_share_it_fairly() {
    let workos = TestEmulator::start().await;
    let redis = Redis::start();
    let org = workos.create_organization(json!({"name": "Shared"})).await;
    let id = org["id"].as_str().expect("id").to_owned();
    // 600 a minute: 10 a second, a burst of 5, for all three replicas together.
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&workos, &redis, 600, 5).await);
    }
    wait_until(|| async {
        metric(replicas[0].1, "portal_gateway_cluster_replicas").await == Some(3.0)
    })
    .await;
    workos
        .control(reqwest::Method::DELETE, "/requests", None)
        .await;
    let window = Duration::from_secs(3);
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        hammer(&replicas[0].0, "token-a", &id, window),
        hammer(&replicas[1].0, "token-b", &id, window),
        hammer(&replicas[2].0, "token-c", &id, window),
    );
    let elapsed = started.elapsed().as_secs_f64();
    let sent = workos.count("POST /portal/generate_link").await;
    // Each replica alone would have allowed the whole limit; together they stay under it.
    let bound = 5.0 + 10.0 * elapsed;
    assert!(
        (sent as f64) <= bound + 1.0,
        "{sent} requests reached WorkOS in {elapsed:.2} s (bound {bound:.1})"
    );
    assert!(sent >= 20, "the shared quota granted too little: {sent}");
    assert_eq!(a + b + c, sent as usize);
    let (least, most) = ([a, b, c].into_iter().min(), [a, b, c].into_iter().max());
    let (least, most) = (least.unwrap_or(0) as f64, most.unwrap_or(0) as f64);
    assert!(
        least >= most * 0.5,
        "unfair across replicas: a {a}, b {b}, c {c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_fall_back_to_their_local_share_while_redis_is_down_and_come_back() {
    let workos = TestEmulator::start().await;
    let mut redis = Redis::start();
    let org = workos
        .create_organization(json!({"name": "Fallback"}))
        .await;
    let id = org["id"].as_str().expect("id").to_owned();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&workos, &redis, 6000, 90).await);
    }
    let admin = replicas[0].1;
    // Every replica has heard of all three (each falls back to the count it last heard).
    for (_, replica_admin) in &replicas {
        wait_until(|| async {
            metric(*replica_admin, "portal_gateway_cluster_replicas").await == Some(3.0)
        })
        .await;
    }
    assert_eq!(
        metric(admin, "portal_gateway_cluster_shared_quota").await,
        Some(1.0)
    );

    redis.kill();
    // Calls keep succeeding, promptly, while Redis is gone: within this replica's local share
    // (a third of the limits: 2,000 a minute, a burst of 30).
    let mut portal = replicas[0].0.portal.clone();
    for _ in 0..20 {
        let started = Instant::now();
        portal
            .generate_link(link(&id))
            .await
            .expect("served without Redis");
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    assert_eq!(
        metric(admin, "portal_gateway_cluster_shared_quota").await,
        Some(0.0)
    );
    // Hammered meanwhile, the three local shares together still keep under the limit plus
    // burst (6,000 a minute: 100 a second, burst 90; each replica a third of both).
    workos
        .control(reqwest::Method::DELETE, "/requests", None)
        .await;
    let window = Duration::from_secs(2);
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        hammer(&replicas[0].0, "token-a", &id, window),
        hammer(&replicas[1].0, "token-b", &id, window),
        hammer(&replicas[2].0, "token-c", &id, window),
    );
    let elapsed = started.elapsed().as_secs_f64();
    let sent = workos.count("POST /portal/generate_link").await;
    assert_eq!(a + b + c, sent as usize);
    assert!(
        (sent as f64) <= 90.0 + 100.0 * elapsed + 3.0,
        "{sent} requests in {elapsed:.2} s without Redis ({a}, {b}, {c})"
    );
    let health = healthz(admin).await;
    assert!(
        health.contains("Redis cannot be reached") && health.contains("1/3"),
        "{health}"
    );

    redis.restart();
    wait_until(|| async {
        let _ = replicas[0].0.portal.clone().generate_link(link(&id)).await;
        metric(admin, "portal_gateway_cluster_shared_quota").await == Some(1.0)
    })
    .await;
    assert_eq!(healthz(admin).await, "ok\n");

    // Hung rather than gone (what a mesh sidecar in front of a dead Redis looks like): calls
    // wait at most the 50 ms timeout, and only one call at a time probes.
    redis.signal("STOP");
    let mut slowest = Duration::ZERO;
    for _ in 0..40 {
        let started = Instant::now();
        // Answered promptly either way: granted, or refused by the local share's quota.
        if let Err(status) = portal.generate_link(link(&id)).await {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        }
        slowest = slowest.max(started.elapsed());
    }
    redis.signal("CONT");
    assert!(
        slowest < Duration::from_millis(300),
        "a call waited {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_through_one_replica_leaves_the_others_caches() {
    let workos = TestEmulator::start().await;
    let redis = Redis::start();
    let org = workos.create_organization(json!({"name": "Before"})).await;
    let id = org["id"].as_str().expect("id").to_owned();
    let (a, _) = replica(&workos, &redis, 6000, 90).await;
    let (b, b_admin) = replica(&workos, &redis, 6000, 90).await;
    let get = || {
        let mut orgs = b.orgs.clone();
        let id = id.clone();
        async move {
            orgs.get_organization(GetOrganizationRequest {
                organization: Some(get_organization_request::Organization::Id(id)),
            })
            .await
            .expect("get")
            .into_inner()
            .organization
            .expect("organization")
            .name
        }
    };
    assert_eq!(get().await, "Before");
    // Cached on B now: a direct change in WorkOS would go unseen for the cache TTL.
    let reads = workos.count("GET /organizations/{id}").await;
    assert_eq!(get().await, "Before");
    assert_eq!(
        workos.count("GET /organizations/{id}").await,
        reads,
        "cached"
    );

    let changed = Instant::now();
    a.orgs
        .clone()
        .update_organization(UpdateOrganizationRequest {
            organization: Some(proto::Organization {
                id: id.clone(),
                name: "After".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .expect("update through A");
    wait_until(|| async { get().await == "After" }).await;
    let delay = changed.elapsed();
    assert!(
        delay < Duration::from_secs(1),
        "B saw the change after {delay:?}"
    );
    assert_eq!(
        metric(b_admin, "portal_gateway_cluster_invalidations_total").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_that_reaches_another_replica_gets_the_first_answer() {
    let workos = TestEmulator::start().await;
    let redis = Redis::start();
    let (a, _) = replica_with(&workos, &redis, "").await;
    let (b, _) = replica_with(&workos, &redis, "").await;
    let create = |app: &TestApp, name: &str, request_id: &str| {
        let mut orgs = app.orgs.clone();
        let request = proto::CreateOrganizationRequest {
            name: name.into(),
            request_id: request_id.into(),
            ..Default::default()
        };
        async move { orgs.create_organization(request).await }
    };
    const ROUTE: &str = "POST /organizations";

    // A create whose answer was lost, with no external id to read back: the retry on the other
    // replica hears the same, and nothing is sent again.
    workos
        .fault(json!({"route": ROUTE, "status": 502, "after_commit": true, "count": 1}))
        .await;
    for app in [&a, &b] {
        let status = create(app, "Lost", "lost-1").await.expect_err("unknown");
        assert_eq!(
            crate::helpers::reason(&status),
            "WORKOS_OUTCOME_UNKNOWN",
            "{status:?}"
        );
    }
    assert_eq!(workos.count(ROUTE).await, 1);

    // A create answered on one replica is the other's answer too.
    let first = create(&a, "Kept", "kept-1")
        .await
        .expect("created")
        .into_inner()
        .organization
        .expect("organization");
    let again = create(&b, "Kept", "kept-1")
        .await
        .expect("the first answer")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(again.id, first.id);
    assert_eq!(workos.count(ROUTE).await, 2);
    // Another create under the same request_id is refused there as well.
    let status = create(&b, "Other", "kept-1").await.expect_err("reused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(crate::helpers::bad_fields(&status), ["request_id"]);
    assert_eq!(workos.count(ROUTE).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_a_create_that_cannot_be_told_from_a_retry_is_refused_unmade() {
    let workos = TestEmulator::start().await;
    let mut redis = Redis::start();
    let (a, _) = replica_with(&workos, &redis, "").await;
    redis.kill();
    let mut orgs = a.orgs.clone();
    let status = orgs
        .create_organization(proto::CreateOrganizationRequest {
            name: "Unsure".into(),
            request_id: "unsure-1".into(),
            ..Default::default()
        })
        .await
        .expect_err("no ledger, no external id");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(crate::helpers::reason(&status), "CREATE_LEDGER_UNAVAILABLE");
    assert_eq!(workos.count("POST /organizations").await, 0, "nothing sent");
    // With an external id, reading back settles what the ledger would have: it goes ahead.
    orgs.create_organization(proto::CreateOrganizationRequest {
        name: "Sure".into(),
        external_id: "sure".into(),
        request_id: "sure-1".into(),
        ..Default::default()
    })
    .await
    .expect("created");
    assert_eq!(workos.count("POST /organizations").await, 1);
}
