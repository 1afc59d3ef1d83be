//! Creates made idempotent by the gateway. WorkOS honours `Idempotency-Key` only on audit-log
//! events, and the emulator follows that by default; each scenario that matters also runs with
//! the emulator replaying keys, to show the gateway depends on neither.

use std::time::Duration;

use portal_gateway::proto;
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{
    API_KEY, TestApp, TestEmulator, bad_fields, base_config, reason, spawn_app_with, wait_until,
};

const ROUTE: &str = "POST /organizations";

async fn app(replay: bool) -> TestApp {
    let emulator = TestEmulator::start().await;
    let answer = emulator
        .control(
            Method::POST,
            "/idempotency",
            Some(json!({ "replay": replay })),
        )
        .await;
    assert_eq!(answer["replay"], replay);
    let config = base_config(&emulator.url);
    spawn_app_with(emulator, &config, API_KEY).await
}

/// Every organization the emulator holds.
async fn organizations(app: &TestApp) -> Vec<Value> {
    let all: Value = app
        .emulator
        .api(Method::GET, "/organizations?limit=100")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    all["data"].as_array().expect("data").clone()
}

fn create(name: &str, external_id: &str, request_id: &str) -> proto::CreateOrganizationRequest {
    proto::CreateOrganizationRequest {
        name: name.into(),
        external_id: external_id.into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn with_domain(request: proto::CreateOrganizationRequest) -> proto::CreateOrganizationRequest {
    proto::CreateOrganizationRequest {
        domains: vec![proto::OrganizationDomain {
            domain: "once.example".into(),
            ..Default::default()
        }],
        ..request
    }
}

#[tokio::test]
async fn the_emulator_deduplicates_nothing_by_default_and_replays_when_asked() {
    for (replay, expected) in [(false, 2), (true, 1)] {
        let app = app(replay).await;
        for _ in 0..2 {
            let answer = app
                .emulator
                .api(Method::POST, "/organizations")
                .header("idempotency-key", "same-key")
                .json(&json!({"name": "Twice"}))
                .send()
                .await
                .expect("send");
            assert_eq!(answer.status(), reqwest::StatusCode::CREATED);
        }
        assert_eq!(organizations(&app).await.len(), expected, "replay {replay}");
    }
}

#[tokio::test]
async fn r4_a_create_that_commits_then_answers_503_leaves_exactly_one_organization() {
    for replay in [false, true] {
        let app = app(replay).await;
        app.emulator
            .fault(json!({"route": ROUTE, "status": 503, "after_commit": true, "count": 1}))
            .await;
        let created = app
            .orgs
            .clone()
            .create_organization(with_domain(create("Once", "once", "create-once-1")))
            .await
            .expect("the committed organization, read back and adopted")
            .into_inner()
            .organization
            .expect("organization");
        let all = organizations(&app).await;
        assert_eq!(all.len(), 1, "exactly one organization (replay {replay})");
        assert_eq!(all[0]["id"], created.id.as_str());
        assert_eq!(app.emulator.count(ROUTE).await, 1, "never sent twice");
        assert_eq!(
            app.emulator
                .count("GET /organizations/external_id/{external_id}")
                .await,
            1,
            "one read-back"
        );
        // The caller's own retry gets the same answer without asking WorkOS again.
        let again = app
            .orgs
            .clone()
            .create_organization(with_domain(create("Once", "once", "create-once-1")))
            .await
            .expect("the first answer")
            .into_inner()
            .organization
            .expect("organization");
        assert_eq!(again.id, created.id);
        assert_eq!(app.emulator.count(ROUTE).await, 1);
    }
}

#[tokio::test]
async fn without_an_external_id_a_lost_answer_is_reported_and_never_duplicated() {
    for replay in [false, true] {
        let app = app(replay).await;
        app.emulator
            .fault(json!({"route": ROUTE, "status": 502, "after_commit": true, "count": 1}))
            .await;
        let mut orgs = app.orgs.clone();
        for attempt in ["first", "retry with the same request_id"] {
            let status = orgs
                .create_organization(create("Nameless", "", "nameless-1"))
                .await
                .expect_err(attempt);
            assert_eq!(status.code(), Code::Unavailable, "{attempt}");
            assert_eq!(reason(&status), "WORKOS_OUTCOME_UNKNOWN", "{attempt}");
            assert!(
                status.message().contains("may have been made"),
                "{}",
                status.message()
            );
        }
        assert_eq!(
            app.emulator.count(ROUTE).await,
            1,
            "sent once (replay {replay})"
        );
        assert_eq!(organizations(&app).await.len(), 1, "one organization");
        // A new request_id is the caller's decision to create again.
        orgs.create_organization(create("Nameless", "", "nameless-2"))
            .await
            .expect("a new request");
        assert_eq!(organizations(&app).await.len(), 2);
    }
}

#[tokio::test]
async fn a_5xx_with_nothing_made_stays_unknown_until_a_retry_finds_nothing_and_creates() {
    let app = app(false).await;
    app.emulator
        .fault(json!({"route": ROUTE, "status": 503, "count": 1}))
        .await;
    let mut orgs = app.orgs.clone();
    let status = orgs
        .create_organization(create("Later", "later", "later-1"))
        .await
        .expect_err("503 before commit");
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::Unavailable, "WORKOS_OUTCOME_UNKNOWN".to_owned()),
        "a 5xx may come from a proxy in front of WorkOS: finding nothing right away settles nothing"
    );
    assert!(organizations(&app).await.is_empty());
    orgs.create_organization(create("Later", "later", "later-1"))
        .await
        .expect("the retry looks, finds nothing, and creates it");
    assert_eq!(organizations(&app).await.len(), 1);
    assert_eq!(app.emulator.count(ROUTE).await, 2);
}

#[tokio::test]
async fn a_rate_limited_create_is_sent_again_because_nothing_was_made() {
    let app = app(false).await;
    app.emulator
        .fault(json!({"route": ROUTE, "status": 429, "retry_after": 0, "count": 1}))
        .await;
    app.orgs
        .clone()
        .create_organization(create("Limited", "", ""))
        .await
        .expect("retried after the 429");
    assert_eq!(app.emulator.count(ROUTE).await, 2);
    assert_eq!(organizations(&app).await.len(), 1);
}

#[tokio::test]
async fn a_request_id_reused_for_another_create_is_refused_naming_it() {
    let app = app(false).await;
    let mut orgs = app.orgs.clone();
    orgs.create_organization(create("First", "", "reused-1"))
        .await
        .expect("first");
    let status = orgs
        .create_organization(create("Second", "", "reused-1"))
        .await
        .expect_err("another request under the same id");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["request_id"]);
    assert_eq!(organizations(&app).await.len(), 1);
}

#[tokio::test]
async fn concurrent_retries_with_one_request_id_create_once() {
    let app = app(false).await;
    // A slow create, so the retries arrive while it is in flight.
    app.emulator
        .fault(json!({"route": ROUTE, "delay_ms": 300, "count": 1}))
        .await;
    let calls = (0..4).map(|_| {
        let mut orgs = app.orgs.clone();
        async move {
            orgs.create_organization(create("Racy", "", "racy-1"))
                .await
                .map(|r| r.into_inner().organization.expect("organization").id)
        }
    });
    let ids = futures_util::future::join_all(calls).await;
    let first = ids[0].clone().expect("created");
    for id in ids {
        assert_eq!(id.expect("the same answer"), first);
    }
    assert_eq!(app.emulator.count(ROUTE).await, 1);
    assert_eq!(organizations(&app).await.len(), 1);
}

#[tokio::test]
async fn a_create_cut_off_in_flight_is_settled_by_the_retry() {
    let app = app(false).await;
    // WorkOS takes 400 ms and then commits; the caller gives up after 150 ms.
    app.emulator
        .fault(json!({"route": ROUTE, "delay_ms": 400, "count": 1}))
        .await;
    let mut impatient = tonic::Request::new(create("Slow", "slow", "slow-1"));
    impatient.set_timeout(Duration::from_millis(150));
    let status = app
        .orgs
        .clone()
        .create_organization(impatient)
        .await
        .expect_err("the caller's deadline");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Unavailable),
        "{status:?}"
    );
    wait_until(|| async { organizations(&app).await.len() == 1 }).await;
    let settled = app
        .orgs
        .clone()
        .create_organization(create("Slow", "slow", "slow-1"))
        .await
        .expect("the retry finds what the first call made")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(settled.external_id, "slow");
    assert_eq!(app.emulator.count(ROUTE).await, 1, "never sent twice");
    assert_eq!(organizations(&app).await.len(), 1);
}

#[tokio::test]
async fn ensure_adopts_what_its_lost_create_made() {
    let app = app(false).await;
    app.emulator
        .fault(json!({"route": ROUTE, "status": 500, "after_commit": true, "count": 1}))
        .await;
    let ensured = app
        .orgs
        .clone()
        .ensure_organization(proto::EnsureOrganizationRequest {
            name: "Ensured".into(),
            external_id: "ensured".into(),
            ..Default::default()
        })
        .await
        .expect("adopted")
        .into_inner();
    assert!(ensured.created);
    assert_eq!(organizations(&app).await.len(), 1);
    assert_eq!(app.emulator.count(ROUTE).await, 1);
}

#[tokio::test]
async fn finding_nothing_right_after_a_timeout_proves_nothing() {
    let emulator = TestEmulator::start().await;
    // Each attempt may take 300 ms; WorkOS takes 700 ms, then makes it.
    let config = base_config(&emulator.url).replacen(
        "request_timeout = \"5s\"",
        "request_timeout = \"300ms\"",
        1,
    );
    let app = spawn_app_with(emulator, &config, API_KEY).await;
    app.emulator
        .fault(json!({"route": ROUTE, "delay_ms": 700, "count": 1}))
        .await;
    let mut orgs = app.orgs.clone();
    let status = orgs
        .create_organization(create("Late", "late", "late-1"))
        .await
        .expect_err("timed out");
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::Unavailable, "WORKOS_OUTCOME_UNKNOWN".to_owned()),
        "the read-back found nothing yet, which settles nothing"
    );
    wait_until(|| async { organizations(&app).await.len() == 1 }).await;
    let adopted = orgs
        .create_organization(create("Late", "late", "late-1"))
        .await
        .expect("the retry adopts what the first call made")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(adopted.external_id, "late");
    assert_eq!(app.emulator.count(ROUTE).await, 1);
}

#[tokio::test]
async fn ensure_finds_what_a_racing_call_made_even_after_looking_it_up_as_missing() {
    let app = app(false).await;
    let missing = app
        .orgs
        .clone()
        .get_organization(proto::GetOrganizationRequest {
            organization: Some(proto::get_organization_request::Organization::ExternalId(
                "raced".into(),
            )),
        })
        .await
        .expect_err("not yet");
    assert_eq!(missing.code(), Code::NotFound);
    // Made behind the gateway's back, as another replica would.
    let made = app
        .emulator
        .create_organization(json!({"name": "Raced", "external_id": "raced"}))
        .await;
    let ensured = app
        .orgs
        .clone()
        .ensure_organization(proto::EnsureOrganizationRequest {
            name: "Raced".into(),
            external_id: "raced".into(),
            ..Default::default()
        })
        .await
        .expect("the existing organization")
        .into_inner();
    assert!(!ensured.created);
    assert_eq!(
        ensured.organization.expect("organization").id,
        made["id"].as_str().expect("id")
    );
}

#[tokio::test]
async fn a_create_refused_before_it_was_sent_leaves_its_request_id_free() {
    let app = app(false).await;
    // Rate limited, with a wait longer than the caller gives: refused at once, nothing made.
    app.emulator
        .fault(json!({"route": ROUTE, "status": 429, "retry_after": 5, "count": 1}))
        .await;
    let mut orgs = app.orgs.clone();
    let mut impatient = tonic::Request::new(create("Patient", "", "patient-1"));
    impatient.set_timeout(Duration::from_secs(2));
    let status = orgs
        .create_organization(impatient)
        .await
        .expect_err("rate limited");
    assert_eq!(status.code(), Code::ResourceExhausted);
    orgs.create_organization(create("Patient", "", "patient-1"))
        .await
        .expect("created on the retry, not answered as unknown");
    assert_eq!(organizations(&app).await.len(), 1);
}

#[tokio::test]
async fn a_refused_request_may_be_corrected_under_the_same_request_id() {
    let app = app(false).await;
    app.emulator
        .create_organization(json!({"name": "Owner", "domain_data": [{"domain": "once.example", "state": "verified"}]}))
        .await;
    let mut orgs = app.orgs.clone();
    let status = orgs
        .create_organization(with_domain(create("Mine", "", "fix-1")))
        .await
        .expect_err("the domain is taken");
    assert_eq!(status.code(), Code::AlreadyExists);
    orgs.create_organization(create("Mine", "", "fix-1"))
        .await
        .expect("the corrected request");
    assert_eq!(organizations(&app).await.len(), 2);
}
