//! The Events API through HTTP: its three wire forms, its refusals, forward paging, filters
//! and retention.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{call, ids, organization, setup};
use crate::helpers::TestEmulator;

pub(super) const SETUP_EVENTS: &str = "connection.activated,connection.deactivated,connection.deleted,\
connection.saml_certificate_renewal_required,connection.saml_certificate_renewed,dsync.activated,\
dsync.deleted,organization_domain.created,organization_domain.verified,\
organization_domain.verification_failed,organization_domain.deleted,\
vault.byok_key.verification_completed,vault.byok_key.deleted";

/// `GET /events?{query}`, which must succeed.
pub(super) async fn events(emulator: &TestEmulator, query: &str) -> Value {
    let (status, body) = call(emulator, Method::GET, &format!("/events?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

/// The one listed event with this id.
pub(super) async fn event(emulator: &TestEmulator, id: &Value) -> Value {
    let all = events(emulator, &format!("events={SETUP_EVENTS}&limit=100")).await;
    all["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|e| e["id"] == *id)
        .cloned()
        .unwrap_or_else(|| panic!("event {id} listed"))
}

pub(super) async fn advance(emulator: &TestEmulator, seconds: u64) {
    emulator
        .control(
            Method::POST,
            "/clock",
            Some(json!({"advance_seconds": seconds})),
        )
        .await;
}

#[tokio::test]
async fn event_names_come_in_three_wire_forms_and_bad_queries_are_refused() {
    let emulator = TestEmulator::start().await;
    let acme = organization(&emulator, "Acme", &[]).await;
    setup(
        &emulator,
        &acme,
        json!({"intent": "sso", "action": "activate"}),
    )
    .await;
    setup(
        &emulator,
        &acme,
        json!({"intent": "dsync", "action": "activate"}),
    )
    .await;
    let comma = events(&emulator, "events=connection.activated%2Cdsync.activated").await;
    let listed = ids(&comma);
    assert_eq!(listed.len(), 2, "{comma}");
    assert!(listed[0] < listed[1], "oldest first");
    for query in [
        "events=dsync.activated&events=connection.activated",
        "events[]=connection.activated&events[]=dsync.activated",
        "events%5B%5D=connection.activated&events%5B%5D=dsync.activated",
        "events=connection.activated,dsync.activated&order=desc",
    ] {
        assert_eq!(events(&emulator, query).await, comma, "{query}");
    }
    let first = &comma["data"][0];
    assert_eq!(first["object"], "event");
    assert_eq!(first["event"], "connection.activated");
    assert!(
        first["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("event_") && id.len() == 32)
    );
    assert!(
        first["created_at"]
            .as_str()
            .is_some_and(|t| t.len() == 24 && t.ends_with('Z'))
    );
    assert_eq!(first["context"], json!({}));
    assert_eq!(
        comma["list_metadata"],
        json!({"after": listed[1]}),
        "only after"
    );
    let none = events(&emulator, "events=user.created").await;
    assert_eq!(
        none,
        json!({"object": "list", "data": [], "list_metadata": {"after": null}})
    );

    for query in ["", "events=", "limit=5", "events[]="] {
        let (status, body) = call(&emulator, Method::GET, &format!("/events?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(
            body["errors"][0],
            json!({"field": "events", "code": "required"}),
            "{query}"
        );
    }
    let (status, body) = call(
        &emulator,
        Method::GET,
        "/events?events=connection.activated,user.teleported",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_events_request");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("'user.teleported'")),
        "{body}"
    );
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("order=sideways", "order"),
        ("before=event_01EHWNCE74X7JSDV0X3SZ3KJNY", "before"),
        ("after=conn_01EHWNCE74X7JSDV0X3SZ3KJNY", "after"),
        ("range_start=2026-01-01T00:00:00%2B00:00", "range_start"),
        ("range_end=yesterday", "range_end"),
        ("colour=red", "query"),
    ] {
        let (status, body) = call(
            &emulator,
            Method::GET,
            &format!("/events?events=dsync.activated&{query}"),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(
            body["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|e| e["field"] == field),
            "{field} named for {query}: {body}"
        );
    }
}

#[tokio::test]
async fn events_page_forward_and_filter_by_organization_and_time() {
    let emulator = TestEmulator::start().await;
    let mut created = Vec::new();
    for (name, domain) in [
        ("A", "a.example"),
        ("B", "b.example"),
        ("A2", "a2.example"),
        ("B2", "b2.example"),
        ("A3", "a3.example"),
    ] {
        let org = organization(&emulator, name, &[domain]).await;
        created.push(org);
        advance(&emulator, 1).await;
    }
    let all = events(&emulator, "events=organization_domain.created&limit=100").await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 5);
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(after) => format!("events=organization_domain.created&limit=2&after={after}"),
            None => "events=organization_domain.created&limit=2".to_owned(),
        };
        let page = events(&emulator, &query).await;
        let page_ids = ids(&page);
        match page["list_metadata"]["after"].as_str() {
            Some(after) => {
                assert_eq!(Some(after), page_ids.last().map(String::as_str));
                cursor = Some(after.to_owned());
            }
            None => {
                assert!(page_ids.is_empty(), "null only on an empty page");
                break;
            }
        }
        walked.extend(page_ids);
    }
    assert_eq!(walked, all_ids, "after walks every event once, in order");

    let first_org = events(
        &emulator,
        &format!(
            "events=organization_domain.created&organization_id={}",
            created[0]
        ),
    )
    .await;
    assert_eq!(ids(&first_org), all_ids[..1]);
    assert_eq!(
        first_org["data"][0]["data"]["organization_id"],
        created[0].as_str()
    );

    let third = all["data"][2]["created_at"].as_str().expect("created_at");
    let from = events(
        &emulator,
        &format!("events=organization_domain.created&range_start={third}"),
    )
    .await;
    assert_eq!(ids(&from), all_ids[2..], "range_start is inclusive");
    let until = events(
        &emulator,
        &format!("events=organization_domain.created&range_end={third}"),
    )
    .await;
    assert_eq!(ids(&until), all_ids[..2], "range_end is exclusive");
    let both = events(
        &emulator,
        &format!(
            "events=organization_domain.created&range_start={third}&after={}",
            all_ids[3]
        ),
    )
    .await;
    assert_eq!(ids(&both), all_ids[4..], "after and range_start both apply");
}

#[tokio::test]
async fn events_are_kept_for_thirty_days_on_the_emulators_clock() {
    let emulator = TestEmulator::start().await;
    organization(&emulator, "Acme", &["acme.example"]).await;
    advance(&emulator, 30 * 24 * 60 * 60 - 1).await;
    assert_eq!(
        ids(&events(&emulator, "events=organization_domain.created").await).len(),
        1
    );
    advance(&emulator, 1).await;
    assert_eq!(
        events(&emulator, "events=organization_domain.created").await["data"],
        json!([])
    );
}

#[tokio::test]
async fn the_new_routes_are_counted_faulted_and_need_the_key() {
    let emulator = TestEmulator::start().await;
    emulator
        .fault(json!({"route": "GET /events", "status": 503, "count": 1}))
        .await;
    let (status, body) = call(&emulator, Method::GET, "/events?events=dsync.activated").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("server_error"))
    );
    assert_eq!(
        call(&emulator, Method::GET, "/events?events=dsync.activated")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(emulator.count("GET /events").await, 2);
    for path in [
        "/connections",
        "/directories",
        "/events?events=dsync.activated",
    ] {
        let response = emulator
            .http
            .get(format!("{}{path}", emulator.url))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}
