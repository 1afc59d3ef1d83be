//! The WorkOS emulator through HTTP: shapes, status codes, error bodies, pagination, idempotency,
//! bad input of every class, faults and the control API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{API_KEY, TestEmulator};

async fn send(
    emulator: &TestEmulator,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = emulator.api(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("every answer is JSON")
        },
    )
}

#[tokio::test]
async fn every_answer_has_a_request_id_and_workos_content_type() {
    let emulator = TestEmulator::start().await;
    for (method, path) in [
        (Method::GET, "/organizations"),
        (Method::GET, "/organizations/org_01EHWNCE74X7JSDV0X3SZ3KJNY"),
        (Method::GET, "/nothing/here"),
    ] {
        let response = emulator.api(method, path).send().await.expect("request");
        let headers = response.headers();
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("X-Request-ID");
        assert_eq!(request_id.len(), 36, "a UUID: {request_id}");
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json; charset=utf-8"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn unimplemented_routes_answer_501_with_a_distinct_code() {
    let emulator = TestEmulator::start().await;
    let (status, body) = send(&emulator, Method::GET, "/user_management/users", None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(body["code"], "not_implemented_in_emulator");
    let (status, body) = send(&emulator, Method::PATCH, "/organizations", None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
}

#[tokio::test]
async fn a_missing_or_wrong_key_gets_workos_401() {
    let emulator = TestEmulator::start().await;
    for auth in [None, Some("Bearer sk_test_wrong"), Some(API_KEY)] {
        let mut request = emulator.http.get(format!("{}/organizations", emulator.url));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({"message": "Unauthorized"})
        );
    }
}

#[tokio::test]
async fn organizations_carry_every_key_the_official_sdks_require() {
    let emulator = TestEmulator::start().await;
    let org = emulator.create_organization(json!({"name": "Acme", "domain_data": [{"domain": "acme.example", "state": "pending"}]})).await;
    let id = org["id"].as_str().expect("id");
    assert!(id.starts_with("org_") && id.len() == 30, "{id}");
    for key in [
        "object",
        "id",
        "name",
        "domains",
        "metadata",
        "external_id",
        "created_at",
        "updated_at",
        "allow_profiles_outside_organization",
    ] {
        assert!(org.get(key).is_some(), "missing {key}: {org}");
    }
    assert_eq!(org["metadata"], json!({}));
    assert_eq!(org["external_id"], Value::Null);
    assert!(
        org.get("stripe_customer_id").is_none(),
        "omitted when unset, as production does"
    );
    let created = org["created_at"].as_str().expect("created_at");
    assert_eq!(created.len(), "2021-06-25T19:07:33.155Z".len(), "{created}");
    assert!(created.ends_with('Z'));
    let domain = &org["domains"][0];
    for key in [
        "object",
        "id",
        "organization_id",
        "domain",
        "state",
        "verification_strategy",
        "verification_prefix",
        "verification_token",
        "created_at",
        "updated_at",
    ] {
        assert!(
            domain.get(key).is_some(),
            "missing domain key {key}: {domain}"
        );
    }
    assert_eq!(domain["organization_id"], org["id"]);
    let (status, fetched) = send(
        &emulator,
        Method::GET,
        &format!("/organizations/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, org);
}

#[tokio::test]
async fn external_ids_are_unique_and_found_by_lookup() {
    let emulator = TestEmulator::start().await;
    let org = emulator
        .create_organization(json!({"name": "Acme", "external_id": "ext 1/x"}))
        .await;
    let (status, found) = send(
        &emulator,
        Method::GET,
        "/organizations/external_id/ext%201%2Fx",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["id"], org["id"]);
    let (status, body) = send(
        &emulator,
        Method::POST,
        "/organizations",
        Some(json!({"name": "Again", "external_id": "ext 1/x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "external_id_already_used");
    let (status, body) = send(
        &emulator,
        Method::GET,
        "/organizations/external_id/nope",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "entity_not_found");
}

#[tokio::test]
async fn metadata_limits_are_invalid_metadata() {
    let emulator = TestEmulator::start().await;
    let eleven: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("k{i}"), json!("v"))).collect();
    for metadata in [
        json!(eleven),
        json!({"k".repeat(41): "v"}),
        json!({"k": "v".repeat(601)}),
        json!({"k": 1}),
        json!("x"),
    ] {
        let (status, body) = send(
            &emulator,
            Method::POST,
            "/organizations",
            Some(json!({"name": "M", "metadata": metadata})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{metadata}");
        assert_eq!(body["code"], "invalid_metadata");
    }
}

#[tokio::test]
async fn bad_bodies_get_workos_shaped_4xx_naming_the_field() {
    let emulator = TestEmulator::start().await;
    let raw = |body: &'static str| {
        emulator
            .api(Method::POST, "/organizations")
            .header("content-type", "application/json")
            .body(body)
    };
    let response = raw("{not json").send().await.expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.expect("json")["code"],
        "invalid_json"
    );
    let response = raw("[1,2]").send().await.expect("send");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let huge = format!("{{\"name\":\"{}\"}}", "a".repeat(1024 * 1024 + 10));
    let response = emulator
        .api(Method::POST, "/organizations")
        .body(huge)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.json::<Value>().await.expect("json")["code"],
        "payload_too_large"
    );
    let (status, body) = send(
        &emulator,
        Method::POST,
        "/organizations",
        Some(json!({"name": 5, "domain_data": "x", "external_id": ["a"], "surprise": true})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    for field in ["name", "domain_data", "external_id", "surprise"] {
        assert!(fields.contains(&field), "{field} not named in {body}");
    }
    for query in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=99999999999999999999",
        "order=sideways",
        "before=a&after=b",
        "colour=red",
    ] {
        let (status, body) = send(
            &emulator,
            Method::GET,
            &format!("/organizations?{query}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
    }
    let (total, _) = send(&emulator, Method::GET, "/organizations", None).await;
    assert_eq!(total, StatusCode::OK);
}

#[tokio::test]
async fn a_refused_update_changes_nothing() {
    let emulator = TestEmulator::start().await;
    let org = emulator
        .create_organization(json!({"name": "Acme", "metadata": {"a": "1"}}))
        .await;
    let other = emulator
        .create_organization(json!({"name": "Other", "external_id": "taken"}))
        .await;
    let path = format!("/organizations/{}", org["id"].as_str().expect("id"));
    for body in [
        json!({"name": "Renamed", "metadata": {"k": "v".repeat(601)}}),
        json!({"name": "Renamed", "external_id": "taken"}),
        json!({"name": "Renamed", "domain_data": [{"domain": "ok.example", "state": "pending"}, {"domain": "bad domain", "state": "pending"}]}),
    ] {
        let (status, _) = send(&emulator, Method::PUT, &path, Some(body.clone())).await;
        assert!(status.is_client_error(), "{body}");
        let (_, now) = send(&emulator, Method::GET, &path, None).await;
        assert_eq!(now, org, "unchanged after {body}");
    }
    let (status, updated) = send(
        &emulator,
        Method::PUT,
        &path,
        Some(json!({"external_id": null, "metadata": {"b": "2"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        updated["metadata"],
        json!({"b": "2"}),
        "metadata is replaced"
    );
    assert_eq!(other["external_id"], "taken");
}

async fn list(emulator: &TestEmulator, query: &str) -> (Vec<String>, Value) {
    let (status, body) = send(
        emulator,
        Method::GET,
        &format!("/organizations?{query}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let ids = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect();
    (ids, body["list_metadata"].clone())
}

#[tokio::test]
async fn pagination_walks_both_ways_in_every_order() {
    let emulator = TestEmulator::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            emulator
                .create_organization(json!({"name": format!("Org {i}")}))
                .await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let (page, meta) = list(&emulator, "limit=3&order=asc").await;
    assert_eq!(page, ids[..3]);
    assert_eq!(meta, json!({"before": null, "after": ids[2]}));
    let (page, meta) = list(&emulator, &format!("limit=3&order=asc&after={}", ids[2])).await;
    assert_eq!(page, ids[3..6]);
    assert_eq!(meta, json!({"before": ids[3], "after": ids[5]}));
    let (page, meta) = list(&emulator, &format!("limit=3&order=asc&after={}", ids[5])).await;
    assert_eq!(page, ids[6..]);
    assert_eq!(meta["after"], Value::Null);
    let (page, _) = list(&emulator, &format!("limit=3&order=asc&before={}", ids[3])).await;
    assert_eq!(page, ids[..3]);
    let newest: Vec<String> = ids.iter().rev().cloned().collect();
    let (page, meta) = list(&emulator, "limit=3").await;
    assert_eq!(page, newest[..3], "desc is the default");
    let (page, _) = list(
        &emulator,
        &format!("limit=3&after={}", meta["after"].as_str().expect("after")),
    )
    .await;
    assert_eq!(page, newest[3..6]);
    let (page, _) = list(
        &emulator,
        &format!("limit=2&order=desc&before={}", newest[3]),
    )
    .await;
    assert_eq!(page, newest[1..3]);
    // `normal` is descending with the cursors' meanings swapped.
    let (page, meta) = list(&emulator, "limit=3&order=normal").await;
    assert_eq!(page, newest[..3]);
    let (page, _) = list(
        &emulator,
        &format!(
            "limit=3&order=normal&before={}",
            meta["before"].as_str().expect("before")
        ),
    )
    .await;
    assert_eq!(page, newest[3..6]);
}

#[tokio::test]
async fn the_domains_filter_accepts_every_sdk_form() {
    let emulator = TestEmulator::start().await;
    let a = emulator
        .create_organization(
            json!({"name": "A", "domain_data": [{"domain": "a.example", "state": "verified"}]}),
        )
        .await;
    let b = emulator
        .create_organization(json!({"name": "B", "domains": ["b.example"]}))
        .await;
    emulator
        .create_organization(
            json!({"name": "C", "domain_data": [{"domain": "c.example", "state": "pending"}]}),
        )
        .await;
    let mut expected = vec![
        a["id"].as_str().expect("id").to_owned(),
        b["id"].as_str().expect("id").to_owned(),
    ];
    expected.sort();
    for query in [
        "domains=a.example%2Cb.example",
        "domains=a.example&domains=b.example",
        "domains[]=a.example&domains[]=b.example",
        "domains%5B%5D=A.example,b.example",
    ] {
        let (mut ids, _) = list(&emulator, query).await;
        ids.sort();
        assert_eq!(ids, expected, "{query}");
    }
}

#[tokio::test]
async fn idempotency_keys_replay_or_refuse_when_replay_is_on() {
    let emulator = TestEmulator::start().await;
    emulator
        .control(Method::POST, "/idempotency", Some(json!({"replay": true})))
        .await;
    let create = |key: &str, name: &str| {
        emulator
            .api(Method::POST, "/organizations")
            .header("idempotency-key", key)
            .json(&json!({"name": name}))
            .send()
    };
    let first: Value = create("k1", "Acme")
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let again = create("k1", "Acme").await.expect("send");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        again.json::<Value>().await.expect("json"),
        first,
        "same key and body replays"
    );
    let different = create("k1", "Other").await.expect("send");
    assert_eq!(different.status(), StatusCode::BAD_REQUEST);
    let (_, all) = send(&emulator, Method::GET, "/organizations", None).await;
    assert_eq!(
        all["data"].as_array().expect("data").len(),
        1,
        "one organization"
    );
}

#[tokio::test]
async fn organization_domains_are_created_verified_and_deleted() {
    let emulator = TestEmulator::start().await;
    let org = emulator.create_organization(json!({"name": "Acme"})).await;
    let (status, domain) = send(
        &emulator,
        Method::POST,
        "/organization_domains",
        Some(json!({"domain": "acme.example", "organization_id": org["id"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (
            domain["state"].as_str(),
            domain["verification_strategy"].as_str()
        ),
        (Some("pending"), Some("dns"))
    );
    let path = format!(
        "/organization_domains/{}",
        domain["id"].as_str().expect("id")
    );
    let (status, verified) = send(&emulator, Method::POST, &format!("{path}/verify"), None).await;
    assert_eq!(
        (status, verified["state"].as_str()),
        (StatusCode::CREATED, Some("verified"))
    );
    let (status, body) = send(&emulator, Method::POST, &format!("{path}/verify"), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("domain_already_verified"))
    );
    let (status, body) = send(
        &emulator,
        Method::POST,
        "/organization_domains",
        Some(json!({"domain": "acme.example", "organization_id": org["id"]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("domain_already_exists"))
    );
    let (_, org_now) = send(
        &emulator,
        Method::GET,
        &format!("/organizations/{}", org["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!(org_now["domains"][0]["id"], domain["id"]);
    let (status, _) = send(&emulator, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(&emulator, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn portal_links_open_a_page_until_revoked_or_expired() {
    let emulator = TestEmulator::start().await;
    let org = emulator
        .create_organization(json!({"name": "Acme <Inc>"}))
        .await;
    let mint = |intent: &str, user: &str| json!({"organization": org["id"], "intent": intent, "return_url": "https://app.example/back?a=1&b=2", "external_user_id": user, "admin_emails": ["it@acme.example"], "intent_options": {"sso": {"provider_type": "GoogleSAML"}}});
    let page = |link: String| async move {
        let response = reqwest::get(link).await.expect("open link");
        (response.status(), response.text().await.expect("page"))
    };
    for intent in [
        "sso",
        "dsync",
        "audit_logs",
        "log_streams",
        "domain_verification",
        "certificate_renewal",
        "bring_your_own_key",
    ] {
        let (status, body) = send(
            &emulator,
            Method::POST,
            "/portal/generate_link",
            Some(mint(intent, "u1")),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{intent}: {body}");
        let link = body["link"].as_str().expect("link").to_owned();
        assert!(link.starts_with(&format!("{}/portal/launch?secret=", emulator.url)));
        let (status, html) = page(link).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains(&format!("<strong id=\"intent\">{intent}</strong>")),
            "{html}"
        );
        assert!(html.contains("Acme &lt;Inc&gt;"), "escaped name");
        assert!(
            html.contains("https://app.example/back?a=1&amp;b=2"),
            "return link"
        );
    }
    let (_, keep) = send(
        &emulator,
        Method::POST,
        "/portal/generate_link",
        Some(mint("sso", "u2")),
    )
    .await;
    let (_, revoke) = send(
        &emulator,
        Method::POST,
        "/portal/generate_link",
        Some(mint("sso", "u1")),
    )
    .await;
    let (status, _) = send(
        &emulator,
        Method::POST,
        "/portal/revoke_link",
        Some(json!({"organization": org["id"], "external_user_id": "u1"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, html) = page(revoke["link"].as_str().expect("link").to_owned()).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("revoked"));
    assert_eq!(
        page(keep["link"].as_str().expect("link").to_owned())
            .await
            .0,
        StatusCode::OK,
        "other users' links survive"
    );
    emulator
        .control(
            Method::POST,
            "/clock",
            Some(json!({"advance_seconds": 299})),
        )
        .await;
    assert_eq!(
        page(keep["link"].as_str().expect("link").to_owned())
            .await
            .0,
        StatusCode::OK,
        "still valid at 4:59"
    );
    emulator
        .control(Method::POST, "/clock", Some(json!({"advance_seconds": 1})))
        .await;
    let (status, html) = page(keep["link"].as_str().expect("link").to_owned()).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("expired"));
    let (status, _) = page(format!("{}/portal/launch?secret=unknown", emulator.url)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn generate_link_refuses_unknown_organizations_and_bad_fields() {
    let emulator = TestEmulator::start().await;
    let org = emulator.create_organization(json!({"name": "Acme"})).await;
    let (status, body) = send(
        &emulator,
        Method::POST,
        "/portal/generate_link",
        Some(json!({"organization": "org_01EHWNCE74X7JSDV0X3SZ3KJNY", "intent": "sso"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("entity_not_found"))
    );
    let emails: Vec<String> = (0..21).map(|i| format!("it{i}@acme.example")).collect();
    for (body, field) in [
        (json!({"intent": "sso"}), "organization"),
        (
            json!({"organization": org["id"], "intent": "payroll"}),
            "intent",
        ),
        (
            json!({"organization": org["id"], "intent": "sso", "return_url": "not a url"}),
            "return_url",
        ),
        (
            json!({"organization": org["id"], "intent": "sso", "it_contact_emails": emails}),
            "it_contact_emails",
        ),
        (
            json!({"organization": org["id"], "intent": "sso", "it_contact_emails": ["nope"]}),
            "it_contact_emails",
        ),
        (
            json!({"organization": org["id"], "intent": "sso", "intent_options": {"sso": {"provider_type": "OktaSAML"}}}),
            "intent_options.sso.provider_type",
        ),
    ] {
        let (status, answer) = send(
            &emulator,
            Method::POST,
            "/portal/generate_link",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            answer["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|e| e["field"] == field),
            "{field} in {answer}"
        );
    }
}

#[tokio::test]
async fn faults_apply_by_route_and_count_and_after_commit() {
    let emulator = TestEmulator::start().await;
    emulator
        .fault(json!({"route": "GET /organizations", "status": 503, "count": 2}))
        .await;
    emulator.fault(json!({"route": "POST /organizations", "status": 503, "after_commit": true, "count": 1})).await;
    emulator.fault(json!({"route": "GET /organizations/{id}", "status": 429, "retry_after": 3, "count": 1})).await;
    for _ in 0..2 {
        let (status, body) = send(&emulator, Method::GET, "/organizations", None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("server_error"))
        );
    }
    assert_eq!(
        send(&emulator, Method::GET, "/organizations", None).await.0,
        StatusCode::OK,
        "count ran out"
    );
    let (status, _) = send(
        &emulator,
        Method::POST,
        "/organizations",
        Some(json!({"name": "Committed"})),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (_, all) = send(&emulator, Method::GET, "/organizations", None).await;
    let org_id = all["data"][0]["id"]
        .as_str()
        .expect("the create committed")
        .to_owned();
    let response = emulator
        .api(Method::GET, &format!("/organizations/{org_id}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(emulator.count("GET /organizations").await, 4);
    assert_eq!(emulator.count("POST /organizations").await, 1);
    assert_eq!(emulator.count("GET /organizations/{id}").await, 1);
    emulator
        .fault(json!({"route": "*", "malformed": true, "count": 1}))
        .await;
    let text = emulator
        .api(Method::GET, "/organizations")
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "malformed on purpose"
    );
}

#[tokio::test]
async fn seeded_probabilities_are_reproducible() {
    let emulator = TestEmulator::start().await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        emulator
            .control(Method::POST, "/reset", Some(json!({"seed": 9})))
            .await;
        emulator
            .fault(json!({"route": "GET /organizations", "status": 503, "probability": 0.3}))
            .await;
        let mut pattern = Vec::new();
        for _ in 0..40 {
            pattern.push(
                send(&emulator, Method::GET, "/organizations", None).await.0
                    == StatusCode::SERVICE_UNAVAILABLE,
            );
        }
        runs.push(pattern);
    }
    assert_eq!(runs[0], runs[1]);
    let failures = runs[0].iter().filter(|f| **f).count();
    assert!((4..=20).contains(&failures), "about 30% of 40: {failures}");
}

#[tokio::test]
async fn seeding_creates_fixed_ids_all_or_nothing() {
    let emulator = TestEmulator::start().await;
    let fixed = "org_01EHWNCE74X7JSDV0X3SZ3KJNY";
    let seeded = emulator
        .control(
            Method::POST,
            "/seed",
            Some(
                json!({"organizations": [{"id": fixed, "name": "Fixed", "external_id": "fixed"}]}),
            ),
        )
        .await;
    assert_eq!(seeded["organizations"][0]["id"], fixed);
    let response = emulator.http.post(format!("{}/_emulator/seed", emulator.url))
        .json(&json!({"organizations": [{"name": "Fine"}, {"name": "Clash", "external_id": "fixed"}]}))
        .send().await.expect("send");
    assert!(response.status().is_client_error());
    let (_, all) = send(&emulator, Method::GET, "/organizations", None).await;
    assert_eq!(
        all["data"].as_array().expect("data").len(),
        1,
        "the bad seed added nothing"
    );
}

#[tokio::test]
async fn the_clock_cannot_be_moved_so_far_that_later_requests_break() {
    let emulator = TestEmulator::start().await;
    let org = emulator.create_organization(json!({"name": "Acme"})).await;
    let far = emulator
        .http
        .post(format!("{}/_emulator/clock", emulator.url))
        .json(&json!({"advance_seconds": u64::MAX}))
        .send()
        .await
        .expect("clock");
    assert_eq!(far.status().as_u16(), 422);
    let link = emulator
        .api(Method::POST, "/portal/generate_link")
        .json(&json!({"organization": org["id"], "intent": "sso"}))
        .send()
        .await
        .expect("generate_link");
    assert_eq!(link.status().as_u16(), 201, "the emulator still works");
}
