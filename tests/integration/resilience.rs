//! Resilience and quota through gRPC, driven by the emulator's fault switch and request counts
//! (quality bar R1 to R10 and R12; R11, the error mapping, is in `gateway.rs`). Loops are bounded
//! in count; the few scenarios about wall-clock behaviour use short real durations.

use std::time::{Duration, Instant};

use portal_gateway::proto::{self, Intent};
use reqwest::Method;
use serde_json::json;
use tonic::{Code, Request};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::helpers::{
    API_KEY, TestApp, TestEmulator, base_config, config_with_tokens, details, reason,
    spawn_app_with, wait_until,
};

/// An app whose config is the base one plus `extra` TOML.
async fn app_with(extra: &str) -> TestApp {
    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url) + extra;
    spawn_app_with(emulator, &config, API_KEY).await
}

/// No cache, and a quota far above what a test can send, so retries are what is measured.
const NO_CACHE: &str =
    "[workos.cache]\nttl = \"0s\"\n[workos.quota]\nrequests_per_minute = 6000000\nburst = 100000\n";

async fn org(app: &TestApp, external_id: &str) -> String {
    let request = proto::CreateOrganizationRequest {
        name: "Acme".into(),
        external_id: external_id.into(),
        ..Default::default()
    };
    app.orgs
        .clone()
        .create_organization(request)
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("org")
        .id
}

fn get(id: &str, timeout: Option<Duration>) -> Request<proto::GetOrganizationRequest> {
    let mut request = Request::new(proto::GetOrganizationRequest {
        organization: Some(proto::get_organization_request::Organization::Id(id.into())),
    });
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// Runs `n` reads one after another; returns (ok, failures, upstream attempts).
async fn steady_reads(app: &TestApp, id: &str, n: usize) -> (usize, Vec<tonic::Status>, u64) {
    app.emulator
        .control(Method::DELETE, "/requests", None)
        .await;
    let mut ok = 0;
    let mut failures = Vec::new();
    let mut orgs = app.orgs.clone();
    for _ in 0..n {
        let started = Instant::now();
        match orgs
            .get_organization(get(id, Some(Duration::from_secs(2))))
            .await
        {
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "an OK arrived after its deadline"
                );
                ok += 1;
            }
            Err(status) => failures.push(status),
        }
    }
    (
        ok,
        failures,
        app.emulator.count("GET /organizations/{id}").await,
    )
}

#[tokio::test]
async fn r1_ten_percent_503_is_absorbed_by_few_retries() {
    let app = app_with(&format!(
        "{NO_CACHE}[workos.retry]\nbackoff_base = \"5ms\"\n"
    ))
    .await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "GET /organizations/{id}", "status": 503, "probability": 0.1}))
        .await;
    let n = 1000;
    let (ok, failures, upstream) = steady_reads(&app, &id, n).await;
    let ratio = upstream as f64 / n as f64;
    eprintln!("R1: {ok}/{n} OK, {ratio:.3} upstream calls per RPC");
    assert!(
        ok as f64 / n as f64 >= 0.998,
        "{ok} of {n} OK; first failure {:?}",
        failures.first()
    );
    assert!(ratio <= 1.12, "upstream calls per RPC {ratio:.3}");
}

#[tokio::test]
async fn r2_thirty_percent_503_keeps_retries_inside_the_budget() {
    let app = app_with(&format!("{NO_CACHE}[workos.retry]\nbackoff_base = \"1ms\"\nbudget_ratio = 0.2\nbudget_min_per_second = 1\n[workos.breaker]\nfailure_threshold = 1000\n")).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "GET /organizations/{id}", "status": 503, "probability": 0.3}))
        .await;
    let n = 600;
    let started = Instant::now();
    let (ok, failures, upstream) = steady_reads(&app, &id, n).await;
    let floor = 10.0 * 1.0 + started.elapsed().as_secs_f64();
    let ratio = upstream as f64 / n as f64;
    eprintln!(
        "R2: {ok}/{n} OK, {ratio:.3} upstream calls per RPC, {} failures",
        failures.len()
    );
    assert!(
        upstream as f64 <= n as f64 * 1.2 + floor + 1.0,
        "retries beyond the budget: {upstream} attempts for {n} calls"
    );
    assert!(
        !failures.is_empty(),
        "with 30% failures and a 20% budget some calls must fail"
    );
    for status in &failures {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            details(status).retry_info().is_some(),
            "RetryInfo on {status:?}"
        );
    }
}

#[tokio::test]
async fn r3_a_full_outage_opens_the_breaker_and_it_recovers_after_one_probe_period() {
    let app = app_with(&format!("{NO_CACHE}[workos.retry]\nbackoff_base = \"1ms\"\nbudget_min_per_second = 1\n[workos.breaker]\nfailure_threshold = 5\nopen_for = \"300ms\"\n")).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "*", "status": 503}))
        .await;
    let n = 200;
    let started = Instant::now();
    let (ok, failures, upstream) = steady_reads(&app, &id, n).await;
    let elapsed = started.elapsed();
    assert_eq!(ok, 0);
    let open = failures
        .iter()
        .filter(|s| reason(s) == "WORKOS_CIRCUIT_OPEN")
        .count();
    eprintln!("R3: {upstream} upstream attempts for {n} calls in {elapsed:?}; {open} failed fast");
    assert!(
        open >= n * 9 / 10,
        "most calls fail fast once the circuit is open: {open}"
    );
    assert!(
        (upstream as f64) <= 1.2 * n as f64 + 20.0,
        "{upstream} attempts"
    );
    assert!(
        failures
            .iter()
            .all(|s| s.code() == Code::Unavailable && details(s).retry_info().is_some())
    );
    app.emulator.control(Method::DELETE, "/faults", None).await;
    let cleared = Instant::now();
    let mut orgs = app.orgs.clone();
    loop {
        if orgs.get_organization(get(&id, None)).await.is_ok() {
            break;
        }
        assert!(
            cleared.elapsed() < Duration::from_millis(1500),
            "no recovery within one probe period"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "R3: recovered {:?} after the fault cleared",
        cleared.elapsed()
    );
}

/// Mints a link for organization `id`; returns the failure's reason, if any.
async fn mint(app: &TestApp, id: &str) -> Result<(), tonic::Status> {
    let request = proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::OrganizationId(
            id.into(),
        )),
        intent: Intent::Sso as i32,
        ..Default::default()
    };
    app.portal.clone().generate_link(request).await.map(drop)
}

#[tokio::test]
async fn r13_the_breaker_judges_calls_so_absorbed_failures_never_open_it_and_an_outage_does() {
    // Default breaker and budget; a short backoff only so the test runs quickly.
    let app = app_with(&format!(
        "{NO_CACHE}[workos.retry]\nbackoff_base = \"1ms\"\n"
    ))
    .await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "POST /portal/generate_link", "status": 503, "probability": 0.3}))
        .await;
    app.emulator
        .control(Method::DELETE, "/requests", None)
        .await;
    let n = 300;
    let mut failures = Vec::new();
    for _ in 0..n {
        if let Err(status) = mint(&app, &id).await {
            failures.push(status);
        }
    }
    let upstream = app.emulator.count("POST /portal/generate_link").await;
    let ok = n - failures.len();
    let ratio = upstream as f64 / n as f64;
    eprintln!(
        "R13: {ok}/{n} OK with 30% 503s, {ratio:.3} WorkOS calls per RPC, failures {:?}",
        failures.iter().map(reason).collect::<Vec<_>>()
    );
    assert!(ok * 100 >= n * 95, "{ok} of {n} succeeded");
    assert!(ratio <= 1.5, "{ratio:.3} WorkOS calls per RPC");
    assert!(
        failures.iter().all(|s| reason(s) != "WORKOS_CIRCUIT_OPEN"),
        "the breaker opened on failures the retries absorbed"
    );
    // A full outage: the breaker opens after a few failed calls, then calls fail fast.
    app.emulator.control(Method::DELETE, "/faults", None).await;
    app.emulator
        .fault(json!({"route": "POST /portal/generate_link", "status": 503}))
        .await;
    let mut calls_until_open = 0;
    loop {
        calls_until_open += 1;
        let status = mint(&app, &id).await.expect_err("WorkOS is down");
        if reason(&status) == "WORKOS_CIRCUIT_OPEN" {
            break;
        }
        assert!(calls_until_open <= 10, "the breaker never opened");
    }
    let before = app.emulator.count("POST /portal/generate_link").await;
    let started = Instant::now();
    for _ in 0..20 {
        let status = mint(&app, &id).await.expect_err("open");
        assert_eq!(reason(&status), "WORKOS_CIRCUIT_OPEN");
        assert!(details(&status).retry_info().is_some());
    }
    let fast = started.elapsed() / 20;
    eprintln!("R13: open after {calls_until_open} calls of an outage; {fast:?} per refused call");
    assert!(calls_until_open <= 6, "{calls_until_open} calls");
    assert_eq!(
        app.emulator.count("POST /portal/generate_link").await,
        before,
        "an open circuit sends nothing"
    );
    assert!(fast < Duration::from_millis(50), "{fast:?} per call");
}

#[tokio::test]
async fn callers_short_deadlines_say_nothing_about_workos_and_never_open_the_breaker() {
    let app = app_with(NO_CACHE).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "POST /portal/generate_link", "delay_ms": 300, "count": 8}))
        .await;
    for _ in 0..8 {
        let mut request = Request::new(proto::GenerateLinkRequest {
            organization: Some(proto::generate_link_request::Organization::OrganizationId(
                id.clone(),
            )),
            intent: Intent::Sso as i32,
            ..Default::default()
        });
        request.set_timeout(Duration::from_millis(100));
        let status = app
            .portal
            .clone()
            .generate_link(request)
            .await
            .expect_err("too slow for this caller");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
    // Eight callers ran out of time; WorkOS itself is fine, and the next caller gets its link.
    mint(&app, &id).await.expect("the circuit is closed");
}

#[tokio::test]
async fn a_mint_whose_caller_goes_away_is_still_audited() {
    let app = app_with(NO_CACHE).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "POST /portal/generate_link", "delay_ms": 400, "count": 1}))
        .await;
    let call = tokio::spawn({
        let mut portal = app.portal.clone();
        let id = id.clone();
        async move {
            portal
                .generate_link(proto::GenerateLinkRequest {
                    organization: Some(proto::generate_link_request::Organization::OrganizationId(
                        id,
                    )),
                    intent: Intent::Sso as i32,
                    ..Default::default()
                })
                .await
        }
    });
    // Once WorkOS has the request, the caller hangs up (the stream is reset).
    wait_until(|| async { app.emulator.count("POST /portal/generate_link").await >= 1 }).await;
    call.abort();
    wait_until(|| async {
        app.audit_records()
            .iter()
            .any(|r| r["rpc"] == "GenerateLink" && r["outcome"] == "CANCELLED")
    })
    .await;
    let record = app
        .audit_records()
        .into_iter()
        .find(|r| r["rpc"] == "GenerateLink")
        .expect("the record");
    assert_eq!(record["organization_id"], id.as_str());
    assert_eq!(record["caller"], "token:admin");
}

#[tokio::test]
async fn r4_a_delete_that_fails_is_never_retried() {
    // Creates, which WorkOS would make twice, are tested in `creates`.
    let app = app_with("").await;
    let id = org(&app, "victim").await;
    app.emulator
        .fault(json!({"route": "DELETE /organizations/{id}", "status": 503, "count": 1}))
        .await;
    let status = app
        .orgs
        .clone()
        .delete_organization(proto::DeleteOrganizationRequest { id })
        .await
        .expect_err("503");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(app.emulator.count("DELETE /organizations/{id}").await, 1);
}

#[tokio::test]
async fn r5_retry_after_is_honoured_only_when_it_fits_the_deadline() {
    let app = app_with(NO_CACHE).await;
    let id = org(&app, "acme").await;
    let mut orgs = app.orgs.clone();
    app.emulator.fault(json!({"route": "GET /organizations/{id}", "status": 429, "retry_after": 1, "count": 1})).await;
    let started = Instant::now();
    orgs.get_organization(get(&id, Some(Duration::from_secs(5))))
        .await
        .expect("waited and retried");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    app.emulator.fault(json!({"route": "GET /organizations/{id}", "status": 429, "retry_after": 5, "count": 1})).await;
    app.emulator
        .control(Method::DELETE, "/requests", None)
        .await;
    let started = Instant::now();
    let status = orgs
        .get_organization(get(&id, Some(Duration::from_secs(1))))
        .await
        .expect_err("does not fit");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "answered at once: {:?}",
        started.elapsed()
    );
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::ResourceExhausted, "WORKOS_RATE_LIMITED".to_owned())
    );
    assert_eq!(
        details(&status).retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_secs(5))
    );
    assert_eq!(app.emulator.count("GET /organizations/{id}").await, 1);
}

#[tokio::test]
async fn r6_a_slow_upstream_is_deadline_exceeded_on_time_and_not_retried_after_expiry() {
    let app = app_with(NO_CACHE).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "GET /organizations/{id}", "delay_ms": 5000}))
        .await;
    app.emulator
        .control(Method::DELETE, "/requests", None)
        .await;
    let started = Instant::now();
    let status = app
        .orgs
        .clone()
        .get_organization(get(&id, Some(Duration::from_millis(300))))
        .await
        .expect_err("slow");
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(500),
        "{elapsed:?}"
    );
    // Let the retry that must not happen have its chance, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.emulator.count("GET /organizations/{id}").await, 1);
}

#[tokio::test]
async fn r7_without_a_caller_deadline_the_server_timeout_ends_a_hung_call() {
    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url)
        .replace("request_timeout = \"5s\"", "request_timeout = \"200ms\"")
        .replace(
            "shutdown_grace = \"5s\"",
            "shutdown_grace = \"5s\"\nrequest_timeout = \"500ms\"",
        )
        + NO_CACHE;
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "GET /organizations/{id}", "delay_ms": 60000}))
        .await;
    let started = Instant::now();
    let status = app
        .orgs
        .clone()
        .get_organization(get(&id, None))
        .await
        .expect_err("hung");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn r8_overload_is_shed_at_once_and_admitted_calls_keep_their_latency() {
    let emulator = TestEmulator::start().await;
    let config = base_config(&emulator.url).replace(
        "drain_delay = \"0s\"",
        "drain_delay = \"0s\"\nmax_in_flight = 4",
    ) + NO_CACHE;
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "GET /organizations/{id}", "delay_ms": 300}))
        .await;
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let mut orgs = app.orgs.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = orgs
                    .get_organization(get(&id, Some(Duration::from_secs(5))))
                    .await;
                (result, started.elapsed())
            })
        })
        .collect();
    let (mut admitted, mut shed) = (0, 0);
    for call in calls {
        let (result, elapsed) = call.await.expect("task");
        match result {
            Ok(_) => {
                admitted += 1;
                assert!(
                    elapsed < Duration::from_millis(800),
                    "admitted latency {elapsed:?}"
                );
            }
            Err(status) => {
                shed += 1;
                assert_eq!(
                    (status.code(), reason(&status)),
                    (Code::ResourceExhausted, "OVERLOADED".to_owned())
                );
                assert!(
                    elapsed < Duration::from_millis(200),
                    "shed slowly: {elapsed:?}"
                );
            }
        }
    }
    eprintln!("R8: {admitted} admitted, {shed} shed");
    assert!(
        admitted >= 4 && shed >= 30,
        "{admitted} admitted, {shed} shed"
    );
}

#[tokio::test]
async fn r9_shutdown_drains_without_failing_in_flight_calls() {
    let emulator = TestEmulator::start().await;
    let config =
        base_config(&emulator.url).replace("drain_delay = \"0s\"", "drain_delay = \"300ms\"");
    let mut app = spawn_app_with(emulator, &config, API_KEY).await;
    org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "POST /portal/generate_link", "delay_ms": 200}))
        .await;
    let link = || proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::ExternalId(
            "acme".into(),
        )),
        intent: Intent::Sso as i32,
        ..Default::default()
    };
    let in_flight: Vec<_> = (0..20)
        .map(|_| {
            let mut portal = app.portal.clone();
            let request = link();
            tokio::spawn(async move { portal.generate_link(request).await })
        })
        .collect();
    while app.emulator.count("POST /portal/generate_link").await < 20 {
        tokio::task::yield_now().await;
    }
    app.signal_shutdown();
    let mut health = app.health.clone();
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("still serving health");
        if status.into_inner().status() == ServingStatus::NotServing {
            break;
        }
        tokio::task::yield_now().await;
    }
    // During the drain delay new calls are still served.
    app.portal
        .clone()
        .generate_link(link())
        .await
        .expect("served while draining");
    for call in in_flight {
        call.await.expect("task").expect("no in-flight call fails");
    }
    let server = app.take_server();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("exits within the grace period")
        .expect("task")
        .expect("clean");
}

#[tokio::test]
async fn r10_health_answers_from_memory_while_workos_hangs_and_reflects_a_rejected_key() {
    let app = app_with(NO_CACHE).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "*", "delay_ms": 10000, "count": 3}))
        .await;
    let mut health = app.health.clone();
    let started = Instant::now();
    for service in ["", "adminportal.v1.PortalService"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving);
    }
    assert!(started.elapsed() < Duration::from_millis(200));
    app.emulator.control(Method::DELETE, "/faults", None).await;
    app.emulator
        .fault(json!({"route": "GET /organizations/{id}", "status": 401, "count": 1}))
        .await;
    app.orgs
        .clone()
        .get_organization(get(&id, None))
        .await
        .expect_err("key rejected");
    let status_of = |service: &'static str| app.health_of(service);
    wait_until(|| async {
        status_of("adminportal.v1.PortalService").await == ServingStatus::NotServing
    })
    .await;
    assert_eq!(
        status_of("adminportal.v1.OrganizationService").await,
        ServingStatus::NotServing
    );
    assert_eq!(
        status_of("adminportal.v1.AccessService").await,
        ServingStatus::Serving,
        "the policy does not need WorkOS"
    );
    assert_eq!(status_of("").await, ServingStatus::Serving);
    app.orgs
        .clone()
        .get_organization(get(&id, None))
        .await
        .expect("the key works again");
    wait_until(|| async {
        status_of("adminportal.v1.PortalService").await == ServingStatus::Serving
    })
    .await;
}

#[tokio::test]
async fn after_a_rejected_key_health_heals_by_probing_without_any_traffic() {
    let app = app_with(NO_CACHE).await;
    let id = org(&app, "acme").await;
    app.emulator
        .fault(json!({"route": "GET /organizations/{id}", "status": 401, "count": 1}))
        .await;
    let status = app
        .orgs
        .clone()
        .get_organization(get(&id, None))
        .await
        .expect_err("the key is rejected once");
    assert_eq!(reason(&status), "WORKOS_API_KEY_REJECTED");
    app.emulator
        .control(Method::DELETE, "/requests", None)
        .await;
    let serving =
        || async { app.health_of("adminportal.v1.PortalService").await == ServingStatus::Serving };
    // No caller sends anything: the gateway's own probe finds the key accepted again.
    wait_until(|| async { !serving().await }).await;
    wait_until(serving).await;
    assert!(
        app.emulator.count("GET /organizations").await >= 1,
        "the probe is a cheap listing"
    );
}

#[tokio::test]
async fn r12_the_quota_holds_workos_to_its_rate_and_shares_it_fairly() {
    let emulator = TestEmulator::start().await;
    let extra = "[workos.cache]\nttl = \"0s\"\n[workos.quota]\nrequests_per_minute = 600\nburst = 5\ndeletes_per_minute = 50\n";
    let rule = "[[policy.callers]]\nname = \"other\"\nidentities = [\"token:other\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\n";
    let config = config_with_tokens(&emulator.url, &[("other", "other-token")]) + rule + extra;
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    // Each caller reads its own organization, so no lookup is shared between them.
    let seed = app.emulator.control(Method::POST, "/seed", Some(json!({"organizations": [{"id": "org_01EHWNCE74X7JSDV0X3SZ3KJNY", "name": "Noisy"}, {"id": "org_01EHWNCE74X7JSDV0X3SZ3KJNZ", "name": "Quiet"}]}))).await;
    let id = seed["organizations"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.emulator
        .control(Method::DELETE, "/requests", None)
        .await;
    let started = Instant::now();
    let run = Duration::from_secs(2);
    let hammer = |mut orgs: proto::organization_service_client::OrganizationServiceClient<
        crate::helpers::Authed,
    >,
                  calls: usize| {
        let id = id.clone();
        tokio::spawn(async move {
            let (mut ok, mut refused) = (0usize, Vec::new());
            for _ in 0..calls {
                if started.elapsed() >= run {
                    break;
                }
                match orgs.get_organization(get(&id, None)).await {
                    Ok(_) => ok += 1,
                    Err(status) => refused.push(status),
                }
                tokio::task::yield_now().await;
            }
            (ok, refused)
        })
    };
    let noisy = hammer(app.orgs.clone(), 100_000);
    let quiet_client = app.as_token("other-token").orgs;
    let quiet = tokio::spawn(async move {
        let (mut ok, mut refused) = (0usize, 0usize);
        let mut orgs = quiet_client;
        while started.elapsed() < run {
            match orgs
                .get_organization(get("org_01EHWNCE74X7JSDV0X3SZ3KJNZ", None))
                .await
            {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (ok, refused)
    });
    let (noisy_ok, noisy_refused) = noisy.await.expect("task");
    let (quiet_ok, _) = quiet.await.expect("task");
    let elapsed = started.elapsed().as_secs_f64();
    let upstream = app.emulator.count("GET /organizations/{id}").await;
    eprintln!(
        "R12: {upstream} upstream calls in {elapsed:.2}s (limit 10/s + burst 5); noisy {noisy_ok} ok / {} refused; quiet {quiet_ok} ok",
        noisy_refused.len()
    );
    assert!(
        upstream as f64 <= 10.0 * elapsed + 5.0 + 1.0,
        "WorkOS saw {upstream} calls in {elapsed:.2}s"
    );
    assert_eq!(
        upstream as usize,
        noisy_ok + quiet_ok,
        "every OK was one upstream call"
    );
    assert!(!noisy_refused.is_empty());
    let status = &noisy_refused[0];
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        ["WORKOS_QUOTA_EXHAUSTED", "FAIR_SHARE_EXHAUSTED"].contains(&reason(status).as_str()),
        "{}",
        reason(status)
    );
    let quota = details(status)
        .quota_failure()
        .cloned()
        .expect("QuotaFailure");
    assert!(
        quota.violations[0].subject.starts_with("workos:")
            || quota.violations[0].subject.starts_with("caller:admin")
    );
    assert!(
        details(status)
            .retry_info()
            .and_then(|r| r.retry_delay)
            .is_some_and(|d| d > Duration::ZERO)
    );
    // The noisy caller asks hundreds of times, the quiet one a few; the quiet one must still get
    // a share comparable to the noisy one's (a loaded machine lets it ask a little less often).
    assert!(
        quiet_ok >= 8 && quiet_ok * 2 >= noisy_ok,
        "the quiet caller kept its fair share: quiet {quiet_ok}, noisy {noisy_ok}"
    );
    assert_eq!(
        app.emulator.control(Method::GET, "/requests", None).await["recent"]
            .as_array()
            .expect("recent")
            .iter()
            .filter(|r| r["status"] == 429)
            .count(),
        0,
        "no 429 from WorkOS"
    );
}

#[tokio::test]
async fn deletes_have_their_own_quota() {
    let app = app_with("").await;
    let mut refused = None;
    for i in 0..8 {
        let id = org(&app, &format!("d{i}")).await;
        if let Err(status) = app
            .orgs
            .clone()
            .delete_organization(proto::DeleteOrganizationRequest { id })
            .await
        {
            refused = Some((i, status));
            break;
        }
    }
    let (i, status) = refused.expect("the delete limit is reached");
    assert_eq!(i, 5, "50 a minute allows a burst of 5");
    assert_eq!(reason(&status), "WORKOS_QUOTA_EXHAUSTED");
    let subject = details(&status)
        .quota_failure()
        .expect("QuotaFailure")
        .violations[0]
        .subject
        .clone();
    assert_eq!(subject, "workos:organization-deletes");
}

#[tokio::test]
async fn concurrent_identical_lookups_share_one_upstream_call_and_links_use_the_warm_cache() {
    let app = app_with("").await;
    app.emulator
        .control(
            Method::POST,
            "/seed",
            Some(json!({"organizations": [{"name": "Cold", "external_id": "cold"}]})),
        )
        .await;
    app.emulator.fault(json!({"route": "GET /organizations/external_id/{external_id}", "delay_ms": 200, "count": 1})).await;
    let lookups: Vec<_> = (0..10)
        .map(|_| {
            let mut orgs = app.orgs.clone();
            tokio::spawn(async move {
                orgs.get_organization(proto::GetOrganizationRequest {
                    organization: Some(proto::get_organization_request::Organization::ExternalId(
                        "cold".into(),
                    )),
                })
                .await
            })
        })
        .collect();
    for lookup in lookups {
        lookup.await.expect("task").expect("found");
    }
    assert_eq!(
        app.emulator
            .count("GET /organizations/external_id/{external_id}")
            .await,
        1,
        "single flight"
    );
    app.emulator
        .control(Method::DELETE, "/requests", None)
        .await;
    let request = proto::GenerateLinkRequest {
        organization: Some(proto::generate_link_request::Organization::ExternalId(
            "cold".into(),
        )),
        intent: Intent::Sso as i32,
        ..Default::default()
    };
    app.portal
        .clone()
        .generate_link(request)
        .await
        .expect("link");
    assert_eq!(
        app.emulator.total_requests().await,
        1,
        "a warm GenerateLink by external id makes exactly one upstream call"
    );
}

#[tokio::test]
async fn the_gateways_own_changes_invalidate_the_cache() {
    let app = app_with("").await;
    let id = org(&app, "acme").await;
    let mut orgs = app.orgs.clone();
    orgs.get_organization(get(&id, None)).await.expect("warm");
    let update = proto::UpdateOrganizationRequest {
        organization: Some(proto::Organization {
            id: id.clone(),
            name: "Renamed".into(),
            external_id: "acme-2".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["name".into(), "external_id".into()],
        }),
    };
    orgs.update_organization(update).await.expect("update");
    let fresh = orgs
        .get_organization(get(&id, None))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(fresh.name, "Renamed");
    let by_old = orgs
        .get_organization(proto::GetOrganizationRequest {
            organization: Some(proto::get_organization_request::Organization::ExternalId(
                "acme".into(),
            )),
        })
        .await
        .expect_err("the old external id no longer resolves");
    assert_eq!(by_old.code(), Code::NotFound);
    orgs.delete_organization(proto::DeleteOrganizationRequest { id: id.clone() })
        .await
        .expect("delete");
    assert_eq!(
        orgs.get_organization(get(&id, None))
            .await
            .expect_err("gone")
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn a_callers_own_quota_from_the_policy_is_enforced() {
    let emulator = TestEmulator::start().await;
    let rule = "[[policy.callers]]\nname = \"metered\"\nidentities = [\"token:metered\"]\nrpcs = [\"*\"]\nintents = [\"*\"]\norganizations = [\"*\"]\nrequests_per_minute = 60\n";
    let config =
        config_with_tokens(&emulator.url, &[("metered", "metered-token")]) + rule + NO_CACHE;
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    let id = org(&app, "acme").await;
    let mut metered = app.as_token("metered-token").orgs;
    let mut granted = 0;
    let refused = loop {
        match metered.get_organization(get(&id, None)).await {
            Ok(_) => granted += 1,
            Err(status) => break status,
        }
        assert!(granted <= 10, "the caller's quota was never applied");
    };
    assert_eq!(granted, 6, "60 a minute allows a burst of 6");
    assert_eq!(
        (refused.code(), reason(&refused)),
        (Code::ResourceExhausted, "CALLER_QUOTA_EXHAUSTED".to_owned())
    );
    let subject = details(&refused)
        .quota_failure()
        .expect("QuotaFailure")
        .violations[0]
        .subject
        .clone();
    assert_eq!(subject, "caller:token:metered");
    app.orgs
        .clone()
        .get_organization(get(&id, None))
        .await
        .expect("other callers are unaffected");
}
